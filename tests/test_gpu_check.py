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

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "benchmarks"))


def carry(root):
    """A stand-in of what ``gpu_prepare.sh`` carries under ``root/.gpu/cuda/nvvm``."""
    carried = root / ".gpu" / "cuda" / "nvvm"
    (carried / "lib64").mkdir(parents=True)
    (carried / "libdevice").mkdir()
    with lzma.open(carried / "lib64" / "libnvvm.so.4.xz", "wb") as f:
        f.write(b"NVVM 13.0")
    (carried / "libdevice" / "libdevice.10.bc").write_bytes(b"bitcode")


def machine(monkeypatch, nvvms):
    """Stand in the probe's child Python on a machine with a CUDA 13.0 driver: ``nvvms`` maps
    where an NVVM is found ("own", or a CUDA_HOME folder) to the PTX version it writes; a
    CUDA_HOME holding the carried library writes 9.0. The kernel runs only for PTX ≤ 9.0."""
    import _nvvm

    def run(cmd, **kwargs):
        home = os.environ.get("CUDA_HOME")
        lib = os.path.join(home or "/nowhere", "nvvm", "lib64", "libnvvm.so.4")
        if home in nvvms:
            ptx = nvvms[home]
        elif home and os.path.exists(lib) and open(lib, "rb").read() == b"NVVM 13.0":
            ptx = "9.0"
        else:
            ptx = nvvms.get("own")
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

    monkeypatch.setattr(_nvvm.subprocess, "run", run)
    monkeypatch.delenv("CUDA_HOME", raising=False)
    return _nvvm


def test_an_nvvm_newer_than_the_driver_is_passed_over_for_one_that_runs_a_kernel(
        tmp_path, monkeypatch):
    carry(tmp_path)
    system = tmp_path / "usr-local-cuda"
    (system / "nvvm" / "lib64").mkdir(parents=True)
    # numba's own NVVM is 13.5 (PTX 9.5): it compiles, the driver refuses it at the launch
    _nvvm = machine(monkeypatch, {"own": "9.5", str(system): "9.0"})
    found = _nvvm.nvvm(str(tmp_path), system=str(system))
    assert found["nvvm"] == f"the system's, CUDA_HOME={system}"
    assert (found["ptx_version"], found["kernel_ran"]) == ("9.0", True)
    assert "UNSUPPORTED_PTX_VERSION" in found["nvvm_failed"]["numba's own search"]["error"]
    assert os.environ["CUDA_HOME"] == str(system)


def test_the_carried_nvvm_is_unpacked_where_neither_numba_nor_the_system_has_one_that_runs(
        tmp_path, monkeypatch):
    carry(tmp_path)
    system = tmp_path / "usr-local-cuda"
    (system / "nvvm" / "lib64").mkdir(parents=True)
    _nvvm = machine(monkeypatch, {"own": "9.5", str(system): "9.5"})
    found = _nvvm.nvvm(str(tmp_path), system=str(system))
    home = os.environ["CUDA_HOME"]
    try:
        assert found["nvvm"] == f"carried, unpacked to {home}" and found["kernel_ran"]
        assert set(found["nvvm_failed"]) == {"numba's own search", str(system)}
        assert not home.startswith(str(tmp_path))       # not inside the carried tree
    finally:
        shutil.rmtree(home)


def test_numba_s_own_nvvm_is_kept_when_its_kernel_runs_and_nothing_is_unpacked(
        tmp_path, monkeypatch):
    carry(tmp_path)
    _nvvm = machine(monkeypatch, {"own": "9.0"})
    assert _nvvm.nvvm(str(tmp_path), system=str(tmp_path / "none")) == {
        "nvvm": "found by numba", "ptx_version": "9.0", "driver": "13.0", "kernel_ran": True}
    assert "CUDA_HOME" not in os.environ


def test_without_an_nvvm_that_runs_the_report_says_missing_and_why(tmp_path, monkeypatch):
    _nvvm = machine(monkeypatch, {})           # none anywhere, nothing carried
    found = _nvvm.nvvm(str(tmp_path / "nothing carried"), system=str(tmp_path / "none"))
    assert found["nvvm"] == "missing: NvvmSupportError: libNVVM cannot be found"
    assert "CUDA_HOME" not in os.environ


def test_a_probe_that_compiles_but_never_ran_its_kernel_is_not_a_success(monkeypatch):
    # the mutant the review found: compiling proves nothing about the driver loading the PTX
    import _nvvm

    monkeypatch.setattr(_nvvm.subprocess, "run", lambda cmd, **kw: subprocess.CompletedProcess(
        cmd, 0, 'NVVM_PROBE {"ptx_version": "9.5", "driver": "13.0"}\n', ""))
    error, info = _nvvm.probe()
    assert error is not None and info == {"ptx_version": "9.5", "driver": "13.0"}


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
    import gpu_check

    saved = tmp_path / "saved"
    polite = ("import signal, sys, time\n"
              f"signal.signal(signal.SIGTERM, lambda *a: (open({str(saved)!r}, 'w').write('x'),"
              " sys.exit(143)))\nprint('started', flush=True)\ntime.sleep(60)\n")
    start = time.perf_counter()
    assert gpu_check.bounded([sys.executable, "-c", polite], dict(os.environ), 2) == "timed out"
    assert saved.exists() and time.perf_counter() - start < 20     # it saved, then ended
    deaf = "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\ntime.sleep(60)\n"
    start = time.perf_counter()
    assert gpu_check.bounded([sys.executable, "-c", deaf], dict(os.environ), 1,
                             grace=1) == "timed out"
    assert time.perf_counter() - start < 20                          # killed after the grace
    assert gpu_check.bounded([sys.executable, "-c", "raise SystemExit(3)"], dict(os.environ),
                             10) == 3


def test_a_probe_that_hangs_is_a_failure_not_a_crash(monkeypatch):
    import _nvvm

    def hang(cmd, timeout, **kw):
        raise subprocess.TimeoutExpired(cmd, timeout)

    monkeypatch.setattr(_nvvm.subprocess, "run", hang)
    assert _nvvm.probe() == ("the probe ran past 120 s", {})
