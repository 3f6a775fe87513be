"""Mistakes a user makes at the command line, found by a second probe of the CLI (2026-12-01),
each refused in one line before anything runs or is lost; every one had been accepted,
misread, refused late or by a traceback, or had cost the user a run.

Read next: ``test_runs.py`` (checkpoints, resume and stops).
"""
import os
import types

import pytest

from minimeta import cli, io
from minimeta.experiments.config import RunConfig
from minimeta.experiments.runfolder import first_missing, unmake
from test_hostile_input import refused, write_checkpoint

SINE = ["train", "--learner", "maml", "--dataset", "sinusoid", "--iterations", "2",
        "--meta-batch", "1"]


@pytest.mark.parametrize("argv, line", [
    (SINE + ["--lr", "100", "--out", "x"],           # had been --lr-halve-every 100
     "minimeta train: error: unrecognized arguments: --lr 100 (see minimeta train --help)"),
    (["eval", "--checkpoint", "c.npz", "--bogus", "1"],
     "minimeta eval: error: unrecognized arguments: --bogus 1 (see minimeta eval --help)"),
    (SINE + ["--out", ""], "minimeta train: --out must be a folder path, got ''"),
    (["train", "--learner", "maml", "--split", "lake", "--val-size", "50", "--out", "x"],
     "minimeta train: --val-size does not apply to --split lake (its background and "
     "evaluation parts hold no validation part), got 50"),       # had become 0, silently
    (["gradcheck", "--order", "99"], "minimeta gradcheck: --order must be at most 4, got 99"),
    (["eval", "--checkpoint", ""], "minimeta eval: load: no checkpoint path given (an empty "
                                   "one)"),
    (["demo", "--omniglot-iterations", str(10 ** 11)],   # had come after the sinusoid part
     f"minimeta demo: --omniglot-iterations must be at most 1000000000, got {10 ** 11}"),
    (["demo", "--tasks", str(10 ** 11)],                 # had trained, then run out of memory
     f"minimeta demo: --tasks must be at most 1000000, got {10 ** 11}"),
])
def test_a_mistake_is_one_line_before_anything_runs(argv, line, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert refused(argv, capsys) == line
    assert os.listdir(tmp_path) == []


def test_an_unknown_option_before_the_subcommand_is_not_blamed_on_it(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["--bogus", "demo"])
    assert info.value.code == 2
    assert capsys.readouterr().err == ("minimeta: error: unrecognized arguments: --bogus (see "
                                       "minimeta --help)\n")


def test_multi_step_loss_weights_must_be_finite():
    # a NaN weight passed every comparison: ignored with one step, or a NonFiniteError later
    for weights in ([float("nan")], [float("inf"), 1.0], [-1.0]):
        with pytest.raises(ValueError, match="^--multi-step-loss weights must be finite and "
                                             ">= 0"):
            RunConfig(learner="maml", dataset="sinusoid", multi_step_loss=weights)
    assert RunConfig(learner="maml", split="lake").val_size == 0      # lake: none held out
    old = RunConfig(learner="maml").settings()          # an older dict: lake with 100
    old["split"] = "lake"
    assert RunConfig.from_settings(old).val_size == 0   # read as before, not refused
    assert RunConfig(learner="maml").val_size == 100


def test_a_sinusoid_run_has_no_parts_and_a_report_needs_a_path(tmp_path, capsys):
    path = write_checkpoint(tmp_path / "c.npz", RunConfig(learner="maml", dataset="sinusoid",
                                                          out=None))
    assert refused(["eval", "--checkpoint", path, "--part", "val"], capsys) == (
        "minimeta eval: --part val does not apply to sinusoid regression (its tasks are drawn "
        "afresh, not split into parts)")                # the same number, labelled val
    assert refused(["eval", "--checkpoint", path, "--report", ""], capsys) == (
        "minimeta eval: --report needs a file path, got ''")     # had run, reporting nowhere


def test_a_folder_with_metrics_and_no_checkpoint_is_not_sent_in_a_circle(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.jsonl").write_text('{"iteration": 1}\n')
    # one said "--resume to continue it", the other "no run to resume: drop --resume"
    assert refused(SINE + ["--out", str(out)], capsys) == (
        f"minimeta train: {out} already holds a run (metrics.jsonl): --overwrite to replace "
        "it, or another --out")
    assert refused(SINE + ["--out", str(out), "--resume"], capsys) == (
        f"minimeta train: --resume: {out} holds metrics.jsonl but no checkpoint to resume "
        "from: --overwrite to start afresh there, or another --out")


def test_a_folder_that_cannot_be_written_is_refused_before_training(tmp_path, capsys,
                                                                    monkeypatch):
    # a resumed run had trained up to its first checkpoint (300 s by default), then failed
    # naming a temporary file; the probe is a real write (root may write a 0555 folder)
    from minimeta.experiments import runfolder

    assert cli.main(SINE + ["--out", str(tmp_path / "run")]) == 0

    real = os.open

    def refuse(path, *args, **kwargs):
        if ".tmp-probe" in str(path):
            raise PermissionError(13, "Permission denied")
        return real(path, *args, **kwargs)

    monkeypatch.setattr(runfolder.os, "open", refuse)
    line = refused(SINE + ["--out", str(tmp_path / "run"), "--resume", "--iterations", "5"],
                   capsys)
    assert line == (f"minimeta train: --out {tmp_path / 'run'} cannot be written (Permission "
                    "denied): a folder you may write to")


def test_a_refused_run_removes_every_folder_it_made_and_only_those(tmp_path, capsys,
                                                                   monkeypatch):
    from minimeta.experiments import training

    def no_episodes(config, start=0):     # as an Omniglot split that cannot give them
        raise ValueError("--shots 30 + --queries 15 ask for 45 drawings of a class")

    monkeypatch.setattr(training, "batches", no_episodes)
    keep = tmp_path / "kept"
    keep.mkdir()
    out = keep / "a" / "b" / "c"
    assert first_missing(str(out)) == str(keep / "a")
    refused(SINE + ["--out", str(out)], capsys)         # had left a and a/b
    assert sorted(os.listdir(keep)) == []
    (keep / "a" / "b").mkdir(parents=True)
    (keep / "a" / "note").write_text("mine")
    unmake(str(keep / "a" / "b"), str(keep / "a"))   # stops at a folder that is not empty
    assert sorted(os.listdir(keep / "a")) == ["note"]


def test_the_demo_replaces_only_an_earlier_demo_s_run(tmp_path):
    # --out myruns had overwritten the user's own myruns/protonet run without a word
    args = types.SimpleNamespace(out=str(tmp_path), tasks=2, omniglot_iterations=3,
                                 omniglot_episodes=2, seed=0)
    mine = RunConfig(learner="protonet", out=str(tmp_path / "protonet"))
    write_checkpoint(tmp_path / "protonet" / "checkpoint.npz", mine)
    with pytest.raises(ValueError, match=r"protonet holds a run that is not an earlier demo's "
                                         r"\(checkpoint.npz\), which the demo would replace"):
        cli._demo_checks(args)
    demo = cli._demo_checks(types.SimpleNamespace(**{**vars(args), "out": str(tmp_path / "d")}))
    write_checkpoint(tmp_path / "d" / "protonet" / "checkpoint.npz", demo)
    again = types.SimpleNamespace(**{**vars(args), "out": str(tmp_path / "d"), "seed": 4,
                                     "omniglot_iterations": 9})
    assert cli._demo_checks(again).iterations == 9       # its own run: replaced, as before
    assert io.load(str(tmp_path / "protonet" / "checkpoint.npz"))["settings"] == \
        mine.settings()                                  # the user's untouched


def test_memory_errors_say_what_failed_even_without_a_message():
    assert cli.message(MemoryError()) == ("out of memory (an allocation failed): ask for "
                                          "fewer or smaller tasks, episodes or batches")


def test_a_run_through_a_link_and_dotdot_keeps_its_files_together(tmp_path):
    # link/../run is where the OS goes (the link's target's parent); the checkpoint had gone
    # to the path made absolute as text (./run), apart from the metrics, and the folder
    # probe had refused the run (found by review)
    (tmp_path / "far" / "inner").mkdir(parents=True)
    (tmp_path / "link").symlink_to(tmp_path / "far" / "inner")
    out = os.path.join(str(tmp_path / "link"), os.pardir, "run")
    assert cli.main(SINE + ["--out", out]) == 0
    assert sorted(os.listdir(tmp_path / "far" / "run")) == ["checkpoint.npz", "metrics.jsonl"]
    assert not (tmp_path / "run").exists()
