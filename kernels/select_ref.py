"""NumPy references of the elementwise select: the spec for the accelerated ``where``, and for
``relu_grad``, ReLU's select with its mask made in the same pass.

    where(cond, a, b)[i] = a[i] if cond[i] else b[i]     (NumPy broadcasting)
    relu_grad(a, g)[i]   = g[i] if a[i] > 0 else 0       (a and g of one shape)

It is the whole forward of the ``Where`` primitive, and with it the VJP of maximum, max and
every masked gradient (abs's is ``g * sign(a)``); ReLU's, ``where(a > 0, g, 0)``, is
``relu_grad``, which reads a itself: no mask array, and a closed family (its VJP in g is
itself). NumPy's own ``np.where`` on a float32 array of a conv layer's size ran at about 8 ns
an element on this project's machine (a branch per element on a random mask), as slow as the
convolution that made the array; the numba versions select without branching.

Read next: ``kernels/optim_ref.py`` (Adam's update in NumPy: the spec).
"""
import numpy as np


def where(cond, a, b):
    """``a`` where ``cond`` is true, else ``b``; the result has the dtype of ``a`` and ``b``.

    >>> where(np.array([True, False]), np.array([1.0, 2.0]), np.array(0.0))
    array([1., 0.])
    """
    return np.where(cond, a, b)  # on CuPy arrays, NumPy hands the call to cupy.where


def relu_grad(a, g):
    """``g`` where ``a > 0``, else 0 (a NaN in a gives 0), in g's dtype: ReLU's VJP at a.

    >>> relu_grad(np.array([-1.0, 0.0, 2.0]), np.array([5.0, 6.0, 7.0]))
    array([0., 0., 7.])
    """
    return np.where(a > 0, g, 0)  # (0 takes g's dtype; on CuPy arrays, cupy.where)
