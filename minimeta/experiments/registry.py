"""The learners the command line trains, by name: their family, how each is built, and the
defaults of the paper it comes from.

``LEARNERS[name]`` is a ``LearnerSpec``: the ``family`` ("optimization": an inner loop on a model
whose head has one output per class, or one for a regression; "metric": an embedding compared across
the episode; "model": a network that reads the support set and predicts, no inner loop), the
``datasets`` it works on, ``build(config) → (model, learner)`` (the model is the Module whose state
is checkpointed), the paper's ``defaults`` by training way count, the ``options`` of ``RunConfig``
that only some learners take, and whether an outer optimizer (Adam) updates the meta-parameters
(Reptile updates θ itself).

    >>> LEARNERS["maml"].family, LEARNERS["protonet"].default_ways
    ('optimization', 60)
    >>> LEARNERS["reptile"].outer_optimizer, "fce" in LEARNERS["matching"].options
    (False, True)

``config.py`` reads these tables when it fills a run's unset settings; ``build`` is what a
training run and ``minimeta eval`` call.

A learner of your own joins by name: put a ``LearnerSpec`` in ``LEARNERS`` (in the process that
trains, and in the one that evaluates), and ``RunConfig(learner=name)``, ``train`` and
``fewshot.evaluate`` take it as one of these (``tests/test_extending.py`` registers one).
Its ``build`` must return the model whose ``named_parameters()`` the learner trains: the
checkpoint holds the model's state, and ``train`` refuses a learner trained on other Tensors,
unless its ``state_dict()`` holds them (Meta-SGD's rates: ``own``).

Read next: ``minimeta/experiments/options.py`` (what a run's command line takes: bounds, flags).
"""
from collections import Counter
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .. import nn
from ..data import omniglot
from ..kernels.threads import available_memory
from ..learners import (ANIL, CNP, MAML, MatchingNet, MetaSGD, ProtoNet, RelationNet, Reptile,
                        MANNLearner, SnailLearner, StackedTasks)
from ..learners.mann import training_bytes

# Paper defaults by training way count (a way count not in a table reads its smallest one),
# and by (ways, shots) where a paper's differ by shots, over the way count's:
# Finn et al. 2017 (MAML), Nichol et al. 2018 (Reptile), Snell et al. 2017 (60-way training
# episodes, 5 queries per class, Adam 1e-3 halved every 2000 episodes), Vinyals et al. 2016,
# Sung et al. 2018 (queries per class: 5-way 19 at 1 shot, 15 at 5; 20-way 10 at 1, 5 at 5,
# as their code's batch_num_per_class).
MAML_DEFAULTS = {
    5: dict(inner_lr=0.4, inner_steps=1, test_steps=3, meta_batch=32, queries=15),
    20: dict(inner_lr=0.1, inner_steps=5, test_steps=5, meta_batch=16, queries=15)}
REPTILE_DEFAULTS = {5: dict(inner_lr=1e-3, inner_steps=5, test_steps=50, meta_batch=5,
                            outer_lr=1.0, queries=15)}
COMMON_DEFAULTS = dict(shots=1, meta_batch=1, outer_lr=1e-3, lr_halve_every=0)  # every table
# The sinusoid experiment (Finn et al. 2017, section 5.1), for every optimization learner.
SINUSOID_DEFAULTS = dict(inner_lr=0.01, inner_steps=1, test_steps=10, meta_batch=25, shots=10,
                         queries=10)   # K = 10 points to train on, as the paper's experiment
SINUSOID_MLP = dict(sizes=(1, 40, 40, 1), init_std=0.01)  # normal(0, 0.01), the reference code

# Options of RunConfig that only some learners take; the others reject them (config.py).
INNER_LOOP = frozenset({"inner_lr", "inner_steps", "test_steps"})
OUTER_OPTIMIZER = frozenset({"clip_norm", "lr_halve_every"})
MAML_OPTIONS = INNER_LOOP | OUTER_OPTIMIZER | {"multi_step_loss"}
OPTIONAL = MAML_OPTIONS | {"fce"}
FAMILY = {"optimization": "an optimization", "metric": "a metric", "model": "a model-based"}
WHY_NOT = {  # why an option does not apply to the learners that lack it ({family}: theirs)
    "fce": "full context embeddings are Matching Networks' (--learner matching)",
    "multi_step_loss": "the multi-step loss is the MAML family's (maml, fomaml, metasgd, anil)",
    "clip_norm": "Reptile has no meta-gradient to clip (its update is θ + ε·mean(φ − θ))",
    "lr_halve_every": "Reptile has no outer optimizer (its outer step is ε, --outer-lr)",
    "inner_lr": "{family} learner has no inner loop",
    "inner_steps": "{family} learner has no inner loop",
    "test_steps": "{family} learner has no inner loop",
}


@dataclass(frozen=True)
class LearnerSpec:
    """What the command line needs to know about one learner."""

    family: str                    # "optimization", "metric" or "model"
    build: Callable                # config -> (model, learner)
    defaults: dict                 # {training ways: {setting: the paper's value}}
    options: frozenset             # the entries of OPTIONAL this learner takes
    default_ways: int = 5          # training ways when --ways is not given
    outer_optimizer: bool = True   # False: the learner updates θ itself (Reptile)
    datasets: tuple = ("omniglot", "sinusoid")
    reads_queries: bool = True     # False: the episode's query part is never read (MANN)
    peak_bytes: Callable = None    # config -> a training step's peak bytes; None: unestimated


def model_for(config):
    """The network an optimization learner adapts: the sinusoid MLP, or conv4 with a
    ``config.ways``-way head; on ``config.device``."""
    if config.dataset == "sinusoid":
        model = nn.mlp(SINUSOID_MLP["sizes"], seed=config.seed,
                       init_std=SINUSOID_MLP["init_std"])
    else:
        model = nn.conv4(config.ways, seed=config.seed)
    return model.to(config.device)  # before the learner: Meta-SGD's rates follow its device


def loss_for(config):
    return "mse" if config.dataset == "sinusoid" else "cross_entropy"


def maml_family(cls, **fixed):
    """Builder of MAML, FOMAML, Meta-SGD or ANIL. On sinusoids and on a GPU the meta-batch
    runs as one stacked batch (``StackedTasks``: every layer broadcasts over a leading task
    axis), the same meta-gradient from one graph: a few large ops instead of many small ones,
    what a GPU needs. On the CPU the conv net's tasks run as a loop on worker threads, which
    measured faster there (docs/PERFORMANCE.md)."""
    def build(config):
        model = model_for(config)
        learner = cls(model, config.inner_lr, config.inner_steps, loss=loss_for(config),
                      test_steps=config.test_steps, multi_step_loss=config.multi_step_loss,
                      **fixed)
        stack = config.dataset == "sinusoid" or config.device != "cpu"
        return model, StackedTasks(learner) if stack else learner
    return build


def reptile(config):
    """Reptile with an inner Adam (betas (0.9, 0.999); the paper's code: β₁ = 0)."""
    model = model_for(config)
    return model, Reptile(model, config.inner_lr, config.inner_steps, config.outer_lr,
                          inner_optimizer="adam", loss=loss_for(config),
                          test_steps=config.test_steps)


def metric(make):
    """Builder of a metric learner from ``make(config) → learner``; its model is the learner's
    ``net`` (all its trained modules), moved to ``config.device``."""
    def build(config):
        learner = make(config)
        return learner.net.to(config.device), learner
    return build


def snail(config):
    """SNAIL on a conv4 embedding, for ``config.ways``-way episodes of 1..``config.shots``
    shots (model-based; Omniglot)."""
    learner = SnailLearner(config.ways, config.shots, seed=config.seed)
    return learner.net.to(config.device), learner


def mann(config):
    """MANN on Omniglot episodes resized to 20×20, as the paper (model-based)."""
    size = omniglot.area_matrix(28, 20).astype(np.float32)
    learner = MANNLearner(config.ways, 20, resize=(size, size), seed=config.seed)
    return learner.net.to(config.device), learner


def cnp(config):
    """A conditional neural process on (x, y) points (model-based; sinusoids)."""
    learner = CNP(seed=config.seed)
    return learner.net.to(config.device), learner


METRIC_OPTIONS = OUTER_OPTIMIZER
LEARNERS = {
    "maml": LearnerSpec("optimization", maml_family(MAML), MAML_DEFAULTS, MAML_OPTIONS),
    "fomaml": LearnerSpec("optimization", maml_family(MAML, first_order=True), MAML_DEFAULTS,
                          MAML_OPTIONS),
    "reptile": LearnerSpec("optimization", reptile, REPTILE_DEFAULTS, INNER_LOOP,
                           outer_optimizer=False),
    "metasgd": LearnerSpec("optimization", maml_family(MetaSGD), MAML_DEFAULTS, MAML_OPTIONS),
    "anil": LearnerSpec("optimization", maml_family(ANIL), MAML_DEFAULTS, MAML_OPTIONS),
    "protonet": LearnerSpec(
        "metric", metric(lambda c: ProtoNet(nn.conv4(seed=c.seed))),
        {60: dict(queries=5, lr_halve_every=2000)}, METRIC_OPTIONS, default_ways=60,
        datasets=("omniglot",)),
    "matching": LearnerSpec(
        "metric", metric(lambda c: MatchingNet(nn.conv4(seed=c.seed), fce=c.fce, seed=c.seed)),
        {5: dict(queries=15), 20: dict(queries=5)}, METRIC_OPTIONS | {"fce"},
        datasets=("omniglot",)),
    "relation": LearnerSpec(
        "metric", metric(lambda c: RelationNet(
            nn.relation_embedding(seed=c.seed),
            nn.relation_module(seed=nn.layers.derived(c.seed, 1)))),
        {5: dict(queries=19), 20: dict(queries=10), (5, 5): dict(queries=15),
         (20, 5): dict(queries=5)}, METRIC_OPTIONS, datasets=("omniglot",)),
    "snail": LearnerSpec("model", snail, {5: dict(queries=2, meta_batch=8),
                                          20: dict(queries=1, meta_batch=4)}, OUTER_OPTIMIZER,
                         datasets=("omniglot",)),
    "mann": LearnerSpec("model", mann, {5: dict(shots=10, queries=1, meta_batch=16)},
                        OUTER_OPTIMIZER, datasets=("omniglot",), reads_queries=False,
                        peak_bytes=lambda c: training_bytes(c.ways, c.shots, c.queries,
                                                            c.meta_batch)),
    "cnp": LearnerSpec("model", cnp, {5: dict(shots=10)}, OUTER_OPTIMIZER,  # context 1..10
                       datasets=("sinusoid",)),
}


def no_queries(learner, queries, prefix=""):
    """Refuse 0 queries (``ValueError``) to a learner that reads them: only MANN reads none."""
    if queries == 0 and LEARNERS[learner].reads_queries:
        raise ValueError(f"{prefix}--queries must be at least 1 for {learner}, got 0")


def unread(learner, queries):
    """The hint after "shots + queries ask for more drawings than a class has": a learner that
    reads no queries needs none drawn."""
    return "" if LEARNERS[learner].reads_queries or not queries else \
        f" ({learner} reads no queries: add --queries 0)"


def fits_memory(config):
    """Refuse (``ValueError``, one line) a run whose learner estimates a training step's peak
    above the memory available (``kernels.threads.available_memory``); checked before anything
    is built, read or written. A 2000-way MANN (sequences of 20 000 steps) had built its
    model, loaded Omniglot and written its folder, then grown until the system killed it, at
    22 GB. CPU runs only: on a GPU the graph is in the GPU's memory."""
    estimate = LEARNERS[config.learner].peak_bytes
    if estimate is None or config.device != "cpu":
        return
    need, have = estimate(config), available_memory()
    if have is not None and need > have:
        raise ValueError(f"--ways {config.ways}, --shots {config.shots}, --meta-batch "
                         f"{config.meta_batch}: a training step of {config.learner} needs "
                         f"about {need / 2 ** 30:.1f} GiB, more than the {have / 2 ** 30:.1f} "
                         "GiB of memory available: give fewer --ways, --shots or --meta-batch")


def own(model, learner, saved=True):
    """Refuse a learner that trains Tensors its run's checkpoint would not hold (``ValueError``):
    its parameters must be the model's own Tensors (copies, say, are not: the checkpoint holds
    ``model.state_dict()``); where ``saved`` (a run with a folder), a meta-parameter outside the
    model must be held by ``learner.state_dict()``, an array of its shape, as Meta-SGD's rates
    are (a learner of one's own that trained one had resumed with it at its initial value,
    silently: found by probing)."""
    mine = {id(p) for p in model.parameters()}
    stray = [name for name, p in getattr(learner, "params", {}).items() if id(p) not in mine]
    if stray:
        more = f" and {len(stray) - 3} more" if len(stray) > 3 else ""
        raise ValueError(f"train: the learner's parameters {', '.join(stray[:3])}{more} are not "
                         "the model's own Tensors, so the checkpoint (the model's state) would "
                         "not hold what it trains: build the learner on model.named_parameters()")
    if not saved:
        return
    held = Counter(np.shape(a) for a in _leaves(getattr(learner, "state_dict", dict)()))
    for shape in (p.shape for p in learner.meta_parameters() if id(p) not in mine):
        held[shape] -= 1
        if held[shape] < 0:
            raise ValueError(f"train: the learner trains a Tensor of shape {shape} outside the "
                             "model (in meta_parameters()) that learner.state_dict() does not "
                             "hold, so a resumed run would restart it: save and load it there "
                             "(as MetaSGD's rates), or make it a parameter of the model")


def _leaves(tree):
    """The arrays of a nested dict."""
    for value in tree.values():
        yield from _leaves(value) if isinstance(value, dict) else (value,)


def build(config):
    """Model (the Module whose state is checkpointed) and learner of a ``RunConfig``."""
    return LEARNERS[config.learner].build(config)
