"""A researcher's own learner and model in minimeta's machinery: found by a probe that built a
CAVIA-style learner and a model with a scalar parameter from the docs alone (2026-12-01). Each
case had given a silently wrong number or lost the training, or could not be done at all.

Read next: ``test_runs.py`` (checkpoints, resume and stops).
"""
import warnings

import numpy as np
import pytest

import minimeta as mm
from minimeta import io, nn
from minimeta.data import SinusoidTasks
from minimeta.experiments import fewshot, training
from minimeta.experiments.config import RunConfig
from minimeta.experiments.registry import LEARNERS, LearnerSpec, model_for
from minimeta.learners import MAML, StackedTasks

QUIET = dict(log=lambda *a: None)


class Scaled(nn.Module):
    """y = s · mlp(x), ``s`` a learned scale of shape ``scale_shape``."""

    def __init__(self, scale_shape=()):
        super().__init__()
        self.add_child("body", nn.mlp((1, 8, 3), dtype=np.float64, init_std=0.5))
        self.add_param("s", np.full(scale_shape, 1.5))

    def forward(self, x, params):
        return params["s"] * self.call_child("body", x, params)


def tasks(n=3):
    return [(xs, np.repeat(ys, 3, 1), xq, np.repeat(yq, 3, 1))
            for xs, ys, xq, yq in SinusoidTasks(seed=0, dtype=np.float64).sample(n, shots=5)]


def test_stacking_refuses_a_scalar_parameter_and_stacks_its_one_element_form():
    # (T,) met the model's last axis (3 outputs), not the task axis: with 3 tasks the stacked
    # meta-gradient was off by up to 0.75 in every entry, without an error
    learner = MAML(Scaled(), 0.1, 1, loss="mse")
    with pytest.raises(ValueError, match="^StackedTasks: the 0-d parameter 's' gets no task "
                                         r"axis .*give it shape \(1,\)"):
        StackedTasks(learner).meta_gradient(tasks())
    learner = MAML(Scaled((1,)), 0.1, 1, loss="mse")
    for loop, stacked in zip(learner.meta_gradient(tasks()),
                             StackedTasks(learner).meta_gradient(tasks())):
        np.testing.assert_allclose(stacked.numpy(), loop.numpy(), rtol=1e-10, atol=1e-12)


def test_train_refuses_a_model_without_its_learner_and_a_learner_on_copies(tmp_path):
    config = RunConfig(learner="maml", dataset="sinusoid", iterations=2, meta_batch=2,
                       out=str(tmp_path / "run"))
    mine = model_for(config)
    with pytest.raises(ValueError, match="^train: a model without its learner"):
        training.train(config, model=mine, **QUIET)     # had trained the registry's instead
    with pytest.raises(ValueError, match="^train: a learner without its model"):
        training.train(config, learner=MAML(mine, 0.01, 1, loss="mse"), **QUIET)
    copies = {name: mm.tensor(p.numpy(), requires_grad=True)          # float64 copies, say
              for name, p in mine.named_parameters().items()}
    with pytest.raises(ValueError, match="^train: the learner's parameters 0.weight, 0.bias, "
                                         "2.weight and 3 more are not the model's own"):
        training.train(config, mine, MAML(mine, 0.01, 1, loss="mse", params=copies), **QUIET)
    assert not (tmp_path / "run").exists()         # refused before the folder was made


class Halved(MAML):
    """A learner of one's own: MAML whose inner rate is halved after the first step."""


def test_a_learner_of_one_s_own_trains_and_evaluates_by_name(tmp_path, monkeypatch):
    # RunConfig had taken its --learner choices once, at import: a registered learner was
    # refused ("--learner must be one of maml, ...")
    def build(config):
        model = model_for(config)
        return model, Halved(model, config.inner_lr, config.inner_steps, loss="mse")

    spec = LearnerSpec("optimization", build, {5: dict(shots=5, queries=5, meta_batch=2,
                                                       inner_lr=0.01, inner_steps=1,
                                                       test_steps=1, outer_lr=1e-3)},
                       LEARNERS["maml"].options, datasets=("sinusoid",))
    monkeypatch.setitem(LEARNERS, "halved", spec)
    config = RunConfig(learner="halved", dataset="sinusoid", iterations=2,
                       out=str(tmp_path / "run"))
    run = training.train(config, **QUIET)
    assert isinstance(run.learner, Halved) and len(run.curve) == 2
    mse, _ = fewshot.evaluate(run.checkpoint, episodes=2, **QUIET)
    assert np.isfinite(mse)


class LearnedRate(MAML):
    """A learner of one's own that trains a Tensor outside the model (Meta-SGD's pattern): a
    learned scale of its inner rate, in ``meta_parameters()``; saved with ``keeps``."""

    def __init__(self, *args, keeps=False, **kwargs):
        super().__init__(*args, **kwargs)
        self.scale, self.keeps = mm.tensor(np.ones(1, np.float32), requires_grad=True), keeps

    def step_size(self, name):
        return self.scale * self.inner_lr

    def meta_parameters(self):
        return super().meta_parameters() + [self.scale]

    def state_dict(self):
        return {"scale": self.scale.numpy().copy()} if self.keeps else {}


@pytest.mark.parametrize("keeps", [False, True])
def test_a_tensor_trained_outside_the_model_must_be_in_the_learner_s_state(keeps, tmp_path):
    # a resumed run had restarted it from 1.0 while the model and Adam's moments went on, so
    # it ended elsewhere than an uninterrupted run, silently (found by probing)
    config = RunConfig(learner="maml", dataset="sinusoid", iterations=1, meta_batch=2,
                       out=str(tmp_path / "run"))
    model = model_for(config)
    learner = LearnedRate(model, config.inner_lr, 1, loss="mse", keeps=keeps)
    if keeps:                                  # held by its state: trained and saved
        training.train(config, model, learner, **QUIET)
        assert io.load(str(tmp_path / "run" / "checkpoint.npz"))["learner"]
        return
    with pytest.raises(ValueError, match=r"^train: the learner trains a Tensor of shape \(1,\) "
                                         "outside the model .* learner.state_dict"):
        training.train(config, model, learner, **QUIET)
    assert not (tmp_path / "run").exists()         # refused before the folder was made
    config.out = None                              # no checkpoint, nothing to lose: it trains
    assert len(training.train(config, model, learner, **QUIET).curve) == 1


def test_a_resumed_model_of_another_architecture_is_refused_naming_the_checkpoint(tmp_path):
    # the error had said "load_state_dict: … (another architecture or way count?)", naming
    # neither the checkpoint nor --resume (an audit of resuming)
    config = RunConfig(learner="maml", dataset="sinusoid", iterations=1, meta_batch=2,
                       out=str(tmp_path / "run"))
    training.train(config, **QUIET)
    wider = nn.mlp((1, 41, 40, 1), seed=0)
    config = RunConfig(learner="maml", dataset="sinusoid", iterations=2, meta_batch=2,
                       out=str(tmp_path / "run"), resume=True)
    with pytest.raises(ValueError, match=r"^--resume: \S+/checkpoint\.npz does not fit this "
                                         r"run's model: load_state_dict: "):
        training.train(config, wider, MAML(wider, 0.01, 1, loss="mse"), **QUIET)
    assert int(io.load(str(tmp_path / "run" / "checkpoint.npz"))["iteration"]) == 1


def test_a_saving_forward_that_returns_a_bare_array_is_refused_by_name():
    """With ``saves = True`` a bare (2, 3) result had been split into a (3,) output and a
    "saved" row, silently, and a (3,) one failed with an unnamed unpacking error."""
    class Forgot(mm.Primitive):
        abstract = True
        saves = True

        def forward(self, a):
            return a * a

        def vjp(self, g, out, a):
            return (2 * g * a,)

    for x in (np.ones((2, 3)), np.ones(3)):
        with pytest.raises(TypeError, match=r"^Forgot.forward: saves = True, so it must return "
                                            r"\(out, saved\)"):
            mm.apply(Forgot(), mm.tensor(x, requires_grad=True))


def test_gradcheck_checks_a_vjp_s_branch_for_an_input_held_constant():
    """``g * b if a.requires_grad else None``: with the two tests swapped, every order had
    passed, gradcheck making every input a leaf that needs a gradient (an audit of gradcheck);
    it now checks again with a drawn subset held constant (``partial``)."""
    class Mul(mm.Primitive):
        abstract = True

        def forward(self, a, b):
            return a * b

        def vjp(self, g, out, a, b):
            return (g * b if a.requires_grad else None, g * a if b.requires_grad else None)

    class Swapped(Mul):
        abstract = True

        def vjp(self, g, out, a, b):
            return (g * b if b.requires_grad else None, g * a if a.requires_grad else None)

    a, b = np.array([0.3, -1.2, 0.5]), np.array([0.7, 1.1, -0.4])
    assert sorted(mm.gradcheck(lambda a, b: mm.apply(Mul(), a, b), [a, b], order=3)) == [1, 2, 3]
    for seed in range(3):
        with pytest.raises(mm.GradcheckError, match=r"^gradcheck: with input\(s\) \[[01]\] held "
                                                    "constant"):
            mm.gradcheck(lambda a, b: mm.apply(Swapped(), a, b), [a, b], seed=seed)
    mm.gradcheck(lambda a, b: mm.apply(Swapped(), a, b), [a, b], partial=False)   # as before
    with pytest.raises(TypeError, match="gradcheck: partial must be True, False or None"):
        mm.gradcheck(lambda a: a, [a], partial="yes")


def test_gradcheck_names_an_input_f_ignores_or_an_empty_one():
    """It warned only when every input compared zeros: f reading a model's own Tensor instead
    of one passed in went unsaid beside another input (an audit of gradcheck)."""
    a, b, own = np.array([0.3, -1.2]), np.array([0.7, 1.1]), mm.tensor(np.array([0.1, 0.2]))
    with pytest.warns(mm.GradcheckWarning, match=r"input\(s\) \[1\] compared was 0.*does f use "
                                                 "the Tensors passed in"):
        mm.gradcheck(lambda w, b: (w * w + own).tanh().sum(), [a, b], order=2)
    with pytest.warns(mm.GradcheckWarning, match=r"input\(s\) \[1\] are empty"):
        mm.gradcheck(lambda w, b: (w * w).sum() + b.sum(), [a, np.zeros(0)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mm.gradcheck(lambda w, b: (w * b).tanh().sum(), [a, b], order=2)    # both used: quiet


def test_gradcheck_hands_a_vjp_its_incoming_gradient_in_other_layouts():
    """The incoming gradient had always been C-ordered, so a VJP whose kernel read its
    buffer in C order passed every check (an audit of gradcheck): the engine hands a VJP
    Fortran-ordered gradients and strided views too (a transpose's gradient is a view)."""
    def kernel_assuming_c_order(g):        # the buffer in memory order, read as C order
        return np.reshape(np.ravel(g, order="K"), g.shape)

    class Double(mm.Primitive):
        abstract = True

        def forward(self, a):
            return 2 * a

        def vjp(self, g, out, a):
            return (2 * g,)

    class DoubleC(Double):
        abstract = True

        def vjp(self, g, out, a):
            return (mm.tensor(2 * kernel_assuming_c_order(g.numpy())),)

    a = np.array([[0.3, -1.2, 0.5], [0.7, 1.1, -0.4]])
    mm.gradcheck(lambda a: mm.apply(Double(), a), [a])
    mm.gradcheck(lambda a: mm.apply(DoubleC(), a[0]), [a])      # 1-D: any view reads right
    with pytest.raises(mm.GradcheckError, match=r"^gradcheck: order-1 gradient w.r.t. input 0 "
                                                r"changes when the incoming gradient is "
                                                r"Fortran-ordered instead of C-ordered"):
        mm.gradcheck(lambda a: mm.apply(DoubleC(), a), [a])


def test_gradcheck_refuses_a_function_that_writes_into_its_input():
    """gradcheck's leaves are fresh copies, so an op that doubled its input in place passed
    (an audit of gradcheck); in a graph the input's other users read the doubled values."""
    class DoubleInPlace(mm.Primitive):
        abstract = True

        def forward(self, a):
            np.multiply(a, 2, out=a)
            return a.copy()

        def vjp(self, g, out, a):
            return (2 * g,)

    a = np.array([0.3, -1.2, 0.5])
    with pytest.raises(mm.GradcheckError, match=r"^gradcheck: f wrote into input 0 \(its "
                                                r"values changed during the call\)"):
        mm.gradcheck(lambda a: mm.apply(DoubleInPlace(), a), [a])
    x = mm.tensor(a.copy(), requires_grad=True)
    (g,) = mm.grad((mm.apply(DoubleInPlace(), x) * x).sum(), [x])   # why: 4x read as 8x
    assert not np.allclose(g.numpy(), 4 * a)
    assert np.array_equal(a, [0.3, -1.2, 0.5])    # the caller's array was never handed over
