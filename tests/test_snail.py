"""SNAIL (``nn/snail.py``, ``functional/sequence.py``, ``learners/snail.py``): causality, the
attention mask, label binding and gradient checks.

- Causal leakage (hypothesis): the output at step t of a dense block, a TC block, an attention
  block and the whole stack does not change when any input after t changes; a mutation (the
  attention mask removed) is caught by the same check.
- The masked attention, and a whole TC block (its dilations 2, 4, … and gated dense blocks),
  against NumPy computations written independently.
- Label binding: a small SNAIL trained on synthetic episodes reads the support labels (shuffling
  them drops its query accuracy to chance), and the query's true label never enters its input.
- Gradient checks of orders 1 and 2 through each block and through a whole episode loss with
  respect to the embedding's output (so SNAIL can sit inside an outer loop), by each query's
  whole sequence and by the shared support steps.
- The shared support steps (``forward_queries``: the support computed once, each query at its
  own last step) give the logits and gradients of one whole sequence per query (hypothesis over
  ways, shots and queries, down to 1 shot where the dilated taps reach before step 0); a
  mutation (the queries' convolutions reading the wrong support steps) is caught.
- Support labels that are not one per image, and an embedding of another width than
  ``features``, are refused by name.

Read next: ``test_model_based.py`` (conditional neural processes).
"""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import minimeta as mm
import minimeta.functional as F
from minimeta import nn
from minimeta.functional import sequence
from minimeta.learners.snail import SnailLearner
from minimeta.nn.snail import SNAIL, AttentionBlock, DenseBlock, TCBlock

F64 = np.float64
SMALL = ((4, 3), 5, (6, 4))


def blocks(channels, steps, rng):
    return {"dense": DenseBlock(channels, 3, 2, rng, F64),
            "tc": TCBlock(channels, steps, 3, rng, F64),
            "attention": AttentionBlock(channels, 4, 3, rng, F64),
            "snail": SNAIL(3, steps, channels, seed=1, dtype=F64, sizes=SMALL)}


def leak(block, x, t, rng):
    """The largest change at steps ≤ t when every step after t is redrawn."""
    y = block(mm.tensor(x)).numpy()
    x2 = x.copy()
    x2[:, :, t + 1:] = rng.standard_normal(x2[:, :, t + 1:].shape)
    y2 = block(mm.tensor(x2)).numpy()
    return np.abs(y[:, :, :t + 1] - y2[:, :, :t + 1]).max(), np.abs(y - y2).max()


@settings(max_examples=15, deadline=None)
@given(st.integers(1, 3), st.integers(2, 9), st.integers(1, 4), st.data())
def test_no_output_sees_a_later_input(batch, steps, channels, data):
    t = data.draw(st.integers(0, steps - 2))
    rng = np.random.default_rng(data.draw(st.integers(0, 10 ** 6)))
    x = rng.standard_normal((batch, channels, steps))
    for name, block in blocks(channels, steps, rng).items():
        before, anywhere = leak(block, x, t, rng)
        assert before <= 1e-12, name
        assert anywhere > 1e-6, name  # the later steps do change their own outputs


def test_the_leak_check_catches_a_missing_mask(monkeypatch):
    """Mutation: attention over every step (the mask all True) leaks the future."""
    monkeypatch.setattr(sequence, "causal_mask", lambda t: np.ones((t, t), dtype=bool))
    rng = np.random.default_rng(0)
    block = AttentionBlock(3, 4, 3, rng, F64)
    before, _ = leak(block, rng.standard_normal((2, 3, 6)), 2, rng)
    assert before > 1e-3


def test_masked_attention_matches_numpy():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 5, 3))
    wq, wk, wv = (rng.standard_normal((3, n)) for n in (4, 4, 2))
    bq, bk, bv = (rng.standard_normal(n) for n in (4, 4, 2))
    got = F.causal_attention(*(mm.tensor(a) for a in (x, wq, bq, wk, bk, wv, bv))).numpy()
    q, k, v = x @ wq + bq, x @ wk + bk, x @ wv + bv
    want = np.empty((2, 5, 2))
    for b in range(2):
        for t in range(5):  # step t attends to steps 0..t only
            s = q[b, t] @ k[b, :t + 1].T / 2.0
            p = np.exp(s - s.max())
            want[b, t] = (p / p.sum()) @ v[b, :t + 1]
    np.testing.assert_allclose(got[..., :3], x, rtol=0, atol=0)
    np.testing.assert_allclose(got[..., 3:], want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("steps", [2, 5, 8, 11])
def test_a_tc_block_matches_numpy_with_the_paper_s_dilations(steps):
    """A TC block against NumPy: ⌈log₂ T⌉ dense blocks of dilations 2, 4, 8, …, each
    [x, tanh(conv_f x) ⊙ σ(conv_g x)] with a causal kernel-2 convolution (tap 0 at t − d, tap 1
    at t). A mutation audit found the dilations (1, 2, …; all 2; ⌈ln T⌉ blocks) and the gate
    (tanh ⊙ tanh) could change with every test passing: causality and sharing still held."""
    rng = np.random.default_rng(steps)
    block = TCBlock(3, steps, 2, rng, F64)
    p = {name: rng.standard_normal(w.shape) for name, w in block.named_parameters().items()}
    x = rng.standard_normal((2, 3, steps))
    got = block(mm.tensor(x), {k: mm.tensor(v) for k, v in p.items()}).numpy()
    want, sig = x, lambda z: 1.0 / (1.0 + np.exp(-z))        # noqa: E731
    for i in range(1, int(np.ceil(np.log2(steps))) + 1):
        d = 2 ** i
        late = np.zeros_like(want)                              # x at t − d, 0 before step 0
        if d < steps:
            late[..., d:] = want[..., :-d]
        f, g = ((np.einsum("oc,bct->bot", p[f"{i}.w{k}"][..., 0], late)
                 + np.einsum("oc,bct->bot", p[f"{i}.w{k}"][..., 1], want)
                 + p[f"{i}.b{k}"][:, None]) for k in "fg")
        want = np.concatenate([want, np.tanh(f) * sig(g)], axis=1)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("order", [1, 2])
@pytest.mark.parametrize("which", ["dense", "attention"])
def test_gradcheck_through_each_block(which, order):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 3, 5))
    block = blocks(3, 5, rng)[which]
    names = list(block.named_parameters())

    def f(x_t, *weights):
        return (block(x_t, dict(zip(names, weights))) ** 2).sum()

    report = mm.gradcheck(f, [x] + [p.numpy() for p in block.parameters()], order=order,
                          atol=1e-5, rtol=1e-4)
    assert report.scale[order] > 1e-2


class Features(nn.Module):
    """A fixed-size stand-in embedding: images (n, 1, 2, 2) → 4 features through one linear
    layer (the tests' SNAIL reads 4 + ways channels)."""

    def __init__(self, dtype=F64):
        super().__init__()
        self.add_child("lin", nn.Linear(4, 4, seed=3, dtype=dtype))

    def forward(self, x, params):
        return self.call_child("lin", mm.reshape(x, (x.shape[0], -1)), params)


def tiny_learner(ways=3, shots=2, dtype=F64, seed=0):
    return SnailLearner(ways, shots, seed=seed, embedding=Features(dtype), dtype=dtype,
                        features=4, sizes=SMALL)


def synthetic_episode(rng, ways=3, shots=2, queries=2):
    """Classes are random 2×2 prototypes (fresh for every episode: only the support set can
    tell which is which) plus a little noise."""
    protos = rng.standard_normal((ways, 1, 2, 2))
    ys, yq = np.repeat(np.arange(ways), shots), np.repeat(np.arange(ways), queries)
    xs = protos[ys] + 0.05 * rng.standard_normal((len(ys), 1, 2, 2))
    xq = protos[yq] + 0.05 * rng.standard_normal((len(yq), 1, 2, 2))
    return xs, ys, xq, yq


@pytest.mark.parametrize("shared", [False, True])
def test_gradcheck_of_an_episode_wrt_the_embedding(shared):
    """Orders 1 and 2 of an episode's query loss with respect to the support and query
    features, the input of SNAIL (an outer loop would differentiate through them)."""
    learner = tiny_learner()
    xs, ys, xq, yq = synthetic_episode(np.random.default_rng(4))
    ways = 3
    onehot = np.eye(ways)[ys]
    snail = learner.snail
    params = learner.net.child_params("snail", learner.params)

    def loss(zs, zq):
        support = mm.concatenate([zs, mm.tensor(onehot)], axis=1)
        query = mm.concatenate([zq, mm.tensor(np.zeros((len(yq), ways)))], axis=1)
        if shared:
            out = snail.forward_queries(mm.expand_dims(mm.transpose(support, (1, 0)), 0),
                                        query, params)
            return F.cross_entropy(out, yq)
        seq = mm.concatenate([mm.broadcast_to(mm.expand_dims(support, 0),
                                              (len(yq),) + support.shape),
                              mm.expand_dims(query, 1)], axis=1)
        out = learner.net.call_child("snail", mm.transpose(seq, (0, 2, 1)), learner.params)
        return F.cross_entropy(out[:, :, -1], yq)

    rng = np.random.default_rng(5)
    zs, zq = rng.standard_normal((len(ys), 4)), rng.standard_normal((len(yq), 4))
    report = mm.gradcheck(loss, [zs, zq], order=2, atol=1e-5, rtol=1e-4)
    assert report.scale[1] > 1e-3 and report.scale[2] > 1e-3


def shared_vs_whole(learner, episode, order):
    """Largest differences of the logits and of the parameters' gradients between the shared
    support steps and one whole sequence per query, and the logits' scale."""
    xs, ys, xq, yq = episode
    params = list(learner.params.values())
    out = {}
    for shared in (True, False):
        logits = learner.logits(xs, ys, xq, order=order, shared=shared)
        out[shared] = (logits.numpy(), [g.numpy() for g in mm.grad(
            F.cross_entropy(logits, yq), params)])
    (a, ga), (b, gb) = out[True], out[False]
    return (np.abs(a - b).max(), max(np.abs(x - y).max() for x, y in zip(ga, gb)),
            np.abs(b).max())


@settings(max_examples=12, deadline=None)
@given(st.integers(1, 3), st.integers(1, 3), st.integers(1, 3), st.data())
def test_shared_support_steps_equal_one_sequence_per_query(ways, shots, queries, data):
    rng = np.random.default_rng(data.draw(st.integers(0, 10 ** 6)))
    learner = tiny_learner(ways, shots, seed=data.draw(st.integers(0, 100)))
    episode = synthetic_episode(rng, ways, shots, queries)
    k = data.draw(st.integers(1, shots))  # fewer shots than trained: a shorter sequence
    keep = np.concatenate([np.flatnonzero(episode[1] == c)[:k] for c in range(ways)])
    logits, grads, scale = shared_vs_whole(learner, episode, keep[rng.permutation(len(keep))])
    assert logits <= 1e-12 * max(1.0, scale) and grads <= 1e-10
    assert scale > 1e-3


def test_the_sharing_check_catches_queries_reading_the_wrong_steps(monkeypatch):
    """Mutation: the queries' dilated taps read the support steps in reverse order."""
    right = F.dense_block_queries

    def wrong(s, x, *args):
        return right(s, x, *args)[0], right(s[:, :, ::-1], x, *args)[1]

    learner = tiny_learner(3, 2)
    episode = synthetic_episode(np.random.default_rng(8), 3, 2, 2)
    assert shared_vs_whole(learner, episode, np.arange(6))[0] <= 1e-12
    monkeypatch.setattr(F, "dense_block_queries", wrong)
    assert shared_vs_whole(learner, episode, np.arange(6))[0] > 1e-3


@pytest.fixture(scope="module")
def trained():
    """A tiny SNAIL trained on synthetic 3-way 2-shot episodes until it reads the labels."""
    learner = tiny_learner(dtype=np.float32)
    opt = mm.optim.Adam(learner.meta_parameters(), 3e-3)
    rng = np.random.default_rng(6)
    for _ in range(500):
        learner.outer_step([synthetic_episode(rng) for _ in range(4)])
        opt.step()
        opt.zero_grad()
    return learner


def accuracy(learner, episodes, shuffle_labels=False):
    accs = []
    for xs, ys, xq, yq in episodes:
        if shuffle_labels:  # the support labels permuted among the classes (a derangement)
            ys = (ys + 1) % 3
        accs.append(learner.evaluate((xs, ys, xq, yq))[1])
    return float(np.mean(accs))


def test_snail_reads_the_support_labels(trained):
    episodes = [synthetic_episode(np.random.default_rng(100 + i)) for i in range(60)]
    assert accuracy(trained, episodes) > 0.8
    assert accuracy(trained, episodes, shuffle_labels=True) < 0.2  # chance is 1/3


def test_the_query_label_never_enters_the_input(trained):
    xs, ys, xq, yq = synthetic_episode(np.random.default_rng(7))
    seq = trained.sequences(xs, ys, xq, trained.params).numpy()
    assert np.all(seq[:, -3:, -1] == 0)  # the query step's label slot is zero
    a = trained.logits(xs, ys, xq).numpy()
    loss1, _ = trained.evaluate((xs, ys, xq, yq))
    loss2, _ = trained.evaluate((xs, ys, xq, (yq + 1) % 3))
    assert loss1 != loss2  # the labels are scored ...
    np.testing.assert_array_equal(trained.logits(xs, ys, xq).numpy(), a)  # ... never read


def support_orders(monkeypatch, call, shots=3, episodes=25):
    """The support orders ``call(learner, episode)`` hands to ``logits``."""
    learner, orders = tiny_learner(3, shots), []
    logits = SnailLearner.logits

    def spy(self, xs, ys, xq, params=None, order=None, shared=True):
        orders.append(np.asarray(order).copy())
        return logits(self, xs, ys, xq, params, order, shared)

    monkeypatch.setattr(SnailLearner, "logits", spy)
    rng = np.random.default_rng(11)
    for _ in range(episodes):
        call(learner, synthetic_episode(rng, 3, shots, 2))
    return orders


def test_training_draws_every_shot_count_and_testing_shuffles_the_support(monkeypatch):
    """Training keeps k of K shots a class, k from 1 to K, K included (one model for every
    shot count: Mishra et al. 2018); testing keeps all, in a random order, as the docstring
    says. (A k that never reached K, and a test support in class order, had passed every
    test: a mutation audit's.)"""
    trained = support_orders(monkeypatch, lambda learner, task: learner.task_loss(task))
    assert {len(order) // 3 for order in trained} == {1, 2, 3}
    tested = support_orders(monkeypatch, lambda learner, task: learner.evaluate(task))
    assert all(sorted(order) == list(range(9)) for order in tested)
    assert sum((order != np.arange(9)).any() for order in tested) >= 20


def test_labels_outside_the_ways_are_refused_in_training_as_in_testing():
    """Training picks k shots class by class (0..ways−1) and had dropped the others without a
    word: labels 1..3 of a 3-way learner trained on 2 of the 3 classes (an audit of the
    model-based learners, 2026-12-03); testing had refused them."""
    learner = tiny_learner()
    xs, ys, xq, yq = synthetic_episode(np.random.default_rng(0))
    learner.task_loss((xs, ys, xq, yq))
    for task in ((xs, ys + 1, xq, yq), (xs, ys, xq, yq + 1)):
        with pytest.raises(ValueError, match=r"^SnailLearner: (support|query) labels must lie "
                                             r"in \[0, 3\) \(its ways\), got 3$"):
            learner.task_loss(task)


@pytest.mark.parametrize("method", ["task_loss", "evaluate"])
def test_support_labels_that_are_not_one_per_image_are_refused(method):
    """Five labels for six support images had read five of them, one dropped without a word."""
    xs, ys, xq, yq = synthetic_episode(np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"^SnailLearner: support labels must be a vector of "
                                         r"one label per image, got shape \(5,\) for 6 images$"):
        getattr(tiny_learner(), method)((xs, ys[:5], xq, yq))


def test_an_embedding_of_another_width_is_refused_by_name():
    """84×84 images through conv4 (1600 features) for a SNAIL built for 64 had met "matmul:
    shapes (5, 1605) and (69, 64) are not aligned", naming neither the embedding nor the
    option ``features``."""
    xs, ys, xq, yq = synthetic_episode(np.random.default_rng(0))
    learner = SnailLearner(3, 2, embedding=Features(), dtype=F64, features=5, sizes=SMALL)
    with pytest.raises(ValueError, match=r"^SnailLearner: the embedding gives 4 features per "
                                         r"image, the SNAIL reads features=5"):
        learner.evaluate((xs, ys, xq, yq))
