"""Fused batch normalisation (training mode, batch statistics): a ``Fused`` primitive.

Forward, with statistics over every axis but the channel axis 1 (n values per channel):

    μ = mean(x),  σ² = mean((x − μ)²),  x̂ = (x − μ) / sqrt(σ² + eps),  y = x̂ · w + b

VJP (one kernel, ``batch_norm_backward``), with ĝ = g · w:

    dx = (ĝ − mean(ĝ) − x̂ · mean(ĝ · x̂)) / sqrt(σ² + eps),   dw = Σ g · x̂,   db = Σ g

Higher orders go through ``batch_norm_composite`` below, the reference definition written
with the engine's primitives (``functional.layers`` re-exports it). The forward kernel also
returns the batch mean and biased variance: forward saves them on the output
(``saves``; read as ``y.saved``) for the running-average update in ``functional.layers``.

Read next: ``minimeta/engine/primitives/conv.py`` (the convolution family and max pooling).
"""
from ... import kernels as K
from .elementwise import sqrt
from .fused import Fused
from .reductions import mean
from .shape import reshape


def batch_norm_composite(x, weight, bias, eps=1e-5):
    """Training-mode batch norm written with primitives: the reference of the fused kernel."""
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, x.shape[1]) + (1,) * (x.ndim - 2)
    centered = x - mean(x, axes, keepdims=True)
    var = mean(centered * centered, axes, keepdims=True)
    y = centered / sqrt(var + eps)
    if weight is not None:
        y = y * reshape(weight, shape)
    if bias is not None:
        y = y + reshape(bias, shape)
    return y


class BatchNorm(Fused):
    """y = batch_norm(x, w, b) in training mode; x is NC or NCHW, w and b are (C,)."""

    __slots__ = ("eps",)
    kernel, vjp_kernel = "batch_norm", "batch_norm_backward"
    vjp_vjp_kernel = "batch_norm_double_backward"
    saves = True

    def __init__(self, eps):
        self.eps = eps

    def static(self):
        return (self.eps,)

    def forward(self, x, w, b):
        y, batch_mean, batch_var = K.lookup(self.kernel, x)(x, w, b, self.eps)
        return y, (batch_mean, batch_var)

    def composite(self, x, w, b):
        return batch_norm_composite(x, w, b, self.eps)
