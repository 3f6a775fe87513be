"""User-facing functions of the engine: each one checks its arguments and applies a primitive.

``mm.exp(x)``, ``x.exp()`` and ``x + y`` all end here. Python numbers and arrays are lifted to
Tensors with ``_lift`` (NEP 50: a Python number takes the other operand's dtype). A few
functions are compositions of primitives rather than primitives: ``mean`` (sum times 1/n),
``stack`` (expand_dims then concatenate), ``swapaxes``, ``expand_dims``, ``squeeze``,
``sum_to``. Comparisons and ``sign`` return constant (non-differentiable) Tensors.

Read next: ``primitives/`` (what each op computes and its VJP), then ``autodiff.py``.
"""
import math

import numpy as np

from .autodiff import apply, _unbroadcast
from .backend import array_module as xp_of, device_of, to_device
from .tensor import Tensor
from .primitives import elementwise as E, reductions as R, shape as S, linalg as L
from .primitives.reductions import normalize_axis

__all__ = [
    "tensor", "zeros", "ones", "constant", "add", "sub", "mul", "div", "neg", "pow", "exp",
    "log", "sqrt",
    "tanh", "sigmoid", "relu", "abs", "maximum", "where", "sum", "mean", "max", "logsumexp",
    "reshape", "transpose", "swapaxes", "expand_dims", "squeeze", "broadcast_to", "sum_to",
    "getitem", "scatter_add", "concatenate", "stack", "matmul", "astype", "compare", "sign",
    "isfinite",
]


def tensor(data, requires_grad=False, dtype=None, device=None):
    """Make a leaf Tensor from an array, a nested list or a number (NumPy's default dtypes),
    on ``device`` ('cpu' or 'cuda'; default: where ``data`` already is).

    >>> tensor([1.0, 2.0]).dtype
    dtype('float64')
    """
    if device is not None:
        data = to_device(data.data if isinstance(data, Tensor) else data, device)
    return Tensor(data, requires_grad=requires_grad, dtype=dtype)


def zeros(shape, dtype=np.float64, requires_grad=False, device="cpu"):
    """A leaf Tensor of zeros."""
    return tensor(np.zeros(shape, dtype=dtype), requires_grad, device=device)


def ones(shape, dtype=np.float64, requires_grad=False, device="cpu"):
    """A leaf Tensor of ones."""
    return tensor(np.ones(shape, dtype=dtype), requires_grad, device=device)


def constant(x, like, dtype=None):
    """A constant Tensor holding ``x`` (array, list, number) on ``like``'s device.

    Plain arrays met by an op are lifted this way: a constant goes where its partner is, as a
    Python number takes its partner's dtype. Two *Tensors* on different devices are an error.
    """
    if isinstance(x, Tensor):
        return x
    device = like.device if isinstance(like, Tensor) else device_of(like)
    return Tensor(to_device(x, device), dtype=dtype)


def _lift(x, like):
    """Turn a number or array into a constant Tensor; numbers take ``like``'s dtype (NEP 50)."""
    if isinstance(x, Tensor):
        return x
    if isinstance(x, (bool, int, float)):
        dtype = np.result_type(like.dtype, x) if like is not None else None
        return Tensor(xp_of(like.data if like is not None else 0).asarray(x, dtype=dtype))
    return constant(x, like) if like is not None else Tensor(x)


def _pair(a, b):
    if isinstance(a, Tensor):
        return a, (b if isinstance(b, Tensor) else _lift(b, a))
    b = _lift(b, None)
    return _lift(a, b), b


def _binary(cls, a, b):
    a, b = _pair(a, b)
    try:
        return apply(cls(), a, b)
    except ValueError:  # NumPy's broadcasting error, restated with the op's name
        if a.shape == b.shape:
            raise
        raise ValueError(f"{cls.__name__.lower()}: shapes {a.shape} and {b.shape} cannot "
                         "broadcast") from None


def add(a, b):
    """a + b, broadcasting."""
    return _binary(E.Add, a, b)


def sub(a, b):
    """a - b, broadcasting."""
    return _binary(E.Sub, a, b)


def mul(a, b):
    """a * b, broadcasting."""
    return _binary(E.Mul, a, b)


def div(a, b):
    """a / b, broadcasting."""
    return _binary(E.Div, a, b)


def neg(a):
    """-a."""
    return apply(E.Neg(), a)


def pow(a, b):
    """a ** b: a Python-number exponent uses ``PowScalar``, a tensor exponent ``Pow``."""
    if isinstance(a, Tensor) and isinstance(b, (int, float)) and not isinstance(b, bool):
        return apply(E.PowScalar(b), a)
    return _binary(E.Pow, a, b)


def _unary(cls):
    def fn(a):
        return apply(cls(), a if isinstance(a, Tensor) else Tensor(a))

    fn.__name__ = cls.__name__.lower()
    fn.__doc__ = f"Elementwise {fn.__name__} (primitive ``{cls.__name__}``)."
    return fn


exp, log, sqrt, tanh = _unary(E.Exp), _unary(E.Log), _unary(E.Sqrt), _unary(E.Tanh)
sigmoid, relu, abs = _unary(E.Sigmoid), _unary(E.Relu), _unary(E.Abs)


def maximum(a, b):
    """Elementwise maximum, broadcasting (ties send the gradient to ``a``)."""
    return _binary(E.Maximum, a, b)


def where(cond, a, b):
    """Elementwise ``cond ? a : b``; ``cond`` is a boolean array or Tensor (not differentiated)."""
    cond = cond.data if isinstance(cond, Tensor) else cond
    a, b = _pair(a, b)
    cond = to_device(cond, a.device)
    try:
        np.broadcast_shapes(np.shape(cond), a.shape, b.shape)
    except ValueError:
        raise ValueError(
            f"where: shapes cond {np.shape(cond)}, a {a.shape}, b {b.shape} cannot broadcast"
        ) from None
    return apply(E.Where(cond), a, b)


def astype(a, dtype):
    """Convert to ``dtype`` (differentiable between float dtypes)."""
    dtype = np.dtype(dtype)
    return a if a.dtype == dtype else apply(E.Cast(dtype), a)


def isfinite(a):
    """A constant boolean Tensor: True where ``a`` is finite (a mask, no grad)."""
    return Tensor(xp_of(a.data).isfinite(a.data))


def compare(name, a, b):
    """A constant boolean Tensor ``numpy.<name>(a, b)`` (less, equal, ...): a mask, no grad."""
    a, b = _pair(a, b)
    return Tensor(getattr(xp_of(a.data), name)(a.data, b.data))


def sign(a):
    """Constant Tensor of the signs of ``a`` (-1, 0, 1): no gradient flows through it."""
    return Tensor(xp_of(a.data).sign(a.data))


def sum(a, axis=None, keepdims=False):
    """Sum over ``axis`` (None: all axes)."""
    return apply(R.Sum(normalize_axis(axis, a.ndim, "sum"), keepdims), a)


def mean(a, axis=None, keepdims=False):
    """Mean over ``axis``: a composition, sum(a) * (1 / n)."""
    axes = normalize_axis(axis, a.ndim, "mean")
    n = math.prod(a.shape[i] for i in axes)
    if n == 0:
        raise ValueError(f"mean: reducing an empty axis of shape {a.shape}")
    return apply(R.Sum(axes, keepdims), a) * (1.0 / n)


def max(a, axis=None, keepdims=False):
    """Maximum over ``axis``; tied maxima share the gradient."""
    return apply(R.Max(normalize_axis(axis, a.ndim, "max"), keepdims), a)


def logsumexp(a, axis=None, keepdims=False):
    """log Σ exp(a) over ``axis``, computed without overflow."""
    return apply(R.LogSumExp(normalize_axis(axis, a.ndim, "logsumexp"), keepdims), a)


def reshape(a, shape):
    """Reshape (one -1 allowed)."""
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    known = math.prod(n for n in shape if n != -1)
    if -1 in shape and known:
        shape = tuple(a.size // known if n == -1 else n for n in shape)
    if math.prod(shape) != a.size or -1 in shape:
        raise ValueError(f"reshape: cannot reshape a tensor of shape {a.shape} into {shape}")
    return a if shape == a.shape else apply(S.Reshape(shape), a)


def transpose(a, axes=None):
    """Permute axes (None: reverse them)."""
    axes = tuple(reversed(range(a.ndim))) if axes is None else tuple(x % a.ndim for x in axes)
    if sorted(axes) != list(range(a.ndim)):
        raise ValueError(f"transpose: {axes} is not a permutation of the {a.ndim} axes")
    return apply(S.Transpose(axes), a)


def swapaxes(a, i, j):
    """Exchange two axes (a transpose)."""
    axes = list(range(a.ndim))
    axes[i], axes[j] = axes[j], axes[i]
    return transpose(a, axes)


def expand_dims(a, axis):
    """Insert a size-1 axis at ``axis`` (a reshape)."""
    shape = list(a.shape)
    shape.insert(axis % (a.ndim + 1), 1)
    return reshape(a, shape)


def squeeze(a, axis):
    """Remove the size-1 axis ``axis`` (a reshape)."""
    if a.shape[axis] != 1:
        raise ValueError(f"squeeze: axis {axis} of shape {a.shape} is not of size 1")
    shape = list(a.shape)
    del shape[axis]
    return reshape(a, shape)


def broadcast_to(a, shape):
    """Broadcast to ``shape`` (its VJP is the engine's unbroadcast)."""
    shape = tuple(shape)
    if np.broadcast_shapes(a.shape, shape) != shape:
        raise ValueError(f"broadcast_to: cannot broadcast shape {a.shape} to {shape}")
    return a if a.shape == shape else apply(S.BroadcastTo(shape), a)


def sum_to(a, shape):
    """Sum a broadcast tensor down to ``shape`` (the inverse of ``broadcast_to``)."""
    return _unbroadcast(a, tuple(shape), "sum_to")


def _plain_index(index, device="cpu"):
    """Replace Tensors inside an index by their arrays (indices are never differentiated),
    and put index arrays on the indexed tensor's device."""
    if isinstance(index, tuple):
        return tuple(_plain_index(i, device) for i in index)
    index = index.data if isinstance(index, Tensor) else index
    if device != "cpu" and isinstance(index, (np.ndarray, list)):
        return to_device(np.asarray(index), device)
    return index


def getitem(a, index):
    """``a[index]`` with NumPy semantics; differentiable through a scatter-add."""
    index = _plain_index(index, a.device)
    return apply(S.GetItem(index), a)


def scatter_add(g, index, shape):
    """zeros(shape) with ``g`` added at ``index`` (the VJP of ``getitem``)."""
    return apply(S.ScatterAdd(_plain_index(index, g.device), tuple(shape)), g)


def concatenate(tensors, axis=0):
    """Join tensors along an existing axis."""
    tensors = [t if isinstance(t, Tensor) else Tensor(t) for t in tensors]
    if not tensors:
        raise ValueError("concatenate: needs at least one tensor")
    axis = axis % tensors[0].ndim
    for t in tensors[1:]:
        if t.ndim != tensors[0].ndim or any(
            m != n for k, (m, n) in enumerate(zip(t.shape, tensors[0].shape)) if k != axis
        ):
            shapes = [x.shape for x in tensors]
            raise ValueError(f"concatenate: shapes {shapes} differ off axis {axis}")
    return apply(S.Concatenate(axis), *tensors)


def stack(tensors, axis=0):
    """Join tensors of equal shape along a new axis (expand_dims, then concatenate)."""
    tensors = [t if isinstance(t, Tensor) else Tensor(t) for t in tensors]
    if len({t.shape for t in tensors}) > 1:
        raise ValueError(f"stack: shapes differ: {[t.shape for t in tensors]}")
    return concatenate([expand_dims(t, axis) for t in tensors], axis)


def matmul(a, b, trans_a=False, trans_b=False):
    """Matrix product with NumPy's rules (batched, broadcasting leading axes); ``trans_a`` /
    ``trans_b`` use aᵀ / bᵀ (last two axes swapped) without recording a transpose.

    >>> matmul(tensor([[1.0, 2.0]]), tensor([[3.0, 4.0]]), trans_b=True).numpy()
    array([[11.]])
    """
    a, b = _pair(a, b)
    return apply(L.MatMul(bool(trans_a), bool(trans_b)), a, b)
