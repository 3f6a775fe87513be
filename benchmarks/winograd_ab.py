"""Benchmark: this checkout's Winograd kernels against another version of them, in one process.

Whole-workload runs (``machine.py --before``) move by 10-20% between rounds on a shared
machine; a change to one kernel is better timed beside the old kernel in the same process,
the two called in turn, the order swapped each repetition, and read as paired ratios. The
other version is a copy of ``kernels/winograd_numba.py`` (for example ``git show
HEAD~1:kernels/winograd_numba.py > /tmp/winograd_before.py``), loaded as a module of
``minimeta.kernels`` beside the current one.

For each shape (conv4's 64-channel layers at ProtoNet's 300 images, conv4's 640, a MAML
query set of 75 and a support set of 5): forward and weight gradient (the input gradient is
the forward on the flipped filters), float32, on ``--threads`` (minimeta's process policy:
one BLAS thread, the kernels' chunks over the threads). Prints each median and the median of
new / old with its range. Calibrate with an A/A run (this checkout's own file as the other
version): on 2026-12-03 two such runs read 1.02-1.09 and 0.92-1.01, so a difference under
about 10% is this harness's noise.

Run: python benchmarks/winograd_ab.py /tmp/winograd_before.py [--threads 1] [--reps 15]
"""
import argparse
import importlib.util
import os
import statistics
import sys
import time

import numpy as np

import minimeta.threads
from minimeta.kernels import winograd_numba as new
from _timing import positive

SHAPES = [(300, 64, 14), (640, 64, 14), (300, 64, 7), (75, 64, 14), (5, 64, 14)]


def load_before(path):
    """The other version, as ``minimeta.kernels.winograd_before`` (its relative imports of
    ``.threads`` then find this checkout's)."""
    if not os.path.isfile(path):
        raise SystemExit(f"winograd_ab: no file {path!r} (the other winograd_numba.py)")
    spec = importlib.util.spec_from_file_location("minimeta.kernels.winograd_before", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module     # (numba's cache finds a kernel's module by its name)
    spec.loader.exec_module(module)
    return module


def paired(calls, reps):
    """Median seconds of each call and the new / old ratios, the two called in turn."""
    times = {name: [] for name in calls}
    for r in range(reps):
        for name in (("old", "new") if r % 2 else ("new", "old")):
            start = time.perf_counter()
            calls[name]()
            times[name].append(time.perf_counter() - start)
    ratios = [a / b for a, b in zip(times["new"], times["old"])]
    return {k: statistics.median(v) for k, v in times.items()}, ratios


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", help="the other version of kernels/winograd_numba.py")
    parser.add_argument("--threads", type=positive, default=1)
    parser.add_argument("--reps", type=positive, default=15)
    args = parser.parse_args()
    old = load_before(args.before)
    minimeta.threads.configure(1, args.threads)
    rng = np.random.default_rng(0)
    print(f"{args.threads} thread(s), {args.reps} repetitions (4x more under 100 images)")
    for n, c, side in SHAPES:
        x = rng.standard_normal((n, c, side, side)).astype(np.float32)
        w = rng.standard_normal((64, c, 3, 3)).astype(np.float32)
        g = rng.standard_normal((n, 64, side, side)).astype(np.float32)
        for what in ("forward", "weight grad"):
            calls = {name: (lambda m=m: m.conv2d(x, w, 1)) if what == "forward" else
                     (lambda m=m: m.conv2d_weight_grad(x, g, 1))
                     for name, m in (("old", old), ("new", new))}
            for call in calls.values():
                call()                                  # compile, warm the caches
            medians, ratios = paired(calls, args.reps * (4 if n < 100 else 1))
            print(f"{n}x{c}x{side}x{side} {what:11s}: old {1e3 * medians['old']:7.2f} ms, new "
                  f"{1e3 * medians['new']:7.2f} ms, new / old {statistics.median(ratios):.2f} "
                  f"({min(ratios):.2f}-{max(ratios):.2f})", flush=True)


if __name__ == "__main__":
    main()
