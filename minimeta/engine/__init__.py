"""The engine: Tensor, the primitives, reverse-mode autodiff of any order.

Reading order: ``tensor.py`` → ``ops.py`` → ``primitives/`` → ``autodiff.py`` → ``derivatives.py``.
Nothing in this package imports ``functional``, ``nn`` or anything above it.
"""
from .tensor import Tensor
from .autodiff import grad, backward, no_grad, set_grad_enabled, is_grad_enabled, Primitive, apply
from .derivatives import hvp, jacobian, hessian
from .anomaly import detect_anomaly, AnomalyError
from .ops import *  # noqa: F401,F403  (the public function list is ops.__all__)
from .ops import __all__ as _ops_all

__all__ = ["Tensor", "grad", "backward", "no_grad", "set_grad_enabled", "is_grad_enabled",
           "Primitive", "apply", "hvp", "jacobian", "hessian", "detect_anomaly",
           "AnomalyError"] + list(_ops_all)
