"""Fused batch normalisation (training mode, batch statistics): a ``Fused`` primitive.

Forward, with statistics over every axis but the channel axis 1 (n values per channel):

    μ = mean(x),  σ² = mean((x − μ)²),  x̂ = (x − μ) / sqrt(σ² + eps),  y = x̂ · w + b

VJP (one kernel, ``batch_norm_backward``), with ĝ = g · w:

    dx = (ĝ − mean(ĝ) − x̂ · mean(ĝ · x̂)) / sqrt(σ² + eps),   dw = Σ g · x̂,   db = Σ g

Higher orders go through the composite (``functional.layers.batch_norm_composite``). The
forward kernel also returns the batch mean and biased variance, kept on the instance (``mean``,
``var``) for the running-average update.

Read next: ``../../functional/layers.py``.
"""
from .fused import Fused
from ... import kernels as K


class BatchNorm(Fused):
    """y = batch_norm(x, w, b) in training mode; x is NC or NCHW, w and b are (C,)."""

    __slots__ = ("eps", "mean", "var")
    kernel, vjp_kernel = "batch_norm", "batch_norm_backward"

    def __init__(self, eps):
        self.eps, self.mean, self.var = eps, None, None

    def static(self):
        return (self.eps,)

    def forward(self, x, w, b):
        y, self.mean, self.var = K.lookup(self.kernel, x)(x, w, b, self.eps)
        return y

    def composite(self, x, w, b):
        from ...functional.layers import batch_norm_composite

        return batch_norm_composite(x, w, b, self.eps)
