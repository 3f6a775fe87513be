"""Layers, losses, optimizers and checkpoints as a PyTorch user ports them: each test below
failed on the code before its fix (found by probing, 2026-12-01; what agreed with PyTorch to
1e-14 is in ``test_nn.py`` and ``test_functional.py``):
- ``accuracy`` refuses (N, 1) or one-hot labels (it had compared every row with every label:
  1/3 for a perfect prediction);
- ``avg_pool2d`` pools each image of a stack (it had pooled channels and rows) and refuses a
  window larger than the image (it had returned an empty Tensor);
- a stride or window of 0, a tuple, a float, and BatchNorm's momentum=None are refused by name
  (0 had meant "the default", the others had raised bare TypeErrors);
- ``Module.load_state_dict`` checks every shape before it copies anything (a misfit late in the
  state had left a half-loaded model);
- an optimizer refuses another optimizer's state, or one for other parameters, and changes
  nothing (Adam had taken SGD's state silently and stepped wrong); its hyper-parameters are
  checked (betas = (1, 0.999) had made NaN);
- ``BatchNorm2d`` and ``LSTMCell`` check their sizes by name, Adam refuses eps = 0 (NaN where
  a gradient had been 0 at every step) and a step a complex gradient (2026-12, by probing);
- ``mse_loss`` of an integer prediction does not truncate the target to integers;
- ``cosine_attention`` says to one-hot the labels (it had said "matmul: not aligned").
"""
import numpy as np
import pytest

import minimeta as mm
import minimeta.functional as F
from minimeta import nn
from minimeta.optim import SGD, Adam


@pytest.mark.parametrize("labels", [np.array([[0], [1], [2]]), np.eye(3, dtype=int),
                                    np.array([0, 1]), np.array([0.0, 1.0, 2.0])])
def test_accuracy_refuses_labels_that_are_not_one_integer_per_row(labels):
    logits = mm.tensor(np.eye(3))
    assert F.accuracy(logits, np.arange(3)) == 1.0
    with pytest.raises(ValueError, match=r"accuracy: labels must be (\(3,\)|3) integers"):
        F.accuracy(logits, labels)


def test_avg_pool2d_pools_each_image_of_a_stack_and_refuses_a_window_too_large():
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 6, 6))
    got = F.avg_pool2d(mm.tensor(x), 2).numpy()
    want = x.reshape(2, 3, 4, 3, 2, 3, 2).mean(axis=(4, 6))
    np.testing.assert_allclose(got, want, rtol=1e-12)
    np.testing.assert_allclose(F.avg_pool2d(mm.tensor(x[0]), 3, stride=1).numpy()[1, 2, 0, 0],
                               x[0, 1, 2, :3, :3].mean(), rtol=1e-12)
    with pytest.raises(ValueError, match=r"avg_pool2d: input \(2, 3, 4, 6, 6\) must be NCHW .* "
                                         r"sides >= kernel 7"):
        F.avg_pool2d(mm.tensor(x), 7)


x4 = mm.tensor(np.ones((1, 2, 6, 6)))
w4 = mm.tensor(np.ones((3, 2, 3, 3)))


@pytest.mark.parametrize("call, message", [
    (lambda: F.max_pool2d(x4, 2, stride=0), "max_pool2d: stride must be an int >= 1"),
    (lambda: F.max_pool2d(x4, 0), "max_pool2d: kernel must be an int >= 1"),
    (lambda: F.avg_pool2d(x4, 2, stride=0), "avg_pool2d: stride must be an int >= 1"),
    (lambda: F.conv2d(x4, w4, stride=(1, 2)), r"conv2d: stride must be an int >= 1 \(one value "
                                              r"for both axes\), got \(1, 2\)"),
    (lambda: F.conv2d(x4, w4, padding=1.0), "conv2d: padding must be an int >= 0"),
    (lambda: nn.Conv2d(2, 3, (3, 1)), "Conv2d: kernel_size must be an int >= 1"),
    (lambda: nn.Conv2d(2, 3, 3, stride=True), "Conv2d: stride must be an int >= 1"),
    (lambda: nn.MaxPool2d(2, 0), "MaxPool2d: stride must be an int >= 1"),
    (lambda: nn.BatchNorm2d(3, momentum=None), r"BatchNorm2d: momentum must be a number in "
                                               r"\[0, 1\] \(None, PyTorch's cumulative"),
    (lambda: nn.BatchNorm2d(3, eps=0), "BatchNorm2d: eps must be a number > 0"),
    # a layer's sizes (0 channels had been taken, -2 had met NumPy's "negative dimensions",
    # hidden_size 0 NumPy's OverflowError)
    (lambda: nn.BatchNorm2d(0), "BatchNorm2d: channels must be an int >= 1, got 0"),
    (lambda: nn.BatchNorm2d(-2), "BatchNorm2d: channels must be an int >= 1, got -2"),
    (lambda: nn.LSTMCell(3, 0), "LSTMCell: hidden_size must be an int >= 1, got 0"),
    (lambda: nn.LSTMCell(0, 3), "LSTMCell: input_size must be an int >= 1, got 0"),
    (lambda: nn.LSTMCell(3, 4, recurrent_size=2.0), "LSTMCell: recurrent_size must be an int"),
    (lambda: mm.causal_conv1d(mm.tensor(np.ones((1, 1, 4))), mm.tensor(np.ones((1, 1, 2))),
                              1.9), r"causal_conv1d: dilation must be an int >= 1, got 1.9"),
    (lambda: F.cosine_attention(mm.tensor(np.ones((1, 2, 4))), mm.tensor(np.ones((1, 3, 4))),
                                np.array([[0, 1, 1]])), "cosine_attention: support_onehot"),
])
def test_a_bad_window_stride_or_momentum_is_named(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_a_sequential_slice_is_refused_by_name_and_indices_still_work():
    seq = nn.Sequential(nn.ReLU(), nn.Tanh())
    assert isinstance(seq[-1], nn.Tanh)
    with pytest.raises(TypeError, match=r"Sequential\[0:1\]: slices are not offered"):
        seq[0:1]


def test_load_state_dict_checks_every_shape_before_it_copies_anything():
    model = nn.mlp((2, 3, 2), dtype=np.float64)
    before = {k: v.copy() for k, v in model.state_dict().items()}
    state = {k: v + 1.0 for k, v in before.items()}
    last = list(state)[-1]
    state[last] = np.zeros(5)                       # the last entry misfits, the others fit
    with pytest.raises(ValueError, match=f"{last.split(':')[1]} has shape .*nothing loaded"):
        model.load_state_dict(state)
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)     # had been overwritten


def stepped(opt_class, **options):
    p = mm.tensor(np.array([1.0, -2.0]), requires_grad=True)
    opt = opt_class([p], lr=0.1, **options)
    opt.step([np.array([0.5, 0.25])])
    return p, opt


@pytest.mark.parametrize("state, message", [
    (lambda: stepped(SGD, momentum=0.9)[1].state_dict(), "Adam.load_state_dict: the state is "
                                                         "a SGD's"),
    (lambda: {**stepped(Adam)[1].state_dict(), "m.1": np.zeros(2)}, r"m\.1 fits none"),
    (lambda: {**stepped(Adam)[1].state_dict(), "m.0": np.zeros(3)}, r"m\.0 has shape \(3,\), "
                                                                    r"parameter 0 \(2,\)"),
    (lambda: {**stepped(Adam)[1].state_dict(), "counts": np.array([1, 1])},
     "counts for 2 parameters, this Adam holds 1"),
])
def test_an_optimizer_refuses_a_state_that_is_not_its_own_and_changes_nothing(state, message):
    p, adam = stepped(Adam)
    kept = {k: np.copy(v) for k, v in adam.state_dict().items()}
    with pytest.raises(ValueError, match=message):
        adam.load_state_dict(state())
    for k, v in adam.state_dict().items():
        np.testing.assert_array_equal(v, kept[k], err_msg=k)
    adam.load_state_dict(adam.state_dict())          # its own state still loads
    sgd = stepped(SGD)[1]
    with pytest.raises(ValueError, match="SGD.load_state_dict: the state is a Adam's"):
        sgd.load_state_dict(adam.state_dict())


def test_a_subclass_that_names_no_slots_loads_its_own_state():
    from minimeta.optim import Optimizer

    class Momentum(Optimizer):                 # a user's optimizer, written before ``slots``
        def _update(self, i, p, g):
            v = self._slot("velocity", i, p)
            v *= 0.9
            v += g
            return self.lr * v

    p = mm.tensor(np.array([1.0]), requires_grad=True)
    opt = Momentum([p], lr=0.1)
    opt.step([np.array([1.0])])
    again = Momentum([p], lr=0.1)
    again.load_state_dict(opt.state_dict())
    assert again.state["velocity"][0].tolist() == [1.0]


def test_a_state_saved_before_the_optimizer_was_named_still_loads():
    _, adam = stepped(Adam)
    old = {k: v for k, v in adam.state_dict().items() if k not in ("optimizer", "counts")}
    again = stepped(Adam)[1]
    again.load_state_dict(old)
    assert again.counts == [1] and np.array_equal(again.state["m"][0], adam.state["m"][0])


@pytest.mark.parametrize("make, message", [
    (lambda p: Adam([p], betas=(1.0, 0.999)), r"Adam: betas must be two numbers in \[0, 1\)"),
    (lambda p: Adam([p], betas=0.9), "Adam: betas must be"),
    (lambda p: Adam([p], eps=-1e-8), "Adam: eps must be finite, > 0"),
    (lambda p: Adam([p], eps=0), "Adam: eps must be finite, > 0, got 0"),   # 0/0 had made NaN
    (lambda p: Adam([p], weight_decay=-0.1), "Adam: weight_decay must be finite, >= 0"),
    (lambda p: SGD([p], lr=0.1, momentum=-0.9), r"SGD: momentum must be in \[0, 1\)"),
    (lambda p: SGD([p], lr=0.1, weight_decay=float("nan")), "SGD: weight_decay must be finite"),
    # infinities had been taken (the learners and the command line refuse them)
    (lambda p: SGD([p], lr=float("inf")), "SGD: learning rate must be a finite number > 0"),
    (lambda p: SGD([p], lr=0.1, weight_decay=float("inf")), "SGD: weight_decay must be finite"),
    (lambda p: Adam([p], eps=float("inf")), "Adam: eps must be finite"),
    (lambda p: Adam([p], clip_norm=float("inf")), "Adam: clip_norm must be a finite number"),
])
def test_optimizer_hyper_parameters_are_checked(make, message):
    with pytest.raises(ValueError, match=message):
        make(mm.tensor([1.0], requires_grad=True))


def test_step_refuses_a_dict_of_gradients():
    """list() of a dict gives its keys: the names had been read as gradients."""
    p = mm.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(TypeError, match="SGD.step: grads must be a list in the parameters'"):
        SGD({"w": p}, lr=0.1).step({"w": np.ones(2)})
    np.testing.assert_array_equal(p.numpy(), [1.0, 2.0])


def test_step_refuses_a_complex_gradient_and_steps_nothing():
    """It had been cast to the real parameter, its imaginary part dropped with only NumPy's
    ComplexWarning."""
    p = mm.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(ValueError, match="^SGD.step: gradient 0 has dtype complex128, not real"):
        SGD([p], lr=0.1).step([np.array([1j, 1.0])])
    np.testing.assert_array_equal(p.numpy(), [1.0, 2.0])


def test_mse_of_an_integer_prediction_does_not_truncate_the_target():
    assert F.mse_loss(mm.tensor(np.array([1, 2])), [0.5, 0.5]).item() == 1.25   # had been 2.5
    pred = mm.tensor(np.array([1.0, 2.0], np.float32), requires_grad=True)
    assert F.mse_loss(pred, np.array([0.5, 0.5])).dtype == np.float32    # float stays its own


@pytest.mark.parametrize("fused", [True, False])
def test_batch_norm_promotes_mixed_dtypes_fused_or_not(fused):
    # the fused primitive had returned float32 for a float32 input and float64 weights, where
    # its composite (and x * w + b) gave float64: two results of one call, by a flag
    rng = np.random.default_rng(0)
    x = mm.tensor(rng.standard_normal((4, 3)).astype(np.float32), requires_grad=True)
    w, b = (mm.tensor(rng.standard_normal(3), requires_grad=True) for _ in range(2))
    y = F.batch_norm(x, w, b, fused=fused)
    assert y.dtype == np.float64
    gx, gw = mm.grad((y * y).sum() + y.sum(), [x, w])
    assert (gx.dtype, gw.dtype) == (np.float32, np.float64)   # each its own leaf's dtype
    other = F.batch_norm(x, w, b, fused=not fused)
    np.testing.assert_allclose(y.numpy(), other.numpy(), rtol=1e-12, atol=1e-12)
