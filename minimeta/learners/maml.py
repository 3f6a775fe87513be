"""MAML (Finn et al. 2017), its first-order variant, Meta-SGD and ANIL: one inner loop, four uses.

The inner loop adapts the parameters θ to a task's support set by gradient descent,

    φ₀ = θ,   φ_{k+1} = φ_k − α ∇ L(φ_k, S),

and the outer loss is the query loss L(φ_K, Q). Because every step's gradient is taken with
``create_graph=True``, the engine differentiates through the update itself, and the meta-gradient
is exact: a row vector times the steps' Jacobians, the last step's first (the Hessians at
different φ_k need not commute),

    ∇θ L(φ_K, Q) = ∇φ L(φ_K, Q) · (I − α ∇² L(φ_{K−1}, S)) ⋯ (I − α ∇² L(φ₀, S));

no approximation is coded here.

- ``first_order=True`` (FOMAML) takes the same steps with the inner gradients detached, so the
  Hessian terms vanish and the meta-gradient is ∇φ L(φ, Q).
- ``MetaSGD`` replaces the scalar α by a learned per-parameter rate, meta-trained with θ.
- ``ANIL`` adapts only the head in the inner loop (``adapt_names``); the body is shared.
- ``StackedTasks(learner)`` (``stacked.py``) runs a whole meta-batch as one batch, through
  this same code: MAML itself knows nothing of stacking.
- ``multi_step_loss=True`` meta-trains on the mean of the query losses after 1, 2, …, K inner
  steps instead of after K only (the multi-step loss of Antoniou et al. 2019, "How to train
  your MAML"), so the initialisation is good after every step count; a list of K weights
  (normalised to sum 1) weighs the steps unequally.

The inner loss is the **mean** over the support examples, as in most PyTorch ports, with the
paper's α (0.4 for 5-way, 0.1 for 20-way Omniglot). The reference TensorFlow code means its
regression loss too, but not its classification loss: per-example cross-entropy divided by K,
which ``tf.gradients`` sums over the N·K examples, so N times the mean, and its α = 0.4
(5-way) and 0.1 (20-way) are both an inner step of 2.0 on a mean loss (docs/RESULTS.md
compares the two at 30 minutes, 3 test steps: 95.4% with 0.4, 70.0% with 2.0, 88.2% with
2.0 tested at 1 step). Batch norm always
normalises with the statistics of the batch in hand (see ``functional/layers.py``).

Read next: ``minimeta/learners/stacked.py`` (a meta-batch as one stacked batch).
"""
import math

import numpy as np

from ..engine import grad, set_grad_enabled
from ..engine.backend import to_device, to_host
from ..engine.tensor import Tensor
from .base import Learner, as_tensor, check_settings, metrics, tasks_given, total


def descend(p, step, g):
    """p − step · g. A number's step is negated and the product added: the same bits (negation
    is exact), and one op fewer in the meta-gradient's backward pass, which passes its gradient
    through an add where a subtraction negates it (30 of 482 ops: the sinusoid, 5 steps)."""
    if isinstance(step, (int, float)):
        return p + (-step) * g
    return p - step * g     # Meta-SGD's learned rate: a Tensor, negated by the subtraction


class MAML(Learner):
    """Model-agnostic meta-learning with an exact (second-order) meta-gradient. ``model``,
    ``loss`` and ``params`` are as in ``base.Learner``, whose ``outer_step`` accumulates the
    meta-gradient into ``.grad``. Only the ``adapt_names`` (default: all of θ; a frozen
    parameter, ``requires_grad = False``, is never adapted) adapt; evaluation takes
    ``test_steps`` (default ``inner_steps``) steps."""

    def __init__(self, model, inner_lr, inner_steps=1, first_order=False, loss="cross_entropy",
                 params=None, test_steps=None, adapt_names=None, multi_step_loss=False):
        check_settings(type(self).__name__, [("inner_lr", inner_lr)],
                       [("inner_steps", inner_steps)] + ([("test_steps", test_steps)]
                                                         if test_steps is not None else []))
        super().__init__(model, loss, params)
        # Python numbers: np.float64(0.4) had run a float32 model's inner loop in float64
        self.inner_lr, self.inner_steps = float(inner_lr), int(inner_steps)
        self.first_order = first_order
        self.test_steps = self.inner_steps if test_steps is None else int(test_steps)
        self._adapt = list(self.params) if adapt_names is None else list(adapt_names)
        unknown = [n for n in self._adapt if n not in self.params]
        if unknown or not self._adapt:
            raise ValueError(f"{type(self).__name__}: adapt_names {unknown or '[]'} name no "
                             f"parameter of {sorted(self.params)[:8]}")
        self.multi_step_loss = step_weights(multi_step_loss, inner_steps, type(self).__name__)
        self.checked_reads = False      # (query_loss checks once that forward reads params)

    @property
    def adapt_names(self):
        """The names the inner loop adapts: those given (default: all of θ) but the ones
        frozen now (``requires_grad = False``), which the model reads as they are."""
        return [n for n in self._adapt if self.params[n].requires_grad]

    # ----- the inner loop: φ₀ = θ, φ_{k+1} = φ_k − α ∇ L(φ_k, S) ---------------------------
    def step_size(self, name):
        """The inner learning rate of parameter ``name`` (a number; a Tensor in Meta-SGD)."""
        return self.inner_lr

    def adapt_path(self, params, x_support, y_support, steps=None, create_graph=None):
        """The list [φ₀ = params, φ₁, …, φ_steps] of the inner loop's parameters, each
        differentiable with respect to ``params`` unless first-order (or ``create_graph=False``,
        used at evaluation time, where no meta-gradient is needed)."""
        steps = self.inner_steps if steps is None else steps
        create_graph = (not self.first_order) if create_graph is None else create_graph
        x_support = as_tensor(x_support, params)
        path = [dict(params)]
        for _ in range(steps):
            fast = dict(path[-1])
            inner = self.loss(self.model(x_support, fast), y_support)
            grads = grad(inner, [fast[k] for k in self.adapt_names], create_graph=create_graph,
                         allow_unused=True)
            for name, g in zip(self.adapt_names, grads):
                if g is not None:
                    fast[name] = descend(fast[name], self.step_size(name), g)
            path.append(fast)
        return path

    def adapt(self, params, x_support, y_support, steps=None, create_graph=None):
        """φ after ``steps`` inner steps from ``params``: the end of ``adapt_path``."""
        return self.adapt_path(params, x_support, y_support, steps, create_graph)[-1]

    # ----- the outer loop: the query loss at φ, differentiated through the inner loop -------
    def query_loss(self, path, xq, yq, every_step=False):
        """(loss, accuracy) on the query set after the inner loop ``path``: the loss after the
        last step or, when ``every_step`` (True or K weights), the weighted mean of the losses
        after steps 1..K (equal weights for True); the accuracy after the last step."""
        xq = as_tensor(xq, path[-1])
        used = path[1:] if every_step is not False and len(path) > 2 else path[-1:]
        weights = every_step if isinstance(every_step, list) else [1.0 / len(used)] * len(used)
        outs = [self.model(xq, fast) for fast in used]
        if not self.checked_reads and len(path) > 1 and any(
                t.requires_grad for t in tensors_in(outs[-1])):
            if not reads_adapted(tensors_in(outs[-1]), path):   # once: a walk over its graph
                raise ValueError(f"{type(self).__name__}: the query output does not depend on "
                                 "the adapted weights (or none was adapted): the model's "
                                 "forward must read its weights from params "
                                 "(self.call_child(name, x, params)), and adapt_names name "
                                 "weights the support loss reads")
            self.checked_reads = True
        if len(outs) == 1:
            loss = self.loss(outs[0], yq)
        else:  # the weighted sum; a zero weight adds nothing to the graph
            loss = total([self.loss(out, yq) * w for w, out in zip(weights, outs) if w])
        return loss, self.accuracy(outs[-1], yq)

    def task_loss(self, task):
        """Query loss (a Tensor) and accuracy (or None) after adapting θ to one task (the
        loss the meta-gradient differentiates: with ``multi_step_loss``, over steps 1..K)."""
        xs, ys, xq, yq = task
        return self.query_loss(self.adapt_path(self.params, xs, ys), xq, yq,
                               self.multi_step_loss)

    def meta_gradient(self, tasks):
        """∇θ of the mean query loss over ``tasks``, aligned with ``meta_parameters()`` (no
        accumulation; ``outer_step`` accumulates the same into ``.grad``, task by task)."""
        tasks_given(tasks, type(self).__name__)
        mean = total([self.task_loss(task)[0] for task in tasks]) * (1.0 / len(tasks))
        return grad(mean, self.meta_parameters(), allow_unused=True)

    def evaluate(self, task, steps=None):
        """Query loss (a float) and accuracy after ``steps`` (default ``test_steps``) inner
        steps, taken without a graph through them."""
        xs, ys, xq, yq = task
        steps = self.test_steps if steps is None else steps
        with set_grad_enabled(True):    # the inner gradients need a graph, even in no_grad
            path = self.adapt_path(self.params, xs, ys, steps, create_graph=False)
            loss, acc = self.query_loss(path, xq, yq)
        return metrics(loss.data, acc)


class MetaSGD(MAML):
    """Meta-SGD (Li et al. 2017): a learned inner rate per parameter element, φ = θ − α ⊙ ∇L.

    The rates start at ``inner_lr`` and are meta-trained with θ (they are in
    ``meta_parameters()``); ``state_dict()`` holds them for a checkpoint.
    """

    def __init__(self, model, inner_lr, inner_steps=1, **kwargs):
        super().__init__(model, inner_lr, inner_steps, **kwargs)
        self.rates = {name: Tensor(to_device(np.full(p.shape, inner_lr, dtype=p.dtype),
                                             p.device), requires_grad=True, name=f"lr:{name}")
                      for name, p in self.params.items() if name in self._adapt}

    def step_size(self, name):
        return self.rates[name]

    def meta_parameters(self):
        return super().meta_parameters() + list(self.rates.values())

    def state_dict(self):
        """The learned rates, ``{"rates": {parameter name: array}}``."""
        return {"rates": {name: to_host(r.data).copy() for name, r in self.rates.items()}}

    def load_state_dict(self, state):
        """Load saved rates into ``rates``, the same Tensors (the outer optimizer holds them)
        holding new arrays."""
        rates = (state or {}).get("rates", {})
        if set(rates) != set(self.rates):
            raise ValueError(f"MetaSGD: the saved rates are for {sorted(rates)}, the learner's "
                             f"for {sorted(self.rates)}")
        for name, r in self.rates.items():
            value = np.asarray(rates[name])
            if value.shape != r.shape:
                raise ValueError(f"MetaSGD: rate {name} has shape {value.shape}, expected "
                                 f"{r.shape}")
            r.data = to_device(value.astype(r.dtype), r.device)   # a new array (optim.py)
            r.changed_in_place()


class ANIL(MAML):
    """ANIL (Raghu et al. 2020): "almost no inner loop", only ``head`` parameters adapt.

    ``head`` names a module (or one parameter): the parameters named ``head`` or starting with
    ``head.`` adapt, so 'head' takes 'head.weight' but not 'headnorm.weight' (a trailing dot
    is optional). Default: the last parameter's module, e.g. '17' for the linear head of
    ``conv4(5)``, or the last parameter itself when its name has no dot.
    """

    def __init__(self, model, inner_lr, inner_steps=1, head=None, **kwargs):
        params = kwargs.get("params")
        params = model.named_parameters() if params is None else params
        if not params:
            raise ValueError("ANIL: no parameters to adapt (params is empty)")
        last = list(params)[-1]         # '17.weight' → '17'; a name without a dot: itself
        head = (last.rsplit(".", 1)[0] if head is None else str(head)).rstrip(".")
        names = [n for n in params if n == head or n.startswith(head + ".")]
        if not names:
            raise ValueError(f"ANIL: head {head!r} names no parameter (none is {head!r} or "
                             f"starts with {head + '.'!r})")
        super().__init__(model, inner_lr, inner_steps, adapt_names=names, **kwargs)


def tensors_in(out):
    """The Tensors of a model's output: itself, or those of a tuple or list it returned."""
    if isinstance(out, (tuple, list)):
        return [t for part in out for t in tensors_in(part)]
    return [out] if isinstance(out, Tensor) else []


def reads_adapted(outs, path):
    """Whether the graph of the Tensors ``outs`` reaches a weight the inner loop ``path``
    changed (a Tensor of φ_K that is not θ's): a forward that ignores ``params`` (children
    called as ``self.fc(x)``) would give the query loss at θ, and a plain gradient for a
    meta-gradient."""
    wanted = {id(t) for k, t in path[-1].items() if t is not path[0].get(k)}
    seen, stack = set(), list(outs)
    while stack:
        t = stack.pop()
        if id(t) in wanted:
            return True
        if id(t) not in seen:
            seen.add(id(t))
            stack.extend(t._parents)
    return False        # (nothing adapted, too: no weight had a gradient, or all are frozen)


def step_weights(multi_step_loss, steps, who):
    """``multi_step_loss`` checked: False, True, or ``steps`` weights (>= 0, not all 0), which
    are returned normalised to sum 1."""
    if multi_step_loss is not False and steps == 0:     # (it had run, averaging over none)
        raise ValueError(f"{who}: multi_step_loss needs inner_steps of at least 1 (it weighs "
                         "the query losses after steps 1..K), got 0")
    if isinstance(multi_step_loss, bool):
        return multi_step_loss
    weights = [float(w) for w in multi_step_loss]
    if len(weights) != steps or not all(math.isfinite(w) and w >= 0 for w in weights) or \
            sum(weights) <= 0:   # a NaN had passed every comparison, and been ignored
        raise ValueError(f"{who}: multi_step_loss needs {steps} finite weights >= 0, not all "
                         f"0, got {weights}")
    return [w / sum(weights) for w in weights]
