"""Why a gradient check failed: the words of its ``GradcheckError``.

``failure`` names the order, input and values of a failed comparison, with a hint where one
can be had (a NaN, rounding that swamps the step, a kink, a singularity); ``blame`` says, at
order 2 and above, which input's gradient block is the wrong one, and ``entry`` which entry;
``quotient`` is the central difference both sides use.

Read next: ``minimeta/testing.py`` (hypothesis strategies for property tests).
"""
import numpy as np

from .engine import Tensor, grad


def quotient(at, step, v):
    """⟨v, f(x + step·u) − f(x − step·u)⟩ / 2·step, the outputs differenced before they are
    weighted: an output entry the step leaves unchanged then adds an exact 0, not the rounding
    of a large ⟨v, f⟩ (which had swamped the slope of an input's small entries beside large
    ones: a correct ``a * a`` failed at [1e4, 0.5], found by probing, 2026-12-01)."""
    return float(np.sum((at(step) - at(-step)) * v)) / (2 * step)


def blame(y, xs, v, u, i, at, eps, tols, arrays, level):
    """At order k >= 2 the output is every input's order-(k−1) gradient, concatenated: the
    blocks (named by their input) whose derivative w.r.t. input ``i`` is off, as words; at
    order 1, whether ``f``'s output is outside the graph."""
    if not y.requires_grad and level == 1:
        return ("; f's output does not require grad: it was made outside the graph (through "
                "NumPy, .numpy(), .data or a constant), so every analytic derivative is 0")
    if not y.requires_grad:
        return (f"; the order-{level - 1} gradient does not require grad: a VJP made it outside "
                "the graph (through NumPy, .data or detach), so its derivatives read as 0")
    if level == 1 or len(arrays) < 2:
        return ""
    wrong, start = [], 0
    for j, a in enumerate(arrays):
        mask = np.zeros(v.shape)
        mask[start:start + a.size] = 1.0
        start += a.size
        (g,) = grad(y, [xs[i]], grad_outputs=[Tensor(v * mask, dtype=y.dtype)],
                    allow_unused=True)
        analytic = 0.0 if g is None else float(np.sum(g.numpy() * u))
        numeric = quotient(at, eps, v * mask)
        if not abs(analytic - numeric) <= tols[0] + tols[1] * max(abs(analytic), abs(numeric)):
            wrong.append(j)
    if not wrong:
        return ""
    names = " and ".join(f"input {j}" for j in wrong)
    return (f"; the wrong part is the order-{level - 1} gradient w.r.t. {names}, as input {i} "
            f"moves (look at the VJP that gives it)")


ENTRIES = 100   # an input of up to this many entries gets the one that is off named (``entry``)


def entry(at, v, gradient, scale, eps, tols):
    """The entry of an input whose derivative is off the most when it moves alone, as words
    (``failure`` had said which input only): each entry's quotient, two calls of ``f``, so
    only for inputs of up to ``ENTRIES`` entries; "" where no entry is off alone."""
    if scale.size > ENTRIES:
        return ""
    gradient = np.zeros(scale.shape) if gradient is None else gradient.numpy()
    off = []
    for j in np.ndindex(scale.shape):
        step = np.zeros(scale.shape)
        step[j] = scale[j]
        numeric = quotient(lambda s: at(s, step), eps, v) / scale[j]  # per unit of x[j]
        analytic = float(gradient[j])
        err = abs(analytic - numeric)
        if err > tols[0] + tols[1] * max(abs(analytic), abs(numeric)):
            off.append((err, j, analytic, numeric))
    if not off:
        return ""
    err, j, analytic, numeric = max(off, key=lambda o: o[0])
    return (f"; entry {j} is off the most ({len(off)} of {scale.size} are off): analytic "
            f"{analytic:.10g}, numeric {numeric:.10g} (the derivative of ⟨v, f⟩ in it)")


def failure(at, v, analytic, numeric, tols, eps, level, where, x, dtype, out_dtype,
             composed, blame=""):
    """The message of one failed comparison's ``GradcheckError``, with a hint where one can be
    had: f random (two calls at one point differ), a NaN, outputs whose rounding swamps the
    step, a point on a kink (the one-sided quotients differ), or a quotient that moves with the
    step (a kink or jump within it)."""
    atol, rtol = tols
    err, tol = abs(analytic - numeric), atol + rtol * max(abs(analytic), abs(numeric))
    step = f"step {eps:.3g}·max(1, |x|)"
    unit = np.finfo(out_dtype).eps if np.issubdtype(out_dtype, np.floating) else 0.0
    here, up, down = at(0.0), at(eps), at(-eps)
    touched = up != down     # outputs the step leaves alone add an exact 0 (``quotient``)
    noise = 2 * unit * float(np.sum((np.abs(v) * np.abs(here))[touched])) / (2 * eps)
    # a step that moved no value at all: its rounding over every output (noise is then 0)
    swallowed = 0.0 if touched.any() else \
        unit * float(np.sum(np.abs(v) * np.abs(here))) / eps
    if not np.array_equal(here, at(0.0), equal_nan=True):   # (had read as a kink)
        hint = ("; f gave other values at the same point when called again: is it random "
                "(dropout, sampling)? Fix its randomness (a seeded generator made inside f)")
    elif np.isnan(err):
        hint = f"; a NaN: is the point outside f's domain, or on a kink a {step} crosses?"
    elif unit * 100 > eps:   # the rounding of f's values swamps the step
        hint = (f"; f's values are {np.dtype(out_dtype).name}, whose rounding swamps a step of "
                f"{eps:.3g}: compute in float64, or raise eps and the tolerances")
    elif err < 2 * noise or abs(analytic) < 2 * swallowed:
        hint = (f"; f's values (up to {np.max(np.abs(here)):.3g}) round by about "
                f"{max(noise, swallowed):.3g} of the quotient, more than the step changes them: "
                "the check cannot tell here; check at a point of smaller values, or with a larger "
                "eps")
    else:
        def sides(plus, minus, s):   # one-sided quotients: right − left ~ f''·s if smooth
            return (float(np.sum((plus - here) * v)) / s, float(np.sum((here - minus) * v)) / s)
        up10, down10 = at(eps / 10), at(-eps / 10)
        (right, left), (right10, left10) = sides(up, down, eps), sides(up10, down10, eps / 10)
        finer = float(np.sum((up10 - down10) * v)) / (eps / 5)   # the quotient at a tenth
        # a kink's gap stays as the step shrinks; a smooth curve's shrinks with it
        if abs(right - left) > max(tol, 0.5 * err) and \
                abs(right10 - left10) > 0.5 * abs(right - left):
            hint = (f"; the one-sided quotients differ ({left:.10g} from the left, "
                    f"{right:.10g} from the right): a kink or a jump of f at the point or "
                    "within a step of it?")
        # a smooth curve's central difference errs by ~f'''·step²: at a tenth of the step,
        # about a hundredth of the error (a kink within the step follows no such law)
        elif abs(finer - numeric) > max(tol, 0.1 * err) and \
                err / 300 < abs(finer - analytic) < err / 30:
            hint = (f"; the difference quotient moves toward the analytic value as the step "
                    f"shrinks ({finer:.10g} at a tenth of it): f curves sharply within a step "
                    "of the point (near a singularity?): lower eps, or check farther from it")
        elif abs(finer - numeric) > max(tol, 0.1 * err):
            hint = (f"; the difference quotient moves with the step ({finer:.10g} at a tenth "
                    "of it): a kink or a jump of f within a step of the point?")
        else:
            hint = ""
    of = " of the composed function (compose=False checks f alone)" if composed else ""
    kinds = np.dtype(dtype).name if np.dtype(out_dtype) == np.dtype(dtype) else \
        f"{np.dtype(dtype).name} inputs, {np.dtype(out_dtype).name} output"
    i, part = where
    return (
        f"gradcheck: order-{level} derivative{of} w.r.t. input {i} (shape "
        f"{np.shape(x)}{part}) is wrong: analytic {analytic:.10g}, numeric {numeric:.10g}, "
        f"|difference| {err:.3g} > tolerance {tol:.3g} (atol {atol}, rtol {rtol}, "
        f"{step}, {kinds}){hint}{blame}")
