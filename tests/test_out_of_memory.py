"""A run that needs more memory than the machine has: a ``MemoryError`` and one line, not the
kernel's OOM killer, and the iterations it finished saved.

Found by probing (2026-12-03): ``minimeta train --meta-batch 10000 --shots 10000`` grew to
24 GB and was killed (exit 137, not a word), since Linux lends memory it does not have and
kills when it is touched. ``threads.memory_ceiling`` (the command line's computing commands run
inside it) caps the process's private memory at what it held plus what is available, so the
allocation past it fails at once. And an out-of-memory stop now saves the whole iterations
before it, as a non-finite stop does: it had lost every one since the last periodic save.
The machine's memory is faked small here (``available_memory``), never filled.

Read next: ``test_failed_steps.py`` (a step that raises leaves nothing half done).
"""
import os
import resource
import subprocess
import sys

import numpy as np
import pytest

from minimeta import cli, io, threads
from minimeta.kernels import threads as kernel_threads
from minimeta.learners.stacked import StackedTasks

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="RLIMIT_DATA is Linux's")
MIB = 1 << 20
TRAIN = ["train", "--learner", "maml", "--dataset", "sinusoid", "--queries", "2"]
# in a child, so the ceiling and the malloc policy of the command line stay its own
CHILD = """
import sys
from minimeta import cli
from minimeta.kernels import threads
threads.available_memory = lambda *args, **kwargs: {room}
sys.exit(cli.main(sys.argv[1:]))
"""


def test_an_allocation_past_the_ceiling_fails_and_the_limit_is_put_back(monkeypatch):
    monkeypatch.setattr(kernel_threads, "available_memory", lambda *a, **k: 64 * MIB)
    before = resource.getrlimit(resource.RLIMIT_DATA)
    with threads.memory_ceiling() as ceiling:
        assert ceiling is not None and resource.getrlimit(resource.RLIMIT_DATA)[0] == ceiling
        with pytest.raises(MemoryError):    # 4 GiB, past the 64 MiB left (and past the free
            np.empty(4096 * MIB // 8)         # heap a long process keeps, which it may reuse)
        small = np.ones(MIB // 8)            # room below the ceiling still serves
    assert small.sum() == MIB // 8
    assert resource.getrlimit(resource.RLIMIT_DATA) == before


def test_no_ceiling_where_the_memory_cannot_be_read(monkeypatch, tmp_path):
    monkeypatch.setattr(kernel_threads, "available_memory", lambda *a, **k: None)
    with threads.memory_ceiling() as ceiling:
        assert ceiling is None
    monkeypatch.setattr(kernel_threads, "available_memory", lambda *a, **k: 64 * MIB)
    with threads.memory_ceiling(status=str(tmp_path / "none")) as ceiling:
        assert ceiling is None


def test_a_lower_limit_already_set_is_kept(monkeypatch):
    monkeypatch.setattr(kernel_threads, "available_memory", lambda *a, **k: 1 << 40)
    soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
    low = 1 << 38   # 256 GiB: below the ceiling of 1 TiB more
    if hard != resource.RLIM_INFINITY and hard < low:
        pytest.skip("a hard limit below the test's")
    resource.setrlimit(resource.RLIMIT_DATA, (low, hard))
    try:
        with threads.memory_ceiling() as ceiling:
            assert ceiling == low == resource.getrlimit(resource.RLIMIT_DATA)[0]
    finally:
        resource.setrlimit(resource.RLIMIT_DATA, (soft, hard))


def test_a_run_too_large_for_the_memory_is_one_line_and_its_first_checkpoint_stays(tmp_path):
    out = tmp_path / "run"
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    child = subprocess.run(
        [sys.executable, "-c", CHILD.format(room=256 * MIB)] + TRAIN +
        ["--meta-batch", "2000", "--shots", "2000", "--iterations", "2", "--out", str(out)],
        capture_output=True, text=True, env=env, timeout=600)
    assert child.returncode == 2, child.stderr[-3000:]
    last = child.stderr.strip().splitlines()[-1]
    assert last.startswith("minimeta train: out of memory (") and "Traceback" not in child.stderr
    assert f"{out}/checkpoint.npz holds iteration 0" in last
    assert int(io.load(str(out / "checkpoint.npz"))["iteration"]) == 0


def fails_at_the_fourth_iteration(error, out, monkeypatch, capsys):
    """``minimeta train`` of 10 iterations (no periodic save) whose fourth meta-iteration
    raises ``error``: the exit code, the last line on stderr, the checkpoint's iteration."""
    calls = []
    step = StackedTasks.outer_step

    def failing(self, tasks):
        calls.append(1)
        if len(calls) == 4:
            raise error
        return step(self, tasks)

    monkeypatch.setattr(StackedTasks, "outer_step", failing)
    with pytest.raises(SystemExit) as stopped:
        cli.main(TRAIN + ["--meta-batch", "2", "--shots", "2", "--iterations", "10",
                          "--checkpoint-every", "3600", "--out", str(out)])
    last = capsys.readouterr().err.strip().splitlines()[-1]
    return stopped.value.code, last, int(io.load(str(out / "checkpoint.npz"))["iteration"])


def test_an_out_of_memory_stop_saves_the_iterations_it_finished(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    error = MemoryError("Unable to allocate 14.9 GiB for an array")
    assert fails_at_the_fourth_iteration(error, out, monkeypatch, capsys) == (2, (
        f"minimeta train: out of memory (Unable to allocate 14.9 GiB for an array; training "
        f"stopped: {out}/checkpoint.npz holds iteration 3, the last whole one): ask for fewer "
        "or smaller tasks, episodes or batches"), 3)
    resumed = cli.main(TRAIN + ["--meta-batch", "2", "--shots", "2", "--iterations", "5",
                                "--out", str(out), "--resume"])
    assert resumed == 0 and int(io.load(str(out / "checkpoint.npz"))["iteration"]) == 5


class CUBLASError(RuntimeError):
    """CuPy's (``cupy_backends.cuda.libs.cublas``): the status's name is its whole message."""


class CudaAPIError(Exception):
    """numba-cuda's, a driver call's failure: ``[code] Call to <function> results in <name>``."""


@pytest.mark.parametrize("error", [
    CUBLASError("CUBLAS_STATUS_ALLOC_FAILED"),
    CudaAPIError("[2] Call to cuMemAlloc results in CUDA_ERROR_OUT_OF_MEMORY")])
def test_a_gpu_library_out_of_memory_is_an_out_of_memory_stop_too(tmp_path, monkeypatch, capsys,
                                                                  error):
    # a GPU's memory can run out in cuBLAS's workspace or a driver call, whose errors are not
    # MemoryErrors (CuPy's pool's is): they had ended the run as a failure, losing every
    # iteration since the last periodic save
    out = tmp_path / "run"
    assert fails_at_the_fourth_iteration(error, out, monkeypatch, capsys) == (2, (
        f"minimeta train: out of memory ({error}; training stopped: {out}/checkpoint.npz "
        "holds iteration 3, the last whole one): ask for fewer or smaller tasks, episodes or "
        "batches"), 3)


def test_another_gpu_library_error_is_not_taken_for_out_of_memory(tmp_path, monkeypatch, capsys):
    # the mutant that takes every RuntimeError for one: a failure stays a failure, unsaved
    error = CUBLASError("CUBLAS_STATUS_INVALID_VALUE")
    assert fails_at_the_fourth_iteration(error, tmp_path / "run", monkeypatch, capsys) == (
        2, "minimeta train: CUBLAS_STATUS_INVALID_VALUE", 0)
