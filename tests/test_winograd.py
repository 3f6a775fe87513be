"""Winograd convolution (kernels/winograd_numba.py) equals the reference convolution, as a kernel
on its own, as the path ``conv_numba`` takes for wide 3×3 layers, and through second-order
derivatives; a wrong transform constant is caught; float32 is transformed in float32."""
import os
import subprocess
import sys

import numba
import numpy as np
import pytest
from hypothesis import given, strategies as st

import minimeta as mm
import minimeta.functional as F
from minimeta import kernels as K
from minimeta.kernels import conv_numba, conv_ref, winograd_numba as W
from minimeta.testing import arrays


def close(got, want, dtype, scale_tol=None):
    tol = scale_tol or (5e-5 if dtype == np.float32 else 1e-12)  # F(4×4) in float32: ~1e-5
    np.testing.assert_allclose(got, want, rtol=0, atol=tol * max(1.0, np.abs(want).max()))


@st.composite
def winograd_case(draw):
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    p = draw(st.integers(0, 2))
    h, w = (draw(st.integers(max(1, 3 - 2 * p), 11)) for _ in range(2))
    x = draw(arrays((draw(st.integers(1, 3)), draw(st.integers(1, 4)), h, w), dtype=dtype))
    wt = draw(arrays((draw(st.integers(1, 4)), x.shape[1], 3, 3), dtype=dtype))
    return x, wt, p, draw(st.sampled_from(sorted(W.TILES))), dtype


def check_against_reference(x, w, p, m, dtype):
    y = W.conv2d(x, w, p, m)
    assert y.dtype == dtype
    close(y, conv_ref.conv2d(x, w, 1, p), dtype)
    g = np.random.default_rng(0).standard_normal(y.shape).astype(dtype)
    gw = W.conv2d_weight_grad(x, g, p, m)
    assert gw.dtype == dtype and gw.shape == w.shape
    close(gw, conv_ref.conv2d_weight_grad(x, g, w.shape, 1, p), dtype)


@given(winograd_case())
def test_winograd_equals_reference(case):
    """Both tile sizes, any plane (tiles overhanging the edges), padding 0-2, any layout."""
    check_against_reference(*case)


@pytest.fixture
def fresh_transforms():
    """The filter transform is cached per (tile, dtype); a test that edits ``TILES`` starts and
    ends with an empty cache."""
    W._kron.cache_clear()
    yield
    W._kron.cache_clear()


def test_a_wrong_transform_constant_is_caught(monkeypatch, fresh_transforms):
    """Mutation: one entry of F(2×2)'s filter transform G off by 1% must fail the check."""
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal((2, 3, 6, 6)), rng.standard_normal((4, 3, 3, 3))
    check_against_reference(x, w, 1, 2, np.float64)
    W._kron.cache_clear()
    at, g, bt = W.TILES[2]
    bad = g.copy()
    bad[1, 1] *= 1.01
    monkeypatch.setitem(W.TILES, 2, (at, bad, bt))
    with pytest.raises(AssertionError):
        check_against_reference(x, w, 1, 2, np.float64)


def matrix(m, which):
    """The spec of a written-out transform: its matrix in ``TILES``."""
    at, _, bt = W.TILES[m]
    return {"Bt": bt, "At": at, "A": at.T}[which]


def transform_mismatches(s_by_size):
    """The (m, which) whose written-out transform ``_line`` differs from its matrix on the
    given inputs (a dict: number of input rows → array of rows)."""
    bad = []
    for (m, which), kind in W.LINES.items():
        L = matrix(m, which)
        s = s_by_size[L.shape[1]]
        d = np.full((L.shape[0], s.shape[1]), np.nan)
        W._line(kind, s, d)
        if not np.allclose(d, L @ s, rtol=1e-13, atol=1e-13 * max(1.0, np.abs(s).max())):
            bad.append((m, which))
    return bad


@given(st.integers(1, 40).flatmap(
    lambda q: st.tuples(*(arrays((k, q), dtype=np.float64) for k in (2, 4, 6)))))
def test_each_written_out_transform_is_its_matrix(rows):
    """The six 1-D transforms the kernels run (``_line``: Bᵀ, Aᵀ and A of both tile sizes, written
    out with their zeros skipped and terms shared) equal multiplication by ``TILES``, every row
    of the output written."""
    assert transform_mismatches(dict(zip((2, 4, 6), rows))) == []


@pytest.mark.parametrize("m, which, at", [(4, "Bt", (2, 1)), (4, "At", (3, 5)), (2, "Bt", (0, 2)),
                                          (2, "At", (1, 3)), (4, "A", (4, 2))])
def test_a_wrong_entry_in_a_transform_matrix_is_caught(m, which, at, monkeypatch):
    """Mutation: one entry of a matrix of ``TILES`` off (a sign flipped, or 1 added where it is
    0) makes the written-out transform disagree with its spec."""
    rng = np.random.default_rng(5)
    rows = {k: rng.standard_normal((k, 7)) for k in (2, 4, 6)}
    assert transform_mismatches(rows) == []
    at_, g, bt = (t.copy() for t in W.TILES[m])
    bad = {"Bt": bt, "At": at_, "A": at_.T}[which]
    bad[at] = -bad[at] if bad[at] else 1.0
    monkeypatch.setitem(W.TILES, m, (at_, g, bt))
    assert (m, which) in transform_mismatches(rows)


@pytest.mark.parametrize("kind", sorted(W.LINES.values()))
def test_float32_transforms_compute_in_float32(kind):
    """numba types ``4 * v`` of a float32 v as float64 (NumPy's rule for an int64 with a float32):
    ``_line``'s integer constants had made F(4×4)'s float32 transforms run in float64, every
    number converted there and back (1.1–1.6× slower). No value in a float32 ``_line`` is typed
    float64, as numba's typing of it says (``4 * s2`` in place of ``c(4) * s2`` fails this)."""
    @numba.njit
    def call(s, d):
        W._line(kind, s, d)

    call(np.zeros((6, 8), np.float32), np.zeros((6, 8), np.float32))
    typemap = call.overloads[call.signatures[0]].type_annotation.typemap   # (_line inlined)
    assert not [name for name, t in typemap.items() if t == numba.types.float64]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,padding", [((6, 32, 7, 7), 1), ((2, 40, 14, 12), 1),
                                           ((20, 32, 3, 3), 1), ((3, 32, 9, 9), 0)])
def test_conv_numba_takes_winograd_for_wide_layers(shape, padding, dtype, monkeypatch):
    """conv_numba's three kernels (the input gradient through the flipped filters) go through
    Winograd here, in one chunk or several, and equal the reference; so does a stack."""
    calls = []
    real = W.conv2d_checked, W.conv2d_weight_grad
    monkeypatch.setattr(W, "conv2d_checked",
                        lambda *a, **k: calls.append("f") or real[0](*a, **k))
    monkeypatch.setattr(W, "conv2d_weight_grad",
                        lambda *a, **k: calls.append("w") or real[1](*a, **k))
    monkeypatch.setattr(W, "CHUNK_BYTES", 64 << 10)  # several chunks of images
    rng = np.random.default_rng(3)
    x = rng.standard_normal(shape).astype(dtype)
    w = (rng.standard_normal((33, shape[1], 3, 3)) / 10).astype(dtype)
    y = conv_ref.conv2d(x, w, 1, padding)
    g = rng.standard_normal(y.shape).astype(dtype)
    close(conv_numba.conv2d(x, w, 1, padding), y, dtype)
    close(conv_numba.conv2d_input_grad(g, w, x.shape, 1, padding),
          conv_ref.conv2d_input_grad(g, w, x.shape, 1, padding), dtype)
    close(conv_numba.conv2d_weight_grad(x, g, w.shape, 1, padding),
          conv_ref.conv2d_weight_grad(x, g, w.shape, 1, padding), dtype)
    assert calls == ["f", "f", "w"]
    stack = np.stack([x, x[::-1]])
    ws = np.stack([w, -w])
    ys = conv_numba.conv2d(stack, ws, 1, padding)
    close(ys[0], y, dtype)
    close(ys[1], conv_ref.conv2d(x[::-1], -w, 1, padding), dtype)


def test_narrow_or_small_layers_keep_the_direct_paths():
    assert not W.pays((75, 16, 14, 14), (64, 16, 3, 3), 1, 1)      # narrow input
    assert not W.pays((75, 64, 14, 14), (64, 64, 3, 3), 2, 1)      # stride 2
    assert not W.pays((75, 64, 14, 14), (64, 64, 5, 5), 1, 2)      # 5×5 filters
    assert not W.pays((5, 64, 3, 3), (64, 64, 3, 3), 1, 1)         # 45 output pixels
    assert W.pays((75, 64, 14, 14), (64, 64, 3, 3), 1, 1)


def test_second_order_derivatives_through_winograd_equal_the_reference(monkeypatch):
    """A Hessian-vector product through a wide conv layer (forward, both gradients and their
    own gradients all on the Winograd path) equals the one computed by the reference kernels."""
    calls = []
    real = W.conv2d_checked, W.conv2d_weight_grad
    monkeypatch.setattr(W, "conv2d_checked",
                        lambda *a, **k: calls.append("f") or real[0](*a, **k))
    monkeypatch.setattr(W, "conv2d_weight_grad",
                        lambda *a, **k: calls.append("w") or real[1](*a, **k))
    rng = np.random.default_rng(4)
    x = rng.standard_normal((4, 32, 6, 6))
    w0 = rng.standard_normal((32, 32, 3, 3)) / 10
    v = rng.standard_normal(w0.shape)
    assert W.pays(x.shape, w0.shape, 1, 1)

    def hvp():
        w = mm.tensor(w0, requires_grad=True)
        xt = mm.tensor(x, requires_grad=True)
        loss = mm.sum(mm.tanh(F.conv2d(F.conv2d(xt, w, padding=1), w, padding=1)) ** 2)
        gw, gx = mm.grad(loss, [w, xt], create_graph=True)
        second = mm.grad(mm.sum(gw * mm.tensor(v)) + mm.sum(gx ** 2), [w, xt])
        return [t.numpy() for t in (gw, gx, *second)]

    fast = hvp()
    assert calls.count("f") >= 8 and calls.count("w") >= 4  # every order went through it
    with K.use_reference():
        slow = hvp()
    for a, b in zip(fast, slow):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-11 * np.abs(b).max())


@pytest.mark.parametrize("images", [2, 16])            # F(2×2) and F(4×4) tiles
@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan])
@pytest.mark.parametrize("image", [0, -1])             # in the first chunk, in the last
def test_a_non_finite_input_reaches_the_outputs_it_does_in_the_reference(images, bad, image,
                                                                         monkeypatch):
    """A Winograd tile mixes all its pixels: one inf had made 800 non-finite outputs for the
    reference's 288, most of them NaN (inf − inf); such a result is now done again directly.
    Each chunk of images checks its own outputs: the bad value lies in the first one or in
    the last (a mutant that read the first chunk's check alone fails the last)."""
    monkeypatch.setattr(W, "CHUNK_BYTES", 16 << 10)     # one image a chunk here
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((images, 32, 8, 8)), rng.standard_normal((32, 32, 3, 3))
    x[image, 0, 3, 3] = bad
    assert W.pays(x.shape, w.shape, 1, 1) and len(W._chunks(images, 36 * 16 * 32 * 8)) > 1
    y = conv_ref.conv2d(x, w, 1, 1)
    g = rng.standard_normal(y.shape)
    g[image, 1, 2, 2] = bad
    for got, want in (
            (conv_numba.conv2d(x, w, 1, 1), y),
            (conv_numba.conv2d_input_grad(g, w, x.shape, 1, 1),
             conv_ref.conv2d_input_grad(g, w, x.shape, 1, 1)),
            (conv_numba.conv2d_weight_grad(x, g, w.shape, 1, 1),
             conv_ref.conv2d_weight_grad(x, g, w.shape, 1, 1))):
        assert not np.isfinite(want).all()
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        np.testing.assert_array_equal(np.isposinf(got), np.isposinf(want))
        np.testing.assert_array_equal(np.isneginf(got), np.isneginf(want))
        finite = np.isfinite(want)
        np.testing.assert_allclose(got[finite], want[finite], rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("mode, taken, bound", [("auto", 4, 5e-6), ("f2", 2, 6e-7),
                                                ("off", None, 6e-7)])
def test_minimeta_winograd_trades_speed_for_float32_digits(mode, taken, bound, monkeypatch):
    """``MINIMETA_WINOGRAD``: the default takes F(4×4) on a batch of 32 (float32 error ~1.5e-6
    of the output's scale), ``f2`` F(2×2) and ``off`` the direct GEMMs (both ~3e-7, as
    PyTorch's): a probe found F(4×4)'s error flipping max-pool choices (2026-12-01)."""
    monkeypatch.setattr(W, "MODE", mode)
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((32, 64, 14, 14)), rng.standard_normal((64, 64, 3, 3)) / 24
    assert W.pays(x.shape, w.shape, 1, 1) == (taken is not None)
    assert taken is None or W.tile(32) == taken
    want = conv_ref.conv2d(x, w, 1, 1)
    got = conv_numba.conv2d(x.astype(np.float32), w.astype(np.float32), 1, 1)
    error = np.sqrt(np.mean((got - want) ** 2) / np.mean(want ** 2))     # relative RMS
    assert error < bound and (mode == "auto") == (error > 6e-7)


def test_a_bad_minimeta_winograd_is_one_line_at_import():
    env = dict(os.environ, MINIMETA_WINOGRAD="fast")
    out = subprocess.run([sys.executable, "-c", "import minimeta.kernels.winograd_numba"],
                         env=env, capture_output=True, text=True)
    assert out.returncode != 0 and out.stderr.strip().splitlines()[-1] == (
        "ValueError: MINIMETA_WINOGRAD must be auto, f2 or off, got 'fast'")


def test_the_transformed_tiles_are_stored_position_by_position():
    """``_input_tiles``: V[ξ, tile, :] = (Bᵀ d B)[ξ] of each zero-padded input tile d, over all
    channels, in one C-contiguous (a², tiles, C) array: each of the a² GEMMs reads one
    contiguous (tiles × C) block (a tile's numbers together had made them 20-30% slower). The
    layout is checked against the transform written with NumPy; ``_tiles_out`` reads it back
    (the convolution's equality to the reference, above)."""
    rng = np.random.default_rng(7)
    for m, (n, c, h, w) in [(2, (2, 5, 5, 6)), (4, (3, 4, 7, 5))]:
        x = rng.standard_normal((n, c, h, w))
        V = W._input_tiles(x, 1, m)
        a = m + 2
        _, _, th, tw = W._grid(x.shape, 1, m)
        assert V.shape == (a * a, n * th * tw, c) and V.flags.c_contiguous
        bt = W.TILES[m][2]
        xp = np.zeros((n, c, (th - 1) * m + a, (tw - 1) * m + a))
        xp[:, :, 1:1 + h, 1:1 + w] = x
        for b in range(n):
            for i in range(th):
                for j in range(tw):
                    d = xp[b, :, i * m:i * m + a, j * m:j * m + a]          # (C, a, a)
                    want = np.einsum("uk,ckl,vl->uvc", bt, d, bt).reshape(a * a, c)
                    np.testing.assert_allclose(V[:, (b * th + i) * tw + j], want, atol=1e-12)
