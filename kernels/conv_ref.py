"""NumPy reference of the conv2d family: the spec every accelerated conv kernel is tested against.

Shapes: images NCHW, weights OIHW (square or not), a single ``stride`` and ``padding`` for both
spatial axes. With xp = x zero-padded by ``padding``:

    conv2d:              y[n,o,i,j]  = Σ_{c,p,q} xp[n,c,i·s+p,j·s+q] · w[o,c,p,q]
    conv2d_input_grad:   gx = ∂⟨g, conv2d(x, w)⟩/∂x     (a transposed convolution of g by w)
    conv2d_weight_grad:  gw = ∂⟨g, conv2d(x, w)⟩/∂w     (a correlation of x with g)

All three are linear in each argument, and each one's derivatives are the other two: that closed
family is what lets the engine differentiate convolutions to any order (engine/primitives/conv.py).
The implementation is im2col by ``sliding_window_view`` (a strided view, no copy) and one
``tensordot`` (BLAS GEMM).

A stack of T convolutions, one per task (``learners.StackedTasks`` runs a meta-batch so), puts a
leading task axis on every array and every shape: x (T,N,C,H,W), w (T,O,C,kh,kw), and so on.
Its spec is ``over_tasks``: convolution t of the stack is the plain one on ``x[t]``, ``w[t]``.

Read next: ``kernels/causal_ref.py`` (the causal dilated 1-D convolution in NumPy: the spec).
"""
import functools

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def over_tasks(kernel, map_tasks=None):
    """``kernel`` extended to a leading task axis: given 5-D arrays (and 5-long shapes), one
    call per task on slice t of each (shape arguments lose their first entry), the results
    stacked. ``map_tasks(fn, range(T))`` runs the calls (default: a loop; the CPU kernels
    spread the tasks over the cores); the CUDA kernels batch the tasks in one launch instead.

    >>> y = conv2d(np.ones((2, 1, 1, 3, 3)), np.ones((2, 1, 1, 2, 2)))
    >>> y.shape
    (2, 1, 1, 2, 2)
    """
    @functools.wraps(kernel)
    def run(a, b, *rest):
        if a.ndim != 5:
            return kernel(a, b, *rest)
        if b.ndim != 5 or a.shape[0] != b.shape[0]:
            raise ValueError(f"{kernel.__name__}: a stack of tasks needs two 5-D arrays with "
                             f"one task axis, got {a.shape} and {b.shape}")
        rest = [tuple(r)[1:] if isinstance(r, (tuple, list)) else r for r in rest]

        def one(t):
            return kernel(a[t], b[t], *rest)
        tasks = range(a.shape[0])
        return np.stack(map_tasks(one, tasks) if map_tasks else [one(t) for t in tasks])
    return run


def out_size(size, k, stride, padding):
    """Output length of a convolution along one axis."""
    return (size + 2 * padding - k) // stride + 1


def check_int(name, what, value, least):
    """A one-line ValueError naming kernel ``name`` unless ``value`` is an int >= ``least``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) \
            or value < least:
        raise ValueError(f"{name}: {what} must be an int >= {least}, got {value!r}")


def check_window(name, sides, window, stride, padding=0):
    """A one-line ValueError naming kernel ``name`` unless ``stride`` >= 1, ``padding`` >= 0
    and the ``window`` (kh, kw) fits in the ``sides`` (h, w) zero-padded by ``padding``: every
    conv and pooling kernel checks its arguments so, as they may be called directly (arrays in,
    arrays out), not only through the engine, whose ops check first. Unchecked, numba's kernels
    had returned an empty output for a window past the padded input (or a negative padding)
    and divided by zero on stride 0, the references failed inside NumPy's window view.

    >>> check_window("conv2d", (3, 3), (4, 4), 1, 0)
    Traceback (most recent call last):
    ValueError: conv2d: window (4, 4) is larger than the padded input (3, 3) (padding 0)
    """
    check_int(name, "stride", stride, 1)
    check_int(name, "padding", padding, 0)
    window = tuple(int(k) for k in window)
    padded = tuple(int(s) + 2 * padding for s in sides)
    if any(k > p for k, p in zip(window, padded)):
        raise ValueError(f"{name}: window {window} is larger than the padded input {padded} "
                         f"(padding {padding})")


def _windows(x, kh, kw, stride, padding):
    """View of shape (N, C, Ho, Wo, kh, kw): the receptive field of every output pixel."""
    if padding:
        x = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    return sliding_window_view(x, (kh, kw), axis=(2, 3))[:, :, ::stride, ::stride]


@over_tasks
def conv2d(x, w, stride=1, padding=0):
    """Forward convolution (cross-correlation, as in every deep-learning library).

    >>> conv2d(np.ones((1, 1, 3, 3)), np.ones((1, 1, 2, 2)))[0, 0]
    array([[4., 4.],
           [4., 4.]])
    """
    check_window("conv2d", x.shape[-2:], w.shape[-2:], stride, padding)
    cols = _windows(x, w.shape[2], w.shape[3], stride, padding)
    y = np.tensordot(cols, w, axes=([1, 4, 5], [1, 2, 3]))  # (N, Ho, Wo, O)
    return np.ascontiguousarray(y.transpose(0, 3, 1, 2))


@over_tasks
def conv2d_weight_grad(x, g, w_shape, stride=1, padding=0):
    """gw[o,c,p,q] = Σ_{n,i,j} g[n,o,i,j] · xp[n,c,i·s+p,j·s+q]."""
    check_window("conv2d_weight_grad", x.shape[-2:], tuple(w_shape)[-2:], stride, padding)
    cols = _windows(x, w_shape[2], w_shape[3], stride, padding)
    return np.tensordot(g, cols, axes=([0, 2, 3], [0, 2, 3])).astype(x.dtype, copy=False)


@over_tasks
def conv2d_input_grad(g, w, x_shape, stride=1, padding=0):
    """gx = Σ over kernel taps (p, q) of the GEMM g·w scattered back to its input pixels.

    Input pixels that no window covers (when the stride does not divide the size) get 0.
    """
    check_window("conv2d_input_grad", tuple(x_shape)[-2:], w.shape[-2:], stride, padding)
    n, c, h, wd = x_shape
    kh, kw = w.shape[2], w.shape[3]
    ho, wo = g.shape[2], g.shape[3]
    cols = np.tensordot(g, w, axes=([1], [0]))  # (N, Ho, Wo, C, kh, kw)
    gx = np.zeros((n, c, h + 2 * padding, wd + 2 * padding), dtype=np.result_type(g, w))
    for p in range(kh):
        for q in range(kw):
            rows = slice(p, p + stride * (ho - 1) + 1, stride)
            colz = slice(q, q + stride * (wo - 1) + 1, stride)
            gx[:, :, rows, colz] += cols[:, :, :, :, p, q].transpose(0, 3, 1, 2)
    return gx[:, :, padding:padding + h, padding:padding + wd]
