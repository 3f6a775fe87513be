"""CPU kernels of the causal dilated 1-D convolution; same contract as ``causal_ref.py``.

Each tap j of the kernel is one shifted matrix product, run by BLAS:

    y[:, :, s:]        += w[:, :, j] @ x[:, :, :T − s]                  (s = (k − 1 − j)·d)
    gx[:, :, :T − s]   += w[:, :, j]ᵀ @ g[:, :, s:]
    gw[:, :, j]         = G_s (O × N·(T − s)) @ X_s (C × N·(T − s))ᵀ

SNAIL's blocks have hundreds of input channels and short sequences, a shape where a GEMM per
tap beats any loop nest (numba loops ran this 3–10× slower). A tap whose shift reaches past the
sequence (s ≥ T) reads nothing and is skipped, so no index ever falls before t = 0.

Read next: ``kernels/pool_numba.py`` (max pooling with numba).
"""
import numpy as np

from .causal_ref import _check


def _prepared(*arrays):
    dtype = np.result_type(*arrays)
    return [np.ascontiguousarray(a, dtype=dtype) for a in arrays], dtype


def causal_conv1d(x, w, dilation=1):
    """y (N, O, T); see ``causal_ref.causal_conv1d``."""
    _check(x.shape, w.shape, dilation)
    (x, w), dtype = _prepared(x, w)
    (n, _, t), (o, _, k) = x.shape, w.shape
    y = np.zeros((n, o, t), dtype=dtype)
    for j in range(k):
        s = (k - 1 - j) * dilation
        if s < t:
            y[:, :, s:] += np.matmul(np.ascontiguousarray(w[:, :, j]), x[:, :, :t - s])
    return y


def causal_conv1d_input_grad(g, w, dilation=1):
    """gx (N, C, T); see ``causal_ref.causal_conv1d_input_grad``."""
    (g, w), dtype = _prepared(g, w)
    (n, _, t), (_, c, k) = g.shape, w.shape
    gx = np.zeros((n, c, t), dtype=dtype)
    for j in range(k):
        s = (k - 1 - j) * dilation
        if s < t:
            gx[:, :, :t - s] += np.matmul(np.ascontiguousarray(w[:, :, j].T), g[:, :, s:])
    return gx


def causal_conv1d_weight_grad(x, g, w_shape, dilation=1):
    """gw (O, C, k); see ``causal_ref.causal_conv1d_weight_grad``."""
    (x, g), dtype = _prepared(x, g)
    o, c, k = w_shape
    t = x.shape[2]
    gw = np.zeros((o, c, k), dtype=dtype)
    for j in range(k):
        s = (k - 1 - j) * dilation
        if s < t:
            gs = g[:, :, s:].transpose(1, 0, 2).reshape(o, -1)
            xs = x[:, :, :t - s].transpose(1, 0, 2).reshape(c, -1)
            gw[:, :, j] = gs @ xs.T
    return gw
