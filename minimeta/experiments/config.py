"""One training run's settings: ``RunConfig``, with every default and every check in one place.

``minimeta train`` builds its options from the fields below (``add_arguments``) and its
config from the parsed options (``RunConfig.from_args``); the sinusoid experiment and the
examples build theirs in Python; a checkpoint stores its config as a dict (``settings()``) and
``RunConfig.from_settings`` reads it back, those written before this class existed included.

A field left at None takes the default of its learner's paper for the training way count
(the tables of ``registry.py``; the sinusoid experiment's values on ``--dataset sinusoid``),
filled in when the config is made: a RunConfig is always complete, and always checked. A bad
value is a ``ValueError`` of one line naming the option:

    >>> c = RunConfig(learner="maml", ways=20)
    >>> c.inner_lr, c.inner_steps, c.meta_batch, c.queries
    (0.1, 5, 16, 15)
    >>> RunConfig(learner="protonet").ways, RunConfig(learner="protonet").lr_halve_every
    (60, 2000)
    >>> RunConfig(learner="maml", inner_lr=float("nan"))
    Traceback (most recent call last):
    ...
    ValueError: --inner-lr must be a finite number > 0, got nan
    >>> RunConfig(learner="reptile", clip_norm=1.0)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: --clip-norm does not apply to reptile: Reptile has no meta-gradient to clip ...

An option a learner does not take (``registry.WHY_NOT``) is None (or False) in its config.
``dataclasses.replace`` re-checks a config but keeps its filled-in values: give the way count
when the config is made, not afterwards.

A run folder holds one run. A fresh run refuses a folder that holds one (``checkpoint.npz`` or
``metrics.jsonl``) unless ``overwrite``. ``resume`` continues the run of its folder, whose
checkpoint fixes every setting that decides the model, the learner or the tasks trained on
(``check_resume`` lists each one given otherwise, in one line); only those of
``MAY_CHANGE_ON_RESUME`` may differ: where and how the run is saved, watched and debugged
(``out``, ``device``, ``threads``, ``checkpoint_every``, ``detect_anomaly``,
``validate_every``, ``val_episodes``, ``minutes``: a resumed run's budget counts the training
time already spent),
and ``iterations``, to any count not below the checkpoint's iteration.

Read next: ``minimeta/experiments/episodes.py`` (a run's episodes, drawn by iteration).
"""
import math
import numbers
from dataclasses import dataclass, fields

import numpy as np

from .options import DRAWINGS, MOST, MOST_PER_TASK, flag, option
from .registry import (COMMON_DEFAULTS, FAMILY, LEARNERS, OPTIONAL, SINUSOID_DEFAULTS, WHY_NOT,
                       no_queries, unread)


@dataclass
class RunConfig:
    """Every setting of a training run (the command line's option for ``x_y`` is ``--x-y``);
    None: the learner's paper's value, filled in when the config is made."""

    learner: str = option(None, str, choices=LEARNERS)   # the live table: yours too
    dataset: str = option("omniglot", str, choices=("omniglot", "sinusoid"))
    ways: int = option(None, int, "classes per training episode (default 5; ProtoNet 60)",
                       least=1)
    shots: int = option(None, int, "examples per class in the support set (default 1; MANN 10, "
                        "the drawings of a class in its sequence; on sinusoids 10 points, "
                        "for the CNP the most context points)", least=1, most=MOST_PER_TASK)
    queries: int = option(None, int, "query examples per class (0 only for mann, which reads "
                          "none)", least=0, most=MOST_PER_TASK)
    multi_step_loss: bool = option(False, bool, "MAML family: meta-train on the mean query "
                                   "loss after 1..K inner steps (Antoniou et al. 2019)")
    fce: bool = option(False, bool, "matching: full context embeddings (Vinyals et al. 2016)")
    clip_norm: float = option(None, float, "bound on the global norm of each meta-gradient "
                              "(default: none)", above=0)
    split: str = option("vinyals", str, choices=("vinyals", "lake"))
    iterations: int = option(60000, int, least=1)
    meta_batch: int = option(None, int, "tasks per meta-batch", least=1, most=MOST_PER_TASK)
    inner_lr: float = option(None, float, above=0)
    inner_steps: int = option(None, int, "inner-loop steps per task in training (MAML family: "
                              "0 trains θ on the query loss itself, a multi-task baseline; "
                              "Reptile needs at least 1)", least=0, most=MOST_PER_TASK)
    test_steps: int = option(None, int, least=0, most=MOST_PER_TASK)
    outer_lr: float = option(None, float, above=0)
    lr_halve_every: int = option(None, int, "halve the outer learning rate every N iterations "
                                 "(0: never)", least=0)
    val_size: int = option(None, int, "characters of the 1200 meta-training ones held out to "
                           "validate (default 100; none on --split lake)", least=0)
    validate_every: int = option(500, int, "iterations (0: never); Omniglot runs only (a "
                                 "sinusoid run is tested by minimeta eval)", least=0)
    val_episodes: int = option(100, int, least=2)
    seed: int = option(0, int, least=0)
    out: str = option("outputs/run", str, "the run's folder")  # None (from Python): no files
    resume: bool = option(False, bool, "continue the run in --out from its checkpoint (its "
                          "settings fixed, --iterations at least its iteration)")
    overwrite: bool = option(False, bool, "start afresh in an --out that holds a run, deleting "
                             "its checkpoint, metrics and curve")
    device: str = option("cpu", str, "cuda: CuPy arrays and the numba.cuda kernels (pip "
                         "install 'minimeta[gpu-cuda12]' or 'minimeta[gpu-cuda13]')",
                         choices=("cpu", "cuda"))
    checkpoint_every: float = option(300.0, float, "seconds between checkpoints (0: after "
                                     "every iteration)", least=0)
    minutes: float = option(None, float, "training budget: stop after this many minutes of "
                            "training time (sampling to optimizer step; validation and "
                            "checkpoints not counted), at most --iterations", above=0)
    threads: int = option(None, int, "threads the run uses: the tasks of a meta-batch (and "
                          "evaluation episodes) on this many workers, a single large kernel "
                          "split over as many (default: every core the process may use, "
                          "by its affinity and CPU quota)", least=1, most=1024)
    detect_anomaly: bool = option(False, bool, "stop at the first op whose output or gradient "
                                  "holds a NaN or an inf, naming the op, its inputs, the order "
                                  "and your source line")
    # not on the command line: filled in, or set by the sinusoid experiment
    val_ways: int = option(None, int, "validation ways: the training ones for the "
                           "optimization and model-based learners (their head), 5 for the "
                           "metric ones",
                           least=1, flag=False)
    stream_seed: int = option(None, int, "None: iteration i's tasks come from the seed "
                              "(seed, i), so a resumed run sees the same; an int: one stream "
                              "of sinusoid tasks from that seed (the sinusoid experiment's)",
                              least=0, flag=False)

    def __post_init__(self):
        self._check_types()
        spec = LEARNERS[self.learner]
        for name in sorted(OPTIONAL - spec.options):
            if getattr(self, name) not in (None, False):
                raise ValueError(f"{flag(name)} does not apply to {self.learner}: "
                                 + WHY_NOT[name].format(family=FAMILY.get(spec.family, "this")))
        if self.dataset not in spec.datasets:
            what = "classifies images" if "omniglot" in spec.datasets else \
                "regresses functions"
            raise ValueError(f"{self.learner} {what}: use --dataset {spec.datasets[0]}")
        if self.stream_seed is not None and self.dataset != "sinusoid":
            raise ValueError("stream_seed: one stream of tasks is the sinusoid experiment's; "
                             "Omniglot episodes come from the seed (seed, iteration)")
        if self.out == "":
            raise ValueError("--out must be a folder path, got ''")
        if self.resume and self.overwrite:
            raise ValueError("--resume and --overwrite exclude each other: continue the run in "
                             "--out, or replace it")
        unset = {f.name for f in fields(self) if getattr(self, f.name) is None}
        self._fill_defaults(spec)
        self._check_types()
        no_queries(self.learner, self.queries)
        if self.multi_step_loss is not False and self.inner_steps == 0:   # (named no option)
            raise ValueError("--multi-step-loss needs --inner-steps of at least 1 (it weighs "
                             "the query losses after steps 1..K), got 0")
        if self.dataset == "omniglot" and self.shots + self.queries > DRAWINGS:
            raise ValueError(self._too_many_drawings(unset))
        if self.dataset == "sinusoid":
            self._drop_omniglot_settings()
        elif self.ways < 2:   # loss 0, accuracy 1, nothing learnt
            raise ValueError(f"--ways must be at least 2 to classify, got {self.ways}")

    def _too_many_drawings(self, unset):
        """The error for shots + queries above an Omniglot class's drawings, which says of a
        count the user did not give that it is the paper's default (and what would fit)."""
        shots, queries = (f"--{n} {getattr(self, n)}" + (f" ({self.learner}'s default at "
                          f"{self.ways}-way)" if n in unset else "") for n in ("shots", "queries"))
        fits = DRAWINGS - self.shots
        fix = f": give --queries {fits} or fewer" if "queries" in unset and fits > 0 else ""
        return (f"{shots} + {queries} ask for {self.shots + self.queries} drawings of a class; "
                f"each omniglot class has {DRAWINGS}{fix}{unread(self.learner, self.queries)}")

    def _drop_omniglot_settings(self):
        """A sinusoid run's Omniglot-only settings are None, so that neither its config line
        nor its checkpoint shows a value that meant nothing (``validate_every=500`` had);
        one given other than its default (or, for ``validate_every``, 0) is refused by name."""
        for name, why in OMNIGLOT_ONLY.items():
            value, default = getattr(self, name), _DEFAULTS[name]
            never = name == "validate_every" and value == 0    # what a sinusoid run does
            if value is not None and value != default and not never:
                raise ValueError(f"{flag(name)} does not apply to --dataset sinusoid: {why}, "
                                 f"got {value!r}")
            setattr(self, name, None)
        self.val_ways = None

    def _fill_defaults(self, spec):
        """The paper's value for every unset setting the learner takes (one place)."""
        if self.ways is None and self.dataset == "omniglot":
            self.ways = spec.default_ways
        table = spec.defaults
        smallest = min(k for k in table if isinstance(k, int))
        paper = {**COMMON_DEFAULTS, **table.get(self.ways or smallest, table[smallest])}
        shots = self.shots if self.shots is not None else paper["shots"]
        ways = self.ways if self.ways in table else smallest   # as the way count's table
        paper.update(table.get((ways, shots), {}))    # a paper's per-shot values
        if self.dataset == "sinusoid":
            paper.update(SINUSOID_DEFAULTS)
        # a head as wide as the training ways (optimization- and model-based) is validated at
        # those ways; a metric learner, which takes any, at 5
        paper["val_ways"] = 5 if spec.family == "metric" else self.ways
        for name, value in paper.items():
            if getattr(self, name) is None and (name not in OPTIONAL or name in spec.options):
                setattr(self, name, value)
        if self.dataset == "sinusoid":
            return
        if spec.family != "metric" and self.dataset == "omniglot" and self.val_ways != self.ways:
            raise ValueError(f"val_ways must equal --ways ({self.ways}) for {self.learner}: its "
                             f"head has one output per training way, got {self.val_ways}")
        if self.split == "lake":   # the background/evaluation split has no validation part
            if self.val_size:      # given, it had been set to 0 without a word
                raise ValueError(f"--val-size does not apply to --split lake (its background "
                                 f"and evaluation parts hold no validation part), got "
                                 f"{self.val_size}")
            self.val_size = 0
        elif self.val_size is None:
            self.val_size = 100

    def _check_types(self):
        """Every set field against its type, choices and bounds (``ValueError`` naming it)."""
        if self.learner is None:
            raise ValueError("--learner is required")
        for f in fields(self):
            value, meta = getattr(self, f.name), f.metadata
            kind, name = meta["kind"], flag(f.name) if meta["flag"] else f.name
            if value is None and kind in (int, float) and f.default is not None \
                    and not (self.dataset == "sinusoid" and f.name in OMNIGLOT_ONLY):
                raise ValueError(f"{name} must be given (its default is {f.default!r}), got "
                                 "None")  # (seed=None had crashed in NumPy after the first save)
            if value is None or f.name == "multi_step_loss":
                continue
            if meta["choices"] and value not in meta["choices"]:
                raise ValueError(f"{name} must be one of {', '.join(meta['choices'])}, "
                                 f"got {value!r}")
            if kind is bool and not isinstance(value, (bool, np.bool_)):
                raise ValueError(f"{name} must be True or False, got {value!r}")
            if kind is str and not isinstance(value, str):
                raise ValueError(f"{name} must be a string, got {value!r}")
            if kind is int:
                if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                    raise ValueError(f"{name} must be an integer, got {value!r}")
                if value < meta["least"]:
                    raise ValueError(f"{name} must be at least {meta['least']}, got {value}")
                most = MOST if meta["most"] is None else meta["most"]
                if value > most:
                    raise ValueError(f"{name} must be at most {most}, got {value}")
                setattr(self, f.name, int(value))
            if kind is float:
                low, strict = (meta["above"], True) if meta["above"] is not None \
                    else (meta["least"], False)
                number = isinstance(value, numbers.Real) and not isinstance(value, bool)
                if not (number and math.isfinite(value) and (value > low if strict
                                                             else value >= low)):
                    raise ValueError(f"{name} must be a finite number {'>' if strict else '>='} "
                                     f"{low}, got {value!r}")
                setattr(self, f.name, float(value))
        steps = self.multi_step_loss
        if not isinstance(steps, (bool, np.bool_)):
            try:
                self.multi_step_loss = tuple(float(w) for w in steps)
            except (TypeError, ValueError):
                raise ValueError(f"--multi-step-loss must be True, False or a list of step "
                                 f"weights, got {steps!r}") from None
            if not all(math.isfinite(w) and w >= 0 for w in self.multi_step_loss):
                raise ValueError(f"--multi-step-loss weights must be finite and >= 0, got "
                                 f"{list(self.multi_step_loss)}")
        else:
            self.multi_step_loss = bool(steps)

    # ----- to and from the command line and checkpoints ------------------------------------
    @classmethod
    def from_args(cls, namespace):
        """The config of parsed ``minimeta train`` options (an option not given: None)."""
        given = {f.name: getattr(namespace, f.name, None) for f in fields(cls)
                 if f.metadata["flag"]}
        given = {k: v for k, v in given.items() if v is not None}
        # refused here, where "given" is known: the config fills some of them in by default
        stray = [name for name in OMNIGLOT_ONLY if name in given]
        if given.get("dataset") == "sinusoid" and stray:
            raise ValueError(f"{flag(stray[0])} does not apply to --dataset sinusoid: "
                             f"{OMNIGLOT_ONLY[stray[0]]}")
        config = cls(**given)
        if given.get("validate_every") and not config.val_size:  # it had been ignored, unsaid
            raise ValueError("--validate-every does not apply: "
                             + ("--split lake" if config.split == "lake" else "--val-size 0")
                             + " holds out no validation characters (give --val-size N with "
                             "--split vinyals, or --validate-every 0)")
        return config

    @classmethod
    def from_settings(cls, settings, **overrides):
        """The config of a settings dict (a checkpoint's, or an older release's dict API),
        with ``overrides``: unknown keys, None values and options its learner does not take
        are dropped; missing ones get their defaults."""
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in {**settings, **overrides}.items()
                  if k in names and v is not None}
        if "learner" not in values:
            raise ValueError("settings: no learner")
        spec = LEARNERS.get(values["learner"])
        for name in (OPTIONAL - spec.options) if spec else ():
            values.pop(name, None)
        for name, value in values.items():
            if isinstance(value, np.ndarray):  # a list of step weights, saved as an array
                values[name] = tuple(value.tolist()) if value.ndim else value.item()
        if values.get("split") == "lake":   # no validation part: an older dict's 100 meant 0
            values.pop("val_size", None)
        if values.get("dataset") == "sinusoid":  # an older checkpoint's ways=5, split=vinyals
            for name in (*OMNIGLOT_ONLY, "val_ways"):
                values.pop(name, None)
        return cls(**values)

    def settings(self):
        """The config as a dict of its set values (what a checkpoint stores)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        if isinstance(self.multi_step_loss, tuple):
            out["multi_step_loss"] = list(self.multi_step_loss)
        return {k: v for k, v in out.items() if v is not None}

    def check_resume(self, settings, iteration):
        """``ValueError`` (one line) unless this config may resume the checkpoint with
        ``settings`` at ``iteration``: every setting outside ``MAY_CHANGE_ON_RESUME`` equal
        (the differences listed), ``iterations`` not below ``iteration``."""
        saved = RunConfig.from_settings(settings, resume=False, overwrite=False)
        names = [f.name for f in fields(self) if f.name not in MAY_CHANGE_ON_RESUME
                 and getattr(self, f.name) != getattr(saved, f.name)]
        differ = [f"{flag(name) if name in FLAGS else name} {_shown(saved, name)} "
                  f"(given {_shown(self, name)})" for name in names
                  if not (name == "val_ways" and "ways" in names)]  # val_ways follows ways
        if differ:
            raise ValueError(f"--resume: the run in {self.out} was trained with other settings, "
                             f"which its checkpoint fixes: {', '.join(differ)}; give its "
                             "values, or start afresh (--overwrite, or another --out)")
        if self.iterations < iteration:
            raise ValueError(f"--resume: --iterations {self.iterations} is below the "
                             f"checkpoint's iteration {iteration} in {self.out}: a resumed run "
                             f"only goes on (--iterations {iteration} or more)")

    def describe(self):
        """``name=value`` for every field (those off the command line only when set), as
        ``minimeta train`` prints it."""
        return ", ".join(f"{f.name}={getattr(self, f.name)}" for f in fields(self)
                         if getattr(self, f.name) is not None or f.metadata["flag"]
                         and not (self.dataset == "sinusoid" and f.name in OMNIGLOT_ONLY))


# The options of an Omniglot run only; a sinusoid run given one refuses it (``from_args``).
OMNIGLOT_ONLY = {
    "ways": "regression has no classes",
    "split": "a split of Omniglot's characters",
    "val_size": "the characters held out to validate an Omniglot run",
    "validate_every": "an Omniglot run is validated; a sinusoid run is tested by minimeta eval",
    "val_episodes": "an Omniglot run is validated; a sinusoid run is tested by minimeta eval",
}

# The settings a resumed run may change (``check_resume``); the checkpoint fixes the others.
MAY_CHANGE_ON_RESUME = frozenset({"iterations", "out", "resume", "overwrite", "device",
                                  "checkpoint_every", "detect_anomaly", "validate_every",
                                  "val_episodes", "minutes", "threads"})
FLAGS = frozenset(f.name for f in fields(RunConfig) if f.metadata["flag"])
_DEFAULTS = {f.name: f.default for f in fields(RunConfig)}


def _shown(config, name):
    value = getattr(config, name)
    return "unset" if value is None else str(value)


def add_arguments(parser):
    """The options of ``minimeta train``, one per field of ``RunConfig``; each defaults to
    None (unset), so that ``from_args`` leaves the defaults to the config."""
    paper = set(COMMON_DEFAULTS) | set(SINUSOID_DEFAULTS)
    for f in fields(RunConfig):
        meta = f.metadata
        if not meta["flag"]:
            continue
        if meta["kind"] is bool:
            parser.add_argument(flag(f.name), action="store_true", default=None,
                                help=meta["help"])
            continue
        text = meta["help"] or ""
        if "default" not in text:  # the default said once: the field's, or the paper's
            note = f"default {f.default}" if f.default is not None else \
                "default: the learner's paper's" if f.name in paper else ""
            text = "; ".join(t for t in (text, note) if t)
        parser.add_argument(flag(f.name), type=meta["kind"], default=None,
                            choices=meta["choices"], required=f.name == "learner",
                            help=text)
    return parser
