"""Empty batches and zero-shot tasks: NumPy's answer (the references are the spec) or an error
naming the learner and the empty part, never a reshape error from deep inside a kernel."""
import numpy as np
import pytest

import minimeta as mm
import minimeta.functional as F
from minimeta import kernels as K
from minimeta.learners import CNP, MANNLearner, SnailLearner
from minimeta.engine.primitives.causal import causal_conv1d
from minimeta.nn import backbones

RNG = np.random.default_rng(0)


def _grads(fn, *shapes):
    xs = [mm.tensor(RNG.standard_normal(s), requires_grad=True) for s in shapes]
    y = fn(*xs)
    return [y.numpy()] + [g.numpy() for g in mm.grad((y * y).sum(), xs)]


@pytest.mark.parametrize("fn, shapes, out", [
    (lambda x, w, b: F.conv2d(x, w, b, padding=1), [(0, 2, 5, 5), (3, 2, 3, 3), (3,)],
     (0, 3, 5, 5)),
    (lambda x, w, b: F.conv2d(x, w, b), [(2, 2, 5, 5), (0, 2, 3, 3), (0,)],   # no channels out
     (2, 0, 3, 3)),
    (lambda x, w: F.conv2d(x, w, stride=2), [(0, 3, 6, 6), (4, 3, 3, 3)], (0, 4, 2, 2)),
    (lambda x, w: causal_conv1d(x, w, 2), [(2, 0, 7), (3, 0, 2)], (2, 3, 7)),  # no channels in
    (lambda x, w: causal_conv1d(x, w, 1), [(0, 2, 5), (3, 2, 2)], (0, 3, 5)),
    (lambda x: F.max_pool2d(x, 2), [(0, 3, 4, 4)], (0, 3, 2, 2)),
])
def test_empty_batches_run_as_the_reference(fn, shapes, out):
    """The numba kernels had reshaped an empty array by -1 (conv with a bias, batch 0). Each
    output has its shape, each gradient its input's, and all are zero (nothing flows)."""
    RNG.bit_generator.state = np.random.default_rng(1).bit_generator.state
    fast = _grads(fn, *shapes)
    RNG.bit_generator.state = np.random.default_rng(1).bit_generator.state
    with K.use_reference():
        spec = _grads(fn, *shapes)
    assert [a.shape for a in fast] == [out] + [tuple(s) for s in shapes]
    for a, b in zip(fast, spec):
        assert not a.any()
        np.testing.assert_array_equal(a, b)


def test_lookup_sends_an_empty_argument_to_the_reference():
    x, w = np.ones((2, 2, 5, 5)), np.ones((0, 2, 3, 3))
    assert K.lookup("conv2d", x, w) is K.TABLE["conv2d"].reference
    assert K.lookup("conv2d", x[:0], np.ones((1, 2, 3, 3))) is K.TABLE["conv2d"].reference
    assert K.lookup("conv2d", x, np.ones((1, 2, 3, 3))) is not K.TABLE["conv2d"].reference


def test_flatten_softmax_and_cross_entropy_of_nothing():
    assert F.flatten(mm.tensor(np.zeros((0, 2, 3, 3)))).shape == (0, 18)
    assert F.flatten(mm.tensor(np.zeros((2, 0, 2, 3, 3)))).shape == (2, 0, 18)
    z = mm.tensor(np.zeros((3, 0)), requires_grad=True)
    for f in (F.softmax, F.log_softmax):
        y = f(z)
        assert y.shape == (3, 0) and mm.grad(y.sum(), [z])[0].shape == (3, 0)
    with pytest.raises(ValueError, match=r"cross_entropy: no rows in logits \(0, 5\)"):
        F.cross_entropy(mm.tensor(np.zeros((0, 5))), np.zeros(0, int))


def _img(n):
    return RNG.random((n, 1, 28, 28))


def test_learners_name_the_empty_part_of_a_task():
    f64 = dict(dtype=np.float64)
    empty, yq = np.zeros(0, int), np.repeat(np.arange(3), 2)

    def snail(shots=1):
        return SnailLearner(3, shots, embedding=backbones.conv4(hidden=8, **f64), features=8,
                            **f64)

    with pytest.raises(ValueError, match="SnailLearner: ways and shots must be >= 1"):
        snail(shots=0)
    with pytest.raises(ValueError, match="SnailLearner: empty support in the task"):
        snail().outer_step([(_img(0), empty, _img(6), yq)])
    with pytest.raises(ValueError, match="SnailLearner: empty queries in the task"):
        snail().evaluate((_img(3), np.arange(3), _img(0), empty))
    cnp, pts = CNP(hidden=8, **f64), np.ones((3, 1))
    with pytest.raises(ValueError, match=r"CNP: empty context in the task \(shape \(0, 1\)\)"):
        cnp.outer_step([(pts[:0], pts[:0], pts, pts)])
    with pytest.raises(ValueError, match="CNP: empty targets in the task"):
        cnp.evaluate((pts, pts, pts[:0], pts[:0]))
    mann = MANNLearner(ways=2, image_size=28, hidden=8, rows=4, width=2, heads=1, **f64)
    with pytest.raises(ValueError, match="MANNLearner: empty episode in the task"):
        mann.outer_step([(_img(0), empty, _img(0), empty)])
