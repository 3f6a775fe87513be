"""numba.cuda fused cosine attention (Matching Networks), forward and backward.

Spec and formulas: ``attention_ref.py``. Shapes q (B, Q, D), s (B, S, D), y (B, S, N).

- forward: one thread per query row (b, i) computes its cosine similarities to the S support
  rows twice (once for the max, once for the softmax-weighted sum of labels), so nothing of
  size S is stored per thread;
- backward: a first kernel (one thread per query row) writes the attention A and
  dZ = A ⊙ (dA − Σ_j A dA) with dA = g yᵀ, and the query gradient; a second (one thread per
  support row) reads them to form the support and label gradients. Both write into the packed
  output (dq, ds, dy) that the engine's fused primitive expects.

The row norms r(v) = sqrt(|v|² + eps²) come from a small kernel of their own.

Read next: ``kernels/norm_cuda.py`` (batch normalisation on a GPU).
"""
import math

from . import _cuda, array_module
from ._cuda import cuda


@cuda.jit
def _norms(v, r, eps):
    t = cuda.grid(1)
    if t >= r.size:
        return
    b, i = t // v.shape[1], t % v.shape[1]
    acc = eps * eps
    for d in range(v.shape[2]):
        acc += v[b, i, d] * v[b, i, d]
    r[b, i] = math.sqrt(acc)


@cuda.jit(device=True)
def _cos(q, s, rq, rs, b, i, j):
    acc = 0.0
    for d in range(q.shape[2]):
        acc += q[b, i, d] * s[b, j, d]
    return acc / (rq[b, i] * rs[b, j])


@cuda.jit(device=True)
def _row_max(q, s, rq, rs, b, i):
    top = _cos(q, s, rq, rs, b, i, 0)
    for j in range(1, s.shape[1]):
        top = max(top, _cos(q, s, rq, rs, b, i, j))
    return top


@cuda.jit(device=True)
def _through_norm(v, r, dv, b, i):
    """dv ← dv / r − v (v · dv) / r³ on row (b, i): the VJP of v ↦ v / r(v), in place."""
    dot = 0.0
    for d in range(v.shape[2]):
        dot += v[b, i, d] * dv[b, i, d]
    rr = r[b, i]
    for d in range(v.shape[2]):
        dv[b, i, d] = dv[b, i, d] / rr - v[b, i, d] * dot / (rr * rr * rr)


@cuda.jit
def _forward(q, s, y, rq, rs, out):
    t = cuda.grid(1)
    if t >= q.shape[0] * q.shape[1]:
        return
    b, i = t // q.shape[1], t % q.shape[1]
    top = _row_max(q, s, rq, rs, b, i)
    for n in range(y.shape[2]):
        out[b, i, n] = 0
    total = 0.0
    for j in range(s.shape[1]):
        e = math.exp(_cos(q, s, rq, rs, b, i, j) - top)
        total += e
        for n in range(y.shape[2]):
            out[b, i, n] += e * y[b, j, n]
    for n in range(y.shape[2]):
        out[b, i, n] /= total


@cuda.jit
def _backward_queries(q, s, y, g, rq, rs, a, dz, dq):
    t = cuda.grid(1)
    if t >= q.shape[0] * q.shape[1]:
        return
    b, i = t // q.shape[1], t % q.shape[1]
    top = _row_max(q, s, rq, rs, b, i)
    total = 0.0
    for j in range(s.shape[1]):
        a[b, i, j] = math.exp(_cos(q, s, rq, rs, b, i, j) - top)
        total += a[b, i, j]
    mean_da = 0.0                       # Σ_j A dA
    for j in range(s.shape[1]):
        a[b, i, j] /= total
        da = 0.0
        for n in range(y.shape[2]):
            da += g[b, i, n] * y[b, j, n]
        dz[b, i, j] = da
        mean_da += a[b, i, j] * da
    for j in range(s.shape[1]):
        dz[b, i, j] = a[b, i, j] * (dz[b, i, j] - mean_da)
    for d in range(q.shape[2]):        # dq̂ = dZ ŝ
        acc = 0.0
        for j in range(s.shape[1]):
            acc += dz[b, i, j] * s[b, j, d] / rs[b, j]
        dq[b, i, d] = acc
    _through_norm(q, rq, dq, b, i)


@cuda.jit
def _backward_support(q, s, g, rq, rs, a, dz, ds, dy):
    t = cuda.grid(1)
    if t >= s.shape[0] * s.shape[1]:
        return
    b, j = t // s.shape[1], t % s.shape[1]
    for d in range(s.shape[2]):        # dŝ = dZᵀ q̂
        acc = 0.0
        for i in range(q.shape[1]):
            acc += dz[b, i, j] * q[b, i, d] / rq[b, i]
        ds[b, j, d] = acc
    _through_norm(s, rs, ds, b, j)
    for n in range(g.shape[2]):        # dy = Aᵀ g
        acc = 0.0
        for i in range(q.shape[1]):
            acc += a[b, i, j] * g[b, i, n]
        dy[b, j, n] = acc


def _inputs(*arrays):
    """The arrays C-contiguous in one dtype, the reference's: NumPy's promotion of them
    (float32 embeddings with float64 labels: float64), float64 for integers (its norms divide);
    each array's own dtype had given float32 results there, or truncated integers."""
    xp = array_module(arrays[0])
    dtype = xp.result_type(*arrays)
    dtype = dtype if dtype.kind == "f" else xp.float64
    return [xp.ascontiguousarray(a, dtype=dtype) for a in arrays]


def _row_norms(v, eps):
    r = array_module(v).empty(v.shape[:2], dtype=v.dtype)
    _cuda.launch(_norms, r.size, v, r, eps)
    return r


def cosine_attention(q, s, y, eps=1e-8):
    """out (B, Q, N): softmax over the support of cosine similarities, times the labels."""
    xp = array_module(q)
    q, s, y = _inputs(q, s, y)
    out = xp.empty((q.shape[0], q.shape[1], y.shape[2]), dtype=q.dtype)
    _cuda.launch(_forward, q.shape[0] * q.shape[1], q, s, y, _row_norms(q, eps),
                 _row_norms(s, eps), out)
    return out


def cosine_attention_backward(q, s, y, g, eps=1e-8):
    """Packed concat(vec(dq), vec(ds), vec(dy)), as ``attention_ref`` returns it."""
    xp = array_module(q)
    q, s, y, g = _inputs(q, s, y, g)
    rq, rs = _row_norms(q, eps), _row_norms(s, eps)
    packed = xp.empty(q.size + s.size + y.size, dtype=q.dtype)
    dq = packed[:q.size].reshape(q.shape)
    ds = packed[q.size:q.size + s.size].reshape(s.shape)
    dy = packed[q.size + s.size:].reshape(y.shape)
    a = xp.empty((q.shape[0], q.shape[1], s.shape[1]), dtype=q.dtype)
    dz = xp.empty_like(a)
    _cuda.launch(_backward_queries, q.shape[0] * q.shape[1], q, s, y, g, rq, rs, a, dz, dq)
    _cuda.launch(_backward_support, s.shape[0] * s.shape[1], q, s, g, rq, rs, a, dz, ds, dy)
    return packed
