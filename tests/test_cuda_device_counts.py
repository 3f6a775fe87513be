"""How often a meta-iteration on the GPU waits for it, and how many calls it makes there,
counted on the stand-in CuPy (``tests/fake_cupy.py``) with the CUDA kernels in numba's
simulator: device reads (each waits for the GPU to finish its queued work) and device calls
(each a launch and host-side bookkeeping).

These run in the simulator child of ``tests/test_cuda_kernels.py`` (numba's simulator must be
on before numba's first import), which lists them by name; collected without it, this file
holds no tests.
"""
import os

import numpy as np
import pytest

if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
    from test_cuda_kernels import _small_models

    def test_maml_reads_the_device_twice_a_task_whatever_its_inner_steps(monkeypatch):
        """Each read of a GPU value (``float``, ``.item()``, ``.get()``) waits for the GPU to
        drain its queue. MAML's task loop reads the query loss and the accuracy of each task,
        and nothing inside the inner loop: the count does not grow with the inner steps. A
        stacked meta-batch (``StackedTasks``) reads twice in all, whatever its size."""
        import fake_cupy
        from minimeta import nn
        from minimeta.data import EpisodeSampler
        from minimeta.learners import MAML, StackedTasks

        fake_cupy.install(monkeypatch)
        classes = np.random.default_rng(0).random((4, 3, 4, 4))
        tasks = EpisodeSampler(classes, 2, 1, 2, seed=0).batch(3)
        reads = {}
        for steps, stacked in ((1, False), (3, False), (1, True), (3, True)):
            net = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1, dtype=np.float64, seed=1),
                                nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                                nn.Linear(8, 2, dtype=np.float64, seed=2)).to("cuda")
            learner = MAML(net, 0.3, steps)
            fake_cupy.TRANSFERS.clear()
            (StackedTasks(learner) if stacked else learner).outer_step(tasks)
            reads[steps, stacked] = sum(fake_cupy.TRANSFERS.values())
        assert reads == {(1, False): 2 * len(tasks), (3, False): 2 * len(tasks),
                         (1, True): 2, (3, True): 2}, reads

    def test_mann_reads_the_device_twice_a_step_whatever_its_sequence(monkeypatch):
        """MANN's usage, which picks the rows to write, stays on the device (ranked by
        comparisons): an outer step reads its loss and accuracy, whatever the sequence's
        length (a usage on the host had read the read and write weights at every step)."""
        import fake_cupy
        from minimeta.data import EpisodeSampler
        from minimeta.learners import MANNLearner

        fake_cupy.install(monkeypatch)
        classes = np.random.default_rng(0).random((4, 3, 4, 4))
        reads = {}
        for shots in (1, 3):
            learner = MANNLearner(2, 4, hidden=4, rows=4, width=3, heads=2, dtype=np.float64)
            learner.net.to("cuda")
            fake_cupy.TRANSFERS.clear()
            learner.outer_step(EpisodeSampler(classes, 2, shots, 0, seed=0).batch(2))
            reads[shots] = sum(fake_cupy.TRANSFERS.values())
        assert reads == {1: 2, 3: 2}, reads

    def test_a_stacked_meta_batch_makes_as_many_device_calls_whatever_its_size(monkeypatch):
        """What a GPU pays per call (a launch, host-side bookkeeping) is what stacking saves:
        the task loop's device calls grow with the meta-batch, a stack's do not (every layer
        takes the task axis in one call; a per-task Python loop on the GPU path fails this).
        Batch norm's per-task running-average updates too: they merge, one per buffer
        (``functional.layers.RunningAverage``)."""
        import fake_cupy
        from minimeta.data import EpisodeSampler
        from minimeta.learners import MAML, StackedTasks

        fake_cupy.install(monkeypatch, run=False)   # counted, not run
        classes = np.random.default_rng(0).random((4, 3, 4, 4))
        calls = {}
        for size in (2, 4):     # 2, not 1: a stack of one broadcasts nothing (no matmul copy)
            tasks = EpisodeSampler(classes, 2, 1, 2, seed=0).batch(size)
            for stacked in (False, True):
                learner = MAML(_small_models("maml").model.to("cuda"), 0.3, 2)
                fake_cupy.DEVICE_CALLS.clear()
                (StackedTasks(learner) if stacked else learner).outer_step(tasks)
                calls[size, stacked] = sum(fake_cupy.DEVICE_CALLS.values())
        assert calls[4, True] == calls[2, True], calls
        assert calls[4, False] >= 1.9 * calls[2, False], calls
        print(f"device calls per meta-batch: {calls}")

    def test_protonet_and_a_clipped_step_read_the_device_no_more_than_they_report(monkeypatch):
        """A ProtoNet episode reads its loss and its accuracy, nothing else (its check that
        every class has a support example had read the class counts off the GPU: the labels
        are on the host); an optimizer step that clips reads the gradient norm once (it had
        read each parameter's sum of squares: one wait for the GPU per parameter)."""
        import fake_cupy
        import minimeta as mm
        from minimeta import nn
        from minimeta.data import EpisodeSampler
        from minimeta.learners import ProtoNet
        from minimeta.optim import Adam

        fake_cupy.install(monkeypatch)
        classes = np.random.default_rng(0).random((4, 3, 4, 4))
        tasks = EpisodeSampler(classes, 2, 1, 2, seed=0).batch(3)
        net = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1, dtype=np.float64, seed=1),
                            nn.ReLU(), nn.MaxPool2d(2), nn.Flatten()).to("cuda")
        fake_cupy.TRANSFERS.clear()
        ProtoNet(net).outer_step(tasks)
        assert sum(fake_cupy.TRANSFERS.values()) == 2 * len(tasks), fake_cupy.TRANSFERS
        params = list(net.named_parameters().values())
        for p in params:
            p.grad = mm.tensor(np.ones(p.shape), device="cuda")
        optimizer = Adam(params, lr=1e-3, clip_norm=1.0)
        fake_cupy.TRANSFERS.clear()
        optimizer.step()
        assert len(params) == 2 and dict(fake_cupy.TRANSFERS) == {"float": 1}
        assert optimizer.last_norm == pytest.approx(np.sqrt(sum(p.size for p in params)))
