"""``gpu_check.py``'s ``launches`` phase: what one numba.cuda launch costs the host, timed on a
tiny kernel (a module of its own, imported only after the check has chosen a real GPU or
numba's simulator, which must be set before numba is imported; the simulator swaps in its
``cuda`` module through the kernel's globals)."""
import contextlib
import time
from unittest import mock

from minimeta.kernels._cuda import cuda     # numba.cuda (after its NumPy 2.5 alias)


@cuda.jit
def add_one(a):
    i = cuda.grid(1)
    if i < a.size:
        a[i] += 1


def us_per_call(cp, fn, n):
    """µs of host time a call of ``fn`` takes: ``n`` calls after a first (compilation), between
    two device synchronisations."""
    fn()
    cp.cuda.Device().synchronize()
    start = time.perf_counter()
    for _ in range(n):
        fn()
    cp.cuda.Device().synchronize()
    return (time.perf_counter() - start) / n * 1e6


def numbas_launch(kernel, n, *args):
    """``kernels/_cuda.launch`` with CuPy's launch turned off (``MINIMETA_CUDA_LAUNCH=numba``):
    numba's."""
    from minimeta.kernels import _cuda

    raw, _cuda.RAW = _cuda.RAW, False
    try:
        _cuda.launch(kernel, n, *args)
    finally:
        _cuda.RAW = raw


def launches(cp, simulate):
    """What a numba.cuda launch costs the host: through ``kernels/_cuda.launch`` (numba views
    made without a synchronisation, on CuPy's stream) and numba's own way (the CuPy array
    handed to the kernel: numba synchronises the array's stream at each launch, unless its
    version takes CuPy arrays through DLPack). A tiny kernel, launched ``n`` times then one
    device synchronisation: microseconds a launch, and the stream synchronisations a launch
    made (counted on numba's driver)."""
    from minimeta.kernels import _cuda

    n = 20 if simulate else 2000
    a = cp.zeros(256, dtype=cp.float32)
    ways = {"minimeta_launch": lambda: _cuda.launch(add_one, a.size, a)}
    if not simulate:    # the simulator's kernels take the NumPy array inside, not a CuPy one
        ways["numba_default"] = lambda: add_one[2, 128](a)
    try:
        from numba.cuda.cudadrv.driver import Stream
        counting = mock.patch.object(Stream, "synchronize", autospec=True,
                                     side_effect=Stream.synchronize)
    except ImportError:    # the simulator has no driver
        counting = contextlib.nullcontext()
    result, ran = {}, 0
    with counting as synchronize:
        for name, fn in ways.items():
            try:
                fn()                                # compilation
            except Exception as err:    # numba's own way may refuse a CuPy array: say so
                if name == "minimeta_launch":
                    raise
                result[name] = {"error": f"{type(err).__name__}: {err}"}
                continue
            cp.cuda.Device().synchronize()
            if synchronize is not None:
                synchronize.reset_mock()
            start = time.perf_counter()
            for _ in range(n):
                fn()
            cp.cuda.Device().synchronize()
            ran += n + 1
            result[name] = {"us_per_launch": (time.perf_counter() - start) / n * 1e6,
                            "stream_syncs_per_launch": synchronize.call_count / n
                            if synchronize is not None else None}
    # every launch added one to each element: the kernel really ran, every time
    result["kernel_ran"] = float(cp.asnumpy(a[:1])[0]) == ran
    return result
