"""The numba.cuda kernels against their NumPy references, under numba's CUDA simulator.

The simulator must be switched on (``NUMBA_ENABLE_CUDASIM=1``) before numba is first imported,
and the main test process has long imported numba for the CPU kernels. So when this file is
collected without the variable, it holds one test that runs this same file in a fresh Python
with the variable set; in that child, the real tests below are collected, and those of
``tests/test_cuda_device_counts.py`` (reads and calls on the device). Shapes are small but
cross block boundaries: the kernels run with 32 threads per block, and the sizes include
31, 32, 33 and several blocks' worth of output elements.
"""
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from minimeta import selfcheck

SIMULATED = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
# the device reads and calls of a meta-iteration, counted in the same child
COUNTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "test_cuda_device_counts.py")


# The tests the child must run and pass, by name (the parametrized ones once per parameter):
# 1 simulator check + 1 conv property + 4 block sizes + 1 pool + 1 window check + 1 attention
# + 1 causal conv + 1 batch norm + 1 Adam + 1 kernel table + 13 learners + one per row of the
# primitive table (52) + 1 reference kernels on GPU arrays + 3 device reads + 1 device calls
# + 1 replayed step (those five in ``COUNTS``) = 84. A test added below or there must be added
# here, or the parent fails.
LEARNERS = ["maml", "fomaml", "metasgd", "anil", "reptile", "protonet", "matching", "relation",
            "snail", "mann", "cnp", "maml_stacked", "anil_stacked"]
ROWS = [row.name for row in selfcheck.ROWS]
EXPECTED = sorted(
    ["test_the_simulator_is_on", "test_conv_family_matches_reference",
     "test_max_pool_matches_reference", "test_cosine_attention_matches_reference",
     "test_the_cuda_kernels_refuse_windows_that_do_not_fit",
     "test_causal_conv1d_matches_reference", "test_batch_norm_matches_reference",
     "test_adam_matches_reference",
     "test_kernel_table_sends_gpu_arrays_to_the_cuda_versions",
     "test_reference_kernels_run_on_gpu_arrays",
     "test_maml_reads_the_device_once_a_meta_batch_at_its_end",
     "test_mann_reads_the_device_once_a_step_whatever_its_sequence",
     "test_protonet_and_a_clipped_step_read_the_device_no_more_than_they_report",
     "test_a_stacked_meta_batch_makes_as_many_device_calls_whatever_its_size",
     "test_a_replayed_regression_step_reads_once_and_trains_the_same_bits"]
    + [f"test_conv_across_block_boundaries[{n}]" for n in (31, 32, 33, 97)]
    + [f"test_every_learner_on_a_simulated_gpu_matches_the_cpu[{k}]" for k in LEARNERS]
    + [f"test_every_primitive_on_a_simulated_gpu_matches_the_cpu[{r}]" for r in ROWS])


@pytest.mark.skipif(SIMULATED, reason="this is the parent: it runs the simulator child")
def test_cuda_kernels_under_the_simulator(tmp_path):
    import xml.etree.ElementTree as ET

    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    report = tmp_path / "child.xml"
    child = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                            "--no-header", "-o", "addopts=", f"--junitxml={report}",
                            __file__, COUNTS], env=env, capture_output=True, text=True,
                           timeout=900)
    print(child.stdout[-3000:], child.stderr[-2000:])
    assert child.returncode == 0, child.stdout[-6000:] + child.stderr[-3000:]
    assert len(EXPECTED) == 32 + len(ROWS) == 84
    # every collected test, with its outcome: nothing may be skipped (but the parent),
    # deselected, failed or errored, and exactly the expected tests must have passed
    outcomes = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        kinds = [e.tag for e in case if e.tag in ("failure", "error", "skipped")]
        outcomes[case.get("name")] = kinds[0] if kinds else "passed"
    passed = sorted(name for name, kind in outcomes.items() if kind == "passed")
    others = {name: kind for name, kind in outcomes.items() if kind != "passed"}
    assert passed == EXPECTED, (passed, others)
    assert others == {"test_cuda_kernels_under_the_simulator": "skipped"}, others
    summary = child.stdout.strip().splitlines()[-1]
    assert re.match(rf"{len(EXPECTED)} passed, 1 skipped( in |, \d+ warnings? in )",
                    summary), summary


if SIMULATED:
    from hypothesis import given, settings, strategies as st

    from minimeta.kernels import _cuda, attention_cuda, attention_ref, causal_cuda, causal_ref
    from minimeta.kernels import conv_cuda, conv_ref, norm_cuda, norm_ref, optim_cuda, optim_ref
    from minimeta.kernels import pool_cuda, pool_ref
    from test_functional import conv_case
    from test_kernel_references import check_bad_windows, check_max_pool

    _cuda.THREADS = norm_cuda.BLOCK = 32
    SIM = settings(max_examples=12, deadline=None, derandomize=True)

    def test_the_simulator_is_on():
        from numba import config

        assert config.ENABLE_CUDASIM


    def _close(a, b, dtype):
        tol = 1e-4 if dtype == np.float32 else 1e-10
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)

    @SIM
    @given(case=conv_case(), dtype=st.sampled_from([np.float32, np.float64]),
           tasks=st.sampled_from([0, 3]))
    def test_conv_family_matches_reference(case, dtype, tasks):
        """The engine's conv property cases: strides, padding, C/F-ordered and strided views;
        and stacks of 3 tasks (one batched GEMM), each task its own input and filter."""
        x, w, _, stride, padding = case
        x, w = x.astype(dtype, copy=False), w.astype(dtype, copy=False)
        if tasks:
            x = np.stack([x * (t + 1) - t for t in range(tasks)])
            w = np.stack([w[..., ::-1] * (1 - t) + t for t in range(tasks)])
        y = conv_cuda.conv2d(x, w, stride, padding)
        _close(y, conv_ref.conv2d(x, w, stride, padding), x.dtype)
        g = np.random.default_rng(1).standard_normal(y.shape).astype(x.dtype)
        _close(conv_cuda.conv2d_input_grad(g, w, x.shape, stride, padding),
               conv_ref.conv2d_input_grad(g, w, x.shape, stride, padding), x.dtype)
        _close(conv_cuda.conv2d_weight_grad(x, g, w.shape, stride, padding),
               conv_ref.conv2d_weight_grad(x, g, w.shape, stride, padding), x.dtype)

    @pytest.mark.parametrize("outputs", [31, 32, 33, 97])
    def test_conv_across_block_boundaries(outputs):
        """N·O·Ho·Wo outputs = ``outputs`` (1 image, 1 channel, a 1×outputs plane)."""
        rng = np.random.default_rng(outputs)
        x, w = rng.standard_normal((1, 2, 1, outputs + 2)), rng.standard_normal((1, 2, 1, 3))
        _close(conv_cuda.conv2d(x, w), conv_ref.conv2d(x, w), x.dtype)
        g = rng.standard_normal((1, 1, 1, outputs))
        _close(conv_cuda.conv2d_input_grad(g, w, x.shape), conv_ref.conv2d_input_grad(
            g, w, x.shape), x.dtype)

    @SIM
    @given(n=st.integers(1, 3), c=st.integers(1, 3), h=st.integers(2, 9), w=st.integers(2, 9),
           k=st.integers(1, 3), stride=st.integers(1, 3), seed=st.integers(0, 99),
           ties=st.booleans())
    def test_max_pool_matches_reference(n, c, h, w, k, stride, seed, ties):
        k = min(k, h, w)
        rng = np.random.default_rng(seed)
        x = rng.integers(0, 3, (n, c, h, w)).astype(float) if ties else \
            rng.standard_normal((n, c, h, w))
        y, idx = pool_cuda.max_pool2d(np.asfortranarray(x), k, stride)  # any layout
        y_ref, idx_ref = pool_ref.max_pool2d(x, k, stride)
        check_max_pool(x, k, stride, y, idx)   # argmax inside each window, first on ties
        np.testing.assert_array_equal(y, y_ref)
        np.testing.assert_array_equal(idx, idx_ref)           # first maximum on ties
        g = rng.standard_normal(y.shape)
        np.testing.assert_allclose(pool_cuda.max_pool2d_backward(g, idx, x.shape),
                                   pool_ref.max_pool2d_backward(g, idx_ref, x.shape),
                                   rtol=1e-12, atol=1e-12)    # overlapping windows add up

    def test_the_cuda_kernels_refuse_windows_that_do_not_fit():
        """As the references do, word for word (``test_kernel_references.bad_window_calls``),
        before any launch (a window past the padded input had launched no thread)."""
        check_bad_windows(conv_cuda, pool_cuda)

    @SIM
    @given(b=st.integers(1, 3), q=st.integers(1, 34), s=st.integers(1, 20), d=st.integers(1, 3),
           n=st.integers(1, 4), seed=st.integers(0, 99))
    def test_cosine_attention_matches_reference(b, q, s, d, n, seed):
        rng = np.random.default_rng(seed)
        qs, ss = rng.standard_normal((b, q, d)), rng.standard_normal((b, s, d))
        ys = np.eye(n)[rng.integers(0, n, (b, s))]
        np.testing.assert_allclose(attention_cuda.cosine_attention(qs, ss, ys),
                                   attention_ref.cosine_attention(qs, ss, ys), rtol=1e-10,
                                   atol=1e-12)
        g = rng.standard_normal((b, q, n))
        np.testing.assert_allclose(attention_cuda.cosine_attention_backward(qs, ss, ys, g),
                                   attention_ref.cosine_attention_backward(qs, ss, ys, g),
                                   rtol=1e-9, atol=1e-11)
        # float32 embeddings with float64 labels, integer queries: the reference's dtype, its
        # promotion (float64), where the CUDA kernels had given float32, or truncated integers
        for args in ((qs.astype(np.float32), ss.astype(np.float32), ys),
                     (np.round(qs * 3).astype(np.int64), ss, ys)):
            for kernel, extra in (("cosine_attention", ()), ("cosine_attention_backward", (g,))):
                got = getattr(attention_cuda, kernel)(*args, *extra)
                want = getattr(attention_ref, kernel)(*args, *extra)
                assert got.dtype == want.dtype == np.float64, (kernel, got.dtype)
                np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)

    @SIM
    @given(n=st.integers(1, 2), c=st.integers(1, 3), o=st.integers(1, 3), t=st.integers(1, 40),
           k=st.integers(1, 3), d=st.integers(1, 9), seed=st.integers(0, 99),
           dtype=st.sampled_from([np.float32, np.float64]))
    def test_causal_conv1d_matches_reference(n, c, o, t, k, d, seed, dtype):
        """SNAIL's causal family; lengths up to 40 cross the 32-thread blocks."""
        rng = np.random.default_rng(seed)
        x = rng.standard_normal((n, c, t)).astype(dtype)
        w = rng.standard_normal((o, c, k)).astype(dtype)
        g = rng.standard_normal((n, o, t)).astype(dtype)
        _close(causal_cuda.causal_conv1d(x[:, :, ::-1], w, d),
               causal_ref.causal_conv1d(x[:, :, ::-1], w, d), dtype)
        _close(causal_cuda.causal_conv1d_input_grad(g, w, d),
               causal_ref.causal_conv1d_input_grad(g, w, d), dtype)
        _close(causal_cuda.causal_conv1d_weight_grad(x, g, w.shape, d),
               causal_ref.causal_conv1d_weight_grad(x, g, w.shape, d), dtype)

    # the simulator runs each GPU thread in a thread of its own, outside np.errstate
    @pytest.mark.filterwarnings("ignore::RuntimeWarning")
    @SIM
    @given(shape=st.sampled_from([(5, 3), (2, 3, 4, 5), (3, 1, 7, 6), (2, 3, 2, 5, 4)]),
           dtype=st.sampled_from([np.float32, np.float64]), offset=st.sampled_from([0.0, 1e4]),
           special=st.sampled_from([None, np.inf, -np.inf, np.nan]),
           where=st.sampled_from("xwgh"), seed=st.integers(0, 99))
    def test_batch_norm_matches_reference(shape, dtype, offset, special, where, seed):
        """Single batch norms, (N, C) and (N, C, H, W), and a stack, (T, N, C, H, W) with w of
        (T, C), channels of fewer and more values than a block's 32 threads; far from zero
        mean; and an inf or a NaN in x, w, g or h, whose infinities and NaNs land where the
        reference's do (the kernels take its formulas element by element). On the stand-in
        CuPy, whose ``empty`` is NaN: an output entry left unwritten shows."""
        import fake_cupy

        cp, rng = fake_cupy, np.random.default_rng(seed)
        with pytest.MonkeyPatch.context() as patch:
            fake_cupy.install(patch)
            _batch_norm_matches(shape, dtype, offset, special, where, rng, cp)

    def _batch_norm_matches(shape, dtype, offset, special, where, rng, cp):
        stacked = len(shape) == 5
        c = shape[2] if stacked else shape[1]
        wshape = (shape[0], c) if stacked else (c,)
        x = (rng.standard_normal(shape) * 2 + offset).astype(dtype)
        w, b = (rng.standard_normal(wshape).astype(dtype) for _ in "wb")
        g = rng.standard_normal(shape).astype(dtype)
        h = rng.standard_normal(x.size + 2 * w.size).astype(dtype)
        if special is not None:
            a = {"x": x, "w": w, "g": g, "h": h}[where]
            a.reshape(-1)[rng.integers(a.size)] = special
        on = [cp.asarray(a) for a in (x, w, b, g, h)]
        with np.errstate(all="ignore"):
            for got, want in [*zip(norm_cuda.batch_norm(*on[:3]), norm_ref.batch_norm(x, w, b)),
                              (norm_cuda.batch_norm_backward(*on[:4]),
                               norm_ref.batch_norm_backward(x, w, b, g)),
                              (norm_cuda.batch_norm_double_backward(*on),
                               norm_ref.batch_norm_double_backward(x, w, b, g, h))]:
                got = got.get()
                assert got.dtype == want.dtype and got.shape == want.shape
                tol = 2e-4 if dtype == np.float32 else 1e-9
                finite = want[np.isfinite(want)]
                scale = max(1.0, np.abs(finite).max()) if finite.size else 1.0
                np.testing.assert_allclose(got, want, rtol=tol, atol=tol * scale)

    @pytest.mark.filterwarnings("ignore::RuntimeWarning")       # (the simulator's threads)
    @SIM
    @given(shape=st.sampled_from([(), (5,), (3, 17), (2, 3, 3, 3)]),
           dtype=st.sampled_from([np.float32, np.float64]), decay=st.sampled_from([0.0, 0.1]),
           step=st.integers(1, 3), special=st.sampled_from([None, np.inf, np.nan]),
           seed=st.integers(0, 99))
    def test_adam_matches_reference(shape, dtype, decay, step, special, seed):
        """One thread per element across blocks (0-d to 54 values); weight decay on and off
        (off, an infinite p must not reach the update: 0·inf is NaN); an inf or NaN in g."""
        rng = np.random.default_rng(seed)
        p, g, m = (rng.standard_normal(shape).astype(dtype) for _ in "pgm")
        v = np.abs(rng.standard_normal(shape)).astype(dtype)
        if special is not None:
            g.reshape(-1)[0], p.reshape(-1)[-1] = special, np.inf
        hyper = (1e-2, 0.9, 0.999, 1e-8, 1 - 0.9 ** step, 1 - 0.999 ** step, decay)
        with np.errstate(all="ignore"):
            for got, want in zip(optim_cuda.adam(p, g, m, v, *hyper),
                                 optim_ref.adam(p, g, m, v, *hyper)):
                assert got.dtype == want.dtype == dtype and got.shape == want.shape
                _close(got, want, dtype)

    def test_kernel_table_sends_gpu_arrays_to_the_cuda_versions():
        from minimeta import kernels

        class OnGPU(np.ndarray):
            """A NumPy array that says it lives on the GPU (the table only asks that)."""
            __cuda_array_interface__ = {}

        x = np.zeros((1, 1, 2, 2)).view(OnGPU)
        assert kernels.lookup("conv2d", x) is conv_cuda.conv2d
        assert kernels.lookup("cosine_attention", x) is attention_cuda.cosine_attention
        assert kernels.lookup("causal_conv1d", x) is causal_cuda.causal_conv1d
        assert kernels.lookup("batch_norm", x) is norm_cuda.batch_norm
        with kernels.use_reference():       # batch norm's reference runs on CuPy's arrays
            assert kernels.lookup("batch_norm", x) is kernels.TABLE["batch_norm"].reference
            assert kernels.lookup("conv2d", x) is not conv_ref.conv2d       # on host copies
        assert kernels.lookup("conv2d", np.zeros(1)) is not conv_cuda.conv2d

    # ----- the whole stack on a simulated GPU ---------------------------------------------------
    def mm_tensor(array, device):
        import minimeta as mm

        return mm.tensor(array, requires_grad=True, device=device)

    def _small_models(kind):
        """Models small enough for the simulator (4×4 images), in float64, seeded."""
        from minimeta import nn
        from minimeta.learners import ANIL, MAML, MatchingNet, MetaSGD, ProtoNet, RelationNet
        from minimeta.learners import CNP, MANNLearner, Reptile, SnailLearner, StackedTasks

        def embed(flat=True):
            layers = [nn.Conv2d(1, 2, 3, padding=1, dtype=np.float64, seed=1),
                      nn.BatchNorm2d(2, dtype=np.float64), nn.ReLU(), nn.MaxPool2d(2)]
            return nn.Sequential(*(layers + [nn.Flatten()] if flat else layers))

        def classifier():
            return nn.Sequential(embed(), nn.Linear(8, 2, dtype=np.float64, seed=2))

        if kind == "relation":
            relation = nn.Sequential(nn.Conv2d(4, 2, 3, padding=1, dtype=np.float64, seed=3),
                                     nn.BatchNorm2d(2, dtype=np.float64), nn.ReLU(),
                                     nn.MaxPool2d(2), nn.Flatten(),
                                     nn.Linear(2, 1, dtype=np.float64, seed=4))
            return RelationNet(embed(flat=False), relation)
        makers = {
            "maml": lambda: MAML(classifier(), 0.3, 2),
            "fomaml": lambda: MAML(classifier(), 0.3, 1, first_order=True),
            "metasgd": lambda: MetaSGD(classifier(), 0.3, 1),
            "anil": lambda: ANIL(classifier(), 0.3, 1),
            "reptile": lambda: Reptile(classifier(), 0.01, 2, 1.0, inner_optimizer="adam"),
            "protonet": lambda: ProtoNet(embed()),
            "matching": lambda: MatchingNet(embed(), fce=True, dim=8, steps=1),
            "snail": lambda: SnailLearner(2, 1, embedding=embed(), features=8, dtype=np.float64,
                                          sizes=((4, 3), 3, (4, 2))),
            "mann": lambda: MANNLearner(2, 4, hidden=4, rows=4, width=3, heads=1,
                                        dtype=np.float64),
            "cnp": lambda: CNP(hidden=4, layers=2, dtype=np.float64),
            # a meta-batch as one stack: batched convolutions, per-task batch norms
            "maml_stacked": lambda: StackedTasks(MAML(classifier(), 0.3, 2)),
            "anil_stacked": lambda: StackedTasks(ANIL(classifier(), 0.3, 2)),
        }
        return makers[kind]()

    @pytest.mark.parametrize("kind", LEARNERS)
    def test_every_learner_on_a_simulated_gpu_matches_the_cpu(kind, monkeypatch, tmp_path):
        """CuPy stood in by ``fake_cupy`` and the CUDA kernels run by the simulator: every
        array a learner makes must land on the parameters' device (else a device-mixing
        error), and losses, gradients and updates must equal the CPU run's."""
        import fake_cupy

        from minimeta import io, optim
        from minimeta.data import EpisodeSampler, SinusoidTasks

        fake_cupy.install(monkeypatch)
        classes = np.random.default_rng(0).random((4, 3, 4, 4))
        tasks = EpisodeSampler(classes, 2, 1, 2, seed=0).batch(3 if "stacked" in kind else 1)
        if kind == "cnp":       # it regresses functions: sinusoid tasks
            tasks = SinusoidTasks(seed=0).sample(2, 3, 3)
        results = {}
        for device in ("cpu", "cuda"):
            learner = _small_models(kind)
            model = learner.net if hasattr(learner, "net") else learner.model
            model.to(device)
            if kind == "metasgd":   # its rates were made with the model, on the CPU
                learner.rates = {k: mm_tensor(v.numpy(), device) for k, v in
                                 learner.rates.items()}
            assert model.device == device
            opt = optim.Adam(learner.meta_parameters(), lr=0.01) if kind != "reptile" else None
            metrics = learner.outer_step(tasks)
            grads = [p.grad.numpy() for p in learner.meta_parameters()] if opt else []
            if opt:
                opt.step()
                io.save(str(tmp_path / f"{device}.npz"), {"optim": opt.state_dict()})
            after = [p.numpy() for p in learner.params.values()]
            results[device] = (metrics["loss"], grads, after, learner.evaluate(tasks[0])[0])
        (l_cpu, g_cpu, p_cpu, e_cpu), (l_gpu, g_gpu, p_gpu, e_gpu) = results.values()
        assert np.isclose(l_cpu, l_gpu, rtol=1e-10) and np.isclose(e_cpu, e_gpu, rtol=1e-9)
        for a, b in zip(g_cpu + p_cpu, g_gpu + p_gpu):
            np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-8)  # conv biases before
            # batch norm have gradients that are 0 up to rounding (~1e-9), hence the atol

    @pytest.mark.parametrize("name", ROWS)
    def test_every_primitive_on_a_simulated_gpu_matches_the_cpu(name, monkeypatch):
        """Each row of the primitive table on the strict stand-in CuPy (and the simulator for
        the kernels): forward, VJP and the VJP's VJP equal the CPU's on drawn inputs; any host
        array met on the way (a constant made with NumPy, an index left on the host) fails."""
        import fake_cupy

        fake_cupy.install(monkeypatch)
        selfcheck.check_on_device(next(r for r in selfcheck.ROWS if r.name == name), "cuda", 6)

    def test_reference_kernels_run_on_gpu_arrays(monkeypatch):
        """``use_reference()`` (``MINIMETA_KERNELS=reference``) on GPU arrays: the NumPy
        references make host arrays, so the table runs them on host copies; every kernel row
        of the primitive table still matches the CPU. (Found by the strict stand-in: running
        them on the device arrays directly mixed host and device.)"""
        import fake_cupy
        from minimeta import kernels

        fake_cupy.install(monkeypatch)
        rows = [r for r in selfcheck.ROWS if r.name.startswith(
            ("conv2d", "causal", "max_pool", "batch_norm", "cosine"))]
        assert len(rows) == 15      # the pooling gather too (no kernel: a take)

        with kernels.use_reference():
            for row in rows:
                selfcheck.check_on_device(row, "cuda", 2)
