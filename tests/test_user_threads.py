"""minimeta from several user threads at once (a search over settings in a thread pool, a
server): what the threads share is locked or per thread. Each test failed before its fix."""
import os
import subprocess
import sys
import textwrap
import threading

import numpy as np

import minimeta as mm
from minimeta.data import omniglot


def _in_threads(fn, n=4):
    threads = [threading.Thread(target=fn) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)


def test_backward_from_threads_adds_every_gradient_into_a_shared_leaf():
    """Unlocked, leaf.grad = leaf.grad + g had lost a quarter of 8000 additions."""
    theta = mm.tensor(np.zeros(100), requires_grad=True)

    def work():
        for _ in range(1000):
            (theta * 1.0).sum().backward()
    _in_threads(work)
    np.testing.assert_array_equal(theta.grad.numpy(), 4000.0)


def test_a_thread_started_after_configure_keeps_its_numba_count():
    """numba's count is per thread: a new thread had run numba's loops on every core after
    configure(threads=1)."""
    code = textwrap.dedent("""
        import threading, numba
        import minimeta as mm
        from minimeta import kernels as K
        from minimeta.threads import configure
        configure(threads=1)
        seen = []
        def work():
            K.lookup("max_pool2d")          # the kernels touched from this thread
            seen.append(numba.get_num_threads())
        t = threading.Thread(target=work); t.start(); t.join()
        print(seen[0], numba.config.NUMBA_NUM_THREADS)
    """)
    env = dict(os.environ, NUMBA_NUM_THREADS="2")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, check=True).stdout.split()
    assert out == ["1", "2"]


def test_two_user_threads_in_the_kernels_under_the_workqueue_layer():
    """numba's workqueue layer (no OpenMP, no TBB) aborts the process when two threads enter its
    kernels at once; minimeta ran its own workers one at a time but not the user's threads
    (exit 134, 'Concurrent access has been detected')."""
    code = textwrap.dedent("""
        import threading, numpy as np
        import minimeta as mm, minimeta.functional as F
        def work(seed):
            rng = np.random.default_rng(seed)
            w = mm.tensor(rng.standard_normal((8, 3, 3, 3)), requires_grad=True)
            for _ in range(30):
                x = mm.tensor(rng.standard_normal((16, 3, 12, 12)))
                y = F.max_pool2d(F.relu(F.conv2d(x, w, padding=1)), 2)
                mm.grad((y * y).sum(), [w])
        ts = [threading.Thread(target=work, args=(s,)) for s in range(3)]
        [t.start() for t in ts]; [t.join() for t in ts]
        from minimeta.kernels.threads import threading_layer
        print(threading_layer())
    """)
    env = dict(os.environ, NUMBA_THREADING_LAYER="workqueue", NUMBA_NUM_THREADS="2")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-500:]
    assert run.stdout.split() == ["workqueue"]


def test_threads_filling_the_image_cache_write_files_of_their_own(fake_omniglot, monkeypatch):
    """The temporary file was named by the process only: one thread's rename moved the file
    another was writing, whose own rename then failed with a wrong 'not writable' warning.
    (On small archives of its own: without Omniglot it had failed, each thread's load
    raising unseen, an audit of packaging.)"""
    written, real_save = [], np.save

    def save(path, array):
        written.append(path)
        real_save(path, array)
    monkeypatch.setattr(np, "save", save)
    results, errors = [], []

    def load():
        try:
            results.append(omniglot.load("evaluation", size=14, verify=False))
        except Exception as err:          # named in the failure, not lost in the thread
            errors.append(repr(err))
    _in_threads(load, n=3)
    assert not errors and len(results) == 3 and len(set(written)) == len(written) >= 1
    for r in results[1:]:
        np.testing.assert_array_equal(r, results[0])
