"""Runs that are never silently wrong or lost: the run folder is a contract (settings,
checkpoint with the model, the optimizer and the learner's own state, iteration, metrics
agree); a fresh run never overwrites one, a resumed run never changes what the checkpoint
fixes; a NaN stops the run at a finite checkpoint; and a run killed at random moments, then
resumed, ends bit for bit where an uninterrupted one does. (A run stopped by Ctrl-C or a
signal: ``tests/test_stop_signals.py``.)"""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from minimeta import cli, io
from minimeta.experiments import training
from minimeta.experiments.config import MAY_CHANGE_ON_RESUME, RunConfig
from minimeta.experiments.evaluation import run_episodes
from minimeta.experiments.registry import build

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SINE = ["train", "--learner", "maml", "--dataset", "sinusoid", "--shots", "5", "--queries",
        "5", "--meta-batch", "4"]
QUIET = dict(log=lambda *a: None)


def metrics(folder):
    """The metrics log's records; strict JSON (no NaN or Infinity constants)."""
    def no_constants(name):
        raise AssertionError(f"metrics.jsonl holds {name}, which is not JSON")

    with open(os.path.join(folder, "metrics.jsonl")) as f:
        return [json.loads(line, parse_constant=no_constants) for line in f]


def checkpoint(folder):
    return io.load(os.path.join(folder, "checkpoint.npz"))


def assert_same_state(a, b):
    """Model, optimizer, learner state and iteration equal, bit for bit."""
    assert a["iteration"] == b["iteration"]
    for key in ("model", "optim", "learner"):
        assert (key in a) == (key in b), key
        flat_a, flat_b = flatten(a.get(key, {})), flatten(b.get(key, {}))
        assert flat_a.keys() == flat_b.keys(), key
        for name in flat_a:
            np.testing.assert_array_equal(flat_a[name], flat_b[name], err_msg=f"{key}/{name}")


def flatten(tree, prefix=""):
    out = {}
    for k, v in tree.items():
        out.update(flatten(v, f"{prefix}{k}/") if isinstance(v, dict) else {prefix + k: v})
    return out


def refused(args, capsys, code=2):
    """The one line a refused ``minimeta train`` prints, checking its exit code."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        cli.main(args)
    assert exit_info.value.code == code
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    return err.rstrip("\n")


# ----- 1. the checkpoint holds the learner's own state: Meta-SGD's rates ---------------------
def test_metasgd_rates_are_saved_and_a_resumed_run_equals_a_straight_one(tmp_path):
    args = SINE[:2] + ["metasgd"] + SINE[3:]
    straight, cut = str(tmp_path / "straight"), str(tmp_path / "cut")
    assert cli.main(args + ["--iterations", "6", "--out", straight]) == 0
    assert cli.main(args + ["--iterations", "3", "--out", cut]) == 0
    assert cli.main(args + ["--iterations", "6", "--out", cut, "--resume"]) == 0
    assert [r["loss"] for r in metrics(cut)] == [r["loss"] for r in metrics(straight)]
    a, b = checkpoint(straight), checkpoint(cut)
    assert_same_state(a, b)
    rates = a["learner"]["rates"]
    _, learner = build(RunConfig.from_settings(a["settings"]))
    assert sorted(rates) == sorted(learner.rates) and len(rates) == 6
    assert all(not np.allclose(rates[k], learner.rates[k].numpy()) for k in rates)  # trained
    learner.load_state_dict(a["learner"])           # what eval loads: the trained rates
    assert all(np.array_equal(rates[k], learner.rates[k].numpy()) for k in rates)
    # every learner's checkpoint has the key: {} when it trains nothing besides the model
    assert cli.main(SINE + ["--iterations", "1", "--out", str(tmp_path / "maml")]) == 0
    assert checkpoint(str(tmp_path / "maml"))["learner"] == {}


def test_eval_uses_the_trained_metasgd_rates(tmp_path, capsys):
    out = str(tmp_path / "run")
    args = SINE[:2] + ["metasgd"] + SINE[3:] + ["--outer-lr", "0.01", "--test-steps", "3"]
    assert cli.main(args + ["--iterations", "20", "--out", out]) == 0
    state = checkpoint(out)
    capsys.readouterr()
    assert cli.main(["eval", "--checkpoint", os.path.join(out, "checkpoint.npz"),
                     "--episodes", "10"]) == 0
    printed = capsys.readouterr().out.splitlines()[-1]
    config = RunConfig.from_settings(state["settings"], resume=False)
    results = []
    for rates in (state["learner"], None):   # trained rates, then the initial ones
        model, learner = build(config)
        model.load_state_dict(state["model"])
        if rates is not None:
            learner.load_state_dict(rates)
        mean, half = run_episodes(learner, training.task_source(config, "test"), 10, 12345)
        results.append(f"MSE {mean:.4f} ± {half:.4f} ")
    assert results[0] != results[1]          # the rates matter to the result
    assert printed.startswith(results[0])


def test_a_metasgd_checkpoint_without_its_rates_is_not_resumed(tmp_path, capsys):
    args = SINE[:2] + ["metasgd"] + SINE[3:] + ["--out", str(tmp_path)]
    assert cli.main(args + ["--iterations", "2"]) == 0
    state = checkpoint(str(tmp_path))
    del state["learner"]                             # as written before the key existed
    io.save(str(tmp_path / "checkpoint.npz"), state)
    assert refused(args + ["--iterations", "3", "--resume"], capsys) == (
        f"minimeta train: --resume: {tmp_path}/checkpoint.npz was written before a learner's "
        "own state was saved: metasgd's would restart from its initial values")


# ----- 2. a fresh run never overwrites a run ------------------------------------------------
def test_a_fresh_run_into_a_folder_holding_a_run_refuses_unless_overwrite(tmp_path, capsys):
    out = str(tmp_path / "run")
    assert cli.main(SINE + ["--iterations", "6", "--out", out]) == 0
    before = {n: open(os.path.join(out, n), "rb").read() for n in os.listdir(out)}
    assert refused(SINE + ["--iterations", "4", "--out", out], capsys) == (
        f"minimeta train: {out} already holds a run (checkpoint.npz, metrics.jsonl): --resume "
        "to continue it, --overwrite to replace it, or another --out")
    assert {n: open(os.path.join(out, n), "rb").read() for n in os.listdir(out)} == before
    os.remove(os.path.join(out, "checkpoint.npz"))   # metrics alone are a run too
    assert "already holds a run (metrics.jsonl)" in refused(
        SINE + ["--iterations", "4", "--out", out], capsys)
    assert cli.main(SINE + ["--iterations", "4", "--out", out, "--overwrite"]) == 0
    assert [r["iteration"] for r in metrics(out)] == [1, 2, 3, 4]
    assert checkpoint(out)["iteration"] == 4
    assert refused(SINE + ["--out", out, "--resume", "--overwrite"], capsys) == (
        "minimeta train: --resume and --overwrite exclude each other: continue the run in "
        "--out, or replace it")
    other = tmp_path / "notes"                       # a folder with other files is free
    other.mkdir()
    (other / "README").write_text("mine")
    assert cli.main(SINE + ["--iterations", "1", "--out", str(other)]) == 0
    assert (other / "README").read_text() == "mine"


# ----- 3. resume: a run folder that exists, the settings its checkpoint fixes ---------------
def test_resume_refuses_a_folder_without_a_run(tmp_path, capsys):
    out = str(tmp_path / "nothing")
    assert refused(SINE + ["--out", out, "--resume"], capsys) == (
        f"minimeta train: --resume: no run to resume in {out} ({out}/checkpoint.npz does not "
        "exist); drop --resume to start one there")
    assert not os.path.exists(out)


RESUMED_OTHERWISE = [  # (options changed on resume, what the error lists)
    ([("--learner", "fomaml")], "--learner maml (given fomaml)"),
    ([("--ways", "3")], "--ways 5 (given 3)"),
    ([("--shots", "2")], "--shots 5 (given 2)"),
    ([("--inner-steps", "2"), ("--multi-step-loss",)],
     "--multi-step-loss False (given True), --inner-steps 1 (given 2)"),
    ([("--inner-lr", "0.02"), ("--seed", "1")],
     "--inner-lr 0.01 (given 0.02), --seed 0 (given 1)"),
    ([("--clip-norm", "5")], "--clip-norm unset (given 5.0)"),
    ([("--test-steps", "3"), ("--outer-lr", "0.01")],
     "--test-steps 10 (given 3), --outer-lr 0.001 (given 0.01)"),
]


@pytest.mark.parametrize("options,listed", RESUMED_OTHERWISE,
                         ids=[o[0][0] for o, _ in RESUMED_OTHERWISE])
def test_resume_refuses_other_settings_listing_them(options, listed, tmp_path, capsys):
    out = str(tmp_path / "run")
    assert cli.main(SINE + ["--iterations", "2", "--out", out]) == 0
    before = open(os.path.join(out, "checkpoint.npz"), "rb").read()
    args = SINE + ["--iterations", "4", "--out", out, "--resume"]
    for option in options:                            # replace the option, or add it
        if option[0] in args:
            args[args.index(option[0]) + 1] = option[1]
        else:
            args += list(option)
    assert refused(args, capsys) == (
        f"minimeta train: --resume: the run in {out} was trained with other settings, which "
        f"its checkpoint fixes: {listed}; give its values, or start afresh (--overwrite, or "
        "another --out)")
    assert open(os.path.join(out, "checkpoint.npz"), "rb").read() == before


def test_maml_to_reptile_is_refused_and_the_run_still_resumes(tmp_path, capsys):
    out = str(tmp_path / "run")
    base = ["train", "--dataset", "sinusoid", "--out", out, "--learner"]
    assert cli.main(base + ["maml", "--iterations", "2"]) == 0
    message = refused(base + ["reptile", "--iterations", "3", "--resume"], capsys)
    assert message.startswith(f"minimeta train: --resume: the run in {out} was trained with "
                              "other settings, which its checkpoint fixes: --learner maml "
                              "(given reptile), --outer-lr 0.001 (given 1.0), --lr-halve-every "
                              "0 (given unset); ")
    assert cli.main(base + ["maml", "--iterations", "4", "--resume"]) == 0   # no KeyError
    assert [r["iteration"] for r in metrics(out)] == [1, 2, 3, 4]


def test_resume_only_goes_on_and_may_change_how_the_run_is_watched(tmp_path, capsys):
    out = str(tmp_path / "run")
    assert cli.main(SINE + ["--iterations", "6", "--out", out]) == 0
    assert refused(SINE + ["--iterations", "3", "--out", out, "--resume"], capsys) == (
        f"minimeta train: --resume: --iterations 3 is below the checkpoint's iteration 6 in "
        f"{out}: a resumed run only goes on (--iterations 6 or more)")
    assert checkpoint(out)["iteration"] == 6 and len(metrics(out)) == 6
    assert cli.main(SINE + ["--iterations", "6", "--out", out, "--resume"]) == 0  # done
    assert checkpoint(out)["iteration"] == 6 and len(metrics(out)) == 6
    watched = ["--checkpoint-every", "0", "--detect-anomaly", "--validate-every", "1",
               "--val-episodes", "3", "--threads", "1"]
    assert cli.main(SINE + ["--iterations", "8", "--out", out, "--resume"] + watched) == 0
    assert [r["iteration"] for r in metrics(out)] == list(range(1, 9))
    assert MAY_CHANGE_ON_RESUME == {"iterations", "out", "resume", "overwrite", "device",
                                    "checkpoint_every", "detect_anomaly", "validate_every",
                                    "val_episodes", "minutes", "threads"}


# ----- 4. the metrics log is cut back to the checkpoint; stale temporaries go -----------------
def test_resume_cuts_the_log_to_the_checkpoint_and_removes_stale_temporaries(tmp_path, capsys):
    straight, out = str(tmp_path / "straight"), str(tmp_path / "run")
    assert cli.main(SINE + ["--iterations", "6", "--out", straight]) == 0
    assert cli.main(SINE + ["--iterations", "4", "--out", out]) == 0
    with open(os.path.join(out, "metrics.jsonl"), "a") as f:  # run after the checkpoint,
        f.write('{"iteration": 5, "loss": 1.0}\n{"iteration": 6, "loss": 2.0}\n{"iter')  # torn
    for name in (".tmp-a1b2.npz", ".tmp-x.npz"):               # writes a kill cut short
        open(os.path.join(out, name), "wb").write(b"PK\x03")
    assert cli.main(SINE + ["--iterations", "6", "--out", out, "--resume"]) == 0
    assert metrics(out) == [{**r, "seconds": m["seconds"], "train_seconds": m["train_seconds"]}
                            for r, m in zip(metrics(straight), metrics(out))]
    assert sorted(os.listdir(out)) == ["checkpoint.npz", "metrics.jsonl"]
    assert_same_state(checkpoint(out), checkpoint(straight))
    # a log that lacks iterations the checkpoint has done is not silently continued
    lines = open(os.path.join(out, "metrics.jsonl")).readlines()
    open(os.path.join(out, "metrics.jsonl"), "w").writelines(lines[:2] + lines[3:])
    assert refused(SINE + ["--iterations", "7", "--out", out, "--resume"], capsys) == (
        f"minimeta train: --resume: {out}/metrics.jsonl does not hold iterations 1 to 6, once "
        "each (its checkpoint's), but 2 of them: move it aside to go on with a new log from "
        "iteration 7 (the checkpoint is kept), or --overwrite to start afresh")
    # moved aside, the run goes on from its checkpoint (only --overwrite had been offered,
    # which deletes it): found by probing
    os.rename(os.path.join(out, "metrics.jsonl"), os.path.join(out, "old.jsonl"))
    assert cli.main(SINE + ["--iterations", "7", "--out", out, "--resume"]) == 0
    assert "metrics.jsonl was not there: a new one starts at iteration 7" in \
        capsys.readouterr().out
    assert [r["iteration"] for r in metrics(out)] == [7] and checkpoint(out)["iteration"] == 7
    assert cli.main(SINE + ["--iterations", "9", "--out", out, "--resume"]) == 0   # and again
    assert [r["iteration"] for r in metrics(out)] == [7, 8, 9]    # (had been refused: "0 of
    lines = open(os.path.join(out, "metrics.jsonl")).readlines()   # 1 to 7")
    open(os.path.join(out, "metrics.jsonl"), "w").writelines(lines[1:])
    assert refused(SINE + ["--iterations", "10", "--out", out, "--resume"], capsys).endswith(
        "does not hold iterations 7 to 9, once each (its checkpoint's), but 0 of them: move it "
        "aside to go on with a new log from iteration 10 (the checkpoint is kept), or "
        "--overwrite to start afresh")


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
    assert sorted(os.listdir(out)) == ["checkpoint.npz", "metrics.jsonl"]


def wait_until_logged(out, lines, child, timeout=60):
    """Wait until the run in folder ``out`` has logged ``lines`` iterations, or ``child`` has
    ended, or ``timeout`` seconds have passed; assert that the child still runs."""
    deadline = time.monotonic() + timeout
    while lines_in(os.path.join(out, "metrics.jsonl")) < lines and child.poll() is None \
            and time.monotonic() < deadline:
        time.sleep(0.01)
    assert child.poll() is None, "the child ended before it could be stopped"


def lines_in(path):
    try:
        with open(path, "rb") as f:
            return f.read().count(b"\n")
    except FileNotFoundError:
        return 0


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
    lines = progress_lines(SINE + ["--iterations", "8", "--out", out, "--resume"], capsys,
                           monkeypatch)
    # an iteration every 31 s, so 31 s to go after the 7th (counted from 0, the rate read
    # 7 iterations in 31 s, and the eta 4 s)
    assert [line.split("  ")[0::2] for line in lines] == [
        ["train 7/8", "eta 31s"], ["train 8/8", "eta 0s"]], lines


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
    bar.update(0)
    assert out.getvalue().split("  ")[2] == "eta 60s", out.getvalue()   # not 100 − 31 = 69


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
