"""Shared helpers of the numba.cuda kernels: the lazy import, the array module, the launch.

The CUDA kernels take whatever arrays the caller has: CuPy arrays on a real GPU (numba reads
them through the CUDA array interface, no copy), or NumPy arrays under numba's CUDA simulator
(``NUMBA_ENABLE_CUDASIM=1``, set before numba is imported), which is how CI tests them without
a GPU. New arrays are made by the module that owns the input (CuPy or NumPy), so a kernel never
moves data between host and device. Every kernel is launched on a 1-D grid, mostly one thread
per output element (im2col: one per column of a channel; batch norm: a block per channel, of
its own size), ``THREADS`` threads per block (tests lower it to cross block boundaries with
small shapes), on the stream CuPy is using, **without a host synchronisation**: a CuPy array
names its stream (CUDA array interface v3), and numba, handed such an array, synchronises that
stream before every launch by default, so the host would wait for the GPU to finish all its
queued work at each kernel. ``launch`` hands numba views made with ``sync=False`` instead, and
launches on CuPy's current stream, which keeps the order of the work without the wait. Where
numba reads a CuPy array through DLPack instead (numba-cuda 0.30: ``__dlpack__(stream=...)``,
with which CuPy orders the two streams on the GPU, no host wait), the arrays go in as they are
(``DLPACK``): making the views cost 13 µs an array on the H200, where a launch cost 59 µs with
them and 39 µs without (gpu_check's ``launches``, 2026-12-04).

The CUDA modules take ``cuda`` from here, not from numba: numba-cuda (to 0.30.4, its newest
release) registers an overload of ``np.row_stack`` when it compiles its first kernel, and NumPy
2.5 removed ``row_stack``, so with NumPy 2.5 every kernel failed to compile with an
AttributeError (NVIDIA/numba-cuda#907, closed unfixed; found by a probe of the newest
releases, 2026-12-02: the GPU machine has NumPy 2.5.2). Where it is missing, ``row_stack`` is
given back as the alias of ``vstack`` it was, before numba.cuda is imported.

Read next: ``kernels/_cuda_raw.py`` (launching a numba.cuda kernel through CuPy).
"""
import math
import os

import numpy as _np

from . import _cuda_raw, array_module

if not hasattr(_np, "row_stack"):       # NumPy ≥ 2.5: see the module docstring
    _np.row_stack = _np.vstack
from numba import cuda  # noqa: E402  (after the alias)

THREADS = 128


def numba_cuda_config():
    """numba's CUDA settings: ``numba.cuda.core.config`` in numba-cuda, ``numba.core.config``
    where numba's own (older, or simulated) CUDA target is the one imported."""
    try:
        from numba.cuda.core import config
    except ImportError:
        from numba.core import config
    return config


# One thread per output element: a small array is a small grid, by design. numba-cuda warns
# of "under-utilization due to low occupancy" at each new grid of under 128 blocks (conv4's
# late layers, every pool scatter), into every log and test run (found by reading numba-cuda
# 0.30.4's launch code, 2026-12-03; its simulator never warns).
numba_cuda_config().CUDA_LOW_OCCUPANCY_WARNINGS = 0


def contiguous(*arrays):
    """C-contiguous versions of the kernel inputs (views from transposes and slices are
    copied once: the kernels index dense arrays)."""
    return [array_module(a).ascontiguousarray(a) for a in arrays]


def launch(kernel, n, *args, threads=None):
    """Run ``kernel`` on enough blocks of ``threads`` (default ``THREADS``) threads to cover
    ``n``: launched by CuPy where it can be (``_cuda_raw``, unless ``RAW`` is off), else by
    numba (device arrays without a synchronisation, on CuPy's stream: ``device_args``)."""
    threads = threads or THREADS
    if n > 0:
        blocks = math.ceil(n / threads)
        if RAW and _cuda_raw.launch(kernel, blocks, threads, args):
            return
        args, stream = device_args(args)
        kernel[blocks, threads, stream](*args)


def device_args(args):
    """(the kernel's arguments, the stream to launch on). Arrays with a CUDA array interface
    become numba views made without synchronising their stream; the stream is CuPy's current
    one (0, numba's default, is the legacy default stream, CuPy's null stream). Anything else
    (numbers; the simulator's NumPy arrays) goes in as it is, on stream 0."""
    device = [hasattr(a, "__cuda_array_interface__") for a in args]
    if not any(device):
        return args, 0
    xp = array_module(args[device.index(True)])    # CuPy, or NumPy for another library's
    ptr = xp.cuda.get_current_stream().ptr if xp.__name__ == "cupy" else 0
    if ptr and ptr not in _STREAMS:
        _STREAMS[ptr] = cuda.external_stream(ptr)
    views = args if DLPACK else [cuda.as_cuda_array(a, sync=False) if on else a
                                 for a, on in zip(args, device)]
    return views, _STREAMS[ptr] if ptr else 0


def _reads_dlpack():
    """Whether this numba takes a device array through DLPack (numba-cuda ≥ 0.30's
    ``_to_strided_memory_view``), not through the CUDA array interface with a host wait."""
    try:
        from numba.cuda.cudadrv import devicearray
    except ImportError:     # numba's simulator, or a numba without a CUDA target
        return False
    return hasattr(devicearray, "_to_strided_memory_view")


_STREAMS = {}  # CuPy stream pointer → numba's handle on it (made once per stream)
DLPACK = _reads_dlpack()
# launches through CuPy (``_cuda_raw``) unless MINIMETA_CUDA_LAUNCH=numba: numba's own launch,
# which gpu_check.py sets for its run where the two launches disagree on this GPU
RAW = os.environ.get("MINIMETA_CUDA_LAUNCH", "raw") != "numba"
