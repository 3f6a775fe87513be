"""Proof that the meta-gradients are exact: closed forms, explicit Hessians, hand-unrolled loops."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import minimeta as mm
import minimeta.functional as F
from minimeta import nn
from minimeta.learners import ANIL, MAML, MetaSGD, Reptile

RNG = np.random.default_rng(0)


def linear_model(x, params):
    return x @ params["w"]


def test_maml_meta_gradient_on_a_quadratic_matches_closed_form():
    xs, ys = RNG.standard_normal((6, 3)), RNG.standard_normal((6, 1))
    xq, yq = RNG.standard_normal((4, 3)), RNG.standard_normal((4, 1))
    w0, alpha = RNG.standard_normal((3, 1)), 0.1
    theta = {"w": mm.tensor(w0, requires_grad=True)}
    learner = MAML(linear_model, alpha, 1, loss="mse", params=theta)
    (meta,) = learner.meta_gradient([(xs, ys, xq, yq)])
    H = 2 * xs.T @ xs / len(xs)                       # Hessian of the support MSE
    phi = w0 - alpha * 2 * xs.T @ (xs @ w0 - ys) / len(xs)
    grad_q = 2 * xq.T @ (xq @ phi - yq) / len(xq)
    np.testing.assert_allclose(meta.numpy(), (np.eye(3) - alpha * H) @ grad_q, rtol=1e-12)


class FlatMLP:
    """A 2-4-1 tanh MLP whose parameters are one flat vector (so mm.hessian applies)."""
    sizes = [(2, 4), (4,), (4, 1), (1,)]

    def unflatten(self, flat):
        out, start = [], 0
        for s in self.sizes:
            n = int(np.prod(s))
            out.append(mm.reshape(flat[start:start + n], s))
            start += n
        return out

    def __call__(self, x, params):
        w1, b1, w2, b2 = self.unflatten(params["theta"])
        return mm.tanh(x @ w1 + b1) @ w2 + b2


def _mlp_problem(seed):
    rng = np.random.default_rng(seed)
    model = FlatMLP()
    theta0 = rng.standard_normal(17) * 0.8
    task = (rng.standard_normal((5, 2)), rng.standard_normal((5, 1)),
            rng.standard_normal((7, 2)), rng.standard_normal((7, 1)))
    return model, theta0, task


@pytest.mark.parametrize("steps", [1, 2, 3])
def test_maml_meta_gradient_equals_product_of_explicit_hessian_factors(steps):
    model, theta0, (xs, ys, xq, yq) = _mlp_problem(steps)
    alpha = 0.3
    theta = {"theta": mm.tensor(theta0, requires_grad=True)}
    learner = MAML(model, alpha, steps, loss="mse", params=theta)
    (meta,) = learner.meta_gradient([(xs, ys, xq, yq)])

    def support_loss(t):
        return F.mse_loss(model(mm.tensor(xs), {"theta": t}), ys)

    phi, factors = theta0.copy(), []
    for _ in range(steps):
        H = mm.hessian(support_loss, mm.tensor(phi)).numpy()
        factors.append(np.eye(17) - alpha * H)
        t = mm.tensor(phi, requires_grad=True)
        phi = phi - alpha * mm.grad(support_loss(t), [t])[0].numpy()
    t = mm.tensor(phi, requires_grad=True)
    g = mm.grad(F.mse_loss(model(mm.tensor(xq), {"theta": t}), yq), [t])[0].numpy()
    for factor in reversed(factors):
        g = factor @ g
    np.testing.assert_allclose(meta.numpy(), g, rtol=1e-10, atol=1e-12)
    assert np.max(np.abs(meta.numpy() - g)) < 1e-10


def test_first_order_meta_gradient_is_the_query_gradient_at_phi():
    model, theta0, (xs, ys, xq, yq) = _mlp_problem(5)
    theta = {"theta": mm.tensor(theta0, requires_grad=True)}
    learner = MAML(model, 0.3, 2, first_order=True, loss="mse", params=theta)
    (meta,) = learner.meta_gradient([(xs, ys, xq, yq)])
    phi = learner.adapt(theta, xs, ys)["theta"].detach().requires_grad_()
    (expected,) = mm.grad(F.mse_loss(model(mm.tensor(xq), {"theta": phi}), yq), [phi])
    np.testing.assert_allclose(meta.numpy(), expected.numpy(), rtol=1e-13)


def test_hand_unrolled_loop_gives_the_same_meta_gradient():
    net = nn.mlp((1, 8, 1), dtype=np.float64)
    params = net.named_parameters()
    tasks = [(RNG.standard_normal((5, 1)), RNG.standard_normal((5, 1)),
              RNG.standard_normal((5, 1)), RNG.standard_normal((5, 1))) for _ in range(3)]
    learner = MAML(net, 0.05, 2, loss="mse")
    ours = learner.meta_gradient(tasks)
    total = 0.0
    for xs, ys, xq, yq in tasks:
        fast = dict(params)
        for _ in range(2):
            gs = mm.grad(F.mse_loss(net(mm.tensor(xs), fast), ys), list(fast.values()),
                         create_graph=True)
            fast = {k: p - 0.05 * g for (k, p), g in zip(fast.items(), gs)}
        total = total + F.mse_loss(net(mm.tensor(xq), fast), yq)
    hand = mm.grad(total / 3.0, list(params.values()))
    assert len(ours) == len(hand) == len(params)
    for a, b in zip(ours, hand):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    # outer_step accumulates the same meta-gradient into .grad
    learner.outer_step(tasks)
    for p, b in zip(params.values(), hand):
        np.testing.assert_allclose(p.grad.numpy(), b.numpy(), rtol=1e-12)


def test_reptile_update_equals_its_formula():
    net = nn.mlp((1, 4, 1), dtype=np.float64)
    theta = {k: v.numpy().copy() for k, v in net.named_parameters().items()}
    tasks = [(RNG.standard_normal((4, 1)), RNG.standard_normal((4, 1)),
              RNG.standard_normal((4, 1)), RNG.standard_normal((4, 1))) for _ in range(2)]
    eps, lr, k = 0.5, 0.1, 3
    reptile = Reptile(net, lr, k, eps, loss="mse")
    expected = {n: v.copy() for n, v in theta.items()}
    for xs, ys, _, _ in tasks:
        fast = {n: mm.tensor(v.copy(), requires_grad=True) for n, v in theta.items()}
        for _ in range(k):
            gs = mm.grad(F.mse_loss(net(mm.tensor(xs), fast), ys), list(fast.values()))
            fast = {n: mm.tensor(p.numpy() - lr * g.numpy(), requires_grad=True)
                    for (n, p), g in zip(fast.items(), gs)}
        for n in expected:
            expected[n] += eps * (fast[n].numpy() - theta[n]) / len(tasks)
    reptile.outer_step(tasks)
    for n, p in net.named_parameters().items():
        np.testing.assert_allclose(p.numpy(), expected[n], rtol=1e-12)


@given(seed=st.integers(0, 10_000), alpha=st.floats(0.01, 0.5), steps=st.integers(1, 3))
def test_second_and_first_order_differ_iff_the_loss_is_curved(seed, alpha, steps):
    model, theta0, task = _mlp_problem(seed)
    grads = []
    for first in (False, True):
        theta = {"theta": mm.tensor(theta0, requires_grad=True)}
        grads.append(MAML(model, alpha, steps, first_order=first, loss="mse",
                          params=theta).meta_gradient([task])[0].numpy())
    assert np.max(np.abs(grads[0] - grads[1])) > 1e-8

    def linear_loss(pred, y):  # linear in the parameters of linear_model: zero Hessian
        return mm.mean(pred * mm.tensor(y))

    rng = np.random.default_rng(seed)
    xs, ys, xq, yq = (rng.standard_normal(s) for s in [(5, 3), (5, 1), (4, 3), (4, 1)])
    lin = []
    for first in (False, True):
        theta = {"w": mm.tensor(rng.standard_normal((3, 1)) * 0 + 1.0, requires_grad=True)}
        lin.append(MAML(linear_model, alpha, steps, first_order=first, loss=linear_loss,
                        params=theta).meta_gradient([(xs, ys, xq, yq)])[0].numpy())
    np.testing.assert_allclose(lin[0], lin[1], rtol=1e-12, atol=1e-14)


def test_meta_sgd_learns_rates_and_anil_adapts_only_the_head():
    net = nn.mlp((1, 6, 1), dtype=np.float64)
    task = tuple(RNG.standard_normal((4, 1)) for _ in range(4))
    msgd = MetaSGD(net, 0.1, 1, loss="mse")
    grads = msgd.meta_gradient([task])
    assert len(grads) == 2 * len(net.parameters()) and all(g is not None for g in grads)
    anil = ANIL(net, 0.1, 1, loss="mse")
    assert anil.adapt_names == ["2.weight", "2.bias"]
    fast = anil.adapt(net.named_parameters(), task[0], task[1])
    assert fast["0.weight"] is net.named_parameters()["0.weight"]
    assert fast["2.weight"] is not net.named_parameters()["2.weight"]


def test_maml_meta_gradient_matches_pytorch():
    torch = pytest.importorskip("torch")
    model, theta0, (xs, ys, xq, yq) = _mlp_problem(11)
    theta = {"theta": mm.tensor(theta0, requires_grad=True)}
    (ours,) = MAML(model, 0.2, 2, loss="mse", params=theta).meta_gradient([(xs, ys, xq, yq)])

    T = lambda a: torch.tensor(a, dtype=torch.float64)  # noqa: E731
    t = T(theta0).requires_grad_()

    def f(x, p):
        w1, b1 = p[:8].reshape(2, 4), p[8:12]
        w2, b2 = p[12:16].reshape(4, 1), p[16:]
        return torch.tanh(x @ w1 + b1) @ w2 + b2

    phi = t
    for _ in range(2):
        (g,) = torch.autograd.grad(((f(T(xs), phi) - T(ys)) ** 2).mean(), [phi],
                                   create_graph=True)
        phi = phi - 0.2 * g
    (ref,) = torch.autograd.grad(((f(T(xq), phi) - T(yq)) ** 2).mean(), [t])
    np.testing.assert_allclose(ours.numpy(), ref.numpy(), rtol=1e-12, atol=1e-14)


def test_bad_learner_arguments():
    with pytest.raises(ValueError, match="MAML: inner_lr must be a finite number > 0"):
        MAML(nn.mlp(), -1.0)
    with pytest.raises(ValueError, match="inner_optimizer"):
        Reptile(nn.mlp(), 0.1, 1, 0.1, inner_optimizer="rmsprop")
    with pytest.raises(ValueError, match="ANIL: head 'nope' names no parameter"):
        ANIL(nn.mlp(), 0.1, head="nope.")
    # found by probing: these had been accepted, to fail later or run wrongly
    with pytest.raises(ValueError, match=r"MAML: adapt_names \['nope'\] name no parameter"):
        MAML(nn.mlp(), 0.3, 1, adapt_names=["nope"])          # a bare KeyError at a step
    with pytest.raises(ValueError, match="MAML: inner_steps must be an integer >= 0, got True"):
        MAML(nn.mlp(), 0.3, True)
    with pytest.raises(ValueError, match=r"Reptile: .*Adam: betas must be|Adam: betas must be"):
        Reptile(nn.mlp(), 0.1, 1, 0.1, inner_optimizer="adam", inner_betas=(1.0, 0.9))
    w = mm.tensor(np.ones((2, 1)), requires_grad=True)
    anil = ANIL(None, 0.1, params={"body": mm.tensor(np.ones(2)), "w": w})
    assert anil.adapt_names == ["w"]                  # dotless names: the head had been 'w.'


def test_anil_head_is_a_module_name_not_a_bare_string_prefix():
    """Found by probing: head='head' had also adapted 'headnorm.*', part of the body, and a
    dotless default head 'w' every name starting with 'w'."""
    one = lambda: mm.tensor(np.ones(2), requires_grad=True)   # noqa: E731
    params = {"body.weight": one(), "headnorm.weight": one(), "head.weight": one(),
              "head.bias": one()}
    for head in ("head", "head.", None):
        assert ANIL(None, 0.1, params=params, head=head).adapt_names == \
            ["head.weight", "head.bias"]
    assert ANIL(None, 0.1, params=params, head="head.bias").adapt_names == ["head.bias"]
    dotless = {"w": one(), "w2": one()}
    assert ANIL(None, 0.1, params=dotless).adapt_names == ["w2"]
    assert ANIL(None, 0.1, params=dotless, head="w").adapt_names == ["w"]
    assert ANIL(nn.conv4(5), 0.1).adapt_names == ["17.weight", "17.bias"]     # the head


def test_reptile_s_inner_adam_takes_the_paper_s_betas():
    # the paper's code runs Adam with β1 = 0; the betas had been fixed at (0.9, 0.999)
    net = nn.mlp((1, 3, 1), dtype=np.float64, seed=1)
    x, y = RNG.standard_normal((4, 1)), RNG.standard_normal((4, 1))
    fast = {}
    for betas in ((0.9, 0.999), (0.0, 0.999)):
        reptile = Reptile(net, 1e-3, 5, 1.0, inner_optimizer="adam", loss="mse",
                          inner_betas=betas)
        fast[betas] = reptile.adapt(x, y)
    p = {k: v.numpy().copy() for k, v in net.named_parameters().items()}
    m = {k: np.zeros_like(v) for k, v in p.items()}
    v2 = {k: np.zeros_like(v) for k, v in p.items()}
    for t in range(1, 6):                      # Adam with β1 = 0, written out
        params = {k: mm.tensor(a, requires_grad=True) for k, a in p.items()}
        gs = mm.grad(F.mse_loss(net(mm.tensor(x), params), y), list(params.values()))
        for (k, a), g in zip(p.items(), gs):
            m[k] = g.numpy()
            v2[k] = 0.999 * v2[k] + 0.001 * g.numpy() ** 2
            p[k] = a - 1e-3 * m[k] / (np.sqrt(v2[k] / (1 - 0.999 ** t)) + 1e-8)
    for k in p:
        np.testing.assert_allclose(fast[(0.0, 0.999)][k].numpy(), p[k], rtol=1e-12)
    assert not np.allclose(fast[(0.9, 0.999)]["0.weight"].numpy(), p["0.weight"], rtol=1e-6)


def test_anil_with_an_empty_params_dict_is_an_error_not_the_models_parameters():
    from minimeta.learners import ANIL

    with pytest.raises(ValueError, match="ANIL: no parameters"):
        ANIL(nn.mlp([1, 4, 1]), 0.1, params={})


# ----- evaluate(): what the reported accuracies come from -------------------------------------
# A mutant scoring MAML's support set, or Reptile's ignoring test_steps or test_lr, had passed
# every test (found by probing the suite with mutants, 2026-12-01): each is a hand-written SGD
# fine-tune here, scored on the query set.
def fine_tuned_query_loss(net, task, steps, lr, rates=None, names=None):
    xs, ys, xq, yq = task
    fast = {k: mm.tensor(p.numpy(), requires_grad=True)
            for k, p in net.named_parameters().items()}
    for _ in range(steps):
        grads = mm.grad(F.mse_loss(net(mm.tensor(xs), fast), ys), list(fast.values()))
        fast = {k: mm.tensor(p.numpy() - (rates[k] if rates else lr) * g.numpy()
                             if names is None or k in names else p.numpy(), requires_grad=True)
                for (k, p), g in zip(fast.items(), grads)}
    return F.mse_loss(net(mm.tensor(xq), fast), yq).item()


EVAL_TASK = tuple(np.random.default_rng(7).standard_normal((4, 5, 1)))   # four sets, apart


def test_evaluate_fine_tunes_on_the_support_set_and_scores_the_query_set():
    assert not np.allclose(EVAL_TASK[0], EVAL_TASK[2])
    net = nn.mlp((1, 8, 1), dtype=np.float64)
    loss, _ = MAML(net, 0.05, 1, loss="mse", test_steps=4).evaluate(EVAL_TASK)
    assert loss == pytest.approx(fine_tuned_query_loss(net, EVAL_TASK, 4, 0.05), rel=1e-10)
    assert loss != pytest.approx(fine_tuned_query_loss(net, EVAL_TASK, 1, 0.05), rel=1e-6)
    msgd = MetaSGD(net, 0.05, 1, loss="mse", test_steps=3)
    for k, r in msgd.rates.items():                 # learned rates, one per element
        r.data[...] = np.random.default_rng(1).uniform(0.01, 0.1, r.shape)
    rates = {k: r.numpy() for k, r in msgd.rates.items()}
    assert msgd.evaluate(EVAL_TASK)[0] == pytest.approx(
        fine_tuned_query_loss(net, EVAL_TASK, 3, None, rates), rel=1e-10)
    anil = ANIL(net, 0.05, 1, loss="mse", test_steps=3)
    assert anil.evaluate(EVAL_TASK)[0] == pytest.approx(
        fine_tuned_query_loss(net, EVAL_TASK, 3, 0.05, names=anil.adapt_names), rel=1e-10)


def test_reptile_evaluates_with_its_test_steps_and_test_lr():
    net = nn.mlp((1, 8, 1), dtype=np.float64)
    reptile = Reptile(net, 0.01, 2, 0.5, loss="mse", test_steps=7, test_lr=0.05)
    assert reptile.evaluate(EVAL_TASK)[0] == pytest.approx(
        fine_tuned_query_loss(net, EVAL_TASK, 7, 0.05), rel=1e-10)
    assert reptile.evaluate(EVAL_TASK, steps=2)[0] == pytest.approx(
        fine_tuned_query_loss(net, EVAL_TASK, 2, 0.05), rel=1e-10)


def test_defaults_evaluate_with_the_training_steps_and_meta_sgd_rates_start_at_inner_lr():
    """Unset ``test_steps`` means ``inner_steps`` (MAML's docstring), and Meta-SGD's learned
    rates start at ``inner_lr`` (Li et al.), so a fresh Meta-SGD fine-tunes as MAML does. A
    default of 1 test step, and rates starting at 1.0, had each passed every test (mutation
    audit): both are held to the hand-written SGD fine-tune above."""
    net = nn.mlp((1, 8, 1), dtype=np.float64)
    maml = MAML(net, 0.05, 3, loss="mse")
    assert maml.test_steps == 3
    assert maml.evaluate(EVAL_TASK)[0] == pytest.approx(
        fine_tuned_query_loss(net, EVAL_TASK, 3, 0.05), rel=1e-10)
    msgd = MetaSGD(net, 0.05, 2, loss="mse")
    assert all((r.numpy() == 0.05).all() and r.shape == net.named_parameters()[k].shape
               for k, r in msgd.rates.items())
    assert msgd.evaluate(EVAL_TASK)[0] == pytest.approx(
        fine_tuned_query_loss(net, EVAL_TASK, 2, 0.05), rel=1e-10)


def test_reptile_holds_a_frozen_weight_in_its_inner_loop_too():
    """A frozen parameter (``requires_grad = False``) is read by Reptile's inner SGD but never
    stepped, so the other weights adapt around its value. An inner loop that fine-tuned it too
    (the outer step still skipping it) had passed every test (mutation audit: the frozen
    check looked at θ only): the reference is a hand-written SGD on the trainable weights."""
    net = nn.mlp((1, 4, 1), dtype=np.float64)
    net.named_parameters()["0.weight"].requires_grad = False
    theta = {k: v.numpy().copy() for k, v in net.named_parameters().items()}
    xs, ys = RNG.standard_normal((5, 1)), RNG.standard_normal((5, 1))
    eps, lr, k = 0.5, 0.1, 3
    Reptile(net, lr, k, eps, loss="mse").outer_step([(xs, ys, xs, ys)])
    fast = {n: mm.tensor(v.copy(), requires_grad=n != "0.weight") for n, v in theta.items()}
    for _ in range(k):
        names = [n for n in fast if n != "0.weight"]
        gs = mm.grad(F.mse_loss(net(mm.tensor(xs), fast), ys), [fast[n] for n in names])
        fast.update({n: mm.tensor(fast[n].numpy() - lr * g.numpy(), requires_grad=True)
                     for n, g in zip(names, gs)})
    for n, p in net.named_parameters().items():
        np.testing.assert_allclose(p.numpy(), theta[n] + eps * (fast[n].numpy() - theta[n]),
                                   rtol=1e-12, atol=1e-15)
    np.testing.assert_array_equal(net.named_parameters()["0.weight"].numpy(), theta["0.weight"])


def test_meta_sgd_refuses_saved_rates_for_other_parameters():
    """``MetaSGD.load_state_dict`` takes rates for exactly its adapted parameters: rates of
    another model (a missing name, or one more) are a ValueError naming both sets, and nothing
    is loaded. Without the check a missing rate had met a bare KeyError and an extra one was
    dropped silently, and no test noticed (mutation audit)."""
    msgd = MetaSGD(nn.mlp((1, 3, 1), dtype=np.float64), 0.1, loss="mse")
    saved = msgd.state_dict()["rates"]
    before = {k: r.numpy().copy() for k, r in msgd.rates.items()}
    for rates in ({k: v for k, v in saved.items() if k != "0.bias"},
                  dict(saved, **{"4.bias": np.ones(1)})):
        with pytest.raises(ValueError, match=r"^MetaSGD: the saved rates are for \["):
            msgd.load_state_dict({"rates": {k: v * 2 for k, v in rates.items()}})
        for k, r in msgd.rates.items():
            np.testing.assert_array_equal(r.numpy(), before[k])
    msgd.load_state_dict({"rates": {k: v * 2 for k, v in saved.items()}})
    assert all((r.numpy() == 0.2).all() for r in msgd.rates.values())


@given(st.floats(-4, 4, allow_nan=False), st.sampled_from([np.float32, np.float64]),
       st.integers(0, 2 ** 32 - 1))
def test_the_inner_step_is_phi_minus_alpha_g_bit_for_bit(step, dtype, seed):
    """``descend`` adds (−α)·g: the bits of φ − α·g (negation is exact), in either dtype."""
    from minimeta.learners.maml import descend

    rng = np.random.default_rng(seed)
    p, g = (mm.tensor(rng.standard_normal(7).astype(dtype)) for _ in range(2))
    np.testing.assert_array_equal(descend(p, step, g).numpy(), (p - step * g).numpy())


def test_the_meta_gradient_s_backward_pass_negates_nothing(monkeypatch):
    """With a number for α, the meta-gradient's backward pass passes g through the inner
    step's add: no ``Neg`` runs (a subtraction's VJP negates, once per parameter and step: a
    mutant that subtracts fails here). Meta-SGD's Tensor rates still subtract."""
    from minimeta.engine.primitives.elementwise import Neg

    negations = []
    forward = Neg.forward
    monkeypatch.setattr(Neg, "forward", lambda self, a: negations.append(1) or forward(self, a))
    tasks = [tuple(RNG.standard_normal((5, 1)) for _ in range(4)) for _ in range(2)]
    MAML(nn.mlp((1, 8, 1), dtype=np.float64), 0.05, 2, loss="mse").meta_gradient(tasks)
    assert negations == []
    MetaSGD(nn.mlp((1, 8, 1), dtype=np.float64), 0.05, 2, loss="mse").meta_gradient(tasks)
    assert negations                    # the counter counts: Meta-SGD's rates do negate
