"""A float32 training step stays float32 end to end, and a float64 one float64.

Every op is recorded at ``autodiff.apply`` (wrapped in every minimeta module that imported
it): the dtypes of its inputs, its output and what it saves, in the forward pass and in the
backward ones, through the meta-gradient's second order where the learner has one. One
training step of every learner of the registry (``LEARNERS``: a new one is checked too), on
each dataset it takes, Omniglot-shaped images (float32, as the data module gives them) or
sinusoid points; then the optimizer's update, and the functional layers, losses, batch norm
(training and eval mode) and derivatives at order 2. Outside the ops: the parameters, their
gradients, the optimizer's state and its update, the model's buffers, and the locals of
the learners' and optimizers' own NumPy code (read at every line it runs). A float64 value
anywhere in a float32 step fails, unless ``ALLOWED`` names it with its reason. Found by this
audit (2026-12-04): ``F.one_hot(..., like=z)`` without a dtype gave np.eye's float64, and
``MANNLearner`` with ``omniglot.area_matrix``'s float64 resize ran a float32 network in
float64 (the registry and the example had cast it by hand). The numba kernels' own float64
values: ``tests/test_kernel_typing.py``; NumPy's promotion rules: ``tests/test_dtypes.py``.
"""
import contextlib
import os
import sys

import numpy as np
import pytest

import minimeta
import minimeta as mm
import minimeta.functional as F
from minimeta import nn, optim
from minimeta.data import EpisodeSampler, SinusoidTasks, omniglot
from minimeta.engine import autodiff
from minimeta.engine.grad_mode import STATE
from minimeta.experiments.config import RunConfig
from minimeta.experiments.registry import INNER_LOOP, LEARNERS, build
from minimeta.learners import (CNP, MAML, MANNLearner, MatchingNet, MetaSGD, ProtoNet,
                               RelationNet, Reptile, SnailLearner, StackedTasks)
from op_trace import applying  # (tests/)

WHY_STATS = "batch norm's running statistics: float64 by design (nn.BatchNorm2d)"
ALLOWED = {  # what may be float64 in a float32 step, and why
    ("buffer", "running_mean"): WHY_STATS, ("buffer", "running_var"): WHY_STATS,
    ("local", "base.py snapshot b"): "whole_or_none's copies of those buffers",
    ("local", "optim.py _clip_scale <return>"): "the clip norm's sum of squares, in float64 "
                                                "(an accumulator, said in its docstring)",
}
# the library's own NumPy work between ops, whose locals are read at every line
TRACED = tuple(os.path.join(os.path.dirname(minimeta.__file__), *part)
               for part in (("learners", ""), ("optim.py",))) + (
    os.path.join(os.path.dirname(minimeta.kernels.__file__), "optim_ref.py"),)   # Adam's


@contextlib.contextmanager
def recorded(wide):
    """Yields (ops, hits): the number of ops run in the block, and for each op that read,
    gave or saved a ``wide`` array, (op, "forward" or "backward", input dtypes, output)."""
    ops, hits, original = [0], [], autodiff.apply

    def traced(op, *inputs):
        out = original(op, *inputs)
        ops[0] += 1
        arrays = [t.data for t in inputs] + [out.data] + list(getattr(out, "saved", ()))
        if any(getattr(a, "dtype", None) == wide for a in arrays):
            hits.append((type(op).__name__, "backward" if STATE.backward_depth else "forward",
                         tuple(str(t.dtype) for t in inputs), str(out.dtype)))
        return out
    with applying(traced):
        yield ops, hits


@contextlib.contextmanager
def traced_locals(wide):
    """Yields the set of ("local", "file function name") of each ``wide`` array or NumPy
    scalar held by a local variable (or in a list, tuple or dict it holds), or returned, in
    the ``TRACED`` files' functions, at each line run in the block (Reptile's outer update,
    an optimizer's temporaries: NumPy work the ops never see). A comprehension counts as
    the function it is in (Python 3.12 inlines list comprehensions)."""
    found, previous = set(), sys.gettrace()

    def lines(frame, event, arg):
        pairs = list(frame.f_locals.items()) + [("<return>", arg)] * (event == "return")
        for name, v in pairs:
            if isinstance(v, (list, tuple, dict)):    # one level in: Reptile's delta dict
                v = next((x for x in (v.values() if isinstance(v, dict) else v)
                          if getattr(x, "dtype", None) == wide), None)
            if isinstance(v, (np.ndarray, np.generic)) and v.dtype == wide:
                where = frame.f_back if frame.f_code.co_name.startswith("<") else frame
                found.add(("local", f"{os.path.basename(frame.f_code.co_filename)} "
                                    f"{where.f_code.co_name} {name}"))
        return lines
    sys.settrace(lambda frame, event, arg: lines if frame.f_code.co_filename.startswith(
        TRACED) else None)
    try:
        yield found
    finally:
        sys.settrace(previous)


def outside_ops(learner, model, opt, wide):
    """The (kind, name) of each ``wide`` array outside the ops: parameters, their ``.grad``,
    the optimizer's state, the model's buffers."""
    found = []
    for i, p in enumerate(learner.meta_parameters()):
        found += [("parameter", str(i))] * (p.dtype == wide)
        found += [("grad", str(i))] * (p.grad is not None and p.grad.dtype == wide)
    for name, slot in (opt.state.items() if opt is not None else ()):
        found += [("optimizer", name)] * any(a.dtype == wide for a in slot if a is not None)
    buffers = model.named_buffers() if hasattr(model, "named_buffers") else {}
    return found + [("buffer", k.rsplit(".", 1)[-1]) for k, b in buffers.items()
                    if b.dtype == wide]


def watch_updates(opt, wide):
    """Record the optimizer's updates that are ``wide`` (before ``step`` casts them back)."""
    seen, update = [], opt._update

    def checked(i, p, g):
        out = update(i, p, g)
        seen.extend([("update", str(i))] * (out.dtype == wide))
        return out
    opt._update = checked
    return seen


def tasks_for(name, dataset, n=2):
    spec = LEARNERS[name]
    ways, shots, queries = 3, 2 if name == "mann" else 1, 0 if name == "mann" else 1
    if dataset == "sinusoid":
        return SinusoidTasks(seed=0).sample(n, 5, 5), {}
    classes = np.random.default_rng(0).random((4, 4, 28, 28), np.float32)
    small = dict(test_steps=1, inner_steps=1) if INNER_LOOP <= spec.options else {}
    return EpisodeSampler(classes, ways, shots, queries, seed=0).batch(n), dict(
        ways=ways, shots=shots, queries=queries, **small)


CASES = [(name, dataset, {}) for name, spec in LEARNERS.items() for dataset in spec.datasets]
CASES += [("matching", "omniglot", {"fce": True}), ("maml", "sinusoid", {"inner_steps": 2,
                                                                     "multi_step_loss": True})]


@pytest.mark.parametrize("name, dataset, extra", CASES, ids=lambda c: str(c).replace(" ", ""))
def test_a_training_step_of_every_learner_is_float32_end_to_end(name, dataset, extra):
    """Build as ``minimeta train`` does (clipping on), one outer step, the optimizer's step,
    one evaluation: no float64 op, gradient, state or update; buffers as ``ALLOWED``."""
    tasks, sizes = tasks_for(name, dataset)
    outer = LEARNERS[name].outer_optimizer
    config = RunConfig(learner=name, dataset=dataset, meta_batch=2, threads=1, out=None,
                       clip_norm=1.0 if outer else None, **{**sizes, **extra})
    model, learner = build(config)
    learner.workers = 1
    opt = optim.Adam(learner.meta_parameters(), lr=1e-3, clip_norm=1.0) if outer else None
    updates = watch_updates(opt, np.float64) if outer else []
    with recorded(np.float64) as (ops, hits), traced_locals(np.float64) as held:
        learner.outer_step(tasks)
        found = outside_ops(learner, model, opt, np.float64)
        if outer:
            opt.step()
        learner.evaluate(tasks[0])
    found += updates + outside_ops(learner, model, opt, np.float64) + list(held)
    assert ops[0] > 50 and hits == []
    assert sorted(set(found) - set(ALLOWED)) == []
    if (name, dataset, extra) == ("maml", "omniglot", {}):    # each entry still happens
        assert set(found) == set(ALLOWED)
    assert {p.dtype for p in learner.meta_parameters()} == {np.dtype(np.float32)}


def order2(loss, xs):
    grads = mm.grad(loss, xs, create_graph=True, allow_unused=True)
    mm.grad(sum((g * g).sum() for g in grads if g is not None), xs, allow_unused=True)


def functional_program(dt, rng=np.random.default_rng(0)):
    """Layers, losses, batch norm in both modes, metric and sequence ops, to order 2."""
    def t(*shape):
        return mm.tensor(rng.standard_normal(shape).astype(dt), requires_grad=True)
    x, w, b, bw, bb, lw, lb = t(2, 3, 6, 6), t(4, 3, 3, 3), t(4), t(4), t(4), t(36, 3), t(3)
    bn = nn.BatchNorm2d(4, dtype=dt)
    stats = bn.named_buffers()
    y = F.batch_norm(F.conv2d(x, w, b, padding=1), bw, bb, stats["running_mean"],
                     stats["running_var"])
    y = F.dropout(F.max_pool2d(F.relu(y), 2) + F.avg_pool2d(y, 2), 0.3, rng=0)
    logits = F.linear(F.flatten(y), lw, lb)
    loss = F.cross_entropy(logits, [1, 2]) + F.mse_loss(F.softmax(logits), np.ones((2, 3)))
    loss = loss + F.log_softmax(logits).mean() + (F.sigmoid(logits) * F.tanh(logits)).sum()
    bn.train(False)
    loss = loss + (bn(F.conv2d(x, w, b, padding=1), bn.named_parameters()) ** 2).mean()
    q, s = t(2, 3, 4), t(2, 5, 4)
    onehot = F.one_hot([0, 1, 2, 0, 1], 3, like=s)
    loss = loss + F.cosine_attention(q, s, mm.broadcast_to(onehot, (2, 5, 3))).sum()
    loss = loss + F.pairwise_sq_distances(q[0], s[0]).sum() + F.cosine_similarity(
        q[0], s[0, :3]).sum() + F.class_means(s[0], [0, 1, 2, 0, 1], 3).sum()
    h, c = F.lstm_cell(q[0], t(3, 4), t(3, 4), t(4, 16), t(4, 16), t(16))
    seq = F.causal_attention(s, t(4, 3), t(3), t(4, 3), t(3), t(4, 2), t(2))
    block = F.dense_block(s, t(2, 5, 2), t(2), t(2, 5, 2), t(2), 1)
    loss = loss + (h * c).sum() + seq.sum() + block.sum()
    order2(loss, [x, w, b, bw, bb, lw, lb, q, s])
    mm.hvp(lambda v: (v * v * v).sum(), [lw], [mm.tensor(np.ones((36, 3), dt))])


@pytest.mark.parametrize("dt, wide", [(np.float32, np.float64), (np.float64, np.float32)])
def test_the_functional_layers_losses_and_optimizers_keep_their_dtype(dt, wide):
    with recorded(wide) as (ops, hits):
        functional_program(dt)
    assert ops[0] > 200 and hits == []
    for make in (lambda p: optim.SGD(p, 0.1, momentum=0.9, weight_decay=1e-4, clip_norm=1.0),
                 lambda p: optim.Adam(p, 0.1, weight_decay=1e-4, clip_norm=1.0)):
        p = mm.tensor(np.ones((3, 2), dt), requires_grad=True)
        opt = make([p])
        updates = watch_updates(opt, wide)
        for g in (np.full((3, 2), 0.3, dt), mm.tensor(np.ones((3, 2), dt))):
            opt.step([g])
        assert p.dtype == dt and updates == []
        assert {a.dtype for slot in opt.state.values() for a in slot} == {np.dtype(dt)}


def test_mann_takes_area_matrix_s_float64_resize_in_its_dtype():
    """The resized images in the network's dtype: float64 ones had run it all in float64
    (a step 1.8x slower at the paper's network sizes)."""
    size = omniglot.area_matrix(28, 20)     # float64, as it comes
    learner = MANNLearner(2, 20, resize=(size, size), hidden=4, rows=4, width=2, heads=1)
    images = np.random.default_rng(0).random((4, 1, 28, 28), np.float32)
    with recorded(np.float64) as (ops, hits):
        learner.outer_step([(images, np.array([0, 1, 0, 1]), None, None)])
    assert ops[0] > 50 and hits == []


def float64_learners():
    f64, c4 = np.float64, lambda out=2: nn.conv4(out, hidden=4, dtype=np.float64)
    size = omniglot.area_matrix(28, 20).astype(np.float32)   # float32 given: widened
    return {
        "maml": lambda: MAML(c4(), 0.1, 1), "metasgd": lambda: MetaSGD(c4(), 0.1, 1),
        "stacked": lambda: StackedTasks(MAML(c4(), 0.1, 1)),
        "reptile": lambda: Reptile(c4(), 0.1, 1, 0.5, inner_optimizer="adam"),
        "protonet": lambda: ProtoNet(c4(None)),
        "fce": lambda: MatchingNet(nn.conv4(None, hidden=64, dtype=f64), fce=True),
        "relation": lambda: RelationNet(nn.relation_embedding(4, dtype=f64),
                                        nn.relation_module(4, 4, dtype=f64)),
        "mann": lambda: MANNLearner(2, 20, resize=(size, size), hidden=4, rows=4, width=2,
                                    heads=1, dtype=f64),
        "snail": lambda: SnailLearner(2, 1, features=4, embedding=nn.conv4(hidden=4, dtype=f64),
                                      dtype=f64),
        "cnp": lambda: CNP(hidden=4, layers=2, dtype=f64)}


@pytest.mark.parametrize("name", sorted(float64_learners()))
def test_a_float64_step_never_drops_to_float32(name):
    """The reverse: a float64 model on float32 task data (images as the data module gives
    them) records no float32 op, gradient, state or update."""
    learner = float64_learners()[name]()
    rng = np.random.default_rng(0)
    task = (rng.random((4, 1, 28, 28), np.float32), np.array([0, 1, 0, 1]),
            rng.random((2, 1, 28, 28), np.float32), np.array([0, 1]))
    if name == "cnp":
        task = SinusoidTasks(seed=0).sample(1, 4, 4)[0]
    opt = optim.Adam(learner.meta_parameters(), lr=1e-3, clip_norm=1.0)
    updates = watch_updates(opt, np.float32)
    with recorded(np.float32) as (ops, hits):
        learner.outer_step([task, task])
        if name != "reptile":
            opt.step()
        learner.evaluate(task)
    assert ops[0] > 50 and hits == []
    assert outside_ops(learner, learner.module(), opt, np.float32) + updates == []
