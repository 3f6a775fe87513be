"""The kernel table: every accelerated kernel, by name, beside the NumPy reference that is its spec.

    name                  reference (spec)                 numba CPU     CUDA
    conv2d                conv_ref.conv2d                  (issue 5)     (issue 8)
    conv2d_input_grad     conv_ref.conv2d_input_grad       (issue 5)     (issue 8)
    conv2d_weight_grad    conv_ref.conv2d_weight_grad      (issue 5)     (issue 8)
    max_pool2d            pool_ref.max_pool2d              (issue 5)     (issue 8)

Kernels take arrays and return arrays; they never see a Tensor. The engine calls them only
through ``lookup(name)``, which picks the implementation: the reference when
``MINIMETA_KERNELS=reference`` is set or inside ``use_reference()`` (for teaching and debugging),
else the fastest one available for the arrays' device. This package imports no numba.cuda and
no cupy: accelerated versions are imported lazily on first use.

Read next: ``conv_ref.py``.
"""
import contextlib
import os
from dataclasses import dataclass
from typing import Callable, Optional

from . import conv_ref, pool_ref


@dataclass(frozen=True)
class Kernel:
    """One row of the table: the spec and its accelerated versions (None where not written)."""

    reference: Callable
    cpu: Optional[Callable] = None
    cuda: Optional[Callable] = None


TABLE = {
    "conv2d": Kernel(conv_ref.conv2d),
    "conv2d_input_grad": Kernel(conv_ref.conv2d_input_grad),
    "conv2d_weight_grad": Kernel(conv_ref.conv2d_weight_grad),
    "max_pool2d": Kernel(pool_ref.max_pool2d),
}

_FORCE_REFERENCE = [os.environ.get("MINIMETA_KERNELS", "").lower() == "reference"]


@contextlib.contextmanager
def use_reference(flag=True):
    """Inside this block every kernel runs its NumPy reference."""
    previous = _FORCE_REFERENCE[0]
    _FORCE_REFERENCE[0] = flag
    try:
        yield
    finally:
        _FORCE_REFERENCE[0] = previous


def lookup(name):
    """The implementation of kernel ``name`` to run now (CPU arrays)."""
    row = TABLE[name]
    if _FORCE_REFERENCE[0] or row.cpu is None:
        return row.reference
    return row.cpu
