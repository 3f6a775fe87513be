"""The sinusoid task family (``minimeta/data/sinusoid.py``): each task's points lie on its own
sine, and a batch drawn in one go is the stream drawn task by task, bit for bit (a mutant drawn
in another order is caught). Read after test_data.py."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from minimeta.data import SinusoidTasks


def test_a_sinusoid_task_s_support_and_queries_lie_on_its_one_sine():
    """y = A·sin(x − φ) for the task's own A and φ, support and query alike (queries drawn
    from another task's sine had passed every test: a mutation audit's)."""
    amps, phases = SinusoidTasks(seed=3, dtype=np.float64).sample_functions(4)
    tasks = SinusoidTasks(seed=3, dtype=np.float64).sample(4, 5, 7)
    for (xs, ys, xq, yq), a, p in zip(tasks, amps, phases):
        for x, y in ((xs, ys), (xq, yq)):
            np.testing.assert_allclose(y, a * np.sin(x - p), rtol=1e-12, atol=1e-12)


class _TaskByTask(SinusoidTasks):
    """The stream as ``points`` draws it, one task and part at a time (the spec of the draw)."""

    def points(self, amp, phase, k):
        return SinusoidTasks.points(self, amp, phase, k)


def _drawn_apart(tasks, kind):
    """A mutant of the one-draw ``sample``: queries drawn before supports, or a task's
    supports given the next task's points."""
    if kind == "queries first":
        return [(xq[:len(xs)], yq[:len(xs)], np.concatenate([xs, xq[len(xs):]]), yq)
                for xs, ys, xq, yq in tasks]
    return [(tasks[(t + 1) % len(tasks)][0],) + tasks[t][1:] for t in range(len(tasks))]


@given(st.integers(0, 2 ** 32 - 1), st.integers(1, 30), st.integers(1, 12),
       st.integers(0, 12), st.sampled_from([np.float32, np.float64]))
def test_a_sinusoid_batch_in_one_draw_is_the_task_by_task_stream(seed, n, shots, queries,
                                                                  dtype):
    """``sample`` draws every task's points at once; a subclass's own ``points`` (here the
    spec itself) is called task by task. Both give the same tasks, bit for bit, call after
    call, and a ``skip`` of one call leaves both streams at the same place."""
    one, apart = SinusoidTasks(seed=seed, dtype=dtype), _TaskByTask(seed=seed, dtype=dtype)
    for _ in range(2):
        got, want = one.sample(n, shots, queries), apart.sample(n, shots, queries)
        assert same_tasks(got, want)
    one.skip(1, n, shots, queries)
    apart.skip(1, n, shots, queries)
    assert same_tasks(one.sample(n, shots, queries), apart.sample(n, shots, queries))


def same_tasks(got, want):
    return len(got) == len(want) and all(
        a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()
        for g, w in zip(got, want) for a, b in zip(g, w))


@pytest.mark.parametrize("kind", ["queries first", "another task's support"])
def test_the_one_draw_check_catches_a_stream_drawn_otherwise(kind):
    tasks = SinusoidTasks(seed=5).sample(3, 4, 6)
    assert same_tasks(tasks, _TaskByTask(seed=5).sample(3, 4, 6))
    assert not same_tasks(_drawn_apart(tasks, kind), _TaskByTask(seed=5).sample(3, 4, 6))
