"""What an evaluation measures (``minimeta/experiments/evaluation.py``): ``run_episodes`` scores
exactly the episodes asked for, episode i drawn from (``seed``, i), in order whatever the
worker threads, and reports ``mean_ci`` of their scores; ``fine_tune`` steps down the support
loss's gradient; the sinusoid table counts a task as diverged at 10× its starting MSE. A
mutation audit (2026-12-04) found each of these free to change with every test passing: 99
episodes for 100, ``minimeta eval --seed`` ignored, fine-tuning that climbed, a 100× bound.
"""
import numpy as np
import pytest

from minimeta import nn
from minimeta.experiments.evaluation import fine_tune, run_episodes


class Scorer:
    """A learner whose score of an episode is the episode's index (its task is its seed)."""

    def __init__(self, workers):
        self.workers = workers

    def evaluate(self, task):
        return 0.5, float(task[1])     # (query loss, accuracy)


@pytest.mark.parametrize("workers", [1, 3])
def test_run_episodes_scores_episodes_0_to_n_minus_1_of_its_seed(workers):
    asked = []

    def tasks(seq, n):
        asked.append(list(seq))
        return [seq] * n
    mean, half = run_episodes(Scorer(workers), tasks, 7, 42, label="test")
    assert asked == [[42, i] for i in range(7)]          # each once, in order, this seed's
    # scores 0..6: mean 3, sample variance 28/6, Student's t at 6 degrees of freedom 2.4469
    assert mean == 3.0 and half == pytest.approx(2.4469 * np.sqrt(28 / 6 / 7), rel=1e-4)


def test_fine_tune_steps_down_the_support_loss_gradient():
    """One step of y = x·w + b on the mean squared error, against its gradient by hand."""
    model = nn.mlp((1, 1), seed=0, dtype=np.float64)
    params = model.named_parameters()
    w, b = params["0.weight"].numpy()[0, 0], params["0.bias"].numpy()[0]
    x, y = np.array([[1.0], [2.0], [-1.0]]), np.array([[3.0], [0.5], [1.0]])
    steps = list(fine_tune(model, params, x, y, steps=1, lr=0.1))
    assert len(steps) == 2
    residual = (x * w + b - y)[:, 0]
    grad_w, grad_b = 2 * np.mean(residual * x[:, 0]), 2 * np.mean(residual)
    np.testing.assert_allclose(steps[1]["0.weight"].numpy(), [[w - 0.1 * grad_w]], rtol=1e-12)
    np.testing.assert_allclose(steps[1]["0.bias"].numpy(), [b - 0.1 * grad_b], rtol=1e-12)
    np.testing.assert_array_equal(steps[0]["0.weight"].numpy(), [[w]])   # step 0: as given


def test_the_sinusoid_table_counts_a_task_above_10_times_its_start_as_diverged():
    """``sinusoid.stat``: a task whose MSE ends above 10× its value before fine-tuning, or is
    not finite, has diverged; the median counts a non-finite MSE as +inf, not as NaN."""
    from minimeta.experiments.sinusoid import stat
    mean, half, median, diverged = stat([1.0, 15.0, 150.0, np.nan, 9.0], [1.0] * 5)
    assert diverged == 3 and median == 15.0 and np.isnan(mean)
    assert stat([1.0, 9.9, 2.0], [1.0] * 3)[3] == 0


def test_a_replayed_fine_tuning_is_the_plain_one_bit_for_bit():
    """``fine_tune_curve`` through a ``Replayed`` (the step recorded at the first task, replayed
    for the others) gives each task's losses to the bit, for an MLP of ReLUs (masks that
    change from task to task); a ``Replayed`` of another loss or parameter order is refused
    (its replay would be another function's: silently wrong numbers)."""
    from minimeta import functional as F
    from minimeta.data import SinusoidTasks
    from minimeta.experiments.evaluation import Replayed, fine_tune_curve

    model = nn.mlp((1, 40, 40, 1), seed=3)
    params = model.named_parameters()
    replayed = Replayed(model, F.mse_loss, params)
    for task in SinusoidTasks(seed=4).sample(6, 5, 20):
        plain = fine_tune_curve(model, params, *task, steps=(0, 1, 3))
        assert fine_tune_curve(model, params, *task, steps=(0, 1, 3),
                               replayed=replayed) == plain
    assert replayed.gradient.counts["replayed"] >= 10 and replayed.query.counts["replayed"] >= 10
    others = [Replayed(model, lambda a, b: F.mse_loss(a, b) * 2.0, params),
              Replayed(model, F.mse_loss, list(params)[::-1])]
    for other in others:
        with pytest.raises(ValueError, match="replayed is another"):
            fine_tune_curve(model, params, *task, steps=(0, 1), replayed=other)


def _curves_both_ways(model, tasks, steps, lr):
    from minimeta.experiments.evaluation import fine_tune_curve, fine_tune_curves
    params = model.named_parameters()
    stacked = fine_tune_curves(model, params, tasks, steps, lr)
    alone = [fine_tune_curve(model, params, *task, steps=steps, lr=lr) for task in tasks]
    return stacked, {k: np.array([c[k] for c in alone]) for k in steps}


@pytest.mark.parametrize("lr", [0.01, 0.03])
def test_the_stacked_fine_tuning_curves_are_each_task_s_own_bit_for_bit(lr):
    """``fine_tune_curves`` (the tasks stacked, one gradient of the sum of their losses a step)
    gives each task's curve as ``fine_tune_curve`` alone does, to the bit: for an MLP of ReLUs
    (masks that differ from task to task), at step sizes at which some tasks of this network
    diverge to inf or NaN (2 and 6 of 7), which reaches no other task. A mutant that averages
    the tasks' losses (each task's step a T-th of its own) is caught."""
    from minimeta.data import SinusoidTasks
    from minimeta.experiments import evaluation

    model = nn.mlp((1, 40, 40, 1), seed=3)
    tasks = SinusoidTasks(seed=4).sample(7, 5, 20)
    with np.errstate(all="ignore"):
        stacked, alone = _curves_both_ways(model, tasks, (0, 1, 3, 6), lr)
    for k in alone:
        np.testing.assert_array_equal(stacked[k], alone[k])
    diverged = ~np.isfinite(alone[6]) | (alone[6] > 1e6)    # some tasks did, the others not
    assert 0 < np.sum(diverged) < len(tasks)
    assert np.all(np.isfinite(stacked[6][~diverged]))
    mutant = evaluation.grad
    try:
        evaluation.grad = lambda loss, xs: mutant(loss * (1.0 / len(tasks)), xs)
        with np.errstate(all="ignore"):
            wrong, _ = _curves_both_ways(model, tasks, (0, 1, 3, 6), lr)
    finally:
        evaluation.grad = mutant
    assert not np.array_equal(wrong[1], alone[1])
    with pytest.raises(ValueError, match="fine_tune_curves: tasks must have equal shapes"):
        evaluation.fine_tune_curves(model, model.named_parameters(),
                                    tasks[:2] + SinusoidTasks(seed=5).sample(1, 4, 20), (0, 1))


@pytest.mark.parametrize("frozen", [False, True])
def test_the_pretrained_baseline_s_replayed_step_is_backward_s_bit_for_bit(frozen):
    """The baseline's outer step (its loss and gradient replayed) fills ``.grad`` with what
    ``loss.backward()`` gives, iteration after iteration of Adam; a frozen parameter (read,
    not trained) gets none, and the step is still replayed."""
    from minimeta.data import SinusoidTasks
    from minimeta.engine.tensor import Tensor
    from minimeta.experiments.sinusoid import Pretrained
    from minimeta.optim import Adam

    stream, models = SinusoidTasks(seed=1), [nn.mlp((1, 40, 40, 1), seed=2) for _ in range(2)]
    for m in models:
        m.parameters()[0].requires_grad = not frozen
    learner = Pretrained(models[0])
    opts = [Adam([p for p in m.parameters() if p.requires_grad], 1e-2) for m in models]
    for _ in range(5):
        tasks = stream.sample(4, 5)
        got = learner.outer_step(tasks)["loss"]
        x, y = (np.concatenate([t[i] for t in tasks]) for i in (0, 1))
        loss = learner.loss(models[1](Tensor(x)), y)
        loss.backward()
        assert got == loss.item()
        first = models[0].parameters()[0]
        for a, b in zip(*(m.parameters() for m in models)):
            assert (a.grad is None) == (b.grad is None) == (frozen and a is first)
            assert a.grad is None or a.grad.numpy().tobytes() == b.grad.numpy().tobytes()
        for opt in opts:
            opt.step()
            opt.zero_grad()
    assert learner._traced.counts["replayed"] == 3
