"""Hypothesis strategies that draw the inputs of each row of the primitive table.

Each strategy draws ``(arrays, static)``: the differentiable arrays and the static arguments of
one primitive, inside its domain (positive where a log is taken, a margin away from kinks,
distinct values where a maximum is taken, a variance bounded away from 0 for batch norm).

Read next: ``minimeta/selfcheck.py`` (the primitive table and its self-check).
"""
import numpy as np
from hypothesis import assume, strategies as st

from .kernels import pool_ref
from .testing import arrays, broadcast_shapes, distinct_arrays, shapes


def unary(low=-2.0, high=2.0, margin=0.0):
    return arrays(shapes(), low, high, margin=margin).map(lambda a: ((a,), ()))


@st.composite
def binary(draw, low=-2.0, high=2.0, low_b=None, high_b=None):
    sa, sb = draw(broadcast_shapes(2))
    a = draw(arrays(sa, low, high))
    b = draw(arrays(sb, low if low_b is None else low_b, high if high_b is None else high_b))
    return (a, b), ()


@st.composite
def pow_scalar_args(draw):
    """a, and every exponent of one kind for ``a ** c`` (PowScalar), each applied (the row
    concatenates them): integers, 0 (its own branch) to 4 and negative (|a| >= 0.3), with a
    of either sign; or fractional ones, with a in [0.3, 2]."""
    if draw(st.booleans()):
        return (draw(arrays(shapes(), -2.0, 2.0, margin=0.3)),), ((0, 1, 2, 4, -1, -2),)
    return (draw(arrays(shapes(), 0.3, 2.0)),), ((0.5, 2.5, -0.5, 1.5),)


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
def relu_grad_args(draw):
    """g, and a of its shape away from 0 (ReLU's kink), both differentiated: the row checks
    a's derivative to be zero and g's to be the select."""
    shape = draw(shapes())
    return (draw(arrays(shape)), draw(arrays(shape, margin=0.05))), ()


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


@st.composite
def same_shape_pair(draw):
    """Two arrays of one (non-empty) shape: the mean squared error's operands."""
    shape = draw(shapes(min_dims=1))
    return (draw(arrays(shape)), draw(arrays(shape))), ()


@st.composite
def affine_args(draw):
    """Operands of ``affine(x, w, b)``: batched products (leading axes broadcast) and a bias
    that fits the product's shape: a row (m,), (1, m), or a full stack's."""
    n, k, m = draw(st.integers(1, 4)), draw(st.integers(1, 4)), draw(st.integers(1, 4))
    batch_x, batch_w = draw(broadcast_shapes(2, max_dims=2, max_side=3))
    out = np.broadcast_shapes(batch_x, batch_w) + (n, m)
    shape_b = draw(st.sampled_from([(m,), (1, m), out[:-2] + (1, m), out]))
    return (draw(arrays(batch_x + (n, k))), draw(arrays(batch_w + (k, m))),
            draw(arrays(shape_b))), ()


@st.composite
def index_for(draw, shape):
    """A basic or advanced index into one axis of ``shape`` (any axis): an integer, a slice,
    an integer array (entries may repeat), a boolean mask, or ``(..., 0)``."""
    axis = draw(st.integers(0, len(shape) - 1))
    n = shape[axis]
    item = draw(st.one_of(
        st.integers(-n, n - 1),
        st.builds(slice, st.integers(0, n), st.integers(0, n), st.integers(1, 2)),
        st.lists(st.integers(-n, n - 1), min_size=1, max_size=6).map(np.array),
        st.lists(st.booleans(), min_size=n, max_size=n).map(np.array),
    ))
    if draw(st.booleans()) and axis == len(shape) - 1 and len(shape) > 1:
        return (Ellipsis, item)
    return (slice(None),) * axis + (item,) if axis else item


@st.composite
def getitem_args(draw):
    x = draw(arrays(shapes(min_dims=1)))
    return (x,), (draw(index_for(x.shape)),)


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


def float32_unary():
    """One float32 array (for the float32 → float64 cast)."""
    return arrays(shapes(), dtype=np.float32).map(lambda a: ((a,), ()))


@st.composite
def conv_geometry(draw):
    """Shapes x (N,C,H,W), w (O,C,kh,kw), stride, padding, and the output's (N,O,Ho,Wo); or a
    stack of 2 tasks, a task axis in front of the three shapes."""
    n, c, o = draw(st.integers(1, 2)), draw(st.integers(1, 2)), draw(st.integers(1, 2))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    stride, padding = draw(st.integers(1, 2)), draw(st.integers(0, 1))
    h, w = draw(st.integers(max(1, kh - 2 * padding), 5)), draw(st.integers(max(1, kw - 2 *
                                                                                  padding), 5))
    ho, wo = (h + 2 * padding - kh) // stride + 1, (w + 2 * padding - kw) // stride + 1
    tasks = (2,) if draw(st.booleans()) else ()
    return (tasks + (n, c, h, w), tasks + (o, c, kh, kw), stride, padding,
            tasks + (n, o, ho, wo))


@st.composite
def causal_geometry(draw):
    """Shapes x (N,C,T), w (O,C,k), the dilation, and the output's (N,O,T): dilations up to
    past the sequence's length (a tap that reads nothing), lengths from 1."""
    n, c, o = draw(st.integers(1, 2)), draw(st.integers(1, 2)), draw(st.integers(1, 2))
    k, t, dilation = draw(st.integers(1, 3)), draw(st.integers(1, 6)), draw(st.integers(1, 4))
    return (n, c, t), (o, c, k), dilation, (n, o, t)


@st.composite
def causal_args(draw):
    xs, ws, dilation, _ = draw(causal_geometry())
    return (draw(arrays(xs)), draw(arrays(ws))), (dilation,)


@st.composite
def causal_input_grad_args(draw):
    _, ws, dilation, ys = draw(causal_geometry())
    return (draw(arrays(ys)), draw(arrays(ws))), (dilation,)


@st.composite
def causal_weight_grad_args(draw):
    xs, ws, dilation, ys = draw(causal_geometry())
    return (draw(arrays(xs)), draw(arrays(ys))), (ws, dilation)


@st.composite
def conv_args(draw):
    xs, ws, stride, padding, _ = draw(conv_geometry())
    return (draw(arrays(xs)), draw(arrays(ws))), (stride, padding)


@st.composite
def conv_bias_args(draw):
    """conv_args and a bias: (O,), or (T, O) on a stack."""
    xs, ws, stride, padding, _ = draw(conv_geometry())
    return (draw(arrays(xs)), draw(arrays(ws)), draw(arrays(ws[:-4] + ws[-4:-3]))), \
        (stride, padding)


@st.composite
def bias_grad_args(draw):
    """g (N, C, ...) of 2 to 4 axes, or a stack (T, N, C, ...) of 3 to 5; whether stacked."""
    stacked = draw(st.booleans())
    shape = tuple(draw(st.lists(st.integers(1, 3), min_size=2 + stacked, max_size=4 + stacked)))
    return (draw(arrays(shape)),), (stacked,)


@st.composite
def conv_input_grad_args(draw):
    xs, ws, stride, padding, ys = draw(conv_geometry())
    return (draw(arrays(ys)), draw(arrays(ws))), (xs, stride, padding)


@st.composite
def conv_weight_grad_args(draw):
    xs, ws, stride, padding, ys = draw(conv_geometry())
    return (draw(arrays(xs)), draw(arrays(ys))), (ws, stride, padding)


@st.composite
def pool_args(draw):
    """x (N,C,H,W), or a stack of 2 tasks (2,N,C,H,W), with distinct values (a unique maximum
    in every window), kernel, stride."""
    kernel, stride = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    tasks = (2,) if draw(st.booleans()) else ()
    shape = tasks + (draw(st.integers(1, 2)), draw(st.integers(1, 2)),
                     draw(st.integers(kernel, 5)), draw(st.integers(kernel, 5)))
    return (draw(distinct_arrays(shape, gap=1e-2)),), (kernel, stride)


def max_pool2d_images(x, kernel, stride):
    """``pool_ref.max_pool2d`` (NCHW images) on x or on each image of a stack (T,N,C,H,W):
    (y, argmax), the argmax flat indices into x."""
    images = x.reshape((-1,) + x.shape[-3:])
    y, argmax = pool_ref.max_pool2d(images, kernel, stride)
    shape = x.shape[:-3] + y.shape[1:]
    return y.reshape(shape), argmax.reshape(shape)


@st.composite
def pool_backward_args(draw):
    """g shaped like a pooled output, with the argmax of a real pooling of a drawn x."""
    (x,), (kernel, stride) = draw(pool_args())
    y, argmax = max_pool2d_images(x, kernel, stride)
    return (draw(arrays(y.shape)),), (argmax, x.shape)


@st.composite
def pool_gather_args(draw):
    """h shaped like a pooling's input, with the argmax of a real pooling of a drawn x."""
    (x,), (kernel, stride) = draw(pool_args())
    return (draw(arrays(x.shape)),), (max_pool2d_images(x, kernel, stride)[1],)


@st.composite
def batch_norm_args(draw, with_g=False, with_h=False):
    """x (N,C) or (N,C,H,W) whose per-channel variance is > 0.05, weight and bias (C,) (and an
    incoming gradient g like x; and h, a packed cotangent of the backward's (dx, dw, db)); or
    a stack of 2 tasks: x (2,N,C[,H,W]), weight and bias (2,C)."""
    c = draw(st.integers(1, 3))
    shape = draw(st.sampled_from([(draw(st.integers(2, 4)), c),
                                  (draw(st.integers(1, 2)), c, draw(st.integers(1, 3)), 2)]))
    tasks = (2,) if draw(st.booleans()) else ()
    x = draw(arrays(tasks + shape))
    axes = (len(tasks),) + tuple(range(2 + len(tasks), x.ndim))
    assume(np.all(x.var(axis=axes) > 0.05))
    xs = (x, draw(arrays(tasks + (c,))), draw(arrays(tasks + (c,))))
    if with_g or with_h:
        xs += (draw(arrays(x.shape)),)
    if with_h:
        xs += (draw(arrays((x.size + 2 * xs[1].size,))),)
    return xs, (1e-5,)


@st.composite
def attention_args(draw, with_g=False):
    """q (B,Q,D), s (B,S,D), y (B,S,N) (and an incoming gradient (B,Q,N))."""
    b, q, s = draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    d, n = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    xs = (draw(arrays((b, q, d), margin=0.1)), draw(arrays((b, s, d), margin=0.1)),
          draw(arrays((b, s, n))))
    return (xs + (draw(arrays((b, q, n))),) if with_g else xs), (1e-8,)

