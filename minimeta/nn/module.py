"""``Module``: a named, ordered set of parameters, called as ``model(x, params=None)``.

A module never hides its parameters inside the forward: ``forward(x, params)`` receives a
mapping name → Tensor (names local to the module) and reads its weights from it. Calling
``model(x)`` uses the module's own parameters; ``model(x, new_params)`` uses any other mapping
with the same names, which is all an inner-loop update needs: a new dict, no mutation.

    >>> import minimeta as mm
    >>> from minimeta.nn import Linear
    >>> layer = Linear(2, 1, seed=0)
    >>> fast = {k: v * 0.0 for k, v in layer.named_parameters().items()}
    >>> layer(mm.tensor([[1.0, 2.0]]), fast).numpy()
    array([[0.]])

Read next: ``minimeta/nn/layers.py`` (the layers as modules).
"""
import contextlib
from collections import OrderedDict

import numpy as np

from ..engine.backend import device_of, to_device, to_host
from ..engine.tensor import Tensor


class MissingParameter(ValueError):
    """A params mapping lacks a parameter the module has: named in full (``2.bias``) by the time
    it leaves the outermost module, so a misspelt key is never silently skipped."""

    def __init__(self, module, names, given):
        self.module, self.names, self.given = module, list(names), sorted(given)
        super().__init__()

    def within(self, name, params):
        """The same error, as a module's child ``name`` given its part of ``params``."""
        return MissingParameter(self.module, [f"{name}.{k}" for k in self.names], params)

    def __str__(self):
        return (f"{self.module}: params has no {', '.join(map(repr, self.names))} (a module "
                f"reads every parameter it has; given {len(self.given)} names)")


def sub_params(params, prefix):
    """The entries of ``params`` under ``prefix`` + '.', with the prefix removed."""
    start = prefix + "."
    n = len(start)
    return {k[n:]: v for k, v in params.items() if k.startswith(start)}


class Module:
    """Base class. Subclasses register parameters, buffers and children, and define
    ``forward(x, params)`` with ``params`` holding this module's parameters by local name."""

    def __init__(self):
        self._params = OrderedDict()
        self._buffers = OrderedDict()
        self._children = OrderedDict()
        self.training = True

    # ----- registration ---------------------------------------------------------------------
    def __setattr__(self, name, value):
        """Refuse a submodule or a trainable Tensor set as an attribute, PyTorch's way to
        register one: here it would be registered nowhere, so ``parameters()``, ``state_dict()``
        and an optimizer would never see it, and ``self.fc(x)`` would ignore ``params``. And
        refuse ``requires_grad``: a Module has none, so setting one would freeze nothing."""
        if name == "requires_grad":
            raise AttributeError(f"{type(self).__name__}: a Module has no requires_grad (it would "
                                 "freeze nothing); use .requires_grad_(False) for all its "
                                 "weights, or set one weight Tensor's requires_grad")
        items = value.values() if isinstance(value, dict) else value \
            if isinstance(value, (list, tuple)) else (value,)     # (PyTorch's ModuleList too)
        held = [v for v in items if isinstance(v, Module) or (isinstance(v, Tensor) and
                                                              v.requires_grad and v.is_leaf)]
        if held:
            key = repr(name) if value is held[0] else "name"      # one, or each of several
            how = (f"self.add_child({key}, ...), and in forward self.call_child({key}, x, "
                   "params)") if isinstance(held[0], Module) else \
                f"self.add_param({key}, array), and in forward params[{key}]"
            what = "(...)" if value is held[0] else f" holding a {type(held[0]).__name__}"
            raise TypeError(f"{type(self).__name__}: self.{name} = {type(value).__name__}{what} "
                            f"registers nothing (forward reads its weights from params): use "
                            f"{how}")
        object.__setattr__(self, name, value)

    def _named(self, name, what, replace=None):
        """``name`` checked: a non-empty string without a dot (a dot joins a child's names, so
        'fc.weight' beside a child 'fc' would hide one of the two) or a slash, and not taken
        (a name used twice in a loop had kept one layer), but by the child ``replace``
        allows to replace."""
        if not isinstance(name, str) or not name or "." in name or "/" in name:
            raise ValueError(f"{type(self).__name__}.{what}: name {name!r} must be a non-empty "
                             "string without '.' (dots join a child's names to its own) or '/' "
                             "(a checkpoint's levels)")
        if name in self._params or name in self._buffers or (name in self._children and
                                                             not replace):
            more = " (add_child(..., replace=True) replaces a child)" if \
                name in self._children else ""
            raise ValueError(f"{type(self).__name__}.{what}: name {name!r} is taken{more}")
        return name

    def add_param(self, name, array):
        """Register a parameter: a copy of ``array`` (a float array) as a leaf Tensor that
        requires grad (a copy: hand-written updates may write into it in place; the array given
        stays as it was)."""
        name = self._named(name, "add_param")
        array = array.copy() if hasattr(array, "copy") else np.array(array)
        self._params[name] = Tensor(array, requires_grad=True, name=name)
        return self._params[name]

    def add_buffer(self, name, array):
        """Register a buffer: state that is saved but not trained (batch-norm running stats);
        a copy of ``array``, updated in place by the module. The tasks of a meta-batch run on
        worker threads: update it through ``engine.workers.defer(update)``, as batch norm
        does, or the updates of concurrent tasks interleave in no fixed order (a run is then
        not reproducible, nor a resumed run equal to an uninterrupted one)."""
        name = self._named(name, "add_buffer")
        self._buffers[name] = array.copy() if hasattr(array, "copy") else np.array(array)
        return self._buffers[name]

    def add_child(self, name, module, replace=False):
        """Register a submodule; its parameters appear as ``name.<param>``. ``replace=True``
        replaces the child of that name (a new head: build the learner and the optimizer
        after it, as they hold the parameters they were given)."""
        if not isinstance(module, Module):
            raise TypeError(f"{type(self).__name__}.add_child: {name!r} is a "
                            f"{type(module).__name__}, not a Module")
        name = self._named(name, "add_child", replace)
        if self._children.get(name) is not module and (
                any(m is module for m in self._modules()) or
                any(m is self for m in module._modules())):
            raise ValueError(f"{type(self).__name__}.add_child: {name!r} is a module already "
                             "in this one (or holding it): registered twice, its parameters "
                             "would come apart under two names; call one child twice instead")
        self._children[name] = module
        return module

    # ----- calling ---------------------------------------------------------------------------
    def __call__(self, x, params=None):
        if params is None:
            return self.forward(x, self.named_parameters())
        return self.forward(x, self.own(params))

    def own(self, params):
        """``params``, checked to hold this module's own parameters (``MissingParameter``)."""
        missing = [k for k in self._params if k not in params]
        if missing:
            raise MissingParameter(type(self).__name__, missing, params)
        return params

    def forward(self, x, params):
        raise NotImplementedError

    def child_params(self, name, params):
        """The part of ``params`` that belongs to child ``name``, which must hold the child's
        own parameters (a forward that reads them without ``call_child``, as SNAIL's query
        path does, had met a bare KeyError)."""
        with self.naming(name, params):
            return self._children[name].own(sub_params(params, name))

    def call_child(self, name, x, params):
        """Child ``name`` applied to ``x`` with its part of this module's ``params``."""
        try:
            return self._children[name](x, sub_params(params, name))
        except MissingParameter as err:   # named from here: "2.bias", not "bias"
            raise err.within(name, params) from None

    @staticmethod
    @contextlib.contextmanager
    def naming(name, params):
        """Inside, a parameter missing from child ``name``'s ``params`` is named from here, as
        ``call_child`` names it (for a forward that calls a child's other methods)."""
        try:
            yield
        except MissingParameter as err:
            raise err.within(name, params) from None

    # ----- inspection --------------------------------------------------------------------------
    def named_parameters(self):
        """An ordered dict of every parameter, children's included, by dotted name."""
        out = OrderedDict(self._params)
        for cname, child in self._children.items():
            for k, v in child.named_parameters().items():
                out[f"{cname}.{k}"] = v
        return out

    def parameters(self):
        """The list of parameter Tensors (in ``named_parameters`` order)."""
        return list(self.named_parameters().values())

    def named_buffers(self):
        """An ordered dict of every buffer array by dotted name."""
        out = OrderedDict(self._buffers)
        for cname, child in self._children.items():
            for k, v in child.named_buffers().items():
                out[f"{cname}.{k}"] = v
        return out

    def requires_grad_(self, requires_grad=True):
        """Set ``requires_grad`` on every parameter, children's included (False freezes them:
        the learners read a frozen weight but neither adapt nor train it); returns self."""
        if not isinstance(requires_grad, (bool, np.bool_)):
            raise TypeError(f"{type(self).__name__}.requires_grad_: expects True or False, got "
                            f"{requires_grad!r}")
        for p in self.parameters():
            p.requires_grad = bool(requires_grad)
        return self

    @property
    def device(self):
        """Where the parameters live: 'cpu' or 'cuda' (of the first one; 'cpu' if none)."""
        params = self.parameters()
        return params[0].device if params else "cpu"

    def to(self, device):
        """Move every parameter and buffer to ``device`` in place (the Tensors stay the same
        objects, so optimizers and learners holding them follow); returns self.

        Do it before building an optimizer whose state should live on the device.
        """
        for p in self.parameters():
            moved = to_device(p.data, device)
            if moved is not p.data:
                p.data = moved
                p.changed_in_place()
        for module in self._modules():
            for name, b in module._buffers.items():
                module._buffers[name] = to_device(b, device)
        return self

    def _modules(self):
        """This module and all its descendants."""
        out = [self]
        for child in self._children.values():
            out += child._modules()
        return out

    def train(self, mode=True):
        """Set training mode (batch norm uses batch statistics) here and in every child."""
        if not isinstance(mode, (bool, np.bool_)):   # ("no" is true: it had trained)
            raise TypeError(f"{type(self).__name__}.train: mode must be True or False, got "
                            f"{mode!r}")
        mode = bool(mode)
        self.training = mode
        for child in self._children.values():
            child.train(mode)
        return self

    def eval(self):
        """Set evaluation mode (batch norm uses its running statistics)."""
        return self.train(False)

    # ----- state -----------------------------------------------------------------------------
    def state_dict(self):
        """Parameters and buffers as a flat dict of NumPy arrays (copies)."""
        state = {f"param:{k}": np.array(v.numpy()) for k, v in self.named_parameters().items()}
        state.update({f"buffer:{k}": np.array(to_host(v)) for k, v in
                      self.named_buffers().items()})
        return state

    def load_state_dict(self, state):
        """Copy arrays from ``state`` (as made by ``state_dict``) into this module: the same
        parameter Tensors, holding new arrays (as an optimizer step leaves them), and the
        buffers in place."""
        params, buffers = self.named_parameters(), self.named_buffers()
        expected = {f"param:{k}" for k in params} | {f"buffer:{k}" for k in buffers}
        if not isinstance(state, dict):
            raise StateDictError(f"load_state_dict: expects a dict of arrays (as state_dict "
                                 f"makes), got {type(state).__name__}")
        if set(state) != expected:
            here = {**{f"param:{k}": p.shape for k, p in params.items()},
                    **{f"buffer:{k}": b.shape for k, b in buffers.items()}}
            missing = _listed(sorted(expected - set(state)), here)
            there = {k: v.shape if hasattr(v, "shape") else () for k, v in state.items()
                     if k not in expected}
            extra = _listed(sorted(there, key=str), there)
            shape = {k: tuple(getattr(state[k], "shape", ())) for k in expected & set(state)}
            differ = [f"{k} {shape[k]}, expected {tuple(here[k])}" for k in sorted(shape)
                      if shape[k] != tuple(here[k])]
            more = f" and {len(differ) - 3} more" if len(differ) > 3 else ""
            shapes = f"; other shapes [{', '.join(differ[:3])}]{more}" if differ else ""
            raise StateDictError(
                f"load_state_dict: the state is not this {type(self).__name__}'s (another "
                f"architecture?): missing {missing}; unexpected {extra}{shapes}")
        pairs = [(p.data, state[f"param:{k}"], k) for k, p in params.items()] + \
            [(b, state[f"buffer:{k}"], k) for k, b in buffers.items()]
        converted = []
        for target, value, name in pairs:   # every value checked and converted before any
            _fits(target, value, name)      # is copied (a string had half-loaded a model)
            try:
                converted.append(np.array(value, dtype=target.dtype, order="C"))
            except (TypeError, ValueError) as err:
                raise StateDictError(f"load_state_dict: {name} cannot be {target.dtype} "
                                     f"({type(err).__name__}: {err}); nothing loaded") from None
        for p, value in zip(params.values(), converted):   # new arrays, as an optimizer
            p.data = to_device(value, p.device)            # step makes (optim.py)
            p.changed_in_place()
        for b, value in zip(buffers.values(), converted[len(params):]):  # in place: the
            b[...] = to_device(value, device_of(b))                      # layers hold these

    def __repr__(self):
        inner = "".join(f"\n  ({k}): {repr(c)}".replace("\n", "\n  ")
                        for k, c in self._children.items())
        return f"{type(self).__name__}({self.extra_repr()}{inner}{chr(10) if inner else ''})"

    def extra_repr(self):
        return ""


class StateDictError(KeyError, ValueError):
    """A state that does not fit the module (a ``KeyError`` as before, and a ``ValueError``,
    as the command line reports its errors); its message is one line, unquoted."""

    def __str__(self):
        return str(self.args[0]) if self.args else ""


def _listed(keys, shapes, most=6):
    """``key shape`` for the first ``most`` of ``keys``, then how many more."""
    text = ", ".join(f"{k} {tuple(shapes[k])}" for k in keys[:most])
    more = f" and {len(keys) - most} more" if len(keys) > most else ""
    return f"[{text}]{more}" if keys else "none"


def _fits(target, value, name):
    shape = np.shape(value)
    if shape != target.shape:
        raise ValueError(f"load_state_dict: {name} has shape {shape}, expected "
                         f"{target.shape} (another architecture or way count?); nothing loaded")
