"""Where the GPU path's time goes, case by case: a profile for the scarce minutes on a GPU.

For each of ``gpu_check.py``'s timing cases asked for (default: conv4 and the stacked 5-way
MAML meta-iteration), after two warm-up calls:

1. ``wall``: three calls, each ended by a device synchronisation (seconds);
2. ``host``: one call under cProfile, synchronised at its end: its own time by place (the
   engine, the kernels' wrappers, numba, CuPy, waiting for the GPU ...), the garbage
   collector's pauses, and the functions with the most time of their own (a device read or a
   synchronisation shows as a wait there);
3. ``kernels``: one call under PyTorch's profiler, which records every kernel on the GPU
   (CuPy's, cuBLAS's and numba's too, through CUPTI): GPU time by kernel name;
4. ``ops``: one call with a device synchronisation before and after every engine op: time by
   primitive (host and GPU together; what is left of the wall is outside the ops).

Then ``launch``: what one launch of a tiny numba.cuda kernel costs the host, several ways
(``kernels/_cuda.launch``, through CuPy and through numba; CuPy arrays handed to numba on
CuPy's stream; numba's default).

Before and after on one GPU: ``--tree DIR`` profiles another checkout's engine and kernels
(``DIR/minimeta``, ``DIR/kernels``) with this checkout's cases; ``--trees DIR ...`` runs the
profile once per tree, each in a child process of its own (``.`` is this checkout), then writes
``<out>/compare.txt``: each kernel's GPU time, each primitive's synchronised time and each
case's wall, tree by tree. ``bash benchmarks/gpu_prepare.sh REV`` puts commit REV's two folders
in ``.gpu/trees/REV`` to carry (a GPU session is one machine for minutes; a later session's is
another machine, so a before / after across sessions mixes the change with the machine).

Everything goes to ``<out>/profile.txt`` (and the console), rewritten after every part, so a
run cut short keeps what it found. ``--simulate``: the stand-in CuPy and numba's simulator,
small sizes (a dry run of the script; no PyTorch profile).

Run: python benchmarks/gpu_profile.py [--out outputs/profile] [--only conv4 maml5_stacked]
     [--tree DIR | --trees DIR [DIR ...]] [--simulate]
"""
import argparse
import cProfile
import collections
import io
import os
import pstats
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path[:0] = [HERE, ROOT]
LINES = []


def say(*parts):
    text = " ".join(str(p) for p in parts)
    print(text, flush=True)
    LINES.append(text)


def wall(call, sync, n=3):
    times = []
    for _ in range(n):
        start = time.perf_counter()
        call()
        sync()
        times.append(time.perf_counter() - start)
    return sorted(times)


# Where a function's own time goes. A Python function: by its file's folder, the libraries'
# first (numba-cuda has a kernels/ folder too; minimeta's kernels are named *_numba.py). A C
# function (file "~"): by its name, e.g. "<method 'reshape' of 'cupy._core.core._ndarray_base'
# objects>", a wait for the GPU ("synchronize") first.
FOLDERS = (("numba", ("/numba/", "/numba_cuda/")), ("CuPy", ("/cupy/", "/cupy_backends/",
                                                            "/fake_cupy.py")),
           ("NumPy", ("/numpy/",)), ("minimeta engine", ("/minimeta/engine/",)),
           ("minimeta kernels", ("/kernels/",)), ("minimeta's other", ("/minimeta/",)))
NAMES = (("waiting for the GPU", "synchronize"), ("CuPy", "cupy"), ("numba", "numba"),
         ("NumPy", "numpy"))
OTHER = "Python's own"


def place(file, name):
    """Where a function's own time goes (``FOLDERS``, ``NAMES``; else ``OTHER``: builtins and
    the standard library)."""
    if file == "~":
        return next((p for p, key in NAMES if key in name), OTHER)
    return next((p for p, keys in FOLDERS if any(k in file for k in keys)), OTHER)


def by_place(stats):
    """{place: seconds of own time} of a ``pstats.Stats.stats`` table."""
    spent = collections.Counter()
    for (file, _, name), (_, _, own, _, _) in stats.items():
        spent[place(file, name)] += own
    return spent


def host(call, sync, top=30):
    """The call under cProfile: its time, the garbage collector's pauses in it, its own time by
    place (``place``: whose Python the host runs, and how long it waits for the GPU at the
    end), then the functions with the most time of their own."""
    import gc

    pauses, started = [], []

    def timed(phase, info):
        if phase == "start":
            started.append(time.perf_counter())
        elif started:
            pauses.append(time.perf_counter() - started.pop())
    gc.callbacks.append(timed)
    prof = cProfile.Profile()
    begin = time.perf_counter()
    try:
        prof.enable()
        call()
        sync()
    finally:
        prof.disable()
        gc.callbacks.remove(timed)
    whole = time.perf_counter() - begin
    text = io.StringIO()
    stats = pstats.Stats(prof, stream=text)
    spent = by_place(stats.stats)
    lines = [f"profiled call {whole * 1e3:.1f} ms (cProfile's overhead in it); garbage "
             f"collector: {len(pauses)} pauses, {sum(pauses) * 1e3:.1f} ms",
             "own time by place: " + ", ".join(f"{p} {s * 1e3:.1f} ms"
                                               for p, s in spent.most_common())]
    stats.sort_stats("tottime").print_stats(top)
    return "\n".join(lines + [line for line in text.getvalue().splitlines()[6:]
                              if line.strip()])


def kernels(call, sync, torch, top=30):
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        call()
        sync()
    rows, span = collections.defaultdict(lambda: [0, 0.0]), []
    for evt in prof.profiler.kineto_results.events():     # every GPU activity, whoever's
        if "CUDA" in str(evt.device_type()):
            rows[evt.name()][0] += 1
            rows[evt.name()][1] += evt.duration_ns() / 1e3
            span += [evt.start_ns(), evt.end_ns()]
    total = sum(r[1] for r in rows.values())
    lines = [f"GPU time in kernels: {total / 1e3:.2f} ms, {sum(r[0] for r in rows.values())} "
             f"kernels, {len(rows)} names; first to last {(max(span) - min(span)) / 1e6:.2f} "
             "ms" if span else "no GPU activity recorded"]
    for name, (n, us) in sorted(rows.items(), key=lambda kv: -kv[1][1])[:top]:
        lines.append(f"  {us / 1e3:9.3f} ms {n:6d}x  {name[:110]}")
    return "\n".join(lines)


def ops(call, sync, top=25):
    from minimeta.engine import autodiff

    apply, spent, counts = autodiff.apply, collections.Counter(), collections.Counter()

    def timed(op, *args, **kwargs):
        sync()
        start = time.perf_counter()
        try:
            return apply(op, *args, **kwargs)
        finally:
            sync()
            spent[type(op).__name__] += time.perf_counter() - start
            counts[type(op).__name__] += 1

    modules = [m for m in list(sys.modules.values())
               if getattr(m, "__name__", "").startswith("minimeta")
               and getattr(m, "apply", None) is apply]
    for m in modules:
        m.apply = timed
    start = time.perf_counter()
    try:
        call()
        sync()
    finally:
        for m in modules:
            m.apply = apply
    whole = time.perf_counter() - start
    lines = [f"synchronised call {whole * 1e3:.2f} ms, in ops {sum(spent.values()) * 1e3:.2f} "
             f"ms ({sum(counts.values())} ops)"]
    for name, s in spent.most_common(top):
        lines.append(f"  {s * 1e3:9.3f} ms {counts[name]:6d}x  {name}")
    return "\n".join(lines)


def launch_costs(cp, simulate):
    import _launch_kernel
    from minimeta.kernels import _cuda

    kernel, a = _launch_kernel.add_one, cp.zeros(256, dtype=cp.float32)
    n = 20 if simulate else 2000
    stream = lambda: _cuda.device_args([a])[1]          # noqa: E731
    ways = {"_cuda.launch": lambda: _cuda.launch(kernel, a.size, a),
            "_cuda.launch, MINIMETA_CUDA_LAUNCH=numba":
                lambda: _launch_kernel.numbas_launch(kernel, a.size, a)}
    if not simulate:
        ways["cupy array, CuPy's stream"] = lambda: kernel[2, 128, stream()](a)
        ways["cupy array, numba default"] = lambda: kernel[2, 128](a)
        ways["as_cuda_array only"] = lambda: _cuda.cuda.as_cuda_array(a, sync=False)
        ways["cupy elementwise a += 1"] = lambda: a.__iadd__(1)
    lines = []
    for name, fn in ways.items():
        try:
            lines.append(f"  {_launch_kernel.us_per_call(cp, fn, n):8.1f} us  {name}")
        except Exception as err:
            lines.append(f"  failed: {name}: {type(err).__name__}: {err}"[:300])
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="outputs/profile")
    parser.add_argument("--only", nargs="+", default=["conv4", "maml5_stacked"])
    parser.add_argument("--simulate", action="store_true")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--tree", help="the checkout whose minimeta and kernels are profiled "
                                      "(default: this one)")
    which.add_argument("--trees", nargs="+", help="profile each checkout in turn, a child "
                                                  "process each, then compare them")
    args = parser.parse_args()
    if args.trees:
        return compare_trees(args)
    if args.tree:
        if not os.path.isdir(os.path.join(args.tree, "minimeta")):
            parser.error(f"--tree {args.tree}: no minimeta/ there")
        sys.path.insert(0, os.path.abspath(args.tree))
        say("tree:", os.path.abspath(args.tree))
    import gpu_check

    if args.simulate:
        gpu_check.simulated()
    os.makedirs(args.out, exist_ok=True)
    if not args.simulate:
        say("NVVM:", gpu_check.nvvm(ROOT)["nvvm"])
    import minimeta
    from minimeta import kernels as loaded
    from minimeta.engine.backend import cupy_module

    say("minimeta:", os.path.dirname(minimeta.__file__), "| kernels:",
        os.path.dirname(loaded.__file__))
    cp = cupy_module()
    torch = None if args.simulate else __import__("torch")
    sync = cp.cuda.Device().synchronize
    made = gpu_check.cases("cuda", "cuda", None, args.simulate)
    path = os.path.join(args.out, "profile.txt")
    parts = [("launch", None)] + [(key, part) for key in args.only
                                  for part in ("wall", "host", "kernels", "ops")]
    calls = {}
    for key, part in parts:
        start = time.perf_counter()
        try:
            if key == "launch":
                text = launch_costs(cp, args.simulate)
            else:
                if key not in calls:
                    calls[key] = made[key][0]()
                    for _ in range(2):
                        calls[key]()
                    sync()
                call = calls[key]
                if part == "wall":
                    text = " ".join(f"{t * 1e3:.2f} ms" for t in wall(call, sync))
                elif part == "host":
                    text = host(call, sync)
                elif part == "kernels":
                    text = "no PyTorch profile simulated" if torch is None else \
                        kernels(call, sync, torch)
                else:
                    text = ops(call, sync)
        except Exception as err:
            text = f"FAILED: {type(err).__name__}: {err}"[:500]
        say(f"== {key} {part or ''} ({time.perf_counter() - start:.1f} s)\n{text}")
        with open(path, "w") as f:
            f.write("\n".join(LINES) + "\n")
    return 0


def compare_trees(args):
    """``gpu_profile.py --tree T`` for each tree T in a child process (into ``<out>/<i>``),
    then ``<out>/compare.txt``: a row per kernel (GPU ms), per primitive (synchronised ms), per
    place of the host's own time (profiled ms) and per case (median wall), a column per tree.
    Returns the worst child's exit code."""
    os.makedirs(args.out, exist_ok=True)
    tables, codes = [], []
    for i, tree in enumerate(args.trees):
        out = os.path.join(args.out, str(i))
        cmd = [sys.executable, os.path.abspath(__file__), "--tree", tree, "--out", out,
               "--only", *args.only] + (["--simulate"] if args.simulate else [])
        say(f"== tree {i}: {tree}")
        codes.append(subprocess.run(cmd).returncode)
        try:
            tables.append(parse(open(os.path.join(out, "profile.txt")).read()))
        except OSError:
            tables.append({})
    rows = sorted({row for table in tables for row in table},
                  key=lambda r: (r[0], r[1], -max(t.get(r, 0.0) for t in tables)))
    lines = ["ms, tree by tree: " + "; ".join(f"{i} = {t}" for i, t in enumerate(args.trees))]
    for case, kind, name in rows:
        cells = " ".join(f"{t[(case, kind, name)]:10.3f}" if (case, kind, name) in t
                         else f"{'-':>10s}" for t in tables)
        lines.append(f"{case:15s} {kind:7s} {cells}  {name[:70]}")
    text = "\n".join(lines)
    with open(os.path.join(args.out, "compare.txt"), "w") as f:
        f.write(text + "\n")
    say(text)
    return max(codes)


def parse(text):
    """{(case, "wall" | "kernel" | "op" | "host", name): ms} of one profile.txt: a case's
    median wall, each kernel's GPU time (its name without numba's ABI tags), each primitive's
    time, the host's own time by place under cProfile."""
    found, case, part = {}, None, None
    for line in text.splitlines():
        head = re.match(r"== (\S+) (\w+) \(", line)
        if head:
            case, part = head.groups()
            continue
        if part == "host" and line.startswith("own time by place: "):
            for place, ms in re.findall(r"([^,]+?) ([\d.]+) ms", line.split(": ", 1)[1]):
                found[(case, "host", place.strip())] = float(ms)
        if part == "wall" and line.strip().endswith("ms"):
            times = sorted(float(t) for t in re.findall(r"([\d.]+) ms", line))
            found[(case, "wall", "median")] = times[len(times) // 2]
        row = re.match(r" +([\d.]+) ms +\d+x  (.+)$", line)
        if row and part in ("kernels", "ops"):
            name = re.sub(r"\[abi:.*", "", row.group(2)) if part == "kernels" else row.group(2)
            key = (case, "kernel" if part == "kernels" else "op", name.strip())
            found[key] = found.get(key, 0.0) + float(row.group(1))
    return found


if __name__ == "__main__":
    sys.exit(main())
