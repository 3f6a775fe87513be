"""Every numba.cuda kernel compiles for a real GPU (PTX for an H100/H200, compute capability
9.0), with the argument types its wrapper gives it, in float32 and float64: no GPU needed, only
NVVM (``pip install 'numba-cuda[cu12]'`` brings it, about 0.4 GB, so the default install does
not, and without it this test skips). The simulator runs kernels as Python and accepts what
the real compiler refuses (typing, unsupported calls); this is the check that it compiles.

Run: python -m pytest tests/test_cuda_compile.py (in an environment with numba-cuda[cu12]).
"""
import os

import numpy as np
import pytest

if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
    pytest.skip("the CUDA simulator is on: nothing is compiled", allow_module_level=True)


def _nvvm():
    from importlib.metadata import PackageNotFoundError, version

    try:
        version("numba-cuda")   # the CUDA target the gpu extras install (numba's own is
    except PackageNotFoundError:    # deprecated, and types device-function calls otherwise)
        return "numba-cuda is not installed"
    from numba import types

    from minimeta.kernels._cuda import cuda    # numba.cuda, after its NumPy 2.5 alias

    @cuda.jit
    def probe(x):
        x[0] = 1

    try:
        cuda.compile_ptx(probe.py_func, (types.float32[::1],), cc=(9, 0))
        return None
    except Exception as err:
        if not missing_library(err):   # anything but a missing library fails the tests below
            raise
        return f"{type(err).__name__}: {str(err)[:200]}"


def missing_library(err):
    """Whether ``err`` says a CUDA library (NVVM, NVRTC) was not found: a machine without the
    toolkit, a skip; any other error is a failure (a probe found that NumPy 2.5's removal of
    ``row_stack`` broke numba-cuda's compiler, and this check had skipped it as "missing")."""
    return type(err).__name__ in ("DynamicLibNotFoundError", "NvvmSupportError",
                                  "NvrtcSupportError", "CudaSupportError") or any(
        words in str(err) for words in ("cannot be found", "Failure finding"))


MISSING = _nvvm()
compiles = pytest.mark.skipif(MISSING is not None, reason=f"cannot compile PTX: {MISSING}")


def test_only_a_missing_library_is_a_skip():
    """Here on any machine (the compile test itself runs only where NVVM is found). A
    mutation audit found the rule untested, and its "not found" matching numba's own errors
    (a missing float16 ``sqrt``), which would have passed as a missing toolkit."""
    class DynamicLibNotFoundError(Exception):       # cuda-pathfinder's, by name
        pass

    assert missing_library(DynamicLibNotFoundError('Failure finding "libnvvm.so"'))
    assert missing_library(RuntimeError("libNVVM cannot be found. Do `pip install ...`"))
    for err in (AttributeError("module 'numpy' has no attribute 'row_stack'"),
                RuntimeError("Implementation of sqrt for float16 not found"),
                KeyError("Function 'probe' not found"), TypeError("No matching definition")):
        assert not missing_library(err), err


def _launches(call):
    """The (kernel, argument types) of every launch ``call`` makes, without running them: the
    wrappers run on NumPy arrays, typed as numba types a CuPy array of the same layout."""
    import numba
    from minimeta.kernels import _cuda

    seen = []
    launch = _cuda.launch
    _cuda.launch = lambda kernel, n, *args: seen.append(
        (kernel, tuple(numba.typeof(a) for a in args)))
    try:
        with np.errstate(all="ignore"):     # the unlaunched kernels leave outputs unwritten
            call()
    finally:
        _cuda.launch = launch
    return seen


@compiles
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_cuda_kernel_compiles_for_sm90(dtype, monkeypatch):
    import types

    from minimeta.kernels._cuda import cuda
    from numba.cuda import dispatcher
    from minimeta.kernels import attention_cuda, causal_cuda, conv_cuda, pool_cuda

    # device functions (attention's ``_cos``) are compiled for "the current device": say which
    monkeypatch.setattr(dispatcher, "get_current_device",
                        lambda: types.SimpleNamespace(compute_capability=(9, 0)))

    rng = np.random.default_rng(0)

    def r(*shape):
        return rng.standard_normal(shape).astype(dtype)

    x, w, g = r(2, 3, 8, 8), r(4, 3, 3, 3), r(2, 4, 8, 8)
    pooled, idx = np.zeros((2, 3, 4, 4), dtype), np.zeros((2, 3, 4, 4), np.int64)
    q, s, y, gq = r(2, 5, 6), r(2, 4, 6), r(2, 4, 3), r(2, 5, 3)
    xc, wc, gc = r(2, 3, 9), r(4, 3, 2), r(2, 4, 9)
    calls = [lambda: conv_cuda.conv2d(x, w, 1, 1),
             lambda: conv_cuda.conv2d_input_grad(g, w, x.shape, 1, 1),
             lambda: conv_cuda.conv2d_weight_grad(x, g, w.shape, 1, 1),
             lambda: pool_cuda.max_pool2d(x, 2, 2),
             lambda: pool_cuda.max_pool2d_backward(pooled, idx, x.shape),
             lambda: attention_cuda.cosine_attention(q, s, y),
             lambda: attention_cuda.cosine_attention_backward(q, s, y, gq),
             lambda: causal_cuda.causal_conv1d(xc, wc, 2),
             lambda: causal_cuda.causal_conv1d_input_grad(gc, wc, 2),
             lambda: causal_cuda.causal_conv1d_weight_grad(xc, gc, wc.shape, 2)]
    compiled = set()
    for call in calls:
        for kernel, sig in _launches(call):
            ptx, _ = cuda.compile_ptx(kernel.py_func, sig, cc=(9, 0))
            assert ".target sm_90" in ptx and ".entry" in ptx
            compiled.add(kernel.py_func.__name__)
    assert compiled == {"_im2col", "_col2im", "_max_pool", "_scatter_add", "_norms", "_forward",
                        "_backward_queries", "_backward_support", "_input_grad",
                        "_weight_grad"}, compiled


def _numba_cuda_installed():
    from importlib.metadata import PackageNotFoundError, version

    try:
        return bool(version("numba-cuda"))
    except PackageNotFoundError:
        return False


@pytest.mark.skipif(not _numba_cuda_installed(), reason="numba-cuda is not installed")
def test_a_small_grid_launches_without_a_low_occupancy_warning():
    """One thread per output: small arrays make small grids by design, and numba-cuda warned of
    low occupancy at each grid under 128 blocks, into every log (found reading numba-cuda
    0.30.4's launch code, 2026-12-03). Configuring a launch needs no GPU."""
    import warnings

    from minimeta.kernels import _cuda, pool_cuda

    def warned(blocks):   # (numba caches a configuration: a new grid size each time)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            pool_cuda._scatter_add[blocks, _cuda.THREADS, 0]
        return [str(w.message) for w in caught if "occupancy" in str(w.message)]

    assert warned(3) == []
    config = _cuda.numba_cuda_config()
    config.CUDA_LOW_OCCUPANCY_WARNINGS = 1      # numba-cuda's default: the check sees it
    try:
        assert warned(5) == ["Grid size 5 will likely result in GPU under-utilization due to "
                            "low occupancy."]
    finally:
        config.CUDA_LOW_OCCUPANCY_WARNINGS = 0
