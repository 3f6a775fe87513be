"""Devices without a GPU: names, the error for a missing CuPy/GPU, mixing devices, moving
modules. (The same code on a real GPU: ``tests/test_gpu.py``, marker ``gpu``.)"""
import numpy as np
import pytest

import minimeta as mm
from minimeta import nn
from minimeta.engine.backend import device_of
from minimeta.engine.tensor import Tensor


class OnGPU(np.ndarray):
    """A NumPy array that claims to live on the GPU: the engine only asks that question
    (``__cuda_array_interface__``), so it stands in for a CuPy array in device checks."""
    __cuda_array_interface__ = {}


def _gpu_present():
    try:
        mm.engine.backend.cupy_module()
        return True
    except RuntimeError:
        return False


def test_device_names():
    t = mm.tensor([1.0, 2.0])
    assert t.device == "cpu" and t.to("cpu") is t and t.cpu() is t
    assert device_of(np.zeros(1).view(OnGPU)) == "cuda"
    with pytest.raises(ValueError, match="device must be 'cpu' or 'cuda', got 'tpu'"):
        mm.tensor([1.0], device="tpu")


@pytest.mark.skipif(_gpu_present(), reason="a GPU is present; tests/test_gpu.py covers it")
def test_asking_for_cuda_without_cupy_or_gpu_says_how_to_get_them():
    with pytest.raises(RuntimeError, match=r"minimeta\[gpu-cuda12\]|no usable GPU|has no GPU"):
        mm.tensor([1.0], device="cuda")
    with pytest.raises(RuntimeError, match=r"minimeta\[gpu-cuda12\]|no usable GPU|has no GPU"):
        nn.Linear(2, 1).to("cuda")


def test_mixing_devices_in_one_op_names_both():
    cpu = mm.tensor(np.ones(3))
    gpu = Tensor(np.ones(3).view(OnGPU))
    with pytest.raises(RuntimeError, match=r"Add: tensors on different devices \(input 0 on "
                                           r"cpu, input 1 on cuda\)"):
        cpu + gpu
    with pytest.raises(RuntimeError, match="MatMul: .*input 0 on cuda, input 1 on cpu"):
        mm.matmul(Tensor(np.ones((2, 2)).view(OnGPU)), mm.tensor(np.ones((2, 2))))


def test_module_to_cpu_keeps_the_same_tensors_and_state():
    net = nn.conv4(5, dtype=np.float64)
    before = net.parameters()
    assert net.to("cpu") is net and net.device == "cpu"
    assert all(a is b for a, b in zip(before, net.parameters()))


def test_constants_follow_their_partner_device():
    """A plain array met by an op is lifted onto the Tensor's device, like a Python number
    takes the Tensor's dtype; only two Tensors on different devices are an error."""
    t = mm.tensor(np.ones(2, dtype=np.float32))
    assert mm.constant(np.zeros(2), t).device == "cpu"
    assert (t + np.ones(2, dtype=np.float32)).dtype == np.float32


def test_cuda_launches_hand_numba_unsynchronised_views_on_cupys_stream(monkeypatch):
    """numba, handed an array that names its stream (CuPy's do), synchronises that stream at
    every launch: the host would wait for the GPU at each kernel. ``_cuda.launch`` hands it views
    made with ``sync=False`` instead, on CuPy's current stream; where numba reads arrays through
    DLPack (``_cuda.DLPACK``, numba-cuda 0.30), which waits for nothing, the arrays themselves
    (the views cost 13 µs each). Checked here with stand-ins for numba's calls; a real launch on
    a GPU: ``tests/test_gpu.py``."""
    from numba import cuda
    from minimeta.kernels import _cuda

    monkeypatch.setattr(_cuda, "DLPACK", False)
    monkeypatch.setattr(_cuda, "RAW", False)        # numba's launch (CuPy's: the test below)
    made, streams, launched = [], [], []
    monkeypatch.setattr(cuda, "as_cuda_array",
                        lambda a, sync=True: made.append((a, sync)) or ("view", a), raising=False)
    monkeypatch.setattr(cuda, "external_stream",
                        lambda ptr: streams.append(ptr) or f"stream {ptr}", raising=False)
    monkeypatch.setattr(_cuda, "_STREAMS", {})
    current = [0]

    class Stream:
        @property
        def ptr(self):
            return current[0]

    cupy = type("cupy", (), {"__name__": "cupy", "cuda": type("cuda", (), {
        "get_current_stream": staticmethod(lambda: Stream())})})
    monkeypatch.setattr(_cuda, "array_module", lambda a: cupy if a.__class__ is OnGPU else np)

    class Kernel:
        def __getitem__(self, config):
            return lambda *args: launched.append((config, args))

    x, y = np.zeros(3).view(OnGPU), np.ones(2).view(OnGPU)
    _cuda.launch(Kernel(), 300, x, 7, y)            # CuPy's null stream: numba's stream 0
    assert [sync for _, sync in made] == [False, False]
    assert launched[-1] == ((3, _cuda.THREADS, 0), (("view", x), 7, ("view", y)))
    current[0] = 77                                 # a CuPy stream: launched on it
    _cuda.launch(Kernel(), 1, x)
    _cuda.launch(Kernel(), 1, y)
    assert launched[-1][0] == (1, _cuda.THREADS, "stream 77") and streams == [77]  # made once
    made.clear()
    host = np.zeros(4)                              # the simulator's arrays: as they are
    _cuda.launch(Kernel(), 4, host, 2)
    assert launched[-1] == ((1, _cuda.THREADS, 0), (host, 2)) and made == []
    _cuda.launch(Kernel(), 0, x)                    # nothing to do: no launch
    assert len(launched) == 4
    monkeypatch.setattr(_cuda, "DLPACK", True)      # numba-cuda 0.30: the arrays as they are
    _cuda.launch(Kernel(), 300, x, 7, y)
    current[0] = 0
    _cuda.launch(Kernel(), 1, y)
    assert made == [] and launched[-2:] == [((3, _cuda.THREADS, "stream 77"), (x, 7, y)),
                                            ((1, _cuda.THREADS, 0), (y,))]


@pytest.mark.parametrize("count, message", [(0, "this machine has no GPU"),
                                            (RuntimeError("no CUDA driver"), "no usable GPU")])
def test_a_cupy_that_finds_no_gpu_is_an_error_that_says_so(count, message, monkeypatch):
    """CuPy installed on a machine without a GPU (or its driver): ``cupy_module`` refuses with
    its own words, not CuPy's later error at the first array (a stand-in CuPy whose device
    count is 0, or fails; a mutation audit found the count of 0 untested)."""
    import sys
    import types

    from minimeta.engine.backend import cupy_module

    def device_count():
        if isinstance(count, Exception):
            raise count
        return count
    cupy = types.SimpleNamespace(cuda=types.SimpleNamespace(
        runtime=types.SimpleNamespace(getDeviceCount=device_count)))
    monkeypatch.setitem(sys.modules, "cupy", cupy)
    with pytest.raises(RuntimeError, match=message):
        cupy_module()
    with pytest.raises(RuntimeError, match=message):
        mm.tensor([1.0], device="cuda")


def test_the_raw_launch_tells_layouts_apart_and_goes_to_numba_where_it_cannot(monkeypatch):
    """``kernels/_cuda_raw.py`` compiles a kernel per argument kinds: an array's layout is
    part of it (a kernel compiled for C order indexes a transpose wrongly), a number's type
    too. It launches only where CuPy's arrays are (the simulator's NumPy arrays, another
    library's GPU arrays: numba's launch), and an argument it cannot lay out sends the kernel
    to numba's launch, with the reason kept (``FELL_BACK``). ``_cuda.launch`` tries it first
    unless ``RAW`` is off (MINIMETA_CUDA_LAUNCH=numba). Its layout against numba's own, for
    every kernel: ``tests/test_cuda_compile.py``."""
    import types

    from minimeta.kernels import _cuda, _cuda_raw

    a = np.zeros((2, 3, 4), dtype=np.float32)
    assert [_cuda_raw.kind(x) for x in (a, a.transpose(2, 1, 0), a[:, 1:], 3, 0.5, True,
                                        np.float32(1))] == [
        ("<f4", 3, "C"), ("<f4", 3, "F"), ("<f4", 3, "A"), int, float, bool, np.float32]
    v = a[:, 1:]
    laid = _cuda_raw.parameters((v, 7, 0.5), [None, np.int64, np.float64])
    assert laid[4] is v and laid[:4] + laid[5:] == (0, 0, 16, 4, 2, 2, 4, 48, 16, 4, 7, 0.5)
    assert [type(p) for p in laid[-2:]] == [np.int64, np.float64]
    assert _cuda_raw.launch(object(), 1, 32, (a, 3)) is False        # NumPy: numba's
    cupy = types.SimpleNamespace(__name__="cupy", cuda=types.SimpleNamespace(
        runtime=types.SimpleNamespace(getDevice=lambda: 0)))
    monkeypatch.setattr(_cuda_raw, "array_module", lambda x: cupy)
    monkeypatch.setattr(_cuda_raw, "FELL_BACK", {})
    monkeypatch.setattr(_cuda_raw, "_KERNELS", {})

    def kernel():
        pass
    gpu = a.view(OnGPU)
    assert _cuda_raw.launch(kernel, 1, 32, (gpu, (1, 2))) is False    # a tuple: not laid out
    assert list(_cuda_raw.FELL_BACK.values()) == [
        "an argument of a type this launch does not lay out"]
    ran = []
    monkeypatch.setattr(_cuda_raw, "launch", lambda *args: ran.append(args) or raw[0])
    monkeypatch.setattr(_cuda, "device_args", lambda args: (args, 0))

    class Kernel:
        def __getitem__(self, config):
            return lambda *args: ran.append(("numba", config, args))
    k = Kernel()
    for raw in ([True], [False]):      # launched by CuPy; else by numba too
        ran.clear()
        _cuda.launch(k, 300, gpu, 2)
        assert ran == [(k, 3, _cuda.THREADS, (gpu, 2))] + (
            [] if raw[0] else [("numba", (3, _cuda.THREADS, 0), (gpu, 2))])
    monkeypatch.setattr(_cuda, "RAW", False)
    ran.clear()
    _cuda.launch(k, 300, gpu, 2)
    assert ran == [("numba", (3, _cuda.THREADS, 0), (gpu, 2))]


LIMIT = 3      # a number a "device function" below reads: numba writes it into the PTX


def _reads_limit():
    return LIMIT


class _Device:  # stands in for a numba device function: what _numbers_read follows
    py_func = staticmethod(_reads_limit)


DEVICE = _Device()


def _calls_device():
    return DEVICE


def test_the_raw_launch_keeps_its_ptx_for_later_processes_under_a_key_of_what_it_depends_on(
        monkeypatch, tmp_path):
    """``_cuda_raw._ptx``: PTX compiled once is read back from the disk cache (``CACHE``) by a
    later process, under ``cache_key``, which changes with the argument kinds, the compute
    capability, and a number the kernel or a device function it calls reads (a stale PTX
    would run the old number); with the cache off, not makeable, open to others' writes or a
    link (code is loaded from it onto the GPU), the PTX goes to the process's own folder. Its
    use in a launch, with numba's compiler: test_cuda_compile.py."""
    import os
    import types

    from minimeta.kernels import _cuda_raw, norm_cuda

    assert _cuda_raw._numbers_read(_calls_device, set()) == (("_reads_limit", "LIMIT", 3),)
    kinds = (("<f4", 4, "C"), ("<f4", 2, "C"), ("<f4", 2, "C"), float, ("<f4", 4, "C"),
             ("<f4", 2, "C"), ("<f4", 2, "C"))
    key = _cuda_raw.cache_key(norm_cuda._forward, kinds, (9, 0))
    assert key == _cuda_raw.cache_key(norm_cuda._forward, kinds, (9, 0))
    assert key != _cuda_raw.cache_key(norm_cuda._forward, kinds, (8, 0))
    assert key != _cuda_raw.cache_key(norm_cuda._forward, kinds[:3] + (int,) + kinds[4:], (9, 0))
    with monkeypatch.context() as m:
        m.setattr(norm_cuda, "SLOTS", 256)      # read by _forward: a shared array's size
        assert key != _cuda_raw.cache_key(norm_cuda._forward, kinds, (9, 0))
    compiled = []
    cuda = types.SimpleNamespace(compile_ptx=lambda fn, sig, cc: compiled.append(cc) or (
        f"// PTX of {fn.__name__} for {cc}", None))
    monkeypatch.setattr(_cuda_raw, "CACHE", str(tmp_path / "ptx"))
    first = _cuda_raw._ptx(norm_cuda._forward, kinds, (9, 0), cuda)
    assert _cuda_raw._ptx(norm_cuda._forward, kinds, (9, 0), cuda) == first   # a later process
    assert compiled == [(9, 0)] and first[0] == str(tmp_path / "ptx" / (key + ".ptx"))
    _cuda_raw._ptx(norm_cuda._forward, kinds, (8, 0), cuda)
    assert compiled == [(9, 0), (8, 0)] and len(os.listdir(tmp_path / "ptx")) == 2
    (tmp_path / "a file").write_text("")
    (tmp_path / "open").mkdir(mode=0o777)
    (tmp_path / "open").chmod(0o777)                # (past the umask)
    (tmp_path / "link").symlink_to(tmp_path / "ptx")
    for cache in (None, str(tmp_path / "a file" / "ptx"), str(tmp_path / "open"),
                  str(tmp_path / "link")):  # off; cannot be made; others may write; a link
        monkeypatch.setattr(_cuda_raw, "CACHE", cache)
        path, ptx = _cuda_raw._ptx(norm_cuda._forward, kinds, (9, 0), cuda)
        assert ptx == first[1] and open(path).read() == ptx and str(tmp_path) not in path
    assert len(compiled) == 6
