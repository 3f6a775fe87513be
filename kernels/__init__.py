"""The kernel table: every accelerated kernel, by name, beside the NumPy reference that is its spec.

    name                       reference (the spec)     CPU (numba, BLAS)  CUDA (GPU arrays)
    conv2d                     conv_ref.conv2d          conv_numba.…       conv_cuda.… (im2col
    conv2d_input_grad          conv_ref.…               conv_numba.…       conv_cuda.…  kernels
    conv2d_weight_grad         conv_ref.…               conv_numba.…       conv_cuda.…  + cuBLAS)
    max_pool2d                 pool_ref.max_pool2d      pool_numba.…       pool_cuda.…
    max_pool2d_backward        pool_ref.…               pool_numba.…       pool_cuda.…
    cosine_attention           attention_ref.…          attention_numba.…  attention_cuda.…
    cosine_attention_backward  attention_ref.…          attention_numba.…  attention_cuda.…
    causal_conv1d              causal_ref.…             causal_cpu.…       causal_cuda.…
    causal_conv1d_input_grad   causal_ref.…             causal_cpu.…       causal_cuda.…
    causal_conv1d_weight_grad  causal_ref.…             causal_cpu.…       causal_cuda.…
    where                      select_ref.where         select_numba.…     the reference, on CuPy
    relu_grad                  select_ref.…             select_numba.…     the reference, on CuPy
    batch_norm                 norm_ref.batch_norm      norm_numba.…       norm_cuda.… (a block
    batch_norm_backward        norm_ref.…               norm_numba.…       norm_cuda.…  a channel)
    batch_norm_double_backward norm_ref.…               norm_numba.…       norm_cuda.…
    add_bias                   norm_ref.…               norm_numba.…       the reference, on CuPy
    bias_grad                  norm_ref.…               norm_numba.…       the reference, on CuPy
    adam                       optim_ref.adam           the reference      optim_cuda.adam

``add_bias``, ``bias_grad``, ``where`` and ``relu_grad`` on the GPU run their NumPy references on
CuPy arrays (NumPy's functions dispatch to CuPy's: one broadcast add, one reduction, one select,
which a hand kernel would not beat); batch norm's references run there too, under
``use_reference()`` (``portable`` rows), as does ``adam``'s (an optimizer's step, outside any
graph; on the CPU its reference is the version run: NumPy's passes over the flat arrays of a
group of parameters, ``minimeta/optim.py``). The other references make their arrays with NumPy:
under ``use_reference()`` they run on host copies of GPU arrays (``via_host``), as CuPy refuses
to mix host and device arrays.
Families close under differentiation: conv2d and its two gradients; the causal dilated conv1d
(SNAIL's) and its two; max pooling and its argmax scatter (whose own gradient is a gather); ReLU's
select (``relu_grad``, whose gradient in g is itself);
fused cosine attention and fused batch norm, whose composite definitions
(``engine/primitives/attention.py`` and ``normalization.py``, re-exported by
``minimeta.functional``) give their higher derivatives (see ``engine/primitives/fused.py``);
``add_bias`` is the forward of the conv's bias, whose VJP is ``bias_grad``, whose own VJP is a
broadcast (``engine/primitives/conv.py``). The conv and batch-norm rows also take a stack of
tasks, a leading task axis on every array (``conv_ref.over_tasks``, the batch-norm
references): what ``learners.StackedTasks`` runs, one batched launch on a GPU.

Kernels take arrays and return arrays; they never see a Tensor. The engine (and Adam, in
``minimeta/optim.py``) calls them only through ``lookup(name, array, *more)``. It returns the
CUDA version when ``array`` lives on a GPU (a CuPy array, or one with
``__cuda_array_interface__``), else the CPU version, unless
``MINIMETA_KERNELS=reference`` is set or the code runs inside ``use_reference()`` (for teaching
and debugging), or one of the arrays is empty (the reference: NumPy's rules for empty axes),
or, on the CPU, not what the kernel computes exactly in (integers where it works in floats, a
byte order not the machine's: the reference; ``_kernel_dtypes``). On the CPU a row's
``parallel_from`` is the work (elements of the call's largest array) from which its numba loops
wake numba's other threads; below it they run on the calling thread (``threads.one_thread``;
a kernel's ``serial`` twin, compiled without ``prange``, where it has one): waking a sleeping
thread cost more than it saved there (``benchmarks/kernel_threads.py``).
Below a row's ``kernel_from`` the CPU runs the reference itself: for ``where`` and ``relu_grad``,
a small MLP's masks, NumPy's call costs less than numba's dispatch of the kernel.
numba (and numba.cuda) is imported on the first lookup of one of its kernels, never with
minimeta (where numba can write its cache neither beside the kernels nor in the
home folder, the lookup gives it a private temporary folder: ``_import``).

Read next: ``kernels/conv_ref.py`` (convolution in NumPy: the spec).
"""
if __name__ != "minimeta.kernels":     # this folder imported as a top-level package (from a
    # checkout's root, ``import kernels``): numba's cache records the name a kernel module was
    # imported by, and a cache written under "kernels" broke every later run of minimeta
    # (ModuleNotFoundError: No module named 'kernels', raised from numba's cache loader)
    raise ImportError(f"{__name__}: import the kernels as minimeta.kernels (from minimeta "
                      "import kernels), not as a top-level package")

import contextlib
import importlib
import os as _os
import pickle as _pickle
import stat as _stat
import sys as _sys
import tempfile as _tempfile
from dataclasses import dataclass

import numpy as _np

from . import attention_ref, causal_ref, conv_ref, norm_ref, optim_ref, pool_ref, select_ref
from .threads import LOCAL, concurrent_kernels, one_at_a_time, one_thread, user_stacklevel


@dataclass(frozen=True)
class Kernel:
    """One row of the table: the spec, and where its accelerated versions live."""

    reference: object
    cpu: str = ""   # "module:function" inside this package, imported on first use
    cuda: str = ""
    portable: bool = False      # the reference runs on CuPy arrays as they are
    parallel_from: int = 0      # the CPU version's numba loops wake numba's other threads
    #                             only for this many elements or more (in its largest array)
    kernel_from: int = 0        # below this many, the reference: NumPy's call costs less
    #                             than the kernel's dispatch (numba's typing of its arguments)


def _row(reference, family, cuda=True, cpu=None, portable=False, parallel_from=0,
         kernel_from=0):
    """A table row whose CPU (and CUDA) versions share the reference's function name; the CPU
    module is ``<family>_numba`` unless ``cpu`` names another."""
    name = reference.__name__
    return Kernel(reference, f"{cpu or family + '_numba'}:{name}",
                  f"{family}_cuda:{name}" if cuda else "", portable, parallel_from, kernel_from)


TABLE = {
    "conv2d": _row(conv_ref.conv2d, "conv"),
    "conv2d_input_grad": _row(conv_ref.conv2d_input_grad, "conv"),
    "conv2d_weight_grad": _row(conv_ref.conv2d_weight_grad, "conv"),
    "max_pool2d": _row(pool_ref.max_pool2d, "pool", parallel_from=1 << 18),
    "max_pool2d_backward": _row(pool_ref.max_pool2d_backward, "pool", parallel_from=1 << 17),
    "cosine_attention": _row(attention_ref.cosine_attention, "attention",
                             parallel_from=1 << 15),
    "cosine_attention_backward": _row(attention_ref.cosine_attention_backward, "attention",
                                      parallel_from=1 << 14),
    "causal_conv1d": _row(causal_ref.causal_conv1d, "causal", cpu="causal_cpu"),
    "causal_conv1d_input_grad": _row(causal_ref.causal_conv1d_input_grad, "causal",
                                     cpu="causal_cpu"),
    "causal_conv1d_weight_grad": _row(causal_ref.causal_conv1d_weight_grad, "causal",
                                      cpu="causal_cpu"),
    # a small MLP's masks (a few hundred values): np.where in 1.3 µs, the kernel's call in 4
    "where": _row(select_ref.where, "select", cuda=False, parallel_from=1 << 20,
                  kernel_from=1 << 10),
    "relu_grad": _row(select_ref.relu_grad, "select", cuda=False, parallel_from=1 << 20,
                      kernel_from=1 << 10),
    "batch_norm": _row(norm_ref.batch_norm, "norm", portable=True, parallel_from=1 << 19),
    "batch_norm_backward": _row(norm_ref.batch_norm_backward, "norm", portable=True,
                                parallel_from=1 << 18),
    # one op for the engine instead of ~130 through the composite
    "batch_norm_double_backward": _row(norm_ref.batch_norm_double_backward, "norm",
                                       portable=True, parallel_from=1 << 17),
    # the conv bias, in place, and its gradient
    "add_bias": _row(norm_ref.add_bias, "norm", cuda=False, parallel_from=1 << 22),
    "bias_grad": _row(norm_ref.bias_grad, "norm", cuda=False, parallel_from=1 << 20),
    # an optimizer's step, outside any graph: NumPy's passes on the CPU, one launch on a GPU
    "adam": Kernel(optim_ref.adam, "", "optim_cuda:adam", portable=True),
}

_LOADED = {}


@contextlib.contextmanager
def use_reference(flag=True):
    """Inside this block every kernel called from this thread runs its NumPy reference (the
    switch is per thread: see ``threads.py``)."""
    previous = LOCAL.reference
    LOCAL.reference = bool(flag)
    try:
        yield
    finally:
        LOCAL.reference = previous


def resolve(path):
    """Import "module:function" from this package (cached)."""
    if path not in _LOADED:
        module, name = path.split(":")
        _LOADED[path] = getattr(_import(f"{__name__}.{module}"), name)
    return _LOADED[path]


def _import(module, import_module=importlib.import_module):
    """Import a kernel module. numba caches compiled kernels beside their source or in the
    user's cache folder; where it can write to neither (a read-only install and a read-only
    home, as in a container with a read-only root file system) every ``cache=True`` kernel
    refuses to be defined ("no locator available"). Then, unless NUMBA_CACHE_DIR says where,
    the cache goes to a private folder in the temporary directory, and the import is retried."""
    try:
        return import_module(module)
    except RuntimeError as err:
        if "no locator available" not in str(err) or _os.environ.get("NUMBA_CACHE_DIR"):
            raise
        try:
            folder = private_cache_dir()
        except OSError as why:
            raise RuntimeError(f"kernels: numba can write its cache of compiled kernels "
                               f"neither beside them, nor in the home folder, nor in a "
                               f"temporary folder ({why}): set NUMBA_CACHE_DIR to a writable "
                               f"folder") from err
    import warnings

    import numba

    _os.environ["NUMBA_CACHE_DIR"] = numba.config.CACHE_DIR = folder
    warnings.warn(f"kernels: numba cannot write its cache beside the kernels or in the home "
                  f"folder; caching compiled kernels in {folder} (NUMBA_CACHE_DIR)",
                  RuntimeWarning, stacklevel=user_stacklevel())
    return import_module(module)


def compiled_before(module="conv_numba", dtype="float32"):
    """Whether numba's cache holds kernels of ``module`` (a name in this package, or a
    module) compiled before for ``dtype`` arrays (a run's: the layers are float32): any of its
    cached kernels (a run uses some of them, not all) with a fresh index entry whose signature
    takes that dtype, so that their first use loads them instead of compiling them (the
    convolutions: about half a minute on two cores, once a machine). An index alone had said
    yes after the tour, whose float64 examples leave float64 versions only. None where it
    cannot tell: the references in use, or a numba whose cache is laid out otherwise (read
    through numba's private attributes)."""
    if LOCAL.reference:
        return None
    try:
        if isinstance(module, str):
            module = _import(f"{__name__}.{module}")
        files = [kernel._cache._cache_file for kernel in vars(module).values()
                 if getattr(getattr(kernel, "_cache", None), "_cache_file", None) is not None]
        return any(any(dtype in str(kind) for kind in key[0])
                   for file in files for key in file._load_index()) if files else None
    except (AttributeError, ImportError, TypeError, IndexError, ValueError, EOFError,
            _pickle.UnpicklingError):
        return None


def private_cache_dir():
    """``<tmp>/minimeta-numba-<uid>``, made with mode 700; a fresh ``mkdtemp`` instead if that
    path is someone else's, a link, or open to others (compiled code is loaded from there)."""
    uid = getattr(_os, "getuid", lambda: 0)()
    folder = own_folder(_os.path.join(_tempfile.gettempdir(), f"minimeta-numba-{uid}"))
    return folder or _tempfile.mkdtemp(prefix="minimeta-numba-")


def own_folder(folder, closed=0o077):
    """``folder``, made if missing (mode 700), where it is a folder (not a link) of this user's
    with the mode bits ``closed`` clear (default: no access for others; 0o022: no one else may
    write); else None. Compiled code is loaded from such folders (numba's CPU cache here, the
    GPU's PTX in ``_cuda_raw``), so someone else's must not be used."""
    try:
        _os.makedirs(folder, mode=0o700, exist_ok=True)
        info = _os.lstat(folder)
    except OSError:
        return None
    uid = getattr(_os, "getuid", lambda: info.st_uid)()
    if _stat.S_ISDIR(info.st_mode) and info.st_uid == uid and not info.st_mode & closed:
        return folder
    return None


def array_module(x):
    """The module (``numpy`` or ``cupy``) that owns array ``x``: the one definition, used by the
    CUDA kernels here and by the engine (``engine/backend.py`` re-exports it). CuPy is imported
    only when a CuPy array is already in hand.

    >>> import numpy as np
    >>> array_module(np.zeros(2)) is np
    True
    """
    if type(x) is _np.ndarray:  # the common case, answered first (this runs at every op)
        return _np
    if type(x).__module__.startswith("cupy"):
        import cupy

        return cupy
    return _np


def on_gpu(array):
    """True for arrays in GPU memory (CuPy's, numba device arrays)."""
    return type(array).__module__.startswith("cupy") or hasattr(array,
                                                                "__cuda_array_interface__")


def lookup(name, array=None, *more):
    """The implementation of kernel ``name`` to run now on arrays like ``array``. Where it or
    one of ``more`` (the call's other arrays) is empty, the reference: NumPy's rules for empty
    axes are the spec, and an accelerated version would reshape by -1 or launch no blocks."""
    row = TABLE[name]
    arrays = () if array is None else (array, *more)
    if array is not None and array.dtype.kind == "f" and array.dtype.itemsize not in (4, 8):
        raise TypeError(f"{name}: {array.dtype} arrays are not supported by the kernels; use "
                        "float32 or float64")
    # (a NumPy array answered first: this runs at every kernel call)
    gpu = array is not None and type(array) is not _np.ndarray and on_gpu(array)
    sizes = [a.size for a in arrays]
    # the spec is NumPy: on GPU arrays it runs on host copies
    if LOCAL.reference or 0 in sizes:
        return via_host(row.reference) if gpu and row.cuda and not row.portable else \
            row.reference
    if gpu:
        return resolve(row.cuda) if row.cuda else row.reference
    if not row.cpu:
        return row.reference
    largest = max(sizes) if sizes else 0
    if largest < row.kernel_from or arrays and not _kernel_dtypes(name, arrays):
        return row.reference
    kernel = resolve(row.cpu)   # (numba is imported by its kernels' modules, not for the others)
    if "numba" in _sys.modules and not concurrent_kernels():
        return one_at_a_time(kernel)
    if largest < row.parallel_from:
        return one_thread(kernel)     # too little work to wake numba's other threads for
    return kernel


# rows whose numba kernels compute in their inputs' own dtype, exactly: integers are fine there
ANY_DTYPE = frozenset({"where", "relu_grad", "max_pool2d", "max_pool2d_backward"})
NATIVE_FLOATS = frozenset({_np.dtype(_np.float32), _np.dtype(_np.float64)})


def _kernel_dtypes(name, arrays):
    """False where the numba kernel would not give the spec's numbers: an array in a byte order
    not the machine's (numba refuses it), or an integer one in a row that computes in floats
    (Winograd's matrices, attention's norms, batch norm's mean would be truncated). The engine
    gives its kernels native floats; this is for the table called directly."""
    for a in arrays:
        dtype = a.dtype
        if dtype in NATIVE_FLOATS:    # the common case, one set lookup (this runs at every op)
            continue
        if not dtype.isnative or dtype.kind != "f" and name not in ANY_DTYPE:
            return False
    return True


def via_host(reference):
    """``reference`` run on host copies of its GPU arguments, its arrays copied back: the
    reference kernels on GPU arrays (for debugging; slow). The rows without a CUDA version
    (``where``, the conv bias) and the ``portable`` ones (batch norm's, Adam's) are written to
    run on either device and need no copies."""
    def run(*args):
        import cupy

        out = reference(*[a.get() if on_gpu(a) else a for a in args])
        back = [cupy.asarray(o) if isinstance(o, _np.ndarray) else o
                for o in (out if isinstance(out, tuple) else (out,))]
        return tuple(back) if isinstance(out, tuple) else back[0]
    return run
