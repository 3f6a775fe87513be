"""Matrix product, batched over leading axes with NumPy's broadcasting rules.

``MatMul`` carries the two transpose flags of BLAS ``gemm``: out = op(a) @ op(b), where op
swaps the last two axes when its flag is set. With them the VJP of a matrix product is again a
matrix product (g @ bᵀ is ``matmul(g, b, trans_b=True)``), so the family is closed under
differentiation and no transpose op is recorded, at any order.

``Affine`` (x @ w + b, a linear layer) is the product and a bias as one op: its VJP is two
products and the bias's g, so higher orders stay in the family and in ``Sum``.

Read next: ``minimeta/engine/primitives/fused.py`` (fused primitives: kernel VJPs, composite
orders).
"""
from ..autodiff import Primitive, apply
from ..tensor import lift_pair
from .reductions import sum_to
from .shape import expand_dims, reshape


def _t(x, flag):
    """x with its last two axes swapped when ``flag`` (a view, no copy)."""
    return x.swapaxes(-1, -2) if flag else x


class MatMul(Primitive):
    """out = op(a) @ op(b), op(x) = xᵀ (last two axes) where ``trans_a`` / ``trans_b`` say.

    1-D operands are promoted as in NumPy (``a`` a row (1, n), ``b`` a column (n, 1)); the
    flags need 2-D or more. Leading axes broadcast. VJP, with A = op(a), B = op(b):
    dA = g Bᵀ and dB = Aᵀ g, each written back in its operand's own layout:

    - ga = g @ op(b)ᵀ  = matmul(g, b, False, not tb)        when not ta
      ga = (g Bᵀ)ᵀ = op(b) @ gᵀ = matmul(b, g, tb, True)   when ta
    - gb = op(a)ᵀ @ g  = matmul(a, g, not ta, False)        when not tb
      gb = (Aᵀ g)ᵀ = gᵀ @ op(a) = matmul(g, a, True, ta)   when tb

    The engine sums over broadcast batch axes.
    """

    __slots__ = ("trans_a", "trans_b")

    def __init__(self, trans_a=False, trans_b=False):
        self.trans_a, self.trans_b = trans_a, trans_b

    def forward(self, a, b):
        if a.ndim == 0 or b.ndim == 0:
            raise ValueError(f"matmul: operands must have at least 1 dim, got {a.shape}, {b.shape}")
        if (self.trans_a and a.ndim < 2) or (self.trans_b and b.ndim < 2):
            raise ValueError(f"matmul: a transposed operand needs 2 dims or more, got {a.shape}, "
                             f"{b.shape}")
        a, b = _t(a, self.trans_a), _t(b, self.trans_b)
        if a.shape[-1] != b.shape[-2 if b.ndim > 1 else 0]:
            raise ValueError(f"matmul: shapes {a.shape} and {b.shape} are not aligned")
        if a.shape[-1] == 1 and a.ndim > 1 and b.ndim > 1:   # an outer product: one product an
            return a * b        # entry, as a broadcast product (a third of the time when small)
        return a @ b

    def vjp(self, g, out, a, b):
        ta, tb = self.trans_a, self.trans_b
        a2 = a if a.ndim > 1 else reshape(a, (1, a.shape[0]))   # 1-D: no flags (forward)
        b2 = b if b.ndim > 1 else reshape(b, (b.shape[0], 1))
        g2 = g
        if a.ndim == 1:
            g2 = expand_dims(g2, -2 if b.ndim > 1 else 0)
        if b.ndim == 1:
            g2 = expand_dims(g2, -1)
        ga = gb = None
        if a.requires_grad:
            ga = matmul(b2, g2, tb, True) if ta else matmul(g2, b2, False, not tb)
            if a.ndim == 1:
                ga = reshape(sum_to(ga, a2.shape), a.shape)
        if b.requires_grad:
            gb = matmul(g2, a2, True, ta) if tb else matmul(a2, g2, not ta, False)
            if b.ndim == 1:
                gb = reshape(sum_to(gb, b2.shape), b.shape)
        return ga, gb


class Affine(Primitive):
    """out = x @ w + b, one op (PyTorch's ``addmm``): a linear layer. x and w have 2 dims or
    more (leading axes broadcast, as in ``MatMul``), b broadcasts to the product.

    VJP: (g @ wᵀ, xᵀ @ g, g): two ``MatMul``s, as the product's own VJP, and g itself for b,
    which the engine sums down to b's shape, as it does for an ``Add``. The products and sums
    of ``x @ w + b`` in two ops (from order 2, gradients that meet at a tensor may add in
    another order: the last bits), with one op and one node fewer (a small MLP's second-order
    MAML step spends most of its time on the engine's cost an op).
    """

    def forward(self, x, w, b):
        return _PRODUCT.forward(x, w) + b

    def vjp(self, g, out, x, w, b):
        gx = matmul(g, w, False, True) if x._requires_grad else None
        gw = matmul(x, g, True, False) if w._requires_grad else None
        return gx, gw, (g if b._requires_grad else None)


_PRODUCT = MatMul()     # Affine's product: MatMul's forward, its checks and its outer products


# ----- the user-facing functions (re-exported by ops.py) ---------------------------------------
def affine(x, w, b):
    """x @ w + b as one primitive (``Affine``); x and w of 2 dims or more.

    >>> from minimeta import tensor
    >>> affine(tensor([[1.0, 2.0]]), tensor([[3.0], [4.0]]), tensor([0.5])).numpy()
    array([[11.5]])
    """
    x, w = lift_pair(x, w)
    x, b = lift_pair(x, b)
    if x.ndim < 2 or w.ndim < 2:
        raise ValueError(f"affine: x and w need 2 dims or more, got {x.shape} and {w.shape}")
    return apply(Affine(), x, w, b)


def matmul(a, b, trans_a=False, trans_b=False):
    """Matrix product with NumPy's rules (batched, broadcasting leading axes); ``trans_a`` /
    ``trans_b`` use aᵀ / bᵀ (last two axes swapped) without recording a transpose.

    >>> from minimeta import tensor
    >>> matmul(tensor([[1.0, 2.0]]), tensor([[3.0, 4.0]]), trans_b=True).numpy()
    array([[11.]])
    """
    a, b = lift_pair(a, b)
    return apply(MatMul(bool(trans_a), bool(trans_b)), a, b)
