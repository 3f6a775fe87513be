"""Every numba.cuda kernel compiles for a real GPU (PTX for an H100/H200, compute capability
9.0), with the argument types its wrapper gives it, in float32 and float64: no GPU needed, only
NVVM (``pip install 'numba-cuda[cu12]'`` brings it, about 0.4 GB, so the default install does
not, and without it this test skips). The simulator runs kernels as Python and accepts what
the real compiler refuses (typing, unsupported calls); this is the check that it compiles.
The kernels compiled are those launched by ``tests/cuda_cases.py``, the calls ``test_gpu.py``
checks on a GPU; with ptxas (``nvidia-cuda-nvcc-cu12``) each kernel's registers are held to
what its block may have; a test here that needs neither NVVM nor a GPU holds those calls to every
kernel of ``kernels/*_cuda.py``, by module and name, in both dtypes, none built with fast math.

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


def _every_launch(dtype):
    """(kernel, argument types) of every launch of every case of ``tests/cuda_cases.py``."""
    import cuda_cases

    launches = []
    for name in cuda_cases.NAMES:
        case = cuda_cases.case(name, dtype)
        launches += cuda_cases.launched(lambda: case.cuda(*case.inputs))
    return launches


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_cases_launch_every_cuda_kernel_in_both_dtypes(dtype):
    """Here on any machine: the calls compiled below and checked on a GPU reach every kernel
    the CUDA modules define (by module and name: attention's and the causal conv's kernels
    are both ``_forward``, and a set of bare names had counted one for both), each with float
    arrays of ``dtype`` only, and none is built with fast math (which lets the compiler take
    ``v != v`` for False: max pooling's NaN test)."""
    import numba
    import cuda_cases

    launches = _every_launch(dtype)
    assert {cuda_cases.qualified(k) for k, _ in launches} == cuda_cases.cuda_kernels()
    want = numba.from_dtype(np.dtype(dtype))
    for kernel, sig in launches:
        floats = {t.dtype for t in sig if isinstance(t, numba.types.Array)
                  and isinstance(t.dtype, numba.types.Float)}
        assert floats == {want}, (cuda_cases.qualified(kernel), sig)
        assert not kernel.targetoptions.get("fastmath"), cuda_cases.qualified(kernel)


@compiles
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_cuda_kernel_compiles_for_sm90(dtype, monkeypatch):
    import types

    import cuda_cases
    from minimeta.kernels._cuda import cuda
    from numba.cuda import dispatcher

    # device functions (attention's ``_cos``) are compiled for "the current device": say which
    monkeypatch.setattr(dispatcher, "get_current_device",
                        lambda: types.SimpleNamespace(compute_capability=(9, 0)))
    compiled = set()
    for kernel, sig in _every_launch(dtype):
        ptx, _ = cuda.compile_ptx(kernel.py_func, sig, cc=(9, 0))
        assert ".target sm_90" in ptx and ".entry" in ptx
        compiled.add(cuda_cases.qualified(kernel))
    assert compiled == cuda_cases.cuda_kernels(), compiled


def _ptxas():
    """ptxas, the CUDA assembler (``pip install nvidia-cuda-nvcc-cu12`` brings it), or None."""
    import shutil

    try:
        import nvidia.cuda_nvcc as nvcc
        found = [os.path.join(p, "bin", "ptxas") for p in nvcc.__path__]
    except ImportError:
        found = []
    return next((p for p in found if os.path.exists(p)), shutil.which("ptxas"))


@compiles
@pytest.mark.skipif(_ptxas() is None, reason="no ptxas (pip install nvidia-cuda-nvcc-cu12)")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_cuda_kernel_fits_its_block_in_the_registers(dtype, monkeypatch, tmp_path):
    """A block of B threads needs B × (registers a thread, allocated 8 at a time) of an sm_90
    multiprocessor's 65 536, or every launch fails on a GPU ("too many resources requested")
    while the simulator runs it. Batch norm's blocks are 512 threads (``norm_cuda.BLOCK``, the
    H200 profile's fix), which its double backward's 112 registers allow (2026-12-04);
    1024 would not. ptxas assembles each kernel's PTX and says its registers."""
    import re
    import subprocess
    import types

    from minimeta.kernels import _cuda, norm_cuda
    from minimeta.kernels._cuda import cuda
    from numba.cuda import dispatcher

    monkeypatch.setattr(dispatcher, "get_current_device",
                        lambda: types.SimpleNamespace(compute_capability=(9, 0)))
    blocks = {k: norm_cuda.BLOCK for k in (norm_cuda._forward, norm_cuda._backward,
                                           norm_cuda._double_backward)}
    for kernel, sig in _every_launch(dtype):
        ptx, _ = cuda.compile_ptx(kernel.py_func, sig, cc=(9, 0))
        (tmp_path / "k.ptx").write_text(ptx)
        said = subprocess.run([_ptxas(), "-arch=sm_90", "-v", str(tmp_path / "k.ptx"), "-o",
                               os.devnull], capture_output=True, text=True, check=True).stderr
        regs = max(int(r) for r in re.findall(r"Used (\d+) registers", said))
        block = blocks.get(kernel, _cuda.THREADS)
        assert -(-regs // 8) * 8 * block <= 65536, (kernel.py_func.__name__, regs, block)


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


@pytest.mark.skipif(not _numba_cuda_installed(), reason="numba-cuda is not installed")
def test_numba_cuda_reads_cupy_arrays_through_dlpack():
    """``_cuda.launch`` hands numba-cuda CuPy's arrays as they are, where it reads them through
    DLPack (no host wait; 39 µs a launch on the H200 against 59 with views made first). The
    probe for that is a private name of numba-cuda 0.30 (``_to_strided_memory_view``): a
    release that renames it would put every launch back on the slower views, silently, but
    for this test; and it must take the launch's stream, with which CuPy orders the work."""
    from numba.cuda.cudadrv import devicearray

    from minimeta.kernels import _cuda

    assert _cuda.DLPACK and _cuda._reads_dlpack()
    assert "stream" in devicearray._to_strided_memory_view.__code__.co_varnames


def _every_launch_with_arguments(dtype):
    """(kernel, arguments) of every launch of every case of ``tests/cuda_cases.py``: NumPy
    arrays where the GPU has CuPy's, of the same shapes, strides and layouts."""
    import cuda_cases
    from minimeta.kernels import _cuda

    seen, launch = [], _cuda.launch
    _cuda.launch = lambda kernel, n, *args, threads=None: seen.append((kernel, args))
    try:
        for name in cuda_cases.NAMES:
            case = cuda_cases.case(name, dtype)
            with np.errstate(all="ignore"):     # unlaunched kernels leave outputs unwritten
                case.cuda(*case.inputs)
    finally:
        _cuda.launch = launch
    return seen


@compiles
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_raw_launch_lays_out_arguments_as_the_compiled_kernel_takes_them(dtype,
                                                                            monkeypatch):
    """CuPy launches the PTX numba wrote (``kernels/_cuda_raw.py``), with numba's calling
    convention spelled out by hand: for every launch of every kernel, the types it compiles
    for are those numba's own launch would infer, the parameters it passes have the PTX
    entry's count, widths and kinds (an array: 5 + 2·ndim of 8 bytes; a number its own), and
    their values are those numba's own launch passes (``_Kernel._prepare_args``, handed the
    arrays as device memory at made-up addresses)."""
    import re
    import types

    import numba

    from minimeta.kernels import _cuda_raw
    from minimeta.kernels._cuda import cuda
    from numba.cuda import dispatcher

    monkeypatch.setattr(dispatcher, "get_current_device",
                        lambda: types.SimpleNamespace(compute_capability=(9, 0)))
    import cuda_cases

    checked = set()
    for kernel, args in _every_launch_with_arguments(dtype):
        kinds = tuple(_cuda_raw.kind(a) for a in args)
        sig = tuple(map(_cuda_raw.numba_type, kinds))
        assert sig == tuple(numba.typeof(a) for a in args), kernel.py_func.__name__
        ptx, _ = cuda.compile_ptx(kernel.py_func, sig, cc=(9, 0))
        entry = _cuda_raw.entry(ptx)
        head = ptx[ptx.index(entry + "("):ptx.index(")", ptx.index(entry + "("))]
        wanted = re.findall(r"\.param \.([a-z])(\d+) ", head)
        passed = _cuda_raw.parameters(args, _cuda_raw.layout(kinds))
        given = [("u", 64) if isinstance(p, np.ndarray) and p.ndim else
                 ("f" if p.dtype.kind == "f" else "u", p.dtype.itemsize * 8) for p in passed]
        assert [(k if k == "f" else "u", int(b)) for k, b in wanted] == given, \
            (kernel.py_func.__name__, wanted, given)
        address = {id(a): 4096 * (i + 1) for i, a in enumerate(args)}
        assert [address.get(id(p), p) for p in passed] == _numbas_parameters(args, sig, address)
        checked.add(cuda_cases.qualified(kernel))
    assert checked == cuda_cases.cuda_kernels()


def _numbas_parameters(args, sig, address):
    """What numba's own launch passes for ``args`` of types ``sig`` (numbers as numbers), each
    array handed over as device memory at ``address[id(array)]``."""
    import types

    from numba.cuda import dispatcher
    from numba.cuda.cudadrv import devicearray

    class OnDevice:
        __cuda_memory__ = True

        def __init__(self, a):
            flags = a.flags
            self._strided_memory_view_shim = devicearray._StridedMemoryViewShim(
                ptr=address[id(a)], shape=a.shape, dtype=a.dtype, size=a.size,
                _layout=devicearray._StridedLayoutShim(
                    strides_in_bytes=a.strides, is_contiguous_c=flags.c_contiguous,
                    is_contiguous_f=flags.f_contiguous,
                    is_contiguous_any=flags.c_contiguous or flags.f_contiguous))

    out, kept = [], []
    for ty, a in zip(sig, args):
        value = OnDevice(a) if isinstance(a, np.ndarray) else a
        dispatcher._Kernel._prepare_args(types.SimpleNamespace(extensions=[]), ty, value, 0,
                                         kept, out)
    return [getattr(v, "value", v) for v in out]


@compiles
def test_the_raw_launch_compiles_once_loads_the_ptx_and_launches_its_entry(monkeypatch,
                                                                          tmp_path):
    """``_cuda_raw._compiled``: the PTX numba writes for the argument kinds, for the current
    device's compute capability, goes into a file CuPy loads (``RawModule(path=...)``), whose
    kernel is looked up by numba's mangled entry name; a second launch of the same kinds
    compiles nothing, nor does a later process, which loads the cache's file; a load that
    fails leaves the kernel to numba's launch, said why, and its file is not kept. CuPy is
    stood in for (it is the GPU's to load): what it is handed is checked here."""
    import types

    from minimeta.kernels import _cuda_raw, conv_cuda
    from minimeta.kernels._cuda import cuda

    monkeypatch.setattr(cuda, "get_current_device",
                        lambda: types.SimpleNamespace(compute_capability=(9, 0)))
    monkeypatch.setattr(_cuda_raw, "_KERNELS", {})
    monkeypatch.setattr(_cuda_raw, "FELL_BACK", {})
    monkeypatch.setattr(_cuda_raw, "CACHE", str(tmp_path / "ptx"))
    loaded, calls, compiled = [], [], []
    compile_ptx = cuda.compile_ptx
    monkeypatch.setattr(cuda, "compile_ptx", lambda *a, **k: compiled.append(a[1]) or
                        compile_ptx(*a, **k))

    class RawModule:
        def __init__(self, path):
            loaded.append(open(path).read())

        def get_function(self, name):
            assert loaded[-1].count(f".entry {name}(") == 1
            return lambda grid, block, args: calls.append((grid, block, args))

    cupy = types.SimpleNamespace(__name__="cupy", RawModule=RawModule, cuda=types.SimpleNamespace(
        runtime=types.SimpleNamespace(getDevice=lambda: 0)))
    monkeypatch.setattr(_cuda_raw, "array_module", lambda a: cupy)

    class OnGPU(np.ndarray):
        __cuda_array_interface__ = {}
    x = np.zeros((1, 2, 3, 5, 5), np.float32).view(OnGPU)
    cols = np.zeros((1, 27, 50), np.float32).view(OnGPU)
    for _ in range(2):
        assert _cuda_raw.launch(conv_cuda._im2col, 2, 128, (x, cols, 3, 3, 1, 1, 5, 5))
    assert len(loaded) == 1 and ".target sm_90" in loaded[0] and len(calls) == 2
    assert calls[0][:2] == ((2,), (128,)) and len(calls[0][2]) == 15 + 11 + 6
    monkeypatch.setattr(_cuda_raw, "_KERNELS", {})          # a later process, the same kinds
    assert _cuda_raw.launch(conv_cuda._im2col, 2, 128, (x, cols, 3, 3, 1, 1, 5, 5))
    assert len(compiled) == 1 and len(loaded) == 2 and loaded[1] == loaded[0]
    assert os.listdir(tmp_path / "ptx") == [_cuda_raw.cache_key(
        conv_cuda._im2col, tuple(map(_cuda_raw.kind, (x, cols, 3, 3, 1, 1, 5, 5))), (9, 0))
        + ".ptx"]
    monkeypatch.setattr(cupy, "RawModule", lambda path: 1 / 0)
    assert not _cuda_raw.launch(conv_cuda._im2col, 2, 128, (x, cols, 3, 3, 1, 1, 5,
                                                            np.int64(5)))
    assert not _cuda_raw.launch(conv_cuda._im2col, 2, 128, (x, cols, 3, 3, 1, 1, 5, 4.0))
    why = list(_cuda_raw.FELL_BACK.values())
    assert why[0] == "ZeroDivisionError: division by zero" and why[1].startswith("TypingError")
    assert len(compiled) == 3 and len(os.listdir(tmp_path / "ptx")) == 1   # not the failed
