"""``minimeta.data``: task families and data sets as NumPy arrays (no Tensor, no engine import).

Read ``sinusoid.py`` first.
"""
from .sinusoid import SinusoidTasks

__all__ = ["SinusoidTasks"]
