"""The Tensor: an array plus the few fields reverse-mode autodiff needs.

A Tensor holds
- ``data``: the array (NumPy on the CPU, CuPy on a GPU; never copied on wrap),
- ``requires_grad``: whether gradients should flow to it,
- ``_op`` / ``_parents``: the primitive that made it and that primitive's input Tensors (a leaf
  has ``_op is None``),
- ``grad``: where ``backward()`` accumulates (a Tensor, so it can itself be differentiated);
- ``_seq``: a creation stamp, increasing: a Tensor can only depend on Tensors with smaller
  stamps, which lets the backward pass skip the part of a graph made before its inputs;
- ``_changed`` (leaves): the stamp of the last change of ``data`` in place
  (``changed_in_place``; 0: never), so the backward pass knows a graph made from the old
  values (a leaf changed after the op that read it) and refuses it; on an op's output 0, but
  on a copy (pickle, ``copy``) of one made stale so, 1 + the changed input's position;
- ``saved``: values its primitive's forward saved for the VJP (``autodiff.Primitive``), if
  any (batch norm's batch statistics, read by the layer that keeps running averages).

No math lives in this file, and it imports nothing of the engine above it: the operators and
methods that compute (``x + y``, ``x @ y``, ``x.exp()``, ``x.sum()``, ``x.backward()``) are
attached to the class by ``ops.py``, the top of the engine, once the functions they call exist
(the table ``TENSOR_METHODS`` there). Below the class: the functions that make Tensors
(``tensor``, ``zeros``, ``ones``, ``constant``) and lift numbers and arrays met by an op.

dtypes follow NumPy 2 (NEP 50; NumPy 1.x's value-based casting on 1.x): a Python scalar is
"weak" and takes the tensor's dtype, so ``float32_tensor * 2.0`` stays float32, and float32 with
float64 gives float64.

Read next: ``minimeta/engine/anomaly.py`` (finding the first NaN or inf).
"""
import itertools
import threading

import numpy as np

from .backend import array_module, check_grad_dtype, device_of, to_device


STAMPS = itertools.count(1)  # next(STAMPS): the creation stamp of a new Tensor (0: a leaf
#                              loaded from a pickle, older than all: ``__setstate__``)
# [the stamp of the latest change in place of any leaf]: a node made after it read no leaf that
# has changed since, so the backward pass checks only older nodes one by one
LAST_CHANGE = [0]
_CHANGING = threading.Lock()
# [the recording of ops under way, or None] (``engine/replay.py``): told of the arrays made
# here that no op made (numbers, zeros, copies of its inputs), and of value reads (refused)
RECORDING = [None]


class Tensor:
    """An n-dimensional array that records how it was computed.

    >>> import minimeta as mm
    >>> x = mm.tensor([1.0, 2.0], requires_grad=True)
    >>> (x * x).sum().backward()
    >>> x.grad.numpy()
    array([2., 4.])
    """

    __slots__ = ("data", "grad", "_requires_grad", "_op", "_parents", "_from_backward",
                 "name", "_seq", "_site", "saved", "_changed")
    # _site: set by anomaly mode only (engine/anomaly.py); saved: set by ``apply`` only for a
    # primitive that saves values for its VJP (``Primitive.saves``)
    __array_priority__ = 1000  # numpy_array * tensor dispatches to Tensor.__rmul__

    def __init__(self, data, requires_grad=False, dtype=None, name=None):
        if isinstance(data, Tensor):
            data = data.data
        # (a NumPy scalar becomes a 0-d array; an exact ndarray skips the costly hasattr)
        if dtype is not None or type(data) is not np.ndarray and (
                isinstance(data, np.generic) or not hasattr(data, "__array_interface__")):
            if not type(data).__module__.startswith("cupy"):
                data = _as_array(data, dtype)
            elif dtype is not None:
                data = data.astype(dtype, copy=False)
        if requires_grad:
            check_grad_dtype(data.dtype, "tensor")
        self.data = data
        self.grad = None
        self._requires_grad = bool(requires_grad)
        self._op = None
        self._parents = ()
        self._from_backward = False
        self.name = name
        self._seq = next(STAMPS)
        self._changed = 0

    def __getstate__(self):
        """For pickle and ``copy``: the slots that are set. An op's output whose leaf input
        changed in place after it (a stale graph) says so in ``_changed`` (1 + its position):
        the copy is stamped anew, and had read the leaf's new values without a word."""
        state = {k: getattr(self, k) for k in self.__slots__ if hasattr(self, k)}
        if self._op is not None and not state.get("_changed"):
            stale = [i for i, p in enumerate(self._parents)
                     if p._op is None and p._changed > self._seq]
            if stale:
                state["_changed"] = stale[0] + 1
        return state

    def __setstate__(self, state):
        """A Tensor loaded from a pickle or made by ``copy`` is stamped now, as if created now.
        Its old stamp came from another counter (another process's, a saved session's), and
        ``grad`` leaves out the graph below its oldest input's stamp: every op made here had
        been left out (an unpickled MAML adapted nothing). Pickle builds parents before their
        children, so a copied graph keeps its order; but a leaf is built after its ``grad``,
        which may be a graph made from the leaf (``create_graph=True``): a leaf depends on
        nothing, so it takes stamp 0, older than every Tensor (a newer one had left the graph
        of its ``grad`` out of ``grad(leaf.grad, [leaf])``)."""
        for k, v in state.items():
            setattr(self, k, v)
        self._seq = next(STAMPS) if self._op is not None else 0
        # a leaf: 0 (an old stamp of a change would refuse every graph made here); an op's
        # output: its mark of a stale graph, 0 where none (or where an older pickle has none)
        self._changed = state.get("_changed", 0) if self._op is not None else 0

    # ----- plain properties of the array -----------------------------------------------------
    shape = property(lambda self: self.data.shape, doc="Shape of the array (a tuple).")
    dtype = property(lambda self: self.data.dtype, doc="dtype of the array.")
    ndim = property(lambda self: self.data.ndim, doc="Number of axes.")
    size = property(lambda self: self.data.size, doc="Number of elements.")
    is_leaf = property(lambda self: self._op is None, doc="True when no op produced it.")
    requires_grad = property(
        lambda self: self._requires_grad,
        lambda self, flag: self.requires_grad_(flag, who="requires_grad ="),
        doc="Whether gradients flow to it; set on a leaf only (``requires_grad_``'s checks: "
            "on a Tensor an op made it would cut the graph, and silently change gradients).")
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

    def changed_in_place(self):
        """Say that this leaf's ``data`` was changed in place (an optimizer step, a load) and
        return self.

        It records a stamp later than every op already applied to it: a graph built from its
        old values is stale, and the backward pass refuses to run a VJP of an op made before
        the change whose input it is (PyTorch's version counter, a little stricter: PyTorch
        checks only the values a VJP saved, so it lets ``(w + 1)`` through). The optimizers,
        Reptile's outer step, ``Module.load_state_dict``, ``Module.to`` (onto another device)
        and Meta-SGD's ``load_state_dict`` call it, and give the leaf a new array rather than
        write into its old one, so what a graph took from the old array (a view: ``w.T``,
        ``w[1:]``, ``w.detach()``) keeps the values it was built with. Writing ``.data``
        yourself is not tracked (nor in PyTorch).
        """
        if self._op is not None:
            raise ValueError("changed_in_place: only a leaf's data may change in place (an op's "
                             "output feeds the graph below it)")
        if RECORDING[0] is not None:
            RECORDING[0].refuse("a change in place (changed_in_place: an optimizer's step, a load)")
        with _CHANGING:     # (stamps taken in order, so the last one written is the latest)
            self._changed = LAST_CHANGE[0] = next(STAMPS)
        return self

    def cpu(self):
        """``to('cpu')``."""
        return self.to("cpu")

    def cuda(self):
        """``to('cuda')`` (needs CuPy and a GPU: the ``gpu-cuda12`` or ``gpu-cuda13`` extra)."""
        return self.to("cuda")

    def __len__(self):
        return len(self.data)

    def __iter__(self):
        """The rows (``self[i]``); a 0-d Tensor is not iterable, as in NumPy (without this,
        Python's fallback read its IndexError as an empty sequence: list(t) was [])."""
        if self.ndim == 0:
            raise TypeError("iteration over a 0-d tensor")
        return (self[i] for i in range(len(self)))

    # NumPy interplay: ``np.asarray(t)`` is ``t.numpy()`` (CuPy arrays refuse, as CuPy does);
    # a NumPy ufunc called on a Tensor raises instead of making an array of Tensors, and
    # ``array * t`` runs the Tensor's operator; other NumPy functions: ``__array_function__``.
    __array_ufunc__ = None

    def __array_function__(self, func, types, args, kwargs):
        """``np.sum(t)``, ``np.reshape(t, s)`` and the like run minimeta's own function
        (``ARRAY_FUNCTIONS``, filled by ``ops.py``), keeping the graph; any other NumPy
        function runs on the values, and is refused where a Tensor requires grad (``np.clip``,
        ``np.ravel`` had returned an array, dropping the graph without a word)."""
        mine = ARRAY_FUNCTIONS.get(func)
        if mine is not None:
            return mine(*args, **kwargs)
        if any(t.requires_grad for t in _tensors_in((args, kwargs))):
            raise TypeError(f"np.{func.__name__} on a Tensor that requires grad would drop its "
                            "graph: use minimeta's function (mm.*), or .detach().numpy() for "
                            "the values")
        # on read-only views: np.copyto(t, 7) on a constant had changed a graph that read it
        return func(*_arrays((args))[0], **_arrays(kwargs)[0])

    def __array__(self, dtype=None, copy=None):
        if hasattr(self.data, "get"):
            raise TypeError("tensor on the GPU: call .numpy() (or .cpu()) for a NumPy array")
        out = self.numpy() if dtype is None else self.numpy().astype(dtype, copy=False)
        # an op's 0-d result may be a NumPy scalar, which NumPy refuses from __array__
        return np.array(out, copy=True) if copy else np.asarray(out)

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())

    def tolist(self):
        """The values as nested Python lists (``numpy().tolist()``)."""
        return self.numpy().tolist()

    def __repr__(self):
        grad = ", requires_grad=True" if self.requires_grad else ""
        op = f", op={type(self._op).__name__}" if self._op is not None else ""
        body = np.array2string(np.asarray(self.numpy()), precision=4, separator=", ")
        return f"tensor({body}, dtype={self.dtype}{grad}{op})"

    def numpy(self):
        """The values for NumPy: a read-only view of the array (no copy), or a host copy of a
        GPU array (yours to change). Read-only, because a graph may hold this very array for
        its backward pass (``w.numpy()[0] = 100`` had silently changed the gradient): copy it
        to change it, or write ``.data``, which is untracked (``docs/ENGINE.md``)."""
        if RECORDING[0] is not None:
            RECORDING[0].refuse("a value read (numpy())")
        return self.data.get() if hasattr(self.data, "get") else _read_only(self.data)

    def item(self):
        """The value of a one-element tensor as a Python scalar."""
        if RECORDING[0] is not None:
            RECORDING[0].refuse("a value read (item(), float(), int())")
        return self.data.item()

    def detach(self):
        """A new leaf sharing the same array, cut from the graph."""
        return Tensor(self.data)

    def requires_grad_(self, flag=True, who="requires_grad_"):
        """Set ``requires_grad`` in place (leaves only) and return self. On a Tensor an op
        made, it would cut the graph already built through it: use ``detach()``. (``who``:
        what an error names, the property's setter or this method.)"""
        if self._op is not None:
            raise ValueError(f"{who}: this tensor was made by {self._op!r}, not a leaf; "
                             "changing the flag would cut the graph built through it (use "
                             ".detach() for a new leaf)")
        if flag:
            check_grad_dtype(self.dtype, who)
        self._requires_grad = bool(flag)
        return self


def _as_array(data, dtype):
    """``np.asarray(data, dtype)``, refusing ragged lists and objects that are not numbers."""
    try:
        array = np.asarray(data, dtype=dtype)
    except ValueError as err:
        if isinstance(data, (list, tuple)) and "inhomogeneous" in str(err):
            raise ValueError("tensor: a ragged nested list (its rows differ in length) is not "
                             "an array; give rows of equal length") from None
        raise
    if array.dtype.hasobject:
        raise TypeError(f"tensor: cannot make a Tensor of {type(data).__name__} data (an "
                        "array of Python objects); give numbers or a numeric array")
    return array


# ----- making Tensors ---------------------------------------------------------------------------
ARRAY_FUNCTIONS = {}     # NumPy function → minimeta's, for ``Tensor.__array_function__``


def _tensors_in(tree):
    if isinstance(tree, Tensor):
        return [tree]
    items = tree.values() if isinstance(tree, dict) else tree \
        if isinstance(tree, (list, tuple)) else ()
    return [t for item in items for t in _tensors_in(item)]


def _read_only(array):
    """A view of a NumPy ``array`` (a subclass too: a memmap) that NumPy refuses to write
    through; a scalar, or an array read-only already, as it is."""
    if not isinstance(array, np.ndarray) or not array.flags.writeable:
        return array
    view = array.view()
    view.flags.writeable = False
    return view


def _arrays(tree):
    """``tree`` (nested tuples, lists, dicts) with every Tensor as a read-only view of its
    array, in a 1-tuple."""
    if isinstance(tree, Tensor):
        return (_read_only(tree.data),)
    if isinstance(tree, dict):
        return ({k: _arrays(v)[0] for k, v in tree.items()},)
    if isinstance(tree, (list, tuple)):
        return (type(tree)(_arrays(v)[0] for v in tree),)
    return (tree,)


def tensor(data, requires_grad=False, dtype=None, device=None, name=None):
    """Make a leaf Tensor holding a copy of ``data``, an array, a nested list or a number
    (NumPy's default dtypes), on ``device`` ('cpu' or 'cuda'; default: where ``data`` is).

    A copy, as ``torch.tensor`` makes: optimizers update parameters in place, and the array
    passed in stays as it was. (``Tensor(array)`` wraps an array without copying; the library
    uses it for arrays it has just made.)

    >>> w0 = np.array([1.0, 2.0])
    >>> w = tensor(w0, requires_grad=True)
    >>> w.data += 1.0          # in place, by hand (an optimizer's step makes a new array)
    >>> w0, w.dtype
    (array([1., 2.]), dtype('float64'))
    """
    source = data.data if isinstance(data, Tensor) else data
    if device is not None:
        data = to_device(source, device)
    return owned(Tensor(data, requires_grad=requires_grad, dtype=dtype, name=name), source)


def owned(out, source):
    """``out``, made from ``source``, with its own copy of the array where neither a move, a
    conversion nor a new array copied it (``source`` itself, or a NumPy view of another
    library's memory: a CPU torch tensor, a memoryview): a Tensor or a constant holds what it
    was given then, not what the caller's array holds later (a buffer reused for the next
    batch)."""
    data = out.data
    if data is source or (type(data) is np.ndarray and not data.flags.owndata and
                          not isinstance(source, np.ndarray)):
        out.data = data.copy()
    if RECORDING[0] is not None:     # a copy or a cast of an array it may know
        RECORDING[0].derived(out.data, source)
    return out


def plain(a):
    """``a``, a Tensor, or a plain array, list or number as a constant of its own (``owned``)."""
    return a if isinstance(a, Tensor) else owned(Tensor(a), a)


def zeros(shape, dtype=np.float64, requires_grad=False, device="cpu"):
    """A leaf Tensor of zeros."""
    return Tensor(noted(to_device(np.zeros(shape, dtype=dtype), device)), requires_grad)


def ones(shape, dtype=np.float64, requires_grad=False, device="cpu"):
    """A leaf Tensor of ones."""
    return Tensor(noted(to_device(np.ones(shape, dtype=dtype), device)), requires_grad)


def constant(x, like, dtype=None):
    """A constant Tensor holding ``x`` (array, list, number) on ``like``'s device.

    Plain arrays met by an op are lifted this way: a constant goes where its partner is, as a
    Python number takes its partner's dtype. Two *Tensors* on different devices are an error.
    The constant holds a copy (``owned``): the gradient of ``(x * w).sum()``, ``w`` an array
    changed in place before the backward pass, is still ``w`` as the loss saw it.
    """
    if isinstance(x, Tensor):
        return x
    device = like.device if isinstance(like, Tensor) else device_of(like)
    return owned(Tensor(to_device(x, device), dtype=dtype), x)


def lift(x, like):
    """Turn a number or array into a constant Tensor; numbers take ``like``'s dtype (NEP 50)."""
    if isinstance(x, Tensor):
        return x
    if isinstance(x, (bool, int, float)):
        if like is None:
            return Tensor(noted(np.asarray(x)))
        dtype = like.data.dtype     # NEP 50: a float or complex tensor keeps its dtype
        if not (_NEP50 and dtype.kind in "fc"):
            dtype = np.result_type(dtype, x)
        return Tensor(noted(number(x, dtype, array_module(like.data))))
    return constant(x, like) if like is not None else Tensor(x)


def noted(array):
    """``array`` (made from a number or a shape alone): a constant of the recording under way."""
    if RECORDING[0] is not None:
        RECORDING[0].constant(array)
    return array


def number(x, dtype, xp):
    """The Python number ``x`` as a 0-d array of ``dtype`` made by ``xp`` (NumPy or CuPy).

    On a GPU each new one is a copy from host to device (some 55 µs of host time on an H200),
    and a meta-iteration meets the same few numbers (α, 0.5, 2) dozens of times, so each
    (number, dtype, GPU) is made once and shared (``NUMBERS``), read-only as every op's input;
    told apart by ``repr`` (-0.0 is not 0.0, NaN is NaN); at most ``NUMBERS_KEPT`` are kept.

    >>> number(0.5, np.float32, np)
    array(0.5, dtype=float32)
    """
    if xp is np:
        return xp.asarray(x, dtype=dtype)
    key = (repr(x), dtype, xp.cuda.runtime.getDevice())
    made = NUMBERS.get(key)     # one lookup: a task's thread may clear the table meanwhile
    if made is None:
        if len(NUMBERS) >= NUMBERS_KEPT:
            NUMBERS.clear()
        made = NUMBERS[key] = xp.asarray(x, dtype=dtype)
    return made


NUMBERS, NUMBERS_KEPT = {}, 1024    # number's device arrays: (repr, dtype, GPU) → 0-d array
_NEP50 = np.lib.NumpyVersion(np.__version__) >= "2.0.0"   # (NumPy 1.x: value-based casting)


def lift_pair(a, b):
    if isinstance(a, Tensor):
        return a, (b if isinstance(b, Tensor) else lift(b, a))
    b = lift(b, None)
    return lift(a, b), b
