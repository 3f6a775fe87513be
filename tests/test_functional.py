"""Property gradchecks (order 1 and 2) of every op in ``minimeta.functional``, and the HVP test."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import minimeta as mm
import minimeta.functional as F
from minimeta.testing import arrays, distinct_arrays


@st.composite
def conv_case(draw):
    n, c, o = draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    k = draw(st.integers(1, 3))
    # padding below k: with more (k = 1, padding 1, stride 2 on one pixel) every output read
    # padding alone, and the check compared zeros
    stride, padding = draw(st.integers(1, 2)), draw(st.integers(0, min(2, k - 1)))
    h = draw(st.integers(max(1, k - 2 * padding), 6))
    w = draw(st.integers(max(1, k - 2 * padding), 6))
    # x and w away from 0: an all-zero draw (hypothesis' first) left the other's gradient 0,
    # a check of nothing (gradcheck's per-input warning said so)
    return (draw(arrays((n, c, h, w), margin=0.1)), draw(arrays((o, c, k, k), margin=0.1)),
            draw(arrays((o,))), stride, padding)


@pytest.mark.parametrize("order", [1, 2])
@given(case=conv_case())
def test_conv2d_gradcheck(case, order):
    x, w, b, stride, padding = case
    mm.gradcheck(lambda x, w, b: F.conv2d(x, w, b, stride, padding), [x, w, b], order=order)


@pytest.mark.parametrize("order", [1, 2])
@given(case=conv_case())
def test_conv_family_members_gradcheck(case, order):
    x, w, _, stride, padding = case
    g = np.ones(F.conv2d(mm.tensor(x), mm.tensor(w), None, stride, padding).shape) * 0.3
    mm.gradcheck(lambda g, w: F.conv2d_input_grad(g, w, x.shape, stride, padding),
                 [g, w], order=order)
    mm.gradcheck(lambda x, g: F.conv2d_weight_grad(x, g, w.shape, stride, padding),
                 [x, g], order=order)


@st.composite
def pool_case(draw):
    k = draw(st.integers(1, 3))
    stride = draw(st.integers(1, 3))
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 2)), draw(st.integers(k, 7)),
             draw(st.integers(k, 7)))
    return draw(distinct_arrays(shape, gap=1e-2, low=-30.0, high=30.0)), k, stride


@pytest.mark.parametrize("order", [1, 2])
@given(case=pool_case())
def test_max_pool2d_gradcheck(case, order):
    x, k, stride = case
    mm.gradcheck(lambda x: F.max_pool2d(x, k, stride), [x], order=order)


@pytest.mark.parametrize("order", [1, 2])
@given(case=pool_case())
def test_avg_pool2d_gradcheck(case, order):
    x, k, stride = case
    mm.gradcheck(lambda x: F.avg_pool2d(x, k, stride), [x], order=order)
    ref = np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(2, 3))[:, :, ::stride,
                                                                            ::stride]
    np.testing.assert_allclose(F.avg_pool2d(mm.tensor(x), k, stride).numpy(),
                               ref.mean(axis=(-1, -2)), rtol=1e-12)


@pytest.mark.parametrize("order", [1, 2])
@given(x=distinct_arrays(st.sampled_from([(3, 2), (2, 3, 2, 2), (4, 1, 1, 3)]), gap=0.1),
       data=st.data())
def test_batch_norm_gradcheck(x, data, order):   # distinct: a constant channel's w had no slope
    c = x.shape[1]
    w, b = data.draw(arrays((c,), 0.5, 2.0)), data.draw(arrays((c,)))
    # finite differences (central, up to second order): looser than float64 rounding
    mm.gradcheck(lambda x, w, b: F.batch_norm(x, w, b), [x, w, b], order=order,
                 atol=1e-5, rtol=1e-4)


def test_batch_norm_matches_formula_and_updates_running_stats():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 3, 4, 4)) * 2 + 1
    rm, rv = np.zeros(3), np.ones(3)
    y = F.batch_norm(mm.tensor(x), running_mean=rm, running_var=rv, momentum=0.5).numpy()
    mean, var = x.mean(axis=(0, 2, 3)), x.var(axis=(0, 2, 3))
    expected = (x - mean[None, :, None, None]) / np.sqrt(var[None, :, None, None] + 1e-5)
    np.testing.assert_allclose(y, expected, rtol=1e-10)
    np.testing.assert_allclose(rm, 0.5 * mean, rtol=1e-13)
    np.testing.assert_allclose(rv, 0.5 + 0.5 * x.var(axis=(0, 2, 3), ddof=1), rtol=1e-13)
    rm_before, rv_before = rm.copy(), rv.copy()
    y_eval = F.batch_norm(mm.tensor(x), running_mean=rm, running_var=rv, training=False)
    want = (x - rm[None, :, None, None]) / np.sqrt(rv[None, :, None, None] + 1e-5)
    np.testing.assert_allclose(y_eval.numpy(), want, rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(rm, rm_before)   # evaluation leaves the buffers alone
    np.testing.assert_array_equal(rv, rv_before)


@pytest.mark.parametrize("order", [1, 2])
@given(x=arrays((3, 4), margin=0.1), w=arrays((4, 2), margin=0.1), b=arrays((2,)))
def test_linear_gradcheck(x, w, b, order):
    mm.gradcheck(F.linear, [x, w, b], order=order)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_linear_as_one_op_gives_the_numbers_of_the_product_and_the_add(dtype):
    """``F.linear`` records one ``Affine`` op; a small MLP's second-order MAML meta-gradient
    (stacked tasks, broadcast θ, a (1, 40) first layer: MatMul's outer products) is the one
    that ``x @ w + b`` in two ops gives, and so is its graph's order 3: the same products, the
    gradients that meet at a tensor added in another order (the last bit, at most)."""
    rng = np.random.default_rng(0)
    shapes = [(1, 40), (40,), (40, 40), (40,), (40, 1), (1,)]
    theta = [mm.tensor((0.3 * rng.standard_normal(s)).astype(dtype), requires_grad=True)
             for s in shapes]
    x = rng.standard_normal((5, 10, 1)).astype(dtype)
    y = rng.standard_normal((5, 10, 1)).astype(dtype)

    def meta_gradient(layer):
        stacked = [mm.broadcast_to(p, (5,) + ((1,) if p.ndim == 1 else ()) + p.shape)
                   for p in theta]

        def loss(ps):
            h = x
            for i in range(0, 6, 2):
                h = layer(h, ps[i], ps[i + 1])
                h = F.relu(h) if i < 4 else h
            return ((h - y) ** 2).sum()
        grads = mm.grad(loss(stacked), stacked, create_graph=True)
        adapted = [p - 0.01 * g for p, g in zip(stacked, grads)]
        outer = mm.grad(loss(adapted), theta, create_graph=True)
        third = mm.grad(sum(g.sum() for g in outer), theta)
        return [g.numpy() for g in outer + third]

    one = meta_gradient(F.linear)
    two = meta_gradient(lambda h, w, b: h @ w + b)
    assert F.linear(mm.tensor(x), theta[0], theta[1])._op.__class__.__name__ == "Affine"
    for a, b in zip(one, two):
        np.testing.assert_allclose(a, b, rtol=4 * np.finfo(dtype).eps,
                                   atol=4 * np.finfo(dtype).eps * np.abs(b).max())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@given(data=st.data())
def test_mse_as_one_op_gives_the_numbers_of_the_mean_of_squares(dtype, data):
    """``F.mse_loss`` records one ``MeanSquaredError`` op: its value and its gradient are the
    bits of mean(d · d) in four ops (2·(g/n · d) is d · (g · 2/n) exactly, but where it is
    subnormal), its second derivatives those numbers too, to the last bits."""
    shape = data.draw(st.sampled_from([(7,), (25, 10, 1), (3, 4)]))
    p0 = data.draw(arrays(shape, dtype=dtype))
    t = data.draw(arrays(shape, dtype=dtype))

    def value_and_grads(loss_fn):
        p = mm.tensor(p0, requires_grad=True)
        loss = loss_fn(p)
        (g,) = mm.grad(loss, [p], create_graph=True)
        (h,) = mm.grad((g * g).sum(), [p])
        return loss.numpy(), g.numpy(), h.numpy()

    one = value_and_grads(lambda p: F.mse_loss(p, t))
    two = value_and_grads(lambda p: mm.mean((p - t) * (p - t)))
    assert F.mse_loss(mm.tensor(p0, requires_grad=True), t)._op.__class__.__name__ == \
        "MeanSquaredError"
    np.testing.assert_array_equal(one[0], two[0])
    normal = np.abs(two[1]) >= 4 * np.finfo(dtype).tiny     # (a subnormal product loses bits
    np.testing.assert_array_equal(one[1][normal], two[1][normal])   # either way, not alike)
    np.testing.assert_allclose(one[1], two[1], atol=4 * np.finfo(dtype).tiny)
    np.testing.assert_allclose(one[2], two[2], rtol=4 * np.finfo(dtype).eps,
                               atol=4 * np.finfo(dtype).tiny)


@pytest.mark.parametrize("order", [1, 2])
@given(z=arrays((3, 4), -5.0, 5.0), data=st.data())
def test_softmax_losses_gradcheck(z, data, order):
    labels = np.array(data.draw(st.lists(st.integers(0, 3), min_size=3, max_size=3)))
    target = data.draw(arrays((3, 4), 6.0, 8.0))   # never z: at z = target mse's gradient
    # is 0 and its order-1 check had compared only zeros (a GradcheckWarning, 2026-12-01)
    mm.gradcheck(lambda z: F.softmax(z), [z], order=order)
    mm.gradcheck(lambda z: F.log_softmax(z, axis=0), [z], order=order)
    mm.gradcheck(lambda z: F.cross_entropy(z, labels), [z], order=order)
    mm.gradcheck(lambda z: F.mse_loss(z, target), [z], order=order)
    ref = -np.mean((z - np.log(np.exp(z).sum(1, keepdims=True)))[np.arange(3), labels])
    assert F.cross_entropy(mm.tensor(z), labels).item() == pytest.approx(ref, rel=1e-12)


@pytest.mark.parametrize("order", [1, 2])
@given(a=distinct_arrays((2, 3, 4), gap=0.1), b=arrays((2, 5, 4), margin=0.1), data=st.data())
def test_metric_ops_gradcheck(a, b, data, order):   # a distinct: a = b had slopes of 0
    onehot = np.eye(3)[data.draw(st.lists(st.integers(0, 2), min_size=5, max_size=5))]
    mm.gradcheck(lambda a, b: F.cosine_similarity(a[:, :, None, :], b[:, None]), [a, b],
                 order=order)
    mm.gradcheck(F.pairwise_sq_distances, [a, b], order=order)
    mm.gradcheck(lambda a, b: F.cosine_attention(a, b, onehot), [a, b], order=order)
    d = F.pairwise_sq_distances(mm.tensor(a), mm.tensor(b)).numpy()
    np.testing.assert_allclose(d, ((a[:, :, None] - b[:, None]) ** 2).sum(-1), atol=1e-12)


def test_cosine_similarity_is_safe_at_zero():
    z = mm.tensor(np.zeros(3), requires_grad=True)
    c = F.cosine_similarity(z, mm.tensor(np.ones(3)))
    (g,) = mm.grad(c, [z], create_graph=True)
    (h,) = mm.grad(g.sum(), [z])
    assert c.item() == 0.0 and np.all(np.isfinite(g.numpy())) and np.all(np.isfinite(h.numpy()))


def test_cosine_attention_matches_numpy():
    rng = np.random.default_rng(1)
    q, s = rng.standard_normal((4, 6)), rng.standard_normal((5, 6))
    y = np.eye(3)[[0, 1, 2, 0, 1]]
    cos = (q / np.linalg.norm(q, axis=1, keepdims=True)) @ \
        (s / np.linalg.norm(s, axis=1, keepdims=True)).T
    att = np.exp(cos) / np.exp(cos).sum(1, keepdims=True)
    out = F.cosine_attention(mm.tensor(q), mm.tensor(s), mm.tensor(y)).numpy()
    np.testing.assert_allclose(out, att @ y, rtol=1e-10)


@pytest.mark.parametrize("order", [1, 2])
@given(x=arrays((2, 3), margin=0.1), h=arrays((2, 2), margin=0.1), c=arrays((2, 2)),
       w_ih=arrays((3, 8), -1.0, 1.0, margin=0.1), w_hh=arrays((2, 8), -1.0, 1.0, margin=0.1),
       b=arrays((8,)))
def test_lstm_cell_gradcheck(x, h, c, w_ih, w_hh, b, order):
    mm.gradcheck(lambda *a: mm.concatenate(F.lstm_cell(*a), axis=1), [x, h, c, w_ih, w_hh, b],
                 order=order)


def test_dropout_is_seeded_and_scaled():
    x = mm.tensor(np.ones((100, 10)))
    a, b = F.dropout(x, 0.3, rng=5).numpy(), F.dropout(x, 0.3, rng=5).numpy()
    np.testing.assert_array_equal(a, b)
    assert set(np.unique(a)) <= {0.0, 1 / 0.7} and abs(a.mean() - 1) < 0.1
    mm.gradcheck(lambda x: F.dropout(x, 0.3, rng=1), [np.ones((3, 3))], order=2)
    assert F.dropout(x, 0.3, training=False) is x


def test_flatten_and_bad_inputs():
    assert F.flatten(mm.tensor(np.ones((2, 3, 4)))).shape == (2, 12)
    with pytest.raises(ValueError, match="conv2d: input has 2 channels"):
        F.conv2d(mm.tensor(np.ones((1, 2, 5, 5))), mm.tensor(np.ones((1, 3, 3, 3))))
    with pytest.raises(ValueError, match="cross_entropy: labels must lie in"):
        F.cross_entropy(mm.tensor(np.ones((2, 3))), [0, 3])
    with pytest.raises(ValueError, match="linear: input features"):
        F.linear(mm.tensor(np.ones((2, 3))), mm.tensor(np.ones((2, 3))))


def test_hvp_through_two_layer_conv_net_equals_finite_difference_of_gradients():
    rng = np.random.default_rng(0)
    x = mm.tensor(rng.standard_normal((3, 2, 6, 6)))
    labels = np.array([0, 1, 1])
    shapes = [(4, 2, 3, 3), (4,), (3, 4, 3, 3), (3,)]
    theta = [rng.standard_normal(s) * 0.5 for s in shapes]
    v = [rng.standard_normal(s) for s in shapes]

    def loss(w1, b1, w2, b2):
        h = F.max_pool2d(mm.tanh(F.conv2d(x, w1, b1, padding=1)), 2)
        z = F.conv2d(h, w2, b2).mean(axis=(2, 3))
        return F.cross_entropy(z, labels)

    hv = mm.hvp(loss, [mm.tensor(t) for t in theta], [mm.tensor(u) for u in v])

    def gradient(params):
        ts = [mm.tensor(p, requires_grad=True) for p in params]
        return [g.numpy() for g in mm.grad(loss(*ts), ts)]

    eps = 1e-5
    plus = gradient([t + eps * u for t, u in zip(theta, v)])
    minus = gradient([t - eps * u for t, u in zip(theta, v)])
    for analytic, p, m in zip(hv, plus, minus):
        # a central difference of the gradient: truncation ~eps², rounding ~1e-16/eps
        np.testing.assert_allclose(analytic.numpy(), (p - m) / (2 * eps), rtol=1e-5, atol=1e-7)


def test_squared_distances_of_far_embeddings_keep_float32_precision():
    """1600-d float32 embeddings far from the origin (|z|² ≈ 1e4) at distances 7–9, as a
    trained conv4's are: the expanded form |a|² + |b|² − 2a·b cancelled, distances off by
    1.4e-2 against float64 (an audit of numerics); centred on b's mean, off by ~2e-6."""
    rng = np.random.default_rng(0)
    base = rng.normal(size=(1, 1600)) * 2.5
    zq, zs = (base + rng.normal(size=(n, 1600)) * 0.05 for n in (30, 12))
    w = np.cos(np.arange(30 * 12)).reshape(30, 12)

    def run(dtype):
        a, b = (mm.tensor(z.astype(dtype), requires_grad=True) for z in (zq, zs))
        d = F.pairwise_sq_distances(a, b)
        ga, gb = mm.grad((d * mm.tensor(w.astype(dtype))).sum(), [a, b])
        return [np.asarray(t.numpy(), dtype=np.float64) for t in (d, ga, gb)]

    exact, single = run(np.float64), run(np.float32)
    np.testing.assert_allclose(exact[0], ((zq[:, None] - zs[None]) ** 2).sum(-1), rtol=1e-12)
    assert 6 < exact[0].min() and exact[0].max() < 10
    assert np.abs(single[0] - exact[0]).max() < 2e-5
    for got, want in zip(single[1:], exact[1:]):
        assert np.abs(got - want).max() < 1e-5 * np.abs(want).max()
