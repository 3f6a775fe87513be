"""Property tests driven by the primitive table (``minimeta/selfcheck.py``), and its mutations.

- every row: forward == NumPy reference, gradcheck of its orders (1 and 2; 3 for the conv
  family), orders from 2 through the composition that makes each VJP's incoming gradient depend
  on the inputs, and every order compares a non-zero derivative somewhere;
- coverage: every ``Primitive`` subclass found at run time has a row whose graph records it;
- mutations: for each primitive, a VJP with its incoming gradient detached, and a VJP off by 1%,
  each make its row fail (and the detached one still passes the plain, uncomposed check: the
  composition is what catches it); VJPs wrong at order 2 on one path only (an exponent, a
  cast's direction) fail theirs, and a fused VJP whose inner grad re-enters its own graph
  fails at once (``no_runaway_backward``) where it had hung;
- a cast's derivatives of orders 1 and 2 are exactly the identity (its rows' float32
  tolerance let a VJP off by 0.1% pass).

The largest error per order is printed at the end of the session (``-s`` shows it).
"""
import contextlib
import warnings

import numpy as np
import pytest
from hypothesis import given, strategies as st

import minimeta as mm
from minimeta import kernels as K
from minimeta.engine.primitives import conv as C, elementwise as E, fused as Fu
from minimeta.engine.autodiff import toposort
from minimeta.selfcheck import ROWS, primitive_classes, recorded_primitives, run
from minimeta.testing import arrays, shapes

LARGEST = {}


@pytest.fixture(autouse=True)
def no_runaway_backward(monkeypatch):
    """A VJP whose inner ``grad`` walks back into the graph that is differentiating it
    (``fused._partial`` without its ``Alias`` stand-ins: the incoming gradient depends on the
    op's own output) re-enters the backward pass ever deeper, each level ~3x the cost of the
    last: the row hangs instead of failing. The engine's own nesting is 2 (a fused VJP's
    ``grad`` inside a backward pass); past 4, fail at once."""
    from minimeta.engine import autodiff
    from minimeta.engine.grad_mode import STATE
    run_backward = autodiff._run_backward

    def guarded(*args, **kwargs):
        if STATE.backward_depth >= 4:
            raise AssertionError(f"backward re-entered {STATE.backward_depth} deep: a VJP's "
                                 "grad walks back into the graph that called it")
        return run_backward(*args, **kwargs)
    monkeypatch.setattr(autodiff, "_run_backward", guarded)


def _record(name, report):
    for order, err in report.items():
        for kind, value in (("absolute", err), ("relative", report.relative[order])):
            if value > LARGEST.get((order, kind), (0.0, ""))[0]:
                LARGEST[order, kind] = (value, name)


def teardown_module(module):
    for (order, kind), (err, name) in sorted(LARGEST.items()):
        print(f"\nlargest gradcheck error, order {order}, {kind}: {err:.3e} ({name})")


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r.name)
def test_row_forward_and_every_order(row):
    report = run(rows=[row], out=lambda line: None)[row.name]
    assert sorted(report) == sorted(row.orders)
    for order in row.orders:  # each order compared a derivative that is not 0 = 0
        assert report.scale[order] > 1e-2, (row.name, order, report.scale)
    if row.dtype == np.float64:
        _record(row.name, report)


def test_every_primitive_has_a_row():
    classes = primitive_classes()
    covered = {cls for row in ROWS for cls in row.covers}
    assert classes - covered == set(), "primitives without a row"
    assert covered <= classes and len(classes) == 45


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r.name)
def test_row_records_the_primitives_it_claims(row):
    seen = set()  # over its examples: a reshape to the same shape, say, records nothing
    for xs, static in _examples(row, 20):
        seen |= recorded_primitives(row, xs, static)
    assert set(row.covers) <= seen


def test_the_coverage_check_sees_a_new_primitive():
    class Square(mm.Primitive):  # defined here: the run-time search must find it
        def forward(self, a):
            return a * a

    try:
        assert Square in primitive_classes(package=None)
        assert Square not in primitive_classes()     # the engine's own: a reader's are not
    finally:
        del Square
        import gc
        gc.collect()


# ----- mutations: the checks fail for broken VJPs ----------------------------------------------

def _detached(vjp):
    return lambda self, g, out, *inputs: vjp(self, g.detach(), out, *inputs)


def _off_by_one_percent(vjp):
    return lambda self, g, out, *inputs: tuple(
        None if r is None else r * 1.01 for r in vjp(self, g, out, *inputs))


@contextlib.contextmanager
def mutated(cls, mutation):
    """``cls.vjp`` replaced by ``mutation(cls.vjp)`` inside the block."""
    original = cls.__dict__.get("vjp")
    cls.vjp = mutation(cls.vjp)
    try:
        yield
    finally:
        if original is None:
            del cls.vjp
        else:
            cls.vjp = original


def _row_for(cls):
    return next(row for row in ROWS if cls in row.covers)


PRIMITIVES = sorted(primitive_classes(), key=lambda c: c.__name__)
QUIET = dict(out=lambda line: None, shrink=False, max_examples=20)


@pytest.mark.parametrize("cls", PRIMITIVES, ids=lambda c: c.__name__)
def test_a_vjp_off_by_one_percent_fails_its_row(cls):
    row = _row_for(cls)
    with mutated(cls, _off_by_one_percent), pytest.raises(mm.GradcheckError, match="order-1"):
        run(rows=[row], orders=(1,), **QUIET)


@pytest.mark.parametrize("cls", PRIMITIVES, ids=lambda c: c.__name__)
def test_a_vjp_that_detaches_its_gradient_fails_its_row(cls):
    row = _row_for(cls)
    with mutated(cls, _detached):
        with pytest.raises(mm.GradcheckError, match="order-2"):
            run(rows=[row], orders=(2,), **QUIET)
        # what the composition adds: the plain check of a lone primitive cannot see it (an
        # example that selects nothing compares only zeros: its warning is expected here)
        for xs, static in _examples(row, 3):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", mm.GradcheckWarning)
                mm.gradcheck(lambda *ts: row.fn(*ts, *static), xs, order=2, compose=False,
                             dtype=row.dtype, **row.tol)


def test_the_bias_row_catches_a_wrong_bias_gradient():
    """The conv2d_bias row, not the bias-free conv2d row that the mutations above pick for
    Conv2d, is what sees the bias's own VJP: the bias gradient off by 1% fails it."""
    row = next(r for r in ROWS if r.name == "conv2d_bias")

    def bias_off(vjp):
        def wrong(self, g, out, *inputs):
            grads = vjp(self, g, out, *inputs)
            return grads if len(grads) == 2 else grads[:2] + (grads[2] * 1.01,)
        return wrong
    with mutated(C.Conv2d, bias_off), pytest.raises(mm.GradcheckError, match="order-1"):
        run(rows=[row], orders=(1,), **QUIET)


def test_the_bias_is_never_added_into_an_input(monkeypatch):
    """The bias goes into the kernel's output in place; a kernel that handed back (a view of)
    its input must not have the input overwritten (mutant: the guard removed)."""
    def conv():
        x = mm.tensor(np.ones((1, 1, 2, 2)))
        y = C.conv2d(x, mm.tensor(np.ones((1, 1, 1, 1))), 1, 0, mm.tensor(np.full(1, 5.0)))
        return x.numpy(), y.numpy()
    lookup = K.lookup
    monkeypatch.setattr(K, "lookup", lambda name, *a: (lambda x, w, s, p: x) if name == "conv2d"
                        else lookup(name, *a))                               # y is x itself
    x, y = conv()
    np.testing.assert_array_equal(x, 1.0)
    np.testing.assert_array_equal(y, 6.0)
    monkeypatch.setattr(np, "may_share_memory", lambda a, b: False)          # the mutant
    x, _ = conv()
    np.testing.assert_array_equal(x, 6.0)


def _examples(row, n):
    examples = []

    @given(data=st.data())
    def draw(data):
        examples.append(data.draw(row.inputs))

    draw()
    return examples[:n]


# ----- beyond single primitives -------------------------------------------------------------

@given(arrays(shapes(min_dims=2, max_dims=2)), arrays((3,), -1.0, 1.0))
def test_third_order_chain_of_smooth_primitives(x, w):
    def f(x, w):
        z = mm.tanh(x[..., :1] * w) + mm.sigmoid(x).sum(axis=-1, keepdims=True)
        return mm.logsumexp(mm.exp(z * 0.5) @ mm.reshape(w, (3, 1)), axis=0) / (1.0 + z.sum())
    errors = mm.gradcheck(f, [x, w], order=3, atol=1e-5, rtol=1e-4)
    _record("third-order chain", errors)


def test_selfcheck_runs_and_reports():
    lines = []
    report = run(max_examples=2, rows=ROWS[:3], out=lines.append)
    assert set(report) == {"add", "sub", "mul"} and all(r[2] < 1e-5 for r in report.values())
    assert len(lines) == 3 and lines[0].startswith("add")


def test_the_gradcheck_command_runs_the_whole_table(capsys):
    from minimeta import cli
    from minimeta.engine.primitives.elementwise import Exp

    assert cli.main(["gradcheck", "--examples", "2"]) == 0
    out = capsys.readouterr().out
    assert f"all {len(ROWS)} rows passed" in out and "45 primitives" in out
    assert "order 3: largest error" in out  # the conv family's own order
    with mutated(Exp, _detached):
        assert cli.main(["gradcheck", "--examples", "5"]) == 1
    err = capsys.readouterr().err     # exp, wrong only in its incoming gradient: every
    assert "FAILED: row add: gradcheck: order-2 derivative" in err     # composed row fails,
    assert "if every row fails so, look at theirs]" in err              # and the line says so


@pytest.mark.parametrize("order", [1, 2])
def test_a_fused_vjp_differentiates_a_constant_input_s_share(order):
    """FusedVJP packs a gradient for every input of the fused op, a constant's too (cosine
    attention's y, the labels, say), and that share depends on the other inputs. Its own VJP
    had dropped that dependence (the rows' check with inputs held constant found it; the
    engine's backward never reads a constant's share, so no training was affected)."""
    from minimeta.engine.primitives import attention as At, fused as Fu

    rng = np.random.default_rng(0)
    q, s, y, g = (rng.standard_normal(shape) for shape in ((1, 2, 3), (1, 4, 3), (1, 4, 2),
                                                          (1, 2, 2)))
    vjp = Fu.FusedVJP(At.CosineAttention(1e-8))
    errors = mm.gradcheck(lambda qt, st_, gt: mm.apply(vjp, qt, st_, mm.tensor(y), gt),
                          [q, s, g], order=order)
    assert errors.scale[order] > 1e-2


# ----- mutations right at order 1 and wrong only on one path (a mutation audit, 2026-12-03) ----

def _detached_when(condition, what):
    """A VJP that, where ``condition(self, inputs)``, sees its inputs (or its incoming gradient
    g) detached: right at order 1, wrong at order 2 (the VJP no longer depends on them)."""
    def mutation(vjp):
        def wrong(self, g, out, *inputs):
            if condition(self, inputs):
                if what == "g":
                    g = g.detach()
                else:
                    inputs = tuple(t.detach() for t in inputs)
            return vjp(self, g, out, *inputs)
        return wrong
    return mutation


@pytest.mark.parametrize("cls, row_name, condition, what", [
    # the table had tried only a ** 3 and a ** -1.5: a mutant at any other exponent survived
    *[(E.PowScalar, "pow_scalar_exponents", lambda self, _, c=c: self.c == c, "a")
      for c in (2, 4, -1, -2, 0.5, -0.5, 2.5, 1.5)],
    # the cast row drew float32 inputs only: the float64 -> float32 VJP was never checked
    (E.Cast, "cast_down", lambda self, inputs: inputs[0].dtype == np.float64, "g"),
], ids=lambda v: v if isinstance(v, str) else "")
def test_a_vjp_wrong_at_order_2_on_one_path_fails_its_row(cls, row_name, condition, what):
    row = next(r for r in ROWS if r.name == row_name)
    run(rows=[row], orders=(1,), **QUIET)      # right at order 1: the row passes there
    with mutated(cls, _detached_when(condition, what)):
        run(rows=[row], orders=(1,), **QUIET)
        with pytest.raises(mm.GradcheckError, match="order-2"):
            run(rows=[row], orders=(2,), **QUIET)


def _cast_is_exactly_the_identity(source, target):
    """The VJP of a cast from ``source`` to ``target``, and that VJP's own VJP in g, give
    back their incoming gradients exactly: a cast's Jacobian is the identity (values that
    float32 holds, so neither direction rounds)."""
    x, g, h = np.random.default_rng(0).standard_normal((3, 2, 3)).astype(np.float32)
    xt, gt = (mm.tensor(a.astype(d), requires_grad=True) for a, d in ((x, source), (g, target)))
    (first,) = mm.grad(mm.astype(xt, target), [xt], grad_outputs=[gt], create_graph=True)
    (second,) = mm.grad(first, [gt], grad_outputs=[mm.tensor(h.astype(source))])
    assert first.dtype == source and second.dtype == target
    np.testing.assert_array_equal(first.numpy(), g)
    np.testing.assert_array_equal(second.numpy(), h)


@pytest.mark.parametrize("source, target", [(np.float32, np.float64), (np.float64, np.float32)])
def test_a_cast_s_derivatives_are_the_identity_exactly(source, target):
    """The cast rows check in float32 (``F32``: rtol 2e-3), where a Cast VJP off by 0.1%, at
    order 1 or only in g at order 2, had passed every row and the dtype tests (a mutation
    audit of the order-2 checks); exact, both fail."""
    _cast_is_exactly_the_identity(source, target)
    tenth = lambda vjp: lambda self, g, out, a: vjp(self, g * 1.001, out, a)       # noqa: E731
    soft = lambda vjp: lambda self, g, out, a: vjp(                                # noqa: E731
        self, g + 0.001 * (g - g.detach()), out, a)     # same values; d/dg off by 0.1%
    for mutation in (tenth, soft):
        with mutated(E.Cast, mutation), pytest.raises(AssertionError):
            _cast_is_exactly_the_identity(source, target)


def test_fused_partials_without_their_stand_ins_fail_instead_of_hanging(monkeypatch):
    """Without ``Alias`` stand-ins a fused VJP's inner grad walks back into the graph that
    called it, ever deeper (each level ~3× the last): the rows had hung. The guard above
    fails it at depth 4."""
    monkeypatch.setattr(Fu, "_partial", lambda args: [
        t if t.requires_grad else mm.Tensor(t.numpy(), requires_grad=True) for t in args])
    for name in ("cosine_attention", "batch_norm_vjp"):
        with pytest.raises(AssertionError, match="backward re-entered 4 deep"):
            run(rows=[next(r for r in ROWS if r.name == name)], orders=(2,), **QUIET)


def test_relu_s_derivatives_of_every_order_are_one_op():
    """ReLU's VJP is ``ReluGrad`` (g where a > 0, else 0), and ReluGrad's VJP in g is ReluGrad
    again: a closed family, like max pooling's, with no mask array held by a ``Where``. The
    values are the select's exactly, at orders 1 and 2 (a at 0 and -0: 0; at NaN: 0)."""
    a = mm.tensor(np.array([-1.5, 0.0, -0.0, 0.5, 2.0, np.nan]), requires_grad=True)
    c = mm.tensor(np.array([3.0, -2.0, 4.0, -0.5, 7.0, 1.0]), requires_grad=True)
    v = np.array([0.25, 1.0, -1.0, 2.0, -3.0, 5.0])
    (g1,) = mm.grad((mm.relu(a) * c).sum(), [a], create_graph=True)
    (g2,) = mm.grad((g1 * v).sum(), [c])
    mask = np.array([False, False, False, True, True, False])
    assert np.array_equal(g1.numpy(), np.where(mask, c.numpy(), 0.0))
    assert np.array_equal(g2.numpy(), np.where(mask, v, 0.0))
    ops = {type(t._op) for t in toposort([g1]) if t._op is not None}
    assert E.ReluGrad in ops and E.Where not in ops
    with pytest.raises(ValueError, match="relu_grad: a"):
        E.relu_grad(a, c[:2])
