"""The NumPy references in kernels/ against naive loops written straight from their formulas."""
import numpy as np
from hypothesis import given, strategies as st

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
    assert np.isclose(inner, np.sum(gx * x)) and np.isclose(inner, np.sum(gw * w))
    x2 = np.random.default_rng(1).standard_normal(x.shape)
    assert np.isclose(np.sum(g * naive_conv(x2, w, s, p)), np.sum(gx * x2))


@given(st.integers(1, 3), st.integers(1, 3), arrays((2, 2, 7, 6)))
def test_max_pool_against_loops(k, s, x):
    y, idx = pool_ref.max_pool2d(x, k, s)
    ho, wo = (7 - k) // s + 1, (6 - k) // s + 1
    for i in range(ho):
        for j in range(wo):
            window = x[:, :, i * s:i * s + k, j * s:j * s + k]
            np.testing.assert_array_equal(y[:, :, i, j], window.max(axis=(2, 3)))
    np.testing.assert_array_equal(x.reshape(-1)[idx], y)


def test_kernel_docstring_examples():
    # kernels/ is not collected by pytest directly: it must be imported as minimeta.kernels
    # (numba's on-disk cache records the module name it compiled under).
    import doctest
    from minimeta.kernels import attention_ref
    for module in (conv_ref, pool_ref, attention_ref):
        failures, _ = doctest.testmod(module)
        assert failures == 0, module.__name__
