"""The convolution family and max pooling: primitives whose forward calls a kernel.

The three conv primitives form a closed family. Writing ⟨·,·⟩ for the sum of elementwise
products, conv2d is linear in x and in w, with

    ⟨g, conv2d(x, w)⟩ = ⟨conv2d_input_grad(g, w), x⟩ = ⟨conv2d_weight_grad(x, g), w⟩.

Differentiating those identities gives every VJP in terms of the family itself, so gradients of
any order stay inside three kernels. Forwards go through the kernel table (``minimeta.kernels``),
where a NumPy reference is the spec and faster versions plug in. Each member also takes a stack
of T convolutions, one per task: a leading task axis on x (T, N, C, H, W), w (T, O, C, kh, kw)
and every shape (the family stays closed: the identities hold task by task).

Read next: ``minimeta/engine/primitives/causal.py`` (the causal dilated 1-D convolution (SNAIL's)).
"""
import numpy as np

from ... import kernels as K
from ..autodiff import Primitive, apply
from ..backend import array_module
from .elementwise import floating
from .shape import broadcast_to, reshape


def whole(op, name, value, least, axes=2):
    """``value`` if it is an int (not a bool) >= ``least``, else a ValueError naming ``op``
    and the option: strides, padding and pooling windows are one number for both axes."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) \
            or value < least:
        both = " (one value for both axes)" if axes == 2 else ""
        raise ValueError(f"{op}: {name} must be an int >= {least}{both}, got {value!r}")
    return int(value)


def _check(x_shape, w_shape, stride, padding):
    stack = len(x_shape) == 5 and len(w_shape) == 5 and x_shape[0] == w_shape[0]
    if not stack and (len(x_shape) != 4 or len(w_shape) != 4):
        raise ValueError(f"conv2d: input {x_shape} must be NCHW and weight {w_shape} OIHW "
                         f"(or both with one leading task axis of the same length)")
    x_shape, w_shape = x_shape[stack:], w_shape[stack:]
    if x_shape[1] != w_shape[1]:
        raise ValueError(f"conv2d: input has {x_shape[1]} channels but weight {w_shape} "
                         f"expects {w_shape[1]}")
    for size, k in zip(x_shape[2:], w_shape[2:]):
        if size + 2 * padding < k:
            raise ValueError(f"conv2d: kernel {w_shape[2:]} is larger than the padded input "
                             f"{x_shape[2:]} (padding {padding})")
    if stride < 1 or padding < 0:
        raise ValueError(f"conv2d: stride must be >= 1 and padding >= 0, got {stride}, {padding}")


class Conv2d(Primitive):
    """y = conv2d(x, w) [+ b, one bias per output channel].

    VJP: (conv2d_input_grad(g, w), conv2d_weight_grad(x, g) [, g summed over all but the
    channel axis (and the task axis of a stack)]).

    The bias is added in place to the kernel's output, an array no one else holds (kernel
    ``add_bias``): one pass on all cores, where ``y + b`` as an Add would take one core and
    allocate (on conv4's first layer at 640 images, 128 MiB each step). The bias's VJP is
    ``BiasGrad`` (a per-channel sum, one kernel pass on all cores), whose own VJP is a
    broadcast, so every order stays in the family, the shape ops and the reductions.
    """

    __slots__ = ("stride", "padding")

    def __init__(self, stride, padding):
        self.stride, self.padding = stride, padding

    def forward(self, x, w, b=None):
        _check(x.shape, w.shape, self.stride, self.padding)
        y = K.lookup("conv2d", x, w)(x, w, self.stride, self.padding)
        if b is None:
            return y
        if b.dtype != y.dtype or array_module(y).may_share_memory(y, x):
            return y + b.reshape(K.norm_ref.layout(y, b)[1])   # promoted, as an Add would
        return K.lookup("add_bias", y, b)(y, b)    # y += b in place: y is the kernel's own

    def vjp(self, g, out, x, w, b=None):
        gx = conv2d_input_grad(g, w, x.shape, self.stride, self.padding) \
            if x.requires_grad else None
        gw = conv2d_weight_grad(x, g, w.shape, self.stride, self.padding) \
            if w.requires_grad else None
        if b is None:
            return gx, gw
        gb = bias_grad(g, stacked=b.ndim == 2) if b.requires_grad else None
        return gx, gw, gb


class BiasGrad(Primitive):
    """gb = Σ g over every axis but the channel axis (and the task axis of a stack): the conv
    bias's gradient, the adjoint of adding a bias per channel.

    VJP: h broadcast back over the summed axes (as a Sum's VJP, which it is).
    """

    __slots__ = ("stacked",)

    def __init__(self, stacked):
        self.stacked = stacked

    def forward(self, g):
        return K.lookup("bias_grad", g)(g, self.stacked)

    def vjp(self, h, out, g):
        per_channel = K.norm_ref.layout(g, out if self.stacked else None)[1]
        return (broadcast_to(reshape(h, per_channel), g.shape),)


class Conv2dInputGrad(Primitive):
    """gx = conv2d_input_grad(g, w) (a transposed convolution).

    VJP with incoming h: (conv2d(h, w), conv2d_weight_grad(h, g)).
    """

    __slots__ = ("x_shape", "stride", "padding")

    def __init__(self, x_shape, stride, padding):
        self.x_shape, self.stride, self.padding = tuple(x_shape), stride, padding

    def forward(self, g, w):
        return K.lookup("conv2d_input_grad", g, w)(g, w, self.x_shape, self.stride, self.padding)

    def vjp(self, h, out, g, w):
        dg = conv2d(h, w, self.stride, self.padding) if g.requires_grad else None
        dw = conv2d_weight_grad(h, g, w.shape, self.stride, self.padding) \
            if w.requires_grad else None
        return dg, dw


class Conv2dWeightGrad(Primitive):
    """gw = conv2d_weight_grad(x, g) (a correlation of the input with the output gradient).

    VJP with incoming h: (conv2d_input_grad(g, h), conv2d(x, h)).
    """

    __slots__ = ("w_shape", "stride", "padding")

    def __init__(self, w_shape, stride, padding):
        self.w_shape, self.stride, self.padding = tuple(w_shape), stride, padding

    def forward(self, x, g):
        return K.lookup("conv2d_weight_grad", x, g)(x, g, self.w_shape, self.stride, self.padding)

    def vjp(self, h, out, x, g):
        dx = conv2d_input_grad(g, h, x.shape, self.stride, self.padding) \
            if x.requires_grad else None
        dg = conv2d(x, h, self.stride, self.padding) if g.requires_grad else None
        return dx, dg


def _images(a, lead):
    """A raw array of NCHW images, or a stack (T, N, C, H, W) seen as T·N of them (``lead``:
    its shape before the last three axes); the pooling kernels take images."""
    return a if len(lead) == 1 else a.reshape((int(np.prod(lead)),) + a.shape[len(lead):])


class MaxPool2d(Primitive):
    """y = max over each k×k window (stride s, no padding) of NCHW x, or of each image of a
    stack (T, N, C, H, W); the kernel also gives the argmax (flat indices into x), which
    forward saves for the VJP (``saves``: it returns ``(y, (argmax,))``).

    VJP: max_pool2d_backward(g, argmax), the gradient scattered to the argmax positions.
    """

    __slots__ = ("kernel", "stride")
    saves = True

    def __init__(self, kernel, stride):
        self.kernel, self.stride = kernel, stride

    def forward(self, x):
        if x.ndim not in (4, 5) or min(x.shape[-2:]) < self.kernel:
            raise ValueError(f"max_pool2d: input {x.shape} must be NCHW (or a stack TNCHW) with "
                             f"sides >= kernel {self.kernel}")
        lead = x.shape[:-3]
        images = _images(x, lead)
        y, argmax = K.lookup("max_pool2d", images)(images, self.kernel, self.stride)
        if len(lead) > 1:       # flat indices into the images are flat indices into x
            shape = lead + y.shape[1:]
            y, argmax = y.reshape(shape), argmax.reshape(shape)
        return y, (argmax,)

    def vjp(self, g, out, x):
        (argmax,) = out.saved
        return (apply(MaxPool2dBackward(argmax, x.shape), g),)


class MaxPool2dBackward(Primitive):
    """gx = zeros(x_shape) with g added at the flat ``argmax`` positions (a scatter).

    VJP with incoming h: the gather ``MaxPool2dGather``, h.flat[argmax] shaped like g. Gather
    and scatter are each other's VJPs, so max pooling is differentiable to any order inside
    its three primitives (its second derivative is zero almost everywhere, like relu's).
    """

    __slots__ = ("argmax", "x_shape")

    def __init__(self, argmax, x_shape):
        self.argmax, self.x_shape = argmax, tuple(x_shape)

    def forward(self, g):
        lead = self.x_shape[:-3]
        images = (int(np.prod(lead)),) + self.x_shape[-3:]
        gx = K.lookup("max_pool2d_backward", g)(_images(g, lead), _images(self.argmax, lead),
                                                images)
        return gx if len(lead) == 1 else gx.reshape(self.x_shape)

    def vjp(self, h, out, g):
        return (apply(MaxPool2dGather(self.argmax), h),)


class MaxPool2dGather(Primitive):
    """out = h.flat[argmax]: h read at the flat ``argmax`` positions, shaped like argmax.

    VJP with incoming g: max_pool2d_backward(g, argmax), the scatter back to h's shape.
    """

    __slots__ = ("argmax",)

    def __init__(self, argmax):
        self.argmax = argmax

    def forward(self, h):
        return array_module(h).take(h, self.argmax)

    def vjp(self, g, out, h):
        return (apply(MaxPool2dBackward(self.argmax, h.shape), g),)


def conv2d(x, w, stride=1, padding=0, bias=None):
    """Differentiable convolution of NCHW ``x`` with OIHW ``w``, plus ``bias`` (O,) if given;
    on a stack (a task axis in front of x and w), ``bias`` is (T, O). Mixed dtypes promote as
    NumPy's do (``floating``); integer images must be converted first."""
    stride, padding = whole("conv2d", "stride", stride, 1), whole("conv2d", "padding", padding, 0)
    x, w, bias = floating("conv2d", x, w, bias)
    if bias is None:
        return apply(Conv2d(stride, padding), x, w)
    want = w.shape[:-3] if w.ndim in (4, 5) else bias.shape   # other ranks: _check says why
    if bias.shape != want:                                      # (O,), or (T, O) on a stack
        raise ValueError(f"conv2d: bias {bias.shape} must be {want} for weight {w.shape}")
    return apply(Conv2d(stride, padding), x, w, bias)


def bias_grad(g, stacked=False):
    """Differentiable Σ of ``g`` per channel: (C,) from (N, C, ...), or (T, C) from a stack
    (T, N, C, ...) with ``stacked``: the gradient of ``conv2d``'s bias."""
    return apply(BiasGrad(bool(stacked)), g)


def conv2d_input_grad(g, w, x_shape, stride=1, padding=0):
    """Differentiable transposed convolution: the input gradient of ``conv2d``."""
    return apply(Conv2dInputGrad(x_shape, stride, padding), g, w)


def conv2d_weight_grad(x, g, w_shape, stride=1, padding=0):
    """Differentiable weight gradient of ``conv2d``."""
    return apply(Conv2dWeightGrad(w_shape, stride, padding), x, g)


def max_pool2d(x, kernel, stride=None):
    """Differentiable max pooling (stride defaults to the kernel size)."""
    kernel = whole("max_pool2d", "kernel", kernel, 1)
    stride = kernel if stride is None else whole("max_pool2d", "stride", stride, 1)
    return apply(MaxPool2d(kernel, stride), x)
