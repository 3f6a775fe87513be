"""What a meta-batch leaves behind: gradients reach the learner's parameters only, the same on
one thread and on several, and a step that raises leaves none of them; the error names the
task that failed."""
import numpy as np
import pytest

import minimeta as mm
import minimeta.functional as F
from minimeta.learners import MAML
from minimeta.nn.backbones import mlp

RNG = np.random.default_rng(0)
TASKS = [(RNG.normal(size=(4, 2)), np.arange(4) % 2, RNG.normal(size=(6, 2)), np.arange(6) % 2)
         for _ in range(4)]


def _learner(workers, temp):
    learner = MAML(mlp((2, 8, 2), seed=0, dtype=np.float64), inner_lr=0.1, inner_steps=1,
                   loss=lambda out, y: F.cross_entropy(out * temp, y))
    learner.workers = workers
    return learner


@pytest.mark.parametrize("workers", [1, 2])
def test_a_tensor_outside_the_parameters_gets_no_gradient_on_any_thread_count(workers):
    """One thread had filled it through backward() (5.47), two threads had not (None), and a
    failed step had left part of a batch in it."""
    temp = mm.tensor(1.5, requires_grad=True)
    learner = _learner(workers, temp)
    learner.outer_step(TASKS)
    assert temp.grad is None
    before = {k: p.grad.numpy().copy() for k, p in learner.params.items()}
    bad = TASKS[:2] + [(TASKS[2][0], TASKS[2][1].astype(float)) + TASKS[2][2:]] + TASKS[3:]
    with pytest.raises(ValueError) as raised:
        learner.outer_step(bad)
    assert temp.grad is None
    for k, p in learner.params.items():
        np.testing.assert_array_equal(p.grad.numpy(), before[k])
    if hasattr(raised.value, "add_note"):
        assert "MAML.outer_step: in task 2 of 4" in raised.value.__notes__


def test_one_thread_and_two_give_the_same_bits():
    grads = []
    for workers in (1, 2):
        learner = _learner(workers, 1.5)
        learner.outer_step(TASKS)
        grads.append([p.grad.numpy() for p in learner.meta_parameters()])
    for a, b in zip(*grads):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("make", [lambda ps: mm.optim.Adam(ps, lr=0.1),
                                  lambda ps: mm.optim.SGD(ps, lr=10.0, momentum=0.9)])
def test_an_optimizer_step_that_raises_midway_steps_nothing(make):
    """Under np.errstate(all="raise") an overflow in parameter 1's update had left parameter 0
    stepped, the moments of parameter 1 inf and the step counted: a retry stepped parameter 0
    twice."""
    def fresh():
        return [mm.tensor(np.full(3, v, np.float32), requires_grad=True) for v in (1.0, 2.0, 3.0)]
    good = [np.full(3, 0.5, np.float32)] * 3
    ps = fresh()
    opt = make(ps)
    opt.step(good)
    saved = [p.numpy().copy() for p in ps], opt.state_dict()
    with np.errstate(all="raise"), pytest.raises(FloatingPointError):
        opt.step([good[0], np.full(3, 1e38, np.float32), good[2]])   # g·g, lr·g overflow
    for p, before in zip(ps, saved[0]):
        np.testing.assert_array_equal(p.numpy(), before)
    state = opt.state_dict()
    assert state.keys() == saved[1].keys()
    for k in state:
        np.testing.assert_array_equal(state[k], saved[1][k])
    opt.step(good)
    twin_ps = fresh()
    twin = make(twin_ps)
    twin.step(good)
    twin.step(good)
    for p, q in zip(ps, twin_ps):
        np.testing.assert_array_equal(p.numpy(), q.numpy())
