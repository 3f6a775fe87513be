"""Mistakes a user makes at the command line, found by a second probe of the CLI (2026-12-01),
each refused in one line before anything runs or is lost; every one had been accepted,
misread, refused late or by a traceback, or had cost the user a run. Below them, the same for
``minimeta eval`` (from the public-API probe of ``test_user_traps.py``): SNAIL is not tested
beyond its shots, nor any learner at one way or at more ways than the part holds; MANN's and
Matching's (full context) protocols are said as they are; the demo's hint without Omniglot fits
how the data folder is set; a path through a file is one line. Last, a MANN run larger than
the memory available is refused by its estimate before anything is built.

Read next: ``test_runs.py`` (checkpoints, resume and stops).
"""
import os
import types

import pytest

from minimeta import cli, io
from minimeta.experiments.config import RunConfig
from minimeta.experiments.demo import checks as demo_checks, omniglot_part
from minimeta.experiments.runfolder import first_missing, unmake
from test_hostile_input import REAL, omni, refused, write_checkpoint  # noqa: F401 (a fixture)

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
    *[(["train", "--learner", "protonet", *where, "--validate-every", "1", "--out", "x"],
       f"minimeta train: --validate-every does not apply: {' '.join(where)} holds out no "
       "validation characters (give --val-size N with --split vinyals, or --validate-every 0)")
      for where in (["--split", "lake"], ["--val-size", "0"])],   # had been ignored, silently
    (["gradcheck", "--order", "99"], "minimeta gradcheck: --order must be at most 4, got 99"),
    (["eval", "--checkpoint", "c.npz", "--test-steps", "-1"],
     "minimeta eval: --test-steps must be at least 0, got -1"),
    (["eval", "--checkpoint", ""], "minimeta eval: load: no checkpoint path given (an empty "
                                   "one)"),
    (["demo", "--omniglot-iterations", str(10 ** 11)],   # had come after the sinusoid part
     f"minimeta demo: --omniglot-iterations must be at most 1000000000, got {10 ** 11}"),
    (["demo", "--tasks", str(10 ** 11)],                 # had trained, then run out of memory
     f"minimeta demo: --tasks must be at most 1000000, got {10 ** 11}"),
    (["demo", "--seed", "999999999"],                    # had trained MAML, then named
     "minimeta demo: --seed must be at most 999999998 (the task streams of MAML and of the "
     "baseline are seeded with seed + 1 and seed + 2), got 999999999"),   # "stream_seed"
    (["demo", "--iterations", str(10 ** 10), "--omniglot-iterations", "0"],  # had made --out
     f"minimeta demo: --iterations must be at most 1000000000, got {10 ** 10}"),
])
def test_a_mistake_is_one_line_before_anything_runs(argv, line, tmp_path, monkeypatch, capsys,
                                                    nothing_may_run):
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
        demo_checks(args)
    demo = demo_checks(types.SimpleNamespace(**{**vars(args), "out": str(tmp_path / "d")}))
    write_checkpoint(tmp_path / "d" / "protonet" / "checkpoint.npz", demo)
    again = types.SimpleNamespace(**{**vars(args), "out": str(tmp_path / "d"), "seed": 4,
                                     "omniglot_iterations": 9})
    assert demo_checks(again).iterations == 9       # its own run: replaced, as before
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
    assert sorted(os.listdir(tmp_path / "far" / "run")) == ["checkpoint.npz", "curve.png",
                                                            "metrics.jsonl"]
    assert not (tmp_path / "run").exists()


def test_eval_refuses_snail_at_more_shots_than_it_was_trained_with(tmp_path, capsys):
    path = write_checkpoint(tmp_path / "snail.npz", RunConfig(learner="snail", shots=1))
    line = refused(["eval", "--checkpoint", path, "--shots", "5"], capsys)
    assert line == ("minimeta eval: snail was trained with up to 1 shots, its sequences "
                    "6 steps long; it cannot be tested 5-shot")


def test_eval_takes_snail_at_the_shots_it_was_trained_with_and_fewer():
    """The bound above is the training shot count itself: SNAIL trained 3-shot is tested 3-shot
    (its own protocol) and 1-shot; only 4 is refused."""
    from minimeta.experiments.fewshot import _episode_shape
    config = RunConfig(learner="snail", shots=3)
    assert _episode_shape(config, "test", None, None, None) == (5, 3, config.queries)
    assert _episode_shape(config, "test", None, 1, None)[1] == 1
    with pytest.raises(ValueError, match="trained with up to 3 shots"):
        _episode_shape(config, "test", None, 4, None)


@pytest.mark.skipif(not REAL, reason="needs Omniglot (MINIMETA_DATA_DIR)")
def test_eval_at_more_ways_than_the_test_part_has_names_the_option(omni, capsys):
    line = refused(["eval", "--checkpoint", omni, "--ways", "2000", "--episodes", "2"], capsys)
    assert line == "minimeta eval: --ways 2000 needs 2000 classes; the test part has 1692"


@pytest.mark.skipif(not REAL, reason="needs Omniglot (MINIMETA_DATA_DIR)")
def test_eval_refuses_one_way(tmp_path, capsys):        # one class: accuracy 1, meaningless
    path = write_checkpoint(tmp_path / "p.npz", RunConfig(learner="protonet"))
    assert refused(["eval", "--checkpoint", path, "--ways", "1", "--episodes", "2"],
                   capsys) == "minimeta eval: --ways must be at least 2 to classify, got 1"


@pytest.mark.skipif(not REAL, reason="needs Omniglot (MINIMETA_DATA_DIR)")
def test_a_mann_evaluation_says_it_scores_every_step_not_queries(tmp_path, capsys):
    # its protocol had read "10 queries per class": MANN reads no queries
    path = write_checkpoint(tmp_path / "mann.npz", RunConfig(learner="mann", shots=2))
    assert cli.main(["eval", "--checkpoint", path, "--episodes", "2"]) == 0
    said = capsys.readouterr().out
    assert "5-way sequences of 2 drawings per class, every step scored" in said, said
    assert "queries" not in said


@pytest.mark.skipif(not REAL, reason="needs Omniglot (MINIMETA_DATA_DIR)")
def test_an_evaluation_says_when_matching_has_full_context_embeddings(tmp_path, capsys):
    path = write_checkpoint(tmp_path / "m.npz", RunConfig(learner="matching", fce=True))
    assert cli.main(["eval", "--checkpoint", path, "--episodes", "2"]) == 0
    assert "| matching with full context embeddings on omniglot" in capsys.readouterr().out


def test_the_demo_s_hint_without_omniglot_fits_how_the_data_dir_is_set(tmp_path, monkeypatch,
                                                                        capsys):
    # with MINIMETA_DATA_DIR set it had said "`minimeta train` to download it", which then
    # refuses to download (found by probing)
    args = types.SimpleNamespace(omniglot_iterations=1, omniglot_episodes=2, seed=0,
                                 out=str(tmp_path), tasks=2)
    monkeypatch.setenv("MINIMETA_DATA_DIR", str(tmp_path / "empty"))
    omniglot_part(args, demo_checks(args))
    assert "or unset it and `minimeta train` downloads them" in capsys.readouterr().out
    monkeypatch.delenv("MINIMETA_DATA_DIR")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    omniglot_part(args, demo_checks(args))
    assert "set MINIMETA_DATA_DIR to a folder holding them, or `minimeta train` downloads " \
        "them" in capsys.readouterr().out


# ----- 3. ordinary mistakes, no tracebacks -----------------------------------------------------
def test_out_on_a_file_is_one_line(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("")
    train = ["train", "--learner", "maml", "--dataset", "sinusoid", "--iterations", "1"]
    assert refused(train + ["--out", str(afile)], capsys) == (
        f"minimeta train: {afile}: File exists (a file is where a folder is needed: choose "
        "another path)")
    # unwritable: tests run as root, whom chmod does not stop; a path under a file stops all
    for argv in (train + ["--out", str(afile / "sub")],
                 ["demo", "--iterations", "1", "--tasks", "2", "--out", str(afile / "sub")]):
        assert refused(argv, capsys).endswith(
            f"{afile}/sub: Not a directory (a part of the path is a file, not a folder: "
            "choose another path)")


@pytest.mark.parametrize("argv, message", [
    (["train", "--learner", "protonet", "--ways", "5000"],
     "--ways 5000 needs 5000 classes; the training part has 4400 (with --val-size 100 held "
     "out)"),
    (["train", "--learner", "maml", "--split", "lake", "--ways", "4000"],
     "--ways 4000 needs 4000 classes; the training part has 3856"),
    (["train", "--learner", "maml", "--val-size", "1", "--validate-every", "2"],
     "--val-size 1 leaves 4 validation classes, fewer than the 5 ways of validation: raise "
     "--val-size, or validate never (--validate-every 0)"),
])
def test_more_ways_than_omniglot_has_are_refused_before_a_download(argv, message, tmp_path,
                                                                   monkeypatch, capsys):
    """On a fresh machine they had downloaded Omniglot (or failed to, offline), then been
    refused (an audit of packaging, 2026-12-03): the published archives' sizes are known."""
    from minimeta.data import fetch
    monkeypatch.setenv("MINIMETA_DATA_DIR", str(tmp_path / "none"))
    monkeypatch.setattr(fetch, "download", lambda *_, **__: pytest.fail("downloaded"))
    out = tmp_path / "run"
    assert refused(argv + ["--out", str(out)], capsys) == f"minimeta train: {message}"
    assert sorted(os.listdir(tmp_path)) == []


def test_a_mann_run_larger_than_the_memory_is_refused_before_anything_is_built(
        tmp_path, monkeypatch, capsys):
    """2000-way MANN episodes are sequences of 20 000 steps, whose graph the backward keeps:
    about 90 GiB a meta-batch of 16. The run had built its model, loaded Omniglot and written
    its folder, then taken memory until the system killed it (at 22 GB). It is refused by
    the estimate, in one line, before anything is built (here: with 16 GiB available)."""
    from minimeta.experiments import registry, training
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(registry, "available_memory", lambda: 16 * 2 ** 30,
                        raising=False)      # (without the check, the run reached build)
    monkeypatch.setattr(training, "build", lambda config: pytest.fail("built: not refused"))
    line = refused(["train", "--learner", "mann", "--ways", "2000", "--queries", "0",
                    "--validate-every", "0", "--out", "run"], capsys)
    assert line.startswith("minimeta train: --ways 2000, --shots 10, --meta-batch 16: ") and \
        "more than the 16.0 GiB of memory available" in line, line
    assert os.listdir(tmp_path) == []


def test_the_usual_mann_runs_pass_the_memory_check(monkeypatch):
    """The default run (5-way, 10 shots, 16 episodes: about 0.16 GiB), the paper's 15-way one
    and examples/model_based.py's (the default's, its learner built by itself) fit in 1 GiB;
    a learner without an estimate is never refused."""
    from minimeta.experiments import registry
    from minimeta.learners.mann import training_bytes
    monkeypatch.setattr(registry, "available_memory", lambda: 2 ** 30)
    for ways in (5, 15):
        registry.fits_memory(RunConfig(learner="mann", ways=ways, out=None))
    assert training_bytes(5, 10, 1, 16) < 0.2 * 2 ** 30
    monkeypatch.setattr(registry, "available_memory", lambda: 1)
    registry.fits_memory(RunConfig(learner="protonet", out=None))


def test_the_memory_check_refuses_a_run_a_byte_over_what_is_available(monkeypatch):
    """The bound is the estimate itself (``training_bytes``): a run that needs every available
    byte starts, one that needs one more is refused (a bound of twice the memory had passed
    every other test)."""
    from minimeta.experiments import registry
    from minimeta.learners.mann import training_bytes
    config = RunConfig(learner="mann", ways=15, out=None)
    need = training_bytes(15, config.shots, config.queries, config.meta_batch)
    monkeypatch.setattr(registry, "available_memory", lambda: need)
    registry.fits_memory(config)
    monkeypatch.setattr(registry, "available_memory", lambda: need - 1)
    with pytest.raises(ValueError, match="more than the .* GiB of memory available"):
        registry.fits_memory(config)


@pytest.mark.parametrize("groups, files, gib", [
    ("0::/\n", {"memory.max": "max\n"}, 8),                            # v2, no limit
    ("0::/pod/c\n", {"pod/memory.max": f"{2 ** 31}\n", "pod/c/memory.max": "max\n"}, 2),
    ("5:memory:/docker/x\n", {"memory/memory.limit_in_bytes": f"{2 ** 32}\n"}, 4),   # v1
])
def test_the_memory_available_is_the_smallest_limit(tmp_path, groups, files, gib):
    """The kernel's MemAvailable (8 GiB here), or a control group's limit below it (v2: an
    ancestor's, "max" being none; v1: a container's, its group's folder bind-mounted)."""
    from minimeta.kernels.threads import available_memory
    from test_machine_limits import cgroup_tree
    (tmp_path / "meminfo").write_text(f"MemTotal: 1 kB\nMemAvailable: {8 * 2 ** 20} kB\n")
    tree = cgroup_tree(tmp_path, groups, files)
    assert available_memory(meminfo=str(tmp_path / "meminfo"), **tree) == gib * 2 ** 30
