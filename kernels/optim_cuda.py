"""numba.cuda Adam update: one thread per element, one launch a group of parameters.

Spec: ``optim_ref.py``. The reference on CuPy makes about a dozen elementwise passes (each a
launch); here, on a group's flat arrays (``minimeta/optim.py``'s ``Group``: usually every
parameter of a network), each thread reads p, g, m and v once and writes the update, m' and v',
its arithmetic in float64 registers, into rows of one allocation (the optimizer keeps m' and v',
so the update's row lives until the next step). Arrays not C-contiguous go to the reference.

Read next: ``minimeta/engine/ops.py`` (the user-facing namespace and the Tensor's operators).
"""
import math

from numba import float64

from . import _cuda, array_module, optim_ref
from ._cuda import cuda


@cuda.jit
def _adam(p, g, m, v, lr, b1, b2, eps, c1, c2, decay, update, m2, v2):
    t = cuda.grid(1)
    if t >= p.size:
        return
    gv = float64(g[t])
    if decay != 0.0:
        gv = gv + decay * p[t]
    mv = b1 * m[t] + (1.0 - b1) * gv
    vv = b2 * v[t] + (1.0 - b2) * gv * gv
    m2[t] = mv
    v2[t] = vv
    update[t] = lr * (mv / c1) / (math.sqrt(vv / c2) + eps)


def adam(p, g, m, v, lr, b1, b2, eps, c1, c2, weight_decay=0.0):
    """(update, m', v'), as ``optim_ref.adam``: one launch."""
    arrays = (p, g, m, v)
    if not all(a.flags.c_contiguous and a.dtype == p.dtype for a in arrays) or \
            p.dtype.kind != "f":
        return optim_ref.adam(p, g, m, v, lr, b1, b2, eps, c1, c2, weight_decay)
    xp = array_module(p)
    out = xp.empty((3,) + p.shape, dtype=p.dtype)       # update, m', v': one allocation
    rows = out.reshape(3, -1)
    _cuda.launch(_adam, p.size, *[a.reshape(-1) for a in arrays], float(lr), float(b1),
                 float(b2), float(eps), float(c1), float(c2), float(weight_decay), rows[0],
                 rows[1], rows[2])
    return out[0, ...], out[1, ...], out[2, ...]       # (views, 0-d ones too)
