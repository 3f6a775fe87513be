"""The Tensor API's argument forms, as a NumPy user writes them (found by probing the API,
2026-12-01; each test failed on the code before its fix, but four rows of the argument forms,
which already worked, kept as guards):
- ``x.sum(True)``, a slip for ``keepdims=True``, had summed axis 1 (bool is an int);
- NumPy integers as axes, tuples in ``squeeze`` and ``expand_dims``, ``concatenate(axis=None)``
  and an int shape in ``broadcast_to`` had crashed with Python's own errors;
- errors named the wrong value (``reshape`` the shape after its -1 was filled in, ``one_hot``
  the labels' shape, ``pairwise_sq_distances`` a transposed shape) or no op at all (NumPy's
  broadcasting errors, ``x.sum(dim=0)``); ``np.sum(x)`` had failed on ``out=``;
- float16 tensors could require grad, to fail in the backward pass naming a kernel (``where``)
  the user never called.
"""
import numpy as np
import pytest

import minimeta as mm
import minimeta.functional as F

X = np.arange(6.0).reshape(2, 3)


@pytest.mark.parametrize("method", ["sum", "mean", "max", "logsumexp"])
def test_a_bool_axis_is_refused_and_a_numpy_integer_axis_is_an_axis(method):
    x = mm.tensor(X)
    with pytest.raises(TypeError, match=f"^{method}: axis must be an integer, got True$"):
        getattr(x, method)(True)
    np.testing.assert_array_equal(getattr(x, method)(np.int64(1)).numpy(),
                                  getattr(x, method)(1).numpy())
    np.testing.assert_array_equal(getattr(x, method)((np.int32(0), -1)).numpy(),
                                  getattr(x, method)((0, 1)).numpy())
    with pytest.raises(ValueError, match=rf"^{method}: axis \(0, -2\) repeats an axis$"):
        getattr(x, method)((0, -2))


def test_softmax_takes_a_numpy_integer_axis_and_still_shifts_by_the_max():
    z = mm.tensor([0.0, 1e30, 1e30])
    np.testing.assert_array_equal(F.softmax(z, np.int64(0)).numpy(), [0.0, 0.5, 0.5])
    with pytest.raises(TypeError, match="^softmax: axis must be an integer, got True$"):
        F.softmax(z, True)


TWICE = lambda a: 2 * a       # noqa: E731  d/da Σ out², each element of a read once


@pytest.mark.parametrize("call, expected, grad", [
    (lambda t: mm.squeeze(t, (0, 2)), lambda a: np.squeeze(a, (0, 2)), TWICE),
    (lambda t: mm.squeeze(t, None), lambda a: np.squeeze(a), TWICE),
    (lambda t: mm.squeeze(t, np.int64(-1)), lambda a: np.squeeze(a, -1), TWICE),
    (lambda t: mm.expand_dims(t, (0, -1)), lambda a: np.expand_dims(a, (0, -1)), TWICE),
    (lambda t: mm.expand_dims(t, (1, 3)), lambda a: np.expand_dims(a, (1, 3)), TWICE),
    (lambda t: mm.concatenate([t, t * 2], axis=None), lambda a: np.concatenate([a, a * 2], None),
     lambda a: 2 * a + 8 * a),
    (lambda t: mm.broadcast_to(t[0, :, 0], 3), lambda a: np.broadcast_to(a[0, :, 0], 3), TWICE),
    (lambda t: mm.broadcast_to(t[0, :1, 0], (2, 3)), lambda a: np.broadcast_to(a[0, :1, 0],
                                                                              (2, 3)),
     lambda a: np.where(np.arange(3)[None, :, None] == 0, 12 * a, 0)),
    (lambda t: t.transpose(np.int64(2), 0, 1), lambda a: a.transpose(2, 0, 1), TWICE),
    (lambda t: t.reshape(np.int64(3), -1), lambda a: a.reshape(3, -1), TWICE),
    (lambda t: np.sum(t), lambda a: np.sum(a), lambda a: 2 * a.sum() * np.ones_like(a)),
    (lambda t: t.reshape(np.array([3, 1])), lambda a: a.reshape(3, 1), TWICE),   # (a review
    (lambda t: t.transpose(np.argsort([2, 0, 1])), lambda a: a.transpose(1, 2, 0), TWICE),
    (lambda t: t.sum(np.array([0, 2])), lambda a: a.sum((0, 2)), TWICE),  # found these refused)
    (lambda t: abs(-t) + (+t), lambda a: 2 * a, lambda a: 8 * a),
])
def test_numpy_argument_forms_give_numpys_values_and_gradients(call, expected, grad):
    a = np.arange(1.0, 4.0).reshape(1, 3, 1)
    t = mm.tensor(a, requires_grad=True)
    out = call(t)
    assert isinstance(out, mm.Tensor)
    np.testing.assert_array_equal(out.numpy(), expected(a))
    (g,) = mm.grad((out * out).sum(), [t])
    np.testing.assert_allclose(g.numpy(), grad(a), rtol=1e-15)


@pytest.mark.parametrize("call, error, message", [
    (lambda x: x.reshape(-1, 4), ValueError,
     r"reshape: cannot reshape a tensor of shape \(2, 3\) \(6 elements\) into \(-1, 4\)"),
    (lambda x: x[:1, :1].reshape(-1, -1), ValueError,
     r"reshape: shape \(-1, -1\) may hold one -1 and no other negative size"),
    (lambda x: x.reshape("a"), TypeError, "reshape: shape must be an integer or a tuple"),
    (lambda x: mm.broadcast_to(x, (3, 3)), ValueError,
     r"broadcast_to: cannot broadcast shape \(2, 3\) to \(3, 3\)"),
    (lambda x: x.transpose(0), ValueError, r"transpose: \(0,\) is not a permutation of the 2"),
    (lambda x: x == mm.zeros(2), ValueError, r"equal: shapes \(2, 3\) and \(2,\) cannot"),
    (lambda x: x < np.ones(4), ValueError, r"less: shapes \(2, 3\) and \(4,\) cannot"),
    (lambda x: x.sum(dim=0), TypeError, "sum: unexpected argument dim=0"),
    (lambda x: np.sum(x, out=np.zeros(())), TypeError, "np.sum on a Tensor: out=array"),
    (lambda x: mm.squeeze(x, (0,)), ValueError, r"squeeze: axis 0 of shape \(2, 3\) is not"),
    (lambda x: mm.expand_dims(x, (0, 0)), ValueError, r"expand_dims: axis \(0, 0\) repeats"),
    (lambda x: mm.squeeze(x[:1], (0, 0)), ValueError, r"squeeze: axis \(0, 0\) repeats"),
    (lambda x: mm.expand_dims(x, (0, 4)), ValueError, "expand_dims: axis 4 is out of range"),
    (lambda x: F.one_hot([0, 3, 1], 3), ValueError, r"one_hot: labels must lie in \[0, 3\), "
     "got 3"),
    (lambda x: x.sum(np.array(1.0)), TypeError, r"sum: axis must be an integer, got array"),
    (lambda x: x.sum(np.array([])), TypeError, "sum: axis must be an integer or a tuple"),
    (lambda x: F.softmax(x, 5), ValueError, "softmax: axis 5 is out of range"),
    (lambda x: np.clip(x.detach().requires_grad_(), 0, 1), TypeError,
     "np.clip on a Tensor that requires grad would drop its graph"),
    (lambda x: np.reshape(x, 6, order="F"), TypeError, "np.reshape on a Tensor: order='F' is"),
    (lambda x: mm.scatter_add(x[0], [0, 1], (5,)), ValueError,
     r"scatter_add: g of shape \(3,\) does not fit zeros\(\(5,\)\)\[index\]"),
    (lambda x: mm.scatter_add(x, 0, 2.0), TypeError, "scatter_add: shape must be an integer"),
    (lambda x: F.pairwise_sq_distances(x, mm.ones((2, 4))), ValueError,
     r"pairwise_sq_distances: points a \(2, 3\) and b \(2, 4\) must be"),
])
def test_a_bad_argument_is_one_line_naming_the_op_and_the_value_given(call, error, message):
    with pytest.raises(error, match="^" + message) as caught:
        call(mm.tensor(X))
    assert "\n" not in str(caught.value)


def test_float16_cannot_require_grad_anywhere_it_would_fail_later():
    half = np.ones(2, np.float16)
    message = "float16 tensors cannot require grad: the kernels the gradients run have no"
    with pytest.raises(TypeError, match=f"^tensor: {message}"):
        mm.tensor(half, requires_grad=True)
    with pytest.raises(TypeError, match=f"^requires_grad_: {message}"):
        mm.tensor(half).requires_grad_()
    with pytest.raises(TypeError, match=f"^requires_grad =: {message}"):
        mm.tensor(half).requires_grad = True
    x = mm.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(TypeError, match=f"^astype: {message}"):
        x.astype(np.float16)
    with mm.no_grad():                                   # no graph: a float16 copy is fine
        assert x.astype(np.float16).dtype == np.float16
    assert mm.relu(mm.tensor(half)).dtype == np.float16   # forward only, as before


def test_the_engine_functions_take_plain_arrays():
    """A NumPy array where a Tensor goes: a constant Tensor, as ``mm.exp`` had always taken
    one (``mm.sum`` and ``mm.reshape`` had failed on the array's memoryview, ``.data``)."""
    a = np.arange(6.0).reshape(2, 3)
    for call, expected in [(lambda v: mm.sum(v, 1), a.sum(1)), (lambda v: mm.mean(v), a.mean()),
                           (lambda v: mm.max(v, 0), a.max(0)),
                           (lambda v: mm.reshape(v, (3, 2)), a.reshape(3, 2)),
                           (lambda v: mm.transpose(v), a.T),
                           (lambda v: mm.swapaxes(v, 0, 1), a.T),
                           (lambda v: mm.squeeze(v[None]), a),
                           (lambda v: mm.expand_dims(v, 0), a[None]),
                           (lambda v: mm.broadcast_to(v, (2, 2, 3)),
                            np.broadcast_to(a, (2, 2, 3))),
                           (lambda v: F.pairwise_sq_distances(v, v)[0, 1], 27.0),
                           (lambda v: F.cosine_similarity(v, v)[0], 1.0),
                           # these two had failed on the array's memoryview (2026-12-01)
                           (lambda v: mm.scatter_add(v[0], [2, 0, 2], 4), [1.0, 0, 2, 0]),
                           (lambda v: mm.causal_conv1d(v[None], np.ones((1, 2, 2))),
                            [[[3.0, 8, 12]]])]:
        out = call(a)
        assert isinstance(out, mm.Tensor) and not out.requires_grad
        np.testing.assert_allclose(out.numpy(), expected, rtol=1e-12)


def test_numpy_functions_on_a_tensor_keep_the_graph_or_refuse():
    """``np.reshape``, ``np.squeeze``, ``np.concatenate`` on a Tensor had returned a plain
    array, dropping the graph without a word (as ``np.clip``, ``np.ravel``, ``np.std`` did):
    NumPy's functions minimeta has run minimeta's; others run on a constant's values only."""
    x = mm.tensor(X, requires_grad=True)
    for out in (np.reshape(x, (3, 2)), np.squeeze(x[None]), np.concatenate([x, x]),
                np.transpose(x), np.sum(x, axis=0), np.mean(x), np.max(x), np.stack([x, x]),
                np.expand_dims(x, 0), np.swapaxes(x, 0, 1), np.broadcast_to(x, (2, 2, 3))):
        assert isinstance(out, mm.Tensor) and out.requires_grad
        assert mm.grad(out.sum(), [x])[0].numpy().sum() > 0
    assert np.shape(x) == (2, 3) and np.ndim(x) == 2 and np.size(x) == 6
    np.testing.assert_array_equal(np.clip(mm.tensor(X), 1, 4), np.clip(X, 1, 4))   # a constant


def test_shape_functions_masks_and_indices_copy_the_callers_buffer():
    """A plain array given to a shape function (a view of it had been the result), or a mask
    or an index in memory NumPy only views (a memoryview, the standard library's array; a
    CPU torch tensor is one): refilled before the backward pass, it changes nothing."""
    import array

    w = mm.tensor([1.0, 2.0], requires_grad=True)
    buf = np.array([[1.0, 2.0], [3.0, 4.0]])
    loss = (mm.reshape(buf, (2, 2)) @ w).sum() + (mm.transpose(buf) @ w).sum()
    buf[:] = 0
    np.testing.assert_array_equal(mm.grad(loss, [w])[0].numpy(), [4.0 + 3.0, 6.0 + 7.0])
    x = mm.tensor([1.0, 2.0, 3.0], requires_grad=True)
    mask = np.array([True, False, True])
    y = (mm.where(memoryview(mask), x, 0.0) ** 2).sum()
    mask[:] = False
    np.testing.assert_array_equal(mm.grad(y, [x])[0].numpy(), [2.0, 0.0, 6.0])
    index = array.array("q", [0, 0, 2])
    y = (x[index] ** 2).sum()
    index[0] = index[1] = index[2] = 1
    np.testing.assert_array_equal(mm.grad(y, [x])[0].numpy(), [4.0, 0.0, 6.0])
    assert mm.expand_dims(mm.tensor(np.ones((3, 1))), iter([0])).shape == (1, 3, 1)


@pytest.mark.parametrize("index", [((0, 0), 1), (((2, 2, 0),)), (slice(None), range(-4, 4)),
                                   (((0, 0), (1, 1)), slice(1, None))],
                         ids=["tuple", "tuple-rows", "range", "nested-tuple"])
def test_a_tuple_or_range_inside_an_index_adds_the_gradient_of_its_repeats(index):
    """NumPy reads a tuple (or a range) inside an index as an index array, as it reads a list,
    and ``x[(0, 0), 1]`` picks x[0, 1] twice; its scatter had written the gradient once (the
    basic-index path) and silently lost the repeats."""
    a = np.arange(12.0).reshape(3, 4)
    x = mm.tensor(a, requires_grad=True)
    y = x[index]
    np.testing.assert_array_equal(y.numpy(), a[index])
    (g,) = mm.grad(y.sum(), [x])
    expected = np.zeros_like(a)
    np.add.at(expected, index, 1.0)
    np.testing.assert_array_equal(g.numpy(), expected)
