"""A run's folder: what may start in it, how a resumed run finds its files as it left them,
and that it is still where the run began.

``open_run`` checks ``--out`` before anything is written (a fresh run refuses a folder holding
a run unless ``overwrite``; ``resume`` needs its checkpoint); ``prepare_folder`` clears what a
killed write left (``.tmp-*.npz``) and, on resume, cuts ``metrics.jsonl`` back to the
checkpoint's iteration (``cut_metrics``). ``Home`` remembers which folder a run began in: a
folder moved or removed while the run trains stops it at its next checkpoint
(``FolderMoved``), where ``io.save`` would have made a new folder at the old path, holding the
later checkpoints apart from the metrics, which follow the moved folder.

Read next: ``minimeta/experiments/stopping.py`` (how a run stops without losing work: signals).
"""
import contextlib
import json
import numbers
import os

import numpy as np

from .. import io

CHECKPOINT, METRICS, CURVE = "checkpoint.npz", "metrics.jsonl", "curve.png"  # curve.py draws it


def first_missing(folder):
    """The outermost folder of ``folder``'s path that does not exist yet (None: all do): what
    making ``folder`` creates, and a refused run removes again (``unmake``)."""
    if folder is None:
        return None
    missing, path = None, os.path.abspath(folder)
    while not os.path.isdir(path):
        missing, parent = path, os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return missing


def unmake(folder, made):
    """Remove ``folder`` and its parents up to ``made`` (``first_missing``'s, before the run
    made them), each only if empty: a refused run leaves no folders behind (``--out a/b/c``
    had left ``a`` and ``a/b``)."""
    if made is None:
        return
    path = os.path.abspath(folder)
    with contextlib.suppress(OSError):       # not empty: kept, and the ones above it too
        while True:
            os.rmdir(path)
            if path == made:
                break
            path = os.path.dirname(path)


class FolderMoved(RuntimeError):
    """The run's folder was moved or removed while the run trained."""


class Home:
    """The folder a run began in, by identity (device and inode), not by its path."""

    def __init__(self, folder):
        self.folder = folder
        self.where = self._identity()

    def _identity(self):
        with contextlib.suppress(OSError):
            st = os.stat(self.folder)
            return st.st_dev, st.st_ino
        return None

    def check(self, iteration, saved):
        """Raise ``FolderMoved`` (one line) unless the folder is still at its path."""
        if self._identity() != self.where:
            raise FolderMoved(
                f"training stopped at iteration {iteration}: the run's folder {self.folder} "
                f"was moved or removed while it trained; the folder, wherever it is now, holds "
                f"the checkpoint of iteration {saved} and {METRICS} beyond it: --resume it "
                "there (--out its new path)")


def no_log(folder):
    """Whether ``folder`` holds no training log: no ``metrics.jsonl``, or an empty one, which a
    run stopped between making it and its first checkpoint leaves (a SIGKILL then; a rerun and
    ``--resume`` had both refused the folder: found by probing, 2026-12-03)."""
    try:
        return os.path.getsize(os.path.join(folder, METRICS)) == 0
    except FileNotFoundError:
        return True


def checked(state, path, who):
    """A run's checkpoint ``state``, its ``settings`` a dict, its ``iteration`` a count and its
    ``seconds`` (0 when absent) a number, made Python's; else a ``ValueError`` naming ``who``
    (``eval``, ``--resume``) and ``path``."""
    settings = state["settings"]
    iteration, seconds = (v.item() if isinstance(v, np.ndarray) and v.ndim == 0 else v
                          for v in (state["iteration"], state.get("seconds", 0.0)))
    if not isinstance(settings, dict):
        raise ValueError(f"{who}: {path}'s 'settings' is not a dict of settings")
    if isinstance(iteration, bool) or not isinstance(iteration, numbers.Integral) \
            or iteration < 0:
        raise ValueError(f"{who}: {path}'s 'iteration' is {iteration!r}, not a count")
    if isinstance(seconds, bool) or not isinstance(seconds, numbers.Real):
        raise ValueError(f"{who}: {path}'s 'seconds' is {seconds!r}, not a number")
    state["iteration"], state["seconds"] = int(iteration), float(seconds)
    return state


def open_run(config):
    """The checks of ``config.out`` before a run starts (``ValueError``, one line); returns
    the checkpoint to resume from (a dict), or None for a fresh run. ``training.train`` calls
    it holding the folder's lock (``io.folder_lock``): called before, a run started at once on
    the same folder could pass the checks too and fill the folder in between."""
    if config.out is None:
        if config.resume:
            raise ValueError("resume: a run without a folder (out=None) has nothing to resume")
        return None
    path = os.path.join(config.out, CHECKPOINT)
    if config.resume:
        if not os.path.exists(path):
            if not no_log(config.out):
                raise ValueError(f"--resume: {config.out} holds {METRICS} but no checkpoint to "
                                 "resume from: --overwrite to start afresh there, or another "
                                 "--out")
            raise ValueError(f"--resume: no run to resume in {config.out} ({path} does not "
                             "exist); drop --resume to start one there")
        state = checked(io.load(path, require=("model", "settings", "iteration")), path,
                        "--resume")
        try:        # (a checkpoint of minimeta's format, but not of a run: found by probing)
            type(config).from_settings(state["settings"], resume=False, overwrite=False)
        except (ValueError, TypeError) as err:
            raise ValueError(f"--resume: {path} holds settings minimeta cannot use "
                             f"({err})") from None
        config.check_resume(state["settings"], state["iteration"])
        return state
    held = [name for name in (CHECKPOINT, METRICS)
            if os.path.exists(os.path.join(config.out, name))]
    if held == [METRICS] and no_log(config.out):
        held = []       # nothing trained, nothing to lose: a fresh run may start there
    if held and not config.overwrite:
        resume = "--resume to continue it, " if CHECKPOINT in held else ""
        raise ValueError(f"{config.out} already holds a run ({', '.join(held)}): {resume}"
                         "--overwrite to replace it, or another --out")
    return None


def prepare_folder(config, iteration, first=1):
    """Create the folder; delete stale temporary files (and, for ``overwrite``, the run it
    held); cut ``metrics.jsonl`` (which starts at iteration ``first``) back to the
    checkpoint's ``iteration`` when resuming. Returns the iteration the log starts at."""
    os.makedirs(config.out, exist_ok=True)
    try:   # a folder that cannot be written fails now, not at the first checkpoint, minutes on
        fd, probe = io.temporary(config.out, ".tmp-probe-")     # as io.save will make one
        os.close(fd)
        os.remove(probe)
    except OSError as err:
        raise ValueError(f"--out {config.out} cannot be written ({err.strerror}): a folder you "
                         "may write to") from None
    for name in os.listdir(config.out):
        stale = (name.startswith(".tmp-") and name.endswith(".npz")) or name == CURVE + ".tmp"
        if stale or (config.overwrite and name in (CHECKPOINT, METRICS, CURVE)):
            with contextlib.suppress(FileNotFoundError):   # gone since the listing
                os.remove(os.path.join(config.out, name))
    if config.resume:
        return cut_metrics(os.path.join(config.out, METRICS), iteration, first)
    return 1


def cut_metrics(path, iteration, first=1):
    """Cut the log at ``path`` after its line of ``iteration``: what follows was run after the
    checkpoint and will be run again. ``ValueError`` unless it holds iterations ``first``,
    ``first`` + 1, …, ``iteration``, once each; but no log at all (moved aside) is allowed: a
    new one starts after the checkpoint's iteration (the weights are never stranded), and the
    checkpoint records where (``log_from``), and so is a log that begins after the checkpoint
    (``_begins_after``). Returns the iteration the log starts at."""
    size, seen = 0, first - 1
    if iteration > seen and not os.path.exists(path):
        return iteration + 1
    if iteration > seen:
        with open(path, "rb") as f:
            for line in f:
                try:
                    number = json.loads(line)["iteration"] if line.endswith(b"\n") else None
                except (ValueError, KeyError, TypeError):
                    number = None
                if number != seen + 1:
                    break
                size, seen = size + len(line), seen + 1
                if seen == iteration:
                    break
    if seen != iteration and seen == first - 1 and _begins_after(path, iteration):
        with open(path, "ab") as f:    # begun after the checkpoint (the old log moved aside,
            f.truncate(0)              # then killed before its next one): as if none were there
        return iteration + 1
    if seen != iteration:
        raise ValueError(f"--resume: {path} does not hold iterations {first} to {iteration}, "
                         f"once each (its checkpoint's), but {seen - first + 1} of them: move "
                         f"it aside to go on with a new log from iteration {iteration + 1} "
                         "(the checkpoint is kept), or --overwrite to start afresh")
    if os.path.exists(path):
        with open(path, "ab") as f:
            f.truncate(size)
    return first


def _begins_after(path, iteration):
    """Whether the log at ``path`` is empty or its first line is ``iteration`` + 1's: the new
    log of a run resumed without one, killed (SIGKILL, a power cut) before its first checkpoint,
    whose checkpoint still names the old log's first iteration (its resume had been refused:
    "holds 0 of them", found by probing)."""
    with open(path, "rb") as f:
        line = f.readline()
    try:
        return not line or json.loads(line)["iteration"] == iteration + 1
    except (ValueError, KeyError, TypeError):
        return False
