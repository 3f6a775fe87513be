"""Elementwise primitives: arithmetic, transcendental functions, and the piecewise-linear ops.

Each class gives its forward on raw arrays and its VJP as a formula in Tensor ops. ``g`` is the
gradient arriving at the output ``out``; the returned gradients may have the broadcast shape,
the backward pass sums them down (``reductions.unbroadcast``). A VJP that computes something
for a gradient skips it (None) for inputs that do not require it, so constants cost nothing in
the backward pass; one that only passes g on (``Add``) returns it, and the pass drops it.

Read next: ``minimeta/engine/primitives/shape.py`` (reshape, transpose, broadcast, indexing).
"""
import numpy as np

from ... import kernels as K
from ..autodiff import STATE, Primitive, apply, beside
from ..backend import array_module, check_grad_dtype, to_device
from ..tensor import Tensor, constant, lift_pair, plain


def _need(t):
    return t._requires_grad   # the flag itself (the property checks only when set)


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
    """out = a ** c for a Python number c.   VJP: g * c * a ** (c - 1); for c = 0 exactly 0
    (a⁰ is constant: 0 even at a = 0 or under an infinite g, where the formula reads 0 · inf).
    """

    __slots__ = ("c",)

    def __init__(self, c):
        self.c = c

    def forward(self, a):
        return a ** self.c

    def vjp(self, g, out, a):
        if self.c == 0:      # a⁰ is constant: 0, even where g is infinite (g · 0 was NaN)
            return (where(False, g, 0.0),)
        return (g * (self.c * a ** (self.c - 1)),)


class Pow(Primitive):
    """out = a ** b, both tensors (a ≥ 0 where b needs a gradient).

    VJP: (g * b * a ** (b - 1), g * out * log(a)), except at a = 0, as PyTorch: there the
    first is 0 where b = 0 (a⁰ is constant; the formula reads 0 · inf), the second 0 where
    b ≥ 0 (0 ** b is constant for b > 0; the formula reads 0 · −inf). The masked entries see
    a = 1 inside the formulas (the "double where"), so no NaN reaches a higher derivative.
    """

    def forward(self, a, b):
        return a ** b

    def vjp(self, g, out, a, b):
        zero = compare("equal", a, 0)       # masks: constant Tensors, as in every VJP
        ga = gb = None
        if _need(a):                        # d/da a⁰ = 0, not b · a⁻¹ = 0 · inf
            flat = compare("logical_and", zero, compare("equal", b, 0))
            ga = where(flat, 0.0, g * b * where(flat, 1.0, a) ** (b - 1.0))
        if _need(b):                        # d/db 0 ** b = 0, not 0 · log 0
            const = compare("logical_and", zero, compare("greater_equal", b, 0))
            gb = g * out * log(where(const, 1.0, a))
        return ga, gb


class Exp(Primitive):
    """out = exp(a).   VJP: g * out."""

    def forward(self, a):
        return array_module(a).exp(a)

    def vjp(self, g, out, a):
        return (g * out,)


class Log(Primitive):
    """out = log(a).   VJP: g / a."""

    def forward(self, a):
        return array_module(a).log(a)

    def vjp(self, g, out, a):
        return (g / a,)


class Sqrt(Primitive):
    """out = sqrt(a).   VJP: g * 0.5 / out."""

    def forward(self, a):
        return array_module(a).sqrt(a)

    def vjp(self, g, out, a):
        return ((g * 0.5) / out,)


class Tanh(Primitive):
    """out = tanh(a).   VJP: g * (1 - out²)."""

    def forward(self, a):
        return array_module(a).tanh(a)

    def vjp(self, g, out, a):
        return (g * (1.0 - out * out),)


class Sigmoid(Primitive):
    """out = 1 / (1 + exp(-a)), computed from e = exp(−|a|) ∈ (0, 1]: 1 / (1 + e) for a ≥ 0,
    e / (1 + e) below, so nothing overflows and a negative a keeps its relative precision
    ((1 + tanh(a/2)) / 2, used before, cancelled there: sigmoid(−20) was 0 in float32, and
    log(sigmoid(−20)) −inf).

    VJP: g * out * (1 - out).
    """

    def forward(self, a):
        xp = array_module(a)
        e = xp.exp(-xp.abs(a))
        return xp.where(a >= 0, 1.0 / (1.0 + e), e / (1.0 + e))

    def vjp(self, g, out, a):
        return (g * (out * (1.0 - out)),)


class Relu(Primitive):
    """out = max(a, 0).   VJP: relu_grad(a, g): g where a > 0, else 0 (``ReluGrad``)."""

    def forward(self, a):
        return array_module(a).maximum(a, 0)

    def vjp(self, g, out, a):
        return (relu_grad(a, g),)


class ReluGrad(Primitive):
    """out = g where a > 0, else 0 (the kernel ``relu_grad``): ReLU's VJP, its mask read from a
    in the same pass as the select (no mask array, no ``Where`` holding one).

    VJP: (none for a: relu'' = 0 almost everywhere, as a ``where``'s constant mask gave;
    relu_grad(a, gg) for g, the same select again). A closed family: ReLU's derivatives of
    every order are this one op.
    """

    def forward(self, a, g):
        return K.lookup("relu_grad", g, a)(a, g)

    def vjp(self, gg, out, a, g):
        return None, (relu_grad(a, gg) if _need(g) else None)


class Abs(Primitive):
    """out = |a|.   VJP: g * sign(a) (a constant mask; 0 at a = 0)."""

    def forward(self, a):
        return array_module(a).abs(a)

    def vjp(self, g, out, a):
        return (g * sign(a),)


class Maximum(Primitive):
    """out = max(a, b) elementwise.   VJP: (where(a >= b, g, 0), where(a < b, g, 0)) (ties go
    to a). A ``where``, not g times the mask: the side that lost gets 0 even where g is
    infinite (inf · 0 had been NaN: sqrt(maximum(d, 0)) at a d rounded below 0)."""

    def forward(self, a, b):
        return array_module(a).maximum(a, b)

    def vjp(self, g, out, a, b):
        ga = where(a >= b, g, 0.0) if _need(a) else None
        gb = where(a < b, g, 0.0) if _need(b) else None
        return ga, gb


class Where(Primitive):
    """out = cond ? a : b, with ``cond`` a constant boolean array (the kernel ``where``).

    VJP: (where(cond, g, 0), where(cond, 0, g)).
    """

    __slots__ = ("cond",)

    def __init__(self, cond):
        self.cond = cond

    def forward(self, a, b):
        return K.lookup("where", a, b)(self.cond, a, b)

    def vjp(self, g, out, a, b):
        ga = where(self.cond, g, 0.0) if _need(a) else None
        gb = where(self.cond, 0.0, g) if _need(b) else None
        return ga, gb


class Cast(Primitive):
    """out = a converted to ``dtype``.   VJP: g converted back to a's dtype."""

    __slots__ = ("dtype",)

    def __init__(self, dtype):
        self.dtype = dtype

    def forward(self, a):
        return a.astype(self.dtype)

    def vjp(self, g, out, a):
        return (astype(g, a.dtype),)


# ----- the user-facing functions (re-exported by ops.py) ---------------------------------------
def _binary(cls, a, b):
    a, b = lift_pair(a, b)
    try:
        return apply(cls(), a, b)
    except ValueError:  # NumPy's broadcasting error, restated with the op's name
        if a.shape == b.shape:
            raise
        raise ValueError(f"{cls.__name__.lower()}: shapes {a.shape} and {b.shape} cannot "
                         "broadcast") from None


def add(a, b):
    """a + b, broadcasting."""
    return _binary(Add, a, b)


def sub(a, b):
    """a - b, broadcasting."""
    return _binary(Sub, a, b)


def mul(a, b):
    """a * b, broadcasting."""
    return _binary(Mul, a, b)


def div(a, b):
    """a / b, broadcasting. NumPy divides integers in float64, so a Python int beside an
    integer tensor is lifted as a float (as uint8, ``x / 300`` had overflowed)."""
    if type(b) is int and isinstance(a, Tensor) and a.dtype.kind in "iub":
        b = float(b)
    elif type(a) is int and isinstance(b, Tensor) and b.dtype.kind in "iub":
        a = float(a)
    return _binary(Div, a, b)


def neg(a):
    """-a."""
    return apply(Neg(), plain(a))


def pow(a, b):
    """a ** b: a Python-number exponent uses ``PowScalar``, a tensor exponent ``Pow``."""
    if isinstance(a, Tensor) and isinstance(b, (int, float, np.integer)) \
            and not isinstance(b, bool):
        return apply(PowScalar(int(b) if isinstance(b, np.integer) else b), a)
    return _binary(Pow, a, b)


def _unary(cls):
    def fn(a):
        return apply(cls(), plain(a))

    fn.__name__ = cls.__name__.lower()
    fn.__doc__ = f"Elementwise {fn.__name__} (primitive ``{cls.__name__}``)."
    return fn


exp, log, sqrt, tanh = _unary(Exp), _unary(Log), _unary(Sqrt), _unary(Tanh)
sigmoid, relu, abs = _unary(Sigmoid), _unary(Relu), _unary(Abs)


def relu_grad(a, g):
    """ReLU's VJP at ``a`` for the gradient ``g`` (Tensors of one shape): g where a > 0, else 0.
    Differentiable in g (itself again); a is not differentiated."""
    if a.shape != g.shape:
        raise ValueError(f"relu_grad: a {a.shape} and g {g.shape} must have one shape")
    return apply(ReluGrad(), a, g)


def maximum(a, b):
    """Elementwise maximum, broadcasting (ties send the gradient to ``a``)."""
    return _binary(Maximum, a, b)


def where(cond, a, b):
    """Elementwise ``cond ? a : b``; ``cond`` is a boolean array or Tensor (not differentiated;
    an array is copied: the VJP routes by the mask the forward used, whatever the caller then
    does to its array)."""
    a, b = lift_pair(a, b)
    cond = (cond if isinstance(cond, Tensor) else constant(cond, a)).data   # (a's copy)
    if type(cond) is not type(a.data):
        cond = to_device(cond, a.device)
    try:
        # every masked gradient is a mask, one operand of its shape and a number: no check
        shape = cond.shape
        if not (a.data.shape == shape and b.data.ndim == 0 or
                b.data.shape == shape and a.data.ndim == 0):
            np.broadcast_shapes(np.shape(cond), a.shape, b.shape)
    except ValueError:
        raise ValueError(
            f"where: shapes cond {np.shape(cond)}, a {a.shape}, b {b.shape} cannot broadcast"
        ) from None
    return apply(Where(cond), a, b)


def astype(a, dtype):
    """Convert to ``dtype``: differentiable between float dtypes; to an integer or bool dtype
    a constant (truncation's derivative is 0 almost everywhere, and an integer Tensor does not
    carry gradients), as PyTorch does.

    >>> from minimeta.engine.tensor import tensor
    >>> astype(tensor([1.5], requires_grad=True), np.int64).requires_grad
    False
    """
    dtype = np.dtype(dtype)
    if a.dtype == dtype:
        return a
    if not np.issubdtype(dtype, np.inexact):
        return beside(lambda x: x.astype(dtype), a.data)
    if a.requires_grad and STATE.enabled:
        check_grad_dtype(dtype, "astype")
    return apply(Cast(dtype), a)


def floating(op, *tensors):
    """``tensors`` (None passes through) in their common dtype by NumPy's promotion, for a
    kernel that wants one floating dtype: a uint8 image met by float32 weights is converted
    (a ``Cast``, so each gradient comes back in its own dtype); a TypeError naming ``op`` if
    the common dtype is not floating."""
    given = [t for t in tensors if t is not None]
    dtype = np.result_type(*[t.dtype for t in given])
    if dtype.kind != "f":
        kinds = " and ".join(str(t.dtype) for t in given)
        raise TypeError(f"{op}: needs floating arrays, got {kinds}; convert with "
                        "astype(np.float32) (images: scale them to [0, 1] too)")
    return [None if t is None else astype(t, dtype) for t in tensors]


def isfinite(a):
    """A constant boolean Tensor: True where ``a`` is finite (a mask, no grad)."""
    return beside(array_module(a.data).isfinite, a.data)


def compare(name, a, b):
    """A constant boolean Tensor ``numpy.<name>(a, b)`` (less, equal, ...): a mask, no grad."""
    a, b = lift_pair(a, b)
    try:
        return beside(getattr(array_module(a.data), name), a.data, b.data)
    except ValueError:  # NumPy's broadcasting error, restated with the op's name
        if a.shape == b.shape:
            raise
        raise ValueError(f"{name}: shapes {a.shape} and {b.shape} cannot broadcast") from None


def sign(a):
    """Constant Tensor of the signs of ``a`` (-1, 0, 1): no gradient flows through it."""
    return beside(array_module(a.data).sign, a.data)
