"""minimeta: a teaching-grade autodiff engine for meta-learning, gradients of any order.

Layers, each importing only those below it:

    kernels (minimeta.kernels)  arrays in, arrays out: NumPy references and accelerated versions
    engine                      Tensor, primitives, reverse-mode autodiff (any order)
    functional                  softmax, cross-entropy, conv2d, attention ... as compositions
    nn, optim, io               modules with functional parameters, optimizers, checkpoints
    learners                    MAML, Reptile, ProtoNet ...
    data                        stands apart: NumPy arrays only

The top level re-exports the engine's functions, so ``mm.exp``, ``mm.grad`` and ``mm.tensor``
are the engine's. The whole reading order is one list, ``reading.py``.

Read next: ``minimeta/engine/__init__.py`` (the engine, and its reading order).
"""
from . import _kernels_path  # noqa: F401  (makes ``minimeta.kernels`` importable from a checkout)
from .engine import *  # noqa: F401,F403
from .engine import __all__ as _engine_all
from .gradcheck import gradcheck, GradcheckError, GradcheckWarning

__version__ = "0.1.0"
__all__ = list(_engine_all) + ["gradcheck", "GradcheckError", "GradcheckWarning"]
