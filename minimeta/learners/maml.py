"""MAML (Finn et al. 2017), its first-order variant, Meta-SGD and ANIL: one inner loop, four uses.

The inner loop adapts the parameters θ to a task's support set by gradient descent,

    φ₀ = θ,   φ_{k+1} = φ_k − α ∇ L(φ_k, S),

and the outer loss is the query loss L(φ_K, Q). Because every step's gradient is taken with
``create_graph=True``, the engine differentiates through the update itself, and the meta-gradient
is the exact ∇θ L(φ, Q) = ∇φ L(φ, Q) · Π_k (I − α ∇² L(φ_k, S)): no approximation is coded here.

- ``first_order=True`` (FOMAML) takes the same steps with the inner gradients detached, so the
  Hessian terms vanish and the meta-gradient is ∇φ L(φ, Q).
- ``MetaSGD`` replaces the scalar α by a learned per-parameter rate, meta-trained with θ.
- ``ANIL`` adapts only the head in the inner loop (``adapt_names``); the body is shared.
- ``vectorize=True`` runs a whole meta-batch as one batch: the tasks are stacked on a leading
  axis and θ is broadcast to one copy per task, so one inner loop adapts every copy at once
  (vectorising over tasks by hand, as ``jax.vmap`` would). The exact same meta-gradient, for
  models whose layers broadcast over that axis (``nn.mlp``: matmul-based), at a fraction of the
  per-task loop's Python overhead; the loop stays the definition, and a test holds them equal.
- ``multi_step_loss=True`` meta-trains on the mean of the query losses after 1, 2, …, K inner
  steps instead of after K only (the multi-step loss of Antoniou et al. 2019, "How to train
  your MAML"), so the initialisation is good after every step count; a list of K weights
  (normalised to sum 1) weighs the steps unequally.

The inner loss is the **mean** over the support examples (the reference TensorFlow MAML sums
over a K-shot batch for regression, which multiplies the effective α by K); batch norm always
normalises with the statistics of the batch in hand (see ``functional/layers.py``).

Read next: ``reptile.py``.
"""
import numpy as np

from .. import functional as F
from ..engine import grad, ops
from ..engine.backend import to_device
from ..engine.tensor import Tensor
from .base import Learner, summary


def default_loss(name):
    """The task loss by name: 'cross_entropy' (classification) or 'mse' (regression)."""
    return {"cross_entropy": F.cross_entropy, "mse": F.mse_loss}[name]


class MAML(Learner):
    """Model-agnostic meta-learning with an exact (second-order) meta-gradient.

    ``model`` is any callable ``model(x, params)``; ``params`` the ordered dict θ of leaf
    Tensors to meta-train (default: ``model.named_parameters()``). ``outer_step`` (from
    ``base.Learner``) accumulates the exact meta-gradient into ``.grad``.
    """

    def __init__(self, model, inner_lr, inner_steps=1, first_order=False, loss="cross_entropy",
                 params=None, test_steps=None, adapt_names=None, vectorize=False,
                 multi_step_loss=False):
        if inner_steps < 0 or inner_lr <= 0:
            raise ValueError(f"{type(self).__name__}: need inner_lr > 0 and inner_steps >= 0, "
                             f"got {inner_lr}, {inner_steps}")
        self.model = model
        self.params = params if params is not None else model.named_parameters()
        self.inner_lr, self.inner_steps = inner_lr, inner_steps
        self.test_steps = inner_steps if test_steps is None else test_steps
        self.first_order = first_order
        self.loss = default_loss(loss) if isinstance(loss, str) else loss
        self.classification = self.loss is F.cross_entropy
        self.adapt_names = list(self.params) if adapt_names is None else list(adapt_names)
        if not isinstance(multi_step_loss, bool):  # K weights: checked, normalised once
            weights = [float(w) for w in multi_step_loss]
            if len(weights) != inner_steps or min(weights) < 0 or sum(weights) <= 0:
                raise ValueError(f"{type(self).__name__}: multi_step_loss needs {inner_steps} "
                                 f"weights >= 0, not all 0, got {weights}")
            multi_step_loss = [w / sum(weights) for w in weights]
        self.vectorize, self.multi_step_loss = vectorize, multi_step_loss

    # ----- the inner loop ------------------------------------------------------------------
    def step_size(self, name):
        """The inner learning rate of parameter ``name`` (a number; a Tensor in Meta-SGD)."""
        return self.inner_lr

    def adapt(self, params, x_support, y_support, steps=None, create_graph=None, tasks=None):
        """Return φ after ``steps`` inner gradient steps from ``params`` on the support set."""
        return self.adapt_path(params, x_support, y_support, steps, create_graph, tasks)[-1]

    def adapt_path(self, params, x_support, y_support, steps=None, create_graph=None,
                   tasks=None):
        """The list [φ₀ = params, φ₁, …, φ_steps] of the inner loop's parameters.

        φ is differentiable with respect to ``params`` unless first-order (or
        ``create_graph=False``, used at evaluation time where no meta-gradient is needed).
        ``tasks=T`` says the support set stacks T tasks on a leading axis and ``params`` holds
        one copy per task (see ``stacked_task_loss``): the inner loss is then the sum of the
        T task losses, whose gradient with respect to copy t is task t's own gradient.
        """
        steps = self.inner_steps if steps is None else steps
        create_graph = (not self.first_order) if create_graph is None else create_graph
        x_support = _as_tensor(x_support, params)
        fast = dict(params)
        path = [fast]
        for _ in range(steps):
            out = self.model(x_support, fast)
            inner = self.loss(out, y_support) if tasks is None \
                else self.stacked_loss(out, y_support) * tasks
            grads = grad(inner, [fast[k] for k in self.adapt_names], create_graph=create_graph,
                         allow_unused=True)
            for name, g in zip(self.adapt_names, grads):
                if g is not None:
                    fast[name] = fast[name] - self.step_size(name) * g
            path.append(dict(fast))
        return path

    # ----- the outer loop ------------------------------------------------------------------
    def task_loss(self, task, steps=None, create_graph=None):
        """Query loss (a Tensor) and query accuracy (or None) after adapting to one task.

        The loss is at the last step, or with ``multi_step_loss`` the (weighted) mean over
        steps 1..K; the accuracy is always at the last step.
        """
        xs, ys, xq, yq = task
        path = self.adapt_path(self.params, xs, ys, steps, create_graph)
        return self.query_loss(path, xq, yq, self.loss, self.multi_step_loss)

    def query_loss(self, path, xq, yq, loss_fn, every_step):
        """(loss, accuracy) on the query set after the inner-loop ``path``: the loss after the
        last step, or, when ``every_step`` (True or K weights), the weighted mean of the losses
        after steps 1..K (equal weights for True)."""
        xq = _as_tensor(xq, path[-1])
        used = path[1:] if every_step is not False and len(path) > 1 else path[-1:]
        weights = every_step if isinstance(every_step, list) else [1.0 / len(used)] * len(used)
        outs = [self.model(xq, fast) for fast in used]
        if len(outs) == 1:
            loss = loss_fn(outs[0], yq)
        else:  # the weighted sum; a zero weight adds nothing to the graph
            terms = [loss_fn(out, yq) * w for w, out in zip(weights, outs) if w]
            loss = terms[0]
            for term in terms[1:]:
                loss = loss + term
        acc = None
        if self.classification and outs[-1].ndim > 2:  # stacked tasks: one batch of all
            acc = F.accuracy(ops.reshape(outs[-1], (-1, outs[-1].shape[-1])),
                             np.asarray(yq).reshape(-1))
        elif self.classification:
            acc = F.accuracy(outs[-1], yq)
        return loss, acc

    def meta_gradient(self, tasks):
        """The meta-gradient as a tuple aligned with ``meta_parameters()`` (no accumulation)."""
        if self.vectorize:
            total, _ = self.stacked_task_loss(tasks)
        else:
            total = None
            for task in tasks:
                loss, _ = self.task_loss(task)
                total = loss if total is None else total + loss
            total = total * (1.0 / len(tasks))
        return grad(total, self.meta_parameters(), allow_unused=True)

    def outer_step(self, tasks):
        """As ``Learner.outer_step``; with ``vectorize`` the whole meta-batch in one graph."""
        if not self.vectorize:
            return super().outer_step(tasks)
        loss, acc = self.stacked_task_loss(tasks)
        loss.backward()
        return summary([loss.item()], [acc])

    # ----- a meta-batch as one batch (vectorize=True) --------------------------------------
    def stacked_loss(self, out, target):
        """The mean of the task losses of stacked outputs (T, n, ...) and targets (T, n, ...).

        The tasks are flattened into one batch of T·n examples, whose mean loss is the mean of
        the T task losses (each a mean over its n examples).
        """
        target = np.asarray(target)
        return self.loss(ops.reshape(out, (-1,) + out.shape[2:]),
                         target.reshape((-1,) + target.shape[2:]))

    def stacked_task_loss(self, tasks):
        """Mean query loss (a Tensor) and accuracy of a meta-batch adapted in one inner loop.

        θ is broadcast to shape (T, ...) for the adapted parameters (biases to (T, 1, size)):
        copy t sees only task t's data, and the gradient of the broadcast sums the T copies'
        gradients back into θ, so the meta-gradient equals the per-task loop's
        (``tests/test_vectorized_tasks.py``).
        The price: the graph of every task is held at once (the loop holds one at a time).
        """
        shapes = {tuple(np.shape(part) for part in task) for task in tasks}
        if len(shapes) != 1:
            raise ValueError(f"{type(self).__name__}(vectorize=True): tasks must have equal "
                             f"shapes to be stacked, got {sorted(shapes)}")
        xs, ys, xq, yq = (np.stack(part) for part in zip(*tasks))
        n = len(tasks)
        # a 1-D parameter (a bias) is stacked as (n, 1, size): ready to broadcast over each
        # task's examples, so F.linear need not reshape it at every call
        stacked = {name: ops.broadcast_to(p, (n,) + (1,) * (p.ndim == 1) + p.shape)
                   if name in self.adapt_names else p for name, p in self.params.items()}
        path = self.adapt_path(stacked, xs, ys, tasks=n)
        return self.query_loss(path, xq, yq, self.stacked_loss, self.multi_step_loss)

    def evaluate(self, task, steps=None):
        """Query loss and accuracy after ``steps`` (default ``test_steps``) inner steps."""
        xs, ys, xq, yq = task
        path = self.adapt_path(self.params, xs, ys, self.test_steps if steps is None else steps,
                               create_graph=False)
        loss, acc = self.query_loss(path, xq, yq, self.loss, every_step=False)
        return loss.item(), acc


class MetaSGD(MAML):
    """Meta-SGD (Li et al. 2017): a learned inner rate per parameter element, φ = θ − α ⊙ ∇L.

    The rates start at ``inner_lr`` and are meta-trained with θ (they are in
    ``meta_parameters()``).
    """

    def __init__(self, model, inner_lr, inner_steps=1, **kwargs):
        super().__init__(model, inner_lr, inner_steps, **kwargs)
        self.rates = {name: Tensor(to_device(np.full(p.shape, inner_lr, dtype=p.dtype),
                                             p.device), requires_grad=True, name=f"lr:{name}")
                      for name, p in self.params.items() if name in self.adapt_names}

    def step_size(self, name):
        return self.rates[name]

    def meta_parameters(self):
        return list(self.params.values()) + list(self.rates.values())


class ANIL(MAML):
    """ANIL (Raghu et al. 2020): "almost no inner loop", only ``head`` parameters adapt.

    ``head`` is a name prefix (default: the prefix of the last parameter, e.g. '17.' for the
    linear head of ``conv4``).
    """

    def __init__(self, model, inner_lr, inner_steps=1, head=None, **kwargs):
        params = kwargs.get("params")
        params = model.named_parameters() if params is None else params
        if not params:
            raise ValueError("ANIL: no parameters to adapt (params is empty)")
        head = head if head is not None else list(params)[-1].rsplit(".", 1)[0] + "."
        names = [n for n in params if n.startswith(head)]
        if not names:
            raise ValueError(f"ANIL: no parameter name starts with head prefix {head!r}")
        super().__init__(model, inner_lr, inner_steps, adapt_names=names, **kwargs)


def _as_tensor(x, params):
    """Task data as a constant Tensor on the device of the parameters ``params``."""
    return ops.constant(x, next(iter(params.values())))


