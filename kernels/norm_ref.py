"""NumPy reference of fused batch normalisation (training mode): the spec for ``norm_numba``.

Input x of shape (N, C, ...) (statistics over every axis but 1), weight w and bias b of (C,).
A stack of T batch norms, one per task, has x (T, N, C, ...) and w, b of (T, C) (statistics
over every axis but 0 and 2): the weight's rank says which.

    forward:   μ, σ² (biased) per channel;  x̂ = (x − μ)/sqrt(σ² + eps);  y = x̂·w + b
    backward:  ĝ = g·w;  dx = (ĝ − mean(ĝ) − x̂·mean(ĝ·x̂))/sqrt(σ² + eps);  dw = Σ g·x̂;  db = Σ g

``batch_norm`` returns (y, μ, σ²); ``batch_norm_backward`` the packed concat(dx, dw, db);
``batch_norm_double_backward`` the backward's own VJP (second-order MAML differentiates
through every batch norm's backward), packed concat(dx, dw, db, dg). And the simplest
per-channel ops, with the same layout: ``add_bias`` (y += b in place: the conv bias) and its
adjoint ``bias_grad`` (Σ g per channel: the bias's gradient).

Read next: ``kernels/select_ref.py`` (the elementwise select in NumPy: the spec).
"""
import numpy as np


def layout(x, w):
    """(the axes the statistics run over, the shape that broadcasts per-channel values against
    ``x``): all axes but the channel axis, or, for a stack (``w`` of (T, C); ``w`` None: not a
    stack), all but the task and channel axes. The one definition of the layout, also used by
    the composite (``engine/primitives/normalization.py``) and ``functional.batch_norm``.

    >>> layout(np.zeros((2, 5, 3, 4, 4)), np.zeros((2, 3)))
    ((1, 3, 4), (2, 1, 3, 1, 1))
    """
    if w is not None and w.ndim == 2:
        return stat_axes(x.ndim, True), (w.shape[0], 1, w.shape[1]) + (1,) * (x.ndim - 3)
    return stat_axes(x.ndim, False), (1, x.shape[1]) + (1,) * (x.ndim - 2)


def stat_axes(ndim, stacked):
    """The axes per-channel statistics run over on an array of rank ``ndim``: all but the
    channel axis 1, or, on a stack, all but the task axis 0 and the channel axis 2."""
    return (1,) + tuple(range(3, ndim)) if stacked else (0,) + tuple(range(2, ndim))


def _wide(*arrays):
    """The arrays in float64, where the three batch-norm functions compute (casting back at
    the end), as the numba kernels do: in float32, NumPy's sums over the image axes run one
    element after another, and at activations of mean 1e4 the mean (so x̂) was off by 3e-3 to
    2.5e-2, where the kernels' was 4e-7 (an audit, 2026-12-03)."""
    return [a.astype(np.float64, copy=False) for a in arrays]


def _per_channel(v, x, w):
    """Per-channel values ``v`` (shaped like ``w``) shaped to broadcast against ``x``."""
    return v.reshape(layout(x, w)[1])


def add_bias(y, b):
    """y += b per channel, in place, and return y: b (C,) on y (N, C, ...), or b (T, C) on a
    stack (T, N, C, ...). The convolution's bias (``engine/primitives/conv.py``), added to the
    conv kernel's fresh output without allocating another.

    >>> add_bias(np.zeros((1, 2, 2)), np.array([1.0, 2.0]))
    array([[[1., 1.],
            [2., 2.]]])
    """
    y += _per_channel(b, y, b).astype(y.dtype, copy=False)
    return y


def bias_grad(g, stacked=False):
    """Σ g per channel: over every axis of g (N, C, ...) but the channel axis, giving (C,), or
    on a stack (T, N, C, ...) (``stacked``) over all but the task and channel axes, giving
    (T, C). The adjoint of ``add_bias``: the conv bias's gradient.

    >>> bias_grad(np.arange(8.0).reshape(2, 2, 2))
    array([10., 18.])
    >>> bias_grad(np.ones((2, 3, 4, 5)), stacked=True)       # 2 tasks, 4 channels
    array([[15., 15., 15., 15.],
           [15., 15., 15., 15.]])
    """
    return g.sum(axis=stat_axes(g.ndim, stacked))


def batch_norm(x, w, b, eps=1e-5):
    """Return (y, mean, biased variance); mean and variance are shaped like ``w``.

    >>> y, mean, var = batch_norm(np.arange(8.0).reshape(2, 2, 2), np.ones((2, 2)),
    ...                           np.zeros((2, 2)))         # a stack of 2 tasks, 2 channels
    >>> mean
    array([[1., 2.],
           [5., 6.]])
    """
    dtype, (x, w, b) = x.dtype, _wide(x, w, b)
    axes = layout(x, w)[0]
    mean = x.mean(axis=axes)
    var = ((x - _per_channel(mean, x, w)) ** 2).mean(axis=axes)
    xhat = (x - _per_channel(mean, x, w)) / np.sqrt(_per_channel(var, x, w) + eps)
    return tuple(a.astype(dtype) for a in (xhat * _per_channel(w, x, w)
                                            + _per_channel(b, x, w), mean, var))


def batch_norm_backward(x, w, b, g, eps=1e-5):
    """Packed concat(vec(dx), vec(dw), vec(db)) of ⟨g, batch_norm(x, w, b)⟩."""
    dtype, (x, w, b, g) = x.dtype, _wide(x, w, b, g)
    axes = layout(x, w)[0]
    mean = x.mean(axis=axes, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=axes, keepdims=True)
    rstd = 1.0 / np.sqrt(var + eps)
    xhat = (x - mean) * rstd
    gh = g * _per_channel(w, x, w)
    dx = (gh - gh.mean(axis=axes, keepdims=True)
          - xhat * (gh * xhat).mean(axis=axes, keepdims=True)) * rstd
    dw, db = (g * xhat).sum(axis=axes), g.sum(axis=axes)
    return np.concatenate([dx.ravel(), dw.ravel(), db.ravel()]).astype(dtype)


def batch_norm_double_backward(x, w, b, g, h, eps=1e-5):
    """Packed concat(vec(dx), dw, db, vec(dg)): the VJP of ``batch_norm_backward`` (the map
    (x, w, b, g) ↦ (gx, gw, gb)) for the packed cotangent h = concat(vec(hx), hw, hb), in
    about twenty array passes where the composite takes some 130 ops. With P(u) = u − mean(u) −
    x̂·mean(u·x̂) (per channel; P is self-adjoint), ĝ = g·w, A = mean(ĝ·x̂), r = 1/sqrt(σ² + eps)
    and M values per channel, gx = r·P(ĝ), so:

        dg = hb + hw·x̂ + w·r·P(hx)                     db = 0
        dw = Σ hx·r·P(g)
        dx = r·P(u) − s·r²·x̂/M,  u = hw·g − r·A·hx − r·mean(hx·x̂)·ĝ,  s = Σ hx·P(ĝ)

    (u is the cotangent reaching x̂, s the one reaching r; r·P(·) is x̂'s own VJP.) P is
    linear, so r·P(u) is taken as r·(hw·P(g) + P(u − hw·g)): an infinite hw then gives dx its
    ±inf (as PyTorch), where P(u) had met inf − inf (NaN for the whole channel).

    At an infinite g (an overflowed loss) dx and dw of its channel are NaN, and at an infinite
    hx dx and most of dg: the limits are ±inf (the map is linear in g and in h), but these
    formulas, as PyTorch's, meet inf − inf on the way (docs/ENGINE.md, "Special points").
    """
    dtype, (x, w, b, g, h) = x.dtype, _wide(x, w, b, g, h)
    axes = layout(x, w)[0]
    m, c = x.size // w.size, w.size
    hx = h[:x.size].reshape(x.shape)
    hw, hb = h[x.size:x.size + c].reshape(w.shape), h[x.size + c:].reshape(w.shape)
    mean = x.mean(axis=axes, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=axes, keepdims=True)
    r = 1.0 / np.sqrt(var + eps)
    xhat = (x - mean) * r
    wc = _per_channel(w, x, w)

    def proj(u):
        return u - u.mean(axis=axes, keepdims=True) - xhat * (u * xhat).mean(axis=axes,
                                                                             keepdims=True)

    gh, p_g = g * wc, proj(g)
    a = (gh * xhat).mean(axis=axes, keepdims=True)
    u_rest = -r * a * hx - r * (hx * xhat).mean(axis=axes, keepdims=True) * gh    # u − hw·g
    s = (hx * p_g * wc).sum(axis=axes, keepdims=True)                            # P(ĝ) = w·P(g)
    dx = r * (_per_channel(hw, x, w) * p_g + proj(u_rest)) - s * r * r * xhat / m
    dw = (hx * r * p_g).sum(axis=axes)
    dg = _per_channel(hb, x, w) + _per_channel(hw, x, w) * xhat + wc * r * proj(hx)
    return np.concatenate([dx.ravel(), dw.ravel(), np.zeros_like(b).ravel(),
                           dg.ravel()]).astype(dtype)
