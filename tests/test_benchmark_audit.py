"""The CPU benchmarks' bookkeeping, clocks, processes and libraries stood in: the medians of
``_timing.median_time``, the ratio ``report`` prints, the threads each script sets,
``machine.py``'s rounds (every other one reversed), its table (medians, ranges, PyTorch's best
setting, paired ratios, ``--before``), its timing processes (warm-up, each case's threads set
before it is timed, their commands), and what ``workloads.py``, ``engine_overhead.py`` and
``sinusoid_maml.py`` time in which order. A mutation audit (2026-12) found a mutant of each
passing every test, each a wrong figure in docs/PERFORMANCE.md. Nothing here times for real.

Read next: ``test_benchmark_workloads.py`` (the workloads compute what they claim).
"""
import io
import json
import os
import sys
import types

import numpy as np
import pytest

BENCH = os.path.join(os.path.dirname(os.path.dirname(__file__)), "benchmarks")
sys.path.insert(0, BENCH)
import _timing  # noqa: E402
import engine_overhead  # noqa: E402
import machine  # noqa: E402
import sinusoid_maml  # noqa: E402
import workloads  # noqa: E402
import source_file  # noqa: E402  (tests/: a repository file run as a module)


def test_median_time_warms_up_then_gives_the_median_per_call_of_its_batches(monkeypatch):
    clock = types.SimpleNamespace(now=0.0)             # a stand-in clock: only the work moves it
    clock.perf_counter = lambda: clock.now
    monkeypatch.setattr(_timing, "time", clock)
    # two slow warm-up calls (compilation), one of 10 ms (so 0.2 s / 5 / 10 ms = 4 a batch),
    # then five batches of 4 calls; a median, unlike a mean or a minimum, is 30 ms
    durations = [5.0, 5.0, 0.01] + [d for d in (0.01, 0.02, 0.03, 0.5, 0.9) for _ in range(4)]
    calls = []

    def fn():
        calls.append(1)
        clock.now += durations[len(calls) - 1]

    assert _timing.median_time(fn, repeats=5, warmup=2, min_time=0.2) == pytest.approx(0.03)
    assert len(calls) == len(durations)


def test_the_timing_helpers_apply_the_policy_and_the_thread_counts_they_name(monkeypatch):
    import numba
    import threadpoolctl

    from minimeta.kernels import threads as kernel_threads

    seen = []
    monkeypatch.setattr(_timing, "malloc_policy", lambda: seen.append("malloc"))
    _timing.apply_malloc_policy(types.SimpleNamespace(default_malloc=True))
    seen.append("default kept")
    _timing.apply_malloc_policy(types.SimpleNamespace(default_malloc=False))
    monkeypatch.setattr(threadpoolctl, "threadpool_limits", lambda n, **kw: seen.append((n, kw)))
    _timing.blas_threads(3)
    monkeypatch.setattr(kernel_threads, "set_split_threads", lambda n: seen.append(("split", n)))
    monkeypatch.setattr(numba, "set_num_threads", lambda n: seen.append(("numba", n)))
    monkeypatch.setattr(numba.config, "NUMBA_NUM_THREADS", 4)   # numba started 4 threads
    _timing.minimeta_threads(2)
    _timing.minimeta_threads(8)
    assert seen == ["default kept", "malloc", (3, {"user_api": "blas"}), ("split", 2), ("numba", 2),
                    ("split", 8), ("numba", 4)]


def test_the_wait_policy_is_set_after_pytorch_is_imported_and_report_gives_ours_over_theirs(
        monkeypatch, capsys):
    # set first, the policy would have reached PyTorch's own runtime, whose default (spinning)
    # is the setting the docs say PyTorch is timed at
    seen = []
    monkeypatch.setattr(_timing, "try_torch", lambda: seen.append("torch") or "torch")
    monkeypatch.setattr(_timing, "omp_wait_policy", lambda: seen.append("policy"))
    assert _timing.apply_omp_policy(1) == "torch" and seen == ["torch", "policy"]
    _timing.report("case", 0.0025, 0.001)
    line = capsys.readouterr().out
    assert "minimeta     2.50 ms" in line and "torch     1.00 ms" in line
    assert line.rstrip().endswith("ratio  2.50")


def two_cores(monkeypatch):
    """machine.py as on a machine of 2 cores, whatever this one has."""
    monkeypatch.setattr(machine, "CORES", 2)
    monkeypatch.setattr(machine, "THREADS", ["2", "1"])
    monkeypatch.setattr(machine, "TASKS", "2tasks")


# each round's seconds of conv4 at each (library, setting): minimeta's best setting is 2
# threads, PyTorch's fastest by median is 2-cl, its fastest on one thread 1-cl, and in round 2
# its fastest is another setting (1.0 s, compiled): a ratio to a fixed setting would differ
ROUNDS = {("minimeta", "2"): [1.0, 1.2, 4.0], ("minimeta", "1"): [2.0] * 3,
          ("torch", "2"): [3.0] * 3, ("torch", "1"): [5.0] * 3, ("torch", "2-cl"): [2.0, 0.8, 2.0],
          ("torch", "1-cl"): [4.0] * 3, ("torch", "2-compile"): [2.5, 2.5, 1.0],
          ("torch", "1-compile"): [6.0] * 3}


def run_machine(monkeypatch, argv, torch=True):
    """machine.main with its timing processes stood in: (log of their calls, stdout)."""
    log, count = [], {}

    class Server:
        def __init__(self, lib, keys, args):
            self.lib = lib
            log.append(("start", lib, tuple(keys)))

        def ready(self):
            log.append(("ready", self.lib))

        def time(self, key, setting):
            log.append((key, self.lib, setting))
            r = count[key, self.lib, setting] = count.get((key, self.lib, setting), -1) + 1
            return ROUNDS.get((self.lib, setting), [1.0] * 9)[r]

        def close(self):
            log.append(("close", self.lib))

    monkeypatch.setattr(machine, "Server", Server)
    monkeypatch.setattr(machine, "torch_installed", lambda: torch)
    monkeypatch.setattr(machine, "apply_malloc_policy", lambda: None)
    monkeypatch.setattr(sys, "argv", ["machine.py"] + argv)
    machine.main()
    return log


def test_machine_reverses_every_other_round_and_reports_medians_ranges_and_paired_ratios(
        monkeypatch, tmp_path, capsys):
    two_cores(monkeypatch)
    path = tmp_path / "table.json"
    log = run_machine(monkeypatch, ["--rounds", "3", "--only", "conv4", "--json", str(path)])
    cases = [("conv4", lib, n) for lib, n in ROUNDS]
    assert [e for e in log if e[0] == "conv4"] == cases + cases[::-1] + cases
    assert log[:4] == [("start", "minimeta", ("conv4",)), ("start", "torch", ("conv4",)),
                       ("ready", "minimeta"), ("ready", "torch")]
    assert log[-2:] == [("close", "minimeta"), ("close", "torch")]
    line = [s for s in capsys.readouterr().out.splitlines() if s.startswith("conv4")][0]
    assert "minimeta 2 threads   1.200 s [1.000-4.000] | 1 thread   2.000 s" in line
    # best / best: 1.2 s over 2-cl's 2.0 s; one thread each: 2.0 s over 1-cl's 4.0 s
    assert "ratio best/best  0.60, 1/1  0.50" in line
    # round by round over the fastest PyTorch setting of that round: 1/2, 1.2/0.8, 4/1
    assert "paired: median 1.50 [0.50-4.00], minimeta faster in 1 of 3 rounds" in line
    table = json.loads(path.read_text())["conv4"]
    assert table["minimeta@2"] == [1.2, 1.0, 4.0] and table["torch@2-cl"] == [2.0, 0.8, 2.0]
    assert table["paired"] == pytest.approx([0.5, 1.5, 4.0])
    log = run_machine(monkeypatch, ["--rounds", "1"], torch=False)    # the default set
    assert log[0] == ("start", "minimeta", ("conv4", "maml5", "maml20", "protonet"))
    with pytest.raises(SystemExit):
        run_machine(monkeypatch, ["--rounds", "0"])


def test_machine_before_gives_this_tree_over_the_other_round_by_round(monkeypatch, capsys):
    two_cores(monkeypatch)
    samples = {("conv4", "minimeta", "2"): [1.0, 3.0, 2.5], ("conv4", "before", "2"): [2.0] * 3,
               ("conv4", "minimeta", "1"): [1.0] * 3, ("conv4", "before", "1"): [1.0] * 3}
    machine.report_before(["conv4"], samples)
    assert ("2 thread(s) median 1.250 [0.500-1.500] (before 2.000 s, after 2.500 s)"
            in capsys.readouterr().out)


def serve(monkeypatch, lib, keys, requests, default_omp_wait=False):
    """machine.serve, libraries stood in: the log of each run's label and threads set."""
    log = []

    def labelled(label):
        return lambda: log.append(("run", label))

    monkeypatch.setattr(sys, "stdin", io.StringIO("".join(f"{r}\n" for r in requests)))
    monkeypatch.setattr(machine, "timed", lambda fn: fn() or 0.25)
    monkeypatch.setattr(machine, "minimeta_cases", lambda key: (labelled(key), "learner"))
    monkeypatch.setattr(machine, "set_minimeta", lambda n, lr: log.append(("threads", n, lr)))
    monkeypatch.setattr(machine, "blas_threads", lambda n: log.append(("blas", n)))
    monkeypatch.setattr(machine, "omp_wait_policy", lambda: log.append(("omp",)))
    torch = types.SimpleNamespace(set_num_threads=lambda n: log.append(("threads", n)))
    monkeypatch.setattr(machine, "try_torch", lambda: torch)
    monkeypatch.setattr(machine, "torch_case", lambda torch, key: labelled(key))
    monkeypatch.setattr(machine, "torch_maml", lambda torch, workers, channels_last=False,
                        **shape: labelled(f"tasks{workers}{'-cl' * channels_last}"))
    monkeypatch.setattr(machine, "torch_maml_compiled", lambda torch, **shape: labelled(
        "maml-compile"))
    monkeypatch.setattr(machine, "torch_workloads", lambda torch, layout: {
        "conv4": lambda: labelled(f"conv4-{layout}")})
    machine.serve(lib, keys, default_omp_wait)
    return log


def test_machine_warms_every_case_up_then_sets_its_threads_before_each_timing(
        monkeypatch, capsys):
    two_cores(monkeypatch)
    log = serve(monkeypatch, "minimeta", ["conv4"], ["conv4 1", "conv4 2"])
    warm = [("threads", 2, "learner"), ("run", "conv4"), ("threads", 1, "learner"),
            ("run", "conv4")]
    assert log == [("omp",), ("blas", 1)] + warm + warm[2:] + warm[:2]
    assert capsys.readouterr().out.split() == ["machine.py>", "ready"] + ["machine.py>", "0.25"] * 2
    assert ("omp",) not in serve(monkeypatch, "minimeta", ["conv4"], [], default_omp_wait=True)


def test_machine_times_each_pytorch_setting_on_its_own_threads(monkeypatch):
    two_cores(monkeypatch)
    settings = {"maml5": ["2", "1", "2tasks", "2tasks-cl", "2-compile", "1-compile"],
                "conv4": ["2", "1", "2-cl", "1-cl", "2-compile", "1-compile"]}
    assert {key: machine.settings("torch", key) for key in settings} == settings
    assert machine.settings("minimeta", "maml5") == machine.settings("torch", "maml20_stacked")
    requests = [f"{key} {n}" for key, ns in settings.items() for n in ns]
    log = serve(monkeypatch, "torch", list(settings), requests)
    expected = [(2, "maml5"), (1, "maml5"), (1, "tasks2"), (1, "tasks2-cl"),
                (2, "maml-compile"), (1, "maml-compile"), (2, "conv4"),
                (1, "conv4"), (2, "conv4-cl"), (1, "conv4-cl"), (2, "conv4-compile"),
                (1, "conv4-compile")]
    timed = log[2 * len(requests):]           # after the warm-up: one call of every case
    assert timed == [e for n, label in expected for e in (("threads", n), ("run", label))]
    from minimeta.kernels import threads as kernel_threads   # on one core: one, not twice

    monkeypatch.setattr(kernel_threads, "cores", lambda: 1)
    one = source_file.load("benchmarks/machine.py", "machine_one_core")
    assert one.THREADS == ["1"] and one.settings("torch", "maml5") == ["1", "1-compile"]
    assert one.settings("torch", "conv4") == ["1", "1-cl", "1-compile"]


def test_machine_sets_workers_split_and_numba_and_times_the_wall_clock(monkeypatch):
    import numba

    seen = []
    monkeypatch.setattr(machine.kernel_threads, "set_split_threads", lambda n: seen.append(n))
    monkeypatch.setattr(numba, "set_num_threads", lambda n: seen.append(("numba", n)))
    monkeypatch.setattr(numba.config, "NUMBA_NUM_THREADS", 8)
    learner = types.SimpleNamespace(workers=0)
    machine.set_minimeta(3, learner)
    assert seen == [3, ("numba", 3)] and learner.workers == 3
    clock = types.SimpleNamespace(now=0.0)  # wall-clock seconds: a process clock misses waits
    clock.perf_counter = lambda: clock.now
    monkeypatch.setattr(machine, "time", clock)
    assert machine.timed(lambda: setattr(clock, "now", clock.now + 0.5)) == 0.5


def test_machine_starts_each_library_s_process_with_its_own_tree_and_wait_policy(
        monkeypatch):
    started = []
    monkeypatch.setattr(machine.subprocess, "Popen",
                        lambda command, env, **kw: started.append((command, env)))
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    args = types.SimpleNamespace(default_omp_wait=True, torch_omp_wait=None, before="/old")
    for lib in ("minimeta", "before", "torch"):
        machine.Server(lib, ["conv4"], args)
    (mine, env), (old, old_env), (theirs, torch_env) = started
    assert [c[c.index("--serve") + 1] for c, _ in started] == ["minimeta", "minimeta", "torch"]
    assert all(c[-1] == "--default-omp-wait" for c, _ in started)
    assert env["PYTHONPATH"] == os.path.dirname(BENCH) and old_env["PYTHONPATH"] == "/old"
    assert env["OMP_WAIT_POLICY"] == "PASSIVE" and "OMP_WAIT_POLICY" not in torch_env


def test_machine_builds_each_maml_case_in_its_shape(monkeypatch):
    seen = []

    def recorder(name, result=None):
        return lambda *a, **kw: seen.append((name, a[1:] if name != "tasks" else a, kw)) or (
            result or types.SimpleNamespace(meta_parameters=lambda: []))

    for name in ("MAML", "Adam"):
        monkeypatch.setattr(machine, name, recorder(name))
    monkeypatch.setattr(machine, "maml_tasks", lambda *a: seen.append(("tasks", a, {})) or [])
    monkeypatch.setattr(machine, "StackedTasks", lambda learner: seen.append("stacked"))
    assert machine.minimeta_cases("maml20_stacked")[1] is not None
    assert seen == [("MAML", (0.4, 5), {}), ("tasks", (16, 20, 1, 5), {}), ("Adam", (1e-3,), {}),
                    "stacked"]
    seen.clear()
    machine.minimeta_cases("maml5")
    assert seen[:2] == [("MAML", (0.4, 1), {}), ("tasks", (32, 5, 1, 15), {})] and len(seen) == 3
    monkeypatch.setattr(machine, "torch_maml", recorder("loop", "loop"))
    monkeypatch.setattr(machine, "torch_maml_stacked", recorder("stack", "stack"))
    assert machine.torch_case(None, "maml20_stacked") == "stack"
    assert machine.torch_case(None, "maml5") == "loop"
    assert seen[-1][2] == dict(ways=5, queries=15, n_tasks=32, steps=1, device="cpu")
    monkeypatch.setattr(machine, "mm_maml", lambda **shape: (lambda: None, "learner"))
    monkeypatch.setattr(machine, "set_minimeta", lambda n, lr: seen.append(("threads", n)))
    monkeypatch.setattr(machine, "blas_threads", lambda n: None)
    machine.memory_child("minimeta", 2)          # the peak RSS of 2 workers, not of one
    assert seen[-1] == ("threads", 2)


def test_workloads_times_each_library_on_the_threads_asked_and_divides_ours_by_theirs(
        monkeypatch):
    import threadpoolctl

    from minimeta import kernels as K

    seen, reports = [], []
    torch = types.SimpleNamespace(set_num_threads=lambda n: seen.append(("torch", n)))

    def median(fn, repeats, warmup):   # the library, the reference mode, the warm-up asked
        seen.append((fn, K.LOCAL.reference, repeats, warmup))
        return {"ours": 2.0, "theirs": 4.0}[fn] * (4 if K.LOCAL.reference else 1)

    class Limits:
        def __init__(self, limits):
            seen.append(("limits", limits))

        __enter__ = __exit__ = lambda *a: None

    monkeypatch.setattr(workloads, "apply_omp_policy", lambda threads: torch)
    monkeypatch.setattr(workloads, "minimeta_threads", lambda n: seen.append(("numba", n)))
    monkeypatch.setattr(threadpoolctl, "threadpool_limits", Limits)
    monkeypatch.setattr(workloads, "median_time", median)
    monkeypatch.setattr(workloads, "torch_workloads", lambda torch: {"fake": lambda: "theirs"})
    monkeypatch.setattr(workloads, "WORKLOADS", {"fake": ("fake", lambda: "ours")})
    monkeypatch.setattr(workloads, "report", lambda *a: reports.append(a))
    monkeypatch.setattr(sys, "argv", ["workloads.py", "--threads", "2", "--numba-threads", "3",
                                      "--repeats", "4"])
    workloads.main()
    assert seen[:3] == [("torch", 2), ("numba", 3), ("limits", 2)]
    assert seen[3:] == [("ours", False, 4, 1), ("theirs", False, 4, 1), ("ours", True, 2, 1)]
    assert reports == [("fake [kernels]", 2.0, 4.0), ("fake [reference]", 8.0, 2.0, "kernels")]


def test_anomaly_cost_is_the_median_of_each_round_s_on_over_off(monkeypatch, capsys):
    from minimeta.engine.anomaly import ANOMALY

    seen = {True: 0, False: 0}

    def median(fn, repeats):        # off 1, 2, 4 ms; on 3, 3, 6 ms: ratios 3, 1.5, 1.5
        seen[ANOMALY.on] += 1
        return ([3e-3, 3e-3, 6e-3] if ANOMALY.on else [1e-3, 2e-3, 4e-3])[(seen[ANOMALY.on] -
                                                                             1) % 3]

    monkeypatch.setattr(engine_overhead, "median_time", median)
    engine_overhead.anomaly_cost(3)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and seen == {True: 9, False: 9}
    assert lines[0].endswith("median 1.50x (range 1.50-3.00, 3 rounds; off 2.00 ms)")


def test_engine_overhead_times_minimeta_first_on_one_thread_and_labels_each_figure(
        monkeypatch, capsys):
    seen, reports = [], []
    torch = types.SimpleNamespace(set_num_threads=lambda n: seen.append(("torch", n)))
    for name in ("chain_minimeta", "chain_torch", "mlp_minimeta", "mlp_torch"):
        monkeypatch.setattr(engine_overhead, name, lambda *a, name=name: (name, a[-1]
                            if "chain" in name else 0))   # (which, its order)
    seconds = {("chain_minimeta", 1): 3e-3, ("chain_minimeta", 2): 6e-3, ("mlp_minimeta", 0): 1e-4,
               ("chain_torch", 1): 1e-3, ("chain_torch", 2): 2e-3, ("mlp_torch", 0): 2e-4}
    monkeypatch.setattr(engine_overhead, "median_time",
                        lambda fn, repeats=7: seen.append(fn) or seconds[fn])
    monkeypatch.setattr(engine_overhead, "try_torch", lambda: torch)
    monkeypatch.setattr(engine_overhead, "minimeta_threads", lambda n: seen.append(("mm", n)))
    monkeypatch.setattr(engine_overhead, "apply_malloc_policy", lambda: None)
    monkeypatch.setattr(engine_overhead, "anomaly_cost", lambda rounds: None)
    monkeypatch.setattr(engine_overhead, "report", lambda *a: reports.append(a))
    monkeypatch.setattr(sys, "argv", ["engine_overhead.py"])
    engine_overhead.main()
    assert seen[:2] == [("mm", 1), ("torch", 1)]
    assert [fn[0] for fn in seen[2:]] == ["chain_minimeta"] * 2 + ["mlp_minimeta"] + [
        "chain_torch"] * 2 + ["mlp_torch"]
    assert [r[1:] for r in reports] == [(3e-3, 1e-3), (6e-3, 2e-3), (1e-4, 2e-4)]
    assert "minimeta per forward op 1.0 us" in capsys.readouterr().out     # 3 ms / 3000 ops


def test_both_chains_take_the_derivative_of_the_order_they_are_timed_at(monkeypatch):
    torch = pytest.importorskip("torch")
    import minimeta as mm

    counts = {"mm": 0, "torch": 0}
    real_mm, real_torch = mm.grad, torch.autograd.grad
    monkeypatch.setattr(engine_overhead, "STEPS", 3)
    monkeypatch.setattr(mm, "grad", lambda *a, **k: counts.update(mm=counts["mm"] + 1)
                        or real_mm(*a, **k))
    monkeypatch.setattr(torch.autograd, "grad", lambda *a, **k: counts.update(
        torch=counts["torch"] + 1) or real_torch(*a, **k))
    for order in (1, 2):
        engine_overhead.chain_minimeta(order)()
        engine_overhead.chain_torch(torch, order)()
    assert counts == {"mm": 3, "torch": 3}        # one gradient at order 1, two at order 2
    for make in (engine_overhead.mlp_minimeta, lambda: engine_overhead.mlp_torch(torch)):
        step = make()         # its parameters: the list in its closure
        params = [c for c in step.__closure__ if isinstance(c.cell_contents, list)][0].cell_contents
        before = [p.detach().numpy().copy() for p in params]
        step()                # the SGD step taken, in place
        assert not any(np.array_equal(p.detach().numpy(), b) for p, b in zip(params, before))


def test_sinusoid_maml_times_minimeta_first_on_one_thread_and_labels_each_figure(
        monkeypatch):
    seen, reports = [], []
    torch = types.SimpleNamespace(set_num_threads=lambda n: seen.append(("torch", n)))
    monkeypatch.setattr(sinusoid_maml, "ours", lambda *case: ("ours",) + case)
    monkeypatch.setattr(sinusoid_maml, "theirs", lambda torch, *case: ("theirs",) + case)
    monkeypatch.setattr(sinusoid_maml, "theirs_compiled",
                        lambda torch, steps: ("compiled", steps, True))
    monkeypatch.setattr(sinusoid_maml, "median_time", lambda fn, repeats: seen.append(fn) or (
        {"ours": 1, "theirs": 10, "compiled": 5}[fn[0]] * (fn[1] + 0.5 * fn[2])))
    monkeypatch.setattr(sinusoid_maml, "try_torch", lambda: torch)
    monkeypatch.setattr(sinusoid_maml, "minimeta_threads", lambda n: seen.append(("mm", n)))
    monkeypatch.setattr(sinusoid_maml, "apply_malloc_policy", lambda args: None)
    monkeypatch.setattr(sinusoid_maml, "report", lambda *a, **k: reports.append(a))
    monkeypatch.setattr(sys, "argv", ["sinusoid_maml.py", "--repeats", "1"])
    sinusoid_maml.main()
    cases = [(1, False), (1, True), (5, False), (5, True)]
    assert seen == [("torch", 1), ("mm", 1)] + [("ours",) + c for c in cases] + [
        ("theirs",) + c for c in cases] + [("compiled", 1, True), ("compiled", 5, True)]
    want = []
    for s, v in cases:      # each stacked case beside PyTorch eager, then PyTorch compiled
        want += [(s + 0.5 * v, 10 * (s + 0.5 * v))] + [(s + 0.5, 5 * (s + 0.5))] * v
    assert [r[1:] for r in reports] == want
    assert reports[1][0] == "sinusoid MAML, 1 step, stacked tasks"
    assert "compiled" in reports[2][0] and "compiled" in reports[5][0]


def test_sinusoid_maml_first_calls_say_when_the_compiled_loop_has_paid_its_compile_back(
        monkeypatch, capsys):
    """``--first-call``: the run length from which PyTorch compiled is ahead is its first
    call's extra time over what each later call gains; never, where it gains nothing."""
    times = {("ours", 1): (0.5, 2e-3), ("theirs", 1): (20.5, 1e-3),      # 20 s / 1 ms
             ("ours", 5): (0.5, 2e-3), ("theirs", 5): (10.0, 3e-3)}      # slower: never
    monkeypatch.setattr(sinusoid_maml, "ours", lambda steps, stacked: ("ours", steps))
    monkeypatch.setattr(sinusoid_maml, "theirs_compiled", lambda torch, steps: ("theirs", steps))
    monkeypatch.setattr(sinusoid_maml, "first_call", lambda make: times[make()])
    sinusoid_maml.first_calls(object())
    lines = capsys.readouterr().out.splitlines()
    assert "ahead from 20,000 meta-iterations on" in lines[0] and "never ahead" in lines[1]
    sinusoid_maml.first_calls(None)       # no PyTorch: minimeta's alone
    assert "torch" not in capsys.readouterr().out
