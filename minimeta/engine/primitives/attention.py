"""Fused cosine attention (Matching Networks): a ``Fused`` primitive (see ``fused.py``).

Forward and first-order VJP each run one kernel (``kernels/attention_*``); second and higher
derivatives go through the composite ``functional.metric.cosine_attention_composite``.

Read next: ``normalization.py``.
"""
from .fused import Fused
from .. import ops


class CosineAttention(Fused):
    """out = softmax_j(cos(q_i, s_j)) @ y, batched: q (B,Q,D), s (B,S,D), y (B,S,N).

    VJP: (dq, ds, dy) from the kernel ``cosine_attention_backward`` (formulas in
    ``kernels/attention_ref.py``); higher orders through the composite.
    """

    __slots__ = ("eps",)
    kernel, vjp_kernel = "cosine_attention", "cosine_attention_backward"

    def __init__(self, eps):
        self.eps = eps

    def static(self):
        return (self.eps,)

    def composite(self, q, s, y):
        from ...functional.metric import cosine_attention_composite

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
    return ops.apply(CosineAttention(eps), q, s, y)
