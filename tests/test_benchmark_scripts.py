"""The benchmark scripts that run long jobs for a figure: ``benchmarks/budget.py`` (its
commands, its progress as it comes, the rows it records, its plot) and
``benchmarks/maml_memory.py`` (its peak), with the training and the learners stood in; and
``benchmarks/device_calls.py`` (the calls a meta-iteration makes on a GPU, counted without one);
and ``benchmarks/conv_kernels.py``'s threads for each library.

Read next: ``test_benchmark_audit.py`` (the timing scripts' bookkeeping).
"""
import collections
import json
import os
import sys

import pytest

import source_file  # tests/: a repository file run as a module

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def script(name):
    """The module ``benchmarks/<name>.py``, loaded afresh (so a monkeypatch of it stays here)."""
    return source_file.load(f"benchmarks/{name}.py")


def test_the_budget_script_shows_a_run_s_progress_as_it_comes(tmp_path, monkeypatch):
    # it had captured each run's output to the end: 30 minutes of silence, then a log
    budget = script("budget")
    seen = tmp_path / "seen"
    child = ("import os, sys, time\nprint('iteration 1', flush=True)\n"
             f"for _ in range(200):\n    if os.path.exists({str(seen)!r}):\n        break\n"
             "    time.sleep(0.05)\nelse:\n    sys.exit(3)\nprint('done', file=sys.stderr)")

    class Stderr:
        def write(self, text):
            said.append(text)
            seen.touch()              # the child goes on only once its first line is shown

    said = []
    monkeypatch.setattr(sys, "stderr", Stderr())
    with open(tmp_path / "log", "w") as log:
        assert budget.run([sys.executable, "-c", child], log) > 0
    assert said == ["    iteration 1\n", "    done\n"]
    assert (tmp_path / "log").read_text() == "iteration 1\ndone\n"
    with open(tmp_path / "log", "w") as log, pytest.raises(SystemExit, match="exit 3"):
        budget.run([sys.executable, "-c", "import sys; print('why'); sys.exit(3)"], log)


def test_the_budget_plot_draws_each_learner_s_last_run_only():
    budget = script("budget")
    rows = [dict(learner="maml", minutes=m, run=run) for m, run in
            ((5, "a"), (10, "a"), (20, "a"), (5, "b"))] + [dict(learner="protonet", minutes=5)]
    kept = budget.latest_runs(rows)
    assert [(r["learner"], r["minutes"]) for r in kept] == [("maml", 5), ("protonet", 5)]


def test_the_budget_script_trains_in_order_resumes_and_records_each_run_s_last_rows(
        tmp_path, monkeypatch):
    # a mutation audit (2026-12) found every line of its table untested: minutes out of order,
    # --extend overwriting the run it extends, a row's accuracy, budget or run id from the wrong
    # line of a file, all passed
    budget = script("budget")
    commands, ids = [], iter(["first", "second"])

    def run(cmd, log):    # each command appends two lines to its file: the last is its result
        commands.append(cmd)
        n = len(commands)
        if "train" in cmd:
            path = os.path.join(cmd[cmd.index("--out") + 1], "metrics.jsonl")
            os.makedirs(os.path.dirname(path), exist_ok=True)
            rows = [{"iteration": 10 * n + i, "train_seconds": 60.0 * n + i} for i in (1, 2)]
        else:
            path = cmd[cmd.index("--report") + 1]
            rows = [{"accuracy": 0.0, "interval": 0.5}, {"accuracy": n / 8, "interval": 0.0625}]
        with open(path, "a") as f:
            f.writelines(json.dumps(row) + "\n" for row in rows)
        return 7.0

    def main(*argv):
        monkeypatch.setattr(sys, "argv", ["budget.py", "--learners", "maml", "--out",
                                          str(tmp_path), *argv])
        budget.main()

    monkeypatch.setattr(budget, "run", run)
    monkeypatch.setattr(budget, "plot", lambda out: None)
    monkeypatch.setattr(budget.time, "strftime", lambda fmt: next(ids))
    main("--minutes", "10", "5", "--episodes", "7")
    train = commands[::2]
    assert [(c[c.index("--minutes") + 1], c[-1]) for c in train] == [("5.0", "--overwrite"),
                                                                     ("10.0", "--resume")]
    assert [c[c.index("--episodes") + 1] for c in commands[1::2]] == ["7", "7"]
    rows = [json.loads(line) for line in open(tmp_path / "budget.jsonl")]
    assert rows[0] == dict(learner="maml", minutes=5.0, iterations=12, train_seconds=62.0,
                           train_wall_s=7.0, ways=5, shots=1, accuracy=0.25, interval=0.0625,
                           episodes=7, run="first")
    main("--minutes", "5")                                  # a fresh run: a new curve
    main("--minutes", "20", "--extend")                     # goes on with the last one
    rows = [json.loads(line) for line in open(tmp_path / "budget.jsonl")]
    assert commands[-2][-1] == "--resume" and rows[-1]["run"] == "second"
    with pytest.raises(SystemExit):
        main("--episodes", "1")                             # no interval from one episode


def test_maml_memory_gives_the_peak_in_mib_and_measures_each_way_it_names(monkeypatch,
                                                                          capsys):
    # a mutation audit (2026-12): its peak, its units, the inner steps and the whole-batch
    # backward it names had no test
    import numpy as np

    monkeypatch.syspath_prepend(os.path.join(ROOT, "benchmarks"))    # its ``_timing``
    maml_memory = script("maml_memory")
    # 8 MiB allocated and freed: the peak, not what is left (0), in MiB, not in MB (8.4)
    peak, _ = maml_memory.peak_mib(lambda: np.ones(2 ** 20))
    assert 8 <= peak < 8.2
    seen = []

    class Learner:
        def __init__(self, net, lr, steps):
            seen.append(("MAML", lr, steps))

        def outer_step(self, tasks):
            seen.append("per task")

        def meta_gradient(self, tasks):
            seen.append("whole batch")

    monkeypatch.setattr(maml_memory, "MAML", Learner)
    monkeypatch.setattr(maml_memory, "make_tasks", lambda *a: seen.append(a[:4]))
    monkeypatch.setattr(maml_memory, "peak_mib", lambda fn: fn() or (1.0, 1.0))
    monkeypatch.setattr(sys, "argv", ["maml_memory.py", "--steps", "1", "2", "--tasks", "2",
                                      "--ways", "3"])
    maml_memory.main()
    assert seen == [(2, 3, 1, 5), ("MAML", 0.4, 1), "per task", "whole batch",
                    ("MAML", 0.4, 2), "per task"]
    assert "MiB whole-batch" in capsys.readouterr().out


def test_the_budget_plot_draws_accuracy_against_minutes_with_its_interval(tmp_path,
                                                                          monkeypatch):
    import matplotlib.pyplot as plt
    budget = script("budget")
    drawn = []

    class Axes:         # what plot draws on: the curves kept, the rest ignored
        def errorbar(self, minutes, accuracy, interval, **kwargs):
            drawn.append((minutes, accuracy, interval))

        def __getattr__(self, name):
            return lambda *a, **kw: None

    monkeypatch.setattr(plt, "subplots", lambda **kw: (Axes(), Axes()))
    rows = [dict(learner="maml", ways=5, shots=1, minutes=m, accuracy=a, interval=0.25, run="r")
            for m, a in ((10, 0.75), (5, 0.5))]
    (tmp_path / "budget.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    budget.plot(str(tmp_path))
    assert drawn == [([5, 10], [50.0, 75.0], [25.0, 25.0])]


def test_device_calls_puts_each_call_to_its_primitive_and_batch_norm_launches_once(tmp_path):
    """``benchmarks/device_calls.py`` (docs/PERFORMANCE.md's device-call table) on a small
    stacked MAML meta-iteration: each batch-norm call, forward, backward or double backward,
    is one CUDA launch (their references on CuPy had been 15 to 60 calls and no launch), and
    Adam's update one a parameter; the calls add up to the total; one read, of the metrics."""
    import subprocess

    out = tmp_path / "calls.json"
    subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "device_calls.py"),
                    "--only", "maml5_stacked", "--tasks", "2", "--queries", "1", "--json",
                    str(out)], check=True, capture_output=True, timeout=600)
    got = json.loads(out.read_text())["maml5_stacked"]
    by, ops = got["by"], got["ops_by"]
    for primitive in ("BatchNorm", "FusedVJP", "FusedVJPVJP"):
        assert by[primitive]["kernel"] == ops[primitive] > 0, primitive
        assert "ufunc" not in by[primitive], primitive
    # conv4's 18 parameters, one flat group: one launch of Adam's kernel (18 before the group)
    assert by["optim.py _update"] == {"function": 5, "kernel": 1}
    assert got["calls"] == sum(sum(kinds.values()) for kinds in by.values()) > got["ops"]
    assert got["reads"] == 1 and got["ops"] == sum(ops.values())    # metrics, at the end
    # the images are on the GPU before the call, as PyTorch's are: what a call uploads is the
    # index arrays of its two losses (labels and row numbers; 6 with the images)
    assert got["uploads"]["backend.py to_device"] == 4, got["uploads"]


def test_gpu_profile_times_each_primitive_and_leaves_the_engine_as_it_was(tmp_path):
    """``benchmarks/gpu_profile.py --simulate`` (the dry run of the profile behind
    docs/PERFORMANCE.md's "Where the time went"): every part of conv4's profile is there and
    none failed; its four forward convolutions are timed as ``Conv2d`` ops, their time within
    the call's; and the engine's ``apply`` is given back after the op timing."""
    import re
    import subprocess

    subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "gpu_profile.py"),
                    "--simulate", "--only", "conv4", "--out", str(tmp_path)], check=True,
                   capture_output=True, timeout=600, cwd=ROOT)
    text = (tmp_path / "profile.txt").read_text()
    assert "FAILED" not in text
    for part in ("launch", "conv4 wall", "conv4 host", "conv4 kernels", "conv4 ops"):
        assert f"== {part} " in text, part
    call, in_ops, n = map(float, re.search(
        r"synchronised call ([\d.]+) ms, in ops ([\d.]+) ms \((\d+) ops\)", text).groups())
    assert 0 < in_ops <= call and n > 0
    assert re.search(r"ms +4x  Conv2d\n", text)
    profiled = float(re.search(r"profiled call ([\d.]+) ms", text).group(1))
    places = dict(re.findall(r" ?([^,]+?) ([\d.]+) ms", re.search(r"own time by place: (.*)",
                                                                  text).group(1)))
    own = sum(map(float, places.values()))  # the engine's and the kernels' among them
    slack = 0.05 * len(places)      # each place printed to 0.1 ms: their sum may round above
    assert "minimeta engine" in places and "minimeta kernels" in places and \
        0 < own <= profiled + slack

    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    try:
        import gpu_profile
        from minimeta.engine import autodiff
        from minimeta.engine.primitives import elementwise

        apply = autodiff.apply
        text = gpu_profile.ops(lambda: None, lambda: None)
        assert autodiff.apply is apply and elementwise.apply is apply
        assert text.startswith("synchronised call") and "(0 ops)" in text
    finally:
        sys.path.remove(os.path.join(ROOT, "benchmarks"))


def test_gpu_profile_puts_the_hosts_time_to_the_library_that_spent_it():
    """``gpu_profile.place``: numba-cuda's own kernels/ folder is numba's, minimeta's
    *_numba.py and _cuda*.py kernels are minimeta's, a CuPy method and a wait for the GPU are
    told by their names."""
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    try:
        import gpu_profile
    finally:
        sys.path.remove(os.path.join(ROOT, "benchmarks"))
    site = "/usr/lib/python3.12/site-packages"
    cases = {
        (f"{site}/numba_cuda/numba/cuda/kernels/reduction.py", "f"): "numba",
        (f"{site}/numba_cuda/numba/cuda/dispatcher.py", "launch"): "numba",
        (f"{site}/cupy/_core/_gufuncs.py", "f"): "CuPy",
        (f"{site}/numpy/_core/fromnumeric.py", "take"): "NumPy",
        ("/repo/kernels/conv_numba.py", "conv2d"): "minimeta kernels",
        ("/repo/kernels/_cuda_raw.py", "launch"): "minimeta kernels",
        ("/repo/minimeta/engine/autodiff.py", "apply"): "minimeta engine",
        ("/repo/.gpu/trees/e9e8600/minimeta/functional/layers.py", "f"): "minimeta's other",
        ("~", "<method 'reshape' of 'cupy._core.core._ndarray_base' objects>"): "CuPy",
        ("~", "<method 'synchronize' of 'cupy.cuda.device.Device' objects>"):
            "waiting for the GPU",
        ("~", "<built-in method builtins.isinstance>"): "Python's own",
        ("/usr/lib/python3.12/threading.py", "wait"): "Python's own",
    }
    assert {key: gpu_profile.place(*key) for key in cases} == cases


def test_gpu_profile_compares_trees_each_from_its_own_folder(tmp_path):
    """``gpu_profile.py --trees`` (a before / after on one GPU): each tree is profiled in a
    child that loads that tree's minimeta and kernels, not this checkout's, and compare.txt
    sets their figures side by side; ``parse`` reads a profile's walls, kernels (numba's ABI
    tags dropped, a truncated one too) and ops."""
    import shutil
    import subprocess

    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    try:
        import gpu_profile
    finally:
        sys.path.remove(os.path.join(ROOT, "benchmarks"))
    text = ("== conv4 wall (1.0 s)\n3.00 ms 1.00 ms 2.00 ms\n== conv4 kernels (1 s)\n"
            "GPU time in kernels: 3.50 ms\n      2.500 ms      4x  mod::_k[abi:v9][abi:cw51\n"
            "      1.000 ms      2x  cupy_copy\n== conv4 ops (0 s)\nsynchronised call\n"
            "      0.250 ms     3x  Conv2d\n== conv4 host (0 s)\n      1.000 ms     1x  x\n"
            "own time by place: CuPy 4.5 ms, minimeta's other 1.0 ms, Python's own 0.2 ms\n")
    assert gpu_profile.parse(text) == {
        ("conv4", "wall", "median"): 2.0, ("conv4", "kernel", "mod::_k"): 2.5,
        ("conv4", "kernel", "cupy_copy"): 1.0, ("conv4", "op", "Conv2d"): 0.25,
        ("conv4", "host", "CuPy"): 4.5, ("conv4", "host", "minimeta's other"): 1.0,
        ("conv4", "host", "Python's own"): 0.2}

    tree = tmp_path / "before"
    for part in ("minimeta", "kernels"):
        shutil.copytree(os.path.join(ROOT, part), tree / part,
                        ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "gpu_profile.py"),
                    "--simulate", "--only", "conv4", "--out", str(tmp_path / "out"),
                    "--trees", str(tree), ROOT], check=True, capture_output=True,
                   timeout=600, cwd=ROOT)
    first = (tmp_path / "out" / "0" / "profile.txt").read_text()
    assert f"minimeta: {tree / 'minimeta'} | kernels: {tree / 'kernels'}" in first
    assert f"minimeta: {os.path.join(ROOT, 'minimeta')} |" in \
        (tmp_path / "out" / "1" / "profile.txt").read_text()
    rows = (tmp_path / "out" / "compare.txt").read_text().splitlines()
    assert rows[0] == f"ms, tree by tree: 0 = {tree}; 1 = {ROOT}"
    for kind, name in (("wall", "median"), ("op", "Conv2d"), ("op", "BatchNorm")):
        row = next(r for r in rows if r.split()[1:2] == [kind] and r.endswith("  " + name))
        assert all(float(v) > 0 for v in row.split()[2:4]), row



def _conv_kernels(monkeypatch, torch, recorder, threads, numba_threads):
    """``benchmarks/conv_kernels.py --threads <threads>`` on two tiny layers, each timing handed
    to ``recorder`` (which times nothing), numba's ``set_num_threads`` stood in by
    ``numba_threads``, PyTorch's thread count put back after."""
    import numba

    from minimeta.kernels import threads as kernel_threads

    monkeypatch.syspath_prepend(os.path.join(ROOT, "benchmarks"))     # its ``_timing``
    conv_kernels = script("conv_kernels")
    monkeypatch.setattr(conv_kernels, "median_time", recorder)
    monkeypatch.setattr(conv_kernels, "apply_omp_policy", lambda threads: torch)
    monkeypatch.setattr(conv_kernels, "LAYERS", [(1, 4), (64, 3)])
    monkeypatch.setattr(numba, "set_num_threads", numba_threads)
    monkeypatch.setattr(kernel_threads, "set_split_threads", lambda n: None)
    monkeypatch.setattr(sys, "argv", ["conv_kernels.py", "--threads", str(threads), "--batch",
                                      "2"])
    before = torch.get_num_threads()
    try:
        conv_kernels.main()
    finally:
        torch.set_num_threads(before)


def test_conv_kernels_times_pytorch_on_the_threads_it_names(monkeypatch):
    # its bare threadpool_limits(limits=1), meant for BLAS, also capped OpenMP: PyTorch's
    # intra-op threads, oneDNN's with them, so "--threads 2" timed PyTorch on one thread against
    # minimeta's kernels split over two (docs/PERFORMANCE.md, "Conv layers on both cores")
    torch = pytest.importorskip("torch")
    from threadpoolctl import threadpool_info

    seen = collections.defaultdict(set)

    def recorder(fn, **kwargs):      # the settings each timed call runs under; no timing
        blas = frozenset(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas")
        seen[fn.__qualname__.split(".")[0]].add((torch.get_num_threads(), blas))
        return 1.0

    _conv_kernels(monkeypatch, torch, recorder, 2, lambda n: None)  # (the process's own)
    assert {t for t, _ in seen["torch_passes"]} == {2}, seen
    assert {b for _, b in seen["passes"]} == {frozenset({1})}, seen   # minimeta: 1 BLAS thread
    assert {b for _, b in seen["main"]} == {frozenset({2})}, seen     # the GEMM ceiling: 2


def test_conv_kernels_on_one_thread_times_pytorch_on_one(monkeypatch):
    # numba's first set_num_threads launches its threading layer, which sets the OpenMP
    # runtime's thread count (NUMBA_NUM_THREADS), and PyTorch, sharing that runtime, reads its
    # own from it: set before numba's, "--threads 1" timed PyTorch on every core (stood in
    # here by a set_num_threads that moves PyTorch's count as that launch did)
    torch = pytest.importorskip("torch")
    seen = set()

    def recorder(fn, **kwargs):
        if fn.__qualname__.startswith("torch_passes"):
            seen.add(torch.get_num_threads())
        return 1.0

    _conv_kernels(monkeypatch, torch, recorder, 1, lambda n: torch.set_num_threads(3))
    assert seen == {1}, seen
