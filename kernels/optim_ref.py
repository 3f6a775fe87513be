"""NumPy reference of Adam's update of one parameter: the spec for ``optim_cuda.py``.

With g ← g + weight_decay·p first (when weight_decay is not 0), and t the parameter's step:

    m' = b1·m + (1 − b1)·g        v' = b2·v + (1 − b2)·g·g
    update = lr·(m'/c1) / (sqrt(v'/c2) + eps),   c1 = 1 − b1^t, c2 = 1 − b2^t

``adam`` returns (update, m', v'), new arrays (the optimizer subtracts the update from a copy
of p, and keeps m' and v': ``minimeta/optim.py``). The scalars are Python floats, so float32
arrays stay float32 (NumPy scalars would widen them). It runs on CuPy arrays too.

    >>> update, m, v = adam(np.array([1.0]), np.array([2.0]), np.zeros(1), np.zeros(1), 0.1,
    ...                     0.9, 0.999, 1e-8, 1 - 0.9, 1 - 0.999)
    >>> update.round(6), m, v.round(6)
    (array([0.1]), array([0.2]), array([0.004]))

Read next: ``kernels/threads.py`` (one kernel's work split over the cores; per-thread switches).
"""
import numpy as np


def adam(p, g, m, v, lr, b1, b2, eps, c1, c2, weight_decay=0.0):
    """(update, m', v') of one Adam step of parameter ``p`` with gradient ``g``."""
    if weight_decay:
        g = g + weight_decay * p
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    return lr * (m / c1) / (np.sqrt(v / c2) + eps), m, v
