"""``Traced`` (engine/replay.py): a recorded call replayed gives fn's own results, bit for bit, or
the recording refuses it; and each guard is shown to matter by a mutant that slips past it.

- every row of the primitive table: forward, the VJP and the VJP's VJP replayed on new inputs
  equal fn's own, bit for bit, where the row's static arguments hold no array (those that do,
  an index or an argmax given from outside, are refused);
- the stacked MAML family under hypothesis (steps, first order, Meta-SGD, ANIL, the multi-step
  loss, float32 and float64): replayed outer steps train the same parameters, bit for bit, as
  the learner with ``replay=False``;
- each refusal (a value read, an array made in Python, a state update, a change in place, an
  op on another thread), and the check of the second call (Python that branches on ``.data``);
- mutants: unknown arrays taken as constants, a ``Where`` replayed with its recorded mask, a
  signature blind to one array given twice; each gives wrong replays, which the check or the
  comparison here catches;
- what the replayed meta-iteration is given: ``StackedTasks``' stacking of a meta-batch is
  ``np.stack``'s array.

Read next: ``test_vectorized_tasks.py`` (the stacked meta-batch against the task loop).
"""
import threading
import warnings

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import minimeta as mm
from minimeta import nn
from minimeta.engine import replay as R
from minimeta.engine.replay import Traced
from minimeta.learners import ANIL, MAML, MetaSGD, StackedTasks
from minimeta.optim import Adam
from minimeta.selfcheck import ROWS

RNG = np.random.default_rng(0)


def _example(row, seed):
    """One drawn (arrays, static) of ``row``, the same for a seed."""
    drawn = []

    @settings(max_examples=1, database=None, derandomize=True)
    @given(data=st.data())
    def draw(data):
        drawn.append(data.draw(row.inputs))

    draw()
    return drawn[0]


def _derivatives(row, static):
    """f(leaves..., v, u...): forward, the VJP with incoming v, the VJP of ⟨VJP, u⟩."""
    def f(*args):
        n = (len(args) - 1) // 2
        leaves, v, us = args[:n], args[n], args[n + 1:]
        y = row.fn(*leaves, *static)
        first = mm.grad((y * v).sum(), list(leaves) + [v], create_graph=True, allow_unused=True)
        inner = [(g * u).sum() for g, u in zip(first, us + (v.data,))
                 if g is not None and g.requires_grad]
        second = mm.grad(sum(inner[1:], inner[0]), list(leaves) + [v], allow_unused=True) \
            if inner else ()
        return (y,) + tuple(first) + tuple(second)
    return f


def _inputs(row, xs, probe, scale):
    leaves = [mm.tensor(np.asarray(x, dtype=row.dtype) * scale, requires_grad=True)
              for x in xs]
    v = mm.tensor(RNG.standard_normal(probe.shape).astype(row.dtype), requires_grad=True)
    us = [RNG.standard_normal(np.shape(x)).astype(row.dtype) for x in xs]
    return leaves + [v] + us


def _holds_array(static):
    arrays = (np.ndarray, np.generic)
    return any(isinstance(s, arrays) or isinstance(s, tuple) and
               any(isinstance(i, arrays) for i in s) for s in static)


def _bits(results):
    return [None if r is None else (r.dtype.str, r.shape, np.asarray(r.data).tobytes())
            for r in results]


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r.name)
def test_every_row_replays_its_derivatives_bit_for_bit(row):
    xs, static = _example(row, 0)
    probe = row.fn(*[mm.tensor(np.asarray(x, dtype=row.dtype)) for x in xs], *static)
    f = _derivatives(row, static)
    traced = Traced(f)
    with warnings.catch_warnings():
        warnings.simplefilter("error")      # a failed check warns: here, an error
        for scale in (1.0, 0.97, 1.03, 0.99):    # recorded, checked, replayed twice
            args = _inputs(row, xs, probe, scale)
            assert _bits(traced(*args)) == _bits(f(*args)), row.name
    if _holds_array(static):    # an index or an argmax from outside: refused, not replayed
        assert traced.counts["replayed"] == 0 and any(
            "array" in why for why in traced.why().values()), traced.why()
    else:
        assert traced.counts == dict(recorded=1, checked=1, replayed=2, plain=1), \
            (traced.counts, traced.why())


def _sinusoid_tasks(rng, n=4, k=5, dtype=np.float64):
    tasks = []
    for _ in range(n):
        x = rng.uniform(-5, 5, (2 * k, 1)).astype(dtype)
        y = (rng.uniform(0.1, 5) * np.sin(x + rng.uniform(0, np.pi))).astype(dtype)
        tasks.append((x[:k], y[:k], x[k:], y[k:]))
    return tasks


def _learner(cls, steps, first_order, multi, dtype, replay):
    model = nn.mlp((1, 8, 8, 1), seed=3, dtype=dtype)
    learner = cls(model, 0.05, steps, first_order=first_order, loss="mse",
                  multi_step_loss=multi)
    return StackedTasks(learner, replay=replay)


@settings(max_examples=12)
@given(cls=st.sampled_from([MAML, MetaSGD, ANIL]), steps=st.integers(1, 3),
       first_order=st.booleans(), multi=st.booleans(),
       dtype=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 2 ** 16))
def test_replayed_outer_steps_train_the_same_bits(cls, steps, first_order, multi, dtype, seed):
    rng = np.random.default_rng(seed)
    batches = [_sinusoid_tasks(rng, dtype=dtype) for _ in range(5)]
    runs = []
    for replay in (True, False):
        learner = _learner(cls, steps, first_order, multi and steps > 1, dtype, replay)
        opt = Adam(learner.meta_parameters(), 1e-2)
        metrics = []
        for tasks in batches:
            metrics.append(learner.outer_step(tasks))
            opt.step()
            opt.zero_grad()
        grads = learner.meta_gradient(batches[0])
        runs.append((metrics, [p.numpy().tobytes() for p in learner.meta_parameters()],
                     _bits(grads), learner))
    assert runs[0][:3] == runs[1][:3]
    traced = runs[0][3]._traced
    assert traced.counts["replayed"] >= 3 and not traced.why(), (traced.counts, traced.why())


def test_a_changed_setting_is_recorded_anew():
    rng = np.random.default_rng(1)
    tasks = _sinusoid_tasks(rng)
    fast, plain = (_learner(MAML, 1, False, False, np.float64, r) for r in (True, False))
    for steps in (1, 1, 1, 2, 2, 2):
        fast.learner.inner_steps = plain.learner.inner_steps = steps
        assert _bits(fast.meta_gradient(tasks)) == _bits(plain.meta_gradient(tasks))
    assert fast._traced.counts["recorded"] == 2 and fast._traced.counts["replayed"] == 2


def test_a_classification_runs_as_it_is():
    """The labels index the logits, and the accuracy is read beside the ops: not replayed."""
    learner = StackedTasks(MAML(nn.mlp((4, 3), seed=0), 0.1, 1))
    x = RNG.standard_normal((2, 6, 4))
    y = np.tile(np.arange(3), (2, 2))
    tasks = [(x[t], y[t], x[t], y[t]) for t in range(2)]
    for _ in range(3):
        learner.outer_step(tasks)
    assert learner._traced.counts["recorded"] == 0


def test_steps_that_no_result_needs_are_left_out():
    """The gradient of ‖xw‖² needs x·w but not the loss itself: its square and sum are not
    replayed (a forward is a function of its inputs alone)."""
    traced = Traced(lambda w, x: mm.grad(((mm.tensor(x) @ w) ** 2).sum(), [w])[0])
    w = mm.tensor(np.ones((3, 1)), requires_grad=True)
    got = [traced(w, np.full((2, 3), k)).numpy().ravel().tolist() for k in (1.0, 2.0, 3.0)]
    assert got == [[12.0] * 3, [48.0] * 3, [108.0] * 3] and traced.counts["replayed"] == 1
    source = next(iter(traced.entries.values())).replay.source
    assert "# Sum" not in source and source.count("# PowScalar") == 1, source


def test_one_array_given_twice_is_a_signature_of_its_own():
    """Recorded with the same array in both places, a replay reads one slot for both: given two
    arrays later, it must record anew, not read the first twice (a mutant signature without
    the sharing is caught here)."""
    traced = Traced(lambda a, b: mm.tensor(a) - mm.tensor(b))
    x, y = np.ones(2), np.full(2, 3.0)
    for _ in range(3):
        assert traced(x, x).numpy().tolist() == [0.0, 0.0]
    assert traced(x, y).numpy().tolist() == [-2.0, -2.0]
    assert traced.counts["recorded"] == 2


# ----- what a recording refuses, and why --------------------------------------------------------
def _refused(f, *args):
    """Why ``Traced(f)`` refused to replay three calls with ``args`` (each ran f)."""
    traced = Traced(f)
    for _ in range(3):
        traced(*args)
    assert traced.counts == dict(recorded=1, checked=0, replayed=0, plain=2)
    (why,) = traced.why().values()
    return why


def test_a_value_read_inside_is_refused():
    w = mm.tensor([1.0, -2.0], requires_grad=True)
    assert "value read" in _refused(lambda w: w * float((w * w).sum()), w)
    assert "value read" in _refused(lambda w: w * w.numpy()[0], w)


def test_an_array_made_in_python_is_refused():
    w = mm.tensor([1.0, -2.0], requires_grad=True)
    why = _refused(lambda w: w * mm.tensor(RNG.standard_normal(2)), w)
    assert "no op made" in why


def test_state_changed_beside_the_ops_is_refused():
    layer = nn.BatchNorm2d(2)
    x = RNG.standard_normal((3, 2, 2, 2)).astype(np.float32)
    why = _refused(lambda x, *params: layer(mm.tensor(x)), x, *layer.parameters())
    assert "running averages" in why
    w = mm.tensor([1.0], requires_grad=True)

    def stepped(w):
        w.changed_in_place()
        return w * 2
    assert "change in place" in _refused(stepped, w)


def test_an_op_on_another_thread_is_refused():
    w = mm.tensor([1.0, 2.0], requires_grad=True)

    def f(w):
        out = []
        worker = threading.Thread(target=lambda: out.append(w * 3))
        worker.start()
        worker.join()
        return out[0] + w
    assert "another thread" in _refused(f, w)


def test_python_that_branches_on_data_is_caught_by_the_check():
    def f(x):
        return x * 2 if x.data.sum() > 0 else x * 3
    traced = Traced(f)
    traced(mm.tensor([1.0]))                         # recorded: the branch x * 2
    with pytest.warns(RuntimeWarning, match="differed from the function's own results"):
        assert traced(mm.tensor([-1.0])).numpy()[0] == -3.0     # checked: fn's own result
    assert traced(mm.tensor([-1.0])).numpy()[0] == -3.0         # and fn from then on
    assert traced.counts["replayed"] == 0 and traced.why()


def test_a_recheck_catches_a_branch_that_flips_later_and_only_a_recheck_does():
    """The limit, said in the module's docstring: between checks a replay follows the branch
    it recorded. Calls 2, 4, 7, 10, ... are checked here (the first replay, then every third)."""
    def f(x):
        return x * 2 if x.data.sum() > 0 else x * 3
    traced = Traced(f, recheck=3)
    for _ in range(4):          # recorded, checked, replayed, checked
        traced(mm.tensor([1.0]))
    assert traced(mm.tensor([-1.0])).numpy()[0] == -2.0     # the fifth: replayed, not fn's -3
    traced(mm.tensor([1.0]))
    with pytest.warns(RuntimeWarning):
        assert traced(mm.tensor([-1.0])).numpy()[0] == -3.0     # the seventh: a recheck
    assert traced.counts["checked"] == 3 and traced.why()


def test_arguments_and_results_are_checked():
    traced = Traced(lambda x: x * 2)
    with pytest.raises(TypeError, match="Traced: arguments are Tensors and arrays, got a float"):
        traced(2.0)
    with pytest.raises(TypeError, match="Traced: the function returned a float"):
        Traced(lambda x: 1.0)(np.ones(2))


def test_inside_a_recording_or_under_anomaly_mode_fn_runs_as_it_is():
    inner = Traced(lambda x: mm.tensor(x) * 2)
    outer = Traced(lambda x: inner(x) + 1)
    assert outer(np.ones(2)).numpy().tolist() == [3.0, 3.0]
    assert inner.counts == dict(recorded=0, checked=0, replayed=0, plain=1)
    for _ in range(3):      # checked (inner, called by fn's own run, records), replayed
        assert outer(np.ones(2)).numpy().tolist() == [3.0, 3.0]
    assert outer.counts["replayed"] == 2
    inner = Traced(lambda x: mm.tensor(x) * 2)
    with mm.detect_anomaly():
        for _ in range(3):
            inner(np.ones(2))
    assert inner.counts["recorded"] == 0


# ----- mutants: each guard, taken away, lets a wrong replay through --------------------------
def _masked_grad(w, x):
    """A gradient through ``Where`` with a mask of the call (a maximum's; a relu's is
    ``ReluGrad``, which reads its input and holds no mask)."""
    return mm.grad(mm.maximum(mm.tensor(x) @ w, 0.0).sum(), [w])[0]


def test_a_mutant_taking_unknown_arrays_as_constants_is_caught_by_the_check(monkeypatch):
    record = R.Recording.record

    def lenient(self, op, arrays, out):     # the mutant: an array it does not know, baked
        for a in arrays:
            if self.reason is None and id(a) not in self.where:
                self.constant(a)
        return record(self, op, arrays, out)
    monkeypatch.setattr(R.Recording, "record", lenient)
    traced = Traced(lambda w: w * mm.tensor(RNG.standard_normal(2)))
    w = mm.tensor([1.0, -2.0], requires_grad=True)
    traced(w)
    with pytest.warns(RuntimeWarning, match="differed"):
        traced(w)


def test_a_mutant_replaying_where_with_its_recorded_mask_is_caught_by_the_check(monkeypatch):
    w = mm.tensor(np.ones((3, 2)), requires_grad=True)
    xs = [RNG.standard_normal((4, 3)) for _ in range(3)]

    def run():
        traced = Traced(_masked_grad)
        return [traced(w, x).numpy().copy() for x in xs], traced
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got, traced = run()
    assert traced.counts["replayed"] == 1
    assert all(np.array_equal(a, _masked_grad(w, x).numpy()) for a, x in zip(got, xs))
    # the mutant: each Where as recorded, with the first call's mask
    monkeypatch.setattr(R._Rebuilt, "forward",
                        lambda self, *arrays: self.op.forward(*arrays[len(self.held):]))
    with pytest.warns(RuntimeWarning, match="differed"):
        run()


def test_a_stacked_learner_with_a_replay_pickles():
    import pickle
    rng = np.random.default_rng(2)
    tasks = _sinusoid_tasks(rng)
    learner = _learner(MAML, 2, False, False, np.float64, True)
    for _ in range(3):
        learner.meta_gradient(tasks)
    copy = pickle.loads(pickle.dumps(learner))
    assert copy._traced.counts["recorded"] == 0
    assert _bits(copy.meta_gradient(tasks)) == _bits(learner.meta_gradient(tasks))


@pytest.mark.parametrize("shape, dtype", [((10, 1), np.float32), ((3, 1, 4, 4), np.float64),
                                          ((5,), np.int64), ((), np.float32)])
def test_a_meta_batch_is_stacked_as_np_stack_does(shape, dtype):
    """``_stack`` (a concatenation and a view, for host arrays) gives ``np.stack``'s array:
    shape, dtype and bytes; 0-d parts (no axis to concatenate) go to ``np.stack``."""
    from minimeta.learners.stacked import _stack

    rng = np.random.default_rng(0)
    arrays = [np.asarray(rng.standard_normal(shape)).astype(dtype) for _ in range(4)]
    if len(shape) > 1:
        arrays[1] = np.asfortranarray(arrays[1])        # a layout of its own
    got, want = _stack(arrays), np.stack(arrays)
    assert got.shape == want.shape and got.dtype == want.dtype
    assert got.tobytes() == want.tobytes()
