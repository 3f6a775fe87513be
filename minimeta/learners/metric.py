"""Metric-based learners: Prototypical Networks, Matching Networks and Relation Networks.

All three embed the support and query images with a network trained across episodes, then
classify each query by comparing it with the support set; nothing is fine-tuned per task. A
learner holds one ``Module`` (``self.net``) whose children are the embedding (``embed``) and,
where the method has one, a trained head (``fce`` or ``relation``); its parameters are one
ordered dict, so ``task_loss(task, params)`` is a function of them like any model call, and a
metric learner can sit inside a MAML-style outer loop.

Support and query images are embedded in **one** forward pass, so batch norm normalises with
the statistics of the whole episode, in training and in evaluation alike (the reference
ProtoNet code trains so, but evaluates with running statistics, ``model.eval()``; Sung et al.'s
Relation Network code never switches): a query's score depends on the other queries of its
episode (RESULTS.md, "transductive"). The running buffers are still updated by every
episode, ``evaluate`` included, and saved, but never read.

- ``ProtoNet`` (Snell et al. 2017): prototype c_k = mean of class k's support embeddings;
  logits = −|f(x) − c_k|²; cross-entropy.
- ``MatchingNet`` (Vinyals et al. 2016): ŷ = Σᵢ softmax_i(cos(f(x̂), g(xᵢ))) yᵢ through the fused
  ``cosine_attention``; loss −log ŷ[label]; ``fce=True`` adds full context embeddings.
- ``RelationNet`` (Sung et al. 2018): score(x, k) = σ(relation([Σ_shots f(support of k), f(x)]))
  for every query/class pair; loss = MSE against the one-hot labels.

Read next: ``minimeta/learners/snail.py`` (SNAIL: an episode read as a sequence).
"""
import numpy as np

from .. import functional as F
from .. import nn
from ..engine import no_grad, ops
from .base import Learner, as_tensor, distinct, metrics, one_label_each


class MetricLearner(Learner):
    """Shared episode loss and evaluation; subclasses define ``scores`` and ``loss``.
    ``outer_step`` comes from ``base.Learner``."""

    def __init__(self, net):
        self.net = net
        self.params = net.named_parameters()
        distinct(self.params, type(self).__name__)

    # ----- the method: embeddings, then a head that scores each query against each class -----
    def embed(self, xs, xq, params):
        """Support and query embeddings from one forward pass of the ``embed`` child."""
        x = ops.concatenate([as_tensor(xs, params), as_tensor(xq, params)], axis=0)
        z = self.net.call_child("embed", x, params)
        return z[:xs.shape[0]], z[xs.shape[0]:]

    def scores(self, zs, ys, zq, ways, params):
        """(queries, ways) scores; the largest is the prediction."""
        raise NotImplementedError

    def loss(self, scores, yq):
        return F.cross_entropy(scores, yq)

    # ----- the learner interface shared with MAML and Reptile -------------------------------------
    def task_loss(self, task, params=None):
        """Query loss (a Tensor) and accuracy for one episode (xs, ys, xq, yq)."""
        xs, ys, xq, yq = task
        params = self.params if params is None else params
        for part, images, labels in (("support", xs, ys), ("query", xq, yq)):
            one_label_each(type(self).__name__, images, labels, part)
        ways = _check_labels(type(self).__name__, ys, yq)
        zs, zq = self.embed(xs, xq, params)
        scores = self.scores(zs, ys, zq, ways, params)
        return self.loss(scores, yq), F.unread_accuracy(scores, yq)

    def evaluate(self, task, steps=None):
        """Query loss and accuracy on one episode (no graph; ``steps`` is ignored)."""
        with no_grad():
            loss, acc = self.task_loss(task)
        return metrics(loss.data, acc)


def _check_labels(learner, ys, yq):
    """The way count, max(ys) + 1, where every class 0..ways−1 has a support example and every
    query label is one of them; else a ValueError (a class without shots would be scored
    against nothing, silently)."""
    ys, yq = np.asarray(ys), np.asarray(yq)
    if ys.size == 0 or ys.dtype.kind not in "iu" or yq.dtype.kind not in "iu":
        raise ValueError(f"{learner}: labels must be integer arrays and the support non-empty, "
                         f"got {ys.dtype} support and {yq.dtype} query labels")
    ways = int(ys.max()) + 1
    empty = np.flatnonzero(np.bincount(ys - min(0, ys.min()), minlength=ways) == 0)
    if ys.min() < 0 or empty.size:
        raise ValueError(f"{learner}: support labels must cover 0..{ways - 1}, each class with "
                         f"a shot; got {sorted(set(ys.tolist()))}")
    if yq.size and (yq.min() < 0 or yq.max() >= ways):
        raise ValueError(f"{learner}: query labels must be support classes 0..{ways - 1}, got "
                         f"{yq.min()}..{yq.max()}")
    return ways


class ProtoNet(MetricLearner):
    """Prototypical Networks: logits are negative squared distances to class means."""

    def __init__(self, embedding):
        super().__init__(_container(embed=embedding))

    def scores(self, zs, ys, zq, ways, params):
        return -F.pairwise_sq_distances(zq, F.class_means(zs, ys, ways))


class MatchingNet(MetricLearner):
    """Matching Networks with cosine attention; ``fce=True`` adds full context embeddings
    (``nn.FullContextEmbedding`` with ``steps`` processing steps, over ``dim`` features, in
    the embedding's dtype)."""

    def __init__(self, embedding, fce=False, dim=64, steps=5, seed=0):
        children = {"embed": embedding}
        if fce:
            dtypes = {p.dtype for p in embedding.parameters()}
            dtype = dtypes.pop() if len(dtypes) == 1 else np.float32   # had been float32
            fce_seed = nn.layers.derived(seed, 1)    # not the embedding's conv4 seed itself
            children["fce"] = nn.FullContextEmbedding(dim, steps, seed=fce_seed, dtype=dtype)
        super().__init__(_container(**children))
        self.fce = fce

    def scores(self, zs, ys, zq, ways, params):
        """Log of the attention read-out ŷ (queries, ways): log-probabilities, rows sum to 1."""
        if self.fce:
            zs, zq = self.net.call_child("fce", (zs, zq), params)
        onehot = F.one_hot(ys, ways, zs.dtype, like=zs)
        y_hat = F.cosine_attention(ops.expand_dims(zq, 0), ops.expand_dims(zs, 0),
                                   ops.expand_dims(onehot, 0))[0]
        return ops.log(y_hat)

    def loss(self, scores, yq):
        """−mean log ŷ[label]: the scores are already log-probabilities."""
        picked = scores[np.arange(scores.shape[0]), np.asarray(yq)]
        return -ops.mean(picked)


class RelationNet(MetricLearner):
    """Relation Networks: a learned comparison of each (class, query) pair of feature maps."""

    def __init__(self, embedding, relation):
        super().__init__(_container(embed=embedding, relation=relation))

    def scores(self, zs, ys, zq, ways, params):
        """Sigmoid relation scores (queries, ways); class features sum the shots' maps."""
        n_q, fmap = zq.shape[0], zq.shape[1:]
        flat = ops.reshape(zs, (zs.shape[0], -1))
        onehot = F.one_hot(ys, ways, zs.dtype, like=zs)
        classes = ops.reshape(ops.matmul(onehot, flat, trans_a=True), (1, ways) + fmap)
        queries = ops.expand_dims(zq, 1)                                # (q, 1, C, H, W)
        pair_shape = (n_q, ways) + fmap
        pairs = ops.concatenate([ops.broadcast_to(classes, pair_shape),
                                 ops.broadcast_to(queries, pair_shape)], axis=2)
        pairs = ops.reshape(pairs, (n_q * ways, 2 * fmap[0]) + fmap[1:])
        logits = self.net.call_child("relation", pairs, params)
        return ops.sigmoid(ops.reshape(logits, (n_q, ways)))

    def loss(self, scores, yq):
        return F.mse_loss(scores, F.one_hot(yq, scores.shape[1], scores.dtype, like=scores))


def _container(**children):
    """A Module holding the named children (their parameters are ``<child>.<name>``)."""
    net = nn.Module()
    for name, child in children.items():
        net.add_child(name, child)
    return net
