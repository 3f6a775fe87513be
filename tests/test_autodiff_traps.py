"""The engine's autodiff as a PyTorch user drives it, and the helpers around it: each test below
failed on the code before its fix (found by probing, 2026-12-01):
- ``p -= lr * p.grad`` raises (Python had rebound the name: the parameter never moved);
- setting ``requires_grad`` checks as ``requires_grad_`` does (on a Tensor an op made it had
  cut the graph: a wrong gradient; on an int Tensor it had truncated gradients);
- a 0-d Tensor is not iterable (``list(t)`` had been ``[]``);
- ``mm.set_grad_enabled(False)`` called alone switches recording off (it had done nothing);
  ``@mm.no_grad()`` covers a generator's steps (they had been recorded);
- a ``grad_output`` is taken in its output's dtype (an int seed had come back as a gradient);
- ``backward(create_graph=True)`` warns of the reference cycle it makes;
- ``hvp``, ``hessian`` and ``jacobian`` name what is wrong with f or its arguments;
- ``map_threads`` nested in a worker runs inline (it had deadlocked) and raises a task's
  error at once (it had waited for every earlier task); ``viz.to_dot`` quotes names; the
  primitive table names the row that fails, and checks the composition's parts alone first.
"""
import contextlib
import re
import threading
import time
import warnings

import numpy as np
import pytest

import minimeta as mm
from minimeta.engine.workers import map_threads


@pytest.mark.parametrize("op", ["p -= g", "p += g", "p *= g", "p /= g", "p **= g", "p @= g"])
def test_in_place_operators_are_refused_not_silently_rebound(op):
    p = mm.tensor(np.ones((2, 2)), requires_grad=True)
    g = mm.tensor(np.full((2, 2), 0.5))
    with mm.no_grad(), pytest.raises(TypeError, match=r"in-place .* is not offered"):
        exec(op, {}, {"p": p, "g": g})
    assert p.numpy().tolist() == [[1.0, 1.0], [1.0, 1.0]]


def test_setting_requires_grad_checks_what_requires_grad__checks():
    x = mm.tensor([1.0, 2.0], requires_grad=True)
    h = x * x
    with pytest.raises(ValueError, match="not a leaf"):
        h.requires_grad = False               # had cut h off: x.grad read [2, 2], not [4, 6]
    (h + 2 * x).sum().backward()
    assert x.grad.numpy().tolist() == [4.0, 6.0]
    i = mm.tensor(np.array([1, 2]))
    with pytest.raises(TypeError, match="only floating tensors can require grad, got dtype int64"):
        i.requires_grad = True
    x.requires_grad = False                  # a leaf: allowed, as in PyTorch
    assert not (x * 2).requires_grad


def test_a_zero_d_tensor_is_not_iterable_and_rows_still_are():
    with pytest.raises(TypeError, match="iteration over a 0-d tensor"):
        list(mm.tensor(5.0))
    rows = list(mm.tensor(np.arange(6.0).reshape(3, 2)))
    assert [r.numpy().tolist() for r in rows] == [[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]]


def test_set_grad_enabled_called_alone_and_no_grad_on_a_generator():
    x = mm.tensor([1.0], requires_grad=True)
    try:
        mm.set_grad_enabled(False)
        assert not (x * 2).requires_grad
    finally:
        mm.set_grad_enabled(True)
    assert (x * 2).requires_grad
    with mm.set_grad_enabled(False):
        assert not (x * 2).requires_grad
    assert (x * 2).requires_grad

    @mm.no_grad()
    def doubled(n):
        for _ in range(n):
            yield x * 2

    assert [t.requires_grad for t in doubled(3)] == [False, False, False]
    assert (x * 2).requires_grad             # and recording is back between the steps
    assert list(doubled(0)) == []            # an empty generator ends, as without no_grad

    @mm.no_grad()
    def recovers():
        try:
            yield 1
        except ValueError:
            yield "recovered"

    steps = recovers()
    assert next(steps) == 1 and steps.throw(ValueError) == "recovered"   # throw reaches it

    @mm.set_grad_enabled(False)               # a decorator switches nothing when applied
    def unrecorded():
        return x * 2

    assert (x * 2).requires_grad and not unrecorded().requires_grad
    assert (x * 2).requires_grad


def test_a_grad_output_is_taken_in_its_output_s_dtype():
    x = mm.tensor([1.0, 2.0], requires_grad=True)
    for seed in (np.array([1.0, 0.0], np.float32), np.array([1, 0])):
        (g,) = mm.grad(x, [x], grad_outputs=[seed])   # an int seed had come back as the grad
        assert g.dtype == np.float64 and g.numpy().tolist() == [1.0, 0.0]
    (g,) = mm.grad((x * x).sum(), [x], grad_outputs=[1])     # a Python 1, as PyTorch takes
    assert g.dtype == np.float64 and g.numpy().tolist() == [2.0, 4.0]


def test_backward_with_create_graph_warns_of_its_reference_cycle():
    x = mm.tensor([1.0, 2.0], requires_grad=True)
    with pytest.warns(UserWarning, match="reference cycle"):
        (x ** 3).sum().backward(create_graph=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mm.grad((x ** 3).sum(), [x], create_graph=True)       # makes none: no warning


def test_the_derivative_helpers_name_what_is_wrong():
    x = mm.tensor([1.0, 2.0])
    with pytest.raises(ValueError, match="hessian: f must return a scalar, got shape"):
        mm.hessian(lambda z: z * z, x)
    with pytest.raises(ValueError, match="hvp: f must return a scalar"):
        mm.hvp(lambda z: z * z, [x], [x])
    with pytest.raises(TypeError, match="jacobian: f must return a Tensor"):
        mm.jacobian(lambda z: np.ones(2), x)
    with pytest.raises(TypeError, match=r"give the inputs as a list of Tensors \(\[x\]\)"):
        mm.hvp(lambda z: (z * z).sum(), mm.tensor([[1.0, 2.0, 3.0]]), [x])
    with pytest.raises(TypeError, match="give v as a list"):
        mm.hvp(lambda z: (z * z).sum(), [x], x)


def test_map_threads_nested_in_a_worker_runs_inline_instead_of_deadlocking():
    def inner(v):
        return map_threads(lambda k: 10 * v + k, [0, 1], 2)

    result = []
    worker = threading.Thread(target=lambda: result.append(map_threads(inner, [1, 2], 2)),
                              daemon=True)
    worker.start()
    worker.join(60)
    assert not worker.is_alive(), "nested map_threads deadlocked"
    assert result == [[[10, 11], [20, 21]]]


def test_map_threads_raises_a_task_s_error_without_waiting_for_earlier_tasks():
    started, finished, release = [], [], threading.Event()

    def task(i):
        started.append(i)
        if i == 0:
            release.wait(30)          # runs until the test lets it go
            finished.append(i)
        if i == 1:
            raise RuntimeError("task 1 broke")
        return i

    with pytest.raises(RuntimeError, match="task 1 broke"):
        map_threads(task, range(12), 2)
    assert finished == []             # raised while task 0 still ran (it had waited for it)
    release.set()
    for _ in range(300):              # task 0 ends in the background
        if finished:
            break
        time.sleep(0.01)
    time.sleep(0.1)
    assert finished == [0] and sorted(started) == [0, 1]   # the rest dropped, not run


def test_to_dot_quotes_names():
    from minimeta import viz

    x = mm.Tensor(np.ones(2), requires_grad=True, name='say "hi" C:\\new')
    text = viz.to_dot((x * 2).sum())
    assert 'say \\"hi\\" C:\\\\new\\n' in text


def test_the_primitive_table_names_the_failing_row_and_checks_the_composition_first(
        monkeypatch):
    pytest.importorskip("hypothesis")
    from minimeta import selfcheck
    from minimeta.engine.primitives import elementwise as E
    from minimeta.engine.tensor import Tensor

    rows = [r for r in selfcheck.ROWS if r.name in ("add", "tanh", "exp")]
    monkeypatch.setattr(E.Tanh, "vjp", lambda self, g, out, a: (g * (1.0 - out * out) * 1.001,))
    with pytest.raises(selfcheck.RowFailure, match=r"^row tanh: gradcheck: order-1"):
        selfcheck.run(3, rows=rows, out=lambda *a: None, shrink=False)
    monkeypatch.undo()
    # right in value, wrong at order 2: every composed check fails, and had blamed 'add'
    monkeypatch.setattr(E.Exp, "vjp", lambda self, g, out, a: (g * Tensor(out.numpy()),))
    with pytest.raises(selfcheck.RowFailure, match=r"^row exp \(checked alone"):
        selfcheck.run(3, rows=rows, out=lambda *a: None, shrink=False)


class ShortVJP(mm.Primitive):
    """a·sin b whose VJP forgets b's entry (a short tuple), or returns an array or a bare
    Tensor: a zip over the parents had dropped b's gradient without a word."""

    abstract = True

    def __init__(self, returns):
        self.returns = returns

    def forward(self, a, b):
        return a * np.sin(b)

    def vjp(self, g, out, a, b):
        ga = g * mm.tensor(np.sin(b.data))
        return {"short": (ga,), "array": (ga, g.data), "bare": ga}[self.returns]


@pytest.mark.parametrize("returns, message", [
    ("short", "ShortVJP.vjp: returned 1 result; a VJP returns a tuple of one gradient (or None) "
              "per input, 2 here"),
    ("array", "ShortVJP.vjp: returned a result of type ndarray; a VJP returns Tensors (or None)"),
    ("bare", "ShortVJP.vjp: returned a result of type Tensor; a VJP returns a tuple of one "
             "gradient"),
])
@pytest.mark.parametrize("anomaly", [False, True])
def test_a_vjp_that_returns_the_wrong_number_or_kind_of_results_is_named(returns, message,
                                                                         anomaly):
    a = mm.tensor([0.7, -1.1], requires_grad=True)
    b = mm.tensor([1.9, 0.2], requires_grad=True)
    with mm.detect_anomaly() if anomaly else contextlib.nullcontext():
        with pytest.raises(TypeError, match="^" + re.escape(message)):
            mm.apply(ShortVJP(returns), a, b).sum().backward()     # b.grad had stayed None
        with pytest.raises(TypeError, match="^" + re.escape(message)):
            mm.grad(mm.apply(ShortVJP(returns), a, b).sum(), [a, b])
