"""Launching a numba.cuda kernel through CuPy: numba compiles, CuPy launches.

At every call, numba's launch works out in Python the type of each argument and takes each
array through DLPack, then hands numbers over as ctypes: 39 µs for a kernel of one array on
the H200, and the kernels here take four to fourteen arguments. CuPy launches a kernel it
has loaded in a few µs. So, per kernel and per argument types (each array's dtype, number of
dimensions and layout; each number's type):

1. numba compiles the kernel to PTX for this GPU (``cuda.compile_ptx``: the same compiler, the
   same code as its own launch would run);
2. CuPy loads that PTX (``RawModule``) and launches it on its current stream (no host wait);
3. the arguments are laid out as numba's calling convention has them, spelled out here: an
   array is 5 + 2·ndim parameters of 8 bytes,

       meminfo (0), parent (0), nitems, itemsize, data pointer, *shape, *strides (in bytes),

   and a number is one parameter of its own width (int64, float64, float32, bool).

The PTX is kept on disk (``CACHE``: ``ptx`` in ``$MINIMETA_CACHE_DIR``, ``~/.cache/minimeta``
by default, as the Omniglot arrays are; ``MINIMETA_PTX_CACHE=off`` turns it off), so a later
process on the machine loads it instead of compiling again (half a second or more a kernel
and argument kinds, some tens of them a run). A file's name hashes what its PTX depends on:
the source of every file in ``kernels/``, the numbers that the kernel and the device
functions it calls read from their modules (``norm_cuda.SLOTS``, a shared array's size),
the argument kinds, the GPU's compute capability, and numba's and numba-cuda's versions.
(Files of older keys are never read again; removing the folder frees them.)

``tests/test_cuda_compile.py`` holds this layout to the parameter list of the PTX numba writes,
for every launch of every kernel, in both dtypes; on a GPU, ``gpu_check.py`` runs every kernel
both ways before anything else and, where they differ, sets ``MINIMETA_CUDA_LAUNCH=numba``
(numba's own launch) for the rest of the run. Arguments of another kind, or a kernel that
fails to compile or load, go to numba's launch (``FELL_BACK`` says which and why).

Read next: ``kernels/conv_cuda.py`` (convolution on a GPU).
"""
import functools
import hashlib
import os
import re
import tempfile

import numpy as np

from . import array_module, own_folder

_KERNELS = {}   # (kernel, GPU, argument kinds) → (CuPy's kernel, how to lay out each argument)
FELL_BACK = {}  # (kernel name, argument kinds) → why numba's launch runs it
_ZERO = np.intp(0)
_NUMBERS = (int, float, np.generic)


def kind(a):
    """What a compiled kernel depends on: (dtype, ndim, layout) of an array, a number's type
    (asked without ``__cuda_array_interface__``, which CuPy builds anew at every reading)."""
    flags = None if isinstance(a, _NUMBERS) else getattr(a, "flags", None)
    if flags is None:
        return type(a)
    layout = "C" if flags.c_contiguous else "F" if flags.f_contiguous else "A"
    return a.dtype.str, a.ndim, layout


def numba_type(k):
    """The numba type of an argument of kind ``k`` (what numba's launch would infer)."""
    import numba
    from numba import types

    if isinstance(k, tuple):
        dtype, ndim, layout = k
        return types.Array(numba.from_dtype(np.dtype(dtype)), ndim, layout)
    try:
        return numba.typeof(k(0))
    except Exception:       # not a number: no type this launch lays out
        return None


def _scalar(ty):
    """The NumPy scalar type that passes a number of numba type ``ty``, or None."""
    from numba import types

    if ty == types.boolean:
        return np.bool_
    if isinstance(ty, (types.Integer, types.Float)) and ty.bitwidth in (8, 16, 32, 64):
        return np.dtype(str(ty)).type
    return None


def layout(kinds):
    """For each argument, None (an array) or the NumPy scalar type of a number; None in
    place of the whole list if an argument is neither."""
    from numba import types

    out = []
    for k in kinds:
        ty = numba_type(k)
        cast = None if isinstance(ty, types.Array) else _scalar(ty)
        if cast is None and not isinstance(ty, types.Array):
            return None
        out.append(cast)
    return out


def parameters(args, how):
    """The kernel's parameters: each array spread into numba's 5 + 2·ndim, each number cast."""
    out = []
    for a, cast in zip(args, how):
        if cast is None:
            out += [_ZERO, _ZERO, np.int64(a.size), np.int64(a.itemsize), a]
            out += [np.int64(s) for s in a.shape] + [np.int64(s) for s in a.strides]
        else:
            out.append(cast(a))
    return tuple(out)


def entry(ptx):
    """The name of the kernel a PTX module defines (numba's mangled name)."""
    return re.search(r"\.entry\s+([\w$]+)\s*\(", ptx).group(1)


def _compiled(kernel, kinds, cp):
    """(CuPy's kernel, layout), compiled and loaded once; None where numba's launch must run."""
    from numba import cuda  # (only ever reached from _cuda.launch: its NumPy 2.5 alias is set)

    key = (kernel, cp.cuda.runtime.getDevice(), kinds)
    if key not in _KERNELS:
        _KERNELS[key] = None
        how = layout(kinds)
        name = getattr(kernel, "py_func", kernel).__name__
        if how is None:
            FELL_BACK[name, kinds] = "an argument of a type this launch does not lay out"
            return None
        path = None
        try:
            cc = cuda.get_current_device().compute_capability
            path, ptx = _ptx(kernel, kinds, cc, cuda)
            _KERNELS[key] = cp.RawModule(path=path).get_function(entry(ptx)), how
        except Exception as err:   # no NVVM, a load that fails: numba's launch, said why
            FELL_BACK[name, kinds] = f"{type(err).__name__}: {err}"[:300]
            if path is not None and os.path.dirname(path) == _cache_folder():
                _remove(path)      # (a cached file that fails to load is not kept)
    return _KERNELS[key]


def _ptx(kernel, kinds, cc, cuda):
    """(a file holding the PTX, the PTX): the cache's file when an earlier process wrote it for
    the same key (``cache_key``), else compiled now and written there (or, the cache off or
    not writable, into this process's own folder)."""
    folder = _cache_folder()
    if folder is not None:
        path = os.path.join(folder, cache_key(kernel, kinds, cc) + ".ptx")
        try:
            with open(path) as f:
                return path, f.read()
        except OSError:
            pass
    ptx, _ = cuda.compile_ptx(kernel.py_func, tuple(map(numba_type, kinds)), cc=cc)
    if folder is not None:
        part = None
        try:    # whole or not at all: written aside, then renamed (another process may read)
            fd, part = tempfile.mkstemp(dir=folder, suffix=".part")
            with os.fdopen(fd, "w") as f:
                f.write(ptx)
            os.replace(part, path)
            return path, ptx
        except OSError:     # (a full disk: no half-written file left behind)
            if part is not None:
                _remove(part)
    path = os.path.join(_folder(), f"{len(_KERNELS)}_{kernel.py_func.__name__}.ptx")
    with open(path, "w") as f:
        f.write(ptx)
    return path, ptx


def cache_key(kernel, kinds, cc):
    """A hex digest of what the PTX of ``kernel`` for ``kinds`` on compute capability ``cc``
    depends on (the module docstring lists it)."""
    import numba
    try:
        from numba_cuda import __version__ as numba_cuda
    except ImportError:
        numba_cuda = None
    parts = (_sources(), kernel.py_func.__module__, kernel.py_func.__qualname__,
             _numbers_read(kernel.py_func, set()), kinds, tuple(cc), numba.__version__,
             numba_cuda)
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:40]


def _numbers_read(fn, seen):
    """(function, name, value) of each module-level number (or tuple of numbers) ``fn``
    reads, and those of the device functions it calls, recursively (numba writes them into
    the PTX)."""
    out = []
    for name in fn.__code__.co_names:
        value = fn.__globals__.get(name)
        if _number(value) or isinstance(value, tuple) and all(map(_number, value)):
            out.append((fn.__qualname__, name, value))
        inner = getattr(value, "py_func", None)
        if inner is not None and inner not in seen:
            seen.add(inner)
            out += _numbers_read(inner, seen)
    return tuple(out)


def _number(value):
    return isinstance(value, (bool, int, float, np.generic))


@functools.lru_cache(maxsize=None)
def _sources():
    """A digest of every file of the kernels package (read once a process)."""
    here = os.path.dirname(os.path.abspath(__file__))
    digest = hashlib.sha256()
    for name in sorted(os.listdir(here)):
        if name.endswith(".py"):
            with open(os.path.join(here, name), "rb") as f:
                digest.update(name.encode() + b"\0" + f.read())
    return digest.hexdigest()


def _cache_folder():
    """``CACHE``, made if missing; None where it is off, cannot be made, or is not a folder of
    this user's that no one else may write to: code is loaded from it onto the GPU
    (``kernels.own_folder``, which guards numba's CPU cache too)."""
    return own_folder(CACHE, closed=0o022) if CACHE else None


def _remove(path):
    try:
        os.remove(path)
    except OSError:
        pass


def _folder():
    """A folder for this process's PTX files, removed when the process ends."""
    global _PTX
    if _PTX is None:
        _PTX = tempfile.TemporaryDirectory(prefix="minimeta-ptx-")
    return _PTX.name


_PTX = None
CACHE = None if os.environ.get("MINIMETA_PTX_CACHE") == "off" else os.path.join(
    os.environ.get("MINIMETA_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache",
                                                         "minimeta"), "ptx")


def launch(kernel, blocks, threads, args):
    """Launch ``kernel`` on ``blocks`` × ``threads`` through CuPy; False (nothing launched)
    where there is no CuPy array among ``args`` or numba's launch must run it."""
    first = next((a for a in args if not isinstance(a, _NUMBERS)), None)
    cp = array_module(first)
    if cp.__name__ != "cupy":
        return False
    compiled = _compiled(kernel, tuple(kind(a) for a in args), cp)
    if compiled is None:
        return False
    function, how = compiled
    function((blocks,), (threads,), parameters(args, how))
    return True
