"""The benchmarks' PyTorch workloads compute what they claim (a timing of the wrong computation
would be a false figure): the stacked MAML meta-iteration that the GPU check times against
minimeta's ``StackedTasks`` gives the per-task loop's meta-gradient."""
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
