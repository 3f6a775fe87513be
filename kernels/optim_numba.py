"""numba CPU Adam update: one pass over a parameter; same contract as ``optim_ref.py``.

The reference makes eight NumPy passes a parameter, each a call of about a microsecond on a
small MLP's weights (the sinusoid network's six took 107 µs a step). Here one loop reads p, g,
m and v once and writes the update, m' and v' (one allocation, as on the GPU). Its bits are the
reference's: each hyper-parameter comes in the arrays' dtype, as NumPy converts a Python float
meeting a float32 array (``1 − b1`` computed in Python first), and the arithmetic runs in that
dtype in the reference's order (``(1 − b2)·g·g`` is ((1 − b2)·g)·g; numba fuses no
multiply-add unless told to). NumPy's error model: a division by zero is inf or NaN, as in the
reference, with no test for it in the loop, which vectorizes (Python's model had kept it
scalar, 1.7× NumPy's time on 40 000 values). Arrays not C-contiguous, of mixed or non-float
dtypes, go to the reference.

Read next: ``kernels/_cuda.py`` (what the CUDA kernels share).
"""
import numpy as np
from numba import njit

from . import optim_ref


@njit(cache=True, error_model="numpy")
def _adam(p, g, m, v, h, decayed, out):
    """out = (update, m', v') row by row; h = (lr, b1, 1 − b1, b2, 1 − b2, eps, c1, c2,
    weight decay), in the arrays' dtype; ``decayed``: weight decay is not 0 (g + 0·p is not g
    where p is inf or g is −0.0)."""
    lr, b1, one_b1, b2, one_b2, eps, c1, c2, decay = h[0], h[1], h[2], h[3], h[4], h[5], \
        h[6], h[7], h[8]
    update, m2, v2 = out[0], out[1], out[2]
    for i in range(g.size):
        gi = g[i] + decay * p[i] if decayed else g[i]
        mi = b1 * m[i] + one_b1 * gi
        vi = b2 * v[i] + one_b2 * gi * gi
        m2[i] = mi
        v2[i] = vi
        update[i] = lr * (mi / c1) / (np.sqrt(vi / c2) + eps)


def adam(p, g, m, v, lr, b1, b2, eps, c1, c2, weight_decay=0.0):
    """(update, m', v'), as ``optim_ref.adam``, in one loop."""
    arrays = (p, g, m, v)
    if p.dtype.kind != "f" or not all(a.dtype == p.dtype and a.shape == p.shape and
                                      a.flags.c_contiguous for a in arrays):
        return optim_ref.adam(p, g, m, v, lr, b1, b2, eps, c1, c2, weight_decay)
    hyper = np.array((lr, b1, 1 - b1, b2, 1 - b2, eps, c1, c2, weight_decay), p.dtype)
    out = np.empty((3,) + p.shape, p.dtype)
    _adam(*[a.reshape(-1) for a in arrays], hyper, bool(weight_decay), out.reshape(3, -1))
    return out[0, ...], out[1, ...], out[2, ...]       # (views, 0-d ones too)
