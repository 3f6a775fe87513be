"""A meta-batch as one batch: ``StackedTasks(learner)`` for MAML, FOMAML, Meta-SGD and ANIL.

The per-task loop (``MAML.meta_gradient``, ``Learner.outer_step``) runs one inner loop per
task. Here the T tasks of a meta-batch are stacked on a leading axis and θ is broadcast to T
copies (a weight to (T, in, out) or (T, O, C, kh, kw), a vector to (T, 1, size)), so one inner
loop adapts every copy at once: vectorising over tasks by hand, as ``jax.vmap`` would. It needs
tasks of equal shapes and a model whose layers take that axis: every layer of ``nn.mlp`` and
``nn.conv4`` does (``functional/layers.py``: a stack of T convolutions is one batched kernel
call, batch norm keeps per-task statistics and applies its running-average updates in task
order, ``engine/workers.task_order``).

MAML's code is not touched: the wrapper hands the learner a *view* of itself (a shallow copy)
whose parameters are the T copies and whose loss is the **sum** of the T task losses of the
stacked outputs. The gradient of that sum with respect to copy t is task t's own gradient, so
copy t takes task t's inner steps; the view's query loss is T times the mean query loss; and
the gradient of the broadcast sums the T copies' gradients back into θ. So the meta-gradient
is the per-task loop's (``tests/test_vectorized_tasks.py`` holds them equal), from one graph
of a few large ops instead of T graphs of small ones: the way to run a meta-batch on a GPU,
where each op costs a kernel launch (the CLI stacks there). The price: the graph of every task
is held at once (the loop holds one at a time); and on a CPU a conv net's loop of tasks on
worker threads is faster (docs/PERFORMANCE.md).

Read next: ``minimeta/learners/reptile.py`` (Reptile).
"""
import copy

import numpy as np

from ..engine import grad, ops
from ..engine.replay import Traced
from ..engine.workers import task_order
from ..engine.tensor import Tensor
from .base import LOSSES, accumulate, all_or_nothing, backward_to, summary, tasks_given
from .maml import MAML


class StackedTasks:
    """``learner`` (MAML or a subclass) with each meta-batch run as one stacked batch.

    ``outer_step`` and ``meta_gradient`` stack the tasks; everything else (``evaluate`` on one
    task, ``meta_parameters``, ``params``, ``rates``, …) is the wrapped learner's.
    """

    def __init__(self, learner, replay=True):
        if not isinstance(learner, MAML):
            raise TypeError(f"StackedTasks: wraps a MAML-family learner, not "
                            f"{type(learner).__name__}")
        if type(learner).adapt_path is not MAML.adapt_path:   # (a norm, a clip: over all T)
            raise TypeError(f"StackedTasks: {type(learner).__name__} has an inner loop of its "
                            "own (adapt_path), which would act on the T stacked copies at once "
                            "(a gradient norm over every task): run its per-task loop instead")
        self.learner = learner
        self._traced = Traced(self._loss_and_gradient) if replay else None

    def __getattr__(self, name):  # only called for names this wrapper does not define
        if name in ("learner", "_traced"):  # not set yet (e.g. during copying): no recursion
            raise AttributeError(name)
        return getattr(self.learner, name)

    def stacked_loss(self, tasks):
        """Mean query loss (a Tensor) and accuracy of ``tasks``, adapted in one inner loop."""
        return self._stacked_loss(self._stacked(tasks))

    def _stacked(self, tasks):
        """The parts of ``tasks`` (support and query inputs and targets), each stacked."""
        tasks_given(tasks, "StackedTasks")
        parts = stack_tasks(tasks, "StackedTasks")
        learner = self.learner
        scalars = [name for name in learner.adapt_names if learner.params[name].ndim == 0]
        if scalars:   # (n,) would meet a layer's last axis, not the task axis: silently wrong
            raise ValueError(f"StackedTasks: the 0-d parameter {scalars[0]!r} gets no task axis "
                             "a layer would broadcast right; give it shape (1,), or run the "
                             "tasks in a loop (the learner itself)")
        return parts

    def _stacked_loss(self, parts):
        learner, n = self.learner, len(parts[0])
        view = copy.copy(learner)
        view.params = {name: ops.broadcast_to(p, per_task_shape(p, n))
                       if name in learner.adapt_names else p
                       for name, p in learner.params.items()}
        view.loss = lambda out, target: _summed(learner.loss, out, target, n)
        with task_order(n):     # batch-norm running averages: updated in the loop's order
            loss, acc = view.task_loss(parts)
        if hasattr(view, "checked_reads"):      # MAML's one-time check, done: not every step
            learner.checked_reads = view.checked_reads
        return loss * (1.0 / n), acc

    def meta_gradient(self, tasks):
        """As ``MAML.meta_gradient``: the same numbers, from one stacked graph."""
        if self._replays():
            return self._replayed(tasks)[1]
        return grad(self.stacked_loss(tasks)[0], self.learner.meta_parameters(),
                    allow_unused=True)

    @all_or_nothing
    def outer_step(self, tasks):
        """As ``Learner.outer_step``, the whole meta-batch in one graph."""
        if self._replays():
            loss, grads = self._replayed(tasks)
            accumulate(self.meta_parameters(), grads)
            return summary([loss.data], [None])
        loss, acc = self.stacked_loss(tasks)
        backward_to(loss, self.meta_parameters())
        return summary([loss.data], [acc])

    # ----- a regression's meta-iteration, recorded once and replayed (``engine/replay.py``) -----
    def _replays(self):
        """Whether the meta-iteration is replayed: asked for (``replay=True``, the default),
        and a regression. (A classification's loss indexes its logits by this call's labels,
        arrays its ``getitem`` holds, and its accuracy is read beside the ops: the recording would
        refuse it.)"""
        return self._traced is not None and not self.learner.classification

    def _replayed(self, tasks):
        """(mean query loss, its gradients as ``meta_gradient``'s), as value Tensors."""
        learner = self.learner
        tensors = {id(t): t for t in list(learner.params.values()) + learner.meta_parameters()}
        loss, *grads = self._traced(*tensors.values(), *self._stacked(tasks),
                                    key=_settings(learner))
        return loss, tuple(grads)

    def _loss_and_gradient(self, *args):
        """The replayed function: the learner's Tensors first (read where the learner keeps
        them, given so that the replay knows their arrays), then the stacked parts."""
        loss = self._stacked_loss([a for a in args if not isinstance(a, Tensor)])[0]
        return (loss,) + grad(loss, self.learner.meta_parameters(), allow_unused=True)


def _settings(learner):
    """What the learner's Python does with the arrays depends on, beside their shapes: its
    settings (numbers, flags, names and lists of them), its model, loss and parameters' names
    (a ``key`` of ``Traced``: a changed setting records anew)."""
    plain = (bool, int, float, str, type(None))
    settings = tuple((k, tuple(v) if isinstance(v, list) else v)
                     for k, v in sorted(vars(learner).items()) if k != "checked_reads" and (
                         isinstance(v, plain) or isinstance(v, (list, tuple)) and
                         all(isinstance(x, plain) for x in v)))
    return settings + (id(learner.model), id(learner.loss), tuple(learner.params),
                       getattr(learner.model, "training", None))


def _summed(loss, out, target, n):
    """The sum of the ``n`` task losses of stacked ``out`` and ``target``: a named loss (a mean
    over examples) on the flattened batch, times ``n``; any other callable (a sum of squares,
    a weighted loss) task by task, since ``n`` times its value on the flattened batch is the
    sum of the task losses only for a mean. The MSE, a mean over every element, takes the
    stack as it is: the same bits, without a reshape at each step and order (22 of the 452
    ops of a 5-step sinusoid meta-iteration)."""
    if loss is LOSSES["mse"]:
        return loss(out, target) * n
    if loss in LOSSES.values():
        return loss(_flat(out), _flat(target)) * n
    total = None
    for t in range(n):
        term = loss(out[t], target[t])
        total = term if total is None else total + term
    return total


def per_task_shape(p, n):
    """The shape of ``n`` copies of parameter ``p``, one a task on a leading axis: a 1-D
    parameter (a bias) becomes (n, 1, size), ready to broadcast over each task's examples in
    x @ w + b; a weight (n, in, out)."""
    return (n,) + (1,) * (p.ndim == 1) + p.shape


def stack_tasks(tasks, who):
    """The parts of ``tasks`` (support and query inputs and targets), each stacked on a leading
    axis; tasks of unequal shapes are a ValueError naming ``who``."""
    shapes = {tuple([p.shape if hasattr(p, "shape") else np.shape(p) for p in task])
              for task in tasks}  # (an array's own shape: no call on a GPU's)
    if len(shapes) != 1:
        raise ValueError(f"{who}: tasks must have equal shapes to be stacked, got "
                         f"{sorted(shapes)}")
    return tuple(map(_stack, zip(*tasks)))


def _stack(arrays):
    """``np.stack(arrays)`` (of one shape): for host arrays of a dimension or more, one
    concatenation and a view of it, the same array (np.stack makes a view of each first: a
    sinusoid meta-batch's four parts of 25 small arrays took 55 µs, now 20)."""
    first = arrays[0]
    if type(first) is np.ndarray and first.ndim:
        return np.concatenate(arrays).reshape((len(arrays),) + first.shape)
    return np.stack(arrays)


def _flat(a):
    """Stacked outputs or targets (T, n, ...) as one batch (T·n, ...): its mean loss is the
    mean of the T task losses (each a mean over its n examples)."""
    if isinstance(a, Tensor):
        return ops.reshape(a, (-1,) + a.shape[2:])
    a = np.asarray(a)
    return a.reshape((-1,) + a.shape[2:])
