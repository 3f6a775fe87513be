"""numba CPU kernels of the conv2d family: parallel im2col / col2im feeding BLAS GEMM.

Each function has the signature of its reference in ``conv_ref.py`` and must agree with it
(property-tested in ``tests/test_kernels.py``). The work splits in two:

- data movement, written here as ``prange`` loops compiled by numba: ``im2col`` gathers every
  receptive field into a column, ``col2im`` adds columns back to image pixels (each channel
  owned by one thread, so there is no race);
- the arithmetic, one matrix product through NumPy (OpenBLAS), the fastest GEMM on the machine.

The GEMM paths cut their work into independent pieces (chunks of images, blocks of columns,
spans of the weight gradient's sum) that ``threads.parallel_map`` spreads over the cores, one
BLAS and one numba thread each; partial sums are cut and added in an order fixed by the data,
not by the thread count (``threads.ordered_sum``): the same bits on one core or eight.

Chosen by measurement (benchmarks/conv_kernels.py, figures in docs/PERFORMANCE.md):
- 3×3 filters at stride 1 on 32 channels and more (conv4's 64-channel layers, forward and both
  gradients): Winograd's minimal filtering (``kernels/winograd_numba.py``), 2.25–4× fewer
  multiplies; 1.6–3× faster than the paths below on those layers.
- other layers of 2 channels and more at stride 1 whose padded plane is under 1.5 times the
  output plane (``_shifted_pays``: 9×9 and up at 3×3, padding 1; 14×14: 256 points, 196 out):
  "shifted GEMMs" (no im2col copy at all, see ``_shifted_gemm_conv``), same speed as im2col +
  GEMM on conv4's 64-channel layers and 9× less memory.
- other multi-channel layers (7×7 planes: 81 points for 49): im2col + GEMM, in cache-sized
  chunks of images. On conv4's layers the GEMM has K = C·kh·kw = 576, which OpenBLAS runs near
  its peak (about 80 GFLOP/s on one core here).
- 1-input-channel layers (the first Omniglot layer): image-major patches (``_patches``) and one
  GEMM per image, over the stack: the output comes out in its (N, O, H, W) layout and the
  weight gradient reads g as it is, where the channel-major path transposes either (2–4×
  faster than the direct loops these replaced, and than PyTorch's here).

Inputs of any layout are accepted: they are made C-contiguous first (a copy only when needed).
Results match the reference to float rounding (the summation order differs), and a NaN or an
inf in the input reaches the same outputs as there (``_finite``). A stack of tasks
(5-D arrays) runs one task per piece (``conv_ref.over_tasks`` with ``parallel_map``).

Read next: ``kernels/winograd_numba.py`` (3×3 convolution in fewer multiplies (Winograd)).
"""
import numpy as np
from numba import njit, prange

from . import winograd_numba as winograd
from .conv_ref import check_window, out_size, over_tasks
from .threads import GROUPS, image_chunks, ordered_sum, parallel_map, shares

# How work is cut: images in chunks of an im2col buffer near CHUNK_BYTES (cache-sized); the
# shifted GEMMs' columns in blocks of BLOCK. Tests make both tiny, so small inputs take
# several chunks and blocks (at the sizes drawn otherwise, every input fitted in one).
CHUNK_BYTES, BLOCK = 4 << 20, 4096


def _over_tasks(kernel):
    """A stack of tasks, the tasks spread over the cores (each one's kernel on one thread)."""
    return over_tasks(kernel, parallel_map)


@njit(cache=True)
def _span(stride, q, padding, size, n_out):
    """Output positions j with 0 <= j·s + q − padding < size, as a half-open range."""
    lo = 0
    while lo < n_out and lo * stride + q - padding < 0:
        lo += 1
    hi = n_out
    while hi > lo and (hi - 1) * stride + q - padding >= size:
        hi -= 1
    return lo, hi


@njit(cache=True, inline="always")
def _copy(src, dst, add):
    """dst[j] = src[j] (or += with ``add``), a loop from 0 over two slices (see ``_gather``)."""
    for j in range(dst.size):
        dst[j] = dst[j] + src[j] if add else src[j]


@njit(cache=True, inline="always")
def _gather(x, row_id, kh, kw, stride, padding, ho, wo, out, image_major):
    """Tap row_id = (c, p, q) of every image b: at (i, j) of row out[b, row_id] (``_patches``,
    ``image_major``) or out[row_id, b] (``_im2col``), x[b, c, i·s + p − pad, j·s + q − pad],
    over the outputs whose receptive field is inside the image (``out`` starts zeroed: the
    padding). Each run of a row is copied by a loop from 0 over slices, the image's of unit step
    at stride 1: ``out[b, lo:hi] = x[b, c, r, a:z:s]`` into ``P[:, row_id]`` (a step of unknown
    size on both sides) had compiled to AVX-512 gathers and scatters, 2× slower on one core
    (0.81 against 0.37 ms for a chunk of 148 first-layer images)."""
    h, w = x.shape[2], x.shape[3]
    ch, p, q = row_id // (kh * kw), (row_id // kw) % kh, row_id % kw
    i_lo, i_hi = _span(stride, p, padding, h, ho)
    j_lo, j_hi = _span(stride, q, padding, w, wo)
    if j_hi <= j_lo:  # the tap sees only padding: nothing to gather (and ``last`` below
        return        # would be negative, a slice that wraps around to the row's end)
    first = j_lo * stride + q - padding
    last = (j_hi - 1) * stride + q - padding + 1
    for b in range(x.shape[0]):
        row = out[b, row_id] if image_major else out[row_id, b]
        for i in range(i_lo, i_hi):
            dst, src = row[i * wo + j_lo:i * wo + j_hi], x[b, ch, i * stride + p - padding]
            if stride == 1:
                _copy(src[first:last], dst, False)
            else:
                _copy(src[first:last:stride], dst, False)


@njit(parallel=True, cache=True)
def _im2col(x, kh, kw, stride, padding, ho, wo):
    """Channel-major columns: cols[(c, p, q), (n, i, j)], so one GEMM serves a whole chunk."""
    n, c = x.shape[0], x.shape[1]
    cols = np.zeros((c * kh * kw, n * ho * wo), dtype=x.dtype)
    rows = cols.reshape(c * kh * kw, n, ho * wo)
    for row_id in prange(c * kh * kw):
        _gather(x, row_id, kh, kw, stride, padding, ho, wo, rows, False)
    return cols


@njit(parallel=True, cache=True)
def _col2im(cols, n, c, h, w, kh, kw, stride, padding, ho, wo):
    """The adjoint of ``_im2col``; parallel over channels (each owns its pixels). Its runs are
    added by loops from 0 over slices, as ``_gather`` copies them (2.9× faster on 5 images of
    3×3 than ``x[..., a:z:s] += row[lo:hi]``, a scatter)."""
    x = np.zeros((n, c, h, w), dtype=cols.dtype)
    for ch in prange(c):
        for p in range(kh):
            i_lo, i_hi = _span(stride, p, padding, h, ho)
            for q in range(kw):
                j_lo, j_hi = _span(stride, q, padding, w, wo)
                if j_hi <= j_lo:  # only padding under this tap (see ``_gather``)
                    continue
                first = j_lo * stride + q - padding
                last = (j_hi - 1) * stride + q - padding + 1
                row = cols[(ch * kh + p) * kw + q]
                for b in range(n):
                    base = b * ho * wo
                    for i in range(i_lo, i_hi):
                        src = row[base + i * wo + j_lo:base + i * wo + j_hi]
                        dst = x[b, ch, i * stride + p - padding]
                        if stride == 1:
                            _copy(src, dst[first:last], True)
                        else:
                            _copy(src, dst[first:last:stride], True)
    return x


@njit(parallel=True, cache=True)
def _patches(x, kh, kw, stride, padding, ho, wo):
    """Image-major columns: P[b, (c, p, q), (i, j)] = x[b, c, i·s + p − pad, j·s + q − pad]
    (zero outside), so that image b's output is one GEMM, W (O × C·kh·kw) · P[b], already in
    the (N, O, Ho·Wo) layout: no transposed copy of the output or of its gradient."""
    n, c = x.shape[0], x.shape[1]
    P = np.zeros((n, c * kh * kw, ho * wo), dtype=x.dtype)
    for row_id in prange(c * kh * kw):
        _gather(x, row_id, kh, kw, stride, padding, ho, wo, P, True)
    return P


def _conv_c1(x, w, stride, padding, ho, wo):
    """One input channel (the first Omniglot layer): y[b] = W · P[b], a GEMM per image
    (``np.matmul`` over the stack), chunks of images shared out over the threads."""
    n, o = x.shape[0], w.shape[0]
    w2 = w.reshape(o, -1)
    y = np.empty((n, o, ho * wo), dtype=x.dtype)

    def chunk(bounds):
        a, b = bounds
        np.matmul(w2, _patches(x[a:b], w.shape[2], w.shape[3], stride, padding, ho, wo),
                  out=y[a:b])

    parallel_map(chunk, _chunks(n, w2.shape[1] * ho * wo * x.itemsize))
    return y.reshape(n, o, ho, wo)


def _weight_grad_c1(x, g, w_shape, stride, padding):
    """One input channel: gw = Σ_b g[b] · P[b]ᵀ, (O × Ho·Wo) · (Ho·Wo × kh·kw) per image, the
    chunks of images summed in runs fixed by their count (``threads.ordered_sum``)."""
    n, o, ho, wo = g.shape
    g3 = g.reshape(n, o, ho * wo)

    def part(bounds):  # one chunk of images
        a, b = bounds
        P = _patches(x[a:b], w_shape[2], w_shape[3], stride, padding, ho, wo)
        return np.matmul(g3[a:b], P.transpose(0, 2, 1)).sum(axis=0)

    chunks = _chunks(n, w_shape[2] * w_shape[3] * ho * wo * x.itemsize)
    return ordered_sum(part, chunks, lambda: np.zeros(w_shape, x.dtype)).reshape(w_shape)


def _chunks(n, per_image):
    """Image ranges whose im2col buffer stays near CHUNK_BYTES (cache-sized, not memory-sized)."""
    return image_chunks(n, per_image, CHUNK_BYTES)


def _plane(x, padding, extra):
    """x (N, C, H, W) → channel-major padded planes X (C, N·Hp·Wp + extra), zeros around."""
    n, c, h, w = x.shape
    hp, wp = h + 2 * padding, w + 2 * padding
    flat = np.zeros((c, n * hp * wp + extra), dtype=x.dtype)
    grid = flat[:, :n * hp * wp].reshape(c, n, hp, wp)
    grid[:, :, padding:padding + h, padding:padding + w] = x.transpose(1, 0, 2, 3)
    return flat


def _shifted_pays(x_shape, k, stride, padding):
    """Use shifted GEMMs for stride 1 when the padded grid wastes under half the work
    (14×14 planes: 256 grid points for 196 outputs); small planes go to im2col."""
    h, w = x_shape[2], x_shape[3]
    ho, wo = h + 2 * padding - k + 1, w + 2 * padding - k + 1
    return stride == 1 and ho > 0 and wo > 0 and \
        (h + 2 * padding) * (w + 2 * padding) < 1.5 * ho * wo


def _shifted_gemm_conv(x, w, padding):
    """Stride-1 convolution as k² GEMMs over shifted views: no im2col copy.

    On channel-major padded planes X (C, N·Hp·Wp), output pixel t and input pixel t + p·Wp + q
    are a fixed distance apart, so tap (p, q) contributes W[:, :, p, q] @ X[:, t + p·Wp + q]
    for every t at once: one (O × C) · (C × L) GEMM on a strided view of X. The result lives on
    the same padded grid (junk at the edges, dropped at the end); columns are processed in
    cache-sized blocks so the k² partial sums add up in cache, the blocks shared out over
    ``split_threads()`` threads.
    """
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    hp, wp = h + 2 * padding, wd + 2 * padding
    ho, wo = hp - kh + 1, wp - kw + 1
    length = n * hp * wp
    X = _plane(x, padding, (kh - 1) * wp + kw - 1)
    taps = [(np.ascontiguousarray(w[:, :, p, q]), p * wp + q)
            for p in range(kh) for q in range(kw)]
    Y = np.empty((o, length), dtype=x.dtype)
    block = BLOCK

    def blocks(starts):  # one thread's share of the column blocks
        acc = np.empty((o, block), dtype=x.dtype)
        tmp = np.empty((o, block), dtype=x.dtype)
        for a in starts:
            b = min(a + block, length)
            out, part = acc[:, :b - a], tmp[:, :b - a]
            np.matmul(taps[0][0], X[:, a + taps[0][1]:b + taps[0][1]], out=out)
            for wt, shift in taps[1:]:
                np.matmul(wt, X[:, a + shift:b + shift], out=part)
                out += part
            Y[:, a:b] = out

    parallel_map(blocks, shares(range(0, length, block)))
    y = Y.reshape(o, n, hp, wp)[:, :, :ho, :wo].transpose(1, 0, 2, 3)
    return np.ascontiguousarray(y)


def _shifted_gemm_weight_grad(x, g, w_shape, padding):
    """Stride-1 weight gradient: gw[:, :, p, q] = G (O × L) · X[:, shift:shift + L]ᵀ, with the
    output gradient G laid on the padded grid (zeros on the junk positions). The L columns are
    cut into up to ``GROUPS`` spans (by L, not by the thread count), the spans shared out over
    the threads and their partial sums added in order."""
    o, c, kh, kw = w_shape
    n, _, ho, wo = g.shape
    hp, wp = x.shape[2] + 2 * padding, x.shape[3] + 2 * padding
    length = n * hp * wp
    X = _plane(x, padding, (kh - 1) * wp + kw - 1)
    G = np.zeros((o, n, hp, wp), dtype=x.dtype)
    G[:, :, :ho, :wo] = g.transpose(1, 0, 2, 3)
    G = G.reshape(o, length)

    def span(bounds):
        a, b = bounds
        gw = np.empty(w_shape, dtype=x.dtype)
        for p in range(kh):
            for q in range(kw):
                shift = p * wp + q
                gw[:, :, p, q] = G[:, a:b] @ X[:, a + shift:b + shift].T
        return gw

    parts = max(1, min(GROUPS, length // BLOCK))   # not the thread count: fixed rounding
    cuts = [length * i // parts for i in range(parts + 1)]
    return ordered_sum(span, zip(cuts[:-1], cuts[1:]), None)      # (never empty: parts >= 1)


def _finite(y):
    """Whether every value of a Winograd or shifted-GEMM result is finite (its sum is: one
    pass, no mask). A NaN or an inf in the input spreads over the whole Winograd tile it falls
    in (and inf − inf makes NaN), and the shifted GEMMs multiply padding and spare columns by
    it (inf · 0 makes NaN), so a result that is not finite is computed again by the direct
    paths, which give the reference's non-finite values exactly. (Winograd's own outputs are
    checked chunk by chunk as they are made: ``winograd_numba.conv2d_checked``.)"""
    return bool(np.isfinite(np.sum(y)))


@_over_tasks
def conv2d(x, w, stride=1, padding=0):
    """Forward convolution; same contract as ``conv_ref.conv2d``."""
    check_window("conv2d", x.shape[-2:], w.shape[-2:], stride, padding)
    dt = np.result_type(x.dtype, w.dtype)   # NumPy's promotion, as the reference
    x, w = np.ascontiguousarray(x, dtype=dt), np.ascontiguousarray(w, dtype=dt)
    n, c = x.shape[:2]
    o, kh, kw = w.shape[0], w.shape[2], w.shape[3]
    ho = out_size(x.shape[2], kh, stride, padding)
    wo = out_size(x.shape[3], kw, stride, padding)
    if c == 1:
        return _conv_c1(x, w, stride, padding, ho, wo)
    if winograd.pays(x.shape, w.shape, stride, padding):
        y, finite = winograd.conv2d_checked(x, w, padding)
        if finite:
            return y
    if c > 1 and _shifted_pays(x.shape, kh, stride, padding):
        return _shifted_gemm_conv(x, w, padding)
    w2 = w.reshape(o, -1)
    y = np.empty((n, o, ho * wo), dtype=x.dtype)

    def chunk(bounds):  # chunks write disjoint images of y: shared out over the threads
        a, b = bounds
        cols = _im2col(x[a:b], kh, kw, stride, padding, ho, wo)
        y[a:b] = (w2 @ cols).reshape(o, b - a, ho * wo).transpose(1, 0, 2)  # one GEMM a chunk

    parallel_map(chunk, _chunks(n, c * kh * kw * ho * wo * x.itemsize))
    return y.reshape(n, o, ho, wo)


@_over_tasks
def conv2d_input_grad(g, w, x_shape, stride=1, padding=0):
    """Input gradient (transposed convolution); same contract as the reference.

    Stride 1 with padding p ≤ k − 1: a stride-1 convolution of g by the weights rotated by
    180° with in/out channels swapped, padding k − 1 − p (the shifted-GEMM path again).
    """
    check_window("conv2d_input_grad", tuple(x_shape)[-2:], w.shape[-2:], stride, padding)
    dt = np.result_type(g.dtype, w.dtype)   # NumPy's promotion, as the reference
    g, w = np.ascontiguousarray(g, dtype=dt), np.ascontiguousarray(w, dtype=dt)
    n, o, ho, wo = g.shape
    c, kh, kw = w.shape[1], w.shape[2], w.shape[3]
    if stride == 1 and kh == kw and padding <= kh - 1:
        flipped = np.ascontiguousarray(w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))
        if winograd.pays(g.shape, flipped.shape, 1, kh - 1 - padding):
            gx, finite = winograd.conv2d_checked(g, flipped, kh - 1 - padding)
            if finite:
                return gx
        if _shifted_pays(x_shape, kh, stride, kh - 1 - padding) and o > 1:
            gx = _shifted_gemm_conv(g, flipped, kh - 1 - padding)
            if _finite(gx):     # (it multiplies g's zero padding by the weights: inf · 0)
                return gx
    w2t = w.reshape(o, -1).T
    gx = np.empty((n,) + tuple(x_shape[1:]), dtype=g.dtype)

    def chunk(bounds):
        a, b = bounds
        g2 = g[a:b].transpose(1, 0, 2, 3).reshape(o, (b - a) * ho * wo)
        cols = w2t @ g2                                       # (C·kh·kw, chunk·Ho·Wo)
        gx[a:b] = _col2im(cols, b - a, c, x_shape[2], x_shape[3], kh, kw, stride, padding,
                             ho, wo)

    parallel_map(chunk, _chunks(n, c * kh * kw * ho * wo * g.itemsize))
    return gx


@_over_tasks
def conv2d_weight_grad(x, g, w_shape, stride=1, padding=0):
    """Weight gradient; same contract as the reference."""
    check_window("conv2d_weight_grad", x.shape[-2:], tuple(w_shape)[-2:], stride, padding)
    dt = np.result_type(x.dtype, g.dtype)   # NumPy's promotion, as the reference
    x, g = np.ascontiguousarray(x, dtype=dt), np.ascontiguousarray(g, dtype=dt)
    o, c, kh, kw = w_shape
    n, _, ho, wo = g.shape
    if c == 1:
        return _weight_grad_c1(x, g, w_shape, stride, padding)
    if winograd.pays(x.shape, w_shape, stride, padding):
        gw = winograd.conv2d_weight_grad(x, g, padding)
        if _finite(gw):
            return gw
    if c > 1 and _shifted_pays(x.shape, kh, stride, padding):
        gw = _shifted_gemm_weight_grad(x, g, w_shape, padding)
        if _finite(gw):         # (its spare columns multiply pixels by zeros: inf · 0)
            return gw

    def part(bounds):  # one chunk of images
        a, b = bounds
        cols = _im2col(x[a:b], kh, kw, stride, padding, ho, wo)
        g2 = g[a:b].transpose(1, 0, 2, 3).reshape(o, (b - a) * ho * wo)
        return g2 @ cols.T              # BLAS reads the transposed view without a copy

    chunks = _chunks(n, c * kh * kw * ho * wo * x.itemsize)
    return ordered_sum(part, chunks, lambda: np.zeros(w_shape, x.dtype)).reshape(w_shape)
