"""The model-based family: conditional neural processes (``learners/cnp.py``).

- The context is a set: permuting its points changes no prediction (1e-12, float64).
- The context is read: changing its y values changes the predictions; a model whose encoder is
  cut off (a mutation) fails that check.
- The NLL equals a NumPy computation of the Gaussian log-likelihood; μ and σ of a stack of
  tasks equal a NumPy forward pass of each task alone; ``evaluate`` is the MSE of μ predicted
  from the context alone.
- Gradient checks of order 1 and 2 of the episode loss with respect to the parameters and to
  the context (so a CNP can sit inside an outer loop like the other learners).
- The command line trains and evaluates it on sinusoids and refuses Omniglot.
- Points without their feature axis ((K,) for (K, 1)) are refused by name.
- Training works: a trained CNP predicts a function from its own context far better than from
  another task's; a mutant that pairs the context's y values with the wrong x fails that.

Read next: ``test_workers.py`` (tasks on worker threads).
"""
import json
import math
import os

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import minimeta as mm
from minimeta import cli
from minimeta.learners import CNP
from minimeta.learners.cnp import context_size, softplus


def small(seed=0):
    return CNP(hidden=6, layers=2, seed=seed, dtype=np.float64)


def points(n, seed):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-5, 5, (n, 1))
    return x, 2.0 * np.sin(x - 0.5)


@settings(max_examples=20, deadline=None)
@given(st.integers(1, 8), st.integers(0, 10 ** 6))
def test_the_context_is_a_set(n, seed):
    cnp, (xs, ys), (xq, _) = small(), points(n, seed), points(5, seed + 1)
    perm = np.random.default_rng(seed).permutation(n)
    mu, sigma = cnp.predict(xs, ys, xq)
    mu2, sigma2 = cnp.predict(xs[perm], ys[perm], xq)
    np.testing.assert_allclose(mu2.numpy(), mu.numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(sigma2.numpy(), sigma.numpy(), rtol=0, atol=1e-12)
    assert (sigma.numpy() >= 0.1).all()


def context_moves_predictions(cnp):
    (xs, ys), (xq, _) = points(6, 0), points(5, 1)
    a = cnp.predict(xs, ys, xq)[0].numpy()
    b = cnp.predict(xs, -ys, xq)[0].numpy()
    return np.abs(a - b).max()


def test_the_context_is_read():
    assert context_moves_predictions(small()) > 1e-4


def test_reading_check_fails_when_the_encoder_is_cut_off(monkeypatch):
    """Mutation: the encoder's output replaced by zeros (the decoder sees no context)."""
    cnp = small()
    real = cnp.net.call_child

    def cut(name, x, params):
        out = real(name, x, params)
        return out * 0.0 if name == "encoder" else out

    monkeypatch.setattr(cnp.net, "call_child", cut)
    assert context_moves_predictions(cnp) == 0.0


def test_nll_matches_numpy():
    cnp, (xs, ys), (xq, yq) = small(), points(4, 2), points(7, 3)
    mu, sigma = (t.numpy() for t in cnp.predict(xs, ys, xq))
    want = np.mean(np.log(sigma) + (yq - mu) ** 2 / (2 * sigma ** 2)) + 0.5 * math.log(2 * math.pi)
    assert cnp.nll(xs, ys, xq, yq).item() == pytest.approx(want, rel=1e-13)
    s = np.array([-800.0, -3.0, 0.0, 2.5, 800.0])
    np.testing.assert_allclose(softplus(mm.tensor(s)).numpy(), np.logaddexp(0, s), rtol=1e-14)


@pytest.mark.parametrize("order", [1, 2])
def test_gradcheck_of_the_episode_loss(order):
    """d NLL / d(parameters, context x, context y), orders 1 and 2 (composed), float64."""
    cnp, (xs, ys), (xq, yq) = small(3), points(3, 4), points(4, 5)
    names = list(cnp.params)

    def f(xs_t, ys_t, *weights):
        return cnp.nll(xs_t, ys_t, xq, yq, dict(zip(names, weights)))

    report = mm.gradcheck(f, [xs, ys] + [p.numpy() for p in cnp.params.values()], order=order,
                          atol=1e-5, rtol=1e-4)
    assert report.scale[order] > 1e-2


def test_context_size_is_in_range_and_repeats():
    xs = np.random.default_rng(0).uniform(-5, 5, (4, 10, 1))
    ks = {context_size(xs + i) for i in range(100)}
    assert ks == set(range(1, 11))                      # 1 to K, K included
    assert context_size(xs) == context_size(xs.copy())


# a mutation audit found each of these changes passed every test above
def test_the_context_is_averaged_not_summed():
    cnp, (xs, ys), (xq, _) = small(), points(3, 6), points(4, 7)
    once = cnp.predict(xs, ys, xq)[0].numpy()
    twice = cnp.predict(np.concatenate([xs, xs]), np.concatenate([ys, ys]), xq)[0].numpy()
    np.testing.assert_allclose(twice, once, rtol=1e-12)


def test_sigma_is_bounded_below_by_a_tenth_as_in_the_reference_code():
    """σ = 0.1 + 0.9·softplus(s) (Garnelo et al. 2018's code): at s = 0, 0.1 + 0.9·ln 2."""
    cnp, (xs, ys), (xq, _) = small(), points(3, 8), points(4, 9)
    zeros = {name: p * 0.0 for name, p in cnp.params.items()}
    sigma = cnp.predict(xs, ys, xq, zeros)[1].numpy()
    np.testing.assert_allclose(sigma, 0.1 + 0.9 * np.log(2.0), rtol=1e-14)


def test_training_predicts_every_point_from_the_first_k(monkeypatch):
    """The targets are all K + queries points; the context the first k, k from 1 to K."""
    from minimeta.data import SinusoidTasks
    cnp, seen, nll = small(), [], CNP.nll

    def spy(self, xs, ys, xq, yq, params=None):
        seen.append((xs.shape[1], xq.shape[1]))
        np.testing.assert_array_equal(xq[:, :xs.shape[1]], xs)
        return nll(self, xs, ys, xq, yq, params)

    monkeypatch.setattr(CNP, "nll", spy)
    for seed in range(40):
        cnp.outer_step(SinusoidTasks(seed=seed, dtype=np.float64).sample(2, 3, 4))
    assert {k for k, _ in seen} == {1, 2, 3} and {n for _, n in seen} == {7}


def test_the_decoder_is_not_drawn_like_the_encoder():
    """Each part's seed is derived from the model's (``nn.layers.derived``): with the same
    seed both first layers would start as scaled copies of one draw."""
    p = small().params
    e, d = p["encoder.0.weight"].numpy().ravel(), p["decoder.0.weight"].numpy().ravel()
    n = min(e.size, d.size)
    assert not np.allclose(e[:n] / e[0], d[:n] / d[0], rtol=1e-6)


def test_cli_trains_and_evaluates_a_cnp(tmp_path, capsys):
    out, report = str(tmp_path / "cnp"), str(tmp_path / "r.jsonl")
    assert cli.main(["train", "--learner", "cnp", "--dataset", "sinusoid", "--shots", "10",
                     "--queries", "10", "--iterations", "40", "--out", out]) == 0
    with open(os.path.join(out, "metrics.jsonl")) as f:
        losses = [json.loads(line)["loss"] for line in f]
    assert len(losses) == 40 and np.mean(losses[-10:]) < np.mean(losses[:10])
    assert cli.main(["eval", "--checkpoint", os.path.join(out, "checkpoint.npz"), "--shots",
                     "5", "--queries", "20", "--episodes", "8", "--report", report]) == 0
    with open(report) as f:
        row = json.loads(f.read())
    assert row["learner"] == "cnp" and row["shots"] == 5 and row["MSE"] > 0
    assert "K = 5 support points" in capsys.readouterr().out
    with pytest.raises(SystemExit) as info:
        cli.main(["train", "--learner", "cnp", "--out", str(tmp_path / "x")])
    assert info.value.code == 2
    assert "cnp regresses functions: use --dataset sinusoid" in capsys.readouterr().err


def cnp_numpy(p, xs, ys, xq):
    """μ, σ of a 2-layer CNP for one task, in NumPy from the weights ``p``."""
    relu = lambda z: np.maximum(z, 0.0)          # noqa: E731
    codes = relu(np.concatenate([xs, ys], -1) @ p["encoder.0.weight"] + p["encoder.0.bias"])
    r = (codes @ p["encoder.2.weight"] + p["encoder.2.bias"]).mean(0)
    hidden = relu(np.concatenate([xq, np.broadcast_to(r, (len(xq), len(r)))], -1)
                  @ p["decoder.0.weight"] + p["decoder.0.bias"])
    out = hidden @ p["decoder.2.weight"] + p["decoder.2.bias"]
    return out[:, :1], 0.1 + 0.9 * np.logaddexp(0.0, out[:, 1:])


def test_a_stack_of_tasks_predicts_as_numpy_does_task_by_task():
    """(μ, σ) of a stack of 3 tasks against ``cnp_numpy`` on each alone, every weight and bias
    drawn: the decoder reads x, σ is the second half of its output, and no task's context
    reaches another's (a mutation audit found each of these changes passed every test)."""
    rng = np.random.default_rng(11)
    cnp = small()
    p = {name: rng.standard_normal(w.shape) for name, w in cnp.params.items()}
    xs, ys, xq = rng.uniform(-5, 5, (3, 4, 1)), rng.standard_normal((3, 4, 1)), \
        rng.uniform(-5, 5, (3, 6, 1))
    mu, sigma = cnp.predict(xs, ys, xq, {k: mm.tensor(v) for k, v in p.items()})
    for t in range(3):
        want_mu, want_sigma = cnp_numpy(p, xs[t], ys[t], xq[t])
        np.testing.assert_allclose(mu.numpy()[t], want_mu, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(sigma.numpy()[t], want_sigma, rtol=1e-12, atol=1e-12)
    assert np.ptp(mu.numpy()[0]) > 1e-3 and np.ptp(sigma.numpy()[0]) > 1e-3   # x is read


def test_evaluate_is_the_mse_of_the_mean_from_the_context_alone():
    """``evaluate`` scores μ from (xs, ys) at xq: the query targets only enter the MSE."""
    rng = np.random.default_rng(12)
    cnp = small(4)
    xs, ys, xq = rng.uniform(-5, 5, (5, 1)), rng.standard_normal((5, 1)), \
        rng.uniform(-5, 5, (7, 1))
    mu = cnp_numpy({k: v.numpy() for k, v in cnp.params.items()}, xs, ys, xq)[0]
    for yq in (rng.standard_normal((7, 1)), 10.0 + rng.standard_normal((7, 1))):
        mse, acc = cnp.evaluate((xs, ys, xq, yq))
        assert acc is None and mse == pytest.approx(np.mean((mu - yq) ** 2), rel=1e-12)


def train_cnp(steps=4000, mutate=False):
    """A small CNP (hidden 32) trained ``steps`` Adam steps (lr 5e-3) on 25 sinusoid tasks of
    10 + 10 points a step; ``mutate``: the context's y values paired with the wrong x (a bug
    the unit tests above do not see: the context is still read, the NLL still right)."""
    from minimeta.data import SinusoidTasks
    cnp, stream = CNP(hidden=32, layers=3, seed=1), SinusoidTasks(seed=2)
    if mutate:
        real = cnp.nll
        cnp.nll = lambda xs, ys, xq, yq, params=None: real(xs, ys[:, ::-1], xq, yq, params)
    opt = mm.optim.Adam(cnp.meta_parameters(), 5e-3)
    for _ in range(steps):
        cnp.outer_step(stream.sample(25, 10, 10))
        opt.step()
        opt.zero_grad()
    return cnp


def own_and_other_context_mse(cnp):
    """Mean MSE on 100 held-out K = 10 tasks (100 query points each) with each task's own
    context, and with the next task's context (what a model blind to the context scores)."""
    from minimeta.experiments.sinusoid import held_out_tasks
    tasks = held_out_tasks(10, 100)
    other = tasks[1:] + tasks[:1]
    return tuple(np.mean([cnp.evaluate((c[0], c[1], t[2], t[3]))[0]
                          for c, t in zip(contexts, tasks)]) for contexts in (tasks, other))


@pytest.mark.parametrize("mutate", [False, True], ids=["cnp", "mutant"])
def test_a_trained_cnp_predicts_each_function_from_its_context(mutate):
    """After 4000 steps (about 13 s) the MSE with a task's own context is about 0.1 of the MSE
    with another task's (0.5 against 5.0 on this seed); the mutant, whose context can say the
    amplitude but not the phase, scores 0.7 of it. Measured on model seeds 1-7 (the task
    stream's the next): 0.08-0.15, the mutant 0.69 and 0.70 (seeds 1 and 3). At 2000 steps,
    the test's length before, seeds 2 and 3 were still on the learning curve's plateau (0.35,
    0.5): a bound of 0.4 held there on this seed only."""
    own, other = own_and_other_context_mse(train_cnp(mutate=mutate))
    assert (own < 0.4 * other) != mutate, (own, other)


def test_the_cnp_softplus_has_the_sigmoid_s_derivatives_at_zero():
    """max(s, 0) + log(1 + e^−|s|) had the derivatives 1 and 0 at s = 0 (maximum's tie to s,
    sign(0) = 0) where σ(0) = 0.5 and σ'(0) = 0.25: σ of a decoder output of exactly 0
    (zero weights) learnt from a wrong slope (an audit of numerics)."""
    s = mm.tensor(np.array([0.0, -3.0, 3.0, 800.0, -800.0]), requires_grad=True)
    y = softplus(s)
    np.testing.assert_allclose(y.numpy(), np.logaddexp(0.0, s.numpy()), rtol=1e-13)
    (g,) = mm.grad(y.sum(), [s], create_graph=True)
    (h,) = mm.grad(g.sum(), [s])
    sig = 1 / (1 + np.exp(-s.numpy()))
    np.testing.assert_allclose(g.numpy(), sig, rtol=1e-14, atol=1e-300)
    np.testing.assert_allclose(h.numpy(), sig * (1 - sig), rtol=1e-12, atol=1e-300)
    mm.gradcheck(softplus, [np.array([0.0, -1.5, 2.0])], order=2)


@pytest.mark.parametrize("part", range(3))
def test_points_without_their_feature_axis_are_refused_by_name(part):
    """(K,) arrays for a CNP of x_dim = y_dim = 1 had met "linear: input features (10,) do not
    match weight (2, 128)", naming neither the CNP nor the array."""
    x, y = points(5, 0)
    task = [x, y, x, y]
    task[part] = task[part][:, 0]
    name = ["context x", "context y", "target x"][part]
    dim = "y_dim" if part == 1 else "x_dim"
    with pytest.raises(ValueError, match=rf"^CNP: {name} must be \(points, {dim}=1\) or "
                                         rf"\(tasks, points, {dim}=1\), got shape \(5,\)$"):
        small().evaluate(tuple(task))
