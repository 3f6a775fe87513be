"""Reverse-mode autodiff: the Primitive contract, the recording of ops, and the backward pass.

The whole engine rests on one rule. A primitive has
- ``forward(*arrays) -> array``: raw array math, run once when the op is applied;
- ``vjp(g, out, *inputs) -> tuple``: the vector-Jacobian product, written only with
  differentiable Tensor ops.

Because every vjp is itself made of recorded ops, running the backward pass with
``create_graph=True`` records a new graph for the gradient, which can be differentiated again:
second-order MAML, Hessian-vector products and third derivatives all come from this one rule.

Broadcasting is undone in one place, ``reductions.unbroadcast`` (called here as the Tensor
method ``sum_to``): a vjp may return a gradient of the broadcast shape and the backward pass
sums it down to its input's shape (``MatMul``, which reshapes a 1-D operand into a matrix,
sums that one itself). This file imports only the layers below it (backend,
tensor, anomaly, grad_mode: whether recording is on); the primitives it runs are above it.

Read next: ``minimeta/engine/primitives/__init__.py`` (the primitive set, file by file).
"""
import operator
import threading
import warnings

from ..kernels.threads import user_stacklevel
from .anomaly import ANOMALY, check_forward, checked_vjp
from .backend import array_module, device_of, is_float_dtype
from .grad_mode import STATE, set_grad_enabled
from .tensor import LAST_CHANGE, STAMPS, RECORDING, Tensor, noted, plain


class Primitive:
    """Base class of all primitives. Subclasses set ``forward`` and ``vjp``.

    Instances carry the op's static arguments (an axis, a shape, a stride), never values
    computed in forward; the arrays travel as arguments. ``vjp`` returns one entry per input: a
    Tensor, or None for "no gradient".

    Saved values: a primitive whose VJP needs more of forward's work than its output and inputs
    (max pooling's argmax) sets ``saves = True`` and returns ``(out, saved)`` from ``forward``;
    ``apply`` keeps ``saved`` (a tuple of arrays) on the output Tensor, where ``vjp`` reads it
    as ``out.saved``. That is the one mechanism (as MiniTorch's ``ctx.save_for_backward``):
    nothing is set on the primitive instance. (Batch norm saves its batch statistics the same
    way, for the layer that keeps running averages: ``functional.layers``.)
    """

    __slots__ = ()
    saves = False

    def forward(self, *arrays):
        raise NotImplementedError

    def vjp(self, g, out, *inputs):
        raise NotImplementedError

    def __repr__(self):
        return type(self).__name__


def apply(op, *inputs):
    """Run primitive ``op`` on Tensors ``inputs`` and record it if a gradient may be needed."""
    arrays = [t.data for t in inputs]
    # devices: a cheap test (one array type, true for almost every op), the full one if not
    if len(arrays) > 1 and (type(arrays[0]) is not type(arrays[-1]) or
                            len(arrays) > 2 and len(set(map(type, arrays))) > 1):
        _check_devices(op, arrays)
    out = Tensor.__new__(Tensor)
    try:
        if op.saves:  # forward returns (out, saved): see Primitive
            out.data, out.saved = _out_and_saved(op, op.forward(*arrays))
        else:
            out.data = op.forward(*arrays)
    except Exception:
        _check_inputs(op, inputs)   # a plain array's .data is a memoryview: say so instead
        raise
    if RECORDING[0] is not None:     # a recording: the op, its input arrays, its output's
        RECORDING[0].record(op, arrays, out)
    try:
        kind = out.data.dtype.kind
    except AttributeError:      # a Python number would fail in backward, later
        raise TypeError(f"{op!r}.forward returned a {type(out.data).__name__}, not an "
                        "array") from None
    out.grad = None
    out.name = None
    out._seq = next(STAMPS)
    out._changed = 0
    out._from_backward = STATE.backward_depth > 0
    # recorded when any input requires grad (the first and last are tested before the loop)
    if STATE.enabled and inputs and (inputs[0]._requires_grad or inputs[-1]._requires_grad
                                     or any(t._requires_grad for t in inputs)):
        out._requires_grad = True
        out._op = op
        out._parents = inputs
    else:   # a leaf: a constant for the ops that take it
        out._requires_grad = False
        out._op = None
        out._parents = ()
    if kind == "c" and out._requires_grad:     # VJPs for reals would drop .imag
        raise TypeError(f"{op!r}: its result is {out.data.dtype}, and minimeta differentiates "
                        "real values only; detach() the inputs here")
    if ANOMALY.on:  # mm.detect_anomaly(): off by default, one attribute test when off
        check_forward(op, inputs, out)
    return out


def beside(fn, *arrays):
    """``Tensor(fn(*arrays))``: a constant computed beside the ops from their arrays (a
    comparison's mask, a sign), which a recording replays as a step (``replay.py``)."""
    out = Tensor(fn(*arrays))
    if RECORDING[0] is not None:
        RECORDING[0].beside(fn, arrays, out.data)
    return out


def _out_and_saved(op, result):
    """``result``, checked to be forward's ``(out, saved)``: a bare array had been split along
    its first axis into an output and a "saved" row (a user's primitive, found by an audit)."""
    if type(result) is not tuple or len(result) != 2 or type(result[1]) is not tuple:
        raise TypeError(f"{op!r}.forward: saves = True, so it must return (out, saved), saved "
                        f"a tuple of arrays; got a {type(result).__name__}")
    return result


def _check_inputs(op, inputs):
    """A TypeError naming ``op`` and the first input that is not a Tensor."""
    for i, t in enumerate(inputs):
        if not isinstance(t, Tensor):
            raise TypeError(f"apply: input {i} of {op!r} is a {type(t).__name__}, not a Tensor "
                            "(mm.tensor(x) or mm.constant(x, like) makes one)") from None


def _check_devices(op, arrays):
    """Raise if the inputs of ``op`` live on different devices (never moved silently)."""
    devices = [device_of(a) for a in arrays]
    if len(set(devices)) > 1:
        where = ", ".join(f"input {i} on {d}" for i, d in enumerate(devices))
        raise RuntimeError(f"{type(op).__name__}: tensors on different devices ({where}); "
                           "move them with .to('cpu') or .to('cuda')")


def toposort(roots, floor=0):
    """Nodes reachable from ``roots`` that require grad, parents before children (iterative).

    A Tensor is stamped when it is made, after its inputs (``Tensor._seq``), so the nodes in
    the order of their stamps have every parent before its children. Nodes stamped before
    ``floor`` are left out: they were made before every input of the gradient asked for, so no
    input can lie below them. In the inner loop of MAML, step k's gradient with respect to
    φₖ₋₁ would otherwise walk again through the graphs of all earlier steps (which φₖ₋₁
    depends on), making k steps cost O(k²) in bookkeeping.
    """
    found = {}
    stack = [t for t in roots if t._requires_grad and t._seq >= floor]
    while stack:
        node = stack.pop()
        if id(node) in found:
            continue
        found[id(node)] = node
        for parent in node._parents:
            if parent._requires_grad and parent._seq >= floor and id(parent) not in found:
                stack.append(parent)
    return sorted(found.values(), key=_stamp)


_stamp = operator.attrgetter("_seq")


def _check_fresh(node):
    """Raise if a leaf among ``node``'s inputs was changed in place after ``node`` was made
    from it (``Tensor.changed_in_place``): the VJP would read the new values."""
    seq = node._seq
    copied = node._changed      # on an op's output: a copy of a stale node (Tensor.__getstate__)
    for i, parent in enumerate(node._parents):
        if parent._op is None and parent._changed > seq or copied == i + 1:
            name = f" '{parent.name}'" if parent.name else ""
            raise RuntimeError(
                f"backward: {type(node._op).__name__} used a tensor{name} of shape "
                f"{parent.shape} that was changed in place since (an optimizer step, a load "
                "or a move), so its VJP would read the new values; compute the output again "
                "after the change")


def _as_list(x):
    return list(x) if isinstance(x, (list, tuple)) else [x]


def _check_tensors(items, what, rule):
    for i, x in enumerate(items):
        if not isinstance(x, Tensor):
            raise TypeError(f"grad: {what} {i} is of type {type(x).__name__}, not a Tensor; "
                            f"{rule}")


def _initial_grads(outputs, grad_outputs):
    """Seed gradients: ones for scalar outputs, else the caller must give them."""
    seeds = [None] * len(outputs) if grad_outputs is None else _as_list(grad_outputs)
    if len(seeds) != len(outputs):
        raise ValueError(f"grad: {len(outputs)} outputs but {len(seeds)} grad_outputs")
    result = []
    for out, seed in zip(outputs, seeds):
        if seed is None:
            if out.size != 1:
                raise ValueError(
                    f"grad: output of shape {out.shape} is not a scalar; pass grad_outputs "
                    "(or backward(grad=...)) of that shape"
                )
            seed = Tensor(noted(array_module(out.data).ones_like(out.data)))
        else:   # the caller's array copied: a later order reads it as it is now
            seed = plain(seed)
        if seed.shape != out.shape:
            raise ValueError(f"grad: grad_output of shape {seed.shape} for output {out.shape}")
        if seed.dtype != out.dtype:    # a gradient has the dtype of the tensor it belongs to
            seed = seed.astype(out.dtype) if is_float_dtype(seed.dtype) else \
                Tensor(seed.data.astype(out.dtype))     # 1 as well as 1.0, as PyTorch
        result.append(seed)
    return result


def _run_backward(outputs, seeds, create_graph, keep, order):
    """Propagate ``seeds`` from ``outputs`` back to the nodes in ``keep`` (a set of ids).

    ``order`` is ``toposort(outputs, ...)``. Only nodes from which a node of ``keep`` can be
    reached are visited: the pass stops at the requested inputs instead of running on to the
    leaves. (Without that pruning, a gradient taken inside a VJP, as in
    ``primitives/fused.py``, would re-run the whole graph below it.) Grads of intermediate
    nodes are dropped as soon as they are used.
    """
    relevant = set()  # ids of the nodes from which a node of ``keep`` can be reached
    plan = []  # (node, expand): relevant nodes, children first; expand: its VJP feeds one
    for node in order:  # parents come before children
        nid = id(node)
        for parent in node._parents:
            if id(parent) in relevant:
                relevant.add(nid)
                plan.append((node, True))
                break
        else:
            if nid in keep:
                relevant.add(nid)
                plan.append((node, False))
    plan.reverse()
    grads = {}
    for out, seed in zip(outputs, seeds):
        if out.requires_grad:
            grads[id(out)] = grads[id(out)] + seed if id(out) in grads else seed
    kept = {}
    STATE.backward_depth += 1
    try:
        with set_grad_enabled(create_graph):
            for node, expand in plan:
                nid = id(node)
                g = grads.pop(nid, None)
                if g is None:
                    continue
                if nid in keep:
                    kept[nid] = g
                if not expand:
                    continue
                # its VJP reads its inputs: as they were, or refused (a node made after the
                # latest change in place of any leaf read none that changed since)
                if node._seq < LAST_CHANGE[0] or node._changed:
                    _check_fresh(node)
                parents = node._parents
                if ANOMALY.on:  # the VJP run under mm.detect_anomaly(), its results checked
                    in_grads = checked_vjp(node, g, _vjp_results)
                else:
                    in_grads = node._op.vjp(g, node, *parents)
                    if type(in_grads) is not tuple or len(in_grads) != len(parents):
                        _vjp_results(node, in_grads)    # a list passes; else a TypeError
                for parent, pg in zip(parents, in_grads):
                    if pg is None:
                        continue
                    if type(pg) is not Tensor:
                        _vjp_results(node, in_grads)    # a TypeError (a Tensor subclass passes)
                    key = id(parent)
                    if key not in relevant:
                        continue
                    data, pdata = pg.data, parent.data
                    if data.shape != pdata.shape:   # reductions.unbroadcast, attached by ops.py
                        pg = pg.sum_to(pdata.shape)
                    if pg.data.dtype != pdata.dtype:  # a float32 leaf met float64: float32 grad
                        pg = pg.astype(pdata.dtype)
                    previous = grads.get(key)
                    grads[key] = pg if previous is None else previous + pg
    finally:
        STATE.backward_depth -= 1
    return kept


def _vjp_results(node, in_grads):
    """``in_grads`` if it is what a VJP returns: a tuple (or list) of a Tensor or None per
    input of the node; else a ``TypeError`` naming the primitive (a short tuple had left the
    last inputs' gradients out without a word)."""
    n = len(node._parents)
    if type(in_grads) in (tuple, list) and len(in_grads) == n:
        for pg in in_grads:
            if pg is not None and not isinstance(pg, Tensor):
                raise TypeError(f"{type(node._op).__name__}.vjp: returned a result of type "
                                f"{type(pg).__name__}; a VJP returns Tensors (or None)")
        return in_grads
    what = (f"{len(in_grads)} result{'s' * (len(in_grads) != 1)}"
            if type(in_grads) in (tuple, list)
            else f"a result of type {type(in_grads).__name__}")
    raise TypeError(f"{type(node._op).__name__}.vjp: returned {what}; a VJP returns a tuple of "
                    f"one gradient (or None) per input, {n} here")


def grad(outputs, inputs, grad_outputs=None, create_graph=False, allow_unused=False):
    """Gradients of ``outputs`` with respect to ``inputs``, as a tuple of Tensors.

    With ``create_graph=True`` the returned gradients are recorded and can be differentiated
    again (any order).

    >>> import minimeta as mm
    >>> x = mm.tensor(3.0, requires_grad=True)
    >>> (g,) = mm.grad(x ** 3, [x], create_graph=True)   # 3 x^2 = 27
    >>> (h,) = mm.grad(g, [x])                             # 6 x = 18
    >>> float(g.data), float(h.data)
    (27.0, 18.0)
    """
    outputs, inputs = _as_list(outputs), _as_list(inputs)
    _check_tensors(outputs, "output", "outputs must be Tensors computed from the inputs")
    _check_tensors(inputs, "input", "inputs must be Tensors that require grad")
    for i, x in enumerate(inputs):
        if not x.requires_grad:
            raise ValueError(f"grad: input {i} does not require grad (shape {x.shape})")
    seeds = _initial_grads(outputs, grad_outputs)
    # nothing made before the earliest input can depend on an input: the walk stops there
    order = toposort(outputs, floor=min((x._seq for x in inputs), default=0))
    kept = _run_backward(outputs, seeds, create_graph, {id(x) for x in inputs}, order)
    result = []
    for i, x in enumerate(inputs):
        g = kept.get(id(x))
        if g is None and not allow_unused:
            if not any(out.requires_grad for out in outputs):   # the likelier cause: say it
                raise ValueError("grad: no output requires grad (computed under no_grad, or "
                                 "from tensors that do not require grad)")
            raise ValueError(
                f"grad: input {i} (shape {x.shape}) is not part of the graph of the outputs; "
                "pass allow_unused=True to get None for it"
            )
        result.append(g)
    return tuple(result)


def backward(output, grad_output=None, create_graph=False):
    """Accumulate gradients of ``output`` into ``.grad`` of every leaf that requires grad.

    With ``create_graph=True`` a leaf's ``.grad`` holds a graph that holds the leaf: a
    reference cycle, freed by Python's garbage collector, not at once (a warning says so, as
    PyTorch's does); ``grad(..., create_graph=True)`` makes no cycle."""
    if create_graph:
        warnings.warn("backward(create_graph=True): each leaf's .grad now holds a graph that "
                      "holds the leaf, a reference cycle that only the garbage collector "
                      "frees; mm.grad(..., create_graph=True) makes none",
                      stacklevel=user_stacklevel())
    if not output.requires_grad:
        raise ValueError("backward: the output does not require grad (no leaf needs a gradient)")
    order = toposort([output])
    leaves = [t for t in order if t._op is None]
    seeds = _initial_grads([output], None if grad_output is None else [grad_output])
    kept = _run_backward([output], seeds, create_graph, {id(t) for t in leaves}, order)
    with _ACCUMULATING:     # threads adding into one leaf's .grad: each sum read, then written
        for leaf in leaves:
            g = kept.get(id(leaf))
            if g is None:
                continue
            if leaf.grad is not None:
                leaf.grad = leaf.grad + (g if create_graph else g.detach())   # a new array
            elif create_graph:
                leaf.grad = g
            else:   # its own writable array: VJPs share and broadcast theirs
                leaf.grad = Tensor(array_module(g.data).array(g.data, copy=True))


# One lock for every thread's accumulation into ``.grad`` (a read, an add, a write): unlocked,
# four threads calling backward() on losses sharing a parameter had lost a quarter of the sum.
_ACCUMULATING = threading.Lock()

