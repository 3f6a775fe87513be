"""Reductions over axes: sum, max, logsumexp (``mean``, below, is sum · 1/n: a composition),
and the mean squared error as one op.

The VJP of a reduction broadcasts the incoming gradient back over the reduced axes. ``_keep``
first reshapes ``g`` to the shape with the reduced axes kept as size 1, so that broadcasting
lines up whatever ``keepdims`` was (unless they already line up: reduced leading axes, or a
full reduction, broadcast back as they are).

Read next: ``minimeta/engine/primitives/linalg.py`` (the matrix product with transpose flags).
"""
import math

import numpy as np

from ..autodiff import Primitive, apply
from ..backend import array_module
from ..tensor import number, plain
from .elementwise import astype, compare, exp, where
from .shape import broadcast_to, integers, reshape


def normalize_axis(axis, ndim, op):
    """Turn ``axis`` (None, int or tuple, maybe negative) into a sorted tuple of axes."""
    if axis is None:
        return tuple(range(ndim))
    axes = integers(axis, op)
    result = []
    for a in axes:
        if not -ndim <= a < ndim:
            raise ValueError(f"{op}: axis {a} is out of range for a tensor of {ndim} dims")
        result.append(a % ndim)
    if len(set(result)) < len(result):
        raise ValueError(f"{op}: axis {axis} repeats an axis")
    return tuple(sorted(result))


def _keep(g, in_shape, axes):
    """Reshape ``g`` to ``in_shape`` with the reduced ``axes`` set to 1.

    Not needed when the reduced axes are the leading ones: g's shape is then the trailing part
    of ``in_shape``, which broadcasting already aligns (a full sum's scalar included).
    """
    if axes == tuple(range(len(axes))) and g.shape == tuple(in_shape[len(axes):]):
        return g
    kept = tuple(1 if i in axes else n for i, n in enumerate(in_shape))
    return reshape(g, kept) if g.shape != kept else g


class Sum(Primitive):
    """out = Σ over ``axes`` of a.   VJP: broadcast g (axes kept as 1) back to a's shape."""

    __slots__ = ("axes", "keepdims")

    def __init__(self, axes, keepdims):
        self.axes, self.keepdims = axes, keepdims

    def forward(self, a):
        return a.sum(axis=self.axes, keepdims=self.keepdims)

    def vjp(self, g, out, a):
        return (broadcast_to(_keep(g, a.shape, self.axes), a.shape),)


class Max(Primitive):
    """out = max over ``axes`` of a.

    VJP: where(mask, g / count, 0), mask = [a == max] (constant). Ties share the gradient
    equally, so the VJP is the gradient of the average of the tied maxima; the other entries
    get 0, even where g is infinite (g · mask had made them NaN).
    """

    __slots__ = ("axes", "keepdims")

    def __init__(self, axes, keepdims):
        self.axes, self.keepdims = axes, keepdims

    def forward(self, a):
        if any(a.shape[i] == 0 for i in self.axes):      # (0, 3) over axis 1 is (0,)
            raise ValueError(f"max: cannot reduce an empty axis of a tensor of shape "
                             f"{a.shape} (axes {self.axes})")
        return a.max(axis=self.axes, keepdims=self.keepdims)

    def vjp(self, g, out, a):
        # constants (no grad), in g's dtype: an int64 count had made float32's g float64
        mask = compare("equal", a, _keep(out, a.shape, self.axes))
        count = sum(mask.astype(g.dtype), self.axes, keepdims=True)
        return (where(mask, _keep(g, a.shape, self.axes) / count, 0.0),)


class LogSumExp(Primitive):
    """out = log Σ exp(a) over ``axes``, computed stably as m + log Σ exp(a - m).

    VJP: g * exp(a - out) (that is, g times the softmax of a over the axes), with out taken
    as 0 where it is −inf, so that a slice of all −inf gets gradient 0, not exp(−inf + inf)
    = NaN; a slice with a +inf entry gets NaN there and 0 elsewhere, as in PyTorch
    (docs/ENGINE.md, special points).
    """

    __slots__ = ("axes", "keepdims")

    def __init__(self, axes, keepdims):
        self.axes, self.keepdims = axes, keepdims

    def forward(self, a):
        if any(a.shape[i] == 0 for i in self.axes if i < a.ndim):
            raise ValueError(f"logsumexp: reducing an empty axis of shape {a.shape}")
        xp = array_module(a)
        m = a.max(axis=self.axes, keepdims=True)
        m = xp.where(xp.isfinite(m), m, 0.0)
        s = xp.log(xp.exp(a - m).sum(axis=self.axes, keepdims=True)) + m
        return s if self.keepdims else s.reshape([n for i, n in enumerate(s.shape)
                                                  if i not in self.axes])

    def vjp(self, g, out, a):
        kept = _keep(out, a.shape, self.axes)
        kept = where(compare("equal", kept, -math.inf), 0.0, kept)  # all −inf: zero grads
        return (_keep(g, a.shape, self.axes) * exp(a - kept),)


class MeanSquaredError(Primitive):
    """out = mean((a − b)²) over every element, a and b of one shape: a loss in one op
    (PyTorch's ``mse_loss``).

    VJP: (d · g·2/n, −d · g·2/n), d = a − b, as Tensor ops: the numbers of the mean of d · d
    in four ops, whose VJPs add g/n · d to itself (2·(g/n · d) is d · (g · 2/n) exactly), with
    three ops and three nodes fewer at each order (a sinusoid task's loss, every inner step).
    """

    def forward(self, a, b):
        d = a - b       # 1/n as ``mean`` lifts it (on a GPU, made once: ``tensor.number``)
        return (d * d).sum(axis=tuple(range(d.ndim))) * number(1.0 / d.size, d.dtype,
                                                                  array_module(d))

    def vjp(self, g, out, a, b):
        ga = (a - b) * (g * (2.0 / a.size))
        return (ga if a._requires_grad else None), (-ga if b._requires_grad else None)


def unbroadcast(g, shape, op):
    """Sum gradient ``g`` down to ``shape``: the one place where broadcasting is undone (the
    backward pass calls it, as ``Tensor.sum_to``, when a VJP returns a broadcast gradient)."""
    if g.shape == shape:
        return g
    lead = g.ndim - len(shape)
    if lead < 0:
        raise ValueError(f"{op}: gradient of shape {g.shape} cannot reduce to input {shape}")
    axes = tuple(range(lead)) + tuple(
        lead + i for i, n in enumerate(shape) if n == 1 and g.shape[lead + i] != 1
    )
    for i, n in enumerate(shape):
        if n != 1 and g.shape[lead + i] != n:
            raise ValueError(f"{op}: gradient of shape {g.shape} does not fit input {shape}")
    if axes and lead == 0:  # only size-1 axes to restore: keep them, no reshape needed
        return apply(Sum(axes, True), g)        # (axes sorted and in range: no normalize_axis)
    if axes:
        g = apply(Sum(axes, False), g)
    return reshape(g, shape) if g.shape != shape else g


# ----- the user-facing functions (re-exported by ops.py) ---------------------------------------
def sum(a, axis=None, keepdims=False):
    """Sum over ``axis`` (None: all axes)."""
    a = plain(a)
    return apply(Sum(normalize_axis(axis, a.ndim, "sum"), keepdims), a)


def mean(a, axis=None, keepdims=False):
    """Mean over ``axis``: a composition, sum(a) * (1 / n)."""
    a = plain(a)
    axes = normalize_axis(axis, a.ndim, "mean")
    n = math.prod(a.shape[i] for i in axes)
    if n == 0:
        raise ValueError(f"mean: reducing an empty axis of shape {a.shape}")
    if a.dtype == np.float16:   # NumPy's mean sums float16 in float32 (70000 ones: 1, not inf)
        return astype(mean(astype(a, np.float32), axes, keepdims), np.float16)
    return apply(Sum(axes, keepdims), a) * (1.0 / n)


def mean_squared_error(a, b):
    """mean((a − b)²) over every element as one op (``MeanSquaredError``); a and b of one
    shape and one float32 or float64 dtype (``functional.mse_loss`` sees to both).

    >>> from minimeta import tensor
    >>> mean_squared_error(tensor([1.0, 2.0]), tensor([0.5, 0.5])).item()
    1.25
    """
    a, b = plain(a), plain(b)
    if a.shape != b.shape or a.dtype != b.dtype or a.dtype.char not in "fd" or a.size == 0:
        raise ValueError(f"mean_squared_error: needs two non-empty float32 or float64 tensors "
                         f"of one shape and dtype, got {a.shape} {a.dtype} and {b.shape} "
                         f"{b.dtype}")
    return apply(MeanSquaredError(), a, b)


def max(a, axis=None, keepdims=False):
    """Maximum over ``axis``; tied maxima share the gradient."""
    a = plain(a)
    return apply(Max(normalize_axis(axis, a.ndim, "max"), keepdims), a)


def logsumexp(a, axis=None, keepdims=False):
    """log Σ exp(a) over ``axis``, computed without overflow."""
    a = plain(a)
    return apply(LogSumExp(normalize_axis(axis, a.ndim, "logsumexp"), keepdims), a)


def sum_to(a, shape):
    """Sum a broadcast tensor down to ``shape`` (the inverse of ``broadcast_to``)."""
    return unbroadcast(plain(a), tuple(shape), "sum_to")
