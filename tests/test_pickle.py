"""Tensors, models and learners through pickle and copy: a loaded Tensor is stamped where it
is loaded. Stamps (``Tensor._seq``, the creation order ``grad`` prunes the graph by) come from
one process's counter; unpickled in another process, a parameter had kept its old stamp, so
``grad`` left out every op made there and MAML silently adapted nothing (its evaluate gave the
no-adaptation loss), or a stepped parameter was refused as changed in place."""
import copy
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import minimeta as mm
from minimeta.learners import MAML
from minimeta.nn.backbones import mlp


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_a_tensor_survives_every_pickle_protocol(protocol):
    """Protocols 0 and 1 had refused a class with __slots__ and no __getstate__."""
    t = pickle.loads(pickle.dumps(mm.tensor([1.0, 2.0], requires_grad=True, name="w"),
                                  protocol=protocol))
    assert t.requires_grad and t.name == "w" and t.dtype == np.float64
    np.testing.assert_array_equal(mm.grad((t * t).sum(), [t])[0].numpy(), [2.0, 4.0])


def test_a_copied_graph_keeps_its_order():
    x = mm.tensor([1.0, 3.0], requires_grad=True)
    y = x * x
    for pair in (copy.deepcopy((x, y)), copy.deepcopy((y, x))[::-1],
                 pickle.loads(pickle.dumps((y, x)))[::-1]):
        xc, yc = pair
        assert xc._seq < yc._seq
        np.testing.assert_array_equal(mm.grad(yc.sum(), [xc])[0].numpy(), [2.0, 6.0])


SCRIPT = textwrap.dedent("""
    import pickle, sys
    learner, task = pickle.load(sys.stdin.buffer)
    for check in (lambda: learner.evaluate(task)[0],
                  lambda: mm_grad((learner.params["0.weight"] ** 2).sum(),  # stepped by Adam
                                  learner.params["0.weight"])):
        try:
            print(repr(float(check())))
        except Exception as e:
            print("error:", type(e).__name__)
""")


def test_a_maml_learner_adapts_in_the_process_that_loads_it():
    rng = np.random.default_rng(0)
    xs, xq = (rng.normal(size=(10, 1)).astype(np.float32) for _ in range(2))
    task = (xs, 3 * xs, xq, 3 * xq)
    for _ in range(300):                     # this process's stamps run ahead of a fresh one's
        mm.tensor(np.ones(2)) * 2.0
    learner = MAML(mlp(seed=0), inner_lr=0.05, inner_steps=5, loss="mse")
    opt = mm.optim.Adam(learner.meta_parameters(), lr=1e-3)
    for _ in range(3):
        learner.outer_step([task])
        opt.step()
        opt.zero_grad()
    adapted, unadapted = learner.evaluate(task)[0], learner.evaluate(task, steps=0)[0]
    assert adapted < unadapted / 10          # adaptation shows
    code = ("import minimeta as mm\n"
            "def mm_grad(y, w): return mm.grad(y, [w])[0].numpy().sum()\n" + SCRIPT)
    out = subprocess.run([sys.executable, "-c", code], input=pickle.dumps((learner, task)),
                         capture_output=True, check=True).stdout.decode().splitlines()
    w = learner.params["0.weight"].numpy()
    assert out == [repr(adapted), repr(float((2 * w).sum()))]


@pytest.mark.parametrize("copied", [lambda t: pickle.loads(pickle.dumps(t)), copy.deepcopy],
                         ids=["pickle", "deepcopy"])
def test_a_copied_stale_graph_is_still_refused_and_a_fresh_one_still_runs(copied):
    """A loss made before an optimizer step is refused; a copy of it had been accepted (the
    copy is stamped anew and the leaf's stamp of the change forgotten), its VJPs reading the
    stepped weights: the gradient of w·w at w = [1, 2] came back as [1, 3], not [2, 4]."""
    w = mm.tensor([1.0, 2.0], requires_grad=True)
    stale = (w * w).sum()
    mm.optim.SGD([w], lr=0.5).step([np.ones(2)])
    fresh = (w * w).sum()
    stale_copy, w_copy = copied((stale, w))
    assert stale_copy.item() == 5.0
    with pytest.raises(RuntimeError, match="changed in place since"):
        mm.grad(stale_copy, [w_copy])
    fresh_copy, w_copy = copied((fresh, w))
    np.testing.assert_array_equal(mm.grad(fresh_copy, [w_copy])[0].numpy(), [1.0, 3.0])
    mm.optim.SGD([w_copy], lr=0.5).step([np.ones(2)])     # stepped after the copy: refused
    with pytest.raises(RuntimeError, match="changed in place since"):
        mm.grad(fresh_copy, [w_copy])
