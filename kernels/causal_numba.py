"""numba CPU kernels of the causal dilated 1-D convolution; same contract as ``causal_ref.py``.

SNAIL's sequences are short (T ≤ 101 steps for 20-way 5-shot) and its channel counts small,
so each kernel is a direct loop nest, parallel over the independent outputs: (image, output
channel) rows of y, (image, input channel) rows of gx, output channels of gw. The time loop
of each tap starts at its shift, so no index ever reads before t = 0 (no padding copy).
Accumulation is in float64 and rounded once.

Read next: ``kernels/pool_numba.py`` (max pooling with numba).
"""
import numpy as np
from numba import njit, prange

from .causal_ref import _check


@njit(parallel=True, cache=True)
def _forward(x, w, d, y):
    n, c, t = x.shape
    o, _, k = w.shape
    for row in prange(n * o):
        b, oc = row // o, row % o
        acc = np.zeros(t)
        for ch in range(c):
            for j in range(k):
                s = (k - 1 - j) * d
                wv = w[oc, ch, j]
                for i in range(s, t):
                    acc[i] += wv * x[b, ch, i - s]
        for i in range(t):
            y[b, oc, i] = acc[i]


@njit(parallel=True, cache=True)
def _input_grad(g, w, d, gx):
    n, o, t = g.shape
    _, c, k = w.shape
    for row in prange(n * c):
        b, ch = row // c, row % c
        acc = np.zeros(t)
        for oc in range(o):
            for j in range(k):
                s = (k - 1 - j) * d
                wv = w[oc, ch, j]
                for i in range(0, t - s):
                    acc[i] += wv * g[b, oc, i + s]
        for i in range(t):
            gx[b, ch, i] = acc[i]


@njit(parallel=True, cache=True)
def _weight_grad_loop(x, g, d, gw):
    n, c, t = x.shape
    o, _, k = gw.shape
    for oc in prange(o):
        for ch in range(c):
            for j in range(k):
                s = (k - 1 - j) * d
                acc = 0.0
                for b in range(n):
                    for i in range(s, t):
                        acc += g[b, oc, i] * x[b, ch, i - s]
                gw[oc, ch, j] = acc


def _prepared(*arrays):
    dtype = np.result_type(*arrays)
    return [np.ascontiguousarray(a, dtype=dtype) for a in arrays], dtype


def causal_conv1d(x, w, dilation=1):
    """y (N, O, T); see ``causal_ref.causal_conv1d``."""
    _check(x.shape, w.shape, dilation)
    (x, w), dtype = _prepared(x, w)
    y = np.empty((x.shape[0], w.shape[0], x.shape[2]), dtype=dtype)
    _forward(x, w, dilation, y)
    return y


def causal_conv1d_input_grad(g, w, dilation=1):
    """gx (N, C, T); see ``causal_ref.causal_conv1d_input_grad``."""
    (g, w), dtype = _prepared(g, w)
    gx = np.empty((g.shape[0], w.shape[1], g.shape[2]), dtype=dtype)
    _input_grad(g, w, dilation, gx)
    return gx


def causal_conv1d_weight_grad(x, g, w_shape, dilation=1):
    """gw (O, C, k); see ``causal_ref.causal_conv1d_weight_grad``."""
    (x, g), dtype = _prepared(x, g)
    gw = np.empty(tuple(w_shape), dtype=dtype)
    _weight_grad_loop(x, g, dilation, gw)
    return gw
