"""Independent pieces of work (the tasks of a meta-batch) on worker threads.

The tasks of a meta-batch share θ but nothing else: each builds its own graph, differentiates
it, and hands back its gradient. ``map_threads(fn, items, workers)`` runs ``fn`` on the items
over ``workers`` threads and returns the results in the order of ``items``, so the caller can
add the gradients in task order (the same sum, to float rounding, as a sequential loop).

What makes this safe is that everything the engine switches is per thread: recording on or
off and the backward depth (``grad_mode.STATE``), anomaly mode (``anomaly.ANOMALY``), and the
kernels' reference switch and thread split (``kernels/threads.py``). A worker starts from its
caller's settings (``settings()`` / ``applied()``), and its kernels run on its own core only
(``kernels.threads.worker_thread``): two tasks on two cores, not two tasks fighting over four
threads. Creation stamps come from one ``itertools.count``, whose ``next`` is atomic: stamps of
interleaved threads still only grow, which is all the backward pass needs.

One thing tasks do share: side effects on common state, the batch-norm running averages. An
exponential average depends on the order of its updates, so a task defers them (``defer``) and
``map_threads`` applies each item's deferred updates in the order of the items once all are
done: the same averages, bit for bit, as the sequential loop (which applies them at once). A
stacked meta-batch (``learners.StackedTasks``) runs every task's layer at once; inside
``task_order(n)`` its per-task updates (``defer(update, task=t)``) wait and run task by task,
again the loop's order, those of one buffer merged into one (``merged``; on a GPU, T·k small
updates would cost a launch each).

>>> map_threads(lambda x: x + 1, [1, 2, 3], workers=2)
[2, 3, 4]

Read next: ``minimeta/engine/derivatives.py`` (hvp, jacobian, hessian).
"""
import contextlib
import threading
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait

from ..kernels import threads as kernel_threads
from .anomaly import ANOMALY
from .autodiff import STATE
from .tensor import RECORDING

_POOLS = {}
_LOCK = threading.Lock()
_DEFERRED = threading.local()   # .pending: the running item's deferred updates, in a worker


def defer(update, task=None):
    """Run ``update()`` now, or, inside ``map_threads``'s workers, after every item is done,
    in the order of the items; an update of stacked ``task`` t inside ``task_order``, at its
    end, after those of tasks 0..t-1 (see the module docstring). So an item that reads a
    buffer it has itself updated (batch norm in eval mode after a training-mode forward) sees
    the value from before the call; the learners' tasks never do."""
    if RECORDING[0] is not None:     # a replay would leave it out
        RECORDING[0].refuse("a deferred update of state (batch norm's running averages)")
    by_task = getattr(_DEFERRED, "by_task", None)
    if task is not None and by_task is not None:
        by_task[task].append(update)
        return
    pending = getattr(_DEFERRED, "pending", None)
    if pending is None:
        update()
    else:
        pending.append(update)


@contextlib.contextmanager
def task_order(tasks):
    """Hold the updates deferred for each of ``tasks`` stacked tasks; when the block ends
    without an error, run them task by task, each task's in the order they came (``merged``:
    updates of one piece of state may run as one, the same result to rounding)."""
    previous = getattr(_DEFERRED, "by_task", None)
    _DEFERRED.by_task = held = [[] for _ in range(tasks)]
    try:
        yield
    finally:
        _DEFERRED.by_task = previous
    for update in merged([u for updates in held for u in updates]):
        defer(update)


def stacked_tasks():
    """The number of stacked tasks of the enclosing ``task_order`` block (on this thread), or
    None outside one: a layer that cannot tell a stack from its input alone asks this."""
    by_task = getattr(_DEFERRED, "by_task", None)
    return None if by_task is None else len(by_task)


def merged(updates):
    """``updates`` in order, except that those with the same ``merge_key`` (updates of one
    piece of state, which no other update touches) become one, ``type(u).merge(group)``, at
    the place of the first: on a GPU, a stack's per-task updates in a few calls, not T·k."""
    groups, order = {}, []
    for update in updates:
        key = getattr(update, "merge_key", None)
        if key is None:
            order.append([update])
        elif key in groups:
            groups[key].append(update)
        else:
            groups[key] = [update]
            order.append(groups[key])
    return [group[0] if len(group) == 1 else type(group[0]).merge(group) for group in order]


def settings():
    """The calling thread's engine settings, to be applied in a worker."""
    return {"enabled": STATE.enabled, "anomaly": ANOMALY.on,
            "reference": kernel_threads.LOCAL.reference}


@contextlib.contextmanager
def applied(saved):
    """Run the block with ``saved`` settings (from ``settings()``), restoring after."""
    before = settings()
    STATE.enabled, ANOMALY.on = saved["enabled"], saved["anomaly"]
    kernel_threads.LOCAL.reference = saved["reference"]
    try:
        yield
    finally:
        STATE.enabled, ANOMALY.on = before["enabled"], before["anomaly"]
        kernel_threads.LOCAL.reference = before["reference"]


def _pool(workers):
    with _LOCK:
        if workers not in _POOLS:
            _POOLS[workers] = ThreadPoolExecutor(workers, thread_name_prefix="minimeta-task",
                                                 initializer=kernel_threads.worker_thread)
        return _POOLS[workers]


def map_threads(fn, items, workers):
    """``[fn(item) for item in items]`` on ``workers`` threads, results in order.

    With ``workers`` ≤ 1 or a single item it is the plain loop in the calling thread (also
    where numba's threading layer cannot take two threads: ``kernels.threads.concurrent``,
    and inside a worker: a nested call waiting on the pool its caller holds would never
    end). An exception raised by ``fn`` is raised here as soon as it happens (the earliest
    item's, if several have failed by then); items not yet started are dropped.
    """
    items = list(items)
    if int(workers) < 1:
        raise ValueError(f"map_threads: workers must be at least 1, got {workers}")
    workers = kernel_threads.concurrent(min(workers, len(items)))  # 1 if numba cannot take it
    if workers <= 1 or getattr(_DEFERRED, "pending", None) is not None:  # in a worker: inline
        return [fn(item) for item in items]
    saved = settings()

    failed = threading.Event()    # set by the first error: items not yet begun are skipped

    def run(item):
        if failed.is_set():
            return None, []
        _DEFERRED.pending = []
        try:
            with applied(saved):
                return fn(item), _DEFERRED.pending
        except BaseException:
            failed.set()
            raise
        finally:
            _DEFERRED.pending = None

    futures = [_pool(workers).submit(run, item) for item in items]
    try:
        wait(futures, return_when=FIRST_EXCEPTION)     # not item by item: the first error
        errors = [f for f in futures if f.done() and f.exception() is not None]
        if errors:
            raise errors[0].exception()
        done = [f.result() for f in futures]
    finally:
        for f in futures:  # on an error, drop what has not started
            f.cancel()
    for _, updates in done:     # the side effects, in the order of the items (deferred
        for update in updates:  # again if this call itself runs in a worker)
            defer(update)
    return [result for result, _ in done]
