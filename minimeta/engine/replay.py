"""Record once, replay the array math: ``Traced(fn)``, for a function called again and again on
arrays of the same shapes (a meta-iteration: the inner loop, its gradients, the meta-gradient).

Every call of ``fn`` runs the engine's Python for every op: ``apply`` makes and records a
Tensor, ``grad`` sorts the graph and walks it back, each VJP lifts its numbers and applies its
own ops: half the sinusoid's meta-iteration (430 ops on a few hundred numbers each), though
only the arrays differ from call to call. So ``Traced`` runs ``fn`` once while a ``Recording``
writes down each op's primitive and the arrays it read (``apply`` tells it:
``tensor.RECORDING``), then replays that list (``Replay``): each primitive's ``forward`` on the
new arrays, in order, nothing else: JAX's ``jit`` in its first half, the trace, as Python calls.

What a replay cannot repeat, the recording refuses (``Recording.refuse``; the call returns fn's
own results, and fn runs as it is for arrays of those shapes from then on): an array that no op
made and fn was not given (a dropout mask drawn in Python, labels held by an indexing op: a
replay would use the recorded call's); a read of a value (``item()``, ``float()``, ``numpy()``:
Python that branches on it would not run again); state changed beside the ops (batch norm's
running averages, an optimizer's step); an op on another thread.

Constants from shapes and numbers alone are the recording's own: lifted numbers, ``zeros``,
``ones``, a gradient's seed (``tensor.noted``), copies or casts of fn's arrays
(``Recording.derived``). Python in fn that reads ``.data`` and branches on it is not seen: so
the second call for a signature runs fn *and* the replay and compares every result bit for
bit, as does every ``recheck``-th call after it; where they differ, a warning says so and fn
runs as it is from then on. ``learners.StackedTasks`` replays its regression meta-iterations,
the sinusoid experiment its baseline's steps and its held-out tasks' fine-tuning.

>>> import minimeta as mm, numpy as np
>>> traced = Traced(lambda w, x: mm.grad(((x @ w) ** 2).sum(), [w])[0])
>>> w = mm.tensor(np.ones((3, 1)), requires_grad=True)
>>> [traced(w, np.ones((2, 3))).numpy().ravel().tolist() for _ in range(3)][-1], traced.counts
([12.0, 12.0, 12.0], {'recorded': 1, 'checked': 1, 'replayed': 1, 'plain': 1})

Read next: ``minimeta/gradcheck.py`` (numerical gradient checks of any order).
"""
import threading
import warnings

import numpy as np

from ..kernels.threads import user_stacklevel
from .anomaly import ANOMALY
from .backend import array_module, device_of, to_device
from .grad_mode import STATE
from .tensor import RECORDING, Tensor


class Traced:
    """``fn`` (Tensors and arrays in; a Tensor, or a tuple or list of Tensors and None, out),
    recorded at its first call for each signature and replayed after.

    Call it as ``fn``, with ``key=``: what else fn's Python depends on (settings that change
    the ops it applies; the signature already has the arguments' shapes, dtypes, devices and
    ``requires_grad``, and whether recording is on). It returns fn's results as Tensors that
    hold values, not graphs (a replay builds none), on every call, recorded or not.
    ``counts`` says how the calls ran; ``why()`` why a signature is not replayed. Inside
    another recording, or under ``detect_anomaly``, fn runs as it is. Pickled or copied, it
    is a new ``Traced`` of the same fn (a replay holds arrays and generated code).
    """

    def __init__(self, fn, recheck=100, kept=8):
        self.fn, self.recheck, self.kept = fn, recheck, kept
        self.entries = {}   # signature → _Entry, or why it is not replayed (a string)
        self.counts = dict(recorded=0, checked=0, replayed=0, plain=0)

    def __reduce__(self):
        return Traced, (self.fn, self.recheck, self.kept)

    def __call__(self, *args, key=()):
        if RECORDING[0] is not None or ANOMALY.on:
            return self._plain(args)[0]
        signature = (key, STATE.enabled, tuple(map(_signature, args)), _shared(args))
        entry = self.entries.get(signature)
        if entry is None:
            return self._record(signature, args)
        if type(entry) is str:
            return self._plain(args)[0]
        entry.calls += 1
        if entry.calls == 1 or self.recheck and entry.calls % self.recheck == 0:
            return self._check(signature, entry, args)
        try:
            arrays = entry.replay(_arrays(args))
        except Exception as err:    # fn's own run raises it again (or runs)
            self.entries[signature] = f"its replay raised {err!r}"
            return self._plain(args)[0]
        self.counts["replayed"] += 1
        return entry.results(arrays)

    def why(self):
        """{signature: why fn runs as it is there}, for the signatures not replayed."""
        return {sig: entry for sig, entry in self.entries.items() if type(entry) is str}

    def _plain(self, args):
        """(fn's results as value Tensors, their arrays, None where fn gave None)."""
        self.counts["plain"] += 1
        return _values(self.fn(*args))

    def _record(self, signature, args):
        recording = Recording(_arrays(args))
        RECORDING[0] = recording
        try:
            results, arrays = _values(self.fn(*args))
        finally:
            RECORDING[0] = None
        replay = recording.replay([a for a in arrays if a is not None])
        if len(self.entries) >= self.kept:
            self.entries.clear()
        self.entries[signature] = recording.reason if replay is None else \
            _Entry(replay, results, arrays)
        self.counts["recorded"] += 1
        return results

    def _check(self, signature, entry, args):
        """fn's own results, compared bit for bit with the replay's."""
        try:
            mine = entry.replay(_arrays(args))
        except Exception as err:
            mine = err
        results, arrays = self._plain(args)
        theirs = [a for a in arrays if a is not None]
        self.counts["checked"] += 1
        if not isinstance(mine, Exception) and entry.nones == [a is None for a in arrays] \
                and _same_bits(mine, theirs):
            return results
        self.entries[signature] = why = "its replay differed from the function's own results: " \
            "the function's Python reads values beside the engine's ops, or draws random " \
            f"numbers{f' (the replay raised {mine!r})' if isinstance(mine, Exception) else ''}"
        warnings.warn(f"Traced({getattr(self.fn, '__qualname__', self.fn)}): {why}; it runs "
                      "as it is for arguments of these shapes from now on", RuntimeWarning,
                      stacklevel=user_stacklevel())
        return results


class _Entry:
    """A signature's replay, how often it ran, and the layout of fn's results around it."""

    __slots__ = ("replay", "calls", "single", "nones")

    def __init__(self, replay, results, arrays):
        self.replay, self.calls = replay, 0
        self.single = isinstance(results, Tensor) or results is None
        self.nones = [a is None for a in arrays]

    def results(self, arrays):
        """The replay's ``arrays`` laid out as fn's results: value Tensors and its Nones."""
        made = iter(arrays)
        out = tuple(None if none else Tensor(next(made)) for none in self.nones)
        return out[0] if self.single else out


def _values(results):
    """(``results``, a Tensor, None or a tuple or list of them, as value Tensors; arrays)."""
    single = not isinstance(results, (tuple, list))
    items = [results] if single else list(results)
    for r in items:
        if r is not None and not isinstance(r, Tensor):
            raise TypeError(f"Traced: the function returned a {type(r).__name__}; it returns "
                            "a Tensor, or a tuple or list of Tensors (or None)")
    arrays = [None if r is None else r.data for r in items]
    values = tuple(None if a is None else Tensor(a) for a in arrays)
    return (values[0] if single else values), arrays


def _signature(arg):
    """What a replay for ``arg`` assumes: its kind, shape, dtype, device and, for a Tensor,
    whether it requires grad."""
    if isinstance(arg, Tensor):
        return (arg._requires_grad, type(arg.data), arg.data.shape, arg.data.dtype.str)
    if not hasattr(arg, "shape") or not hasattr(arg, "dtype"):
        raise TypeError(f"Traced: arguments are Tensors and arrays, got a "
                        f"{type(arg).__name__} (pass settings as key=...)")
    return (type(arg), arg.shape, arg.dtype.str)


def _arrays(args):
    """The arrays of ``args`` (a Tensor's ``data``, an array itself)."""
    return [a.data if isinstance(a, Tensor) else a for a in args]


def _shared(args):
    """Which arguments hold the same array (an index to the first that does, for each): a
    replay recorded with one array in two places reads it from one slot."""
    firsts = {}
    return tuple(firsts.setdefault(id(a), k) for k, a in enumerate(_arrays(args)))


def _same_bits(arrays, others):
    """True when each array of ``arrays`` has the shape, dtype and bytes (NaNs, -0.0) of its
    partner in ``others``: compared where they are, read in one go (on a GPU, one wait)."""
    if any(a.shape != b.shape or a.dtype != b.dtype for a, b in zip(arrays, others)):
        return False
    if not arrays:
        return True
    xp = array_module(arrays[0])
    flat = [xp.ascontiguousarray(a).reshape(-1).view(xp.uint8) for a in arrays]
    same = [xp.array_equal(a, xp.ascontiguousarray(b).reshape(-1).view(xp.uint8))
            for a, b in zip(flat, others)]
    return bool(xp.all(xp.stack(same)))


class Recording:
    """The ops of one call, as they run: each a (function, input slots, output slots). A slot
    is an array's place in the list: fn's inputs, then each array as made (an op's output and
    what it saved, a constant, a derived copy), found by ``id`` (all held: no id reused)."""

    def __init__(self, arrays):
        self.thread = threading.get_ident()
        self.where, self.arrays, self.steps, self.constants = {}, [], [], []
        self.reason = None      # why a replay could not repeat this call, once refused
        self.inputs = len(arrays)
        for array in arrays:
            self._new(array)

    def _new(self, array):
        self.where[id(array)] = slot = len(self.arrays)
        self.arrays.append(array)
        return slot

    def refuse(self, why):
        """No replay of this call: ``why``. The arrays held so far are let go at once."""
        if self.reason is None:
            self.reason, self.where, self.arrays, self.steps = why, None, None, None

    def record(self, op, arrays, out):
        """``apply`` ran ``op`` on ``arrays`` and made ``out`` (and ``out.saved``)."""
        if self.reason is not None:
            return
        if threading.get_ident() != self.thread:
            return self.refuse(f"{op!r} ran on another thread")
        slots = self._slots(arrays, f"{op!r} read")
        forward, held = op.forward, _array_fields(op)
        if held and slots is not None:  # (Where's mask, max pooling's argmax: of this call?)
            fields = self._slots([a for _, _, a in held], f"{op!r} holds (labels?)")
            slots = None if fields is None else fields + slots
            forward = _Rebuilt(op, held).forward
        if slots is None:
            return
        saved = tuple(self._new(a) for a in out.saved) if op.saves else ()
        self.steps.append((forward, slots, self._new(out.data), saved))

    def beside(self, fn, arrays, out):
        """``out`` is ``fn(*arrays)``, computed beside the ops (``autodiff.beside``)."""
        slots = None if self.reason is not None else self._slots(arrays, f"{fn!r} read")
        if slots is not None:
            self.steps.append((fn, slots, self._new(out), ()))

    def _slots(self, arrays, what):
        """The slots of ``arrays``, or None, the recording refused, where one is unknown."""
        try:
            return tuple([self.where[id(a)] for a in arrays])
        except KeyError:
            self.refuse(f"{what} an array that no op made and the function was not given "
                        "(made in Python beside the ops): a replay would reuse it")
            return None

    def constant(self, array):
        """``array`` depends on shapes and numbers alone: replayed as it is."""
        if self.reason is None:
            self.constants.append(self._new(array))

    def derived(self, array, source):
        """``array`` is ``source`` copied, cast or moved (``tensor.owned``): replayed as that
        conversion of the replay's ``source``, where known."""
        slot = None if self.reason is not None else self.where.get(id(source))
        if slot is not None and array is not source:
            self.steps.append((_Converted(array).forward, (slot,), self._new(array), ()))

    def replay(self, outputs):
        """The ``Replay`` whose results are ``outputs`` (arrays made in the call), or None
        where the recording was refused (``reason`` says why)."""
        if self.reason is None:
            try:
                results = [self.where[id(a)] for a in outputs]
            except KeyError:
                self.refuse("a result that no op made (computed beside the engine's ops)")
        if self.reason is not None:
            return None
        needed, live = set(results), []     # the steps a result depends on, last first
        for step in reversed(self.steps):   # (a forward is a function of its inputs alone:
            if needed.intersection((step[2],) + step[3]):   # the inner losses' values go)
                needed.update(step[1])
                live.append(step)
        live.reverse()
        last = {}   # slot → the last step that reads it
        for k, (_, slots, _, _) in enumerate(live):
            for slot in slots:
                last[slot] = k
        keep = set(results) | set(self.constants)
        free = [[] for _ in live]
        for k, (_, _, out, saved) in enumerate(live):   # made, never read: let go at once
            free[k] += [slot for slot in (out,) + saved if slot not in last and slot not in keep]
        for slot, k in last.items():
            if slot not in keep:
                free[k].append(slot)
        constants = {slot: self.arrays[slot] for slot in self.constants if slot in needed}
        steps = [step + (tuple(f),) for step, f in zip(live, free)]
        return Replay(self.inputs, constants, steps, results)


class Replay:
    """A recorded call as straight-line Python: one line a step, each forward called on the
    arrays the step read, its result (and what it saved) named, each array let go (``del``)
    after the last step that reads it. ``source`` is that code, to read (a sinusoid
    meta-iteration is some 470 lines); it runs without the engine's Python around each op.

    >>> import minimeta as mm, numpy as np
    >>> traced = Traced(lambda x: mm.exp(mm.tensor(x)) * 2.0)
    >>> _ = [traced(np.zeros(2)) for _ in range(2)]
    >>> print(next(iter(traced.entries.values())).replay.source)
    def replay(arrays):
        a0, = arrays
        a1 = f0(a0)  # _Converted
        del a0
        a2 = f1(a1)  # Exp
        del a1
        a4 = f2(a2, a3)  # Mul
        del a2
        return [a4]
    """

    __slots__ = ("source", "run")

    def __init__(self, inputs, constants, steps, results):
        names = {f"a{slot}": array for slot, array in constants.items()}   # read, never set
        lines = ["def replay(arrays):"]
        if inputs:
            lines.append(f"    {', '.join(f'a{i}' for i in range(inputs))}{',' * (inputs == 1)}"
                         " = arrays")
        for k, (forward, ins, out, saved, free) in enumerate(steps):
            names[f"f{k}"] = forward
            made = f"a{out}, ({''.join(f'a{i}, ' for i in saved).rstrip()})" if saved \
                else f"a{out}"
            lines.append(f"    {made} = f{k}({', '.join(f'a{i}' for i in ins)})  "
                         f"# {_label(forward)}")
            if free:
                lines.append("    del " + ", ".join(f"a{i}" for i in free))
        lines.append(f"    return [{', '.join(f'a{i}' for i in results)}]")
        self.source = "\n".join(lines)
        exec(compile(self.source, "<minimeta replay>", "exec"), names)
        self.run = names["replay"]

    def __call__(self, arrays):
        return self.run(arrays)


def _label(forward):
    """What a step runs, for the reader of ``Replay.source``: the primitive's name."""
    owner = getattr(forward, "__self__", None)
    owner = owner.op if isinstance(owner, _Rebuilt) else owner
    return type(owner).__name__ if owner is not None and not isinstance(owner, type) \
        else getattr(forward, "__name__", repr(forward))


class _Converted:
    """A copy, cast or move of an input, as ``tensor.owned`` made it: same dtype and device."""

    __slots__ = ("dtype", "device")

    def __init__(self, like):
        self.dtype, self.device = like.dtype, device_of(like)

    def forward(self, a):
        return to_device(a, self.device).astype(self.dtype, copy=False)


class _Rebuilt:
    """An op whose fields hold arrays of the call (``Where``'s mask, max pooling's argmax),
    replayed as a copy of it with the replay's arrays in those fields (they come first)."""

    __slots__ = ("op", "held")

    def __init__(self, op, held):
        self.op, self.held = op, [(name, k) for name, k, _ in held]

    def forward(self, *arrays):
        op = self.op
        copied = object.__new__(type(op))
        for name in _field_names(type(op)):
            if hasattr(op, name):
                setattr(copied, name, getattr(op, name))
        if hasattr(op, "__dict__"):
            copied.__dict__.update(op.__dict__)
        for (name, k), array in zip(self.held, arrays):
            if k is None:
                setattr(copied, name, array)
            else:   # an array inside a tuple or list (an index): a new one, the op's kept
                value = list(getattr(copied, name))
                value[k] = array
                setattr(copied, name, type(getattr(op, name))(value))
        return copied.forward(*arrays[len(self.held):])


_FIELDS = {}    # a primitive's class → the names in its __slots__ (its static arguments)


def _field_names(cls):
    """The names in the ``__slots__`` of ``cls`` and its bases (a string is one name)."""
    names = _FIELDS.get(cls)
    if names is None:
        slots = [c.__dict__.get("__slots__", ()) for c in cls.__mro__]
        names = _FIELDS[cls] = [n for s in slots for n in ((s,) if isinstance(s, str) else s)]
    return names


def _array_fields(op):
    """[(field name, position in it or None, array)] for the arrays that ``op``'s fields
    hold, alone or in a tuple or list. A primitive's static arguments are shapes, axes and
    flags; an array among them holds values of the call (a mask, an index, labels)."""
    fields = [(name, getattr(op, name, None)) for name in _field_names(type(op))]
    fields += list(getattr(op, "__dict__", {}).items())
    held = []
    for name, value in fields:
        if _is_array(value):
            held.append((name, None, value))
        elif isinstance(value, (tuple, list)):
            held += [(name, k, v) for k, v in enumerate(value) if _is_array(v)]
    return held


def _is_array(value):
    return isinstance(value, np.ndarray) or device_of(value) == "cuda"
