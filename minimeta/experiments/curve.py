"""A run's learning curve as a figure: ``plot_run(folder)`` draws ``<folder>/curve.png``.

It reads the whole ``metrics.jsonl`` (a resumed run's figure starts where the log does,
iteration 1 unless the log was set aside, not where the last leg began), one line at a time,
keeping only the numbers it draws (a 200 000-line log: 13 MB where a list of every record had
taken 145 MB, 0.9 s of CPU either way), and the settings of ``checkpoint.npz`` (for the title).
The loss of every iteration is drawn faint, with a moving average over it; the validation
accuracy, with its 95% interval, goes on a second axis. A long run's lines are thinned to what
the figure's 800 pixels can show (``thinned``: each run of neighbouring points kept as its
lowest and highest: a 200 000-iteration run's figure, the same to 220 of its 360 000 pixels,
is drawn at a peak of 105 MB, where it had taken 199, in 1.0 s where it took 1.6).
``minimeta train`` calls it when a run ends; from Python it draws any run folder, even one
still training (a last line not yet whole is left out). matplotlib (the ``examples`` and
``test`` extras) is imported only when drawing, as in ``sinusoid.plot_task``, but without
pyplot: a ``Figure`` of its own, so a notebook's backend is left as it was. Without
matplotlib, ``plot_run`` raises ``ImportError``.

    >>> log = [{"iteration": 1, "loss": 2.0}, {"iteration": 2, "loss": 1.0}]
    >>> data = curve_data(log, window=2)
    >>> data.smooth.tolist(), data.val.tolist()
    ([2.0, 1.5], [])

Read next: ``minimeta/experiments/sinusoid.py`` (the sinusoid experiment).
"""
import contextlib
import json
import os
from array import array
from collections import namedtuple

import numpy as np

from .. import io
from .progress import tolerant
from .runfolder import CHECKPOINT, CURVE, METRICS, no_log

Curve = namedtuple("Curve", "iterations loss smooth window val_iterations val val_interval "
                   "title path")


def iter_metrics(folder):
    """The records of ``folder``'s ``metrics.jsonl``, one at a time (a log of any length in
    bounded memory: keep what you need of each); ``ValueError`` naming a line that is not a
    JSON record, raised as it is reached (a last line without its newline, still being
    written, is left out)."""
    path = os.path.join(folder, METRICS)
    with open(path, "rb") as f:
        for number, line in enumerate(f, 1):
            if not line.endswith(b"\n"):
                return
            try:
                record = json.loads(line)
            except ValueError:
                record = None
            if not isinstance(record, dict) or "iteration" not in record:
                raise ValueError(f"{path}: line {number} is not a metrics record")
            yield record


def curve_data(records, title="", window=None):
    """What ``plot_run`` draws from the ``records`` (any iterable of them, such as
    ``iter_metrics``, read once; only the numbers drawn are kept): the arrays, as a ``Curve``
    (``path`` None). ``smooth`` is the mean of the last ``window`` losses (fewer at the start;
    default a tenth of the run, at most 100 iterations); a null (NaN) value is ``nan``, and so
    is the mean of a window holding one, but not of the windows after it (a running sum through
    it had made every later mean NaN). The validation series is ``val_accuracy`` where a
    record has one (null included), with that record's iteration and ``val_interval``."""
    iterations, loss = array("d"), array("d")
    validated = array("d"), array("d"), array("d")
    for r in records:
        iterations.append(_number(r, "iteration"))
        loss.append(_number(r, "loss"))
        if "val_accuracy" in r:
            for column, key in zip(validated, ("iteration", "val_accuracy", "val_interval")):
                column.append(_number(r, key))
    iterations, loss = np.array(iterations), np.array(loss)
    window = window or int(np.clip(len(loss) // 10, 1, 100))
    bad = ~np.isfinite(loss)
    total = np.concatenate([[0.0], np.cumsum(np.where(bad, 0.0, loss))])
    nans = np.concatenate([[0], np.cumsum(bad)])
    end = np.arange(1, len(loss) + 1)
    start = np.maximum(end - window, 0)
    smooth = np.where(nans[end] > nans[start], np.nan,
                      (total[end] - total[start]) / (end - start))
    return Curve(iterations, loss, smooth, window, *map(np.array, validated), title, None)


def _number(record, key):
    """``record[key]`` as a float; ``nan`` where it is null or missing."""
    value = record.get(key)
    return np.nan if value is None else float(value)


def run_title(folder):
    """The figure's title, ``<learner> on <dataset>, <ways>-way <shots>-shot`` (``K = <shots>``
    for sinusoids), as the checkpoint's settings say; the folder's name without a checkpoint."""
    try:
        s = io.load(os.path.join(folder, CHECKPOINT))["settings"]
        kind = f"K = {s['shots']}" if s["dataset"] == "sinusoid" else \
            f"{s['ways']}-way {s['shots']}-shot"
        return f"{s['learner']} on {s['dataset']}, {kind}"
    except (OSError, ValueError, KeyError, TypeError):
        return os.path.basename(os.path.abspath(folder))


def thinned(x, y, most=4000):
    """(x, y) with at most ``most`` points that draw as the whole would at a figure's width:
    each run of neighbouring points is kept as its lowest and its highest y, in their order (a
    line through them reaches the same heights); a run of NaN only stays NaN (a gap). Series
    of up to ``most`` points are returned as they are.

    >>> thinned(np.arange(8.0), np.array([0, 5, 1, 1, 2, 9, 3, -1.0]), most=4)
    (array([0., 1., 5., 7.]), array([ 0.,  5.,  9., -1.]))
    """
    if len(y) <= most:
        return x, y
    per = -(-len(y) // (most // 2))          # points a run
    pad = -len(y) % per
    xs, ys = (np.concatenate([a, np.full(pad, np.nan)]).reshape(-1, per) for a in (x, y))
    low = np.where(np.isnan(ys), np.inf, ys).argmin(axis=1)
    high = np.where(np.isnan(ys), -np.inf, ys).argmax(axis=1)
    rows = np.arange(len(ys))[:, None]
    keep = np.sort(np.stack([low, high], axis=1), axis=1)
    return xs[rows, keep].ravel(), ys[rows, keep].ravel()


def plot_run(folder, path=None, window=None):
    """Draw the learning curve of the run in ``folder`` into ``path`` (default
    ``<folder>/curve.png``; written whole or not at all); returns the ``Curve`` it drew."""
    from matplotlib.figure import Figure   # not pyplot: no backend chosen, none changed

    data = curve_data(iter_metrics(folder), run_title(folder), window)
    if not len(data.loss):
        raise ValueError(f"{os.path.join(folder, METRICS)} holds no iterations yet")
    path = path or os.path.join(folder, CURVE)
    fig = Figure(figsize=(8, 4.5))
    ax = fig.subplots()
    ax.plot(*thinned(data.iterations, data.loss), color="C0", alpha=0.3, lw=0.8, label="loss")
    ax.plot(*thinned(data.iterations, data.smooth), color="C0", lw=1.8,
            label=f"moving average ({data.window} it.)")
    ax.set_xlabel("iteration")
    ax.set_ylabel("meta-training loss")
    lines = ax.get_legend_handles_labels()
    if len(data.val_iterations):   # validation on its own axis
        right = ax.twinx()
        right.errorbar(data.val_iterations, data.val, yerr=data.val_interval, color="C1",
                       marker="o", ms=4, capsize=3, label="validation accuracy (95% interval)")
        right.set_ylabel("validation accuracy")
        more = right.get_legend_handles_labels()
        lines = (lines[0] + more[0], lines[1] + more[1])
    ax.legend(*lines, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=3, fontsize=8,
              frameon=False)    # below the axes: over them, it had hidden the curves
    ax.set_title(data.title, fontsize=10)
    fig.tight_layout()
    temporary = f"{path}.tmp"     # a failed or killed write leaves the old figure, if any
    try:
        fig.savefig(temporary, dpi=100, format="png")
        os.replace(temporary, path)
    finally:
        with contextlib.suppress(OSError):
            os.remove(temporary)
    return data._replace(path=path)


def plot_after_run(folder, say=print, warn=None, describe=str):
    """``plot_run(folder)`` as a run ends (``minimeta train``), its outcome one line through
    ``say`` (a failure through ``warn``, default ``say``, as ``describe(error)``): a figure is
    never worth a run, so nothing here raises, not even a missing matplotlib or a full disk.
    A folder without a checkpoint or a logged iteration (a run stopped before them) gets
    nothing, not even a line."""
    say, warn = tolerant(say), tolerant(warn or say)
    if not os.path.exists(os.path.join(folder, CHECKPOINT)) or no_log(folder):
        return
    try:
        say(f"curve: {plot_run(folder).path}")
    except ImportError:
        say("(no curve.png: matplotlib is not installed; pip install matplotlib)")
    except Exception as err:       # whatever it is, the run is on disk and stays so
        warn(f"no curve.png: {describe(err)}")
