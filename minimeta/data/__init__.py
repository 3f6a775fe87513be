"""``minimeta.data``: task families and data sets as NumPy arrays (no Tensor, no engine import).

Read next: ``minimeta/data/episodes.py`` (the episode sampler).
"""
from .sinusoid import SinusoidTasks
from .episodes import EpisodeSampler
from . import fetch, omniglot

__all__ = ["SinusoidTasks", "EpisodeSampler", "fetch", "omniglot"]
