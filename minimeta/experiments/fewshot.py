"""Meta-training and evaluation runs for the command line: checkpoints, resume, metrics.

A run is described by a plain dict of settings (what ``minimeta train`` parses). Training writes,
under ``out``: ``checkpoint.npz`` (atomically, every ``checkpoint_every`` seconds, at the end
and on Ctrl-C) and ``metrics.jsonl`` (one JSON object per logged iteration). The episodes of
iteration i are drawn from a generator seeded with (seed, i), so a resumed run sees exactly the
episodes an uninterrupted one would have.

Read next: ``../cli.py``.
"""
import json
import os
import time

import numpy as np

from .. import io, nn
from ..data import EpisodeSampler, SinusoidTasks, omniglot
from ..learners import ANIL, MAML, MetaSGD, Reptile
from ..optim import Adam
from .progress import Progress

# Paper defaults (Finn et al. 2017; Nichol et al. 2018 for Reptile), by (learner, ways).
DEFAULTS = {
    "maml": {5: dict(inner_lr=0.4, inner_steps=1, test_steps=3, meta_batch=32),
             20: dict(inner_lr=0.1, inner_steps=5, test_steps=5, meta_batch=16)},
    "reptile": {5: dict(inner_lr=1e-3, inner_steps=5, test_steps=50, meta_batch=5,
                        outer_lr=1.0)},
}


def settings_with_defaults(s):
    """Fill unset (None) settings from the paper defaults for the learner and way count."""
    family = "reptile" if s["learner"] == "reptile" else "maml"
    table = DEFAULTS[family]
    base = dict(table.get(s["ways"], table[5]))
    base.setdefault("outer_lr", 1e-3)
    if s["dataset"] == "sinusoid":
        base.update(inner_lr=0.01, inner_steps=1, test_steps=10, meta_batch=25)
    return {k: (base.get(k) if v is None else v) for k, v in {**base, **s}.items()}


def build(s):
    """Model and learner for settings ``s``."""
    if s["dataset"] == "sinusoid":
        model, loss = nn.mlp((1, 40, 40, 1), seed=s["seed"], init_std=0.01), "mse"
    else:
        model, loss = nn.conv4(s["ways"], seed=s["seed"]), "cross_entropy"
    common = dict(loss=loss, test_steps=s["test_steps"])
    if s["learner"] == "reptile":
        learner = Reptile(model, s["inner_lr"], s["inner_steps"], s["outer_lr"],
                          inner_optimizer="adam", **common)
    else:
        cls = {"maml": MAML, "fomaml": MAML, "metasgd": MetaSGD, "anil": ANIL}[s["learner"]]
        extra = {"first_order": True} if s["learner"] == "fomaml" else {}
        learner = cls(model, s["inner_lr"], s["inner_steps"], **common, **extra)
    return model, learner


def task_source(s, part):
    """A function (seed sequence) → list of tasks for the dataset and split part."""
    if s["dataset"] == "sinusoid":
        return lambda seq, n: SinusoidTasks(seed=seq).sample(n, s["shots"], s["queries"])
    classes = omniglot.class_images(s["split"], part)
    return lambda seq, n: EpisodeSampler(classes, s["ways"], s["shots"], s["queries"],
                                         seed=seq).batch(n)


def train(s, log=print):
    """Meta-train with settings ``s`` (resuming from ``out/checkpoint.npz`` if asked)."""
    os.makedirs(s["out"], exist_ok=True)
    ckpt_path = os.path.join(s["out"], "checkpoint.npz")
    model, learner = build(s)
    opt = Adam(learner.meta_parameters(), lr=s["outer_lr"]) if s["learner"] != "reptile" \
        else None
    start = 0
    if s["resume"] and os.path.exists(ckpt_path):
        state = io.load(ckpt_path)
        model.load_state_dict(state["model"])
        if opt is not None:
            opt.load_state_dict(state["optim"])
        start = int(state["iteration"])
        log(f"resumed from {ckpt_path} at iteration {start}")
    tasks = task_source(s, "train")
    bar, last_save = Progress(s["iterations"], "train"), time.perf_counter()
    metrics_file = open(os.path.join(s["out"], "metrics.jsonl"), "a")

    def save(iteration):
        state = {"model": model.state_dict(), "iteration": iteration,
                 "settings": {k: v for k, v in s.items() if v is not None}}
        if opt is not None:
            state["optim"] = opt.state_dict()
        io.save(ckpt_path, state)

    it = start
    try:
        for it in range(start, s["iterations"]):
            metrics = learner.outer_step(tasks([s["seed"], it], s["meta_batch"]))
            if opt is not None:
                opt.step()
                opt.zero_grad()
            metrics_file.write(json.dumps({"iteration": it + 1, **metrics}) + "\n")
            bar.update(it, **metrics)
            if time.perf_counter() - last_save > s["checkpoint_every"]:
                save(it + 1)
                last_save = time.perf_counter()
        save(s["iterations"])
    except KeyboardInterrupt:
        save(it)
        log(f"\ninterrupted: checkpoint at iteration {it} saved to {ckpt_path} (--resume)")
        raise
    finally:
        metrics_file.close()
    return ckpt_path


def evaluate(checkpoint, episodes=600, seed=12345, part="test", log=print):
    """Mean query accuracy (or MSE) over ``episodes`` test episodes, with its 95% interval."""
    state = io.load(checkpoint)
    s = {**state["settings"], "resume": False}
    model, learner = build(s)
    model.load_state_dict(state["model"])
    tasks = task_source(s, part)
    values = []
    bar = Progress(episodes, "eval")
    for i in range(episodes):
        loss, acc = learner.evaluate(tasks([seed, i], 1)[0])
        values.append(acc if acc is not None else loss)
        bar.update(i)
    v = np.asarray(values, dtype=np.float64)
    half = 1.96 * v.std(ddof=1) / np.sqrt(len(v)) if len(v) > 1 else 0.0
    what = "accuracy" if s["dataset"] == "omniglot" else "MSE"
    log(f"{what} {v.mean():.4f} ± {half:.4f} (95% interval, {episodes} episodes) | "
        f"{s['learner']} on {s['dataset']} ({s.get('split', '-')} split, {part} part), "
        f"{s['ways']}-way {s['shots']}-shot, {s['queries']} queries, {s['test_steps']} test "
        f"steps, α = {s['inner_lr']}, batch-norm with batch statistics, trained "
        f"{state['iteration']} iterations")
    return float(v.mean()), float(half)
