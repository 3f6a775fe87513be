"""Fused cosine attention (Matching Networks) as a primitive, with a composite second order.

The forward and the first-order VJP each run one fused kernel (``kernels/attention_*``). The
VJP is itself a primitive, ``CosineAttentionVJP``, whose own VJP (needed only for second and
higher orders) is taken through the composite definition ``functional.cosine_attention``, built
from ordinary primitives. So the fast path serves training, and exact higher derivatives still
flow, the composite being the reference the fused kernel is tested against.

Read next: ``../../functional/metric.py``.
"""
from ... import kernels as K
from ..autodiff import Primitive, grad, set_grad_enabled
from .. import ops


class CosineAttention(Primitive):
    """out = softmax_j(cos(q_i, s_j)) @ y, batched: q (B,Q,D), s (B,S,D), y (B,S,N).

    VJP: (dq, ds, dy) = unpack(cosine_attention_vjp(q, s, y, g)).
    """

    __slots__ = ("eps",)

    def __init__(self, eps):
        self.eps = eps

    def forward(self, q, s, y):
        return K.lookup("cosine_attention")(q, s, y, self.eps)

    def vjp(self, g, out, q, s, y):
        packed = ops.apply(CosineAttentionVJP(self.eps), q, s, y, g)
        parts, start = [], 0
        for t in (q, s, y):
            parts.append(ops.reshape(packed[start:start + t.size], t.shape))
            start += t.size
        return tuple(parts)


class CosineAttentionVJP(Primitive):
    """packed = concat(vec(dq), vec(ds), vec(dy)), the gradient of ⟨g, attention(q, s, y)⟩.

    VJP with incoming h: the gradient of ⟨h, packed⟩ with respect to (q, s, y, g), computed by
    differentiating the composite attention twice (create_graph=True), so it is differentiable
    again.
    """

    __slots__ = ("eps",)

    def __init__(self, eps):
        self.eps = eps

    def forward(self, q, s, y, g):
        return K.lookup("cosine_attention_backward")(q, s, y, g, self.eps)

    def vjp(self, h, out, q, s, y, g):
        from ...functional.metric import cosine_attention_composite

        inputs = [q, s, y, g]
        wanted = [t for t in inputs if t.requires_grad]
        with set_grad_enabled(True):
            first = [t for t in (q, s, y) if t.requires_grad]
            inner = ops.sum(g * cosine_attention_composite(q, s, y, self.eps))
            firsts = grad(inner, first, create_graph=True, allow_unused=True)
            by_id = {id(t): d for t, d in zip(first, firsts)}
            total, start = None, 0
            for t in (q, s, y):
                piece = ops.reshape(h[start:start + t.size], t.shape)
                start += t.size
                d = by_id.get(id(t))
                if d is not None:
                    term = ops.sum(piece * d)
                    total = term if total is None else total + term
            if total is None or not total.requires_grad:
                return (None,) * 4
            seconds = grad(total, wanted, create_graph=True, allow_unused=True)
        by_id = {id(t): d for t, d in zip(wanted, seconds)}
        return tuple(by_id.get(id(t)) for t in inputs)


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
