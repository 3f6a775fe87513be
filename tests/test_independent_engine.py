"""minimeta against an independent engine: HIPS autograd, to 1e-10, in float64.

1. Meta-gradients of MAML (second order), Meta-SGD (w.r.t. θ and the per-parameter rates)
   and ANIL (only the head adapts) on a 1-20-20-1 tanh MLP and sinusoid regression tasks,
   computed by minimeta's learners (``learner.meta_gradient``) and by the same objective
   written from scratch in ``autograd.numpy``, the inner loop using autograd's nested ``grad``.
2. Hessian-vector products of every elementwise, reduction and shape primitive: for each op,
   f(x) = Σ w · op(x)² (whose Hessian involves the op's first and second derivatives),
   ``mm.hvp`` against autograd's gradient of ⟨∇f, v⟩.

autograd is a test dependency (the ``test`` extra of ``pyproject.toml``): these tests are not
skipped without it.

Read next: ``test_random_programs.py`` (random compositions of the ops, orders 1 to 3).
"""
import zlib

import autograd.numpy as anp
import numpy as np
import pytest
from autograd import grad, hessian_vector_product

import minimeta as mm
from minimeta import nn
from minimeta.learners import ANIL, MAML, MetaSGD

TOL = 1e-10


def assert_close(ours, ref, what):
    """max |ours − ref| <= 1e-10 · max(1, max |ref|) (relative for large values)."""
    ours, ref = np.asarray(ours, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    assert ours.shape == ref.shape, f"{what}: shape {ours.shape} != {ref.shape}"
    diff = float(np.max(np.abs(ours - ref))) if ours.size else 0.0
    scale = max(1.0, float(np.max(np.abs(ref))) if ref.size else 0.0)
    assert diff <= TOL * scale, f"{what}: max |difference| {diff:.3g} > {TOL * scale:.3g}"
    return diff


# ----- 1. meta-gradients of an MLP -----------------------------------------------------------
SIZES = [(1, 20), (20,), (20, 20), (20,), (20, 1), (1,)]
NAMES = ["0.weight", "0.bias", "2.weight", "2.bias", "4.weight", "4.bias"]


def mlp_and_theta(seed=0):
    """The minimeta net (Linear, Tanh, Linear, Tanh, Linear in float64) and θ as arrays in the
    net's ``named_parameters`` order, biases nonzero."""
    rng = np.random.default_rng(seed)
    f64 = np.float64
    net = nn.Sequential(nn.Linear(1, 20, rng=rng, dtype=f64), nn.Tanh(),
                        nn.Linear(20, 20, rng=rng, dtype=f64), nn.Tanh(),
                        nn.Linear(20, 1, rng=rng, dtype=f64))
    theta = [p.numpy().copy() for p in net.parameters()]
    theta = [t + 0.1 * rng.standard_normal(t.shape) if t.ndim == 1 else t for t in theta]
    return net, theta


def sinusoid_tasks(seed, n_tasks=2, shots=10):
    rng = np.random.default_rng(seed)
    tasks = []
    for _ in range(n_tasks):
        amp, phase = rng.uniform(0.1, 5.0), rng.uniform(0, np.pi)
        xs, xq = rng.uniform(-5, 5, (shots, 1)), rng.uniform(-5, 5, (shots, 1))
        tasks.append((xs, amp * np.sin(xs - phase), xq, amp * np.sin(xq - phase)))
    return tasks


def ag_net(x, ps):
    """The MLP in autograd.numpy; ``ps`` in the order of NAMES (weights (in, out))."""
    w0, b0, w1, b1, w2, b2 = ps
    h = anp.tanh(anp.dot(x, w0) + b0)
    h = anp.tanh(anp.dot(h, w1) + b1)
    return anp.dot(h, w2) + b2


def ag_mse(ps, x, y):
    return anp.mean((ag_net(x, ps) - y) ** 2)


def ag_maml_objective(theta, tasks, lr, steps):
    total = 0.0
    for xs, ys, xq, yq in tasks:
        ps = list(theta)
        for _ in range(steps):
            gs = grad(ag_mse)(ps, xs, ys)
            ps = [p - lr * g for p, g in zip(ps, gs)]
        total = total + ag_mse(ps, xq, yq)
    return total / len(tasks)


def ag_metasgd_objective(both, tasks, steps):
    theta, rates = both
    total = 0.0
    for xs, ys, xq, yq in tasks:
        ps = list(theta)
        for _ in range(steps):
            gs = grad(ag_mse)(ps, xs, ys)
            ps = [p - r * g for p, r, g in zip(ps, rates, gs)]
        total = total + ag_mse(ps, xq, yq)
    return total / len(tasks)


def ag_anil_objective(theta, tasks, lr, steps):
    theta = list(theta)
    body = theta[:4]
    total = 0.0
    for xs, ys, xq, yq in tasks:
        head = theta[4:]
        for _ in range(steps):
            gs = grad(lambda h: ag_mse(body + list(h), xs, ys))(head)
            head = [p - lr * g for p, g in zip(head, gs)]
        total = total + ag_mse(body + list(head), xq, yq)
    return total / len(tasks)


def test_mlp_parameter_layout():
    net, theta = mlp_and_theta()
    named = net.named_parameters()
    assert list(named) == NAMES
    assert [p.shape for p in named.values()] == SIZES == [t.shape for t in theta]
    # the autograd net and the minimeta net agree at θ (so the layout is read the same way)
    x = np.linspace(-5, 5, 7).reshape(7, 1)
    params = {n: mm.tensor(t) for n, t in zip(NAMES, theta)}
    assert_close(net(mm.tensor(x), params).numpy(), ag_net(x, theta), "forward")


# lr = 0.4 with k = 2 overshoots on these tasks (query loss ~1e3, meta-gradients ~3e3): the
# case where the tolerance is relative, 1e-10 · max |autograd's gradient|
@pytest.mark.parametrize("lr", [0.01, 0.1, 0.4], ids=lambda a: f"lr={a}")
@pytest.mark.parametrize("steps", [1, 2], ids=lambda k: f"k={k}")
@pytest.mark.parametrize("kind", ["maml", "metasgd", "anil"])
def test_meta_gradient_matches_autograd(kind, steps, lr):
    net, theta = mlp_and_theta(seed=steps)
    tasks = sinusoid_tasks(seed=int(100 * lr) + steps)
    params = {n: mm.tensor(t.copy(), requires_grad=True) for n, t in zip(NAMES, theta)}
    cls = {"maml": MAML, "metasgd": MetaSGD, "anil": ANIL}[kind]
    learner = cls(net, lr, steps, loss="mse", params=params)
    if kind == "metasgd":
        # rates varied per element, so a rate read from the wrong place would show
        rng = np.random.default_rng(7)
        rates = [lr * (0.5 + rng.random(t.shape)) for t in theta]
        assert list(learner.rates) == NAMES
        learner.rates = {n: mm.tensor(r.copy(), requires_grad=True)
                         for n, r in zip(NAMES, rates)}
        ref = grad(ag_metasgd_objective)((theta, rates), tasks, steps)
        ref = list(ref[0]) + list(ref[1])
        names = NAMES + [f"lr:{n}" for n in NAMES]
    elif kind == "anil":
        assert learner.adapt_names == ["4.weight", "4.bias"]
        ref, names = grad(ag_anil_objective)(theta, tasks, lr, steps), NAMES
    else:
        ref, names = grad(ag_maml_objective)(theta, tasks, lr, steps), NAMES
    ours = learner.meta_gradient(tasks)
    assert len(ours) == len(ref) == len(learner.meta_parameters())
    worst = 0.0
    for name, o, r in zip(names, ours, ref):
        worst = max(worst, assert_close(o.numpy(), r, f"{kind} d/d{name}"))
    print(f"\n{kind} k={steps} lr={lr}: max |minimeta - autograd| {worst:.3g}")


# ----- 2. Hessian-vector products of the primitives -------------------------------------------
RNG = np.random.default_rng(2024)


def normal(*shape):
    return RNG.standard_normal(shape)


def away(*shape, gap=0.3):
    """Values with |x| >= gap: away from the kinks of relu and abs at 0."""
    x = normal(*shape)
    return np.sign(x) * (gap + np.abs(x))


def positive(*shape):
    return 0.5 + RNG.random(shape) * 1.5


def distinct(*shape):
    """A random permutation of well-separated values: a unique max along every axis."""
    return RNG.permutation(np.arange(np.prod(shape)) * 0.37 - 2.0).reshape(shape)


def _pair_apart():
    a = normal(3, 4)
    return [a, a + np.where(RNG.random((3, 4)) < 0.5, -1.0, 1.0) * (0.3 + RNG.random((3, 4)))]


MASK = RNG.random((3, 4)) < 0.5
COND = RNG.random((3, 4)) < 0.5
INDEX = np.array([0, 2, 2, 1])  # a repeated index: the scatter-add must accumulate


def ag_sigmoid(x):
    return 1.0 / (1.0 + anp.exp(-x))


def ag_logsumexp(x, axis=None, keepdims=False):
    return anp.log(anp.sum(anp.exp(x), axis=axis, keepdims=keepdims))


# id, minimeta op, autograd op, inputs
CASES = [
    ("add_broadcast", lambda a, b: a + b, lambda a, b: a + b, [normal(3, 4), normal(4)]),
    ("sub_broadcast", lambda a, b: a - b, lambda a, b: a - b, [normal(3, 1), normal(1, 4)]),
    ("mul", lambda a, b: a * b, lambda a, b: a * b, [normal(3, 4), normal(3, 4)]),
    ("mul_broadcast", lambda a, b: a * b, lambda a, b: a * b, [normal(2, 3, 4), normal(3, 1)]),
    ("div", lambda a, b: a / b, lambda a, b: a / b, [normal(3, 4), away(3, 4, gap=0.7)]),
    ("neg", lambda a: -a, lambda a: -a, [normal(3, 4)]),
    ("pow_scalar_int", lambda a: a ** 3, lambda a: a ** 3, [normal(3, 4)]),
    ("pow_scalar_frac", lambda a: a ** 2.5, lambda a: a ** 2.5, [positive(3, 4)]),
    ("pow_scalar_negative", lambda a: a ** -1.5, lambda a: a ** -1.5, [positive(3, 4)]),
    ("pow_tensor", lambda a, b: a ** b, lambda a, b: a ** b, [positive(3, 4), normal(3, 4)]),
    ("pow_scalar_base", lambda a: 1.7 ** a, lambda a: 1.7 ** a, [normal(3, 4)]),
    ("exp", mm.exp, anp.exp, [normal(3, 4)]),
    ("log", mm.log, anp.log, [positive(3, 4)]),
    ("sqrt", mm.sqrt, anp.sqrt, [positive(3, 4)]),
    ("tanh", mm.tanh, anp.tanh, [normal(3, 4)]),
    ("sigmoid", mm.sigmoid, ag_sigmoid, [normal(3, 4)]),
    ("relu", mm.relu, lambda a: anp.maximum(a, 0.0), [away(3, 4)]),
    ("abs", mm.abs, anp.abs, [away(3, 4)]),
    ("maximum", mm.maximum, anp.maximum, _pair_apart()),
    ("where", lambda a, b: mm.where(COND, a, b), lambda a, b: anp.where(COND, a, b),
     [normal(3, 4), normal(3, 4)]),
    ("sum_all", lambda a: mm.sum(mm.tanh(a)), lambda a: anp.sum(anp.tanh(a)), [normal(3, 4)]),
    ("sum_axis", lambda a: mm.sum(a, axis=1), lambda a: anp.sum(a, axis=1), [normal(3, 4)]),
    ("sum_axes_keepdims", lambda a: mm.sum(a, axis=(0, 2), keepdims=True),
     lambda a: anp.sum(a, axis=(0, 2), keepdims=True), [normal(2, 3, 4)]),
    ("mean_axis", lambda a: mm.mean(a, axis=0), lambda a: anp.mean(a, axis=0), [normal(3, 4)]),
    ("mean_all", lambda a: mm.mean(a * a), lambda a: anp.mean(a * a), [normal(3, 4)]),
    ("max_all", lambda a: mm.max(a), lambda a: anp.max(a), [distinct(3, 4)]),
    ("max_axis", lambda a: mm.max(a, axis=1), lambda a: anp.max(a, axis=1), [distinct(3, 4)]),
    ("max_axis_keepdims", lambda a: mm.max(a, axis=0, keepdims=True),
     lambda a: anp.max(a, axis=0, keepdims=True), [distinct(3, 4)]),
    ("logsumexp_all", mm.logsumexp, ag_logsumexp, [normal(3, 4)]),
    ("logsumexp_axis", lambda a: mm.logsumexp(a, axis=-1),
     lambda a: ag_logsumexp(a, axis=-1), [normal(3, 4)]),
    ("logsumexp_keepdims", lambda a: mm.logsumexp(a, axis=0, keepdims=True),
     lambda a: ag_logsumexp(a, axis=0, keepdims=True), [normal(3, 4)]),
    ("reshape", lambda a: mm.reshape(mm.tanh(a), (2, 6)),
     lambda a: anp.reshape(anp.tanh(a), (2, 6)), [normal(3, 4)]),
    ("transpose", lambda a: mm.transpose(a * a, (1, 2, 0)),
     lambda a: anp.transpose(a * a, (1, 2, 0)), [normal(2, 3, 4)]),
    ("broadcast_to", lambda a: mm.broadcast_to(mm.tanh(a), (2, 3, 4)),
     lambda a: anp.broadcast_to(anp.reshape(anp.tanh(a), (1, 3, 1)), (2, 3, 4)),
     [normal(3, 1)]),
    ("getitem_slice", lambda a: mm.tanh(a)[1:, ::2], lambda a: anp.tanh(a)[1:, ::2],
     [normal(3, 4)]),
    ("getitem_int_array", lambda a: mm.tanh(a)[INDEX], lambda a: anp.tanh(a)[INDEX],
     [normal(3, 4)]),
    ("getitem_int_arrays_2d", lambda a: mm.tanh(a)[INDEX, np.array([1, 1, 3, 0])],
     lambda a: anp.tanh(a)[INDEX, np.array([1, 1, 3, 0])], [normal(3, 4)]),
    ("getitem_bool_mask", lambda a: mm.tanh(a)[MASK], lambda a: anp.tanh(a)[MASK],
     [normal(3, 4)]),
    ("concatenate", lambda a, b: mm.concatenate([a * b, mm.tanh(b)], axis=1),
     lambda a, b: anp.concatenate([a * b, anp.tanh(b)], axis=1), [normal(3, 2), normal(3, 2)]),
    ("matmul", lambda a, b: a @ b, lambda a, b: anp.matmul(a, b), [normal(3, 4), normal(4, 5)]),
    ("matmul_batched", lambda a, b: a @ b, lambda a, b: anp.matmul(a, b),
     [normal(2, 3, 4), normal(4, 5)]),
    ("matmul_vector", lambda a, b: a @ b, lambda a, b: anp.matmul(a, b),
     [normal(3, 4), normal(4)]),
    ("matmul_trans_b", lambda a, b: mm.matmul(a, b, trans_b=True),
     lambda a, b: anp.matmul(a, anp.transpose(b)), [normal(3, 4), normal(5, 4)]),
]


def outer(y, w, ns):
    """Σ w · y²: its Hessian is 2 Jᵀ diag(w) J + Σ 2 w y ∇²y, the op's both derivatives."""
    return ns.sum(w * y * y)


def ag_hvp(fun, xs, vs):
    """The HVP of ``fun(*xs)`` by autograd: the gradient of ⟨∇fun, v⟩, nested ``grad``s."""
    grad_fun = grad(lambda ys: fun(*ys))

    def dot(ys):
        return sum(anp.sum(g * v) for g, v in zip(grad_fun(ys), vs))

    return grad(dot)(tuple(xs))


def test_ag_hvp_agrees_with_autograds_own_hessian_vector_product():
    x, v = normal(5), normal(5)
    f = lambda a: anp.sum(anp.tanh(a) ** 3 * anp.exp(a))  # noqa: E731
    (ours,) = ag_hvp(f, [x], [v])
    np.testing.assert_allclose(ours, hessian_vector_product(f)(x, v), rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize("op_mm, op_ag, inputs",
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_hvp_matches_autograd(op_mm, op_ag, inputs, request):
    rng = np.random.default_rng(zlib.crc32(request.node.callspec.id.encode()))
    y_shape = np.shape(op_ag(*inputs))
    w = rng.standard_normal(y_shape)
    vs = [rng.standard_normal(np.shape(x)) for x in inputs]

    def f_mm(*xs):
        return outer(op_mm(*xs), mm.tensor(w), mm)

    def f_ag(*xs):
        return outer(op_ag(*xs), w, anp)

    assert_close(f_mm(*[mm.tensor(x) for x in inputs]).item(), f_ag(*inputs), "value")
    ours = mm.hvp(f_mm, [x.copy() for x in inputs], vs)
    ref = ag_hvp(f_ag, inputs, vs)
    assert len(ours) == len(ref) == len(inputs)
    worst = 0.0
    for i, (o, r) in enumerate(zip(ours, ref)):
        assert np.abs(r).max() > 0, "a trivial Hessian checks nothing"
        worst = max(worst, assert_close(o.numpy(), r, f"HVP w.r.t. input {i}"))
    print(f"\nHVP {request.node.callspec.id}: max |minimeta - autograd| {worst:.3g}")
