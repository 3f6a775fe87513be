"""Shared timing helpers for the benchmark scripts: medians of repeated runs, and PyTorch if any.

Benchmarks print medians (robust to the noise of a shared 2-core machine) and ratios against a
reference measured in the same run. They are scripts, never tests.

Order mattered in one process: after PyTorch's sinusoid MAML had run, minimeta's
meta-iteration took ~25% longer, with ~600 minor page faults per iteration instead of 1 (glibc's
adaptive malloc thresholds had moved, and the heap returned memory to the OS and faulted it
back at every iteration), while PyTorch timed after minimeta was unchanged. The benchmarks
apply minimeta's malloc policy (``minimeta/threads.py``, fixed thresholds, as the examples and
the command line do); ``engine_overhead.py`` and ``sinusoid_maml.py`` time every minimeta case
before PyTorch's, ``workloads.py`` minimeta's before PyTorch's workload by workload, and
``machine.py`` runs each library in a process of its own.
"""
import statistics
import time

from minimeta.threads import malloc_policy, omp_wait_policy


def median_time(fn, repeats=7, warmup=2, min_time=0.2):
    """Median seconds of one call of ``fn`` over ``repeats`` timed batches (after warm-up).

    Each batch runs ``fn`` enough times to take about ``min_time / repeats`` seconds, so very
    short calls are not drowned in timer noise.
    """
    for _ in range(warmup):
        fn()
    start = time.perf_counter()
    fn()
    once = max(time.perf_counter() - start, 1e-7)
    inner = max(1, int(min_time / repeats / once))
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(inner):
            fn()
        samples.append((time.perf_counter() - start) / inner)
    return statistics.median(samples)


def add_malloc_flag(parser):
    """The ``--default-malloc`` option: time with glibc's adaptive thresholds instead."""
    parser.add_argument("--default-malloc", action="store_true",
                        help="leave glibc's adaptive malloc thresholds on (minimeta/threads.py)")


def apply_malloc_policy(args=None):
    """minimeta's malloc policy, as the examples and the command line apply it, unless the
    command line asked for ``--default-malloc``."""
    if not getattr(args, "default_malloc", False):
        malloc_policy()


def blas_threads(n):
    """Limit BLAS to ``n`` threads for the rest of the process (threadpoolctl, imported here
    so that scripts importing these helpers run where it is not installed)."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(n, user_api="blas")


def apply_omp_policy(threads=1):
    """For scripts that time minimeta and PyTorch in one process: PyTorch imported first, then
    minimeta's wait policy (``minimeta/threads.py``). That policy does not reach numba there: a
    process has one OpenMP runtime. PyTorch loads its own ``libgomp.so.1``, which reads the
    policy at PyTorch's import (unset: spinning, its default), and numba's loops bind to it
    (``LD_DEBUG=bindings``). On one thread no OpenMP thread waits, so the policy does not
    matter; on more (``threads``), this prints a note: ``machine.py`` times each library in a
    process of its own. Returns the torch module, or None."""
    import warnings

    torch = try_torch()
    with warnings.catch_warnings():   # the runtime loaded first: the note below says so
        warnings.simplefilter("ignore", RuntimeWarning)
        omp_wait_policy()
    if torch is not None and threads > 1:
        print("note: minimeta and PyTorch share one OpenMP runtime in this process, PyTorch's, "
              "spinning; benchmarks/machine.py times each in its own process")
    return torch


def positive(text):
    """argparse type: an integer >= 1 (a count of repeats, rounds, threads, images)."""
    from minimeta.experiments.options import count

    return count(1)(text)


def minimeta_threads(n):
    """minimeta on ``n`` threads: numba's loops and the split of a kernel's work (BLAS is set
    apart, ``blas_threads``). Without it numba starts one thread per core, which on a busy
    machine made a "1 thread" row of tiny ops 30× slower."""
    import numba

    from minimeta.kernels import threads as kernel_threads

    kernel_threads.set_split_threads(n)
    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))


def torch_installed():
    """Whether PyTorch can be imported here, without importing it (and its OpenMP runtime)."""
    import importlib.util

    return importlib.util.find_spec("torch") is not None


def try_torch():
    """The torch module if installed (CPU build), else None. Never a dependency."""
    try:
        import torch
    except ImportError:
        return None
    return torch


def fmt(seconds):
    """Format seconds with a unit that keeps three significant digits."""
    if seconds < 1e-3:
        return f"{seconds * 1e6:8.1f} us"
    if seconds < 1:
        return f"{seconds * 1e3:8.2f} ms"
    return f"{seconds:8.2f} s "


def report(name, ours, reference=None, ref_name="torch"):
    """Print one line: our median, the reference's, and the ratio ours / reference."""
    line = f"{name:<44s} minimeta {fmt(ours)}"
    if reference is not None:
        line += f"   {ref_name} {fmt(reference)}   ratio {ours / reference:5.2f}"
    print(line, flush=True)
