"""numba CPU kernels of fused batch normalisation; same contract as ``norm_ref.py``.

Parallel over channels. Forward: one pass gathers Σx and Σx² (float64 accumulators), one pass
writes y. Backward: one pass gathers Σx, Σx², Σg, Σg·x, one pass writes dx. The composite
(about 9 full-size temporaries forward and 15 backward) is what this replaces.

Read next: ``kernels/select_numba.py`` (the elementwise select with numba).
"""
import numpy as np
from numba import njit, prange


@njit(parallel=True, cache=True, fastmath=True)
def _forward(x, w, b, eps):
    n, c, m = x.shape
    y = np.empty_like(x)
    mean = np.empty(c)
    var = np.empty(c)
    for ch in prange(c):
        s = 0.0
        s2 = 0.0
        for i in range(n):
            for k in range(m):
                v = x[i, ch, k]
                s += v
                s2 += v * v
        mu = s / (n * m)
        sig2 = max(s2 / (n * m) - mu * mu, 0.0)
        scale = w[ch] / np.sqrt(sig2 + eps)
        shift = b[ch] - mu * scale
        for i in range(n):
            for k in range(m):
                y[i, ch, k] = x[i, ch, k] * scale + shift
        mean[ch] = mu
        var[ch] = sig2
    return y, mean, var


@njit(parallel=True, cache=True, fastmath=True)
def _backward(x, w, g, eps, dx, dw, db):
    """Writes into dx, dw, db: views of one packed output array (no concatenation copy)."""
    n, c, m = x.shape
    count = n * m
    for ch in prange(c):
        sx = 0.0
        sx2 = 0.0
        sg = 0.0
        sgx = 0.0
        for i in range(n):
            for k in range(m):
                v = x[i, ch, k]
                gv = g[i, ch, k]
                sx += v
                sx2 += v * v
                sg += gv
                sgx += gv * v
        mu = sx / count
        rstd = 1.0 / np.sqrt(max(sx2 / count - mu * mu, 0.0) + eps)
        sum_gxhat = (sgx - mu * sg) * rstd          # Σ g·x̂
        mean_gh = w[ch] * sg / count                # mean(ĝ)
        mean_ghx = w[ch] * sum_gxhat / count        # mean(ĝ·x̂)
        a = w[ch] * rstd
        for i in range(n):
            for k in range(m):
                xhat = (x[i, ch, k] - mu) * rstd
                dx[i, ch, k] = a * g[i, ch, k] - rstd * (mean_gh + xhat * mean_ghx)
        dw[ch] = sum_gxhat
        db[ch] = sg


def _as3(a):
    return np.ascontiguousarray(a).reshape(a.shape[0], a.shape[1], -1)


def batch_norm(x, w, b, eps=1e-5):
    """Return (y, mean, biased variance)."""
    y, mean, var = _forward(_as3(x), np.asarray(w, x.dtype), np.asarray(b, x.dtype), eps)
    return y.reshape(x.shape), mean, var


def batch_norm_backward(x, w, b, g, eps=1e-5):
    """Packed concat(vec(dx), dw, db), written in place into one buffer."""
    x3, c = _as3(x), x.shape[1]
    packed = np.empty(x.size + 2 * c, dtype=x.dtype)
    _backward(x3, np.asarray(w, x.dtype), _as3(g.astype(x.dtype, copy=False)), eps,
              packed[:x.size].reshape(x3.shape), packed[x.size:x.size + c], packed[x.size + c:])
    return packed
