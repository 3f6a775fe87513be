"""Runs that are never silently wrong or lost: the run folder is a contract (settings,
checkpoint with the model, the optimizer and the learner's own state, iteration, metrics
agree); a fresh run never overwrites one, a resumed run never changes what the checkpoint
fixes. A NaN that stops the run at a finite checkpoint, and a run killed at random moments,
then resumed: ``tests/test_runs_recovery.py``; a run stopped by Ctrl-C or a signal:
``tests/test_stop_signals.py``."""
import json
import os
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
    """The one line a refused ``minimeta train`` prints, checking its exit code and that it
    printed nothing else (its settings line had come first, as if the run had started)."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        cli.main(args)
    assert exit_info.value.code == code
    said = capsys.readouterr()
    assert said.err.count("\n") == 1 and said.out == "", said
    return said.err.rstrip("\n")


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
    ([("--meta-batch", "3")], "--meta-batch 4 (given 3)"),   # (--ways: not sinusoid's)
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
    watched = ["--checkpoint-every", "0", "--detect-anomaly", "--threads", "1"]
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
    assert sorted(os.listdir(out)) == ["checkpoint.npz", "curve.png", "metrics.jsonl"]
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


@pytest.mark.parametrize("left", ["lines after the checkpoint", "an empty log"])
def test_a_new_log_cut_short_before_its_first_checkpoint_resumes(left, tmp_path, capsys):
    # a run resumed without its log (moved aside) starts a new one after the checkpoint; killed
    # before its next checkpoint, that log begins after the iteration the checkpoint holds,
    # whose log_from still names the old log's first: --resume had then been refused ("0 of
    # them"), the move asked for again (found by probing)
    straight, out = str(tmp_path / "straight"), str(tmp_path / "run")
    assert cli.main(SINE + ["--iterations", "8", "--out", straight]) == 0
    assert cli.main(SINE + ["--iterations", "4", "--out", out]) == 0
    with open(os.path.join(straight, "metrics.jsonl")) as f:
        lines = f.readlines()
    with open(os.path.join(out, "metrics.jsonl"), "w") as f:   # what a SIGKILL leaves
        f.writelines(lines[4:6] if left == "lines after the checkpoint" else [])
    assert cli.main(SINE + ["--iterations", "8", "--out", out, "--resume"]) == 0
    assert "a new one starts at iteration 5" in capsys.readouterr().out
    assert metrics(out) == [{**r, "seconds": m["seconds"], "train_seconds": m["train_seconds"]}
                            for r, m in zip(metrics(straight)[4:], metrics(out))]
    assert len(metrics(out)) == 4 and checkpoint(out)["log_from"] == 5
    assert_same_state(checkpoint(out), checkpoint(straight))


# ----- 5. what each iteration draws and does, and what its progress line shows --------------
TINY = dict(learner="maml", dataset="sinusoid", shots=2, queries=3, meta_batch=2, out=None)


def test_iteration_i_draws_its_tasks_from_the_seed_and_i():
    """The episodes of iteration i come from (seed, i), the whole of a run's random state:
    a --seed that did not reach them had left every run on seed 0's tasks."""
    from minimeta.data import SinusoidTasks
    for seed in (0, 7):
        batch = training.batches(RunConfig(seed=seed, **TINY))
        for it in (0, 5):
            drawn, expected = batch(it), SinusoidTasks(seed=[seed, it]).sample(2, 2, 3)
            for got, want in zip(drawn, expected):
                assert all(np.array_equal(a, b) for a, b in zip(got, want)), (seed, it)


def test_the_outer_rate_halves_every_lr_halve_every_iterations(monkeypatch):
    """Iterations 0..4 with --lr-halve-every 2 step at rates 1, 1, ½, ½, ¼ (× --outer-lr):
    the halving at the start of iteration 2, not one early."""
    from minimeta.optim import Adam
    rates, step = [], Adam.step

    def spy(self):
        rates.append(self.lr)
        return step(self)
    monkeypatch.setattr(Adam, "step", spy)
    training.train(RunConfig(iterations=5, lr_halve_every=2, outer_lr=0.01, **TINY), **QUIET)
    assert rates == [0.01, 0.01, 0.005, 0.005, 0.0025]


def test_the_progress_line_shows_the_loss_averaged_over_the_last_smooth_iterations(capsys):
    """``train(smooth=3)`` (the sinusoid experiment's 100): the last line's loss is the mean of
    the last 3 iterations' losses, not the last one's."""
    capsys.readouterr()
    run = training.train(RunConfig(iterations=5, **TINY), smooth=3, **QUIET)
    (last,) = [line for line in capsys.readouterr().err.splitlines()
               if line.startswith("train 5/5 ")]
    assert f"  loss {np.mean(run.curve[-3:]):.4g}" in last, last
    assert f"{np.mean(run.curve[-3:]):.4g}" != f"{run.curve[-1]:.4g}"   # (they differ here)
