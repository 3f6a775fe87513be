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

The tile transforms are numba loops over channel-last numbers: ``_tiles_in`` copies an image of
the NCHW input at a time onto its zero-padded tile grid (H, W, C), in cache, and ``_tiles_out``
copies a tile row of outputs back into NCHW (done by NumPy for the whole batch, through memory,
these copies had been a tenth of a training step). Each transform applies a 1-D transform
twice, along rows, then along columns; the six 1-D transforms (Bᵀ, Aᵀ and A of both tile sizes)
are written out in ``_line``, their zeros and ±1s skipped and shared terms computed once, each a
vector loop over a contiguous run of numbers: a whole row of the grid, then a tile row's
channels. The transformed tiles are stored position by position, (a², tiles, C): each GEMM's
(tiles × C) matrix is one contiguous block, as BLAS reads fastest (a tile's numbers together,
(tiles, a², C), had made each GEMM read rows a² · C apart: 20-30% slower GEMMs, a sixth of the
layer). A tile is transformed in cache, in a small block of its own, and copied out run by run
(C numbers at each of its a² positions); ``_tiles_out`` gathers a tile's runs the same way.

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

from .threads import image_chunks, ordered_sum, parallel_map

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


# The six 1-D transforms of TILES, written out: what each matrix does to a column of k numbers
# (each number a run of channels here), its zeros and ±1s skipped, its shared terms computed
# once. Numbered for the kernels below; tests/test_winograd.py holds each to its matrix.
BT2, BT4, AT2, AT4, A2, A4 = range(6)   # Bᵀ (a × a), Aᵀ (m × a), A (a × m), for m = 2 and 4
LINES = {(2, "Bt"): BT2, (4, "Bt"): BT4, (2, "At"): AT2, (4, "At"): AT4,
         (2, "A"): A2, (4, "A"): A4}


@njit(inline="always", fastmath=True)
def _line(kind, s, d):
    """d[r, q] = Σ_k L[r, k] s[k, q] for the transform L numbered ``kind`` (``LINES``): the k
    rows of s, each a run of numbers, into the r rows of d. The kernels pass C-contiguous views
    (numba then knows each run is contiguous; a view with a step is typed with its strides read
    at run time). Every row is loaded once and every output stored once (the general product, a
    loop over the matrix's entries, read and wrote each output once an entry). The constants
    are of d's dtype, ``c(4)``: numba types ``4 * v`` of a float32 v as float64 (NumPy's rule
    for an int64 with a float32), and F(4×4)'s float32 transforms had run in float64, every
    number converted there and back (1.1–1.6× slower; F(2×2)'s have no constants)."""
    c = d.dtype.type
    if kind == BT4:                                      # Bᵀ of F(4×4, 3×3): 6 → 6
        for q in range(s.shape[1]):
            s0, s1, s2, s3, s4, s5 = s[0, q], s[1, q], s[2, q], s[3, q], s[4, q], s[5, q]
            e, f = s4 - c(4) * s2, s3 - c(4) * s1        # (rows 1 and 2 share these)
            u, v = s4 - s2, c(2) * (s3 - s1)             # (rows 3 and 4)
            d[0, q] = c(4) * s0 - c(5) * s2 + s4
            d[1, q], d[2, q] = e + f, e - f
            d[3, q], d[4, q] = u + v, u - v
            d[5, q] = c(4) * s1 - c(5) * s3 + s5
    elif kind == AT4:                                    # Aᵀ of F(4×4, 3×3): 6 → 4
        for q in range(s.shape[1]):
            s0, s1, s2, s3, s4, s5 = s[0, q], s[1, q], s[2, q], s[3, q], s[4, q], s[5, q]
            p, m, r, t = s1 + s2, s1 - s2, s3 + s4, s3 - s4
            d[0, q], d[1, q] = s0 + p + r, m + c(2) * t
            d[2, q], d[3, q] = p + c(4) * r, m + c(8) * t + s5
    elif kind == A4:                                     # A of F(4×4, 3×3): 4 → 6
        for q in range(s.shape[1]):
            s0, s1, s2, s3 = s[0, q], s[1, q], s[2, q], s[3, q]
            e, f, e4, f8 = s0 + s2, s1 + s3, s0 + c(4) * s2, c(2) * s1 + c(8) * s3
            d[0, q], d[1, q], d[2, q] = s0, e + f, e - f
            d[3, q], d[4, q], d[5, q] = e4 + f8, e4 - f8, s3
    elif kind == BT2:                                    # Bᵀ of F(2×2, 3×3): 4 → 4
        for q in range(s.shape[1]):
            s0, s1, s2, s3 = s[0, q], s[1, q], s[2, q], s[3, q]
            d[0, q], d[1, q], d[2, q], d[3, q] = s0 - s2, s1 + s2, s2 - s1, s1 - s3
    elif kind == AT2:                                    # Aᵀ of F(2×2, 3×3): 4 → 2
        for q in range(s.shape[1]):
            s1, s2 = s[1, q], s[2, q]
            d[0, q], d[1, q] = s[0, q] + s1 + s2, s1 - s2 - s[3, q]
    else:                                                # A of F(2×2, 3×3): 2 → 4
        for q in range(s.shape[1]):
            s0, s1 = s[0, q], s[1, q]
            d[0, q], d[1, q], d[2, q], d[3, q] = s0, s0 + s1, s0 - s1, -s1


@njit(parallel=True, cache=True, fastmath=True)
def _tiles_in(x, pad, kind, k, r, step, th, tw):
    """Z[(u, v), (b, i, j), :] = Σ_kl L[u, k] L[v, l] xp[b, :, i·step + k, j·step + l]: every
    k × k tile (tiles ``step`` apart) of x (N, C, H, W) zero-padded by ``pad`` (xp) → L tile Lᵀ
    (r × r), over all channels, L the transform numbered ``kind``. An image is first copied
    channel-last onto its zero-padded tile grid X (zeros also where tiles overhang the bottom
    and right edges); then, a tile row at a time, along rows (R), then along columns, a tile's
    row at a time, into T (r, C), whose r runs of C numbers go to their positions in Z."""
    n, c, h, w = x.shape
    hp, wp = (th - 1) * step + k, (tw - 1) * step + k      # the padded tile grid
    Z = np.empty((r * r, n * th * tw, c), dtype=x.dtype)
    for b in prange(n):
        # the copy, image by image, in cache: made for the whole input in memory by NumPy, the
        # grid had taken 7% of a training step and zeroing its border 2%
        xb = x[b].reshape(c, h * w)
        X = np.empty((hp, wp, c), dtype=x.dtype)
        X[:pad] = 0
        X[pad + h:] = 0
        X[pad:pad + h, :pad] = 0
        X[pad:pad + h, pad + w:] = 0
        for p in range(h * w):                  # pixel p of the image: X's row pad + p // w
            Xp = X[pad + p // w, pad + p % w]
            for ch in range(c):
                Xp[ch] = xb[ch, p]
        rows = X.reshape(hp, wp * c)            # a row of the grid as one run of numbers
        R = np.empty((r, wp, c), dtype=x.dtype)
        T = np.empty((r, c), dtype=x.dtype)
        for i in range(th):
            t = b * th + i                      # tile row i of image b
            _line(kind, rows[i * step:i * step + k], R.reshape(r, wp * c))
            for j in range(tw):                 # Z[u, v] = Σ_l L[v, l] · R[u] column j·step + l
                for u in range(r):
                    _line(kind, R[u, j * step:j * step + k], T)
                    for v in range(r):
                        Zp, Tv = Z[u * r + v, t * tw + j], T[v]
                        for ch in range(c):
                            Zp[ch] = Tv[ch]
    return Z


@njit(parallel=True, cache=True, fastmath=True)
def _tiles_out(M, kind, m, th, tw, y):
    """y[b, :, i·m + u, j·m + v] = Σ_kl A[u, k] A[v, l] M[(k, l), (b, i, j), :], into y
    (N, O, Ho, Wo), cropped (tiles at the bottom and right edges may overhang); Aᵀ numbered
    ``kind``. A tile's a² runs of O numbers are gathered into T (read in place, through a
    view of M with strides, numba's loops did not vectorize: twice the time), then transformed
    along its rows first (S), then along its columns into a tile row of outputs (Y,
    channel-last), copied into y."""
    n, o, ho, wo = y.shape
    a = m + 2
    for t in prange(n * th):
        b, i = t // th, t % th
        T = np.empty((a * a, o), dtype=M.dtype)
        S = np.empty((m, a, o), dtype=M.dtype)
        Y = np.empty((m, tw * m, o), dtype=M.dtype)
        for j in range(tw):
            for kl in range(a * a):
                Tk, Mk = T[kl], M[kl, t * tw + j]
                for ch in range(o):
                    Tk[ch] = Mk[ch]
            _line(kind, T.reshape(a, a * o), S.reshape(m, a * o))
            for u in range(m):                  # Y = Σ_l A[v, l] S[u, l]
                _line(kind, S[u], Y[u, j * m:j * m + m])
        yb = y[b].reshape(o, ho * wo)
        for u in range(min(m, ho - i * m)):     # cropped to y
            for col in range(wo):
                p = (i * m + u) * wo + col
                Yc = Y[u, col]
                for ch in range(o):
                    yb[ch, p] = Yc[ch]


def _grid(shape, padding, m):
    """Output size and tile counts of a 3×3 'same-or-valid' convolution on (N, C, H, W)."""
    ho, wo = shape[2] + 2 * padding - 2, shape[3] + 2 * padding - 2
    return ho, wo, -(-ho // m), -(-wo // m)


def _input_tiles(x, padding, m):
    """V (a², N·tiles, C): x's tiles, zero-padded, transformed."""
    _, _, th, tw = _grid(x.shape, padding, m)
    return _tiles_in(x, padding, LINES[m, "Bt"], m + 2, m + 2, m, th, tw)


def tile(n):
    """The tile size m: F(4×4) for batches of 16 images and more, where its GEMMs are big
    enough to gain from 2.25× fewer multiplies than F(2×2) (10–40% faster on conv4's layers at
    20–75 images, even at 640); F(2×2), cheaper to transform and more precise, on a few images
    (a 5-image support set: 10–40% faster). Measured per layer, docs/PERFORMANCE.md.
    ``MINIMETA_WINOGRAD=f2``: F(2×2) always."""
    return 4 if n >= 16 and MODE == "auto" else 2


def _chunks(n, per_image):
    """Image ranges whose transformed tiles stay near CHUNK_BYTES (in cache, not memory)."""
    return image_chunks(n, per_image, CHUNK_BYTES)


@functools.lru_cache(maxsize=None)
def _kron(m, dtype):
    """kron(G, G) (a² × 9): the filter transform G w Gᵀ as one matrix on flattened filters."""
    g = TILES[m][1]
    return np.kron(g, g).astype(dtype)


def conv2d(x, w, padding=1, m=None):
    """y = conv_ref.conv2d(x, w, 1, padding) for 3×3 filters, by F(m×m, 3×3). Chunks of images
    go through the three steps on their own, shared out over the threads."""
    return conv2d_checked(x, w, padding, m)[0]


def conv2d_checked(x, w, padding=1, m=None):
    """(``conv2d``, whether its every value is finite): each chunk sums what it wrote while
    that is in cache, on its own thread (a NaN or an inf makes the sum NaN or inf). One sum
    of the whole result after it, on the calling thread alone, had taken 3% of conv4's step."""
    x = np.ascontiguousarray(x)
    n, c = x.shape[:2]
    o = w.shape[0]
    ho, wo = _grid(x.shape, padding, 1)[:2]
    m = m or tile(n)
    th, tw = _grid(x.shape, padding, m)[2:]
    a2 = (m + 2) ** 2
    wt = w.transpose(1, 0, 2, 3).reshape(c * o, 9).astype(x.dtype, copy=False)  # (C·O, 9)
    Ut = (_kron(m, x.dtype) @ wt.T).reshape(a2, c, o)                     # G w Gᵀ: (a², C, O)
    y = np.empty((n, o, ho, wo), dtype=x.dtype)

    def chunk(bounds):  # chunks write disjoint images of y
        a, b = bounds
        V = _input_tiles(x[a:b], padding, m)                              # (a², P, C)
        M = np.matmul(V, Ut)                                   # a² GEMMs: (a², P, O)
        _tiles_out(M, LINES[m, "At"], m, th, tw, y[a:b])                  # (n, O, Ho, Wo)
        return bool(np.isfinite(np.sum(y[a:b])))

    return y, all(parallel_map(chunk, _chunks(n, a2 * th * tw * max(c, o) * x.itemsize)))


def conv2d_weight_grad(x, g, padding=1, m=None):
    """gw = conv_ref.conv2d_weight_grad(x, g, (O, C, 3, 3), 1, padding), by F(m×m, 3×3); the
    chunks' products summed in runs fixed by the chunk count (``threads.ordered_sum``: the same
    bits on any number of threads)."""
    x, g = np.ascontiguousarray(x), np.ascontiguousarray(g, dtype=x.dtype)
    n, c = x.shape[:2]
    o = g.shape[1]
    m = m or tile(n)
    th, tw = _grid(x.shape, padding, m)[2:]
    a2 = (m + 2) ** 2

    def part(bounds):  # one chunk of images
        a, b = bounds
        V = _input_tiles(x[a:b], padding, m)                              # (a², P, C)
        gM = _tiles_in(g[a:b], 0, LINES[m, "A"], m, m + 2, m, th, tw)    # A gY Aᵀ: (a², P, O)
        return np.matmul(gM.transpose(0, 2, 1), V)                        # (a², O, C)

    gU = ordered_sum(part, _chunks(n, a2 * th * tw * max(c, o) * x.itemsize),
                     lambda: np.zeros((a2, o, c), x.dtype))
    gw = _kron(m, x.dtype).T @ gU.reshape(a2, o * c)                      # Gᵀ gU G: (9, O·C)
    return np.ascontiguousarray(gw.T.reshape(o, c, 3, 3))
