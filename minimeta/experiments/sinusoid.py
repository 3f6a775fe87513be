"""The sinusoid experiment of Finn et al. 2017 (section 5.1), reproducible end to end.

MAML: MLP 1-40-40-1 (ReLU), α = 0.01, one inner step, Adam 1e-3 on the meta-objective, 25 tasks
per meta-batch, K-shot support and K query points. Baseline ("pretrained"): the same network
trained by plain regression on the mixture of tasks (Adam 1e-3, the same number of iterations
and points), then fine-tuned like MAML at test time. Evaluation: held-out tasks, K support
points, SGD with α = 0.01 for 0..10 steps, MSE on 100 query points spread on [−5, 5].

Both are trained by the loop of ``training.py`` from one ``RunConfig`` (``maml_config``; the
learner defaults are the sinusoid row of ``registry.py``), MAML on one stream of tasks seeded
with seed + 1 and the baseline on another seeded with seed + 2 (the numbers of
docs/RESULTS.md came from these streams). ``minimeta demo`` and ``examples/sinusoid_maml.py``
run this module.

Read next: ``minimeta/experiments/fewshot.py`` (evaluating a checkpoint: minimeta eval).
"""
import numbers

import numpy as np

from .. import functional as F
from ..data import SinusoidTasks
from ..engine import Traced, grad, no_grad
from ..engine.tensor import Tensor
from ..learners.base import Learner, accumulate
from .config import RunConfig
from .options import MOST
from .evaluation import Replayed, fine_tune, fine_tune_curve, fine_tune_curves, mean_ci
from .registry import model_for
from .training import train

EVAL_STEPS = (0, 1, 5, 10)


def maml_config(iterations, shots=10, seed=0, **settings):
    """The experiment's run: K = ``shots`` support and as many query points per task, no
    files written; ``settings`` sets any other field of ``RunConfig`` (``inner_lr``,
    ``inner_steps``, ``multi_step_loss``, ``clip_norm``, ``learner="fomaml"``, …). A seed
    whose streams (seed + 1, and the baseline's seed + 2) pass ``MOST`` is refused here: it
    had trained MAML, then failed naming ``stream_seed``."""
    if isinstance(seed, numbers.Integral) and not isinstance(seed, bool) and seed > MOST - 2:
        raise ValueError(f"--seed must be at most {MOST - 2} (the task streams of MAML and of "
                         f"the baseline are seeded with seed + 1 and seed + 2), got {seed}")
    return RunConfig(**{"learner": "maml", "dataset": "sinusoid", "iterations": iterations,
                        "shots": shots, "queries": shots, "seed": seed,
                        "stream_seed": seed + 1, "out": None, **settings})


def meta_train(config):
    """Meta-train as ``config`` says; returns (model, learner, per-iteration mean query loss).

    The 25 tasks of a meta-batch go through the network as one stacked batch
    (``StackedTasks(MAML(...))``, built by the registry): the same meta-gradient as a loop
    over tasks, ten times faster.
    """
    run = train(config, label=config.learner, smooth=100)
    return run.model, run.learner, run.curve


class Pretrained(Learner):
    """The baseline as a learner: its outer step is the gradient of plain regression on the
    support points of all the meta-batch's tasks at once."""

    def __init__(self, model):
        super().__init__(model, loss="mse")
        self._traced = Traced(self._loss_and_gradient)   # the same ops every iteration

    def outer_step(self, tasks):
        x, y = (np.concatenate([t[i] for t in tasks]) for i in (0, 1))
        loss, *grads = self._traced(*self.params.values(), x, y,
                                    key=(id(self.model), self.model.training))
        accumulate(self.meta_parameters(), grads)
        return {"loss": loss.item()}

    def _loss_and_gradient(self, *args):
        """(loss, its gradients for ``meta_parameters()``), replayed (``engine/replay.py``):
        every parameter is given (a frozen one too), so that the replay knows their arrays;
        the model reads them itself."""
        *params, x, y = args
        loss = self.loss(self.model(Tensor(x)), y)
        return (loss,) + grad(loss, [p for p in params if p.requires_grad])


def pretrain(config):
    """The pretrained baseline on MAML's budget (``config``: iterations, points, meta-batch
    size, outer learning rate; no clipping); returns (model, per-iteration losses)."""
    config = RunConfig(learner="maml", dataset="sinusoid", iterations=config.iterations,
                       shots=config.shots, queries=config.queries, seed=config.seed,
                       meta_batch=config.meta_batch, outer_lr=config.outer_lr,
                       stream_seed=config.seed + 2, out=None)
    model = model_for(config)
    return model, train(config, model, Pretrained(model), "pretrained", smooth=100).curve


def evaluate(models, shots_list=(5, 10), n_tasks=600, seed=1234, queries=100, lr=0.01):
    """MSE after 0/1/5/10 SGD steps of size ``lr`` on the same held-out tasks for every model.

    Returns {(name, K): {steps: Stat}}: the mean with the half-width of its 95% interval, the
    median, and how many tasks diverged (MSE non-finite or above 10× its value before
    fine-tuning), which an unstable step size shows first. A model of weights and biases
    fine-tunes the tasks stacked (``evaluation.fine_tune_curves``: the same numbers, an
    eighth of the time), another each task alone.
    """
    results = {}
    for shots in shots_list:
        tasks = held_out_tasks(shots, n_tasks, seed, queries)
        for name, model in models.items():
            params = model.named_parameters()
            if all(p.ndim in (1, 2) for p in params.values()):   # weights and biases: stacked
                curves = fine_tune_curves(model, params, tasks, EVAL_STEPS, lr)
            else:            # one model, 600 tasks: each fine-tuned alone, replayed
                replayed = Replayed(model, F.mse_loss, params)
                per_task = [fine_tune_curve(model, params, *t, steps=EVAL_STEPS, lr=lr,
                                            replayed=replayed) for t in tasks]
                curves = {s: [c[s] for c in per_task] for s in EVAL_STEPS}
            results[(name, shots)] = {s: stat(curves[s], curves[0]) for s in EVAL_STEPS}
    return results


def held_out_tasks(shots, n_tasks=600, seed=1234, queries=100):
    """The held-out tasks of the table: K = ``shots`` support points, ``queries`` query points
    spread on [−5, 5]; the same tasks for every model (``evaluate``, and the CNP's row)."""
    rng_tasks = SinusoidTasks(seed=seed + shots)
    amps, phases = rng_tasks.sample_functions(n_tasks)
    tasks = []
    for a, p in zip(amps, phases):
        x_s, y_s = rng_tasks.points(a, p, shots)
        x_q = np.linspace(-5, 5, queries, dtype=np.float32)[:, None]
        tasks.append((x_s, y_s, x_q, (a * np.sin(x_q - p)).astype(np.float32)))
    return tasks


def stat(values, start):
    """(mean, 95% half-width, median, number of diverged tasks) of per-task MSEs."""
    v = np.asarray(values, dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        diverged = int(np.sum(~np.isfinite(v) | (v > 10 * np.asarray(start))))
        mean, half = mean_ci(v)
    return mean, half, float(np.median(np.where(np.isfinite(v), v, np.inf))), diverged


def format_table(results):
    """The results as a Markdown table: rows (model, K), columns 0/1/5/10 steps."""
    head = "| model | K | " + " | ".join(f"{s} step{'s' * (s != 1)}" for s in EVAL_STEPS) + " |"
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


def plot_task(models, path, shots=5, seed=7, lr=0.01, trained=""):
    """The paper's figure: one task, its K points, each model before and after 1 and 10 steps
    of SGD at rate ``lr``; ``trained`` (how the models were trained, "K = 10, 30000
    iterations" say) joins each panel's title."""
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
        for step, fast in enumerate(fine_tune(model, model.named_parameters(), x_s, y_s, 10,
                                              lr)):
            if step in (0, 1, 10):
                with no_grad():
                    ax.plot(grid, model(Tensor(grid), fast).numpy(), "--" if step == 0 else "-",
                            label=f"after {step} step{'s' * (step != 1)}" if step
                            else "pre-update")
        ax.set_title(f"{name}{f' (trained {trained})' if trained else ''}: a test task, "
                     f"K = {shots}, α = {lr:g}", fontsize=10)
        ax.set_xlabel("x")
        ax.set_ylabel("y = A sin(x − φ)")
        ax.set_ylim(-5.5, 5.5)
        ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
