"""``minimeta demo``: the sinusoid experiment on a short budget, with its figure, then a short
ProtoNet run on Omniglot when its data are on this machine.

Every option is checked before the first part runs (``checks``). The ProtoNet part writes its
run to ``<--out>/protonet``, replacing only an earlier demo's run there: a folder holding a run
of the user's is refused, both before the demo starts and again before that part begins.

Read next: ``minimeta/cli.py`` (the command line).
"""
import os
import time

from .. import io
from ..data import omniglot
from ..threads import configure
from . import fewshot, sinusoid
from .config import RunConfig
from .fewshot import MAX_EPISODES
from .runfolder import CHECKPOINT, METRICS
from .training import train


def run(args):
    """The demo, as ``minimeta demo`` parsed ``args``; returns the exit status (0)."""
    omniglot_run = checks(args)   # every option checked before the first part runs
    config = sinusoid.maml_config(args.iterations, seed=args.seed)  # (had come after --out)
    configure()
    os.makedirs(args.out, exist_ok=True)
    print(f"minimeta demo: MAML on sinusoids (Finn et al. 2017, sec. 5.1), {args.iterations} "
          f"meta-iterations, then the pretrained baseline, then {args.tasks} held-out tasks")
    start = time.perf_counter()
    maml, _, _ = sinusoid.meta_train(config)
    base, _ = sinusoid.pretrain(config)
    models = {"MAML": maml, "pretrained": base}
    results = sinusoid.evaluate(models, n_tasks=args.tasks)
    print(f"\nMSE on {args.tasks} held-out tasks (± 95% interval), after k gradient steps "
          f"(α = 0.01), {time.perf_counter() - start:.0f} s in all:\n")
    print(sinusoid.format_table(results))
    try:
        figure = sinusoid.plot_task(models, os.path.join(args.out, "sinusoid_maml.png"),
                                    trained=f"K = {config.shots}, {args.iterations} iterations")
        print(f"\nfigure: {figure}")
    except ImportError:
        print("\n(no figure: matplotlib is not installed; pip install matplotlib)")
    if omniglot_run is not None:
        omniglot_part(args, omniglot_run)
    return 0


def checks(args):
    """The demo's options, checked at once (``ValueError`` naming the option); returns the
    ProtoNet run's config, or None (``--omniglot-iterations 0``). Its folder,
    ``<--out>/protonet``, is replaced only if it holds an earlier demo's run: a run of the
    user's there had been overwritten without a word."""

    if not args.out:
        raise ValueError("--out must be a folder path, got ''")
    for name, value, most in (("tasks", args.tasks, MAX_EPISODES),
                              ("omniglot-episodes", args.omniglot_episodes, MAX_EPISODES)):
        if value > most:
            raise ValueError(f"--{name} must be at most {most}, got {value}")
    if not args.omniglot_iterations:
        return None
    try:
        config = RunConfig(learner="protonet", ways=20, queries=5,
                           iterations=args.omniglot_iterations, seed=args.seed,
                           out=os.path.join(args.out, "protonet"), overwrite=True,
                           checkpoint_every=1e9, validate_every=0, val_episodes=2)
    except ValueError as err:
        raise ValueError(str(err).replace("--iterations", "--omniglot-iterations")
                         ) from None
    refuse_a_run_not_the_demo_s(config)
    return config


def refuse_a_run_not_the_demo_s(config):
    """``ValueError`` if ``config.out`` holds a run that is not an earlier demo's (asked
    before the demo starts, and again before its ProtoNet part replaces the folder: a run
    made there in the minutes between had been replaced without a word)."""

    held = [n for n in (CHECKPOINT, METRICS) if os.path.exists(os.path.join(config.out, n))]
    if held:
        mine = {k: v for k, v in config.settings().items() if k not in MAY_DIFFER}
        try:
            saved = io.load(os.path.join(config.out, CHECKPOINT))["settings"]
            theirs = {k: v for k, v in RunConfig.from_settings(saved).settings().items()
                      if k not in MAY_DIFFER}
        except (OSError, ValueError, KeyError):
            theirs = None
        if theirs != mine:
            raise ValueError(f"{config.out} holds a run that is not an earlier demo's "
                             f"({', '.join(held)}), which the demo would replace: give "
                             "another --out")


MAY_DIFFER = ("iterations", "seed", "out", "overwrite", "resume", "threads", "minutes")


def omniglot_part(args, config):
    """A short ProtoNet run on Omniglot (``config``), when the data are already on this
    machine."""

    refuse_a_run_not_the_demo_s(config)    # again: the sinusoid part took minutes
    found = [os.path.exists(os.path.join(omniglot.data_dir(), omniglot.FILES[p][0]))
             for p in ("background", "evaluation")]
    if not all(found):
        how = ("point MINIMETA_DATA_DIR at a folder holding the two .npz files, or unset it "
               "and `minimeta train` downloads them" if os.environ.get("MINIMETA_DATA_DIR")
               else "set MINIMETA_DATA_DIR to a folder holding them, or `minimeta train` "
               "downloads them")
        print(f"\n(no Omniglot in {omniglot.data_dir()}, so no few-shot part: {how})")
        return
    print(f"\nPrototypical Networks on Omniglot: {args.omniglot_iterations} training episodes "
          f"(20-way 1-shot), then {args.omniglot_episodes} test episodes (5-way 1-shot)")
    # its checkpoint is the demo's own: a stop says to run the demo again, not to resume a
    # `minimeta train` of other settings (a user who had done so found the folder refused)
    path = train(config, resume_hint="`minimeta demo` runs this part again").checkpoint
    fewshot.evaluate(path, args.omniglot_episodes, ways=5, shots=1, queries=15)
