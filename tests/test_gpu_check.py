"""``benchmarks/gpu_check.py``'s own logic, which must hold on its one run on a GPU: it finds an
NVVM whose kernels the driver runs (not only compiles), keeps every timing row when one case
fails and writes them as it goes, stays within its phases' time, and stops an overrunning
child with SIGTERM first (a training run then saves its checkpoint). Found by a readiness
review (2026-12-02): the carried NVVM was 13.5, whose PTX a CUDA 13.0 driver refuses, and the
probe only compiled; one failing timing case lost every row; nothing bounded the timings.
(The whole script end to end on the simulated GPU: ``test_fake_cupy.py``.)
"""
import json
import lzma
import os
import shutil
import subprocess
import sys
import time
import types

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "benchmarks"))


def carry(root):
    """A stand-in of what ``gpu_prepare.sh`` carries under ``root/.gpu/cuda/nvvm``."""
    carried = root / ".gpu" / "cuda" / "nvvm"
    (carried / "lib64").mkdir(parents=True)
    (carried / "libdevice").mkdir()
    with lzma.open(carried / "lib64" / "libnvvm.so.4.xz", "wb") as f:
        f.write(b"NVVM 13.0")
    (carried / "libdevice" / "libdevice.10.bc").write_bytes(b"bitcode")


def toolkit(root, ptx):
    """A stand-in system toolkit at ``root`` whose NVVM writes PTX ``ptx``."""
    lib = root / "nvvm" / "lib64" / "libnvvm.so.4"
    lib.parent.mkdir(parents=True)
    lib.write_bytes(f"NVVM writing PTX {ptx}".encode())
    return root


def machine(monkeypatch, own):
    """Stand in the probe's child Python on a machine with a CUDA 13.0 driver, whose numba-cuda
    loads the NVVM of a pip wheel (writing PTX ``own``; None: no NVVM) unless another library
    is preloaded: cuda-pathfinder takes the wheel's before CUDA_HOME but keeps a loaded one. A
    stand-in library says which PTX it writes; the kernel runs only for PTX ≤ 9.0. Returns
    the module and the libraries ``ctypes.CDLL`` loaded into this process."""
    import _nvvm

    def run(cmd, env=None, **kwargs):
        preload = (env or {}).get("LD_PRELOAD", "").split()
        if preload:
            text = open(preload[0], "rb").read()
            ptx = "9.0" if text == b"NVVM 13.0" else text.decode().split()[-1]
        else:
            ptx = own
        if ptx is None:
            return subprocess.CompletedProcess(cmd, 1, "", "Traceback\nNvvmSupportError: "
                                               "libNVVM cannot be found\n")
        info = {"ptx_version": ptx, "driver": "13.0"}
        out = "NVVM_PROBE " + json.dumps(info) + "\n"
        if float(ptx) > 9.0:
            return subprocess.CompletedProcess(cmd, 1, out, "Traceback\nCudaAPIError: [222] "
                                               "CUDA_ERROR_UNSUPPORTED_PTX_VERSION\n")
        return subprocess.CompletedProcess(
            cmd, 0, out + "NVVM_PROBE " + json.dumps(dict(info, kernel_ran=True)) + "\n", "")

    loaded = []
    monkeypatch.setattr(_nvvm.subprocess, "run", run)
    monkeypatch.setattr(_nvvm.ctypes, "CDLL", lambda lib, mode=0: loaded.append(lib))
    clean_environment(monkeypatch)
    return _nvvm, loaded


def clean_environment(monkeypatch):
    """No CUDA_HOME or LD_PRELOAD, and whatever ``nvvm`` sets put back after the test (set
    first so that monkeypatch records them: a bare delenv of an absent variable records
    nothing, and an LD_PRELOAD left behind reaches every later child process)."""
    for name in ("CUDA_HOME", "LD_PRELOAD"):
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)


def search(tmp_path, monkeypatch, system_ptx):
    """``nvvm`` on the stand-in machine: a carried copy, a system toolkit writing PTX
    ``system_ptx``, and numba's own NVVM 13.5 (PTX 9.5: it compiles, the driver refuses it at
    the launch). (what it found, the libraries loaded here, the toolkit's folder)"""
    carry(tmp_path)
    system = toolkit(tmp_path / "usr-local-cuda", system_ptx)
    _nvvm, loaded = machine(monkeypatch, own="9.5")
    return _nvvm.nvvm(str(tmp_path), system=str(system)), loaded, system


def test_an_nvvm_newer_than_the_driver_is_passed_over_for_one_preloaded_that_runs(
        tmp_path, monkeypatch):
    found, loaded, system = search(tmp_path, monkeypatch, "9.0")
    lib = str(system / "nvvm" / "lib64" / "libnvvm.so.4")
    assert found["nvvm"] == f"the system's: {lib}"
    assert (found["ptx_version"], found["kernel_ran"]) == ("9.0", True)
    assert "UNSUPPORTED_PTX_VERSION" in found["nvvm_failed"]["numba's own search"]["error"]
    # preloaded for the children and in this process; CUDA_HOME alone would not have won
    assert os.environ["LD_PRELOAD"] == lib and loaded == [lib]
    assert os.environ["CUDA_HOME"] == str(system)


def test_a_preloaded_nvvm_goes_first_and_keeps_what_was_preloaded_before(tmp_path,
                                                                        monkeypatch):
    # the NVVM must load before anything else, and a library already preloaded (a sanitizer, a
    # shim) must stay (a mutation audit found both untested)
    carry(tmp_path)
    system = toolkit(tmp_path / "usr-local-cuda", "9.0")
    _nvvm, loaded = machine(monkeypatch, own="9.5")
    shim = tmp_path / "libshim.so"
    shim.write_bytes(b"NVVM writing PTX 9.5")   # the stand-in takes the first as the NVVM
    monkeypatch.setenv("LD_PRELOAD", str(shim))
    found = _nvvm.nvvm(str(tmp_path), system=str(system))
    lib = str(system / "nvvm" / "lib64" / "libnvvm.so.4")
    assert found["nvvm"] == f"the system's: {lib}" and found["ptx_version"] == "9.0"
    assert os.environ["LD_PRELOAD"] == f"{lib} {shim}"


def test_the_carried_nvvm_is_unpacked_where_neither_numba_nor_the_system_has_one_that_runs(
        tmp_path, monkeypatch):
    found, loaded, _ = search(tmp_path, monkeypatch, "9.5")
    home = os.environ["CUDA_HOME"]
    try:
        lib = os.path.join(home, "nvvm", "lib64", "libnvvm.so.4")
        assert found["nvvm"] == f"carried: {lib}" and found["kernel_ran"]
        assert set(found["nvvm_failed"]) == {"numba's own search", "the system's"}
        assert not home.startswith(str(tmp_path))       # not inside the carried tree
        assert os.environ["LD_PRELOAD"] == lib and loaded == [lib]
    finally:
        shutil.rmtree(home)


def test_numba_s_own_nvvm_is_kept_when_its_kernel_runs_and_nothing_is_preloaded(
        tmp_path, monkeypatch):
    carry(tmp_path)
    _nvvm, loaded = machine(monkeypatch, own="9.0")
    assert _nvvm.nvvm(str(tmp_path), system=str(tmp_path / "none")) == {
        "nvvm": "found by numba", "ptx_version": "9.0", "driver": "13.0", "kernel_ran": True}
    assert "CUDA_HOME" not in os.environ and "LD_PRELOAD" not in os.environ and not loaded


def test_without_an_nvvm_that_runs_the_report_says_missing_and_cleans_up(tmp_path, monkeypatch):
    carry(tmp_path)
    _nvvm, loaded = machine(monkeypatch, own=None)
    made = []
    unpack = _nvvm.unpack
    monkeypatch.setattr(_nvvm, "unpack", lambda *a: made.append(unpack(*a)) or made[-1])
    with open(tmp_path / ".gpu" / "cuda" / "nvvm" / "lib64" / "libnvvm.so.4.xz", "wb") as f:
        f.write(lzma.compress(b"NVVM writing PTX 9.5"))          # a carried copy too new
    found = _nvvm.nvvm(str(tmp_path), system=str(tmp_path / "none"))
    assert found["nvvm"] == "missing: CudaAPIError: [222] CUDA_ERROR_UNSUPPORTED_PTX_VERSION"
    assert set(found["nvvm_failed"]) == {"numba's own search", "carried"}
    assert made and not os.path.exists(made[0])                 # the unpacked copy removed
    assert "CUDA_HOME" not in os.environ and "LD_PRELOAD" not in os.environ and not loaded


def test_a_probe_that_compiles_but_never_ran_its_kernel_is_not_a_success(monkeypatch):
    # the mutant the review found: compiling proves nothing about the driver loading the PTX
    import _nvvm

    monkeypatch.setattr(_nvvm.subprocess, "run", lambda cmd, **kw: subprocess.CompletedProcess(
        cmd, 0, 'NVVM_PROBE {"ptx_version": "9.5", "driver": "13.0"}\n', ""))
    error, info = _nvvm.probe()
    assert error is not None and info == {"ptx_version": "9.5", "driver": "13.0"}


def test_a_probe_that_hangs_is_a_failure_and_no_other_nvvm_is_tried(tmp_path, monkeypatch):
    import _nvvm

    calls = []

    def hang(cmd, timeout, **kw):
        calls.append(cmd)
        raise subprocess.TimeoutExpired(cmd, timeout)

    carry(tmp_path)
    clean_environment(monkeypatch)
    monkeypatch.setattr(_nvvm.subprocess, "run", hang)
    monkeypatch.setattr(_nvvm, "unpack", lambda *a: calls.append("unpacked"))
    assert _nvvm.probe() == ("the probe ran past 120 s", {})
    for system in (toolkit(tmp_path / "sys", "9.0"), tmp_path / "none"):
        calls.clear()
        found = _nvvm.nvvm(str(tmp_path), system=str(system))
        assert found["nvvm"] == "missing: the probe ran past 120 s" and len(calls) == 1, calls
    # numba's own fails at once, the system's hangs: the carried copy is not unpacked
    monkeypatch.setattr(_nvvm.subprocess, "run", lambda cmd, timeout, env, **kw: (
        calls.append(env.get("LD_PRELOAD")), hang(cmd, timeout))[-1] if env.get("LD_PRELOAD")
        else subprocess.CompletedProcess(cmd, 1, "", "NvvmSupportError: not found\n"))
    calls.clear()
    found = _nvvm.nvvm(str(tmp_path), system=str(toolkit(tmp_path / "sys2", "9.0")))
    assert found["nvvm"] == "missing: the probe ran past 120 s"
    assert "unpacked" not in calls and set(found["nvvm_failed"]) == {"numba's own search",
                                                                      "the system's"}


def host_cupy():
    """The little of CuPy ``timings`` touches: a device synchronisation and a memory pool."""
    pool = types.SimpleNamespace(used_bytes=lambda: 0, malloc=lambda size: None)
    cuda = types.SimpleNamespace(Device=lambda: types.SimpleNamespace(synchronize=lambda: None),
                                 set_allocator=lambda malloc: None)
    return types.SimpleNamespace(cuda=cuda, get_default_memory_pool=lambda: pool)


def test_a_failing_timing_case_keeps_the_rows_before_and_after_it_each_saved(monkeypatch):
    import gpu_check

    def out_of_memory():
        raise MemoryError("out of memory allocating 2 GiB")

    monkeypatch.setattr(gpu_check, "cases", lambda *a: {
        "conv4": (lambda: (lambda: None), None), "maml5": (lambda: out_of_memory, None),
        "protonet": (lambda: (lambda: None), None)})
    saved = []
    table = gpu_check.timings(host_cupy(), None, "cpu", 3, True, None, 30,
                              save=lambda t: saved.append(json.loads(json.dumps(t))))
    assert table["maml5"] == {"error": "MemoryError: out of memory allocating 2 GiB"}
    assert table["conv4"]["minimeta"]["rounds"] == table["protonet"]["minimeta"]["rounds"] == 3
    assert [list(t) for t in saved] == [["conv4"], ["conv4", "maml5"],
                                        ["conv4", "maml5", "protonet"]]


def test_the_cases_left_when_the_timings_share_is_spent_are_skipped(monkeypatch):
    import gpu_check

    slow = lambda: time.sleep(0.05)                 # noqa: E731  (5 calls: 0.25 s)
    monkeypatch.setattr(gpu_check, "cases", lambda *a: {
        "conv4": (lambda: slow, None), "maml5": (lambda: slow, None),
        "protonet": (lambda: slow, None)})
    table = gpu_check.timings(host_cupy(), None, "cpu", 7, True, None, 0.2)
    assert table["conv4"]["minimeta"]["rounds"] == 3        # the least a case takes
    assert table["maml5"] == table["protonet"] == {"skipped": "the phase's 0 s were spent"}


def test_an_overrunning_command_gets_sigterm_first_then_sigkill(tmp_path):
    import _gpu_train

    saved = tmp_path / "saved"
    polite = ("import signal, sys, time\n"
              f"signal.signal(signal.SIGTERM, lambda *a: (open({str(saved)!r}, 'w').write('x'),"
              " sys.exit(143)))\nprint('started', flush=True)\ntime.sleep(60)\n")
    start = time.perf_counter()
    assert _gpu_train.bounded([sys.executable, "-c", polite], dict(os.environ), 2) == "timed out"
    assert saved.exists() and time.perf_counter() - start < 20     # it saved, then ended
    deaf = "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\ntime.sleep(60)\n"
    start = time.perf_counter()
    assert _gpu_train.bounded([sys.executable, "-c", deaf], dict(os.environ), 1,
                             grace=1) == "timed out"
    assert time.perf_counter() - start < 20                          # killed after the grace
    assert _gpu_train.bounded([sys.executable, "-c", "raise SystemExit(3)"], dict(os.environ),
                             10) == 3


def fake_commands(monkeypatch, out, durations, codes, checkpoint=True):
    """``_gpu_train.train``'s two commands stood in: each advances a fake clock by its
    duration (capped by its limit) and exits with its code; training writes its metrics (a
    line an iteration) and a checkpoint (unless not ``checkpoint``), a successful evaluation
    appends its row to the report, after an earlier run's (a mutation audit found the reading
    of the first lines untested). Returns the limits and the commands each was given."""
    import _gpu_train

    clock, limits, commands = [0.0], [], []
    (out / "eval.jsonl").write_text('{"accuracy": 0.2, "interval": 0.1}\n')   # a run before

    def bounded(cmd, env, seconds, grace=30, say=print):
        limits.append(seconds)
        commands.append(cmd)
        what = len(limits) - 1
        clock[0] += min(durations[what], seconds)
        if what == 0:
            run = out / "maml5w1s"
            run.mkdir(exist_ok=True)
            if checkpoint:
                (run / "checkpoint.npz").write_bytes(b"")
            (run / "metrics.jsonl").write_text('{"iteration": 899, "train_seconds": 249.7}\n'
                                               '{"iteration": 900, "train_seconds": 250.0}\n')
        elif codes[what] == 0:
            with open(out / "eval.jsonl", "a") as f:
                f.write('{"accuracy": 0.9, "interval": 0.01}\n')
        return "timed out" if durations[what] > seconds else codes[what]

    monkeypatch.setattr(_gpu_train, "bounded", bounded)
    return _gpu_train, (lambda: 480 - 300 - clock[0]), limits, commands   # 300 s spent before


def test_the_evaluation_s_limit_is_what_training_left_and_its_failure_keeps_the_figures(
        tmp_path, monkeypatch):
    # 180 s left: training would get its 3 minutes and one to start, but never the last
    # minute: 120 s
    _gpu_train, left, limits, _ = fake_commands(monkeypatch, tmp_path, [110, 999], [0, 0])
    result = _gpu_train.train(str(tmp_path), 3.0, 600, "cuda", False, left, say=lambda m: 0)
    assert limits == [120, 70]            # the evaluation: the 70 s left after training
    assert result["eval_exit"] == "timed out" and result["eval_error"] == "ran out of time"
    assert result["iterations"] == 900 and result["train_seconds"] == 250.0   # kept


def test_a_training_stopped_by_its_limit_is_evaluated_from_its_checkpoint(
        tmp_path, monkeypatch):
    # half a minute of training and one to start: 90 s, then the 90 s left to evaluate
    _gpu_train, left, limits, _ = fake_commands(monkeypatch, tmp_path, [999, 20], [0, 0])
    result = _gpu_train.train(str(tmp_path), 0.5, 600, "cuda", False, left, say=lambda m: 0)
    assert limits == [90, 90] and result["train_exit"] == "timed out"
    assert (result["iterations"], result["accuracy"]) == (900, 0.9)
    assert "eval_error" not in result


def test_a_probe_s_error_is_the_last_error_line_of_its_traceback(monkeypatch):
    # a chained traceback names the first error first: the one that stopped the probe is last
    # (a mutation audit found the order untested)
    import _nvvm

    err = ("Traceback (most recent call last):\nImportError: no cuda_bindings\n\nDuring "
           "handling of the above exception, another exception occurred:\n\nTraceback (most "
           "recent call last):\nCudaAPIError: [222] CUDA_ERROR_UNSUPPORTED_PTX_VERSION\n")
    monkeypatch.setattr(_nvvm.subprocess, "run", lambda cmd, **kw: subprocess.CompletedProcess(
        cmd, 1, "", err))
    assert _nvvm.probe()[0] == "CudaAPIError: [222] CUDA_ERROR_UNSUPPORTED_PTX_VERSION"


def test_a_command_deaf_to_sigterm_is_killed_and_reaped_not_left_running(tmp_path, monkeypatch):
    # the check's later phases and the next session need the GPU it holds (a mutation audit
    # found that a bounded() which never sent SIGKILL still passed)
    import _gpu_train

    children = []

    class Popen(subprocess.Popen):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            children.append(self)

    monkeypatch.setattr(_gpu_train.subprocess, "Popen", Popen)
    deaf = "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\ntime.sleep(30)\n"
    try:
        assert _gpu_train.bounded([sys.executable, "-c", deaf], dict(os.environ), 1, grace=1,
                                  say=lambda m: 0) == "timed out"
        assert children[0].returncode == -9                   # SIGKILL, and waited for
    finally:
        if children and children[0].poll() is None:
            children[0].kill()
            children[0].wait()


def test_training_out_of_time_before_a_checkpoint_fails_and_is_given_its_minutes(
        tmp_path, monkeypatch):
    # a mutation audit found untested: the missing checkpoint (an earlier run's stale one
    # would have been evaluated) and the minutes on the command line (rounded to whole ones)
    _gpu_train, left, limits, commands = fake_commands(monkeypatch, tmp_path, [999, 20], [0, 0],
                                                       checkpoint=False)
    with pytest.raises(RuntimeError, match="training ran out of time before its first check"):
        _gpu_train.train(str(tmp_path), 0.25, 600, "cuda", False, left, say=lambda m: 0)
    assert len(commands) == 1 and commands[0][commands[0].index("--minutes") + 1] == "0.25"


def test_the_launch_phase_counts_every_launch_and_times_one_in_microseconds(monkeypatch):
    # each launch adds one to the array: one launch lost is a kernel that did not run (a
    # mutation audit found the count and the per-launch division untested)
    import numpy as np

    import _launch_kernel
    from minimeta.kernels import _cuda

    clock, lost = [0.0], []

    def launch(kernel, n, a):
        clock[0] += 5e-6
        if len(lost) == 0 or lost.pop():
            a += 1

    cp = types.SimpleNamespace(zeros=np.zeros, float32=np.float32, asnumpy=np.asarray,
                               cuda=types.SimpleNamespace(Device=lambda: types.SimpleNamespace(
                                   synchronize=lambda: None)))
    monkeypatch.setattr(_cuda, "launch", launch)
    monkeypatch.setattr(_launch_kernel, "time", types.SimpleNamespace(
        perf_counter=lambda: clock[0]))
    done = _launch_kernel.launches(cp, True)
    assert done["kernel_ran"] is True
    assert done["minimeta_launch"]["us_per_launch"] == pytest.approx(5.0)
    lost[:] = [True] * 5 + [False]                  # the sixth launch does nothing
    assert _launch_kernel.launches(cp, True)["kernel_ran"] is False
    monkeypatch.setattr(_cuda, "launch", lambda *a: 1 / 0)
    with pytest.raises(ZeroDivisionError):          # minimeta's own way failing is no result
        _launch_kernel.launches(cp, True)
