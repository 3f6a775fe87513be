"""A strict stand-in for CuPy, for tests on machines without a GPU.

Its ``ndarray`` keeps a NumPy array inside and hands it out only when asked explicitly
(``.get()``, ``cupy.asnumpy``), and it refuses what CuPy refuses, with CuPy's errors:

* implicit device → host: ``np.asarray(x)`` raises ``TypeError: Implicit conversion to a NumPy
  array is not allowed`` (``float(x)``, ``x.item()``, ``bool(x)`` of one element are allowed);
* implicit host → device: a NumPy array met by a ufunc, an operator or a CuPy function raises
  ``TypeError: Unsupported type <class 'numpy.ndarray'>``, and as the value of ``x[i] = v``
  with a basic index ``ValueError: non-scalar numpy.ndarray cannot be used for fill`` (NumPy
  scalars, 0-d arrays and Python numbers are fine; NumPy index arrays are copied over, as CuPy
  does, with the values of ``x[idx] = v`` and ``np.add.at(x, idx, v)``, and out-of-range
  entries wrap around, as CuPy's do, where NumPy raises); ``add.at`` refuses the dtypes CuPy
  has no atomic add for (int64);
* NumPy-only functions: a NumPy function CuPy lacks (``__array_function__`` finds no
  ``cupy`` name for it), an ndarray method CuPy lacks, a ufunc method CuPy does not support
  (``np.multiply.at``, ``np.maximum.reduce``), a keyword CuPy's function, method or ufunc
  lacks (``np.sum(x, where=m)``, ``x.max(initial=0)``, ``np.add(x, y, where=m)``): the names
  come from a real CuPy (``tests/cupy_api.py``).

Reductions give 0-d arrays, not scalars, as on CuPy. Like CuPy, a NumPy function applied to
these arrays returns them. Under numba's CUDA simulator the kernels get the NumPy array inside
(what the CUDA array interface hands a real kernel). Use: ``fake_cupy.install(monkeypatch)``.
"""
import collections
import numbers
import sys
import types

import numpy as np

import cupy_api

SCALARS = (numbers.Number, np.generic)
# the dtypes CuPy's add.at has an atomic add for (``_scatter_op_single``): not int64
AT_ADD_DTYPES = {np.dtype(t) for t in (np.int32, np.float16, np.float32, np.float64,
                                       np.uint32, np.uint64)}
# device → host reads by kind: each one would wait for the GPU to finish its queued work
TRANSFERS = collections.Counter()
# host → device copies by function (each a CUDA memcpy, 55 µs of host time on an H200)
UPLOADS = collections.Counter()
# calls on device arrays by kind (CuPy functions and methods, ufuncs, numba.cuda launches, the
# copies CuPy's matmul makes of its operands): a proxy of what a GPU pays per call, a launch
# and host-side bookkeeping (views count too)
DEVICE_CALLS = collections.Counter()
# bytes copied on the device by layout calls (a reshape of a transpose) and by CuPy's matmul
# (its "copy" calls), by function
COPIED = collections.Counter()
_HOST = "Implicit conversion to a NumPy array is not allowed. Please use `.get()` to " \
        "construct a NumPy array explicitly."


def _refuse_host(x):
    """CuPy's error for a host array where a device array must be (also inside a list)."""
    if isinstance(x, np.ndarray):
        raise TypeError(f"Unsupported type {type(x)}")
    if isinstance(x, (list, tuple)):
        for v in x:
            _refuse_host(v)


def _unwrap(x):
    if isinstance(x, ndarray):
        return x._a
    if isinstance(x, (list, tuple)):
        return type(x)(_unwrap(v) for v in x)
    if isinstance(x, dict):
        return {k: _unwrap(v) for k, v in x.items()}
    return x


def _wrap(x):
    if isinstance(x, np.generic):          # CuPy's reductions give 0-d arrays, not scalars
        return ndarray._of(np.asarray(x))
    if isinstance(x, np.ndarray):
        return ndarray._of(x)
    if isinstance(x, tuple):
        return tuple(_wrap(v) for v in x)
    if isinstance(x, list):
        return [_wrap(v) for v in x]
    return x


def _device_call(f, args, kwargs, this=None):
    """``f`` on the arrays inside, after refusing host arrays among the arguments (``this``:
    the array whose method ``f`` is). The bytes of a layout call's copy go to ``COPIED``."""
    for a in list(args) + list(kwargs.values()):
        _refuse_host(a)
    DEVICE_CALLS["function"] += 1
    out = f(*_unwrap(args), **_unwrap(kwargs))
    source = this if this is not None else _unwrap(args[0]) if args else None
    if getattr(f, "__name__", "") in _LAYOUT and isinstance(source, np.ndarray) and \
            isinstance(out, np.ndarray) and not np.may_share_memory(out, source):
        COPIED[f.__name__] += out.nbytes
    return _wrap(out)


_LAYOUT = {"ascontiguousarray", "reshape", "ravel", "astype", "copy", "transpose", "squeeze",
           "swapaxes", "moveaxis", "broadcast_to", "expand_dims"}   # copy only if they must


class ndarray:
    """A "GPU" array."""
    __slots__ = ("_a",)
    __array_priority__ = 100

    def __init__(self, shape, dtype=float, order="C"):
        self._a = empty(shape, dtype, order)._a

    @classmethod
    def _of(cls, a):
        out = object.__new__(cls)
        out._a = a
        return out

    # ---- crossing between host and device: only explicitly
    def __array__(self, *args, **kwargs):
        raise TypeError(_HOST)

    def get(self):
        """A host (plain NumPy) copy, as ``cupy.ndarray.get``."""
        TRANSFERS["get"] += 1
        return np.array(self._a)

    def __float__(self):
        TRANSFERS["float"] += 1
        return float(self._a)

    def __int__(self):
        TRANSFERS["int"] += 1
        return int(self._a)

    def __bool__(self):
        TRANSFERS["bool"] += 1
        return bool(self._a)

    def item(self):
        TRANSFERS["item"] += 1
        return self._a.item()

    def tolist(self):
        TRANSFERS["tolist"] += 1
        return self._a.tolist()

    def __len__(self):
        return len(self._a)

    def __iter__(self):
        return (_wrap(self._a[i]) for i in range(len(self._a)))

    def __repr__(self):
        return repr(self._a)

    def __format__(self, spec):
        return format(self._a, spec)

    # ---- attributes and methods: those CuPy's ndarray has
    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    strides = property(lambda self: self._a.strides)
    flags = property(lambda self: cupy_api.Flags(self._a.flags))
    nbytes = property(lambda self: self._a.nbytes)
    itemsize = property(lambda self: self._a.itemsize)
    T = property(lambda self: ndarray._of(self._a.T))

    def __getattr__(self, name):
        if name.startswith("_") or name not in cupy_api.NDARRAY:
            raise AttributeError(f"'cupy.ndarray' object has no attribute {name!r}")
        attr = getattr(self._a, name)
        if not callable(attr):
            return _wrap(attr)

        def method(*args, **kwargs):
            cupy_api.check_keywords(f"ndarray.{name}", kwargs)
            return _device_call(attr, args, kwargs, this=self._a)
        return method

    def __getitem__(self, key):
        # host index arrays are fine
        return _wrap(self._a[cupy_api.wrapped_key(_unwrap(key), self.shape)])

    def __setitem__(self, key, value):
        key = cupy_api.wrapped_key(_unwrap(key), self.shape)
        if cupy_api.advanced(key):  # CuPy's _scatter_op copies a host value over (core.array)
            self._a[key] = _unwrap(value)
            return
        if isinstance(value, np.ndarray):   # a basic index is CuPy's fill: numbers only
            if value.shape != ():
                raise ValueError("non-scalar numpy.ndarray cannot be used for fill")
            value = value.item()
        _refuse_host(value)
        self._a[key] = _unwrap(value)

    # ---- NumPy's protocols, as CuPy answers them
    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        name = ufunc.__name__
        if name not in cupy_api.TOP:
            return NotImplemented
        return _ufunc(ufunc)._apply(method, inputs, kwargs)

    def __array_function__(self, func, types_, args, kwargs):
        path = func.__module__.split(".")[1:] + [func.__name__]
        known = {(): cupy_api.TOP, ("linalg",): cupy_api.LINALG,
                 ("lib", "stride_tricks"): cupy_api.STRIDE_TRICKS}.get(tuple(path[:-1]), ())
        if path[-1] not in known or any(t not in (ndarray, np.ndarray) for t in types_):
            return NotImplemented       # NumPy then raises "no implementation found for ..."
        if func is np.empty_like:
            return empty_like(*args, **kwargs)
        cupy_api.check_keywords(".".join(path), kwargs)
        return _device_call(func, args, kwargs)


ndarray.__module__ = "cupy._fake"


def _operator(ufunc, reflected=False, inplace=False):
    def op(self, other):
        if inplace:
            return _ufunc(ufunc)._apply("__call__", (self, other), {"out": (self,)})
        pair = (other, self) if reflected else (self, other)
        return _ufunc(ufunc)._apply("__call__", pair, {})
    return op


for _name, _uf in [("add", np.add), ("sub", np.subtract), ("mul", np.multiply),
                   ("truediv", np.true_divide), ("floordiv", np.floor_divide),
                   ("mod", np.remainder), ("pow", np.power), ("and", np.bitwise_and),
                   ("or", np.bitwise_or), ("xor", np.bitwise_xor), ("matmul", np.matmul)]:
    setattr(ndarray, f"__{_name}__", _operator(_uf))
    setattr(ndarray, f"__r{_name}__", _operator(_uf, reflected=True))
    if _name != "matmul":                       # CuPy has no in-place @=
        setattr(ndarray, f"__i{_name}__", _operator(_uf, inplace=True))
for _name, _uf in [("lt", np.less), ("le", np.less_equal), ("gt", np.greater),
                   ("ge", np.greater_equal), ("eq", np.equal), ("ne", np.not_equal)]:
    setattr(ndarray, f"__{_name}__", _operator(_uf))
for _name, _uf in [("neg", np.negative), ("pos", np.positive), ("abs", np.absolute),
                   ("invert", np.invert)]:
    setattr(ndarray, f"__{_name}__",
            lambda self, _uf=_uf: _ufunc(_uf)._apply("__call__", (self,), {}))
ndarray.__hash__ = None


class _ufunc:
    """A CuPy ufunc: refuses host arrays, supports only the methods CuPy supports."""

    def __init__(self, numpy_ufunc):
        self.f = numpy_ufunc
        self.__name__ = numpy_ufunc.__name__

    def _apply(self, method, inputs, kwargs):
        name = self.__name__
        allowed = {"__call__": True, "outer": True, "at": name in cupy_api.UFUNC_AT,
                   "reduce": name in cupy_api.UFUNC_REDUCE,
                   "accumulate": name in cupy_api.UFUNC_ACCUMULATE}
        if not allowed.get(method, False):
            raise NotImplementedError(f"`cupy_{name}.{method}` is not supported yet")
        if method != "__call__":        # NumPy's initial=, where= (outer's **kwargs: unread)
            cupy_api.check_keywords(f"ufunc.{method}", kwargs)
        elif set(kwargs) - cupy_api.KEYWORDS["ufunc.__call__"]:     # where=, order=, subok=
            raise TypeError(f"Wrong arguments {kwargs}")
        operands = list(inputs) + list(kwargs.get("out", ()))
        if method == "at":      # indices and values may come from the host, as in x[i] = v
            operands = [inputs[0]]
            if name == "add" and inputs[0].dtype not in AT_ADD_DTYPES:
                raise TypeError("cupy.add.at only supports int32, float16, float32, float64, "
                                "uint32, uint64, as data type")
        for x in operands:
            if not isinstance(x, (ndarray,) + SCALARS):
                raise TypeError(f"Unsupported type {type(x)}")
        out = kwargs.get("out")
        if out is not None:
            kwargs = dict(kwargs, out=tuple(_unwrap(list(out))))
        f = self.f if method == "__call__" else getattr(self.f, method)
        DEVICE_CALLS["ufunc"] += 1
        copies = cupy_api.matmul_copies(_unwrap(inputs)) if name == "matmul" else []
        if copies and method == "__call__":
            DEVICE_CALLS["copy"] += len(copies)
            COPIED["matmul"] += sum(copies)
        if method == "at":
            key = cupy_api.wrapped_key(_unwrap(inputs[1]), inputs[0].shape)
            inputs = (inputs[0], key) + tuple(inputs[2:])
        result = f(*_unwrap(inputs), **kwargs)
        if method == "at":
            return None
        if out is not None:             # the very arrays given (x += 1 keeps x)
            return out[0] if len(out) == 1 else tuple(out)
        return _wrap(result)

    def __call__(self, *inputs, **kwargs):
        return self._apply("__call__", inputs, kwargs)

    def __getattr__(self, method):
        if method not in ("at", "reduce", "accumulate", "outer"):
            raise AttributeError(method)
        return lambda *inputs, **kwargs: self._apply(method, inputs, kwargs)


# ---- the module's own functions
def _poisoned(a):
    """``a`` filled as a GPU's reused memory may be: CuPy's ``empty`` does not clear what its
    pool hands back, so code that reads an element before writing it must fail here too."""
    a.fill(np.nan if np.issubdtype(a.dtype, np.inexact) else -(2 ** 31) + 7)
    return ndarray._of(a)


def empty(shape, dtype=float, order="C"):
    return _poisoned(np.empty(shape, dtype, order))


def empty_like(a, dtype=None, order="K", subok=None, shape=None):
    _refuse_host(a)
    return _poisoned(np.empty_like(_unwrap(a), dtype=dtype, order=order, shape=shape))


def take(a, indices, axis=None, out=None):
    """CuPy's take: its out-of-range indices wrap around (it has no ``mode``; NumPy raises)."""
    return _device_call(lambda *args: np.take(*args, mode="wrap"), (a, indices, axis, out), {})


def asarray(x, dtype=None, order=None):
    """Host data (or a device array) as a device array: the explicit crossing."""
    if isinstance(x, ndarray):
        return x if dtype is None or x.dtype == dtype else x.astype(dtype)
    UPLOADS["asarray"] += 1
    return ndarray._of(np.array(_unwrap(x), dtype=dtype, order=order or "K"))


def array(x, dtype=None, copy=True, order="K"):
    if not isinstance(x, ndarray):
        UPLOADS["array"] += 1
    return ndarray._of(np.array(_unwrap(x), dtype=dtype, copy=copy, order=order))


def asnumpy(x):
    return x.get() if isinstance(x, ndarray) else np.asarray(x)


def _kernel_arg(a):
    """The array inside, or a simulated device copy of a read-only one (the engine's weights),
    which the simulator would fail to copy back after the kernel (a GPU array is writable)."""
    from numba import cuda

    return a if a.flags.writeable else cuda.to_device(a)


def install(monkeypatch=None, run=True):
    """Stand in for CuPy (for one test with pytest's ``monkeypatch``; for the whole process
    without). Under numba's CUDA simulator, the numba.cuda kernels then get the NumPy array
    inside each device array, as a real kernel gets the device memory through the CUDA array
    interface (writes land in the same buffer). ``run=False``: launches are checked and
    counted, not run (their outputs stay ``empty``'s NaN: for counting calls)."""
    from minimeta.kernels import _cuda

    launch = _cuda.launch

    def host_launch(kernel, n, *args, threads=None):
        for a in args:      # numba would copy a host array over and back at every launch
            _refuse_host(a)
        DEVICE_CALLS["kernel"] += 1
        if run:
            launch(kernel, n, *[_kernel_arg(a._a) if isinstance(a, ndarray) else a
                                for a in args], threads=threads)

    if monkeypatch is None:
        sys.modules["cupy"], _cuda.launch = sys.modules[__name__], host_launch
    else:
        monkeypatch.setitem(sys.modules, "cupy", sys.modules[__name__])
        monkeypatch.setattr(_cuda, "launch", host_launch)


def _namespace(names, numpy_module, label):
    def lookup(name):
        if name not in names:
            raise AttributeError(f"module '{label}' has no attribute {name!r}")
        f = getattr(numpy_module, name)
        if isinstance(f, np.ufunc):
            return _ufunc(f)
        if isinstance(f, type) or not callable(f):
            return f
        qualified = label.replace("cupy.", "", 1) + "." + name if "." in label else name

        def call(*args, **kwargs):
            cupy_api.check_keywords(qualified, kwargs)
            return _device_call(f, args, kwargs)
        return call
    return lookup


class _Linalg:
    __getattr__ = staticmethod(_namespace(cupy_api.LINALG, np.linalg, "cupy.linalg"))


__getattr__ = _namespace(cupy_api.TOP, np, "cupy")
linalg = _Linalg()


class _Pool:
    """CuPy's memory pool, as far as the benchmarks ask (nothing is pooled here)."""

    def used_bytes(self):
        return 0

    def malloc(self, size):
        return None


_POOL = _Pool()
cuda = types.SimpleNamespace(
    runtime=types.SimpleNamespace(getDeviceCount=lambda: 1, getDevice=lambda: 0,
                                  getDeviceProperties=lambda i: {"name": b"simulated GPU"}),
    Device=lambda *a: types.SimpleNamespace(synchronize=lambda: None),
    set_allocator=lambda allocator=None: None)
get_default_memory_pool = lambda: _POOL     # noqa: E731
__version__ = f"stand-in for {cupy_api.VERSION}"
