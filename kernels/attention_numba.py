"""numba CPU kernels of fused cosine attention: one pass per (task, query) row, forward and back.

Same contract as ``attention_ref.py``. Each parallel iteration owns one task b: it normalises
that task's queries and support once, then for every query computes the similarities, the
softmax and the read-out (forward) or the softmax backward and the normalisation backward
(backward), without materialising the (Q, S) matrices of the whole batch.

Every number is of the inputs' dtype, as in the reference: the sums start at a zero of that
dtype (``dtype.type(0)``) and eps² comes in it. A ``0.0`` or an ``eps`` from Python is a
float64 to numba: ``z = 0.0; z += q·s`` had run float32 attention's dot products, norms,
softmax (its ``exp`` too) and backward sums in float64, each number converted there and back
(forward 1.1–1.5×, backward 1.3–1.8× slower on one core; the float32 error against a float64
reference is about the float32 reference's). ``tests/test_kernel_typing.py`` reads numba's typing.

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
def _normalize(v, eps2):
    """The rows v̂ = v / r and their smooth norms r = sqrt(|v|² + eps²); ``eps2`` is eps², of
    v's dtype (as the reference's ``+ eps * eps`` on an array of that dtype)."""
    n, d = v.shape
    out = np.empty_like(v)
    r = np.empty(n, dtype=v.dtype)
    for i in range(n):
        acc = eps2
        for k in range(d):
            acc += v[i, k] * v[i, k]
        r[i] = np.sqrt(acc)
        for k in range(d):
            out[i, k] = v[i, k] / r[i]
    return out, r


@njit(cache=True, fastmath=REASSOC)
def _softmax_row(qh_i, sh):
    m, c = sh.shape[0], sh.dtype.type
    a = np.empty(m, dtype=sh.dtype)
    best = c(-np.inf)
    for j in range(m):
        z = c(0)
        for k in range(sh.shape[1]):
            z += qh_i[k] * sh[j, k]
        a[j] = z
        best = max(best, z)
    total = c(0)
    for j in range(m):
        a[j] = np.exp(a[j] - best)
        total += a[j]
    for j in range(m):
        a[j] /= total
    return a


@njit(parallel=True, cache=True, fastmath=REASSOC)
def _forward(q, s, y, eps2):
    b_n, q_n, _ = q.shape
    out = np.zeros((b_n, q_n, y.shape[2]), dtype=q.dtype)
    for b in prange(b_n):
        qh, _ = _normalize(q[b], eps2)
        sh, _ = _normalize(s[b], eps2)
        for i in range(q_n):
            a = _softmax_row(qh[i], sh)
            for j in range(sh.shape[0]):
                for c in range(y.shape[2]):
                    out[b, i, c] += a[j] * y[b, j, c]
    return out


@njit(cache=True, fastmath=REASSOC)
def _norm_backward(v, r, dvh, out):
    for i in range(v.shape[0]):
        dot = v.dtype.type(0)
        for k in range(v.shape[1]):
            dot += v[i, k] * dvh[i, k]
        for k in range(v.shape[1]):
            out[i, k] = dvh[i, k] / r[i] - v[i, k] * dot / r[i] ** 3


@njit(parallel=True, cache=True, fastmath=REASSOC)
def _backward(q, s, y, g, eps2):
    b_n, q_n, d = q.shape
    s_n, n_cls, zero = s.shape[1], y.shape[2], q.dtype.type(0)
    dq = np.empty_like(q)
    ds = np.empty_like(s)
    dy = np.zeros_like(y)
    for b in prange(b_n):
        qh, rq = _normalize(q[b], eps2)
        sh, rs = _normalize(s[b], eps2)
        dqh = np.zeros((q_n, d), dtype=q.dtype)
        dsh = np.zeros((s_n, d), dtype=q.dtype)
        for i in range(q_n):
            a = _softmax_row(qh[i], sh)
            da = np.empty(s_n, dtype=q.dtype)
            mean = zero
            for j in range(s_n):
                acc = zero
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
    return _forward(c[0], c[1], c[2], dt.type(eps * eps))


def cosine_attention_backward(q, s, y, g, eps=1e-8):
    """Fused backward, packed as concat(vec(dq), vec(ds), vec(dy))."""
    dt = np.result_type(q, s, y, g)
    c = [np.ascontiguousarray(a, dtype=dt) for a in (q, s, y, g)]
    dq, ds, dy = _backward(c[0], c[1], c[2], c[3], dt.type(eps * eps))
    return np.concatenate([dq.ravel(), ds.ravel(), dy.ravel()])
