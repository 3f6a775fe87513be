"""The whole machine: tasks on worker threads and kernels split over threads give the same
numbers as one thread, and the engine's switches are per thread.

- Each learner's meta-gradient with ``workers=2`` equals the sequential one (float64, 1e-12
  relative), for MAML, first-order MAML, Meta-SGD, ANIL, Reptile's update and the metric
  learners' batches of episodes.
- The conv kernels split over 2 threads equal their single-thread run and the reference.
- The malloc policy reuses large blocks (no page faults), against the mutant glibc default.
- Per-thread switches, proved by mutation: with the engine's state made global again (one
  shared object), a thread inside ``no_grad`` turns recording off for another thread, and the
  isolation test fails.

Read next: ``test_machine_limits.py`` (numba without OpenMP or TBB, and a CPU quota).
"""
import json
import os
import threading

import numpy as np
import pytest

import minimeta as mm
from minimeta import kernels as K, nn
from minimeta.data import omniglot
from minimeta.engine import autodiff, grad_mode, workers
from minimeta.kernels import conv_numba, conv_ref, threads as kernel_threads
from minimeta.learners import ANIL, MAML, MatchingNet, MetaSGD, ProtoNet, RelationNet, Reptile

F64 = np.float64


def tiny_conv4(out=3, seed=0):
    return nn.conv4(out, hidden=4, image_size=28, seed=seed, dtype=F64)


def tasks(n, ways=3, shots=2, queries=2, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        ys, yq = np.repeat(np.arange(ways), shots), np.repeat(np.arange(ways), queries)
        out.append((rng.random((ways * shots, 1, 28, 28)), ys,
                    rng.random((ways * queries, 1, 28, 28)), yq))
    return out


def gradients(learner, batch, n_workers):
    """The .grad of every meta-parameter after one outer_step, as arrays (then cleared)."""
    learner.workers = n_workers
    metrics = learner.outer_step(batch)
    out = [p.grad.numpy().copy() for p in learner.meta_parameters()]
    for p in learner.meta_parameters():
        p.grad = None
    return out, metrics


LEARNERS = {
    "maml": lambda: MAML(tiny_conv4(), 0.4, 2),
    "fomaml": lambda: MAML(tiny_conv4(), 0.4, 2, first_order=True),
    "metasgd": lambda: MetaSGD(tiny_conv4(), 0.1, 1),
    "anil": lambda: ANIL(tiny_conv4(), 0.4, 2),
    "protonet": lambda: ProtoNet(nn.conv4(hidden=4, seed=0, dtype=F64)),
    "matching": lambda: MatchingNet(nn.conv4(hidden=4, seed=0, dtype=F64)),
    "relation": lambda: RelationNet(nn.relation_embedding(hidden=4, dtype=F64),
                                    nn.relation_module(hidden=4, fc=3, dtype=F64)),
}


@pytest.mark.parametrize("name", sorted(LEARNERS))
def test_parallel_meta_gradient_equals_sequential(name):
    learner, batch = LEARNERS[name](), tasks(5)
    sequential, m1 = gradients(learner, batch, 1)
    parallel, m2 = gradients(learner, batch, 2)
    scale = max(np.abs(g).max() for g in sequential)
    assert scale > 1e-3  # a real gradient is compared
    for a, b in zip(sequential, parallel):
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-12 * scale)
    assert m1 == pytest.approx(m2, rel=1e-12)


def test_the_comparison_catches_a_lost_task(monkeypatch):
    """Mutation: a map that drops the last task's result must fail the comparison above."""
    learner, batch = LEARNERS["maml"](), tasks(4)
    sequential, _ = gradients(learner, batch, 1)
    real = workers.map_threads
    monkeypatch.setattr("minimeta.learners.base.map_threads",
                        lambda fn, items, n: real(fn, items, n)[:-1])
    lost, _ = gradients(learner, batch, 2)
    assert max(np.abs(a - b).max() for a, b in zip(sequential, lost)) > 1e-6


def test_reptile_update_is_the_same_on_two_workers():
    finals = []
    for n_workers in (1, 2):
        learner = Reptile(tiny_conv4(), 0.01, 3, outer_lr=0.5)
        learner.workers = n_workers
        learner.outer_step(tasks(4))
        finals.append([p.numpy().copy() for p in learner.params.values()])
    for a, b in zip(*finals):
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-12)
    assert max(np.abs(a - p.numpy()).max() for a, p in
               zip(finals[0], Reptile(tiny_conv4(), 0.01, 3, 0.5).params.values())) > 1e-6


# ----- the engine's switches are per thread ---------------------------------------------------
def _record_while_other_thread_in_no_grad():
    """Thread A enters no_grad and waits; thread B (this one) differentiates meanwhile."""
    inside, done = threading.Event(), threading.Event()

    def other():
        with mm.no_grad():
            inside.set()
            done.wait(10)

    t = threading.Thread(target=other)
    t.start()
    inside.wait(10)
    try:
        x = mm.tensor([2.0], requires_grad=True)
        (g,) = mm.grad(mm.sum(x * x), [x])
        return float(g.numpy()[0])
    finally:
        done.set()
        t.join()


def test_no_grad_in_one_thread_leaves_another_recording():
    assert _record_while_other_thread_in_no_grad() == 4.0


def test_isolation_test_fails_with_a_shared_state(monkeypatch):
    """Mutation: one _GradState shared by all threads (as before this change)."""
    class Shared:
        enabled, backward_depth = True, 0

    shared = Shared()
    monkeypatch.setattr(autodiff, "STATE", shared)      # read by apply
    monkeypatch.setattr(grad_mode, "STATE", shared)     # switched by no_grad
    with pytest.raises(ValueError,
                       match="does not require grad|not part of the graph|no output requires"):
        _record_while_other_thread_in_no_grad()


def test_workers_inherit_the_callers_settings():
    x = mm.tensor([1.0, 0.0], requires_grad=True)
    with mm.no_grad():
        recorded = workers.map_threads(lambda _: (x * 2).requires_grad, range(3), 2)
    assert recorded == [False] * 3
    with K.use_reference():
        chosen = workers.map_threads(lambda _: K.lookup("conv2d"), range(3), 2)
    assert chosen == [conv_ref.conv2d] * 3
    assert K.lookup("conv2d") is not conv_ref.conv2d  # the caller's block has ended
    with mm.detect_anomaly(), np.errstate(divide="ignore"), \
            pytest.raises(FloatingPointError, match="Log"):
        workers.map_threads(lambda _: mm.log(x), range(2), 2)


def test_use_reference_is_per_thread():
    inside, done, seen = threading.Event(), threading.Event(), []

    def other():
        with K.use_reference():
            inside.set()
            done.wait(10)

    t = threading.Thread(target=other)
    t.start()
    inside.wait(10)
    seen.append(K.lookup("conv2d"))
    done.set()
    t.join()
    assert seen[0] is not conv_ref.conv2d


def _maml_buffers(n_workers):
    rng = np.random.default_rng(3)
    tasks = [(rng.random((3, 1, 28, 28)), np.arange(3), rng.random((6, 1, 28, 28)),
              np.repeat(np.arange(3), 2)) for _ in range(4)]
    net = nn.conv4(3, dtype=F64, seed=0)
    learner = MAML(net, 0.4, 1)
    learner.workers = n_workers
    for _ in range(2):
        learner.outer_step(tasks)
    return {k: v for k, v in net.state_dict().items() if "running" in k}


def test_running_averages_are_the_same_on_two_workers(monkeypatch):
    """Batch norm's running averages are order-dependent; the tasks' updates are deferred and
    applied in task order (``workers.defer``), so two workers give the sequential loop's
    buffers bit for bit, every time. Mutation: applied in reverse task order, they differ."""
    runs = [_maml_buffers(n) for n in (1, 2, 2, 2)]
    assert len(runs[0]) == 8
    for run in runs[1:]:
        for key in runs[0]:
            np.testing.assert_array_equal(run[key], runs[0][key], err_msg=key)
    real = workers.map_threads

    def reversed_updates(fn, items, n):
        kept = {}

        def one(pair):
            i, item = pair
            saved, workers._DEFERRED.pending = workers._DEFERRED.pending, []
            try:
                return fn(item)
            finally:
                kept[i], workers._DEFERRED.pending = workers._DEFERRED.pending, saved

        results = real(one, list(enumerate(items)), n)
        for i in sorted(kept, reverse=True):
            for update in kept[i]:
                update()
        return results

    monkeypatch.setattr("minimeta.learners.base.map_threads", reversed_updates)
    mutated = _maml_buffers(2)
    assert any(not np.array_equal(mutated[k], runs[0][k]) for k in runs[0])


def test_map_threads_order_and_errors():
    assert workers.map_threads(lambda i: i * i, range(7), 3) == [i * i for i in range(7)]

    def fail(i):
        if i == 3:
            raise ValueError("task 3")
        return i

    with pytest.raises(ValueError, match="task 3"):
        workers.map_threads(fail, range(6), 2)
    with pytest.raises(ValueError, match="workers must be at least 1"):
        workers.map_threads(fail, range(6), 0)


# ----- kernels split over threads -------------------------------------------------------------
# shapes with several chunks / column blocks, so the split really happens
CASES = [((40, 64, 7, 7), 1, 1),     # im2col chunks (7×7 planes)
         ((24, 8, 14, 14), 1, 1),    # shifted GEMMs (14×14 planes), several column blocks
         ((90, 16, 9, 9), 2, 0)]     # stride 2: im2col, no padding


@pytest.mark.parametrize("shape,stride,padding", CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_conv_kernels_split_over_threads(shape, stride, padding, dtype):
    rng = np.random.default_rng(1)
    x = rng.standard_normal(shape).astype(dtype)
    w = rng.standard_normal((8, shape[1], 3, 3)).astype(dtype)
    y = conv_ref.conv2d(x, w, stride, padding)
    g = rng.standard_normal(y.shape).astype(dtype)
    runs = {}
    for split in (1, 2, 3):
        kernel_threads.LOCAL.split = split
        try:
            runs[split] = (conv_numba.conv2d(x, w, stride, padding),
                           conv_numba.conv2d_input_grad(g, w, x.shape, stride, padding),
                           conv_numba.conv2d_weight_grad(x, g, w.shape, stride, padding))
        finally:
            kernel_threads.LOCAL.split = None
    reference = (y, conv_ref.conv2d_input_grad(g, w, x.shape, stride, padding),
                 conv_ref.conv2d_weight_grad(x, g, w.shape, stride, padding))
    tol = 1e-4 if dtype == np.float32 else 1e-11
    for split, results in runs.items():
        for got, want in zip(results, reference):
            scale = np.abs(want).max()
            np.testing.assert_allclose(got, want, rtol=0, atol=tol * scale)
    for a, b in zip(runs[1][:2], runs[2][:2]):  # disjoint pieces: bit for bit
        np.testing.assert_array_equal(a, b)


def test_split_really_uses_threads(monkeypatch):
    """The cases above split: parallel_map is handed several pieces, on several threads."""
    seen, idents = set(), set()
    real = kernel_threads.parallel_map

    def spy(fn, items):
        items = list(items)
        seen.add(len(items))
        return real(lambda item: (idents.add(threading.get_ident()), fn(item))[1], items)

    monkeypatch.setattr(conv_numba, "parallel_map", spy)
    kernel_threads.LOCAL.split = 2
    try:
        x = np.random.default_rng(0).standard_normal((40, 64, 7, 7)).astype(np.float32)
        conv_numba.conv2d(x, np.ones((8, 64, 3, 3), np.float32), 1, 1)
    finally:
        kernel_threads.LOCAL.split = None
    assert max(seen) >= 2 and len(idents) == 2


# ----- the command line: --threads ------------------------------------------------------------
@pytest.mark.skipif(not os.path.exists(os.path.join(omniglot.data_dir(),
                                                    omniglot.FILES["background"][0])),
                    reason="Omniglot not found in MINIMETA_DATA_DIR")
def test_train_on_one_or_two_threads_gives_the_same_run(tmp_path, monkeypatch):
    """A MAML run on Omniglot with --threads 1 and --threads 2: the same losses, accuracies
    and weights, to float32 rounding (the tasks' gradients are added in the same order);
    --threads 0 refused."""
    from minimeta import cli, io

    monkeypatch.setenv("MINIMETA_CACHE_DIR", str(tmp_path / "cache"))
    runs = {}
    for n in (1, 2):
        out = str(tmp_path / f"t{n}")
        assert cli.main(["train", "--learner", "maml", "--ways", "3", "--queries", "2",
                         "--iterations", "3", "--meta-batch", "4", "--validate-every", "3",
                         "--val-episodes", "4", "--threads", str(n), "--out", out]) == 0
        lines = open(os.path.join(out, "metrics.jsonl")).read().splitlines()
        runs[n] = [json.loads(line) for line in lines], io.load(
            os.path.join(out, "checkpoint.npz"))["model"]
    (m1, w1), (m2, w2) = runs[1], runs[2]
    for a, b in zip(m1, m2):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)
        assert a.get("accuracy") == b.get("accuracy")
    assert m1[-1]["val_accuracy"] == m2[-1]["val_accuracy"]
    # the weights, and the batch-norm running buffers (updated in task order: workers.defer)
    assert len(w1) == 18 + 8 and w1.keys() == w2.keys()
    for key in w1:
        np.testing.assert_allclose(np.asarray(w2[key]), np.asarray(w1[key]), rtol=1e-5,
                                   atol=1e-6)
    with pytest.raises(SystemExit):
        cli.main(["train", "--learner", "maml", "--threads", "0"])


@pytest.mark.parametrize("name", ["maml", "protonet", "reptile"])
def test_an_outer_step_that_fails_leaves_nothing_on_one_worker_as_on_two(name):
    """A task that fails (an inf under detect_anomaly) in a meta-batch: on two workers the
    call's deferred batch-norm updates are dropped and no .grad is set; on one worker the
    earlier tasks' gradients and buffer updates had stayed (found by probing, 2026-12-01)."""
    batch = tasks(4)
    batch[2][0][0, 0, 0, 0] = np.inf
    for n_workers in (1, 2):
        learner = LEARNERS[name]() if name in LEARNERS else Reptile(tiny_conv4(), 0.1, 1, 0.5)
        learner.workers = n_workers
        module = learner.module()
        before = {k: b.copy() for k, b in module.named_buffers().items()}
        with pytest.raises(mm.AnomalyError), mm.detect_anomaly():
            learner.outer_step(batch)
        assert all(p.grad is None for p in learner.meta_parameters()), n_workers
        for k, b in module.named_buffers().items():
            np.testing.assert_array_equal(b, before[k])
        learner.outer_step(tasks(2))                     # and the next step runs as usual
        if name != "reptile":                            # (Reptile moves θ, sets no .grad)
            assert all(p.grad is not None for p in learner.meta_parameters())


def test_configure_refuses_zero_threads():
    from minimeta.threads import configure

    for bad in (0, -1, 1.5, True, "a"):
        with pytest.raises(ValueError, match=f"^configure: threads must be an integer >= 1 "
                           rf"\(None: every core\), got {bad!r}"):
            configure(threads=bad)
