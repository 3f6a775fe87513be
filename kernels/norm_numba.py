"""numba CPU kernels of fused batch normalisation; same contract as ``norm_ref.py``.

Parallel over channels (over tasks × channels for a stack: x (T, N, C, ...), w (T, C); a single
batch norm is a stack of one). Forward: one pass gathers Σd and Σd² (float64 accumulators), one
pass writes y, with d = x − K, K the channel's first value (0 if not finite: ``_shift``): the
variance as E[d²] − E[d]² is then free of the cancellation E[x²] − E[x]² suffers where |mean| ≫
std (float32 activations at mean 10⁴ and std 1 lost every digit; a constant channel had variance
1e-3, not 0), every product in float64. Backward: one pass gathers Σd, Σd², Σg, Σg·d, one pass
writes dx. Where a channel's C values are not finite (an infinite weight in; a variance or dw
out: an inf in x or g, or sums overflowed) the call is the reference's, whose formulas give the
spec's infinities and NaN where these, shifted and with w taken out of the sums, do not. Double
backward (the VJP of the backward, which second-order MAML runs through every batch norm): one
pass gathers seven sums, one writes dx and dg, where the NumPy reference makes some twenty
array passes. The composite (about 9 full-size temporaries forward and 15 backward) is what
these replace. And the conv bias, ``add_bias``: one pass in place, over the planes in parallel;
its gradient ``bias_grad``: one pass, each plane summed on one thread (NumPy's sum over the
image and pixel axes runs on one core).

Read next: ``kernels/select_numba.py`` (the elementwise select with numba).
"""
import math

import numpy as np
from numba import njit, prange

from . import norm_ref

# fast math without its NaN and inf licenses (as ``attention_numba``): with them LLVM had
# assumed every value finite, folding away the test in ``_shift`` (its inf reached the sums)
FAST = {"nsz", "arcp", "contract", "afn", "reassoc"}


@njit(cache=True, fastmath=FAST, inline="always")
def _finite(v):
    """Whether v is finite, in a fast-math kernel. Not ``np.isfinite``: numba computes it as
    v − v == 0, which ``nsz`` with ``reassoc`` folds to 0 == 0, True even of NaN (inf − inf).
    An ordered compare with inf is false for ±inf and NaN, and no licence here folds it."""
    return abs(v) < np.inf


@njit(cache=True, fastmath=FAST, inline="always")
def _shift(x, t, ch):
    """K, the channel's first value (d = x − K, see the module docstring); 0 where it is not
    finite (inf − inf had made the mean NaN where the reference's is ±inf) or there is none."""
    k = np.float64(x[t, 0, ch, 0]) if x.shape[1] * x.shape[3] else 0.0
    return k if _finite(k) else 0.0


@njit(parallel=True, cache=True, fastmath=FAST)
def _forward(x, w, b, eps):
    tasks, n, c, m = x.shape
    y = np.empty_like(x)
    mean = np.empty((tasks, c))
    var = np.empty((tasks, c))
    for tc in prange(tasks * c):
        t, ch = tc // c, tc % c
        shift0 = _shift(x, t, ch)
        s = 0.0
        s2 = 0.0
        for i in range(n):
            for k in range(m):
                v = np.float64(x[t, i, ch, k]) - shift0
                s += v
                s2 += v * v
        md = s / (n * m)
        mu = shift0 + md
        sig2 = max(s2 / (n * m) - md * md, 0.0)
        scale = w[t, ch] / np.sqrt(sig2 + eps)
        shift = b[t, ch] - mu * scale
        for i in range(n):
            for k in range(m):
                y[t, i, ch, k] = x[t, i, ch, k] * scale + shift
        mean[t, ch] = mu
        var[t, ch] = sig2
    return y, mean, var


@njit(parallel=True, cache=True, fastmath=FAST)
def _backward(x, w, g, eps, dx, dw, db):
    """Writes into dx, dw, db: views of one packed output array (no concatenation copy)."""
    tasks, n, c, m = x.shape
    count = n * m
    for tc in prange(tasks * c):
        t, ch = tc // c, tc % c
        shift0 = _shift(x, t, ch)
        sx = 0.0
        sx2 = 0.0
        sg = 0.0
        sgx = 0.0
        for i in range(n):
            for k in range(m):
                v = np.float64(x[t, i, ch, k]) - shift0
                gv = np.float64(g[t, i, ch, k])
                sx += v
                sx2 += v * v
                sg += gv
                sgx += gv * v
        md = sx / count
        mu = shift0 + md
        rstd = 1.0 / np.sqrt(max(sx2 / count - md * md, 0.0) + eps)
        sum_gxhat = (sgx - md * sg) * rstd          # Σ g·x̂ (not finite: the caller's spec)
        mean_gh = w[t, ch] * sg / count             # mean(ĝ)
        mean_ghx = w[t, ch] * sum_gxhat / count     # mean(ĝ·x̂)
        a = w[t, ch] * rstd
        for i in range(n):
            for k in range(m):
                xhat = (x[t, i, ch, k] - mu) * rstd
                dx[t, i, ch, k] = a * g[t, i, ch, k] - rstd * (mean_gh + xhat * mean_ghx)
        dw[t, ch] = sum_gxhat
        db[t, ch] = sg


@njit(parallel=True, cache=True, fastmath=FAST)
def _double_backward(x, w, g, hx, hw, hb, eps, dx, dw, dg):
    """The reference's formulas with every per-channel mean taken from shifted sums: one pass
    gathers Σd, Σd², Σg, Σg·d, Σhx, Σhx·d, Σhx·g (d = x − K, K the channel's first value, as in
    the forward); one pass writes dx and dg. Writes into views
    of one packed output (db is zero, left to the caller)."""
    tasks, n, c, m = x.shape
    count = n * m
    for tc in prange(tasks * c):
        t, ch = tc // c, tc % c
        shift0 = _shift(x, t, ch)
        sx = sx2 = sg = sgx = sh = shx = shg = 0.0
        for i in range(n):
            for k in range(m):
                v = np.float64(x[t, i, ch, k]) - shift0
                gv, hv = np.float64(g[t, i, ch, k]), np.float64(hx[t, i, ch, k])
                sx += v
                sx2 += v * v
                sg += gv
                sgx += gv * v
                sh += hv
                shx += hv * v
                shg += hv * gv
        md = sx / count
        mu = shift0 + md
        r = 1.0 / np.sqrt(max(sx2 / count - md * md, 0.0) + eps)
        mean_g, mean_gxh = sg / count, r * (sgx - md * sg) / count     # mean(g), mean(g·x̂)
        mean_h, mean_hxh = sh / count, r * (shx - md * sh) / count     # mean(hx), mean(hx·x̂)
        wv, hwv, hbv = w[t, ch], hw[t, ch], hb[t, ch]
        hx_pg = shg - mean_g * sh - mean_gxh * mean_hxh * count        # Σ hx·P(g)
        s = wv * hx_pg                                                 # Σ hx·P(ĝ)
        alpha = hwv - r * wv * mean_hxh         # u = α·g + β·hx, so P(u) = α·P(g) + β·P(hx):
        beta = -r * wv * mean_gxh               # an infinite hw makes α·P(g) ±inf, as the spec
        for i in range(n):
            for k in range(m):
                xh = (x[t, i, ch, k] - mu) * r
                gv, hv = g[t, i, ch, k], hx[t, i, ch, k]
                pg, ph = gv - mean_g - xh * mean_gxh, hv - mean_h - xh * mean_hxh
                dx[t, i, ch, k] = r * (alpha * pg + beta * ph) - s * r * r * xh / count
                dg[t, i, ch, k] = hbv + hwv * xh + wv * r * ph
        dw[t, ch] = r * hx_pg


@njit(parallel=True, cache=True, fastmath=FAST)
def _add_bias(y, b):
    """One (task, image) per parallel iteration, its C planes in turn: one plane an iteration
    had cost three integer divisions (its task, image and channel), more than adding the plane's
    9 or 49 values on conv4's last layers (3–9× slower there on one core; the same at 28×28)."""
    tasks, n, c, m = y.shape
    for r in prange(tasks * n):
        t = r // n
        planes = y[t, r - t * n]
        for ch in range(c):
            row, v = planes[ch], b[t, ch]
            for k in range(m):
                row[k] += v


@njit(parallel=True, cache=True, fastmath=FAST)
def _plane_sums(g):
    """Σ of each (task, image, channel) plane of g (T, N, C, M), in float64; one (task, image)
    per parallel iteration, as ``_add_bias``."""
    tasks, n, c, m = g.shape
    out = np.empty((tasks, n, c), dtype=np.float64)
    for r in prange(tasks * n):
        t = r // n
        planes, sums = g[t, r - t * n], out[t, r - t * n]
        for ch in range(c):
            row, total = planes[ch], 0.0
            for k in range(m):
                total += row[k]
            sums[ch] = total
    return out


def _as4(a, w):
    """``a`` as (T, N, C, rest): a stack when ``w`` is (T, C), else a stack of one."""
    a = np.ascontiguousarray(a)
    return a.reshape(a.shape[:3] + (-1,)) if w.ndim == 2 else \
        a.reshape((1,) + a.shape[:2] + (-1,))


def _as2(v, x, w):
    return np.asarray(v, x.dtype).reshape(-1, w.shape[-1])


def add_bias(y, b):
    """y += b per channel in place, one image-channel plane per parallel iteration: on conv4's
    first layer at 640 images 8.9 ms on one core and 2.7 on two, against NumPy's broadcast add
    at 14.6 (one core only). A non-contiguous ``y`` goes to the reference."""
    if not y.flags.c_contiguous:
        return norm_ref.add_bias(y, b)
    if np.may_share_memory(y, b):  # b read while y is written: add a copy (as NumPy would)
        b = b.copy()
    _add_bias(_as4(y, b), _as2(b, y, b))
    return y


def bias_grad(g, stacked=False):
    """Σ g per channel (``norm_ref.bias_grad``): the planes' sums in parallel, in float64, then
    added over the images in order (on conv4's first layer at 640 images, 7.5–8.8 ms on two
    cores against NumPy's 16 on one). A non-contiguous or non-float ``g`` goes to the
    reference."""
    if not g.flags.c_contiguous or g.dtype.kind != "f" or g.ndim < 2 + stacked:
        return norm_ref.bias_grad(g, stacked)
    g4 = g.reshape(g.shape[:3] + (-1,)) if stacked else g.reshape((1,) + g.shape[:2] + (-1,))
    sums = _plane_sums(g4).sum(axis=1).astype(g.dtype)
    return sums if stacked else sums[0]


def _finite_weights(w):
    """Whether the batch-norm weights are finite: their sum is (1–2 µs for conv4's 64, off
    the kernels' loops; a sum that overflows sends finite weights to the reference, which is
    right too). An infinite w makes ĝ = g·w ±inf, and the kernels, which take w out of their
    sums (w·Σg, not Σ g·w), meet inf − inf at other entries than the reference does (±inf at
    some dx where the reference's channel is all NaN; which ones, the fast-math licences move
    as well): such a call goes to the reference."""
    return math.isfinite(w.sum())


def batch_norm(x, w, b, eps=1e-5):
    """Return (y, mean, biased variance); mean and variance are shaped like ``w`` and of x's
    dtype, as the reference's (summed in float64, they had been returned so)."""
    y, mean, var = _forward(_as4(x, w), _as2(w, x, w), _as2(b, x, w), eps)
    if not np.isfinite(var).all():     # E[d²] − E[d]² overflowed (|x| ≳ 1e154: inf − inf) or
        return norm_ref.batch_norm(x, w, b, eps)    # x holds an inf: the spec's values, rare
    return (y.reshape(x.shape), mean.reshape(w.shape).astype(x.dtype, copy=False),
            var.reshape(w.shape).astype(x.dtype, copy=False))


def batch_norm_backward(x, w, b, g, eps=1e-5):
    """Packed concat(vec(dx), vec(dw), vec(db)), written in place into one buffer."""
    if not _finite_weights(w):
        return norm_ref.batch_norm_backward(x, w, b, g, eps)
    x4, c = _as4(x, w), w.size
    packed = np.empty(x.size + 2 * c, dtype=x.dtype)
    shape2 = (x4.shape[0], x4.shape[2])
    _backward(x4, _as2(w, x, w), _as4(g.astype(x.dtype, copy=False), w), eps,
              packed[:x.size].reshape(x4.shape), packed[x.size:x.size + c].reshape(shape2),
              packed[x.size + c:].reshape(shape2))
    if not np.isfinite(packed[x.size:x.size + c]).all():    # dw: the sums overflowed (NaN
        return norm_ref.batch_norm_backward(x, w, b, g, eps)   # dx where the spec has 0), or
    return packed                                             # x or g holds an inf: the spec


def batch_norm_double_backward(x, w, b, g, h, eps=1e-5):
    """Packed concat(vec(dx), vec(dw), vec(db) = 0, vec(dg)): same contract as the reference
    (``norm_ref.batch_norm_double_backward``, whose docstring derives the formulas)."""
    if not _finite_weights(w):
        return norm_ref.batch_norm_double_backward(x, w, b, g, h, eps)
    x4, c = _as4(x, w), w.size
    h = np.asarray(h, dtype=x.dtype)
    packed = np.zeros(2 * x.size + 2 * c, dtype=x.dtype)
    shape2 = (x4.shape[0], x4.shape[2])
    _double_backward(x4, _as2(w, x, w), _as4(g.astype(x.dtype, copy=False), w),
                     _as4(h[:x.size].reshape(x.shape), w), h[x.size:x.size + c].reshape(shape2),
                     h[x.size + c:].reshape(shape2), eps,
                     packed[:x.size].reshape(x4.shape), packed[x.size:x.size + c].reshape(shape2),
                     packed[x.size + 2 * c:].reshape(x4.shape))
    if not np.isfinite(packed[x.size:x.size + c]).all():
        # dw from the shifted sums is inf − inf where hx holds an inf (the reference's is
        # ±inf: it sums hx·P(g) element by element): rare, so the reference does it all
        return norm_ref.batch_norm_double_backward(x, w, b, g, h, eps)
    return packed
