"""Primitives that move elements without arithmetic: reshape, transpose, broadcast, indexing.

``GetItem`` and ``ScatterAdd`` form a closed pair: the VJP of reading ``a[index]`` is adding
``g`` into zeros at ``index``, and the VJP of that scatter is reading ``g[index]`` again. So
indexing stays differentiable to any order.

Read next: ``linalg.py``.
"""
from ..autodiff import Primitive
from .. import ops


class Reshape(Primitive):
    """out = a reshaped to ``shape``.   VJP: g reshaped to a's shape."""

    __slots__ = ("shape",)

    def __init__(self, shape):
        self.shape = shape

    def forward(self, a):
        return a.reshape(self.shape)

    def vjp(self, g, out, a):
        return (ops.reshape(g, a.shape),)


class Transpose(Primitive):
    """out = a with axes permuted by ``axes``.   VJP: g permuted by the inverse permutation."""

    __slots__ = ("axes",)

    def __init__(self, axes):
        self.axes = axes

    def forward(self, a):
        return a.transpose(self.axes)

    def vjp(self, g, out, a):
        inverse = [0] * len(self.axes)
        for i, ax in enumerate(self.axes):
            inverse[ax] = i
        return (ops.transpose(g, tuple(inverse)),)


class BroadcastTo(Primitive):
    """out = a broadcast to ``shape`` (a read-only view).

    VJP: g itself; the engine's single unbroadcast step sums it back to a's shape.
    """

    __slots__ = ("shape",)

    def __init__(self, shape):
        self.shape = shape

    def forward(self, a):
        return ops.xp_of(a).broadcast_to(a, self.shape)

    def vjp(self, g, out, a):
        return (g,)


def has_advanced(index):
    """True when ``index`` holds an integer/boolean array (NumPy "advanced" indexing)."""
    items = index if isinstance(index, tuple) else (index,)
    return any(hasattr(i, "shape") or isinstance(i, list) for i in items)


class GetItem(Primitive):
    """out = a[index] (basic or advanced indexing).   VJP: scatter_add(g, index, a.shape)."""

    __slots__ = ("index",)

    def __init__(self, index):
        self.index = index

    def forward(self, a):
        return a[self.index]

    def vjp(self, g, out, a):
        return (ops.scatter_add(g, self.index, a.shape),)


class ScatterAdd(Primitive):
    """out = zeros(shape) with ``g`` added at ``index`` (repeated indices accumulate).

    VJP: g_out[index] (reading back where the values were added).
    """

    __slots__ = ("index", "shape")

    def __init__(self, index, shape):
        self.index, self.shape = index, shape

    def forward(self, g):
        xp = ops.xp_of(g)
        out = xp.zeros(self.shape, dtype=g.dtype)
        if has_advanced(self.index):
            xp.add.at(out, self.index, g)  # accumulates repeated indices
        else:
            out[self.index] = g  # basic indexing never repeats an element
        return out

    def vjp(self, g, out, a):
        return (ops.getitem(g, self.index),)


class Concatenate(Primitive):
    """out = the inputs joined along ``axis``.   VJP: g sliced back into the input pieces."""

    __slots__ = ("axis",)

    def __init__(self, axis):
        self.axis = axis

    def forward(self, *arrays):
        return ops.xp_of(arrays[0]).concatenate(arrays, axis=self.axis)

    def vjp(self, g, out, *inputs):
        grads, start = [], 0
        lead = (slice(None),) * self.axis
        for t in inputs:
            stop = start + t.shape[self.axis]
            grads.append(ops.getitem(g, lead + (slice(start, stop),)) if t.requires_grad
                         else None)
            start = stop
        return tuple(grads)
