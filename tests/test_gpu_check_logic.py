"""``benchmarks/gpu_check.py``'s bookkeeping, with its phases, its clock and the libraries stood
in: each phase's share of ``--budget``, a failed phase recorded while the next one runs, the
report on disk after every phase (whole or not at all), the timing rounds (the order rotated,
each call timed to its synchronisation), medians, ranges, the ratio to the faster PyTorch
setting, memory peaks, and the arguments refused. A mutation audit found every one of these
untested: a mutant of each passed all the tests, and would have wasted or misreported the one
run on a GPU. (The NVVM search, the timing phase's failures and the training's limits:
``test_gpu_check.py``.)
"""
import json
import os
import subprocess
import sys
import types

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "benchmarks"))
import gpu_check  # noqa: E402


class Clock:
    """A stand-in ``time`` for gpu_check: only the stand-in work moves it; a GPU call queues its
    seconds and a synchronisation waits them out."""

    def __init__(self):
        self.now, self.queued = 0.0, 0.0

    def perf_counter(self):
        return self.now

    def strftime(self, fmt):
        return "today"

    def sync(self):
        self.now, self.queued = self.now + self.queued, 0.0


def gpu(clock, used=1000):
    """The little of CuPy ``time_case`` touches: a device synchronisation (``clock``'s) and a
    memory pool with ``used`` bytes in use, whose allocator can be swapped."""
    pool = types.SimpleNamespace(used=used)
    pool.used_bytes = lambda: pool.used
    pool.malloc = lambda size: setattr(pool, "used", pool.used + size)
    cp = types.SimpleNamespace(pool=pool, get_default_memory_pool=lambda: pool)
    cp.allocator = pool.malloc
    cp.cuda = types.SimpleNamespace(
        Device=lambda: types.SimpleNamespace(synchronize=clock.sync),
        set_allocator=lambda malloc: setattr(cp, "allocator", malloc))
    return cp


def timed(monkeypatch, tuned_peak=900):
    """A clock, a GPU and a PyTorch stood in, and the calls of one timing case: each queues its
    next duration (the last one repeated) and logs its name; minimeta's allocates 100, 200 and
    50 bytes through CuPy's allocator (1300 bytes at most), PyTorch's 500 bytes, or
    ``tuned_peak`` with the autotuner on. (clock, cp, torch, {lib: durations}, log, makers)"""
    clock = Clock()
    monkeypatch.setattr(gpu_check, "time", clock)
    cp = gpu(clock)
    memory = {"peak": 0}
    torch = types.SimpleNamespace(
        backends=types.SimpleNamespace(cudnn=types.SimpleNamespace(benchmark=False)),
        cuda=types.SimpleNamespace(synchronize=clock.sync, max_memory_allocated=lambda: memory[
            "peak"], reset_peak_memory_stats=lambda: memory.update(peak=0)))
    durations, log = {}, []

    def call(lib):
        log.append(lib)
        clock.queued += durations[lib].pop(0) if len(durations[lib]) > 1 else durations[lib][0]

    def mine():
        call("minimeta")
        for size in (100, 200, -200, 50, -150):
            cp.allocator(size) if size > 0 else setattr(cp.pool, "used", cp.pool.used + size)

    def theirs():
        tuned = torch.backends.cudnn.benchmark
        call("torch_tuned" if tuned else "torch")
        memory["peak"] = max(memory["peak"], tuned_peak if tuned else 500)

    return clock, cp, torch, durations, log, (lambda: mine, lambda: theirs)


def time_case(clock, cp, torch, makers, rounds, seconds, name="maml5", table=None):
    return gpu_check.time_case(cp, name, makers, (cp.cuda.Device().synchronize, clock.sync),
                               torch, "cuda", rounds, seconds, table or {})


def test_timing_rounds_rotate_the_order_and_report_medians_ranges_and_the_best_ratio(
        monkeypatch):
    clock, cp, torch, durations, log, makers = timed(monkeypatch)
    durations.update(minimeta=[9, 1, 1, 1, 1, 1, 6, 1], torch=[9, 4], torch_tuned=[9, 2])
    row = time_case(clock, cp, torch, makers, 5, 1000)
    m, t, tt = "minimeta", "torch", "torch_tuned"
    # warm-up (two calls each), five rounds each starting one place further on, the peaks
    assert log == [m, m, t, t, tt, tt] + [m, t, tt, t, tt, m, tt, m, t, m, t, tt, t, tt, m] + [
        m, t]
    assert row["minimeta"] == {"median_s": 1, "min_s": 1, "max_s": 6, "rounds": 5,
                               "peak_bytes": 1300}      # timed to its synchronisation
    assert row["torch"] == {"median_s": 4, "min_s": 4, "max_s": 4, "rounds": 5,
                            "peak_bytes": 500}          # its default's peak, the autotuner off
    assert row["torch_tuned"]["median_s"] == 2
    assert row["ratio"] == 0.5 and "ratio_to_torch_loop" not in row   # over the faster: tuned
    assert cp.allocator == cp.pool.malloc and not torch.backends.cudnn.benchmark


def test_a_stacked_case_is_set_against_the_faster_setting_of_pytorch_s_loop(monkeypatch):
    clock, cp, torch, durations, log, makers = timed(monkeypatch)
    durations.update(minimeta=[3], torch=[2], torch_tuned=[1])
    loop = {"minimeta": {"median_s": 9}, "torch": {"median_s": 8}, "torch_tuned": {"median_s": 6}}
    row = time_case(clock, cp, torch, makers, 3, 1000, "maml5_stacked", {"maml5": loop})
    assert (row["ratio"], row["ratio_to_torch_loop"]) == (3, 0.5)


def test_a_case_gets_the_rounds_its_share_fits_at_least_3_at_most_rounds(monkeypatch):
    clock, cp, torch, durations, log, makers = timed(monkeypatch)
    durations.update(minimeta=[1], torch=[4], torch_tuned=[2])     # a round: 7 s
    # the warm-up's two rounds (14 s) spend the share too: 42 s leave 4 rounds, not 6
    assert time_case(clock, cp, torch, makers, 7, 42)["minimeta"]["rounds"] == 4
    assert time_case(clock, cp, torch, makers, 7, 30)["minimeta"]["rounds"] == 3
    assert time_case(clock, cp, torch, makers, 7, 1000)["torch"]["rounds"] == 7
    assert time_case(clock, cp, torch, makers, 2, 1000)["torch_tuned"]["rounds"] == 3


def test_cupy_s_peak_counts_the_bytes_in_use_before_and_restores_the_allocator(monkeypatch):
    cp = gpu(Clock(), used=4096)
    assert gpu_check.cupy_peak(cp, lambda: None, lambda: None) == 4096    # nothing allocated

    def fails():
        cp.allocator(10)
        raise MemoryError("out of memory")

    with pytest.raises(MemoryError):
        gpu_check.cupy_peak(cp, fails, lambda: None)
    assert cp.allocator == cp.pool.malloc


def test_each_case_gets_an_equal_share_of_what_is_left_and_only_those_asked_for_run(
        monkeypatch):
    clock, shares = Clock(), {}
    monkeypatch.setattr(gpu_check, "time", clock)
    takes = {"conv4": 50, "maml5": 10, "maml20": 30, "protonet": 5}

    def time_case(cp, name, makers, syncs, torch, device, rounds, seconds, table):
        shares[name] = round(seconds, 2)
        clock.now += takes[name]
        return {}

    monkeypatch.setattr(gpu_check, "time_case", time_case)
    monkeypatch.setattr(gpu_check, "cases", lambda *a: dict.fromkeys(takes, (None, None)))
    table = gpu_check.timings(gpu(clock), None, "cpu", 3, True, None, 90)
    assert shares == {"conv4": 22.5, "maml5": 13.33, "maml20": 15}       # 90/4, 40/3, 30/2
    assert table["protonet"] == {"skipped": "the phase's 90 s were spent"}    # 0 s left
    shares.clear()
    table = gpu_check.timings(gpu(clock), None, "cpu", 3, True, ["maml5", "protonet"], 90)
    assert list(table) == list(shares) == ["maml5", "protonet"]


def test_the_gpu_tests_run_bounded_and_a_child_that_runs_out_of_time_is_a_failure(
        tmp_path, monkeypatch):
    seen = []

    def run(cmd, stdout, timeout, **kwargs):
        seen.append(cmd)
        stdout.write("collected 9 items\n...\n=== 8 passed, 1 failed in 9.0s ===\n")
        if timeout < 100:
            raise subprocess.TimeoutExpired(cmd, timeout)
        return subprocess.CompletedProcess(cmd, 1)

    real = gpu_check.importlib.util.find_spec          # as where pytest-timeout is installed
    monkeypatch.setattr(gpu_check.importlib.util, "find_spec",
                        lambda name: object() if name == "pytest_timeout" else real(name))
    monkeypatch.setattr(gpu_check.subprocess, "run", run)
    done = gpu_check.gpu_tests(False, 600, str(tmp_path))
    assert done["exit_code"] == 1 and done["summary"] == "=== 8 passed, 1 failed in 9.0s ==="
    assert seen[0][seen[0].index("--timeout") + 1] == "150"      # a test: a quarter, <= 180 s
    assert "collected 9 items" in open(done["log"]).read()
    done = gpu_check.gpu_tests(True, 60, str(tmp_path))
    assert done["exit_code"] == "timed out"
    assert seen[1][seen[1].index("--timeout") + 1] == "15"
    assert seen[1][3:5] == ["-p", "simulated_gpu"]
    assert seen[1][seen[1].index("-k") + 1] == "not causal and not stacked3"


def test_the_report_on_disk_is_whole_or_the_last_one_and_a_failed_write_is_said(
        tmp_path, monkeypatch, capsys):
    path = str(tmp_path / "gpu_check.json")
    gpu_check.write(path, {"env": {"gpu": "H200"}})

    def full_disk(report, f, **kwargs):
        f.write('{"env": {"gp')
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(gpu_check.json, "dump", full_disk)
    gpu_check.write(path, {"env": {"gpu": "H200"}, "tests": {}})
    assert json.load(open(path)) == {"env": {"gpu": "H200"}}
    assert "could not write" in capsys.readouterr().out


def check(monkeypatch, tmp_path, argv, takes, results, torch=None, cuda=True):
    """``gpu_check.main()`` with each phase stood in: it takes ``takes[phase]`` seconds of a
    stand-in clock and returns ``results[phase]`` (an exception: raised); the timings save a
    table first. PyTorch: ``torch``'s stand-in, CUDA ``cuda``. (exit code, {phase: what it
    was given}, {phase: the report on disk when it began}, the report at the end)"""
    clock, given, on_disk = [0.0], {}, {}
    path = tmp_path / "gpu_check.json"

    def phase(name, *args):
        given[name] = args
        on_disk[name] = json.load(open(path)) if path.exists() else None
        clock[0] += takes.get(name, 0)
        if isinstance(results[name], Exception):
            raise results[name]
        return results[name]

    def timings(cp, torch, device, rounds, small, only, seconds, save):
        save({"conv4": {"minimeta": {"median_s": 0.001}}})
        return phase("timings", torch, rounds, small, only, seconds, json.load(open(path)))

    def nvvm(root):
        raise OSError("no driver")

    def train(out, minutes, episodes, device, simulate, left, say):
        return phase("train", round(minutes, 3), episodes, simulate, left())

    torch = torch and types.SimpleNamespace(cuda=types.SimpleNamespace(is_available=lambda: cuda))
    import _timing
    from minimeta.engine import backend
    for module, name, value in (
            (gpu_check, "elapsed", lambda: clock[0]), (gpu_check, "nvvm", nvvm),
            (gpu_check, "simulated", lambda: None), (backend, "cupy_module", lambda: "cp"),
            (_timing, "try_torch", lambda: torch), (gpu_check, "timings", timings),
            (gpu_check, "environment", lambda cp, torch: phase("env", cp, torch)),
            (gpu_check, "gpu_tests", lambda *a: phase("tests", *a)), (gpu_check, "train", train),
            (gpu_check, "ab", lambda *a: phase("ab", *a)),
            (gpu_check, "raw_gate", lambda *a: phase("raw", *a)),
            (sys, "path", list(sys.path)),
            (sys, "argv", ["gpu_check.py", "--out", str(tmp_path), *argv])):
        monkeypatch.setattr(module, name, value)
    monkeypatch.setitem(sys.modules, "_launch_kernel", types.SimpleNamespace(
        launches=lambda cp, simulate: phase("launches", simulate)))
    return gpu_check.main(), given, on_disk, json.load(open(path))


PASSED = {"env": {"gpu": "stand-in"}, "raw": {"ok": True}, "tests": {"exit_code": 0},
          "launches": {"kernel_ran": True},
          "ab": {"skipped": "no checkout"}, "timings": {"conv4": {}}, "train": {"accuracy": 0.9}}


def test_each_phase_gets_its_share_of_the_budget_from_what_is_left_when_it_starts(
        tmp_path, monkeypatch, capsys):
    takes = {"env": 10, "tests": 100, "timings": 100}
    code, given, _, report = check(monkeypatch, tmp_path, ["--budget", "540"], takes, PASSED)
    assert given["raw"] == (90, False)        # a sixth of the budget (under 0.25 × 530)
    assert given["tests"][1] == 180           # a third of the budget (under 0.45 × 530 left)
    assert given["ab"][1] == 107.5            # a quarter of the 430 s left (under a fifth)
    assert given["timings"][4] == 135         # a quarter (under 0.4 × 430)
    assert given["train"] == (3.5, 600, False, 330)   # all but 2 of the 330 s left: 3.5 min
    # the same budget, but the phases before took longer: under half, 40% of what is left
    takes = {"env": 200, "tests": 100, "timings": 150}
    code, given, _, report = check(monkeypatch, tmp_path, ["--budget", "540"], takes, PASSED)
    assert given["tests"][1] == pytest.approx(153) and given["timings"][4] == pytest.approx(96)
    assert "train" not in given and report["train"] == {"skipped": "90 s were left"}
    assert code == 1 and "failed phases: ['train']" in capsys.readouterr().out


def test_a_failed_phase_is_recorded_and_written_and_the_next_one_still_runs(
        tmp_path, monkeypatch, capsys):
    failing = {"env": RuntimeError("no device properties"), "raw": {"ok": False},
               "tests": {"exit_code": "timed out"},
               "launches": {"kernel_ran": False}, "ab": {"exit_code": "timed out"},
               "timings": {"conv4": {"error": "MemoryError"}},
               "train": {"accuracy": None, "eval_error": "exit 1"}}
    code, given, on_disk, report = check(monkeypatch, tmp_path, [], {}, failing)
    assert code == 1 and ("failed phases: ['env', 'raw', 'tests', 'launches', 'ab', "
                          "'timings', 'train']") in capsys.readouterr().out
    assert report["env"] == {"error": "RuntimeError: no device properties"}
    assert on_disk["tests"]["env"] == report["env"]             # written before the next phase
    assert report == dict(on_disk["train"], train=failing["train"])


def test_a_passing_simulated_check_exits_0_with_each_table_saved_as_it_comes(
        tmp_path, monkeypatch, capsys):
    code, given, on_disk, report = check(monkeypatch, tmp_path, [
        "--simulate", "--rounds", "7", "--episodes", "600", "--phases", "env", "timings",
        "train"], {}, PASSED)
    assert code == 0 and "failed phases: none" in capsys.readouterr().out
    assert report["env"] == {"gpu": "stand-in", "nvvm": "simulated"}
    # the table saved while the timings ran, beside the phases before them
    before = {k: v for k, v in report.items() if k not in ("timings", "train")}
    table = {"conv4": {"minimeta": {"median_s": 0.001}}}
    assert given["timings"][-1] == dict(before, timings=table)
    assert given["timings"][1:3] == (3, True) and given["train"][1:3] == (4, True)


def test_a_failed_nvvm_search_is_said_and_the_check_goes_on(tmp_path, monkeypatch, capsys):
    code, _, _, report = check(monkeypatch, tmp_path, ["--phases", "env"], {}, PASSED)
    assert code == 0 and report["env"]["nvvm"] == "the search failed: OSError: no driver"


@pytest.mark.parametrize("argv, message", [
    (["--budget", "nan"], "--budget must be at least 1, got nan"),
    (["--episodes", "1"], "--episodes must be at least 2, got 1"),     # a ± of one episode
    (["--only", "maml5w1s"], "argument --only: invalid choice: 'maml5w1s'")])   # none timed
def test_bad_arguments_are_refused_before_anything_is_made(argv, message, tmp_path, monkeypatch,
                                                           capsys):
    out = tmp_path / "out"
    monkeypatch.setattr(gpu_check.os, "makedirs", lambda *a, **k: pytest.fail("not refused"))
    monkeypatch.setattr(sys, "argv", ["gpu_check.py", "--out", str(out), *argv])
    with pytest.raises(SystemExit) as stop:
        gpu_check.main()
    assert stop.value.code == 2 and message in capsys.readouterr().err
    assert not out.exists()


def test_the_cases_offered_to_only_are_the_machine_benchmark_s():
    import machine

    assert gpu_check.CASES == machine.KEYS


@pytest.mark.parametrize("simulate, cuda, timed", [(False, True, True), (False, False, False),
                                                   (True, False, True)])
def test_minimeta_on_a_gpu_is_never_set_against_pytorch_on_the_cpu(
        simulate, cuda, timed, tmp_path, monkeypatch):
    # a bug a mutation audit found: a PyTorch that cannot reach CUDA (a CPU build, a CUDA
    # newer than the driver) had been timed on the host, each ratio minimeta's GPU over it
    code, given, _, report = check(monkeypatch, tmp_path, ["--phases", "timings"] + (
        ["--simulate"] if simulate else []), {}, PASSED, torch=True, cuda=cuda)
    assert (given["timings"][0] is not None) == timed       # (on --simulate: the CPU's, meant)
    assert report["torch_device"] == ("cuda" if cuda else "cpu")


def test_the_ab_phase_profiles_each_prepared_tree_then_this_one_and_kills_its_group_when_late(
        tmp_path, monkeypatch):
    """``_gpu_ab.ab``: skipped without prepared trees (a folder without ``minimeta/`` is none);
    else ``gpu_profile.py --trees`` on them, sorted, then this checkout, in a session of its
    own, whose whole group is killed past the phase's seconds (a tree's child holds the GPU)."""
    import signal
    import subprocess

    import _gpu_ab

    (tmp_path / ".gpu" / "trees" / "junk").mkdir(parents=True)
    assert "skipped" in _gpu_ab.ab(str(tmp_path / "out"), 9, False, root=str(tmp_path))
    for rev in ("e9e8600", "e0533c1"):
        (tmp_path / ".gpu" / "trees" / rev / "minimeta").mkdir(parents=True)
    made, killed = [], []

    class Child:
        pid = 4242

        def __init__(self, cmd, env, start_new_session):
            made.append((cmd, start_new_session))

        def wait(self, timeout=None):
            if timeout is not None and len(made) > 1:
                raise subprocess.TimeoutExpired("gpu_profile", timeout)
            return 0

    monkeypatch.setattr(subprocess, "Popen", Child)
    monkeypatch.setattr(os, "killpg", lambda pid, sig: killed.append((pid, sig)))
    trees = [str(tmp_path / ".gpu" / "trees" / rev) for rev in ("e0533c1", "e9e8600")]
    got = _gpu_ab.ab(str(tmp_path / "out"), 9, True, root=str(tmp_path))
    assert got == {"trees": trees + [str(tmp_path)], "exit_code": 0, "compare": None}
    cmd, session = made[0]
    assert session and cmd[cmd.index("--trees") + 1:] == trees + [str(tmp_path), "--simulate"]
    assert killed == []
    late = _gpu_ab.ab(str(tmp_path / "out"), 9, False, root=str(tmp_path))
    assert late["exit_code"] == "timed out" and killed == [(4242, signal.SIGKILL)]
