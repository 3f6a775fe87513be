"""``minimeta eval``: a trained checkpoint tested on held-out episodes, with its protocol.

A checkpoint (``training.py``) holds its run's settings; ``evaluate`` rebuilds the learner
from them (``RunConfig.from_settings``: checkpoints written before ``RunConfig`` existed load
too), runs the test episodes (``evaluation.run_episodes``) and prints the mean accuracy (or
MSE) with its 95% interval and the protocol; ``report`` appends both as one JSON line, which
``examples/results_table.py`` reads.

Read next: ``minimeta/threads.py`` (the process policy: threads and malloc).
"""
import contextlib
import dataclasses
import json
import numbers
import os

import numpy as np

from .. import io
from ..kernels.threads import split_threads
from ..nn import BatchNorm2d
from .config import RunConfig
from .options import DRAWINGS
from .episodes import task_source
from .evaluation import run_episodes
from .progress import first_use_note
from .registry import LEARNERS, no_queries, unread
from .registry import build as build_config
from .runfolder import CHECKPOINT, METRICS, checked

__all__ = ["evaluate", "run_episodes", "build", "settings_with_defaults"]
MAX_EPISODES = 1_000_000     # a 95% interval of ±0.1% needs about 10 000
MAX_POINTS = 100_000         # sinusoid support or query points per task


def settings_with_defaults(settings):
    """The complete ``RunConfig`` of a settings dict (the dict interface of earlier releases;
    ``RunConfig.from_settings``)."""
    return RunConfig.from_settings(settings)


def build(config):
    """Model and learner of a ``RunConfig`` or, as in earlier releases, of a settings dict."""
    return build_config(RunConfig.from_settings(config) if isinstance(config, dict) else config)


def evaluate(checkpoint, episodes=600, seed=12345, part="test", ways=None, shots=None,
             queries=None, report=None, device="cpu", log=print, test_steps=None):
    """Mean query accuracy (or MSE) over ``episodes`` test episodes, with its 95% interval.

    ``ways``, ``shots`` and ``queries`` default to the training run's; metric learners may
    be tested on other way and shot counts (MAML's head fixes its way count). ``test_steps``
    (default the run's) tests an optimization learner after that many inner steps (the MAML
    paper's sinusoid model after 1 and after 10; it had meant editing the checkpoint's
    settings). With ``report``,
    the result and its protocol are appended as one JSON line to that file.

    Mistakes are one-line ``ValueError``s raised before any episode runs: a report path that
    cannot be written, a file that is not a checkpoint of a run, non-finite weights, weights
    of another architecture, counts out of range. A query loss that is not finite stops the
    evaluation (``FloatingPointError``) instead of averaging it.
    """
    _check_counts(episodes, ways, shots, queries, seed, test_steps)
    with _report_file(report) as out:  # opened (or refused) before anything else runs
        state = io.load(checkpoint, require=("model", "settings", "iteration"))
        config = _config(state, checkpoint, device)
        if test_steps is not None:
            if LEARNERS[config.learner].family != "optimization":
                raise ValueError(f"eval: --test-steps applies to the learners with an inner "
                                 f"loop (the MAML family, Reptile), not {config.learner}")
            config = dataclasses.replace(config, test_steps=test_steps)
        _check_finite(state, checkpoint)
        model, learner = build(config)
        learner.workers = split_threads()  # every core, or what configure(threads=) set
        try:
            model.load_state_dict(state["model"])
        except ValueError as err:  # a state of another architecture (StateDictError)
            raise ValueError(f"eval: {checkpoint} does not fit the {config.learner} its "
                             f"settings describe: {err}") from None
        if state.get("learner"):  # learned learner state (Meta-SGD's inner rates)
            learner.load_state_dict(state["learner"])
        ways, shots, queries = _episode_shape(config, part, ways, shots, queries)
        what = "accuracy" if config.dataset == "omniglot" else "MSE"
        first_use_note(model, device, log)    # a pause of half a minute, once
        mean, half = run_episodes(learner, task_source(config, part, ways, shots, queries),
                                  episodes, seed, finite=True)
        family = LEARNERS[config.learner].family
        alpha = "learned step sizes" if config.learner == "metasgd" else \
            f"α = {config.inner_lr}"
        steps = f"{config.test_steps} test steps, {alpha}, " if family == "optimization" else ""
        norm = "batch norm with batch statistics, " if any(
            isinstance(m, BatchNorm2d) for m in model._modules()) else ""
        trained = (f"trained {state['iteration']} iterations ({config.ways}-way "
                   f"{config.shots}-shot) in {state['seconds']:.0f} s")
        learner_name = config.learner + (" with full context embeddings" if config.fce else "")
        protocol = (f"{learner_name} on {config.dataset} ({config.split} split, {part} "
                    f"part), {ways}-way {shots}-shot, {queries} queries per class, {steps}{norm}"
                    f"{trained}")
        if config.learner == "mann":   # no queries read: each step of the sequence scored
            unread = f" ({queries} more drawn per class, unread: they move the draw)" \
                if queries else ""
            protocol = protocol.replace(f"{shots}-shot, {queries} queries per class",
                                        f"sequences of {shots} drawings per class, every step "
                                        f"scored{unread}")
        if config.dataset == "sinusoid":
            protocol = (f"{config.learner} on sinusoids, K = {shots} support points, {queries} "
                        f"query points, {steps}trained {state['iteration']} iterations (K = "
                        f"{config.shots}) in {state['seconds']:.0f} s")
        said = (f"{what} {mean:.4f} ± {half:.4f} (95% interval, {episodes} episodes) | "
                f"{protocol}")
        if out is not None:     # first: the result is kept even if stdout has gone away
            row = {"learner": config.learner, "fce": config.fce, what: mean, "interval": half,
                   "episodes": episodes, "ways": ways, "shots": shots, "queries": queries,
                   "part": part, "split": config.split, "iterations": state["iteration"],
                   "wall_seconds": state["seconds"],   # validation and checkpoints included
                   "train_seconds": state.get("train_seconds", state["seconds"]),
                   "checkpoint": checkpoint,
                   "train_ways": config.ways, "train_shots": config.shots,
                   "protocol": protocol, "settings": config.settings()}
            try:
                out.write(json.dumps(row) + "\n")
            except OSError:     # a full disk: the result is said, not lost with the report
                log(said)
                raise
        log(said)
    return mean, half


def _check_counts(episodes, ways, shots, queries, seed=0, test_steps=None):
    """The counts asked for (``None``: the training run's) and the seed, checked before
    anything runs (a bad seed had failed in NumPy, after the model was built)."""
    for name, value, least, most in (("episodes", episodes, 2, MAX_EPISODES),
                                     ("seed", seed, 0, None),
                                     ("ways", ways, 1, None), ("shots", shots, 1, None),
                                     ("queries", queries, 0, None),
                                     ("test-steps", test_steps, 0, None)):
        if value is None and name != "episodes":
            continue
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise ValueError(f"eval: --{name} must be an integer, got {value!r}")
        if value < least or (most is not None and value > most):
            bound = f"between {least} and {most}" if most else f"at least {least}"
            raise ValueError(f"eval: --{name} must be {bound}, got {value}")


def _config(state, checkpoint, device):
    """The ``RunConfig`` of a checkpoint's settings; ``ValueError`` naming a bad checkpoint.
    Fills in ``state['seconds']`` (0 when absent) and checks ``state['iteration']``."""
    settings = checked(state, checkpoint, "eval")["settings"]
    try:
        return RunConfig.from_settings(settings, resume=False, device=device)
    except (ValueError, TypeError) as err:
        raise ValueError(f"eval: {checkpoint} holds settings minimeta cannot use "
                         f"({err})") from None


def _arrays(tree, prefix=""):
    """(name, array) for every array in a nested dict of a checkpoint."""
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield from _arrays(value, f"{prefix}/{key}" if prefix else str(key))
    elif isinstance(tree, np.ndarray):
        yield prefix, tree


def _check_finite(state, checkpoint):
    """Refuse weights holding a NaN or an inf: their evaluation would print a number."""
    trained = {"model": state["model"], "learner": state.get("learner")}
    bad = [name for name, a in _arrays(trained)
           if a.dtype.kind in "fc" and not np.isfinite(a).all()]
    if bad:
        more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
        raise ValueError(f"eval: {checkpoint} holds non-finite weights (NaN or inf in "
                         f"{', '.join(bad[:3])}{more}): its training diverged; evaluate an "
                         "earlier checkpoint, or train again with a smaller --outer-lr or "
                         "with --clip-norm")


def _episode_shape(config, part, ways, shots, queries):
    """Ways, shots and queries of the test episodes (default: the training run's), checked
    against what the learner and the data set allow."""
    metric = LEARNERS[config.learner].family == "metric"
    if config.dataset == "sinusoid" and ways is not None:   # --ways 5 too: it means nothing
        raise ValueError("eval: --ways does not apply to a sinusoid run: regression has no "
                         "classes")
    ways, shots = ways or config.ways, shots or config.shots
    queries = config.queries if queries is None else queries
    no_queries(config.learner, queries, "eval: ")
    if config.dataset == "sinusoid":
        if part != "test":
            raise ValueError(f"eval: --part {part} does not apply to sinusoid regression (its "
                             "tasks are drawn afresh, not split into parts)")
        for name, value in (("shots", shots), ("queries", queries)):
            if value > MAX_POINTS:
                raise ValueError(f"eval: --{name} must be at most {MAX_POINTS} points per "
                                 f"sinusoid task, got {value}")
        return ways, shots, queries
    if ways < 2:          # one class: every answer right, accuracy 1 measuring nothing
        raise ValueError(f"eval: --ways must be at least 2 to classify, got {ways}")
    if ways != config.ways and not metric:
        raise ValueError(f"eval: {config.learner} was trained {config.ways}-way and its head "
                         f"has {config.ways} outputs; it cannot be tested {ways}-way")
    if config.learner == "snail" and shots > config.shots:
        raise ValueError(f"eval: snail was trained with up to {config.shots} shots, its "
                         f"sequences {config.ways * config.shots + 1} steps long; it cannot be "
                         f"tested {shots}-shot")
    if shots + queries > DRAWINGS:
        raise ValueError(f"eval: --shots + --queries = {shots} + {queries} must be at most "
                         f"{DRAWINGS}, the drawings of each Omniglot character"
                         f"{unread(config.learner, queries)}")
    if part == "val" and config.split == "vinyals" and not config.val_size:
        raise ValueError("eval: the run held out no validation characters (--val-size 0): "
                         "use --part test (or train)")
    return ways, shots, queries


@contextlib.contextmanager
def _report_file(path):
    """The report ``path`` opened to append (None: no report) as a ``Report``, refused before
    the evaluation if it cannot be; a report file created here and left empty is removed
    again if the evaluation fails."""
    if path is None:
        yield None
        return
    if not path:
        raise ValueError("eval: --report needs a file path, got ''")
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise ValueError(f"eval: --report {path} is a folder; give a file path (the result "
                         "is appended to it as one JSON line)")
    run_log = os.path.basename(path) == METRICS and os.path.exists(
        os.path.join(os.path.dirname(path), CHECKPOINT))
    if path.endswith(".npz") or run_log:   # (a line there had broken the run's --resume)
        what = "a run's training log" if run_log else "a checkpoint's name (.npz)"
        raise ValueError(f"eval: --report {path} is {what}; give a file of its own (the "
                         "result is appended to it as one JSON line)")
    if not os.path.isdir(folder):
        what = "is a file, not a folder" if os.path.exists(folder) else "does not exist"
        raise ValueError(f"eval: --report {path}: {folder} {what}; give a file path in an "
                         "existing folder")
    existed = os.path.exists(path)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    except OSError as err:
        raise ValueError(f"eval: cannot write the report {path} ({err.strerror}); give a "
                         "path you can write to") from None
    try:
        yield Report(fd, path)
    except BaseException:
        with contextlib.suppress(OSError):   # only an empty file of ours: others may append
            if not existed and os.path.getsize(path) == 0:
                os.remove(path)
        raise
    finally:
        os.close(fd)


class Report:
    """A report file, appended to a line at a time (``O_APPEND``: evaluations running side by
    side, as ``examples/omniglot_results.sh`` runs them, each add whole lines). A line cut
    short (a full disk, a file size limit) is taken back if nothing was appended after it:
    a half line had glued the next result onto it, and the file no longer parsed."""

    def __init__(self, fd, path=None):
        self.fd, self.path = fd, path

    def write(self, line):
        data, done = line.encode(), 0
        try:
            while done < len(data):
                done += os.write(self.fd, data[done:])
        except OSError as err:
            end = os.lseek(self.fd, 0, os.SEEK_CUR)    # where our bytes end (O_APPEND)
            if done and os.fstat(self.fd).st_size == end:
                os.ftruncate(self.fd, end - done)
            if not err.filename:    # a full disk names no file: the report's, not a bare line
                err.filename = self.path
            raise
