"""Matrix product, batched over leading axes with NumPy's broadcasting rules.

Read next: ``../ops.py``, which wraps every primitive as a user-facing function.
"""
from ..autodiff import Primitive
from .. import ops


class MatMul(Primitive):
    """out = a @ b (1-D operands promoted as in NumPy, leading axes broadcast).

    VJP: (g @ bᵀ, aᵀ @ g) on the last two axes, the engine summing over broadcast batch axes.
    A 1-D ``a`` is treated as a row (1, n), a 1-D ``b`` as a column (n, 1).
    """

    def forward(self, a, b):
        if a.ndim == 0 or b.ndim == 0:
            raise ValueError(f"matmul: operands must have at least 1 dim, got {a.shape}, {b.shape}")
        if a.shape[-1] != b.shape[-2 if b.ndim > 1 else 0]:
            raise ValueError(f"matmul: shapes {a.shape} and {b.shape} are not aligned")
        return a @ b

    def vjp(self, g, out, a, b):
        a2 = a if a.ndim > 1 else ops.reshape(a, (1, a.shape[0]))
        b2 = b if b.ndim > 1 else ops.reshape(b, (b.shape[0], 1))
        g2 = g
        if a.ndim == 1:
            g2 = ops.expand_dims(g2, -2 if b.ndim > 1 else 0)
        if b.ndim == 1:
            g2 = ops.expand_dims(g2, -1)
        ga = gb = None
        if a.requires_grad:
            ga = ops.matmul(g2, ops.swapaxes(b2, -1, -2))
            if a.ndim == 1:
                ga = ops.reshape(ops.sum_to(ga, a2.shape), a.shape)
        if b.requires_grad:
            gb = ops.matmul(ops.swapaxes(a2, -1, -2), g2)
            if b.ndim == 1:
                gb = ops.reshape(ops.sum_to(gb, b2.shape), b.shape)
        return ga, gb
