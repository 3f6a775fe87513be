"""numba.cuda fused batch normalisation: one block per channel, the reference's own formulas.

Spec: ``norm_ref.py``. A block of ``BLOCK`` threads owns one channel of one task (x viewed
as (T, N, C, M), a single batch norm a stack of one; ``norm_numba._as4``'s layout): its
threads take the channel's N·M values in turn (neighbouring threads, neighbouring values; one
loop over them all, so a late layer's 3×3 planes keep every thread busy, walking (image,
value) by adding: ``_walk``), each keeping float64
partial sums, which a tree in shared memory adds up (``_tree``: the same order every run, so
the same bits). Every per-channel mean is taken as the reference takes it, in float64, in
passes over the channel (the mean, then the variance about it, then the sums that need both,
then the outputs): the formulas are the reference's, element by element, so the infinities
and NaNs of special inputs land where the reference's do, with no host check and no second
path (the numba CPU kernels save passes with shifted one-pass sums, and send such calls to
the reference after a check on the host, which on a GPU would wait for it at every batch
norm).

One launch a call, where the reference on CuPy made 15 to 60 (casts, reductions, elementwise
passes): forward, backward and the double backward (what second-order MAML runs through every
batch norm). Integer inputs go to the reference, which runs on CuPy arrays as they are.

Read next: ``kernels/optim_cuda.py`` (Adam's update on a GPU).
"""
import math

from numba import float64

from . import _cuda, array_module, norm_ref
from ._cuda import cuda

SLOTS = 512      # shared-memory slots of a sum: the most threads a block may have here
# Threads a block: a channel's sums are one block's work, so its threads are many (a conv4 layer
# of 64 channels is 64 blocks; 128 threads each left the H200 mostly idle: 17 of conv4's 27 ms
# on the GPU, measured 2026-12-04). 512 is what the double backward's registers allow (ptxas,
# sm_90: at most 62, 70 and 112 a thread for the three kernels, of the 128 that 512 threads
# may have; tests/test_cuda_compile.py holds every kernel to its block).
BLOCK = 512


@cuda.jit(device=True)
def _tree(buf, rows):
    """Add up rows ``0 .. rows-1`` of ``buf`` (one partial sum a thread, in columns) into
    column 0, pairwise over the block's threads; every thread then reads the totals."""
    tid, n = cuda.threadIdx.x, cuda.blockDim.x
    cuda.syncthreads()
    step = 1
    while step < n:
        if tid % (2 * step) == 0 and tid + step < n:
            for j in range(rows):
                buf[j, tid] += buf[j, tid + step]
        step *= 2
        cuda.syncthreads()


@cuda.jit(device=True)
def _channel(x):
    """(task, channel) of this block's channel of x (T, N, C, M), this thread, threads a block,
    values an image (M) and in the channel (N·M)."""
    c, m = x.shape[2], x.shape[3]
    return (cuda.blockIdx.x // c, cuda.blockIdx.x % c, cuda.threadIdx.x, cuda.blockDim.x, m,
            x.shape[1] * m)


@cuda.jit(device=True)
def _walk(m):
    """Where this thread starts in a channel of images of ``m`` values each, and how far a step
    of ``blockDim.x`` values moves it: (image, value, images a step, values a step). The loops
    walk (image, value) by adding (``_next``), with no integer division a value: a GPU emulates
    an int64 division in tens of instructions. (On the H200 the loops that divided each value's
    index made the stacked meta-batch's batch norms slower, 8.5 to 10.0 ms, 2026-12-04; this
    walk visits the same values in the same order, but is not yet timed on a GPU.)"""
    tid, step, m = cuda.threadIdx.x, cuda.blockDim.x, max(m, 1)   # (no values: no loop)
    return tid // m, tid % m, step // m, step % m


@cuda.jit(device=True)
def _next(i, k, di, dk, m):
    """The (image, value) a step of ``blockDim.x`` values after (i, k), k and dk under m."""
    k += dk
    if k >= m:
        return i + di + 1, k - m
    return i + di, k


@cuda.jit(device=True)
def _moments(x, buf, t, ch):
    """(mean, biased variance) of channel ``ch`` of task ``t``, as the reference: the mean,
    then the mean square about it. Leaves ``buf`` free for the caller."""
    _, _, tid, step, m, count = _channel(x)
    s = 0.0
    i, k, di, dk = _walk(m)
    for _ in range(tid, count, step):
        s += float64(x[t, i, ch, k])
        i, k = _next(i, k, di, dk, m)
    buf[0, tid] = s
    _tree(buf, 1)
    mu = buf[0, 0] / count
    cuda.syncthreads()
    s = 0.0
    i, k, di, dk = _walk(m)
    for _ in range(tid, count, step):
        d = float64(x[t, i, ch, k]) - mu
        s += d * d
        i, k = _next(i, k, di, dk, m)
    buf[0, tid] = s
    _tree(buf, 1)
    var = buf[0, 0] / count
    cuda.syncthreads()
    return mu, var


@cuda.jit(device=True)
def _values(x, g, hx, t, i, ch, k, mu, r):
    """(x̂, g, hx) at one value of the channel, in float64."""
    return ((float64(x[t, i, ch, k]) - mu) * r, float64(g[t, i, ch, k]),
            float64(hx[t, i, ch, k]))


@cuda.jit
def _forward(x, w, b, eps, y, mean, var):
    buf = cuda.shared.array((1, SLOTS), float64)
    t, ch, tid, step, m, count = _channel(x)
    mu, v = _moments(x, buf, t, ch)
    den = math.sqrt(v + eps)
    wv, bv = float64(w[t, ch]), float64(b[t, ch])
    i, k, di, dk = _walk(m)
    for _ in range(tid, count, step):
        y[t, i, ch, k] = (float64(x[t, i, ch, k]) - mu) / den * wv + bv
        i, k = _next(i, k, di, dk, m)
    if tid == 0:
        mean[t, ch] = mu
        var[t, ch] = v


@cuda.jit
def _backward(x, w, g, eps, dx, dw, db):
    """dx = (ĝ − mean(ĝ) − x̂·mean(ĝ·x̂))·rstd, dw = Σ g·x̂, db = Σ g (ĝ = g·w)."""
    buf = cuda.shared.array((4, SLOTS), float64)
    t, ch, tid, step, m, count = _channel(x)
    mu, v = _moments(x, buf, t, ch)
    rstd = 1.0 / math.sqrt(v + eps)
    wv = float64(w[t, ch])
    s_gh = s_ghx = s_gx = s_g = 0.0
    i, k, di, dk = _walk(m)
    for _ in range(tid, count, step):
        xhat, gv = (float64(x[t, i, ch, k]) - mu) * rstd, float64(g[t, i, ch, k])
        gh = gv * wv
        s_gh += gh
        s_ghx += gh * xhat
        s_gx += gv * xhat
        s_g += gv
        i, k = _next(i, k, di, dk, m)
    buf[0, tid], buf[1, tid], buf[2, tid], buf[3, tid] = s_gh, s_ghx, s_gx, s_g
    _tree(buf, 4)
    mean_gh, mean_ghx = buf[0, 0] / count, buf[1, 0] / count
    i, k, di, dk = _walk(m)
    for _ in range(tid, count, step):
        xhat = (float64(x[t, i, ch, k]) - mu) * rstd
        gh = float64(g[t, i, ch, k]) * wv
        dx[t, i, ch, k] = (gh - mean_gh - xhat * mean_ghx) * rstd
        i, k = _next(i, k, di, dk, m)
    if tid == 0:
        dw[t, ch] = buf[2, 0]
        db[t, ch] = buf[3, 0]


@cuda.jit
def _double_backward(x, w, g, hx, hw, hb, eps, dx, dw, db, dg):
    """The reference's formulas (``norm_ref.batch_norm_double_backward``), pass by pass: the
    moments; then mean(g), mean(g·x̂), mean(ĝ·x̂), mean(hx), mean(hx·x̂); then, with P(g) and
    u − hw·g in hand at each value, Σ hx·P(g)·w, Σ hx·r·P(g), mean(u − hw·g) and its mean
    against x̂; then dx and dg (db is 0)."""
    buf = cuda.shared.array((5, SLOTS), float64)
    t, ch, tid, step, m, count = _channel(x)
    mu, v = _moments(x, buf, t, ch)
    r = 1.0 / math.sqrt(v + eps)
    wv, hwv, hbv = float64(w[t, ch]), float64(hw[t, ch]), float64(hb[t, ch])
    s0 = s1 = s2 = s3 = s4 = 0.0
    i, k, di, dk = _walk(m)
    for _ in range(tid, count, step):
        xhat, gv, hv = _values(x, g, hx, t, i, ch, k, mu, r)
        s0 += gv
        s1 += gv * xhat
        s2 += gv * wv * xhat
        s3 += hv
        s4 += hv * xhat
        i, k = _next(i, k, di, dk, m)
    buf[0, tid], buf[1, tid], buf[2, tid], buf[3, tid], buf[4, tid] = s0, s1, s2, s3, s4
    _tree(buf, 5)
    mean_g, mean_gx, a = buf[0, 0] / count, buf[1, 0] / count, buf[2, 0] / count
    mean_h, mean_hx = buf[3, 0] / count, buf[4, 0] / count
    cuda.syncthreads()
    s0 = s1 = s2 = s3 = 0.0
    i, k, di, dk = _walk(m)
    for _ in range(tid, count, step):
        xhat, gv, hv = _values(x, g, hx, t, i, ch, k, mu, r)
        p_g = gv - mean_g - xhat * mean_gx
        u_rest = -r * a * hv - r * mean_hx * (gv * wv)
        s0 += hv * p_g * wv
        s1 += hv * r * p_g
        s2 += u_rest
        s3 += u_rest * xhat
        i, k = _next(i, k, di, dk, m)
    buf[0, tid], buf[1, tid], buf[2, tid], buf[3, tid] = s0, s1, s2, s3
    _tree(buf, 4)
    s, mean_u, mean_ux = buf[0, 0], buf[2, 0] / count, buf[3, 0] / count
    i, k, di, dk = _walk(m)
    for _ in range(tid, count, step):
        xhat, gv, hv = _values(x, g, hx, t, i, ch, k, mu, r)
        p_g = gv - mean_g - xhat * mean_gx
        u_rest = -r * a * hv - r * mean_hx * (gv * wv)
        p_u = u_rest - mean_u - xhat * mean_ux
        dx[t, i, ch, k] = r * (hwv * p_g + p_u) - s * r * r * xhat / count
        dg[t, i, ch, k] = hbv + hwv * xhat + wv * r * (hv - mean_h - xhat * mean_hx)
        i, k = _next(i, k, di, dk, m)
    if tid == 0:
        dw[t, ch] = buf[1, 0]
        db[t, ch] = 0


def _as4(a, w):
    """``a`` (C-contiguous) as (T, N, C, rest): a stack when ``w`` is (T, C), else one."""
    a = array_module(a).ascontiguousarray(a)
    return a.reshape(a.shape[:3] + (-1,)) if w.ndim == 2 else \
        a.reshape((1,) + a.shape[:2] + (-1,))


def _per_channel(v, x, w):
    """``v`` (shaped like ``w``) as (T, C) in x's dtype: the kernels' per-channel arrays."""
    return array_module(v).ascontiguousarray(v, dtype=x.dtype).reshape(-1, w.shape[-1])


def _launch(kernel, x4, *args):
    """One block of ``BLOCK`` threads a (task, channel)."""
    if BLOCK > SLOTS:
        raise ValueError(f"norm_cuda: {BLOCK} threads a block; at most {SLOTS}")
    _cuda.launch(kernel, x4.shape[0] * x4.shape[2] * BLOCK, x4, *args, threads=BLOCK)


def batch_norm(x, w, b, eps=1e-5):
    """Return (y, mean, biased variance), as ``norm_ref.batch_norm``."""
    if x.dtype.kind != "f":
        return norm_ref.batch_norm(x, w, b, eps)
    xp, x4 = array_module(x), _as4(x, w)
    y, stats = xp.empty_like(x4), xp.empty((2, x4.shape[0], x4.shape[2]), dtype=x.dtype)
    _launch(_forward, x4, _per_channel(w, x, w), _per_channel(b, x, w), eps, y, stats[0],
            stats[1])
    return y.reshape(x.shape), stats[0].reshape(w.shape), stats[1].reshape(w.shape)


def batch_norm_backward(x, w, b, g, eps=1e-5):
    """Packed concat(vec(dx), vec(dw), vec(db)), as ``norm_ref.batch_norm_backward``."""
    if x.dtype.kind != "f":
        return norm_ref.batch_norm_backward(x, w, b, g, eps)
    xp, x4, c = array_module(x), _as4(x, w), w.size
    packed = xp.empty(x.size + 2 * c, dtype=x.dtype)
    shape2 = (x4.shape[0], x4.shape[2])
    _launch(_backward, x4, _per_channel(w, x, w), _as4(g.astype(x.dtype, copy=False), w), eps,
            packed[:x.size].reshape(x4.shape), packed[x.size:x.size + c].reshape(shape2),
            packed[x.size + c:].reshape(shape2))
    return packed


def batch_norm_double_backward(x, w, b, g, h, eps=1e-5):
    """Packed concat(vec(dx), vec(dw), vec(db) = 0, vec(dg)), as
    ``norm_ref.batch_norm_double_backward`` (whose docstring derives the formulas)."""
    if x.dtype.kind != "f":
        return norm_ref.batch_norm_double_backward(x, w, b, g, h, eps)
    xp, x4, c = array_module(x), _as4(x, w), w.size
    h = h.astype(x.dtype, copy=False)
    packed = xp.empty(2 * x.size + 2 * c, dtype=x.dtype)
    shape2 = (x4.shape[0], x4.shape[2])
    _launch(_double_backward, x4, _per_channel(w, x, w), _as4(g.astype(x.dtype, copy=False), w),
            _as4(h[:x.size].reshape(x.shape), w), h[x.size:x.size + c].reshape(shape2),
            h[x.size + c:].reshape(shape2), eps, packed[:x.size].reshape(x4.shape),
            packed[x.size:x.size + c].reshape(shape2), packed[x.size + c:x.size + 2 * c].reshape(
                shape2), packed[x.size + 2 * c:].reshape(x4.shape))
    return packed
