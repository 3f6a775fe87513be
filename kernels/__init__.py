"""The kernel table: every accelerated kernel, by name, beside the NumPy reference that is its spec.

    name                          reference (the spec)                       numba CPU
    conv2d                        conv_ref.conv2d                            conv_numba.conv2d
    conv2d_input_grad             conv_ref.conv2d_input_grad                 conv_numba.…
    conv2d_weight_grad            conv_ref.conv2d_weight_grad                conv_numba.…
    max_pool2d                    pool_ref.max_pool2d                        pool_numba.…
    max_pool2d_backward           pool_ref.max_pool2d_backward               pool_numba.…
    cosine_attention              attention_ref.cosine_attention             attention_numba.…
    cosine_attention_backward     attention_ref.cosine_attention_backward    attention_numba.…
    batch_norm                    norm_ref.batch_norm                        norm_numba.…
    batch_norm_backward           norm_ref.batch_norm_backward               norm_numba.…

(CUDA versions: a later column.) Families close under differentiation: conv2d and its two
gradients; max pooling and its argmax scatter (whose own gradient is a gather); fused cosine
attention and fused batch norm, whose composite definitions in ``minimeta.functional`` give
their higher derivatives (see ``minimeta/engine/primitives/fused.py``).

Kernels take arrays and return arrays; they never see a Tensor. The engine calls them only
through ``lookup(name)``. It returns the numba version for CPU arrays, unless
``MINIMETA_KERNELS=reference`` is set or the code runs inside ``use_reference()`` (for teaching
and debugging). numba is imported on the first lookup of a numba kernel, not with minimeta.

Read next: ``conv_ref.py``.
"""
import contextlib
import importlib
import os
from dataclasses import dataclass

from . import attention_ref, conv_ref, norm_ref, pool_ref


@dataclass(frozen=True)
class Kernel:
    """One row of the table: the spec, and where its accelerated versions live."""

    reference: object
    cpu: str = ""   # "module:function" inside this package, imported on first use
    cuda: str = ""


TABLE = {
    "conv2d": Kernel(conv_ref.conv2d, "conv_numba:conv2d"),
    "conv2d_input_grad": Kernel(conv_ref.conv2d_input_grad, "conv_numba:conv2d_input_grad"),
    "conv2d_weight_grad": Kernel(conv_ref.conv2d_weight_grad, "conv_numba:conv2d_weight_grad"),
    "max_pool2d": Kernel(pool_ref.max_pool2d, "pool_numba:max_pool2d"),
    "max_pool2d_backward": Kernel(pool_ref.max_pool2d_backward,
                                  "pool_numba:max_pool2d_backward"),
    "cosine_attention": Kernel(attention_ref.cosine_attention,
                               "attention_numba:cosine_attention"),
    "cosine_attention_backward": Kernel(attention_ref.cosine_attention_backward,
                                        "attention_numba:cosine_attention_backward"),
    "batch_norm": Kernel(norm_ref.batch_norm, "norm_numba:batch_norm"),
    "batch_norm_backward": Kernel(norm_ref.batch_norm_backward, "norm_numba:batch_norm_backward"),
}

_FORCE_REFERENCE = [os.environ.get("MINIMETA_KERNELS", "").lower() == "reference"]
_LOADED = {}


@contextlib.contextmanager
def use_reference(flag=True):
    """Inside this block every kernel runs its NumPy reference."""
    previous = _FORCE_REFERENCE[0]
    _FORCE_REFERENCE[0] = flag
    try:
        yield
    finally:
        _FORCE_REFERENCE[0] = previous


def resolve(path):
    """Import "module:function" from this package (cached)."""
    if path not in _LOADED:
        module, name = path.split(":")
        _LOADED[path] = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    return _LOADED[path]


def lookup(name):
    """The implementation of kernel ``name`` to run now, for CPU arrays."""
    row = TABLE[name]
    if _FORCE_REFERENCE[0] or not row.cpu:
        return row.reference
    return resolve(row.cpu)
