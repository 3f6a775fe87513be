"""Fused primitives: one kernel forward, one kernel VJP, and a composite for higher orders.

Some ops are compositions of many primitives (batch norm, cosine attention) whose speed suffers
from one full pass over memory per small op. A ``Fused`` primitive runs them as one kernel
forward and one kernel VJP (first order, the common case in training), while its *composite*
definition, an ordinary function of Tensors, stays the reference:

    Fused.vjp(g)        = unpack(FusedVJP(inputs, g))           one fused backward kernel
    FusedVJP.vjp(h)     = ∇_(inputs, g) ⟨h, ∇_inputs ⟨g, composite(inputs)⟩⟩
                          (taken through the composite with create_graph=True), or, where the
                          subclass names a ``vjp_vjp_kernel``, unpack(FusedVJPVJP(inputs, g, h))
    FusedVJPVJP.vjp(k)  = the same through the composite, one order up

So higher derivatives are exact and come from the composite's primitives, and the fused kernels
are tested equal to the composite. A subclass sets ``kernel``, ``vjp_kernel`` (and optionally
``vjp_vjp_kernel``: names in the kernel table), ``static()`` (extra kernel arguments) and
``composite(*inputs)``. The VJP kernels return the gradients packed into one flat array (the
engine's primitives have one output), in input order. Second-order MAML differentiates through
every batch norm's backward: the composite took some 130 ops there, the kernel takes one.

Read next: ``minimeta/engine/primitives/attention.py`` (fused cosine attention).
"""
from ... import kernels as K
from ..autodiff import Primitive, apply, grad, set_grad_enabled
from ..tensor import Tensor
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
    kernel = vjp_kernel = vjp_vjp_kernel = None

    def static(self):
        """Extra (non-array) arguments passed to both kernels after the arrays."""
        return ()

    def composite(self, *inputs):
        """The same function written with ordinary primitives: the reference."""
        raise NotImplementedError

    def forward(self, *arrays):
        return K.lookup(self.kernel, *arrays)(*arrays, *self.static())

    def vjp(self, g, out, *inputs):
        packed = apply(FusedVJP(self), *inputs, g)
        return tuple(unpack(packed, inputs))


class _OfFused(Primitive):
    """A derivative of the fused op ``fused``, run by the kernel its ``kernel_attr`` names."""

    abstract = True  # the two below are the primitives
    __slots__ = ("fused",)
    kernel_attr = suffix = None

    def __init__(self, fused):
        self.fused = fused

    def __repr__(self):
        return f"{type(self.fused).__name__}{self.suffix}"

    def forward(self, *arrays):
        kernel = K.lookup(getattr(self.fused, self.kernel_attr), *arrays)
        return kernel(*arrays, *self.fused.static())


class FusedVJP(_OfFused):
    """packed = concat of vec(∂⟨g, f(inputs)⟩/∂input) for each input of the fused op ``f``.

    Its own VJP differentiates the composite twice, so it is differentiable to any order.
    """

    __slots__ = ()
    kernel_attr, suffix = "vjp_kernel", "VJP"

    def vjp(self, h, out, *args):
        if self.fused.vjp_vjp_kernel:
            return tuple(unpack(apply(FusedVJPVJP(self.fused), *args, h), args))
        with set_grad_enabled(True):
            return composite_vjp_vjp(self.fused, args, h)


def _partial(args):
    """Local stand-ins: the derivatives wanted in a VJP are partial ones, with respect to the
    direct inputs. Differentiating with respect to ``args`` themselves would also follow paths
    through their ancestors (g usually depends on x), counting them twice. A constant gets a
    stand-in leaf: the kernels pack a gradient for it too, a function of the other inputs,
    and its derivatives with respect to them are needed (a mutation audit's check with some
    inputs held constant found them dropped)."""
    return [apply(Alias(), t) if t.requires_grad else Tensor(t.data, requires_grad=True)
            for t in args]


def composite_vjp_vjp(fused, args, h):
    """∇_(inputs, g) ⟨h, ∇_inputs ⟨g, composite(inputs)⟩⟩ for args = (*inputs, g), through the
    composite, recorded (so it can be differentiated again): FusedVJP's VJP."""
    local = _partial(args)
    inputs, g = local[:-1], local[-1]
    inner = sum(g * fused.composite(*inputs))
    firsts = grad(inner, inputs, create_graph=True, allow_unused=True)
    return _grad_of_pairing(unpack(h, inputs), firsts, local, args)


def _grad_of_pairing(pieces, derivatives, local, args):
    """∇_local Σ ⟨piece, derivative⟩ (pairs without a derivative skipped), recorded; one entry
    per Tensor of ``local``, None where nothing depends on it or its arg in ``args`` is a
    constant (the engine would drop that gradient: it is not computed)."""
    total = None
    for piece, d in zip(pieces, derivatives):
        if d is not None:
            term = sum(piece * d)
            total = term if total is None else total + term
    if total is None:
        return (None,) * len(local)
    wanted = [t for t, a in zip(local, args) if a.requires_grad]
    found = dict(zip(map(id, wanted), grad(total, wanted, create_graph=True, allow_unused=True)))
    return tuple(found.get(id(t)) for t in local)


class FusedVJPVJP(_OfFused):
    """packed = concat of vec(∂⟨h, FusedVJP(inputs, g)⟩/∂a) for a in (inputs..., g): one
    kernel (``vjp_vjp_kernel``). Its own VJP goes through the composite, one order up, so it
    is differentiable to any order.
    """

    __slots__ = ()
    kernel_attr, suffix = "vjp_vjp_kernel", "VJPVJP"

    def vjp(self, k, out, *args):
        with set_grad_enabled(True):
            local = _partial(args)
            seconds = composite_vjp_vjp(self.fused, local[:-1], local[-1])
            return _grad_of_pairing(unpack(k, local[:-1]), seconds, local, args)


class Alias(Primitive):
    """out = a, a new node: lets a VJP take partial derivatives with respect to one input.

    VJP: g.
    """

    def forward(self, a):
        return a

    def vjp(self, g, out, a):
        return (g,)
