"""The engine: Tensor, the primitives, reverse-mode autodiff of any order.

Reading order, which is also the import order (each file imports only those before it):
``backend.py`` → ``tensor.py`` → ``anomaly.py`` → ``grad_mode.py`` → ``autodiff.py`` →
``primitives/`` (each file its primitive classes and their functions; the "Read next" chain
then walks through ``kernels/``, what the primitives run, before coming back) → ``ops.py`` (the
namespace, and the Tensor's operators) → ``workers.py`` (the tasks of a meta-batch on
threads) → ``derivatives.py`` → ``replay.py`` (a call recorded once, then replayed). Nothing in
this package imports ``functional``, ``nn`` or anything above.

Read next: ``minimeta/engine/backend.py`` (devices: NumPy on the CPU, CuPy on a GPU).
"""
from .tensor import Tensor
from .anomaly import detect_anomaly, AnomalyError
from .autodiff import grad, backward, Primitive, apply
from .grad_mode import no_grad, set_grad_enabled, is_grad_enabled
from .ops import *  # noqa: F401,F403  (the public function list is ops.__all__)
from .ops import __all__ as _ops_all
from .derivatives import hvp, jacobian, hessian
from .replay import Traced

__all__ = ["Tensor", "grad", "backward", "no_grad", "set_grad_enabled", "is_grad_enabled",
           "Primitive", "apply", "hvp", "jacobian", "hessian", "detect_anomaly",
           "AnomalyError", "Traced"] + list(_ops_all)
