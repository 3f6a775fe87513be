"""The ``minimeta`` command line (the top layer: it may import everything below).

    minimeta demo                 the sinusoid MAML experiment on a short budget, with its figure
    minimeta gradcheck            the engine's property gradient checks, on this installation
    minimeta train --learner maml --dataset omniglot --ways 5 --shots 1 ...
    minimeta eval --checkpoint outputs/run/checkpoint.npz --episodes 600

Read next: ``experiments/sinusoid.py``.
"""
import argparse
import os
import sys
import time


def _demo(args):
    from .experiments import sinusoid as S
    from .threads import configure

    configure()
    os.makedirs(args.out, exist_ok=True)
    print(f"minimeta demo: MAML on sinusoids (Finn et al. 2017, sec. 5.1), {args.iterations} "
          f"meta-iterations, then the pretrained baseline, then {args.tasks} held-out tasks")
    start = time.perf_counter()
    maml, _, _ = S.train_maml(args.iterations, seed=args.seed)
    base, _ = S.train_baseline(args.iterations, seed=args.seed)
    models = {"MAML": maml, "pretrained": base}
    results = S.evaluate(models, n_tasks=args.tasks)
    print(f"\nMSE on {args.tasks} held-out tasks (± 95% interval), after k gradient steps "
          f"(α = 0.01), {time.perf_counter() - start:.0f} s in all:\n")
    print(S.format_table(results))
    try:
        print(f"\nfigure: {S.plot_task(models, os.path.join(args.out, 'sinusoid_maml.png'))}")
    except ImportError:
        print("\n(no figure: install the examples extra, pip install -e '.[examples]')")
    return 0


def _gradcheck(args):
    try:
        from . import selfcheck
    except ImportError as err:
        print(f"minimeta gradcheck needs hypothesis ({err}); pip install 'minimeta[test]'",
              file=sys.stderr)
        return 2
    orders = tuple(range(1, args.order + 1))
    print(f"gradcheck of every primitive, orders {orders}, {args.examples} hypothesis examples "
          "each (float64, central differences)")
    report = selfcheck.run(args.examples, orders)
    worst = max(v for r in report.values() for v in r.values())
    print(f"all {len(report)} primitives passed; largest error {worst:.2e}")
    return 0


def _train(args):
    from .experiments import fewshot
    from .threads import configure

    configure()
    settings = fewshot.settings_with_defaults(
        {k: getattr(args, k) for k in ("learner", "dataset", "ways", "shots", "queries",
                                        "split", "iterations", "meta_batch", "inner_lr",
                                        "inner_steps", "test_steps", "outer_lr", "seed", "out",
                                        "resume", "checkpoint_every")})
    print("minimeta train: " + ", ".join(f"{k}={v}" for k, v in settings.items()))
    path = fewshot.train(settings)
    print(f"checkpoint: {path}\nmetrics: {args.out}/metrics.jsonl")
    return 0


def _eval(args):
    from .experiments import fewshot
    from .threads import configure

    configure()
    fewshot.evaluate(args.checkpoint, args.episodes, args.seed, args.part)
    return 0


def build_parser():
    parser = argparse.ArgumentParser(prog="minimeta", description="minimeta: autodiff of any "
                                     "order for meta-learning")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run the sinusoid MAML experiment on a short budget")
    demo.add_argument("--iterations", type=int, default=2000)
    demo.add_argument("--tasks", type=int, default=600)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--out", default="outputs/demo")
    demo.set_defaults(run=_demo)
    check = sub.add_parser("gradcheck", help="check the engine's derivatives on this machine")
    check.add_argument("--examples", type=int, default=10)
    check.add_argument("--order", type=int, default=2)
    check.set_defaults(run=_gradcheck)
    train = sub.add_parser("train", help="meta-train a learner (checkpoints, --resume)")
    train.add_argument("--learner", required=True,
                       choices=["maml", "fomaml", "reptile", "metasgd", "anil"])
    train.add_argument("--dataset", default="omniglot", choices=["omniglot", "sinusoid"])
    train.add_argument("--ways", type=int, default=5)
    train.add_argument("--shots", type=int, default=1)
    train.add_argument("--queries", type=int, default=15)
    train.add_argument("--split", default="vinyals", choices=["vinyals", "lake"])
    train.add_argument("--iterations", type=int, default=60000)
    train.add_argument("--meta-batch", type=int, default=None, help="tasks per meta-batch")
    train.add_argument("--inner-lr", type=float, default=None)
    train.add_argument("--inner-steps", type=int, default=None)
    train.add_argument("--test-steps", type=int, default=None)
    train.add_argument("--outer-lr", type=float, default=None)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--out", default="outputs/run")
    train.add_argument("--resume", action="store_true")
    train.add_argument("--checkpoint-every", type=float, default=300.0, help="seconds")
    train.set_defaults(run=_train)
    ev = sub.add_parser("eval", help="evaluate a checkpoint on test episodes")
    ev.add_argument("--checkpoint", required=True)
    ev.add_argument("--episodes", type=int, default=600)
    ev.add_argument("--seed", type=int, default=12345)
    ev.add_argument("--part", default="test", choices=["train", "val", "test"])
    ev.set_defaults(run=_eval)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    for name, least in (("iterations", 1), ("tasks", 2), ("examples", 1), ("order", 1),
                        ("ways", 1), ("shots", 1), ("queries", 1), ("episodes", 2)):
        if getattr(args, name, least) < least:
            parser.error(f"--{name} must be at least {least}")
    try:
        return args.run(args)
    except (FileNotFoundError, ValueError) as err:
        parser.exit(2, f"minimeta {args.command}: {err}\n")
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
