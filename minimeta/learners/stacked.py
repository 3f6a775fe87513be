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
from ..engine.workers import task_order
from ..engine.tensor import Tensor
from .base import LOSSES, all_or_nothing, backward_to, summary, tasks_given
from .maml import MAML


class StackedTasks:
    """``learner`` (MAML or a subclass) with each meta-batch run as one stacked batch.

    ``outer_step`` and ``meta_gradient`` stack the tasks; everything else (``evaluate`` on one
    task, ``meta_parameters``, ``params``, ``rates``, …) is the wrapped learner's.
    """

    def __init__(self, learner):
        if not isinstance(learner, MAML):
            raise TypeError(f"StackedTasks: wraps a MAML-family learner, not "
                            f"{type(learner).__name__}")
        if type(learner).adapt_path is not MAML.adapt_path:   # (a norm, a clip: over all T)
            raise TypeError(f"StackedTasks: {type(learner).__name__} has an inner loop of its "
                            "own (adapt_path), which would act on the T stacked copies at once "
                            "(a gradient norm over every task): run its per-task loop instead")
        self.learner = learner

    def __getattr__(self, name):  # only called for names this wrapper does not define
        if name == "learner":     # not set yet (e.g. during copying): no recursion
            raise AttributeError(name)
        return getattr(self.learner, name)

    def stacked_loss(self, tasks):
        """Mean query loss (a Tensor) and accuracy of ``tasks``, adapted in one inner loop."""
        tasks_given(tasks, "StackedTasks")
        shapes = {tuple(getattr(part, "shape", None) or np.shape(part) for part in task)
                  for task in tasks}  # (an array's own shape: no call on a GPU's)
        if len(shapes) != 1:
            raise ValueError(f"StackedTasks: tasks must have equal shapes to be stacked, got "
                             f"{sorted(shapes)}")
        learner, n = self.learner, len(tasks)
        scalars = [name for name in learner.adapt_names if learner.params[name].ndim == 0]
        if scalars:   # (n,) would meet a layer's last axis, not the task axis: silently wrong
            raise ValueError(f"StackedTasks: the 0-d parameter {scalars[0]!r} gets no task axis "
                             "a layer would broadcast right; give it shape (1,), or run the "
                             "tasks in a loop (the learner itself)")
        view = copy.copy(learner)
        # a 1-D parameter (a bias) becomes (n, 1, size): ready to broadcast over each task's
        # examples in x @ w + b
        view.params = {name: ops.broadcast_to(p, (n,) + (1,) * (p.ndim == 1) + p.shape)
                       if name in learner.adapt_names else p
                       for name, p in learner.params.items()}
        view.loss = lambda out, target: _summed(learner.loss, out, target, n)
        with task_order(n):     # batch-norm running averages: updated in the loop's order
            loss, acc = view.task_loss(tuple(np.stack(part) for part in zip(*tasks)))
        if hasattr(view, "checked_reads"):      # MAML's one-time check, done: not every step
            learner.checked_reads = view.checked_reads
        return loss * (1.0 / n), acc

    def meta_gradient(self, tasks):
        """As ``MAML.meta_gradient``: the same numbers, from one stacked graph."""
        return grad(self.stacked_loss(tasks)[0], self.learner.meta_parameters(),
                    allow_unused=True)

    @all_or_nothing
    def outer_step(self, tasks):
        """As ``Learner.outer_step``, the whole meta-batch in one graph."""
        loss, acc = self.stacked_loss(tasks)
        backward_to(loss, self.meta_parameters())
        return summary([loss.data], [acc])


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


def _flat(a):
    """Stacked outputs or targets (T, n, ...) as one batch (T·n, ...): its mean loss is the
    mean of the T task losses (each a mean over its n examples)."""
    if isinstance(a, Tensor):
        return ops.reshape(a, (-1,) + a.shape[2:])
    a = np.asarray(a)
    return a.reshape((-1,) + a.shape[2:])
