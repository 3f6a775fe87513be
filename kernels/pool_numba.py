"""numba CPU kernels for max pooling: the forward with its argmax, and the argmax scatter.

``max_pool2d`` has the contract of ``pool_ref.max_pool2d`` (flat argmax indices into x, first
maximum on ties). ``max_pool2d_backward`` scatters a gradient to those positions; its reference
is ``pool_ref.max_pool2d_backward``. Each parallel iteration takes whole image-channel planes:
one (the general window, the scatter) or a chunk of them (the 2×2 kernel of conv4).

Read next: ``kernels/attention_numba.py`` (cosine attention with numba).
"""
import numpy as np
from numba import njit, prange

from .pool_ref import check_pool

INT32_INDICES = 2 ** 31   # x with fewer elements than this gets int32 argmax indices


@njit(cache=True, inline="always")
def _beats(v, best):
    """v takes the window's place: larger, or the first NaN (``argmax``'s rule: a NaN wins).
    Bitwise operators, not ``or``/``and``: no short-circuit, so nothing to branch on."""
    return (v > best) | ((v != v) & (best == best))


@njit(parallel=True, cache=True)
def _max_pool(x, k, s, y, idx):
    n, c, h, w = x.shape
    ho, wo = y.shape[2], y.shape[3]
    for plane in prange(n * c):
        b, ch = plane // c, plane % c
        base = plane * h * w
        for i in range(ho):
            for j in range(wo):
                best = x[b, ch, i * s, j * s]
                arg = (i * s) * w + j * s
                for p in range(k):
                    for q in range(k):
                        v = x[b, ch, i * s + p, j * s + q]
                        if _beats(v, best):
                            best = v
                            arg = (i * s + p) * w + j * s + q
                y[b, ch, i, j] = best
                idx[b, ch, i, j] = base + arg


@njit(parallel=True, cache=True)
def _max_pool_2x2(x, y, idx):
    """kernel = stride = 2 (conv4's pooling) in two rounds a plane, no ``if`` on the data:
    each row's pairs meet (the left kept unless the right ``_beats`` it), then each pair of
    rows' winners (the top kept unless the bottom beats it), so the first maximum (or first
    NaN) wins, as in the window's order.

    A select of two floats is branch-free only where the processor has an instruction for it
    (AVX-512's masked moves): on an AVX2 machine each select was a branch, a coin toss on
    random data. So round 1, when rows run back to back (even width), is one flat loop over the
    plane's pairs, which LLVM turns into vector blends, and round 2 picks the winner's index,
    not its value, and loads it. An odd width (conv4's 7×7 and 3×3 layers: rows of 3 windows or
    1, too short for a vector) plays both rounds window by window, no scratch: 1.7× and 3×
    faster on one core than the rounds row by row through the scratch, whose index picks and
    reloads had cost more than the comparisons. The planes run in 64 chunks, each with its
    scratch for the winners of even planes (64 shares out evenly on 1 to 32 threads). Measurements:
    docs/PERFORMANCE.md, "Max pooling on an AVX2 machine"."""
    n, c, h, w = x.shape
    ho, wo = y.shape[2], y.shape[3]
    planes = n * c
    xp, yp = x.reshape(planes, h * w), y.reshape(planes, ho * wo)
    ip = idx.reshape(planes, ho * wo)
    chunks = min(planes, 64)
    for chunk in prange(chunks):
        best = np.empty(2 * ho * wo if w == 2 * wo else 0, x.dtype)   # round 1's winners
        at = np.empty(best.size, idx.dtype)                          # and their flat indices
        for plane in range(chunk * planes // chunks, (chunk + 1) * planes // chunks):
            if w == 2 * wo:
                _rounds(xp[plane], yp[plane], ip[plane], plane * h * w, ho, wo, best, at)
            else:
                _windows(xp[plane], yp[plane], ip[plane], plane * h * w, ho, wo, w)


@njit(cache=True, inline="always")
def _rounds(xr, yr, ir, base, ho, wo, best, at):
    """One plane of even width: round 1 over its rows back to back into the scratch (``best``,
    ``at``: 2·ho rows of wo winners), round 2 between each pair of rows' winners."""
    for p in range(2 * ho * wo):
        a, b = xr[2 * p], xr[2 * p + 1]
        m = _beats(b, a)
        best[p] = b if m else a
        at[p] = base + 2 * p + m
    for i in range(ho):                 # round 2: top row's winners vs bottom's
        top, out = 2 * i * wo, i * wo
        for j in range(wo):
            k = top + j + wo * _beats(best[top + wo + j], best[top + j])
            yr[out + j], ir[out + j] = best[k], at[k]


@njit(cache=True, inline="always")
def _windows(xr, yr, ir, base, ho, wo, w):
    """One plane of odd width ``w``: both rounds window by window, in the same order."""
    for i in range(ho):
        for j in range(wo):
            k = 2 * i * w + 2 * j       # the window's top left
            tl, tr, bl, br = xr[k], xr[k + 1], xr[k + w], xr[k + w + 1]
            m1, m2 = _beats(tr, tl), _beats(br, bl)
            upper = tr if m1 else tl
            lower = br if m2 else bl
            m3 = _beats(lower, upper)
            yr[i * wo + j] = lower if m3 else upper
            ir[i * wo + j] = base + k + (w + m2 if m3 else m1)


@njit(parallel=True, cache=True)
def _scatter(g, idx, gx):
    """gx.flat[idx] += g, one image-channel plane per thread (a plane's indices stay inside
    the plane). Each plane is zeroed just before its scatter, while it is in cache: 1.5–2×
    faster on conv4's first layers than zeroing the whole output first (at 640 images a
    separate pass over 128 MiB)."""
    n, c, h, w = gx.shape
    planes, area = n * c, h * w
    out = gx.reshape(planes, area)
    gp, ip = g.reshape(planes, -1), idx.reshape(planes, -1)
    for plane in prange(planes):
        row, gr, ir, base = out[plane], gp[plane], ip[plane], plane * area
        for k in range(area):
            row[k] = 0
        for t in range(gr.size):
            row[ir[t] - base] += gr[t]


def max_pool2d(x, kernel, stride):
    """Return ``(y, argmax)`` like the reference; argmax is int32 when every flat index fits,
    ``x.size < INT32_INDICES`` (the saved indices of a graph take half the memory of int64)."""
    check_pool("max_pool2d", x, kernel, stride)
    x = np.ascontiguousarray(x)
    ho = (x.shape[2] - kernel) // stride + 1
    wo = (x.shape[3] - kernel) // stride + 1
    y = np.empty((x.shape[0], x.shape[1], ho, wo), dtype=x.dtype)
    idx = np.empty(y.shape, dtype=np.int32 if x.size < INT32_INDICES else np.int64)
    if y.size == 0:               # no planes, or none of their windows: nothing to compare
        return y, idx
    if kernel == stride == 2:
        _max_pool_2x2(x, y, idx)
    else:
        _max_pool(x, kernel, stride, y, idx)
    return y, idx


def max_pool2d_backward(g, argmax, x_shape):
    """Gradient of max pooling: ``g`` added at the flat ``argmax`` positions of x."""
    g = np.ascontiguousarray(g)
    gx = np.empty(x_shape, dtype=g.dtype)
    if gx.size == 0:              # no planes to scatter into
        return gx
    _scatter(g, np.ascontiguousarray(argmax), gx)
    return gx
