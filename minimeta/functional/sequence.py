"""Sequence layers of SNAIL (Mishra et al. 2018): the gated causal convolution and causally
masked softmax attention, as compositions of primitives.

Sequences are (batch, channels, steps) for the convolutions, as conv2d's NCHW, and
(batch, steps, features) inside attention. Both layers are **causal**: the output at step t is
a function of the inputs at steps ≤ t only (``tests/test_snail.py`` proves it by perturbing
later steps).

- ``dense_block``: tanh(conv_f(x)) ⊙ σ(conv_g(x)), two causal convolutions of kernel 2 and
  dilation d (``engine/primitives/causal.py``), concatenated to x on the channel axis;
- ``causal_attention``: softmax(q kᵀ / √K, masked) v with q, k, v affine maps of x, the logits
  above the diagonal replaced by −10⁹ (step t attends to steps ≤ t; their weight is exactly 0
  after the exponential, in float32 and float64, and anomaly mode sees no −∞), concatenated
  to x.

The masked attention is dot-product attention, not the cosine attention of Matching Networks,
so it does not reuse that fused kernel; it is a composite of ``matmul`` (with its transpose
flag), ``where`` (the mask, whose numba select kernel it shares) and ``log_softmax``. Its
derivatives of every order come from those primitives.

Read next: ``minimeta/functional/recurrent.py`` (the LSTM cell).
"""
import math

import numpy as np

from ..engine import ops
from ..engine.primitives.causal import causal_conv1d
from .losses import log_softmax


MASKED = -1e9  # the logit of a future step: exp(MASKED − logsumexp) is exactly 0


def causal_mask(steps):
    """(steps, steps) booleans, True where step t may attend to step s (s ≤ t).

    >>> causal_mask(3).astype(int)
    array([[1, 0, 0],
           [1, 1, 0],
           [1, 1, 1]])
    """
    return np.tril(np.ones((steps, steps), dtype=bool))


def dense_block(x, wf, bf, wg, bg, dilation):
    """SNAIL's DenseBlock on x (B, C, T): [x, tanh(xf) ⊙ σ(xg)] (B, C + F, T), where
    xf = causal_conv1d(x, wf, d) + bf with wf (F, C, 2), and xg likewise."""
    xf = causal_conv1d(x, wf, dilation) + ops.reshape(bf, (-1, 1))
    xg = causal_conv1d(x, wg, dilation) + ops.reshape(bg, (-1, 1))
    return ops.concatenate([x, ops.tanh(xf) * ops.sigmoid(xg)], axis=1)


def causal_attention(x, wq, bq, wk, bk, wv, bv):
    """Masked softmax attention on x (B, T, C): [x, softmax(q kᵀ/√K, masked) v] (B, T, C + V),
    with q = x wq + bq, k = x wk + bk (K columns) and v = x wv + bv (V columns)."""
    steps, keys = x.shape[1], wk.shape[-1]
    q, k, v = x @ wq + bq, x @ wk + bk, x @ wv + bv
    logits = ops.matmul(q, k, trans_b=True) * (1.0 / math.sqrt(keys))      # (B, T, T)
    logits = ops.where(causal_mask(steps), logits, MASKED)
    read = ops.exp(log_softmax(logits, axis=-1)) @ v
    return ops.concatenate([x, read], axis=-1)
