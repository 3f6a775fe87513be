"""Where arrays live: NumPy arrays on the CPU, CuPy arrays on a CUDA GPU.

Every op that must build a new array (zeros, ones, ...) asks ``array_module(x)`` for the module
of its input instead of hard-coding ``numpy``, so the same primitive runs on CPU and GPU arrays:
there is no ``if cuda:`` in the ops. NumPy's functions called on CuPy arrays dispatch to CuPy's
(``__array_function__``), so a forward written with ``np.`` runs on the GPU as it is.
A device is named "cpu" or "cuda". CuPy is imported only when asked for "cuda" or when an array
already is a CuPy array, never with ``minimeta``.

Read next: ``minimeta/engine/tensor.py`` (the Tensor, and making Tensors).
"""
import numpy as np

# the kernel table's own tests, so both layers agree: one definition of each
from ..kernels import array_module, on_gpu  # noqa: F401  (array_module re-exported)

DEVICES = ("cpu", "cuda")
# the words of a GPU's libraries when its memory runs out: CuPy's own pool raises a MemoryError
# (cupy.cuda.memory.OutOfMemoryError), but cuBLAS's workspace, the CUDA runtime and driver
# (numba-cuda's) and cuRAND raise errors of their own that say so only in their message
DEVICE_OUT_OF_MEMORY = ("CUBLAS_STATUS_ALLOC_FAILED", "cudaErrorMemoryAllocation",
                        "CUDA_ERROR_OUT_OF_MEMORY", "CURAND_STATUS_ALLOCATION_FAILED")


def out_of_memory(err):
    """Whether ``err`` says that the host's or a GPU's memory ran out.

    >>> out_of_memory(MemoryError()), out_of_memory(RuntimeError("CUBLAS_STATUS_ALLOC_FAILED"))
    (True, True)
    >>> out_of_memory(RuntimeError("CUBLAS_STATUS_INVALID_VALUE"))
    False
    """
    return isinstance(err, MemoryError) or (
        isinstance(err, Exception) and any(word in str(err) for word in DEVICE_OUT_OF_MEMORY))


def device_of(x):
    """'cuda' for arrays in GPU memory (CuPy's, or any with ``__cuda_array_interface__``),
    else 'cpu'.

    >>> device_of(np.zeros(2))
    'cpu'
    """
    if type(x) is np.ndarray:  # the common case, without on_gpu's attribute probe
        return "cpu"
    return "cuda" if on_gpu(x) else "cpu"


def cupy_module():
    """CuPy, with a working GPU, or an error that says how to get them."""
    try:
        import cupy
    except ImportError as err:
        raise RuntimeError("device 'cuda' needs CuPy and an NVIDIA GPU: pip install "
                           "'minimeta[gpu-cuda12]' or 'minimeta[gpu-cuda13]' (the CUDA "
                           "version nvidia-smi prints)") from err
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as err:  # CuPy raises its own CUDARuntimeError without a driver
        raise RuntimeError(f"device 'cuda': CuPy is installed but finds no usable GPU ({err})"
                           ) from err
    if count == 0:
        raise RuntimeError("device 'cuda': CuPy is installed but this machine has no GPU")
    return cupy


def check_device(device):
    """Validate a device name."""
    if device not in DEVICES:
        raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
    return device


def to_device(x, device):
    """``x`` (an array, list or number) as an array on ``device`` (no copy if already there)."""
    if check_device(device) == device_of(x):
        return x
    if device == "cuda":
        return cupy_module().asarray(x)
    return to_host(x)


def to_host(x):
    """A NumPy array with the values of ``x`` (copied from the GPU if needed)."""
    return x.get() if device_of(x) == "cuda" and hasattr(x, "get") else np.asarray(x)


def is_float_dtype(dtype):
    """True for floating dtypes, the only ones that may carry gradients."""
    return np.issubdtype(np.dtype(dtype), np.floating)


def check_grad_dtype(dtype, op):
    """Refuse a dtype that cannot carry gradients here, naming ``op``: integers and bools,
    and float16 and longdouble, for which the kernels (which the VJPs run) have no path."""
    if not is_float_dtype(dtype):
        raise TypeError(f"{op}: only floating tensors can require grad, got dtype "
                        f"{np.dtype(dtype)}; pass dtype=np.float64 (or float32)")
    if np.dtype(dtype) not in (np.float32, np.float64):      # float16, longdouble
        raise TypeError(f"{op}: {np.dtype(dtype)} tensors cannot require grad: the kernels the "
                        "gradients run have no such path; use float32 or float64")
