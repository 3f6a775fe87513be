"""The process policy: one BLAS thread, the cores shared out by minimeta itself, fixed malloc
thresholds.

On this project's 2-core machines, OpenBLAS and numba both start thread pools, and when both
run at once they fight: a 128×128 float32 matmul was measured at 48 µs with one OpenBLAS
thread and 15.6 ms with two while the other core was busy (OpenBLAS's threads spin while they
wait). So BLAS gets **one thread**, always, and minimeta shares out the cores itself, one way
at a time:

- the tasks of a meta-batch (and evaluation episodes) run on ``workers`` threads, one per core
  it may use (``engine/workers.py``: its affinity mask, and no more than its control group's
  CPU quota, as a container started with ``--cpus 2`` sees every core of the host but may use
  two); each worker's kernels, GEMM and numba loops, stay on its thread;
- outside them, one large kernel splits its independent pieces over the cores
  (``kernels/threads.py``), each piece again on one BLAS and one numba thread;
- numba's ``prange`` kernels (im2col, pooling, batch norm, attention, select) use every core
  when called from the main thread, one when called from a worker.

How many: the cores this process may use, or ``--threads N`` (``configure(threads=N)``).
``OMP_NUM_THREADS`` is not read (it sizes OpenMP's pools, and minimeta's threads are its
own): to give a process fewer cores, pass ``--threads`` or run it under ``taskset``, which
every count above follows; ``NUMBA_NUM_THREADS`` caps numba's loops only.

No core ever runs two busy threads of ours. Measured, with another process keeping one core
busy as well: docs/PERFORMANCE.md. Where numba has neither OpenMP nor TBB, its fallback
threading layer aborts the process when two threads run its kernels, so there the tasks and
kernel pieces run one at a time (``kernels.threads.concurrent``; one warning says so).

And memory: the engine allocates and frees many mid-sized arrays per op. glibc's malloc moves
its mmap and trim thresholds as blocks are freed, and after some workloads (PyTorch's MAML,
or minimeta's own task loop, run earlier in the process) it ended up returning heap memory to
the OS at every iteration and faulting it back: ~600 minor page faults per sinusoid
meta-iteration instead of 1, 25–50% slower. ``malloc_policy()`` fixes both thresholds
(M_MMAP_THRESHOLD 32 MiB, M_TRIM_THRESHOLD 1 GiB), which turns the adjustment off, and serves
blocks of every size from the heap (M_MMAP_MAX 0): glibc maps each block over 32 MiB afresh and
unmaps it when freed, so conv4's 128 MiB activations on 640 images were faulted in page by page
at every step (33 000–56 000 minor faults per forward + backward, 15–20% of its time). The
cost, as with PyTorch's and CuPy's caching allocators: up to 1 GiB of freed heap stays with the
process for reuse (peaks measured unchanged). It also gives malloc one arena (heap) per core:
glibc's default, one per thread, let each hold free blocks of its own (a higher peak), and a
single one shared made the workers wait on each other's allocations (slower).

And OpenMP's threads (numba's ``omp`` threading layer) sleep when a loop ends instead of
spinning on the cores the next kernel wants (``omp_wait_policy``), where minimeta sets the
policy before any OpenMP runtime loads: a process has one runtime, and numba's loops run in
whichever came first (PyTorch's, if PyTorch was imported first; a warning says so).

And a ceiling: a run too large for the machine had grown until the kernel's OOM killer ended it
(exit 137, no word said). Inside ``memory_ceiling()`` (the command line's computing commands run
there) the process's private memory may grow by no more than nine tenths of the memory
available, so the allocation that would pass it fails: a ``MemoryError``, which the command line
reports in one line, training after saving its whole iterations (and ``release``, clearing
the frames its traceback holds, frees the run's arrays for what comes after: the curve).

``configure()`` applies these policies process-wide; the command line (``--threads N``) and
the examples call it. The benchmarks set their threads themselves and apply the pieces they
need (``malloc_policy()``, ``omp_wait_policy()``, or both).

Read next: ``minimeta/experiments/demo.py`` (minimeta demo: both families in minutes).
"""
import contextlib
import ctypes
import ctypes.util
import numbers
import os
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_MMAP_MAX, M_ARENA_MAX = -1, -3, -4, -8  # glibc's malloc.h


def malloc_policy(mmap_threshold=32 << 20, trim_threshold=1 << 30, arenas=None, mmap_max=0):
    """Fix glibc malloc's mmap and trim thresholds and its number of arenas, and serve every
    block from the heap (``mmap_max=0``); True if applied (Linux glibc), else False.

    Arenas (``arenas``, default: one per core this process may use, ``kernels.threads.cores``,
    whatever ``--threads`` says: an arena is only made when a new thread first allocates, so a
    spare one costs nothing): as many heaps as threads that run at once. glibc's default, an
    arena per thread up to 8 per core, gave the main thread's heap and each worker's their own
    free blocks (the 2-worker MAML meta-iteration peaked at 522 MiB with an arena per thread,
    492 MiB with one, 2026-11-30; 432 MiB with 3 arenas, 391 with 2, 396 with 1, 2026-12-02).
    One arena shared by two workers made every allocation of one wait on the other's lock: the
    same iteration 6–12% slower than with two, at the same peak (docs/PERFORMANCE.md, "Max
    pooling without branches"). glibc reads the limit once, when a thread first needs an arena
    after it is set, and keeps it: a later call cannot change the count, so the policy comes
    first (``configure`` applies it before any worker starts). No mmap: a
    block over 32 MiB (conv4's first layer on 640 images: 128 MiB each) was a fresh mapping
    every time, 32 768 page faults to fill; from the heap it reuses memory already faulted in
    (docs/PERFORMANCE.md, "Process policy").

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
    if arenas is None:
        from .kernels.threads import cores
        arenas = cores()
    return bool(mallopt(M_MMAP_THRESHOLD, mmap_threshold)
                and mallopt(M_TRIM_THRESHOLD, trim_threshold)
                and mallopt(M_MMAP_MAX, mmap_max)
                and mallopt(M_ARENA_MAX, arenas))


def omp_wait_policy(policy="PASSIVE"):
    """OpenMP threads that sleep as soon as a parallel loop ends (``OMP_WAIT_POLICY``), unless
    the environment already names a policy; returns the one in force. GNU OpenMP's default
    keeps each of numba's loop threads spinning for 300 000 rounds (``GOMP_SPINCOUNT``) after
    every ``prange`` loop, on a core where minimeta's next kernel piece wants to run: passive,
    a 60-way ProtoNet episode on two cores took 8–15% less time (18% with the other core
    busy), MAML and the command line's training runs the same (docs/PERFORMANCE.md, "Process
    policy"). The runtime reads it once, when it loads: so this must come before numba's first
    parallel kernel (``configure`` calls it first).

    A process has one OpenMP runtime for all its libraries: where one was loaded before (PyTorch
    brings its own ``libgomp`` and numba's loops bind to it), it read its policy then, and
    setting the variable now changes nothing; a warning says so (``openmp_loaded``)."""
    if "OMP_WAIT_POLICY" in os.environ:
        return os.environ["OMP_WAIT_POLICY"]
    os.environ["OMP_WAIT_POLICY"] = policy
    loaded = openmp_loaded()
    if loaded:
        import warnings

        from .kernels.threads import user_stacklevel

        warnings.warn(f"omp_wait_policy: an OpenMP runtime was loaded before OMP_WAIT_POLICY="
                      f"{policy} could be set ({loaded[0]}); numba's loops run in it, under its "
                      f"policy (spinning by default: a conv net's step 10-30% slower on 2 "
                      f"cores); set OMP_WAIT_POLICY={policy} before Python starts, or configure "
                      f"minimeta before importing PyTorch", RuntimeWarning,
                      stacklevel=user_stacklevel())
    return policy


def openmp_loaded(maps="/proc/self/maps"):
    """The OpenMP runtimes (GNU ``libgomp``, LLVM ``libomp``, Intel ``libiomp5``) already mapped
    into this process, by path; [] where none is, or where the process map cannot be read (not
    Linux).

    >>> openmp_loaded(maps="/nonexistent")
    []
    """
    try:
        with open(maps) as f:
            fields = [line.split(None, 5) for line in f]
    except OSError:
        return []
    paths = [f[5].strip() for f in fields if len(f) == 6]
    names = ("libgomp", "libomp", "libiomp5")
    return sorted({p for p in paths if os.path.basename(p).startswith(names)})


def configure(blas_threads=1, threads=None):
    """Limit BLAS to ``blas_threads``; give numba, and the split of one kernel's work
    (``kernels/threads.py``), ``threads`` (default: every core this process may use); apply
    ``omp_wait_policy()`` and ``malloc_policy()``. Returns the number of threads, for the
    learners' ``workers``.

    The BLAS limit is process-wide (``threadpoolctl``); numba's count is per thread, so it is
    set for the calling thread and for threads that touch the kernels later
    (``kernels.threads.set_numba_threads``; minimeta's worker threads set theirs to 1).
    """
    from threadpoolctl import threadpool_limits

    from .kernels import threads as kernel_threads

    if threads is not None and (isinstance(threads, bool) or not isinstance(
            threads, numbers.Real) or int(threads) != threads or threads < 1):
        raise ValueError(f"configure: threads must be an integer >= 1 (None: every core), got "
                         f"{threads!r}")     # (checked before anything is set)
    omp_wait_policy()
    malloc_policy()
    threadpool_limits(limits=blas_threads, user_api="blas")
    threads = int(threads) if threads is not None else kernel_threads.cores()
    kernel_threads.set_split_threads(threads)
    kernel_threads.set_numba_threads(threads)
    return threads


@contextlib.contextmanager
def memory_ceiling(status="/proc/self/status"):
    """Inside: the process's data (``RLIMIT_DATA``: its heap and private writable mappings, where
    NumPy's arrays live) may grow by at most nine tenths of the memory available now
    (``kernels.threads.available_memory``; a tenth stays with the rest of the machine), so an
    allocation past it raises ``MemoryError`` instead of the system killing a process later.
    Yields the ceiling in bytes, or None where none is set (not Linux, or the sizes cannot be
    read); the limit is put back on leaving. Linux counts every private mapping, pages not yet
    touched too, so the ceiling adds to what the process holds already (``VmData``); a limit
    already lower stays. Swap is not counted: a run that would page for hours is refused too.
    Not under a GPU (a CUDA driver maps more than it uses), nor a promise that a run below the
    ceiling fits: the memory is read once, on entering, so other processes may take it
    meanwhile (and memory they free later does not raise the ceiling)."""
    from .kernels.threads import available_memory

    try:
        import resource
        with open(status) as f:
            held = [int(line.split()[1]) * 1024 for line in f if line.startswith("VmData:")]
    except (ImportError, OSError, ValueError, IndexError):
        held = []
    have = available_memory()
    if not held or have is None:
        yield None
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
    ceiling = held[0] + have * 9 // 10
    if hard != resource.RLIM_INFINITY:
        ceiling = min(ceiling, hard)
    if soft != resource.RLIM_INFINITY and soft <= ceiling:
        yield soft
        return
    resource.setrlimit(resource.RLIMIT_DATA, (ceiling, hard))
    try:
        yield ceiling
    finally:
        resource.setrlimit(resource.RLIMIT_DATA, (soft, hard))


def release(err):
    """Clear the locals of the frames ``err``, and the errors that led to it, passed through:
    its traceback holds them, and with them the arrays of the work it stopped (a run's model,
    tasks and graph), which what runs next had found still taking the memory (``minimeta
    train`` drawing its curve after a ``MemoryError``). The frames still running keep theirs;
    a traceback printed later still names every line."""
    import traceback

    seen = set()
    while err is not None and id(err) not in seen:    # (a chain may loop: raise a from b)
        seen.add(id(err))
        traceback.clear_frames(err.__traceback__)
        err = err.__cause__ or err.__context__
