"""The training loop, one for every learner and both datasets: ``train(config)``.

``minimeta train``, the demo, the sinusoid experiment (``sinusoid.py``: MAML and its
pretrained baseline) and the examples all train through ``train``. Each iteration draws a
meta-batch, calls the learner's ``outer_step`` and the outer optimizer (Adam; none for
Reptile, which updates θ itself), halves the outer rate every ``lr_halve_every`` iterations,
and validates every ``validate_every`` iterations on held-out Omniglot characters.

With ``config.out`` set, the run's folder holds the run, and its files agree:

- ``checkpoint.npz`` (``io.save``: atomic): ``model``, ``optim`` (the outer optimizer's state,
  when there is one), ``learner`` (what the learner trains besides the model:
  ``learner.state_dict()``, Meta-SGD's inner rates under ``learner/rates/<parameter>``; {} for
  the others), ``iteration`` (the iterations done), ``seconds``, ``train_seconds`` (the
  clock of ``--minutes``: sampling to optimizer step only), ``settings`` and, after a stop
  signal cut a validation short, ``pending`` (that iteration's metrics line, as JSON). It is
  written when a fresh run starts (iteration 0), every ``checkpoint_every`` seconds, at the
  end and on Ctrl-C, SIGTERM (``kill``, ``docker stop``, a scheduler's time limit) or SIGHUP
  (the terminal or the ssh connection closed), each of which lets the iteration in hand
  finish, then stops the run (``stopping.py``): only whole iterations are saved (a second
  signal that cuts an outer step short leaves no trace of it: ``all_or_nothing``).
- ``metrics.jsonl``: one JSON object per iteration (iteration, seconds, train_seconds,
  grad_norm when clipping, val_accuracy and val_interval when validating, and the learner's
  metrics; a NaN or an inf is written as null), flushed to disk before every checkpoint, so it
  reaches the checkpoint's iteration, or the one before when the checkpoint holds that line
  (``pending``: ``--resume`` validates and writes it first). A run's last iteration is always
  validated, so a run extended by ``--resume`` keeps that line's validation fields.
- The random state: the episodes of iteration i are drawn from a generator seeded with
  (seed, i), and nothing else is random while training, so the settings and the iteration are
  the whole of it; the sinusoid experiment's single task stream (``stream_seed``) skips the
  iterations done (``SinusoidTasks.skip``). One exception to "bit for bit": numba's parallel
  kernels are built with fastmath, and code it has just compiled may sum in another order
  than the same code loaded from its cache (numba issue 10617), so the first process after
  the kernels were compiled can differ from later ones in the last bit of a float64 sum (seen
  in batch norm's running variances, ~1e-15; the float32 weights and the metrics matched).
  ``--threads`` changes no bit: the tasks' gradients are added in task order whatever the
  workers, and a kernel's sums are cut by the data, not the core count
  (``kernels.threads.ordered_sum``), while BLAS runs on one thread (``threads.configure``, which
  the command line calls; from Python without it, BLAS's own threads may round SNAIL's
  gradients otherwise). Another machine's BLAS may round otherwise too.

Every run refuses a folder another run is writing (``io.folder_lock``, held while it trains). A
fresh run refuses a folder holding a run unless ``overwrite`` (which deletes it); ``resume``
refuses a folder without a checkpoint or a config that changes a setting the checkpoint fixes
(``RunConfig.check_resume``), cuts ``metrics.jsonl`` back to the checkpoint's iteration and goes on
exactly as the uninterrupted run would have; both delete the ``.tmp-*.npz`` a killed write left. A
NaN or inf in the loss, the meta-gradient or the weights stops the run (``NonFiniteError``, naming
the iteration) before it reaches a checkpoint; so do an ``AnomalyError`` (``detect_anomaly``) and
running out of memory (a ``MemoryError``, or a GPU library's error that says so, raised as one),
after saving the whole iterations.

Read next: ``minimeta/experiments/runfolder.py`` (a run's folder: what may start there, and resume).
"""
import contextlib
import json
import os
import time
from collections import namedtuple

import numpy as np

from .. import io
from ..engine import AnomalyError, detect_anomaly
from ..engine.backend import array_module, out_of_memory
from ..engine.tensor import Tensor
from ..kernels.threads import cores
from ..optim import Adam
from .evaluation import validation
from .progress import Progress, first_use_note, tolerant
from .episodes import batches, fits_published, task_source
from .registry import LEARNERS, build, fits_memory, own
from .runfolder import (CHECKPOINT, METRICS, Home, first_missing, open_run, prepare_folder,
                        unmake)
from .stopping import GracefulStop, Terminated, updating

Run = namedtuple("Run", "model learner curve checkpoint")


class NonFiniteError(FloatingPointError):
    """A NaN or an inf in training: the run stopped, its last finite checkpoint kept."""


def train(config, model=None, learner=None, label="train", smooth=1, log=print,
          resume_hint="--resume", announce=None):
    """Train as ``config`` says; returns ``Run(model, learner, curve, checkpoint)``.

    ``model`` and ``learner`` come from the registry unless given (the sinusoid experiment's
    pretrained baseline brings its own learner). ``curve`` holds the loss of every iteration run
    here, ``checkpoint`` the checkpoint's path (None when ``config.out`` is None: then no file
    is written). The progress line, labelled ``label``, shows the latest metrics, its loss
    averaged over the last ``smooth`` iterations; a stop (Ctrl-C, a signal) says where the
    checkpoint is and how the run goes on (``resume_hint``). A folder that may not be used as
    asked, or a run larger than the memory available (``registry.fits_memory``), is a
    ``ValueError`` before anything is built or written; a NaN or an inf stops the run with a
    ``NonFiniteError``. ``announce``, a line (the command line's settings), is logged once every
    check has passed, before the first write: a refused run prints its one-line error only.
    """
    fits_memory(config)       # from the settings alone: before a checkpoint is read
    made = first_missing(config.out)   # the folders this run makes, removed if refused
    # one run at a time writes a folder; the lock first, then the checks: checked before it,
    # a run started at once on the same --out could pass them and fill the folder meanwhile
    with io.folder_lock(config.out):
        try:
            state = open_run(config)   # the checks, before anything is written
        except BaseException:
            unmake(config.out, made)   # (the lock made the folder)
            raise
        return _train(config, state, model, learner, label, smooth, log, made,
                      resume_hint, announce)


def _train(config, state, model, learner, label, smooth, log, made, resume_hint, announce):
    """``train``, its folder checked and held (``made``: the outermost folder created for
    this run, ``runfolder.first_missing``)."""
    log = tolerant(log)  # a terminal that hung up (SIGHUP) must not stop the run by itself
    try:     # what can refuse the run (the data, the episodes) comes before the folder is used
        if learner is None:
            if model is not None:    # it had been replaced by the registry's, silently
                raise ValueError("train: a model without its learner; give the learner built "
                                 "on it too (learner=...), or neither")
            model, learner = build(config)
        elif model is None:
            raise ValueError("train: a learner without its model; give the model whose weights "
                             "it trains too (model=...): the checkpoint saves the model's")
        own(model, learner, saved=config.out is not None)
        learner.workers = config.threads or cores()  # tasks on worker threads (workers.py)
        opt = Adam(learner.meta_parameters(), lr=config.outer_lr,
                   clip_norm=config.clip_norm) if LEARNERS[config.learner].outer_optimizer \
            else None
        checkpoint = None if config.out is None else os.path.join(config.out, CHECKPOINT)
        start, spent, trained = 0, 0.0, 0.0  # trained: training time, the budget's clock
        if state is not None:
            restore(state, model, learner, opt, checkpoint, config.learner)
            start, spent = int(state["iteration"]), float(state.get("seconds", 0.0))
            trained = float(state.get("train_seconds", spent))
        validate = config.validate_every and config.dataset == "omniglot" and config.val_size
        if validate:     # its size before the training part is loaded (which checks its own)
            fits_published(config, "train")
            fits_published(config, "val", config.val_ways)
        batch = batches(config, start)   # the episodes' checks, before the folder is touched
        val_tasks = task_source(config, "val", config.val_ways) if validate else None
    except BaseException:
        unmake(config.out, made)   # a run refused before it wrote anything leaves no folder
        raise
    first = int(state.get("log_from", 1)) if state is not None else 1
    # a line the checkpoint holds (its validation cut short by a stop signal) comes first
    pending = json.loads(state["pending"]) if state is not None and "pending" in state else None
    log_from = prepare_folder(config, start - bool(pending), first) if checkpoint else 1
    if announce is not None:   # (prepare_folder's last check passed)
        log(announce)
    if state is not None:
        log(f"resumed from {checkpoint} at iteration {start}" + ("" if log_from == first else
            f"; {METRICS} was not there: a new one starts at iteration {log_from}"))
    budget = None if config.minutes is None else 60.0 * config.minutes
    began = time.perf_counter() - spent
    metrics_file = open(os.path.join(config.out, METRICS), "a") if checkpoint else None
    home = Home(config.out) if checkpoint else None
    curve = []
    # done: the iteration the weights are at; sound: they came from finite steps only; busy:
    # an iteration's update is under way; pending: its metrics line, until written
    run = {"done": start, "saved": start, "sound": True, "busy": False, "trained": trained,
           "pending": pending, "unsaved": bool(checkpoint) and state is None}
    bar = Progress(config.iterations, label, first=start, budget=budget,
                   spent=lambda: run["trained"])   # the budget's clock: training time only
    first_use_note(model, config.device, log)  # a pause of half a minute, once

    def save(iteration):
        if checkpoint is None:
            return
        home.check(iteration, run["saved"])  # not a new folder at the old path: stop
        metrics_file.flush()  # the log reaches the checkpoint's iteration before it exists
        os.fsync(metrics_file.fileno())
        state = {"model": model.state_dict(), "iteration": iteration,
                 "seconds": time.perf_counter() - began, "settings": config.settings(),
                 "learner": learner_state(learner), "train_seconds": run["trained"],
                 "log_from": log_from}      # the first iteration metrics.jsonl holds
        if opt is not None:
            state["optim"] = opt.state_dict()
        if run["pending"] is not None:   # the iteration's line, not yet in metrics.jsonl
            state["pending"] = json.dumps(run["pending"])
        io.save(checkpoint, state)
        run["saved"], run["last"] = iteration, time.perf_counter()

    def stop(it, what):
        """Save the weights if they are sound, and raise ``NonFiniteError``."""
        if run["sound"] and run["saved"] != run["done"]:
            save(run["done"])
        kept = (f"{checkpoint} holds iteration {run['saved']}, the last finite one; resume "
                "from it" if checkpoint else "nothing saved (no run folder); rerun")
        raise NonFiniteError(f"iteration {it + 1}: {what}; training stopped: {kept} with "
                             "--detect-anomaly to find the op that made it")

    def write_line(signals):
        """Write the pending metrics line, validating first when it is due; a stop signal
        cuts the validation short (raising here), and the line waits in the checkpoint for
        the resumed run, which validates the same weights (found by probing, 2026-12-01: a
        stop had waited for the whole validation, up to 35 s, and a second signal then, or
        docker's SIGKILL after its 10 s, lost every iteration since the last checkpoint)."""
        line = run["pending"]
        values = {}
        if line["validate"] and validate:   # (a resumed run may have turned validation off)
            values = validation(learner, val_tasks, config, line["record"]["iteration"], log,
                                model, cut=lambda: bool(signals.caught))
            if values is None:
                signals.check()
        if metrics_file is not None:
            metrics_file.write(json.dumps(finite_or_null(
                {**line["record"], **values, **line["metrics"]}), allow_nan=False) + "\n")
            metrics_file.flush()
        run["pending"] = None

    try:
        with detect_anomaly(config.detect_anomaly), GracefulStop() as signals:
            if run["unsaved"]:    # (a stop signal now waits for it: a second one cuts it short)
                first_save(save, metrics_file, config.out, made)  # metrics: a checkpoint too
                run["unsaved"] = False
            run["last"] = time.perf_counter()
            if run["pending"] is not None:
                write_line(signals)
            for it in range(start, config.iterations):
                signals.check()  # Ctrl-C, SIGTERM, SIGHUP: stop here, between iterations
                if budget is not None and run["trained"] >= budget:
                    log(f"\ntraining budget of {config.minutes:g} minutes reached at "
                        f"iteration {it}")
                    break
                tick = time.perf_counter()  # the budget's clock: sampling to optimizer step
                if opt is not None and config.lr_halve_every:
                    opt.lr = config.outer_lr * 0.5 ** (it // config.lr_halve_every)
                tasks = batch(it)
                if opt is not None:  # the meta-gradient, into .grad; cut short: no trace
                    metrics = learner.outer_step(tasks)       # (learners: all_or_nothing)
                with updating(run):  # the weights move, the iteration's line is made
                    if opt is None:  # the learner updates θ in its outer step (Reptile)
                        metrics = learner.outer_step(tasks)
                    problem = step(it, metrics, learner, opt, run)
                    run["trained"] += time.perf_counter() - tick
                    record = {"iteration": it + 1,
                              "seconds": round(time.perf_counter() - began, 3),
                              "train_seconds": round(run["trained"], 3)}
                    if opt is not None and opt.last_norm is not None and \
                            run["done"] == it + 1:  # the norm of this step, when clipping
                        record["grad_norm"] = opt.last_norm
                    due = problem is None and validate and (
                        (it + 1) % config.validate_every == 0 or it + 1 == config.iterations)
                    run["pending"] = {"record": record, "validate": bool(due),
                                      "metrics": metrics}
                write_line(signals)   # the weights are whole from here: a stop saves them
                if problem is not None:
                    stop(it, problem)
                curve.append(metrics["loss"])
                bar.update(it, **{**metrics, "loss": float(np.mean(curve[-smooth:]))})
                if checkpoint and time.perf_counter() - run["last"] > config.checkpoint_every:
                    save(run["done"])
            save(run["done"])
    except KeyboardInterrupt as err:  # Ctrl-C, or SIGTERM or SIGHUP (Terminated)
        if run["unsaved"]:    # cut short in the first save, which left the folder as it was
            log(f"\n{'stopped by ' + str(err) if isinstance(err, Terminated) else 'interrupted'}"
                f" before the run's first checkpoint: nothing saved, {config.out} as it was")
        elif checkpoint:
            if run["sound"] and not run["busy"]:
                save(run["done"])
            how = f"stopped by {err}" if isinstance(err, Terminated) else "interrupted"
            then = "" if run["pending"] is None or not run["pending"]["validate"] else \
                "; its validation, cut short, runs first"
            log(f"\n{how}: checkpoint at iteration {run['saved']} in {checkpoint} "
                f"({resume_hint}{then})")
        raise
    except Exception as err:  # --detect-anomaly, or out of memory (a GPU's too): the whole
        if not checkpoint or not (isinstance(err, AnomalyError) or out_of_memory(err)):
            raise            # iterations before it are saved, as a non-finite stop saves them
        if run["sound"] and not (run["busy"] or run["unsaved"]) and run["saved"] != run["done"]:
            save(run["done"])
        # (not type(err): NumPy's _ArrayMemoryError takes the shape and dtype, not a message)
        kind = AnomalyError if isinstance(err, AnomalyError) else MemoryError
        raise kind(f"{str(err) or 'an allocation failed'}; training stopped: {checkpoint} holds "
                   f"iteration {run['saved']}, the last whole one") from err
    finally:
        if metrics_file is not None:
            metrics_file.close()
    return Run(model, learner, curve, checkpoint)


def first_save(save, metrics_file, folder, made):
    """``save(0)``; if it fails (a full disk), the fresh run's folder is left as it was found:
    no empty ``metrics.jsonl`` that a rerun would take for a run with no checkpoint."""
    try:
        save(0)
    except BaseException as err:
        metrics_file.close()
        path = metrics_file.name
        with contextlib.suppress(OSError):
            if os.path.getsize(path) == 0:
                os.remove(path)
                unmake(folder, made)
        if isinstance(err, OSError):
            err.nothing_saved = True     # minimeta train says so, not "--resume"
        raise


def step(it, metrics, learner, opt, run):
    """The outer optimizer's step (when there is one) if the loss and the meta-gradient are
    finite; returns what is not finite, or None. Sets ``run["done"]`` when the weights have
    moved, and ``run["sound"]`` to False when they moved on a non-finite step."""
    problem = None
    if opt is None:
        run["done"] = it + 1  # the learner moved θ in its outer step (Reptile)
    if not np.isfinite(metrics["loss"]):
        problem = f"the training loss is {metrics['loss']}"
    elif opt is not None:
        if all_finite(p.grad for p in opt.params):
            opt.step()
            opt.zero_grad()
            run["done"] = it + 1
        else:
            problem = "the meta-gradient holds a NaN or an inf"
    if problem is None and not all_finite(learner.meta_parameters()):
        problem = "the updated weights hold a NaN or an inf"
    if problem is not None and run["done"] == it + 1:
        run["sound"] = False  # keep the last checkpoint
    return problem


def restore(state, model, learner, opt, path, name):
    """Load a checkpoint's model, optimizer and learner state (in place); ``name``: the
    learner's."""
    try:     # (the error had named neither the checkpoint nor the run: "load_state_dict: …")
        model.load_state_dict(state["model"])
    except ValueError as err:  # a state of another architecture (StateDictError)
        raise ValueError(f"--resume: {path} does not fit this run's model: {err}") from None
    if opt is not None:
        if "optim" not in state:
            raise ValueError(f"--resume: {path} holds no optimizer state")
        opt.load_state_dict(state["optim"])
    if "learner" not in state and learner_state(learner):
        raise ValueError(f"--resume: {path} was written before a learner's own state was "
                         f"saved: {name}'s would restart from its initial values")
    if hasattr(learner, "load_state_dict"):
        learner.load_state_dict(state.get("learner", {}))


def learner_state(learner):
    return learner.state_dict() if hasattr(learner, "state_dict") else {}


def all_finite(arrays):
    """Whether every array (or Tensor; None skipped) holds only finite values; GPU arrays are
    tested there and read once for all (a read per parameter: 36 waits a conv4 iteration)."""
    flags = []
    for a in (x.data if isinstance(x, Tensor) else x for x in arrays if x is not None):
        if array_module(a) is not np:
            flags.append(array_module(a).isfinite(a).all())
        elif not np.isfinite(a).all():
            return False
    return not flags or bool(array_module(flags[0]).stack(flags).all())


def finite_or_null(record):
    """The record with every non-finite float as None (JSON has no NaN)."""
    return {k: None if isinstance(v, float) and not np.isfinite(v) else v
            for k, v in record.items()}
