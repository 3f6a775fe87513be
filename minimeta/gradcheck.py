"""Numerical gradient checks of any order, for the engine and for users' own functions.

``gradcheck(f, inputs, order=k)`` compares, for each input x_i, a random direction u and a
random output weighting v,

    analytic  ⟨u, vjp_i(v)⟩        (reverse mode, through the engine)
    numeric   (⟨v, f(x + εu)⟩ − ⟨v, f(x − εu)⟩) / 2ε   (central difference, float64)

Then, for ``order > 1``, it recurses on the function x ↦ vjp(v)(x), whose own VJP exercises the
second-order graph built with ``create_graph=True`` (the scheme of HIPS autograd's
``check_grads``). Everything runs in float64; inputs of other dtypes are converted.

Read next: ``testing.py`` (hypothesis strategies to drive these checks).
"""
import numpy as np

from .engine import Tensor, grad, no_grad
from .engine import ops


class GradcheckError(AssertionError):
    """A derivative disagreed with its finite-difference estimate."""


def _leaves(arrays):
    return [Tensor(np.array(a, dtype=np.float64), requires_grad=True) for a in arrays]


def _inner(y, v):
    """⟨v, y⟩ as a float, or 0 when ``y`` is empty."""
    return float(np.sum(np.asarray(y.numpy(), dtype=np.float64) * v))


def _flat_vjp(f, v):
    """The function z ↦ concat(vec(vjp_i(v))) whose derivatives are f's next order."""
    def vjp_fn(*zs):
        y = f(*zs)
        if not y.requires_grad:
            return ops.zeros((sum(z.size for z in zs),))
        gs = grad(y, list(zs), grad_outputs=[Tensor(v)], create_graph=True, allow_unused=True)
        parts = [ops.reshape(g if g is not None else ops.zeros(z.shape), (-1,))
                 for g, z in zip(gs, zs)]
        return ops.concatenate(parts) if parts else ops.zeros((0,))

    return vjp_fn


def _check_once(f, arrays, level, rng, eps, atol, rtol, errors):
    xs = _leaves(arrays)
    y = f(*xs)
    if not isinstance(y, Tensor):
        raise TypeError(f"gradcheck: the function must return a Tensor, got {type(y).__name__}")
    v = rng.standard_normal(y.shape)
    if y.requires_grad:
        vjps = grad(y, xs, grad_outputs=[Tensor(v)], allow_unused=True)
    else:
        vjps = [None] * len(xs)
    for i, x in enumerate(arrays):
        u = rng.standard_normal(np.shape(x))
        analytic = 0.0 if vjps[i] is None else float(np.sum(vjps[i].numpy() * u))

        def at(step):
            shifted = [np.array(a, dtype=np.float64) for a in arrays]
            shifted[i] = shifted[i] + step * u
            with no_grad() if level == 1 else _nullcontext():
                return _inner(f(*_leaves(shifted)), v)

        numeric = (at(eps) - at(-eps)) / (2 * eps)
        err = abs(analytic - numeric)
        tol = atol + rtol * max(abs(analytic), abs(numeric))
        errors[level] = max(errors.get(level, 0.0), err)
        if not err <= tol:  # also catches NaN
            raise GradcheckError(
                f"gradcheck: order-{level} derivative w.r.t. input {i} (shape {np.shape(x)}) "
                f"is wrong: analytic {analytic:.10g}, numeric {numeric:.10g}, "
                f"|difference| {err:.3g} > tolerance {tol:.3g} (atol {atol}, rtol {rtol})"
            )
    return v


class _nullcontext:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def gradcheck(f, inputs, order=1, eps=1e-6, atol=1e-6, rtol=1e-5, seed=0):
    """Check derivatives of ``f`` up to ``order`` at ``inputs``; raise ``GradcheckError`` if off.

    ``f`` takes Tensors and returns a Tensor (any shape). Returns a dict ``{order: largest
    absolute error seen}``, so a caller can report how close the check was.

    >>> import minimeta as mm, numpy as np
    >>> errs = mm.gradcheck(lambda a: (a * a).tanh().sum(), [np.array([0.3, -1.2])], order=2)
    >>> sorted(errs)
    [1, 2]
    """
    if order < 1:
        raise ValueError(f"gradcheck: order must be >= 1, got {order}")
    arrays = [np.array(x.data if isinstance(x, Tensor) else x, dtype=np.float64)
              for x in inputs]
    rng = np.random.default_rng(seed)
    errors = {}
    fn = f
    for level in range(1, order + 1):
        v = _check_once(fn, arrays, level, rng, eps, atol, rtol, errors)
        fn = _flat_vjp(fn, v)
    return errors
