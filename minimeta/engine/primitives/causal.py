"""The causal dilated 1-D convolution (SNAIL's temporal convolution): a closed family of three.

    y = causal_conv1d(x, w, d),   y[n, o, t] = Σ_c Σ_j w[o, c, j] · x[n, c, t − (k − 1 − j)·d]

reads steps t, t − d, …, t − (k − 1)·d of x only: no output ever sees a later input, which is
what lets SNAIL read a sequence of labelled examples and then the query. Like conv2d it is
linear in x and in w, with

    ⟨g, causal_conv1d(x, w)⟩ = ⟨causal_conv1d_input_grad(g, w), x⟩
                             = ⟨causal_conv1d_weight_grad(x, g), w⟩,

so every VJP, at every order, is again one of the three (the same argument as
``conv.py``). Forwards go through the kernel table (``kernels/causal_*.py``).

Read next: ``kernels/__init__.py`` (the kernel table).
"""
from ... import kernels as K
from ..autodiff import Primitive, apply
from ..tensor import plain
from .conv import whole
from .elementwise import floating


class CausalConv1d(Primitive):
    """y = causal_conv1d(x, w).

    VJP: (causal_conv1d_input_grad(g, w), causal_conv1d_weight_grad(x, g)).
    """

    __slots__ = ("dilation",)

    def __init__(self, dilation):
        self.dilation = dilation

    def forward(self, x, w):
        return K.lookup("causal_conv1d", x, w)(x, w, self.dilation)

    def vjp(self, g, out, x, w):
        gx = causal_conv1d_input_grad(g, w, self.dilation) if x.requires_grad else None
        gw = causal_conv1d_weight_grad(x, g, w.shape, self.dilation) \
            if w.requires_grad else None
        return gx, gw


class CausalConv1dInputGrad(Primitive):
    """gx = causal_conv1d_input_grad(g, w) (the anti-causal correlation).

    VJP with incoming h: (causal_conv1d(h, w), causal_conv1d_weight_grad(h, g)).
    """

    __slots__ = ("dilation",)

    def __init__(self, dilation):
        self.dilation = dilation

    def forward(self, g, w):
        return K.lookup("causal_conv1d_input_grad", g, w)(g, w, self.dilation)

    def vjp(self, h, out, g, w):
        dg = causal_conv1d(h, w, self.dilation) if g.requires_grad else None
        dw = causal_conv1d_weight_grad(h, g, w.shape, self.dilation) \
            if w.requires_grad else None
        return dg, dw


class CausalConv1dWeightGrad(Primitive):
    """gw = causal_conv1d_weight_grad(x, g).

    VJP with incoming h: (causal_conv1d_input_grad(g, h), causal_conv1d(x, h)).
    """

    __slots__ = ("w_shape", "dilation")

    def __init__(self, w_shape, dilation):
        self.w_shape, self.dilation = tuple(w_shape), dilation

    def forward(self, x, g):
        return K.lookup("causal_conv1d_weight_grad", x, g)(x, g, self.w_shape, self.dilation)

    def vjp(self, h, out, x, g):
        dx = causal_conv1d_input_grad(g, h, self.dilation) if x.requires_grad else None
        dg = causal_conv1d(x, h, self.dilation) if g.requires_grad else None
        return dx, dg


def causal_conv1d(x, w, dilation=1):
    """Differentiable causal dilated convolution of x (N, C, T) with w (O, C, k), no bias."""
    dilation = whole("causal_conv1d", "dilation", dilation, 1, axes=1)   # 1.9 had read as 1
    x, w = plain(x), plain(w)
    K.causal_ref._check(x.shape, w.shape, dilation)
    x, w = floating("causal_conv1d", x, w)
    return apply(CausalConv1d(dilation), x, w)


def causal_conv1d_input_grad(g, w, dilation=1):
    """Differentiable input gradient of ``causal_conv1d``."""
    return apply(CausalConv1dInputGrad(int(dilation)), g, w)


def causal_conv1d_weight_grad(x, g, w_shape, dilation=1):
    """Differentiable weight gradient of ``causal_conv1d``."""
    return apply(CausalConv1dWeightGrad(w_shape, int(dilation)), x, g)
