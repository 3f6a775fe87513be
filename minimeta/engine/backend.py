"""Where arrays live: one helper that returns the array module (NumPy or CuPy) of an array.

Every op that must build a new array (zeros, ones, ...) asks `array_module(x)` for the module of
its input instead of hard-coding `numpy`, so the same primitive runs on CPU and GPU arrays.
CuPy is never imported here unless an array already is a CuPy array.

Read next: `autodiff.py`, the tape and the backward pass.
"""
import numpy as np


def array_module(x):
    """Return the module (``numpy`` or ``cupy``) that owns array ``x``.

    >>> array_module(np.zeros(2)) is np
    True
    """
    if type(x).__module__.startswith("cupy"):
        import cupy  # lazy: only reached when a CuPy array is already in hand

        return cupy
    return np


def is_float_dtype(dtype):
    """True for floating dtypes, the only ones that may carry gradients."""
    return np.issubdtype(np.dtype(dtype), np.floating)
