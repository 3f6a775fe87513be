"""Small kernels on the calling thread: the table's ``parallel_from`` and ``one_thread``.

Under minimeta's policy numba's OpenMP threads sleep between loops, and waking them cost more
than a small kernel's whole work (a select of 10 000 values: 86 µs on two threads, 8 on one),
so a small MLP's MAML trained 20% slower on two cores than on one. ``lookup`` now runs a CPU
kernel on the calling thread alone below its row's ``parallel_from`` (elements of the call's
largest array). These tests stand a recorder in for the select's numba kernel and read the
thread count it ran with.

Read next: ``test_thread_policy_audit.py`` (the rest of the thread policy).
"""
import numba
import numpy as np
import pytest

from minimeta import kernels as K
from minimeta.engine import ops
from minimeta.kernels import threads as kernel_threads

pytestmark = pytest.mark.skipif(
    numba.config.NUMBA_NUM_THREADS < 2 or not kernel_threads.concurrent_kernels(),
    reason="needs two numba threads and a threading layer that takes them")


@pytest.fixture
def recorder(monkeypatch):
    """The selects' CPU kernels (``where``, ``relu_grad``) replaced by ones that record numba's
    thread count, on a thread whose count is 2 (put back after)."""
    seen = []

    def recorded(name):
        def kernel(*args):
            seen.append(numba.get_num_threads())
            return K.TABLE[name].reference(*args)
        monkeypatch.setitem(K._LOADED, K.TABLE[name].cpu, kernel)
    recorded("where")
    recorded("relu_grad")
    before = numba.get_num_threads()
    numba.set_num_threads(2)
    yield seen
    numba.set_num_threads(before)


def test_a_kernel_below_its_row_s_size_runs_on_the_calling_thread_alone(recorder):
    """Below ``parallel_from`` one numba thread, from it every thread; the count is put back
    after the call. Mutants: the size ignored (all threads for the small one), the count not
    put back (2 after the call read 1): both fail here."""
    limit = K.TABLE["where"].parallel_from
    assert limit > 0
    for n in (1024, limit - 1, limit):
        a = np.ones(n, np.float32)
        K.lookup("where", a, a)(a > 0, a, a)
        assert numba.get_num_threads() == 2
    assert recorder == [1, 1, 2]


def test_the_largest_array_of_the_call_decides(recorder):
    """The work is the largest array's, whichever argument it is: ``where(mask, 0, g)`` has a
    one-element first operand. A mutant that read the first array alone ran a large select on
    one thread."""
    big, one = np.ones(K.TABLE["where"].parallel_from, np.float32), np.zeros(1, np.float32)
    K.lookup("where", one, big)(big > 0, one, big)
    assert recorder == [2]


def test_the_engine_s_selects_go_through_the_rule(recorder):
    """A relu's gradient (``ReluGrad`` in the engine) and a maximum's (``Where``) on a small
    array run on one thread."""
    x = ops.tensor(np.linspace(-1, 1, 2048), requires_grad=True)
    ops.relu(x).sum().backward()
    ops.maximum(x, 0.0).sum().backward()
    assert recorder == [1, 1]
    assert np.array_equal(x.grad.numpy(), 2 * (x.data > 0).astype(float))


def test_one_thread_puts_the_count_back_when_the_kernel_raises():
    """An error inside the kernel leaves the calling thread's count as it was (a mutant
    without the ``finally`` left the thread on one numba thread for good)."""
    def fails():
        assert numba.get_num_threads() == 1
        raise ValueError("inside")
    before = numba.get_num_threads()
    numba.set_num_threads(2)
    try:
        with pytest.raises(ValueError, match="inside"):
            kernel_threads.one_thread(fails)()
        assert numba.get_num_threads() == 2
    finally:
        numba.set_num_threads(before)


def test_every_row_with_numba_loops_of_its_own_has_a_size():
    """Every CPU kernel module whose loops are ``prange`` over numba's threads, called from the
    caller's thread, has a ``parallel_from`` in each of its rows (the conv family splits its
    work itself, ``threads.parallel_map``, and the causal conv has no such loop)."""
    import inspect

    for name, row in K.TABLE.items():
        if not row.cpu or name.startswith("conv2d"):
            continue
        source = inspect.getsource(K._import(f"minimeta.kernels.{row.cpu.split(':')[0]}"))
        assert ("prange(" in source) == (row.parallel_from > 0), name


def test_the_benchmark_s_inputs_fit_every_row_it_times(monkeypatch):
    """``benchmarks/kernel_threads.py``, which measured the table's sizes, makes arguments
    that each row's CPU kernel takes, with a largest array of about the size asked for."""
    import os

    import source_file

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    monkeypatch.syspath_prepend(os.path.join(root, "benchmarks"))    # its ``_timing``
    bench = source_file.load("benchmarks/kernel_threads.py")
    rng = np.random.default_rng(0)
    for name, row in K.TABLE.items():
        if row.parallel_from:
            call = bench.inputs(name, 1 << 15, rng)
            K.resolve(row.cpu)(*call)
            assert (1 << 14) <= max(getattr(v, "size", 1) for v in call) <= (1 << 16), name
