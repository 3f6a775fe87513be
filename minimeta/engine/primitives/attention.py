"""Fused cosine attention (Matching Networks): a ``Fused`` primitive (see ``fused.py``).

Forward and first-order VJP each run one kernel (``kernels/attention_*``); second and higher
derivatives go through the composite below, the reference definition, written with the
engine's own primitives (``functional.metric.cosine_attention_composite`` re-exports it;
``functional.metric.cosine_attention`` picks the fused primitive or this composite).

Read next: ``minimeta/engine/primitives/normalization.py`` (fused batch normalisation).
"""
from .elementwise import exp, sqrt
from .fused import Fused
from .linalg import matmul
from .reductions import logsumexp, sum
from ..autodiff import apply


def smooth_norm(a, eps):
    """sqrt(|a|² + eps²) over the last axis (kept): smooth, and > 0 even at a = 0."""
    return sqrt(sum(a * a, -1, keepdims=True) + eps * eps)


def cosine_attention_composite(queries, support, support_onehot, eps=1e-8):
    """The composite definition of cosine attention: normalise, matmul, softmax, matmul.

    Each norm is sqrt(|v|² + eps²), so a zero vector gives similarity 0 with finite
    derivatives of every order.
    """
    q_hat = queries / smooth_norm(queries, eps)
    s_hat = support / smooth_norm(support, eps)
    sims = matmul(q_hat, s_hat, trans_b=True)                       # (..., q, s)
    weights = exp(sims - logsumexp(sims, -1, keepdims=True))       # softmax over the support
    return weights @ support_onehot


class CosineAttention(Fused):
    """out = softmax_j(cos(q_i, s_j)) @ y, batched: q (B,Q,D), s (B,S,D), y (B,S,N).

    VJP: (dq, ds, dy) from the kernel ``cosine_attention_backward`` (formulas in
    ``kernels/attention_ref.py``); higher orders through ``cosine_attention_composite``.
    """

    __slots__ = ("eps",)
    kernel, vjp_kernel = "cosine_attention", "cosine_attention_backward"

    def __init__(self, eps):
        self.eps = eps

    def static(self):
        return (self.eps,)

    def composite(self, q, s, y):
        return cosine_attention_composite(q, s, y, self.eps)


def cosine_attention(q, s, y, eps=1e-8):
    """Differentiable fused cosine attention (3-D inputs with a task axis)."""
    for name, t in (("queries", q), ("support", s), ("support labels", y)):
        if t.ndim != 3:
            raise ValueError(f"cosine_attention: {name} must be (tasks, items, features), got "
                             f"{t.shape}")
    if q.shape[0] != s.shape[0] or s.shape[:2] != y.shape[:2] or q.shape[2] != s.shape[2]:
        raise ValueError(f"cosine_attention: shapes q {q.shape}, s {s.shape}, y {y.shape} "
                         "do not fit (B,Q,D), (B,S,D), (B,S,N)")
    return apply(CosineAttention(eps), q, s, y)
