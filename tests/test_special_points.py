"""The special-point contract of docs/ENGINE.md, one test per row, and the dtype of gradients.

Each row states the value and the derivative the engine gives where the math is undefined or
infinite; these tests pin them, so a change of convention is a visible decision.
"""
import warnings

import numpy as np
import pytest

import minimeta as mm
import minimeta.functional as F

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")  # log(0), 1/0: the point


def _grad(f, x, g=None):
    t = mm.tensor(np.asarray(x, dtype=np.float64), requires_grad=True)
    y = f(t)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # 1/0 and 0*inf are the point here
        (d,) = mm.grad(y, [t], grad_outputs=None if g is None else [np.asarray(g, float)])
    return y.numpy(), d.numpy()


def test_relu_at_zero_has_derivative_zero():
    y, d = _grad(lambda t: mm.relu(t).sum(), [0.0, -1.0, 2.0])
    assert y == 2.0 and d.tolist() == [0.0, 0.0, 1.0]


def test_abs_at_zero_has_derivative_zero():
    y, d = _grad(lambda t: mm.abs(t).sum(), [0.0, -3.0, 2.0])
    assert y == 5.0 and d.tolist() == [0.0, -1.0, 1.0]


def test_sqrt_at_zero_has_infinite_derivative_and_nan_for_a_zero_gradient():
    y, d = _grad(lambda t: mm.sqrt(t), [0.0, 0.0, 4.0], g=[1.0, 0.0, 1.0])
    assert y.tolist() == [0.0, 0.0, 2.0]
    assert d[0] == np.inf and np.isnan(d[1]) and d[2] == 0.25


def test_log_at_zero_is_minus_infinity_with_infinite_derivative():
    y, d = _grad(lambda t: mm.log(t), [0.0, 1.0], g=[1.0, 1.0])
    assert y[0] == -np.inf and d.tolist() == [np.inf, 1.0]


def test_maximum_ties_send_the_whole_gradient_to_the_first_argument():
    a = mm.tensor(np.array([1.0, 2.0]), requires_grad=True)
    b = mm.tensor(np.array([1.0, 3.0]), requires_grad=True)
    ga, gb = mm.grad(mm.maximum(a, b).sum(), [a, b])
    assert ga.numpy().tolist() == [1.0, 0.0] and gb.numpy().tolist() == [0.0, 1.0]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_side_that_lost_gets_zero_even_under_an_infinite_gradient(dtype):
    """maximum, max and x ** 0 had multiplied g by a mask (or by 0): inf · 0 made NaN of the
    losers' gradient, and sqrt(maximum(d, 0)) at a squared distance rounded to −1e-7 spread
    NaN to every embedding (an audit of numerics; PyTorch gives 0)."""
    d = mm.tensor(np.array([-1e-7, 3.0], dtype=dtype), requires_grad=True)
    (g,) = mm.grad(mm.sqrt(mm.maximum(d, 0.0)).sum(), [d])
    np.testing.assert_allclose(g.numpy(), [0.0, 0.5 / np.sqrt(3.0)], rtol=1e-6)
    a = mm.tensor(np.array([1.0, 3.0], dtype=dtype), requires_grad=True)
    b = mm.tensor(np.array([2.0, 1.0], dtype=dtype), requires_grad=True)
    ga, gb = mm.grad(mm.log(mm.maximum(a, b) - mm.tensor(np.array([2.0, 3.0], dtype))).sum(),
                     [a, b])    # g = 1 / 0 = inf at both entries
    assert ga.numpy().tolist() == [0.0, np.inf] and gb.numpy().tolist() == [np.inf, 0.0]
    y, d = _grad(lambda t: mm.log(mm.max(t) - 3.0), [1.0, 3.0, 3.0])
    assert d.tolist() == [0.0, np.inf, np.inf]
    y, d = _grad(lambda t: mm.log(t ** 0 - 1.0).sum(), [2.0, 0.5])
    assert d.tolist() == [0.0, 0.0]


def test_max_ties_share_the_gradient_equally():
    y, d = _grad(lambda t: mm.max(t), [2.0, 1.0, 2.0, 2.0])
    assert y == 2.0 and np.allclose(d, [1 / 3, 0.0, 1 / 3, 1 / 3], rtol=0, atol=1e-16)


@pytest.mark.parametrize("keepdims", [False, True])
def test_max_ties_along_an_axis_share_each_row_s_gradient(keepdims):
    """Ties counted per row of the reduced axis (the ``max`` row draws distinct values, so only
    the test above, with no axis, had caught a VJP without its division by the count)."""
    x = mm.tensor(np.array([[2.0, 1.0, 2.0], [0.0, 5.0, -1.0], [3.0, 3.0, 3.0]]),
                  requires_grad=True)
    g = np.array([6.0, 2.0, 9.0]).reshape((3, 1) if keepdims else (3,))
    (d,) = mm.grad((mm.max(x, axis=1, keepdims=keepdims) * mm.tensor(g)).sum(), [x])
    np.testing.assert_allclose(d.numpy(), [[3.0, 0.0, 3.0], [0.0, 2.0, 0.0], [3.0, 3.0, 3.0]],
                               rtol=0, atol=1e-15)


def test_cosine_similarity_at_a_zero_vector_is_zero_with_a_finite_gradient():
    eps = 1e-8
    b = np.array([3.0, 4.0])
    y, d = _grad(lambda t: F.cosine_similarity(t, mm.tensor(b), eps), [0.0, 0.0])
    assert y == 0.0 and np.all(np.isfinite(d))
    np.testing.assert_allclose(d, b / 5.0 / eps, rtol=1e-12)  # b̂ / eps: large, finite
    y2, d2 = _grad(lambda t: F.cosine_similarity(t, t, eps), [0.0, 0.0])
    assert y2 == 0.0 and np.all(np.isfinite(d2))


def test_logsumexp_of_all_minus_infinity_is_minus_infinity_with_gradient_zero():
    x = np.array([[-np.inf, -np.inf], [0.0, -np.inf]])
    y, d = _grad(lambda t: mm.logsumexp(t, axis=1), x, g=[1.0, 1.0])
    assert y[0] == -np.inf and y[1] == 0.0
    assert d.tolist() == [[0.0, 0.0], [1.0, 0.0]]


def test_logsumexp_with_a_plus_infinity_entry_has_nan_there_and_zero_elsewhere():
    # undefined at the +inf entry; the finite entries' exp(x − inf) = 0 (it had been e^x)
    with np.errstate(invalid="ignore"):
        y, d = _grad(lambda t: mm.logsumexp(t, axis=0), [np.inf, 1.0])
    assert y == np.inf and np.isnan(d[0]) and d[1] == 0.0


def test_batch_norm_under_an_infinite_gradient_has_pytorch_s_nans_and_infinities():
    """The row as PyTorch's double backward of F.batch_norm gives it (float64): NaN where the
    formulas meet inf − inf, though the limits are ±inf; an infinite second-order cotangent on
    dw gives dx ±inf (the reference had made it NaN for the whole channel)."""
    rng = np.random.default_rng(0)
    x, g, hx = (rng.standard_normal((3, 2, 2, 2)) for _ in range(3))
    w, b, hw = rng.standard_normal(2), rng.standard_normal(2), rng.standard_normal(2)

    def orders(g, hw):
        xt, wt, bt, gt = (mm.tensor(a, requires_grad=True) for a in (x, w, b, g))
        dx, dw, _ = mm.grad(F.batch_norm(xt, wt, bt), [xt, wt, bt], grad_outputs=[gt],
                            create_graph=True)
        outer = (dx * mm.tensor(hx)).sum() + (dw * mm.tensor(hw)).sum()
        return [dx.numpy()] + [d.numpy() for d in mm.grad(outer, [xt, wt, gt])]

    g_bad, hw_bad = g.copy(), hw.copy()
    g_bad[1, 0, 0, 1], hw_bad[0] = np.inf, np.inf
    first, ddx, ddw, ddg = orders(g_bad, hw)
    assert np.isnan(first[:, 0]).any() and not np.isfinite(first[:, 0]).any()
    assert np.isfinite(first[:, 1]).all() and np.isfinite(ddx[:, 1]).all()
    assert np.isnan(ddx[:, 0]).all() and np.isnan(ddw[0]) and np.isfinite(ddg).all()
    _, ddx, _, _ = orders(g, hw_bad)
    assert np.isinf(ddx[:, 0]).all() and np.isfinite(ddx[:, 1]).all()


def test_a_tensor_power_at_base_zero_has_the_finite_derivatives():
    # as PyTorch; each had been NaN (0 · log 0, 0 · inf), but for the infinite one
    x = mm.tensor(np.array([0.0, 1.0, 2.0]), requires_grad=True)
    w = mm.tensor(np.array(2.0), requires_grad=True)
    (gw,) = mm.grad((x ** w).sum(), [w])              # 0 ** w is 0 near w = 2: no 0 · log 0
    assert gw.item() == pytest.approx(4 * np.log(2.0), rel=1e-14)
    for exponent in (0.0, 3.0):   # at exponent 0 too (a mutant 'b > 0' gave -inf: probing)
        b = mm.tensor(np.array([exponent]), requires_grad=True)
        (gb,) = mm.grad((mm.tensor(np.array([0.0])) ** b).sum(), [b])
        assert gb.numpy().tolist() == [0.0], exponent
    for exponent, order, want in [(0.0, 1, 0.0), (1.0, 2, 0.0), (2.0, 3, 0.0), (2.0, 1, 0.0),
                                  (1.0, 1, 1.0), (2.0, 2, 2.0)]:
        z = mm.tensor(np.array([0.0]), requires_grad=True)
        y = (z ** mm.tensor(np.array(exponent))).sum()
        for _ in range(order):
            (y,) = mm.grad(y, [z], create_graph=True)
            y = y.sum()
        assert y.item() == want, (exponent, order)   # d/dx x⁰ = 0: had been 0 · inf = NaN
    with np.errstate(divide="ignore"):
        z = mm.tensor(np.array([0.0]), requires_grad=True)
        (g,) = mm.grad((z ** mm.tensor(np.array(0.5))).sum(), [z])
    assert g.numpy().tolist() == [np.inf]            # an infinite derivative stays one
    with np.errstate(divide="ignore"):                # w < 0: the row's signs (−inf, −inf)
        z = mm.tensor(np.array([0.0]), requires_grad=True)
        b = mm.tensor(np.array([-0.5]), requires_grad=True)
        y = z ** b
        assert y.numpy().tolist() == [np.inf]
        assert [t.numpy().tolist() for t in mm.grad(y.sum(), [z, b])] == [[-np.inf], [-np.inf]]
    z = mm.tensor(np.array([0.0]), requires_grad=True)
    (g,) = mm.grad((z ** np.int64(0)).sum(), [z])     # a NumPy integer is a number exponent
    assert g.numpy().tolist() == [0.0]


def test_a_float32_leaf_gets_a_float32_gradient_whatever_it_met():
    x = mm.tensor(np.array([1.0, 2.0], dtype=np.float32), requires_grad=True)
    w = mm.tensor(np.array([0.5, -1.0]), requires_grad=True)  # float64
    y = (x * w).exp().sum() + (x @ w)
    assert y.dtype == np.float64
    gx, gw = mm.grad(y, [x, w], create_graph=True)
    assert gx.dtype == np.float32 and gw.dtype == np.float64
    (hx,) = mm.grad(gx.sum(), [x])  # and at the next order
    assert hx.dtype == np.float32
    x.grad = None
    y.backward()
    assert x.grad.dtype == np.float32
    expected = (np.exp(x.numpy().astype(np.float64) * w.numpy()) * w.numpy()) + w.numpy()
    np.testing.assert_allclose(gx.numpy(), expected.astype(np.float32), rtol=1e-6)


@pytest.mark.parametrize("shape", [(3,), (2, 3)])
def test_a_broadcast_float32_leaf_keeps_its_dtype_and_shape(shape):
    x = mm.tensor(np.ones((3,), dtype=np.float32), requires_grad=True)
    y = (x * mm.tensor(np.full(shape, 2.0))).sum()
    (g,) = mm.grad(y, [x])
    assert g.dtype == np.float32 and g.shape == (3,)
    assert g.numpy().tolist() == [2.0 * (shape[0] if len(shape) == 2 else 1)] * 3


def test_sigmoid_of_a_large_negative_input_keeps_its_relative_precision():
    # computed as (1 + tanh(x/2)) / 2 it cancelled: float32 sigmoid(-17) was 44% off and
    # sigmoid(-20) 0, so log(sigmoid(-20)) was -inf with a NaN gradient (found by probing)
    x = np.array([-10.0, -17.0, -20.0, -40.0])
    exact = np.exp(x) / (1.0 + np.exp(x))
    for dtype, rtol in ((np.float32, 1e-6), (np.float64, 1e-15)):
        got = mm.sigmoid(mm.tensor(x.astype(dtype))).numpy()
        assert got.dtype == dtype
        np.testing.assert_allclose(got, exact, rtol=rtol)
    t = mm.tensor(np.array([-40.0, 0.0, 40.0, np.inf, -np.inf]), requires_grad=True)
    (g,) = mm.grad(mm.log(mm.sigmoid(t[:1])).sum(), [t])
    assert g.numpy()[0] == pytest.approx(1.0)
    np.testing.assert_array_equal(mm.sigmoid(t).numpy()[1:], [0.5, 1.0, 1.0, 0.0])
    mm.gradcheck(lambda a: mm.sigmoid(a), [np.array([-30.0, -3.0, 2.0])], order=2)


def test_log_softmax_of_large_logits_keeps_the_small_term():
    # z − logsumexp(z) rounded log Σ exp(z − m) away against a large m (found by probing)
    np.testing.assert_array_equal(F.softmax(mm.tensor([[0.0, 1e30, 1e30]])).numpy(),
                                  [[0.0, 0.5, 0.5]])                # the row had summed to 2
    base = np.array([[0.0, -5.0, -5.5]])
    want = -(base[0, 0] - np.log(np.exp(base).sum()))              # the loss, shift-free
    for shift in (-1e3, -1e4, -1e5):
        z = mm.tensor((base + shift).astype(np.float32), requires_grad=True)
        loss = F.cross_entropy(z, [0])
        (g,) = mm.grad(loss, [z])
        assert loss.item() == pytest.approx(want, rel=1e-5)          # 4% off at −1e4
        assert g.numpy()[0, 0] == pytest.approx(np.exp(-want) - 1.0, rel=1e-4)
    masked = mm.tensor([[-np.inf, 0.0, 1.0]], requires_grad=True)   # a masked entry: still
    (g,) = mm.grad(F.log_softmax(masked)[0, 2], [masked])           # its gradient 0
    assert g.numpy()[0, 0] == 0.0 and np.isfinite(g.numpy()).all()


def test_log_softmax_takes_a_tuple_of_axes_and_names_an_axis_out_of_range():
    # the shift's guard had indexed the shape with the axis: a TypeError for a tuple, an
    # IndexError out of range, where the error now names log_softmax and the axis (found by review)
    z = mm.tensor(np.arange(12.0).reshape(3, 4))
    total = F.log_softmax(z, axis=(0, 1)).exp().sum().item()
    assert total == pytest.approx(1.0)
    with pytest.raises(ValueError, match="^log_softmax: axis 2 is out of range"):
        F.log_softmax(z, axis=2)


def test_the_95_percent_interval_uses_student_t_for_few_episodes():
    # 1.96·s/√n had covered the mean 70% of the time at 2 episodes, 87% at 5 (found by
    # probing); t's quantile: 12.706 at 1 degree of freedom, 1.964 at 599, 1.960 in the limit
    from minimeta.experiments.evaluation import mean_ci, t975

    assert t975(1) == pytest.approx(12.7062) and t975(599) == pytest.approx(1.9639, abs=1e-4)
    assert t975(31) == pytest.approx(2.0395, abs=1e-4) and t975(10 ** 7) == pytest.approx(
        1.95996, abs=1e-5)
    rng = np.random.default_rng(0)
    hits = 0
    for _ in range(4000):
        x = rng.standard_normal(3)
        mean, half = mean_ci(x)
        hits += abs(mean) <= half
    assert 0.93 < hits / 4000 < 0.97           # 95%, at 3 episodes (1.96 gave about 0.80)
