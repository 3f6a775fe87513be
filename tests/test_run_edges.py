"""A run's edges that a probe of the command line found open (2026-12-03), each test failing on
the code before its fix:
- a stop signal during a fresh run's first checkpoint had killed the process (SIGTERM) or
  saved into a folder the first save had just removed (a second Ctrl-C), leaving an empty
  ``metrics.jsonl`` that a rerun and ``--resume`` both refused; a signal there now waits for
  the save, and an empty log without a checkpoint (what a SIGKILL there leaves) is no run;
- ``--resume`` on a checkpoint of minimeta's format that is not a run's had raised KeyError;
- a finished run, or an evaluation with ``--report``, whose stdout had gone (``| head``,
  ``/dev/full``) exited 2, eval dropping its report line; sending such a stdout to
  ``os.devnull`` then left a descriptor open each time (2026-12-04);
- ``eval --report`` into a run's own log broke its ``--resume``; into a ``.npz``, a checkpoint;
- the demo replaced a user's run made in its folder while its sinusoid part ran.

Read next: ``tests/test_stop_signals.py`` (signals in training).
"""
import os
import signal
import subprocess
import sys
import types

import numpy as np
import pytest

from minimeta import cli, io
from minimeta.experiments import training
from minimeta.experiments.config import RunConfig
from minimeta.experiments.demo import checks as demo_checks, omniglot_part
from test_runs import QUIET, assert_same_state, checkpoint, metrics
from test_stop_signals import ctrl_c, raised_for, sig  # noqa: F401  (fixtures)

TINY = dict(learner="maml", dataset="sinusoid", shots=2, queries=2, meta_batch=2, iterations=3)
TRAIN = ["train", "--learner", "maml", "--dataset", "sinusoid", "--shots", "2", "--queries", "2",
         "--meta-batch", "2", "--iterations", "3"]


def signal_in_saves(monkeypatch, signals):
    """Send ``signals`` (one per save, from the first) to this process inside ``io.save``,
    before it writes."""
    save, pending = io.save, list(signals)

    def signalling(*args, **kwargs):
        if pending:
            for each in pending.pop(0):
                # (at its default, SIGTERM would end pytest itself: fail instead)
                assert signal.getsignal(each) != signal.SIG_DFL, \
                    f"nothing takes {signal.Signals(each).name} over: it would end the process"
                os.kill(os.getpid(), each)
        return save(*args, **kwargs)
    monkeypatch.setattr(io, "save", signalling)


def test_a_stop_signal_in_the_first_save_waits_for_it(tmp_path, monkeypatch, sig):
    straight = RunConfig(**TINY, out=str(tmp_path / "straight"))
    training.train(straight, **QUIET)
    config = RunConfig(**TINY, out=str(tmp_path / "cut"))
    signal_in_saves(monkeypatch, [[sig]])
    with pytest.raises(raised_for(sig)):
        training.train(config, **QUIET)
    assert checkpoint(config.out)["iteration"] == 0 and metrics(config.out) == []
    monkeypatch.undo()
    training.train(RunConfig(**TINY, out=config.out, resume=True), **QUIET)
    assert_same_state(checkpoint(config.out), checkpoint(straight.out))


def test_a_second_ctrl_c_in_the_first_save_leaves_the_folder_as_it_was(
        tmp_path, monkeypatch, ctrl_c):  # noqa: F811
    said = []
    config = RunConfig(**TINY, out=str(tmp_path / "run"))
    signal_in_saves(monkeypatch, [[signal.SIGINT, signal.SIGINT]])
    with pytest.raises(KeyboardInterrupt):     # (had been "I/O operation on closed file")
        training.train(config, log=said.append)
    assert not os.path.exists(config.out)      # made by the run, so removed again
    assert "interrupted before the run's first checkpoint: nothing saved" in said[-1]


def test_an_empty_log_without_a_checkpoint_is_no_run(tmp_path):
    """What a SIGKILL between making ``metrics.jsonl`` and the first checkpoint leaves."""
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.jsonl").write_text("")
    with pytest.raises(ValueError, match="--resume: no run to resume in"):
        training.train(RunConfig(**TINY, out=str(out), resume=True), **QUIET)
    training.train(RunConfig(**TINY, out=str(out)), **QUIET)
    assert checkpoint(str(out))["iteration"] == 3 and len(metrics(str(out))) == 3
    os.remove(out / "checkpoint.npz")        # a log with lines is a run's: still refused
    with pytest.raises(ValueError, match="already holds a run \\(metrics.jsonl\\)"):
        training.train(RunConfig(**TINY, out=str(out)), **QUIET)


@pytest.mark.parametrize("state, message", [
    ({"model": {"w": np.ones(2)}, "iteration": 3}, "lacks 'settings'"),
    ({"model": {}, "settings": "maml", "iteration": 3}, "'settings' is not a dict"),
    ({"model": {}, "settings": {"learner": "maml"}, "iteration": -5}, "'iteration' is -5, no"),
    ({"model": {}, "settings": {"learner": "nope"}, "iteration": 3}, "settings minimeta cannot"),
])
def test_resume_names_a_checkpoint_that_is_not_a_run_s(tmp_path, state, message):
    io.save(str(tmp_path / "checkpoint.npz"), state)
    with pytest.raises(ValueError, match=f"(--resume|load): .*checkpoint.npz.*{message}"):
        training.train(RunConfig(**TINY, out=str(tmp_path), resume=True), **QUIET)


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full here")
def test_a_finished_run_or_a_reported_evaluation_with_stdout_gone_exits_0(tmp_path):
    out, report = str(tmp_path / "run"), str(tmp_path / "report.jsonl")

    def minimeta(*args):
        with open("/dev/full", "w") as full:
            return subprocess.run([sys.executable, "-m", "minimeta.cli", *args], stdout=full,
                                  stderr=subprocess.PIPE, text=True, timeout=300)

    done = minimeta(*TRAIN, "--out", out)
    assert done.returncode == 0, done.stderr
    assert checkpoint(out)["iteration"] == 3
    done = minimeta("eval", "--checkpoint", os.path.join(out, "checkpoint.npz"), "--episodes",
                    "2", "--report", report)
    assert done.returncode == 0, done.stderr
    with open(report) as f:
        assert len(f.readlines()) == 1
    done = minimeta("eval", "--checkpoint", os.path.join(out, "checkpoint.npz"), "--episodes",
                    "2")      # no report: the result was lost, and that is an error
    assert done.returncode == 2 and "No space left on device" in done.stderr


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts /proc/self/fd")
def test_a_stdout_gone_away_leaves_no_file_descriptor_open(tmp_path, monkeypatch):
    """``cli._say`` sends a stdout that failed to ``os.devnull``; the descriptor it opened for
    that had stayed open, one more each time (a process calling ``main`` again and again)."""
    class Gone(types.SimpleNamespace):       # a stdout without a descriptor (pytest's capture)
        def write(self, text):
            raise OSError(32, "Broken pipe")

        def fileno(self):
            raise OSError(9, "no descriptor")

    before = len(os.listdir("/proc/self/fd"))
    for _ in range(3):
        with open("/dev/full" if os.path.exists("/dev/full") else tmp_path / "f", "w") as out:
            monkeypatch.setattr(sys, "stdout", out)
            cli._say("checkpoint: here")
        monkeypatch.setattr(sys, "stdout", Gone())
        cli._say("checkpoint: here")
    monkeypatch.undo()
    assert len(os.listdir("/proc/self/fd")) == before


def test_eval_refuses_a_report_into_a_run_s_files(tmp_path, capsys):
    out = str(tmp_path / "run")
    assert cli.main(TRAIN + ["--out", out]) == 0
    for target, what in (("metrics.jsonl", "a run's training log"),
                         ("checkpoint.npz", "a checkpoint's name")):
        before = open(os.path.join(out, target), "rb").read()
        with pytest.raises(SystemExit) as stop:
            cli.main(["eval", "--checkpoint", os.path.join(out, "checkpoint.npz"),
                      "--episodes", "2", "--report", os.path.join(out, target)])
        assert stop.value.code == 2 and what in capsys.readouterr().err
        assert open(os.path.join(out, target), "rb").read() == before
    cli.main(TRAIN + ["--out", out, "--iterations", "4", "--resume"])  # the run goes on


def test_the_demo_asks_again_before_replacing_its_protonet_folder(tmp_path):
    args = types.SimpleNamespace(out=str(tmp_path), tasks=2, omniglot_episodes=2,
                                 omniglot_iterations=1, seed=0)
    config = demo_checks(args)         # nothing there yet: the demo would start
    os.makedirs(config.out)
    with open(os.path.join(config.out, "metrics.jsonl"), "w") as f:
        f.write('{"iteration": 1}\n')       # a user's run, made while the sinusoids ran
    with pytest.raises(ValueError, match="holds a run that is not an earlier demo's"):
        omniglot_part(args, config)
    assert open(os.path.join(config.out, "metrics.jsonl")).read() == '{"iteration": 1}\n'
