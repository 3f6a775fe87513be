"""``minimeta.learners``: meta-learning algorithms on functional parameters.

Optimization-based: ``MAML`` (exact second order; ``first_order=True`` for FOMAML), ``MetaSGD``,
``ANIL`` (``maml.py``), any of them with a meta-batch stacked into one batch
(``StackedTasks(learner)``, ``stacked.py``), and ``Reptile`` (``reptile.py``). Metric-based:
``ProtoNet``, ``MatchingNet`` (with optional full context embeddings) and ``RelationNet``
(``metric.py``). Model-based: ``SnailLearner``, SNAIL reading an episode as a sequence
(``snail.py``), ``MANNLearner``, a memory-augmented LSTM (``mann.py``), and ``CNP``, a conditional
neural process for regression (``cnp.py``). All of them are ``Learner``s (``base.py``); the wrapper
is not.

Read next: ``minimeta/learners/base.py`` (what every learner shares).
"""
from .maml import MAML, MetaSGD, ANIL
from .stacked import StackedTasks
from .reptile import Reptile
from .metric import ProtoNet, MatchingNet, RelationNet
from .snail import SnailLearner
from .mann import MANNLearner
from .cnp import CNP

__all__ = ["MAML", "MetaSGD", "ANIL", "StackedTasks", "Reptile", "ProtoNet", "MatchingNet",
           "RelationNet", "SnailLearner", "MANNLearner", "CNP"]
