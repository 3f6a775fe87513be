"""The explicit table of every engine primitive, and a self-check that runs it.

This table drives the test suite (``tests/test_primitives.py``) and ``minimeta gradcheck``,
which checks a user's installation. It needs the ``test`` extra (hypothesis).

Each row: name, the minimeta function (Tensors in), its NumPy reference (arrays in), a hypothesis
strategy for its inputs (the domain), and whether it is smooth there. Non-smooth rows draw values
a margin away from their kinks, where the derivatives exist and the check is meaningful.
"""
from dataclasses import dataclass
from typing import Callable

import numpy as np
from hypothesis import assume, strategies as st

import minimeta as mm
from minimeta.engine.primitives.elementwise import Cast
from hypothesis import given, settings

from minimeta.testing import arrays, broadcast_shapes, distinct_arrays, shapes


@dataclass
class Row:
    """A primitive under test. ``inputs`` draws ``(arrays, static)``: the differentiable arrays
    and the static arguments; both ``fn`` and ``ref`` are called as ``f(*arrays, *static)``."""

    name: str
    fn: Callable
    ref: Callable
    inputs: st.SearchStrategy
    smooth: bool = True


def unary(low=-2.0, high=2.0, margin=0.0):
    return arrays(shapes(), low, high, margin=margin).map(lambda a: ((a,), ()))


@st.composite
def binary(draw, low=-2.0, high=2.0, low_b=None, high_b=None):
    sa, sb = draw(broadcast_shapes(2))
    a = draw(arrays(sa, low, high))
    b = draw(arrays(sb, low if low_b is None else low_b, high if high_b is None else high_b))
    return (a, b), ()


@st.composite
def separated_pair(draw):
    """Two broadcastable arrays that are nowhere within 0.05 of each other (maximum's kink)."""
    sa, sb = draw(broadcast_shapes(2))
    a, b = draw(arrays(sa)), draw(arrays(sb))
    close = np.abs(a - b) < 0.05
    a = np.where(close, a + 0.1, a) if a.shape == close.shape else a
    b = np.where(np.abs(a - b) < 0.05, b - 0.1, b) if b.shape == close.shape else b
    assume(np.all(np.abs(a - b) >= 0.05))
    return (a, b), ()


@st.composite
def reduce_args(draw, distinct=False):
    shape = draw(shapes(min_dims=1))
    x = draw(distinct_arrays(shape)) if distinct else draw(arrays(shape))
    axis = draw(st.one_of(st.none(), st.integers(-x.ndim, x.ndim - 1),
                          st.sets(st.integers(0, x.ndim - 1), min_size=1).map(tuple)))
    return (x,), (axis, draw(st.booleans()))


@st.composite
def where_args(draw):
    sc, sa, sb = draw(broadcast_shapes(3))
    cond = draw(arrays(sc, layouts=False)) > 0
    return (draw(arrays(sa)), draw(arrays(sb))), (cond,)


@st.composite
def matmul_args(draw):
    kind = draw(st.sampled_from(["mm", "batched", "vec-mat", "mat-vec", "vec-vec"]))
    n, k, m = draw(st.integers(1, 4)), draw(st.integers(1, 4)), draw(st.integers(1, 4))
    batch_a, batch_b = draw(broadcast_shapes(2, max_dims=2, max_side=3))
    shape_a = {"mm": (n, k), "batched": batch_a + (n, k), "vec-mat": (k,), "mat-vec": (n, k),
               "vec-vec": (k,)}[kind]
    shape_b = {"mm": (k, m), "batched": batch_b + (k, m), "vec-mat": batch_b + (k, m),
               "mat-vec": (k,), "vec-vec": (k,)}[kind]
    return (draw(arrays(shape_a)), draw(arrays(shape_b))), ()


@st.composite
def matmul_flags_args(draw):
    """Operands of ``matmul(a, b, trans_a, trans_b)``: stored transposed where a flag is set."""
    ta, tb = draw(st.booleans()), draw(st.booleans())
    n, k, m = draw(st.integers(1, 4)), draw(st.integers(1, 4)), draw(st.integers(1, 4))
    batch_a, batch_b = draw(broadcast_shapes(2, max_dims=2, max_side=3))
    shape_a = batch_a + ((k, n) if ta else (n, k))
    shape_b = batch_b + ((m, k) if tb else (k, m))
    return (draw(arrays(shape_a)), draw(arrays(shape_b))), (ta, tb)


def _matmul_flags_ref(a, b, ta, tb):
    return np.matmul(np.swapaxes(a, -1, -2) if ta else a, np.swapaxes(b, -1, -2) if tb else b)


@st.composite
def index_for(draw, shape):
    """A basic or advanced index into the first axis (integer arrays may repeat)."""
    n = shape[0]
    return draw(st.one_of(
        st.integers(-n, n - 1),
        st.builds(slice, st.integers(0, n), st.integers(0, n), st.integers(1, 2)),
        st.lists(st.integers(-n, n - 1), min_size=1, max_size=6).map(np.array),
        st.just((Ellipsis, 0)),
    ))


@st.composite
def getitem_args(draw):
    x = draw(arrays(shapes(min_dims=1)))
    return (x,), (draw(index_for(x.shape)),)


def _scatter_ref(g, index, shape):
    out = np.zeros(shape)
    np.add.at(out, index, g)
    return out


@st.composite
def scatter_args(draw):
    shape = draw(shapes(min_dims=1))
    index = draw(index_for(shape))
    g = draw(arrays(np.zeros(shape)[index].shape))
    return (g,), (index, shape)


@st.composite
def concat_args(draw):
    shape = draw(shapes(min_dims=1))
    axis = draw(st.integers(0, len(shape) - 1))
    parts = []
    for _ in range(draw(st.integers(1, 3))):
        s = list(shape)
        s[axis] = draw(st.integers(1, 3))
        parts.append(draw(arrays(tuple(s))))
    return tuple(parts), (axis,)


@st.composite
def transpose_args(draw):
    x = draw(arrays(shapes()))
    return (x,), (tuple(draw(st.permutations(range(x.ndim)))),)


@st.composite
def broadcast_args(draw):
    x = draw(arrays(shapes(max_dims=2)))
    lead = draw(shapes(min_dims=0, max_dims=2, max_side=3))
    target = lead + tuple(draw(st.sampled_from([n, 3])) if n == 1 else n for n in x.shape)
    return (x,), (target,)


@st.composite
def reshape_args(draw):
    x = draw(arrays(shapes()))
    return (x,), (draw(st.sampled_from([(-1,), tuple(reversed(x.shape)), (1,) + x.shape])),)


def _logsumexp_ref(x, axis, keepdims):
    return np.log(np.sum(np.exp(x), axis=axis, keepdims=keepdims))


ROWS = [
    Row("add", mm.add, np.add, binary()),
    Row("sub", mm.sub, np.subtract, binary()),
    Row("mul", mm.mul, np.multiply, binary()),
    Row("div", mm.div, np.divide, binary(low_b=0.5, high_b=2.0)),
    Row("neg", mm.neg, np.negative, unary()),
    Row("pow_scalar", lambda a: a ** 3, lambda a: a ** 3, unary()),
    Row("pow_scalar_frac", lambda a: a ** -1.5, lambda a: a ** -1.5, unary(0.3, 2.0)),
    Row("pow", mm.pow, np.power, binary(0.3, 2.0, -2.0, 2.0)),
    Row("exp", mm.exp, np.exp, unary()),
    Row("log", mm.log, np.log, unary(0.2, 3.0)),
    Row("sqrt", mm.sqrt, np.sqrt, unary(0.2, 3.0)),
    Row("tanh", mm.tanh, np.tanh, unary()),
    Row("sigmoid", mm.sigmoid, lambda a: 1 / (1 + np.exp(-a)), unary(-4.0, 4.0)),
    Row("relu", mm.relu, lambda a: np.maximum(a, 0), unary(margin=0.05), smooth=False),
    Row("abs", mm.abs, np.abs, unary(margin=0.05), smooth=False),
    Row("maximum", mm.maximum, np.maximum, separated_pair(), smooth=False),
    Row("where", lambda a, b, c: mm.where(c, a, b), lambda a, b, c: np.where(c, a, b),
        where_args()),
    Row("sum", mm.sum, lambda x, ax, kd: np.sum(x, axis=ax, keepdims=kd), reduce_args()),
    Row("mean", mm.mean, lambda x, ax, kd: np.mean(x, axis=ax, keepdims=kd), reduce_args()),
    Row("max", mm.max, lambda x, ax, kd: np.max(x, axis=ax, keepdims=kd),
        reduce_args(distinct=True), smooth=False),
    Row("logsumexp", mm.logsumexp, _logsumexp_ref, reduce_args()),
    Row("reshape", mm.reshape, np.reshape, reshape_args()),
    Row("transpose", mm.transpose, np.transpose, transpose_args()),
    Row("broadcast_to", mm.broadcast_to, np.broadcast_to, broadcast_args()),
    Row("getitem", mm.getitem, lambda x, i: x[i], getitem_args()),
    Row("scatter_add", mm.scatter_add, _scatter_ref, scatter_args()),
    Row("concatenate", lambda *a: mm.concatenate(a[:-1], a[-1]),
        lambda *a: np.concatenate(a[:-1], a[-1]), concat_args()),
    Row("matmul", mm.matmul, np.matmul, matmul_args()),
    Row("matmul_flags", mm.matmul, _matmul_flags_ref, matmul_flags_args()),
    Row("cast", lambda x: mm.apply(Cast(np.dtype(np.float64)), x), lambda x: x, unary()),
]


def run(max_examples=20, orders=(1, 2), rows=None, out=print):
    """Forward == reference and gradcheck of each order for every row; returns the worst errors.

    Raises the first failure (with hypothesis' minimal falsifying example). Returns
    ``{row name: {order: largest absolute error}}``.
    """
    report = {}
    for row in rows or ROWS:
        worst = report.setdefault(row.name, {})

        @settings(max_examples=max_examples, deadline=None, database=None)
        @given(data=st.data())
        def check(data):
            xs, static = data.draw(row.inputs)
            out_t = row.fn(*[mm.tensor(x) for x in xs], *static)
            np.testing.assert_allclose(out_t.numpy(), row.ref(*xs, *static), rtol=1e-12,
                                       atol=1e-12, err_msg=f"{row.name}: forward")
            for order in orders:
                errors = mm.gradcheck(lambda *ts: row.fn(*ts, *static), xs, order=order)
                worst[order] = max(worst.get(order, 0.0), errors[order])

        check()
        out(f"{row.name:<16s} " + "  ".join(f"order {k}: max error {v:.2e}"
                                            for k, v in sorted(worst.items())))
    return report
