"""The NumPy references in kernels/ against naive loops written straight from their formulas."""
import doctest
import importlib
import pathlib

import numpy as np
import pytest
from hypothesis import given, strategies as st

import minimeta.kernels
from minimeta.kernels import conv_ref, pool_ref
from minimeta.testing import arrays


def naive_conv(x, w, s, p):
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    ho, wo = (h + 2 * p - kh) // s + 1, (wd + 2 * p - kw) // s + 1
    y = np.zeros((n, o, ho, wo))
    for i in range(ho):
        for j in range(wo):
            patch = xp[:, :, i * s:i * s + kh, j * s:j * s + kw]
            y[:, :, i, j] = np.einsum("ncpq,ocpq->no", patch, w)
    return y


@st.composite
def case(draw):
    k, s, p = draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(0, 2))
    h, w = draw(st.integers(max(1, k - 2 * p), 7)), draw(st.integers(max(1, k - 2 * p), 7))
    x = draw(arrays((draw(st.integers(1, 2)), draw(st.integers(1, 3)), h, w)))
    wt = draw(arrays((draw(st.integers(1, 3)), x.shape[1], k, k)))
    return x, wt, s, p


@given(case())
def test_conv_family_against_loops_and_adjoint_identities(c):
    x, w, s, p = c
    y = conv_ref.conv2d(x, w, s, p)
    np.testing.assert_allclose(y, naive_conv(x, w, s, p), atol=1e-12)
    g = np.random.default_rng(0).standard_normal(y.shape)
    gx = conv_ref.conv2d_input_grad(g, w, x.shape, s, p)
    gw = conv_ref.conv2d_weight_grad(x, g, w.shape, s, p)
    # ⟨g, conv(x, w)⟩ = ⟨gx, x⟩ = ⟨gw, w⟩, and a second input probes gx's linearity
    inner = np.sum(g * y)
    assert np.isclose(inner, np.sum(gx * x), rtol=1e-12, atol=1e-12)
    assert np.isclose(inner, np.sum(gw * w), rtol=1e-12, atol=1e-12)
    x2 = np.random.default_rng(1).standard_normal(x.shape)
    assert np.isclose(np.sum(g * naive_conv(x2, w, s, p)), np.sum(gx * x2), rtol=1e-12,
                      atol=1e-12)


def check_max_pool(x, k, s, y, idx):
    """Loop check of a max pool's ``(y, idx)``: y is each window's max, and idx, for every
    output, is a flat index into x that lies INSIDE that output's window (same image, channel,
    rows i·s..i·s+k−1, columns j·s..j·s+k−1), at a maximal element, and the first one
    (row-major in the window) when several tie."""
    n, c, h, w = x.shape
    ho, wo = (h - k) // s + 1, (w - k) // s + 1
    assert y.shape == idx.shape == (n, c, ho, wo)
    b, ch, r, col = np.unravel_index(idx, x.shape)
    for i in range(ho):
        for j in range(wo):
            window = x[:, :, i * s:i * s + k, j * s:j * s + k]
            np.testing.assert_array_equal(y[:, :, i, j], window.max(axis=(2, 3)))
            first = window.reshape(n, c, k * k).argmax(axis=-1)     # first maximum
            np.testing.assert_array_equal(b[:, :, i, j], np.arange(n)[:, None].repeat(c, 1))
            np.testing.assert_array_equal(ch[:, :, i, j], np.arange(c)[None, :].repeat(n, 0))
            np.testing.assert_array_equal(r[:, :, i, j], i * s + first // k)
            np.testing.assert_array_equal(col[:, :, i, j], j * s + first % k)
    np.testing.assert_array_equal(x[b, ch, r, col], y)


def tied_arrays(shape):
    """Arrays with ties in most windows: all equal, or small integers."""
    return st.one_of(st.floats(-2, 2).map(lambda v: np.full(shape, v)),
                     st.integers(0, 2 ** 31).map(lambda seed: np.random.default_rng(
                         seed).integers(0, 3, shape).astype(float)))


@given(st.integers(1, 3), st.integers(1, 3),
       st.one_of(arrays((2, 2, 7, 6)), tied_arrays((2, 2, 7, 6))))
def test_max_pool_against_loops(k, s, x):
    y, idx = pool_ref.max_pool2d(x, k, s)
    check_max_pool(x, k, s, y, idx)


@pytest.mark.parametrize("k, s", [(1, 1), (2, 1), (2, 2), (3, 1), (3, 2), (2, 3), (3, 3)])
@pytest.mark.parametrize("fill", ["equal", "integers"])
def test_max_pool_ties_stay_inside_each_window(k, s, fill):
    """Ties (every element equal, or integers in 0..2) resolve to the first maximum of the
    window itself: never to an equal value in an overlapping or earlier window."""
    rng = np.random.default_rng(k * 10 + s)
    shape = (2, 3, 7, 8)
    x = np.full(shape, 1.5) if fill == "equal" else rng.integers(0, 3, shape).astype(float)
    y, idx = pool_ref.max_pool2d(x, k, s)
    check_max_pool(x, k, s, y, idx)
    check_max_pool(x, k, s, *pool_ref.max_pool2d(np.asfortranarray(x), k, s))


def bad_window_calls(conv, pool):
    """(call, message) pairs: the conv family of module ``conv`` and the max pooling of module
    ``pool`` (a reference, numba's or CUDA's) called directly with a window past the padded
    input, a stride of 0, a negative padding or a pooling window of 0, on a single batch and on
    a stack. numba's had returned empty outputs (or divided by zero), the references had failed
    inside NumPy's window view; each now says what is wrong, in one line."""
    x, w, g, w2 = np.ones((1, 2, 3, 3)), np.ones((1, 2, 4, 4)), np.ones((1, 1, 1, 1)), \
        np.ones((1, 2, 2, 2))
    big = "window (4, 4) is larger than the padded input (3, 3) (padding 0)"
    return [(lambda: conv.conv2d(x, w, 1, 0), f"conv2d: {big}"),
            (lambda: conv.conv2d(x[None], w[None], 1, 0), f"conv2d: {big}"),
            (lambda: conv.conv2d(x, w2, 0, 0), "conv2d: stride must be an int >= 1, got 0"),
            (lambda: conv.conv2d(x, w2, 1, -1), "conv2d: padding must be an int >= 0, got -1"),
            (lambda: conv.conv2d_input_grad(g, np.ones((1, 2, 6, 6)), x.shape, 1, 1),
             "conv2d_input_grad: window (6, 6) is larger than the padded input (5, 5) "
             "(padding 1)"),
            (lambda: conv.conv2d_input_grad(g, w2, x.shape, 0, 0),
             "conv2d_input_grad: stride must be an int >= 1, got 0"),
            (lambda: conv.conv2d_weight_grad(x, g, w.shape, 1, 0), f"conv2d_weight_grad: {big}"),
            (lambda: conv.conv2d_weight_grad(x, g, w2.shape, 1, -1),
             "conv2d_weight_grad: padding must be an int >= 0, got -1"),
            (lambda: pool.max_pool2d(x, 4, 1), f"max_pool2d: {big}"),
            (lambda: pool.max_pool2d(x, 2, 0), "max_pool2d: stride must be an int >= 1, got 0"),
            (lambda: pool.max_pool2d(x, 0, 1), "max_pool2d: kernel must be an int >= 1, got 0")]


def check_bad_windows(conv, pool):
    """Every call of ``bad_window_calls`` raises its one-line ValueError, word for word."""
    for call, message in bad_window_calls(conv, pool):
        with pytest.raises(ValueError) as err:
            call()
        assert str(err.value) == message


def test_the_references_refuse_windows_that_do_not_fit():
    check_bad_windows(conv_ref, pool_ref)


def kernel_modules_with_examples():
    """Every module of kernels/ whose source holds a docstring example (``>>>``), by name."""
    folder = pathlib.Path(minimeta.kernels.__file__).parent
    return sorted(f.stem for f in folder.glob("*.py") if ">>>" in f.read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", kernel_modules_with_examples())
def test_kernel_docstring_examples(name):
    """Every docstring example in kernels/, run. kernels/ is not collected by pytest directly:
    it must be imported as minimeta.kernels (numba's on-disk cache records the module name it
    compiled under). A list of three modules had left 20 of 25 examples unrun (found by
    probing, 2026-12-01), one of the three without any example."""
    module = importlib.import_module(f"minimeta.kernels.{name}" if name != "__init__"
                                     else "minimeta.kernels")
    failures, attempted = doctest.testmod(module)
    assert attempted > 0 and failures == 0, (name, attempted, failures)


def test_the_docstring_examples_of_kernels_are_all_found():
    names = kernel_modules_with_examples()
    assert {"__init__", "conv_ref", "norm_ref", "winograd_numba", "threads"} <= set(names)
