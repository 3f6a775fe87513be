"""A disk that fills up under a training run: the run stops with one line that says what to do,
its last checkpoint intact, and once there is room again ``--resume`` goes on from it with
every iteration logged once. Checked for real on a 300 KiB tmpfs mounted in a private mount
namespace (root and ``unshare -m``; skipped elsewhere), and the message without one."""
import errno
import json
import os
import shutil
import subprocess
import sys

import pytest

from minimeta import cli

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
    assert seen["err"] == ("minimeta train: No space left on device: free some space (the "
                           "run's last checkpoint is kept: then --resume)\n")
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
