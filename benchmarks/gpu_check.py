"""The GPU check: everything issue 18 asks of a GPU machine, in one command and one call.

1. ``env``: the GPU, CuPy, numba (and numba-cuda), PyTorch, the host's cores (CPU quota, numba's
   threading layer), and where NVVM came from (numba-cuda compiles kernels with it; if it finds
   none, the one ``gpu_prepare.sh`` carried: ``nvvm``);
2. ``tests``: the ``gpu`` tests (``tests/test_gpu.py``): every CUDA kernel against its NumPy
   reference in float32 and float64 at the production block size, every row of the primitive
   table (forward, VJP and the VJP's own VJP) on the GPU against the CPU, the second-order
   MAML meta-gradient, a training step of every learner, and the stand-in CuPy's name lists
   against this CuPy;
3. ``launches``: what one numba.cuda launch costs the host, minimeta's way (no stream
   synchronisation) and numba's default way, in microseconds and synchronisations a launch;
4. ``timings``: minimeta on the GPU against PyTorch CUDA eager, the computations of
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
   records both libraries' flags;
5. ``train``: second-order MAML on Omniglot 5-way 1-shot on the GPU for the minutes left
   (``minimeta train --device cuda --minutes``), then ``minimeta eval`` on 600 test episodes.

A phase that fails is recorded and the next one runs; everything lands in
``<out>/gpu_check.json`` and the console. ``--budget`` (seconds) sizes the training to fit.

``--simulate`` runs the whole script without a GPU, at small sizes: CuPy stood in by
``tests/fake_cupy.py``, the CUDA kernels in numba's simulator (``tests/simulated_gpu.py``),
PyTorch on the CPU. It proves the script before the scarce minutes on a GPU.

Run: python benchmarks/gpu_check.py [--out outputs/gpu] [--budget 540] [--simulate]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TESTS = os.path.join(ROOT, "tests")
START = time.perf_counter()


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
    return info


NVVM_PROBE = """
import math
from numba import cuda, types

@cuda.jit
def probe(x):
    i = cuda.grid(1)
    if i < x.size:
        x[i] = math.sqrt(x[i])

cuda.compile_ptx(probe.py_func, (types.float32[::1],), cc=(9, 0))
"""


def nvvm(root=ROOT):
    """Whether numba-cuda can compile kernels here: it needs NVVM (the CUDA toolkit's compiler
    library), which numba-cuda brings only with its [cu13] extra. If it cannot and
    ``gpu_prepare.sh`` carried one, unpack it and point CUDA_HOME at it (for this process and
    its children; numba-cuda searches there after its own places, CuPy reads CUDA_PATH, not
    CUDA_HOME). Called before numba is imported; the probe compiles a kernel that calls
    libdevice to PTX in a child Python (a failed library load is not retried in a process)."""
    def probe():
        done = subprocess.run([sys.executable, "-c", NVVM_PROBE], capture_output=True,
                              text=True, timeout=300)
        if done.returncode == 0:
            return None
        lines = done.stderr.strip().splitlines() or ["no output"]
        return next((line for line in reversed(lines) if "Error" in line), lines[-1])[:300]

    error = probe()
    if error is None:
        return {"nvvm": "found by numba"}
    carried = os.path.join(root, ".gpu", "cuda", "nvvm")
    packed = os.path.join(carried, "lib64", "libnvvm.so.4.xz")
    if not os.path.exists(packed):
        return {"nvvm": f"missing: {error}"}
    import lzma
    import shutil
    import tempfile

    home = tempfile.mkdtemp(prefix="minimeta-cuda-")    # outside the checkout: not carried
    os.makedirs(os.path.join(home, "nvvm", "lib64"))
    with lzma.open(packed) as src, \
            open(os.path.join(home, "nvvm", "lib64", "libnvvm.so.4"), "wb") as dst:
        shutil.copyfileobj(src, dst)
    shutil.copytree(os.path.join(carried, "libdevice"), os.path.join(home, "nvvm", "libdevice"))
    os.environ["CUDA_HOME"] = home
    again = probe()
    return {"nvvm": f"carried, unpacked to {home}" if again is None else f"missing: {again}",
            "nvvm_own_search": error}


def gpu_tests(simulate, timeout, out):
    """The ``gpu`` tests in a child pytest, its output in ``<out>/gpu_tests.log`` (kept when
    the time runs out, so a slow first compilation still shows how far the tests got)."""
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=",
           "-m", "gpu", "-rs", "--durations=10", os.path.join(TESTS, "test_gpu.py")]
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
    from workloads import mm_conv4

    shapes = {k: dict(v, n_tasks=2, queries=2) if small else v
              for k, v in machine.SHAPES.items()}
    ours = {k: lambda k=k: machine.minimeta_cases(k, device, shapes)[0] for k in machine.KEYS}
    ours["conv4"] = lambda: mm_conv4(64 if small else 640, device=device)
    theirs = {}
    if torch is not None:
        for key in machine.KEYS:
            theirs[key] = lambda k=key: machine.torch_case(torch, k, torch_device, shapes)
    return {name: (ours[name], theirs.get(name)) for name in machine.KEYS}


def timings(cp, torch, torch_device, rounds, small, only, seconds):
    """Each case gets ``seconds`` / cases: as many rounds (at least 3, at most ``rounds``) as
    its second warm-up call says fit."""
    sync_mm = cp.cuda.Device().synchronize
    sync_t = (torch.cuda.synchronize if torch_device == "cuda" else lambda: None) \
        if torch is not None else None
    table = {}
    todo = {k: v for k, v in cases("cuda", torch_device, torch, small).items()
            if not only or k in only}
    for name, (make_mine, make_theirs) in todo.items():
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
        fit = int(seconds / len(todo) / max(one_round, 1e-6))
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
        table[name] = row
        say(f"{name:9s} " + " | ".join(
            f"{lib} {r['median_s'] * 1e3:9.2f} ms [{r['min_s'] * 1e3:.2f}-{r['max_s'] * 1e3:.2f}]"
            f" peak {r.get('peak_bytes', 0) / 2**20:7.1f} MiB" for lib, r in row.items()
            if isinstance(r, dict)) + (f" | ratio {row['ratio']:.2f}" if "ratio" in row else "")
            + (f" | vs torch loop {row['ratio_to_torch_loop']:.2f}"
               if "ratio_to_torch_loop" in row else ""))
    return table


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


def train(out, minutes, episodes, device, simulate):
    run_dir = os.path.join(out, "maml5w1s")
    mm = [sys.executable, "-m", "minimeta.cli"]
    size = ["--iterations", "2", "--meta-batch", "2"] if simulate else ["--iterations", "1000000"]
    cmds = [mm + ["train", "--learner", "maml", "--ways", "5", "--shots", "1", "--device", device,
                  "--minutes", f"{minutes:.2f}", "--validate-every", "0", "--out", run_dir,
                  "--overwrite"] + size,
            mm + ["eval", "--checkpoint", os.path.join(run_dir, "checkpoint.npz"),
                  "--episodes", str(episodes), "--device", device,
                  "--report", os.path.join(out, "eval.jsonl")]]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
    if simulate:       # the child processes stand CuPy in too
        env["PYTHONPATH"] = os.pathsep.join([TESTS, env["PYTHONPATH"]])
        cmds = [[sys.executable, os.path.join(HERE, "gpu_check.py"), "--as-simulated"]
                + c[len(mm):] for c in cmds]
    result = {}
    for cmd in cmds:
        say("$ " + " ".join(cmd))
        done = subprocess.run(cmd, capture_output=True, text=True, env=env)
        print(done.stdout[-3000:], done.stderr[-3000:], flush=True)
        if done.returncode:
            raise RuntimeError(f"the command above failed (exit {done.returncode})")
    last = json.loads(open(os.path.join(run_dir, "metrics.jsonl")).readlines()[-1])
    row = json.loads(open(os.path.join(out, "eval.jsonl")).readlines()[-1])
    result.update(iterations=last["iteration"], train_seconds=last.get("train_seconds"),
                  accuracy=row.get("accuracy"), interval=row.get("interval"),
                  episodes=episodes, minutes=minutes)
    return result


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
    parser.add_argument("--out", default="outputs/gpu")
    parser.add_argument("--budget", type=float, default=540,
                        help="seconds for the whole check; training gets what is left")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--episodes", type=int, default=600)
    phases = ["env", "tests", "launches", "timings", "train"]
    parser.add_argument("--phases", nargs="+", default=phases, choices=phases)
    parser.add_argument("--only", nargs="+", help="timing cases (default all)")
    parser.add_argument("--simulate", action="store_true")
    args = parser.parse_args()
    for name, value, least in (("budget", args.budget, 1), ("rounds", args.rounds, 1),
                               ("episodes", args.episodes, 2)):
        if not value >= least:      # (a NaN budget too)
            parser.error(f"--{name} must be at least {least}, got {value}")
    if args.simulate:
        simulated()
        args.rounds, args.episodes = min(args.rounds, 2), min(args.episodes, 4)
    os.makedirs(args.out, exist_ok=True)
    found = {"nvvm": "simulated"} if args.simulate else nvvm()    # before numba's import
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
    report, failed = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "simulated": args.simulate}, []
    path = os.path.join(args.out, "gpu_check.json")
    for phase in args.phases:
        say(f"== {phase}")
        try:
            if phase == "env":
                report[phase] = dict(environment(cp, torch), **found)
            elif phase == "tests":
                report[phase] = gpu_tests(args.simulate, max(60, args.budget / 3), args.out)
                if report[phase]["exit_code"]:
                    failed.append(phase)
            elif phase == "launches":
                from _launch_kernel import launches     # numba.cuda: only once chosen

                report[phase] = launches(cp, args.simulate)
                if not report[phase]["kernel_ran"]:
                    failed.append(phase)
            elif phase == "timings":
                report[phase] = timings(cp, torch, torch_device, args.rounds, args.simulate,
                                        args.only, args.budget / 4)
            elif phase == "train":
                minutes = max(0.05, (args.budget - elapsed() - 120) / 60)
                report[phase] = train(args.out, minutes, args.episodes, "cuda", args.simulate)
            say(json.dumps(report[phase])[:1500])
        except Exception as err:   # record it and go on: the minutes on a GPU are few
            failed.append(phase)
            report[phase] = {"error": f"{type(err).__name__}: {err}"}
            say(f"{phase} FAILED: {report[phase]['error']}")
        with open(path, "w") as f:
            json.dump(report, f, indent=1)
    say(f"report: {path}; failed phases: {failed or 'none'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
