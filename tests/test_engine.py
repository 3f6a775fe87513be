"""Engine behaviour beyond the primitive table: closed forms, nesting, dtypes, errors, tools."""
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, strategies as st

import minimeta as mm
from minimeta.viz import to_dot


def test_third_derivative_matches_closed_form():
    # f(x) = x^2 tanh(x); f''' = 6 sech^2 x - 12 x sech^2 x tanh x... computed symbolically below
    xs = np.linspace(-1.5, 1.5, 7)
    x = mm.tensor(xs, requires_grad=True)
    (g,) = mm.grad((mm.tanh(x) * x ** 2).sum(), [x], create_graph=True)
    (h,) = mm.grad(g.sum(), [x], create_graph=True)
    (t,) = mm.grad(h.sum(), [x])
    th = np.tanh(xs)
    s2 = 1 - th ** 2                       # sech^2
    d1 = 2 * xs * th + xs ** 2 * s2
    d2 = 2 * th + 4 * xs * s2 - 2 * xs ** 2 * s2 * th
    d3 = 6 * s2 - 12 * xs * s2 * th + xs ** 2 * (4 * s2 * th ** 2 - 2 * s2 ** 2)
    np.testing.assert_allclose(g.numpy(), d1, rtol=1e-13)
    np.testing.assert_allclose(h.numpy(), d2, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(t.numpy(), d3, rtol=1e-12, atol=1e-13)


def rosenbrock(v):
    x, y = v[0], v[1]
    return (1.0 - x) ** 2 + 100.0 * (y - x ** 2) ** 2


@pytest.mark.parametrize("point", [(0.3, -0.7), (1.0, 1.0), (-1.2, 1.0)])
def test_rosenbrock_hessian_matches_closed_form(point):
    x, y = point
    H = mm.hessian(rosenbrock, mm.tensor(np.array(point)))
    expected = np.array([[2 - 400 * (y - x ** 2) + 800 * x ** 2, -400 * x], [-400 * x, 200.0]])
    np.testing.assert_allclose(H.numpy(), expected, rtol=1e-13)
    v = np.array([0.5, -2.0])
    (hv,) = mm.hvp(rosenbrock, [mm.tensor(np.array(point))], [mm.tensor(v)])
    np.testing.assert_allclose(hv.numpy(), expected @ v, rtol=1e-13)


def test_jacobian_of_matmul_is_the_matrix():
    A = np.arange(6.0).reshape(2, 3)
    J = mm.jacobian(lambda x: mm.tensor(A) @ x, mm.tensor(np.ones(3)))
    np.testing.assert_array_equal(J.numpy(), A)


def test_nested_derivative_closing_over_the_outer_variable():
    # d/dx [ x * (d/dy (x * y)) ] = d/dx [x * x] = 2x: the inner grad depends on x.
    x = mm.tensor(1.5, requires_grad=True)

    def inner(x):
        y = mm.tensor(0.7, requires_grad=True)
        (dy,) = mm.grad(x * y, [y], create_graph=True)
        return x * dy

    (dx,) = mm.grad(inner(x), [x])
    assert dx.item() == pytest.approx(3.0, rel=1e-15)
    # perturbation confusion (Siskind & Pearlmutter): d/dx [x * d/dy(x + y)] = 1
    y = mm.tensor(1.0, requires_grad=True)
    (dy,) = mm.grad(x + y, [y], create_graph=True)
    (dx,) = mm.grad(x * dy, [x])
    assert dx.item() == pytest.approx(1.0, rel=1e-15)


def test_gradient_walk_stops_at_what_was_made_before_the_inputs():
    """grad(out, [y]) skips the graph below y (made earlier), yet a grad with respect to both
    y and an earlier x still counts x's path through y (the total derivative)."""
    from minimeta.engine.autodiff import toposort
    x = mm.tensor(0.5, requires_grad=True)
    y = x
    for _ in range(200):  # a long graph below y
        y = mm.tanh(y) + 0.1
    z = y ** 3 * x
    assert len(toposort([z], floor=y._seq)) == 3   # y, y ** 3 and z
    assert len(toposort([z])) > 400
    gy, gx = mm.grad(z, [y, x])
    np.testing.assert_allclose(gy.numpy(), 3 * y.numpy() ** 2 * 0.5, rtol=1e-14)
    def z_of(v):   # the same function in NumPy
        w = v
        for _ in range(200):
            w = np.tanh(w) + 0.1
        return w ** 3 * v
    eps = 1e-6   # d z / d x through every path, against a central difference
    numeric = (z_of(0.5 + eps) - z_of(0.5 - eps)) / (2 * eps)
    # a central difference: rounding error ~1e-16/eps = 1e-10 (measured 6e-12), hence 1e-9
    np.testing.assert_allclose(gx.numpy(), numeric, rtol=1e-9)


def test_matmul_derivatives_of_any_order_record_no_transpose():
    from minimeta.engine.autodiff import toposort
    rng = np.random.default_rng(0)
    a = mm.tensor(rng.normal(size=(2, 3, 4)), requires_grad=True)
    b = mm.tensor(rng.normal(size=(4, 5)), requires_grad=True)
    ga, gb = mm.grad(mm.tanh(a @ b).sum(), [a, b], create_graph=True)
    hb, = mm.grad((ga ** 2).sum() + (gb ** 2).sum(), [b], create_graph=True)
    ops = {type(t._op).__name__ for t in toposort([hb]) if t._op is not None}
    assert "MatMul" in ops and "Transpose" not in ops


def test_backward_accumulates_and_grad_is_a_tensor():
    x = mm.tensor([1.0, 2.0], requires_grad=True)
    (x * 3.0).sum().backward()
    (x * x).sum().backward()
    assert isinstance(x.grad, mm.Tensor)
    np.testing.assert_array_equal(x.grad.numpy(), [5.0, 7.0])
    assert not x.grad.requires_grad


def test_backward_with_create_graph_gives_differentiable_grad():
    x = mm.tensor([1.0, 2.0], requires_grad=True)
    (x ** 3).sum().backward(create_graph=True)
    (h,) = mm.grad(x.grad.sum(), [x])
    np.testing.assert_array_equal(h.numpy(), [6.0, 12.0])


def test_no_grad_records_nothing_and_restores():
    x = mm.tensor([1.0], requires_grad=True)
    with mm.no_grad():
        y = x * 2
    assert not y.requires_grad and mm.is_grad_enabled()

    @mm.no_grad()
    def f(t):
        return t * 2
    assert not f(x).requires_grad


def test_dtype_rules_follow_numpy():
    f32 = mm.tensor(np.ones(2, np.float32), requires_grad=True)
    assert (f32 * 2.0).dtype == np.float32          # Python scalars are weak
    assert (f32 + 1).dtype == np.float32
    assert (f32 + mm.tensor(np.ones(2))).dtype == np.float64
    assert mm.tensor([1.0, 2.0]).dtype == np.float64
    assert mm.tensor([1, 2]).dtype == np.int64
    (g,) = mm.grad((f32 * 2.0).sum(), [f32])
    assert g.dtype == np.float32
    assert (mm.tensor([1, 2]) * 0.5).dtype == np.float64


def test_operators_and_comparisons():
    a = mm.tensor([[1.0, -2.0], [3.0, 4.0]])
    np.testing.assert_array_equal((a > 0).numpy(), [[True, False], [True, True]])
    assert not (a > 0).requires_grad
    np.testing.assert_array_equal(a.T.numpy(), a.numpy().T)
    np.testing.assert_array_equal((2.0 - a).numpy(), 2.0 - a.numpy())
    np.testing.assert_array_equal((1.0 / a).numpy(), 1.0 / a.numpy())
    np.testing.assert_array_equal((np.ones(2) * a).numpy(), a.numpy())
    np.testing.assert_array_equal((-a).numpy(), -a.numpy())
    np.testing.assert_array_equal((a @ a).numpy(), a.numpy() @ a.numpy())
    np.testing.assert_array_equal(a[:, 1].numpy(), [-2.0, 4.0])
    assert "requires_grad" not in repr(a)


@pytest.mark.parametrize("call, message", [
    (lambda: mm.tensor(np.ones(2)) + mm.tensor(np.ones(3)), r"add: shapes \(2,\) and \(3,\)"),
    (lambda: mm.tensor(np.ones((2, 3))) @ mm.tensor(np.ones((2, 3))), "matmul: shapes"),
    (lambda: mm.tensor([1, 2], requires_grad=True), "only floating tensors"),
    (lambda: mm.reshape(mm.tensor(np.ones(6)), (4, 2)), r"reshape: cannot reshape .* \(6,\)"),
    (lambda: mm.sum(mm.tensor(np.ones(2)), axis=3), "sum: axis 3 is out of range"),
    (lambda: mm.tensor(np.ones(3), requires_grad=True).backward(), "backward"),
])
def test_bad_input_errors_name_the_op_and_shapes(call, message):
    with pytest.raises((ValueError, TypeError), match=message):
        call()


def test_backward_on_non_scalar_needs_grad():
    x = mm.tensor(np.ones(3), requires_grad=True)
    with pytest.raises(ValueError, match=r"output of shape \(3,\) is not a scalar"):
        (x * 2).backward()
    (x * 2).backward(np.ones(3))
    np.testing.assert_array_equal(x.grad.numpy(), [2.0, 2.0, 2.0])


def test_grad_of_unused_input():
    x = mm.tensor(1.0, requires_grad=True)
    z = mm.tensor(2.0, requires_grad=True)
    with pytest.raises(ValueError, match="input 1 .* not part of the graph"):
        mm.grad(x * 2, [x, z])
    assert mm.grad(x * 2, [x, z], allow_unused=True)[1] is None


def test_graph_can_be_differentiated_twice():
    # saved values are never freed: a second backward through the same graph works
    x = mm.tensor(2.0, requires_grad=True)
    y = x ** 3
    assert mm.grad(y, [x])[0].item() == mm.grad(y, [x])[0].item() == 12.0


def test_viz_marks_backward_nodes():
    x = mm.tensor([1.0, 2.0], requires_grad=True)
    (g,) = mm.grad(mm.tanh(x).sum(), [x], create_graph=True)
    dot = to_dot(g)
    assert dot.startswith("digraph") and "orange" in dot and "Tanh" in dot
    assert "palegreen" in dot  # the leaf x


def test_a_dot_graph_numbers_its_nodes_once_and_points_from_inputs_to_results():
    x = mm.tensor(np.ones(2, dtype=np.float32), requires_grad=True)
    text = to_dot((x * mm.tensor(np.ones(2, dtype=np.float32))).sum())
    nodes = [line.split(" [")[0].strip() for line in text.splitlines() if "[label=" in line]
    assert nodes == [f"n{i}" for i in range(4)]           # each node once, numbered in order
    label = {n: line for n in nodes for line in text.splitlines() if f"  {n} [" in line}
    leaf, = [n for n in nodes if 'label="leaf\\n(2,) float32"' in label[n]]   # op, shape, dtype
    const, = [n for n in nodes if 'label="const\\n(2,) float32"' in label[n]]
    mul = next(n for n in nodes if "Mul" in label[n])
    assert f"  {leaf} -> {mul};" in text and f"  {const} -> {mul};" in text
    assert "const\\n(3,)" in to_dot(mm.tensor(np.zeros(3)))   # an output alone is drawn


def test_importing_minimeta_loads_no_gpu_module():
    code = ("import sys, minimeta, minimeta.functional; "
            "bad = [m for m in sys.modules if m.startswith(('cupy', 'numba.cuda'))]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_gradcheck_reports_a_wrong_vjp():
    class BadSquare(mm.Primitive):
        def forward(self, a):
            return a * a

        def vjp(self, g, out, a):
            return (g * a,)  # should be 2 g a

    with pytest.raises(mm.GradcheckError, match=r"order-1 derivative w\.r\.t\. input 0"):
        mm.gradcheck(lambda a: mm.apply(BadSquare(), a), [np.array([1.0, 2.0])])


def test_gradcheck_catches_a_wrong_second_order():
    class FrozenSquare(mm.Primitive):
        """Correct first derivative, but the vjp hides its dependence on a (detached)."""

        def forward(self, a):
            return a * a

        def vjp(self, g, out, a):
            return (g * 2.0 * a.detach(),)

    mm.gradcheck(lambda a: mm.apply(FrozenSquare(), a), [np.array([1.0, 2.0])], order=1)
    with pytest.raises(mm.GradcheckError, match="order-2"):
        mm.gradcheck(lambda a: mm.apply(FrozenSquare(), a), [np.array([1.0, 2.0])], order=2)


@given(st.lists(st.integers(0, 3), max_size=4), st.lists(st.integers(0, 3), max_size=4))
def test_fits_is_numpy_s_broadcast_to_rule(small, shape):
    """``shape.fits`` (broadcast_to's and linear's check, in Python) says what NumPy's
    ``broadcast_to`` does, size-0 axes included; broadcast_to raises where it says no."""
    from minimeta.engine.primitives.shape import fits

    small, shape = tuple(small), tuple(shape)
    try:
        np.broadcast_to(np.zeros(small), shape)
        numpy_says = True
    except ValueError:
        numpy_says = False
    assert fits(small, shape) == numpy_says
    if not numpy_says:
        with pytest.raises(ValueError, match="broadcast_to: cannot broadcast"):
            mm.broadcast_to(mm.tensor(np.zeros(small)), shape)
