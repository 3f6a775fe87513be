"""The thread policy: one BLAS thread, numba's parallel kernels on every core.

On this project's 2-core machines, OpenBLAS and numba both start thread pools, and when both
run at once they fight: a 128×128 float32 matmul was measured at 48 µs with one OpenBLAS
thread and 15.6 ms with two while the other core was busy. minimeta's BLAS calls are mostly
small (MAML's per-task matrices, the sinusoid MLP) and never overlap a numba kernel, so:

- BLAS: 1 thread (``threadpoolctl``), the setting every benchmark and example uses;
- numba: all cores for the ``prange`` kernels (im2col, pooling, batch norm, attention), which
  run between BLAS calls, never during one.

``configure()`` applies that policy process-wide; the command line and the examples call it.
Measurements behind the choice: docs/PERFORMANCE.md.
"""
import os


def configure(blas_threads=1, numba_threads=None):
    """Limit BLAS to ``blas_threads`` and numba to ``numba_threads`` (default: all cores).

    Returns the ``threadpoolctl`` limiter (call ``.restore()`` on it to undo the BLAS limit).
    """
    from threadpoolctl import threadpool_limits

    limiter = threadpool_limits(limits=blas_threads, user_api="blas")
    import numba

    numba.set_num_threads(min(numba_threads or os.cpu_count() or 1,
                              numba.config.NUMBA_NUM_THREADS))
    return limiter
