"""The stand-in CuPy (``tests/fake_cupy.py``) refuses what CuPy refuses, so the CPU suite
catches a host array on the GPU path before a GPU does; and the engine passes through it.
(On a GPU, ``tests/test_gpu.py`` checks the stand-in's name lists against the real CuPy.)"""
import os
import sys

import numpy as np
import pytest

import cupy_api
import fake_cupy
from minimeta import selfcheck
from minimeta.data import omniglot

HOST = "Implicit conversion to a NumPy array is not allowed"
UNSUPPORTED = r"Unsupported type <class 'numpy.ndarray'>"


@pytest.fixture
def cp(monkeypatch):
    fake_cupy.install(monkeypatch)
    return sys.modules["cupy"]


def test_device_to_host_only_explicitly(cp):
    x = cp.asarray(np.arange(6.0).reshape(2, 3))
    for implicit in (np.asarray, np.array, lambda a: np.ascontiguousarray(a),
                     lambda a: np.zeros(3) + list(a)):
        with pytest.raises(TypeError, match=HOST):
            implicit(x)
    np.testing.assert_array_equal(x.get(), np.arange(6.0).reshape(2, 3))
    np.testing.assert_array_equal(cp.asnumpy(x), x.get())
    total = x.sum()
    assert type(total) is cp.ndarray and total.ndim == 0      # 0-d, not a NumPy scalar
    assert float(total) == 15.0 and x[1, 2].item() == 5.0 and bool(x[0, 1])


def test_host_to_device_only_explicitly(cp):
    x, host = cp.asarray(np.ones(3)), np.ones(3)
    for implicit in (lambda: x + host, lambda: host + x, lambda: host * x, lambda: np.add(x, host),
                     lambda: cp.add(x, host), lambda: np.concatenate([x, host]),
                     lambda: cp.concatenate([x, host]), lambda: np.where(x > 0, x, host),
                     lambda: cp.zeros_like(host),
                     lambda: np.add(x, 1.0, out=(host,)), lambda: np.maximum(x, np.zeros(()))):
        with pytest.raises(TypeError, match=UNSUPPORTED):
            implicit()
    # x[basic] = v is CuPy's fill, which takes a number or a 0-d array; an advanced index, and
    # add.at, copy a host value over (CuPy's _scatter_op; the stand-in had refused them)
    with pytest.raises(ValueError, match="^non-scalar numpy.ndarray cannot be used for fill"):
        x[:] = host
    x[1:] = np.array(4.0)
    x[np.array([0])] = np.array([2.0])
    np.add.at(x, [1, 1], np.ones(2))
    np.testing.assert_array_equal(x.get(), [2.0, 6.0, 4.0])
    with pytest.raises(TypeError, match="^cupy.add.at only supports int32"):
        np.add.at(cp.asarray(np.zeros(2, np.int64)), [0], 1)
    x[:] = 1.0
    # numbers, NumPy scalars and host index arrays are fine, as on CuPy
    y = (x * 2.0 + np.float64(1.0)) ** 2
    np.testing.assert_array_equal(y.get(), np.full(3, 9.0))
    assert type(np.exp(x)) is cp.ndarray and type(x[np.array([0, 2])]) is cp.ndarray
    x[np.array([True, False, True])] = 5.0
    np.add.at(x, np.array([1, 1]), cp.asarray(np.ones(2)))
    np.testing.assert_array_equal(x.get(), [5.0, 3.0, 5.0])
    z = x
    z += x                                   # in place keeps the very array
    assert z is x and x.get()[1] == 6.0
    # CuPy's empty memory is not cleared: the stand-in fills it with NaN (and ints with junk),
    # so a kernel that reads an output before writing it fails here (SNAIL's causal kernels
    # seeded their sums with ``y[0, 0, 0] * 0``: NaN on reused memory)
    assert np.isnan(cp.empty((2, 2)).get()).all() and np.isnan(np.empty_like(x).get()).all()
    assert (cp.empty(3, dtype=np.int64).get() != 0).all()


def test_out_of_range_indices_wrap_on_cupy_and_are_refused_by_the_engine(cp):
    """CuPy wraps an out-of-range entry of an integer index array around (NumPy raises); the
    engine checks host index arrays against the shape before moving them to the GPU, so a bad
    index is an error on both devices, never a silently wrong element."""
    import minimeta as mm

    x = cp.asarray(np.arange(6.0).reshape(2, 3))
    assert x[np.array([0, 2]), np.array([3, 4])].get().tolist() == [0.0, 1.0]   # wrapped
    assert x[:, [-1, 5]].get().tolist() == [[2.0, 2.0], [5.0, 5.0]]
    y = cp.zeros(3)
    np.add.at(y, np.array([4, 4]), 1.0)
    assert y.get().tolist() == [0.0, 2.0, 0.0]
    assert cp.take(x, cp.asarray(np.array([[7, -1]]))).get().tolist() == [[1.0, 5.0]]  # take too
    for device in ("cpu", "cuda"):
        t = mm.tensor(np.arange(6.0).reshape(2, 3), requires_grad=True, device=device)
        with pytest.raises(IndexError, match="out of bounds for axis 1 with size 3"):
            t[:, np.array([0, 3])]
        with pytest.raises(IndexError, match="index -3 is out of bounds for axis 0"):
            t[[1, -3]]
        assert t[..., [0, -1]].sum().item() == 0 + 2 + 3 + 5
        with pytest.raises(IndexError, match="out of bounds for axis 0 with size 4"):
            mm.scatter_add(mm.tensor(np.ones(2), device=device), np.array([1, 4]), (4,))


def test_numpy_only_functions_and_methods_are_refused(cp):
    x = cp.asarray(np.arange(4.0))
    assert "insert" not in cupy_api.TOP and "concatenate" in cupy_api.TOP
    with pytest.raises(TypeError, match="no implementation found for 'numpy.insert'"):
        np.insert(x, 1, 0.0)
    with pytest.raises(TypeError, match="no implementation found for 'numpy.linalg.multi_dot'"):
        np.linalg.multi_dot([x.reshape(2, 2), x.reshape(2, 2)])
    assert float(np.linalg.norm(x)) == pytest.approx(np.sqrt(14.0))
    with pytest.raises(AttributeError, match="module 'cupy' has no attribute 'insert'"):
        cp.insert
    with pytest.raises(AttributeError, match="'cupy.ndarray' object has no attribute 'resize'"):
        x.resize(2, 2)
    with pytest.raises(NotImplementedError, match="cupy_multiply.at"):
        np.multiply.at(x, [0], 2.0)
    with pytest.raises(NotImplementedError, match="cupy_maximum.reduce"):
        np.maximum.reduce(x)
    assert float(np.add.reduce(x)) == 6.0


def test_keywords_cupy_lacks_are_refused(cp):
    """NumPy's functions take keywords CuPy's do not (``where=``, ``stable=``): the stand-in,
    which runs NumPy's, had taken them all (found by a review against CuPy 14.2, 2026-12-03).
    The keywords are read from CuPy's Python signatures (``cupy_api.KEYWORDS``)."""
    x = cp.asarray(np.arange(6.0).reshape(2, 3))
    assert len(cupy_api.KEYWORDS) > 250 and "where" not in cupy_api.KEYWORDS["sum"]
    with pytest.raises(TypeError, match="sum\\(\\) got an unexpected keyword argument 'where'"):
        np.sum(x, where=np.ones((2, 3), bool))
    with pytest.raises(TypeError, match="argsort\\(\\) got an unexpected keyword argument"):
        cp.argsort(x, stable=True)
    with pytest.raises(TypeError, match="norm\\(\\) got an unexpected keyword argument 'p'"):
        cp.linalg.norm(x, p=2)
    with pytest.raises(ValueError, match="kind can only be None or 'stable'"):
        np.argsort(x, axis=1, kind="quicksort")          # a value CuPy refuses, too
    assert np.argsort(x, axis=1, kind="stable").tolist() == [[0, 1, 2]] * 2
    assert float(np.sum(x, axis=1, keepdims=True)[1, 0]) == 12.0   # what CuPy takes passes
    assert float(np.linalg.norm(x, axis=1, keepdims=True)[0, 0]) == pytest.approx(np.sqrt(5))


def test_ufunc_and_method_keywords_cupy_lacks_are_refused(cp):
    """A CuPy ufunc takes out=, dtype= and casting= only (``Wrong arguments`` to NumPy's
    where=, order=, subok=), and its ndarray and ufunc methods the keywords their Cython
    signatures name (no ``x.max(initial=)``, ``x.sum(where=)``, ``np.add.reduce(initial=)``):
    the stand-in, which runs NumPy's, had taken them all, these signatures being unreadable by
    ``inspect`` (found by an audit against CuPy 14.2, 2026-12-03; they are read from CuPy's
    docstrings, the ufunc's call by probing it)."""
    x = cp.asarray(np.arange(6.0).reshape(2, 3))
    mask = x > 1.0
    assert cupy_api.KEYWORDS["ufunc.__call__"] == {"out", "dtype", "casting"}
    for refused, message in [(lambda: np.add(x, 1.0, where=mask), "^Wrong arguments"),
                             (lambda: cp.exp(x, order="C"), "^Wrong arguments"),
                             (lambda: np.add.reduce(x, initial=0.0), r"^reduce\(\) got an "),
                             (lambda: x.sum(where=mask), r"^sum\(\) got an unexpected keyword"),
                             (lambda: x.max(initial=0.0), r"^max\(\) got an unexpected"),
                             (lambda: x.mean(axis=0, where=mask), r"^mean\(\) got an "),
                             (lambda: x.argsort(stable=True), r"^argsort\(\) got an ")]:
        with pytest.raises(TypeError, match=message):
            refused()
    # what CuPy takes passes
    assert float(np.add(x, 1.0, out=cp.empty_like(x), dtype=np.float64)[1, 2]) == 6.0
    assert float(np.add.reduce(x, axis=1, keepdims=True)[1, 0]) == 12.0
    assert float(x.max(axis=0, keepdims=True)[0, 2]) == 5.0 and float(x.sum(axis=(0, 1))) == 15
    assert x.astype(np.float32, copy=False).dtype == np.float32
    assert x.reshape((3, 2), order="F").shape == (3, 2) and x.argsort(axis=1, kind="stable").ndim
    # CuPy's flags are three: no writeable, nor NumPy's short keys
    assert x.flags.c_contiguous and x.flags["OWNDATA"] and not x.T.flags.c_contiguous
    with pytest.raises(AttributeError):
        x.flags.writeable
    with pytest.raises(KeyError, match="WRITEABLE is not defined for cupy.ndarray.flags"):
        x.flags["WRITEABLE"]


def test_a_host_array_handed_to_a_kernel_is_refused(cp):
    """numba copies a host array handed to a kernel onto the GPU and back at each launch,
    without a word: the stand-in's launch refuses one, as CuPy's functions do (it had handed
    it to the simulator as it was)."""
    from minimeta.kernels import _cuda

    launched = []

    class Kernel:       # what launch reads of a numba kernel: kernel[blocks, threads, stream]
        def __getitem__(self, config):
            return lambda *args: launched.append(args)

    with pytest.raises(TypeError, match=UNSUPPORTED):
        _cuda.launch(Kernel(), 4, cp.zeros(4), np.zeros(4), 2)
    _cuda.launch(Kernel(), 4, cp.zeros(4), np.float32(2.0), 2)
    assert len(launched) == 1 and type(launched[0][0]) is np.ndarray    # the array inside


def test_batch_norm_s_composite_updates_running_buffers_on_the_gpu(cp):
    """``batch_norm(fused=False)`` took its batch statistics from ``x.numpy()``, host copies,
    and added them into the running buffers, CuPy arrays on the GPU: CuPy refuses the host
    operand (found by an audit against CuPy 14.2, 2026-12-03). The fused path's are the
    same statistics (from the reference, which runs on CuPy arrays: no GPU here for the CUDA
    kernel; ``tests/test_cuda_kernels.py`` runs that one in the simulator)."""
    import minimeta as mm
    from minimeta import functional as F, kernels

    x = np.random.default_rng(0).standard_normal((4, 3, 2, 2)).astype(np.float32) + 1.0
    buffers = {}
    for fused in (True, False):
        mean, var = cp.asarray(np.zeros(3, np.float32)), cp.asarray(np.ones(3, np.float32))
        with kernels.use_reference():
            F.batch_norm(mm.tensor(x, device="cuda"), running_mean=mean, running_var=var,
                         fused=fused)
        buffers[fused] = np.concatenate([mean.get(), var.get()])
    np.testing.assert_allclose(buffers[False], buffers[True], rtol=1e-6)
    np.testing.assert_allclose(buffers[False][:3], 0.1 * x.mean(axis=(0, 2, 3)), rtol=1e-6)


def test_a_host_array_inside_a_primitive_is_caught(cp, monkeypatch):
    """Mutations: a primitive that makes its output with NumPy, or reads its device input
    through ``np.asarray``, passes on the CPU and is refused on the stand-in."""
    from minimeta.engine.primitives import elementwise, shape

    row = next(r for r in selfcheck.ROWS if r.name == "scatter_add")
    g, index, shape_ = np.arange(3.0), np.array([0, 2, 2]), (4,)
    assert selfcheck.device_parity(row, [g], (index, shape_), "cuda") < 1e-12

    def host_made(self, g):
        out = np.zeros(self.shape, dtype=g.dtype)     # the mutation: not array_module(g)
        np.add.at(out, self.index, g)
        return out

    monkeypatch.setattr(shape.ScatterAdd, "forward", host_made)
    assert selfcheck.device_parity(row, [g], (index, shape_), "cpu") == 0.0
    with pytest.raises(TypeError, match=UNSUPPORTED):
        selfcheck.device_parity(row, [g], (index, shape_), "cuda")

    exp = next(r for r in selfcheck.ROWS if r.name == "exp")
    monkeypatch.setattr(elementwise.Exp, "forward", lambda self, a: np.exp(np.asarray(a)))
    with pytest.raises(TypeError, match=HOST):
        selfcheck.device_parity(exp, [np.ones(2)], (), "cuda")


@pytest.mark.skipif(not os.path.exists(os.path.join(omniglot.data_dir(),
                                                    omniglot.FILES["background"][0])),
                    reason="Omniglot not found in MINIMETA_DATA_DIR")
def test_gpu_check_runs_on_a_simulated_gpu(tmp_path):
    """``benchmarks/gpu_check.py --simulate``: the script that gets the few minutes on a real
    GPU runs end to end here (the launch timing; one timing case; a 2-iteration training run on
    Omniglot and its evaluation, in child processes that stand CuPy in too), and its report
    holds the figures."""
    import json
    import subprocess

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run([sys.executable, os.path.join(root, "benchmarks", "gpu_check.py"),
                           "--simulate", "--out", str(tmp_path), "--phases", "env", "launches",
                           "timings", "train", "--only", "conv4"], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.load(open(tmp_path / "gpu_check.json"))
    assert report["simulated"] and report["env"]["gpu"] == "simulated GPU"
    assert report["launches"]["kernel_ran"]          # each of its launches added one
    assert report["launches"]["minimeta_launch"]["us_per_launch"] > 0
    assert set(report["timings"]) == {"conv4"}
    row = report["timings"]["conv4"]
    assert row["minimeta"]["median_s"] > 0 and "cupy_tf32" in report["env"]
    if "torch" in row:   # PyTorch at its default and autotuned; the ratio is to the faster
        best = min(row["torch"]["median_s"], row["torch_tuned"]["median_s"])
        assert row["ratio"] == pytest.approx(row["minimeta"]["median_s"] / best)
    assert report["train"]["iterations"] == 2 and 0 <= report["train"]["accuracy"] <= 1


@pytest.mark.skipif(not os.path.exists(os.path.join(omniglot.data_dir(),
                                                    omniglot.FILES["background"][0])),
                    reason="Omniglot not found in MINIMETA_DATA_DIR")
def test_a_gpu_run_resumes_where_it_stopped(tmp_path):
    """``minimeta train --device cuda`` on the stand-in (child processes): 2 iterations, then
    ``--resume`` to 3 continues from the checkpoint (device state saved to the host and put
    back): the metrics of the first run are kept, and the third iteration is the one an
    uninterrupted run takes."""
    import json
    import subprocess

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    cli = [sys.executable, os.path.join(root, "benchmarks", "gpu_check.py"), "--as-simulated",
           "train", "--learner", "maml", "--ways", "3", "--shots", "1", "--queries", "2",
           "--meta-batch", "2", "--device", "cuda", "--validate-every", "0"]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [root, os.path.dirname(os.path.abspath(__file__)), os.environ.get("PYTHONPATH", "")]))
    for out, extra in (("run", ["--iterations", "2"]), ("run", ["--iterations", "3", "--resume"]),
                       ("whole", ["--iterations", "3"])):
        done = subprocess.run(cli + ["--out", str(tmp_path / out)] + extra, capture_output=True,
                              text=True, env=env, timeout=300)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    runs = [[json.loads(line) for line in open(tmp_path / out / "metrics.jsonl")]
            for out in ("run", "whole")]
    assert [r["iteration"] for r in runs[0]] == [1, 2, 3], runs[0]
    assert [r["loss"] for r in runs[0]] == [r["loss"] for r in runs[1]], runs
    from minimeta import io    # the parameters after the third step: the optimizer resumed too

    resumed, whole = (io.load(str(tmp_path / out / "checkpoint.npz"))["model"]
                      for out in ("run", "whole"))
    assert resumed.keys() == whole.keys()
    for key in whole:
        np.testing.assert_array_equal(resumed[key], whole[key], err_msg=key)


def test_a_gpu_tensor_s_numpy_is_a_host_copy_the_caller_may_change(cp):
    """Only host arrays a graph may hold are handed out read-only: a GPU tensor's numpy() is
    a fresh copy (a review found it read-only too)."""
    import minimeta as mm

    t = mm.tensor(np.arange(3.0), device="cuda")
    h = t.numpy()
    h *= 2
    np.testing.assert_array_equal(t.numpy(), [0.0, 1.0, 2.0])


def test_a_training_step_reads_the_gpu_twice_whatever_its_parameters(cp):
    """The training loop's finiteness checks, of the meta-gradient before the optimizer's step
    and of the weights after it, read the GPU once each, not once per parameter (a conv4 MAML
    iteration had waited for the GPU 36 times there); a NaN still stops the step."""
    import types

    import minimeta as mm
    from minimeta import kernels, nn
    from minimeta.experiments import training
    from minimeta.optim import Adam

    model = nn.Sequential(*[nn.Linear(3, 3, dtype=np.float64, seed=i) for i in range(4)])
    params = list(model.to("cuda").parameters())
    learner, opt, run = types.SimpleNamespace(meta_parameters=lambda: params), Adam(params), {}
    for last in (1.0, np.nan):
        for p in params:
            p.grad = mm.tensor(np.ones(p.shape), device="cuda")
        params[-1].grad = mm.tensor(np.full(params[-1].shape, last), device="cuda")
        fake_cupy.TRANSFERS.clear()
        with kernels.use_reference():     # Adam's formulas on CuPy (its kernel: no GPU here)
            problem = training.step(0, {"loss": 1.0}, learner, opt, run)
        assert (problem, dict(fake_cupy.TRANSFERS)) == ((None, {"bool": 2}) if last == 1.0 else
                                                        ("the meta-gradient holds a NaN or an "
                                                         "inf", {"bool": 1})), len(params)


def test_a_step_s_metrics_are_read_from_the_gpu_in_one_transfer(cp):
    """``learners/base.read`` (under ``summary`` and ``metrics``): the GPU values in one
    transfer, in their order among host numbers (a read each had been a wait each)."""
    from minimeta.learners import base

    values = [cp.asarray(np.float32(0.25)), 2.0, cp.asarray(0.5), np.float64(1.5)]
    fake_cupy.TRANSFERS.clear()
    np.testing.assert_array_equal(base.read(values), [0.25, 2.0, 0.5, 1.5])
    assert dict(fake_cupy.TRANSFERS) == {"get": 1}
    assert base.summary(values[::2], [cp.asarray(1.0), cp.asarray(0.0)]) == {
        "loss": 0.375, "accuracy": 0.5}
    assert base.metrics(values[0], None) == (0.25, None)


def test_a_list_of_gpu_arrays_is_saved_as_one_array(cp, tmp_path):
    """``io.save`` stores a list of arrays of one shape as one array; GPU arrays in it (the
    weights of a model on the GPU, say) had been refused as "ragged": NumPy cannot read them."""
    import minimeta as mm
    from minimeta import io

    rows = [cp.asarray(np.arange(3.0)), cp.asarray(np.ones(3))]
    io.save(str(tmp_path / "a.npz"), {"rows": rows, "nested": [rows, rows],
                                      "tensors": [mm.tensor(np.ones(2), device="cuda")]})
    back = io.load(str(tmp_path / "a.npz"))
    np.testing.assert_array_equal(back["rows"], [[0.0, 1.0, 2.0], [1.0, 1.0, 1.0]])
    assert back["nested"].shape == (2, 2, 3) and back["tensors"].tolist() == [[1.0, 1.0]]


def test_a_number_met_on_the_gpu_is_copied_over_once(cp, monkeypatch):
    """Each number an op meets on the GPU becomes a 0-d device array, a copy from the host
    (55 µs of host time on an H200): made once per (number, dtype), not at every op (a MAML
    5-way task loop had made 1 792 of them an iteration). Told apart by dtype (0.1 in float32
    is not 0.1 in float64), by the sign of zero and kept for NaN; the table is bounded."""
    import minimeta as mm
    import importlib

    tensor = importlib.import_module("minimeta.engine.tensor")
    monkeypatch.setattr(tensor, "NUMBERS", {})
    host = np.array([1.0, 3.0, 7.0])
    x32, x64 = mm.tensor(host.astype(np.float32), device="cuda"), mm.tensor(host, device="cuda")
    fake_cupy.UPLOADS.clear()
    for _ in range(3):
        y = (x32 * 0.1 + 1) - 0.1 * x32
    assert sum(fake_cupy.UPLOADS.values()) == 2 and y.dtype == np.float32
    np.testing.assert_array_equal(y.numpy(), (host.astype(np.float32) * np.float32(0.1) + 1)
                                  - np.float32(0.1) * host.astype(np.float32))
    np.testing.assert_array_equal((x64 * 0.1).numpy(), host * 0.1)      # its own 0.1
    assert sum(fake_cupy.UPLOADS.values()) == 3
    signs = [np.signbit((x64 * zero).numpy()).tolist() for zero in (-0.0, 0.0, -0.0)]
    assert signs == [[True] * 3, [False] * 3, [True] * 3]
    for _ in range(2):
        assert np.isnan((x64 + float("nan")).numpy()).all()
    assert sum(fake_cupy.UPLOADS.values()) == 6                       # -0.0, 0.0, NaN
    monkeypatch.setattr(tensor, "NUMBERS_KEPT", 2)
    for k in range(5):
        x64 * (k + 10)
    assert len(tensor.NUMBERS) <= 2


def test_cupy_s_matmul_copies_are_counted_and_the_conv_weight_grad_makes_none(monkeypatch):
    """CuPy's matmul above two dimensions copies an operand that is not C-contiguous (its
    transpose flags go unused; read in CuPy 14's ``_routines_linalg.pyx``): the stand-in
    counts it. The conv family's weight gradient had multiplied g by colsᵀ, so it copied cols,
    its largest array (3.4 GB a stacked MAML 5-way meta-iteration); now cols @ gᵀ, none."""
    fake_cupy.install(monkeypatch, run=False)       # launches counted, not run
    cp = sys.modules["cupy"]
    from minimeta.kernels import conv_cuda

    a, b = cp.asarray(np.ones((2, 3, 4))), cp.asarray(np.ones((2, 4, 5)))
    counts = []
    for left, right in ((a, b), (a, b.transpose(0, 2, 1).transpose(0, 2, 1)),
                        (b.transpose(0, 2, 1), a.transpose(0, 2, 1)), (b[0].T, a[0].T)):
        fake_cupy.DEVICE_CALLS.clear()
        left @ right
        counts.append(fake_cupy.DEVICE_CALLS["copy"])
    assert counts == [0, 0, 2, 0]                     # 2-D (``dot``): F-contiguous is fine
    x, g = cp.asarray(np.ones((3, 4, 2, 6, 6))), cp.asarray(np.ones((3, 4, 5, 6, 6)))
    fake_cupy.DEVICE_CALLS.clear()
    gw = conv_cuda.conv2d_weight_grad(x, g, (3, 5, 2, 3, 3), 1, 1)
    assert gw.shape == (3, 5, 2, 3, 3) and fake_cupy.DEVICE_CALLS["copy"] == 0
