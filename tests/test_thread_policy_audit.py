"""What a mutation audit of the thread and memory policy (2026-12-04) found untested:
``minimeta.threads`` (``configure``, ``memory_ceiling``, ``release``), ``kernels/threads.py``
(the reference switch's environment variable, a worker's one-thread split) and
``engine/workers.py``.

Each test fails on the mutant its docstring names and passes on the code as it is. The
process-wide settings are changed in a child process only.

Read next: ``test_out_of_memory.py`` (a run too large for the machine).
"""
import gc
import os
import resource
import subprocess
import sys
import weakref

import pytest

from minimeta import threads
from minimeta.engine.workers import map_threads
from minimeta.kernels import threads as kernel_threads

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MIB = 1 << 20


def _child(code, timeout=300, **env):
    """``code`` run in a fresh interpreter (this checkout first on its path): its stdout."""
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
               **env)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.split()


CONFIGURE = """
from threadpoolctl import threadpool_info
import numpy
from minimeta.kernels import threads as k
from minimeta import threads
k.cores = lambda: 3      # a machine of 3 cores, whatever this one has
n = threads.configure()
blas = sorted({i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"})
print(n, k.split_threads(), blas)
"""


def test_configure_gives_blas_one_thread_and_the_kernels_every_core():
    """``configure()``: BLAS on one thread, always, and the kernels' split (and the returned
    count, the learners' ``workers``) every core the process may use. Mutants that left BLAS
    at its own count (``limits=None``) or defaulted to one thread, not ``cores()``, passed
    every test (mutation audit, 2026-12-04)."""
    n, split, blas = _child(CONFIGURE)
    assert (n, split) == ("3", "3")
    assert blas in ("[1]", "[]"), blas        # [] where NumPy has no BLAS threadpoolctl sees


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_DATA is Linux's")
def test_the_memory_ceiling_is_nine_tenths_of_the_memory_available(monkeypatch, tmp_path):
    """The ceiling is what the process holds (``VmData``) plus nine tenths of the memory
    available, a tenth left to the rest of the machine; a mutant that took all of it passed
    (mutation audit, 2026-12-04). The held size is faked huge, so the ceiling is never near
    what this process uses."""
    status = tmp_path / "status"
    status.write_text("Name:\tpython\nVmData:\t1073741824 kB\n")     # 1 TiB
    monkeypatch.setattr(kernel_threads, "available_memory", lambda *a, **k: 640 * MIB)
    soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
    if soft != resource.RLIM_INFINITY or hard != resource.RLIM_INFINITY:
        pytest.skip("a data limit is already set")
    with threads.memory_ceiling(status=str(status)) as ceiling:
        assert ceiling == (1 << 40) + 576 * MIB
        assert resource.getrlimit(resource.RLIMIT_DATA)[0] == ceiling
    assert resource.getrlimit(resource.RLIMIT_DATA) == (soft, hard)


class Big:
    """Stands in for a run's arrays, held by a frame's locals."""


def test_release_clears_the_frames_of_an_error_raised_while_handling_another():
    """``release(err)`` follows the chain of errors that led to ``err``: an error raised in an
    ``except`` block (its ``__context__``) as well as one raised ``from`` another; a mutant
    that followed ``__cause__`` only left the first error's frames, and the arrays their
    locals hold, alive (mutation audit, 2026-12-04)."""
    refs = []

    def inner():
        big = Big()
        refs.append(weakref.ref(big))
        raise ValueError("first")

    def outer():
        try:
            inner()
        except ValueError:
            raise MemoryError("second")     # implicitly chained: __context__, no __cause__

    try:
        outer()
    except MemoryError as caught:
        err = caught
    assert err.__cause__ is None and isinstance(err.__context__, ValueError)
    gc.collect()
    assert refs[0]() is not None             # held by inner's frame, through the traceback
    threads.release(err)
    gc.collect()
    assert refs[0]() is None


def test_minimeta_kernels_reference_in_the_environment_switches_every_thread():
    """``MINIMETA_KERNELS=reference`` (any case) runs every thread's kernels on their NumPy
    references, as ``use_reference()`` does one thread's; a mutant that ignored the variable
    passed every test of the default suite (only the simulated-GPU plugin sets it; mutation
    audit, 2026-12-04)."""
    code = ("import threading\nfrom minimeta.kernels import threads as k\nseen = []\n"
            "t = threading.Thread(target=lambda: seen.append(k.LOCAL.reference))\n"
            "t.start(); t.join()\nprint(k.LOCAL.reference, seen[0])")
    assert _child(code, MINIMETA_KERNELS="Reference") == ["True", "True"]
    assert _child(code, MINIMETA_KERNELS="") == ["False", "False"]


@pytest.mark.skipif(not kernel_threads.concurrent_kernels(),
                    reason="numba's workqueue layer: map_threads runs inline")
def test_a_worker_s_kernels_do_not_split_over_threads():
    """A task's worker runs its kernels on its own thread: ``split_threads()`` is 1 there,
    whatever the process default (two tasks on two cores, not two tasks fighting over four
    threads). A mutant of ``worker_thread`` that left the split alone passed (mutation audit,
    2026-12-04)."""
    before = kernel_threads._DEFAULTS["split"]
    kernel_threads.set_split_threads(4)
    try:
        inside = map_threads(lambda _: kernel_threads.split_threads(), range(4), workers=2)
        outside = kernel_threads.split_threads()
    finally:
        kernel_threads.set_split_threads(before)
    assert inside == [1, 1, 1, 1] and outside == 4


def test_fewer_items_than_threads_make_fewer_shares_none_empty():
    """``shares`` deals the items into one share per kernel thread, fewer when there are
    fewer items: no thread is handed an empty share (which still costs it its buffers). A
    mutant that always made ``split_threads()`` shares passed (mutation audit, 2026-12-04)."""
    before = kernel_threads._DEFAULTS["split"]
    kernel_threads.set_split_threads(4)
    try:
        assert kernel_threads.shares(range(3)) == [[0], [1], [2]]
        assert kernel_threads.shares(range(6)) == [[0, 4], [1, 5], [2], [3]]
        assert kernel_threads.shares([]) == [[]]
    finally:
        kernel_threads.set_split_threads(before)


@pytest.mark.skipif(not kernel_threads.concurrent_kernels(),
                    reason="numba's workqueue layer: map_threads runs inline")
def test_map_threads_called_in_a_worker_runs_inline():
    """``map_threads`` inside one of its own workers runs its items in that worker: a nested
    call waiting on the pool its caller's items hold would never end. A mutant that dropped
    the test for a worker passed every test (none nests; mutation audit, 2026-12-04). In a
    child, so that a deadlock ends with it."""
    code = ("from minimeta.engine.workers import map_threads\n"
            "print(map_threads(lambda i: map_threads(lambda j: 10 * i + j, range(3), workers=2),"
            " range(2), workers=2))")
    try:
        out = _child(code, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("a nested map_threads waited on its caller's pool")
    assert "".join(out) == "[[0,1,2],[10,11,12]]"


def test_stacked_tasks_updates_run_task_by_task():
    """Inside ``task_order(n)`` an update deferred for task t runs after those of tasks
    0..t-1, whatever the order they came in (a stack's layers defer theirs layer by layer):
    the sequential loop's order. A mutant that filed every update under task 0 (the order
    they came in) passed (mutation audit, 2026-12-04)."""
    from minimeta.engine.workers import defer, task_order

    ran = []
    with task_order(2):
        for layer in ("conv", "bn"):
            for task in (0, 1):
                defer(lambda layer=layer, task=task: ran.append((task, layer)), task=task)
        assert ran == []                     # held until the block ends
    assert ran == [(0, "conv"), (0, "bn"), (1, "conv"), (1, "bn")]


@pytest.mark.skipif(not kernel_threads.concurrent_kernels(),
                    reason="numba's workqueue layer: map_threads runs inline")
def test_the_error_raised_is_the_earliest_item_s_and_later_items_do_not_start(monkeypatch):
    """Of several items failed by the time ``map_threads`` looks, the earliest item's error is
    raised; items not yet begun when one fails are skipped. Mutants that raised the last
    item's error, or let the items after a failure run (``failed`` never set, or never
    read), passed (mutation audit, 2026-12-04). Here every item is done before the errors
    are read (``wait`` patched), and two fail together (a barrier)."""
    import concurrent.futures
    import threading
    import time

    from minimeta.engine import workers

    monkeypatch.setattr(workers, "wait", lambda futures, return_when: concurrent.futures.wait(
        futures))
    both = threading.Barrier(2)

    def fail(i):
        both.wait(timeout=30)
        raise ValueError(f"item {i}")

    with pytest.raises(ValueError, match="^item 0$"):
        map_threads(fail, [0, 1], workers=2)
    ran, started = [], threading.Event()

    def first_fails(i):
        ran.append(i)
        if i == 0:
            started.wait(timeout=30)         # item 1 has begun: it runs to its end
            raise KeyError(i)
        started.set()
        time.sleep(0.2)                      # and ends well after item 0 has failed

    with pytest.raises(KeyError):
        map_threads(first_fails, range(8), workers=2)
    assert sorted(ran) == [0, 1]


def test_applied_settings_are_put_back_after_the_block():
    """``applied(saved)`` runs its block with a caller's settings and puts the thread's own
    back after, the kernels' reference switch too; a mutant that left the switch as the
    block set it passed (mutation audit, 2026-12-04)."""
    from minimeta.engine.workers import applied, settings

    before = settings()
    with applied(dict(before, reference=not before["reference"], anomaly=True)):
        assert kernel_threads.LOCAL.reference is not before["reference"]
    assert settings() == before
