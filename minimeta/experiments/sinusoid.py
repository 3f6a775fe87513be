"""The sinusoid experiment of Finn et al. 2017 (section 5.1), reproducible end to end.

MAML: MLP 1-40-40-1 (ReLU), α = 0.01, one inner step, Adam 1e-3 on the meta-objective, 25 tasks
per meta-batch, K-shot support and K query points. Baseline ("pretrained"): the same network
trained by plain regression on the mixture of tasks (Adam 1e-3, the same number of iterations
and points), then fine-tuned like MAML at test time. Evaluation: held-out tasks, K support
points, SGD with α = 0.01 for 0..10 steps, MSE on 100 query points spread on [−5, 5].

Read next: ``../cli.py``.
"""
import numpy as np

from .. import functional as F
from .. import nn
from ..data import SinusoidTasks
from ..engine import grad, no_grad
from ..engine.tensor import Tensor
from ..learners import MAML, StackedTasks
from ..optim import Adam
from .progress import Progress

EVAL_STEPS = (0, 1, 5, 10)
INIT_STD = 0.01  # normal(0, 0.01) weights, as in the MAML reference code


def train_maml(iterations, shots=10, meta_batch=25, inner_lr=0.01, outer_lr=1e-3, seed=0,
               first_order=False, inner_steps=1, multi_step_loss=False, clip_norm=None,
               log=None):
    """Meta-train MAML; returns (model, learner, list of per-iteration mean query losses).

    ``clip_norm`` bounds the global norm of each meta-gradient (None: no clipping).

    The 25 tasks of a meta-batch go through the network as one stacked batch
    (``StackedTasks(MAML(...))``): the same meta-gradient as a loop over tasks, ten times
    faster.
    """
    model = nn.mlp((1, 40, 40, 1), seed=seed, init_std=INIT_STD)
    learner = StackedTasks(MAML(model, inner_lr, inner_steps, first_order=first_order,
                                loss="mse", multi_step_loss=multi_step_loss))
    opt = Adam(learner.meta_parameters(), lr=outer_lr, clip_norm=clip_norm)
    tasks = SinusoidTasks(seed=seed + 1)
    bar, curve = Progress(iterations, "maml"), []
    for it in range(iterations):
        metrics = learner.outer_step(tasks.sample(meta_batch, shots))
        opt.step()
        opt.zero_grad()
        curve.append(metrics["loss"])
        bar.update(it, loss=float(np.mean(curve[-100:])))
        if log is not None:
            log(it, metrics)
    return model, learner, curve


def train_baseline(iterations, shots=10, meta_batch=25, lr=1e-3, seed=0):
    """Pretrain on all tasks at once (the paper's baseline); returns (model, losses)."""
    model = nn.mlp((1, 40, 40, 1), seed=seed, init_std=INIT_STD)
    params = model.parameters()
    opt = Adam(params, lr=lr)
    tasks = SinusoidTasks(seed=seed + 2)
    bar, curve = Progress(iterations, "pretrained"), []
    for it in range(iterations):
        batch = tasks.sample(meta_batch, shots)
        x = Tensor(np.concatenate([t[0] for t in batch]))
        y = np.concatenate([t[1] for t in batch])
        loss = F.mse_loss(model(x), y)
        opt.step(grad(loss, params))
        curve.append(loss.item())
        bar.update(it, loss=float(np.mean(curve[-100:])))
    return model, curve


def fine_tune_curve(model, params, x_s, y_s, x_q, y_q, lr=0.01, steps=EVAL_STEPS):
    """Query MSE after each number of SGD steps in ``steps`` (plain SGD, mean support loss)."""
    fast = {k: Tensor(p.numpy(), requires_grad=True) for k, p in params.items()}
    out, xs, xq = {}, Tensor(x_s), Tensor(x_q)
    for step in range(max(steps) + 1):
        if step in steps:
            with no_grad():
                out[step] = F.mse_loss(model(xq, fast), y_q).item()
        if step == max(steps):
            break
        grads = grad(F.mse_loss(model(xs, fast), y_s), list(fast.values()))
        fast = {k: Tensor(p.numpy() - lr * g.numpy(), requires_grad=True)
                for (k, p), g in zip(fast.items(), grads)}
    return out


def evaluate(models, shots_list=(5, 10), n_tasks=600, seed=1234, queries=100, lr=0.01):
    """MSE after 0/1/5/10 SGD steps of size ``lr`` on the same held-out tasks for every model.

    Returns {(name, K): {steps: Stat}}: the mean with the half-width of its 95% interval, the
    median, and how many tasks diverged (MSE non-finite or above 10× its value before
    fine-tuning), which an unstable step size shows first.
    """
    results = {}
    for shots in shots_list:
        rng_tasks = SinusoidTasks(seed=seed + shots)
        amps, phases = rng_tasks.sample_functions(n_tasks)
        tasks = []
        for a, p in zip(amps, phases):
            x_s, y_s = rng_tasks.points(a, p, shots)
            x_q = np.linspace(-5, 5, queries, dtype=np.float32)[:, None]
            tasks.append((x_s, y_s, x_q, (a * np.sin(x_q - p)).astype(np.float32)))
        for name, model in models.items():
            params = model.named_parameters()
            per_task = [fine_tune_curve(model, params, *t, lr=lr) for t in tasks]
            start = np.array([c[0] for c in per_task])
            results[(name, shots)] = {s: stat([c[s] for c in per_task], start)
                                      for s in EVAL_STEPS}
    return results


def mean_ci(values):
    """Mean and the half-width of its 95% normal-approximation confidence interval."""
    v = np.asarray(values, dtype=np.float64)
    return float(v.mean()), float(1.96 * v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else 0.0


def stat(values, start):
    """(mean, 95% half-width, median, number of diverged tasks) of per-task MSEs."""
    v = np.asarray(values, dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        diverged = int(np.sum(~np.isfinite(v) | (v > 10 * np.asarray(start))))
        mean, half = mean_ci(v)
    return mean, half, float(np.median(np.where(np.isfinite(v), v, np.inf))), diverged


def format_table(results):
    """The results as a Markdown table: rows (model, K), columns 0/1/5/10 steps."""
    head = "| model | K | " + " | ".join(f"{s} steps" for s in EVAL_STEPS) + " |"
    lines = [head, "|" + "---|" * (len(EVAL_STEPS) + 2)]
    for (name, shots), row in results.items():
        cells = " | ".join(_cell(*row[s]) for s in EVAL_STEPS)
        lines.append(f"| {name} | {shots} | {cells} |")
    return "\n".join(lines)


def _cell(mean, half, median, diverged):
    text = f"{mean:.3f} ± {half:.3f}" if np.isfinite(mean) and mean < 1e3 else "diverged"
    if diverged:
        text += f" ({diverged} diverged; median {median:.3f})"
    return text


def plot_task(models, path, shots=5, seed=7, lr=0.01):
    """The paper's figure: one task, its K points, each model before and after 1 and 10 steps."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = SinusoidTasks(seed=seed)
    (a,), (p,) = tasks.sample_functions(1)
    x_s, y_s = tasks.points(a, p, shots)
    grid = np.linspace(-5, 5, 200, dtype=np.float32)[:, None]
    fig, axes = plt.subplots(1, len(models), figsize=(6 * len(models), 4), squeeze=False)
    for ax, (name, model) in zip(axes[0], models.items()):
        ax.plot(grid, a * np.sin(grid - p), "r", label="ground truth")
        ax.plot(x_s, y_s, "k^", label=f"{shots} used for gradient")
        fast = {k: Tensor(v.numpy(), requires_grad=True)
                for k, v in model.named_parameters().items()}
        for step in range(11):
            if step in (0, 1, 10):
                with no_grad():
                    ax.plot(grid, model(Tensor(grid), fast).numpy(), "--" if step == 0 else "-",
                            label=f"after {step} steps" if step else "pre-update")
            grads = grad(F.mse_loss(model(Tensor(x_s), fast), y_s), list(fast.values()))
            fast = {k: Tensor(v.numpy() - lr * g.numpy(), requires_grad=True)
                    for (k, v), g in zip(fast.items(), grads)}
        ax.set_title(name)
        ax.set_ylim(-5.5, 5.5)
        ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
