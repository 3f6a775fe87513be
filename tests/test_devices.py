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
