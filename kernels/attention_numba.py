"""numba CPU kernels of fused cosine attention: one pass per (task, query) row, forward and back.

Same contract as ``attention_ref.py``. Each parallel iteration owns one task b: it normalises
that task's queries and support once, then for every query computes the similarities, the
softmax and the read-out (forward) or the softmax backward and the normalisation backward
(backward), without materialising the (Q, S) matrices of the whole batch.

Read next: ``kernels/norm_numba.py`` (batch norm with numba).
"""
import numpy as np
from numba import njit, prange

# Sums may be reordered (no other fast-math license: NaN and inf keep their rules): the dot
# products and norms over d then run as vector reductions, which strict IEEE order forbids
# (LLVM: "cannot prove it is safe to reorder floating-point operations"); 1.4–2.7× faster on
# one core, the error against the reference unchanged (~3e-7 in float32, ~1e-15 in float64).
REASSOC = {"reassoc"}


@njit(cache=True, fastmath=REASSOC)
def _normalize(v, eps):
    n, d = v.shape
    out = np.empty_like(v)
    r = np.empty(n, dtype=v.dtype)
    for i in range(n):
        acc = eps * eps
        for k in range(d):
            acc += v[i, k] * v[i, k]
        r[i] = np.sqrt(acc)
        for k in range(d):
            out[i, k] = v[i, k] / r[i]
    return out, r


@njit(cache=True, fastmath=REASSOC)
def _softmax_row(qh_i, sh):
    m = sh.shape[0]
    a = np.empty(m, dtype=sh.dtype)
    best = -np.inf
    for j in range(m):
        z = 0.0
        for k in range(sh.shape[1]):
            z += qh_i[k] * sh[j, k]
        a[j] = z
        best = max(best, z)
    total = 0.0
    for j in range(m):
        a[j] = np.exp(a[j] - best)
        total += a[j]
    for j in range(m):
        a[j] /= total
    return a


@njit(parallel=True, cache=True, fastmath=REASSOC)
def _forward(q, s, y, eps):
    b_n, q_n, _ = q.shape
    out = np.zeros((b_n, q_n, y.shape[2]), dtype=q.dtype)
    for b in prange(b_n):
        qh, _ = _normalize(q[b], eps)
        sh, _ = _normalize(s[b], eps)
        for i in range(q_n):
            a = _softmax_row(qh[i], sh)
            for j in range(sh.shape[0]):
                for c in range(y.shape[2]):
                    out[b, i, c] += a[j] * y[b, j, c]
    return out


@njit(cache=True, fastmath=REASSOC)
def _norm_backward(v, r, dvh, out):
    for i in range(v.shape[0]):
        dot = 0.0
        for k in range(v.shape[1]):
            dot += v[i, k] * dvh[i, k]
        for k in range(v.shape[1]):
            out[i, k] = dvh[i, k] / r[i] - v[i, k] * dot / r[i] ** 3


@njit(parallel=True, cache=True, fastmath=REASSOC)
def _backward(q, s, y, g, eps):
    b_n, q_n, d = q.shape
    s_n, n_cls = s.shape[1], y.shape[2]
    dq = np.empty_like(q)
    ds = np.empty_like(s)
    dy = np.zeros_like(y)
    for b in prange(b_n):
        qh, rq = _normalize(q[b], eps)
        sh, rs = _normalize(s[b], eps)
        dqh = np.zeros((q_n, d), dtype=q.dtype)
        dsh = np.zeros((s_n, d), dtype=q.dtype)
        for i in range(q_n):
            a = _softmax_row(qh[i], sh)
            da = np.empty(s_n, dtype=q.dtype)
            mean = 0.0
            for j in range(s_n):
                acc = 0.0
                for c in range(n_cls):
                    acc += g[b, i, c] * y[b, j, c]
                    dy[b, j, c] += a[j] * g[b, i, c]
                da[j] = acc
                mean += a[j] * acc
            for j in range(s_n):
                dz = a[j] * (da[j] - mean)
                for k in range(d):
                    dqh[i, k] += dz * sh[j, k]
                    dsh[j, k] += dz * qh[i, k]
        _norm_backward(q[b], rq, dqh, dq[b])
        _norm_backward(s[b], rs, dsh, ds[b])
    return dq, ds, dy


def cosine_attention(q, s, y, eps=1e-8):
    """Fused forward; see ``attention_ref.cosine_attention``."""
    dt = np.result_type(q, s, y)
    c = [np.ascontiguousarray(a, dtype=dt) for a in (q, s, y)]
    return _forward(c[0], c[1], c[2], eps)


def cosine_attention_backward(q, s, y, g, eps=1e-8):
    """Fused backward, packed as concat(vec(dq), vec(ds), vec(dy))."""
    dt = np.result_type(q, s, y, g)
    c = [np.ascontiguousarray(a, dtype=dt) for a in (q, s, y, g)]
    dq, ds, dy = _backward(c[0], c[1], c[2], c[3], eps)
    return np.concatenate([dq.ravel(), ds.ravel(), dy.ravel()])
