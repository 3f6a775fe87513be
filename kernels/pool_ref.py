"""NumPy reference of 2-D max pooling: the spec for the accelerated pooling kernels.

    max_pool2d:  y[n,c,i,j] = max_{p,q < k} x[n,c,i·s+p, j·s+q]   (no padding; floor mode)

It also returns, for every output, the flat index into ``x`` of the maximum (first one on ties),
so the backward pass is a gather/scatter by that index (engine/primitives/conv.py).

Read next: ``kernels/attention_ref.py`` (cosine attention in NumPy: the spec).
"""
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .conv_ref import check_int, check_window


def check_pool(name, x, kernel, stride):
    """Every pooling kernel's check of its arguments (``conv_ref.check_window``, no padding),
    with a window of at least 1: a 0 had made numba's kernel read past the image."""
    check_int(name, "kernel", kernel, 1)
    check_window(name, x.shape[-2:], (kernel, kernel), stride)


def max_pool2d(x, kernel, stride):
    """Return ``(y, argmax)``: the pooled array and the flat indices of the maxima in ``x``.

    >>> y, idx = max_pool2d(np.arange(16.0).reshape(1, 1, 4, 4), 2, 2)
    >>> y[0, 0], idx[0, 0]
    (array([[ 5.,  7.],
           [13., 15.]]), array([[ 5,  7],
           [13, 15]]))
    """
    check_pool("max_pool2d", x, kernel, stride)
    n, c, h, w = x.shape
    win = sliding_window_view(x, (kernel, kernel), axis=(2, 3))[:, :, ::stride, ::stride]
    ho, wo = win.shape[2], win.shape[3]
    flat = win.reshape(n, c, ho, wo, kernel * kernel)
    local = flat.argmax(axis=-1)
    y = np.take_along_axis(flat, local[..., None], axis=-1)[..., 0]
    p, q = np.divmod(local, kernel)
    rows = np.arange(ho)[:, None] * stride + p
    cols = np.arange(wo)[None, :] * stride + q
    base = (np.arange(n)[:, None, None, None] * c + np.arange(c)[None, :, None, None]) * h * w
    return y, base + rows * w + cols


def max_pool2d_backward(g, argmax, x_shape):
    """Scatter ``g`` to the flat ``argmax`` positions of an array of ``x_shape`` (summing)."""
    out = np.zeros(int(np.prod(x_shape)), dtype=g.dtype)
    np.add.at(out, argmax.reshape(-1), g.reshape(-1))
    return out.reshape(x_shape)
