"""Hypothesis strategies for property tests of differentiable functions (yours and ours).

    from hypothesis import given
    from minimeta.testing import arrays, shapes
    @given(arrays(shapes()))
    def test_my_fn(x):
        mm.gradcheck(my_fn, [x], order=2)

- ``shapes``: tuples of small sizes, size-1 axes included (zero-size axes with ``min_side=0``);
- ``broadcast_shapes``: tuples of shapes that broadcast together (size-1 and missing axes);
- ``arrays``: float arrays of a shape (or a strategy of shapes), values in [low, high] (positive
  ones with ``low > 0``, for log or sqrt: keep ``low`` far from the singularity on the scale
  of the step, say 0.1 for a third order, where a step of 1e-6 is 1e-3 of x = 1e-3 and the
  quotient is too coarse), no subnormals, optionally kept a margin away from 0 (|x| >= margin,
  for relu or abs), and drawn C-contiguous, Fortran-ordered or as a strided (non-contiguous)
  view, a layout ``mm.gradcheck`` hands on to the function; past 64 elements half of them
  dense (hypothesis' own large arrays are mostly one repeated value);
- ``distinct_arrays``: arrays whose entries differ pairwise by at least ``gap`` (no ties: for
  max, sort or anything that picks one entry among equals).

This module needs the ``test`` extra (hypothesis).

Read next: ``minimeta/selfcheck_inputs.py`` (the input domains of the primitive table).
"""
import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from .gradcheck import in_layout

SPARSE_UP_TO = 64   # arrays of more elements are drawn dense half the time (``arrays``)


def shapes(min_dims=0, max_dims=3, min_side=1, max_side=4):
    """Strategy for array shapes."""
    return hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=min_side,
                            max_side=max_side)


def broadcast_shapes(num_shapes=2, min_dims=0, max_dims=3, min_side=1, max_side=4):
    """Strategy for a tuple of ``num_shapes`` shapes that broadcast together."""
    return hnp.mutually_broadcastable_shapes(
        num_shapes=num_shapes, min_dims=min_dims, max_dims=max_dims, min_side=min_side,
        max_side=max_side,
    ).map(lambda r: r.input_shapes)


@st.composite
def arrays(draw, shape, low=-2.0, high=2.0, dtype=np.float64, margin=0.0, layouts=True):
    """Strategy for float arrays of ``shape`` (a tuple, an int or a shape strategy), values in
    [``low``, ``high``] (no subnormals: they only test the hardware).

    Past ``SPARSE_UP_TO`` elements, hypothesis' own arrays hold a few drawn values in a sea of
    one fill value (of 1500, often a single distinct value; a kernel test at the sizes where
    the fast paths start compared constants, and a ``where`` kernel with its branches swapped
    passed it): half the draws there are dense instead, every element its own uniform draw
    from a seed hypothesis draws (no shrinking inside them).

    ``margin > 0`` keeps every value at least that far from 0, inside [low, high], for checking
    functions like relu or abs away from their non-differentiable point (values can still tie:
    ``distinct_arrays`` for max). ``layouts=True`` also draws Fortran-ordered and
    non-contiguous views.
    """
    shape = _shape(draw, shape, "arrays")
    if not low < high:
        raise ValueError(f"arrays: need low < high, got {low}, {high}")
    if int(np.prod(shape)) > SPARSE_UP_TO and draw(st.booleans()):
        seed = draw(st.integers(0, 2 ** 32 - 1), label="seed of a dense array")
        values = np.random.default_rng(seed).uniform(low, high, shape)
    else:
        values = draw(hnp.arrays(np.float64, shape, elements=st.floats(
            low, high, allow_nan=False, allow_infinity=False, allow_subnormal=False)))
    if margin > 0:
        values = _away_from_zero(values, low, high, margin)
    values = _in_dtype(values, dtype, low, high, margin)
    kind = draw(st.sampled_from(["C", "F", "strided"])) if layouts else "C"
    return in_layout(values, kind)


def _shape(draw, shape, who):
    """A shape given as a tuple, a list, an int (as hypothesis' own ``arrays`` takes) or a
    shape strategy, as a tuple; else a one-line TypeError (it had been an AttributeError)."""
    if isinstance(shape, (int, np.integer)):
        return (int(shape),)
    if isinstance(shape, (tuple, list)):
        return tuple(shape)
    if isinstance(shape, st.SearchStrategy):
        return tuple(draw(shape))
    raise TypeError(f"{who}: shape must be a tuple, an int or a shape strategy "
                    f"(testing.shapes()), got {type(shape).__name__}")


def _in_dtype(values, dtype, low, high, margin):
    """float64 ``values`` cast to ``dtype`` and kept to the promises above, which a plain cast
    to float32 had broken (an audit): 1e-45 became a subnormal, and 0.7 rounds below 0.7."""
    out = np.asarray(values.astype(dtype))
    if out.dtype == values.dtype or out.dtype.kind != "f":
        return out

    def inside(bound, toward):           # the nearest value of dtype on the inner side
        b = out.dtype.type(bound)
        wide_b = float(b)                # (compared as float64: NEP 50 would compare in dtype)
        return b if (wide_b >= bound if toward > 0 else wide_b <= bound) else \
            np.nextafter(b, out.dtype.type(toward))
    wide = out.astype(np.float64)
    out = np.array(np.clip(out, inside(low, np.inf), inside(high, -np.inf)), dtype=out.dtype)
    out[np.abs(wide) < np.finfo(out.dtype).tiny] = 0       # the subnormals, to 0
    if margin > 0:
        near = np.abs(out.astype(np.float64)) < margin
        out[near] = np.copysign(inside(margin, np.inf), np.where(wide[near] < 0, -1.0, 1.0))
    return out


def _away_from_zero(values, low, high, margin):
    """``values`` in [low, high] mapped into the part of it at least ``margin`` from 0."""
    up, down = max(low, margin), min(high, -margin)   # the two pieces: [up, high], [low, down]
    if up > high and down < low:
        raise ValueError(f"arrays: no value of [{low}, {high}] is {margin} away from 0")
    if up > high or down < low:              # one piece: map [low, high] onto it
        a, b = (low, down) if up > high else (up, high)
        return np.clip(a + (values - low) * (b - a) / (high - low), a, b)
    # both: the negative values onto [low, down], the others onto [up, high]; clipped, as the
    # maps round (−0.09999999999999964 from [−5, 2] with a margin of 0.1)
    neg = low + (values - low) * (down - low) / (0.0 - low) if low < 0 else values
    pos = up + values * (high - up) / high if high > 0 else values
    return np.where(values < 0, np.clip(neg, low, down), np.clip(pos, up, high))


@st.composite
def distinct_arrays(draw, shape, low=-2.0, high=2.0, gap=1e-3):
    """Float64 arrays of ``shape`` whose values differ pairwise by at least ``gap`` (for max)."""
    shape = _shape(draw, shape, "distinct_arrays")
    n = int(np.prod(shape))
    picks = draw(st.lists(st.integers(0, int((high - low) / gap)), min_size=n, max_size=n,
                          unique=True))
    return (low + gap * np.array(picks, dtype=np.float64)).reshape(shape)
