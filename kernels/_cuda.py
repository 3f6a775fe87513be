"""Shared helpers of the numba.cuda kernels: the lazy import, the array module, the launch.

The CUDA kernels take whatever arrays the caller has: CuPy arrays on a real GPU (numba reads
them through the CUDA array interface, no copy), or NumPy arrays under numba's CUDA simulator
(``NUMBA_ENABLE_CUDASIM=1``, set before numba is imported), which is how CI tests them without
a GPU. New arrays are made by the module that owns the input (CuPy or NumPy), so a kernel never
moves data between host and device. Every kernel is launched on a 1-D grid, one thread per
output element, ``THREADS`` threads per block (tests lower it to cross block boundaries with
small shapes).

Read next: ``kernels/conv_cuda.py`` (convolution on a GPU).
"""
import math

from . import array_module

THREADS = 128


def contiguous(*arrays):
    """C-contiguous versions of the kernel inputs (views from transposes and slices are
    copied once: the kernels index dense arrays)."""
    return [array_module(a).ascontiguousarray(a) for a in arrays]


def launch(kernel, n, *args):
    """Run ``kernel`` on enough blocks of ``THREADS`` threads to cover ``n`` elements."""
    if n > 0:
        kernel[math.ceil(n / THREADS), THREADS](*args)
