"""Numerical gradient checks of any order, for the engine and for users' own functions.

``gradcheck(f, inputs, order=k)`` compares, for each input x_i, a random direction u and a
random output weighting v,

    analytic  ⟨u, vjp_i(v)⟩        (reverse mode, through the engine)
    numeric   ⟨v, f(x + εu) − f(x − εu)⟩ / 2ε   (central difference: f in the leaves' dtype,
                                               differenced, then weighted in float64)

Then, for ``order > 1``, it recurses on the function x ↦ vjp(v)(x), whose own VJP exercises the
graph built with ``create_graph=True`` (the scheme of HIPS autograd's ``check_grads``).

Composition (``compose``, on by default from order 2). Checked alone, a primitive's VJP only
ever receives the constant weighting v as its incoming gradient g, so a VJP that *detaches* g
(returns a correct value that is not differentiable in g) would pass every order. So each level
checks instead

    f̃(x) = post(f(pre(x))),   pre(x) = x + c·r·lc((x − x₀) / r),   post(y) = y + c·s·lc(y / s)

with lc = log cosh, x₀ the point of the check (pre(x₀) = x₀: the check stays at the point the
caller chose, inside the function's domain), r = max(1, |x₀|) per input component and
s = max(1, |f(x₀)|) per output component (so the maps bend on the scale of the values). The
gradient reaching f is then g = v (1 + c·tanh(y / s)), which depends on x, and every order of a
linear op is non-trivial (post'' = (c / s)·sech²(y / s) > 0 everywhere: never 0 = 0). The maps
are built so that the check itself cannot mislead: their slopes 1 ± c never vanish (a slope of
0 would hide the components where it vanished: y + c·y², the map used before, had one at
y = −1/2c), and they grow no faster than linearly, so nesting them order after order neither
overflows nor swamps f's own values (y + c·y² squared them at every order).
``GradcheckReport.scale`` records the largest |analytic| value per order, so a caller can
assert that a check compared something.

The inputs reach ``f`` in the memory layout they were given in (a Fortran-ordered array or a
strided view stays one: ``testing.arrays`` draws them so that kernels see every layout; a
composed level hands ``f`` pre(x) laid out as x was, ``_relaid``), and the finite-difference
step is ``eps`` times max(1, |x|) entry by entry (u scaled by it), so that one large entry does
not coarsen the step of the small ones beside it.

What a pass proves: for each order and input, one random direction u (``directions`` of them
with that argument; one for each decade of the entries' sizes, so that large entries do not
drown small ones) agrees within ``atol + rtol · max(|analytic|, |numeric|)``. A gradient
wrong in a single entry of n moves ⟨u, ·⟩ by that entry's share only, so a small error in one
entry of many can pass one direction: check with a few ``directions`` or seeds. ``atol`` is
absolute: a function of tiny values (|f| ~ 1e-8) passes with a gradient off by 2×; scale it.

Read next: ``minimeta/gradcheck_explain.py`` (why a gradient check failed, in words).
"""
import numbers
import warnings

import numpy as np

from .engine import Tensor, grad, set_grad_enabled
from .engine import ops
from .gradcheck_explain import blame, entry, failure, quotient
from .kernels.threads import user_stacklevel

CURVE = 0.25  # c above: the curvature of the pre- and post-maps (slopes within 1 ± c)


class GradcheckError(AssertionError):
    """A derivative disagreed with its finite-difference estimate."""


class GradcheckWarning(UserWarning):
    """A check that passed but compared only zeros: it proved nothing."""


class GradcheckReport(dict):
    """``{order: largest absolute error}``; ``.scale`` is ``{order: largest |analytic|}``,
    ``.numeric`` ``{order: largest |numeric|}``, ``.relative``
    ``{order: largest error / max(1, |analytic|, |numeric|)}`` and ``.by_input``
    ``{input: largest |analytic| or |numeric|, over the orders}``."""

    def __init__(self):
        super().__init__()
        self.scale, self.relative, self.numeric, self.by_input = {}, {}, {}, {}


def _layout_of(array):
    """'C', 'F' or 'strided': the memory layout of an input, to give ``f`` the same."""
    if not isinstance(array, np.ndarray) or array.ndim == 0 or array.flags.c_contiguous:
        return "C"
    return "F" if array.flags.f_contiguous else "strided"


def in_layout(values, kind):
    """``values`` laid out as ``kind`` ('C', 'F' or 'strided': a step of 2 in the last axis);
    ``testing.arrays`` draws its layouts with it too."""
    if kind == "F" and values.ndim > 0:   # (NumPy's asfortranarray makes a 0-d array 1-d)
        return np.asfortranarray(values)
    if kind == "strided" and values.ndim > 0:
        big = np.zeros(values.shape[:-1] + (2 * values.shape[-1],), dtype=values.dtype)
        big[..., ::2] = values
        return big[..., ::2]
    return values


def _leaves(arrays, dtype, layouts=None):
    layouts = layouts or ["C"] * len(arrays)
    return [Tensor(in_layout(np.array(a, dtype=dtype), kind), requires_grad=True)
            for a, kind in zip(arrays, layouts)]


def _logcosh(t):
    """log cosh t, smooth (no kink at 0, unlike |t| + log1p(e^−2|t|)); |t| stays small here."""
    return ops.log((ops.exp(t) + ops.exp(-t)) * 0.5)


def _flat_vjp(f, v):
    """The function z ↦ concat(vec(vjp_i(v))) whose derivatives are f's next order."""
    def vjp_fn(*zs):
        y = f(*zs)
        if not y.requires_grad:
            return ops.zeros((sum(z.size for z in zs),), dtype=y.dtype)
        gs = grad(y, list(zs), grad_outputs=[Tensor(v, dtype=y.dtype)], create_graph=True,
                  allow_unused=True)
        parts = [ops.reshape(g if g is not None else ops.zeros(z.shape, dtype=z.dtype), (-1,))
                 for g, z in zip(gs, zs)]
        return ops.concatenate(parts) if parts else ops.zeros((0,))

    return vjp_fn


def _relaid(t, kind):
    """``t`` (in whatever layout the ops that computed it gave) as a Tensor of the same values
    laid out as ``kind``, made of differentiable views and copies: at composed levels ``f``
    gets pre(x), and had got it in C order whatever the caller's layout, so only order 1
    uncomposed had shown a kernel an input in another layout (a known gap, closed
    2026-12-03)."""
    if t.ndim == 0 or kind == "C":
        return t
    if kind == "F":                   # the reversed shape in C order, transposed: an F view
        reverse = tuple(range(t.ndim))[::-1]
        flat = ops.reshape(ops.transpose(t, reverse), (t.size,))     # the copy
        return ops.transpose(ops.reshape(flat, t.shape[::-1]), reverse)
    pairs = ops.stack([t, ops.zeros(t.shape, dtype=t.dtype)], axis=-1)   # (..., n, 2)
    return ops.reshape(pairs, t.shape[:-1] + (2 * t.shape[-1],))[..., ::2]


def _composed(f, arrays, dtype, layouts):
    """x ↦ post(f(pre(x))) (module docstring): the incoming gradient of f depends on x."""
    centres = [np.array(a, dtype=dtype) for a in arrays]
    reach = [np.maximum(1.0, np.abs(x0)) for x0 in centres]
    y0 = _output(f, _leaves(arrays, dtype, layouts))
    scale = np.maximum(1.0, np.abs(np.asarray(y0.numpy(), dtype=np.float64)))

    def f_tilde(*xs):
        shifted = [_relaid(x + CURVE * r * _logcosh((x - x0) / r), kind)
                   for x, x0, r, kind in zip(xs, centres, reach, layouts or ["C"] * len(xs))]
        f_tilde.f_output = y = f(*shifted)    # (``_check_once``: f's own gradients)
        s = Tensor(scale.astype(y.dtype))
        return y + CURVE * s * _logcosh(y / s)

    return f_tilde


def _output(f, xs):
    """f(*xs), refused in one line unless it is a Tensor."""
    y = f(*xs)
    if not isinstance(y, Tensor):
        raise TypeError(f"gradcheck: the function must return a Tensor, got {type(y).__name__}")
    return y


def _check_once(f, arrays, level, rng, eps, tols, report, dtype, layouts, composed,
                directions):
    xs = _leaves(arrays, dtype, layouts)
    y = _output(f, xs)
    v = rng.standard_normal(y.shape)
    if y.requires_grad:
        vjps = grad(y, xs, grad_outputs=[Tensor(v, dtype=y.dtype)], allow_unused=True)
        _same_in_any_layout(y, xs, v, vjps, tols, level)
        inner = getattr(f, "f_output", None)   # composed: the post map hands f a C-ordered
        if inner is not None and inner.requires_grad:   # gradient whatever v's layout
            _same_in_any_layout(inner, xs, v, grad(inner, xs, grad_outputs=[
                Tensor(v, dtype=inner.dtype)], allow_unused=True), tols, level)
    else:
        vjps = [None] * len(xs)
    for i, x in enumerate(arrays):
        scale = np.maximum(1.0, np.abs(x))
        laid = "" if layouts is None or layouts[i] == "C" else \
            {"F": ", Fortran-ordered", "strided": ", a strided view"}[layouts[i]]
        for part, u in _directions(rng, scale, directions):
            analytic = 0.0 if vjps[i] is None else float(np.sum(vjps[i].numpy() * u))

            def at(step, w=u):     # (``entry`` moves one entry at a time: w one-hot)
                shifted = [np.array(a, dtype=np.float64) for a in arrays]
                shifted[i] = shifted[i] + step * w
                # recorded, not under no_grad: f may take gradients itself (an inner loop)
                return np.asarray(f(*_leaves(shifted, dtype, layouts)).numpy(),
                                  dtype=np.float64)

            numeric = quotient(at, eps, v)
            report.by_input[i] = max(report.by_input.get(i, 0.0), abs(analytic), abs(numeric))
            _compare(analytic, numeric, tols, report, level, lambda: GradcheckError(failure(
                at, v, analytic, numeric, tols, eps, level, (i, laid + part), x, dtype,
                y.dtype, composed, blame(y, xs, v, u, i, at, eps, tols, arrays, level) +
                entry(at, v, vjps[i], scale, eps, tols))))
    return v


def _same_in_any_layout(y, xs, v, vjps, tols, level):
    """The gradients again, with the incoming gradient v Fortran-ordered (or, for one axis, a
    strided view), which the engine hands a VJP too (a transpose's gradient is a view): a VJP
    whose kernel assumed a C-ordered v had passed every check, v having always been one (an
    audit of gradcheck, 2026-12-03). At a composed level ``_check_once`` calls it for f's own
    output too: the post map's gradient is a new C-ordered array whatever v's layout, so f's
    VJPs had seen only C order at every composed level, and from order 2 on every level is
    (a mutation audit, 2026-12-04)."""
    if y.ndim == 0 or y.size < 2:
        return
    kind = "F" if y.ndim > 1 else "strided"
    again = grad(y, xs, grad_outputs=[Tensor(in_layout(v.astype(y.dtype), kind))],
                 allow_unused=True)
    for i, (x, first, second) in enumerate(zip(xs, vjps, again)):
        a, b = (np.zeros(x.shape) if g is None else np.asarray(g.numpy(), dtype=np.float64)
                for g in (first, second))
        gap = np.abs(a - b)
        if not np.all(gap <= tols[0] + tols[1] * np.maximum(np.abs(a), np.abs(b))):
            laid = "Fortran-ordered" if kind == "F" else "a strided view"
            raise GradcheckError(
                f"gradcheck: order-{level} gradient w.r.t. input {i} changes when the "
                f"incoming gradient is {laid} instead of C-ordered (largest difference "
                f"{np.nanmax(gap) if gap.size else 0:.3g}): does a VJP, or its kernel, assume "
                "a C-ordered gradient? (np.ascontiguousarray it)")


def _watched(f):
    """``f``, refused in one line when it writes into the data of an input: its leaves are
    fresh copies here, so the check would pass, whereas in a graph the input's other users
    (and the VJPs that saved it) read the overwritten values."""
    def checked(*xs):
        before = [x.data.copy() if isinstance(x, Tensor) else None for x in xs]
        y = f(*xs)
        for i, (x, old) in enumerate(zip(xs, before)):
            if old is not None and not np.array_equal(x.data, old, equal_nan=True):
                raise GradcheckError(f"gradcheck: f wrote into input {i} (its values changed "
                                     "during the call): an op must not write into its "
                                     "inputs, which other ops and saved VJPs still read")
        return y

    return checked


def _directions(rng, scale, directions):
    """(which entries, u) for each direction of one input: u random, times each entry's
    step scale max(1, |x|). Entries of different decades of size get directions of their own
    (u zero elsewhere): in one direction, an entry of 1e4 would outweigh an error in one of
    0.3 beside it, and the tolerance, which grows with the total, would swallow it."""
    decade = np.floor(np.log10(scale))
    groups = [None] if scale.size == 0 or decade.min() == decade.max() else \
        [decade == d for d in np.unique(decade)]
    for group in groups:
        for _ in range(directions):
            u = rng.standard_normal(scale.shape) * scale
            if group is None:
                yield "", u
            else:
                low = 10.0 ** decade[group].min()
                yield f", its entries of size {low:.0e} to {10 * low:.0e}", u * group


def _compare(analytic, numeric, tols, report, level, failure):
    """Record one comparison in ``report``; raise ``failure()`` when it is off."""
    atol, rtol = tols
    err = abs(analytic - numeric)
    report[level] = max(report.get(level, 0.0), err)
    report.scale[level] = max(report.scale.get(level, 0.0), abs(analytic))
    report.numeric[level] = max(report.numeric.get(level, 0.0), abs(numeric))
    report.relative[level] = max(report.relative.get(level, 0.0),
                                 err / max(1.0, abs(analytic), abs(numeric)))
    if not err <= atol + rtol * max(abs(analytic), abs(numeric)):  # also catches NaN
        raise failure()


def gradcheck(f, inputs, order=1, eps=1e-6, atol=1e-6, rtol=1e-5, seed=0, compose=None,
              dtype=np.float64, directions=1, partial=None):
    """Check derivatives of ``f`` up to ``order`` at ``inputs``; raise ``GradcheckError`` if off.

    ``f`` takes Tensors and returns a Tensor (any shape); ``inputs`` are arrays of real numbers,
    all differentiated (close over a mask or indices: ``lambda a: f(a, mask)``); ``seed`` (an
    integer >= 0) draws the directions, other seeds other ones. ``compose`` (default: on when
    ``order >= 2``) checks each order through smooth maps before and after ``f`` (module
    docstring), which proves every VJP differentiable in its incoming gradient. The leaves
    are made with ``dtype`` (float64; a float32 check needs a larger ``eps`` and tolerances,
    such as ``selfcheck.F32``'s ``eps=1e-3, atol=2e-3, rtol=2e-3`` for values of order 1,
    at which a VJP off by 1% may pass). ``directions``: random directions per input and
    order. ``atol`` is absolute: for a function of tiny values, scale it to order 1 or lower
    ``atol``. ``partial`` (default: on for two inputs or more) checks every order again with
    a drawn subset of the inputs held constant (Tensors that need no gradient), since a VJP
    skips an input that needs none and that branch is code of its own (``_held_constant``).
    Each order also takes the gradients with a Fortran-ordered v, which must not change them,
    and an ``f`` that writes into an input is refused (``_watched``). Check at a point
    without symmetries (not all ones: a VJP that swaps its inputs' gradients is right there).
    Returns a ``GradcheckReport``: ``{order: largest absolute error}``, with ``.scale``.

    >>> import minimeta as mm, numpy as np
    >>> errs = mm.gradcheck(lambda a: (a * a).tanh().sum(), [np.array([0.3, -1.2])], order=2)
    >>> sorted(errs), errs.scale[2] > 0
    ([1, 2], True)
    >>> mm.gradcheck(lambda a: a.exp(), [np.ones(2)], order=0)
    Traceback (most recent call last):
    ...
    ValueError: gradcheck: order must be an integer >= 1, got 0
    """
    _check_arguments(f, inputs, order, eps, atol, rtol, compose, directions, partial, seed)
    compose = order >= 2 if compose is None else compose
    given = [x.data if isinstance(x, Tensor) else x for x in inputs]
    layouts = [_layout_of(x) for x in given]
    arrays = [np.array(x, dtype=np.float64) for x in given]
    for i, x in enumerate(arrays):
        if not np.isfinite(x).all():
            raise ValueError(f"gradcheck: input {i} holds {x[~np.isfinite(x)].flat[0]}: check "
                             "at a finite point")
    rng = np.random.default_rng(seed)
    report = GradcheckReport()
    fn = f = _watched(f)
    with set_grad_enabled(True):    # (under no_grad every analytic derivative had been 0)
        for level in range(1, order + 1):
            if compose:
                fn = _composed(fn, arrays, dtype, layouts)
            v = _check_once(fn, arrays, level, rng, eps, (atol, rtol), report, dtype,
                            layouts, compose, directions)
            fn = _flat_vjp(fn, v)
    if len(arrays) > 1 and partial is not False:     # (None: on, there)
        _held_constant(f, arrays, layouts, rng, report, dict(
            order=order, eps=eps, atol=atol, rtol=rtol, seed=seed + 1, compose=compose,
            dtype=dtype, directions=directions, partial=False))
    if report and not any(report.scale.values()) and not any(report.numeric.values()):
        warnings.warn("gradcheck: every derivative compared was 0, analytic and numeric: f "
                      "does not depend on its inputs here (does it use the Tensors passed in, "
                      "not a model's own parameters?); the check proved nothing",
                      GradcheckWarning, stacklevel=user_stacklevel())
    elif idle := [i for i, value in report.by_input.items() if not value]:  # one of several
        empty = [i for i in idle if arrays[i].size == 0]
        warnings.warn(f"gradcheck: every derivative with respect to input(s) {idle} compared "
                      f"was 0, analytic and numeric: " + (
                          f"input(s) {empty} are empty" if empty else "does f use the Tensors "
                          "passed in for them, not a model's own parameters?") +
                      "; the check proved nothing about them", GradcheckWarning,
                      stacklevel=user_stacklevel())
    return report


def _held_constant(f, arrays, layouts, rng, report, options):
    """The check again, of ``f`` with a drawn non-empty proper subset of its inputs held
    constant (Tensors that need no gradient), its errors merged into ``report``. A VJP written
    ``g * b if a.requires_grad else None`` has a branch for each input that needs no gradient;
    with every input a leaf that needs one, a VJP with those tests swapped had passed every
    order (an audit of gradcheck, 2026-12-03; the primitive table held some constant, users'
    checks did not)."""
    held = int(rng.integers(1, 2 ** len(arrays) - 1))
    free = [i for i in range(len(arrays)) if not held >> i & 1]

    def fn(*ts):
        args = [Tensor(in_layout(np.array(a, dtype=options["dtype"]), kind))
                for a, kind in zip(arrays, layouts)]
        for i, t in zip(free, ts):
            args[i] = t
        return f(*args)

    try:
        with warnings.catch_warnings():    # a part may compare only zeros; the whole did not
            warnings.simplefilter("ignore", GradcheckWarning)
            part = gradcheck(fn, [in_layout(arrays[i], layouts[i]) for i in free], **options)
    except GradcheckError as err:
        constant = [i for i in range(len(arrays)) if i not in free]
        raise GradcheckError(f"gradcheck: with input(s) {constant} held constant (Tensors that "
                             f"need no gradient: the VJP's branch for them), the others "
                             f"renumbered {dict(enumerate(free))}: "
                             f"{str(err).removeprefix('gradcheck: ')}") from None
    for mine, theirs in ((report, part), (report.scale, part.scale),
                         (report.relative, part.relative), (report.numeric, part.numeric)):
        for order, value in theirs.items():
            mine[order] = max(mine.get(order, 0.0), value)


def _check_arguments(f, inputs, order, eps, atol, rtol, compose, directions, partial, seed):
    """One-line errors for calls that would check something else than asked, or nothing."""
    if not callable(f):
        raise TypeError(f"gradcheck: f must be a function of Tensors, got an object of type "
                        f"{type(f).__name__}")
    if not isinstance(inputs, (list, tuple)) or not inputs:
        raise TypeError(f"gradcheck: inputs must be a list of arrays, one per argument of f, "
                        f"got {'an empty' if isinstance(inputs, (list, tuple)) else 'a'} "
                        f"{type(inputs).__name__} (write [x] for one input)")
    for i, x in enumerate(inputs):   # a bool, complex, None or str input had been cast to float
        if (kind := np.asarray(x.data if isinstance(x, Tensor) else x).dtype).kind not in "fiu":
            raise TypeError(f"gradcheck: input {i} holds {kind} values ({type(x).__name__}), "
                            "not real numbers: every input is differentiated; close over a side "
                            "input (a mask, indices): lambda a: f(a, mask)")
    for name, value in (("order", order), ("directions", directions), ("seed", seed)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or \
                value < (0 if name == "seed" else 1):   # (True had been order 1)
            raise ValueError(f"gradcheck: {name} must be an integer >= "
                             f"{0 if name == 'seed' else 1}, got {value!r}")
    for name, value in (("eps", eps), ("atol", atol), ("rtol", rtol)):   # ("1e-6", inf)
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or value == np.inf:
            raise ValueError(f"gradcheck: {name} must be a finite number, got {value!r}")
    if not eps > 0:
        raise ValueError(f"gradcheck: eps must be > 0, got {eps}")
    for name, value in (("atol", atol), ("rtol", rtol)):
        if not value >= 0:
            raise ValueError(f"gradcheck: {name} must be >= 0, got {value}")
    if compose not in (None, True, False):
        raise TypeError(f"gradcheck: compose must be True, False or None, got {compose!r}")
    if partial not in (None, True, False):
        raise TypeError(f"gradcheck: partial must be True, False or None, got {partial!r}")
