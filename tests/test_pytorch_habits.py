"""A PyTorch user's own model and training loop, each habit once silently wrong here (found by
probing the nn, optim and io layers, 2026-12-01; each test failed on the code before its fix):
- ``self.fc = Linear(...)`` registered nothing: ``parameters()`` was empty, an optimizer of
  no parameters was accepted and trained nothing, and a forward calling ``self.fc(x)`` ignored
  ``params``, so MAML adapted nothing (its loss equal before and after the inner steps), as
  it did inside ``no_grad`` (its support loss had no graph);
- layers made without ``seed`` were all seeded 0: two ``Linear(64, 64)`` started equal;
- ``BatchNorm2d(3, affine=False)`` on 1 channel copied its statistics into all 3 buffers, and
  a (3,) bias on a (4, 1) weight broadcast a linear layer's output to (2, 3);
- conv2d, pooling, batch norm and flatten failed on NumPy arrays (a memoryview error);
- ``io.save`` turned ``[1, 'a']`` into two strings and dropped a string's trailing NUL;
- a parameter named 'fc.weight' beside a child 'fc' hid one of the two;
- a parameter missing from FCE's or SNAIL's query path was a bare KeyError;
- ``BatchNorm2d``, ``MaxPool2d`` and ``LSTMCell`` printed no sizes (``BatchNorm2d()``).
"""
import os

import numpy as np
import pytest

import minimeta as mm
import minimeta.functional as F
from minimeta import io, nn, optim
from minimeta.learners import MAML, MetaSGD, Reptile, StackedTasks
from minimeta.nn.module import MissingParameter
from minimeta.nn.snail import SNAIL


class Attributes(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(1, 1)


def test_a_layer_or_a_parameter_set_as_an_attribute_is_refused_with_the_way_to_do_it():
    with pytest.raises(TypeError, match=r"^Attributes: self.fc = Linear\(...\) registers nothing"
                       r".*self.add_child\('fc', ...\), and in forward self.call_child\('fc'"):
        Attributes()
    module = nn.Module()
    with pytest.raises(TypeError, match=r"self.w = Tensor\(...\) .*self.add_param\('w', array"):
        module.w = mm.tensor([1.0], requires_grad=True)
    module.scale = mm.tensor([2.0])                      # a constant is plain state: allowed
    module.width = 3
    for held in ([nn.Linear(1, 1)], {"a": nn.Linear(1, 1)}, (mm.tensor([1.0],
                                                                        requires_grad=True),)):
        with pytest.raises(TypeError, match=r"self.blocks = (list|dict|tuple) holding a "
                           r"(Linear|Tensor) registers nothing"):    # PyTorch's ModuleList
            module.blocks = held
    head = nn.conv4(5)
    with pytest.raises(ValueError, match=r"name '17' is taken \(add_child\(..., replace=True"):
        head.add_child("17", nn.Linear(64, 20))        # a name used twice in a loop, say
    head.add_child("17", nn.Linear(64, 20), replace=True)     # a new head replaces the old
    assert head(np.ones((1, 1, 28, 28), np.float32)).shape == (1, 20)
    with pytest.raises(ValueError, match="^SGD: no parameters to optimize"):
        optim.SGD(nn.Module().parameters(), lr=0.1)


class Ignores(nn.Module):
    """Children registered, but called without their part of params (PyTorch's habit)."""

    def __init__(self):
        super().__init__()
        self.add_child("fc", nn.Linear(1, 1, seed=0, dtype=np.float64))

    def forward(self, x, params):
        return self._children["fc"](x)


@pytest.mark.parametrize("steps", [1, 2])
def test_maml_refuses_a_model_whose_forward_ignores_params(steps):
    x = np.linspace(-1, 1, 8).reshape(8, 1)
    task = (x, 2 * x, x, 2 * x)
    for learner in (MAML, MetaSGD):
        with pytest.raises(ValueError, match=f"^{learner.__name__}: the query output does not "
                           "depend on the adapted weights"):
            learner(Ignores(), 0.1, inner_steps=steps, loss="mse").meta_gradient([task])
        with pytest.raises(ValueError, match="the query output does not depend"):
            learner(Ignores(), 0.1, inner_steps=steps, loss="mse").evaluate(task)
    net = nn.Sequential(nn.Linear(1, 1, seed=0, dtype=np.float64))       # reads params
    maml = MAML(net, 0.1, inner_steps=steps, loss="mse")
    assert all(g is not None for g in maml.meta_gradient([task]))
    assert maml.checked_reads                                # checked once, then not again
    stacked = MAML(nn.Sequential(nn.Linear(1, 1, seed=0, dtype=np.float64)), 0.1,
                   inner_steps=steps, loss="mse")
    StackedTasks(stacked).meta_gradient([task, task])      # its view's check had been lost,
    assert stacked.checked_reads                            # so it walked the graph each step
    with pytest.raises(ValueError, match="the query output does not depend"):
        StackedTasks(MAML(Ignores(), 0.1, inner_steps=steps, loss="mse")).meta_gradient([task])


def test_maml_and_reptile_adapt_inside_no_grad():
    """``evaluate`` inside ``no_grad`` fine-tunes as outside (MAML had skipped its inner
    steps: the support loss had no graph, so no gradient and no step)."""
    x = np.linspace(-1, 1, 8).reshape(8, 1)
    task = (x, 2 * x + 1, x, 2 * x + 1)
    for learner in (MAML(nn.mlp((1, 8, 1), dtype=np.float64), 0.1, 3, loss="mse"),
                    Reptile(nn.mlp((1, 8, 1), dtype=np.float64), 0.1, 3, 0.5, loss="mse")):
        outside = learner.evaluate(task)
        with mm.no_grad():
            assert learner.evaluate(task) == outside
        assert learner.evaluate(task, steps=0) != outside      # the steps do move the loss


def test_layers_without_a_seed_draw_weights_of_their_own_and_a_seed_repeats():
    a, b = nn.Linear(16, 16), nn.Linear(16, 16)
    assert not np.array_equal(a.parameters()[0].numpy(), b.parameters()[0].numpy())
    c, d = nn.Conv2d(4, 4, 3), nn.Conv2d(4, 4, 3)
    assert not np.array_equal(c.parameters()[0].numpy(), d.parameters()[0].numpy())
    e, f = nn.Linear(16, 16, seed=3), nn.Linear(16, 16, seed=3)
    np.testing.assert_array_equal(e.parameters()[0].numpy(), f.parameters()[0].numpy())
    g, h = nn.LSTMCell(3, 4), nn.LSTMCell(3, 4)
    assert not np.array_equal(g.parameters()[0].numpy(), h.parameters()[0].numpy())
    np.testing.assert_array_equal(nn.conv4(5).parameters()[0].numpy(),
                                  nn.conv4(5).parameters()[0].numpy())   # a model: seed 0


def test_batch_norm_buffers_and_a_linear_bias_must_fit_the_input():
    x = mm.tensor(np.random.default_rng(0).normal(size=(8, 1, 4, 4)))
    for training in (True, False):
        bn = nn.BatchNorm2d(3, affine=False, dtype=np.float64).train(training)
        with pytest.raises(ValueError, match=r"^batch_norm: running_mean has 3 values for an "
                           r"input of 1 channels \(8, 1, 4, 4\)"):
            bn(x)
        assert bn.named_buffers()["running_mean"].tolist() == [0.0, 0.0, 0.0]
    layer = nn.Linear(1, 4)
    bad = {"weight": mm.tensor(np.ones((4, 1))), "bias": mm.tensor(np.ones(3))}
    with pytest.raises(ValueError, match=r"^linear: bias \(3,\) does not fit weight \(4, 1\)"):
        layer(mm.tensor(np.ones((2, 4))), bad)
    from minimeta.functional import linear

    y = linear(mm.tensor(np.ones((2, 5, 4))), mm.tensor(np.ones((2, 4, 3))),
               mm.tensor(np.ones((2, 1, 3))))                        # a stack of 2 tasks
    assert y.shape == (2, 5, 3)


def test_every_layer_takes_numpy_arrays_as_inputs_and_as_params():
    rng = np.random.default_rng(0)
    images = rng.normal(size=(2, 1, 28, 28)).astype(np.float32)
    for model in (nn.conv4(5), nn.Sequential(nn.Conv2d(1, 2, 3, seed=0), nn.MaxPool2d(2),
                                             nn.BatchNorm2d(2), nn.Flatten())):
        expected = model(mm.tensor(images)).numpy()
        np.testing.assert_array_equal(model(images).numpy(), expected)
        arrays = {k: v.numpy() for k, v in model.named_parameters().items()}
        np.testing.assert_array_equal(model(mm.tensor(images), arrays).numpy(), expected)


def test_save_refuses_what_would_not_read_back_as_given_and_writes_nothing(tmp_path):
    path = str(tmp_path / "c.npz")
    io.save(path, {"betas": (0.9, 0.999), "names": ["a", "b"], "rows": [[1, 2], [3, 4]],
                   "losses": [np.float64(0.5), np.array(0.25)], "flags": [True, False],
                   "grads": [mm.tensor([1.0, 2.0]), mm.tensor([3.0, 4.0])]})
    back = io.load(path)
    np.testing.assert_array_equal(back["betas"], [0.9, 0.999])
    assert back["names"].tolist() == ["a", "b"] and back["rows"].tolist() == [[1, 2], [3, 4]]
    assert back["losses"].tolist() == [0.5, 0.25] and back["flags"].dtype == bool
    assert back["grads"].tolist() == [[1.0, 2.0], [3.0, 4.0]]
    other = str(tmp_path / "d.npz")
    for value, message in (([1, "a"], r"the list at 'v' \(holding number, str\)"),
                           ([[1, 2], [3]], r"the list at 'v' \(ragged\)"),
                           ([None], r"the list at 'v' \(holding NoneType\)"),
                           ([True, 2], r"the list at 'v' \(holding bool, number\)"),
                           (["ab\0"], r"the list at 'v' \(a string ending in NUL\)"),
                           ("ab\0", "the string at 'v' ends in NUL")):
        with pytest.raises((TypeError, ValueError), match="^save: " + message):
            io.save(other, {"v": value})
        assert not os.path.exists(other)


def test_a_name_with_a_dot_or_taken_twice_is_refused():
    module = nn.Module()
    module.add_child("fc", nn.Linear(1, 1))
    with pytest.raises(ValueError, match="^Module.add_param: name 'fc.weight' must be a "
                       "non-empty string without '.'"):
        module.add_param("fc.weight", np.ones(1))
    with pytest.raises(ValueError, match="^Module.add_buffer: name 'fc' is taken"):
        module.add_buffer("fc", np.ones(1))
    with pytest.raises(TypeError, match="^Module.add_child: 'x' is a int, not a Module"):
        module.add_child("x", 3)
    assert list(module.named_parameters()) == ["fc.weight", "fc.bias"]


def test_a_parameter_missing_from_a_query_path_is_named_in_full():
    x = lambda *s: mm.tensor(np.random.default_rng(0).standard_normal(s))   # noqa: E731
    fce = nn.FullContextEmbedding(4, steps=2, dtype=np.float64)
    params = {k: v for k, v in fce.named_parameters().items() if k != "attention.bias"}
    with pytest.raises(MissingParameter, match="params has no 'attention.bias'"):
        fce((x(3, 4), x(2, 4)), params)
    net = SNAIL(3, 6, 5, dtype=np.float64, sizes=((4, 3), 4, (4, 3)))
    for name in ("tc1.1.wf", "w_out", "att2.wk"):
        params = {k: v for k, v in net.named_parameters().items() if k != name}
        with pytest.raises(MissingParameter, match=f"params has no '{name}'"):
            net.forward_queries(x(1, 5, 5), x(2, 5), params)
        with pytest.raises(MissingParameter, match=f"params has no '{name}'"):
            net(x(1, 5, 6), params)
    from minimeta.learners import SnailLearner

    learner = SnailLearner(3, 1, dtype=np.float64, sizes=((4, 3), 4, (4, 3)))
    images = np.random.default_rng(0).random((3, 1, 28, 28))
    task = (images, np.arange(3), images, np.arange(3))
    for shared in (True, False):
        params = {k: v for k, v in learner.params.items() if k != "snail.tc1.1.wf"}
        with pytest.raises(MissingParameter, match="params has no 'snail.tc1.1.wf'"):
            learner.logits(*task[:3], params=params, shared=shared)


def test_a_layer_prints_its_sizes():
    assert repr(nn.BatchNorm2d(3)) == "BatchNorm2d(3, momentum=0.1, eps=1e-05)"
    assert repr(nn.BatchNorm2d(3, affine=False)).endswith(", affine=False)")
    assert repr(nn.MaxPool2d(2)) == "MaxPool2d(kernel_size=2, stride=2)"
    assert repr(nn.LSTMCell(3, 4)) == "LSTMCell(3, 4)"
    assert "(1): BatchNorm2d(64, " in repr(nn.conv4(5))


class Tuple(nn.Module):
    """Returns (logits, penalty); the loss unpacks them."""

    def __init__(self):
        super().__init__()
        self.add_child("fc", nn.Linear(2, 3, seed=0, dtype=np.float64))

    def forward(self, x, params):
        out = self.call_child("fc", x, params)
        return out, (out * out).mean()


def test_research_models_that_had_been_refused_or_silently_wrong():
    """Found by probing custom research models, 2026-12-01: a tuple output crashed MAML's new
    check; a frozen layer failed in grad with no name; a layer registered as two children came
    apart after the first inner step (0.089 off PyTorch's tie); a tensor kept on self was
    refused; StackedTasks ran a subclass's own inner loop over all tasks at once."""
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(6, 2)), np.arange(6) % 3
    task = (x, y, x, y)

    def loss(out, labels):
        return F.cross_entropy(out[0], labels) + out[1]

    maml = MAML(Tuple(), 0.1, 2, loss=loss)
    assert all(g is not None for g in maml.meta_gradient([task]))
    frozen = nn.Sequential(nn.Linear(2, 4, seed=0, dtype=np.float64), nn.ReLU(),
                           nn.Linear(4, 3, seed=1, dtype=np.float64))
    frozen[0].parameters()[0].requires_grad = False      # a frozen first weight
    for learner in (MAML(frozen, 0.1, 2), Reptile(frozen, 0.1, 2, 0.5)):
        before = frozen[0].parameters()[0].numpy().copy()
        learner.outer_step([task])
        assert all(p is not frozen[0].parameters()[0] for p in learner.meta_parameters())
        np.testing.assert_array_equal(frozen[0].parameters()[0].numpy(), before)
    lin, twice = nn.Linear(2, 2), nn.Module()
    twice.add_child("a", lin)
    with pytest.raises(ValueError, match="^Module.add_child: 'b' is a module already in this"):
        twice.add_child("b", lin)
    twice.add_child("a", lin, replace=True)             # the same child again: nothing new
    with pytest.raises(ValueError, match="^Module.add_param: name 'w' is taken$"):
        twice.add_param("w", np.ones(1))
        twice.add_param("w", np.ones(1))                 # meant f"w{i}" in a loop
    tied = {"a.weight": lin.parameters()[0], "b.weight": lin.parameters()[0]}
    with pytest.raises(ValueError, match="^MAML: parameters 'a.weight' and 'b.weight' are one "
                       "Tensor"):
        MAML(lambda v, p: v, 0.1, params=tied)
    kept = nn.Module()
    kept.last = mm.tensor([1.0], requires_grad=True) * 2   # an op's result: plain state
    with pytest.raises(ValueError, match="^Module.add_param: name 'dense/kernel' must be"):
        nn.Module().add_param("dense/kernel", np.ones(1))
    with pytest.raises(TypeError, match="^task inputs must be arrays, got a tuple of 2"):
        MAML(nn.Linear(2, 3), 0.1).evaluate(((x, x), y, x, y))

    class Clipped(MAML):
        def adapt_path(self, *args, **kwargs):
            return super().adapt_path(*args, **kwargs)

    from minimeta.learners import StackedTasks
    with pytest.raises(TypeError, match="^StackedTasks: Clipped has an inner loop of its own"):
        StackedTasks(Clipped(nn.Linear(2, 3), 0.1))


def test_frozen_parameters_and_a_head_nothing_reads():
    """Found by a second review: a frozen parameter failed in grad, unnamed, under Meta-SGD on
    two workers, ANIL, explicit adapt_names, or frozen after the learner was made; an adapted
    head that the forward never reads trained with a plain gradient, silently."""
    from minimeta.learners import ANIL

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(6, 2)), np.arange(6) % 3
    task = (x, y, x, y)

    def net():
        return nn.Sequential(nn.Linear(2, 4, seed=0, dtype=np.float64), nn.Tanh(),
                             nn.Linear(4, 3, seed=1, dtype=np.float64))

    for make in (lambda m: MetaSGD(m, 0.1, 2), lambda m: ANIL(m, 0.1, 2),
                 lambda m: MAML(m, 0.1, 2, adapt_names=["0.weight", "2.weight"])):
        model = net()
        learner = make(model)
        learner.workers = 2
        frozen = model[0].parameters()[0]
        frozen.requires_grad = False                     # frozen after the learner was made
        before = frozen.numpy().copy()
        learner.outer_step([task, task])
        assert all(p is not frozen for p in learner.meta_parameters())
        np.testing.assert_array_equal(frozen.numpy(), before)
    unread = net()
    unread.add_child("3", nn.Linear(3, 3, seed=2, dtype=np.float64))   # a head never called
    unread.forward = lambda v, p: unread.call_child("2", unread.call_child(
        "1", unread.call_child("0", v, p), p), p)
    for learner in (ANIL(unread, 0.1, 1), MAML(net(), 0.1, 1, adapt_names=["0.bias"])):
        if learner.model is not unread:
            learner.params["0.bias"].requires_grad = False   # the only adapted one, frozen
        with pytest.raises(ValueError, match="the query output does not depend on the adapted "
                           r"weights \(or none was adapted\)"):
            with mm.no_grad():                           # evaluate checks inside no_grad too
                learner.evaluate(task)


def test_a_layer_freezes_with_requires_grad_underscore_and_its_attribute_is_refused():
    """The tour's "to freeze one, set its requires_grad = False" read as a layer's froze
    nothing: a Module took the attribute silently (a student's audit). PyTorch's
    ``requires_grad_`` freezes them all."""
    model = nn.Sequential(nn.Linear(2, 4, seed=0, dtype=np.float64), nn.Tanh(),
                          nn.Linear(4, 1, seed=1, dtype=np.float64))
    with pytest.raises(AttributeError, match="^Linear: a Module has no requires_grad"):
        model[0].requires_grad = False
    assert model[0].requires_grad_(False) is model[0]
    with pytest.raises(TypeError, match="requires_grad_: expects True or False, got 'no'"):
        model.requires_grad_("no")
    assert [p.requires_grad for p in model.parameters()] == [False, False, True, True]
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 2))
    task = (x, np.sin(x[:, :1]), x, np.sin(x[:, :1]))
    learner = MAML(model, 0.1, 1, loss="mse")
    frozen = [p.numpy().copy() for p in model[0].parameters()]
    head = model.named_parameters()["2.weight"]
    before_head = head.numpy().copy()
    optimizer = optim.SGD(learner.meta_parameters(), lr=0.1)
    learner.outer_step([task])
    optimizer.step()
    for p, before in zip(model[0].parameters(), frozen):
        np.testing.assert_array_equal(p.numpy(), before)
    assert not np.array_equal(head.numpy(), before_head)        # the rest still trains
