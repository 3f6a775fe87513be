"""Benchmark: from how much work a numba kernel gains from numba's other threads.

Under minimeta's process policy (``minimeta.threads.configure``: OpenMP threads that sleep
after each loop) a ``prange`` loop on several threads first wakes the sleeping ones, which cost
40–60 µs a loop on this project's 2-vCPU machines: a select of 10 000 values took 86 µs on 2
threads and 8 µs on one. The kernel table's ``parallel_from`` (``kernels/__init__.py``) is the
size (elements of a call's largest array) from which a row's CPU kernel uses every thread;
below it ``lookup`` runs the kernel on the calling thread (``kernels/threads.one_thread``).
This script times each such kernel, float32, at every power of two from 2¹² to 2²², on one
numba thread and on all, called directly (not through ``lookup``), and prints the ratio and the
size from which all threads win at every larger size measured, beside the table's.

Each time is the median of ``--repeats`` batches, one thread and all threads interleaved batch
by batch. The crossover moves with the machine (the cost of a wake-up, the cores) and from run
to run by a power of two, so each of the table's values is the smallest power of two from which
all threads won in three of four runs here (docs/PERFORMANCE.md, "Small kernels on one
thread"): near the crossover either way costs little.
Run: python benchmarks/kernel_threads.py [--repeats 7] [--only where batch_norm]
"""
import argparse
import statistics
import time

import numpy as np

from minimeta.threads import configure
from _timing import positive

SIZES = [1 << k for k in range(12, 23)]


def inputs(name, n, rng):
    """The arguments of row ``name``'s CPU kernel for about ``n`` elements in its largest
    array (the size ``lookup`` compares with ``parallel_from``)."""
    def f32(*shape):
        return rng.standard_normal(shape).astype(np.float32)
    images = max(1, n // (64 * 8 * 8))               # (images, 64 channels, 8, 8)
    x, g = f32(images, 64, 8, 8), f32(images, 64, 8, 8)
    w, b = f32(64), f32(64)
    if name == "where":
        return x > 0, x, np.float32(0)
    if name == "relu_grad":
        return x, g
    if name == "max_pool2d":
        return x, 2, 2
    if name == "max_pool2d_backward":               # its largest array is the pooled g
        big = f32(max(1, n * 4 // (64 * 8 * 8)), 64, 8, 8)
        from minimeta.kernels import pool_numba
        y, argmax = pool_numba.max_pool2d(big, 2, 2)
        return y, argmax, big.shape
    if name in ("batch_norm", "batch_norm_backward", "batch_norm_double_backward"):
        extra = {"batch_norm": (), "batch_norm_backward": (g,),
                 "batch_norm_double_backward": (g, f32(x.size + 128))}[name]
        return (x, w, b, *extra)
    if name == "add_bias":
        return x, b
    if name == "bias_grad":
        return (g,)
    tasks = max(1, n // (75 * 64))                   # episodes of 75 queries, 25 supports
    q, s, y = f32(tasks, 75, 64), f32(tasks, 25, 64), f32(tasks, 25, 5)
    return (q, s, y) if name == "cosine_attention" else (q, s, y, f32(tasks, 75, 5))


def timed(kernel, args, threads, batch):
    import numba

    numba.set_num_threads(threads)
    start = time.perf_counter()
    for _ in range(batch):
        kernel(*args)
    return (time.perf_counter() - start) / batch


def main():
    from minimeta import kernels as K

    rows = [name for name, row in K.TABLE.items() if row.parallel_from]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=positive, default=7)
    parser.add_argument("--only", nargs="+", choices=rows, default=rows)
    args = parser.parse_args()
    cores = configure()
    if cores < 2:
        raise SystemExit("kernel_threads.py: one core here, nothing to compare")
    print(f"{cores} numba threads against 1, float32, medians of {args.repeats}; "
          "time on 1 thread / on all (µs), ratio all / 1")
    rng = np.random.default_rng(0)
    for name in args.only:
        kernel = K.resolve(K.TABLE[name].cpu)
        cells, wins, seen = [], [], set()
        for n in SIZES:
            call = inputs(name, n, rng)
            size = max(getattr(v, "size", 1) for v in call)
            if size in seen:            # (attention's episodes: the smallest sizes are one)
                continue
            seen.add(size)
            kernel(*call)                                     # compiled, memory touched
            once = timed(kernel, call, 1, 1)
            batch = max(1, int(0.02 / max(once, 1e-6)))
            one, every = [], []
            for _ in range(args.repeats):
                one.append(timed(kernel, call, 1, batch))
                every.append(timed(kernel, call, cores, batch))
            a, b = statistics.median(one), statistics.median(every)
            cells.append(f"{size}: {a * 1e6:.0f}/{b * 1e6:.0f} ({b / a:.2f})")
            wins.append((size, b < a))
        sure = next((s for i, (s, _) in enumerate(wins) if all(w for _, w in wins[i:])), None)
        print(f"{name}: table {K.TABLE[name].parallel_from}, all threads win from "
              f"{sure if sure else 'none of these sizes'}")
        print("    " + "; ".join(cells))


if __name__ == "__main__":
    main()
