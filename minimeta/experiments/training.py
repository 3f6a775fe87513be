"""The training loop, one for every learner and both datasets: ``train(config)``.

``minimeta train``, the demo, the sinusoid experiment (``sinusoid.py``: MAML and its
pretrained baseline) and the examples all train through ``train``. Each iteration draws a
meta-batch, calls the learner's ``outer_step`` and the outer optimizer (Adam; none for
Reptile, which updates θ itself), halves the outer rate every ``lr_halve_every`` iterations,
and validates every ``validate_every`` iterations on held-out Omniglot characters.

With ``config.out`` set, the run writes under it: ``metrics.jsonl`` (one JSON object per
iteration: iteration, seconds, grad_norm when clipping, val_accuracy and val_interval when
validating, and the learner's metrics) and ``checkpoint.npz`` (atomically, every
``checkpoint_every`` seconds, at the end and on Ctrl-C: the model, the optimizer, the
iteration, the seconds spent and the settings). The episodes of iteration i are drawn from a
generator seeded with (seed, i), so a resumed run (``resume``) sees exactly the episodes an
uninterrupted one would have; the sinusoid experiment's single task stream (``stream_seed``)
is replayed up to the iteration it resumes at.

Read next: ``minimeta/experiments/evaluation.py`` (the 95% interval, test episodes, fine-tuning).
"""
import json
import os
import time
from collections import namedtuple

import numpy as np

from .. import io
from ..data import EpisodeSampler, SinusoidTasks, omniglot
from ..engine import detect_anomaly
from ..optim import Adam
from .evaluation import run_episodes
from .progress import Progress
from .registry import LEARNERS, build

Run = namedtuple("Run", "model learner curve checkpoint")


def task_source(config, part, ways=None, shots=None, queries=None):
    """A function (seed sequence, n) → n tasks of the dataset's split ``part``; ``ways``,
    ``shots`` and ``queries`` default to the config's."""
    ways, shots = ways or config.ways, shots or config.shots
    queries = queries or config.queries
    if config.dataset == "sinusoid":
        return lambda seq, n: SinusoidTasks(seed=seq).sample(n, shots, queries)
    classes = omniglot.class_images(config.split, part, val_size=config.val_size or 0)
    return lambda seq, n: EpisodeSampler(classes, ways, shots, queries, seed=seq).batch(n)


def batches(config, start=0):
    """A function iteration → that iteration's meta-batch, for iterations ``start``, ``start``
    + 1, … in order (the one-stream case depends on it)."""
    if config.stream_seed is None:
        tasks = task_source(config, "train")
        return lambda it: tasks([config.seed, it], config.meta_batch)
    stream = SinusoidTasks(seed=config.stream_seed)

    def sample(it=None):
        return stream.sample(config.meta_batch, config.shots, config.queries)

    for _ in range(start):  # a resumed run replays the tasks it has seen
        sample()
    return sample


def train(config, model=None, learner=None, label="train", smooth=1, log=print):
    """Train as ``config`` says; returns ``Run(model, learner, curve, checkpoint)``.

    ``model`` and ``learner`` come from the registry unless given (the sinusoid experiment's
    pretrained baseline brings its own learner). ``curve`` holds the loss of every iteration
    run here, ``checkpoint`` the checkpoint's path (None when ``config.out`` is None: then no
    file is written). The progress line, labelled ``label``, shows the latest metrics, its
    loss averaged over the last ``smooth`` iterations.
    """
    if learner is None:
        model, learner = build(config)
    checkpoint = None
    if config.out is not None:
        os.makedirs(config.out, exist_ok=True)
        checkpoint = os.path.join(config.out, "checkpoint.npz")
    opt = Adam(learner.meta_parameters(), lr=config.outer_lr, clip_norm=config.clip_norm) \
        if LEARNERS[config.learner].outer_optimizer else None
    start, spent = 0, 0.0
    if config.resume and checkpoint and os.path.exists(checkpoint):
        state = io.load(checkpoint)
        model.load_state_dict(state["model"])
        if opt is not None:
            opt.load_state_dict(state["optim"])
        start, spent = int(state["iteration"]), float(state.get("seconds", 0.0))
        log(f"resumed from {checkpoint} at iteration {start}")
    batch = batches(config, start)
    validate = config.validate_every and config.dataset == "omniglot" and config.val_size
    val_tasks = task_source(config, "val", config.val_ways) if validate else None
    bar, began = Progress(config.iterations, label), time.perf_counter() - spent
    last_save, curve = time.perf_counter(), []
    metrics_file = open(os.path.join(config.out, "metrics.jsonl"), "a") if checkpoint else None

    def save(iteration):
        if checkpoint is None:
            return
        state = {"model": model.state_dict(), "iteration": iteration,
                 "seconds": time.perf_counter() - began, "settings": config.settings()}
        if opt is not None:
            state["optim"] = opt.state_dict()
        io.save(checkpoint, state)

    it = start
    try:
        with detect_anomaly(config.detect_anomaly):  # off by default: then it costs nothing
            for it in range(start, config.iterations):
                if opt is not None and config.lr_halve_every:
                    opt.lr = config.outer_lr * 0.5 ** (it // config.lr_halve_every)
                metrics = learner.outer_step(batch(it))
                if opt is not None:
                    opt.step()
                    opt.zero_grad()
                record = {"iteration": it + 1, "seconds": round(time.perf_counter() - began, 3)}
                if opt is not None and opt.last_norm is not None:  # computed when clipping
                    record["grad_norm"] = opt.last_norm
                if validate and ((it + 1) % config.validate_every == 0
                                 or it + 1 == config.iterations):
                    record.update(validation(learner, val_tasks, config, it + 1, log))
                if metrics_file is not None:
                    metrics_file.write(json.dumps({**record, **metrics}) + "\n")
                curve.append(metrics["loss"])
                bar.update(it, **{**metrics, "loss": float(np.mean(curve[-smooth:]))})
                if checkpoint and time.perf_counter() - last_save > config.checkpoint_every:
                    save(it + 1)
                    last_save = time.perf_counter()
            save(config.iterations)
    except KeyboardInterrupt:
        if checkpoint:
            save(it)
            log(f"\ninterrupted: checkpoint at iteration {it} saved to {checkpoint} (--resume)")
        raise
    finally:
        if metrics_file is not None:
            metrics_file.close()
    return Run(model, learner, curve, checkpoint)


def validation(learner, tasks, config, iteration, log):
    """Accuracy ± 95% interval on ``config.val_episodes`` held-out episodes (always the same
    ones: seed 999), logged; returns the metrics record's validation fields."""
    acc, half = run_episodes(learner, tasks, config.val_episodes, 999, "val")
    log(f"\nvalidation at iteration {iteration}: accuracy {acc:.4f} ± {half:.4f} "
        f"({config.val_episodes} episodes, {config.val_ways}-way {config.shots}-shot)")
    return {"val_accuracy": acc, "val_interval": half}
