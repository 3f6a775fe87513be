"""NumPy reference of the elementwise select: the spec for the accelerated ``where``.

    where(cond, a, b)[i] = a[i] if cond[i] else b[i]     (NumPy broadcasting)

It is the whole forward of the ``Where`` primitive, and with it the VJP of ReLU, maximum, max
and every masked gradient (``where(a > 0, g, 0)``; abs's is ``g * sign(a)``). NumPy's own
``np.where`` on a float32 array of a conv layer's size ran at about 8 ns an element on this
project's machine (a branch per element on a random mask), as slow as the convolution that
made the array; the numba version selects without branching.

Read next: ``kernels/optim_ref.py`` (Adam's update in NumPy: the spec).
"""
import numpy as np


def where(cond, a, b):
    """``a`` where ``cond`` is true, else ``b``; the result has the dtype of ``a`` and ``b``.

    >>> where(np.array([True, False]), np.array([1.0, 2.0]), np.array(0.0))
    array([1., 0.])
    """
    return np.where(cond, a, b)  # on CuPy arrays, NumPy hands the call to cupy.where
