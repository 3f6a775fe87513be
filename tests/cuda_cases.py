"""One call of every numba.cuda kernel's wrapper beside its NumPy reference, in a given dtype:
the one list that the GPU test (``tests/test_gpu.py``: each against its reference, float32 and
float64, on the GPU) and the compile check (``tests/test_cuda_compile.py``: each kernel those
calls launch compiled to PTX for sm_90) go through. ``cuda_kernels`` lists the kernels that
the CUDA modules define, and ``launched`` the ones a call launches (nothing runs), so a test
without a GPU or NVVM holds the list to every kernel in both dtypes: a kernel that no case
reaches, in either dtype, fails there (``test_cuda_compile.py``), not on the GPU's minutes.

Each case's output sizes exceed 128, the threads of one block (``kernels/_cuda.THREADS``): the
kernels' last block is partial, as it is on real inputs.
"""
import glob
import importlib
import os
from collections import namedtuple

import numpy as np

Case = namedtuple("Case", "inputs cuda reference tol")


def cupy_or_skip():
    """CuPy, for a module of ``gpu`` tests at its import; without CuPy or a GPU, nothing there
    can run: the whole module is skipped, saying why."""
    import pytest
    from minimeta.engine.backend import cupy_module

    try:
        return cupy_module()
    except RuntimeError as err:
        pytest.skip(f"no GPU: {err}", allow_module_level=True)
NAMES = ("conv2d", "conv2d_input_grad", "conv2d_weight_grad", "max_pool2d",
         "max_pool2d_backward", "cosine_attention", "cosine_attention_backward",
         "causal_conv1d", "causal_conv1d_input_grad", "causal_conv1d_weight_grad", "batch_norm",
         "batch_norm_backward", "batch_norm_double_backward", "adam")
KERNELS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "kernels")


def case(name, dtype, seed=0):
    """``Case(inputs, cuda, reference, tol)`` of kernel ``name``: host ``inputs`` of ``dtype``
    (float arrays; an argmax is int64), ``cuda(*arrays)`` the CUDA wrapper on arrays of the
    inputs (device arrays on a GPU), ``reference(*inputs)`` the NumPy spec, each returning an
    array or a tuple of them; ``tol`` (rtol, atol) for outputs of scale ~1."""
    from minimeta.kernels import attention_cuda, attention_ref, causal_cuda, causal_ref
    from minimeta.kernels import conv_cuda, conv_ref, norm_cuda, norm_ref, pool_cuda, pool_ref
    from minimeta.kernels import optim_cuda, optim_ref

    rng = np.random.default_rng(seed)

    def r(*shape):
        return rng.standard_normal(shape).astype(dtype)

    tol = (2e-4, 2e-4) if dtype == np.float32 else (1e-9, 1e-10)
    # conv: stride 2, padding 1 (out 2×4×5×4 = 160); pool: overlapping 3×3 windows at stride
    # 2 (out 3×4×4×4 = 192: the backward's atomic adds collide); attention: 150 query rows
    x, w, g = r(2, 3, 9, 8), r(4, 3, 3, 3), r(2, 4, 5, 4)
    xp, gp = r(3, 4, 9, 9), r(3, 4, 4, 4)
    idx = pool_ref.max_pool2d(xp, 3, 2)[1]
    q, s, gq = r(2, 75, 16), r(2, 25, 16), r(2, 75, 5)
    y = np.eye(5, dtype=dtype)[rng.integers(0, 5, (2, 25))]
    xc, wc, gc = r(3, 7, 26), r(8, 7, 2), r(3, 8, 26)
    # batch norm: 162 values a channel (more than a block's threads), off zero mean; the
    # backward on a stack of 2 tasks (w of (T, C)), the double backward on a single one
    xn, wn, bn = r(2, 3, 9, 9) * 2 + 3, r(3), r(3)
    xs, ws, gs = r(2, 2, 3, 9, 9) + 1, r(2, 3), r(2, 2, 3, 9, 9)
    gn, hn = r(2, 3, 9, 9), r(xn.size + 6)
    # Adam: a 5×7×6 parameter (210 values), its second moment positive; step 3, weight decay
    pa, ga, ma, va = r(5, 7, 6), r(5, 7, 6), r(5, 7, 6), np.abs(r(5, 7, 6))
    hyper = (1e-3, 0.9, 0.999, 1e-8, 1 - 0.9 ** 3, 1 - 0.999 ** 3, 1e-2)
    table = {
        "conv2d": ((x, w), lambda a, b: conv_cuda.conv2d(a, b, 2, 1),
                   lambda a, b: conv_ref.conv2d(a, b, 2, 1)),
        "conv2d_input_grad": ((g, w), lambda a, b: conv_cuda.conv2d_input_grad(
            a, b, x.shape, 2, 1), lambda a, b: conv_ref.conv2d_input_grad(a, b, x.shape, 2, 1)),
        "conv2d_weight_grad": ((x, g), lambda a, b: conv_cuda.conv2d_weight_grad(
            a, b, w.shape, 2, 1), lambda a, b: conv_ref.conv2d_weight_grad(a, b, w.shape, 2, 1)),
        "max_pool2d": ((xp,), lambda a: pool_cuda.max_pool2d(a, 3, 2),
                       lambda a: pool_ref.max_pool2d(a, 3, 2)),
        "max_pool2d_backward": ((gp, idx), lambda a, i: pool_cuda.max_pool2d_backward(
            a, i, xp.shape), lambda a, i: pool_ref.max_pool2d_backward(a, i, xp.shape)),
        "cosine_attention": ((q, s, y), attention_cuda.cosine_attention,
                             attention_ref.cosine_attention),
        "cosine_attention_backward": ((q, s, y, gq), attention_cuda.cosine_attention_backward,
                                      attention_ref.cosine_attention_backward),
        "causal_conv1d": ((xc, wc), lambda a, b: causal_cuda.causal_conv1d(a, b, 2),
                          lambda a, b: causal_ref.causal_conv1d(a, b, 2)),
        "causal_conv1d_input_grad": ((gc, wc), lambda a, b: causal_cuda.causal_conv1d_input_grad(
            a, b, 2), lambda a, b: causal_ref.causal_conv1d_input_grad(a, b, 2)),
        "causal_conv1d_weight_grad": ((xc, gc), lambda a, b: causal_cuda.
                                      causal_conv1d_weight_grad(a, b, wc.shape, 2),
                                      lambda a, b: causal_ref.causal_conv1d_weight_grad(
                                          a, b, wc.shape, 2)),
        "batch_norm": ((xn, wn, bn), norm_cuda.batch_norm, norm_ref.batch_norm),
        "batch_norm_backward": ((xs, ws, ws, gs), norm_cuda.batch_norm_backward,
                                norm_ref.batch_norm_backward),
        "batch_norm_double_backward": ((xn, wn, bn, gn, hn), norm_cuda.batch_norm_double_backward,
                                       norm_ref.batch_norm_double_backward),
        "adam": ((pa, ga, ma, va), lambda *a: optim_cuda.adam(*a, *hyper),
                 lambda *a: optim_ref.adam(*a, *hyper)),
    }
    return Case(*table[name], tol)


def cuda_kernels():
    """``"<module>.<kernel>"`` for every numba.cuda kernel (not device function) that the
    modules ``kernels/*_cuda.py`` define."""
    found = set()
    for path in sorted(glob.glob(os.path.join(KERNELS, "*_cuda.py"))):
        module = importlib.import_module("minimeta.kernels." + os.path.basename(path)[:-3])
        for name, value in vars(module).items():
            options = getattr(value, "targetoptions", None)
            if options is not None and not options.get("device") and \
                    value.py_func.__module__ == module.__name__:
                found.add(qualified(value))
    return found


def qualified(kernel):
    """``"<module>.<kernel>"`` of a numba.cuda kernel: bare names repeat across modules
    (attention's and the causal conv's ``_forward``)."""
    return f"{kernel.py_func.__module__.rsplit('.', 1)[-1]}.{kernel.py_func.__name__}"


def launched(call):
    """(kernel, argument types) of every launch ``call()`` makes, without running any: the
    wrappers run on NumPy arrays, typed as numba types a CuPy array of the same layout."""
    import numba
    from minimeta.kernels import _cuda

    seen = []
    launch = _cuda.launch
    _cuda.launch = lambda kernel, n, *args, threads=None: seen.append(
        (kernel, tuple(numba.typeof(a) for a in args)))
    try:
        with np.errstate(all="ignore"):     # the unlaunched kernels leave outputs unwritten
            call()
    finally:
        _cuda.launch = launch
    return seen
