"""What the machine allows: numba without OpenMP or TBB, a CPU quota, a read-only install;
and OpenMP's threads told to sleep, not spin, when a loop ends.

Where numba finds neither an OpenMP runtime (libgomp) nor TBB, as in a slim Docker image or
with pip's numba on macOS, it falls back, without a word, to its ``workqueue`` threading
layer, which aborts the process (SIGABRT, "Concurrent access has been detected") when two
threads run its parallel kernels at once: every ``minimeta train`` of a conv net did, at the
first meta-iteration. ``kernels.threads.concurrent`` now runs the tasks of a meta-batch and a
kernel's pieces one at a time there. Each test runs a child Python with
``NUMBA_THREADING_LAYER=workqueue`` (what numba picks when libgomp is hidden, checked by hand
in a mount namespace: docs/PERFORMANCE.md, "Process policy"), and the mutant without the
guard must die. And "every core" is every core the process may use: no more than its control
group's CPU quota (``kernels.threads.cpu_quota``, on fake cgroup v1 and v2 trees). And where
numba can write its cache of compiled kernels neither beside them nor in the home folder (a
container with a read-only root file system), every kernel module failed to import ("no
locator available"); ``kernels._import`` now gives numba a private temporary folder. Last,
``configure`` sets OMP_WAIT_POLICY=PASSIVE before numba's OpenMP runtime loads (checked with
the runtime's own report, ``OMP_DISPLAY_ENV``). (Where PyTorch was imported first, numba's
loops run in PyTorch's runtime instead: ``test_benchmark_workloads.py``.) And a machine's first
run pauses about half a minute while numba compiles the convolutions: it is said beforehand
(``kernels.compiled_before``), a silence had looked like a hang.

Read next: ``test_budget.py`` (training budgets in minutes).
"""
import importlib
import os
import shutil
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

from minimeta import kernels as K
from minimeta.engine import workers
from minimeta.kernels import threads as kernel_threads

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# tasks on 2 workers and a conv split over 2 threads, each calling numba's parallel kernels
CHILD = textwrap.dedent("""
    import sys
    import numpy as np
    from minimeta.engine.workers import map_threads
    from minimeta.kernels import conv_numba, conv_ref, threads, pool_numba
    if sys.argv[1] == "mutant":                 # the guard switched off
        threads.concurrent_kernels = lambda: True
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 8, 12, 12))
    w = rng.standard_normal((8, 8, 3, 3))
    threads.set_split_threads(2)
    y = conv_numba.conv2d(x, w, 2, 1)           # im2col (a prange) on 2 threads, 2 chunks
    assert np.allclose(y, conv_ref.conv2d(x, w, 2, 1))
    big = rng.standard_normal((128, 16, 24, 24))     # some ms a call: the 2 workers overlap

    def pooled(i):
        return sum(pool_numba.max_pool2d(big * i, 2, 2)[0].sum() for _ in range(10))

    pools = map_threads(pooled, range(8), 2)
    assert np.allclose(pools, [pooled(i) for i in range(8)])
    print("finished", threads._LAYER.get("name"))
""")


def child(mode):
    env = dict(os.environ, NUMBA_THREADING_LAYER="workqueue", NUMBA_NUM_THREADS="2",
               PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-c", CHILD, mode], capture_output=True, text=True,
                          env=env, timeout=300)


def test_workqueue_runs_finish_one_thread_at_a_time_and_say_so():
    run = child("guarded")
    assert run.returncode == 0, run.stderr[-2000:]
    assert "finished workqueue" in run.stdout
    warned = [line for line in run.stderr.splitlines() if "threading layer is 'workqueue'" in line]
    assert len(warned) == 1 and "pip install tbb" in warned[0]      # once, with the remedy


def test_the_mutant_without_the_guard_aborts():
    """The failure the guard prevents is real: the same child, the guard off, is killed."""
    run = child("mutant")
    assert run.returncode != 0 and "finished" not in run.stdout
    assert "Concurrent access has been detected" in run.stderr


@pytest.mark.parametrize("safe", [True, False])
def test_guard_decides_where_tasks_and_pieces_run(safe, monkeypatch):
    """With a threadsafe layer, tasks and pieces go to other threads; without, all run in the
    caller's thread, in order (the same results)."""
    monkeypatch.setattr(kernel_threads, "concurrent_kernels", lambda: safe)
    monkeypatch.setitem(kernel_threads._LAYER, "warned", True)     # keep the test quiet
    monkeypatch.setattr(kernel_threads.LOCAL, "split", 2)
    me = threading.get_ident()

    def where(i):
        return i, threading.get_ident() == me

    for ran in (workers.map_threads(where, range(6), 2), kernel_threads.parallel_map(where,
                                                                                  range(6))):
        assert [i for i, _ in ran] == list(range(6))
        assert all(here for _, here in ran) == (not safe)


def test_concurrent_asks_numba_once_and_keeps_single_requests(monkeypatch):
    monkeypatch.setattr(kernel_threads, "_LAYER", {})
    assert kernel_threads.concurrent(1) == 1 and kernel_threads._LAYER == {}   # not asked
    n = kernel_threads.concurrent(3)
    assert kernel_threads._LAYER["name"] in ("omp", "tbb", "workqueue")
    assert n == (3 if kernel_threads._LAYER["name"] != "workqueue" else 1)
    assert np.isscalar(n)


def cgroup_tree(tmp_path, groups, files):
    """A fake /proc/self/cgroup (``groups``) and cgroup mount (``files``: path → text)."""
    for path, text in files.items():
        (tmp_path / "fs" / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "fs" / path).write_text(text)
    (tmp_path / "cgroup").write_text(groups)
    return dict(root=str(tmp_path / "fs"), groups=str(tmp_path / "cgroup"))


@pytest.mark.parametrize("groups, files, cpus", [
    ("0::/\n", {"cpu.max": "max 100000\n"}, None),                      # v2, no quota
    ("0::/\n", {"cpu.max": "200000 100000\n"}, 2),                      # docker --cpus 2
    ("0::/\n", {"cpu.max": "150000 100000\n"}, 2),                      # 1.5 CPUs: round up
    ("0::/\n", {"cpu.max": "5000 100000\n"}, 1),                        # at least one
    ("0::/pod/c\n", {"pod/cpu.max": "300000 100000\n",                  # the ancestor's is
                     "pod/c/cpu.max": "max 100000\n"}, 3),              # the limit
    ("0::/pod/c\n", {"pod/cpu.max": "300000 100000\n",
                     "pod/c/cpu.max": "100000 100000\n"}, 1),           # the smallest
    ("4:cpu,cpuacct:/g\n", {"cpu,cpuacct/g/cpu.cfs_quota_us": "250000\n",  # v1
                            "cpu,cpuacct/g/cpu.cfs_period_us": "100000\n"}, 3),
    ("4:cpu,cpuacct:/docker/x\n", {"cpu/cpu.cfs_quota_us": "100000\n",  # v1 bind-mounted
                                   "cpu/cpu.cfs_period_us": "100000\n"}, 1),  # container
    ("4:cpu:/\n", {"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
    ("3:memory:/\n", {"memory/memory.limit_in_bytes": "1\n"}, None),    # no cpu controller
    ("0::/\n", {"cpu.max": "garbage\n"}, None),                         # unreadable: none
])
def test_cpu_quota_reads_cgroup_v1_and_v2(tmp_path, groups, files, cpus):
    assert kernel_threads.cpu_quota(**cgroup_tree(tmp_path, groups, files)) == cpus


def test_cores_follow_the_quota(monkeypatch):
    """A quota below the affinity mask bounds the threads (the mutant that ignores it fails);
    one above it does not raise them."""
    monkeypatch.setattr(kernel_threads.os, "sched_getaffinity", lambda pid: set(range(8)),
                        raising=False)
    for quota, expected in ((None, 8), (3, 3), (16, 8)):
        monkeypatch.setattr(kernel_threads, "cpu_quota", lambda quota=quota: quota)
        assert kernel_threads.cores() == expected


NO_LOCATOR = RuntimeError("cannot cache function '_span': no locator available for file 'x'")


def importer(*outcomes):
    """A stand-in for ``importlib.import_module``: raises or returns ``outcomes`` in turn."""
    calls = []

    def import_module(name):
        calls.append(name)
        outcome = outcomes[len(calls) - 1]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome
    return import_module, calls


@pytest.fixture
def no_cache_dir(monkeypatch, tmp_path):
    """NUMBA_CACHE_DIR unset (and put back as it was), temporary files under tmp_path."""
    import numba

    monkeypatch.setenv("NUMBA_CACHE_DIR", "")
    monkeypatch.delenv("NUMBA_CACHE_DIR")
    monkeypatch.setattr(numba.config, "CACHE_DIR", numba.config.CACHE_DIR)
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    return tmp_path


def test_a_kernel_module_numba_cannot_cache_is_retried_with_a_private_cache(no_cache_dir):
    import numba

    import_module, calls = importer(NO_LOCATOR, "the module")
    with pytest.warns(RuntimeWarning, match="caching compiled kernels in"):
        assert K._import("minimeta.kernels.conv_numba", import_module) == "the module"
    folder = os.environ["NUMBA_CACHE_DIR"]
    assert calls == ["minimeta.kernels.conv_numba"] * 2 and numba.config.CACHE_DIR == folder
    assert os.path.dirname(folder) == str(no_cache_dir) and os.stat(folder).st_mode & 0o777 == 0o700


def test_the_cache_warning_names_the_line_that_called_minimeta(no_cache_dir, monkeypatch):
    """The kernel is imported at its first use, deep in the engine: the warning had named a
    line of the kernels' own; it names the caller's, here this file's."""
    import warnings

    from minimeta import functional as F, tensor

    pool = importlib.import_module("minimeta.kernels.pool_numba")
    monkeypatch.setattr(K._import, "__defaults__", (importer(NO_LOCATOR, pool)[0],))
    monkeypatch.setattr(K, "_LOADED", {})                    # imported afresh
    monkeypatch.setattr(K.LOCAL, "reference", False)
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        F.max_pool2d(tensor(np.ones((1, 1, 4, 4), np.float32)), 2)
    assert [w.filename for w in said] == [__file__], [(w.filename, w.lineno) for w in said]


def test_other_failures_and_a_chosen_cache_are_left_alone(no_cache_dir, monkeypatch):
    other = RuntimeError("something else")
    with pytest.raises(RuntimeError, match="something else"):
        K._import("m", importer(other)[0])
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(no_cache_dir / "mine"))   # the user's choice
    with pytest.raises(RuntimeError, match="no locator"):
        K._import("m", importer(NO_LOCATOR)[0])


def test_no_writable_folder_at_all_is_one_clear_error(no_cache_dir, monkeypatch):
    def nowhere():
        raise FileNotFoundError(2, "No usable temporary directory found")
    monkeypatch.setattr(K, "private_cache_dir", nowhere)
    with pytest.raises(RuntimeError, match="set NUMBA_CACHE_DIR to a writable folder"):
        K._import("m", importer(NO_LOCATOR)[0])


def test_the_private_cache_is_never_a_folder_others_can_write(no_cache_dir):
    """Compiled code is loaded from it: a folder open to others, or a link, is not used."""
    mine = K.private_cache_dir()
    assert K.private_cache_dir() == mine                       # reused by the next process
    os.chmod(mine, 0o777)
    elsewhere = K.private_cache_dir()
    assert elsewhere != mine and os.stat(elsewhere).st_mode & 0o777 == 0o700
    shutil.rmtree(mine)
    os.symlink(str(no_cache_dir / "bait"), mine)
    assert K.private_cache_dir() not in (mine, str(no_cache_dir / "bait"))
    if hasattr(os, "geteuid") and os.geteuid() == 0:          # someone else's folder
        os.remove(mine)
        os.mkdir(mine, 0o700)
        os.chown(mine, 65534, 65534)
        assert K.private_cache_dir() != mine


def can_mount_read_only():
    """Root, with unshare, allowed to remount a folder read-only in a private namespace."""
    if not (hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("unshare")):
        return False
    folder = os.path.dirname(os.path.abspath(__file__))
    probe = subprocess.run(["unshare", "-m", "sh", "-c", f"mount --bind {folder} {folder} && "
                            f"mount -o remount,bind,ro {folder}"], capture_output=True)
    return probe.returncode == 0


READ_ONLY = """mount --bind "$SRC" "$SRC" && mount -o remount,bind,ro "$SRC" && \
mount --bind "$HOME" "$HOME" && mount -o remount,bind,ro "$HOME" && exec "$@" """
PROBE = """
import os, sys, importlib, numpy as np
from minimeta import kernels as K
if sys.argv[1] == "mutant":
    K._import = lambda name, *a: importlib.import_module(name)
x, w = np.ones((2, 3, 8, 8), np.float32), np.ones((4, 3, 3, 3), np.float32)
print(K.lookup("conv2d", x)(x, w, 1, 1).sum(), os.environ.get("NUMBA_CACHE_DIR"))
"""


@pytest.mark.skipif(not can_mount_read_only(), reason="needs root and unshare -m")
@pytest.mark.parametrize("mode", ["guarded", "mutant"])
def test_kernels_compile_from_a_read_only_install(tmp_path, mode):
    """The real thing: this checkout and HOME mounted read-only in a private mount namespace,
    TMPDIR writable. The mutant (the plain import) fails with numba's error."""
    home, tmp = tmp_path / "home", tmp_path / "tmp"
    home.mkdir()
    tmp.mkdir()
    env = dict(os.environ, SRC=ROOT, HOME=str(home), TMPDIR=str(tmp), PYTHONPATH=ROOT)
    env.pop("NUMBA_CACHE_DIR", None)
    run = subprocess.run(["unshare", "-m", "sh", "-c", READ_ONLY, "sh", sys.executable, "-c",
                          PROBE, mode], capture_output=True, text=True, env=env, timeout=600)
    if mode == "mutant":
        assert run.returncode != 0 and "no locator available" in run.stderr
    else:
        assert run.returncode == 0, run.stderr[-2000:]
        from minimeta.kernels import conv_ref
        total, folder = run.stdout.split()
        x, w = np.ones((2, 3, 8, 8), np.float32), np.ones((4, 3, 3, 3), np.float32)
        assert float(total) == conv_ref.conv2d(x, w, 1, 1).sum() and folder.startswith(str(tmp))


def omp_report(code):
    """Each OpenMP runtime's GOMP_SPINCOUNT, in the order they loaded, as they report it
    (OMP_DISPLAY_ENV=verbose) in a child running ``code``; None where numba has no GNU
    OpenMP."""
    env = dict(os.environ, OMP_DISPLAY_ENV="verbose",
               PYTHONPATH=os.pathsep.join([ROOT, os.path.join(ROOT, "benchmarks")]))
    for name in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "NUMBA_THREADING_LAYER"):
        env.pop(name, None)
    run = subprocess.run([sys.executable, "-c", code + "\nimport numba\nnumba.get_num_threads()"
                          "\nprint(numba.threading_layer())"], capture_output=True, text=True,
                         env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    if run.stdout.split()[-1] != "omp" or "GOMP_SPINCOUNT" not in run.stderr:
        return None
    return [line.split("'")[1] for line in run.stderr.splitlines() if "GOMP_SPINCOUNT" in line]


def test_omp_wait_policy_respects_a_policy_already_chosen(monkeypatch):
    from minimeta.threads import omp_wait_policy

    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    assert omp_wait_policy() == "ACTIVE"
    monkeypatch.delenv("OMP_WAIT_POLICY")
    import warnings

    from minimeta.threads import openmp_loaded

    with warnings.catch_warnings(record=True) as caught:  # this process's runtime is loaded
        warnings.simplefilter("always")
        assert omp_wait_policy() == "PASSIVE" == os.environ["OMP_WAIT_POLICY"]
    late = [w for w in caught if "loaded before" in str(w.message)]
    assert len(late) == (1 if openmp_loaded() else 0)


@pytest.mark.parametrize("mode", ["policy", "mutant"])
def test_configure_makes_numbas_openmp_threads_sleep(mode):
    """After ``configure()`` numba's runtime spins 0 rounds after a loop; the mutant (the
    policy left out) keeps GNU OpenMP's default spinning."""
    mutant = "import minimeta.threads as t; t.omp_wait_policy = lambda: None\n"
    spins = omp_report((mutant if mode == "mutant" else "") +
                       "from minimeta.threads import configure\nconfigure()")
    if spins is None:
        pytest.skip("numba's threading layer is not GNU OpenMP here")
    assert (spins == ["0"]) == (mode == "policy")


@pytest.mark.parametrize("case", ["runtime loaded first", "none loaded", "policy in env"])
def test_configure_warns_where_an_openmp_runtime_came_first(case):
    """A runtime loaded before ``configure`` (PyTorch's, or here libgomp by hand) read its wait
    policy already, and numba's loops will run in it: one warning says so. Silent where none was
    loaded, or where the environment named the policy before Python started."""
    import ctypes.util

    gomp = ctypes.util.find_library("gomp")
    if gomp is None:
        pytest.skip("no libgomp here")
    env = dict(os.environ, PYTHONPATH=ROOT)
    env.pop("OMP_WAIT_POLICY", None)
    if case == "policy in env":
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    load = f"import ctypes\nctypes.CDLL({gomp!r})\n" if case != "none loaded" else ""
    run = subprocess.run([sys.executable, "-W", "error::RuntimeWarning", "-c", load +
                          "from minimeta.threads import configure\nconfigure()"],
                         capture_output=True, text=True, env=env, timeout=300)
    if case == "runtime loaded first":
        assert run.returncode != 0 and "an OpenMP runtime was loaded before" in run.stderr
    else:
        assert run.returncode == 0, run.stderr[-2000:]


def test_a_first_run_says_numba_is_compiling_and_a_later_one_does_not(tmp_path, monkeypatch):
    """``kernels.compiled_before`` reads numba's cache index of a module's kernels: False
    before any was compiled (a fresh cache) for float32 arrays, a run's (float64 versions had
    been taken for them: after the tour's float64 examples a first run paused 50 s unsaid),
    True once one was; the note is printed only for
    a model with convolutions on the CPU whose kernels were not compiled before (a probe
    found it printed, and false, on every run of MANN, which has none)."""
    from minimeta import kernels
    from minimeta.experiments import progress

    (tmp_path / "tiny_kernels.py").write_text(textwrap.dedent("""
        import numba

        @numba.njit(cache=True)
        def plus_one(x):
            return x + 1

        @numba.njit(cache=True)
        def plus_two(x):
            return x + 2
        """))
    monkeypatch.syspath_prepend(str(tmp_path))     # numba caches beside it: a fresh cache
    import tiny_kernels

    assert kernels.compiled_before(tiny_kernels) is False
    assert tiny_kernels.plus_one(np.float64(1)) == 2        # as the tour does: float64 only
    assert kernels.compiled_before(tiny_kernels) is False
    assert kernels.compiled_before(tiny_kernels, "float64") is True
    assert tiny_kernels.plus_one(np.float32(1)) == 2   # one of two, cached: a run uses some
    assert kernels.compiled_before(tiny_kernels) is True      # (a ProtoNet step, 4 of 5)
    with kernels.use_reference():                              # no numba at all: cannot tell
        assert kernels.compiled_before(tiny_kernels) is None
    from minimeta import nn
    from minimeta.experiments.config import RunConfig
    from minimeta.experiments.registry import build

    conv4, mlp = nn.conv4(5), nn.mlp((1, 40, 40, 1))
    mann = build(RunConfig(learner="mann", out=None))[0]     # Omniglot, and no convolution
    for compiled, model, device, said in [(False, conv4, "cpu", True),
                                          (True, conv4, "cpu", False),
                                          (None, conv4, "cpu", False),
                                          (False, mlp, "cpu", False),
                                          (False, mann, "cpu", False),
                                          (False, conv4, "cuda", False)]:
        monkeypatch.setattr(progress, "compiled_before", lambda compiled=compiled: compiled)
        lines = []
        note = progress.first_use_note(model, device, lines.append)
        assert (note is not None) == said, (compiled, model, device)
        assert lines == ([note] if said else [])
        if said:
            assert note.startswith("(first use here: numba compiles the convolution kernels")
