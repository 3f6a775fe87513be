"""Measuring a trained model: the 95% interval, test episodes, and fine-tuning curves.

Every interval the experiments print is ``mean_ci``'s: the mean ± 1.96·std/√n (the normal
approximation, sample standard deviation), over test episodes or held-out tasks.
``run_episodes`` evaluates a learner on n episodes (validation during training, ``minimeta
eval``); ``fine_tune`` is the one fine-tuning loop (plain SGD on a task's support loss, as the
sinusoid experiment adapts both MAML and the pretrained baseline at test time), and
``fine_tune_curve`` the query loss along it.

    >>> mean_ci([1.0, 2.0, 3.0])  # doctest: +ELLIPSIS
    (2.0, 1.1316...)
    >>> mean_ci([4.0])    # one value: no interval (not a certain 0)
    (4.0, nan)

Read next: ``minimeta/experiments/progress.py`` (a progress line).
"""
import numpy as np

from .. import functional as F
from ..engine import grad, no_grad
from ..engine.tensor import Tensor
from ..engine.workers import map_threads
from .progress import Progress


def mean_ci(values):
    """Mean and the half-width of its 95% normal-approximation confidence interval (NaN for
    a single value: one episode says nothing of the spread)."""
    v = np.asarray(values, dtype=np.float64)
    half = 1.96 * v.std(ddof=1) / np.sqrt(len(v)) if len(v) > 1 else float("nan")
    return float(v.mean()), float(half)


def run_episodes(learner, tasks, episodes, seed, label="eval", finite=True):
    """Mean and 95% half-interval of the accuracy (or MSE) over ``episodes`` episodes; episode
    i is ``tasks([seed, i], 1)[0]``. A query loss that is NaN or inf stops it
    (``FloatingPointError``; ``finite=False`` lets it through): an accuracy computed from
    such outputs means nothing (NaN logits score as class 0: chance, believably).
    Episodes are drawn here and evaluated on ``learner.workers`` threads, a few at a time;
    each episode's result does not depend on the threads."""
    values, bar = [], Progress(episodes, label)
    workers = getattr(learner, "workers", 1)
    block = 4 * workers
    for start in range(0, episodes, block):
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


def fine_tune(model, params, x_support, y_support, steps, lr=0.01, loss=F.mse_loss):
    """Plain SGD from ``params`` on the mean support loss: yields the weights (new leaf
    Tensors) after 0, 1, …, ``steps`` steps of size ``lr``."""
    fast = {k: Tensor(p.numpy(), requires_grad=True) for k, p in params.items()}
    xs = Tensor(x_support)
    for step in range(steps + 1):
        yield fast
        if step == steps:
            return
        grads = grad(loss(model(xs, fast), y_support), list(fast.values()))
        fast = {k: Tensor(p.numpy() - lr * g.numpy(), requires_grad=True)
                for (k, p), g in zip(fast.items(), grads)}


def fine_tune_curve(model, params, x_s, y_s, x_q, y_q, steps, lr=0.01, loss=F.mse_loss):
    """{k: query loss after k fine-tuning steps (``fine_tune``) for each k in ``steps``}."""
    out, xq = {}, Tensor(x_q)
    for step, fast in enumerate(fine_tune(model, params, x_s, y_s, max(steps), lr, loss)):
        if step in steps:
            with no_grad():
                out[step] = loss(model(xq, fast), y_q).item()
    return out
