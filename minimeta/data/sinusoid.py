"""The sinusoid regression task family of Finn et al. 2017, section 5.1 (NumPy arrays only).

A task is y = A·sin(x − φ) with amplitude A ~ U[0.1, 5], phase φ ~ U[0, π], inputs x ~ U[−5, 5].
``sample`` draws a batch of tasks, each a tuple (x_support, y_support, x_query, y_query) of
float32 arrays shaped (K, 1), seeded and reproducible; ``skip`` moves the stream past calls of
it without drawing them (a resumed run's).

    >>> tasks = SinusoidTasks(seed=0).sample(2, shots=5, queries=10)
    >>> [a.shape for a in tasks[0]]
    [(5, 1), (5, 1), (10, 1), (10, 1)]

Read next: ``minimeta/data/fetch.py`` (downloading the originals).
"""
import numpy as np

from .episodes import count


class SinusoidTasks:
    """A seeded generator of sinusoid tasks."""

    def __init__(self, amplitude=(0.1, 5.0), phase=(0.0, np.pi), x_range=(-5.0, 5.0), seed=0,
                 dtype=np.float32):
        for name, (low, high) in (("amplitude", amplitude), ("phase", phase),
                                  ("x_range", x_range)):
            if not low <= high:     # (NumPy had said "high - low < 0" at the first draw)
                raise ValueError(f"SinusoidTasks: {name} must be a range (low, high) with "
                                 f"low <= high, got {(low, high)}")
        self.amplitude, self.phase, self.x_range = amplitude, phase, x_range
        self.rng = np.random.default_rng(seed)
        self.dtype = dtype

    def sample_functions(self, n):
        """Amplitudes and phases of ``n`` new tasks."""
        return self.rng.uniform(*self.amplitude, n), self.rng.uniform(*self.phase, n)

    def points(self, amp, phase, k):
        """``k`` random (x, y) points of the task (amp, phase), each shaped (k, 1)."""
        x = self.rng.uniform(*self.x_range, (k, 1))
        return x.astype(self.dtype), (amp * np.sin(x - phase)).astype(self.dtype)

    def sample(self, n_tasks, shots, queries=None):
        """``n_tasks`` tuples (x_s, y_s, x_q, y_q): ``shots`` support and ``queries`` query
        points (default: as many as ``shots``)."""
        who = "SinusoidTasks.sample"
        n_tasks, shots = count(who, "n_tasks", n_tasks, 1), count(who, "shots", shots, 1)
        queries = shots if queries is None else count(who, "queries", queries, 0)
        amps, phases = self.sample_functions(n_tasks)
        if type(self).points is not SinusoidTasks.points:  # a subclass's own: task by task
            return [self.points(a, p, shots) + self.points(a, p, queries)
                    for a, p in zip(amps, phases)]
        # every task's points in one draw: the numbers ``points`` draws task by task (one
        # 64-bit draw a number, in that order), computed alike: the same bits, 5× sooner at
        # 25 tasks (its 50 calls had taken a seventh of a MAML training iteration)
        x = self.rng.uniform(*self.x_range, (n_tasks, shots + queries, 1))
        y = (amps[:, None, None] * np.sin(x - phases[:, None, None])).astype(self.dtype)
        x = x.astype(self.dtype)
        return [(x[t, :shots], y[t, :shots], x[t, shots:], y[t, shots:]) for t in range(n_tasks)]

    def skip(self, times, n_tasks, shots, queries=None):
        """Move the stream past ``times`` calls of ``sample(n_tasks, shots, queries)`` without
        drawing them (a resumed run's; replaying them had taken 6 s at MAML's iteration 20 000).
        Each call takes one 64-bit draw per number, ``n_tasks`` · (2 + ``shots`` + ``queries``),
        which PCG64 (``default_rng``'s) skips in O(log n); another generator, or a subclass that
        draws otherwise (its own ``sample``, ``sample_functions`` or ``points``), replays them."""
        who = "SinusoidTasks.skip"
        times, n_tasks = count(who, "times", times, 0), count(who, "n_tasks", n_tasks, 1)
        shots = count(who, "shots", shots, 1)
        queries = shots if queries is None else count(who, "queries", queries, 0)
        bits = self.rng.bit_generator
        counted = all(getattr(type(self), f) is getattr(SinusoidTasks, f)   # the draws above
                      for f in ("sample", "sample_functions", "points"))
        if counted and isinstance(bits, np.random.PCG64) and not bits.state["has_uint32"]:
            bits.advance(times * n_tasks * (2 + shots + queries))
            return
        for _ in range(times):
            self.sample(n_tasks, shots, queries)
