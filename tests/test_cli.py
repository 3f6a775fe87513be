"""The command line end to end on tiny budgets: train, resume, eval, bad arguments."""
import json
import os

import numpy as np
import pytest

from minimeta import cli, io
from minimeta.data import omniglot


def test_train_resume_eval_round_trip_on_sinusoids(tmp_path, capsys):
    out = str(tmp_path / "run")
    args = ["train", "--learner", "maml", "--dataset", "sinusoid", "--shots", "5",
            "--queries", "5", "--meta-batch", "4", "--out", out]
    assert cli.main(args + ["--iterations", "3"]) == 0
    assert io.load(os.path.join(out, "checkpoint.npz"))["iteration"] == 3
    assert cli.main(args + ["--iterations", "5", "--resume"]) == 0
    assert "resumed from" in capsys.readouterr().out
    lines = [json.loads(x) for x in open(os.path.join(out, "metrics.jsonl"))]
    assert [x["iteration"] for x in lines] == [1, 2, 3, 4, 5]
    assert cli.main(["eval", "--checkpoint", os.path.join(out, "checkpoint.npz"),
                     "--episodes", "10"]) == 0
    assert "MSE" in capsys.readouterr().out
    # another step count (the MAML paper's 1 and 10 of one model; it had meant editing the
    # checkpoint): in the protocol line and in the report's settings
    report = str(tmp_path / "report.jsonl")
    mse = []
    for steps in ("1", "0"):
        assert cli.main(["eval", "--checkpoint", os.path.join(out, "checkpoint.npz"),
                         "--episodes", "10", "--test-steps", steps, "--report", report]) == 0
        row = json.loads(open(report).read().splitlines()[-1])
        assert f" {steps} test steps, " in row["protocol"]
        assert row["settings"]["test_steps"] == int(steps)
        mse.append(row["MSE"])
    assert mse[0] != mse[1]


def test_the_report_line_holds_the_mean_and_interval_printed(tmp_path, capsys, monkeypatch):
    """``eval --report``'s row (what ``examples/results_table.py`` tabulates): the mean and the
    95% half-interval ``run_episodes`` measured, as printed, and the run's two clocks from its
    checkpoint (the wall clock and the training time, which differ)."""
    from minimeta.experiments import fewshot
    out, report = str(tmp_path / "run"), str(tmp_path / "report.jsonl")
    assert cli.main(["train", "--learner", "maml", "--dataset", "sinusoid", "--shots", "2",
                     "--queries", "2", "--meta-batch", "2", "--iterations", "2",
                     "--out", out]) == 0
    path = os.path.join(out, "checkpoint.npz")
    io.save(path, {**io.load(path), "seconds": 30.0, "train_seconds": 20.0})
    monkeypatch.setattr(fewshot, "run_episodes", lambda *args, **kwargs: (0.25, 0.125))
    capsys.readouterr()
    assert cli.main(["eval", "--checkpoint", path, "--episodes", "5", "--report", report]) == 0
    assert capsys.readouterr().out.startswith("MSE 0.2500 ± 0.1250 (95% interval, 5 episodes)")
    (row,) = [json.loads(line) for line in open(report)]
    assert (row["MSE"], row["interval"], row["episodes"]) == (0.25, 0.125, 5)
    assert (row["wall_seconds"], row["train_seconds"], row["iterations"]) == (30.0, 20.0, 2)


def test_clip_norm_is_applied_and_logged(tmp_path, capsys, monkeypatch):
    """``grad_norm`` is the norm before clipping, so the proof that clipping happened is in
    what the optimizer applied: the gradient handed to Adam's update has norm ``clip`` at
    every step, and the trained weights barely move from their initial values, whereas a run
    with a bound that never binds moves them by about lr per step."""
    from minimeta.experiments.config import RunConfig
    from minimeta.experiments.registry import build
    from minimeta.optim import Adam

    applied = {}   # step -> squared norms of the gradients Adam's update received
    update = Adam._update

    def recording(self, i, p, g):
        applied.setdefault(self.steps, []).append(float(np.sum(g.astype(np.float64) ** 2)))
        return update(self, i, p, g)

    monkeypatch.setattr(Adam, "_update", recording)
    out = str(tmp_path / "clip")
    args = ["train", "--learner", "maml", "--dataset", "sinusoid", "--shots", "5",
            "--queries", "5", "--meta-batch", "4", "--iterations", "3", "--out", out]
    runs = {}
    for clip in (1e-12, 1e6):
        applied.clear()
        assert cli.main(args[:-1] + [f"{out}{clip:g}", "--clip-norm", f"{clip:g}"]) == 0
        lines = [json.loads(x) for x in open(os.path.join(f"{out}{clip:g}", "metrics.jsonl"))]
        norms = [x["grad_norm"] for x in lines]   # logged before clipping
        assert len(norms) == 3 and all(0 < n < 1e6 for n in norms)
        used = [np.sqrt(sum(applied[step])) for step in sorted(applied)]
        assert sorted(applied) == [1, 2, 3]
        # the gradients applied: rescaled to norm clip when over it, untouched when under
        # (float32 parameters, so float32 gradients: rtol 1e-5)
        np.testing.assert_allclose(used, [min(clip, n) for n in norms], rtol=1e-5)
        runs[clip] = (norms, io.load(os.path.join(f"{out}{clip:g}", "checkpoint.npz")))
    assert runs[1e-12][0][0] == pytest.approx(runs[1e6][0][0], rel=1e-6)  # same first batch
    state = runs[1e-12][1]
    model, _ = build(RunConfig.from_settings(state["settings"]))   # initial weights
    initial = model.state_dict()
    # Adam moves a weight by at most lr·|g|/eps per step: 3 · 1e-3 · 1e-12 / 1e-8 = 3e-7
    # clipped (plus float32 rounding); about lr = 1e-3 per step when the bound does not bind
    lr = state["settings"]["outer_lr"]
    for key, start in initial.items():
        clipped = runs[1e-12][1]["model"][key]
        bound = 3 * (lr * 1e-12 / 1e-8 + np.spacing(np.abs(start).astype(np.float32)))
        assert np.all(np.abs(clipped - start) <= bound), key
    moved = max(np.abs(runs[1e6][1]["model"][k] - v).max() for k, v in initial.items())
    assert moved > 0.5 * lr
    with pytest.raises(SystemExit) as exit_info:
        cli.main(args + ["--clip-norm", "0"])
    last = capsys.readouterr().err.splitlines()[-1]
    assert exit_info.value.code == 2
    assert last == "minimeta train: --clip-norm must be a finite number > 0, got 0.0"
    with pytest.raises(SystemExit):
        cli.main(["train", "--learner", "reptile", "--dataset", "sinusoid", "--clip-norm", "1",
                  "--iterations", "1", "--out", out + "r"])
    assert "Reptile has no meta-gradient" in capsys.readouterr().err


def test_bad_arguments_are_argparse_errors(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "--learner", "maml", "--ways", "0"])
    assert exit_info.value.code == 2 and "--ways must be at least 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["train", "--learner", "nope"])
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["eval", "--checkpoint", "/nonexistent.npz"])
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "--learner", "protonet", "--val-size", "-1"])
    assert "--val-size must be at least 0" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "--learner", "protonet", "--dataset", "sinusoid"])
    assert "classifies images" in capsys.readouterr().err


REAL = os.path.exists(os.path.join(omniglot.data_dir(), omniglot.FILES["background"][0]))


@pytest.mark.skipif(not REAL, reason="Omniglot not found in MINIMETA_DATA_DIR")
def test_short_omniglot_train_and_eval(tmp_path, monkeypatch, capsys):
    from minimeta.experiments import progress
    monkeypatch.setenv("MINIMETA_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(progress, "compiled_before", lambda: False)   # as on a fresh machine
    out = str(tmp_path / "omni")
    report = str(tmp_path / "report.jsonl")
    for learner in ("maml", "reptile", "protonet", "matching", "relation"):
        inner = ["--test-steps", "1"] if learner in ("maml", "reptile") else []  # no inner loop
        assert cli.main(["train", "--learner", learner, "--ways", "5", "--shots", "1",
                         "--queries", "2", "--iterations", "2", "--meta-batch", "2",
                         "--validate-every", "2", "--val-episodes", "3",
                         "--out", out + learner] + inner) == 0
        last = json.loads(open(os.path.join(out + learner, "metrics.jsonl")).readlines()[-1])
        assert 0.0 <= last["val_accuracy"] <= 1.0 and last["seconds"] > 0
        assert cli.main(["eval", "--checkpoint", os.path.join(out + learner, "checkpoint.npz"),
                         "--episodes", "4", "--report", report]) == 0
        said = capsys.readouterr().out
        assert "accuracy" in said
        assert said.count("(first use here: numba compiles") == 2     # train's, then eval's
    # metric learners test on other way and shot counts; MAML's head fixes its way count
    assert cli.main(["eval", "--checkpoint", out + "protonet/checkpoint.npz", "--episodes", "3",
                     "--ways", "20", "--shots", "5", "--queries", "1", "--report", report]) == 0
    rows = [json.loads(line) for line in open(report)]
    assert [r["learner"] for r in rows] == ["maml", "reptile", "protonet", "matching",
                                            "relation", "protonet"]
    assert (rows[-1]["ways"], rows[-1]["shots"], rows[-1]["train_ways"]) == (20, 5, 5)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["eval", "--checkpoint", out + "maml/checkpoint.npz", "--ways", "20"])
    assert exit_info.value.code == 2 and "head has 5 outputs" in capsys.readouterr().err


def test_demo_runs_on_a_tiny_budget(tmp_path, monkeypatch, capsys):
    """The Quickstart's main job: sinusoid MAML with its table and figure, then (when the
    data are found) a short ProtoNet run on Omniglot."""
    monkeypatch.setenv("MINIMETA_CACHE_DIR", str(tmp_path / "cache"))
    assert cli.main(["demo", "--iterations", "5", "--tasks", "5", "--out", str(tmp_path),
                     "--omniglot-iterations", "2", "--omniglot-episodes", "3"]) == 0
    out = capsys.readouterr().out
    assert "MSE on 5 held-out tasks" in out and "MAML" in out and "pretrained" in out
    if REAL:
        assert "accuracy" in out and "5-way 1-shot" in out
    else:
        assert "no Omniglot" in out


@pytest.mark.skipif(not REAL, reason="Omniglot not found in MINIMETA_DATA_DIR")
def test_an_interrupted_demo_says_to_run_the_demo_again_which_then_runs(tmp_path, monkeypatch,
                                                                      capsys):
    """Ctrl-C in the demo's ProtoNet part had said "(--resume)", which `minimeta demo` does
    not take, and a `minimeta train --resume` of that folder is refused (other settings)."""
    from minimeta.learners.metric import MetricLearner
    monkeypatch.setenv("MINIMETA_CACHE_DIR", str(tmp_path / "cache"))
    demo = ["demo", "--iterations", "2", "--tasks", "2", "--out", str(tmp_path),
            "--omniglot-iterations", "3", "--omniglot-episodes", "2"]
    calls, task_loss = [0], MetricLearner.task_loss

    def interrupted(self, task, params=None):
        calls[0] += 1
        if calls[0] == 2:                     # the second episode
            raise KeyboardInterrupt
        return task_loss(self, task, params)

    monkeypatch.setattr(MetricLearner, "task_loss", interrupted)
    assert cli.main(demo) == 130
    said = capsys.readouterr().out
    assert "interrupted: checkpoint at iteration 1 in" in said
    assert "(`minimeta demo` runs this part again)" in said and "--resume" not in said
    monkeypatch.setattr(MetricLearner, "task_loss", task_loss)
    assert cli.main(demo) == 0 and "accuracy" in capsys.readouterr().out
