"""The table of every engine primitive, and a self-check that runs it.

This table drives the test suite (``tests/test_primitives.py``) and ``minimeta gradcheck``,
which checks a user's installation. It needs the ``test`` extra (hypothesis).

Each row: a name, the minimeta function (Tensors in), its NumPy reference (arrays in), a
hypothesis strategy for its inputs (``selfcheck_inputs.py``: the domain), the primitive classes
it exercises (``covers``: the coverage test finds every ``Primitive`` subclass at run time and
asks for a row that covers it, then checks that the row's graph really holds it), and the orders
to check. Orders from 2 on go through ``gradcheck``'s composition, so each primitive's VJP is
proven differentiable in its incoming gradient, and linear ops compare non-zero numbers. A row
of several inputs is checked again with a drawn subset of them held constant (``partial``).

Read next: ``minimeta/viz.py`` (a graph as Graphviz DOT text).
"""
import warnings
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from hypothesis import HealthCheck, Phase, given, settings, strategies as st

import minimeta as mm
from minimeta import kernels as K
from minimeta.engine.autodiff import Primitive, toposort
from minimeta.gradcheck import GradcheckError, GradcheckReport, GradcheckWarning
from minimeta.engine.primitives import (attention as At, causal as Ca, conv as C,
                                        elementwise as E, fused as Fu, linalg as L,
                                        normalization as N, reductions as R, shape as S)
from minimeta.selfcheck_inputs import (affine_args, attention_args, batch_norm_args,
                                       bias_grad_args, binary,
                                       broadcast_args, causal_args, causal_input_grad_args,
                                       causal_weight_grad_args, concat_args, conv_args,
                                       conv_bias_args,
                                       conv_input_grad_args, conv_weight_grad_args,
                                       float32_unary, getitem_args,
                                       matmul_args, matmul_flags_args, max_pool2d_images,
                                       pool_args, pool_backward_args, pool_gather_args,
                                       pow_scalar_args, reduce_args, relu_grad_args,
                                       reshape_args, same_shape_pair, scatter_args,
                                       separated_pair, transpose_args, unary, where_args)


@dataclass
class Row:
    """A primitive under test. ``inputs`` draws ``(arrays, static)``: the differentiable arrays
    and the static arguments; both ``fn`` and ``ref`` are called as ``f(*arrays, *static)``.
    ``tol`` holds gradcheck options (eps, atol, rtol) for rows that need other ones."""

    name: str
    fn: Callable
    ref: Callable
    inputs: st.SearchStrategy
    covers: tuple
    orders: tuple = (1, 2)
    dtype: type = np.float64
    tol: dict = field(default_factory=dict)


def _matmul_flags_ref(a, b, ta, tb):
    return np.matmul(np.swapaxes(a, -1, -2) if ta else a, np.swapaxes(b, -1, -2) if tb else b)


def _scatter_ref(g, index, shape):
    out = np.zeros(shape)
    np.add.at(out, index, g)
    return out


def _logsumexp_ref(x, axis, keepdims):
    return np.log(np.sum(np.exp(x), axis=axis, keepdims=keepdims))


def _conv_bias_ref(x, w, b, stride, padding):
    return K.norm_ref.add_bias(K.conv_ref.conv2d(x, w, stride, padding), b)


def _pool_backward(g, argmax, x_shape):
    return mm.apply(C.MaxPool2dBackward(argmax, x_shape), g)


def _pool_gather(h, argmax):
    return mm.apply(C.MaxPool2dGather(argmax), h)


def _fused_vjp(fused):
    return lambda *ts: mm.apply(Fu.FusedVJP(fused), *ts)


F32 = dict(eps=1e-3, atol=2e-3, rtol=2e-3)  # float32 leaves: rounding of x ± εu is ~1e-7
# (a Cast VJP off by 0.1% passes them: test_primitives checks a cast's derivatives exactly)

ROWS = [
    Row("add", mm.add, np.add, binary(), (E.Add,)),
    Row("sub", mm.sub, np.subtract, binary(), (E.Sub,)),
    Row("mul", mm.mul, np.multiply, binary(), (E.Mul,)),
    Row("div", mm.div, np.divide, binary(low_b=0.5, high_b=2.0), (E.Div,)),
    Row("neg", mm.neg, np.negative, unary(), (E.Neg,)),
    Row("pow_scalar", lambda a: a ** 3, lambda a: a ** 3, unary(), (E.PowScalar,)),
    Row("pow_scalar_frac", lambda a: a ** -1.5, lambda a: a ** -1.5, unary(0.3, 2.0),
        (E.PowScalar,)),
    Row("pow_scalar_exponents",
        lambda a, cs: mm.concatenate([mm.reshape(a ** c, (-1,)) for c in cs]),
        lambda a, cs: np.concatenate([np.reshape(a ** c, (-1,)) for c in cs]),
        pow_scalar_args(), (E.PowScalar,)),
    Row("pow", mm.pow, np.power, binary(0.3, 2.0, -2.0, 2.0), (E.Pow,)),
    Row("exp", mm.exp, np.exp, unary(), (E.Exp,)),
    Row("log", mm.log, np.log, unary(0.2, 3.0), (E.Log,)),
    Row("sqrt", mm.sqrt, np.sqrt, unary(0.2, 3.0), (E.Sqrt,)),
    Row("tanh", mm.tanh, np.tanh, unary(), (E.Tanh,)),
    Row("sigmoid", mm.sigmoid, lambda a: 1 / (1 + np.exp(-a)), unary(-20.0, 20.0),
        (E.Sigmoid,)),   # to -20: where (1 + tanh(a/2)) / 2 had lost float32 to cancellation
    Row("relu", mm.relu, lambda a: np.maximum(a, 0), unary(margin=0.05), (E.Relu,)),
    Row("relu_grad", lambda g, a: E.relu_grad(a, g), lambda g, a: np.where(a > 0, g, 0),
        relu_grad_args(), (E.ReluGrad,)),
    Row("abs", mm.abs, np.abs, unary(margin=0.05), (E.Abs,)),
    Row("maximum", mm.maximum, np.maximum, separated_pair(), (E.Maximum,)),
    Row("where", lambda a, b, c: mm.where(c, a, b), lambda a, b, c: np.where(c, a, b),
        where_args(), (E.Where,)),
    Row("cast", lambda x: mm.astype(x, np.float64), lambda x: x.astype(np.float64),
        float32_unary(), (E.Cast,), dtype=np.float32, tol=F32),
    Row("cast_down", lambda x: mm.astype(x, np.float32), lambda x: x.astype(np.float32),
        unary(), (E.Cast,), tol=F32),    # float64 -> float32: the VJP's other direction
    Row("mean_squared_error", mm.mean_squared_error, lambda a, b: np.mean((a - b) ** 2),
        same_shape_pair(), (R.MeanSquaredError,)),
    Row("sum", mm.sum, lambda x, ax, kd: np.sum(x, axis=ax, keepdims=kd), reduce_args(),
        (R.Sum,)),
    Row("mean", mm.mean, lambda x, ax, kd: np.mean(x, axis=ax, keepdims=kd), reduce_args(),
        (R.Sum,)),
    Row("max", mm.max, lambda x, ax, kd: np.max(x, axis=ax, keepdims=kd),
        reduce_args(distinct=True), (R.Max,)),
    Row("logsumexp", mm.logsumexp, _logsumexp_ref, reduce_args(), (R.LogSumExp,)),
    Row("reshape", mm.reshape, np.reshape, reshape_args(), (S.Reshape,)),
    Row("transpose", mm.transpose, np.transpose, transpose_args(), (S.Transpose,)),
    Row("broadcast_to", mm.broadcast_to, np.broadcast_to, broadcast_args(), (S.BroadcastTo,)),
    Row("getitem", mm.getitem, lambda x, i: x[i], getitem_args(), (S.GetItem,)),
    Row("scatter_add", mm.scatter_add, _scatter_ref, scatter_args(), (S.ScatterAdd,)),
    Row("concatenate", lambda *a: mm.concatenate(a[:-1], a[-1]),
        lambda *a: np.concatenate(a[:-1], a[-1]), concat_args(), (S.Concatenate,)),
    Row("matmul", mm.matmul, np.matmul, matmul_args(), (L.MatMul,)),
    Row("matmul_flags", mm.matmul, _matmul_flags_ref, matmul_flags_args(), (L.MatMul,)),
    Row("affine", mm.affine, lambda x, w, b: np.matmul(x, w) + b, affine_args(), (L.Affine,)),
    Row("conv2d", C.conv2d, K.conv_ref.conv2d, conv_args(), (C.Conv2d,), orders=(1, 2, 3)),
    Row("conv2d_bias", lambda x, w, b, s, p: C.conv2d(x, w, s, p, b), _conv_bias_ref,
        conv_bias_args(), (C.Conv2d,), orders=(1, 2, 3)),
    Row("bias_grad", C.bias_grad, K.norm_ref.bias_grad, bias_grad_args(), (C.BiasGrad,),
        orders=(1, 2, 3)),
    Row("conv2d_input_grad", C.conv2d_input_grad, K.conv_ref.conv2d_input_grad,
        conv_input_grad_args(), (C.Conv2dInputGrad,), orders=(1, 2, 3)),
    Row("conv2d_weight_grad", C.conv2d_weight_grad, K.conv_ref.conv2d_weight_grad,
        conv_weight_grad_args(), (C.Conv2dWeightGrad,), orders=(1, 2, 3)),
    Row("causal_conv1d", Ca.causal_conv1d, K.causal_ref.causal_conv1d, causal_args(),
        (Ca.CausalConv1d,), orders=(1, 2, 3)),
    Row("causal_conv1d_input_grad", Ca.causal_conv1d_input_grad,
        K.causal_ref.causal_conv1d_input_grad, causal_input_grad_args(),
        (Ca.CausalConv1dInputGrad,), orders=(1, 2, 3)),
    Row("causal_conv1d_weight_grad", Ca.causal_conv1d_weight_grad,
        K.causal_ref.causal_conv1d_weight_grad, causal_weight_grad_args(),
        (Ca.CausalConv1dWeightGrad,), orders=(1, 2, 3)),
    Row("max_pool2d", C.max_pool2d, lambda x, k, s: max_pool2d_images(x, k, s)[0],
        pool_args(), (C.MaxPool2d,)),
    Row("max_pool2d_backward", _pool_backward, K.pool_ref.max_pool2d_backward,
        pool_backward_args(), (C.MaxPool2dBackward,)),
    Row("max_pool2d_gather", _pool_gather, lambda h, argmax: np.take(h, argmax),
        pool_gather_args(), (C.MaxPool2dGather,)),
    Row("batch_norm", lambda x, w, b, eps: mm.apply(N.BatchNorm(eps), x, w, b),
        lambda x, w, b, eps: K.norm_ref.batch_norm(x, w, b, eps)[0], batch_norm_args(),
        (N.BatchNorm,)),
    Row("batch_norm_vjp", lambda x, w, b, g, eps: _fused_vjp(N.BatchNorm(eps))(x, w, b, g),
        K.norm_ref.batch_norm_backward, batch_norm_args(with_g=True), (Fu.FusedVJP,)),
    Row("batch_norm_vjp_vjp",
        lambda x, w, b, g, h, eps: mm.apply(Fu.FusedVJPVJP(N.BatchNorm(eps)), x, w, b, g, h),
        K.norm_ref.batch_norm_double_backward, batch_norm_args(with_h=True),
        (Fu.FusedVJPVJP,)),
    Row("cosine_attention", At.cosine_attention, K.attention_ref.cosine_attention,
        attention_args(), (At.CosineAttention,)),
    Row("cosine_attention_vjp",
        lambda q, s, y, g, eps: _fused_vjp(At.CosineAttention(eps))(q, s, y, g),
        K.attention_ref.cosine_attention_backward, attention_args(with_g=True),
        (Fu.FusedVJP,)),
    Row("alias", lambda a: mm.apply(Fu.Alias(), a), lambda a: a, unary(), (Fu.Alias,)),
]


def primitive_classes(package="minimeta"):
    """Every concrete ``Primitive`` subclass defined now (abstract bases set ``abstract``) in
    ``package`` (None: anywhere; a reader's own, the tour's doctests' among them)."""
    found, todo = set(), [Primitive]
    while todo:
        for sub in todo.pop().__subclasses__():
            todo.append(sub)
            module = sub.__module__
            if not sub.__dict__.get("abstract", False) and (
                    package is None or module == package or module.startswith(package + ".")):
                found.add(sub)
    return found


# rows whose static arrays an op makes on the device in real use (the argmax of a pooling)
DEVICE_STATIC = ("max_pool2d_backward", "max_pool2d_gather")


def _derivatives(row, xs, static, device, v, u):
    """Forward, the VJP with incoming gradient ``v``, and the VJP of ⟨VJP, u⟩ in the inputs
    and in ``v`` (linear ops too have a non-zero one): all as host arrays."""
    from .engine.backend import to_device

    leaves = [mm.tensor(np.asarray(x, dtype=row.dtype), requires_grad=True, device=device)
              for x in xs]
    static = [to_device(s, device) if row.name in DEVICE_STATIC and isinstance(s, np.ndarray)
              else s for s in static]
    y = row.fn(*leaves, *static)
    vt = mm.tensor(v.astype(y.dtype), requires_grad=True, device=device)
    wrt = leaves + [vt]
    first = mm.grad((y * vt).sum(), wrt, create_graph=True, allow_unused=True)
    inner = [(g * mm.tensor(w.astype(g.dtype), device=device)).sum()
             for g, w in zip(first, u) if g is not None and g.requires_grad]
    second = mm.grad(sum(inner[1:], inner[0]), wrt, allow_unused=True)
    return [y.numpy()] + [np.zeros(t.shape) if g is None else g.numpy()
                          for g, t in zip(list(first) + list(second), wrt + wrt)]


def device_parity(row, xs, static, device, seed=0):
    """The largest difference between ``row`` on ``device`` and on the CPU, same inputs, in
    the forward, the VJP and the VJP's own VJP (``_derivatives``), relative to 1 + |CPU|."""
    rng = np.random.default_rng(seed)
    probe = row.fn(*[mm.tensor(np.asarray(x, dtype=row.dtype)) for x in xs], *static)
    v = rng.standard_normal(probe.shape)
    u = [rng.standard_normal(np.shape(x)) for x in xs] + [rng.standard_normal(probe.shape)]
    cpu = _derivatives(row, xs, static, "cpu", v, u)
    other = _derivatives(row, xs, static, device, v, u)
    return max((float(np.max(np.abs(a - b) / (1 + np.abs(a)), initial=0.0))
                for a, b in zip(cpu, other)), default=0.0)


def check_on_device(row, device, max_examples, tol=1e-9):
    """``device_parity`` of ``row`` on inputs drawn by its strategy: fails on the first one
    where ``device`` and the CPU differ by ``tol`` or more."""
    @settings(max_examples=max_examples, deadline=None, derandomize=True, database=None)
    @given(data=st.data())
    def check(data):
        xs, static = data.draw(row.inputs)
        assert device_parity(row, xs, static, device) < tol

    check()


def recorded_primitives(row, xs, static):
    """The primitive classes in the graph that ``row.fn`` records on leaves ``xs``."""
    leaves = [mm.tensor(np.asarray(x, dtype=row.dtype), requires_grad=True) for x in xs]
    return {type(node._op) for node in toposort([row.fn(*leaves, *static)]) if node._op}


COMPOSED = ("add", "sub", "mul", "div", "neg", "exp", "log")  # gradcheck's log cosh maps


class RowFailure(GradcheckError):
    """A row of the table failed; the first line of the message names it."""


def run(max_examples=None, orders=None, rows=None, out=print, shrink=True):
    """Forward == reference and gradcheck of each order for every row; returns the worst errors.

    ``orders`` defaults to each row's own (``(1, 2)``, conv family ``(1, 2, 3)``); order 1 is
    checked plainly, orders from 2 through gradcheck's composition. Raises the first failure
    (with hypothesis' falsifying example). Returns ``{row name: report}`` with
    ``report[order]`` the largest error and ``report.scale[order]`` the largest |analytic|.

    The primitives gradcheck's composition is made of (``COMPOSED``) are checked alone at
    orders from 2 first: a VJP of theirs wrong at order 2 fails every composed check, and
    would be blamed on the first row. (One wrong only in how it uses its incoming gradient
    passes alone and still fails every composed row; the message says so.) A failure is a
    ``RowFailure`` whose first line names the row.
    """
    rows = list(rows or ROWS)
    wanted = lambda row: orders or row.orders                            # noqa: E731
    for row in rows:       # the composition's parts, alone (compose=False)
        higher = [k for k in wanted(row) if k >= 2]
        if row.name in COMPOSED and higher:
            _hypothesis(row, max_examples, shrink, higher, GradcheckReport(), compose=False)
    results = {}
    for row in rows:
        report = results.setdefault(row.name, GradcheckReport())
        _hypothesis(row, max_examples, shrink, wanted(row), report)
        out(f"{row.name:<21s} " + "  ".join(
            f"order {k}: error {v:.1e} (relative {report.relative[k]:.1e}, "
            f"|value| up to {report.scale[k]:.1e})"
            for k, v in sorted(report.items())))
    return results


def _hypothesis(row, max_examples, shrink, orders, report, compose=None):
    """``row``'s forward against NumPy and its gradchecks of ``orders``, on hypothesis'
    examples; the worst errors into ``report``; a ``RowFailure`` naming the row."""
    phases = list(Phase) if shrink else [Phase.explicit, Phase.generate]
    alone = "" if compose is None else " (checked alone: gradcheck's composition is built " \
        "from it)"

    @settings(max_examples=max_examples or settings().max_examples, deadline=None,
              database=None, phases=phases, report_multiple_bugs=False,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
    @given(data=st.data())
    def check(data):
        xs, static = data.draw(row.inputs)
        out_t = row.fn(*[mm.tensor(x) for x in xs], *static)
        np.testing.assert_allclose(out_t.numpy(), row.ref(*xs, *static), rtol=1e-12,
                                   atol=1e-12, err_msg=f"{row.name}: forward")
        for order in orders:
            _gradcheck(row, lambda *ts: row.fn(*ts, *static), xs, order, compose, report)
        if len(xs) > 1 and compose is None:    # again, some inputs held constant (below)
            held = data.draw(st.integers(1, 2 ** len(xs) - 2), label="held constant (bits)")
            free = [i for i in range(len(xs)) if not held >> i & 1]
            for order in orders:
                _gradcheck(row, partial(row, xs, static, free), [xs[i] for i in free], order,
                           compose, report)

    try:
        check()
    except AssertionError as err:   # the CLI prints the first line: it names the row
        text = str(err).strip()
        what = "forward differs from NumPy" if f"{row.name}: forward" in text else \
            text.splitlines()[0]
        if "composed function" in what:
            what += (" [the composition is made of exp, log, add, sub, mul, div and neg: if "
                     "every row fails so, look at theirs]")
        raise RowFailure(f"row {row.name}{alone}: {what}\n{text}") from err


def partial(row, xs, static, free):
    """``row``'s function of the inputs ``free`` (their indices) only, the others constants:
    a VJP skips the gradient of an input that needs none, and that branch had gone unchecked
    (a mutation audit: concatenate giving a constant's slice to the input after it, maximum
    skipping ``b`` when ``a`` needed no gradient; both had passed every row)."""
    def fn(*ts):
        args = [mm.tensor(np.asarray(x, dtype=row.dtype)) for x in xs]
        for i, t in zip(free, ts):
            args[i] = t
        return row.fn(*args, *static)
    return fn


def _gradcheck(row, fn, xs, order, compose, report):
    """gradcheck of ``fn`` at ``xs``, its worst errors merged into ``report``."""
    with warnings.catch_warnings():   # an all-zero check: counted in .scale, by the caller
        warnings.simplefilter("ignore", GradcheckWarning)
        errors = mm.gradcheck(fn, xs, order=order, dtype=row.dtype, compose=compose,
                              partial=False, **row.tol)    # (the table draws its own: check)
    report[order] = max(report.get(order, 0.0), errors[order])
    for mine, theirs in ((report.scale, errors.scale), (report.relative, errors.relative)):
        mine[order] = max(mine.get(order, 0.0), theirs[order])
