"""The process policy: one BLAS thread, numba's parallel kernels on every core, fixed malloc
thresholds.

On this project's 2-core machines, OpenBLAS and numba both start thread pools, and when both
run at once they fight: a 128×128 float32 matmul was measured at 48 µs with one OpenBLAS
thread and 15.6 ms with two while the other core was busy. minimeta's BLAS calls are mostly
small (MAML's per-task matrices, the sinusoid MLP) and never overlap a numba kernel, so:

- BLAS: 1 thread (``threadpoolctl``), the setting every benchmark and example uses;
- numba: all cores for the ``prange`` kernels (im2col, pooling, batch norm, attention), which
  run between BLAS calls, never during one.

And memory: the engine allocates and frees many mid-sized arrays per op. glibc's malloc moves
its mmap and trim thresholds as blocks are freed, and after some workloads (PyTorch's MAML,
or minimeta's own task loop, run earlier in the process) it ended up returning heap memory to
the OS at every iteration and faulting it back: ~600 minor page faults per sinusoid
meta-iteration instead of 1, 25–50% slower. ``malloc_policy()`` fixes both thresholds
(M_MMAP_THRESHOLD 32 MiB, M_TRIM_THRESHOLD 256 MiB), which turns the adjustment off; the cost
is that up to 256 MiB of freed heap stays with the process.

``configure()`` applies both policies process-wide; the command line and the examples call it,
the benchmarks call ``malloc_policy()`` and set their threads themselves. Measurements behind
the choices: docs/PERFORMANCE.md.

Read next: ``minimeta/cli.py`` (the command line).
"""
import ctypes
import ctypes.util
import os
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (glibc's malloc.h)


def malloc_policy(mmap_threshold=32 << 20, trim_threshold=256 << 20):
    """Fix glibc malloc's mmap and trim thresholds; True if applied (Linux glibc), else False.

    >>> isinstance(malloc_policy(), bool)
    True
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, mmap_threshold)
                and mallopt(M_TRIM_THRESHOLD, trim_threshold))


def configure(blas_threads=1, numba_threads=None):
    """Limit BLAS to ``blas_threads`` and numba to ``numba_threads`` (default: all cores), and
    apply ``malloc_policy()``.

    Returns the ``threadpoolctl`` limiter (call ``.restore()`` on it to undo the BLAS limit).
    """
    from threadpoolctl import threadpool_limits

    malloc_policy()
    limiter = threadpool_limits(limits=blas_threads, user_api="blas")
    import numba

    numba.set_num_threads(min(numba_threads or os.cpu_count() or 1,
                              numba.config.NUMBA_NUM_THREADS))
    return limiter
