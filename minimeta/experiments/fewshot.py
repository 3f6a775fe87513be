"""``minimeta eval``: a trained checkpoint tested on held-out episodes, with its protocol.

A checkpoint (``training.py``) holds its run's settings; ``evaluate`` rebuilds the learner
from them (``RunConfig.from_settings``: checkpoints written before ``RunConfig`` existed load
too), runs the test episodes (``evaluation.run_episodes``) and prints the mean accuracy (or
MSE) with its 95% interval and the protocol; ``report`` appends both as one JSON line, which
``examples/results_table.py`` reads.

Read next: ``minimeta/threads.py`` (the process policy: threads and malloc).
"""
import json

from .. import io
from .config import RunConfig
from .evaluation import run_episodes
from .registry import LEARNERS
from .registry import build as build_config
from .training import task_source

__all__ = ["evaluate", "run_episodes", "build", "settings_with_defaults"]


def settings_with_defaults(settings):
    """The complete ``RunConfig`` of a settings dict (the dict interface of earlier releases;
    ``RunConfig.from_settings``)."""
    return RunConfig.from_settings(settings)


def build(config):
    """Model and learner of a ``RunConfig`` or, as in earlier releases, of a settings dict."""
    return build_config(RunConfig.from_settings(config) if isinstance(config, dict) else config)


def evaluate(checkpoint, episodes=600, seed=12345, part="test", ways=None, shots=None,
             queries=None, report=None, device="cpu", log=print):
    """Mean query accuracy (or MSE) over ``episodes`` test episodes, with its 95% interval.

    ``ways``, ``shots`` and ``queries`` default to the training run's; metric learners may
    be tested on other way and shot counts (MAML's head fixes its way count). With ``report``,
    the result and its protocol are appended as one JSON line to that file.
    """
    state = io.load(checkpoint)
    config = RunConfig.from_settings(state["settings"], resume=False, device=device)
    model, learner = build(config)
    model.load_state_dict(state["model"])
    ways, shots = ways or config.ways, shots or config.shots
    queries = queries or config.queries
    metric = LEARNERS[config.learner].family == "metric"
    if ways != config.ways and not metric:
        raise ValueError(f"eval: {config.learner} was trained {config.ways}-way and its head "
                         f"has {config.ways} outputs; it cannot be tested {ways}-way")
    mean, half = run_episodes(learner, task_source(config, part, ways, shots, queries),
                              episodes, seed)
    what = "accuracy" if config.dataset == "omniglot" else "MSE"
    steps = "" if metric else f"{config.test_steps} test steps, α = {config.inner_lr}, "
    trained = (f"trained {state['iteration']} iterations ({config.ways}-way {config.shots}-shot)"
               f" in {float(state.get('seconds', 0)):.0f} s")
    protocol = (f"{config.learner} on {config.dataset} ({config.split} split, {part} part), "
                f"{ways}-way {shots}-shot, {queries} queries per class, {steps}batch norm with "
                f"batch statistics, {trained}")
    log(f"{what} {mean:.4f} ± {half:.4f} (95% interval, {episodes} episodes) | {protocol}")
    if report:
        row = {"learner": config.learner, "fce": config.fce, what: mean, "interval": half,
               "episodes": episodes, "ways": ways, "shots": shots, "queries": queries,
               "part": part, "split": config.split, "iterations": int(state["iteration"]),
               "train_seconds": float(state.get("seconds", 0.0)), "checkpoint": checkpoint,
               "train_ways": config.ways, "train_shots": config.shots, "protocol": protocol,
               "settings": config.settings()}
        with open(report, "a") as f:
            f.write(json.dumps(row) + "\n")
    return mean, half
