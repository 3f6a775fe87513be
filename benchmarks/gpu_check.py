"""The GPU check: everything the GPU path owes on real hardware, in one command and one call.

1. ``env``: the GPU, CuPy, numba (and numba-cuda), PyTorch, the host's cores (CPU quota, numba's
   threading layer), and which NVVM runs a kernel here, the PTX version it writes and the
   driver's (``_nvvm.py``: numba's own, else the machine's toolkit, else the one
   ``gpu_prepare.sh`` carried);
2. ``raw``: CuPy's launch of numba's kernels (``kernels/_cuda_raw.py``) against numba's own,
   every kernel's case both ways in a child (``_gpu_raw.py``); where they disagree, numba's
   launch for the rest of the run (``MINIMETA_CUDA_LAUNCH=numba``) and the phase fails;
3. ``tests``: the ``gpu`` tests (``tests/test_gpu.py``, ``tests/test_gpu_audit.py``): every
   CUDA kernel against its NumPy reference in float32 and float64 at the production block
   size (and on the shapes, dtypes, NaNs and zeros a mutation audit added), every row of the
   primitive table (forward, VJP and the VJP's own VJP) on the GPU against the CPU, the
   second-order MAML meta-gradient, a training step of every learner, and the stand-in
   CuPy's name lists against this CuPy;
4. ``launches``: what one numba.cuda launch costs the host, minimeta's way (no stream
   synchronisation) and numba's default way, in microseconds and synchronisations a launch;
5. ``ab``: where ``gpu_prepare.sh REV...`` put older checkouts in ``.gpu/trees``, each of them
   and this one profiled on this GPU, a child process each (``_gpu_ab.py``,
   ``gpu_profile.py --trees``): every kernel's GPU time, tree by tree, on one machine;
6. ``timings``: minimeta on the GPU against PyTorch CUDA eager, the computations of
   ``benchmarks/machine.py`` (conv4 forward + backward on 640 images; second-order MAML
   5-way 1-shot, 32 tasks, 1 step; 20-way 1-shot, 16 tasks, 5 steps; a ProtoNet 60-way 5-shot
   episode; the two MAML meta-iterations again with the meta-batch stacked into one graph,
   each library's way, also set against PyTorch's per-task loop), float32, interleaved in
   rounds, the order rotated each round (as many as fit a quarter of ``--budget``, 3 to
   ``--rounds``), each call ended by a device synchronisation: medians with the range; then
   each one's GPU memory peak (minimeta: the largest number of bytes CuPy's pool had in use,
   tracked by an allocator hook; PyTorch: max_memory_allocated). PyTorch twice, at its
   default and with cuDNN's autotuner (``tuned``); ``ratio`` is minimeta over the faster of
   the two. PyTorch's convolutions may run in TF32 by default, minimeta's in float32: ``env``
   records both libraries' flags. A PyTorch that cannot use CUDA is left out on a GPU
   (``torch_device`` in the report), never set against minimeta from the CPU;
7. ``train``: second-order MAML on Omniglot 5-way 1-shot on the GPU for the minutes left
   (``minimeta train --device cuda --minutes``), then ``minimeta eval`` on 600 test episodes.

A phase that fails is recorded and the next one runs, and so does a timing case;
``<out>/gpu_check.json`` is rewritten after every phase and every timing case, so a run cut
short keeps what it measured. ``--budget`` (seconds) bounds each phase by what is left when it
starts: the launch comparison a sixth and under a quarter, the tests at most a third of the
budget and under half of what is left (each test a quarter of that, at most 3 minutes, where
pytest-timeout is installed; ``-v``: the log names the test that hung), the A/B a fifth and
under a quarter (its process group killed past it), the timings a quarter and under 40%
(cases that do not fit are marked skipped), the training the rest but two minutes (skipped
with under 100 s left), then the evaluation what training left (``_gpu_train.py``: a command
that overruns gets SIGTERM, on which minimeta saves its checkpoint, then SIGKILL 30 s later).

``--simulate`` runs the whole script without a GPU, at small sizes: CuPy stood in by
``tests/fake_cupy.py``, the CUDA kernels in numba's simulator (``tests/simulated_gpu.py``),
PyTorch on the CPU. It proves the script before the scarce minutes on a GPU.

Run: python benchmarks/gpu_check.py [--out outputs/gpu] [--budget 540] [--simulate]
"""
import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time

from _gpu_ab import ab
from _gpu_raw import gate as raw_gate
from _gpu_train import train
from _nvvm import nvvm   # (the script's folder is on sys.path)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TESTS = os.path.join(ROOT, "tests")
START = time.perf_counter()
# machine.KEYS, for --only (machine imports minimeta, numba too, before --simulate is applied;
# test_gpu_check_logic.py keeps the two equal)
CASES = ["conv4", "maml5", "maml20", "protonet", "maml5_stacked", "maml20_stacked"]


def elapsed():
    return time.perf_counter() - START


def say(*args):
    print(f"[{elapsed():6.0f} s]", *args, flush=True)


def environment(cp, torch):
    import numba
    info = {"python": sys.version.split()[0], "numba": numba.__version__,
            "cupy": cp.__version__,
            "gpu": cp.cuda.runtime.getDeviceProperties(0)["name"].decode()}
    try:
        from importlib.metadata import version
        info["numba-cuda"] = version("numba-cuda")
    except Exception as err:        # not installed: numba's own CUDA target
        info["numba-cuda"] = f"absent ({type(err).__name__})"
    if torch is not None:
        info["torch"] = torch.__version__
        info["torch_cuda"] = torch.version.cuda
        info["torch_tf32"] = {"cudnn_conv": torch.backends.cudnn.allow_tf32,
                              "matmul": torch.backends.cuda.matmul.allow_tf32}
    info["cupy_tf32"] = os.environ.get("CUPY_TF32", "0")   # CuPy's matmul: float32 unless "1"
    from minimeta.kernels import threads     # the host's side: cores, quota, numba's layer
    info["cpu"] = {"cores": threads.cores(), "quota": threads.cpu_quota(),
                   "numba_layer": threads.threading_layer()}
    info["ptx_cache"] = ptx_cache()
    return info


def ptx_cache():
    """The compiled kernels' disk cache (``kernels/_cuda_raw.CACHE``): its folder and how many
    PTX files it holds (at the start, and again at the end of the run: what it kept)."""
    from minimeta.kernels import _cuda_raw

    folder = _cuda_raw.CACHE
    files = os.listdir(folder) if folder and os.path.isdir(folder) else []
    return {"folder": folder, "files": sum(name.endswith(".ptx") for name in files)}


def gpu_tests(simulate, timeout, out):
    """The ``gpu`` tests in a child pytest, its output in ``<out>/gpu_tests.log`` (kept when
    the time runs out, so a slow first compilation still shows how far the tests got)."""
    cmd = [sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider", "-o", "addopts=",
           "-m", "gpu", "-rs", "--durations=10", os.path.join(TESTS, "test_gpu.py"),
           os.path.join(TESTS, "test_gpu_audit.py")]     # what a mutation audit added
    if importlib.util.find_spec("pytest_timeout") is not None:     # one hung test, not all
        cmd += ["--timeout", str(int(max(10, min(180, timeout / 4))))]
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=os.pathsep.join(
        [ROOT, TESTS, os.environ.get("PYTHONPATH", "")]))
    if simulate:
        cmd[3:3] = ["-p", "simulated_gpu"]
        # full-size causal kernels and stacks of convolutions take minutes in the simulator
        # (tests/test_cuda_kernels.py runs both there at small sizes)
        cmd += ["-k", "not causal and not stacked3"]
    log = os.path.join(out, "gpu_tests.log")
    with open(log, "w") as f:
        try:
            code = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, timeout=timeout,
                                  env=env).returncode
        except subprocess.TimeoutExpired:
            code = "timed out"
    text = open(log).read()
    print(text[-6000:], flush=True)
    summary = (text.strip().splitlines() or ["no output"])[-1]
    return {"exit_code": code, "summary": summary, "log": log}


def cases(device, torch_device, torch, small):
    """{name: (make the minimeta call, make the PyTorch call or None)}: the same computation in
    each (``machine.py``'s cases, the stacked MAML ones included), built only when timed."""
    import machine
    from workloads import mm_conv4, torch_workloads

    shapes = {k: dict(v, n_tasks=2, queries=2) if small else v
              for k, v in machine.SHAPES.items()}
    batch = 64 if small else 640        # conv4's images, both sides (PyTorch's had stayed 640)
    ours = {k: lambda k=k: machine.minimeta_cases(k, device, shapes)[0] for k in machine.KEYS}
    ours["conv4"] = lambda: mm_conv4(batch, device=device)
    theirs = {}
    if torch is not None:
        for key in machine.KEYS:
            theirs[key] = lambda k=key: machine.torch_case(torch, k, torch_device, shapes)
        theirs["conv4"] = lambda: torch_workloads(torch, torch_device, batch=batch)["conv4"]()
    return {name: (ours[name], theirs.get(name)) for name in machine.KEYS}


def timings(cp, torch, torch_device, rounds, small, only, seconds, save=lambda table: None):
    """Each case gets an equal share of what is left of ``seconds``: as many rounds (at least
    3, at most ``rounds``) as its second warm-up call says fit in what its building and
    warm-up (the first compilation of a kernel) left of the share. A case that raises (out of
    memory, a kernel that fails) is recorded as its error and the next one runs; once the
    phase's ``seconds`` are spent the cases left are marked skipped. ``save(table)`` after
    each case (the report on disk)."""
    syncs = (cp.cuda.Device().synchronize,
             (torch.cuda.synchronize if torch_device == "cuda" else lambda: None)
             if torch is not None else None)
    deadline = time.perf_counter() + seconds
    table = {}
    todo = {k: v for k, v in cases("cuda", torch_device, torch, small).items()
            if not only or k in only}
    for i, (name, makers) in enumerate(todo.items()):
        share = (deadline - time.perf_counter()) / (len(todo) - i)
        if share <= 0:
            table[name] = {"skipped": f"the phase's {seconds:.0f} s were spent"}
            say(f"{name:9s} skipped: {table[name]['skipped']}")
        else:
            try:
                table[name] = time_case(cp, name, makers, syncs, torch, torch_device,
                                        rounds, share, table)
            except Exception as err:  # the next case may still run (not after a lost context)
                table[name] = {"error": f"{type(err).__name__}: {err}"[:500]}
                say(f"{name:9s} FAILED: {table[name]['error']}")
        save(table)
    return table


def time_case(cp, name, makers, syncs, torch, torch_device, rounds, seconds, table):
    """One row of ``timings``: minimeta and PyTorch (default and tuned) interleaved, the order
    rotated each round; medians, ranges, memory peaks, ratios (``table``: the rows so far, for
    a stacked case's ratio to PyTorch's loop)."""
    (make_mine, make_theirs), (sync_mm, sync_t) = makers, syncs
    begun = time.perf_counter()     # building and warming up spend the share too
    mine = make_mine()
    calls = {"minimeta": (mine, sync_mm)}
    if make_theirs is not None:
        theirs = make_theirs()
        calls["torch"] = (theirs, sync_t)
        calls["torch_tuned"] = (tuned(torch, theirs), sync_t)
    one_round = 0.0
    for fn, sync in calls.values():        # warm-up: kernel compilation, pools
        fn()
        sync()
        t = time.perf_counter()
        fn()
        sync()
        one_round += time.perf_counter() - t
    fit = int((seconds - (time.perf_counter() - begun)) / max(one_round, 1e-6))
    samples = {lib: [] for lib in calls}
    items = list(calls.items())
    for r in range(max(3, min(rounds, fit))):
        k = r % len(items)
        for lib, (fn, sync) in items[k:] + items[:k]:   # rotated: each in each place in turn
            sync()
            t = time.perf_counter()
            fn()
            sync()
            samples[lib].append(time.perf_counter() - t)
    row = {lib: {"median_s": statistics.median(s), "min_s": min(s), "max_s": max(s),
                 "rounds": len(s)} for lib, s in samples.items()}
    row["minimeta"]["peak_bytes"] = cupy_peak(cp, mine, sync_mm)
    if "torch" in calls and torch_device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        theirs()
        torch.cuda.synchronize()
        row["torch"]["peak_bytes"] = torch.cuda.max_memory_allocated()
    if "torch" in row:                       # against PyTorch at its best setting
        row["ratio"] = row["minimeta"]["median_s"] / torch_best(row)
    loop = table.get(name.removesuffix("_stacked"), {})
    if name.endswith("_stacked") and "torch" in loop:   # against PyTorch's per-task loop
        row["ratio_to_torch_loop"] = row["minimeta"]["median_s"] / torch_best(loop)
    say(f"{name:9s} " + " | ".join(
        f"{lib} {r['median_s'] * 1e3:9.2f} ms [{r['min_s'] * 1e3:.2f}-{r['max_s'] * 1e3:.2f}]"
        f" peak {r.get('peak_bytes', 0) / 2**20:7.1f} MiB" for lib, r in row.items()
        if isinstance(r, dict)) + (f" | ratio {row['ratio']:.2f}" if "ratio" in row else "")
        + (f" | vs torch loop {row['ratio_to_torch_loop']:.2f}"
           if "ratio_to_torch_loop" in row else ""))
    return row


def tuned(torch, fn):
    """``fn`` with cuDNN's autotuner on (``torch.backends.cudnn.benchmark``: each convolution
    shape tries cuDNN's algorithms once, the fastest kept), off again afterwards."""
    def call():
        torch.backends.cudnn.benchmark = True
        try:
            fn()
        finally:
            torch.backends.cudnn.benchmark = False
    return call


def torch_best(row):
    """PyTorch's median at its faster setting, in a row of ``timings``."""
    return min(row[lib]["median_s"] for lib in ("torch", "torch_tuned"))


def cupy_peak(cp, fn, sync):
    """The most bytes CuPy's memory pool had in use during one call of ``fn``."""
    pool = cp.get_default_memory_pool()
    peak = [pool.used_bytes()]

    def malloc(size):
        mem = pool.malloc(size)
        peak[0] = max(peak[0], pool.used_bytes())
        return mem

    cp.cuda.set_allocator(malloc)
    try:
        fn()
        sync()
    finally:
        cp.cuda.set_allocator(pool.malloc)
    return peak[0]


def write(path, report):
    """The report on disk, whole or not at all (a kill mid-write leaves the last one); a
    failed write is said, and the check goes on (the console has the figures too)."""
    try:
        with open(path + ".tmp", "w") as f:
            json.dump(report, f, indent=1)
        os.replace(path + ".tmp", path)
    except OSError as err:
        say(f"could not write {path}: {err}")


def simulated():
    """Stand CuPy in and run CUDA kernels in numba's simulator (before numba is imported)."""
    os.environ["NUMBA_ENABLE_CUDASIM"] = "1"
    sys.path.insert(0, TESTS)
    import simulated_gpu
    simulated_gpu.pytest_configure(None)


def main():
    if sys.argv[1:2] == ["--as-simulated"]:     # a child: the CLI on the stand-in CuPy
        simulated()
        sys.argv = ["minimeta"] + sys.argv[2:]
        from minimeta.cli import main as cli
        return cli()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="outputs/gpu",
                        help="folder of gpu_check.json and the logs (default: outputs/gpu)")
    parser.add_argument("--budget", type=float, default=540,
                        help="seconds for the whole check; training gets what is left "
                             "(default: 540)")
    parser.add_argument("--rounds", type=int, default=7,
                        help="timing rounds at most, 3 at least (default: 7)")
    parser.add_argument("--episodes", type=int, default=600,
                        help="test episodes after training (default: 600)")
    phases = ["env", "raw", "tests", "launches", "ab", "timings", "train"]
    parser.add_argument("--phases", nargs="+", default=phases, choices=phases)
    parser.add_argument("--only", nargs="+", choices=CASES, help="timing cases (default all)")
    parser.add_argument("--simulate", action="store_true",
                        help="no GPU: numba's CUDA simulator and the stand-in CuPy (a dry run "
                             "of the script, 3 rounds, 4 episodes)")
    args = parser.parse_args()
    for name, value, least in (("budget", args.budget, 1), ("rounds", args.rounds, 1),
                               ("episodes", args.episodes, 2)):
        if not value >= least:      # (a NaN budget too)
            parser.error(f"--{name} must be at least {least}, got {value}")
    if args.simulate:
        simulated()
        args.rounds, args.episodes = min(args.rounds, 3), min(args.episodes, 4)
    os.makedirs(args.out, exist_ok=True)
    try:
        found = {"nvvm": "simulated"} if args.simulate else nvvm(ROOT)   # before numba
    except Exception as err:            # say it, and let the phases show what still works
        found = {"nvvm": f"the search failed: {type(err).__name__}: {err}"}
    say(f"NVVM: {found['nvvm']}")
    sys.path.insert(0, ROOT)
    from minimeta.engine.backend import cupy_module
    try:
        cp = cupy_module()
    except RuntimeError as err:
        say(f"gpu_check: {err}")
        return 2
    sys.path.insert(0, HERE)
    from _timing import try_torch
    torch = try_torch()
    torch_device = "cuda" if torch is not None and torch.cuda.is_available() else "cpu"
    timed = torch if args.simulate or torch_device == "cuda" else None   # not on a GPU's host
    if torch is not None and timed is None:
        say("PyTorch cannot use CUDA here: the timings are minimeta's alone")
    report, failed = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "simulated": args.simulate,
                      "torch_device": torch_device}, []
    path = os.path.join(args.out, "gpu_check.json")
    left = lambda: args.budget - elapsed()                              # noqa: E731
    for phase in args.phases:
        say(f"== {phase} ({left():.0f} s left)")
        try:
            if phase == "env":
                report[phase] = dict(environment(cp, torch), **found)
            elif phase == "raw":          # a sixth of the budget, or a quarter of what is left
                report[phase] = raw_gate(max(30, min(args.budget / 6, 0.25 * left())),
                                         args.simulate)
                if not report[phase]["ok"]:
                    failed.append(phase)
            elif phase == "tests":        # a third of the budget, or under half what is left
                report[phase] = gpu_tests(args.simulate, max(30, min(args.budget / 3,
                                                                     0.45 * left())), args.out)
                if report[phase]["exit_code"]:
                    failed.append(phase)
            elif phase == "launches":
                from _launch_kernel import launches     # numba.cuda: only once chosen

                report[phase] = launches(cp, args.simulate)
                if not report[phase]["kernel_ran"]:
                    failed.append(phase)
            elif phase == "ab":     # a fifth of the budget, or a quarter of what is left
                report[phase] = ab(args.out, max(30, min(args.budget / 5, 0.25 * left())),
                                   args.simulate)
                if report[phase].get("exit_code", 0):
                    failed.append(phase)
            elif phase == "timings":      # a quarter of the budget, or 40% of what is left
                report[phase] = timings(cp, timed, torch_device, args.rounds, args.simulate,
                                        args.only, max(10, min(args.budget / 4, 0.4 * left())),
                                        save=lambda table: write(path, dict(report,
                                                                            timings=table)))
                if any("error" in row for row in report[phase].values()):
                    failed.append(phase)
            elif phase == "train" and left() < 100:      # not even a minute to train
                report[phase] = {"skipped": f"{left():.0f} s were left"}
                failed.append(phase)
            elif phase == "train":
                report[phase] = train(args.out, max(0.05, (left() - 120) / 60), args.episodes,
                                      "cuda", args.simulate, left, say=say)
                if "eval_error" in report[phase]:
                    failed.append(phase)
            say(json.dumps(report[phase])[:1500])
        except Exception as err:   # record it and go on: the minutes on a GPU are few
            failed.append(phase)
            report[phase] = {"error": f"{type(err).__name__}: {err}"}
            say(f"{phase} FAILED: {report[phase]['error']}")
        write(path, report)
    say(f"PTX cache at the end: {ptx_cache()}")     # (at the start: the env phase's)
    say(f"report: {path}; failed phases: {failed or 'none'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
