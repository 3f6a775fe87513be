"""Threads in the kernels: one kernel's independent pieces spread over the cores, and the
switches that belong to one thread (reference kernels on or off, how many threads a kernel
may split into).

minimeta uses a multi-core CPU in one of two ways at a time, never both:

- **inside a kernel**: the conv family cuts its work into independent pieces (chunks of
  images, blocks of output columns, filter taps) and ``parallel_map`` runs them on
  ``split_threads()`` threads. Each piece runs its GEMM on one BLAS thread and its numba loops
  on one numba thread, so the cores are shared out, never oversubscribed. NumPy's GEMM and
  numba's compiled loops release the GIL, so the pieces really run at once. A sum over the
  pieces (a weight gradient) goes through ``ordered_sum``, whose runs are fixed by the data:
  the same bits on any number of threads.
- **across tasks**: ``minimeta/engine/workers.py`` runs the tasks of a meta-batch on worker
  threads; each worker calls ``worker_thread()`` first, so its kernels stay on its own core.

The other kernels (pooling, batch norm, the select, attention) are numba ``prange`` loops over
numba's threads, and the table gives each the size of work from which it wakes them
(``Kernel.parallel_from``): below it, ``one_thread`` runs the loop on the calling thread, as
waking a sleeping thread costs more than it saves there (a small MLP's masks, one episode's
attention).

The switches are per thread (``threading.local``): ``use_reference()`` in one thread does not
change what another runs, and a worker thread copies its caller's settings explicitly.

Both ways need numba's threading layer to take two threads in its kernels at once. Its
``omp`` (OpenMP) and ``tbb`` layers do; ``workqueue``, the one numba falls back to without a
word where it finds neither runtime (no libgomp in a slim Docker image, pip's numba on macOS
without ``pip install tbb``), aborts the whole process instead. ``concurrent(n)`` is the guard:
there, tasks and pieces run one at a time (numba's own loops still use every core).

Also here, in the lowest layer that needs them: what the machine allows (``cores``,
``cpu_quota``, ``available_memory``), and ``user_stacklevel``, with which every warning of
minimeta names the user's line that led to it.

>>> split_threads() >= 1
True
>>> parallel_map(lambda i: i * i, range(5))
[0, 1, 4, 9, 16]

Read next: ``kernels/conv_numba.py`` (convolution with numba on the CPU).
"""
import contextlib
import functools
import math
import os
import sys
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor


def cores():
    """The CPU cores this process may use: its affinity mask where the OS has one, fewer where
    its control group has a CPU quota (``cpu_quota``)."""
    try:
        n = max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        n = max(1, os.cpu_count() or 1)
    quota = cpu_quota()
    return min(n, quota) if quota else n


def cpu_quota(root="/sys/fs/cgroup", groups="/proc/self/cgroup"):
    """The CPUs this process's control group may use, rounded up, or None where none is set (or
    none can be read). A container started with ``--cpus 2``, or a Kubernetes CPU limit, keeps
    every core in the affinity mask but throttles the group to a quota per period, so a thread
    per core would oversubscribe it. cgroup v2 ``cpu.max`` ("200000 100000": 2 CPUs; "max
    100000": none), v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` (-1: none); the smallest
    over the group and its ancestors, as each limits it.

    >>> cpu_quota(groups="/nonexistent") is None
    True
    """
    try:
        with open(groups) as f:
            lines = [line.rstrip("\n").split(":", 2) for line in f]
    except OSError:
        return None
    limits = []
    for _, controllers, path in (line for line in lines if len(line) == 3):
        if controllers == "":                               # v2: one unified hierarchy
            mounts, name = [root], "cpu.max"
        elif "cpu" in controllers.split(","):               # v1: the cpu controller's mount
            mounts = [os.path.join(root, m) for m in ("cpu", "cpu,cpuacct", "cpuacct,cpu")]
            name = "cpu.cfs_quota_us"
        else:
            continue
        parts = [p for p in path.split("/") if p]
        for mount in mounts:
            for depth in range(len(parts), -1, -1):         # the group, then its ancestors
                limit = _quota(os.path.join(mount, *parts[:depth]), name)
                if limit:
                    limits.append(limit)
    return max(1, math.ceil(min(limits))) if limits else None


def _quota(folder, name):
    """CPUs allowed by one group's quota file, or None (no such file, no quota)."""
    try:
        with open(os.path.join(folder, name)) as f:
            fields = f.read().split()
        quota = fields[0]
        if name == "cpu.max":
            period = fields[1]
        else:
            with open(os.path.join(folder, "cpu.cfs_period_us")) as f:
                period = f.read().split()[0]
        if quota in ("max", "-1"):
            return None
        return int(quota) / int(period) if int(quota) > 0 and int(period) > 0 else None
    except (OSError, ValueError, IndexError):
        return None


def available_memory(meminfo="/proc/meminfo", root="/sys/fs/cgroup",
                     groups="/proc/self/cgroup"):
    """Bytes of memory this process may take, or None where that cannot be read: the
    kernel's MemAvailable (free memory and the caches it can drop; where there is no
    ``/proc``, as on macOS, the physical memory), no more than the limit of the process's
    control group or of an ancestor (a container's ``--memory``: v2 ``memory.max``, v1
    ``memory.limit_in_bytes``). A group's limit, not its headroom: its usage counts the page
    cache, which the kernel drops before it kills. What a run that cannot fit is refused
    against (``experiments.registry.fits_memory``), no promise that one below it fits."""
    limits = []
    with contextlib.suppress(OSError, ValueError, IndexError):
        with open(meminfo) as f:
            limits += [int(line.split()[1]) * 1024 for line in f
                       if line.startswith("MemAvailable:")]
    if not limits:
        with contextlib.suppress(AttributeError, OSError, ValueError):
            limits.append(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    try:
        with open(groups) as f:
            lines = [line.rstrip("\n").split(":", 2) for line in f]
    except OSError:
        lines = []
    for _, controllers, path in (line for line in lines if len(line) == 3):
        if controllers == "":                               # v2: one unified hierarchy
            mount, name = root, "memory.max"
        elif "memory" in controllers.split(","):            # v1: the memory controller's
            mount, name = os.path.join(root, "memory"), "memory.limit_in_bytes"
        else:
            continue
        parts = [p for p in path.split("/") if p]
        for depth in range(len(parts), -1, -1):             # the group, then its ancestors
            with contextlib.suppress(OSError, ValueError, IndexError):   # "max": no limit
                with open(os.path.join(mount, *parts[:depth], name)) as f:
                    limits.append(int(f.read().split()[0]))
    return min(limits) if limits else None


def user_stacklevel():
    """The ``stacklevel`` for ``warnings.warn``, called by the function that calls this, that
    names the first frame outside minimeta (its kernels included): the user's line that called
    into it, however many of minimeta's calls lie between (a fixed count had named a line of
    minimeta's own when the call came through the engine, the data or the training loop). A
    frame is minimeta's by its module's name (``minimeta.kernels`` in a checkout too); frames
    of the import system are not counted, as ``warnings`` skips them. Where every frame is
    minimeta's, the outermost one. (``skip_file_prefixes`` does this from Python 3.12;
    minimeta supports 3.10.) ``minimeta/data/omniglot.py``, which imports NumPy only, has its
    own copy."""
    frame, level = sys._getframe(2), 1          # level 1: the function that warns
    while frame is not None:
        name = frame.f_code.co_filename
        if not ("importlib" in name and "_bootstrap" in name):      # warnings skips these
            level += 1
            module = frame.f_globals.get("__name__", "")
            if module != "minimeta" and not module.startswith("minimeta."):
                return level
        frame = frame.f_back
    return level


class _Switches(threading.local):
    """This thread's settings; a new thread starts from the process defaults."""

    def __init__(self):
        self.reference = _DEFAULTS["reference"]
        self.split = None  # None: the process default, _DEFAULTS["split"]
        if _DEFAULTS["numba"] is not None:   # numba's count is per thread: this one's too
            import numba

            numba.set_num_threads(_DEFAULTS["numba"])


_DEFAULTS = {"reference": os.environ.get("MINIMETA_KERNELS", "").lower() == "reference",
             "split": cores(), "numba": None}   # numba: None until set_numba_threads
LOCAL = _Switches()


def split_threads():
    """How many threads a kernel called from this thread may split its work into."""
    return LOCAL.split if LOCAL.split is not None else _DEFAULTS["split"]


def set_numba_threads(n):
    """numba's thread count, for the calling thread and for every thread that first touches
    the kernels after this one (numba's count is per thread: a thread started after
    ``configure(threads=1)`` had run numba's loops on every core)."""
    import numba

    _DEFAULTS["numba"] = min(int(n), numba.config.NUMBA_NUM_THREADS)
    numba.set_num_threads(_DEFAULTS["numba"])


def set_split_threads(n):
    """Set the process default of ``split_threads()`` (``minimeta.threads.configure`` does)."""
    if int(n) < 1:
        raise ValueError(f"set_split_threads: need at least 1 thread, got {n}")
    _DEFAULTS["split"] = int(n)


_LAYER = {}    # numba's threading layer, asked once ("name"), and whether we warned


def threading_layer():
    """numba's threading layer: ``omp``, ``tbb`` or ``workqueue``. Asking makes numba choose
    it now if it has not yet (``get_num_threads`` does); asked once."""
    if "name" not in _LAYER:
        import numba

        numba.get_num_threads()
        _LAYER["name"] = numba.threading_layer()
    return _LAYER["name"]


def concurrent_kernels():
    """Whether numba's parallel kernels may be entered from several threads at once: True with
    its ``omp`` and ``tbb`` threading layers, False with ``workqueue``, where two threads in a
    ``prange`` kernel at once abort the process ("Concurrent access has been detected")."""
    return threading_layer() != "workqueue"


def concurrent(n):
    """How many threads may run kernels at once when ``n`` are asked for: ``n``, or 1 where
    numba's threading layer cannot take concurrent callers (warned once, with the remedy)."""
    if n <= 1 or concurrent_kernels():
        return n
    if not _LAYER.get("warned"):
        _LAYER["warned"] = True
        why = "NUMBA_THREADING_LAYER chose it" if os.environ.get("NUMBA_THREADING_LAYER") \
            else "no OpenMP or TBB runtime found"
        warnings.warn(f"minimeta: numba's threading layer is '{threading_layer()}' ({why}), "
                      "which aborts when two threads run its kernels, so "
                      "tasks and kernel pieces run one at a time (about half speed on 2 cores); "
                      "install OpenMP (libgomp1 on Debian/Ubuntu) or TBB (`pip install tbb`, "
                      "its lib directory on LD_LIBRARY_PATH) to use every core",
                      RuntimeWarning, stacklevel=user_stacklevel())
    return 1


_SERIAL = {}
_KERNEL_LOCK = threading.RLock()


def one_at_a_time(kernel):
    """``kernel`` behind one process-wide lock, for numba's ``workqueue`` layer, where two
    threads in its kernels at once abort the process: the user's threads as well as
    minimeta's (which ``concurrent`` already runs one at a time)."""
    if kernel not in _SERIAL:
        @functools.wraps(kernel)
        def serial(*args, **kwargs):
            with _KERNEL_LOCK:
                return kernel(*args, **kwargs)
        _SERIAL[kernel] = serial
    return _SERIAL[kernel]


_ALONE = {}


def one_thread(kernel):
    """``kernel`` with numba's loops on the calling thread alone, for work too small to pay
    for waking the other threads (``Kernel.parallel_from``): under the passive wait policy
    (``minimeta.threads``) that cost 40–60 µs a loop here (2 vCPUs), more than a select of
    260 000 values takes on one core (35 µs). numba's count (per thread) is put back after. A
    kernel's ``serial`` twin runs instead (no ``prange``: 10 000 values 3.0 µs, not 5.2)."""
    if kernel not in _ALONE:
        get, set_ = _count_calls()

        @functools.wraps(kernel)
        def alone(*args, **kwargs):
            previous = get()
            if previous == 1:
                return kernel(*args, **kwargs)
            set_(1)
            try:
                return kernel(*args, **kwargs)
            finally:
                set_(previous)
        _ALONE[kernel] = getattr(kernel, "serial", alone)
    return _ALONE[kernel]


def _count_calls():
    """numba's get and set of the calling thread's count. Its public ``get_num_threads`` and
    ``set_num_threads`` first take a process-wide ``multiprocessing`` lock, at every call (to
    start its threads, once): some µs a call, a small kernel's time again. Once its threads
    run, the functions they then call are used, where this numba has them."""
    import numba

    numba.get_num_threads()     # (starts numba's threads, if not yet)
    try:
        from numba.np.ufunc import parallel
        return parallel._get_num_threads, parallel._set_num_threads
    except (ImportError, AttributeError):
        return numba.get_num_threads, numba.set_num_threads


def worker_thread():
    """Make the calling thread a worker: its kernels run on this thread alone (no split, one
    numba thread). BLAS is limited to one thread process-wide by ``minimeta.threads``."""
    LOCAL.split = 1
    import numba

    numba.set_num_threads(1)


_POOLS = {}
_POOLS_LOCK = threading.Lock()


def _pool(n):
    """A shared pool of ``n`` kernel threads (made once per size)."""
    with _POOLS_LOCK:
        if n not in _POOLS:
            _POOLS[n] = ThreadPoolExecutor(n, thread_name_prefix="minimeta-kernel",
                                           initializer=worker_thread)
        return _POOLS[n]


def parallel_map(fn, items):
    """``[fn(item) for item in items]``, the items spread over ``split_threads()`` threads
    (the calling thread takes its share); results in the order of ``items``.

    Only for pieces that are independent (no piece reads what another writes). With one
    thread, or one item, it is the plain loop.
    """
    items = list(items)
    n = concurrent(min(split_threads(), len(items)))
    if n <= 1:
        return [fn(item) for item in items]
    # the caller runs items 0, n, 2n, ... ; the pool the others, in n - 1 interleaved shares
    shares = [items[i::n] for i in range(n)]
    futures = [_pool(n - 1).submit(_run_share, fn, share) for share in shares[1:]]
    import numba

    previous, caller = numba.get_num_threads(), LOCAL.split
    numba.set_num_threads(1)
    LOCAL.split = 1
    try:
        mine = [fn(item) for item in shares[0]]
    finally:
        numba.set_num_threads(previous)
        LOCAL.split = caller
    parts = [mine] + [f.result() for f in futures]
    return [parts[i % n][i // n] for i in range(len(items))]


def image_chunks(n, per_image, budget):
    """Ranges of ``n`` images of about ``budget`` bytes of work each (``per_image`` an image),
    their count rounded up to a multiple of 4 (at most n), sizes within one image: two or four
    threads get equal shares (three chunks had left one of two cores idle a third of the call).
    The count depends on the sizes alone, never on the threads: ``ordered_sum``'s bits too."""
    if n == 0:
        return []
    fit = max(1, min(n, budget // max(per_image, 1)))      # images within the budget
    count = -(-n // fit)                                    # chunks of at most ``fit``
    if count > 1:
        count = min(n, -(-count // 4) * 4)
    return [(i * n // count, (i + 1) * n // count) for i in range(count)]


GROUPS = 8  # the most runs a kernel's sum is cut into: fixed, so its rounding is too


def ordered_sum(part, chunks, empty):
    """Σ part(chunk) over ``chunks`` (image ranges, in order), ``part`` returning a new array,
    ``empty()`` where there are no chunks: the chunks cut into at most ``GROUPS`` contiguous
    runs, whatever the thread count (the longer runs first, so that dealing them out evens the
    threads' loads), each run summed in order on one thread, the runs over ``split_threads()``
    threads (so at most ``GROUPS``), their sums added in run order. So a weight gradient has
    the same bits on one core or eight (each thread's own share had given each thread count
    its rounding: ProtoNet's loss 6e-5 apart after 4 steps on one thread and on two).

    >>> ordered_sum(lambda i: i * i, range(10), int) == sum(i * i for i in range(10))
    True
    """
    def run_sum(run):
        total = part(run[0])
        for chunk in run[1:]:
            total += part(chunk)
        return total

    chunks = list(chunks)
    if not chunks:
        return empty()
    k = min(len(chunks), GROUPS)
    q, r = divmod(len(chunks), k)                   # r runs of q + 1 chunks, then q each
    ends = [i * q + min(i, r) for i in range(k + 1)]
    runs = [chunks[a:b] for a, b in zip(ends[:-1], ends[1:])]
    # one thread: each run summed as the fold reaches it (two buffers live, not k); the same
    # additions in the same order either way
    sums = iter(map(run_sum, runs) if split_threads() == 1 else parallel_map(run_sum, runs))
    total = next(sums)
    for s in sums:
        total += s
    return total


def shares(items):
    """``items`` dealt into one share per kernel thread (fewer when there are fewer items)."""
    items = list(items)
    n = max(1, min(split_threads(), len(items)))
    return [items[i::n] for i in range(n)]


def _run_share(fn, share):
    return [fn(item) for item in share]
