"""The benchmarks' PyTorch workloads compute what they claim (a timing of the wrong computation
would be a false figure): the ProtoNet episode each library times takes the same gradients;
the stacked MAML meta-iteration that the GPU check times against
minimeta's ``StackedTasks`` gives the per-task loop's meta-gradient; the op profiler
(``benchmarks/profile_ops.py``) counts each op once, in its phase, and leaves no wrapper behind;
``machine.py`` times minimeta in a process whose OpenMP runtime is not PyTorch's. (The GPU
check's own logic: ``test_gpu_check.py``.)"""
import collections
import glob
import importlib.util
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "benchmarks"))


@pytest.fixture
def float64(monkeypatch):
    """(torch, workloads) with both libraries computing in float64 (PyTorch's default dtype, the
    images'), put back after the test; the test is skipped without PyTorch."""
    torch = pytest.importorskip("torch")
    import workloads

    monkeypatch.setattr(workloads, "DTYPE", np.float64)
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield torch, workloads
    torch.set_default_dtype(default)


@pytest.mark.parametrize("steps", [1, 2])
def test_torch_stacked_and_threaded_maml_equal_the_loop_over_tasks(steps, float64, monkeypatch):
    """PyTorch's MAML as the benchmarks time it: looped, stacked, its tasks on 2 threads (its
    best eager setting for MAML, found by a review), and in ``torch.func``'s transforms (its
    compiled setting; ``torch.compile`` stood in here: what it compiles, the functions as they
    are). In float64: in float32 the two-step meta-gradients of the three orders of summation
    differed by 0.3% on an AMD EPYC (second order amplifies rounding)."""
    torch, workloads = float64
    monkeypatch.setattr(torch, "compile", lambda fn: fn)
    shape = dict(ways=3, queries=2, n_tasks=3, steps=steps, step=False)
    grads = []
    threaded = lambda torch, **kw: workloads.torch_maml(torch, workers=2, **kw)  # noqa: E731
    spare = lambda torch, **kw: workloads.torch_maml(torch, workers=5, **kw)  # noqa: E731
    last = lambda torch, **kw: workloads.torch_maml(torch, workers=2, channels_last=True,  # noqa
                                                    **kw)
    for make in (workloads.torch_maml, workloads.torch_maml_stacked, threaded, spare, last,
                 workloads.torch_maml_compiled):
        workloads.RNG = np.random.default_rng(4)    # the same tasks for both
        run = make(torch, **shape)
        run()
        assert all(p.grad.dtype == torch.float64 for p in run.params)
        grads.append([p.grad.numpy() for p in run.params])
    scale = max(np.abs(g).max() for g in grads[0])
    assert scale > 0
    for loop, *others in zip(*grads):
        # conv biases before batch norm have gradients that are 0 up to rounding: atol
        for other in others:
            np.testing.assert_allclose(other, loop, rtol=1e-9, atol=1e-12 * scale)


@pytest.mark.parametrize("steps", [1, 2])
def test_the_pytorch_maml_that_the_benchmarks_time_is_minimeta_s_computation(steps):
    # the stacked test above compares PyTorch with PyTorch; this one ties the reference to
    # minimeta: the same θ and tasks give the same meta-gradient (suggested by a review)
    torch = pytest.importorskip("torch")
    import workloads
    from minimeta import nn
    from minimeta.learners import MAML

    workloads.RNG = np.random.default_rng(3)
    tasks = workloads.maml_tasks(2, 3, 1, 2)
    learner = MAML(nn.conv4(3), 0.4, steps)
    learner.outer_step(tasks)
    ours = [p.grad.numpy() for p in learner.meta_parameters()]
    workloads.RNG = np.random.default_rng(3)
    run = workloads.torch_maml(torch, ways=3, queries=2, n_tasks=2, steps=steps, step=False)
    with torch.no_grad():
        for theirs, p in zip(run.params, learner.meta_parameters()):
            theirs.copy_(torch.from_numpy(p.numpy().copy()))
    run()
    scale = max(np.abs(p.grad.numpy()).max() for p in run.params)
    for p, g in zip(run.params, ours):   # float32 both: relative to the largest entry
        np.testing.assert_allclose(g, p.grad.numpy(), rtol=0, atol=1e-4 * scale)


def test_pytorch_conv4_in_each_layout_is_minimeta_s_computation(float64):
    """PyTorch's conv4 as timed at its best (channels_last weights, added after an audit of the
    benchmarks found it 10–20% faster; ProtoNet's network is the same) gives the NCHW run's
    gradients, and minimeta's on the same weights and images. Float64, as above."""
    from minimeta import grad, nn, tensor
    from minimeta.functional import cross_entropy

    torch, workloads = float64
    grads = []
    for layout in ("nchw", "channels_last"):
        workloads.RNG = np.random.default_rng(5)
        run = workloads.torch_workloads(torch, layout=layout)["conv4"]()
        grads.append([g.numpy() for g in run()])
    for layout in ("nchw", "channels_last"):
        workloads.RNG = np.random.default_rng(5)
        params = workloads.torch_conv4_params(torch, channels_last=layout != "nchw")
        x, y = workloads.images(640), workloads.RNG.integers(0, 5, 640)
        loss = torch.nn.functional.cross_entropy(
            workloads.torch_conv4(torch, torch.from_numpy(x), params), torch.from_numpy(y))
        loss.backward()
        grads.append([p.grad.numpy() for p in params])
    model = nn.conv4(5, dtype=np.float64)
    mine = model.parameters()
    for p, theirs in zip(mine, params):
        p.data[...] = theirs.detach().numpy()
    grads.append([g.numpy() for g in grad(cross_entropy(model(tensor(x)), y), mine)])
    scale = max(np.abs(g).max() for g in grads[0])
    assert scale > 0 and len(grads) == 5
    for first, *others in zip(*grads):    # conv biases before batch norm: 0 up to rounding
        for other in others:
            np.testing.assert_allclose(other, first, rtol=1e-8, atol=1e-10 * scale)


def test_pytorch_protonet_episode_is_minimeta_s_computation(float64, monkeypatch):
    """The ProtoNet episode each library times (``mm_protonet``, ``torch_workloads``) takes the
    same gradients from the same weights and images (an audit of the benchmarks, 2026-12-03,
    found it so in float32 by hand; only conv4 had a test). Each run's optimizer step is caught
    to read its gradients: Adam's first step, ≈ lr·sign(g), would hide their size. Float64."""
    import functools

    from minimeta import nn

    torch, workloads = float64

    class Caught:       # each library's Adam, stood in: keeps the parameters and gradients
        def __init__(self, params, lr):
            self.params, self.grads = list(params), None
            caught.append(self)

        def step(self, grads=None):      # minimeta's takes them, PyTorch's reads .grad
            self.grads = [g.numpy() for g in (grads or [p.grad for p in self.params])]

        def zero_grad(self):
            for p in self.params:
                p.grad = None

    caught = []
    monkeypatch.setattr(workloads, "Adam", Caught)
    monkeypatch.setattr(torch.optim, "Adam", Caught)
    monkeypatch.setattr(nn, "conv4", functools.partial(nn.conv4, dtype=np.float64))
    workloads.RNG = np.random.default_rng(7)
    theirs = workloads.torch_workloads(torch)["protonet"]()   # its weights, then images
    workloads.RNG = np.random.default_rng(7)
    weights = workloads.torch_conv4_params(torch, head=0)     # the same draws, so that
    ours = workloads.mm_protonet()                            # the images are the same
    for p, w in zip(caught[1].params, weights):
        p.data[...] = w.detach().numpy()
    theirs()
    theirs()        # twice: without its zero_grad, PyTorch's gradients pile up (a timed add)
    ours()
    expected, mine = caught[0].grads, caught[1].grads
    scale = max(np.abs(g).max() for g in expected)
    assert scale > 0 and len(mine) == len(expected) == 16
    for g, their in zip(mine, expected):        # conv biases before batch norm: 0 up to rounding
        np.testing.assert_allclose(g, their, rtol=1e-7, atol=1e-9 * scale)


def test_the_op_profiler_times_each_op_once_and_puts_every_forward_back():
    import minimeta as mm
    import profile_ops
    from minimeta.selfcheck import primitive_classes

    def forwards():
        return {cls: vars(cls).get("forward") for cls in primitive_classes()}

    before = forwards()
    x = mm.tensor(np.linspace(0.5, 1.5, 4), requires_grad=True)
    with profile_ops.OpTimer() as timer:
        assert forwards() != before                 # wrapped while it runs
        mm.grad((mm.exp(x) * x).sum(), [x])
    assert forwards() == before
    calls = collections.Counter()
    for (name, phase, shape), (n, seconds) in timer.totals.items():
        assert seconds >= 0
        calls[name, phase] += n
    # forward: Exp, Mul, Sum; the VJPs: Sum's broadcast back, Mul's two products, Exp's product
    assert calls["Exp", "forward"] == calls["Mul", "forward"] == calls["Sum", "forward"] == 1
    assert calls["Mul", "backward"] >= 3 and calls["Exp", "backward"] == 0
    assert ("Exp", "forward", (4,)) in timer.totals


def numbas_openmp(log_folder):
    """The library that numba's ``GOMP_parallel`` bound to, from glibc's ``LD_DEBUG=bindings``
    log files in ``log_folder`` (one per process), or None where no such binding was logged."""
    for path in glob.glob(os.path.join(log_folder, "ld.*")):
        with open(path, errors="replace") as f:
            for line in f:
                if "omppool" in line and "`GOMP_parallel'" in line:
                    return line.split(" to ", 1)[1].split()[0]
    return None


@pytest.mark.parametrize("mode", ["own process", "mutant"])
def test_machine_times_minimeta_outside_pytorchs_openmp_runtime(mode, tmp_path, monkeypatch):
    """One process has one OpenMP runtime: imported first, PyTorch loads its ``libgomp`` and
    numba's loops bind to it, with its spinning wait policy (15–25% on conv4 and ProtoNet).
    ``machine.py``'s minimeta process (``Server``) never loads PyTorch, so numba binds to its
    own. The mutant is the old design, PyTorch imported first in the same process (here through
    a ``sitecustomize`` that imports it): numba then binds to PyTorch's runtime."""
    import machine

    if mode == "mutant":
        pytest.importorskip("torch")
        (tmp_path / "sitecustomize.py").write_text("import torch\n")
        monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
            [str(tmp_path)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep)
                               if p]))
    monkeypatch.setenv("LD_DEBUG", "bindings")
    monkeypatch.setenv("LD_DEBUG_OUTPUT", str(tmp_path / "ld"))
    monkeypatch.delenv("NUMBA_THREADING_LAYER", raising=False)
    server = machine.Server("minimeta", ["conv4"], machine.argparse.Namespace(
        default_omp_wait=False, torch_omp_wait=None, before=None))
    try:
        server.ready()
        assert server.time("conv4", 1) > 0
    finally:
        server.close()
    assert server.process.returncode == 0
    bound = numbas_openmp(tmp_path)
    if bound is None:
        pytest.skip("no GNU OpenMP binding logged (another threading layer, or not glibc)")
    if importlib.util.find_spec("torch") is None:  # nothing of PyTorch's to bind to: vacuous
        pytest.skip("PyTorch is not installed: the server ran, the binding check needs PyTorch")
    assert ("torch" in bound) == (mode == "mutant"), bound


def test_workloads_on_one_thread_run_minimeta_s_kernels_on_one_thread(monkeypatch, capsys):
    # --threads 1 had set numba and PyTorch to one thread, but not the kernels' split, which
    # stayed at every core while the line said "1 thread(s)"
    import numba

    import workloads
    from minimeta.kernels import threads as kernel_threads

    seen = []

    def fake():
        return lambda: seen.append((kernel_threads.split_threads(), numba.get_num_threads()))

    kernel_threads.set_split_threads(2)
    monkeypatch.setattr(workloads, "WORKLOADS", {"fake": ("a recorder", fake)})
    monkeypatch.setattr(workloads, "apply_omp_policy", lambda threads: None)   # no PyTorch
    monkeypatch.setattr(sys, "argv", ["workloads.py", "--threads", "1", "--repeats", "1",
                                      "--only", "fake", "--no-reference"])
    try:
        workloads.main()
    finally:
        kernel_threads.set_split_threads(kernel_threads.cores())
        numba.set_num_threads(min(kernel_threads.cores(), numba.config.NUMBA_NUM_THREADS))
    assert seen and set(seen) == {(1, 1)}, seen


def test_machine_caps_numba_at_the_threads_numba_started(monkeypatch):
    # NUMBA_NUM_THREADS below the core count had crashed machine.py's minimeta process
    import numba

    import machine

    asked = []
    monkeypatch.setattr(numba.config, "NUMBA_NUM_THREADS", 1)
    monkeypatch.setattr(numba, "set_num_threads", asked.append)
    monkeypatch.setattr(machine, "kernel_threads", None)
    machine.set_minimeta(2, None)
    assert asked == [1]


def test_gpu_check_gives_both_libraries_the_same_conv4_batch(monkeypatch):
    # at --simulate's small sizes minimeta's conv4 took 64 images and PyTorch's still 640
    torch = pytest.importorskip("torch")
    import gpu_check
    import workloads

    sizes = []
    real = workloads.images
    monkeypatch.setattr(workloads, "images", lambda n: sizes.append(n) or real(n))
    for small in (True, False):
        ours, theirs = gpu_check.cases("cpu", "cpu", torch, small)["conv4"]
        sizes.clear()
        ours()
        mine = list(sizes)
        sizes.clear()
        theirs()
        assert sizes == mine == [64 if small else 640]
    import machine      # and machine.py's, built from the defaults (a mutant gave minimeta 64)
    for build in (lambda: machine.minimeta_cases("conv4"), lambda: machine.torch_case(torch,
                                                                                     "conv4")):
        sizes.clear()
        build()
        assert sizes == [640]


def test_pytorch_is_timed_in_the_layout_each_setting_names(monkeypatch):
    # the gradient tests above pass whatever the memory layout: a "-cl" or "-compile" setting
    # that ran NCHW eager would have timed the wrong thing unseen (a mutation audit, 2026-12)
    torch = pytest.importorskip("torch")
    import workloads

    run = workloads.torch_maml(torch, ways=2, queries=1, n_tasks=1, workers=2, channels_last=True)
    conv = run.params[4]                                          # a 64×64×3×3 weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    run()                       # its Adam step, then its gradients cleared for the next call
    assert all(p.grad is None for p in run.params)
    asked, compiled, real = [], [], workloads.torch_conv4_params
    monkeypatch.setattr(workloads, "torch_conv4_params", lambda torch, channels_last, **kw:
                        asked.append(channels_last) or real(torch, **kw))
    monkeypatch.setattr(torch, "compile", lambda fn: compiled.append(fn) or fn)
    for layout in ("nchw", "cl", "compile"):
        made = workloads.torch_workloads(torch, layout=layout, batch=2)
        made["conv4"](), made["protonet"]()
    assert asked == [False, False, True, True, True, True] and len(compiled) == 1


@pytest.mark.parametrize("steps", [1, 2])
def test_the_pytorch_sinusoid_maml_is_minimeta_s_meta_iteration(steps, monkeypatch):
    """``sinusoid_maml.py``'s two engines, looped and stacked, take the same meta-gradient from
    the same θ; in float64, where α 0.01 on weights of 0.01 moves the gradient by less than
    float32's rounding (its ``theirs`` had no test: a wrong inner-loss scale passed)."""
    import functools

    torch = pytest.importorskip("torch")
    import sinusoid_maml

    class Caught:       # each library's Adam, stood in: keeps the parameters and gradients
        def __init__(self, params, lr):
            self.params, self.grads = list(params), None
            caught.append(self)

        def step(self):
            self.grads = [p.grad.detach().numpy().copy() for p in self.params]

        def zero_grad(self):
            for p in self.params:
                p.grad = None

    caught, stacked, real = [], [], sinusoid_maml.StackedTasks
    for where in (sinusoid_maml, torch.optim):
        monkeypatch.setattr(where, "Adam", Caught)
    monkeypatch.setattr(sinusoid_maml, "StackedTasks", lambda l: stacked.append(l) or real(l))
    monkeypatch.setattr(sinusoid_maml.nn, "mlp", functools.partial(sinusoid_maml.nn.mlp,
                                                                   dtype=np.float64))
    monkeypatch.setattr(sinusoid_maml, "TASKS", [tuple(a.astype(np.float64) for a in task)
                                                 for task in sinusoid_maml.TASKS])
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        for vectorize in (False, True):
            caught.clear()
            sinusoid_maml.ours(steps, vectorize)()
            theirs = sinusoid_maml.theirs(torch, steps, vectorize)
            with torch.no_grad():
                for p, ours in zip(caught[1].params, caught[0].params):
                    p.copy_(torch.from_numpy(ours.numpy().copy()))
            theirs()
            scale = max(np.abs(g).max() for g in caught[0].grads)
            for g, their in zip(caught[0].grads, caught[1].grads):
                np.testing.assert_allclose(their, g, rtol=1e-9, atol=1e-12 * scale)
        # PyTorch's torch.func version, its compiled case: the same numbers (compiled, to
        # float rounding; here its functions as they are, torch.compile stood in)
        monkeypatch.setattr(torch, "compile", lambda fn: fn)
        compiled = sinusoid_maml.theirs_compiled(torch, steps)
        with torch.no_grad():
            for p, ours in zip(caught[2].params, caught[0].params):
                p.copy_(torch.from_numpy(ours.numpy().copy()))
        compiled()
        for g, their in zip(caught[0].grads, caught[2].grads):
            np.testing.assert_allclose(their, g, rtol=1e-9, atol=1e-12 * scale)
    finally:
        torch.set_default_dtype(default)
    assert len(stacked) == 1                      # minimeta's stacked case is StackedTasks'
