"""Reptile (Nichol, Achiam and Schulman 2018): meta-learning without second derivatives.

For each task, start from θ and run k steps of an ordinary optimizer (SGD or Adam) on the
task's data, reaching φᵢ. (The paper's code runs Adam with β₁ = 0, no momentum across its
few steps; ``inner_betas`` sets it, default (0.9, 0.999) as PyTorch's, which the runs of
docs/RESULTS.md used, and which tested 13 points better there at 15 minutes.) Then move θ
toward the adapted weights:

    θ ← θ + ε · mean_i (φᵢ − θ).

No graph is kept across steps: the update direction comes from the parameters, not a gradient,
so Reptile writes its own ``outer_step`` (it updates θ itself; there is no outer optimizer).
The loss by name, the task data as a Tensor and the metrics come from ``base.py``.

Read next: ``minimeta/learners/metric.py`` (Prototypical, Matching and Relation Networks).
"""
from .. import optim
from ..engine import grad, no_grad, set_grad_enabled
from ..engine.backend import array_module
from ..engine.tensor import Tensor
from ..engine.workers import map_threads
from .base import (Learner, all_or_nothing, as_tensor, check_settings, metrics, summary,
                   tasks_given)


class Reptile(Learner):
    """Reptile with an inner SGD or Adam optimizer (state reset for every task)."""

    def __init__(self, model, inner_lr, inner_steps, outer_lr, inner_optimizer="sgd",
                 loss="cross_entropy", params=None, test_steps=None, test_lr=None,
                 inner_betas=(0.9, 0.999)):
        if inner_optimizer not in ("sgd", "adam"):
            raise ValueError(f"Reptile: inner_optimizer must be 'sgd' or 'adam', got "
                             f"{inner_optimizer!r}")
        check_settings("Reptile", [("inner_lr", inner_lr), ("outer_lr", outer_lr)] +
                       ([("test_lr", test_lr)] if test_lr is not None else []),
                       [("inner_steps", inner_steps)] + ([("test_steps", test_steps)]
                                                         if test_steps is not None else []))
        if inner_steps == 0:            # (it had trained: every outer step a no-op)
            raise ValueError("Reptile: inner_steps must be at least 1, got 0: with none, "
                             "φ = θ and the outer step θ + ε·(φ − θ) never moves θ")
        super().__init__(model, loss, params)
        self.inner_lr, self.outer_lr = float(inner_lr), float(outer_lr)   # Python numbers
        self.inner_steps = int(inner_steps)
        self.inner_optimizer, self.inner_betas = inner_optimizer, tuple(inner_betas)
        if inner_optimizer == "adam":
            optim.Adam([Tensor([0.0])], betas=self.inner_betas)   # its check, now
        self.test_steps = self.inner_steps if test_steps is None else int(test_steps)
        self.test_lr = self.inner_lr if test_lr is None else float(test_lr)

    def adapt(self, x, y, steps=None, lr=None):
        """φ after ``steps`` optimizer steps from θ on (x, y): a dict of new leaf Tensors."""
        fast = {k: Tensor(p.data.copy(), requires_grad=True) if p.requires_grad else p
                for k, p in self.params.items()}            # (a frozen parameter stays)
        trained = [t for t in fast.values() if t.requires_grad]
        lr = self.inner_lr if lr is None else lr
        opt = optim.SGD(trained, lr=lr) if self.inner_optimizer == "sgd" else \
            optim.Adam(trained, lr=lr, betas=self.inner_betas)
        x = as_tensor(x, fast)
        for _ in range(self.inner_steps if steps is None else steps):
            loss = self.loss(self.model(x, fast), y)
            opt.step(grad(loss, trained))
        return fast

    def query_metrics(self, fast, xq, yq):
        """Query loss and accuracy (or None) at the weights ``fast``, no graph, both unread
        (``summary`` and ``metrics`` read them)."""
        with no_grad():
            out = self.model(as_tensor(xq, fast), fast)
            return self.loss(out, yq).data, self.accuracy(out, yq)

    @all_or_nothing
    def outer_step(self, tasks):
        """θ ← θ + ε · mean(φᵢ − θ) over ``tasks``; returns the mean query loss/accuracy
        after adaptation (measured, not trained on)."""
        tasks_given(tasks, "Reptile")
        delta = {k: array_module(p.data).zeros_like(p.data) for k, p in self.params.items()}

        def one(task):  # the tasks run on ``self.workers`` threads, added in task order
            xs, ys, xq, yq = task
            fast = self.adapt(xs, ys)
            return fast, self.query_metrics(fast, xq, yq)

        losses, accs = [], []
        for fast, (loss, acc) in map_threads(one, tasks, self.workers):
            for k, p in self.params.items():
                delta[k] += (fast[k].data - p.data) / len(tasks)
            losses.append(loss)
            accs.append(acc)
        for k, p in self.params.items():
            if not p.requires_grad:
                continue
            new = p.data.copy(order="K")   # a new array, as optim's steps make
            new += (self.outer_lr * delta[k]).astype(p.dtype)
            p.data = new
            p.changed_in_place()
        return summary(losses, accs)

    def evaluate(self, task, steps=None):
        """Query loss and accuracy after fine-tuning on the support set."""
        xs, ys, xq, yq = task
        with set_grad_enabled(True):    # the fine-tuning needs gradients, even in no_grad
            fast = self.adapt(xs, ys, self.test_steps if steps is None else steps, self.test_lr)
        return metrics(*self.query_metrics(fast, xq, yq))
