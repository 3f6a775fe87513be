"""Meta-training and evaluation runs for the command line: checkpoints, resume, metrics.

A run is described by a plain dict of settings (what ``minimeta train`` parses); unset ones come
from each paper's defaults (``DEFAULTS``). Training writes, under ``out``: ``checkpoint.npz``
(atomically, every ``checkpoint_every`` seconds, at the end and on Ctrl-C) and ``metrics.jsonl``
(one JSON object per iteration, plus one per validation). The episodes of iteration i are drawn
from a generator seeded with (seed, i), so a resumed run sees exactly the episodes an
uninterrupted one would have.

Read next: ``../cli.py``.
"""
import json
import os
import time

import numpy as np

from .. import io, nn
from ..data import EpisodeSampler, SinusoidTasks, omniglot
from ..learners import (ANIL, MAML, MatchingNet, MetaSGD, ProtoNet, RelationNet, Reptile,
                        StackedTasks)
from ..optim import Adam
from .progress import Progress

METRIC = ("protonet", "matching", "relation")

# Paper defaults by learner family and (training) way count: Finn et al. 2017 (MAML),
# Nichol et al. 2018 (Reptile), Snell et al. 2017 (60-way training episodes, 5 queries per
# class, Adam 1e-3 halved every 2000 episodes), Vinyals et al. 2016, Sung et al. 2018 (19
# queries per class for 5-way, 10 for 20-way).
DEFAULTS = {
    "maml": {5: dict(inner_lr=0.4, inner_steps=1, test_steps=3, meta_batch=32, queries=15),
             20: dict(inner_lr=0.1, inner_steps=5, test_steps=5, meta_batch=16, queries=15)},
    "reptile": {5: dict(inner_lr=1e-3, inner_steps=5, test_steps=50, meta_batch=5,
                        outer_lr=1.0, queries=15)},
    "protonet": {60: dict(queries=5, lr_halve_every=2000)},
    "matching": {5: dict(queries=15), 20: dict(queries=5)},
    "relation": {5: dict(queries=19), 20: dict(queries=10)},
}
DEFAULT_WAYS = {"protonet": 60}


def family(learner):
    """The row of ``DEFAULTS`` a learner reads."""
    return {"fomaml": "maml", "metasgd": "maml", "anil": "maml"}.get(learner, learner)


def settings_with_defaults(s):
    """Fill unset (None) settings from the paper defaults for the learner and way count."""
    s = dict(s)
    if s.get("ways") is None:
        s["ways"] = 5 if s["dataset"] == "sinusoid" else DEFAULT_WAYS.get(s["learner"], 5)
    table = DEFAULTS[family(s["learner"])]
    base = dict(table.get(s["ways"], table[min(table)]))
    base.setdefault("meta_batch", 1)
    base.setdefault("outer_lr", 1e-3)
    base.setdefault("lr_halve_every", 0)
    if s["dataset"] == "sinusoid":
        if s["learner"] in METRIC:
            raise ValueError(f"{s['learner']} classifies images: use --dataset omniglot")
        base.update(inner_lr=0.01, inner_steps=1, test_steps=10, meta_batch=25, queries=10)
    base.update(val_ways=s["ways"] if s["learner"] not in METRIC else 5)
    return {k: (base.get(k) if v is None else v) for k, v in {**base, **s}.items()}


def build(s):
    """Model (the Module whose state is checkpointed) and learner for settings ``s``, on
    ``s['device']`` (default 'cpu')."""
    seed, device = s["seed"], s.get("device") or "cpu"
    if s["learner"] in METRIC:
        if s["learner"] == "relation":
            learner = RelationNet(nn.relation_embedding(seed=seed),
                                  nn.relation_module(seed=seed + 1))
        elif s["learner"] == "matching":
            learner = MatchingNet(nn.conv4(seed=seed), fce=bool(s.get("fce")), seed=seed)
        else:
            learner = ProtoNet(nn.conv4(seed=seed))
        return learner.net.to(device), learner
    if s["dataset"] == "sinusoid":
        model, loss = nn.mlp((1, 40, 40, 1), seed=seed, init_std=0.01), "mse"
    else:
        model, loss = nn.conv4(s["ways"], seed=seed), "cross_entropy"
    model.to(device)  # before the learner, so Meta-SGD's rates are made on the same device
    common = dict(loss=loss, test_steps=s["test_steps"])
    if s["learner"] == "reptile":
        learner = Reptile(model, s["inner_lr"], s["inner_steps"], s["outer_lr"],
                          inner_optimizer="adam", **common)
    else:
        cls = {"maml": MAML, "fomaml": MAML, "metasgd": MetaSGD, "anil": ANIL}[s["learner"]]
        extra = {"first_order": True} if s["learner"] == "fomaml" else {}
        extra["multi_step_loss"] = bool(s.get("multi_step_loss"))
        learner = cls(model, s["inner_lr"], s["inner_steps"], **common, **extra)
        # the MLP broadcasts over a leading task axis: the meta-batch runs as one stacked batch
        if s["dataset"] == "sinusoid":
            learner = StackedTasks(learner)
    return model, learner


def task_source(s, part, ways=None, shots=None, queries=None):
    """A function (seed sequence, n) → n tasks of the dataset's split ``part``."""
    ways, shots = ways or s["ways"], shots or s["shots"]
    queries = queries or s["queries"]
    if s["dataset"] == "sinusoid":
        return lambda seq, n: SinusoidTasks(seed=seq).sample(n, shots, queries)
    classes = omniglot.class_images(s["split"], part, val_size=s.get("val_size") or 0)
    return lambda seq, n: EpisodeSampler(classes, ways, shots, queries, seed=seq).batch(n)


def run_episodes(learner, tasks, episodes, seed, label="eval"):
    """Mean and 95% half-interval of the accuracy (or MSE) over ``episodes`` episodes."""
    values, bar = [], Progress(episodes, label)
    for i in range(episodes):
        loss, acc = learner.evaluate(tasks([seed, i], 1)[0])
        values.append(acc if acc is not None else loss)
        bar.update(i)
    v = np.asarray(values, dtype=np.float64)
    half = 1.96 * v.std(ddof=1) / np.sqrt(len(v)) if len(v) > 1 else 0.0
    return float(v.mean()), float(half)


def train(s, log=print):
    """Meta-train with settings ``s`` (resuming from ``out/checkpoint.npz`` if asked)."""
    os.makedirs(s["out"], exist_ok=True)
    ckpt_path = os.path.join(s["out"], "checkpoint.npz")
    model, learner = build(s)
    if s["learner"] == "reptile" and s.get("clip_norm"):
        raise ValueError("clip_norm: Reptile has no meta-gradient to clip (its update is "
                         "θ + ε·mean(φ − θ)); drop --clip-norm")
    opt = Adam(learner.meta_parameters(), lr=s["outer_lr"], clip_norm=s.get("clip_norm")) \
        if s["learner"] != "reptile" else None
    start, spent = 0, 0.0
    if s["resume"] and os.path.exists(ckpt_path):
        state = io.load(ckpt_path)
        model.load_state_dict(state["model"])
        if opt is not None:
            opt.load_state_dict(state["optim"])
        start, spent = int(state["iteration"]), float(state.get("seconds", 0.0))
        log(f"resumed from {ckpt_path} at iteration {start}")
    tasks = task_source(s, "train")
    validate = s.get("validate_every") and s["dataset"] == "omniglot" and s.get("val_size")
    val_tasks = task_source(s, "val", s["val_ways"]) if validate else None
    bar, began = Progress(s["iterations"], "train"), time.perf_counter() - spent
    last_save = time.perf_counter()
    metrics_file = open(os.path.join(s["out"], "metrics.jsonl"), "a")

    def save(iteration):
        state = {"model": model.state_dict(), "iteration": iteration,
                 "seconds": time.perf_counter() - began,
                 "settings": {k: v for k, v in s.items() if v is not None}}
        if opt is not None:
            state["optim"] = opt.state_dict()
        io.save(ckpt_path, state)

    it = start
    try:
        for it in range(start, s["iterations"]):
            if opt is not None and s["lr_halve_every"]:
                opt.lr = s["outer_lr"] * 0.5 ** (it // s["lr_halve_every"])
            metrics = learner.outer_step(tasks([s["seed"], it], s["meta_batch"]))
            if opt is not None:
                opt.step()
                opt.zero_grad()
            record = {"iteration": it + 1, "seconds": round(time.perf_counter() - began, 3)}
            if opt is not None and opt.last_norm is not None:  # only computed when clipping
                record["grad_norm"] = opt.last_norm
            if validate and ((it + 1) % s["validate_every"] == 0 or it + 1 == s["iterations"]):
                acc, half = run_episodes(learner, val_tasks, s["val_episodes"], 999, "val")
                record.update(val_accuracy=acc, val_interval=half)
                log(f"\nvalidation at iteration {it + 1}: accuracy {acc:.4f} ± {half:.4f} "
                    f"({s['val_episodes']} episodes, {s['val_ways']}-way {s['shots']}-shot)")
            metrics_file.write(json.dumps({**record, **metrics}) + "\n")
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


def evaluate(checkpoint, episodes=600, seed=12345, part="test", ways=None, shots=None,
             queries=None, report=None, device="cpu", log=print):
    """Mean query accuracy (or MSE) over ``episodes`` test episodes, with its 95% interval.

    ``ways``, ``shots`` and ``queries`` default to the training run's; metric learners may
    be tested on other way and shot counts (MAML's head fixes its way count). With ``report``,
    the result and its protocol are appended as one JSON line to that file.
    """
    state = io.load(checkpoint)
    s = {**state["settings"], "resume": False, "device": device}
    model, learner = build(s)
    model.load_state_dict(state["model"])
    ways, shots, queries = ways or s["ways"], shots or s["shots"], queries or s["queries"]
    if ways != s["ways"] and s["learner"] not in METRIC:
        raise ValueError(f"eval: {s['learner']} was trained {s['ways']}-way and its head has "
                         f"{s['ways']} outputs; it cannot be tested {ways}-way")
    mean, half = run_episodes(learner, task_source(s, part, ways, shots, queries), episodes,
                              seed)
    what = "accuracy" if s["dataset"] == "omniglot" else "MSE"
    steps = f"{s['test_steps']} test steps, α = {s['inner_lr']}, " \
        if s["learner"] not in METRIC else ""
    protocol = (f"{s['learner']} on {s['dataset']} ({s.get('split', '-')} split, {part} part),"
                f" {ways}-way {shots}-shot, {queries} queries per class, {steps}batch norm with "
                f"batch statistics, trained {state['iteration']} iterations "
                f"({s['ways']}-way {s['shots']}-shot) in {float(state.get('seconds', 0)):.0f} s")
    log(f"{what} {mean:.4f} ± {half:.4f} (95% interval, {episodes} episodes) | {protocol}")
    if report:
        row = {"learner": s["learner"], "fce": bool(s.get("fce")), what: mean,
               "interval": half, "episodes": episodes, "ways": ways, "shots": shots,
               "queries": queries, "part": part, "split": s.get("split"),
               "iterations": int(state["iteration"]),
               "train_seconds": float(state.get("seconds", 0.0)), "checkpoint": checkpoint,
               "train_ways": s["ways"], "train_shots": s["shots"], "protocol": protocol,
               "settings": {k: v for k, v in s.items() if v is not None}}
        with open(report, "a") as f:
            f.write(json.dumps(row) + "\n")
    return mean, half
