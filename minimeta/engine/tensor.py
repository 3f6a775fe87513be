"""The Tensor: an array plus the few fields reverse-mode autodiff needs.

A Tensor holds
- ``data``: the array (NumPy on the CPU, CuPy on a GPU; never copied on wrap),
- ``requires_grad``: whether gradients should flow to it,
- ``_op`` / ``_parents``: the primitive that made it and that primitive's input Tensors (a leaf
  has ``_op is None``),
- ``grad``: where ``backward()`` accumulates (a Tensor, so it can itself be differentiated);
- ``_seq``: a creation stamp, increasing: a Tensor can only depend on Tensors with smaller
  stamps, which lets the backward pass skip the part of a graph made before its inputs.

Every operator and method here only forwards to a function of ``ops.py``; no math lives in this
file. dtypes follow NumPy 2 (NEP 50): a Python scalar is "weak" and takes the tensor's dtype, so
``float32_tensor * 2.0`` stays float32, and float32 with float64 gives float64.

Read next: ``ops.py`` (the user-facing functions), then ``autodiff.py`` (the backward pass).
"""
import itertools

import numpy as np

from .backend import device_of, is_float_dtype, to_device


STAMPS = itertools.count()  # next(STAMPS): the creation stamp of a new Tensor


class Tensor:
    """An n-dimensional array that records how it was computed.

    >>> import minimeta as mm
    >>> x = mm.tensor([1.0, 2.0], requires_grad=True)
    >>> (x * x).sum().backward()
    >>> x.grad.numpy()
    array([2., 4.])
    """

    __slots__ = ("data", "grad", "requires_grad", "_op", "_parents", "_from_backward", "name",
                 "_seq", "_site")  # _site: set by anomaly mode only (engine/anomaly.py)
    __array_priority__ = 1000  # numpy_array * tensor dispatches to Tensor.__rmul__

    def __init__(self, data, requires_grad=False, dtype=None, name=None):
        if isinstance(data, Tensor):
            data = data.data
        if dtype is not None or not hasattr(data, "__array_interface__"):
            if not type(data).__module__.startswith("cupy"):
                data = np.asarray(data, dtype=dtype)
            elif dtype is not None:
                data = data.astype(dtype, copy=False)
        if requires_grad and not is_float_dtype(data.dtype):
            raise TypeError(
                f"tensor: only floating tensors can require grad, got dtype {data.dtype}; "
                "pass dtype=np.float64 (or float32)"
            )
        self.data = data
        self.grad = None
        self.requires_grad = bool(requires_grad)
        self._op = None
        self._parents = ()
        self._from_backward = False
        self.name = name
        self._seq = next(STAMPS)

    # ----- plain properties of the array -----------------------------------------------------
    shape = property(lambda self: self.data.shape, doc="Shape of the array (a tuple).")
    dtype = property(lambda self: self.data.dtype, doc="dtype of the array.")
    ndim = property(lambda self: self.data.ndim, doc="Number of axes.")
    size = property(lambda self: self.data.size, doc="Number of elements.")
    is_leaf = property(lambda self: self._op is None, doc="True when no op produced it.")
    device = property(lambda self: device_of(self.data), doc="'cpu' or 'cuda'.")

    def to(self, device):
        """This tensor on ``device`` ('cpu' or 'cuda'): itself if already there, else a copy.

        The copy is a new leaf (the move is not recorded in the graph): move parameters and
        data before building a graph, as ``Module.to`` and the learners do.
        """
        if device_of(self.data) == device:
            return self
        return Tensor(to_device(self.data, device), requires_grad=self.requires_grad,
                      name=self.name)

    def cpu(self):
        """``to('cpu')``."""
        return self.to("cpu")

    def cuda(self):
        """``to('cuda')`` (needs CuPy and a GPU: ``pip install 'minimeta[gpu]'``)."""
        return self.to("cuda")

    def __len__(self):
        return len(self.data)

    def __repr__(self):
        grad = ", requires_grad=True" if self.requires_grad else ""
        op = f", op={type(self._op).__name__}" if self._op is not None else ""
        body = np.array2string(np.asarray(self.numpy()), precision=4, separator=", ")
        return f"tensor({body}, dtype={self.dtype}{grad}{op})"

    def numpy(self):
        """The underlying array (no copy) for NumPy; a host copy for CuPy."""
        return self.data.get() if hasattr(self.data, "get") else self.data

    def item(self):
        """The value of a one-element tensor as a Python scalar."""
        return self.data.item()

    def detach(self):
        """A new leaf sharing the same array, cut from the graph."""
        return Tensor(self.data)

    def requires_grad_(self, flag=True):
        """Set ``requires_grad`` in place (leaves only) and return self."""
        if flag and not is_float_dtype(self.dtype):
            raise TypeError(f"requires_grad_: integer/bool tensor of dtype {self.dtype}")
        self.requires_grad = bool(flag)
        return self

    def backward(self, grad=None, create_graph=False):
        """Accumulate d(self)/d(leaf) into ``leaf.grad`` for every leaf that requires grad."""
        from .autodiff import backward

        backward(self, grad, create_graph=create_graph)

    # ----- arithmetic: each forwards to ops.py -------------------------------------------------
    def __add__(self, other):
        return _ops.add(self, other)

    def __radd__(self, other):
        return _ops.add(other, self)

    def __sub__(self, other):
        return _ops.sub(self, other)

    def __rsub__(self, other):
        return _ops.sub(other, self)

    def __mul__(self, other):
        return _ops.mul(self, other)

    def __rmul__(self, other):
        return _ops.mul(other, self)

    def __truediv__(self, other):
        return _ops.div(self, other)

    def __rtruediv__(self, other):
        return _ops.div(other, self)

    def __pow__(self, other):
        return _ops.pow(self, other)

    def __rpow__(self, other):
        return _ops.pow(other, self)

    def __matmul__(self, other):
        return _ops.matmul(self, other)

    def __rmatmul__(self, other):
        return _ops.matmul(other, self)

    def __neg__(self):
        return _ops.neg(self)

    def __getitem__(self, index):
        return _ops.getitem(self, index)

    # Comparisons give non-differentiable boolean tensors (masks).
    def __lt__(self, other):
        return _ops.compare("less", self, other)

    def __le__(self, other):
        return _ops.compare("less_equal", self, other)

    def __gt__(self, other):
        return _ops.compare("greater", self, other)

    def __ge__(self, other):
        return _ops.compare("greater_equal", self, other)

    def __eq__(self, other):
        return _ops.compare("equal", self, other)

    def __ne__(self, other):
        return _ops.compare("not_equal", self, other)

    __hash__ = object.__hash__  # identity hashing, although == is elementwise

    # ----- methods mirroring the top-level functions --------------------------------------------
    T = property(lambda self: _ops.transpose(self), doc="Reverse the axes.")

    def exp(self):
        return _ops.exp(self)

    def log(self):
        return _ops.log(self)

    def sqrt(self):
        return _ops.sqrt(self)

    def tanh(self):
        return _ops.tanh(self)

    def sigmoid(self):
        return _ops.sigmoid(self)

    def relu(self):
        return _ops.relu(self)

    def abs(self):
        return _ops.abs(self)

    def sum(self, axis=None, keepdims=False):
        return _ops.sum(self, axis, keepdims)

    def mean(self, axis=None, keepdims=False):
        return _ops.mean(self, axis, keepdims)

    def max(self, axis=None, keepdims=False):
        return _ops.max(self, axis, keepdims)

    def logsumexp(self, axis=None, keepdims=False):
        return _ops.logsumexp(self, axis, keepdims)

    def reshape(self, *shape):
        return _ops.reshape(self, shape[0] if len(shape) == 1 else shape)

    def transpose(self, *axes):
        return _ops.transpose(self, axes[0] if len(axes) == 1 else (axes or None))

    def broadcast_to(self, shape):
        return _ops.broadcast_to(self, shape)

    def astype(self, dtype):
        return _ops.astype(self, dtype)


from . import ops as _ops  # noqa: E402  (ops needs Tensor defined first)
