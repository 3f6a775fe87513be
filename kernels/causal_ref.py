"""NumPy reference of the causal dilated 1-D convolution (SNAIL's temporal convolution): the
spec for the accelerated versions.

    y[n, o, t] = Σ_c Σ_j w[o, c, j] · x[n, c, t − (k − 1 − j)·d]      (x = 0 before t = 0)

for x (N, C, T), w (O, C, k), dilation d: the output at step t reads steps t, t − d, …,
t − (k − 1)·d only, never a later one. The family is closed like conv2d's:

    ⟨g, causal_conv1d(x, w)⟩ = ⟨causal_conv1d_input_grad(g, w), x⟩
                             = ⟨causal_conv1d_weight_grad(x, g), w⟩,

where the input gradient is the anti-causal correlation gx[n, c, s] = Σ_o Σ_j w[o, c, j] ·
g[n, o, s + (k − 1 − j)·d] and the weight gradient gw[o, c, j] = Σ_n Σ_t g[n, o, t] ·
x[n, c, t − (k − 1 − j)·d]. Each tap j is one matrix product on shifted time slices.

Read next: ``kernels/pool_ref.py`` (max pooling in NumPy: the spec).
"""
import numpy as np


def _check(x_shape, w_shape, dilation):
    if len(x_shape) != 3 or len(w_shape) != 3 or x_shape[1] != w_shape[1]:
        raise ValueError(f"causal_conv1d: input {tuple(x_shape)} must be (N, C, T) and weight "
                         f"{tuple(w_shape)} (O, C, k) with the same C")
    if dilation < 1:
        raise ValueError(f"causal_conv1d: dilation must be >= 1, got {dilation}")


def causal_conv1d(x, w, dilation=1):
    """y (N, O, T): the causal dilated convolution of x (N, C, T) with w (O, C, k).

    >>> causal_conv1d(np.arange(4.0).reshape(1, 1, 4), np.array([[[1.0, 10.0]]]), 2)
    array([[[ 0., 10., 20., 31.]]])
    """
    _check(x.shape, w.shape, dilation)
    n, _, t = x.shape
    o, _, k = w.shape
    y = np.zeros((n, o, t), dtype=np.result_type(x, w))
    for j in range(k):
        shift = (k - 1 - j) * dilation
        if shift < t:
            y[:, :, shift:] += np.einsum("oc,nct->not", w[:, :, j], x[:, :, :t - shift])
    return y


def causal_conv1d_input_grad(g, w, dilation=1):
    """gx (N, C, T) = the input gradient of ``causal_conv1d`` for output gradient g (N, O, T)."""
    n, _, t = g.shape
    o, c, k = w.shape
    gx = np.zeros((n, c, t), dtype=np.result_type(g, w))
    for j in range(k):
        shift = (k - 1 - j) * dilation
        if shift < t:
            gx[:, :, :t - shift] += np.einsum("oc,not->nct", w[:, :, j], g[:, :, shift:])
    return gx


def causal_conv1d_weight_grad(x, g, w_shape, dilation=1):
    """gw (O, C, k) = the weight gradient of ``causal_conv1d`` for input x and gradient g."""
    o, c, k = w_shape
    t = x.shape[2]
    gw = np.zeros((o, c, k), dtype=np.result_type(x, g))
    for j in range(k):
        shift = (k - 1 - j) * dilation
        if shift < t:
            gw[:, :, j] = np.einsum("not,nct->oc", g[:, :, shift:], x[:, :, :t - shift])
    return gw
