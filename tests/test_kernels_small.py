"""The small kernels (bias add and its gradient, where, relu_grad, the causal 1-d convolution)
equal their NumPy references, and edge cases where kernels had once left their spec. Read after
test_kernels.py."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from minimeta import kernels as K
from minimeta.testing import arrays
from test_kernel_references import check_bad_windows
from test_kernels import DTYPES, close


@given(st.data(), DTYPES, st.booleans(), st.booleans())
def test_add_bias_numba_equals_reference(data, dtype, stack, strided):
    """y += b per channel, in place (the same array comes back), on a single batch and on a
    stack of tasks; a non-contiguous y takes the reference's road and is still updated."""
    shape = (data.draw(st.integers(1, 3)), data.draw(st.integers(1, 4)),
             data.draw(st.integers(1, 5)), data.draw(st.integers(1, 5)))
    tasks = (data.draw(st.integers(1, 3)),) if stack else ()
    y = data.draw(arrays(tasks + shape, dtype=dtype))
    b = data.draw(arrays(tasks + shape[1:2], dtype=dtype))
    if strided:
        y = np.repeat(y, 2, axis=-1)[..., ::2]
    y0 = y.copy()
    want = K.TABLE["add_bias"].reference(y.copy(), b)
    got = K.resolve(K.TABLE["add_bias"].cpu)(y, b)
    assert got is y
    close(got, want, dtype)
    view = (tasks[0], 1, -1, 1, 1) if stack else (1, -1, 1, 1)
    np.testing.assert_array_equal(want, y0 + b.reshape(view))       # the spec: y moved by b


@given(st.data(), DTYPES, st.booleans(), st.sampled_from(["C", "strided", "int"]))
def test_bias_grad_numba_equals_reference(data, dtype, stack, kind):
    """Σ g per channel, on a single batch and on a stack of tasks, in g's dtype; the fast path
    (contiguous floats) and the reference's road (a strided view, integers) agree with the
    spec, which is a plain sum over every axis but the task and channel axes."""
    shape = tuple(data.draw(st.lists(st.integers(1, 5), min_size=2, max_size=4)))
    tasks = (data.draw(st.integers(1, 3)),) if stack else ()
    g = data.draw(arrays(tasks + shape, dtype=dtype, layouts=False))
    if kind == "strided":
        g = np.repeat(g, 2, axis=-1)[..., ::2]
    elif kind == "int":
        g = np.round(g * 10).astype(np.int64)
    want = K.TABLE["bias_grad"].reference(g, stack)
    got = K.resolve(K.TABLE["bias_grad"].cpu)(g, stack)
    assert got.shape == tasks + shape[1:2] and got.dtype == g.dtype
    close(got, want, np.float64 if kind == "int" else dtype)
    axes = tuple(a for a in range(g.ndim) if a != len(tasks) + 1 and not (stack and a == 0))
    close(want, g.astype(np.float64).sum(axis=axes), dtype)       # the spec, spelled out


@pytest.mark.parametrize("name", ["where", "relu_grad"])
def test_below_kernel_from_the_table_gives_the_reference(name):
    """A small MLP's masks (fewer values than the row's ``kernel_from``) go to NumPy, which
    answers sooner than numba's dispatch; from it, the kernel. A mutant that ignores the
    size hands the kernel every call and fails here."""
    row = K.TABLE[name]
    limit = row.kernel_from
    assert limit > 1
    for n, reference in ((1, True), (limit - 1, True), (limit, False)):
        a = np.ones(n, np.float32)
        got = K.lookup(name, a, np.zeros((), np.float32) if name == "where" else a)
        assert (got is row.reference) == reference, n
    # below parallel_from, the kernel's serial twin (no prange launch); from it, the kernel
    # (under numba's workqueue layer, either behind a lock: threads.one_at_a_time)
    kernel = K.resolve(row.cpu)
    with K.use_reference(False):
        if not K.concurrent_kernels():
            return
        for n, twin in ((limit, True), (row.parallel_from, False)):
            a = np.ones(n, np.float32)
            got = K.lookup(name, a, np.zeros((), np.float32) if name == "where" else a)
            assert (got is kernel.serial) == twin, n


def _relu_grad_agrees(kernel, a, g):
    """Whether ``kernel(a, g)`` has the reference's dtype, shape and bits (NaN, -0.0)."""
    got, want = kernel(a, g), K.TABLE["relu_grad"].reference(a, g)
    return got.dtype == want.dtype and got.shape == want.shape and \
        np.array_equal(got.view(np.uint8), want.view(np.uint8))


@given(st.data(), DTYPES, st.sampled_from(["full", "view", "a float64", "a ints"]),
       st.sampled_from([1, 1500, 40000, 70000]))
def test_relu_grad_numba_equals_reference(data, dtype, kind, n):
    """ReLU's select (g where a > 0, else 0) equals its reference bit for bit, both loops
    (prange, over 2**15-value blocks, and the serial twin): a NaN in a gives 0, one in g
    passes where a > 0, a = ±0 gives +0; a view, another dtype for a, integers in a: the
    reference's road or the kernel's, the same bits. The check's own mutants (g kept at a = 0;
    g's sign or NaN on the zeros written) fail it: see the test below."""
    rng = np.random.default_rng(data.draw(st.integers(0, 2 ** 32 - 1)))
    a, g = (rng.uniform(-2, 2, 2 * n).astype(dtype) for _ in range(2))
    specials = data.draw(st.lists(st.sampled_from([np.nan, 0.0, -0.0, np.inf, -np.inf]),
                                  max_size=min(n, 5)))
    for v in specials:
        a[rng.integers(0, 2 * n)], g[rng.integers(0, 2 * n)] = v, -v
    a, g = (a[::2], g[::2]) if kind == "view" else (a[:n], g[:n])
    if kind == "a float64":
        a = a.astype(np.float64)
    elif kind == "a ints":
        a = np.nan_to_num(a).astype(np.int32)
    kernel = K.resolve(K.TABLE["relu_grad"].cpu)
    for loop in (kernel, kernel.serial):
        assert _relu_grad_agrees(loop, a, g), (kind, n)


def test_the_relu_grad_check_catches_its_mutants():
    """Proof that the property above can fail: a kernel that keeps g where a = 0, and one that
    gives g's sign to the zeros it writes, are both told apart from the reference."""
    a = np.tile(np.array([0.0, -0.0, 1.0, np.nan, -1.0], np.float32), 400)
    g = np.tile(np.array([2.0, -3.0, -0.0, 4.0, -5.0], np.float32), 400)
    assert _relu_grad_agrees(K.resolve(K.TABLE["relu_grad"].cpu), a, g)
    assert not _relu_grad_agrees(lambda a, g: np.where(a >= 0, g, 0), a, g)
    assert not _relu_grad_agrees(lambda a, g: np.where(a > 0, g, g * 0), a, g)


@pytest.mark.parametrize("n", [3, 1500, 5000, 70000])
@given(st.data(), DTYPES, st.sampled_from(["full", "a scalar", "b scalar", "view", "bcast"]))
def test_where_numba_equals_reference(n, data, dtype, kind):
    """The select kernel equals np.where bit for bit, on its fast path (any size, though the
    table sends fewer than ``kernel_from`` values to NumPy; a scalar on either side; past
    32768, several blocks: a block ending one short had passed every kernel test) and on the
    fallbacks (views, broadcasting)."""
    if n > 1500:   # 5000 drawn booleans: too large a base example; values all distinct
        rng = np.random.default_rng(data.draw(st.integers(0, 2 ** 32 - 1)))
        a, b = (rng.uniform(-2, 2, n).astype(dtype) for _ in range(2))
        cond = rng.random(n) < data.draw(st.floats(0.1, 0.9))
    else:
        a = data.draw(arrays((n,), dtype=dtype))
        b = data.draw(arrays((n,), dtype=dtype))
        cond = np.asarray(data.draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    if kind == "a scalar":
        a = np.asarray(a[0])
    elif kind == "b scalar":
        b = np.asarray(b[0])
    elif kind == "view":
        a = np.repeat(a, 2)[::2]
    elif kind == "bcast":
        cond, b = np.stack([cond, ~cond]), b[None]
        a = np.stack([a, a])
    kernel = K.resolve(K.TABLE["where"].cpu)
    want = K.TABLE["where"].reference(cond, a, b)
    for got in (kernel(cond, a, b), kernel.serial(cond, a, b)):   # prange, and its serial twin
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)


@given(st.data(), DTYPES, st.integers(1, 9), st.integers(1, 3), st.booleans())
def test_causal_conv1d_cpu_equals_reference(data, dtype, length, k, strided):
    """SNAIL's causal convolution family: the CPU kernels equal the reference for dilations
    from 1 to past the length, lengths from 1, batch 1 included, non-contiguous inputs."""
    dilation = data.draw(st.integers(1, length + 2))
    n, c, o = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3)), data.draw(
        st.integers(1, 3))
    x = data.draw(arrays((n, c, 2 * length if strided else length), dtype=dtype))
    x = x[:, :, ::2] if strided else x
    w = data.draw(arrays((o, c, k), dtype=dtype))
    g = data.draw(arrays((n, o, length), dtype=dtype))
    g = np.asfortranarray(g) if strided else g
    for name, args in (("causal_conv1d", (x, w, dilation)),
                       ("causal_conv1d_input_grad", (g, w, dilation)),
                       ("causal_conv1d_weight_grad", (x, g, w.shape, dilation))):
        got = K.resolve(K.TABLE[name].cpu)(*args)
        want = K.TABLE[name].reference(*args)
        assert got.dtype == want.dtype == dtype and got.shape == want.shape
        close(got, want, dtype)


def test_edge_cases_where_the_kernels_had_left_their_spec():
    """Found by probing the kernels against their references (2026-12-01); each failed before."""
    from minimeta.kernels import conv_numba, norm_numba, pool_numba, select_numba  # noqa: F401

    rng = np.random.default_rng(0)
    # where: a scalar promotes as NumPy's does (an int array with 0.5 had truncated it to 0)
    cond = np.arange(2048) % 2 == 0
    for a, b in ((np.arange(2048), 0.5), (np.ones(2048, np.float32), np.float64(0.1))):
        got, want = K.select_numba.where(cond, a, b), K.select_ref.where(cond, a, b)
        assert got.dtype == want.dtype and np.array_equal(got, want)
    # max pooling: a NaN later in its window wins, as argmax's (it had been skipped)
    x = rng.standard_normal((2, 3, 6, 6))
    x[0, 0, 1, 1] = x[1, 2, 3, 2] = np.nan
    for k, s in ((2, 2), (3, 1)):
        (y, i), (y_ref, i_ref) = K.pool_numba.max_pool2d(x, k, s), K.pool_ref.max_pool2d(x, k, s)
        assert np.array_equal(y, y_ref, equal_nan=True) and np.array_equal(i, i_ref)
    # an empty batch's pooling gradient (it had divided by zero)
    # a batch or channel axis of 0 (the 2×2 kernel had divided by zero on no planes)
    for shape in ((0, 3, 4, 4), (2, 0, 4, 4), (0, 0, 5, 5)):
        (y, i), (y_ref, i_ref) = (K.pool_numba.max_pool2d(np.zeros(shape), 2, 2),
                                  K.pool_ref.max_pool2d(np.zeros(shape), 2, 2))
        assert y.shape == y_ref.shape and i.shape == i_ref.shape
    empty = K.pool_numba.max_pool2d_backward(np.zeros((0, 3, 3, 3)),
                                             np.zeros((0, 3, 3, 3), np.int32), (0, 3, 6, 6))
    assert empty.shape == (0, 3, 6, 6)
    # add_bias with a bias that is a view of y (it had read b while writing y)
    y = rng.standard_normal((2, 3, 4, 4))
    want = y + y[0, :, 0, 0].reshape(1, 3, 1, 1)
    np.testing.assert_array_equal(K.norm_numba.add_bias(y, y[0, :, 0, 0]), want)
    # conv with float32 images and float64 weights: float64, as the reference (it was float32)
    xi, w = rng.standard_normal((2, 3, 7, 7)).astype(np.float32), rng.standard_normal((4, 3, 3, 3))
    out = K.conv_numba.conv2d(xi, w, 1, 1)
    assert out.dtype == np.float64
    close(out, K.conv_ref.conv2d(xi, w, 1, 1), np.float64)



def test_the_numba_kernels_refuse_windows_that_do_not_fit():
    """As the references do, word for word (``test_kernel_references.bad_window_calls``):
    numba's max pooling and conv had returned an empty output for a window past the padded
    input (and conv for a negative padding), and divided by zero on stride 0."""
    from minimeta.kernels import conv_numba, pool_numba

    check_bad_windows(conv_numba, pool_numba)


@pytest.mark.parametrize("h, w", [(2, 2), (2, 3), (3, 2), (5, 7), (7, 7), (6, 7), (7, 6),
                                  (14, 14), (28, 28), (9, 4)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_2x2_pooling_kernel_on_every_parity_of_height_and_width(h, w, dtype):
    """``_max_pool_2x2`` has a flat path (even width: rows back to back) and a row-by-row one
    (odd width; conv4's last pooling, 7×7); a hypothesis draw of (k, s) = (2, 2) with an odd
    width is rare enough that CI's 20 examples may miss it. Values from {NaN, ±inf, ±0, ±1}
    (ties, NaNs: the first wins) and random ones, against the reference."""
    from minimeta.kernels import pool_numba  # noqa: F401

    rng = np.random.default_rng(h * 100 + w)
    specials = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -1.0, 1.0])
    # 3·50 planes: more than the kernel's 64 chunks, so a chunk holds several
    for x in (rng.choice(specials, (3, 50, h, w)), rng.standard_normal((3, 50, h, w))):
        x = x.astype(dtype)
        (y, i), (y_ref, i_ref) = K.pool_numba.max_pool2d(x, 2, 2), K.pool_ref.max_pool2d(x, 2, 2)
        assert y.dtype == dtype and np.array_equal(y, y_ref, equal_nan=True)
        assert np.array_equal(i, i_ref)


@pytest.mark.parametrize("bad", [np.inf, np.nan])
def test_shifted_gemm_gradients_have_the_reference_s_non_finite_values(bad):
    """conv_numba's docstring: a NaN or an inf reaches the outputs it reaches in the
    reference. The shifted GEMMs (14×14, 3×3, padding 1) had made NaN of finite entries: the
    weight gradient's spare columns multiply pixels by zeros, the input gradient multiplies
    g's zero padding by the weights (an audit, against PyTorch too)."""
    conv = K.resolve(K.TABLE["conv2d"].cpu).__module__
    numba_conv = __import__(conv, fromlist=["_"])
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((1, 2, 14, 14)), rng.standard_normal((2, 2, 3, 3))
    g = rng.standard_normal((1, 2, 14, 14))
    x[0, 0, 0, 0] = bad
    with np.errstate(invalid="ignore"):
        gw = numba_conv.conv2d_weight_grad(x, g, w.shape, 1, 1)
        gw_ref = K.conv_ref.conv2d_weight_grad(x, g, w.shape, 1, 1)
        w[0, 0, 0, 0] = bad
        gx = numba_conv.conv2d_input_grad(g, w, x.shape, 1, 1)
        gx_ref = K.conv_ref.conv2d_input_grad(g, w, x.shape, 1, 1)
    assert np.isfinite(gw_ref).sum() > 0 and np.isfinite(gx_ref).sum() > 0
    np.testing.assert_allclose(gw, gw_ref, rtol=1e-10, atol=1e-10)   # (NaNs compare equal)
    np.testing.assert_allclose(gx, gx_ref, rtol=1e-10, atol=1e-10)


def test_the_table_gives_the_reference_s_numbers_for_integers_and_other_byte_orders():
    """Integers had reached kernels that compute in floats (Winograd's matrices cast to int:
    off by 310; attention's norms, batch norm's mean truncated), and a big-endian array made
    numba's max pooling fail with a typing error; the engine casts, the table called directly
    did not."""
    import minimeta as mm
    from minimeta import functional as F
    rng = np.random.default_rng(0)
    x, w = rng.integers(-3, 4, (2, 32, 10, 10)), rng.integers(-3, 4, (32, 32, 3, 3))
    q, s = rng.integers(-3, 4, (1, 2, 3)), rng.integers(-3, 4, (1, 4, 3))
    y = np.eye(2)[[0, 1, 0, 1]][None]
    big = np.arange(16.0).reshape(1, 1, 4, 4).astype(">f8")
    for name, n_arrays, args in (
            ("conv2d", 2, (x, w, 1, 1)), ("cosine_attention", 2, (q, s, y)),
            ("batch_norm", 3, (x[:, :2], np.ones(2), np.zeros(2), 1e-5)),
            ("max_pool2d", 1, (big, 2, 2))):
        want = K.TABLE[name].reference(*args)
        got = K.lookup(name, *args[:n_arrays])(*args)
        for a, b in zip(*((want, got) if isinstance(want, tuple) else ((want,), (got,)))):
            assert a.dtype == b.dtype, name
            np.testing.assert_allclose(a, b, err_msg=name)
    np.testing.assert_array_equal(F.max_pool2d(mm.tensor(big), 2).numpy(), [[[[5, 7], [13, 15]]]])
    ints = np.ones(K.TABLE["where"].kernel_from, int)
    assert K.lookup("where", ints) is not K.TABLE["where"].reference   # exact on ints


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_batch_norm_kernels_keep_the_reference_s_infinities(dtype):
    """An inf as a channel's first value had made the numba forward's mean NaN where the
    reference's is ±inf (the sums are shifted by that value: inf − inf), and an inf in g had made
    the backward's Σ g·x̂ NaN (Σ g·d − mean(d)·Σ g: inf − inf), so every dx of its channel, where
    the reference has ±inf at half of them; on a single batch norm and on a stack (an audit)."""
    rng = np.random.default_rng(0)
    for stack in (False, True):
        lead = (2,) if stack else ()
        x = rng.standard_normal(lead + (3, 2, 4)).astype(dtype)
        w, b = rng.standard_normal(lead + (2,)).astype(dtype), np.zeros(lead + (2,), dtype)
        g = rng.standard_normal(x.shape).astype(dtype)
        bad = x.copy()
        bad[..., 0, 0, 0], bad[..., 0, 1, 0] = np.inf, -np.inf     # both channels' first values
        g[..., 1, 0, 2] = np.inf                       # in channel 0: channel 1 stays finite
        with np.errstate(invalid="ignore"):
            got = K.resolve(K.TABLE["batch_norm"].cpu)(bad, w, b)
            want = K.TABLE["batch_norm"].reference(bad, w, b)
            dx = K.resolve(K.TABLE["batch_norm_backward"].cpu)(x, w, b, g)
            dx_ref = K.TABLE["batch_norm_backward"].reference(x, w, b, g)
        assert np.isinf(want[1]).all()
        for a, r in zip(got, want):
            np.testing.assert_array_equal(a, r)          # (NaNs and infinities compare equal)
        assert np.isinf(dx_ref).any() and np.isfinite(dx_ref).any()
        tol = 1e-5 if dtype == np.float32 else 1e-12
        np.testing.assert_allclose(dx, dx_ref, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_batch_norm_double_backward_keeps_the_limits_of_an_infinite_cotangent(dtype):
    """The double backward is linear in its cotangent h = (hx, hw, hb). An infinite hw gives
    dx = r·hw·P(g) + (finite): ±inf across the channel, the signs of the limit (hw = 1e30), as
    PyTorch's double backward of F.batch_norm; the reference had taken r·P(u) with u = hw·g + …
    (inf − inf: NaN for the whole channel), numba's NaN at 5 of 12. An infinite hx gives
    dw = r·Σ hx·P(g): ±inf, the reference's and PyTorch's; numba's, from shifted sums, had been
    NaN (an audit against PyTorch, float64)."""
    rng = np.random.default_rng(0)
    x, g = (rng.standard_normal((3, 2, 2, 2)).astype(dtype) for _ in range(2))
    w, b = rng.standard_normal(2).astype(dtype), np.zeros(2, dtype)
    hx, hw, hb = rng.standard_normal(x.shape), rng.standard_normal(2), rng.standard_normal(2)
    row = K.TABLE["batch_norm_double_backward"]
    n = x.size

    def both(hx, hw):      # (reference, numba), each split into (dx, dw)
        h = np.concatenate([hx.ravel(), hw, hb]).astype(dtype)
        with np.errstate(invalid="ignore", over="ignore"):
            out = row.reference(x, w, b, g, h), K.resolve(row.cpu)(x, w, b, g, h)
        return [(o[:n].reshape(x.shape), o[n:n + 2]) for o in out]

    def at(bad):           # hw[0] = bad: the two dx; hx[1, 0, 0, 1] = bad: the two dw
        hw_bad, hx_bad = hw.copy(), hx.copy()
        hw_bad[0], hx_bad[1, 0, 0, 1] = bad, bad
        return [d for d, _ in both(hx, hw_bad)], [d for _, d in both(hx_bad, hw)]

    (dx, dx_fast), (dw, dw_fast) = at(np.inf)
    (limit_dx, _), (limit_dw, _) = at(1e30)             # the signs of the limits
    tol = 1e-5 if dtype == np.float32 else 1e-12
    for got in (dx, dx_fast):
        assert np.isinf(got[:, 0]).all() and np.isfinite(got[:, 1]).all()
        np.testing.assert_array_equal(np.sign(got[:, 0]), np.sign(limit_dx[:, 0]))
    np.testing.assert_allclose(dx_fast, dx, rtol=tol, atol=tol)
    for got in (dw, dw_fast):
        assert np.isinf(got[0]) and np.sign(got[0]) == np.sign(limit_dw[0])
        np.testing.assert_allclose(got[1], limit_dw[1], rtol=tol)


def test_the_batch_norm_kernels_finiteness_test_survives_their_fast_math():
    """numba computes np.isfinite(v) as v − v == 0, which the kernels' fast-math licences
    (``nsz`` with ``reassoc``) fold to True, even of the NaN inf − inf: ``_finite``, which
    ``_shift`` relies on, is an ordered compare with inf instead."""
    from numba import njit
    from minimeta.kernels import norm_numba

    @njit(fastmath=norm_numba.FAST)
    def finite_difference(a, b):      # a value the kernel computes, as sum_gxhat is
        return norm_numba._finite(a - b)

    assert [finite_difference(a, b) for a, b in
            [(np.inf, np.inf), (np.nan, 1.0), (-np.inf, 1.0), (1.0, 2.0)]] == [0, 0, 0, 1]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bad", [np.inf, -np.inf])
def test_batch_norm_gradients_under_an_infinite_weight_are_the_reference_s(dtype, bad):
    """An infinite weight makes ĝ = g·w ±inf: the reference's mean(ĝ) meets inf − inf, NaN for
    the whole channel; the kernels take w out of their sums (w·Σg) and had given ±inf at some
    of its dx (numba's double backward: dx = [nan, inf, -inf] for the reference's three NaN
    on x = [0, 1, 3], g = [1, 2, -1]), where its fast-math licences moved them too (an audit)."""
    rng = np.random.default_rng(0)
    x, g = rng.standard_normal((3, 2, 4)).astype(dtype), rng.standard_normal((3, 2, 4))
    w, b = np.array([bad, 1.0], dtype), np.zeros(2, dtype)
    h = rng.standard_normal(x.size + 4).astype(dtype)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    for name, args in (("batch_norm_backward", (x, w, b, g.astype(dtype))),
                       ("batch_norm_double_backward", (x, w, b, g.astype(dtype), h))):
        row = K.TABLE[name]
        with np.errstate(invalid="ignore", over="ignore"):
            want, got = row.reference(*args), K.resolve(row.cpu)(*args)
        assert np.isnan(want[:x.size].reshape(x.shape)[:, 0]).all(), name   # the spec's NaN
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol, err_msg=name)


def test_batch_norm_kernels_at_values_whose_squares_overflow_are_the_reference_s():
    """|x| ≳ 1e154 in float64: the kernels' E[d²] − E[d]² is inf − inf, and they had given a
    NaN variance where the reference's is inf (and y = b), NaN dx where its are 0 (an audit)."""
    x = np.array([[1e200, 1.0], [0.0, 2.0], [3e199, 0.5]])
    w, b, g = np.array([1.0, 2.0]), np.array([0.1, 0.2]), np.array([[1.0, 2], [-1, 0.5], [0.3, 0]])
    h = np.linspace(-1, 1, x.size + 4)
    for name, args in (("batch_norm", (x, w, b)), ("batch_norm_backward", (x, w, b, g)),
                       ("batch_norm_double_backward", (x, w, b, g, h))):
        row = K.TABLE[name]
        with np.errstate(invalid="ignore", over="ignore"):
            want, got = row.reference(*args), K.resolve(row.cpu)(*args)
        for a, r in zip(got if name == "batch_norm" else [got], want if name == "batch_norm"
                        else [want]):
            np.testing.assert_allclose(a, r, rtol=1e-12, err_msg=name)
