"""A run stopped by Ctrl-C, SIGTERM (``kill``, ``docker stop``, a batch scheduler's time
limit) or SIGHUP (its terminal or ssh connection closed) is not lost: it finishes the iteration
in hand, saves it, says so and exits with 128 + the signal's number, and resumes from there as
if never stopped. Before, SIGTERM and SIGHUP ended the process on the spot, and a Ctrl-C that
landed inside a numba kernel became a SystemError: either way the work since the last
periodic checkpoint (every 5 minutes by default) was gone."""
import errno
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import types

import numpy as np
import pytest

from minimeta.experiments import stopping, training
from minimeta.experiments.config import RunConfig
from minimeta.experiments.progress import Progress
from minimeta.experiments.registry import build
from minimeta.kernels import norm_numba
from test_runs import QUIET, assert_same_state, checkpoint, metrics, wait_until_logged

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
ARGS = ["train", "--learner", "maml", "--dataset", "sinusoid", "--shots", "2", "--queries", "2",
        "--meta-batch", "2", "--iterations", "100000"]
STOPS = [pytest.param(sig, id=signal.Signals(sig).name) for sig in stopping.STOPS]
ALL = [pytest.param(signal.SIGINT, id="SIGINT")] + STOPS
# the child, optionally without the signals' handling (the mutant the test must catch)
CHILD = ("import sys\n"
         "from minimeta import cli\n"
         "from minimeta.experiments import training\n"
         "class Off:\n"
         "    __enter__ = lambda self: self\n"
         "    __exit__ = check = lambda self, *_: None\n"
         "if sys.argv.pop(1) == 'off':\n"
         "    training.GracefulStop = Off\n"
         "sys.exit(cli.main(sys.argv[1:]))\n")


def at_their_defaults():
    """For a child: the stop signals at their defaults, as in a command typed at a terminal,
    even where the tests themselves run under ``nohup`` (SIGHUP ignored, which a child
    inherits)."""
    for sig in stopping.STOPS:
        signal.signal(sig, signal.SIG_DFL)


def stop_a_training_child(out, handling, sig):
    """Start ``minimeta train`` in a child, send it ``sig`` once it has logged 20 iterations;
    return (exit code, stdout, stderr)."""
    child = subprocess.Popen([sys.executable, "-c", CHILD, handling] + ARGS + ["--out", out],
                             env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             preexec_fn=at_their_defaults)
    wait_until_logged(out, 20, child)
    child.send_signal(sig)
    text, err = child.communicate(timeout=60)
    return child.returncode, text, err


@pytest.mark.parametrize("sig", STOPS)
def test_a_stop_signal_saves_the_iteration_in_hand_and_exits_128_plus_it(tmp_path, sig):
    out, name = str(tmp_path / "run"), signal.Signals(sig).name
    code, text, err = stop_a_training_child(out, "on", sig)
    done = checkpoint(out)["iteration"]
    assert code == 128 + sig == {"SIGTERM": 143, "SIGHUP": 129}[name], err
    said = f"stopped by {name}: checkpoint at iteration {done} in {out}/checkpoint.npz"
    assert said + " (--resume)" in text
    *progress, last = [line for line in err.splitlines() if line]   # progress, then the stop
    assert last == f"stopped by {name}"
    assert all(re.match(r"train \d+/100000  (first [\d.]+ s|[\d.]+ it/s  eta \d+s)  ", line)
               for line in progress), err
    assert done >= 20                      # not the start-of-run checkpoint: the work is kept
    assert [r["iteration"] for r in metrics(out)] == list(range(1, done + 1))
    # and the run goes on from there, each iteration logged once
    from minimeta import cli

    assert cli.main(ARGS[:-1] + [str(done + 5), "--out", out, "--resume"]) == 0
    assert [r["iteration"] for r in metrics(out)] == list(range(1, done + 6))


@pytest.mark.parametrize("sig", STOPS)
def test_without_the_handling_a_stop_signal_loses_the_run(tmp_path, sig):
    """The mutant: the signal's default action. The child dies at once (killed by the signal,
    nothing printed) and the checkpoint still holds iteration 0 (the next periodic one was
    minutes away): exactly what the test above rules out."""
    out = str(tmp_path / "run")
    code, text, err = stop_a_training_child(out, "off", sig)
    assert code == -sig and "stopped" not in text + err
    assert checkpoint(out)["iteration"] == 0 and len(metrics(out)) >= 20


@pytest.fixture
def ctrl_c():
    """Python's Ctrl-C handler for the test: a shell that starts the tests in the background
    (``nohup ... &``) has them ignore SIGINT, and then no Ctrl-C can be simulated."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def signalled(tmp_path, sig, config, method, call, pause=0.0):
    """``config``'s run done straight into ``tmp_path/straight``, and the same run set up in
    ``tmp_path/cut`` with ``sig`` sent to this process inside the ``call``-th call of its
    learner's ``method``, ``pause`` seconds before the call goes on; returns (config, model,
    learner, calls) of the cut run, to train (``calls``: one entry per call made)."""
    config = RunConfig.from_settings(config.settings(), out=str(tmp_path / "straight"))
    training.train(config, **QUIET)
    config = RunConfig.from_settings(config.settings(), out=str(tmp_path / "cut"))
    model, learner = build(config)
    original, calls = getattr(learner, method), []

    def signalling(*args):
        calls.append(1)
        if len(calls) == call:
            os.kill(os.getpid(), sig)
            time.sleep(pause)
        return original(*args)

    setattr(learner, method, signalling)
    return config, model, learner, calls


def signalled_at_the_third_step(tmp_path, sig, pause=0.0):
    """A Reptile run (6 iterations, sinusoid), ``sig`` sent inside its third outer step (the
    weights half-moved): ``signalled``'s (config, model, learner)."""
    config = RunConfig(learner="reptile", dataset="sinusoid", iterations=6, shots=5,
                       queries=5, meta_batch=3)
    return signalled(tmp_path, sig, config, "outer_step", 3, pause)[:3]


def test_ctrl_c_waits_for_the_update_and_its_record(tmp_path, ctrl_c):
    """SIGINT inside Reptile's outer step (the weights half-moved) is held back until the
    iteration is whole and logged; the run saves it, and resumes as if never stopped."""
    config, model, learner = signalled_at_the_third_step(tmp_path, signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        training.train(config, model, learner, **QUIET)
    assert checkpoint(config.out)["iteration"] == 3
    assert [r["iteration"] for r in metrics(config.out)] == [1, 2, 3]
    training.train(RunConfig.from_settings(config.settings(), resume=True), **QUIET)
    assert_same_state(checkpoint(config.out), checkpoint(str(tmp_path / "straight")))
    assert [r["loss"] for r in metrics(config.out)] == \
        [r["loss"] for r in metrics(str(tmp_path / "straight"))]


@pytest.fixture(params=ALL)
def sig(request):
    """A signal at its default in this process, and ``GracefulStop`` proven to take it over
    before a test sends it here (a broken handler could end pytest itself)."""
    sig = request.param
    if signal.getsignal(sig) != stopping._default(sig):
        pytest.skip(f"{signal.Signals(sig).name} is not at its default here (nohup?)")
    with stopping.GracefulStop() as signals:
        assert signal.getsignal(sig) == signals._note
    assert signal.getsignal(sig) == stopping._default(sig)
    return sig


def raised_for(sig):
    return stopping.Terminated if sig in stopping.STOPS else KeyboardInterrupt


def test_a_signal_mid_step_waits_for_the_update_and_its_record(tmp_path, sig):
    """A signal inside Reptile's outer step (the weights half-moved) is noted; the iteration
    ends and is logged, the run saves it, and resumes as if never stopped."""
    # 10 ms in the step after the signal: Python runs the handler there, which only notes it
    config, model, learner = signalled_at_the_third_step(tmp_path, sig, pause=0.01)
    with pytest.raises(raised_for(sig)) as stopped:
        training.train(config, model, learner, **QUIET)
    assert getattr(stopped.value, "signum", signal.SIGINT) == sig
    assert signal.getsignal(sig) == stopping._default(sig)         # restored
    assert checkpoint(config.out)["iteration"] == 3
    assert [r["iteration"] for r in metrics(config.out)] == [1, 2, 3]
    training.train(RunConfig.from_settings(config.settings(), resume=True), **QUIET)
    assert_same_state(checkpoint(config.out), checkpoint(str(tmp_path / "straight")))


def kernels_while_signalled(sig):
    """Batch norm kernels, run while another thread sends ``sig`` to this process (10 ms in:
    inside a kernel, whose numba code calls back into Python as it returns its arrays)."""
    x = np.random.default_rng(0).random((64, 64, 56, 56), dtype=np.float32)
    w, b = np.ones(64, np.float32), np.zeros(64, np.float32)
    norm_numba.batch_norm(x, w, b)
    timer = threading.Timer(0.01, os.kill, (os.getpid(), sig))
    timer.start()
    try:
        for _ in range(20):                     # 20 × 20 ms: well past the timer
            norm_numba.batch_norm(x, w, b)
    finally:
        timer.join()


def test_a_signal_inside_a_numba_kernel_is_noted_not_raised(sig):
    with pytest.raises(raised_for(sig)):
        with stopping.GracefulStop() as signals:
            kernels_while_signalled(sig)        # finishes: nothing raised inside
            assert signals.caught == [sig]
    # the mutant, a handler that raises (what Ctrl-C's own does): inside numba's callback the
    # exception becomes a SystemError, which no `except KeyboardInterrupt` catches
    previous = signal.signal(sig, lambda *_: (_ for _ in ()).throw(raised_for(sig)))
    try:
        with pytest.raises(SystemError, match="returned a result with an exception set"):
            kernels_while_signalled(sig)
    finally:
        signal.signal(sig, previous)


@pytest.mark.parametrize("sig", [signal.SIGINT], indirect=True, ids=["SIGINT"])
def test_a_second_ctrl_c_stops_at_once(sig):
    reached = []
    with pytest.raises(KeyboardInterrupt):
        with stopping.GracefulStop():
            os.kill(os.getpid(), sig)           # noted
            time.sleep(0.01)
            reached.append("noted")
            os.kill(os.getpid(), sig)           # the second: Python's own action, now
            time.sleep(0.01)
            reached.append("not reached")
    assert reached == ["noted"]


@pytest.mark.parametrize("sig", STOPS)
def test_a_second_stop_signal_ends_the_process_at_once(sig):
    script = ("import os, sys, time\nfrom minimeta.experiments.stopping import GracefulStop\n"
              f"with GracefulStop():\n    os.kill(os.getpid(), {int(sig)})\n"
              "    time.sleep(0.05)\n    print('noted', flush=True)\n"
              f"    os.kill(os.getpid(), {int(sig)})\n    time.sleep(1)\n    print('survived')\n")
    child = subprocess.run([sys.executable, "-c", script], env=ENV, capture_output=True,
                           text=True, timeout=60, preexec_fn=at_their_defaults)
    assert child.returncode == -sig and child.stdout == "noted\n", child.stderr


@pytest.mark.parametrize("sig", ALL)
def test_a_handler_of_the_callers_is_left_alone(sig):
    """A program that handles the signal itself keeps its handler, inside and after."""
    calls = []
    mine = signal.signal(sig, lambda *_: calls.append(1))
    try:
        with stopping.GracefulStop() as signals:
            os.kill(os.getpid(), sig)
            time.sleep(0.01)
        assert calls == [1] and signals.caught == []
        assert signal.getsignal(sig) not in (stopping._default(sig), signals._note)
    finally:
        signal.signal(sig, mine)


@pytest.mark.parametrize("name", ["SIGINT", "SIGHUP"])
def test_signals_ignored_by_nohup_stay_ignored(name):
    """``nohup ... &`` starts a run with SIGHUP (and, from a shell's background, SIGINT)
    ignored, so that closing the terminal does not stop it: that stays so."""
    if not hasattr(signal, name):
        pytest.skip(f"no {name} on this platform")
    sig = getattr(signal, name)
    previous = signal.signal(sig, signal.SIG_IGN)
    try:
        with stopping.GracefulStop() as signals:
            os.kill(os.getpid(), sig)
            os.kill(os.getpid(), sig)
            time.sleep(0.01)
        assert signals.caught == [] and signal.getsignal(sig) == signal.SIG_IGN
    finally:
        signal.signal(sig, previous)


def test_a_ctrl_c_inside_a_kernel_outside_training_exits_130(monkeypatch, capsys):
    """Outside training (``minimeta eval``, the demo's evaluation) Ctrl-C raises at once, and
    inside a numba kernel numba turns it into a SystemError: the command line still reports an
    interrupt, in one line, with exit 130, not a traceback with exit 1."""
    from minimeta import cli

    if signal.getsignal(signal.SIGINT) != signal.default_int_handler:
        pytest.skip("SIGINT is not at its default here (nohup?)")
    monkeypatch.setattr(cli, "_eval", lambda args: kernels_while_signalled(signal.SIGINT))
    assert cli.main(["eval", "--checkpoint", "unused.npz"]) == 130
    assert capsys.readouterr().err.strip() == "interrupted"
    # what numba raised, and what any other SystemError stays
    try:
        kernels_while_signalled(signal.SIGINT)
    except SystemError as err:
        assert isinstance(cli.interrupt_in(err), KeyboardInterrupt)
    else:
        pytest.fail("no SystemError: the signal did not land inside a kernel")
    assert cli.interrupt_in(SystemError("not an interrupt")) is None


def test_a_closed_terminal_never_stops_a_run_by_itself(tmp_path):
    """After SIGHUP the terminal is gone and every write to it fails (EIO). The progress line
    falls silent and the log's messages are dropped, so the run still stops as SIGHUP asks,
    saved, instead of dying of the OSError of its next message with its work lost (which is
    what an Omniglot MAML run did, printing a progress line every iteration)."""
    if signal.getsignal(getattr(signal, "SIGHUP", signal.SIGTERM)) != signal.SIG_DFL:
        pytest.skip("no SIGHUP, or not at its default here (nohup?)")

    def gone(*_):
        raise OSError(errno.EIO, "Input/output error")

    bar = Progress(10, stream=types.SimpleNamespace(write=gone, flush=gone, isatty=lambda: 1))
    bar.update(9, loss=1.0)                      # the last line: written, fails, falls silent
    assert bar.stream is None
    bar.update(9, loss=1.0)
    # a run that resumes (a message), is stopped (a message) and talks to a dead terminal
    config = RunConfig(learner="reptile", dataset="sinusoid", iterations=3, shots=5,
                       queries=5, meta_batch=3, out=str(tmp_path / "run"))
    training.train(config, **QUIET)
    config = RunConfig.from_settings(config.settings(), iterations=9, resume=True)
    model, learner = build(config)
    step, calls = learner.outer_step, []

    def hung_up_at_the_second(tasks):
        calls.append(1)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGHUP)
            time.sleep(0.01)
        return step(tasks)

    learner.outer_step = hung_up_at_the_second
    with pytest.raises(stopping.Terminated):
        training.train(config, model, learner, log=gone)
    assert checkpoint(config.out)["iteration"] == 5
    assert [r["iteration"] for r in metrics(config.out)] == [1, 2, 3, 4, 5]


@pytest.mark.skipif(not hasattr(os, "openpty") or not hasattr(signal, "SIGHUP"),
                    reason="no pseudo-terminals here")
def test_a_run_on_a_terminal_that_closes_saves_and_exits_129(tmp_path):
    """The real thing: ``minimeta train`` on a pseudo-terminal as its controlling terminal;
    closing the terminal's other end sends it SIGHUP and makes its output fail."""
    import fcntl
    import termios

    out = str(tmp_path / "run")
    master, slave = os.openpty()
    child = subprocess.Popen(
        [sys.executable, "-m", "minimeta.cli"] + ARGS + ["--out", out], env=ENV, stdin=slave,
        stdout=slave, stderr=slave, start_new_session=True,
        preexec_fn=lambda: (at_their_defaults(), fcntl.ioctl(0, termios.TIOCSCTTY, 0)))
    os.close(slave)
    reader = threading.Thread(target=lambda: [_ for _ in iter(lambda: _read(master), b"")],
                              daemon=True)
    reader.start()                               # keep the terminal's buffer drained
    wait_until_logged(out, 20, child)
    os.close(master)                             # the terminal goes away
    assert child.wait(timeout=60) == 129
    done = checkpoint(out)["iteration"]
    assert done >= 20 and [r["iteration"] for r in metrics(out)] == list(range(1, done + 1))


def _read(fd):
    try:
        return os.read(fd, 65536)
    except OSError:                              # closed: the end of the terminal
        return b""


@pytest.mark.skipif(not os.path.exists(os.path.join(
    os.environ.get("MINIMETA_DATA_DIR", ""), "images_background.npz")), reason="needs Omniglot")
def test_a_signal_during_validation_cuts_it_short_and_the_resumed_run_validates_first(
        tmp_path, sig):
    """A stop had waited for the whole validation (35 s at 20-way) and saved nothing more if a
    second signal (docker's SIGKILL after 10 s) came first (found by probing, 2026-12-01).
    Now the validation gives up within a few episodes, the checkpoint keeps the iteration's
    line, and the resumed run validates the same weights first: the same log and state."""
    config = RunConfig(learner="protonet", dataset="omniglot", ways=5, queries=2, threads=1,
                       iterations=4, validate_every=2, val_episodes=40)
    # the third episode of the validation at iteration 2
    config, model, learner, episodes = signalled(tmp_path, sig, config, "evaluate", 3)
    said = []
    with pytest.raises(raised_for(sig)):
        training.train(config, model, learner, log=said.append)
    assert len(episodes) <= 4 < config.val_episodes       # one block of episodes, not 40
    assert checkpoint(config.out)["iteration"] == 2 and "pending" in checkpoint(config.out)
    assert [r["iteration"] for r in metrics(config.out)] == [1]
    assert said[-1].endswith("(--resume; its validation, cut short, runs first)")
    off = str(tmp_path / "off")                      # resumed with validation turned off: the
    shutil.copytree(config.out, off)                 # line is written without (it had raised)
    training.train(RunConfig.from_settings(config.settings(), out=off, resume=True,
                                           validate_every=0), **QUIET)
    assert [sorted(r) == sorted(metrics(off)[0]) for r in metrics(off)] == [True] * 4
    training.train(RunConfig.from_settings(config.settings(), resume=True), **QUIET)
    assert_same_state(checkpoint(config.out), checkpoint(str(tmp_path / "straight")))
    assert "pending" not in checkpoint(config.out)
    timeless = [{k: v for k, v in r.items() if "seconds" not in k} for r in metrics(config.out)]
    assert timeless == [{k: v for k, v in r.items() if "seconds" not in k}
                        for r in metrics(str(tmp_path / "straight"))]
    assert "val_accuracy" in timeless[1] and "val_accuracy" in timeless[3]
