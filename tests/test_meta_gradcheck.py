"""Finite-difference checks of the meta-objectives of MAML, Meta-SGD and ANIL on a conv net.

The meta-objective is θ ↦ L(φ_k(θ), Q), the query loss after k inner steps on the support set,
computed by the learners' own code path (``learner.task_loss``: ``adapt_path`` then
``query_loss``). ``mm.gradcheck(order=1)`` compares its reverse-mode derivative with central
differences in float64; since φ_k depends on θ through inner gradients taken with
``create_graph=True``, order 1 of the meta-objective already runs the second-order graph
(Hessian-vector products of conv, batch norm, tanh, linear and cross-entropy).

The net is small (two 3×3 convs with batch norm on 1×6×6 images, a linear head to 3 classes),
so each check takes a fraction of a second. The mutation test shows the check can fail: the
first-order learner (FOMAML) computes the same objective value but drops the Hessian terms of
its gradient, and gradcheck must catch the difference.

Read next: ``test_independent_engine.py`` (the same meta-gradients against HIPS autograd).
"""
import numpy as np
import pytest

import minimeta as mm
from minimeta import nn
from minimeta.learners import ANIL, MAML, MetaSGD

N_CLASSES, SHOTS = 3, 2


def small_convnet(seed=0):
    """conv 1→3 (pad 1), BN, tanh, conv 3→2 (6×6 → 4×4), BN, tanh, flatten, linear 32→3.

    tanh, not ReLU, and no max-pooling: every layer is smooth, so the meta-objective is
    differentiable everywhere and central differences converge to its true derivative (a ReLU
    or a max-pool kink inside ±ε of some pre-activation would break the comparison).
    """
    rng = np.random.default_rng(seed)
    f64 = np.float64
    return nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1, rng=rng, dtype=f64), nn.BatchNorm2d(3, dtype=f64), nn.Tanh(),
        nn.Conv2d(3, 2, 3, padding=0, rng=rng, dtype=f64), nn.BatchNorm2d(2, dtype=f64), nn.Tanh(),
        nn.Flatten(), nn.Linear(2 * 4 * 4, N_CLASSES, rng=rng, dtype=f64))


def make_task(seed):
    """A 3-way 2-shot task: (x_support, y_support, x_query, y_query), images 1×6×6."""
    rng = np.random.default_rng(seed)
    n = N_CLASSES * SHOTS
    labels = np.repeat(np.arange(N_CLASSES), SHOTS)
    prototypes = rng.standard_normal((N_CLASSES, 1, 6, 6))
    xs = prototypes[labels] + 0.5 * rng.standard_normal((n, 1, 6, 6))
    xq = prototypes[labels] + 0.5 * rng.standard_normal((n, 1, 6, 6))
    return xs, labels, xq, labels.copy()


def perturbed_params(model, seed):
    """The model's parameters, with the BN affine terms and biases moved off their defaults
    (1 and 0), so that no derivative is checked at a special point."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, p in model.named_parameters().items():
        a = p.numpy().copy()
        if name.endswith("bias"):
            a = a + 0.1 * rng.standard_normal(a.shape)
        elif a.ndim == 1:  # batch-norm weight
            a = a + 0.2 * rng.standard_normal(a.shape)
        out[name] = a
    return out


INNER_LR = 0.3


def build(kind, model, params, steps, first_order=False):
    """The learner ``kind`` on ``model`` with θ = ``params`` (a dict of Tensors)."""
    cls = {"maml": MAML, "metasgd": MetaSGD, "anil": ANIL}[kind]
    return cls(model, INNER_LR, steps, first_order=first_order, params=params)


def objective(kind, steps, first_order=False, seed=0):
    """(f, arrays): f(*θ, [*rates]) = the query loss after ``steps`` inner steps, summed over
    two tasks, and the float64 point to check it at.

    For Meta-SGD the learned per-parameter rates are inputs of f too (set on the learner in
    place of the ones it initialised), so gradcheck checks the derivative w.r.t. both.
    """
    model = small_convnet(seed)
    theta = perturbed_params(model, seed + 1)
    names = list(theta)
    tasks = [make_task(seed + 10), make_task(seed + 11)]
    arrays = list(theta.values())
    if kind == "metasgd":
        rng = np.random.default_rng(seed + 2)
        # rates around INNER_LR, varied per element (a constant rate hides a wrong broadcast)
        arrays += [INNER_LR * (0.5 + rng.random(a.shape)) for a in theta.values()]

    def f(*tensors):
        params = dict(zip(names, tensors[:len(names)]))
        learner = build(kind, model, params, steps, first_order)
        if kind == "metasgd":
            assert list(learner.rates) == names  # every parameter adapts, in θ's order
            learner.rates = dict(zip(names, tensors[len(names):]))
        total = None
        for task in tasks:
            loss, _ = learner.task_loss(task)
            total = loss if total is None else total + loss
        return total

    return f, arrays


KINDS = ["maml", "metasgd", "anil"]


@pytest.mark.parametrize("steps", [1, 2, 3], ids=lambda k: f"k={k}")
@pytest.mark.parametrize("kind", KINDS)
def test_meta_objective_gradcheck(kind, steps):
    f, arrays = objective(kind, steps)
    errors = mm.gradcheck(f, arrays, order=1)
    print(f"\n{kind} k={steps}: largest gradcheck error {errors[1]:.3g}")
    assert errors[1] < 1e-6


def test_anil_adapts_only_the_head_of_the_convnet():
    model = small_convnet()
    learner = ANIL(model, INNER_LR, 1)
    assert learner.adapt_names == ["7.weight", "7.bias"]
    xs, ys, _, _ = make_task(0)
    fast = learner.adapt(model.named_parameters(), xs, ys)
    for name, p in model.named_parameters().items():
        assert (fast[name] is p) == (name not in learner.adapt_names)


@pytest.mark.parametrize("steps", [1, 2, 3], ids=lambda k: f"k={k}")
@pytest.mark.parametrize("kind", KINDS)
def test_gradcheck_catches_the_first_order_approximation(kind, steps):
    """Mutation test: FOMAML's f has the exact objective's value, so gradcheck's central
    differences measure the exact meta-gradient, while its reverse-mode derivative is the
    first-order one (the inner gradients are detached). gradcheck must reject it."""
    exact, arrays = objective(kind, steps)
    first, _ = objective(kind, steps, first_order=True)
    # same forward value: the numeric side of the check is the exact objective's
    at = [mm.tensor(a, requires_grad=True) for a in arrays]
    assert first(*at).item() == pytest.approx(exact(*at).item(), rel=1e-14)
    with pytest.raises(mm.GradcheckError, match="order-1 derivative") as info:
        mm.gradcheck(first, arrays, order=1)
    print(f"\nfirst-order {kind} k={steps} rejected: {info.value}")
