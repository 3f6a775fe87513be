"""What every learner shares: parameters, the task loss by name, and the outer step.

A learner defines ``task_loss(task) → (loss Tensor, accuracy or None)`` and holds its trained
parameters in ``self.params``; this base class turns that into ``outer_step`` (the gradient of
the mean query loss, accumulated into ``.grad`` for an outer optimizer) and
``meta_parameters``. It also holds the helpers the learners share: the loss by name (which
decides whether there is an accuracy to report), task data as a Tensor, and the metrics dict,
whose values stay unread on a GPU until the step's work is queued (``summary``).
MAML and its variants (``maml.py``), Reptile (``reptile.py``) and the metric-based learners
(``metric.py``) all build on it.

Read next: ``minimeta/learners/maml.py`` (MAML, first-order MAML, Meta-SGD, ANIL).
"""
import contextlib
import functools
import operator
import zlib

import numpy as np

from .. import functional as F
from ..engine import Tensor, grad, ops
from ..engine.backend import array_module, device_of
from ..engine.workers import map_threads

LOSSES = {"cross_entropy": F.cross_entropy, "mse": F.mse_loss}
CLASSIFICATION = {"cross_entropy"}  # the losses whose learners report an accuracy


def default_loss(name):
    """The task loss by name: 'cross_entropy' (classification) or 'mse' (regression)."""
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}: give one of {sorted(LOSSES)} or a callable")
    return LOSSES[name]


def all_or_nothing(outer_step):
    """``outer_step`` (a learner's method) inside ``whole_or_none``: a step that raises leaves
    no ``.grad`` and no batch-norm update behind (every learner's, so a checkpoint saved
    after a step cut short holds whole iterations only; a learner of one's own wraps its
    ``outer_step`` so; Reptile moves θ only once every task is done)."""
    @functools.wraps(outer_step)
    def step(self, tasks):
        with whole_or_none(self.meta_parameters(), self.module()):
            return outer_step(self, tasks)
    return step


def accumulate(params, grads):
    """Add ``grads`` into the ``.grad`` of ``params`` (a None gradient adds nothing)."""
    for p, g in zip(params, grads):
        if g is not None:
            p.grad = g if p.grad is None else p.grad + g


def backward_to(loss, params):
    """Accumulate ∂loss/∂params into their ``.grad`` and nowhere else: ``loss.backward()``
    would fill every leaf the loss reads, a Tensor the model uses but does not register too
    (the meta-batch's one-graph ``outer_step``s had, where the task loop had not)."""
    accumulate(params, grad(loss, params, allow_unused=True))


@contextlib.contextmanager
def whole_or_none(params, model):
    """Inside, an exception (an inf under ``detect_anomaly``, a second Ctrl-C) puts the
    ``.grad`` of ``params`` and ``model``'s buffers back as they were: a meta-batch's gradient
    and batch-norm updates count whole or not at all, on one thread as on several (where
    ``map_threads`` drops a failed call's deferred updates), and a checkpoint saved after an
    outer step cut short holds no part of it. (The buffers are small: batch norm's.)"""
    grads, buffers = [p.grad for p in params], snapshot(model)
    try:
        yield
    except BaseException:
        for p, g in zip(params, grads):
            p.grad = g
        put_back(buffers)
        raise


def snapshot(model):
    """(buffer, a copy) for each of ``model``'s buffers (none for a learner without a
    Module): what ``put_back`` writes back, in place."""
    return [(b, b.copy()) for b in (model.named_buffers().values()
                                    if hasattr(model, "named_buffers") else ())]


def put_back(pairs):
    for buffer, before in pairs:
        buffer[...] = before


class Learner:
    """Base class: subclasses set ``self.params`` and define ``task_loss`` and ``evaluate``."""

    params = {}
    classification = False
    workers = 1  # threads the tasks of a meta-batch run on (``outer_step``)

    def __init__(self, model, loss="cross_entropy", params=None):
        """``model(x, params)`` is any callable; ``params`` the ordered dict θ of leaf Tensors
        it is trained on (default: ``model.named_parameters()``). ``loss`` is a name from
        ``LOSSES`` or a callable ``loss(out, y)``; a classification (accuracy reported) is
        the loss named 'cross_entropy', never guessed from a callable."""
        self.model = model
        self.params = params if params is not None else model.named_parameters()
        distinct(self.params, type(self).__name__)
        self.loss = default_loss(loss) if isinstance(loss, str) else loss
        self.classification = isinstance(loss, str) and loss in CLASSIFICATION

    def task_loss(self, task):
        raise NotImplementedError

    def module(self):
        """The Module that holds the buffers (``self.model``; the metric and model-based
        learners call theirs ``self.net``), or None."""
        model = getattr(self, "model", None)       # (not ``or``: a Sequential has a len)
        return model if model is not None else getattr(self, "net", None)

    def accuracy(self, out, y):
        """The fraction of correct predictions, unread (``F.unread_accuracy``: ``summary``
        and ``metrics`` read it), or None for a regression."""
        return F.unread_accuracy(out, y) if self.classification else None

    def meta_parameters(self):
        """Everything the outer optimizer updates: the parameters that require grad (a frozen
        one, ``requires_grad = False``, is read by the model but never trained)."""
        return [p for p in self.params.values() if p.requires_grad]

    def state_dict(self):
        """What the learner trains besides the model's weights (checkpointed with them):
        nothing here; Meta-SGD's inner rates (``maml.py``)."""
        return {}

    def load_state_dict(self, state):
        """Restore what ``state_dict`` returned (in place: an optimizer may hold it)."""
        if state:
            raise ValueError(f"{type(self).__name__}: no learner state to load, got "
                             f"{sorted(state)}")

    @all_or_nothing
    def outer_step(self, tasks):
        """Accumulate the gradient of the mean query loss over ``tasks`` into ``.grad``.

        Each task's graph is differentiated and dropped before the next task is processed, so
        peak memory holds one task's graph (for MAML: one inner loop), not the whole
        meta-batch. With ``self.workers`` > 1 the tasks run on that many threads
        (``engine/workers.py``), each handing back its gradient, added in task order: peak
        memory then holds ``workers`` graphs. Returns a dict with the mean query ``loss`` and
        ``accuracy`` (when the task is a classification). Call the outer optimizer's
        ``step()`` and ``zero_grad()`` after it. Gradients go to ``meta_parameters()`` only, on
        one thread as on several: a Tensor the loss reads that is not among them gets none
        (register it; one thread had filled its ``.grad`` through ``backward()``, several had
        not, and a failed step had left part of it there).
        """
        tasks_given(tasks, type(self).__name__)
        params = self.meta_parameters()

        def one(numbered):
            i, task = numbered
            try:
                loss, acc = self.task_loss(task)    # (loss.data: no read before the end)
                return loss.data, acc, grad(loss * (1.0 / len(tasks)), params,
                                            allow_unused=True)
            except Exception as error:   # which task of the batch (Python 3.11 prints notes)
                if hasattr(error, "add_note"):
                    error.add_note(f"{type(self).__name__}.outer_step: in task {i} of "
                                   f"{len(tasks)}")
                raise

        if self.workers > 1 and len(tasks) > 1:
            results = map_threads(one, enumerate(tasks), self.workers)
            for _, _, grads in results:
                accumulate(params, grads)
        else:
            results = []
            for numbered in enumerate(tasks):   # each task's gradient added before the next
                loss, acc, grads = one(numbered)
                accumulate(params, grads)
                results.append((loss, acc, None))     # (its gradient added, not kept)
        return summary([r[0] for r in results], [r[1] for r in results])


def distinct(params, who):
    """Refuse one Tensor under two names (a layer registered as two children): the inner loop
    adapts each name apart, so the tie would break after the first step, silently."""
    first = {}
    for name, p in params.items():
        if id(p) in first:
            raise ValueError(f"{who}: parameters {first[id(p)]!r} and {name!r} are one Tensor "
                             "(a layer registered twice?): to tie weights, register it once and "
                             "call it twice (call_child), or read one parameter in two places")
        first[id(p)] = name


def tasks_given(tasks, who):
    """Refuse an empty meta-batch (its mean loss would be NaN, with only a NumPy warning)."""
    if len(tasks) == 0:
        raise ValueError(f"{who}: a meta-batch needs at least one task, got none")


def nonempty(who, **parts):
    """Refuse a task whose ``parts`` (name=array) have no rows: a support set without shots, a
    context without points, an episode without steps. NumPy's error from deep inside (``low >=
    high``, a reshape of size 0) would name neither the learner nor the part."""
    for name, array in parts.items():
        if len(array) == 0:
            raise ValueError(f"{who}: empty {name} in the task (shape {np.shape(array)}); it "
                             "needs at least one")


def labels_within(who, ways, **parts):
    """Refuse ``parts`` (name=labels) that are not integers in [0, ``ways``): a learner that
    picks its examples class by class (SNAIL's shots) had dropped the others without a word,
    and MANN's label inputs met a bare IndexError."""
    for name, labels in parts.items():
        labels = np.asarray(labels)
        if labels.size and labels.dtype.kind not in "iu":
            raise ValueError(f"{who}: {name} labels must be integers, got dtype {labels.dtype}")
        bad = labels[(labels < 0) | (labels >= ways)]
        if bad.size:
            raise ValueError(f"{who}: {name} labels must lie in [0, {ways}) (its ways), got "
                             f"{bad.flat[0]}")


def one_label_each(who, images, labels, part):
    """Refuse ``labels`` that are not a vector of one label per image of ``images``: MANN and
    SNAIL, which order them together, had read as many images as labels without a word, and
    MANN's previous-label inputs had broadcast a (T, 1) column into rows of all ones."""
    if np.ndim(labels) != 1 or len(labels) != len(images):
        raise ValueError(f"{who}: {part} labels must be a vector of one label per image, got "
                         f"shape {np.shape(labels)} for {len(images)} images")


def check_settings(who, rates=(), steps=()):
    """``rates`` (name, value): finite numbers > 0; ``steps`` (name, value): integers >= 0;
    else a ValueError naming the setting (the command line checks its options the same way)."""
    for name, value in rates:
        if not (isinstance(value, (int, float, np.number)) and np.isfinite(value) and value > 0):
            raise ValueError(f"{who}: {name} must be a finite number > 0, got {value}")
    for name, value in steps:
        if isinstance(value, (bool, np.bool_)) or not (isinstance(value, (int, np.integer))
                                                      and value >= 0):
            raise ValueError(f"{who}: {name} must be an integer >= 0, got {value}")


def data_rng(array):
    """A generator seeded by a checksum of ``array`` (a batch's images or points): the same
    data, the same draws, so a resumed run repeats them (SNAIL's shots and order, MANN's
    sequence order, the CNP's context size)."""
    return np.random.default_rng(zlib.crc32(np.ascontiguousarray(array).tobytes()))


def as_tensor(x, params):
    """Task data as a constant Tensor on the device of the parameters ``params``, floating
    data in their floating dtype (float64 images, NumPy's default, had run a float32 model's
    whole task in float64); integer and boolean data (ids, masks) as they are. An array, or a
    Tensor: a tuple of inputs is not stacked into one behind the model's back, it is refused."""
    if isinstance(x, tuple):
        raise TypeError(f"task inputs must be arrays, got a tuple of {len(x)}: put the parts "
                        "in one array, or write a learner whose task_loss unpacks them")
    like = next(iter(params.values()))
    dtype = x.dtype if hasattr(x, "dtype") else np.asarray(x).dtype
    floating = like.dtype.kind == "f" and dtype.kind == "f"
    if not isinstance(x, Tensor):   # one conversion (a copy, then a cast, had been two)
        return ops.constant(x, like, dtype=like.dtype if floating else None)
    return x.astype(like.dtype) if floating and x.dtype != like.dtype else x  # a Cast: graph kept


def total(terms):
    """The sum of a list of Tensors, added left to right (no constant 0 in the graph)."""
    return functools.reduce(operator.add, terms)


def summary(losses, accs):
    """The metrics dict of a meta-batch: mean loss, and mean accuracy when there is one. The
    values may be numbers or unread 0-d arrays, on a GPU too (a loss's ``.data``,
    ``F.unread_accuracy``), read here together, once the step's work is queued: a read waits
    for every kernel queued before it, and a read per task had left the GPU idle while the
    host queued each next task's work."""
    accs = [] if not accs or accs[0] is None else list(accs)
    values = read(list(losses) + accs)
    out = {"loss": float(np.mean(values[:len(losses)]))}
    if accs:
        out["accuracy"] = float(np.mean(values[len(losses):]))
    return out


def metrics(loss, acc):
    """(loss, accuracy or None) as floats, read in one go: an ``evaluate``'s return.

    >>> metrics(np.float32(0.5), None)
    (0.5, None)
    """
    loss, *acc = read([loss] + ([] if acc is None else [acc]))
    return loss, acc[0] if acc else None


def read(values):
    """The Python floats of numbers and 0-d arrays; those on a GPU read in one transfer (one
    wait for the GPU, not one each)."""
    on_gpu = [device_of(v) == "cuda" for v in values]
    gpu = [v for v, there in zip(values, on_gpu) if there]
    fetched = iter(array_module(gpu[0]).stack(gpu).get().tolist() if gpu else ())
    return [next(fetched) if there else float(v) for v, there in zip(values, on_gpu)]
