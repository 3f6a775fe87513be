"""A run stopped by SIGTERM (``kill``, ``docker stop``, a batch scheduler's time limit) is not
lost: it finishes the iteration in hand, saves it, says so and exits with 143, and resumes
from there as if never stopped. Before, SIGTERM ended the process on the spot and the work
since the last periodic checkpoint (every 5 minutes by default) was gone without a word."""
import os
import signal
import subprocess
import sys
import time

import pytest

from minimeta.experiments import training
from minimeta.experiments.config import RunConfig
from minimeta.experiments.registry import build
from test_runs import QUIET, assert_same_state, checkpoint, lines_in, metrics

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARGS = ["train", "--learner", "maml", "--dataset", "sinusoid", "--shots", "2", "--queries", "2",
        "--meta-batch", "2", "--iterations", "100000"]
# the child, optionally without the SIGTERM handling (the mutant the test must catch)
CHILD = ("import sys, contextlib\n"
         "from minimeta import cli\n"
         "from minimeta.experiments import training\n"
         "if sys.argv.pop(1) == 'off':\n"
         "    training.sigterm_as_interrupt = contextlib.nullcontext\n"
         "sys.exit(cli.main(sys.argv[1:]))\n")


def sigterm_a_training_child(out, handling):
    """Start ``minimeta train`` in a child, SIGTERM it once it has logged 20 iterations;
    return (exit code, stdout, stderr)."""
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    child = subprocess.Popen([sys.executable, "-c", CHILD, handling] + ARGS + ["--out", out],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    deadline = time.monotonic() + 60
    log = os.path.join(out, "metrics.jsonl")
    while lines_in(log) < 20 and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert child.poll() is None, "the child ended before it could be stopped"
    child.send_signal(signal.SIGTERM)
    text, err = child.communicate(timeout=60)
    return child.returncode, text, err


def test_sigterm_saves_the_iteration_in_hand_and_exits_143(tmp_path):
    out = str(tmp_path / "run")
    code, text, err = sigterm_a_training_child(out, "on")
    done = checkpoint(out)["iteration"]
    assert code == 143, err
    said = f"terminated (SIGTERM): checkpoint at iteration {done} in {out}/checkpoint.npz"
    assert said + " (--resume)" in text
    assert err.strip() == "terminated"
    assert done >= 20                      # not the start-of-run checkpoint: the work is kept
    assert [r["iteration"] for r in metrics(out)] == list(range(1, done + 1))
    # and the run goes on from there, each iteration logged once
    more = ARGS[:-1] + [str(done + 5), "--out", out, "--resume"]
    from minimeta import cli

    assert cli.main(more) == 0
    assert [r["iteration"] for r in metrics(out)] == list(range(1, done + 6))


def test_without_the_handling_sigterm_loses_the_run(tmp_path):
    """The mutant: SIGTERM's default action. The child dies at once (killed by the signal,
    nothing printed) and the checkpoint still holds iteration 0 (the next periodic one was
    minutes away): exactly what the test above rules out."""
    out = str(tmp_path / "run")
    code, text, err = sigterm_a_training_child(out, "off")
    assert code == -signal.SIGTERM and "terminated" not in text + err
    assert checkpoint(out)["iteration"] == 0 and len(metrics(out)) >= 20


@pytest.fixture
def default_sigterm():
    """SIGTERM at its default action, and ``sigterm_as_interrupt`` proven to replace it
    before a test sends one to this process (a broken handler would end pytest itself)."""
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    with training.sigterm_as_interrupt():
        assert signal.getsignal(signal.SIGTERM) is training._terminate
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


def test_sigterm_mid_step_waits_for_the_update_and_its_record(tmp_path, default_sigterm):
    """SIGTERM inside Reptile's outer step (the weights half-moved) is held back until the
    iteration is whole and logged; the run saves it, and resumes as if never stopped."""
    config = RunConfig(learner="reptile", dataset="sinusoid", iterations=6, shots=5,
                       queries=5, meta_batch=3, out=str(tmp_path / "straight"))
    training.train(config, **QUIET)
    config = RunConfig.from_settings(config.settings(), out=str(tmp_path / "cut"))
    model, learner = build(config)
    step, calls = learner.outer_step, []

    def terminated_at_the_third(tasks):
        calls.append(1)
        if len(calls) == 3:
            os.kill(os.getpid(), signal.SIGTERM)
        return step(tasks)

    learner.outer_step = terminated_at_the_third
    with pytest.raises(training.Terminated):
        training.train(config, model, learner, **QUIET)
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL      # restored
    assert checkpoint(config.out)["iteration"] == 3
    assert [r["iteration"] for r in metrics(config.out)] == [1, 2, 3]
    training.train(RunConfig.from_settings(config.settings(), resume=True), **QUIET)
    assert_same_state(checkpoint(config.out), checkpoint(str(tmp_path / "straight")))


def test_a_second_sigterm_inside_an_iteration_stops_at_once(default_sigterm):
    reached = []
    with pytest.raises(training.Terminated):
        with training.sigterm_as_interrupt(), training.uninterrupted({}):
            os.kill(os.getpid(), signal.SIGTERM)        # held back
            time.sleep(0.01)
            reached.append("held")
            os.kill(os.getpid(), signal.SIGTERM)        # the second: now
            time.sleep(0.01)
            reached.append("not reached")
    assert reached == ["held"]


def test_a_handler_of_the_callers_is_left_alone():
    """A program that handles SIGTERM itself keeps its handler, inside and after."""
    calls = []
    previous = signal.signal(signal.SIGTERM, lambda *_: calls.append(1))
    try:
        with training.sigterm_as_interrupt():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.01)
        assert calls == [1] and signal.getsignal(signal.SIGTERM) is not training._terminate
    finally:
        signal.signal(signal.SIGTERM, previous)
