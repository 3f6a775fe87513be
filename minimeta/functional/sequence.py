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
  to x;
- ``dense_block_queries``, ``causal_attention_queries``: the same layers for Q sequences that
  share their first S steps (a few-shot episode: the support set, then one query each). By
  causality the shared steps' outputs are the same in every sequence, so they are computed
  once and each query only at its own last step: S + Q steps instead of Q·(S + 1), and the
  same numbers (``tests/test_snail.py``).

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


def dense_block_queries(s, x, wf, bf, wg, bg, dilation):
    """``dense_block`` of the support sequence s (1, C, S) and of queries x (Q, C), each query
    one more step after s (step S of its own sequence [s, x_i]). Returns (s', x'), s' as
    ``dense_block(s)`` and x'[i] the last step of ``dense_block([s, x_i])``: the tap j of the
    convolution reads step S − (k − 1 − j)·d, a support step, x_i itself, or 0 before step 0."""
    steps, taps = s.shape[-1], wf.shape[-1]
    zero = ops.constant(np.zeros((1, s.shape[1]), dtype=x.dtype), x)
    cols = []                                                # what tap j reads: (Q or 1, C)
    for j in range(taps):
        t = steps - (taps - 1 - j) * dilation
        cols.append(x if t == steps else s[:, :, t] if t >= 0 else zero)
    cols = ops.stack([ops.broadcast_to(c, x.shape) for c in cols], axis=-1)   # (Q, C, k)
    cols = ops.reshape(cols, (x.shape[0], -1))               # one step's im2col: (Q, C·k)

    def conv(w, b):
        at_s = causal_conv1d(s, w, dilation) + ops.reshape(b, (-1, 1))
        return at_s, ops.matmul(cols, ops.reshape(w, (w.shape[0], -1)), trans_b=True) + b

    (sf, xf), (sg, xg) = conv(wf, bf), conv(wg, bg)
    return (ops.concatenate([s, ops.tanh(sf) * ops.sigmoid(sg)], axis=1),
            ops.concatenate([x, ops.tanh(xf) * ops.sigmoid(xg)], axis=1))


def _affine(x, w, b):
    """x w + b over the last axis of x, as one 2-D matrix product (a batch of T × C products
    and their weight gradients summed over the batch are 2-4× slower in NumPy)."""
    flat = ops.reshape(x, (-1, x.shape[-1])) @ w + b
    return ops.reshape(flat, x.shape[:-1] + (w.shape[-1],))


def _attend(x, wq, bq, wk, bk, wv, bv):
    """(read, k, v) of causal attention on x (B, T, C)."""
    steps, keys = x.shape[1], wk.shape[-1]
    q, k, v = _affine(x, wq, bq), _affine(x, wk, bk), _affine(x, wv, bv)
    logits = ops.matmul(q, k, trans_b=True) * (1.0 / math.sqrt(keys))      # (B, T, T)
    logits = ops.where(causal_mask(steps), logits, MASKED)
    return ops.exp(log_softmax(logits, axis=-1)) @ v, k, v


def causal_attention(x, wq, bq, wk, bk, wv, bv):
    """Masked softmax attention on x (B, T, C): [x, softmax(q kᵀ/√K, masked) v] (B, T, C + V),
    with q = x wq + bq, k = x wk + bk (K columns) and v = x wv + bv (V columns)."""
    read, _, _ = _attend(x, wq, bq, wk, bk, wv, bv)
    return ops.concatenate([x, read], axis=-1)


def causal_attention_queries(s, x, wq, bq, wk, bk, wv, bv):
    """``causal_attention`` of the support steps s (S, C) and of queries x (Q, C), each query
    one more step after s: query i attends to the S support steps and to itself (the last row
    of the masked attention on [s, x_i]). Returns (s', x'), (S, C + V) and (Q, C + V)."""
    read_s, k, v = _attend(ops.expand_dims(s, 0), wq, bq, wk, bk, wv, bv)
    k, v = k[0], v[0]
    q, k_x, v_x = x @ wq + bq, x @ wk + bk, x @ wv + bv
    logits = ops.concatenate([ops.matmul(q, k, trans_b=True),                  # (Q, S)
                              ops.sum(q * k_x, axis=1, keepdims=True)], axis=1)
    p = ops.exp(log_softmax(logits * (1.0 / math.sqrt(k.shape[-1])), axis=-1))
    read_x = p[:, :-1] @ v + p[:, -1:] * v_x
    return (ops.concatenate([s, read_s[0]], axis=-1),
            ops.concatenate([x, read_x], axis=-1))
