"""Primitives that move elements without arithmetic: reshape, transpose, broadcast, indexing.

``GetItem`` and ``ScatterAdd`` form a closed pair: the VJP of reading ``a[index]`` is adding
``g`` into zeros at ``index``, and the VJP of that scatter is reading ``g[index]`` again. So
indexing stays differentiable to any order.

Read next: ``minimeta/engine/primitives/reductions.py`` (sum, max, logsumexp, and the unbroadcast).
"""
import copy
import math
import operator

import numpy as np

from ..autodiff import Primitive, apply
from ..backend import array_module, to_device
from ...kernels import on_gpu
from ..tensor import Tensor, plain


class Reshape(Primitive):
    """out = a reshaped to ``shape``.   VJP: g reshaped to a's shape."""

    __slots__ = ("shape",)

    def __init__(self, shape):
        self.shape = shape

    def forward(self, a):
        return a.reshape(self.shape)

    def vjp(self, g, out, a):
        return (reshape(g, a.shape),)


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
        return (transpose(g, tuple(inverse)),)


class BroadcastTo(Primitive):
    """out = a broadcast to ``shape`` (a read-only view).

    VJP: g itself; the backward pass's single unbroadcast step (``reductions.sum_to``) sums it
    back to a's shape.
    """

    __slots__ = ("shape",)

    def __init__(self, shape):
        self.shape = shape

    def forward(self, a):
        return array_module(a).broadcast_to(a, self.shape)

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
        return (scatter_add(g, self.index, a.shape),)


class ScatterAdd(Primitive):
    """out = zeros(shape) with ``g`` added at ``index`` (repeated indices accumulate).

    VJP: g_out[index] (reading back where the values were added).
    """

    __slots__ = ("index", "shape")

    def __init__(self, index, shape):
        self.index, self.shape = index, shape

    def forward(self, g):
        xp = array_module(g)
        out = xp.zeros(self.shape, dtype=g.dtype)
        if has_advanced(self.index):
            xp.add.at(out, self.index, g)  # accumulates repeated indices
        else:
            out[self.index] = g  # basic indexing never repeats an element
        return out

    def vjp(self, g, out, a):
        return (getitem(g, self.index),)


class Concatenate(Primitive):
    """out = the inputs joined along ``axis``.   VJP: g sliced back into the input pieces."""

    __slots__ = ("axis",)

    def __init__(self, axis):
        self.axis = axis

    def forward(self, *arrays):
        return array_module(arrays[0]).concatenate(arrays, axis=self.axis)

    def vjp(self, g, out, *inputs):
        grads, start = [], 0
        lead = (slice(None),) * self.axis
        for t in inputs:
            stop = start + t.shape[self.axis]
            grads.append(getitem(g, lead + (slice(start, stop),)) if t.requires_grad
                         else None)
            start = stop
        return tuple(grads)


# ----- the user-facing functions (re-exported by ops.py) ---------------------------------------
def integer(value, op, what="axis"):
    """``value`` as a Python int: an int or a NumPy integer, not a bool (``x.sum(True)``, a
    slip for ``keepdims=True``, would be axis 1) nor anything else, which is a TypeError
    naming ``op``."""
    try:
        if isinstance(value, (bool, np.bool_)):
            raise TypeError
        return operator.index(value)        # (a float, a 0-d float array: a TypeError)
    except TypeError:
        raise TypeError(f"{op}: {what} must be an integer, got {value!r}") from None


def integers(values, op, what="axis"):
    """An int or a sequence of them (``integer`` each; a 1-d NumPy array too) as a tuple of
    ints."""
    if type(values) is tuple:       # the engine's own calls pass tuples of ints: as they are
        for v in values:
            if type(v) is not int:
                break
        else:
            return values
    if isinstance(values, (bool, np.bool_)) or (hasattr(values, "__index__") and
                                                 np.ndim(values) == 0):
        return (integer(values, op, what),)
    if isinstance(values, np.ndarray) and values.dtype.kind not in "iu":   # ([] is float)
        raise TypeError(f"{op}: {what} must be an integer or a tuple of them, got {values!r}")
    try:
        return tuple(integer(v, op, what) for v in values)
    except TypeError:
        if isinstance(values, (tuple, list)):
            raise
        raise TypeError(f"{op}: {what} must be an integer or a tuple of them, got "
                        f"{values!r}") from None


def reshape(a, shape):
    """Reshape (one -1 allowed)."""
    a = plain(a)
    asked = integers(shape, "reshape", "shape")
    if asked.count(-1) > 1 or any(n < -1 for n in asked):
        raise ValueError(f"reshape: shape {asked} may hold one -1 and no other negative size")
    known = math.prod(n for n in asked if n != -1)
    shape = tuple(a.size // known if n == -1 and known else n for n in asked)
    if math.prod(shape) != a.size or -1 in shape:
        raise ValueError(f"reshape: cannot reshape a tensor of shape {a.shape} ({a.size} "
                         f"elements) into {asked}")
    return a if shape == a.shape else apply(Reshape(shape), a)


def axis_in(axis, ndim, op):
    """``axis`` as 0..ndim−1 (negative counts from the end); a ValueError naming ``op`` where
    NumPy would raise its AxisError, never a silent wrap-around."""
    axis = integer(axis, op)
    if not -ndim <= axis < ndim:
        raise ValueError(f"{op}: axis {axis} is out of range for a tensor of {ndim} dims")
    return axis % ndim


def transpose(a, axes=None):
    """Permute axes (None: reverse them)."""
    a = plain(a)
    axes = tuple(reversed(range(a.ndim))) if axes is None else \
        tuple(axis_in(x, a.ndim, "transpose") for x in integers(axes, "transpose", "axes"))
    if sorted(axes) != list(range(a.ndim)):
        raise ValueError(f"transpose: {axes} is not a permutation of the {a.ndim} axes")
    return apply(Transpose(axes), a)


def swapaxes(a, i, j):
    """Exchange two axes (a transpose)."""
    a = plain(a)
    axes = list(range(a.ndim))
    i, j = axis_in(i, a.ndim, "swapaxes"), axis_in(j, a.ndim, "swapaxes")
    axes[i], axes[j] = axes[j], axes[i]
    return transpose(a, axes)


def expand_dims(a, axis):
    """Insert size-1 axes at ``axis`` (an int or a tuple, positions in the result, as in
    NumPy; a reshape)."""
    a = plain(a)
    axes = integers(axis, "expand_dims")
    ndim = a.ndim + len(axes)
    for x in axes:
        if not -ndim <= x < ndim:
            raise ValueError(f"expand_dims: axis {x} is out of range for a tensor of {a.ndim} "
                             f"dims (a new axis goes at {-ndim}..{ndim - 1})")
    new = {x % ndim for x in axes}
    if len(new) < len(axes):
        raise ValueError(f"expand_dims: axis {axis} repeats an axis")
    rest = iter(a.shape)
    return reshape(a, [1 if k in new else next(rest) for k in range(ndim)])


def squeeze(a, axis=None):
    """Remove the size-1 axes ``axis`` (an int, a tuple, or None: every size-1 axis; a
    reshape)."""
    a = plain(a)
    axes = [k for k, n in enumerate(a.shape) if n == 1] if axis is None else \
        [axis_in(x, a.ndim, "squeeze") for x in integers(axis, "squeeze")]
    if len(set(axes)) < len(axes):
        raise ValueError(f"squeeze: axis {axis} repeats an axis")
    for x in axes:
        if a.shape[x] != 1:
            raise ValueError(f"squeeze: axis {x} of shape {a.shape} is not of size 1")
    return reshape(a, [n for k, n in enumerate(a.shape) if k not in axes])


def broadcast_to(a, shape):
    """Broadcast to ``shape`` (its VJP is the engine's unbroadcast)."""
    a = plain(a)
    shape = integers(shape, "broadcast_to", "shape")
    if a.shape == shape:
        return a
    if not fits(a.shape, shape):
        raise ValueError(f"broadcast_to: cannot broadcast shape {a.shape} to {shape}")
    return apply(BroadcastTo(shape), a)


def fits(small, shape):
    """True when an array of shape ``small`` broadcasts to ``shape`` as it is: no more axes,
    and each of its sizes 1 or ``shape``'s (NumPy's rule, read from the right).

    >>> fits((3, 1), (2, 3, 4)), fits((3,), (3, 1))
    (True, False)
    """
    lead = len(shape) - len(small)
    return lead >= 0 and all(n == 1 or n == m for n, m in zip(small, shape[lead:]))


def integer_arrays(index, ndim):
    """(position in the index tuple, axis, array) for each integer array in a NumPy index of
    an ``ndim``-axis array (the tuple may hold ints, slices, arrays, boolean masks, ``...`` and
    ``None``); host arrays and lists only.

    >>> [(p, axis, a.tolist()) for p, axis, a in integer_arrays((None, ..., [0, 2]), 3)]
    [(2, 2, [0, 2])]
    """
    items = index if isinstance(index, tuple) else (index,)
    arrays = [np.asarray(i) if isinstance(i, (list, np.ndarray)) else None for i in items]

    def width(item, arr):           # the axes an item indexes
        if item is None or item is Ellipsis:
            return 0
        return arr.ndim if arr is not None and arr.dtype == bool else 1

    rest = ndim - sum(width(i, a) for i, a in zip(items, arrays))
    axis = 0
    for position, (item, arr) in enumerate(zip(items, arrays)):
        if item is Ellipsis:
            axis += rest
            continue
        if arr is not None and np.issubdtype(arr.dtype, np.integer):
            yield position, axis, arr
        axis += width(item, arr)


def _buffer(obj):
    """Whether ``obj`` exposes memory NumPy can view (a memoryview, ``array.array``)."""
    try:
        memoryview(obj)
        return True
    except TypeError:
        return False


def _plain_index(index, shape, device, op):
    """Replace Tensors inside an index by their arrays (indices are never differentiated),
    and put index arrays on the indexed tensor's device; the caller's own arrays and lists
    are copied, so the VJP scatters where the forward gathered even if the caller's array
    changes between them (labels reused for the next batch). Off the CPU, host index arrays
    are checked against ``shape`` first: CuPy wraps an out-of-range entry around without a
    word (NumPy raises). Index arrays already on the GPU are not checked (it would wait)."""
    def own(i):
        if isinstance(i, Tensor) or isinstance(i, np.generic) or on_gpu(i):
            return i.data if isinstance(i, Tensor) else i
        if isinstance(i, (list, tuple, range)):
            # a tuple or range inside the index is an index array to NumPy, as a list is:
            # written as a list, so the scatter adds its repeats (x[(0, 0), 1] had set once)
            return copy.deepcopy(list(i))
        return np.array(i) if hasattr(i, "__array__") or _buffer(i) else i
    index = tuple(map(own, index)) if isinstance(index, tuple) else own(index)
    if device == "cpu":     # NumPy checks the bounds itself
        return index
    for _, axis, arr in integer_arrays(index, len(shape)):
        n = shape[axis] if axis < len(shape) else 0
        bad = arr[(arr < -n) | (arr >= n)]
        if bad.size:
            raise IndexError(f"{op}: index {bad.flat[0]} is out of bounds for axis {axis} "
                             f"with size {n}")

    def moved(i):
        return to_device(np.asarray(i), device) if isinstance(i, (np.ndarray, list)) else i
    return tuple(map(moved, index)) if isinstance(index, tuple) else moved(index)


def getitem(a, index):
    """``a[index]`` with NumPy semantics; differentiable through a scatter-add."""
    a = plain(a)
    return apply(GetItem(_plain_index(index, a.shape, a.device, "getitem")), a)


def scatter_add(g, index, shape):
    """zeros(shape) with ``g`` added at ``index`` (the VJP of ``getitem``); ``g`` broadcasts
    to the selection ``zeros(shape)[index]`` as in ``out[index] = g``."""
    g, shape = plain(g), integers(shape, "scatter_add", "shape")
    index = _plain_index(index, shape, g.device, "scatter_add")
    try:
        return apply(ScatterAdd(index, shape), g)
    except ValueError as e:     # NumPy's broadcasting error, restated with the op's name
        raise ValueError(f"scatter_add: g of shape {g.shape} does not fit "
                         f"zeros({shape})[index] ({e})") from None


def concatenate(tensors, axis=0):
    """Join tensors along an existing axis (None: flattened, as in NumPy)."""
    tensors = [t if isinstance(t, Tensor) else Tensor(t) for t in tensors]
    if not tensors:
        raise ValueError("concatenate: needs at least one tensor")
    if axis is None:                        # NumPy's: each flattened first
        tensors, axis = [reshape(t, -1) for t in tensors], 0
    if tensors[0].ndim == 0:
        raise ValueError("concatenate: zero-dimensional tensors cannot be joined (stack them)")
    axis = axis_in(axis, tensors[0].ndim, "concatenate")
    for t in tensors[1:]:
        if t.ndim != tensors[0].ndim or any(
            m != n for k, (m, n) in enumerate(zip(t.shape, tensors[0].shape)) if k != axis
        ):
            shapes = [x.shape for x in tensors]
            raise ValueError(f"concatenate: shapes {shapes} differ off axis {axis}")
    return apply(Concatenate(axis), *tensors)


def stack(tensors, axis=0):
    """Join tensors of equal shape along a new axis (expand_dims, then concatenate)."""
    tensors = [t if isinstance(t, Tensor) else Tensor(t) for t in tensors]
    if len({t.shape for t in tensors}) > 1:
        raise ValueError(f"stack: shapes differ: {[t.shape for t in tensors]}")
    return concatenate([expand_dims(t, axis) for t in tensors], axis)
