"""Every numba kernel equals its NumPy reference (the spec), and fused == composite."""
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import minimeta as mm
import minimeta.functional as F
from minimeta import kernels as K
from minimeta.kernels import attention_ref, conv_ref
from minimeta.testing import arrays
from test_kernel_references import check_max_pool, tied_arrays

DTYPES = st.sampled_from([np.float32, np.float64])


def close(a, b, dtype):
    tol = 2e-4 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(a, b, rtol=tol, atol=tol * max(1.0, np.abs(b).max()))


@st.composite
def conv_case(draw, images=(1, 3)):
    dtype = draw(DTYPES)
    # kernels to 7 and strides to 4: taps that see only padding (k 5, stride 2, padding 2)
    k, s, p = draw(st.integers(1, 7)), draw(st.integers(1, 4)), draw(st.integers(0, 3))
    # planes to 16: stride-1 layers of 11×11 and up take the shifted GEMMs, the input gradient
    # too (at 9 at most, no example had reached them: a mirrored filter there had passed)
    h, w = draw(st.integers(max(1, k - 2 * p), 16)), draw(st.integers(max(1, k - 2 * p), 16))
    c = draw(st.sampled_from([1, 2, 3]))
    x = draw(arrays((draw(st.integers(*images)), c, h, w), dtype=dtype))
    wt = draw(arrays((draw(st.integers(1, 4)), c, k, k), dtype=dtype))
    return x, wt, s, p, dtype


@pytest.mark.parametrize("shape, out, k, padding", [((2, 3, 14, 14), 4, 3, 1),
                                                    ((1, 2, 20, 21), 3, 5, 2)])
def test_the_shifted_gemm_paths_equal_the_reference(shape, out, k, padding, monkeypatch):
    from minimeta.kernels import conv_numba

    taken = []
    for name in ("_shifted_gemm_conv", "_shifted_gemm_weight_grad"):
        real = getattr(conv_numba, name)
        monkeypatch.setattr(conv_numba, name, lambda *a, _f=real, _n=name: taken.append(_n)
                            or _f(*a))
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal(shape), rng.standard_normal((out, shape[1], k, k))
    y = conv_numba.conv2d(x, w, 1, padding)
    close(y, conv_ref.conv2d(x, w, 1, padding), np.float64)
    g = rng.standard_normal(y.shape)
    close(conv_numba.conv2d_input_grad(g, w, x.shape, 1, padding),
          conv_ref.conv2d_input_grad(g, w, x.shape, 1, padding), np.float64)
    close(conv_numba.conv2d_weight_grad(x, g, w.shape, 1, padding),
          conv_ref.conv2d_weight_grad(x, g, w.shape, 1, padding), np.float64)
    assert taken == ["_shifted_gemm_conv", "_shifted_gemm_conv", "_shifted_gemm_weight_grad"]


@given(conv_case())
def test_conv_family_numba_equals_reference(case):
    check_conv_family(*case)


@st.composite
def shifted_case(draw):
    """A layer that takes the shifted GEMMs: 3×3, stride 1, padding 1, planes of 12-16."""
    dtype, n, c, o = draw(DTYPES), draw(st.integers(2, 3)), draw(st.integers(2, 3)), 2
    h, w = draw(st.integers(12, 16)), draw(st.integers(12, 16))
    return draw(arrays((n, c, h, w), dtype=dtype)), draw(arrays((o, c, 3, 3), dtype=dtype)), \
        1, 1, dtype


@settings(max_examples=50)
@given(st.one_of(conv_case(images=(2, 4)), shifted_case()), st.integers(1, 600),
       st.integers(1, 40))
def test_conv_family_in_many_chunks_and_blocks_equals_reference(case, chunk_bytes, block):
    """The same, the work cut small: 2-4 images (each shifted by its own offset, so no two are
    equal) in chunks of one or a few, on every path (the one-channel GEMMs included; half the
    layers take the shifted GEMMs), their columns in blocks of 1-40. At the real cuts (4 MiB,
    4096 columns) no drawn input took two: a chunk or block reading another's images or
    columns had passed every test of this file (a mutation audit; 7 mutants now fail here)."""
    from minimeta.kernels import conv_numba

    x, *rest = case
    with pytest.MonkeyPatch.context() as patch:    # (the fixture is per test, not per example)
        patch.setattr(conv_numba, "CHUNK_BYTES", chunk_bytes)
        patch.setattr(conv_numba, "BLOCK", block)
        check_conv_family(x + np.arange(len(x), dtype=x.dtype).reshape(-1, 1, 1, 1) / 4, *rest)


def check_conv_family(x, w, s, p, dtype):
    cpu = {name: K.resolve(K.TABLE[name].cpu) for name in
           ("conv2d", "conv2d_input_grad", "conv2d_weight_grad")}
    ref = {name: K.TABLE[name].reference for name in cpu}
    y = cpu["conv2d"](x, w, s, p)
    assert y.dtype == dtype
    close(y, ref["conv2d"](x, w, s, p), dtype)
    g = np.random.default_rng(0).standard_normal(y.shape).astype(dtype)
    close(cpu["conv2d_input_grad"](g, w, x.shape, s, p),
          ref["conv2d_input_grad"](g, w, x.shape, s, p), dtype)
    gw = cpu["conv2d_weight_grad"](x, g, w.shape, s, p)
    assert gw.dtype == dtype
    close(gw, ref["conv2d_weight_grad"](x, g, w.shape, s, p), dtype)


@given(st.integers(1, 3), st.integers(1, 3), DTYPES, st.booleans(), st.data())
def test_max_pool_numba_equals_reference(k, s, dtype, ties, data):
    """Equal outputs and argmax, and, with ties (all-equal or small-integer inputs), each
    window's argmax inside that window at its first maximum, for both kernels."""
    shape = (data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3)),
             data.draw(st.integers(k, 9)), data.draw(st.integers(k, 9)))
    x = data.draw(tied_arrays(shape)).astype(dtype) if ties else \
        data.draw(arrays(shape, dtype=dtype))
    y, idx = K.resolve(K.TABLE["max_pool2d"].cpu)(x, k, s)
    y_ref, idx_ref = K.TABLE["max_pool2d"].reference(x, k, s)
    check_max_pool(x, k, s, y, idx)
    check_max_pool(x, k, s, y_ref, idx_ref)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(idx, idx_ref)
    g = np.random.default_rng(1).standard_normal(y.shape).astype(dtype)
    close(K.resolve(K.TABLE["max_pool2d_backward"].cpu)(g, idx, x.shape),
          K.TABLE["max_pool2d_backward"].reference(g, idx, x.shape), dtype)


@pytest.mark.parametrize("k, s", [(2, 2), (3, 2)])
def test_max_pool_int64_indices_when_int32_cannot_hold_them(monkeypatch, k, s):
    """x of 2**31 elements or more gets int64 argmax indices; such an x (16 GiB in float64)
    cannot be made here, so the bound is lowered to 10: both kernels (2×2 and general) then run
    on int64 indices and still equal the reference, forward and scatter."""
    from minimeta.kernels import pool_numba
    x = np.random.default_rng(2).standard_normal((2, 3, 7, 6))
    monkeypatch.setattr(pool_numba, "INT32_INDICES", 10)
    y, idx = pool_numba.max_pool2d(x, k, s)
    y_ref, idx_ref = K.TABLE["max_pool2d"].reference(x, k, s)
    assert idx.dtype == np.int64
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(idx, idx_ref)
    g = np.random.default_rng(3).standard_normal(y.shape)
    np.testing.assert_array_equal(pool_numba.max_pool2d_backward(g, idx, x.shape),
                                  K.TABLE["max_pool2d_backward"].reference(g, idx, x.shape))
    monkeypatch.undo()
    assert pool_numba.max_pool2d(x, k, s)[1].dtype == np.int32


@pytest.mark.parametrize("k, s, p, h, c", [(5, 2, 2, 2, 1), (5, 3, 2, 3, 3), (6, 2, 2, 3, 1),
                                           (7, 2, 3, 2, 2), (7, 3, 3, 3, 1), (5, 2, 2, 8, 64)])
def test_a_tap_that_sees_only_padding_gathers_nothing(k, s, p, h, c):
    # such a tap's slice ended at index −1, wrapping round to the row's end: wrong values,
    # then an assertion inside numba at the next call (found 2026-12-01; k ≤ 3 never hit it)
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((2, c, h, h)), rng.standard_normal((3, c, k, k))
    for _ in range(2):
        y = K.conv_numba.conv2d(x, w, s, p)
        close(y, K.conv_ref.conv2d(x, w, s, p), np.float64)
        g = rng.standard_normal(y.shape)
        close(K.conv_numba.conv2d_input_grad(g, w, x.shape, s, p),
              K.conv_ref.conv2d_input_grad(g, w, x.shape, s, p), np.float64)
        close(K.conv_numba.conv2d_weight_grad(x, g, w.shape, s, p),
              K.conv_ref.conv2d_weight_grad(x, g, w.shape, s, p), np.float64)


@st.composite
def attention_case(draw):
    dtype = draw(DTYPES)
    b, q, s, d, n = (draw(st.integers(1, 3)), draw(st.integers(1, 4)), draw(st.integers(1, 5)),
                     draw(st.integers(1, 4)), draw(st.integers(1, 3)))
    labels = draw(st.lists(st.integers(0, n - 1), min_size=b * s, max_size=b * s))
    y = np.eye(n, dtype=dtype)[labels].reshape(b, s, n)
    # vectors kept away from 0, where the normalisation's gradient (1/eps) is ill-conditioned
    return (draw(arrays((b, q, d), dtype=dtype, margin=0.1)),
            draw(arrays((b, s, d), dtype=dtype, margin=0.1)), y, dtype)


@given(attention_case())
def test_fused_attention_numba_equals_reference(case):
    q, s, y, dtype = case
    g = np.random.default_rng(2).standard_normal((q.shape[0], q.shape[1], y.shape[2]))
    g = g.astype(dtype)
    close(K.resolve(K.TABLE["cosine_attention"].cpu)(q, s, y),
          attention_ref.cosine_attention(q, s, y), dtype)
    close(K.resolve(K.TABLE["cosine_attention_backward"].cpu)(q, s, y, g),
          attention_ref.cosine_attention_backward(q, s, y, g), dtype)


@given(attention_case())
def test_fused_attention_equals_composite_with_gradients(case):
    q, s, y, _ = case
    q, s, y = (a.astype(np.float64) for a in (q, s, y))
    tq, ts, ty = (mm.tensor(a, requires_grad=True) for a in (q, s, y))
    fused = F.cosine_attention(tq, ts, ty, fused=True)
    composite = F.cosine_attention(tq, ts, ty, fused=False)
    assert type(fused._op).__name__ == "CosineAttention"
    np.testing.assert_allclose(fused.numpy(), composite.numpy(), rtol=1e-12, atol=1e-14)
    g = mm.tensor(np.random.default_rng(3).standard_normal(fused.shape))
    for a, b in zip(mm.grad(fused, [tq, ts, ty], g), mm.grad(composite, [tq, ts, ty], g)):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("order", [1, 2, 3])
def test_fused_attention_gradcheck_any_order(order):
    rng = np.random.default_rng(4)
    q, s = rng.standard_normal((2, 3, 4)), rng.standard_normal((2, 5, 4))
    y = np.eye(3)[rng.integers(0, 3, 10)].reshape(2, 5, 3)
    # finite differences (central, up to third order): looser than float64 rounding
    mm.gradcheck(lambda q, s, y: F.cosine_attention(q, s, y), [q, s, y], order=order,
                 atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("order", [1, 2])
def test_gradchecks_pass_with_kernels_on_and_off(order):
    rng = np.random.default_rng(5)
    x, w = rng.standard_normal((2, 3, 6, 5)), rng.standard_normal((4, 3, 3, 3))

    def net(x, w):
        return F.max_pool2d(mm.tanh(F.conv2d(x, w, padding=1, stride=1)), 2)
    mm.gradcheck(net, [x, w], order=order)
    with K.use_reference():
        assert K.lookup("conv2d") is K.TABLE["conv2d"].reference
        mm.gradcheck(net, [x, w], order=order)


def test_non_contiguous_inputs_are_accepted():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)[:, :, ::2, ::2]
    w = np.asfortranarray(rng.standard_normal((4, 3, 3, 3)).astype(np.float32))
    close(K.lookup("conv2d")(x, w, 1, 1), K.TABLE["conv2d"].reference(x, w, 1, 1), np.float32)


def test_debug_path_without_jit_runs():
    code = ("import numpy as np; from minimeta.kernels import conv_numba as c, conv_ref as r; "
            "x = np.ones((1, 2, 4, 4)); w = np.ones((3, 2, 3, 3)); "
            "assert np.allclose(c.conv2d(x, w, 1, 1), r.conv2d(x, w, 1, 1))")
    env = dict(os.environ, NUMBA_DISABLE_JIT="1")
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


@st.composite
def norm_case(draw):
    dtype = draw(DTYPES)
    shape = draw(st.sampled_from([(3, 2), (2, 3, 4, 4), (5, 1, 2, 3), (1, 2, 3, 1)]))
    c = shape[1]
    return (draw(arrays(shape, dtype=dtype)), draw(arrays((c,), 0.5, 2.0, dtype=dtype)),
            draw(arrays((c,), dtype=dtype)), dtype)


@given(norm_case())
def test_fused_batch_norm_numba_equals_reference(case):
    x, w, b, dtype = case
    x = x + np.linspace(0, 1, x.size).reshape(x.shape).astype(dtype)  # never constant
    cpu, ref = (K.resolve(K.TABLE["batch_norm"].cpu), K.TABLE["batch_norm"].reference)
    for a, r in zip(cpu(x, w, b), ref(x, w, b)):
        assert a.dtype == r.dtype == dtype      # the statistics had come back in float64
        close(a, r, dtype)
    g = np.random.default_rng(7).standard_normal(x.shape).astype(dtype)
    close(K.resolve(K.TABLE["batch_norm_backward"].cpu)(x, w, b, g),
          K.TABLE["batch_norm_backward"].reference(x, w, b, g), dtype)
    h = np.random.default_rng(8).standard_normal(x.size + 2 * w.size).astype(dtype)
    double = K.resolve(K.TABLE["batch_norm_double_backward"].cpu)(x, w, b, g, h)
    assert double.dtype == dtype
    close(double, K.TABLE["batch_norm_double_backward"].reference(x, w, b, g, h), dtype)


@given(norm_case())
def test_fused_batch_norm_equals_composite_with_gradients(case):
    x, w, b, _ = case
    x = x.astype(np.float64) + np.linspace(0, 1, x.size).reshape(x.shape)
    ts = [mm.tensor(a.astype(np.float64), requires_grad=True) for a in (x, w, b)]
    fused, composite = F.batch_norm(*ts), F.batch_norm(*ts, fused=False)
    assert type(fused._op).__name__ == "BatchNorm"
    np.testing.assert_allclose(fused.numpy(), composite.numpy(), rtol=1e-9, atol=1e-10)
    g = mm.tensor(np.random.default_rng(8).standard_normal(x.shape))
    for a, c in zip(mm.grad(fused, ts, g), mm.grad(composite, ts, g)):
        np.testing.assert_allclose(a.numpy(), c.numpy(), rtol=1e-8, atol=1e-9)


@given(norm_case())
def test_fused_batch_norm_second_derivatives_equal_composite(case):
    """The double-backward kernel (``batch_norm_double_backward``, what second-order MAML runs
    through every batch norm) against the composite's second derivatives, in x, w, b and in
    the incoming gradient g."""
    x, w, b, _ = case
    x = x.astype(np.float64) + np.linspace(0, 1, x.size).reshape(x.shape)
    rng = np.random.default_rng(11)
    g0, u = rng.standard_normal(x.shape), [rng.standard_normal(a.shape) for a in (x, w, b)]
    results = []
    for fused in (True, False):
        ts = [mm.tensor(a.astype(np.float64), requires_grad=True) for a in (x, w, b)]
        g = mm.tensor(g0, requires_grad=True)
        firsts = mm.grad(F.batch_norm(*ts, fused=fused), ts, g, create_graph=True)
        inner = sum((d * mm.tensor(v)).sum() for d, v in zip(firsts, u))
        seconds = mm.grad(inner, ts + [g], allow_unused=True)   # db: 0 (None: unused)
        results.append([np.zeros(v.shape) if d is None else d.numpy()
                        for d, v in zip(seconds, ts + [g])])
    assert not results[0][2].any()
    for a, c in zip(*results):
        np.testing.assert_allclose(a, c, rtol=1e-8, atol=1e-9)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_batch_norm_kernels_keep_their_digits_far_from_zero_mean(dtype):
    # E[x²] − E[x]² had lost every digit of float32 activations at mean 1e4 (and made a constant
    # channel's variance 1e-3); the sums now run on x − (the channel's first value). The
    # reference had summed float32 in float32: x̂ off by up to 2.5e-2 at mean 1e4 (now float64)
    rng = np.random.default_rng(0)
    f = lambda a: a.astype(np.float64)  # noqa: E731
    for mu in (1e4, 1e6):
        x = (mu + rng.standard_normal((8, 4, 5, 5))).astype(dtype)
        w, b = rng.standard_normal(4).astype(dtype), rng.standard_normal(4).astype(dtype)
        g = rng.standard_normal(x.shape).astype(dtype)
        h = rng.standard_normal(x.size + 8).astype(dtype)
        for name, args in (("batch_norm", (x, w, b)), ("batch_norm_backward", (x, w, b, g)),
                           ("batch_norm_double_backward", (x, w, b, g, h))):
            truth = K.TABLE[name].reference(*map(f, args), 1e-5)   # float64 on the same values
            for kernel in (K.resolve(K.TABLE[name].cpu), K.TABLE[name].reference):
                ours = kernel(*args, 1e-5)     # and the reference in float32 (GPUs run it)
                ours, exact = (ours[0], truth[0]) if name == "batch_norm" else (ours, truth)
                assert np.abs(ours - exact).max() <= 1e-6 * np.abs(exact).max(), (name, mu)
    constant = np.full((4, 2, 3, 3), 1e6 + 0.3, dtype=np.float64)
    assert K.norm_numba.batch_norm(constant, np.ones(2), np.zeros(2), 1e-5)[2].max() == 0.0


@pytest.mark.parametrize("order", [1, 2, 3])
def test_fused_batch_norm_gradcheck_any_order(order):
    rng = np.random.default_rng(9)
    x, w, b = rng.standard_normal((3, 2, 3, 3)), rng.uniform(0.5, 2, 2), rng.standard_normal(2)
    # finite differences (central, up to third order): looser than float64 rounding
    mm.gradcheck(F.batch_norm, [x, w, b], order=order, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("order", [2, 3])
def test_fused_ops_chained_so_the_incoming_gradient_depends_on_the_input(order):
    # g reaching the inner batch norm depends on x through the outer one: the VJP of the VJP
    # must take partial derivatives, not follow g back to x a second time.
    rng = np.random.default_rng(10)
    x, w, b = rng.standard_normal((3, 2, 2, 2)), rng.uniform(0.5, 2, 2), rng.standard_normal(2)

    def f(x, w, b):
        h = F.batch_norm(x, w, b)
        return F.batch_norm(mm.tanh(h) * x, w, b) * h
    # finite differences (central, up to third order): looser than float64 rounding
    mm.gradcheck(f, [x, w, b], order=order, atol=1e-5, rtol=1e-4)
    q = rng.standard_normal((1, 3, 2))
    labels = np.eye(2)[[0, 1, 1]][None]
    mm.gradcheck(lambda q: F.cosine_attention(mm.tanh(q), q, labels) * q, [q], order=order,
                 atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("fused_op", ["batch_norm", "cosine_attention"])
def test_maml_meta_gradient_same_with_fused_and_composite(fused_op):
    rng = np.random.default_rng(11)
    from minimeta.learners import MAML

    def model(fused):
        def f(x, p):
            h = F.conv2d(x, p["w"], padding=1)
            if fused_op == "batch_norm":
                h = F.batch_norm(h, p["g"], p["b"], fused=fused)
            h = F.flatten(F.relu(h))
            if fused_op == "cosine_attention":
                protos = mm.reshape(p["s"], (1, 3, -1))
                h = mm.reshape(F.cosine_attention(mm.reshape(h, (1, 4, -1)), protos,
                                                  np.eye(3)[None], fused=fused), (4, 3))
                return h * 5.0
            return h @ p["head"]
        return f

    shapes = {"w": (2, 1, 3, 3), "g": (2,), "b": (2,), "head": (2 * 16, 3), "s": (3, 32)}
    params0 = {k: rng.standard_normal(s) * 0.5 + (1.0 if k == "g" else 0.0)
               for k, s in shapes.items()}
    task = (rng.standard_normal((4, 1, 4, 4)), np.array([0, 1, 2, 0]),
            rng.standard_normal((4, 1, 4, 4)), np.array([2, 1, 0, 0]))
    grads = []
    for fused in (True, False):
        params = {k: mm.tensor(v, requires_grad=True) for k, v in params0.items()}
        grads.append(MAML(model(fused), 0.3, 2, params=params).meta_gradient([task]))
    used = 0
    for a, c in zip(*grads):  # parameters the model does not use get None from both
        assert (a is None) == (c is None)
        if a is not None:
            used += 1
            np.testing.assert_allclose(a.numpy(), c.numpy(), rtol=1e-8, atol=1e-10)
    assert used >= 2


@given(st.integers(0, 700), st.integers(1, 10 ** 6), st.integers(1, 10 ** 8))
def test_image_chunks_cover_the_images_evenly_in_fours(n, per_image, budget):
    """The conv family's chunks: every image once, in order; sizes within one image; a count
    that is a multiple of 4 (or n, or 1), so two threads share them equally (300 images in
    three chunks had left one of two cores idle a third of the first layer's time); and each
    near the budget (no more images than fit, unless one image alone is over it)."""
    from minimeta.kernels.threads import image_chunks

    chunks = image_chunks(n, per_image, budget)
    assert [i for a, b in chunks for i in range(a, b)] == list(range(n))
    sizes = [b - a for a, b in chunks]
    assert not sizes or max(sizes) - min(sizes) <= 1
    assert len(chunks) in (0, 1, n) or len(chunks) % 4 == 0
    fit = max(1, budget // per_image)
    assert not sizes or max(sizes) <= fit or len(chunks) == 1
