"""``minimeta.data``: task families and data sets as NumPy arrays (no Tensor, no engine import).

Read ``sinusoid.py`` first, then ``omniglot.py``, ``fetch.py`` and ``episodes.py``.
"""
from .sinusoid import SinusoidTasks
from .episodes import EpisodeSampler
from . import fetch, omniglot

__all__ = ["SinusoidTasks", "EpisodeSampler", "fetch", "omniglot"]
