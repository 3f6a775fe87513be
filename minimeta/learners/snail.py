"""SNAIL as a learner (Mishra et al. 2018): few-shot classification by reading a sequence.

An N-way K-shot episode becomes, for each query image, one sequence of N·K + 1 steps: the
support images' embeddings, each with its one-hot label, in a random order, then the query's
embedding with an all-zero label. SNAIL (``nn/snail.py``) reads it causally, and its logits at
the last step are the prediction for the query. The sequences share their support steps and
SNAIL is causal, so those are computed once for all queries (``shared``, the default; the
same logits as one whole sequence per query, ``tests/test_snail.py``). Nothing is adapted at
test time: the support set is input, so a model trained with N ways handles any K up to the
one it was trained on.

Training, as in the paper, draws the shot count k from 1..K for each episode (the episodes are
sampled with K shots and k of each class are kept) and shuffles the support steps; both draws
are seeded by a checksum of the episode's images, so a resumed run repeats them.

The embedding is conv4 (64 features for 28×28 images); the whole network, embedding and SNAIL,
is trained end to end by the outer optimizer on the queries' cross-entropy. Its batch norm
normalises with the statistics of the whole episode's images (support, every query, and in
training the shots drawn but not kept), so a query's logits move a little with the other
queries drawn (no label is read: only their images), and with the query count.

Read next: ``minimeta/learners/mann.py`` (a memory-augmented network (MANN)).
"""
import numpy as np

from .. import functional as F
from .. import nn
from ..engine import no_grad, ops
from ..nn.module import sub_params
from ..nn.snail import OMNIGLOT, SNAIL
from .base import (Learner, as_tensor, check_settings, data_rng, labels_within, metrics,
                   nonempty, one_label_each)


class SnailLearner(Learner):
    """SNAIL for ``ways``-way episodes of up to ``shots`` shots, on a conv4 embedding (or
    ``embedding``, any Module giving ``features`` features per image); ``sizes`` the blocks
    (``nn/snail.py``; default the paper's Omniglot stack)."""

    def __init__(self, ways, shots, seed=0, embedding=None, dtype=np.float32, features=64,
                 vary_shots=True, sizes=OMNIGLOT):
        check_settings("SnailLearner", steps=(("ways", ways), ("shots", shots)))
        if ways < 1 or shots < 1:   # (shots=0 had failed in outer_step: "low >= high")
            raise ValueError(f"SnailLearner: ways and shots must be >= 1, got {ways}, {shots}")
        self.ways, self.shots, self.vary_shots, self.features = ways, shots, vary_shots, features
        net = nn.Module()
        net.add_child("embed", embedding if embedding is not None else
                      nn.conv4(seed=seed, dtype=dtype))
        self.snail = SNAIL(ways, ways * shots + 1, features + ways,
                           seed=nn.layers.derived(seed, 1), dtype=dtype, sizes=sizes)
        net.add_child("snail", self.snail)
        super().__init__(net, loss="cross_entropy", params=net.named_parameters())
        self.net = net

    def steps(self, xs, ys, xq, params, order=None):
        """(support (n_s, C), queries (n_q, C)): the support steps in ``order`` (default: as
        given), each image's embedding with its one-hot label, and the queries' embeddings with
        a zero label; C = features + ways."""
        like = next(iter(params.values()))
        x = ops.concatenate([as_tensor(xs, params), as_tensor(xq, params)], axis=0)
        z = self.net.call_child("embed", x, params)
        z = ops.reshape(z, (z.shape[0], -1))
        if z.shape[1] != self.features:    # (NumPy's "matmul: shapes … not aligned" had said)
            raise ValueError(f"SnailLearner: the embedding gives {z.shape[1]} features per "
                             f"image, the SNAIL reads features={self.features}: give "
                             f"features={z.shape[1]} (or images of the size it was built for)")
        n_s, n_q = len(xs), len(xq)
        order = np.arange(n_s) if order is None else np.asarray(order)
        labels = F.one_hot(np.asarray(ys)[order], self.ways, z.dtype, like=z)
        support = ops.concatenate([z[:n_s][order], labels], axis=1)
        query = ops.concatenate([z[n_s:], ops.constant(np.zeros((n_q, self.ways), z.dtype),
                                                       like)], axis=1)
        return support, query

    def sequences(self, xs, ys, xq, params, order=None):
        """(queries, C, steps): each query's own sequence, the support steps then the query."""
        support, query = self.steps(xs, ys, xq, params, order)
        seq = ops.concatenate([ops.broadcast_to(ops.expand_dims(support, 0),
                                                (len(xq),) + support.shape),
                               ops.expand_dims(query, 1)], axis=1)          # (n_q, T, C)
        return ops.transpose(seq, (0, 2, 1))

    def logits(self, xs, ys, xq, params=None, order=None, shared=True):
        """(queries, ways): SNAIL's output at the last step of each query's sequence; with
        ``shared`` the support steps, the same in every sequence, are computed once
        (``SNAIL.forward_queries``), else each query's ``sequences`` is run whole."""
        params = self.params if params is None else params
        if not shared:
            return self.net.call_child("snail", self.sequences(xs, ys, xq, params, order),
                                       params)[:, :, -1]
        support, query = self.steps(xs, ys, xq, params, order)
        seq = ops.expand_dims(ops.transpose(support, (1, 0)), 0)            # (1, C, n_s)
        with self.net.naming("snail", params):        # a missing 'snail.*' named in full
            return self.snail.forward_queries(seq, query, sub_params(params, "snail"))

    def task_loss(self, task):
        """Cross-entropy and accuracy of the queries; k ≤ K shots and the support order drawn
        from the episode (``base.data_rng``)."""
        xs, ys, xq, yq = task
        ys = np.asarray(ys)
        nonempty("SnailLearner", support=ys, queries=yq)
        one_label_each("SnailLearner", xs, ys, "support")
        labels_within("SnailLearner", self.ways, support=ys, query=yq)
        rng = data_rng(xs)
        keep = np.arange(len(ys))
        if self.vary_shots:
            k = int(rng.integers(1, self.shots + 1))
            keep = np.concatenate([np.flatnonzero(ys == c)[:k] for c in range(self.ways)])
        order = keep[rng.permutation(len(keep))]
        scores = self.logits(xs, ys, xq, order=order)
        return self.loss(scores, yq), F.unread_accuracy(scores, yq)

    def evaluate(self, task, steps=None):
        """Query loss and accuracy of one episode, all its support shots in a random order
        (no graph; ``steps`` is ignored: there is no inner loop)."""
        xs, ys, xq, yq = task
        nonempty("SnailLearner", support=ys, queries=yq)
        one_label_each("SnailLearner", xs, ys, "support")
        order = data_rng(xs).permutation(len(ys))
        with no_grad():
            scores = self.logits(xs, ys, xq, order=order)
            return metrics(self.loss(scores, yq).data, F.unread_accuracy(scores, yq))
