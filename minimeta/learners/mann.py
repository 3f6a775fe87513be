"""A memory-augmented neural network (MANN; Santoro et al. 2016): an LSTM controller with an
external memory, written by least-recently-used access (LRUA) and read by cosine addressing.

An episode is a sequence: 5 classes × 10 drawings in a random order, 50 steps (by default;
ways × shots in general), each image shown with the *previous* step's label (labels assigned
per episode), so the network must bind an image to the label it is told one step later and
recall it when the class comes back. At
step t, with controller state h_t and one key k_t per read head (4 heads of 40 features):

    write   w^w_t = σ(α_t) · w^r_{t−1} + (1 − σ(α_t)) · w^lu_{t−1},
            M_t = M_{t−1} with its least-used row zeroed, + Σ_heads w^w_t ⊗ k_t
    read    w^r_t = softmax_i cos(k_t, M_t(i)),   r_t = w^r_t M_t
    usage   w^u_t = γ · w^u_{t−1} + Σ_heads (w^r_t + w^w_t)       (γ = 0.95)
    output  logits_t = [h_t, r_t] W_o + b_o

where w^lu marks the 4 least-used rows (the paper's m(w^u, n) rule, a constant mask). The read
is the fused cosine-attention primitive of Matching Networks with the memory as both keys and
values: the values are [M_t, I], so one kernel call returns the read vector *and* the read
weights the usage needs. A memory row of zeros (every row, at the start) has similarity 0
under the kernel's convention ‖v‖ ≈ sqrt(‖v‖² + ε²), so addressing stays finite, with finite
gradients (``tests/test_mann.py``).

Read next: ``minimeta/learners/cnp.py`` (conditional neural processes: the model-based family).
"""
import numpy as np

from .. import functional as F
from .. import nn
from ..engine import no_grad, ops
from ..engine.primitives.attention import cosine_attention
from .base import (Learner, all_or_nothing, backward_to, data_rng, labels_within, metrics,
                   nonempty, one_label_each, summary, tasks_given)


def least_used(usage, n, order=None):
    """(B, rows) mask: 1 on the ``n`` rows of smallest usage (first ones on ties), else 0;
    ``order`` is ``usage``'s stable argsort along rows when the caller has it. NumPy's
    functions dispatch to CuPy's for a GPU's usage (whose argsort is stable too): the rows are
    picked where the usage is, without a read to the host."""
    if order is None:
        order = np.argsort(usage, axis=1, kind="stable")
    mask = np.zeros_like(usage)
    np.put_along_axis(mask, order[:, :n], 1.0, axis=1)
    return mask


def lrua_write(memory, read_prev, usage_prev, gate, keys, n_reads):
    """One LRUA write: (new memory (B, R, W), write weights (B, H, R)).

    ``memory`` (B, R, W), ``read_prev`` (B, H, R), ``keys`` (B, H, W) and ``gate`` (B, H, 1)
    (σ(α), in (0, 1)) are Tensors; ``usage_prev`` (B, R) is an array on their device
    (usage only picks rows: no gradient flows through it)."""
    order = np.argsort(usage_prev, axis=1, kind="stable")
    lu = least_used(usage_prev, n_reads, order)                   # the n least-used rows
    dt = memory.dtype              # the masks in the memory's dtype: float64 ones had made
    weights = gate * read_prev + (1.0 - gate) * ops.constant(lu[:, None, :], memory, dtype=dt)
    zero = 1.0 - least_used(usage_prev, 1, order)                 # the least-used row cleared
    cleared = memory * ops.constant(zero[:, :, None], memory, dtype=dt)   # all float64
    return cleared + ops.matmul(weights, keys, trans_a=True), weights


def training_bytes(ways, shots, queries, batch, pixels=28 * 28, rows=128, width=40,
                   itemsize=4):
    """About the peak bytes of one outer step (MANN's default sizes, float32) on ``batch``
    episodes of ``ways`` × (``shots`` + ``queries``) images of ``pixels`` floats, known before
    anything is allocated: ``registry.fits_memory`` refuses a run that cannot fit, which the
    system had killed in its first step instead. The backward needs the graph of the whole
    sequence (``ways`` × ``shots`` steps), so the peak grows as tasks × steps, and each task
    and step keeps the read's values [M_t, I] (rows × (width + rows)), about six arrays of the
    memory's size (rows × width) and about twelve rows as wide as the ways (the previous
    label, the logits, the loss, their gradients): the two counts fitted to the peak resident
    memory of runs of 150 to 600 MiB (5 to 2000 ways, 1 to 10 shots, 1 to 16 tasks), which
    the estimate follows within 6% (``tests/test_mann.py`` measures one)."""
    steps = ways * shots
    per_step = rows * (width + rows) + 6 * rows * width + 12 * ways
    return batch * (steps * per_step * itemsize + ways * (shots + queries) * pixels * 4)


class MANN(nn.Module):
    """The network: LSTM controller of ``hidden`` units over [image, previous label, previous
    reads], memory ``rows`` × ``width``, ``heads`` read heads, a linear read-out to ``ways``."""

    def __init__(self, image_features, ways=5, hidden=200, rows=128, width=40, heads=4,
                 gamma=0.95, seed=0, dtype=np.float32):
        super().__init__()
        rng = nn.layers.generator(seed)   # seed None: the process stream
        self.ways, self.rows, self.width, self.heads, self.gamma = ways, rows, width, heads, gamma
        self.hidden = hidden
        self.add_child("controller", nn.LSTMCell(image_features + ways + heads * width, hidden,
                                                 rng=rng, dtype=dtype))
        self.add_child("key", nn.Linear(hidden, heads * width, rng=rng, dtype=dtype))
        self.add_child("gate", nn.Linear(hidden, heads, rng=rng, dtype=dtype))
        self.add_child("out", nn.Linear(hidden + heads * width, ways, rng=rng, dtype=dtype))

    def forward(self, inputs, params):
        """Logits (B, T, ways) for images (B, T, features) and previous labels (B, T, ways)."""
        x, labels = inputs
        b, steps = x.shape[0], x.shape[1]
        like, dt = x, x.dtype
        zeros = lambda *shape: ops.constant(np.zeros(shape, dt), like)  # noqa: E731
        h, c = zeros(b, self.hidden), zeros(b, self.hidden)
        memory, reads = zeros(b, self.rows, self.width), zeros(b, self.heads * self.width)
        read_w, usage = zeros(b, self.heads, self.rows), zeros(b, self.rows).data
        eye = ops.constant(np.broadcast_to(np.eye(self.rows, dtype=dt),
                                           (b, self.rows, self.rows)), like)
        logits = []
        for t in range(steps):
            h, c = self.call_child("controller", (ops.concatenate(
                [x[:, t], labels[:, t], reads], axis=-1), (h, c)), params)
            keys = ops.reshape(self.call_child("key", h, params), (b, self.heads, self.width))
            gate = ops.sigmoid(ops.reshape(self.call_child("gate", h, params),
                                           (b, self.heads, 1)))
            memory, write_w = lrua_write(memory, read_w, usage, gate, keys, self.heads)
            out = cosine_attention(keys, memory, ops.concatenate([memory, eye], axis=-1))
            read, read_w = out[..., :self.width], out[..., self.width:]
            usage = self.gamma * usage + (read_w.data + write_w.data).sum(axis=1)  # on device
            reads = ops.reshape(read, (b, self.heads * self.width))
            logits.append(self.call_child("out", ops.concatenate([h, reads], axis=-1), params))
        return ops.stack(logits, axis=1)


def presentations(labels):
    """For each step, which presentation of its class it is (1 for the first time)."""
    seen, out = {}, np.empty(len(labels), dtype=int)
    for t, y in enumerate(labels):
        seen[y] = seen.get(y, 0) + 1
        out[t] = seen[y]
    return out


class MANNLearner(Learner):
    """MANN on episodes (xs, ys, ...): the support set, ``ways`` classes × ``shots`` drawings
    (10 by default), is the sequence (the query part is unused: a run may draw none,
    ``--queries 0``); images are resized by the area matrices ``resize`` (rows, cols) when
    given (the paper's 20×20), flattened, in ``dtype`` (``omniglot.area_matrix``'s float64
    had run a float32 network in float64)."""

    def __init__(self, ways=5, image_size=20, resize=None, seed=0, dtype=np.float32, **sizes):
        self.ways, self.resize, self.dtype = ways, resize, dtype
        if resize is not None and (len(resize[0]), len(resize[1])) != (image_size,) * 2:
            raise ValueError(f"MANNLearner: resize gives {len(resize[0])}×{len(resize[1])} "
                             f"images, not image_size={image_size}")
        self.image_size = image_size           # and the images it reads, before any resize:
        self.reads = (image_size,) * 2 if resize is None else (resize[0].shape[1],
                                                               resize[1].shape[1])
        net = MANN(image_size * image_size, ways, seed=seed, dtype=dtype, **sizes)
        super().__init__(net, loss="cross_entropy", params=net.named_parameters())
        self.net = net

    def sequence(self, xs, ys):
        """(images (T, features), labels (T,), previous-label one-hots (T, ways)) in an order
        drawn from the episode's checksum (a resumed run repeats it)."""
        nonempty("MANNLearner", episode=ys)
        one_label_each("MANNLearner", xs, ys, "episode")
        labels_within("MANNLearner", self.ways, episode=ys)
        order = data_rng(xs).permutation(len(ys))
        x, y = np.asarray(xs)[order], np.asarray(ys)[order]
        x = x.reshape(len(y), *x.shape[-2:]).astype(self.dtype)
        if x.shape[1:] != self.reads:       # (NumPy's "matmul: shapes … not aligned" had said)
            via = ", through resize" if self.resize is not None else ""
            raise ValueError(f"MANNLearner: images of {x.shape[1]}×{x.shape[2]} pixels, but it "
                             f"reads {self.reads[0]}×{self.reads[1]} (image_size="
                             f"{self.image_size}{via}): give image_size or resize for them")
        if self.resize is not None:
            rows, cols = self.resize
            x = (rows @ x @ cols.T).astype(self.dtype, copy=False)
        prev = np.zeros((len(y), self.ways), dtype=self.dtype)
        prev[np.arange(1, len(y)), y[:-1]] = 1.0
        return x.reshape(len(y), -1), y, prev

    def batch_logits(self, tasks):
        seqs = [self.sequence(t[0], t[1]) for t in tasks]
        if len({len(s[1]) for s in seqs}) > 1:
            raise ValueError(f"MANNLearner: the episodes of a meta-batch run as one batch and "
                             f"must have equal lengths, got {sorted({len(s[1]) for s in seqs})}")
        like = next(iter(self.params.values()))
        x = ops.constant(np.stack([s[0] for s in seqs]), like)
        prev = ops.constant(np.stack([s[2] for s in seqs]), like)
        logits = self.net((x, prev), self.params)
        return logits, np.stack([s[1] for s in seqs])

    def batch_loss(self, tasks):
        tasks_given(tasks, "MANNLearner")
        logits, y = self.batch_logits(tasks)
        flat = ops.reshape(logits, (-1, self.ways))
        return self.loss(flat, y.reshape(-1)), F.unread_accuracy(flat, y.reshape(-1))

    def task_loss(self, task):
        return self.batch_loss([task])

    @all_or_nothing
    def outer_step(self, tasks):
        """The meta-batch's episodes run as one batch through the recurrence."""
        loss, acc = self.batch_loss(tasks)
        backward_to(loss, self.meta_parameters())
        return summary([loss.data], [acc])

    def evaluate(self, task, steps=None):
        """Loss and accuracy over all the episode's steps (ways × shots: 50 at 5 × 10; no
        graph; ``steps`` is ignored)."""
        with no_grad():
            loss, acc = self.batch_loss([task])
        return metrics(loss.data, acc)

    def instance_accuracy(self, tasks, upto=10):
        """Accuracy at the 1st, 2nd, …, ``upto``-th presentation of a class, over ``tasks``;
        NaN for a presentation no episode has (episodes of 3 drawings a class have no 4th)."""
        hits, counts = np.zeros(upto), np.zeros(upto)
        with no_grad():
            logits, y = self.batch_logits(tasks)
        pred = logits.numpy().argmax(-1)
        for p, labels in zip(pred, y):
            k = presentations(labels)
            for n in range(1, upto + 1):
                hits[n - 1] += np.sum(p[k == n] == labels[k == n])
                counts[n - 1] += np.sum(k == n)
        return np.where(counts > 0, hits / np.maximum(counts, 1), np.nan)
