"""The learning curve a run leaves, ``curve.png`` (``minimeta/experiments/curve.py``): drawn when
``minimeta train`` ends, normally or stopped, from the whole log (a resumed run's from iteration
1), with the validation series where the log has one; and never at the run's cost: no
matplotlib is one hint line, a figure that cannot be written one line, both exit 0. What a
figure shows is tested by the arrays ``plot_run`` drew (it returns them), not its pixels."""
import errno
import gc
import json
import os
import sys
import weakref

import numpy as np
import pytest

from minimeta import cli
from minimeta.experiments import curve, training
from minimeta.learners.stacked import StackedTasks
from test_cli import REAL
from test_runs import SINE, checkpoint, metrics

HINT = "(no curve.png: matplotlib is not installed; pip install matplotlib)"


@pytest.fixture
def drawn(monkeypatch):
    """The ``Curve`` of every figure drawn in the test, in order."""
    pytest.importorskip("matplotlib")
    figures, plot_run = [], curve.plot_run

    def spy(*args, **kwargs):
        figures.append(plot_run(*args, **kwargs))
        return figures[-1]

    monkeypatch.setattr(curve, "plot_run", spy)
    return figures


def said_curve(out, capsys):
    """The line ``minimeta train`` said last, checked to name ``out``'s figure, a whole PNG."""
    path = os.path.join(out, "curve.png")
    assert capsys.readouterr().out.splitlines()[-1] == f"curve: {path}"
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert not os.path.exists(path + ".tmp")


def test_a_run_and_then_its_resumed_run_draw_every_iteration_from_1(tmp_path, capsys, drawn):
    out = str(tmp_path / "run")
    assert cli.main(SINE + ["--iterations", "4", "--out", out]) == 0
    said_curve(out, capsys)
    assert drawn[-1].iterations.tolist() == [1, 2, 3, 4]
    assert cli.main(SINE + ["--iterations", "7", "--out", out, "--resume"]) == 0
    said_curve(out, capsys)
    (_, data), log = drawn, metrics(out)
    assert data.iterations.tolist() == list(range(1, 8))    # not only the last leg's 5..7
    np.testing.assert_array_equal(data.loss, [r["loss"] for r in log])
    assert data.smooth[0] == data.loss[0] and np.isclose(data.smooth[-1],
                                                          data.loss[-data.window:].mean())
    assert not len(data.val_iterations) and data.title == "maml on sinusoid, K = 5"


@pytest.mark.skipif(not REAL, reason="Omniglot not found in MINIMETA_DATA_DIR")
def test_a_validated_run_s_figure_has_its_validation_series(tmp_path, capsys, drawn,
                                                             monkeypatch):
    monkeypatch.setenv("MINIMETA_CACHE_DIR", str(tmp_path / "cache"))
    out = str(tmp_path / "run")
    assert cli.main(["train", "--learner", "protonet", "--ways", "5", "--shots", "1",
                     "--queries", "1", "--iterations", "3", "--validate-every", "2",
                     "--val-episodes", "2", "--out", out]) == 0
    said_curve(out, capsys)
    (data,) = drawn
    assert data.title == "protonet on omniglot, 5-way 1-shot"
    assert data.val_iterations.tolist() == [2, 3]          # every 2, and the last iteration
    assert data.val.tolist() == [r["val_accuracy"] for r in metrics(out)[1:]]
    assert data.val_interval.tolist() == [r["val_interval"] for r in metrics(out)[1:]]


def test_plot_run_draws_any_run_folder_and_names_a_bad_line(tmp_path):
    """From Python, on a folder of any log, without a checkpoint: a validation, a failed one
    (null), a last line still being written (left out); a line that is no record is named."""
    pytest.importorskip("matplotlib")
    records = [{"iteration": 1, "loss": 3.0},
               {"iteration": 2, "loss": 1.0, "val_accuracy": 0.5, "val_interval": 0.1},
               {"iteration": 3, "loss": 2.0, "val_accuracy": None, "val_interval": None}]
    log = tmp_path / "metrics.jsonl"
    log.write_text("".join(json.dumps(r) + "\n" for r in records) + '{"iteration": 4, "lo')
    data = curve.plot_run(str(tmp_path), str(tmp_path / "mine.png"), window=2)
    assert data.path == str(tmp_path / "mine.png") and os.path.getsize(data.path) > 0
    assert data.iterations.tolist() == [1, 2, 3] and data.smooth.tolist() == [3.0, 2.0, 1.5]
    assert data.val_iterations.tolist() == [2, 3] and data.val_interval[0] == 0.1
    assert data.val[0] == 0.5 and np.isnan(data.val[1]) and data.title == tmp_path.name
    log.write_text(json.dumps(records[0]) + "\n[1, 2]\n")
    with pytest.raises(ValueError, match=r"metrics.jsonl: line 2 is not a metrics record"):
        curve.plot_run(str(tmp_path))


def test_without_matplotlib_a_run_says_so_in_one_line_and_exits_0(tmp_path, capsys,
                                                                   monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)    # `import matplotlib` fails
    out = str(tmp_path / "run")
    assert cli.main(SINE + ["--iterations", "2", "--out", out]) == 0
    said = capsys.readouterr()
    assert said.out.splitlines()[-1] == HINT and (said.out + said.err).count("curve") == 1
    assert not os.path.exists(os.path.join(out, "curve.png"))
    assert checkpoint(out)["iteration"] == 2


def test_a_figure_that_cannot_be_written_is_one_line_and_the_run_stands(tmp_path, capsys,
                                                                      monkeypatch):
    matplotlib = pytest.importorskip("matplotlib.figure")

    def full_disk(self, path, **_):
        with open(path, "wb") as f:
            f.write(b"\x89PNG, cut short")
        raise OSError(errno.ENOSPC, "No space left on device", path)

    monkeypatch.setattr(matplotlib.Figure, "savefig", full_disk)
    out = str(tmp_path / "run")
    assert cli.main(SINE + ["--iterations", "3", "--out", out]) == 0
    said = capsys.readouterr()
    (line,) = [t for t in (said.out + said.err).splitlines() if "curve" in t]
    assert line.startswith("minimeta train: no curve.png: ") and line in said.err
    assert line.endswith("No space left on device: free some space")
    assert said.out.splitlines()[-1] == f"metrics: {out}/metrics.jsonl"
    assert sorted(os.listdir(out)) == ["checkpoint.npz", "metrics.jsonl"]    # no partial file
    assert checkpoint(out)["iteration"] == 3 and len(metrics(out)) == 3


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning",
                            "ignore:invalid value:RuntimeWarning")
def test_a_run_stopped_by_a_nan_or_ctrl_c_draws_what_it_saved(tmp_path, capsys, drawn,
                                                              monkeypatch):
    out = str(tmp_path / "nan")
    assert cli.main(SINE + ["--iterations", "40", "--outer-lr", "10", "--out", out]) == 1
    said_curve(out, capsys)                                 # diverges at iteration 2
    assert drawn[-1].iterations.tolist() == [1, 2] and np.isnan(drawn[-1].loss[1])
    batches = training.batches

    def ctrl_c_at_4(config, start=0):       # Ctrl-C as the 4th iteration draws its tasks
        batch = batches(config, start)

        def drawing(it):
            if it == 3:
                raise KeyboardInterrupt
            return batch(it)
        return drawing

    monkeypatch.setattr(training, "batches", ctrl_c_at_4)
    out = str(tmp_path / "stopped")
    assert cli.main(SINE + ["--iterations", "6", "--out", out]) == 130
    said_curve(out, capsys)
    assert drawn[-1].iterations.tolist() == [1, 2, 3] and checkpoint(out)["iteration"] == 3


def test_a_null_loss_blanks_only_the_moving_averages_whose_window_holds_it():
    records = [{"iteration": i, "loss": None if i == 3 else float(i)} for i in range(1, 9)]
    data = curve.curve_data(records, window=2)
    np.testing.assert_array_equal(data.smooth, [1, 1.5, np.nan, np.nan, 4.5, 5.5, 6.5, 7.5])


@pytest.mark.parametrize("iterations, window", [(5, 1), (50, 5), (999, 99), (5000, 100)])
def test_the_default_moving_average_is_a_tenth_of_the_run_at_most_100(iterations, window):
    """The legend's "moving average (N it.)": a tenth of the iterations, at least 1, at most 100
    (the cap was free to change with every test passing: a mutation audit, 2026-12-04)."""
    data = curve.curve_data({"iteration": i, "loss": float(i % 7)}
                            for i in range(1, iterations + 1))
    assert data.window == window
    assert data.smooth[-1] == pytest.approx(np.mean(data.loss[-window:]))


def test_a_long_log_is_read_keeping_only_the_numbers_drawn(tmp_path, monkeypatch):
    """``plot_run`` had read the log into a list of every record (200 000 lines: 150 MB, ~680
    bytes a line); now only its columns drawn stay (~80 bytes a line, measured up to the
    drawing). A line as ``json.loads`` takes it but not as the log writes it still counts."""
    pytest.importorskip("matplotlib")
    import tracemalloc

    class Drawing(Exception):
        pass

    def figure(*args, **kwargs):
        raise Drawing
    lines = 20000
    with open(tmp_path / "metrics.jsonl", "w") as f:
        f.write(' {"iteration": 1, "loss": 2.0}  \r\n')
        for i in range(2, lines + 1):
            f.write(json.dumps({"iteration": i, "seconds": 0.05 * i, "train_seconds": 0.04 * i,
                                "loss": 1 / i, "accuracy": 0.5}) + "\n")
    monkeypatch.setattr("matplotlib.figure.Figure", figure)   # the drawing is not measured
    tracemalloc.start()
    try:
        with pytest.raises(Drawing):
            curve.plot_run(str(tmp_path))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 200 * lines
    data = curve.curve_data(curve.iter_metrics(str(tmp_path)))
    assert data.iterations.tolist() == list(range(1, lines + 1)) and data.loss[0] == 2.0


def test_a_memory_stop_frees_the_run_s_arrays_before_drawing(tmp_path, monkeypatch):
    """The traceback of a ``MemoryError`` holds the frames it passed, and their locals the
    model and the tasks: drawn with them alive, the figure had met the memory still full."""
    learners, alive = [], []
    step = StackedTasks.outer_step

    def short_of_memory(self, tasks):     # the third meta-iteration runs out of memory
        learners.append(weakref.ref(self))
        if len(learners) == 3:
            raise MemoryError("Unable to allocate 14.9 GiB for an array")
        return step(self, tasks)

    def plot_after_run(folder, *args):
        gc.collect()
        alive.append(learners[-1]() is not None)

    monkeypatch.setattr(StackedTasks, "outer_step", short_of_memory)
    monkeypatch.setattr(curve, "plot_after_run", plot_after_run)
    with pytest.raises(SystemExit):
        cli.main(SINE + ["--iterations", "5", "--out", str(tmp_path / "run")])
    assert alive == [False]


def test_a_figure_left_half_written_by_a_killed_drawing_is_removed_by_the_next_run(
        tmp_path, monkeypatch):
    """A SIGTERM while the figure is written (training's handlers are gone by then) leaves
    ``curve.png.tmp``; the next run on the folder removes it, as it does a checkpoint's."""
    out = str(tmp_path / "run")
    monkeypatch.setattr(curve, "plot_after_run", lambda *args: None)   # no drawing here
    assert cli.main(SINE + ["--iterations", "2", "--out", out]) == 0
    open(os.path.join(out, "curve.png.tmp"), "wb").close()
    assert cli.main(SINE + ["--iterations", "3", "--out", out, "--resume"]) == 0
    assert not os.path.exists(os.path.join(out, "curve.png.tmp"))


@pytest.fixture
def figures(monkeypatch):
    """Every ``Figure`` that ``plot_run`` saves, kept to be read."""
    figure = pytest.importorskip("matplotlib.figure")
    kept, savefig = [], figure.Figure.savefig

    def keep(self, *args, **kwargs):
        kept.append(self)
        return savefig(self, *args, **kwargs)

    monkeypatch.setattr(figure.Figure, "savefig", keep)
    return kept


def test_the_curve_draws_the_loss_its_moving_average_and_the_validation(tmp_path, figures):
    records = [{"iteration": i, "loss": float(i % 3)} for i in range(1, 21)]
    records[9].update(val_accuracy=0.5, val_interval=0.1)
    records[19].update(val_accuracy=0.7, val_interval=0.05)
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    data = curve.plot_run(str(tmp_path))
    loss_ax, val_ax = figures[0].axes
    raw, smooth = loss_ax.lines
    np.testing.assert_array_equal(raw.get_ydata(), data.loss)
    np.testing.assert_array_equal(smooth.get_ydata(), data.smooth)
    assert smooth.get_label() == "moving average (2 it.)" and data.window == 2
    assert loss_ax.get_title() == data.title == tmp_path.name
    assert loss_ax.get_xlabel() == "iteration"
    points, _, (bars,) = val_ax.containers[0]
    assert points.get_xdata().tolist() == [10, 20] and points.get_ydata().tolist() == [0.5, 0.7]
    np.testing.assert_allclose([s[1, 1] - s[0, 1] for s in bars.get_segments()], [0.2, 0.1])


def test_a_folder_without_a_checkpoint_gets_no_curve_after_a_run(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"iteration": 1, "loss": 1.0}\n')
    said = []
    curve.plot_after_run(str(tmp_path), said.append)
    assert said == [] and os.listdir(tmp_path) == ["metrics.jsonl"]


def test_a_long_run_is_drawn_thinned_to_its_lowest_and_highest_points(tmp_path, figures):
    """200 000 points of a noisy loss had cost matplotlib ~170 MB to draw into 800 pixels:
    each line is drawn from at most 4000 points now, each run of neighbours kept as its lowest
    and highest, in order, so the figure reaches the same heights (a spike of one iteration
    included), and a run of NaN only stays a gap."""
    rng = np.random.default_rng(0)
    loss = rng.random(30001)
    loss[12345], loss[20000:20040] = 50.0, np.nan      # a spike, and a stretch of NaN losses
    (tmp_path / "metrics.jsonl").write_text("".join(
        json.dumps({"iteration": i + 1, "loss": None if np.isnan(v) else v}) + "\n"
        for i, v in enumerate(loss)))
    data = curve.plot_run(str(tmp_path))
    raw, smooth = figures[0].axes[0].lines
    for line, full in ((raw, data.loss), (smooth, data.smooth)):
        x, y = line.get_xdata(), line.get_ydata()
        assert 3000 < len(x) <= 4000 and np.all(np.diff(x[~np.isnan(x)]) >= 0)   # in order
        assert np.nanmax(y) == np.nanmax(full) and np.nanmin(y) == np.nanmin(full)
        finite = ~np.isnan(y)       # every point drawn is one of the run's, where it was
        np.testing.assert_array_equal(full[x[finite].astype(int) - 1], y[finite])
    x, y = raw.get_xdata(), raw.get_ydata()
    assert np.isnan(y[(x > 20000) & (x <= 20040)]).any()           # the NaN losses: a gap
    x, y = curve.thinned(np.arange(10.0), np.arange(10.0) % 3, most=10)   # short: as it was
    assert x.tolist() == list(range(10)) and y.tolist() == [0, 1, 2, 0, 1, 2, 0, 1, 2, 0]
