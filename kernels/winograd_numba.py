"""Winograd convolution on the CPU: 3×3 filters at stride 1 in fewer multiplies.

A direct 3×3 convolution spends 9 multiplies per output per channel pair. Winograd's minimal
filtering F(m×m, 3×3) (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks",
2016) computes a tile of m×m outputs from the (m+2)×(m+2) tile of input d around it with
(m+2)² multiplies per channel pair, by three constant matrices Bᵀ, G, Aᵀ (``TILES``):

    Y = Aᵀ [ Σ_c (G w_c Gᵀ) ⊙ (Bᵀ d_c B) ] A          (⊙: elementwise product)

Summed over the input channels, the elementwise product is, at each of the (m+2)² positions ξ
of a tile, one matrix product over all tiles at once: M[ξ] = V[ξ] · U[ξ]ᵀ, (tiles × C) times
(C × O), which BLAS runs near its peak. Around those GEMMs, three transforms:

- the filter transform U = G w Gᵀ: one small GEMM with kron(G, G);
- ``_tiles_in``: every input tile d → V = Bᵀ d B;
- ``_tiles_out``: every M tile → Y = Aᵀ M A, cropped to the output.

The tile transforms are numba loops over channel-last arrays (N, H, W, C), so the innermost
loop of each is a contiguous run over channels, which vectorises.

The **weight gradient** is the same identity read backwards (each step is linear, so its
adjoint is its transpose): gw_oc = Gᵀ [Σ_tiles (A gY_o Aᵀ) ⊙ V_c] G, where gY's tiles go
through ``_tiles_in`` with A in place of Bᵀ, and the sum over tiles is again (m+2)² GEMMs,
(O × tiles) · (tiles × C). The **input gradient** of a stride-1 3×3 convolution is a stride-1
convolution of gY by the flipped filters, so ``conv_numba.conv2d_input_grad`` sends it through
``conv2d`` here.

Two tile sizes (``tile()`` picks one per call): F(2×2, 3×3), 16 multiplies for 4 outputs
(2.25× fewer than direct), transforms of 0s and ±1s, as precise as the direct product in
float32 (error about 4e-7 of the output's scale); and F(4×4, 3×3), 36 for 16 (4× fewer), whose
constants (1/6, 1/24, 8) cost a few bits (about 1e-5 in float32; float64 keeps about 1e-14).
Chosen by measurement (docs/PERFORMANCE.md): only for layers wide enough that the GEMMs
dominate the transforms (``pays``); F(4×4) on batches of 16 images and more (``tile``). F(4×4)'s
few bits matter where a max-pool window holds near ties: a float32 error of 1e-6 may pick
another maximum, and a gradient moves by 1e-3 (found by a probe, 2026-12-01; PyTorch picks
another less often); ``MINIMETA_WINOGRAD=f2`` (F(2×2) only) or ``off`` trades speed for that.

>>> rng = np.random.default_rng(0)
>>> x, w = rng.standard_normal((2, 3, 6, 5)), rng.standard_normal((4, 3, 3, 3))
>>> from .conv_ref import conv2d as direct
>>> bool(np.allclose(conv2d(x, w, padding=1), direct(x, w, 1, 1)))
True
>>> g = rng.standard_normal((2, 4, 6, 5))
>>> from .conv_ref import conv2d_weight_grad as direct_gw
>>> bool(np.allclose(conv2d_weight_grad(x, g, padding=1), direct_gw(x, g, w.shape, 1, 1)))
True

Read next: ``kernels/causal_cpu.py`` (the causal 1-D convolution on the CPU: a GEMM per tap).
"""
import functools
import os

import numpy as np
from numba import njit, prange

from .threads import ordered_sum, parallel_map

TILES = {  # m: (Aᵀ (m × a), G (a × 3), Bᵀ (a × a)), a = m + 2
    2: (np.array([[1, 1, 1, 0], [0, 1, -1, -1]], dtype=np.float64),
        np.array([[1, 0, 0], [.5, .5, .5], [.5, -.5, .5], [0, 0, 1]]),
        np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], dtype=np.float64)),
    4: (np.array([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0],
                  [0, 1, -1, 8, -8, 1]], dtype=np.float64),
        np.array([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
                  [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]]),
        np.array([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
                  [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]],
                 dtype=np.float64)),
}
MIN_CHANNELS = 32  # narrower layers, or fewer output pixels than MIN_PIXELS over the batch:
MIN_PIXELS = 128   # there the transforms outweigh the multiplies saved (measured)
CHUNK_BYTES = 2 << 20  # the transformed tiles of a chunk of images stay in cache
# MINIMETA_WINOGRAD: "auto" (the measured choice below), "f2" (F(2×2) only: float32 results
# as precise as the direct product, a little slower) or "off" (the direct GEMMs only)
MODE = os.environ.get("MINIMETA_WINOGRAD", "auto").lower()
if MODE not in ("auto", "f2", "off"):
    raise ValueError(f"MINIMETA_WINOGRAD must be auto, f2 or off, got {MODE!r}")


def pays(x_shape, w_shape, stride, padding):
    """Whether ``conv_numba`` takes this path: 3×3 filters, stride 1, wide enough channels,
    enough output pixels."""
    o, c, kh, kw = w_shape
    if MODE == "off" or stride != 1 or kh != 3 or kw != 3 or min(c, o) < MIN_CHANNELS:
        return False
    ho, wo = _grid(x_shape, padding, 1)[:2]
    return ho > 0 and wo > 0 and x_shape[0] * ho * wo >= MIN_PIXELS


@functools.lru_cache(maxsize=None)
def _rows(m, which, dtype):
    """The rows of tile size m's matrix ``which`` ("Bt", "At" or "A") as their non-zero
    entries, the transforms being mostly zeros and ±1: (how many in each row, their columns,
    their values in ``dtype``), for the loops below. Made once per (m, which, dtype)."""
    at, _, bt = TILES[m]
    L = {"Bt": bt, "At": at, "A": at.T}[which].astype(dtype)
    count = np.count_nonzero(L, axis=1)
    cols = np.zeros(L.shape, dtype=np.int64)
    vals = np.zeros(L.shape, dtype=L.dtype)
    for u, row in enumerate(L):
        nz = np.flatnonzero(row)
        cols[u, :len(nz)], vals[u, :len(nz)] = nz, row[nz]
    return count, cols, vals


@njit(parallel=True, cache=True, fastmath=True)
def _tiles_in(xh, count, cols, vals, step, th, tw):
    """Z[(u, v), (b, i, j), :] = Σ_kl L[u, k] L[v, l] xh[b, i·step + k, j·step + l, :]: every
    tile (tiles ``step`` apart) → L tile Lᵀ, over all channels, L given by ``_rows(L)``.
    First along rows (R, one tile row's worth), then along columns."""
    n, _, wp, c = xh.shape
    r = len(count)
    Z = np.empty((r * r, n * th * tw, c), dtype=xh.dtype)
    for t in prange(n * th):                    # one tile row (image b, row i) per iteration
        b, i = t // th, t % th
        R = np.empty((r, wp, c), dtype=xh.dtype)
        for u in range(r):                      # R[u] = Σ_k L[u, k] · row i·step + k
            Ru, src, first = R[u], xh[b, i * step + cols[u, 0]], vals[u, 0]
            for col in range(wp):
                for ch in range(c):
                    Ru[col, ch] = first * src[col, ch]
            for e in range(1, count[u]):
                src, coef = xh[b, i * step + cols[u, e]], vals[u, e]
                for col in range(wp):
                    for ch in range(c):
                        Ru[col, ch] += coef * src[col, ch]
        for j in range(tw):                     # Z[(u, v)] = Σ_l L[v, l] · R[u] column j·step + l
            for u in range(r):
                Ru = R[u]
                for v in range(r):
                    out, at, first = Z[u * r + v, t * tw + j], j * step + cols[v, 0], vals[v, 0]
                    for ch in range(c):
                        out[ch] = first * Ru[at, ch]
                    for e in range(1, count[v]):
                        at, coef = j * step + cols[v, e], vals[v, e]
                        for ch in range(c):
                            out[ch] += coef * Ru[at, ch]
    return Z


@njit(parallel=True, cache=True, fastmath=True)
def _tiles_out(M, count, cols, vals, n, th, tw, ho, wo):
    """y[b, i·m + u, j·m + v, :] = Σ_kl A[u, k] A[v, l] M[(k, l), (b, i, j), :], channel-last,
    cropped to ho × wo (tiles at the bottom and right edges may overhang); A by ``_rows(A)``."""
    o, m = M.shape[2], len(count)
    a = int(np.sqrt(M.shape[0]) + 0.5)
    y = np.empty((n, ho, wo, o), dtype=M.dtype)
    for t in prange(n * th):
        b, i = t // th, t % th
        S = np.empty((m, a, o), dtype=M.dtype)
        for j in range(tw):
            p = t * tw + j
            for u in range(m):                  # S[u, v] = Σ_k A[u, k] M[(k, v)]
                for v in range(a):
                    out, src, first = S[u, v], M[cols[u, 0] * a + v, p], vals[u, 0]
                    for oc in range(o):
                        out[oc] = first * src[oc]
                    for e in range(1, count[u]):
                        src, coef = M[cols[u, e] * a + v, p], vals[u, e]
                        for oc in range(o):
                            out[oc] += coef * src[oc]
            for u in range(min(m, ho - i * m)):  # y = Σ_l A[v, l] S[u, l], cropped
                for v in range(min(m, wo - j * m)):
                    out, src, first = y[b, i * m + u, j * m + v], S[u, cols[v, 0]], vals[v, 0]
                    for oc in range(o):
                        out[oc] = first * src[oc]
                    for e in range(1, count[v]):
                        src, coef = S[u, cols[v, e]], vals[v, e]
                        for oc in range(o):
                            out[oc] += coef * src[oc]
    return y


def _grid(shape, padding, m):
    """Output size and tile counts of a 3×3 'same-or-valid' convolution on (N, C, H, W)."""
    ho, wo = shape[2] + 2 * padding - 2, shape[3] + 2 * padding - 2
    return ho, wo, -(-ho // m), -(-wo // m)


def _on_grid(a, offset, hp, wp, dtype):
    """a (N, C, H, W) made channel-last, at (offset, offset) of an (N, hp, wp, C) grid of zeros.
    Only the border is zeroed, the inside being written next (np.zeros was a pass more)."""
    n, c, h, w = a.shape
    out = np.empty((n, hp, wp, c), dtype=dtype)
    out[:, :offset] = out[:, offset + h:] = 0
    out[:, :, :offset] = out[:, :, offset + w:] = 0
    out[:, offset:offset + h, offset:offset + w] = a.transpose(0, 2, 3, 1)
    return out


def _input_tiles(x, padding, m):
    """V (a², N·tiles, C): x made channel-last on the zero-padded tile grid, transformed."""
    _, _, th, tw = _grid(x.shape, padding, m)
    xh = _on_grid(x, padding, th * m + 2, tw * m + 2, x.dtype)
    return _tiles_in(xh, *_rows(m, "Bt", x.dtype), m, th, tw)


def tile(n, ho, wo):
    """The tile size m: F(4×4) for batches of 16 images and more, where its GEMMs are big
    enough to gain from 2.25× fewer multiplies than F(2×2) (10–40% faster on conv4's layers at
    20–75 images, even at 640); F(2×2), cheaper to transform and more precise, on a few images
    (a 5-image support set: 10–40% faster). Measured per layer, docs/PERFORMANCE.md.
    ``MINIMETA_WINOGRAD=f2``: F(2×2) always."""
    return 4 if n >= 16 and MODE == "auto" else 2


def _chunks(n, per_image):
    """Image ranges whose transformed tiles stay near CHUNK_BYTES (in cache, not memory)."""
    step = max(1, min(n, CHUNK_BYTES // max(per_image, 1)))
    return [(a, min(a + step, n)) for a in range(0, n, step)]


@functools.lru_cache(maxsize=None)
def _kron(m, dtype):
    """kron(G, G) (a² × 9): the filter transform G w Gᵀ as one matrix on flattened filters."""
    g = TILES[m][1]
    return np.kron(g, g).astype(dtype)


def conv2d(x, w, padding=1, m=None):
    """y = conv_ref.conv2d(x, w, 1, padding) for 3×3 filters, by F(m×m, 3×3). Chunks of images
    go through the three steps on their own, shared out over the threads."""
    x = np.ascontiguousarray(x)
    n, c = x.shape[:2]
    o = w.shape[0]
    ho, wo = _grid(x.shape, padding, 1)[:2]
    m = m or tile(n, ho, wo)
    th, tw = _grid(x.shape, padding, m)[2:]
    a2 = (m + 2) ** 2
    U = _kron(m, x.dtype) @ w.reshape(o * c, 9).T.astype(x.dtype)        # G w Gᵀ: (a², O·C)
    Ut = np.ascontiguousarray(U.reshape(a2, o, c).transpose(0, 2, 1))     # (a², C, O)
    A = _rows(m, "At", x.dtype)
    y = np.empty((n, o, ho, wo), dtype=x.dtype)

    def chunk(bounds):  # chunks write disjoint images of y
        a, b = bounds
        V = _input_tiles(x[a:b], padding, m)                              # (a², P, C)
        Y = _tiles_out(np.matmul(V, Ut), *A, b - a, th, tw, ho, wo)       # (n, Ho, Wo, O)
        y[a:b] = Y.transpose(0, 3, 1, 2)

    parallel_map(chunk, _chunks(n, a2 * th * tw * max(c, o) * x.itemsize))
    return y


def conv2d_weight_grad(x, g, padding=1, m=None):
    """gw = conv_ref.conv2d_weight_grad(x, g, (O, C, 3, 3), 1, padding), by F(m×m, 3×3); the
    chunks' products summed in runs fixed by the chunk count (``threads.ordered_sum``: the same
    bits on any number of threads)."""
    x = np.ascontiguousarray(x)
    n, c = x.shape[:2]
    o, ho, wo = g.shape[1:]
    m = m or tile(n, ho, wo)
    th, tw = _grid(x.shape, padding, m)[2:]
    a2 = (m + 2) ** 2
    A = _rows(m, "A", x.dtype)                                            # A: (a × m)

    def part(bounds):  # one chunk of images
        a, b = bounds
        V = _input_tiles(x[a:b], padding, m)                              # (a², P, C)
        gh = _on_grid(g[a:b], 0, th * m, tw * m, x.dtype)                 # gY on the tile grid
        gM = _tiles_in(gh, *A, m, th, tw)                                 # A gY Aᵀ: (a², P, O)
        return np.matmul(gM.transpose(0, 2, 1), V)                        # (a², O, C)

    gU = ordered_sum(part, _chunks(n, a2 * th * tw * max(c, o) * x.itemsize),
                     lambda: np.zeros((a2, o, c), x.dtype))
    gw = _kron(m, x.dtype).T @ gU.reshape(a2, o * c)                      # Gᵀ gU G: (9, O·C)
    return np.ascontiguousarray(gw.T.reshape(o, c, 3, 3))
