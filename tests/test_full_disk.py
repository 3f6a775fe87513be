"""A disk that fills up under a training run: the run stops with one line that says what to do,
its last checkpoint intact, and once there is room again ``--resume`` goes on from it with
every iteration logged once. Checked for real on a 300 KiB tmpfs mounted in a private mount
namespace (root and ``unshare -m``; skipped elsewhere), and the message without one. Then the
writes around it, each found by probing: a first checkpoint that cannot be written, a report
line cut by a file size limit, and a run folder moved while it trains."""
import errno
import json
import os
import re
import shutil
import stat
import subprocess
import sys

import pytest

from minimeta import cli, io
from minimeta.experiments import training
from minimeta.experiments.config import RunConfig
from minimeta.experiments.registry import build
from minimeta.experiments.runfolder import FolderMoved

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN = ["-m", "minimeta.cli", "train", "--learner", "maml", "--dataset", "sinusoid",
         "--shots", "2", "--queries", "2", "--meta-batch", "2", "--checkpoint-every", "0"]
# run inside the namespace, on the small disk: train until it is full, look, make room, resume
DRIVER = """
import json, subprocess, sys
from minimeta.io import load
disk, train = sys.argv[1], [sys.executable] + sys.argv[2:]
full = subprocess.run(train + ["--iterations", "1000000", "--out", disk + "/run"],
                      capture_output=True, text=True)
saved = int(load(disk + "/run/checkpoint.npz")["iteration"])
subprocess.run(["mount", "-o", "remount,size=8m", disk], check=True)
more = subprocess.run(train + ["--iterations", str(saved + 5), "--out", disk + "/run",
                               "--resume"], capture_output=True, text=True)
with open(disk + "/run/metrics.jsonl") as f:
    logged = [json.loads(line)["iteration"] for line in f]
print(json.dumps(dict(code=full.returncode, err=full.stderr, saved=saved, resumed=more.returncode,
                      resumed_err=more.stderr[-2000:], logged=logged)))
"""


def can_mount_tmpfs():
    if not (hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("unshare")):
        return False
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"],
                           capture_output=True)
    return probe.returncode == 0


@pytest.mark.skipif(not can_mount_tmpfs(), reason="needs root and unshare -m")
def test_a_full_disk_stops_the_run_in_one_line_and_resume_goes_on(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    shell = 'mount -t tmpfs -o size=300k tmpfs "$1" && shift && exec "$@"'
    child = subprocess.run(["unshare", "-m", "sh", "-c", shell, "sh", str(disk), sys.executable,
                            "-c", DRIVER, str(disk)] + TRAIN, capture_output=True, text=True,
                           env=env, timeout=600)
    assert child.returncode == 0, child.stderr[-3000:]
    seen = json.loads(child.stdout.splitlines()[-1])
    assert seen["code"] == 2
    progress, last = seen["err"].splitlines()[:-1], seen["err"].splitlines()[-1]
    assert re.fullmatch(r"minimeta train: (\S+: )?No space left on device: free some space "
                        r"\(the run's last checkpoint is kept: then --resume\)", last)
    assert all(re.match(r"train \d+/1000000  ", line) for line in progress), progress
    assert seen["saved"] > 100                    # trained a while, saved every iteration
    assert seen["resumed"] == 0, seen["resumed_err"]
    assert seen["logged"] == list(range(1, seen["saved"] + 6))


@pytest.mark.parametrize("command, kept", [("train", True), ("eval", False)])
def test_a_full_disk_is_one_line_that_says_what_to_do(command, kept):
    said = cli.message(OSError(errno.ENOSPC, "No space left on device"), command)
    assert said.startswith("No space left on device: free some space")
    assert ("--resume" in said) == kept and "\n" not in said
    quota = OSError(getattr(errno, "EDQUOT", errno.ENOSPC), "Disk quota exceeded", "/r/m.jsonl")
    assert cli.message(quota, command).startswith("/r/m.jsonl: Disk quota exceeded: free some")


def test_a_file_size_limit_is_named_as_one():
    said = cli.message(OSError(errno.EFBIG, "File too large", "/r/checkpoint.npz"), "train")
    assert said == ("/r/checkpoint.npz: File too large: a file size limit (ulimit -f, or the "
                    "file system's) (the run's last checkpoint is kept: then --resume)")


def sinusoid(out, **changes):
    return RunConfig(**{**dict(learner="maml", dataset="sinusoid", iterations=4, shots=2,
                               queries=2, meta_batch=2, out=str(out), checkpoint_every=0.0),
                        **changes})


def test_a_first_checkpoint_that_cannot_be_written_leaves_no_run_behind(tmp_path,
                                                                         monkeypatch, capsys):
    # it had left an empty metrics.jsonl and no checkpoint: a rerun was refused ("holds a
    # run: --resume"), --resume too ("no run to resume"), and the message said "--resume"
    def full(path, obj):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(io, "save", full)
    out = tmp_path / "run"
    with pytest.raises(OSError) as info:
        training.train(sinusoid(out), log=lambda *a: None)
    assert not out.exists()                     # the folder it made, removed again
    assert cli.message(info.value, "train") == (
        "No space left on device: free some space (nothing was saved: then rerun)")
    out.mkdir()                                 # a folder that was there stays, emptied
    with pytest.raises(OSError):
        training.train(sinusoid(out), log=lambda *a: None)
    assert out.is_dir() and os.listdir(out) == []
    monkeypatch.undo()
    assert training.train(sinusoid(out), log=lambda *a: None).curve    # the rerun runs


def test_a_report_line_cut_by_a_size_limit_is_taken_back(tmp_path):
    # the half line it left took the next result, and the file no longer parsed
    from test_hostile_input import write_checkpoint

    config = sinusoid(None)
    path = write_checkpoint(tmp_path / "c.npz", config)
    report = tmp_path / "report.jsonl"
    line = json.dumps({"MSE": 1.0, "note": "an earlier result"}) + "\n"
    report.write_text(line * 2)
    size = report.stat().st_size
    code = ("import resource, sys; from minimeta import cli; "
            f"resource.setrlimit(resource.RLIMIT_FSIZE, ({size + 40}, {size + 40})); "
            "sys.exit(cli.main(sys.argv[1:]))")
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    child = subprocess.run([sys.executable, "-c", code, "eval", "--checkpoint", path,
                            "--episodes", "2", "--report", str(report)],
                           capture_output=True, text=True, env=env, timeout=300)
    assert child.returncode == 2, child.stderr[-2000:]
    assert child.stderr.splitlines()[-1].endswith(
        "File too large: a file size limit (ulimit -f, or the file system's)")
    assert report.read_text() == line * 2            # cut back to the earlier results


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_a_report_on_a_full_disk_is_named_and_the_result_is_still_said(tmp_path, capsys):
    # it had said "No space left on device: free some space", naming no file, and the result
    # of the episodes run was lost with the report
    from test_hostile_input import write_checkpoint

    path = write_checkpoint(tmp_path / "c.npz", sinusoid(None))
    with pytest.raises(SystemExit) as info:
        cli.main(["eval", "--checkpoint", path, "--episodes", "2", "--report", "/dev/full"])
    assert info.value.code == 2
    said = capsys.readouterr()
    assert said.err.splitlines()[-1] == ("minimeta eval: /dev/full: No space left on device: "
                                         "free some space")
    assert re.match(r"MSE \d+\.\d{4} ± \d+\.\d{4} \(95% interval, 2 episodes\) \| maml on "
                    r"sinusoids", said.out)


def test_a_run_folder_moved_while_it_trains_stops_the_run_and_is_resumed_where_it_went(
        tmp_path):
    # io.save had made a new folder at the old path for the later checkpoints, while the
    # metrics followed the moved folder: two halves of one run, and a final line naming a
    # metrics file that did not exist
    out, moved = tmp_path / "run", tmp_path / "moved"
    config = sinusoid(out, iterations=8)
    model, learner = build(config)
    step, calls = learner.outer_step, []

    def outer_step(tasks):
        calls.append(1)
        if len(calls) == 3:
            os.rename(out, moved)          # mid-run, as a user's mv would
        return step(tasks)

    learner.outer_step = outer_step
    with pytest.raises(FolderMoved) as info:
        training.train(config, model, learner, log=lambda *a: None)
    assert str(info.value) == (
        f"training stopped at iteration 3: the run's folder {out} was moved or removed while "
        "it trained; the folder, wherever it is now, holds the checkpoint of iteration 2 and "
        "metrics.jsonl beyond it: --resume it there (--out its new path)")
    assert not out.exists()                               # no second folder at the old path
    assert int(io.load(str(moved / "checkpoint.npz"))["iteration"]) == 2
    training.train(sinusoid(moved, iterations=8, resume=True), log=lambda *a: None)
    with open(moved / "metrics.jsonl") as f:
        assert [json.loads(x)["iteration"] for x in f] == list(range(1, 9))


def test_a_failed_evaluation_takes_back_only_its_own_bytes(tmp_path):
    # the report had been cut back to its size when the evaluation began: a second
    # evaluation's line, appended meanwhile, went with it (found by review)
    from minimeta.experiments.fewshot import _report_file

    for existed in (False, True):
        path = str(tmp_path / f"report{existed}.jsonl")
        if existed:
            with open(path, "w") as f:
                f.write('{"earlier": 1}\n')
        with pytest.raises(KeyboardInterrupt):
            with _report_file(path) as first:                # an evaluation that fails
                with _report_file(path) as second:
                    second.write('{"second": 1}\n')          # one that ends first
                assert first is not second
                raise KeyboardInterrupt
        with open(path) as f:
            assert f.read().splitlines()[-1] == '{"second": 1}'


def test_a_save_that_fails_leaves_the_last_checkpoint_and_no_temporary(tmp_path, monkeypatch):
    # (a mutation audit: nothing had failed with the temporary file left behind)
    path = str(tmp_path / "checkpoint.npz")
    io.save(path, {"iteration": 1})

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(io.np, "savez", full)
    with pytest.raises(OSError, match="No space left"):
        io.save(path, {"iteration": 2})
    assert os.listdir(tmp_path) == ["checkpoint.npz"] and io.load(path)["iteration"] == 1


def test_a_save_reaches_the_disk_before_it_replaces_the_last(tmp_path, monkeypatch):
    # without the first fsync, a power cut after the rename can leave an empty checkpoint;
    # without the folder's, the rename itself may not have reached the disk
    calls, replace, fsync = [], io.os.replace, io.os.fsync
    home = os.stat(tmp_path)

    def which(fd):       # the file, or its folder (not another: a review's mutant synced '.')
        st = os.fstat(fd)
        return "fsync" if not stat.S_ISDIR(st.st_mode) else "fsync folder" if (
            st.st_dev, st.st_ino) == (home.st_dev, home.st_ino) else "fsync another folder"

    monkeypatch.setattr(io.os, "fsync", lambda fd: (calls.append(which(fd)), fsync(fd)))
    monkeypatch.setattr(io.os, "replace", lambda a, b: (calls.append("replace"), replace(a, b)))
    io.save(str(tmp_path / "checkpoint.npz"), {"iteration": 1})
    assert calls == ["fsync", "replace", "fsync folder"]
