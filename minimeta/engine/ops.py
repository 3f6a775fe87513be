"""The user-facing functions of the engine, in one namespace, and the Tensor's operators.

Nothing is defined here: every function lives beside its primitive (``primitives/*.py``: each
file holds its classes and the functions that check arguments and apply them) or beside the
Tensor (``tensor.py``: making Tensors). This module gathers them (``mm.exp``, ``mm.sum`` are
these) and attaches the operators and methods to ``Tensor`` (``x + y`` is ``add(x, y)``,
``x.sum()`` is ``sum(x)``, ``x.backward()`` is ``autodiff.backward(x)``): the one place where
the layers below meet, so none of them imports one above it.

A few functions are compositions rather than primitives: ``mean`` (sum times 1/n), ``stack``
(expand_dims then concatenate), ``swapaxes``, ``expand_dims``, ``squeeze``, ``sum_to``.
Comparisons, ``sign`` and ``isfinite`` return constant (non-differentiable) Tensors.

Read next: ``minimeta/engine/workers.py`` (the tasks of a meta-batch on worker threads).
"""
import numpy as np

from .autodiff import apply, backward  # noqa: F401  (apply: re-exported for functional)
from .tensor import ARRAY_FUNCTIONS, Tensor, constant, ones, tensor, zeros
from .primitives.elementwise import (abs, add, astype, compare, div, exp, isfinite, log,
                                     maximum, mul, neg, pow, relu, sigmoid, sign, sqrt, sub,
                                     tanh, where)
from .primitives.shape import (broadcast_to, concatenate, expand_dims, getitem, reshape,
                               scatter_add, squeeze, stack, swapaxes, transpose)
from .primitives.reductions import logsumexp, max, mean, mean_squared_error, sum, sum_to
from .primitives.linalg import affine, matmul
from .primitives.causal import causal_conv1d

__all__ = [
    "tensor", "zeros", "ones", "constant", "add", "sub", "mul", "div", "neg", "pow", "exp",
    "log", "sqrt",
    "tanh", "sigmoid", "relu", "abs", "maximum", "where", "sum", "mean", "max", "logsumexp",
    "mean_squared_error",
    "reshape", "transpose", "swapaxes", "expand_dims", "squeeze", "broadcast_to", "sum_to",
    "getitem", "scatter_add", "concatenate", "stack", "matmul", "affine", "astype", "compare",
    "sign",
    "isfinite", "causal_conv1d",
]


def _reduction(fn):
    """The method ``x.<fn>(axis=None, keepdims=False)``. NumPy's ``np.sum(x)`` calls it with
    ``dtype=None, out=None``, taken when None; any other keyword (``dim=``, PyTorch's name)
    is an error naming the method."""
    def method(self, axis=None, keepdims=False, **numpy):
        for key, value in numpy.items():
            if key not in ("dtype", "out") or value is not None:
                raise TypeError(f"{fn.__name__}: unexpected argument {key}={value!r} (it takes "
                                "axis= and keepdims=, as NumPy does)")
        return fn(self, axis, keepdims)
    method.__name__ = method.__qualname__ = fn.__name__
    method.__doc__ = fn.__doc__
    return method


TENSOR_METHODS = {
    # arithmetic, both ways round (``2 * x`` calls ``x.__rmul__(2)``)
    "__add__": add, "__radd__": lambda a, b: add(b, a),
    "__sub__": sub, "__rsub__": lambda a, b: sub(b, a),
    "__mul__": mul, "__rmul__": lambda a, b: mul(b, a),
    "__truediv__": div, "__rtruediv__": lambda a, b: div(b, a),
    "__pow__": pow, "__rpow__": lambda a, b: pow(b, a),
    "__matmul__": matmul, "__rmatmul__": lambda a, b: matmul(b, a),
    "__neg__": neg, "__pos__": lambda a: a, "__abs__": abs, "__getitem__": getitem,
    "__bool__": lambda a: bool(a.data),  # as NumPy: one element, else "ambiguous" (ValueError)
    # comparisons give constant boolean Tensors (masks); hashing stays by identity
    "__lt__": lambda a, b: compare("less", a, b),
    "__le__": lambda a, b: compare("less_equal", a, b),
    "__gt__": lambda a, b: compare("greater", a, b),
    "__ge__": lambda a, b: compare("greater_equal", a, b),
    "__eq__": lambda a, b: compare("equal", a, b),
    "__ne__": lambda a, b: compare("not_equal", a, b),
    # methods mirroring the functions
    "exp": exp, "log": log, "sqrt": sqrt, "tanh": tanh, "sigmoid": sigmoid, "relu": relu,
    "abs": abs, "sum": _reduction(sum), "mean": _reduction(mean), "max": _reduction(max),
    "logsumexp": _reduction(logsumexp), "sum_to": sum_to, "astype": astype,
    "broadcast_to": broadcast_to,
    "reshape": lambda a, *shape: reshape(a, shape[0] if len(shape) == 1 else shape),
    "transpose": lambda a, *axes: transpose(a, axes[0] if len(axes) == 1 else (axes or None)),
    "T": property(lambda a: transpose(a), doc="Reverse the axes."),
    "backward": lambda a, grad=None, create_graph=False: backward(a, grad, create_graph),
    # in place: refused, since Python would rebind the name to a new Tensor and leave the
    # parameter as it was (a PyTorch-style ``p -= lr * p.grad`` had silently trained nothing)
    **{f"__i{op}__": (lambda symbol: lambda a, b: _in_place(symbol))(symbol) for op, symbol in
       {"add": "+=", "sub": "-=", "mul": "*=", "truediv": "/=", "pow": "**=",
        "matmul": "@="}.items()},
}


def _in_place(symbol):
    raise TypeError(f"Tensor: in-place {symbol} is not offered: it would bind the name to a "
                    f"new Tensor and leave the one you hold unchanged. Use an optimizer, or "
                    f"update a parameter's array by hand (p.data = p.data - lr * "
                    f"p.grad.data, then p.changed_in_place()); in a graph, write "
                    f"x = x {symbol[:-1]} y")
for _name, _fn in TENSOR_METHODS.items():
    setattr(Tensor, _name, _fn)
Tensor.__hash__ = object.__hash__  # identity hashing, although == is elementwise
Tensor.backward.__doc__ = "Accumulate d(self)/d(leaf) into ``leaf.grad`` for every leaf."


def _numpy(name, fn):
    """``fn`` as NumPy's ``np.<name>`` on a Tensor: NumPy's keywords taken where they change
    nothing (None, ``order='C'``), any other refused naming the function."""
    def run(*args, **kwargs):
        for key in [k for k in kwargs if k in _NUMPY_DEFAULTS]:
            value = kwargs.pop(key)     # (an array compared with == is no yes or no)
            if value is None or isinstance(value, (bool, str, np.bool_)) and \
                    value == _NUMPY_DEFAULTS[key]:
                continue
            shape = value.shape if isinstance(value, (Tensor, np.ndarray)) else ()
            shown = f"an array of shape {shape}" if shape else repr(value)
            raise TypeError(f"np.{name} on a Tensor: {key}={shown} is not offered")
        return fn(*args, **kwargs)
    return run


_NUMPY_DEFAULTS = {"out": None, "dtype": None, "subok": False, "where": True,
                   "casting": "same_kind", "order": "C"}


def _reshape(a, shape=None, newshape=None):      # (NumPy 2.1 renamed newshape to shape)
    return reshape(a, shape if newshape is None else newshape)


def _size(a, axis=None):
    return a.size if axis is None else a.shape[axis]


# minimeta's functions lift a plain array themselves (``tensor.plain``): NumPy's call them as
# they are, with NumPy's argument names where they differ
ARRAY_FUNCTIONS.update({getattr(np, name): _numpy(name, fn) for name, fn in {
    "sum": sum, "mean": mean, "max": max, "amax": max, "transpose": transpose,
    "reshape": _reshape, "squeeze": squeeze, "expand_dims": expand_dims, "swapaxes": swapaxes,
    "broadcast_to": broadcast_to, "concatenate": concatenate, "stack": stack, "where": where,
    "shape": lambda a: a.shape, "ndim": lambda a: a.ndim, "size": _size,
}.items()})
