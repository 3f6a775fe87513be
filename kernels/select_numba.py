"""numba CPU kernels of the elementwise select (``where``, ``relu_grad``); same contract as
``select_ref.py``.

The fast path of ``where`` is the shape every masked gradient has: a boolean mask and one full
operand of its shape, the other full or a single number, all C-contiguous and of one dtype;
``relu_grad``'s, a and g C-contiguous and of one shape (ReLU's gradient compares a itself: no
mask array). Each loop compiles to a blend (no branch), in ``prange`` blocks over numba's
threads. Anything else (broadcast shapes, mixed dtypes, views) goes to the reference.

Each block is a slice, its loop ``range(size)`` from 0, not ``range(lo, hi)`` over the whole
array: numba wraps a negative index around (``a[-1]``), and an index that starts at a ``lo``
computed from the ``prange`` index is not known to be ≥ 0, so every element kept that check
and the loop did not vectorize (4.4 GB/s on one core, where a copy runs at 27). From 0, a
relu's gradient on conv4's second layer at 640 images (8 million elements) takes 2.6 ms on
one core instead of 15.2 (1.8 instead of 7.8 on two). A select of two full arrays loads both
elements before it picks one: with each load under its condition the loop had not vectorized
either (8.2 ms, against 3.6; docs/PERFORMANCE.md, "Loops that had not vectorized").

Read next: ``kernels/_cuda.py`` (what the CUDA kernels share).
"""
import numpy as np
from numba import njit, prange

from .select_ref import relu_grad as _relu_reference, where as _reference

_BLOCK = 1 << 15


@njit(cache=True, inline="always")
def _select_block(cond, a, b, out, a_full, b_full):
    """One block: every loop runs from 0 over the block's slices (see the module docstring)."""
    if a_full and b_full:
        for i in range(out.size):
            ai, bi = a[i], b[i]     # both loaded: a load under the condition is not vectorized
            out[i] = ai if cond[i] else bi
    elif a_full:
        s = b[0]
        for i in range(out.size):
            out[i] = a[i] if cond[i] else s
    else:
        s = a[0]
        for i in range(out.size):
            out[i] = s if cond[i] else b[i]


@njit(parallel=True, cache=True)
def _select(cond, a, b, out, a_full, b_full):
    n = out.size
    for k in prange((n + _BLOCK - 1) // _BLOCK):
        lo, hi = k * _BLOCK, min(n, (k + 1) * _BLOCK)
        _select_block(cond[lo:hi], a[lo:hi] if a_full else a[:1], b[lo:hi] if b_full else b[:1],
                      out[lo:hi], a_full, b_full)


@njit(cache=True)
def _select_serial(cond, a, b, out, a_full, b_full):
    """The whole array as one block, no ``prange`` (whose launch costs 2 µs on one thread)."""
    _select_block(cond, a, b, out, a_full, b_full)


def _flat(x, shape, dtype):
    """x as a flat C-contiguous array of ``dtype`` if it is full-size or a single number, with
    True for full-size; None if the fast path does not apply."""
    if not isinstance(x, np.ndarray):
        x = np.asarray(x, dtype=dtype)
    if x.dtype != dtype:
        return None
    if x.size == 1:
        return x.reshape(1), False
    if x.shape == shape and x.flags.c_contiguous:
        return x.reshape(-1), True
    return None


def where(cond, a, b):
    """``a`` where ``cond`` is true, else ``b`` (see ``select_ref.where``)."""
    return _where(cond, a, b, _select)


def serial_where(cond, a, b):
    """``where`` on the calling thread, for a call below the table's ``parallel_from``."""
    return _where(cond, a, b, _select_serial)


where.serial = serial_where     # what ``threads.one_thread`` runs instead of ``where``


def _where(cond, a, b, loop):
    """The select by the compiled ``loop`` on its fast path, else by the reference."""
    full = a if np.ndim(a) >= np.ndim(b) else b
    if not (isinstance(cond, np.ndarray) and cond.dtype == np.bool_ and
            isinstance(full, np.ndarray) and cond.shape == full.shape and
            cond.flags.c_contiguous):
        return _reference(cond, a, b)
    dtype = full.dtype
    if np.result_type(a, b) != dtype:  # NumPy's promotion (an int array with 0.5: float64)
        return _reference(cond, a, b)
    fa, fb = _flat(a, cond.shape, dtype), _flat(b, cond.shape, dtype)
    if fa is None or fb is None or not (fa[1] or fb[1]):
        return _reference(cond, a, b)
    out = np.empty(cond.shape, dtype=dtype)
    loop(cond.reshape(-1), fa[0], fb[0], out.reshape(-1), fa[1], fb[1])
    return out


@njit(cache=True, inline="always")
def _relu_block(a, g, out, zero):
    """One block of ReLU's select: g[i] where a[i] > 0, else 0, both loaded (a blend)."""
    for i in range(out.size):
        gi = g[i]
        out[i] = gi if a[i] > 0 else zero


@njit(parallel=True, cache=True)
def _relu(a, g, out, zero):
    n = out.size
    for k in prange((n + _BLOCK - 1) // _BLOCK):
        lo, hi = k * _BLOCK, min(n, (k + 1) * _BLOCK)
        _relu_block(a[lo:hi], g[lo:hi], out[lo:hi], zero)


@njit(cache=True)
def _relu_serial(a, g, out, zero):
    _relu_block(a, g, out, zero)


def relu_grad(a, g):
    """``g`` where ``a > 0``, else 0 (see ``select_ref.relu_grad``): one pass, no mask array.
    On the sinusoid's (25, 10, 40) gradients 2.7 µs where ``a > 0`` and the ``where`` kernel took
    5.4 (its replayed meta-iteration 5–8% sooner; docs/PERFORMANCE.md, "ReLU's gradient")."""
    return _relu_grad(a, g, _relu)


def serial_relu_grad(a, g):
    """``relu_grad`` on the calling thread, for a call below the table's ``parallel_from``."""
    return _relu_grad(a, g, _relu_serial)


relu_grad.serial = serial_relu_grad


def _relu_grad(a, g, loop):
    """The fast path: a and g C-contiguous NumPy arrays of one shape, g a float array and a a
    real number array (booleans compare as 0 and 1 in both); anything else the reference."""
    if not (isinstance(a, np.ndarray) and isinstance(g, np.ndarray) and a.shape == g.shape and
            g.dtype.kind == "f" and a.dtype.kind in "biuf" and a.flags.c_contiguous and
            g.flags.c_contiguous):
        return _relu_reference(a, g)
    out = np.empty(g.shape, dtype=g.dtype)
    loop(a.reshape(-1), g.reshape(-1), out.reshape(-1), g.dtype.type(0))
    return out
