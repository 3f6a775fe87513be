"""Full context embeddings (Vinyals et al. 2016, appendix A.2), as a module with functional
parameters.

A plain Matching Network embeds each image on its own. With full context embeddings (FCE):

- the support embeddings see each other through a bidirectional LSTM run over the support set,
  with a skip connection:  g(xᵢ, S) = h→ᵢ + h←ᵢ + g′(xᵢ);
- each query embedding attends to the support set for K "processing steps" with an LSTM whose
  recurrent input is the hidden state concatenated with the read-out:
      ĥ_k, c_k = LSTM(f′(x̂), [h_{k−1}, r_{k−1}], c_{k−1}),   h_k = ĥ_k + f′(x̂),
      r_k = Σᵢ softmax_i(h_kᵀ g(xᵢ)) g(xᵢ),                 f(x̂, S) = h_K,
  starting from h₀ = r₀ = c₀ = 0. Queries are processed together, each independently.

Everything is a composition of primitives, so FCE is differentiable at any order.

Read next: ``minimeta/nn/backbones.py`` (conv4, the MLP, Relation Networks' parts).
"""
import numpy as np

from .. import functional as F
from ..engine import ops
from .layers import LSTMCell, generator
from .module import Module


class FullContextEmbedding(Module):
    """``fce((support, query), params)`` → ``(g, f)``: support (s, d) and query (q, d)
    embeddings in context, of the same shapes."""

    def __init__(self, dim, steps=5, seed=0, dtype=np.float32):
        super().__init__()
        if steps < 1:
            raise ValueError(f"FullContextEmbedding: need steps >= 1, got {steps}")
        rng = generator(seed)
        self.dim, self.steps = dim, steps
        self.add_child("forward", LSTMCell(dim, dim, rng=rng, dtype=dtype))
        self.add_child("backward", LSTMCell(dim, dim, rng=rng, dtype=dtype))
        self.add_child("attention", LSTMCell(dim, dim, rng=rng, dtype=dtype,
                                             recurrent_size=2 * dim))

    def forward(self, inputs, params):
        support, query = inputs
        for name, t in (("support", support), ("query", query)):
            if t.ndim != 2 or t.shape[1] != self.dim:
                raise ValueError(f"FullContextEmbedding: {name} embeddings must be (n, "
                                 f"{self.dim}), got {t.shape}")
        g = self.embed_support(support, params)
        return g, self.embed_query(query, g, params)

    def _run(self, name, xs, params):
        """Hidden states of the LSTM ``name`` run over the rows of ``xs`` in the given order."""
        p = self.child_params(name, params)
        h = c = ops.zeros((1, self.dim), dtype=xs[0].dtype, device=xs[0].device)
        out = []
        for x in xs:
            h, c = F.lstm_cell(x, h, c, p["w_ih"], p["w_hh"], p["bias"])
            out.append(h)
        return out

    def embed_support(self, support, params):
        """g(xᵢ, S) = h→ᵢ + h←ᵢ + g′(xᵢ): a bidirectional LSTM over the support set."""
        rows = [support[i:i + 1] for i in range(support.shape[0])]
        fwd = self._run("forward", rows, params)
        bwd = self._run("backward", rows[::-1], params)[::-1]
        return ops.concatenate([f + b for f, b in zip(fwd, bwd)], axis=0) + support

    def embed_query(self, query, g, params):
        """f(x̂, S) = h_K of the attention LSTM over the support embeddings ``g``."""
        p = self.child_params("attention", params)
        h = r = c = ops.zeros(query.shape, dtype=query.dtype, device=query.device)
        for _ in range(self.steps):
            state = ops.concatenate([h, r], axis=1)
            h_hat, c = F.lstm_cell(query, state, c, p["w_ih"], p["w_hh"], p["bias"])
            h = h_hat + query
            r = F.softmax(ops.matmul(h, g, trans_b=True), -1) @ g
        return h

    def extra_repr(self):
        return f"dim={self.dim}, steps={self.steps}"
