"""Numerical gradient checks of any order, for the engine and for users' own functions.

``gradcheck(f, inputs, order=k)`` compares, for each input x_i, a random direction u and a
random output weighting v,

    analytic  ⟨u, vjp_i(v)⟩        (reverse mode, through the engine)
    numeric   (⟨v, f(x + εu)⟩ − ⟨v, f(x − εu)⟩) / 2ε   (central difference, float64)

Then, for ``order > 1``, it recurses on the function x ↦ vjp(v)(x), whose own VJP exercises the
graph built with ``create_graph=True`` (the scheme of HIPS autograd's ``check_grads``).

Composition (``compose``, on by default from order 2). Checked alone, a primitive's VJP only
ever receives the constant weighting v as its incoming gradient g, so a VJP that *detaches* g
(returns a correct value that is not differentiable in g) would pass every order. So each level
checks instead

    f̃(x) = post(f(pre(x))),   pre(x) = x + c (x − x₀)²,   post(y) = y + c y²

with x₀ the point of the check (pre(x₀) = x₀: the check stays at the point the caller chose,
inside the function's domain). The gradient reaching f is then g = v (1 + 2c y(x)), which
depends on x, and every order of a linear op is non-trivial (the composite's second
derivative is Jᵀ diag(2cv) J + …, never 0 = 0). ``GradcheckReport.scale`` records the largest
|analytic| value per order, so a caller can assert that a check compared something.

Read next: ``minimeta/testing.py`` (hypothesis strategies for property tests).
"""
import numpy as np

from .engine import Tensor, grad
from .engine import ops

CURVE = 0.25  # c above: the curvature of the pre- and post-maps


class GradcheckError(AssertionError):
    """A derivative disagreed with its finite-difference estimate."""


class GradcheckReport(dict):
    """``{order: largest absolute error}``; ``.scale`` is ``{order: largest |analytic|}`` and
    ``.relative`` ``{order: largest error / max(1, |analytic|, |numeric|)}``."""

    def __init__(self):
        super().__init__()
        self.scale, self.relative = {}, {}


def _leaves(arrays, dtype):
    return [Tensor(np.array(a, dtype=dtype), requires_grad=True) for a in arrays]


def _inner(y, v):
    """⟨v, y⟩ as a float, or 0 when ``y`` is empty."""
    return float(np.sum(np.asarray(y.numpy(), dtype=np.float64) * v))


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


def _composed(f, arrays, dtype):
    """x ↦ post(f(pre(x))) (module docstring): the incoming gradient of f depends on x."""
    centres = [np.array(a, dtype=dtype) for a in arrays]

    def f_tilde(*xs):
        shifted = []
        for x, x0 in zip(xs, centres):
            d = x - x0
            shifted.append(x + CURVE * (d * d))
        y = f(*shifted)
        return y + CURVE * (y * y)

    return f_tilde


def _check_once(f, arrays, level, rng, eps, atol, rtol, report, dtype):
    xs = _leaves(arrays, dtype)
    y = f(*xs)
    if not isinstance(y, Tensor):
        raise TypeError(f"gradcheck: the function must return a Tensor, got {type(y).__name__}")
    v = rng.standard_normal(y.shape)
    if y.requires_grad:
        vjps = grad(y, xs, grad_outputs=[Tensor(v, dtype=y.dtype)], allow_unused=True)
    else:
        vjps = [None] * len(xs)
    for i, x in enumerate(arrays):
        u = rng.standard_normal(np.shape(x))
        analytic = 0.0 if vjps[i] is None else float(np.sum(vjps[i].numpy() * u))

        def at(step):
            shifted = [np.array(a, dtype=np.float64) for a in arrays]
            shifted[i] = shifted[i] + step * u
            # recorded, not under no_grad: f may take gradients itself (an inner loop)
            return _inner(f(*_leaves(shifted, dtype)), v)

        numeric = (at(eps) - at(-eps)) / (2 * eps)
        err = abs(analytic - numeric)
        tol = atol + rtol * max(abs(analytic), abs(numeric))
        report[level] = max(report.get(level, 0.0), err)
        report.scale[level] = max(report.scale.get(level, 0.0), abs(analytic))
        report.relative[level] = max(report.relative.get(level, 0.0),
                                     err / max(1.0, abs(analytic), abs(numeric)))
        if not err <= tol:  # also catches NaN
            raise GradcheckError(
                f"gradcheck: order-{level} derivative w.r.t. input {i} (shape {np.shape(x)}) "
                f"is wrong: analytic {analytic:.10g}, numeric {numeric:.10g}, "
                f"|difference| {err:.3g} > tolerance {tol:.3g} (atol {atol}, rtol {rtol})"
            )
    return v


def gradcheck(f, inputs, order=1, eps=1e-6, atol=1e-6, rtol=1e-5, seed=0, compose=None,
              dtype=np.float64):
    """Check derivatives of ``f`` up to ``order`` at ``inputs``; raise ``GradcheckError`` if off.

    ``f`` takes Tensors and returns a Tensor (any shape). ``compose`` (default: on when
    ``order >= 2``) checks each order through smooth maps before and after ``f`` (module
    docstring), which proves every VJP differentiable in its incoming gradient. The leaves
    are made with ``dtype`` (float64; a float32 check needs a larger ``eps`` and tolerances).
    Returns a ``GradcheckReport``: ``{order: largest absolute error}``, with ``.scale``.

    >>> import minimeta as mm, numpy as np
    >>> errs = mm.gradcheck(lambda a: (a * a).tanh().sum(), [np.array([0.3, -1.2])], order=2)
    >>> sorted(errs), errs.scale[2] > 0
    ([1, 2], True)
    >>> mm.gradcheck(lambda a: a.exp(), [np.ones(2)], order=0)
    Traceback (most recent call last):
    ...
    ValueError: gradcheck: order must be >= 1, got 0
    """
    if order < 1:
        raise ValueError(f"gradcheck: order must be >= 1, got {order}")
    compose = order >= 2 if compose is None else compose
    arrays = [np.array(x.data if isinstance(x, Tensor) else x, dtype=np.float64)
              for x in inputs]
    rng = np.random.default_rng(seed)
    report = GradcheckReport()
    fn = f
    for level in range(1, order + 1):
        if compose:
            fn = _composed(fn, arrays, dtype)
        v = _check_once(fn, arrays, level, rng, eps, atol, rtol, report, dtype)
        fn = _flat_vjp(fn, v)
    return report
