"""Derivative operators built on ``grad``: Hessian-vector products, Jacobians, Hessians.

All of them record their result (``create_graph=True``), so each can be differentiated again.
``jacobian`` and ``hessian`` loop over output elements: they are for small teaching problems.

Read next: ``minimeta/engine/replay.py`` (a call recorded once, then replayed: Traced).
"""
from .autodiff import grad
from .tensor import Tensor
from . import ops


def _differentiable(xs):
    """Inputs as Tensors that require grad (constants are wrapped as new leaves); a single
    Tensor in place of ``hvp``'s list is refused (iterated, its rows had become the inputs)."""
    if isinstance(xs, Tensor):
        raise TypeError("hvp: give the inputs as a list of Tensors ([x]), not one Tensor")
    return [x if isinstance(x, Tensor) and x.requires_grad
            else Tensor(x, requires_grad=True) for x in xs]


def _scalar(y, op):
    """``y``, checked to be a Tensor of one element (what ``op`` differentiates)."""
    if not isinstance(y, Tensor):
        raise TypeError(f"{op}: f must return a Tensor computed from its inputs, got "
                        f"{type(y).__name__}")
    if y.size != 1:
        raise ValueError(f"{op}: f must return a scalar, got shape {y.shape} (sum it, or "
                         "use jacobian)")
    return y


def hvp(f, inputs, v):
    """Hessian-vector product: the tuple of d/dx_i ⟨∇f(x), v⟩ for scalar ``f``.

    >>> import minimeta as mm
    >>> x = mm.tensor([1.0, 2.0])
    >>> mm.hvp(lambda x: (x ** 3).sum(), [x], [mm.tensor([1.0, 1.0])])[0].numpy()
    array([ 6., 12.])
    """
    xs = _differentiable(inputs)
    if isinstance(v, Tensor):
        raise TypeError("hvp: give v as a list of Tensors, one per input ([v])")
    vs = [t if isinstance(t, Tensor) else Tensor(t) for t in v]
    if len(vs) != len(xs) or any(w.shape != x.shape for w, x in zip(vs, xs)):
        raise ValueError(f"hvp: v must be one vector per input, of its shape: inputs "
                         f"{[x.shape for x in xs]}, v {[w.shape for w in vs]}")
    gs = grad(_scalar(f(*xs), "hvp"), xs, create_graph=True, allow_unused=True)
    dot = None
    for g, w in zip(gs, vs):
        if g is not None:
            term = ops.sum(g * w)
            dot = term if dot is None else dot + term
    if dot is None or not dot.requires_grad:
        return tuple(ops.zeros(x.shape, dtype=x.dtype, device=x.device) for x in xs)
    out = grad(dot, xs, create_graph=True, allow_unused=True)
    return tuple(ops.zeros(x.shape, dtype=x.dtype, device=x.device) if o is None else o
                 for o, x in zip(out, xs))


def jacobian(f, x):
    """The Jacobian of ``f`` at tensor ``x``, of shape ``f(x).shape + x.shape``.

    >>> import minimeta as mm
    >>> mm.jacobian(lambda x: x * x, mm.tensor([1.0, 3.0])).numpy()
    array([[2., 0.],
           [0., 6.]])
    """
    (x,) = _differentiable([x])
    y = f(x)
    if not isinstance(y, Tensor):
        raise TypeError(f"jacobian: f must return a Tensor computed from x, got "
                        f"{type(y).__name__}")
    flat = ops.reshape(y, (-1,))
    rows = []
    for i in range(flat.shape[0]):
        (r,) = grad(flat[i], [x], create_graph=True, allow_unused=True) \
            if flat.requires_grad else (None,)
        rows.append(ops.zeros(x.shape, dtype=x.dtype, device=x.device) if r is None else r)
    if not rows:
        return ops.zeros(y.shape + x.shape, dtype=x.dtype, device=x.device)
    return ops.reshape(ops.stack(rows), y.shape + x.shape)


def hessian(f, x):
    """The Hessian of scalar ``f`` at ``x`` (shape ``x.shape + x.shape``): the Jacobian of ∇f.

    >>> import minimeta as mm
    >>> mm.hessian(lambda x: (x ** 3).sum(), mm.tensor([1.0, 2.0])).numpy()
    array([[ 6.,  0.],
           [ 0., 12.]])
    """
    def gradient(z):
        (g,) = grad(_scalar(f(z), "hessian"), [z], create_graph=True, allow_unused=True)
        return ops.zeros(z.shape, dtype=z.dtype, device=z.device) if g is None else g

    return jacobian(gradient, x)
