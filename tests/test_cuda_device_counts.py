"""How often a meta-iteration on the GPU waits for it, and how many calls it makes there,
counted on the stand-in CuPy (``tests/fake_cupy.py``) with the CUDA kernels in numba's
simulator: device reads (each waits for the GPU to finish its queued work) and device calls
(each a launch and host-side bookkeeping).

These run in the simulator child of ``tests/test_cuda_kernels.py`` (numba's simulator must be
on before numba's first import), which lists them by name; collected without it, this file
holds no tests.
"""
import collections
import os

import numpy as np
import pytest

if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
    from test_cuda_kernels import _small_models

    def reads_and_calls_after(monkeypatch, fake_cupy):
        """Count, from here on, the device reads (of every kind) and the device calls made
        after the first read: a read waits for the GPU's queue to drain, so one made before
        the step's last call leaves the GPU idle while the host queues the rest."""
        first = []

        class Reads(collections.Counter):
            def __setitem__(self, kind, value):
                if not first:
                    first.append(sum(fake_cupy.DEVICE_CALLS.values()))
                super().__setitem__(kind, value)
        monkeypatch.setattr(fake_cupy, "TRANSFERS", Reads())
        fake_cupy.DEVICE_CALLS.clear()

        def result():
            calls = sum(fake_cupy.DEVICE_CALLS.values())
            return sum(fake_cupy.TRANSFERS.values()), calls - (first[0] if first else calls)
        return result

    def test_maml_reads_the_device_once_a_meta_batch_at_its_end(monkeypatch):
        """Each read of a GPU value (``float``, ``.item()``, ``.get()``) waits for the GPU to
        drain its queue. A meta-iteration, MAML's task loop or a stacked meta-batch, reads its
        losses and accuracies once, together, after its last device call (``summary``),
        whatever its inner steps. The task loop had read each task's loss and accuracy before
        queuing its backward pass: 2 waits a task (a mutant below reads the accuracy so)."""
        import fake_cupy
        from minimeta import functional as F
        from minimeta import nn
        from minimeta.data import EpisodeSampler
        from minimeta.learners import MAML, StackedTasks

        fake_cupy.install(monkeypatch)
        classes = np.random.default_rng(0).random((4, 3, 4, 4))
        tasks = EpisodeSampler(classes, 2, 1, 2, seed=0).batch(3)

        def counts(steps, stacked):
            net = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1, dtype=np.float64, seed=1),
                                nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                                nn.Linear(8, 2, dtype=np.float64, seed=2)).to("cuda")
            learner = MAML(net, 0.3, steps)
            result = reads_and_calls_after(monkeypatch, fake_cupy)
            metrics = (StackedTasks(learner) if stacked else learner).outer_step(tasks)
            assert set(metrics) == {"loss", "accuracy"} and 0 <= metrics["accuracy"] <= 1
            return result()
        reads = {(steps, stacked): counts(steps, stacked) for steps in (1, 3)
                 for stacked in (False, True)}
        assert set(reads.values()) == {(1, 0)}, reads
        with monkeypatch.context() as m:    # the mutant: each task's accuracy read at once
            m.setattr(MAML, "accuracy", lambda self, out, y: F.accuracy(out, y))
            mutant_reads, calls_after = counts(1, False)
        assert mutant_reads == 1 + len(tasks) and calls_after > 0, (mutant_reads, calls_after)

    def test_mann_reads_the_device_once_a_step_whatever_its_sequence(monkeypatch):
        """MANN's usage, which picks the rows to write, stays on the device (ranked by
        comparisons): an outer step reads its loss and accuracy together at its end, whatever
        the sequence's length (a usage on the host had read the read and write weights at
        every step)."""
        import fake_cupy
        from minimeta.data import EpisodeSampler
        from minimeta.learners import MANNLearner

        fake_cupy.install(monkeypatch)
        classes = np.random.default_rng(0).random((4, 3, 4, 4))
        reads = {}
        for shots in (1, 3):
            learner = MANNLearner(2, 4, hidden=4, rows=4, width=3, heads=2, dtype=np.float64)
            learner.net.to("cuda")
            result = reads_and_calls_after(monkeypatch, fake_cupy)
            learner.outer_step(EpisodeSampler(classes, 2, shots, 0, seed=0).batch(2))
            reads[shots] = result()
        assert reads == {1: (1, 0), 3: (1, 0)}, reads

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

    def test_a_replayed_regression_step_reads_once_and_trains_the_same_bits(monkeypatch):
        """A stacked regression's meta-iteration, replayed (``engine/replay.py``): the same
        parameters, bit for bit, after Adam steps on the GPU as without the replay, and a
        replayed step reads the device once, at its end, as the steps it stands for."""
        import fake_cupy
        from minimeta import nn
        from minimeta.learners import MAML, StackedTasks
        from minimeta.optim import Adam

        fake_cupy.install(monkeypatch)
        import cupy     # (the stand-in, installed)
        x = np.random.default_rng(0).uniform(-5, 5, (4, 3, 4, 1))
        batches = [[tuple(cupy.asarray(a) for a in (x[b, t, :2], np.sin(x[b, t, :2]),
                                                      x[b, t, 2:], np.sin(x[b, t, 2:])))
                    for t in range(3)] for b in range(4)]
        params, reads = [], []
        for replay in (True, False):
            learner = StackedTasks(MAML(nn.mlp((1, 4, 1), seed=2, dtype=np.float64).to("cuda"),
                                        0.05, 2, loss="mse"), replay=replay)
            opt = Adam(learner.meta_parameters(), 1e-2)
            for tasks in batches:
                result = reads_and_calls_after(monkeypatch, fake_cupy)
                learner.outer_step(tasks)
                reads.append(result())
                opt.step()
                opt.zero_grad()
            params.append([p.numpy() for p in learner.meta_parameters()])
            if replay:
                traced = learner._traced
        assert all(np.array_equal(a, b) for a, b in zip(*params))
        # replayed, not refused: Where's mask, a CuPy array, is seen as one (it had not been:
        # the check caught the stale mask, and fn ran as it was from then on)
        assert traced.counts["replayed"] == 2 and not traced.why(), traced.why()
        assert reads[2:4] == [(1, 0), (1, 0)], reads   # replayed

    def test_protonet_and_a_clipped_step_read_the_device_no_more_than_they_report(monkeypatch):
        """A ProtoNet meta-batch reads its losses and accuracies once, at its end, nothing else
        (its check that every class has a support example had read the class counts off the
        GPU: the labels are on the host); an optimizer step that clips reads the gradient norm
        once (it had read each parameter's sum of squares: one wait for the GPU per
        parameter)."""
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
        result = reads_and_calls_after(monkeypatch, fake_cupy)
        ProtoNet(net).outer_step(tasks)
        assert result() == (1, 0), fake_cupy.TRANSFERS
        params = list(net.named_parameters().values())
        for p in params:
            p.grad = mm.tensor(np.ones(p.shape), device="cuda")
        optimizer = Adam(params, lr=1e-3, clip_norm=1.0)
        fake_cupy.TRANSFERS.clear()
        optimizer.step()
        assert len(params) == 2 and dict(fake_cupy.TRANSFERS) == {"float": 1}
        assert optimizer.last_norm == pytest.approx(np.sqrt(sum(p.size for p in params)))
