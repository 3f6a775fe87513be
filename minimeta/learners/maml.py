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
from .base import Learner


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
                 params=None, test_steps=None, adapt_names=None):
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

    # ----- the inner loop ------------------------------------------------------------------
    def step_size(self, name):
        """The inner learning rate of parameter ``name`` (a number; a Tensor in Meta-SGD)."""
        return self.inner_lr

    def adapt(self, params, x_support, y_support, steps=None, create_graph=None):
        """Return φ after ``steps`` inner gradient steps from ``params`` on the support set.

        φ is differentiable with respect to ``params`` unless first-order (or
        ``create_graph=False``, used at evaluation time where no meta-gradient is needed).
        """
        steps = self.inner_steps if steps is None else steps
        create_graph = (not self.first_order) if create_graph is None else create_graph
        x_support = _as_tensor(x_support, params)
        fast = dict(params)
        for _ in range(steps):
            inner = self.loss(self.model(x_support, fast), y_support)
            grads = grad(inner, [fast[k] for k in self.adapt_names], create_graph=create_graph,
                         allow_unused=True)
            for name, g in zip(self.adapt_names, grads):
                if g is not None:
                    fast[name] = fast[name] - self.step_size(name) * g
        return fast

    # ----- the outer loop ------------------------------------------------------------------
    def task_loss(self, task, steps=None, create_graph=None):
        """Query loss (a Tensor) and query accuracy (or None) after adapting to one task."""
        xs, ys, xq, yq = task
        fast = self.adapt(self.params, xs, ys, steps, create_graph)
        out = self.model(_as_tensor(xq, fast), fast)
        acc = F.accuracy(out, yq) if self.classification else None
        return self.loss(out, yq), acc

    def meta_gradient(self, tasks):
        """The meta-gradient as a tuple aligned with ``meta_parameters()`` (no accumulation)."""
        total = None
        for task in tasks:
            loss, _ = self.task_loss(task)
            total = loss if total is None else total + loss
        return grad(total * (1.0 / len(tasks)), self.meta_parameters(), allow_unused=True)

    def evaluate(self, task, steps=None):
        """Query loss and accuracy after ``steps`` (default ``test_steps``) inner steps."""
        loss, acc = self.task_loss(task, self.test_steps if steps is None else steps,
                                   create_graph=False)
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
        params = kwargs.get("params") or model.named_parameters()
        head = head if head is not None else list(params)[-1].rsplit(".", 1)[0] + "."
        names = [n for n in params if n.startswith(head)]
        if not names:
            raise ValueError(f"ANIL: no parameter name starts with head prefix {head!r}")
        super().__init__(model, inner_lr, inner_steps, adapt_names=names, **kwargs)


def _as_tensor(x, params):
    """Task data as a constant Tensor on the device of the parameters ``params``."""
    return ops.constant(x, next(iter(params.values())))


