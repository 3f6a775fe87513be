"""``minimeta.data``: task families and data sets as NumPy arrays (no Tensor, no engine import).

Read ``sinusoid.py`` first, then ``omniglot.py`` and ``episodes.py``.
"""
from .sinusoid import SinusoidTasks
from .episodes import EpisodeSampler
from . import omniglot

__all__ = ["SinusoidTasks", "EpisodeSampler", "omniglot"]
