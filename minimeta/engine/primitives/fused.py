"""Fused primitives: one kernel forward, one kernel VJP, and a composite for higher orders.

Some ops are compositions of many primitives (batch norm, cosine attention) whose speed suffers
from one full pass over memory per small op. A ``Fused`` primitive runs them as one kernel
forward and one kernel VJP (first order, the common case in training), while its *composite*
definition, an ordinary function of Tensors, stays the reference:

    Fused.vjp(g)        = unpack(FusedVJP(inputs, g))           one fused backward kernel
    FusedVJP.vjp(h)     = ∇_(inputs, g) ⟨h, ∇_inputs ⟨g, composite(inputs)⟩⟩
                          (taken through the composite with create_graph=True)

So second and higher derivatives are exact and come from the composite's primitives, and the
fused kernels are tested equal to the composite (forward and first derivative). A subclass sets
``kernel``, ``vjp_kernel`` (names in the kernel table), ``static()`` (extra kernel arguments)
and ``composite(*inputs)``. The VJP kernel returns the gradients packed into one flat array
(the engine's primitives have one output), in input order.

Read next: ``minimeta/engine/primitives/attention.py`` (fused cosine attention).
"""
from ... import kernels as K
from ..autodiff import Primitive, apply, grad, set_grad_enabled
from .reductions import sum
from .shape import reshape


def unpack(packed, like):
    """Split a flat Tensor into pieces shaped like the Tensors in ``like``."""
    parts, start = [], 0
    for t in like:
        parts.append(reshape(packed[start:start + t.size], t.shape))
        start += t.size
    return parts


class Fused(Primitive):
    """Base class of fused primitives (see the module docstring)."""

    abstract = True  # not a primitive itself: the primitive table asks no row of it
    kernel = vjp_kernel = None

    def static(self):
        """Extra (non-array) arguments passed to both kernels after the arrays."""
        return ()

    def composite(self, *inputs):
        """The same function written with ordinary primitives: the reference."""
        raise NotImplementedError

    def forward(self, *arrays):
        return K.lookup(self.kernel, arrays[0])(*arrays, *self.static())

    def vjp(self, g, out, *inputs):
        packed = apply(FusedVJP(self), *inputs, g)
        return tuple(unpack(packed, inputs))


class FusedVJP(Primitive):
    """packed = concat of vec(∂⟨g, f(inputs)⟩/∂input) for each input of the fused op ``f``.

    Its own VJP differentiates the composite twice, so it is differentiable to any order.
    """

    __slots__ = ("fused",)

    def __init__(self, fused):
        self.fused = fused

    def __repr__(self):
        return f"{type(self.fused).__name__}VJP"

    def forward(self, *arrays):
        return K.lookup(self.fused.vjp_kernel, arrays[0])(*arrays, *self.fused.static())

    def vjp(self, h, out, *args):
        # Local stand-ins: the derivatives wanted here are partial ones, with respect to the
        # direct inputs. Differentiating with respect to ``args`` themselves would also follow
        # paths through their ancestors (g usually depends on x), counting them twice.
        with set_grad_enabled(True):
            local = [apply(Alias(), t) if t.requires_grad else t for t in args]
            inputs, g = local[:-1], local[-1]
            wanted = [t for t in local if t.requires_grad]
            first = [t for t in inputs if t.requires_grad]
            inner = sum(g * self.fused.composite(*inputs))
            firsts = dict(zip(map(id, first),
                              grad(inner, first, create_graph=True, allow_unused=True)))
            total = None
            for piece, t in zip(unpack(h, inputs), inputs):
                d = firsts.get(id(t))
                if d is not None:
                    term = sum(piece * d)
                    total = term if total is None else total + term
            if total is None or not total.requires_grad:
                return (None,) * len(args)
            seconds = dict(zip(map(id, wanted),
                               grad(total, wanted, create_graph=True, allow_unused=True)))
        return tuple(seconds.get(id(t)) for t in local)


class Alias(Primitive):
    """out = a, a new node: lets a VJP take partial derivatives with respect to one input.

    VJP: g.
    """

    def forward(self, a):
        return a

    def vjp(self, g, out, a):
        return (g,)
