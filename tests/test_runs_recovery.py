"""Runs that are never silently wrong or lost, continued from ``tests/test_runs.py``: a NaN
stops the run at a finite checkpoint; a run killed at random moments, then resumed, ends bit
for bit where an uninterrupted one does; the progress line of a resumed or budgeted run tells
the truth; validation leaves no trace in the checkpoint."""
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from minimeta import cli
from minimeta.experiments import training
from minimeta.experiments.config import RunConfig
from minimeta.experiments.registry import LEARNERS, build
from test_runs import (QUIET, ROOT, SINE, assert_same_state, checkpoint, flatten, lines_in,
                       metrics)


# ----- 5. a NaN or an inf stops the run at its last finite checkpoint -----------------------
@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning",
                            "ignore:invalid value:RuntimeWarning")
def test_a_non_finite_loss_stops_the_run_naming_the_iteration(tmp_path, capsys):
    out = str(tmp_path / "run")
    args = SINE + ["--iterations", "40", "--outer-lr", "10", "--out", out]  # diverges at 2
    capsys.readouterr()
    assert cli.main(args) == 1
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"minimeta train: iteration 2: the training loss is inf; training stopped: "
        f"{out}/checkpoint.npz holds iteration 1, the last finite one; resume from it with "
        "--detect-anomaly to find the op that made it")
    state = checkpoint(out)
    assert state["iteration"] == 1
    assert all(np.isfinite(v).all() for v in flatten(state["model"]).values())
    log = metrics(out)                                    # strict JSON: inf written as null
    assert [r["iteration"] for r in log] == [1, 2] and log[1]["loss"] is None
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:          # as the message suggests
        cli.main(args + ["--resume", "--detect-anomaly"])
    assert exit_info.value.code == 2
    assert "detect_anomaly: " in capsys.readouterr().err


def nan_at(learner, iteration, how):
    """``learner.outer_step`` made to go non-finite at ``iteration`` (1-based)."""
    step, calls = learner.outer_step, []

    def outer_step(tasks):
        calls.append(1)
        out = step(tasks)
        if len(calls) == iteration:
            if how == "loss":
                out["loss"] = float("nan")
            elif how == "gradient":
                learner.meta_parameters()[0].grad.data[...] = np.nan
            else:
                learner.meta_parameters()[-1].data[0] = np.inf
        return out

    learner.outer_step = outer_step


@pytest.mark.parametrize("learner,how,every,what", [
    ("maml", "loss", 1e9, "the training loss is nan"),
    ("metasgd", "gradient", 1e9, "the meta-gradient holds a NaN or an inf"),
    ("reptile", "weights", 0.0, "the updated weights hold a NaN or an inf"),
    ("reptile", "loss", 0.0, "the training loss is nan")])
def test_a_non_finite_step_keeps_the_last_finite_checkpoint(learner, how, every, what,
                                                            tmp_path):
    """A NaN or inf at iteration 5. MAML's and Meta-SGD's weights are still those of
    iteration 4: saved as such (the last checkpoint was at 0). Reptile's moved already: not
    saved, the checkpoint stays at 4 (saved after every iteration here)."""
    def config(name, iterations):
        return RunConfig(learner=learner, dataset="sinusoid", iterations=iterations, shots=5,
                         queries=5, meta_batch=3, out=str(tmp_path / name),
                         checkpoint_every=every)

    straight, bad = config("straight", 4), config("bad", 10)
    training.train(straight, **QUIET)
    model, learned = build(bad)
    nan_at(learned, 5, how)
    with pytest.raises(training.NonFiniteError) as err:
        training.train(bad, model, learned, **QUIET)
    assert str(err.value) == (
        f"iteration 5: {what}; training stopped: {bad.out}/checkpoint.npz holds iteration 4, "
        "the last finite one; resume from it with --detect-anomaly to find the op that made it")
    assert_same_state(checkpoint(bad.out), checkpoint(straight.out))
    log = metrics(bad.out)
    assert [r["iteration"] for r in log] == [1, 2, 3, 4, 5]
    assert (log[4]["loss"] is None) == (how == "loss")


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning",
                            "ignore:invalid value:RuntimeWarning")
def test_an_anomaly_stop_keeps_the_whole_iterations_as_a_non_finite_stop_does(tmp_path, capsys):
    # --detect-anomaly had stopped at the first op of iteration 2 saving nothing: the
    # checkpoint stayed at 0 (up to --checkpoint-every seconds of sound iterations lost),
    # where the same run without it keeps iteration 1
    out = str(tmp_path / "run")
    args = SINE + ["--iterations", "40", "--outer-lr", "10", "--out", out, "--detect-anomaly"]
    with pytest.raises(SystemExit) as exit_info:
        cli.main(args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.splitlines()[-1]
    assert err.startswith("minimeta train: detect_anomaly: ") and err.endswith(
        f"; training stopped: {out}/checkpoint.npz holds iteration 1, the last whole one")
    assert checkpoint(out)["iteration"] == 1
    assert [r["iteration"] for r in metrics(out)] == [1]


# ----- 6. killed at random moments, resumed: the same run -----------------------------------
def test_a_run_killed_four_times_ends_where_an_uninterrupted_one_does(tmp_path):
    args = ["train", "--learner", "maml", "--dataset", "sinusoid", "--shots", "2", "--queries",
            "2", "--meta-batch", "2", "--iterations", "600", "--checkpoint-every", "0"]
    straight, out = str(tmp_path / "straight"), str(tmp_path / "killed")
    assert cli.main(args + ["--out", straight, "--checkpoint-every", "300"]) == 0  # faster
    rng = np.random.default_rng(2024)
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    command = [sys.executable, "-m", "minimeta.cli"] + args + ["--out", out]
    log = os.path.join(out, "metrics.jsonl")
    killed = 0
    for attempt in range(4):
        before = lines_in(log)
        child = subprocess.Popen(command + (["--resume"] if attempt else []), env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while lines_in(log) <= before and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)                    # until it trains past where it started
        time.sleep(rng.uniform(0.0, 0.1))        # < 150 iterations at 1500 it/s
        if child.poll() is None:
            child.send_signal(signal.SIGKILL)
            killed += 1
        child.wait()
    assert killed == 4                           # each one mid-run
    done = subprocess.run(command + ["--resume", "--checkpoint-every", "300"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert_same_state(checkpoint(out), checkpoint(straight))
    assert checkpoint(out)["iteration"] == 600
    log, reference = metrics(out), metrics(straight)
    assert [r["iteration"] for r in log] == list(range(1, 601))     # each exactly once
    assert [r["loss"] for r in log] == [r["loss"] for r in reference]
    assert sorted(os.listdir(out)) == ["checkpoint.npz", "curve.png", "metrics.jsonl"]


# ----- 7. the progress line of a resumed or budgeted run tells the truth ---------------------
class Clock:
    """A stand-in for ``time`` in the progress module: each reading is 31 s after the last,
    so every update prints (a log file gets a line every 30 s)."""

    def __init__(self):
        self.now = 0.0

    def perf_counter(self):
        self.now += 31.0
        return self.now


def progress_lines(args, capsys, monkeypatch):
    from minimeta.experiments import progress
    monkeypatch.setattr(progress, "time", Clock())
    capsys.readouterr()
    assert cli.main(args) == 0
    return [line for line in capsys.readouterr().err.splitlines() if " it/s " in line]


def test_a_resumed_run_counts_its_rate_from_where_it_resumed(tmp_path, capsys, monkeypatch):
    out = str(tmp_path / "run")
    assert cli.main(SINE + ["--iterations", "6", "--out", out]) == 0
    lines = progress_lines(SINE + ["--iterations", "9", "--out", out, "--resume"], capsys,
                           monkeypatch)
    # (the first line, the 7th, shows its time, no rate) an iteration every 31 s, so 31 s to
    # go after the 8th (counted from 0, the rate read 8 iterations in 62 s, and the eta 8 s)
    assert [line.split("  ")[0::2] for line in lines] == [
        ["train 8/9", "eta 31s"], ["train 9/9", "eta 0s"]], lines


def test_under_a_time_budget_the_line_shows_no_total_it_will_not_reach(tmp_path, capsys,
                                                                       monkeypatch):
    lines = progress_lines(SINE + ["--iterations", "60000", "--minutes", "0.01", "--out",
                                   str(tmp_path / "run")], capsys, monkeypatch)
    assert lines and all("/60000" not in line for line in lines), lines


@pytest.mark.skipif(not os.path.exists(os.path.join(
    os.environ.get("MINIMETA_DATA_DIR", ""), "images_background.npz")), reason="needs Omniglot")
def test_validating_leaves_the_checkpoint_as_it_would_be_without(tmp_path):
    # validation episodes had moved batch norm's running averages, so a run resumed with
    # another --validate-every (allowed) ended with other buffers (found by probing)
    run = ["train", "--learner", "protonet", "--ways", "5", "--queries", "2", "--threads",
           "1", "--val-episodes", "2"]
    straight, cut = str(tmp_path / "straight"), str(tmp_path / "cut")
    assert cli.main(run + ["--iterations", "4", "--validate-every", "0", "--out", straight]) == 0
    assert cli.main(run + ["--iterations", "2", "--validate-every", "0", "--out", cut]) == 0
    assert cli.main(run + ["--iterations", "4", "--validate-every", "1", "--out", cut,
                           "--resume"]) == 0
    assert "val_accuracy" in metrics(cut)[-1]
    assert_same_state(checkpoint(straight), checkpoint(cut))
    buffers = [k for k in checkpoint(cut)["model"] if k.startswith("buffer:")]
    assert buffers                                     # batch norm's, compared above


@pytest.mark.skipif(not os.path.exists(os.path.join(
    os.environ.get("MINIMETA_DATA_DIR", ""), "images_background.npz")), reason="needs Omniglot")
def test_an_outer_step_cut_short_leaves_no_trace_in_the_checkpoint(tmp_path):
    """A second Ctrl-C inside an outer step (one thread: each task's batch-norm update applied
    at once) had saved buffers moved by part of the next iteration (found by probing)."""
    def config(out, iterations):
        return RunConfig(learner="protonet", ways=5, queries=1, meta_batch=3, threads=1,
                         iterations=iterations, validate_every=0, out=str(tmp_path / out))

    training.train(config("straight", 2), **QUIET)
    cut = config("cut", 3)
    model, learner = build(cut)
    calls, task_loss = [0], learner.task_loss

    def interrupted(task):
        calls[0] += 1
        if calls[0] == 2 * 3 + 2:                  # iteration 3, its second task
            raise KeyboardInterrupt
        return task_loss(task)

    learner.task_loss = interrupted
    with pytest.raises(KeyboardInterrupt):
        training.train(cut, model=model, learner=learner, **QUIET)
    assert_same_state(checkpoint(str(tmp_path / "straight")), checkpoint(str(tmp_path / "cut")))


def test_the_eta_under_a_budget_counts_the_budget_s_own_clock(monkeypatch):
    # it had counted wall time (validation and checkpoints too) against a budget of training
    # time, so it read "eta 0s" long before the run ended (found by probing)
    import io as text_io

    from minimeta.experiments import progress
    monkeypatch.setattr(progress, "time", Clock())          # 31 s of wall time a reading
    out = text_io.StringIO()
    bar = progress.Progress(10 ** 6, "train", stream=out, budget=100.0, spent=lambda: 40.0)
    bar.update(0)                                   # the first line: that iteration's time
    bar.update(1)
    line = out.getvalue().splitlines()[1]
    assert line.split("  ")[2] == "eta 60s", out.getvalue()   # not 100 − 62 = 38


def test_a_slow_first_iteration_is_shown_as_its_time_not_extrapolated(monkeypatch):
    # a first iteration slower than the line's period (numba compiling) was turned into a rate:
    # "train 1/6  0.0 it/s  eta 159s" for a run whose other iterations took 0.5 s
    import io as text_io

    from minimeta.experiments import progress
    monkeypatch.setattr(progress, "time", Clock())          # 31 s a reading: never early
    out = text_io.StringIO()
    bar = progress.Progress(6, "train", stream=out)
    bar.update(0)
    assert out.getvalue().startswith("train 1/6  first 31.00 s  "), out.getvalue()
    bar.update(1)
    assert " it/s  eta " in out.getvalue().splitlines()[1]
    # nor is a total hidden under a time budget on the first iteration's time alone
    out = text_io.StringIO()
    progress.Progress(100, "train", stream=out, budget=600.0).update(0)   # 99 × 31 s > 600
    assert out.getvalue().startswith("train 1/100  first "), out.getvalue()


@pytest.mark.skipif(not os.path.exists(os.path.join(
    os.environ.get("MINIMETA_DATA_DIR", ""), "images_background.npz")), reason="needs Omniglot")
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_a_validation_whose_outputs_are_not_finite_is_not_scored_as_chance(tmp_path, capsys):
    # NaN logits had scored 0.2 ± 0.0 (argmax of NaN: class 0), written as val_accuracy 0.2
    out = str(tmp_path / "run")
    assert cli.main(["train", "--learner", "maml", "--iterations", "1", "--meta-batch", "2",
                     "--inner-lr", "1e6", "--test-steps", "5", "--validate-every", "1",
                     "--val-episodes", "4", "--queries", "2", "--threads", "1",
                     "--out", out]) == 0
    assert "validation at iteration 1: val: the query loss of episode 0 is nan" in \
        capsys.readouterr().out
    assert metrics(out)[-1]["val_accuracy"] is None          # null in JSON: no number


def test_a_progress_line_in_a_log_comes_at_once_then_every_30_s():
    # a log (not a terminal) got its first line only after 30 s: a piped run looked hung
    import io as text_io

    from minimeta.experiments import progress
    out = text_io.StringIO()
    bar = progress.Progress(100, "train", stream=out)
    assert bar.every == 30.0                                 # a StringIO is not a terminal
    bar.update(0)
    bar.update(1)
    assert out.getvalue().startswith("train 1/100  first ") and out.getvalue().count("\n") == 1
    assert " it/s" not in out.getvalue()            # one iteration's time is no rate yet
    bar.update(99)                                           # and the last iteration's
    assert out.getvalue().count("\n") == 2 and "train 100/100  " in out.getvalue()
    assert out.getvalue().splitlines()[1].split("  ")[1].endswith(" it/s")


# ----- 8. every learner, stopped and resumed, ends where a straight run does ----------------
EVERY = [(name, {}) for name in sorted(LEARNERS)] + [
    ("matching", {"fce": True}), ("maml", {"multi_step_loss": True, "inner_steps": 2}),
    ("protonet", {"lr_halve_every": 1}), ("metasgd", {"clip_norm": 0.5})]


@pytest.mark.skipif(not os.path.exists(os.path.join(
    os.environ.get("MINIMETA_DATA_DIR", ""), "images_background.npz")), reason="needs Omniglot")
@pytest.mark.parametrize("learner, options", EVERY, ids=[
    name + "".join(f"-{k}" for k in options) for name, options in EVERY])
def test_every_learner_resumed_ends_bit_for_bit_where_a_straight_run_does(learner, options,
                                                                          tmp_path):
    """Two iterations, then two more on --resume, against four straight: model (batch-norm
    buffers too), optimizer and learner state equal bit for bit (the resume tests above use
    MAML and ProtoNet; the model-based learners, FCE, a halving schedule had none)."""
    omniglot = "omniglot" in LEARNERS[learner].datasets
    settings = dict(learner=learner, dataset="omniglot" if omniglot else "sinusoid",
                    shots=1 if omniglot else 3, queries=1 if omniglot else 3, meta_batch=2,
                    validate_every=0, **({"ways": 3} if omniglot else {}), **options)
    training.train(RunConfig(iterations=4, out=str(tmp_path / "straight"), **settings), **QUIET)
    training.train(RunConfig(iterations=2, out=str(tmp_path / "cut"), **settings), **QUIET)
    training.train(RunConfig(iterations=4, out=str(tmp_path / "cut"), resume=True, **settings),
                   **QUIET)
    assert_same_state(checkpoint(str(tmp_path / "cut")), checkpoint(str(tmp_path / "straight")))
    assert [r["loss"] for r in metrics(str(tmp_path / "cut"))] == \
        [r["loss"] for r in metrics(str(tmp_path / "straight"))]
