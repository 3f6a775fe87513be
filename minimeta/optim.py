"""Optimizers that update parameter Tensors in place, outside any graph.

``step(grads=None)`` takes the gradients in parameter order (as ``mm.grad`` returns them) or,
when omitted, reads each parameter's ``.grad``. ``clip_norm`` (any optimizer) rescales the
gradients first so that their global L2 norm is at most that value; ``last_norm`` keeps the norm
seen before clipping, for logging. Updates set ``.data`` directly, to a new array (what a
graph took from the old one keeps its values; the Tensor is stamped as changed, and a VJP that
would read it from before the step is refused: ``Tensor.changed_in_place``): an optimizer
step is not part of any derivative (meta-learners that differentiate through an update build
the new parameters with Tensor ops instead, see ``learners/``).

SGD's and Adam's updates are ``elementwise`` (each element's new value reads only that element's
own), so they step every parameter of one dtype and device (and, Adam's, of one step count) as one
flat array (a ``Group``): one update of the concatenated arrays in place of one a parameter, the
same bits; each parameter's new array and state are views of the group's. A small network's
step is then a few NumPy passes (or one launch on a GPU) rather than eight a parameter.

    >>> import minimeta as mm
    >>> w = mm.tensor([1.0], requires_grad=True)
    >>> opt = SGD([w], lr=0.1)
    >>> opt.step([mm.tensor([2.0])]); w.numpy()
    array([0.8])

Read next: ``minimeta/io.py`` (atomic .npz checkpoints).
"""
import math
import numbers

import numpy as np

from . import kernels
from .engine.backend import array_module, to_device, to_host
from .engine.tensor import Tensor


def _check(cls, name, value, ok, what):
    """``value``, or a ValueError naming the optimizer and the hyper-parameter."""
    try:
        good = bool(ok(value))
    except TypeError:
        good = False
    if not good:
        raise ValueError(f"{cls}: {name} must be {what}, got {value!r}")
    return value


class Group(tuple):
    """The indices of parameters stepped as one flat array (``Optimizer.elementwise``): their
    arrays raveled and concatenated in this order; ``cut(flat)`` gives each one's part back, a
    view in its shape.

        >>> group = Group([0, 2], [(2,), (1, 2)])
        >>> [part.tolist() for part in group.cut(np.arange(4.0))]
        [[0.0, 1.0], [[2.0, 3.0]]]
    """

    def __new__(cls, indices, shapes):
        group = super().__new__(cls, indices)
        group.shapes, ends = tuple(shapes), [0]
        for shape in group.shapes:
            ends.append(ends[-1] + math.prod(shape))
        group.bounds = tuple(zip(ends[:-1], ends[1:]))
        return group

    def cut(self, flat):
        """Each parameter's part of ``flat``, a view in its shape."""
        return [flat[a:b].reshape(s) for (a, b), s in zip(self.bounds, self.shapes)]


class Optimizer:
    """Holds the parameter list and per-parameter state arrays; subclasses define ``_update``
    and name their state arrays in ``slots`` (None, a subclass's default: any names, as
    ``_slot`` makes them).

    ``_update(i, p, g)`` returns the amount to subtract from parameter i's array p. A subclass
    whose update is ``elementwise`` (True: every element's result reads only that element of p,
    g and the state) is also called with i a ``Group``, p, g and ``_slot``'s arrays the group's
    flat ones; ``_group_key(i)`` keeps apart parameters that must not share an update (Adam's
    step counts)."""

    slots = None
    elementwise = False

    def __init__(self, params, lr, clip_norm=None):
        name = type(self).__name__
        if isinstance(params, Tensor):   # (list() had iterated over its elements)
            raise TypeError(f"{name}: params must be a list of Tensors (model.parameters()), "
                            f"got one Tensor: pass [it]")
        self.params = list(params.values() if hasattr(params, "values") else params)
        if not self.params:   # (a model of unregistered layers has none: nothing would train)
            raise ValueError(f"{name}: no parameters to optimize (model.parameters() was empty: "
                             "register layers with add_child, parameters with add_param)")
        for i, p in enumerate(self.params):
            if not isinstance(p, Tensor):
                raise TypeError(f"{name}: parameter {i} is a {type(p).__name__}, not a Tensor "
                                "(pass model.parameters())")
            if not p.is_leaf:   # (its step had been half applied, then refused)
                raise ValueError(f"{name}: parameter {i} (shape {p.shape}) was made by an op, "
                                 "not a leaf: an optimizer steps leaves (pass "
                                 "model.parameters(), or .detach().requires_grad_())")
        if len({id(p) for p in self.params}) != len(self.params):
            raise ValueError(f"{name}: a parameter is listed twice (it would be stepped twice; "
                             "for tied weights, list each Tensor once)")
        # (inf had been taken, as the learners and CLI refuse it; a string had met "<")
        _check(name, "learning rate", lr, lambda v: isinstance(v, numbers.Real) and
               0 < v < math.inf, "a finite number > 0")
        if clip_norm is not None:
            _check(name, "clip_norm", clip_norm, lambda v: isinstance(v, numbers.Real) and
                   0 < v < math.inf, "a finite number > 0")
        # Python numbers: NumPy scalars (np.float64) had widened float32 updates to float64
        self.lr, self.last_norm = float(lr), None
        self.clip_norm = None if clip_norm is None else float(clip_norm)
        self.steps = 0
        self.state = {}  # name -> list of arrays, one per parameter
        # ("param" or a slot's name, group) -> (flat, its parts) made by the last step: a
        # group's flat array again, while every part is still the array in its place
        self._flats = {}

    def __getstate__(self):
        # a copy's (deepcopy, pickle) flat arrays would not share memory with its parameters'
        # arrays: it concatenates them afresh at its first step
        return dict(self.__dict__, _flats={})

    def zero_grad(self):
        """Forget accumulated ``.grad`` values."""
        for p in self.params:
            p.grad = None

    def step(self, grads=None):
        """Apply one update with ``grads`` (Tensors or arrays, in parameter order)."""
        if grads is None:
            grads = [p.grad for p in self.params]
        if hasattr(grads, "values"):    # list() of a dict had given its keys, the names
            raise TypeError(f"{type(self).__name__}.step: grads must be a list in the "
                            "parameters' order, got a dict (list(grads.values()) if its order "
                            "is theirs)")
        grads = list(grads)
        if len(grads) != len(self.params):
            raise ValueError(f"{type(self).__name__}.step: {len(grads)} gradients for "
                             f"{len(self.params)} parameters")
        arrays = []
        for i, (p, g) in enumerate(zip(self.params, grads)):
            if g is not None:
                g = g.data if isinstance(g, Tensor) else g
                g = to_device(g if hasattr(g, "shape") else np.asarray(g), p.device)
                if g.shape != p.shape:
                    raise ValueError(f"{type(self).__name__}.step: gradient {i} has shape "
                                     f"{g.shape}, parameter {p.shape}")
                if g.dtype.kind not in "biuf":   # (complex had dropped its imaginary part)
                    raise ValueError(f"{type(self).__name__}.step: gradient {i} has dtype "
                                     f"{g.dtype}, not real numbers")
                g = g.astype(p.dtype, copy=False)
            arrays.append(g)
        scale = self._clip_scale(arrays)
        # the step is whole or not at all: every array below is new (parameters, state), so an
        # update that raises midway (an overflow under np.errstate(all="raise")) puts back the
        # old ones, and no parameter has been stepped once of two
        before = (self.steps, [p.data for p in self.params],
                  {k: list(v) for k, v in self.state.items()}, self._counters(), self._flats)
        self.steps += 1
        self._flats = dict(self._flats)
        stepped = set()
        try:
            for i, data, g in self._batches(arrays):
                stepped.add(i)
                # a new array, not one written in place: what a graph already took from the
                # old one (a view, w.T, w[1:], w.detach()) keeps the values it was built
                # with; the leaf is stamped, and a VJP reading it from before is refused
                update = self._update(i, data, g * scale if scale != 1 else g
                                      ).astype(data.dtype, copy=False)
                if isinstance(i, Group):
                    self._set(i, self._keep("param", i, data - update))
                else:
                    new = data.copy(order="K")   # its layout, and 0-d stays an array
                    new -= update
                    self._set([i], [new])
            self._flats = {k: v for k, v in self._flats.items() if k[1] in stepped}
        except BaseException:
            self.steps, data, self.state, counters, self._flats = before
            for p, d in zip(self.params, data):
                p.data = d
            self._counters(counters)
            raise

    def _set(self, indices, arrays):
        """Parameters ``indices`` hold the new ``arrays``, stamped as changed."""
        for k, array in zip(indices, arrays):
            self.params[k].data = array
            self.params[k].changed_in_place()

    def _keep(self, name, group, flat):
        """``flat`` (a Group's new parameters, or its slot ``name``) cut into the parameters'
        parts, kept for the next step's ``_gather``; returns the parts."""
        parts = group.cut(flat)
        self._flats[name, group] = flat, parts
        return parts

    def _batches(self, arrays):
        """(i, p, g) for each update of the step: i a parameter's index and p its array, or
        (an ``elementwise`` optimizer's) a Group of parameters alike and p, g their flat
        arrays. Parameters without a gradient are left out; one not C-contiguous is stepped
        alone, in its own layout."""
        groups = {}
        for i, (p, g) in enumerate(zip(self.params, arrays)):
            if g is None:
                continue
            if self.elementwise and p.data.flags.c_contiguous:
                groups.setdefault((p.dtype, p.device, self._group_key(i)), []).append(i)
            else:
                yield i, p.data, g
        for indices in groups.values():
            if len(indices) == 1:
                yield indices[0], self.params[indices[0]].data, arrays[indices[0]]
                continue
            group = Group(indices, [self.params[k].shape for k in indices])
            flat = self._gather("param", group, [self.params[k].data for k in group])
            xp = array_module(flat)
            yield group, flat, xp.concatenate([arrays[k].reshape(-1) for k in group])

    def _gather(self, name, group, arrays, like=None):
        """The flat array of ``arrays`` (a Group's parameters or their slot ``name``; a None
        is zeros like that parameter): the last step's own where every part is still in its
        place, else a concatenation."""
        kept = self._flats.get((name, group))
        if kept is not None and len(kept[1]) == len(arrays) and \
                all(a is b for a, b in zip(arrays, kept[1])):
            return kept[0]
        if like is not None and all(a is None for a in arrays):
            return array_module(like).zeros_like(like)
        params = [self.params[k].data for k in group]
        return array_module(params[0]).concatenate(
            [(a if a is not None else array_module(p).zeros_like(p)).reshape(-1)
             for a, p in zip(arrays, params)])

    def _group_key(self, i):
        """What parameter i must share with the others of its group, beside its dtype and
        device (None: nothing more)."""
        return None

    def _counters(self, counts=None):
        """Per-parameter step counts (Adam's), as a copy; or set them back to ``counts``."""
        return None

    def _clip_scale(self, arrays):
        """min(1, clip_norm / ‖g‖) over all gradients, a Python float; records ‖g‖ in
        ``last_norm``. The squares are summed in float64 whatever the gradients' dtype (an
        accumulator, as batch norm's: float32 squares overflow past 1.8e19).

        A non-finite norm is an error: a NaN would otherwise spread into every parameter.
        """
        if self.clip_norm is None:
            return 1.0
        # summed where the gradients are, read once (a GPU is waited for at each read)
        norm = float(np.sqrt(sum((g.astype(np.float64) ** 2).sum()
                                 for g in arrays if g is not None)))
        self.last_norm = norm
        if not np.isfinite(norm):
            raise FloatingPointError(f"{type(self).__name__}.step: gradient norm is {norm}")
        return min(1.0, self.clip_norm / norm) if norm > 0 else 1.0

    def _slot(self, name, i, like, value=None):
        """State ``name`` of parameter i (zeros at first); with ``value``, set it to that new
        array (never written in place: ``step`` undoes a step that raises by the old ones).
        For a Group i, the group's flat state, kept as a view a parameter."""
        slots = self.state.setdefault(name, [None] * len(self.params))
        if isinstance(i, Group):
            if value is None:
                return self._gather(name, i, [slots[k] for k in i], like)
            for k, part in zip(i, self._keep(name, i, value)):
                slots[k] = part
            return value
        if value is not None:
            slots[i] = value
        elif slots[i] is None:
            slots[i] = np.zeros_like(like)
        return slots[i]

    def state_dict(self):
        """The optimizer's name, learning rate, step count and state arrays (``<slot>.<i>``
        for parameter i; a slot never made is not saved). The other hyper-parameters are the
        constructor's, not saved."""
        out = {"optimizer": type(self).__name__, "lr": self.lr, "steps": self.steps}
        for name, slots in self.state.items():
            for i, arr in enumerate(slots):
                if arr is not None:
                    out[f"{name}.{i}"] = to_host(arr).copy()
        return out

    def load_state_dict(self, state):
        """Restore what ``state_dict`` saved; a state of another optimizer, or for other
        parameters, is a ValueError naming the first misfit, and nothing is changed."""
        name, n = type(self).__name__, len(self.params)
        kind = str(state.get("optimizer", name))  # checkpoints before the name: unchecked
        if kind != name:
            raise ValueError(f"{name}.load_state_dict: the state is a {kind}'s")
        loaded = {}
        for key, arr in state.items():
            if "." not in key:
                continue
            slot, i = key.rsplit(".", 1)
            if (self.slots is not None and slot not in self.slots) or not i.isdigit() \
                    or int(i) >= n:
                raise ValueError(f"{name}.load_state_dict: {key} fits none of its state "
                                 f"({', '.join(self.slots or ()) or 'none'}, for {n} "
                                 "parameters)")
            p = self.params[int(i)]
            if np.shape(arr) != p.shape:
                raise ValueError(f"{name}.load_state_dict: {key} has shape {np.shape(arr)}, "
                                 f"parameter {i} {p.shape}")
            loaded.setdefault(slot, [None] * n)[int(i)] = to_device(   # the parameter's dtype
                np.array(arr, dtype=p.dtype), p.device)
        self.lr, self.steps, self.state = float(state["lr"]), int(state["steps"]), loaded


class SGD(Optimizer):
    """p ← p − lr·v with v ← momentum·v + (g + weight_decay·p) (plain SGD when momentum = 0)."""

    slots = ("velocity",)
    elementwise = True

    def __init__(self, params, lr, momentum=0.0, weight_decay=0.0, clip_norm=None):
        super().__init__(params, lr, clip_norm)
        self.momentum = float(_check("SGD", "momentum", momentum, lambda m: 0 <= m < 1,
                                     "in [0, 1)"))
        self.weight_decay = float(_check("SGD", "weight_decay", weight_decay,
                                         lambda w: 0 <= w < math.inf, "finite, >= 0"))

    def _update(self, i, p, g):
        if self.weight_decay:
            g = g + self.weight_decay * p
        if self.momentum:
            g = self._slot("velocity", i, p, self.momentum * self._slot("velocity", i, p) + g)
        return self.lr * g


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015) with bias correction; weight decay added to the gradient.

    Each parameter counts its own steps (``counts``), as PyTorch's Adam does: one whose
    gradient was None for a while starts its bias correction at its own first step.
    """

    slots = ("m", "v")
    elementwise = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 clip_norm=None):
        super().__init__(params, lr, clip_norm)
        _check("Adam", "betas", betas, lambda b: len(b) == 2 and all(0 <= x < 1 for x in b),
               "two numbers in [0, 1)")
        self.betas = tuple(float(b) for b in betas)
        # (0 had been taken: 0 / 0, NaN, where an element's gradient has been 0 at every step,
        # a dead ReLU's weights, as in PyTorch)
        self.eps = float(_check("Adam", "eps", eps, lambda e: 0 < e < math.inf, "finite, > 0"))
        self.weight_decay = float(_check("Adam", "weight_decay", weight_decay,
                                         lambda w: 0 <= w < math.inf, "finite, >= 0"))
        self.counts = [0] * len(self.params)

    def _update(self, i, p, g):
        """The kernel table's ``adam`` (``kernels/optim_ref.py``: the formulas; one launch on
        a GPU, where NumPy's passes had been a dozen), once for a Group of parameters with
        the same step count (``_group_key``)."""
        b1, b2 = self.betas
        for k in i if isinstance(i, Group) else [i]:
            self.counts[k] += 1
        t = self.counts[k]
        update, m, v = kernels.lookup("adam", p, g)(
            p, g, self._slot("m", i, p), self._slot("v", i, p), self.lr, b1, b2, self.eps,
            1 - b1 ** t, 1 - b2 ** t, self.weight_decay)
        self._slot("m", i, p, m)
        self._slot("v", i, p, v)
        return update

    def _group_key(self, i):
        return self.counts[i]

    def _counters(self, counts=None):
        if counts is not None:
            self.counts = counts
        return list(self.counts)

    def state_dict(self):
        return dict(super().state_dict(), counts=np.array(self.counts, dtype=np.int64))

    def load_state_dict(self, state):
        # a checkpoint from before per-parameter counts: every parameter had every step
        counts = [int(c) for c in state.get("counts", [int(state["steps"])] * len(self.params))]
        if len(counts) != len(self.params):
            raise ValueError(f"Adam.load_state_dict: counts for {len(counts)} parameters, "
                             f"this Adam holds {len(self.params)} (another model, or a "
                             "parameter frozen or unfrozen since: the learners optimize only "
                             "those that require grad)")
        super().load_state_dict(state)
        self.counts = counts
