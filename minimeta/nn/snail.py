"""SNAIL (Mishra et al. 2018): temporal convolutions and causal attention over a sequence of
labelled examples, as Modules (the functions are in ``functional/sequence.py``).

A sequence is (batch, channels, steps). ``SNAIL(ways, steps, features)`` is the paper's
Omniglot stack on top of an image embedding:

    Attention(64, 32) → TC(128) → Attention(256, 128) → TC(128) → Attention(512, 256)
    → a per-step linear map to ``ways`` logits (a causal convolution of kernel 1)

where TC(D) is ⌈log₂ T⌉ dense blocks of D filters with dilations 2, 4, …, 2^⌈log₂ T⌉ (the
paper's base-2 logarithm; a common reimplementation uses the natural one, which gives fewer
blocks). Every block concatenates its output to its input, so the channels grow block by block.

Every block also has ``forward_queries(s, x, params)``: a support sequence s (1, C, S) and
queries x (Q, C), each query one more step after s. It gives what ``forward`` gives at the last
step of each sequence [s, x_i], with the support steps computed once (a few-shot episode: S + Q
steps instead of Q·(S + 1); ``functional/sequence.py``).

Read next: ``minimeta/nn/fce.py`` (Matching Networks' full context embeddings).
"""
import math

import numpy as np

from .. import functional as F
from ..engine import ops
from ..engine.primitives.causal import causal_conv1d
from .layers import generator
from .module import Module


class DenseBlock(Module):
    """[x, tanh(conv_f x) ⊙ σ(conv_g x)]: ``filters`` channels more, kernel 2, ``dilation``."""

    def __init__(self, channels, filters, dilation, rng, dtype=np.float32):
        super().__init__()
        self.dilation, self.out_channels = dilation, channels + filters
        std = np.sqrt(1.0 / (2 * channels))
        for gate in ("f", "g"):
            self.add_param(f"w{gate}", (rng.standard_normal((filters, channels, 2)) * std)
                           .astype(dtype))
            self.add_param(f"b{gate}", np.zeros(filters, dtype=dtype))

    def forward(self, x, params):
        return F.dense_block(x, params["wf"], params["bf"], params["wg"], params["bg"],
                             self.dilation)

    def forward_queries(self, s, x, params):
        return F.dense_block_queries(s, x, params["wf"], params["bf"], params["wg"],
                                     params["bg"], self.dilation)


class TCBlock(Module):
    """⌈log₂ steps⌉ dense blocks of ``filters``, dilations 2, 4, …, as in the paper's
    pseudocode. Each block's kernel is 2 wide and every dilation even, so the output at step t
    reads steps t, t − 2, t − 4, … back to the start, not the odd offsets: in SNAIL an
    attention block, which reads every earlier step, comes first."""

    def __init__(self, channels, steps, filters, rng, dtype=np.float32):
        super().__init__()
        self._names = []
        for i in range(1, max(1, math.ceil(math.log2(steps))) + 1):
            block = DenseBlock(channels, filters, 2 ** i, rng, dtype)
            self._names.append(str(i))
            self.add_child(str(i), block)
            channels = block.out_channels
        self.out_channels = channels

    def forward(self, x, params):
        for name in self._names:
            x = self.call_child(name, x, params)
        return x

    def forward_queries(self, s, x, params):
        for name in self._names:
            sub = self.child_params(name, params)      # (names what it lacks from here)
            with self.naming(name, params):             # (and what the child's children lack)
                s, x = self._children[name].forward_queries(s, x, sub)
        return s, x


class AttentionBlock(Module):
    """[x, causal softmax attention of x with ``keys``-wide keys and ``values`` values]."""

    def __init__(self, channels, keys, values, rng, dtype=np.float32):
        super().__init__()
        self.out_channels = channels + values
        for name, width in (("q", keys), ("k", keys), ("v", values)):
            std = np.sqrt(1.0 / channels)
            self.add_param(f"w{name}", (rng.standard_normal((channels, width)) * std)
                           .astype(dtype))
            self.add_param(f"b{name}", np.zeros(width, dtype=dtype))

    def forward(self, x, params):
        seq = F.causal_attention(x.transpose((0, 2, 1)), *(params[n] for n in (
            "wq", "bq", "wk", "bk", "wv", "bv")))
        return seq.transpose((0, 2, 1))

    def forward_queries(self, s, x, params):
        s, x = F.causal_attention_queries(s[0].transpose((1, 0)), x, *(params[n] for n in (
            "wq", "bq", "wk", "bk", "wv", "bv")))
        return s.transpose((1, 0)).reshape((1,) + s.shape[::-1]), x


OMNIGLOT = ((64, 32), 128, (256, 128), 128, (512, 256))  # the paper's stack


class SNAIL(Module):
    """The paper's Omniglot stack on sequences of ``features`` channels, ``steps`` long
    (N·K + 1 for N-way K-shot), ending in ``ways`` logits at every step. ``sizes`` lists the
    blocks: (keys, values) for an attention block, a filter count for a TC block."""

    def __init__(self, ways, steps, features, seed=0, dtype=np.float32, sizes=OMNIGLOT):
        super().__init__()
        rng = generator(seed)
        c = features
        self._names = []
        for i, size in enumerate(sizes):
            if isinstance(size, tuple):
                name, block = f"att{i}", AttentionBlock(c, *size, rng, dtype)
            else:
                name, block = f"tc{i}", TCBlock(c, steps, size, rng, dtype)
            self.add_child(name, block)
            self._names.append(name)
            c = block.out_channels
        self.add_param("w_out", (rng.standard_normal((ways, c, 1)) * np.sqrt(1.0 / c))
                       .astype(dtype))
        self.add_param("b_out", np.zeros(ways, dtype=dtype))

    def forward(self, x, params):
        for name in self._names:
            x = self.call_child(name, x, params)
        return causal_conv1d(x, params["w_out"]) + params["b_out"].reshape((-1, 1))

    def forward_queries(self, s, x, params):
        """(Q, ways): the logits at the last step of the Q sequences [s, x_i], for a support
        sequence s (1, features, S) and queries x (Q, features), the support steps computed
        once (``functional/sequence.py``): equal to ``forward`` on the Q sequences, faster."""
        params = self.own(params)
        for name in self._names:
            sub = self.child_params(name, params)      # (names what it lacks from here)
            with self.naming(name, params):             # (and what the child's children lack)
                s, x = self._children[name].forward_queries(s, x, sub)
        w = params["w_out"]
        return ops.matmul(x, w.reshape(w.shape[:2]), trans_b=True) + params["b_out"]
