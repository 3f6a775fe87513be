"""Elementwise primitives: arithmetic, transcendental functions, and the piecewise-linear ops.

Each class gives its forward on raw arrays and its VJP as a formula in Tensor ops. ``g`` is the
gradient arriving at the output ``out``; the returned gradients may have the broadcast shape,
the engine sums them down (``autodiff._unbroadcast``). A gradient is skipped (None) for inputs
that do not require it, so constants cost nothing in the backward pass.

Read next: ``reductions.py``.
"""
from ..autodiff import Primitive
from .. import ops


def _need(t):
    return t.requires_grad


class Add(Primitive):
    """out = a + b.   VJP: (g, g)."""

    def forward(self, a, b):
        return a + b

    def vjp(self, g, out, a, b):
        return g, g


class Sub(Primitive):
    """out = a - b.   VJP: (g, -g)."""

    def forward(self, a, b):
        return a - b

    def vjp(self, g, out, a, b):
        return g, (-g if _need(b) else None)


class Mul(Primitive):
    """out = a * b.   VJP: (g * b, g * a)."""

    def forward(self, a, b):
        return a * b

    def vjp(self, g, out, a, b):
        return (g * b if _need(a) else None), (g * a if _need(b) else None)


class Div(Primitive):
    """out = a / b.   VJP: (g / b, -g * out / b)."""

    def forward(self, a, b):
        return a / b

    def vjp(self, g, out, a, b):
        ga = g / b if _need(a) else None
        gb = -(g * out) / b if _need(b) else None
        return ga, gb


class Neg(Primitive):
    """out = -a.   VJP: -g."""

    def forward(self, a):
        return -a

    def vjp(self, g, out, a):
        return (-g,)


class PowScalar(Primitive):
    """out = a ** c for a Python number c.   VJP: g * c * a ** (c - 1)."""

    __slots__ = ("c",)

    def __init__(self, c):
        self.c = c

    def forward(self, a):
        return a ** self.c

    def vjp(self, g, out, a):
        if self.c == 0:
            return (g * 0.0,)
        return (g * (self.c * a ** (self.c - 1)),)


class Pow(Primitive):
    """out = a ** b, both tensors (a > 0 where b needs a gradient).

    VJP: (g * b * a ** (b - 1), g * out * log(a)).
    """

    def forward(self, a, b):
        return a ** b

    def vjp(self, g, out, a, b):
        ga = g * b * a ** (b - 1.0) if _need(a) else None
        gb = g * out * ops.log(a) if _need(b) else None
        return ga, gb


class Exp(Primitive):
    """out = exp(a).   VJP: g * out."""

    def forward(self, a):
        return ops.xp_of(a).exp(a)

    def vjp(self, g, out, a):
        return (g * out,)


class Log(Primitive):
    """out = log(a).   VJP: g / a."""

    def forward(self, a):
        return ops.xp_of(a).log(a)

    def vjp(self, g, out, a):
        return (g / a,)


class Sqrt(Primitive):
    """out = sqrt(a).   VJP: g * 0.5 / out."""

    def forward(self, a):
        return ops.xp_of(a).sqrt(a)

    def vjp(self, g, out, a):
        return ((g * 0.5) / out,)


class Tanh(Primitive):
    """out = tanh(a).   VJP: g * (1 - out²)."""

    def forward(self, a):
        return ops.xp_of(a).tanh(a)

    def vjp(self, g, out, a):
        return (g * (1.0 - out * out),)


class Sigmoid(Primitive):
    """out = 1 / (1 + exp(-a)), computed as (1 + tanh(a/2)) / 2 (no overflow).

    VJP: g * out * (1 - out).
    """

    def forward(self, a):
        return 0.5 * (1.0 + ops.xp_of(a).tanh(0.5 * a))

    def vjp(self, g, out, a):
        return (g * (out * (1.0 - out)),)


class Relu(Primitive):
    """out = max(a, 0).   VJP: where(a > 0, g, 0) (the mask is a constant: relu'' = 0 a.e.)."""

    def forward(self, a):
        return ops.xp_of(a).maximum(a, 0)

    def vjp(self, g, out, a):
        return (ops.where(a > 0, g, 0.0),)


class Abs(Primitive):
    """out = |a|.   VJP: g * sign(a) (a constant mask; 0 at a = 0)."""

    def forward(self, a):
        return ops.xp_of(a).abs(a)

    def vjp(self, g, out, a):
        return (g * ops.sign(a),)


class Maximum(Primitive):
    """out = max(a, b) elementwise.   VJP: (g * [a >= b], g * [a < b]) (ties go to a)."""

    def forward(self, a, b):
        return ops.xp_of(a).maximum(a, b)

    def vjp(self, g, out, a, b):
        ga = g * (a >= b) if _need(a) else None
        gb = g * (a < b) if _need(b) else None
        return ga, gb


class Where(Primitive):
    """out = cond ? a : b, with ``cond`` a constant boolean array.

    VJP: (where(cond, g, 0), where(cond, 0, g)).
    """

    __slots__ = ("cond",)

    def __init__(self, cond):
        self.cond = cond

    def forward(self, a, b):
        return ops.xp_of(a).where(self.cond, a, b)

    def vjp(self, g, out, a, b):
        ga = ops.where(self.cond, g, 0.0) if _need(a) else None
        gb = ops.where(self.cond, 0.0, g) if _need(b) else None
        return ga, gb


class Cast(Primitive):
    """out = a converted to ``dtype``.   VJP: g converted back to a's dtype."""

    __slots__ = ("dtype",)

    def __init__(self, dtype):
        self.dtype = dtype

    def forward(self, a):
        return a.astype(self.dtype)

    def vjp(self, g, out, a):
        return (ops.astype(g, a.dtype),)
