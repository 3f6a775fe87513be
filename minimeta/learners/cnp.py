"""Conditional neural processes (Garnelo et al. 2018): a model-based learner for regression.

The third family of meta-learning reads the support set with a network instead of taking
gradient steps on it. A CNP encodes each context point, averages the codes (so the order of
the points does not matter), and decodes each target from its x and that average:

    rᵢ = h([xᵢ, yᵢ]),   r = mean_i rᵢ,   (μ, s) = g([x, r]),   σ = 0.1 + 0.9 · softplus(s),

trained on the Gaussian negative log-likelihood of the targets,

    NLL = mean over targets of  log σ + (y − μ)² / (2σ²) + ½ log 2π.

There is no inner loop: adapting to a task is one forward pass, so the engine needs no second
derivatives here (the meta-gradient is an ordinary gradient through h, the mean and g). The
floor 0.1 on σ is that of DeepMind's reference code for the paper (its CNP notebook, "bound
the variance"): it keeps the likelihood from rewarding a collapsed variance.
A meta-batch runs as one batch: the MLPs broadcast over a leading task axis. As in the paper,
training varies the context size, so one model serves every K: each meta-batch takes its first
k support points as the context, k drawn from 1..K (the draw is seeded by the batch's own data,
so a resumed run repeats it), and predicts all its points, support and query.

Evaluation (``evaluate``) is the MSE of μ on the query points, the number the sinusoid table
reports for MAML after fine-tuning (``experiments/sinusoid.py``).

Read next: ``minimeta/data/__init__.py`` (task families as NumPy arrays).
"""
import math

import numpy as np

from .. import nn
from ..engine import no_grad, ops
from .base import (Learner, all_or_nothing, as_tensor, backward_to, data_rng, nonempty, summary,
                   tasks_given)


def softplus(s):
    """log(1 + eˢ), computed as s + log(1 + e⁻ˢ) for s > 0 and log(1 + eˢ) elsewhere (no
    overflow for large s). Each side one smooth formula: max(s, 0) + log(1 + e^−|s|) had
    the derivatives 1 and 0 at s = 0 (maximum's tie to s, sign(0) = 0), not σ(0) = 0.5 and
    0.25."""
    positive = s > 0
    return ops.where(positive, s, 0.0) + ops.log(1.0 + ops.exp(ops.where(positive, -s, s)))


def context_size(xs):
    """k in 1..K for support points ``xs`` (tasks, K, features), from a generator seeded by a
    checksum of ``xs``: the same batch always gets the same k."""
    return int(data_rng(xs).integers(1, xs.shape[1] + 1))


class CNP(Learner):
    """A conditional neural process on (x, y) points with ``x_dim`` and ``y_dim`` features:
    encoder MLP (x, y) → ``hidden`` …, decoder MLP (x, r) → (μ, s) for each y feature."""

    def __init__(self, x_dim=1, y_dim=1, hidden=128, layers=3, seed=0, dtype=np.float32):
        sizes_h = (x_dim + y_dim,) + (hidden,) * layers
        sizes_g = (x_dim + hidden,) + (hidden,) * (layers - 1) + (2 * y_dim,)
        net = nn.Module()
        net.add_child("encoder", nn.mlp(sizes_h, seed=seed, dtype=dtype))
        net.add_child("decoder", nn.mlp(sizes_g, seed=nn.layers.derived(seed, 1), dtype=dtype))
        super().__init__(net, loss="mse", params=net.named_parameters())
        self.net, self.x_dim, self.y_dim = net, x_dim, y_dim

    def predict(self, xs, ys, xq, params=None):
        """(μ, σ) at the targets ``xq`` given the context (``xs``, ``ys``); arrays of shape
        (points, features), or (tasks, points, features) for a stack of tasks."""
        params = self.params if params is None else params
        for name, a, dim in (("context x", xs, "x"), ("context y", ys, "y"),
                             ("target x", xq, "x")):
            if np.ndim(a) not in (2, 3) or np.shape(a)[-1] != getattr(self, dim + "_dim"):
                d = f"{dim}_dim={getattr(self, dim + '_dim')}"
                raise ValueError(f"CNP: {name} must be (points, {d}) or (tasks, points, {d}), "
                                 f"got shape {np.shape(a)}")
        xs, ys, xq = (as_tensor(a, params) for a in (xs, ys, xq))
        codes = self.net.call_child("encoder", ops.concatenate([xs, ys], axis=-1), params)
        r = ops.mean(codes, axis=-2, keepdims=True)                # order-invariant summary
        r = ops.broadcast_to(r, xq.shape[:-1] + (r.shape[-1],))
        out = self.net.call_child("decoder", ops.concatenate([xq, r], axis=-1), params)
        mu, s = out[..., :self.y_dim], out[..., self.y_dim:]
        return mu, 0.1 + 0.9 * softplus(s)

    def nll(self, xs, ys, xq, yq, params=None):
        """The mean Gaussian negative log-likelihood of the targets ``yq``."""
        mu, sigma = self.predict(xs, ys, xq, params)
        _same_shape(yq, mu)
        z = (as_tensor(yq, self.params) - mu) / sigma
        return ops.mean(ops.log(sigma) + 0.5 * z * z) + 0.5 * math.log(2 * math.pi)

    def task_loss(self, task):
        """(NLL on the query points, None): a regression has no accuracy."""
        xs, ys, xq, yq = task
        nonempty("CNP", context=xs, targets=xq)
        return self.nll(xs, ys, xq, yq), None

    @all_or_nothing
    def outer_step(self, tasks):
        """The gradient of the training NLL over ``tasks``, accumulated into ``.grad``: the
        tasks stacked on a leading axis (their shapes must agree), the context their first k
        support points (k from 1..K, drawn from the batch's data), the targets all points."""
        tasks_given(tasks, "CNP")
        shapes = {tuple(np.shape(a) for a in t) for t in tasks}
        if len(shapes) > 1:
            raise ValueError(f"CNP: the tasks of a meta-batch must have equal shapes, got "
                             f"{sorted(shapes)}")
        xs, ys, xq, yq = (np.stack([t[i] for t in tasks]) for i in range(4))
        nonempty("CNP", context=xs[0])
        k = context_size(xs)
        loss = self.nll(xs[:, :k], ys[:, :k], np.concatenate([xs, xq], axis=1),
                        np.concatenate([ys, yq], axis=1))
        backward_to(loss, self.meta_parameters())
        return summary([loss.data], [None])

    def evaluate(self, task, steps=None):
        """(MSE of μ on the query points, None); ``steps`` is ignored (no inner loop)."""
        xs, ys, xq, yq = task
        nonempty("CNP", context=xs, targets=xq)    # (the mean over no targets: NaN)
        with no_grad():
            mu, _ = self.predict(xs, ys, xq)
            _same_shape(yq, mu)
            return float(np.mean((mu.numpy() - np.asarray(yq)) ** 2)), None


def _same_shape(targets, mu):
    """Targets shaped like the predictions (a (K,) array against (K, 1) would broadcast to a
    (K, K) difference: a wrong loss, silently)."""
    if np.shape(targets) != mu.shape:
        raise ValueError(f"CNP: targets of shape {np.shape(targets)} for predictions of shape "
                         f"{mu.shape}: give them as (points, {mu.shape[-1]})")
