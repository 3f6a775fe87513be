"""NumPy reference of fused batch normalisation (training mode): the spec for ``norm_numba``.

Input x of shape (N, C, ...) (statistics over every axis but 1), weight w and bias b of (C,).

    forward:   μ, σ² (biased) per channel;  x̂ = (x − μ)/sqrt(σ² + eps);  y = x̂·w + b
    backward:  ĝ = g·w;  dx = (ĝ − mean(ĝ) − x̂·mean(ĝ·x̂))/sqrt(σ² + eps);  dw = Σ g·x̂;  db = Σ g

``batch_norm`` returns (y, μ, σ²); ``batch_norm_backward`` the packed concat(dx, dw, db).

Read next: ``kernels/select_ref.py`` (the elementwise select in NumPy: the spec).
"""
import numpy as np


def _axes(x):
    return (0,) + tuple(range(2, x.ndim))


def _per_channel(v, x):
    return v.reshape((1, -1) + (1,) * (x.ndim - 2))


def batch_norm(x, w, b, eps=1e-5):
    """Return (y, mean, biased variance)."""
    mean = x.mean(axis=_axes(x))
    var = ((x - _per_channel(mean, x)) ** 2).mean(axis=_axes(x))
    xhat = (x - _per_channel(mean, x)) / np.sqrt(_per_channel(var, x) + eps)
    return (xhat * _per_channel(w, x) + _per_channel(b, x)).astype(x.dtype), mean, var


def batch_norm_backward(x, w, b, g, eps=1e-5):
    """Packed concat(vec(dx), dw, db) of ⟨g, batch_norm(x, w, b)⟩."""
    axes = _axes(x)
    mean = x.mean(axis=axes)
    var = ((x - _per_channel(mean, x)) ** 2).mean(axis=axes)
    rstd = 1.0 / np.sqrt(_per_channel(var, x) + eps)
    xhat = (x - _per_channel(mean, x)) * rstd
    gh = g * _per_channel(w, x)
    dx = (gh - gh.mean(axis=axes, keepdims=True)
          - xhat * (gh * xhat).mean(axis=axes, keepdims=True)) * rstd
    dw, db = (g * xhat).sum(axis=axes), g.sum(axis=axes)
    return np.concatenate([dx.ravel(), dw, db]).astype(x.dtype)
