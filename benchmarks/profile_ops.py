"""Where a workload's time goes, by primitive: a profile of the engine, not a benchmark.

Every primitive's ``forward`` (the array work of one op: a kernel, a NumPy call) is timed,
keyed by the primitive, the phase (``forward``, or ``backward``: recorded while a VJP runs) and
the shape of its first input; what the table does not hold is the engine's own bookkeeping,
Python and the optimizer. One workload of ``benchmarks/machine.py`` at minimeta's setting for
``--threads`` cores (workers, kernel split, numba threads; BLAS one thread), ``--steps`` steps
after one warm-up step. With worker threads (MAML's tasks) the ops of two tasks overlap, so the
op times add up to more than the wall time: profile with ``--threads 1`` to see shares.

Ops are named by their own class (an op inheriting its ``forward`` is still itself). The timer
costs 1.5–3 µs per op (a chain of 1000 multiplications and its gradient, timed with and without
it), so the wall time printed is above an untimed run's: by 1–2% for MAML 5-way's 15 000 ops a
meta-iteration, less for the conv workloads' few large ones.

Run: python benchmarks/profile_ops.py [--workload conv4|protonet|maml5|maml20] [--threads 2]
     [--steps 3] [--top 25]
"""
import argparse
import collections
import statistics
import threading
import time

from minimeta.engine import autodiff
from minimeta.selfcheck import primitive_classes
from minimeta.threads import omp_wait_policy

from _timing import apply_malloc_policy, blas_threads
from machine import KEYS, minimeta_cases, set_minimeta


class OpTimer:
    """Wraps every primitive's ``forward``; the outermost call on each thread is timed (a
    forward that runs another primitive's forward is counted once, as itself)."""

    def __init__(self):
        self.totals = collections.defaultdict(lambda: [0, 0.0])    # key → [calls, seconds]
        self.lock, self.local, self.saved = threading.Lock(), threading.local(), []

    def __enter__(self):
        for cls in primitive_classes():     # each concrete primitive, inherited forward or not
            self.saved.append((cls, vars(cls).get("forward")))
            cls.forward = self._timed(cls.forward)
        return self

    def __exit__(self, *exc):
        for cls, own in self.saved:         # as it was: its own forward, or none (inherited)
            if own is None:
                del cls.forward
            else:
                cls.forward = own
        self.saved.clear()

    def _timed(self, forward):
        timer = self

        def timed(op, *arrays):
            if getattr(timer.local, "depth", 0):
                return forward(op, *arrays)
            timer.local.depth = 1
            start = time.perf_counter()
            try:
                return forward(op, *arrays)
            finally:
                spent = time.perf_counter() - start
                timer.local.depth = 0
                phase = "backward" if autodiff.STATE.backward_depth > 0 else "forward"
                shape = tuple(getattr(arrays[0], "shape", ())) if arrays else ()
                with timer.lock:
                    entry = timer.totals[type(op).__name__, phase, shape]
                    entry[0] += 1
                    entry[1] += spent
        return timed


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", choices=KEYS, default="conv4")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    if args.threads < 1 or args.steps < 1 or args.top < 1:
        parser.error("--threads, --steps and --top must be at least 1")
    apply_malloc_policy()
    omp_wait_policy()          # minimeta alone: PyTorch's OpenMP runtime is never loaded
    blas_threads(1)
    run, learner = minimeta_cases(args.workload)
    set_minimeta(args.threads, learner)
    run()                                           # warm-up: compilation, caches, the heap
    walls = []
    with OpTimer() as timer:
        for _ in range(args.steps):
            start = time.perf_counter()
            run()
            walls.append(time.perf_counter() - start)
    wall = statistics.median(walls)
    rows = sorted(timer.totals.items(), key=lambda kv: -kv[1][1])
    ops = sum(calls for calls, _ in timer.totals.values()) / args.steps
    in_ops = sum(seconds for _, seconds in timer.totals.values()) / args.steps
    mean = statistics.fmean(walls)      # the op times are totals: set against the mean
    print(f"{args.workload}, {args.threads} thread(s): {wall * 1e3:.0f} ms a step (median of "
          f"{args.steps}, range {min(walls) * 1e3:.0f}-{max(walls) * 1e3:.0f}, mean "
          f"{mean * 1e3:.0f}); {ops:.0f} ops a step, {in_ops * 1e3:.0f} ms in their forward "
          f"calls, the rest {(mean - in_ops) * 1e3:.0f} ms (engine, Python, optimizer; "
          f"negative: ops of worker threads overlapped)")
    print(f"{'primitive':28s} {'phase':8s} {'first input':22s} {'calls':>6s} {'ms':>8s} "
          f"{'% mean':>7s}")
    for (name, phase, shape), (calls, seconds) in rows[:args.top]:
        ms = seconds / args.steps * 1e3
        print(f"{name:28s} {phase:8s} {str(shape):22s} {calls / args.steps:6.0f} {ms:8.1f} "
              f"{ms / mean / 10:6.1f}%")


if __name__ == "__main__":
    main()
