"""The GPU path on real hardware (marker ``gpu``; out of the default run, skipped without a
GPU). Run by ``benchmarks/gpu_check.py``. Each test compares the GPU against the CPU or the
NumPy reference on the same inputs."""
import numpy as np
import pytest

import minimeta as mm
from minimeta import nn, selfcheck

import cuda_cases  # tests/: the kernels' calls the compile check compiles; CuPy or a skip

pytestmark = pytest.mark.gpu
cp = cuda_cases.cupy_or_skip()

from minimeta.kernels import attention_cuda, attention_ref, conv_cuda, conv_ref  # noqa: E402
from minimeta.kernels import pool_cuda, pool_ref  # noqa: E402

RNG = np.random.default_rng(0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", cuda_cases.NAMES)
def test_every_cuda_kernel_matches_its_reference(name, dtype):
    """Every CUDA kernel, through the calls the compile check compiles (a test without a GPU
    holds them to every kernel in both dtypes), against its NumPy reference at the production
    block size. The float32 pooling backward (atomic adds) and attention backward had been
    checked only in the simulator."""
    case = cuda_cases.case(name, dtype)
    got = case.cuda(*[cp.asarray(a) for a in case.inputs])
    want = case.reference(*case.inputs)
    got, want = (got, want) if isinstance(want, tuple) else ((got,), (want,))
    rtol, atol = case.tol
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.dtype == w.dtype, (g.dtype, w.dtype)
        if w.dtype.kind in "iu":        # max pooling's argmax: exactly the reference's
            np.testing.assert_array_equal(g.get(), w)
        else:
            np.testing.assert_allclose(g.get(), w, rtol=rtol, atol=atol * max(1, abs(w).max()))


@pytest.mark.parametrize("stride,padding", [(1, 0), (1, 1), (2, 1)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("tasks", [(), (3,)], ids=["single", "stacked3"])
def test_conv_family_on_gpu_matches_reference(stride, padding, dtype, tasks):
    """Single convolutions, and stacks of 3 (one batched GEMM for the three tasks)."""
    x = RNG.standard_normal(tasks + (5, 3, 13, 11)).astype(dtype)
    w = RNG.standard_normal(tasks + (4, 3, 3, 3)).astype(dtype)
    tol = 1e-4 if dtype == np.float32 else 1e-10
    y = conv_cuda.conv2d(cp.asarray(x), cp.asarray(w), stride, padding)
    np.testing.assert_allclose(y.get(), conv_ref.conv2d(x, w, stride, padding), rtol=tol,
                               atol=tol)
    g = RNG.standard_normal(y.shape).astype(dtype)
    np.testing.assert_allclose(
        conv_cuda.conv2d_input_grad(cp.asarray(g), cp.asarray(w), x.shape, stride,
                                    padding).get(),
        conv_ref.conv2d_input_grad(g, w, x.shape, stride, padding), rtol=tol, atol=tol)
    np.testing.assert_allclose(
        conv_cuda.conv2d_weight_grad(cp.asarray(x), cp.asarray(g), w.shape, stride,
                                     padding).get(),
        conv_ref.conv2d_weight_grad(x, g, w.shape, stride, padding), rtol=tol, atol=tol * 10)


def test_pool_and_attention_on_gpu_match_reference():
    x = RNG.standard_normal((3, 4, 9, 9))
    y, idx = pool_cuda.max_pool2d(cp.asarray(x), 3, 2)
    y_ref, idx_ref = pool_ref.max_pool2d(x, 3, 2)
    np.testing.assert_array_equal(y.get(), y_ref)
    np.testing.assert_array_equal(idx.get(), idx_ref)
    g = RNG.standard_normal(y.shape)
    np.testing.assert_allclose(pool_cuda.max_pool2d_backward(cp.asarray(g), idx, x.shape).get(),
                               pool_ref.max_pool2d_backward(g, idx_ref, x.shape), atol=1e-12)
    q, s = RNG.standard_normal((2, 75, 64)), RNG.standard_normal((2, 25, 64))
    lab = np.eye(5)[RNG.integers(0, 5, (2, 25))]
    gq = RNG.standard_normal((2, 75, 5))
    args = [cp.asarray(a) for a in (q, s, lab)]
    np.testing.assert_allclose(attention_cuda.cosine_attention(*args).get(),
                               attention_ref.cosine_attention(q, s, lab), rtol=1e-10)
    np.testing.assert_allclose(
        attention_cuda.cosine_attention_backward(*args, cp.asarray(gq)).get(),
        attention_ref.cosine_attention_backward(q, s, lab, gq), rtol=1e-8, atol=1e-10)


def test_pool_and_attention_on_gpu_in_float32():
    x = RNG.standard_normal((3, 4, 9, 9)).astype(np.float32)
    y, idx = pool_cuda.max_pool2d(cp.asarray(x), 3, 2)
    y_ref, idx_ref = pool_ref.max_pool2d(x, 3, 2)
    np.testing.assert_array_equal(y.get(), y_ref)
    np.testing.assert_array_equal(idx.get(), idx_ref)
    q = RNG.standard_normal((2, 75, 64)).astype(np.float32)
    s = RNG.standard_normal((2, 25, 64)).astype(np.float32)
    lab = np.eye(5, dtype=np.float32)[RNG.integers(0, 5, (2, 25))]
    args = [cp.asarray(a) for a in (q, s, lab)]
    np.testing.assert_allclose(attention_cuda.cosine_attention(*args).get(),
                               attention_ref.cosine_attention(q, s, lab), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", [row.name for row in selfcheck.ROWS])
def test_every_primitive_on_gpu_matches_the_cpu(name):
    """Each row of the primitive table: forward, VJP and the VJP's own VJP on the GPU equal
    the CPU's, on inputs drawn by the row's strategy (``selfcheck.device_parity``)."""
    selfcheck.check_on_device(next(r for r in selfcheck.ROWS if r.name == name), "cuda", 10)


def test_the_stand_in_cupy_knows_this_cupy():
    """``tests/cupy_api.py`` (the names the CPU suite's stand-in allows) agrees with the CuPy
    installed here: every name it allows exists, and ``.at`` is allowed exactly where this
    CuPy scatters. A newer CuPy may add names: regenerate the lists (the file says how)."""
    import cupy_api

    if cp.__version__.startswith("stand-in"):
        pytest.skip("the stand-in itself (tests/simulated_gpu.py): nothing to compare")
    assert [n for n in cupy_api.TOP if not hasattr(cp, n)] == []
    assert [n for n in cupy_api.LINALG if not hasattr(cp.linalg, n)] == []
    assert [n for n in cupy_api.NDARRAY if not hasattr(cp.ndarray, n)] == []
    assert [n for n in cupy_api.STRIDE_TRICKS if not hasattr(cp.lib.stride_tricks, n)] == []
    scatters = {n for n in dir(cp) if isinstance(getattr(cp, n), cp.ufunc)
                and getattr(getattr(cp, n), "_scatter_op", None)}
    assert scatters == set(cupy_api.UFUNC_AT), (cp.__version__, cupy_api.VERSION)
    import inspect

    def taken(name):      # the keywords this CuPy's function takes, "**" for any
        f = cp
        for part in name.split("."):
            f = getattr(f, part)
        params = inspect.signature(f).parameters.values()
        anything = any(p.kind == p.VAR_KEYWORD for p in params)
        return {p.name for p in params} | ({"**"} if anything else set())

    methods = ("ndarray.", "ufunc.")       # Cython's, read from docstrings and probes
    assert [n for n, keys in cupy_api.KEYWORDS.items()
            if not n.startswith(methods) and not keys <= taken(n)] == []
    fresh = cupy_api._keywords(cupy_api._generate().split("KEYWORDS = _keywords(")[1])
    assert [n for n, keys in cupy_api.KEYWORDS.items()
            if n.startswith(methods) and not keys <= fresh.get(n, set())] == []


def test_second_order_derivatives_on_gpu_equal_cpu():
    x = RNG.standard_normal((3, 4))
    f = lambda t: (mm.tanh(t @ t.T) * mm.exp(t.sum(1, keepdims=True) * 0.1)).sum()
    out = {}
    for device in ("cpu", "cuda"):
        t = mm.tensor(x, requires_grad=True, device=device)
        (g,) = mm.grad(f(t), [t], create_graph=True)
        (h,) = mm.grad((g * g).sum(), [t])
        out[device] = (g.numpy(), h.numpy())
    for a, b in zip(out["cpu"], out["cuda"]):
        np.testing.assert_allclose(a, b, rtol=1e-10)


@pytest.mark.parametrize("stacked", [False, True])
def test_second_order_maml_meta_gradient_on_gpu_equals_cpu(stacked):
    """The task loop on the CPU against the loop, or the stacked meta-batch (``StackedTasks``,
    what the command line runs on a GPU), on the GPU."""
    from minimeta.learners import MAML, StackedTasks

    tasks = [(RNG.standard_normal((5, 1, 28, 28)), np.arange(5),
              RNG.standard_normal((10, 1, 28, 28)), np.repeat(np.arange(5), 2))
             for _ in range(2)]
    grads = {}
    for device in ("cpu", "cuda"):
        model = nn.conv4(5, dtype=np.float64, seed=1).to(device)
        learner = MAML(model, 0.4, 2)
        learner = StackedTasks(learner) if stacked and device == "cuda" else learner
        grads[device] = [g.numpy() for g in learner.meta_gradient(tasks)]
    scale = max(np.abs(g).max() for g in grads["cpu"])
    for a, b in zip(grads["cpu"], grads["cuda"]):
        np.testing.assert_allclose(a, b, rtol=1e-7, atol=1e-9 * scale)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_meta_gradient_on_gpu_repeats_its_bits(dtype):
    """Two runs of the same stacked MAML meta-gradient on the GPU, bit for bit (the CPU's
    promise, ``test_reproducible.py``; on a GPU only conv4's 2×2 pooling uses atomics, each
    input added at most once: docs/PERFORMANCE.md, "The same bits")."""
    from minimeta.learners import MAML, StackedTasks

    tasks = [(RNG.standard_normal((5, 1, 28, 28)).astype(dtype), np.arange(5),
              RNG.standard_normal((10, 1, 28, 28)).astype(dtype), np.repeat(np.arange(5), 2))
             for _ in range(3)]
    runs = []
    for _ in range(2):
        learner = StackedTasks(MAML(nn.conv4(5, dtype=dtype, seed=1).to("cuda"), 0.4, 2))
        runs.append([g.numpy() for g in learner.meta_gradient(tasks)])
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)


def test_a_replayed_sinusoid_meta_iteration_on_gpu_trains_the_same_bits():
    """``StackedTasks`` replays a regression's meta-iteration (``engine/replay.py``): on the GPU,
    as on the CPU, the same parameters after Adam steps as the learner that runs it as it is."""
    from minimeta.learners import MAML, StackedTasks
    from minimeta.optim import Adam

    x = RNG.uniform(-5, 5, (4, 5, 4, 1)).astype(np.float32)
    batches = [[(cp.asarray(x[b, t, :2]), cp.asarray(np.sin(x[b, t, :2])), cp.asarray(
        x[b, t, 2:]), cp.asarray(np.sin(x[b, t, 2:]))) for t in range(5)] for b in range(4)]
    params = []
    for replay in (True, False):
        learner = StackedTasks(MAML(nn.mlp((1, 8, 1), seed=2).to("cuda"), 0.05, 2, loss="mse"),
                               replay=replay)
        opt = Adam(learner.meta_parameters(), 1e-2)
        for tasks in batches:
            learner.outer_step(tasks)
            opt.step()
            opt.zero_grad()
        params.append([p.numpy() for p in learner.meta_parameters()])
    assert all(np.array_equal(a, b) for a, b in zip(*params))


def test_every_learner_trains_a_step_on_gpu(tmp_path):
    """The command line's learners, built on the GPU, take a training step and evaluate, on
    synthetic episodes (the GPU machine need not hold Omniglot)."""
    from minimeta import io
    from minimeta.data import EpisodeSampler
    from minimeta.optim import Adam

    from minimeta.experiments.config import RunConfig
    from minimeta.experiments.registry import LEARNERS, build

    classes = RNG.random((20, 20, 28, 28)).astype(np.float32)
    tasks = EpisodeSampler(classes, 5, 1, 2, seed=0).batch(2)
    for name in LEARNERS:
        if "omniglot" not in LEARNERS[name].datasets:
            continue  # the CNP regresses sinusoids: test_cnp_trains_a_step_on_gpu
        opts = dict(test_steps=1) if LEARNERS[name].family == "optimization" else {}
        model, learner = build(RunConfig(learner=name, ways=5, shots=1, queries=2,
                                         meta_batch=2, seed=0, device="cuda",
                                         fce=name == "matching", out=None, **opts))
        assert model.device == "cuda"
        opt = Adam(learner.meta_parameters()) if name != "reptile" else None
        metrics = learner.outer_step(tasks)
        if opt is not None:
            opt.step()
        assert np.isfinite(metrics["loss"]), name
        loss, acc = learner.evaluate(tasks[0])
        assert np.isfinite(loss) and 0 <= acc <= 1
        io.save(str(tmp_path / f"{name}.npz"), {"model": model.state_dict(),
                                                 "optim": opt.state_dict() if opt else {}})


def test_cnp_trains_a_step_on_gpu():
    from minimeta.data import SinusoidTasks
    from minimeta.experiments.config import RunConfig
    from minimeta.experiments.registry import build
    from minimeta.optim import Adam

    model, learner = build(RunConfig(learner="cnp", dataset="sinusoid", shots=10, queries=10,
                                     device="cuda", out=None))
    opt = Adam(learner.meta_parameters())
    metrics = learner.outer_step(SinusoidTasks(seed=0).sample(4, 10, 10))
    opt.step()
    assert np.isfinite(metrics["loss"]) and model.device == "cuda"


@pytest.mark.parametrize("stacked", [False, True], ids=["task_loop", "stacked"])
def test_an_outer_step_waits_for_the_gpu_once_at_its_end(monkeypatch, stacked):
    """A read of a GPU value waits for all the work queued before it. A MAML meta-iteration
    reads its losses and accuracies in one go, after its last launch (``learners/base.read``);
    anything else that waits for the GPU inside the step (an accuracy read where it is made, a
    ``.item()``, a boolean mask) is an error here (CuPy's ``allow_synchronize``). Its stand-in
    twin, which counts the reads: ``tests/test_cuda_device_counts.py``."""
    cupyx = pytest.importorskip("cupyx")
    if not hasattr(cupyx, "allow_synchronize"):
        pytest.skip("this CuPy has no allow_synchronize")
    from minimeta.learners import MAML, StackedTasks, base

    reads, read = [], base.read

    def allowed(values):
        reads.append(len(values))
        with cupyx.allow_synchronize(True):
            return read(values)
    monkeypatch.setattr(base, "read", allowed)
    tasks = [(RNG.standard_normal((5, 1, 28, 28)).astype(np.float32), np.arange(5),
              RNG.standard_normal((10, 1, 28, 28)).astype(np.float32),
              np.repeat(np.arange(5), 2)) for _ in range(3)]
    learner = MAML(nn.conv4(5, dtype=np.float32, seed=1).to("cuda"), 0.4, 1)
    learner = StackedTasks(learner) if stacked else learner
    learner.outer_step(tasks)       # the first: compiles, fills the pools
    reads.clear()
    with cupyx.allow_synchronize(False):
        metrics = learner.outer_step(tasks)
    assert reads == [2 if stacked else 2 * len(tasks)], reads
    assert np.isfinite(metrics["loss"]) and 0 <= metrics["accuracy"] <= 1


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_causal_conv1d_on_gpu_matches_reference(dtype):
    from minimeta.kernels import causal_cuda, causal_ref

    x = RNG.standard_normal((3, 70, 26)).astype(dtype)
    w = RNG.standard_normal((128, 70, 2)).astype(dtype)
    g = RNG.standard_normal((3, 128, 26)).astype(dtype)
    tol = 1e-4 if dtype == np.float32 else 1e-10
    for d in (1, 2, 16, 32):
        np.testing.assert_allclose(causal_cuda.causal_conv1d(cp.asarray(x), cp.asarray(w),
                                                             d).get(),
                                   causal_ref.causal_conv1d(x, w, d), rtol=tol, atol=tol * 10)
        np.testing.assert_allclose(
            causal_cuda.causal_conv1d_input_grad(cp.asarray(g), cp.asarray(w), d).get(),
            causal_ref.causal_conv1d_input_grad(g, w, d), rtol=tol, atol=tol * 10)
        np.testing.assert_allclose(
            causal_cuda.causal_conv1d_weight_grad(cp.asarray(x), cp.asarray(g), w.shape,
                                                  d).get(),
            causal_ref.causal_conv1d_weight_grad(x, g, w.shape, d), rtol=tol, atol=tol * 30)


def test_no_kernel_reads_memory_it_did_not_write():
    """CuPy's pool hands freed memory back as it was. Leave NaN in it, then every kernel's
    output must still be finite (SNAIL's causal kernels once seeded sums from their own output:
    NaN here; ``tests/fake_cupy.py`` poisons ``empty`` to catch it without a GPU)."""
    from minimeta.kernels import causal_cuda

    for _ in range(3):
        junk = cp.full(1 << 22, cp.nan)
        del junk
    x, w = cp.asarray(RNG.standard_normal((2, 3, 9, 9))), cp.asarray(RNG.standard_normal(
        (4, 3, 3, 3)))
    xc, wc = cp.asarray(RNG.standard_normal((2, 3, 17))), cp.asarray(RNG.standard_normal(
        (4, 3, 2)))
    y = conv_cuda.conv2d(x, w, 1, 1)
    q, s = cp.asarray(RNG.standard_normal((2, 5, 8))), cp.asarray(RNG.standard_normal((2, 4, 8)))
    lab = cp.asarray(np.eye(3)[RNG.integers(0, 3, (2, 4))])
    outs = [y, conv_cuda.conv2d_input_grad(y, w, x.shape, 1, 1),
            conv_cuda.conv2d_weight_grad(x, y, w.shape, 1, 1), pool_cuda.max_pool2d(x, 2, 2)[0],
            causal_cuda.causal_conv1d(xc, wc, 2), causal_cuda.causal_conv1d_input_grad(
                causal_cuda.causal_conv1d(xc, wc, 2), wc, 2),
            causal_cuda.causal_conv1d_weight_grad(xc, xc[:, :1].repeat(4, 1), wc.shape, 2),
            attention_cuda.cosine_attention(q, s, lab)]
    for i, out in enumerate(outs):
        assert bool(cp.isfinite(out).all()), i


def test_out_of_range_indices_are_an_error_on_gpu():
    """CuPy wraps out-of-range index entries around; the engine checks host indices first."""
    t = mm.tensor(np.arange(6.0).reshape(2, 3), device="cuda")
    with pytest.raises(IndexError, match="out of bounds for axis 1 with size 3"):
        t[:, np.array([0, 3])]


def test_mixing_real_devices_is_an_error():
    with pytest.raises(RuntimeError, match="different devices"):
        mm.tensor([1.0]) + mm.tensor([1.0], device="cuda")


def test_kernel_launches_do_not_wait_for_the_gpu():
    """numba synchronises the stream of a CuPy array handed to a kernel, at every launch, unless
    it gets a view made without (``kernels/_cuda.launch``; its stand-in test:
    ``tests/test_devices.py``): no launch here may synchronise a stream."""
    from unittest import mock

    try:
        from numba.cuda.cudadrv.driver import Stream
    except ImportError:                 # numba's simulator: no driver, no streams
        pytest.skip("numba's CUDA simulator has no streams")
    x, w = cp.asarray(RNG.standard_normal((4, 3, 9, 9))), cp.asarray(RNG.standard_normal(
        (5, 3, 3, 3)))
    pool_cuda.max_pool2d(conv_cuda.conv2d(x, w, 1, 1), 2, 2)      # compiled, outside the count
    cp.cuda.Device().synchronize()
    with mock.patch.object(Stream, "synchronize", side_effect=AssertionError("synchronised")):
        y = conv_cuda.conv2d(x, w, 1, 1)
        p, idx = pool_cuda.max_pool2d(y, 2, 2)
        gx = conv_cuda.conv2d_input_grad(y, w, x.shape, 1, 1)
    np.testing.assert_allclose(gx.get(), conv_ref.conv2d_input_grad(
        y.get(), w.get(), x.shape, 1, 1), rtol=1e-10, atol=1e-10)
    np.testing.assert_array_equal(p.get(), pool_ref.max_pool2d(y.get(), 2, 2)[0])
