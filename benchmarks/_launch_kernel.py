"""The tiny CUDA kernel ``gpu_check.py`` launches to time a launch (a module of its own, imported
only after the check has chosen a real GPU or numba's simulator, which must be set before numba
is imported; the simulator swaps in its ``cuda`` module through the kernel's globals)."""
from numba import cuda


@cuda.jit
def add_one(a):
    i = cuda.grid(1)
    if i < a.size:
        a[i] += 1
