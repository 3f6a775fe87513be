"""The benchmarks' PyTorch workloads compute what they claim (a timing of the wrong computation
would be a false figure): the stacked MAML meta-iteration that the GPU check times against
minimeta's ``StackedTasks`` gives the per-task loop's meta-gradient; the op profiler
(``benchmarks/profile_ops.py``) counts each op once, in its phase, and leaves no wrapper behind."""
import collections
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "benchmarks"))


@pytest.mark.parametrize("steps", [1, 2])
def test_torch_stacked_maml_equals_the_loop_over_tasks(steps):
    torch = pytest.importorskip("torch")
    import workloads

    shape = dict(ways=3, queries=2, n_tasks=3, steps=steps, step=False)
    grads = []
    for make in (workloads.torch_maml, workloads.torch_maml_stacked):
        workloads.RNG = np.random.default_rng(4)    # the same tasks for both
        run = make(torch, **shape)
        run()
        grads.append([p.grad.double().numpy() for p in run.params])
    scale = max(np.abs(g).max() for g in grads[0])
    assert scale > 0
    for loop, stacked in zip(*grads):
        # float32: conv biases before batch norm have gradients that are 0 up to rounding
        np.testing.assert_allclose(stacked, loop, rtol=1e-3, atol=1e-5 * scale)


def test_the_op_profiler_times_each_op_once_and_puts_every_forward_back():
    import minimeta as mm
    import profile_ops
    from minimeta.engine.autodiff import Primitive

    def forwards():
        return {cls: vars(cls)["forward"] for cls in profile_ops.subclasses(Primitive)
                if "forward" in vars(cls)}

    before = forwards()
    x = mm.tensor(np.linspace(0.5, 1.5, 4), requires_grad=True)
    with profile_ops.OpTimer() as timer:
        assert forwards() != before                 # wrapped while it runs
        mm.grad((mm.exp(x) * x).sum(), [x])
    assert forwards() == before
    calls = collections.Counter()
    for (name, phase, shape), (n, seconds) in timer.totals.items():
        assert seconds >= 0
        calls[name, phase] += n
    # forward: Exp, Mul, Sum; the VJPs: Sum's broadcast back, Mul's two products, Exp's product
    assert calls["Exp", "forward"] == calls["Mul", "forward"] == calls["Sum", "forward"] == 1
    assert calls["Mul", "backward"] >= 3 and calls["Exp", "backward"] == 0
    assert ("Exp", "forward", (4,)) in timer.totals
