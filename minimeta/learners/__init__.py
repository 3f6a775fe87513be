"""``minimeta.learners``: meta-learning algorithms on functional parameters.

Optimization-based: ``MAML`` (exact second order; ``first_order=True`` for FOMAML), ``MetaSGD``,
``ANIL`` (``maml.py``) and ``Reptile`` (``reptile.py``). Metric-based: ``ProtoNet``,
``MatchingNet`` (with optional full context embeddings) and ``RelationNet`` (``metric.py``).
Read ``base.py`` first, then ``maml.py``.
"""
from .maml import MAML, MetaSGD, ANIL
from .reptile import Reptile
from .metric import ProtoNet, MatchingNet, RelationNet

__all__ = ["MAML", "MetaSGD", "ANIL", "Reptile", "ProtoNet", "MatchingNet", "RelationNet"]
