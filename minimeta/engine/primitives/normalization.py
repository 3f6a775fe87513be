"""Fused batch normalisation (training mode, batch statistics): a ``Fused`` primitive.

Forward, with statistics over every axis but the channel axis 1 (n values per channel; for a
stack of T tasks, x (T, N, C, ...) and w, b (T, C), over every axis but the task and channel):

    μ = mean(x),  σ² = mean((x − μ)²),  x̂ = (x − μ) / sqrt(σ² + eps),  y = x̂ · w + b

VJP (one kernel, ``batch_norm_backward``), with ĝ = g · w:

    dx = (ĝ − mean(ĝ) − x̂ · mean(ĝ · x̂)) / sqrt(σ² + eps),   dw = Σ g · x̂,   db = Σ g

The second order is one kernel too (``batch_norm_double_backward``, the VJP of that VJP:
``fused.py``); the third and higher go through ``batch_norm_composite`` below, the reference
definition written with the engine's primitives (``functional.layers`` re-exports it). The
forward kernel also returns the batch mean and biased variance: forward saves them on the
output (``saves``; read as ``y.saved``) for the running-average update in
``functional.layers``.

Read next: ``minimeta/engine/primitives/conv.py`` (the convolution family and max pooling).
"""
from ... import kernels as K
from .elementwise import sqrt
from .fused import Fused
from .reductions import mean
from .shape import reshape


def batch_norm_composite(x, weight, bias, eps=1e-5):
    """Training-mode batch norm written with primitives: the reference of the fused kernel.
    Weight and bias are (C,) (``functional.batch_norm`` gives ones and zeros for a missing
    one), or (T, C): a stack of T batch norms on x (T, N, C, ...)."""
    axes, shape = K.norm_ref.layout(x, weight)    # a stack: per task and channel
    centered = x - mean(x, axes, keepdims=True)
    var = mean(centered * centered, axes, keepdims=True)
    return centered / sqrt(var + eps) * reshape(weight, shape) + reshape(bias, shape)


class BatchNorm(Fused):
    """y = batch_norm(x, w, b) in training mode; x is NC or NCHW, w and b are (C,); or a stack
    of T: x (T, N, C[, H, W]), w and b (T, C).

    Under an infinite incoming gradient g (an overflowed loss) its derivatives hold NaN, as
    PyTorch's: the first order at the entries of g's channel where the formula meets inf − inf
    (±inf at the others), the second order at every dx and the dw of that channel (dg stays
    finite). The limits are ±inf (each derivative is linear in g), but the formulas, PyTorch's
    too, meet inf − inf on the way; an infinite cotangent of the second order on dw gives dx
    its ±inf (``norm_ref.batch_norm_double_backward``). docs/ENGINE.md, "Special points".
    """

    __slots__ = ("eps",)
    kernel, vjp_kernel = "batch_norm", "batch_norm_backward"
    vjp_vjp_kernel = "batch_norm_double_backward"
    saves = True

    def __init__(self, eps):
        self.eps = eps

    def static(self):
        return (self.eps,)

    def forward(self, x, w, b):
        stack = w.ndim == 2
        channels = (x.shape[0], x.shape[2]) if stack and x.ndim >= 3 else x.shape[1:2]
        if x.ndim - stack not in (2, 4) or w.shape != channels or b.shape != channels:
            raise ValueError(f"batch_norm: input {x.shape} must be NC or NCHW with weight and "
                             f"bias (C,), or a stack (T, N, C[, H, W]) with (T, C); got "
                             f"weight {w.shape}, bias {b.shape}")
        y, batch_mean, batch_var = K.lookup(self.kernel, x, w, b)(x, w, b, self.eps)
        return y, (batch_mean, batch_var)

    def composite(self, x, w, b):
        return batch_norm_composite(x, w, b, self.eps)
