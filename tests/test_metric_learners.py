"""Metric-based learners: each head against a NumPy hand computation, gradchecks of order 1
and 2 through each head and through a whole episode, and a short Omniglot training run."""
import os
import re

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import minimeta as mm
from minimeta import nn
from minimeta.data import EpisodeSampler, omniglot
from minimeta.learners import MatchingNet, ProtoNet, RelationNet

import source_file  # tests/: a repository file run as a module

RNG = np.random.default_rng(0)


def tiny_embedding():
    """A conv embedding small enough for numeric gradchecks: 1×4×4 → 2×2×2 → 8 features."""
    return nn.Sequential(nn.Conv2d(1, 2, 3, padding=1, dtype=np.float64), nn.MaxPool2d(2),
                         nn.Flatten())


def episode(ways=3, shots=2, queries=2, side=4, seed=0):
    rng = np.random.default_rng(seed)
    classes = rng.standard_normal((ways + 1, shots + queries, side, side))
    return EpisodeSampler(classes, ways, shots, queries, seed=seed).sample()


def np_sigmoid(x):
    return 1 / (1 + np.exp(-x))


def test_protonet_head_is_negative_squared_distance_to_class_means():
    zs, zq = RNG.standard_normal((6, 4)), RNG.standard_normal((5, 4))
    ys = np.array([0, 1, 2, 0, 1, 2])
    learner = ProtoNet(tiny_embedding())
    got = learner.scores(mm.tensor(zs), ys, mm.tensor(zq), 3, learner.params).numpy()
    protos = np.stack([zs[ys == k].mean(0) for k in range(3)])
    want = -((zq[:, None, :] - protos[None]) ** 2).sum(-1)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_matching_head_is_log_of_cosine_softmax_attention():
    zs, zq = RNG.standard_normal((4, 3)), RNG.standard_normal((2, 3))
    ys = np.array([1, 0, 1, 0])
    learner = MatchingNet(tiny_embedding())
    got = learner.scores(mm.tensor(zs), ys, mm.tensor(zq), 2, learner.params).numpy()
    cos = (zq / np.linalg.norm(zq, axis=1, keepdims=True)) @ \
        (zs / np.linalg.norm(zs, axis=1, keepdims=True)).T
    att = np.exp(cos) / np.exp(cos).sum(1, keepdims=True)
    want = np.log(att @ np.eye(2)[ys])
    np.testing.assert_allclose(got, want, rtol=1e-12)
    np.testing.assert_allclose(np.exp(got).sum(1), 1.0, rtol=1e-14)


def np_lstm(x, h, c, p):
    gates = x @ p["w_ih"] + h @ p["w_hh"] + p["bias"]
    i, f, g, o = np.split(gates, 4, axis=-1)
    c = np_sigmoid(f) * c + np_sigmoid(i) * np.tanh(g)
    return np_sigmoid(o) * np.tanh(c), c


def test_full_context_embeddings_match_a_numpy_transcription_of_the_paper():
    d, steps = 3, 2
    fce = nn.FullContextEmbedding(d, steps, dtype=np.float64)
    p = {k: v.numpy() for k, v in fce.named_parameters().items()}
    sub = lambda name: {k.split(".", 1)[1]: v for k, v in p.items() if k.startswith(name + ".")}
    support, query = RNG.standard_normal((4, d)), RNG.standard_normal((2, d))
    g_t, f_t = fce((mm.tensor(support), mm.tensor(query)))
    assert g_t.shape == (4, d) and f_t.shape == (2, d)

    def run(name, rows):
        h = c = np.zeros((1, d))
        out = []
        for x in rows:
            h, c = np_lstm(x[None], h, c, sub(name))
            out.append(h[0])
        return out

    fwd = run("forward", support)
    bwd = run("backward", support[::-1])[::-1]
    g = np.stack(fwd) + np.stack(bwd) + support
    h = r = c = np.zeros((2, d))
    for _ in range(steps):
        h_hat, c = np_lstm(query, np.concatenate([h, r], 1), c, sub("attention"))
        h = h_hat + query
        a = np.exp(h @ g.T)
        r = (a / a.sum(1, keepdims=True)) @ g
    np.testing.assert_allclose(g_t.numpy(), g, rtol=1e-10)
    np.testing.assert_allclose(f_t.numpy(), h, rtol=1e-10)


def test_full_context_embedding_rejects_wrong_widths():
    fce = nn.FullContextEmbedding(3, 1, dtype=np.float64)
    with pytest.raises(ValueError, match=r"support embeddings must be \(n, 3\)"):
        fce((mm.tensor(np.zeros((2, 4))), mm.tensor(np.zeros((1, 3)))))


def linear_relation(features):
    """A relation module simple enough to compute by hand: flatten, then one linear layer."""
    return nn.Sequential(nn.Flatten(), nn.Linear(2 * features, 1, dtype=np.float64))


def test_relation_head_scores_summed_class_maps_against_each_query():
    zs, zq = RNG.standard_normal((4, 2, 1, 2)), RNG.standard_normal((3, 2, 1, 2))
    ys = np.array([0, 1, 0, 1])
    learner = RelationNet(tiny_embedding(), linear_relation(4))
    got = learner.scores(mm.tensor(zs), ys, mm.tensor(zq), 2, learner.params).numpy()
    w = learner.params["relation.1.weight"].numpy()[:, 0]
    b = learner.params["relation.1.bias"].numpy()[0]
    classes = np.stack([zs[ys == k].sum(0) for k in range(2)])
    want = np.array([[np_sigmoid(np.concatenate([classes[k], zq[j]]).ravel() @ w + b)
                      for k in range(2)] for j in range(3)])
    np.testing.assert_allclose(got, want, rtol=1e-12)
    loss = learner.loss(mm.tensor(want), np.array([1, 0, 1])).item()
    assert loss == pytest.approx(np.mean((want - np.eye(2)[[1, 0, 1]]) ** 2), rel=1e-14)


HEADS = {
    "protonet": lambda: ProtoNet(tiny_embedding()),
    "matching": lambda: MatchingNet(tiny_embedding()),
    "matching-fce": lambda: MatchingNet(tiny_embedding(), fce=True, dim=3, steps=2),
    "relation": lambda: RelationNet(tiny_embedding(), linear_relation(3)),
}


@pytest.mark.parametrize("order", [1, 2])
@pytest.mark.parametrize("name", sorted(HEADS))
@settings(max_examples=5, deadline=None)
@given(seed=st.integers(0, 10 ** 6))
def test_gradcheck_through_each_head(name, order, seed):
    """Loss as a function of the embeddings and the head's own parameters."""
    learner = HEADS[name]()
    rng = np.random.default_rng(seed)
    ys, yq = np.array([0, 1, 2, 0]), np.array([2, 0, 1])
    head = {k: v for k, v in learner.params.items() if not k.startswith("embed.")}
    names = list(head)
    width = 3

    def loss(zs, zq, *values):
        params = dict(learner.params, **dict(zip(names, values)))
        if name == "relation":  # feature maps (C, H, W) for the relation module
            zs, zq = mm.reshape(zs, (4, width, 1, 1)), mm.reshape(zq, (3, width, 1, 1))
        return learner.loss(learner.scores(zs, ys, zq, 3, params), yq)

    inputs = [rng.standard_normal((4, width)), rng.standard_normal((3, width))]
    mm.gradcheck(loss, inputs + [head[k].numpy() for k in names], order=order)


@pytest.mark.parametrize("name", sorted(HEADS))
@pytest.mark.parametrize("part, labels, shape", [
    ("support", lambda ys: ys[:-1], "(5,) for 6 images"),
    ("support", lambda ys: ys[:, None], "(6, 1) for 6 images"),
    ("query", lambda yq: yq[1:], "(5,) for 6 images")])
def test_labels_that_are_not_one_per_image_are_refused_by_name(name, part, labels, shape):
    # ProtoNet had said "matmul: shapes (3, 5) and (6, 64) are not aligned", Matching Networks
    # "support_onehot (1, 5, 3) must be (..., s, n)", a column "object too deep" (probing)
    xs, ys, xq, yq = episode(ways=3, shots=2, queries=2)
    task = (xs, labels(ys), xq, yq) if part == "support" else (xs, ys, xq, labels(yq))
    learner = HEADS[name]()
    for method in (learner.task_loss, learner.evaluate):
        with pytest.raises(ValueError, match=rf"^{type(learner).__name__}: {part} labels must "
                           rf"be a vector of one label per image, got shape {re.escape(shape)}"):
            method(task)


@pytest.mark.parametrize("order", [1, 2])
@pytest.mark.parametrize("name", ["protonet", "matching", "relation"])
def test_gradcheck_of_a_whole_episode_through_the_embedding(name, order):
    """The episode loss as a function of the conv embedding's weights: what a MAML-style
    outer loop around a metric learner differentiates."""
    learner = HEADS[name]() if name != "relation" else \
        RelationNet(tiny_embedding(), linear_relation(8))
    task = episode()
    keys = ["embed.0.weight", "embed.0.bias"]

    def loss(w, b):
        return learner.task_loss(task, dict(learner.params, **dict(zip(keys, (w, b)))))[0]

    mm.gradcheck(loss, [learner.params[k].numpy() for k in keys], order=order)


def test_learners_train_a_step_and_evaluate_without_a_graph(monkeypatch):
    for learner in (ProtoNet(tiny_embedding()), MatchingNet(tiny_embedding()),
                    MatchingNet(tiny_embedding(), fce=True, dim=8, steps=2),
                    RelationNet(tiny_embedding(), linear_relation(8))):
        tasks = [episode(seed=s) for s in range(2)]
        metrics = learner.outer_step(tasks)
        assert set(metrics) == {"loss", "accuracy"}
        assert all(p.grad is not None for p in learner.meta_parameters())
        grads = [p.grad.numpy().copy() for p in learner.meta_parameters()]
        values = [p.numpy().copy() for p in learner.meta_parameters()]
        with_graph, _ = learner.task_loss(tasks[0])
        assert with_graph.requires_grad and with_graph._op is not None
        made = []   # the loss Tensor evaluate() builds, caught on its way out of task_loss

        def recording(task, params=None, _task_loss=learner.task_loss):
            out = _task_loss(task, params)
            made.append(out[0])
            return out

        monkeypatch.setattr(learner, "task_loss", recording)
        loss, acc = learner.evaluate(tasks[0])
        assert len(made) == 1
        assert not made[0].requires_grad and made[0]._op is None and made[0].is_leaf
        assert not made[0]._parents   # nothing recorded that a backward pass could walk
        assert loss == pytest.approx(with_graph.item(), rel=1e-12) and np.isfinite(loss)
        assert 0.0 <= acc <= 1.0
        for p, g, v in zip(learner.meta_parameters(), grads, values):
            np.testing.assert_array_equal(p.grad.numpy(), g)   # .grad untouched
            np.testing.assert_array_equal(p.numpy(), v)        # parameters untouched


REAL = os.path.exists(os.path.join(omniglot.data_dir(), omniglot.FILES["background"][0]))


@pytest.mark.skipif(not REAL, reason="Omniglot not found in MINIMETA_DATA_DIR")
def test_protonet_short_training_lifts_validation_accuracy_well_above_chance():
    from minimeta.experiments.fewshot import run_episodes

    train = omniglot.class_images("vinyals", "train", val_size=100)
    val = omniglot.class_images("vinyals", "val", val_size=100)
    learner = ProtoNet(nn.conv4(seed=0))
    opt = mm.optim.Adam(learner.meta_parameters(), lr=1e-3)
    val_tasks = lambda seq, n: EpisodeSampler(val, 5, 1, 5, seed=seq).batch(n)
    before, _ = run_episodes(learner, val_tasks, 40, 7, "val")
    for it in range(30):
        learner.outer_step(EpisodeSampler(train, 20, 1, 5, seed=[1, it]).batch(1))
        opt.step()
        opt.zero_grad()
    after, half = run_episodes(learner, val_tasks, 40, 7, "val")
    print(f"ProtoNet 5-way 1-shot validation accuracy: {before:.3f} before, {after:.3f} ± "
          f"{half:.3f} after 30 episodes (chance 0.2)")
    assert after > 0.6 and after > before + 0.05


@pytest.mark.skipif(not REAL, reason="Omniglot not found in MINIMETA_DATA_DIR")
def test_the_metric_learners_example_runs(monkeypatch, tmp_path, capsys):
    example = source_file.load("examples/metric_learners.py")
    for learner in (["--learner", "matching", "--fce"], ["--learner", "relation"]):
        acc = example.main(learner + ["--episodes", "2", "--train-way", "5",
                                      "--test-episodes", "3"])
        assert 0.0 <= acc <= 1.0
    assert "test accuracy" in capsys.readouterr().out
