"""The ``minimeta`` command line (the top layer: it may import everything below).

    minimeta demo                 the sinusoid MAML experiment on a short budget, with its figure
    minimeta gradcheck            the engine's property gradient checks, on this installation

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
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    for name, least in (("iterations", 1), ("tasks", 2), ("examples", 1), ("order", 1)):
        if getattr(args, name, least) < least:
            parser.error(f"--{name} must be at least {least}")
    try:
        return args.run(args)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
