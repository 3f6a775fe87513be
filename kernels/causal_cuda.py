"""numba.cuda versions of the causal dilated 1-D convolution: one thread per output element.

    causal_conv1d:              y[n, o, t]  = Σ_c Σ_j w[o, c, j] · x[n, c, t − (k−1−j)·d]
    causal_conv1d_input_grad:   gx[n, c, s] = Σ_o Σ_j w[o, c, j] · g[n, o, s + (k−1−j)·d]
    causal_conv1d_weight_grad:  gw[o, c, j] = Σ_n Σ_t g[n, o, t] · x[n, c, t − (k−1−j)·d]

Every thread writes one element it alone owns (gathers, no atomics). Spec: ``causal_ref.py``;
tested against it under the CUDA simulator (``tests/test_cuda_kernels.py``).

Read next: ``kernels/pool_cuda.py`` (max pooling on a GPU).
"""
from . import _cuda, array_module
from ._cuda import cuda
from .causal_ref import _check


@cuda.jit
def _forward(x, w, d, y):
    idx = cuda.grid(1)
    n, o, t = y.shape
    if idx >= n * o * t:
        return
    b, oc, i = idx // (o * t), (idx // t) % o, idx % t
    c, k = w.shape[1], w.shape[2]
    acc = 0.0     # never seeded from an output: CuPy's empty memory holds anything
    for ch in range(c):
        for j in range(k):
            s = (k - 1 - j) * d
            if i >= s:
                acc += w[oc, ch, j] * x[b, ch, i - s]
    y[b, oc, i] = acc


@cuda.jit
def _input_grad(g, w, d, gx):
    idx = cuda.grid(1)
    n, c, t = gx.shape
    if idx >= n * c * t:
        return
    b, ch, i = idx // (c * t), (idx // t) % c, idx % t
    o, k = w.shape[0], w.shape[2]
    acc = 0.0     # never seeded from an output: CuPy's empty memory holds anything
    for oc in range(o):
        for j in range(k):
            s = (k - 1 - j) * d
            if i + s < t:
                acc += w[oc, ch, j] * g[b, oc, i + s]
    gx[b, ch, i] = acc


@cuda.jit
def _weight_grad(x, g, d, gw):
    idx = cuda.grid(1)
    o, c, k = gw.shape
    if idx >= o * c * k:
        return
    oc, ch, j = idx // (c * k), (idx // k) % c, idx % k
    n, t = x.shape[0], x.shape[2]
    s = (k - 1 - j) * d
    acc = 0.0     # never seeded from an output: CuPy's empty memory holds anything
    for b in range(n):
        for i in range(s, t):
            acc += g[b, oc, i] * x[b, ch, i - s]
    gw[oc, ch, j] = acc


def _inputs(a, b):
    xp = array_module(a)
    dtype = xp.result_type(a, b)
    return [xp.ascontiguousarray(v, dtype=dtype) for v in (a, b)], xp, dtype


def causal_conv1d(x, w, dilation=1):
    """y (N, O, T); see ``causal_ref.causal_conv1d``."""
    _check(x.shape, w.shape, dilation)
    (x, w), xp, dtype = _inputs(x, w)
    y = xp.empty((x.shape[0], w.shape[0], x.shape[2]), dtype=dtype)
    _cuda.launch(_forward, y.size, x, w, dilation, y)
    return y


def causal_conv1d_input_grad(g, w, dilation=1):
    """gx (N, C, T); see ``causal_ref.causal_conv1d_input_grad``."""
    (g, w), xp, dtype = _inputs(g, w)
    gx = xp.empty((g.shape[0], w.shape[1], g.shape[2]), dtype=dtype)
    _cuda.launch(_input_grad, gx.size, g, w, dilation, gx)
    return gx


def causal_conv1d_weight_grad(x, g, w_shape, dilation=1):
    """gw (O, C, k); see ``causal_ref.causal_conv1d_weight_grad``."""
    (x, g), xp, dtype = _inputs(x, g)
    gw = xp.empty(tuple(w_shape), dtype=dtype)
    _cuda.launch(_weight_grad, gw.size, x, g, dilation, gw)
    return gw
