"""One run at a time writes a run's folder. The same ``--resume`` started in two terminals, or a
job a scheduler requeued while it still runs, would otherwise interleave two metrics logs in
one file and overwrite each other's checkpoint: a run silently wrong. The second one is refused
in one line, before it touches anything; the lock (``io.folder_lock``, an ``flock`` on the
folder) goes with the process, however it ends."""
import contextlib
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from minimeta import cli, io
from test_runs import checkpoint, lines_in, metrics, wait_until_logged

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARGS = ["train", "--learner", "maml", "--dataset", "sinusoid", "--shots", "2", "--queries", "2",
        "--meta-batch", "2", "--checkpoint-every", "0"]
pytestmark = pytest.mark.skipif(io.fcntl is None, reason="no flock on this system")


@contextlib.contextmanager
def training_child(out, iterations=10 ** 6):
    """A ``minimeta train`` into ``out`` in a child process, running once it has logged 20
    iterations; stopped with SIGTERM (it saves and exits 143) when the block ends."""
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    child = subprocess.Popen([sys.executable, "-m", "minimeta.cli"] + ARGS + [
        "--iterations", str(iterations), "--out", out], env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True)
    try:
        wait_until_logged(out, 20, child)
        yield child
    finally:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
        child.wait(timeout=60)


def iterations_logged(out):
    """The iteration numbers of the log, read leniently (a torn or mixed line reads as -1)."""
    with open(os.path.join(out, "metrics.jsonl")) as f:
        return [int(m.group(1)) if (m := re.match(r'\{"iteration": (\d+),.*\}$', line)) else -1
                for line in f.read().splitlines()]


def test_a_second_run_on_a_busy_folder_is_refused_and_changes_nothing(tmp_path, capsys):
    out = str(tmp_path / "run")
    with training_child(out) as child:
        for extra in (["--iterations", "2000000", "--resume"],
                      ["--iterations", "9", "--overwrite"]):
            capsys.readouterr()
            with pytest.raises(SystemExit) as refused:
                cli.main(ARGS + extra + ["--out", out])
            assert refused.value.code == 2
            assert capsys.readouterr().err == (
                f"minimeta train: {out} is in use by another run (a process still training "
                "into it): wait for it to end, or choose another --out\n")
        before = lines_in(os.path.join(out, "metrics.jsonl"))
        time.sleep(0.2)
        assert lines_in(os.path.join(out, "metrics.jsonl")) > before   # still training
    assert child.returncode == 143, child.stderr.read()
    done = checkpoint(out)["iteration"]
    assert [r["iteration"] for r in metrics(out)] == list(range(1, done + 1))
    # the lock went with the process: the run resumes
    assert cli.main(ARGS + ["--iterations", str(done + 3), "--out", out, "--resume"]) == 0
    assert [r["iteration"] for r in metrics(out)] == list(range(1, done + 4))


def test_without_the_lock_a_second_writer_wrecks_the_run(tmp_path, monkeypatch):
    """The mutant: the second writer without the lock, with ``--overwrite``. It deletes the
    running run's files (its log, its checkpoint, the temporary file of a save under way) and
    writes its own: the first run then dies on its next save, or goes on writing a checkpoint
    far past what the folder's log holds. Either way it does not end as the test above
    requires: exit 143, its checkpoint and its log agreeing."""
    out = str(tmp_path / "run")
    monkeypatch.setattr(io, "folder_lock", lambda folder: contextlib.nullcontext())
    with training_child(out) as child:
        assert cli.main(ARGS + ["--iterations", "9", "--out", out, "--overwrite"]) == 0
        time.sleep(0.2)
    logged, done = iterations_logged(out), int(checkpoint(out)["iteration"])
    assert not (child.returncode == 143 and logged == list(range(1, done + 1)) and done > 9)


def test_a_run_arriving_between_another_s_checks_and_its_lock_is_refused(tmp_path, monkeypatch,
                                                                        capsys):
    """Two runs started at once on one fresh --out, the second arriving just after the first
    has checked the folder (forced: it runs from inside the first's ``open_run``, no timing).
    The checks had run before the lock: the second passed them too and trained into the
    folder, then the first, its checks passed on an empty folder, appended its log to the
    second's (1, 2, 3, 1, 2, …) and replaced its checkpoint. The lock now comes first: the
    second is refused, and the first's run is its own."""
    from minimeta.experiments import training

    out, real, second = str(tmp_path / "run"), training.open_run, []

    def racing(config):
        state = real(config)
        if not second:      # the first run, its checks passed: the second starts now
            second.append("started")
            try:
                second.append(cli.main(ARGS + ["--iterations", "3", "--out", out]))
            except SystemExit as refused:
                second.append(refused.code)
        return state

    monkeypatch.setattr(training, "open_run", racing)
    assert cli.main(ARGS + ["--iterations", "5", "--out", out]) == 0
    assert second == ["started", 2] and capsys.readouterr().err.splitlines()[0] == (
        f"minimeta train: {out} is in use by another run (a process still training into it): "
        "wait for it to end, or choose another --out")     # (the first's progress follows)
    assert iterations_logged(out) == [1, 2, 3, 4, 5] and checkpoint(out)["iteration"] == 5


def test_the_lock_is_released_however_the_holder_ends(tmp_path):
    """Held by a child that is then killed (SIGKILL: no cleanup at all), the folder is free
    again at once."""
    folder = str(tmp_path / "run")
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom minimeta import io\n"
                               "with io.folder_lock(sys.argv[1]):\n    print('held', flush=True)"
                               "\n    time.sleep(60)\n", folder], stdout=subprocess.PIPE,
                              text=True, env=dict(os.environ, PYTHONPATH=ROOT))
    assert holder.stdout.readline() == "held\n"
    with pytest.raises(ValueError, match="is in use by another run"):
        with io.folder_lock(folder):
            pass
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=60)
    with io.folder_lock(folder):
        pass


def test_a_file_system_without_folder_locks_runs_without_one(tmp_path, monkeypatch):
    """NFS may refuse an flock on a folder (EBADF: its locks need a file open for writing):
    the run goes on, unlocked, where refusing to start would lose it."""
    import errno
    import types

    def refused(fd, how):
        raise OSError(errno.EBADF, "Bad file descriptor")

    monkeypatch.setattr(io, "fcntl", types.SimpleNamespace(flock=refused, LOCK_EX=2, LOCK_NB=4))
    with io.folder_lock(str(tmp_path / "run")):
        entered = True
    assert entered and os.path.isdir(tmp_path / "run")


def test_a_file_gone_between_listing_and_deleting_is_not_an_error(tmp_path, monkeypatch):
    """Clearing a folder races with whatever else writes there (where no lock could be taken, or
    the mutant above): a temporary file listed, then renamed into a checkpoint by its writer
    before ``prepare_folder`` deletes it. That failed the clearing run ("No such file or
    directory", exit 2; once in CI, in the mutant above). Now what is gone is left gone."""
    from minimeta.experiments import training
    from minimeta.experiments.config import RunConfig

    out = tmp_path / "run"
    out.mkdir()
    (out / ".tmp-stays.npz").write_bytes(b"x")
    listing = os.listdir

    def racing(path):   # the listing still names a file another writer has just renamed
        return listing(path) + [".tmp-gone.npz", "metrics.jsonl"]

    monkeypatch.setattr(training.os, "listdir", racing)
    config = RunConfig(learner="maml", dataset="sinusoid", out=str(out), overwrite=True)
    training.prepare_folder(config, 0)
    assert listing(out) == []
