"""A float32 model computes in float32: nothing widens it to float64 behind the user's back,
and nothing narrows a value silently (found by probing dtypes, 2026-12-01: float64 task data,
NumPy scalar settings, eval-mode batch norm on uint8 images, the optimizer's loaded state).
The rules themselves (NEP 50, gradients in their tensor's dtype): ``docs/ENGINE.md``."""
import contextlib

import numpy as np
import pytest

import minimeta as mm
import minimeta.functional as F
from minimeta import nn, optim
from minimeta.engine import autodiff
from minimeta.learners import (CNP, MAML, MatchingNet, ProtoNet, Reptile, SnailLearner,
                               StackedTasks)
from op_trace import applying  # (tests/)


@contextlib.contextmanager
def op_dtypes():
    """The output dtype of every op run in the block, in order (``apply`` wrapped in every
    minimeta module that imported it)."""
    seen, original = [], autodiff.apply

    def traced(op, *inputs):
        out = original(op, *inputs)
        seen.append((type(op).__name__, out.dtype))
        return out
    with applying(traced):
        yield seen


def wide(seen):
    return sorted({name for name, dtype in seen if dtype == np.float64})


def test_the_tracer_sees_a_float64_op():
    """Mutation of the check below: a float64 constant met by a float32 tensor is seen."""
    with op_dtypes() as seen:
        mm.tensor(np.ones(2, np.float32), requires_grad=True) * mm.tensor(np.ones(2))
    assert wide(seen) == ["Mul"]


def task(dtype, flat=False, rng=np.random.default_rng(0)):
    xs, xq = rng.random((4, 1, 28, 28)).astype(dtype), rng.random((4, 1, 28, 28)).astype(dtype)
    if flat:
        xs, xq = xs.reshape(4, -1)[:, :1], xq.reshape(4, -1)[:, :1]
        return xs, rng.random((4, 1)).astype(dtype), xq, rng.random((4, 1)).astype(dtype)
    return xs, np.array([0, 0, 1, 1]), xq, np.array([0, 1, 0, 1])


@pytest.mark.parametrize("make, flat", [
    (lambda: MAML(nn.conv4(2, hidden=4), 0.1, 1), False),
    (lambda: StackedTasks(MAML(nn.conv4(2, hidden=4), 0.1, 1)), False),
    (lambda: Reptile(nn.conv4(2, hidden=4), 0.1, 1, 0.5), False),
    (lambda: ProtoNet(nn.conv4(None, hidden=4)), False),
    (lambda: MatchingNet(nn.conv4(None, hidden=4)), False),
    (lambda: SnailLearner(2, 2, features=4, embedding=nn.conv4(hidden=4)), False),
    (lambda: CNP(hidden=8, layers=2), True)])
def test_float64_task_data_runs_a_float32_learner_in_float32(make, flat):
    """NumPy's arrays are float64 by default: a float32 model met by them had run the whole
    task in float64 (every op; its gradients were cast back), a third slower for conv4."""
    learner = make()
    with op_dtypes() as seen:
        learner.outer_step([task(np.float64, flat), task(np.float64, flat)])
        learner.evaluate(task(np.float64, flat))
    assert len(seen) > 50 and wide(seen) == []


def test_numpy_scalar_settings_do_not_widen_a_float32_model():
    """``np.float64(0.4)`` is a strong scalar (NEP 50): as ``inner_lr`` it had made every
    adapted weight float64, as ``eps`` eval-mode batch norm's output float64."""
    learner = MAML(nn.conv4(2, hidden=4), np.float64(0.4), np.int64(1))
    with op_dtypes() as seen:
        learner.outer_step([task(np.float32)])
    assert wide(seen) == []
    assert type(learner.inner_lr) is float and type(learner.test_steps) is int
    reptile = Reptile(nn.conv4(2, hidden=4), np.float64(0.1), 1, np.float64(0.5))
    assert type(reptile.inner_lr) is type(reptile.outer_lr) is type(reptile.test_lr) is float
    bn = nn.BatchNorm2d(3, eps=np.float64(1e-5))
    x = mm.tensor(np.random.default_rng(0).random((2, 3, 4, 4), np.float32))
    assert bn(x).dtype == np.float32
    bn.train(False)
    assert bn(x).dtype == np.float32
    w = mm.tensor(np.ones(2, np.float32), requires_grad=True)
    for opt in (optim.SGD([w], lr=np.float64(0.1), momentum=np.float64(0.5)),
                optim.Adam([w], lr=np.float64(0.1), betas=np.array([0.9, 0.99]),
                           eps=np.float64(1e-8))):
        numbers = [opt.lr] + [getattr(opt, n) for n in ("momentum", "eps") if hasattr(opt, n)]
        assert all(type(v) is float for v in numbers + list(getattr(opt, "betas", ())))


def test_eval_mode_batch_norm_promotes_uint8_images_as_training_does():
    """In eval mode the running statistics had been cast to the input's dtype, uint8: 1.875
    became 1, and ``x - mean`` wrapped around (10 - 100 gave 166, not -90)."""
    x = np.full((2, 1, 2, 2), 10, np.uint8)
    w, b = mm.tensor(np.ones(1, np.float32)), mm.tensor(np.zeros(1, np.float32))
    out = F.batch_norm(x, w, b, np.array([100.0]), np.array([1.0]), training=False, eps=0.0)
    assert out.dtype == F.batch_norm(x, w, b).dtype == np.float32
    np.testing.assert_array_equal(out.numpy(), -90.0)
    with pytest.raises(TypeError, match="^batch_norm: needs floating arrays, got uint8"):
        F.batch_norm(x, None, None, np.array([100.0]), np.array([1.0]), training=False)


def test_cosine_attention_has_one_dtype_on_every_path():
    """A float64 one-hot (``np.eye``'s default) with float32 embeddings: the fused path had
    given float32, the composite float64 (NumPy's promotion, which both now follow)."""
    rng = np.random.default_rng(0)
    q, s = rng.random((2, 3, 4), np.float32), rng.random((2, 5, 4), np.float32)
    y = np.broadcast_to(np.eye(5), (2, 5, 5))
    fused, composite = F.cosine_attention(q, s, y), F.cosine_attention(q, s, y, fused=False)
    assert fused.dtype == composite.dtype == np.float64
    np.testing.assert_allclose(fused.numpy(), composite.numpy(), rtol=1e-6)
    assert F.cosine_attention(q, s, y.astype(np.float32)).dtype == np.float32


def test_an_optimizer_loads_its_state_in_its_parameters_dtype():
    """float32 Adam state loaded for float64 parameters had stayed float32, rounding every
    later float64 gradient folded into it."""
    w32 = mm.tensor(np.ones(2, np.float32), requires_grad=True)
    source = optim.Adam([w32], lr=0.1)
    source.step([mm.tensor(np.ones(2, np.float32) / 3)])
    w64 = mm.tensor(np.ones(2), requires_grad=True)
    target = optim.Adam([w64], lr=0.1)
    target.load_state_dict(source.state_dict())
    assert {a.dtype for slot in target.state.values() for a in slot} == {np.dtype(np.float64)}


def test_max_s_gradient_stays_in_the_input_s_dtype():
    """Its VJP divided by an int64 count: a float64 intermediate (cast back after)."""
    a = mm.tensor(np.array([[1, 3, 3], [2, 0, 2]], np.float32), requires_grad=True)
    with op_dtypes() as seen:
        (g,) = mm.grad(mm.max(a, 1).sum(), [a], create_graph=True)
    assert wide(seen) == [] and g.dtype == np.float32
    np.testing.assert_array_equal(g.numpy(), [[0, 0.5, 0.5], [0.5, 0, 0.5]])


@pytest.mark.skipif(np.dtype(np.longdouble).itemsize <= 8, reason="longdouble is float64 here")
def test_longdouble_cannot_require_grad_and_the_kernels_name_it():
    """It had been allowed, and conv2d's gradient then failed deep inside numba."""
    with pytest.raises(TypeError, match="^tensor: float128 tensors cannot require grad"):
        mm.tensor(np.ones(2, np.longdouble), requires_grad=True)
    x = mm.tensor(np.ones((1, 1, 3, 3), np.longdouble))
    with pytest.raises(TypeError, match="^conv2d: float128 arrays are not supported"):
        F.conv2d(x, np.ones((1, 1, 2, 2), np.longdouble))


def test_a_complex_result_of_a_differentiable_op_is_refused_by_name():
    """It had been recorded, and backward then cast the complex gradient to the real input,
    losing its imaginary part with only NumPy's ComplexWarning (and a wrong sign for 1j)."""
    x, c = mm.tensor([1.0, 2.0], requires_grad=True), mm.tensor(np.array([1j, 2.0]))
    with pytest.raises(TypeError, match="^Mul: its result is complex128, and minimeta "
                                        "differentiates real values only"):
        x * c
    assert (x.detach() * c).sum().item() == 4 + 1j      # without a graph, as NumPy
    assert (x * c.numpy().real).requires_grad


def test_task_data_keeps_integer_and_boolean_dtypes_and_a_tensor_is_cast_too():
    """Only floating data takes the parameters' dtype: integer ids had been cast to float32
    (a model that indexes with them failed), found by a review; a float64 Tensor given as
    task data is cast as an array is (it had run the task in float64), its graph kept."""
    from minimeta.learners.base import as_tensor

    params = {"w": mm.tensor(np.ones(2, np.float32), requires_grad=True)}
    assert as_tensor(np.array([1, 2]), params).dtype == np.int64
    assert as_tensor(np.array([True, False]), params).dtype == np.bool_
    assert as_tensor(np.ones(2), params).dtype == np.float32
    x = mm.tensor(np.ones(2), requires_grad=True)
    lifted = as_tensor(x, params)
    assert lifted.dtype == np.float32 and mm.grad(lifted.sum(), [x])[0].dtype == np.float64
    ids = np.array([[0, 1], [1, 0]])

    class Bag(nn.Module):
        def __init__(self):
            super().__init__()
            self.add_param("emb", mm.tensor(np.arange(6.0).reshape(3, 2), requires_grad=True))

        def forward(self, x, params):
            return params["emb"][x].sum(axis=1)
    learner = MAML(Bag(), 0.1, 1)
    assert np.isfinite(learner.outer_step([(ids, np.array([0, 1]), ids, np.array([1, 0]))])[
        "loss"])


def test_an_integer_tensor_divided_by_a_python_int_is_numpy_s_float64():
    """``uint8 / 300`` had raised OverflowError (300 lifted as uint8); NumPy gives float64."""
    x = np.array([5, 10], np.uint8)
    for got, want in ((mm.tensor(x) / 300, x / 300), (300 / mm.tensor(x), 300 / x),
                      (mm.tensor(x) / 2, x / 2)):
        assert got.dtype == want.dtype == np.float64
        np.testing.assert_array_equal(got.numpy(), want)
    assert (mm.tensor(np.ones(2, np.float32)) / 3).dtype == np.float32     # floats as before


@pytest.mark.parametrize("axis, keepdims", [(None, False), (-1, True), ((0, 1), False)])
def test_the_mean_of_float16_sums_in_float32_as_numpy_s_does(axis, keepdims):
    """NumPy's mean sums float16 in float32 and gives float16; summed in float16, the mean
    of 70000 ones had been inf (the sum passes 65504), where NumPy's is 1."""
    a = np.ones((2, 70000), dtype=np.float16)
    m = mm.tensor(a).mean(axis, keepdims)
    expected = a.mean(axis, keepdims=keepdims)
    assert m.dtype == np.float16 and m.shape == expected.shape
    np.testing.assert_array_equal(m.numpy(), expected)
