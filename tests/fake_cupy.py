"""A stand-in for CuPy, for tests on machines without a GPU.

Its arrays are NumPy arrays of a subclass whose type lives in a module named ``cupy…``: that is
all the engine asks to decide that an array is on the GPU. Like CuPy, every NumPy function or
ufunc applied to them returns them (``__array_function__`` / ``__array_ufunc__``), and arrays
made by NumPy itself stay "on the CPU", so a creation site that forgets the device shows up as
a device-mixing error exactly as it would on a GPU. Under numba's CUDA simulator the CUDA
kernels accept them as host arrays. Use: ``monkeypatch.setitem(sys.modules, "cupy", fake_cupy)``.
"""
import types

import numpy as np


class ndarray(np.ndarray):
    """A "GPU" array."""

    def get(self):
        """A host (plain NumPy) copy, as ``cupy.ndarray.get``."""
        return np.array(self.view(np.ndarray))

    def __array_function__(self, func, types_, args, kwargs):
        return _wrap(func(*_unwrap(args), **_unwrap(kwargs)))

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        if "out" in kwargs:
            kwargs["out"] = tuple(_unwrap(list(kwargs["out"])))
        result = getattr(ufunc, method)(*_unwrap(inputs), **kwargs)
        return None if method == "at" else _wrap(result)


ndarray.__module__ = "cupy._fake"


def _unwrap(x):
    if isinstance(x, ndarray):
        return x.view(np.ndarray)
    if isinstance(x, (list, tuple)):
        return type(x)(_unwrap(v) for v in x)
    if isinstance(x, dict):
        return {k: _unwrap(v) for k, v in x.items()}
    return x


def _wrap(x):
    if isinstance(x, np.generic):          # CuPy's reductions give 0-d arrays, not scalars
        return np.asarray(x).view(ndarray)
    if isinstance(x, np.ndarray) and not isinstance(x, ndarray):
        return x.view(ndarray)
    if isinstance(x, tuple):
        return tuple(_wrap(v) for v in x)
    return x


def asarray(x, dtype=None):
    return np.array(_unwrap(x), dtype=dtype).view(ndarray)


def __getattr__(name):
    """Every other NumPy function, returning "GPU" arrays; types and ufuncs as they are."""
    f = getattr(np, name)
    if isinstance(f, (type, np.ufunc)) or not callable(f):
        return f
    return lambda *args, **kwargs: _wrap(f(*_unwrap(args), **_unwrap(kwargs)))


cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=lambda: 1))
