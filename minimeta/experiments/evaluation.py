"""Measuring a trained model: the 95% interval, test episodes, and fine-tuning curves.

Every interval the experiments print is ``mean_ci``'s: the mean ± t·std/√n (Student's t for
n − 1 degrees of freedom, sample standard deviation; t = 1.964 at 600), over test episodes or
held-out tasks. The tables of docs/RESULTS.md, printed before 2026-12-01's last session, used
1.96: at their 600 episodes, 0.2% narrower.
``run_episodes`` evaluates a learner on n episodes (``minimeta eval``; ``validation``, the same
during training, logged, with batch norm's buffers put back); ``fine_tune`` is the one
fine-tuning loop (plain SGD on a task's support loss, as the sinusoid experiment adapts both
MAML and the pretrained baseline at test time), and ``fine_tune_curve`` the query loss along it,
for many tasks of one model through a ``Replayed`` (its steps recorded once, then replayed);
``fine_tune_curves`` runs many tasks' curves at once, stacked (the same numbers).

    >>> mean_ci([1.0, 2.0, 3.0])  # doctest: +ELLIPSIS
    (2.0, 2.4841...)
    >>> mean_ci([4.0])    # one value: no interval (not a certain 0)
    (4.0, nan)

Read next: ``minimeta/experiments/progress.py`` (a progress line).
"""
import numpy as np

from .. import functional as F
from ..engine import Traced, grad, no_grad
from ..engine.tensor import Tensor
from ..engine.workers import map_threads
from ..learners.base import put_back, snapshot
from ..learners.stacked import per_task_shape, stack_tasks
from .progress import Progress


def mean_ci(values):
    """Mean and the half-width of its 95% confidence interval, t · s / √n with Student's t
    quantile for n − 1 degrees of freedom (NaN for a single value: one episode says nothing
    of the spread). The normal 1.96 covered the mean only 70% of the time at 2 episodes, 87%
    at 5, 92% at 10; at 600, t = 1.964.

    >>> round(mean_ci([0.0, 1.0])[1], 3), round(t975(599), 4)
    (6.353, 1.9639)
    """
    v = np.asarray(values, dtype=np.float64)
    n = len(v)
    half = t975(n - 1) * v.std(ddof=1) / np.sqrt(n) if n > 1 else float("nan")
    return float(v.mean()), float(half)


# Student's t, 97.5% quantile, for 1..30 degrees of freedom (tables); beyond, its expansion
# about the normal's 1.95996 (Abramowitz & Stegun 26.7.5), within 1e-5 from 30 on
T975 = (12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.3060, 2.2622, 2.2281,
        2.2010, 2.1788, 2.1604, 2.1448, 2.1314, 2.1199, 2.1098, 2.1009, 2.0930, 2.0860,
        2.0796, 2.0739, 2.0687, 2.0639, 2.0595, 2.0555, 2.0518, 2.0484, 2.0452, 2.0423)


def t975(df):
    """The 97.5% quantile of Student's t with ``df`` degrees of freedom."""
    if df <= len(T975):
        return T975[df - 1]
    z, v = 1.959963984540054, float(df)
    return (z + (z ** 3 + z) / (4 * v) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * v ** 2)
            + (3 * z ** 7 + 19 * z ** 5 + 17 * z ** 3 - 15 * z) / (384 * v ** 3)
            + (79 * z ** 9 + 776 * z ** 7 + 1482 * z ** 5 - 1920 * z ** 3 - 945 * z)
            / (92160 * v ** 4))


def run_episodes(learner, tasks, episodes, seed, label="eval", finite=True, cut=None):
    """Mean and 95% half-interval of the accuracy (or MSE) over ``episodes`` episodes; episode
    i is ``tasks([seed, i], 1)[0]``. A query loss that is NaN or inf stops it
    (``FloatingPointError``; ``finite=False`` lets it through): an accuracy computed from
    such outputs means nothing (NaN logits score as class 0: chance, believably).
    Episodes are drawn here and evaluated on ``learner.workers`` threads, a few at a time;
    each episode's result does not depend on the threads. ``cut``, a function asked before
    each few episodes, returns True to give up: the result is then None (training's
    validation, cut short by a stop signal)."""
    values, bar = [], Progress(episodes, label)
    workers = getattr(learner, "workers", 1)
    block = 4 * workers
    for start in range(0, episodes, block):
        if cut is not None and cut():
            return None
        drawn = [tasks([seed, i], 1)[0] for i in range(start, min(start + block, episodes))]
        for i, (loss, acc) in enumerate(map_threads(learner.evaluate, drawn, workers),
                                        start):
            if finite and not np.isfinite(loss):
                raise FloatingPointError(
                    f"{label}: the query loss of episode {i} is {loss}: the model's outputs "
                    "are not finite (an inner learning rate that diverges?); nothing is "
                    "reported")
            values.append(acc if acc is not None else loss)
            bar.update(i)
    return mean_ci(values)


class Replayed:
    """A model's fine-tuning gradient and query loss for ``fine_tune`` and ``fine_tune_curve``,
    each recorded at its first task and replayed for the others (``engine/replay.py``: the same
    numbers without the engine's Python around each op; 2.5× sooner on the sinusoid's 600
    held-out tasks). ``names``: the parameters' names, in the order the Tensors are given."""

    def __init__(self, model, loss, names):
        self.model, self.loss, self.names = model, loss, list(names)
        self.gradient, self.query = Traced(self._gradient), Traced(self._query)

    def key(self):
        """What the model's ops depend on beside the arrays (``Traced``'s ``key``)."""
        return (getattr(self.model, "training", None),)

    def _gradient(self, x, y, *params):
        return grad(self._query(x, y, *params), list(params))

    def _query(self, x, y, *params):
        return self.loss(self.model(x, dict(zip(self.names, params))), y)


def fine_tune(model, params, x_support, y_support, steps, lr=0.01, loss=F.mse_loss,
              replayed=None):
    """Plain SGD from ``params`` on the mean support loss: yields the weights (new leaf
    Tensors) after 0, 1, …, ``steps`` steps of size ``lr``; each step's gradient from
    ``replayed`` (a ``Replayed`` of this model and loss) where given."""
    # new leaves on the same arrays (not numpy()'s read-only views: numba compiles each
    # kernel anew for read-only arrays, seconds)
    fast = {k: p.detach().requires_grad_() for k, p in params.items()}
    if replayed is not None and (replayed.model is not model or replayed.loss is not loss
                                 or replayed.names != list(fast)):
        raise ValueError("fine_tune: replayed is another model's, loss's or parameter "
                         "list's (Replayed(model, loss, params) of this call's)")
    xs = Tensor(x_support)
    for step in range(steps + 1):
        yield fast
        if step == steps:
            return
        grads = grad(loss(model(xs, fast), y_support), list(fast.values())) \
            if replayed is None else replayed.gradient(xs, y_support, *fast.values(),
                                                       key=replayed.key())
        fast = {k: Tensor(p.numpy() - lr * g.numpy(), requires_grad=True)
                for (k, p), g in zip(fast.items(), grads)}


def fine_tune_curve(model, params, x_s, y_s, x_q, y_q, steps, lr=0.01, loss=F.mse_loss,
                    replayed=None):
    """{k: query loss after k fine-tuning steps (``fine_tune``) for each k in ``steps``}."""
    out, xq = {}, Tensor(x_q)
    for step, fast in enumerate(fine_tune(model, params, x_s, y_s, max(steps), lr, loss,
                                          replayed)):
        if step in steps:
            with no_grad():
                out[step] = (loss(model(xq, fast), y_q) if replayed is None else
                             replayed.query(xq, y_q, *fast.values(), key=replayed.key())
                             ).item()
    return out


def fine_tune_curves(model, params, tasks, steps, lr=0.01):
    """``fine_tune_curve``'s MSE curves of many tasks at once, ``{k: array of each task's query
    MSE after k steps}``: the tasks (of one shape) stacked on a leading axis, each task its own
    copy of the weights ((T, in, out); a bias (T, 1, out), as ``StackedTasks`` broadcasts
    them), and one gradient of the sum of the tasks' support MSEs a step, whose part in each
    copy is that task's own gradient (the sum's VJP hands each task's loss a 1). For a model
    whose parameters are weights and biases that broadcast over a leading task axis
    (``nn.mlp``'s, as the sinusoid's models are); the same curves as the loop, bit for bit
    (``tests/test_evaluation.py``)."""
    xs, ys, xq, yq = stack_tasks(tasks, "fine_tune_curves")
    n = len(tasks)
    # a copy a task, writable (a broadcast view is read-only, and numba compiles each kernel
    # anew for read-only arrays)
    fast = {k: Tensor(np.broadcast_to(p.numpy(), per_task_shape(p, n)).copy(),
                      requires_grad=True) for k, p in params.items()}
    x_s, x_q, out = Tensor(xs), Tensor(xq), {}

    def per_task(x, y, weights):   # each task's MSE: the mean over its own points
        return ((model(x, weights) - y) ** 2).mean(axis=tuple(range(1, y.ndim)))

    for step in range(max(steps) + 1):
        if step in steps:
            with no_grad():
                out[step] = per_task(x_q, yq, fast).numpy().astype(np.float64)
        if step == max(steps):
            return out
        grads = grad(per_task(x_s, ys, fast).sum(), list(fast.values()))
        fast = {k: Tensor(p.numpy() - lr * g.numpy(), requires_grad=True)
                for (k, p), g in zip(fast.items(), grads)}


def validation(learner, tasks, config, iteration, log, model=None, cut=None):
    """Accuracy ± 95% interval on ``config.val_episodes`` held-out episodes (always the same
    ones: seed 999), logged; returns the metrics record's validation fields, or None when
    ``cut()`` said to give up (``run_episodes``). ``model``'s buffers (batch norm's running
    averages, which every episode updates) are put back afterwards, so the checkpoint does not
    depend on how often a run was validated (a run resumed with another ``--validate-every``
    ends where an uninterrupted one does)."""
    kept = snapshot(model)
    try:
        result = run_episodes(learner, tasks, config.val_episodes, 999, "val", cut=cut)
        if result is None:
            return None
        acc, half = result
    except FloatingPointError as err:   # adapted weights that diverge: said, not scored
        log(f"\nvalidation at iteration {iteration}: {err}")    # (as chance, it had been)
        return {"val_accuracy": float("nan"), "val_interval": float("nan")}
    finally:
        put_back(kept)
    log(f"\nvalidation at iteration {iteration}: accuracy {acc:.4f} ± {half:.4f} "
        f"(95% interval, {config.val_episodes} episodes, {config.val_ways}-way "
        f"{config.shots}-shot)")
    return {"val_accuracy": acc, "val_interval": half}
