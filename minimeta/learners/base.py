"""What every learner trained by backpropagation shares: the outer step over a meta-batch.

A learner defines ``task_loss(task) → (loss Tensor, accuracy or None)`` and holds its trained
parameters in ``self.params``; this base class turns that into ``outer_step`` (the gradient of
the mean query loss, accumulated into ``.grad`` for an outer optimizer) and
``meta_parameters``. MAML and its variants (``maml.py``) and the metric-based learners
(``metric.py``) both build on it; Reptile (``reptile.py``) updates its parameters itself.

Read next: ``maml.py``.
"""
import numpy as np


class Learner:
    """Base class: subclasses set ``self.params`` and define ``task_loss`` and ``evaluate``."""

    params = {}

    def task_loss(self, task):
        raise NotImplementedError

    def meta_parameters(self):
        """Everything the outer optimizer updates."""
        return list(self.params.values())

    def outer_step(self, tasks):
        """Accumulate the gradient of the mean query loss over ``tasks`` into ``.grad``.

        Each task's graph is differentiated and dropped before the next task is processed, so
        peak memory holds one task's graph (for MAML: one inner loop), not the whole
        meta-batch. Returns a dict with the mean query ``loss`` and ``accuracy`` (when the
        task is a classification). Call the outer optimizer's ``step()`` and ``zero_grad()``
        after it.
        """
        losses, accs = [], []
        for task in tasks:
            loss, acc = self.task_loss(task)
            (loss * (1.0 / len(tasks))).backward()
            losses.append(loss.item())
            accs.append(acc)
        return summary(losses, accs)


def summary(losses, accs):
    """The metrics dict of a meta-batch: mean loss, and mean accuracy when there is one."""
    out = {"loss": float(np.mean(losses))}
    if accs and accs[0] is not None:
        out["accuracy"] = float(np.mean(accs))
    return out
