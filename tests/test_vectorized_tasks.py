"""A meta-batch as one stacked batch (``StackedTasks(learner)``) against the loop over tasks.

The loop over tasks is the definition of the meta-gradient; the stacked version must give the
same numbers (like a fused kernel against its composite), for every learner that inherits it.
"""
import numpy as np
import pytest
from hypothesis import example, given, settings, strategies as st

import minimeta as mm
import minimeta.functional as F
from minimeta import nn
from minimeta.learners import ANIL, MAML, MetaSGD, StackedTasks


def stacked_if(vectorize, learner):
    """The learner, wrapped to run each meta-batch as one stacked batch when ``vectorize``."""
    return StackedTasks(learner) if vectorize else learner


def regression_tasks(rng, n_tasks, shots, queries):
    """Random regression tasks (x_s, y_s, x_q, y_q) for a 2-input, 1-output network."""
    return [(rng.standard_normal((shots, 2)), rng.standard_normal((shots, 1)),
             rng.standard_normal((queries, 2)), rng.standard_normal((queries, 1)))
            for _ in range(n_tasks)]


def both_ways(make, tasks):
    """(meta-gradients, outer-step metrics and .grad) computed by the loop and stacked."""
    out = []
    for vectorize in (False, True):
        net = nn.mlp((2, 5, 4, 1), seed=3, dtype=np.float64, init_std=0.5)
        learner = make(net, vectorize)
        grads = [_array(g) for g in learner.meta_gradient(tasks)]
        metrics = learner.outer_step(tasks)
        accumulated = [_array(p.grad) for p in learner.meta_parameters()]
        out.append((grads, metrics, accumulated))
    return out


def _array(g):
    """A gradient as an array; None (a parameter the loss does not use, e.g. Meta-SGD's rates
    with no inner step) as an empty array, so that the two ways must agree on it too."""
    return np.empty(0) if g is None else g.numpy()


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), n_tasks=st.integers(1, 4), steps=st.integers(0, 3),
       kind=st.sampled_from(["maml", "fomaml", "metasgd", "anil"]), multi=st.booleans())
def test_stacked_meta_gradient_equals_the_loop_over_tasks(seed, n_tasks, steps, kind, multi):
    rng = np.random.default_rng(seed)
    tasks = regression_tasks(rng, n_tasks, shots=int(rng.integers(1, 5)), queries=3)
    common = dict(loss="mse", multi_step_loss=multi and steps > 0)   # (refused at 0 steps)
    make = {"maml": lambda net, v: stacked_if(v, MAML(net, 0.3, steps, **common)),
            "fomaml": lambda net, v: stacked_if(v, MAML(net, 0.3, steps, first_order=True,
                                                        **common)),
            "metasgd": lambda net, v: stacked_if(v, MetaSGD(net, 0.3, steps, **common)),
            "anil": lambda net, v: stacked_if(v, ANIL(net, 0.3, steps, **common))}[kind]
    (g_loop, m_loop, acc_loop), (g_stack, m_stack, acc_stack) = both_ways(make, tasks)
    assert len(g_loop) == len(g_stack)
    for a, b in zip(g_loop + acc_loop, g_stack + acc_stack):
        np.testing.assert_allclose(b, a, rtol=1e-10, atol=1e-13)
    assert m_stack["loss"] == pytest.approx(m_loop["loss"], rel=1e-12)


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 10_000), steps=st.integers(1, 4), vectorize=st.booleans())
def test_multi_step_loss_is_the_mean_of_the_one_to_k_step_meta_gradients(seed, steps,
                                                                         vectorize):
    """Its meta-gradient is (1/K) Σₖ ∇θ L(φₖ, Q): the mean of k-step MAMLs' meta-gradients."""
    tasks = regression_tasks(np.random.default_rng(seed), 3, shots=4, queries=3)
    net = nn.mlp((2, 5, 4, 1), seed=seed, dtype=np.float64, init_std=0.5)
    multi = stacked_if(vectorize, MAML(net, 0.2, steps, loss="mse", multi_step_loss=True))
    got = [g.numpy() for g in multi.meta_gradient(tasks)]
    assert len(got) == len(net.parameters())
    expected = [np.zeros_like(g) for g in got]
    for k in range(1, steps + 1):
        for e, g in zip(expected, MAML(net, 0.2, k, loss="mse").meta_gradient(tasks)):
            e += g.numpy() / steps
    for a, b in zip(got, expected):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-13)
    # evaluation is unchanged: the query loss after the test steps only
    single = MAML(net, 0.2, steps, loss="mse")
    (loss_multi, acc_multi), (loss_single, acc_single) = (multi.evaluate(tasks[0]),
                                                          single.evaluate(tasks[0]))
    assert loss_multi == pytest.approx(loss_single, rel=1e-12)
    assert acc_multi is None and acc_single is None     # regression: no accuracy


def test_weighted_multi_step_loss_and_bad_weights():
    tasks = regression_tasks(np.random.default_rng(1), 2, shots=4, queries=3)
    net = nn.mlp((2, 5, 1), seed=2, dtype=np.float64, init_std=0.5)
    weights = [3.0, 0.0, 1.0]
    got = MAML(net, 0.2, 3, loss="mse", multi_step_loss=weights).meta_gradient(tasks)
    parts = [MAML(net, 0.2, k, loss="mse").meta_gradient(tasks) for k in (1, 3)]
    assert len(got) == len(parts[0]) == len(parts[1]) == len(net.parameters())
    for g, g1, g3 in zip(got, *parts):
        np.testing.assert_allclose(g.numpy(), 0.75 * g1.numpy() + 0.25 * g3.numpy(),
                                   rtol=1e-10, atol=1e-13)
    with pytest.raises(ValueError, match="needs 3 finite weights"):
        MAML(net, 0.2, 3, loss="mse", multi_step_loss=[1.0, 1.0])
    with pytest.raises(ValueError, match="needs 2 finite weights"):
        MAML(net, 0.2, 2, loss="mse", multi_step_loss=[0.0, 0.0])
    with pytest.raises(ValueError, match="needs 2 finite weights"):   # a NaN passed every test
        MAML(net, 0.2, 2, loss="mse", multi_step_loss=[float("nan"), 1.0])


def test_a_custom_loss_that_is_not_a_mean_stacks_to_the_loop_s_meta_gradient():
    # the stack had taken T × the loss of the flattened batch, the sum of the task losses only
    # for a mean: a sum of squares gave meta-gradients up to 7× off (found by probing)
    sse = lambda out, y: mm.sum((out - mm.tensor(y)) ** 2)         # noqa: E731
    rng = np.random.default_rng(0)
    tasks = [tuple(rng.standard_normal((5, 1)) for _ in range(4)) for _ in range(3)]
    learner = MAML(nn.mlp((1, 8, 1), dtype=np.float64, seed=2, init_std=0.5), 0.01, 2,
                   loss=sse)
    loop, stacked = learner.meta_gradient(tasks), StackedTasks(learner).meta_gradient(tasks)
    for a, b in zip(loop, stacked):
        np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-10, atol=1e-13)
    assert StackedTasks(learner).outer_step(tasks)["loss"] == pytest.approx(
        learner.outer_step(tasks)["loss"], rel=1e-12)


def test_the_stacked_mse_is_taken_on_the_stack_as_it_is(monkeypatch):
    """A mean over every element needs no flattening: the stacked MSE reshapes nothing (a
    mutant that flattens records a Reshape at every step and order), and gives the bits of the
    flattened batch's loss (NumPy sums a contiguous stack as one row either way)."""
    from minimeta.engine.primitives.shape import Reshape
    from minimeta.learners import stacked

    rng = np.random.default_rng(1)
    tasks = [tuple(rng.standard_normal((5, 1)).astype(np.float32) for _ in range(4))
             for _ in range(3)]
    learner = StackedTasks(MAML(nn.mlp((1, 8, 1), seed=2, init_std=0.5), 0.01, 2, loss="mse"))
    reshapes, forward = [], Reshape.forward
    monkeypatch.setattr(Reshape, "forward", lambda self, a: reshapes.append(1) or forward(self, a))
    ours = learner.meta_gradient(tasks)
    assert reshapes == []

    def flattened(loss, out, target, n):        # the way it was: flat, then the loss
        return loss(stacked._flat(out), stacked._flat(target)) * n

    monkeypatch.setattr(stacked, "_summed", flattened)
    for a, b in zip(ours, learner.meta_gradient(tasks)):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert reshapes                     # the counter counts: flattening does reshape


def test_stacked_classification_loss_and_accuracy_equal_the_loop():
    rng = np.random.default_rng(5)
    tasks = [(rng.standard_normal((6, 2)), rng.integers(0, 3, 6),
              rng.standard_normal((9, 2)), rng.integers(0, 3, 9)) for _ in range(3)]
    results = []
    for vectorize in (False, True):
        net = nn.mlp((2, 8, 3), seed=1, dtype=np.float64)
        learner = stacked_if(vectorize, MAML(net, 0.5, 2))
        results.append((learner.outer_step(tasks),
                        [p.grad.numpy() for p in learner.meta_parameters()]))
    (m_loop, g_loop), (m_stack, g_stack) = results
    assert m_stack["loss"] == pytest.approx(m_loop["loss"], rel=1e-12)
    assert m_stack["accuracy"] == pytest.approx(m_loop["accuracy"], rel=1e-12)
    for a, b in zip(g_loop, g_stack):
        np.testing.assert_allclose(b, a, rtol=1e-10, atol=1e-13)


def test_stacked_linear_is_one_layer_per_task():
    rng = np.random.default_rng(0)
    x, w, b = rng.standard_normal((3, 4, 2)), rng.standard_normal((3, 2, 5)), \
        rng.standard_normal((3, 1, 5))
    out = F.linear(mm.tensor(x), mm.tensor(w), mm.tensor(b)).numpy()
    for t in range(3):
        np.testing.assert_allclose(out[t], x[t] @ w[t] + b[t], rtol=1e-12)
    with pytest.raises(ValueError, match="linear: input features"):
        F.linear(mm.tensor(x), mm.tensor(rng.standard_normal((3, 4, 5))))


def test_tasks_of_unequal_shapes_cannot_be_stacked():
    rng = np.random.default_rng(0)
    tasks = regression_tasks(rng, 1, 3, 2) + regression_tasks(rng, 1, 4, 2)
    learner = StackedTasks(MAML(nn.mlp((2, 4, 1), dtype=np.float64), 0.1, loss="mse"))
    with pytest.raises(ValueError, match="equal shapes"):
        learner.outer_step(tasks)


def test_stacked_multi_step_meta_gradient_matches_an_independent_engine():
    """HIPS autograd (a test dependency, so this runs everywhere): the stacked meta-batch, 3
    inner steps, multi-step loss, ReLU, against the objective written from scratch in
    ``autograd.numpy``, its inner loop through autograd's nested ``grad``."""
    import autograd.numpy as anp
    from autograd import grad as agrad

    tasks = regression_tasks(np.random.default_rng(7), 4, shots=5, queries=6)
    net = nn.mlp((2, 5, 4, 1), seed=4, dtype=np.float64, init_std=0.5)
    learner = StackedTasks(MAML(net, 0.1, 3, loss="mse", multi_step_loss=True))
    ours = [g.numpy() for g in learner.meta_gradient(tasks)]

    def mlp(x, p):
        for i in range(0, len(p), 2):
            x = anp.dot(x, p[i]) + p[i + 1]
            x = anp.maximum(x, 0.0) if i < len(p) - 2 else x
        return x

    def mse(p, x, y):
        return anp.mean((mlp(x, p) - y) ** 2)

    def meta_loss(theta):  # each task adapted alone; query losses after steps 1, 2, 3
        total = 0.0
        for xs, ys, xq, yq in tasks:
            p = list(theta)
            for _ in range(3):
                p = [w - 0.1 * g for w, g in zip(p, agrad(mse)(p, xs, ys))]
                total = total + mse(p, xq, yq) / 3
        return total / len(tasks)

    refs = agrad(meta_loss)([p.numpy() for p in net.parameters()])
    assert len(ours) == len(refs) == 6
    for a, b in zip(ours, refs):
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-13)


# ----- conv nets: a stack of convolutions and of batch norms, one per task -------------------
def image_tasks(rng, n_tasks, ways=3, queries=2, size=16):
    return [(rng.standard_normal((ways, 1, size, size)), np.arange(ways),
             rng.standard_normal((ways * queries, 1, size, size)),
             np.arange(ways * queries) % ways) for _ in range(n_tasks)]


def small_conv4(seed):
    """conv4 (conv, batch norm, pool, ReLU; flatten, linear) at 16×16 and 3 channels."""
    return nn.conv4(3, hidden=3, image_size=16, seed=seed, dtype=np.float64)


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 10_000), n_tasks=st.integers(1, 3), steps=st.integers(1, 2),
       kind=st.sampled_from(["maml", "fomaml", "metasgd", "anil", "weights", "frozen"]))
@example(seed=1, n_tasks=2, steps=1, kind="weights")
@example(seed=2, n_tasks=2, steps=2, kind="frozen")
def test_stacked_conv_net_meta_gradient_equals_the_loop(seed, n_tasks, steps, kind):
    """conv4 through ``StackedTasks``: batched convolutions (one filter per task, or shared by
    the stack in ANIL's body, or a filter per task with a shared bias: the weights adapted
    alone, or a bias frozen, which the stack had refused), per-task batch statistics, pooling
    and flatten over the stack; meta-gradients, accumulated gradients, metrics and the
    batch-norm running buffers (updated task by task in task order) equal the loop's."""
    rng = np.random.default_rng(seed)
    tasks = image_tasks(rng, n_tasks)
    weights = lambda net: [n for n in net.named_parameters() if n.endswith("weight")]  # noqa
    make = {"maml": lambda net: MAML(net, 0.3, steps),
            "fomaml": lambda net: MAML(net, 0.3, steps, first_order=True),
            "metasgd": lambda net: MetaSGD(net, 0.3, steps),
            "anil": lambda net: ANIL(net, 0.3, steps),
            "weights": lambda net: MAML(net, 0.3, steps, adapt_names=weights(net)),
            "frozen": lambda net: MAML(net, 0.3, steps)}[kind]
    out = []
    for vectorize in (False, True):
        net = small_conv4(seed % 7)
        if kind == "frozen":
            net.named_parameters()["4.bias"].requires_grad = False
        learner = stacked_if(vectorize, make(net))
        grads = [_array(g) for g in learner.meta_gradient(tasks)]
        metrics = learner.outer_step(tasks)
        accumulated = [_array(p.grad) for p in learner.meta_parameters()]
        buffers = [b.copy() for b in net.named_buffers().values()]
        out.append((grads, metrics, accumulated, buffers))
    (g_loop, m_loop, acc_loop, buf_loop), (g_stack, m_stack, acc_stack, buf_stack) = out
    # conv biases before batch norm have gradients that are 0 up to rounding: compare every
    # gradient on the scale of the largest
    scale = max(np.abs(g).max() for g in g_loop if g.size)
    for a, b in zip(g_loop + acc_loop, g_stack + acc_stack):
        np.testing.assert_allclose(b, a, rtol=1e-9, atol=1e-12 * scale)
    for a, b in zip(buf_loop, buf_stack):
        np.testing.assert_allclose(b, a, rtol=1e-12)
    assert m_stack["loss"] == pytest.approx(m_loop["loss"], rel=1e-12)
    assert m_stack["accuracy"] == pytest.approx(m_loop["accuracy"], rel=1e-12)


def test_stacked_layers_are_one_layer_per_task():
    """Each image layer on a stack (T, N, C, H, W) against the same layer task by task, with
    per-task parameters in StackedTasks' shapes and with shared ones."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 4, 2, 6, 6))
    w, b = rng.standard_normal((3, 5, 2, 3, 3)), rng.standard_normal((3, 1, 5))
    gamma, beta = rng.uniform(0.5, 2, (3, 1, 2)), rng.standard_normal((3, 1, 2))
    t_ = mm.tensor
    cases = [
        (F.conv2d(t_(x), t_(w), t_(b), padding=1),
         [F.conv2d(t_(x[t]), t_(w[t]), t_(b[t, 0]), padding=1) for t in range(3)]),
        (F.conv2d(t_(x), t_(w[0]), t_(b[0, 0]), stride=2),
         [F.conv2d(t_(x[t]), t_(w[0]), t_(b[0, 0]), stride=2) for t in range(3)]),
        (F.batch_norm(t_(x), t_(gamma), t_(beta)),
         [F.batch_norm(t_(x[t]), t_(gamma[t, 0]), t_(beta[t, 0])) for t in range(3)]),
        (F.batch_norm(t_(x), t_(gamma[1, 0]), None),
         [F.batch_norm(t_(x[t]), t_(gamma[1, 0]), None) for t in range(3)]),
        (F.batch_norm(t_(x), t_(gamma), t_(beta), fused=False),
         [F.batch_norm(t_(x[t]), t_(gamma[t, 0]), t_(beta[t, 0])) for t in range(3)]),
        (F.max_pool2d(t_(x), 2), [F.max_pool2d(t_(x[t]), 2) for t in range(3)]),
        (F.flatten(t_(x)), [F.flatten(t_(x[t])) for t in range(3)]),
    ]
    for stacked, per_task in cases:
        np.testing.assert_allclose(stacked.numpy(), np.stack([p.numpy() for p in per_task]),
                                   rtol=1e-12, atol=1e-12)
    mean, var = np.zeros(2), np.ones(2)
    F.batch_norm(t_(x), None, None, mean, var, training=True)
    evaluated = F.batch_norm(t_(x), t_(gamma), t_(beta), mean, var, training=False).numpy()
    for t in range(3):
        expected = F.batch_norm(t_(x[t]), t_(gamma[t, 0]), t_(beta[t, 0]), mean, var,
                                training=False).numpy()
        np.testing.assert_allclose(evaluated[t], expected, rtol=1e-12)
    with pytest.raises(ValueError, match="conv2d: input"):
        F.conv2d(t_(x), t_(rng.standard_normal((2, 5, 2, 3, 3))))
    with pytest.raises(ValueError, match="batch_norm: input"):
        F.batch_norm(t_(x), t_(rng.standard_normal((3, 1, 4))), None)


def test_a_stack_is_pooled_by_the_pooling_primitives_alone_to_the_third_order():
    """Max pooling on a stack (T, N, C, H, W): its derivatives of orders 1 to 3 equal the
    tasks' one by one, and the graph holds the pooling family's ops and no reshape (a stack
    had been pooled as T·N images between two Reshape ops, each with its own VJPs)."""
    from minimeta.engine.autodiff import toposort

    x = np.random.default_rng(4).permutation(2 * 3 * 2 * 4 * 4).reshape(2, 3, 2, 4, 4) * 0.1

    def derivatives(x):
        t = mm.tensor(x, requires_grad=True)
        y = F.max_pool2d(t, 2)
        (g1,) = mm.grad((y * y * y).sum(), [t], create_graph=True)
        (g2,) = mm.grad((g1 * g1 * g1).sum(), [t], create_graph=True)
        (g3,) = mm.grad((g2 * g2).sum(), [t], create_graph=True)
        return (y, g1, g2, g3), {type(n._op).__name__ for n in toposort([g3]) if n._op}

    stacked, ops = derivatives(x)
    for t in range(2):
        for got, want in zip(stacked, derivatives(x[t])[0]):
            np.testing.assert_allclose(got.numpy()[t], want.numpy(), rtol=1e-12)
    assert {"MaxPool2d", "MaxPool2dBackward", "MaxPool2dGather"} <= ops
    assert "Reshape" not in ops and "GetItem" not in ops, ops


def test_running_average_updates_merge_into_one_in_order():
    """A stack's per-task running-average updates run as one per buffer: the same buffer as
    the updates one by one (to rounding), and order matters (the merge of the reversed list
    differs: a check that could not tell orders apart would pass it)."""
    from minimeta.engine.workers import merged
    from minimeta.functional.layers import RunningAverage

    rng = np.random.default_rng(2)
    steps = [(0.9, 0.1, rng.standard_normal(4)), (0.8, 0.25, rng.standard_normal(4)),
             (0.9, 0.125, rng.standard_normal(4))]
    start = rng.standard_normal(4)
    one_by_one, as_one, reversed_ = start.copy(), start.copy(), start.copy()
    for decay, weight, value in steps:
        RunningAverage(one_by_one, decay, weight, value)()
    RunningAverage.merge([RunningAverage(as_one, *s) for s in steps])()
    np.testing.assert_allclose(as_one, one_by_one, rtol=1e-14)
    RunningAverage.merge([RunningAverage(reversed_, *s) for s in steps[::-1]])()
    assert not np.allclose(reversed_, one_by_one, rtol=1e-6)
    # engine/workers.merged: one update per buffer, at its first place; others kept as they are
    other, log = np.zeros(4), []
    updates = [RunningAverage(as_one, *steps[0]), log.append, RunningAverage(other, *steps[1]),
               RunningAverage(as_one, *steps[2])]
    out = merged(updates)
    assert len(out) == 3 and out[1] is updates[1] and out[2] is updates[2]
    assert out[0].buffer is as_one and out[0].weight == 1


@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("kind", ["maml", "metasgd", "anil"])
def test_batch_norm_on_flat_features_stacks_to_the_loop(kind, affine):
    """An MLP with ``BatchNorm2d`` on (N, C) features: stacked, its input is (T, N, C), with
    StackedTasks' (T, 1, C) weight, or none, or ANIL's shared (C,) one; the layer had refused
    all three as an ambiguous 3-D input (found comparing every learner with PyTorch,
    2026-12-03). Meta-gradients, accumulated gradients and running buffers equal the loop's."""
    rng = np.random.default_rng(9)
    tasks = [(rng.standard_normal((4, 3)), rng.integers(0, 2, 4), rng.standard_normal((5, 3)),
              rng.integers(0, 2, 5)) for _ in range(3)]
    make = {"maml": MAML, "metasgd": MetaSGD, "anil": ANIL}[kind]
    out = []
    for vectorize in (False, True):
        net = nn.Sequential(nn.Linear(3, 4, seed=0, dtype=np.float64),
                            nn.BatchNorm2d(4, dtype=np.float64, affine=affine), nn.Tanh(),
                            nn.Linear(4, 2, seed=1, dtype=np.float64))
        learner = stacked_if(vectorize, make(net, 0.4, 2))
        grads = [_array(g) for g in learner.meta_gradient(tasks)]
        learner.outer_step(tasks)
        out.append(grads + [_array(p.grad) for p in learner.meta_parameters()]
                   + [b.copy() for b in net.named_buffers().values()])
    for a, b in zip(*out):
        np.testing.assert_allclose(b, a, rtol=1e-10, atol=1e-14)
    with pytest.raises(ValueError, match=r"BatchNorm2d: input \(3, 4, 4\) is 3-D"):
        nn.BatchNorm2d(4, affine=affine)(mm.tensor(np.ones((3, 4, 4))))   # not in a stack


@pytest.mark.parametrize("learner", ["stacked", "mann", "cnp"])
def test_a_one_graph_outer_step_gives_gradients_to_meta_parameters_only(learner):
    """As the task loop does (``Learner.outer_step``): a Tensor the model reads but does not
    register gets no ``.grad`` (the one-graph steps had called ``loss.backward()``, which
    fills every leaf it reaches)."""
    from minimeta.learners import CNP, MANNLearner

    rng = np.random.default_rng(15)
    stray = mm.tensor(np.array([1.5]), requires_grad=True)
    if learner == "stacked":
        w = mm.tensor(rng.standard_normal((2, 1)), requires_grad=True)
        meta = StackedTasks(MAML(lambda x, p: (x @ p["w"]) * stray, 0.1, 1, loss="mse",
                                 params={"w": w}))
        tasks = regression_tasks(rng, 2, 3, 3)
    else:   # the stray scales the encoder's codes (CNP) or the logits (MANN)
        meta = CNP(hidden=8, seed=0, dtype=np.float64) if learner == "cnp" else \
            MANNLearner(2, image_size=4, seed=0, dtype=np.float64)
        module = meta.net._children["encoder"] if learner == "cnp" else meta.net
        forward = module.forward
        module.forward = lambda x, params: forward(x, params) * stray
        if learner == "cnp":
            tasks = [tuple(rng.standard_normal((5, 1)) for _ in range(4)) for _ in range(2)]
        else:
            tasks = [(rng.random((4, 4, 4)), np.array([0, 1, 1, 0]), rng.random((2, 4, 4)),
                      np.array([0, 1])) for _ in range(2)]
    meta.outer_step(tasks)
    assert stray.grad is None
    assert all(p.grad is not None for p in meta.meta_parameters())
