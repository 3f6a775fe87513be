"""Reproduce the sinusoid experiment of Finn et al. 2017: MAML versus a pretrained baseline.

Trains MAML (meta-trained with K = 10) and the "pretrained on all tasks" baseline for the same
number of iterations, evaluates both on 600 held-out tasks with K = 5 and K = 10 support points,
prints the MSE after 0, 1, 5 and 10 gradient steps with 95% intervals, saves both models and
draws the paper's figure.

    python examples/sinusoid_maml.py --iterations 70000      # the paper's length (RESULTS.md)
    python examples/sinusoid_maml.py --iterations 500        # a quick look

Outputs go to ``outputs/sinusoid/`` (ignored by git).
"""
import argparse
import json
import os
import time

from minimeta import io, nn
from minimeta.experiments import sinusoid as S
from minimeta.experiments.registry import SINUSOID_MLP
from minimeta.threads import configure


def load_model(path):
    """The sinusoid MLP with the parameters saved at ``path``."""
    model = nn.mlp(SINUSOID_MLP["sizes"], init_std=SINUSOID_MLP["init_std"])
    model.load_state_dict(io.load(path)["model"])
    return model


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=30000,
                        help="meta-iterations (default: 30000; the paper: 70000)")
    parser.add_argument("--shots", type=int, default=10,
                        help="K used for meta-training (default: 10)")
    parser.add_argument("--tasks", type=int, default=600,
                        help="held-out evaluation tasks (default: 600)")
    parser.add_argument("--seed", type=int, default=0, help="training seed (default: 0)")
    parser.add_argument("--eval-seed", type=int, default=1234,
                        help="seed of the held-out tasks (default: 1234, the tables')")
    parser.add_argument("--inner-lr", type=float, default=None,
                        help="α, for meta-training and for fine-tuning at test time (default: "
                             "the paper's, 0.01)")
    parser.add_argument("--train-steps", type=int, default=None,
                        help="inner steps during meta-training (default: the paper's, 1)")
    parser.add_argument("--multi-step-loss", action="store_true",
                        help="meta-train on the mean query loss after 1..train-steps steps")
    parser.add_argument("--step-weights", default=None,
                        help="comma-separated weights of those losses (implies "
                             "--multi-step-loss), e.g. 0.6,0.1,0.1,0.1,0.1")
    parser.add_argument("--clip-norm", type=float, default=None,
                        help="bound on the global norm of each meta-gradient (default: none)")
    parser.add_argument("--out", default="outputs/sinusoid",
                        help="folder of the models and results (default: outputs/sinusoid)")
    parser.add_argument("--evaluate-only", action="store_true",
                        help="load maml.npz and pretrained.npz from --out instead of training")
    parser.add_argument("--overwrite", action="store_true",
                        help="train afresh in an --out that holds an earlier run's models")
    args = parser.parse_args(argv)
    if args.tasks < 2:
        parser.error(f"--tasks must be at least 2, got {args.tasks}")
    if args.eval_seed < 0:   # (had failed after training: "expected non-negative integer")
        parser.error(f"--eval-seed must be at least 0, got {args.eval_seed}")
    if args.train_steps is not None and args.train_steps < 1:
        parser.error(f"--train-steps must be at least 1, got {args.train_steps}")
    if args.step_weights:
        try:
            args.multi_step_loss = [float(w) for w in args.step_weights.split(",")]
        except ValueError:
            parser.error(f"--step-weights: not a list of numbers: {args.step_weights!r}")
    try:  # the run's settings, defaults filled in and checked (errors naming the option)
        config = S.maml_config(args.iterations, shots=args.shots, seed=args.seed,
                               inner_lr=args.inner_lr, inner_steps=args.train_steps,
                               multi_step_loss=args.multi_step_loss, clip_norm=args.clip_norm)
    except ValueError as err:
        parser.error(str(err))
    alpha, steps = config.inner_lr, config.inner_steps
    if args.step_weights and len(args.multi_step_loss) != steps:
        parser.error(f"--step-weights needs {steps} weights (--train-steps)")
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        parser.error(f"--out {args.out} is a file, not a folder")
    record_path = os.path.join(args.out, "results.json")
    if args.evaluate_only:
        missing = [n for n in ("maml.npz", "pretrained.npz")
                   if not os.path.isfile(os.path.join(args.out, n))]
        if missing:
            parser.error(f"--evaluate-only: {args.out} has no {' or '.join(missing)}: train "
                         "there first")
    held = [n for n in ("maml.npz", "pretrained.npz", "results.json")
            if os.path.exists(os.path.join(args.out, n))]
    if held and not (args.evaluate_only or args.overwrite):   # had been replaced silently
        parser.error(f"--out {args.out} holds an earlier run ({', '.join(held)}): "
                     "--evaluate-only to test it, --overwrite to replace it, or another --out")
    if not args.out:
        parser.error("--out must be a folder path, got ''")
    os.makedirs(args.out, exist_ok=True)
    configure()  # one BLAS thread: the matrices here are tiny (docs/PERFORMANCE.md)
    start = time.perf_counter()
    trained = {"iterations": args.iterations, "shots": args.shots, "steps": steps,
               "multi_step_loss": args.multi_step_loss}
    recorded_tasks, record = args.tasks, None   # the held-out tasks of the run's own results
    if args.evaluate_only:
        models = {name: load_model(os.path.join(args.out, f"{name.lower()}.npz"))
                  for name in ("MAML", "pretrained")}
        maml_time = float("nan")
        # how these models were trained, not the defaults: results.json, or the one results
        # file of a run trained with another --eval-seed
        records = [path for path in (record_path, os.path.join(
            args.out, f"results_eval{args.eval_seed}.json")) if os.path.exists(path)]
        if records:
            with open(records[0]) as f:
                record = json.load(f)
            trained = {"iterations": record.get("iterations"), "shots": record.get("shots"),
                       "steps": record.get("train_steps"),
                       "multi_step_loss": record.get("multi_step_loss")}
            maml_time = record.get("maml_seconds", maml_time)
            recorded_tasks = record.get("tasks", 600)  # (600 before it was recorded)
            recorded = record.get("inner_lr", alpha)    # fine-tune at the α trained with
            if args.inner_lr is not None and args.inner_lr != recorded:
                parser.error(f"--evaluate-only: the models in {args.out} were trained with "
                             f"α = {recorded}, and results.json keeps it; drop --inner-lr")
            alpha = recorded
    else:
        maml_model, _, _ = S.meta_train(config)
        maml_time = time.perf_counter() - start
        base_model, _ = S.pretrain(config)  # the same budget: iterations, points, Adam
        models = {"MAML": maml_model, "pretrained": base_model}
    results = S.evaluate(models, n_tasks=args.tasks, seed=args.eval_seed, lr=alpha)
    weights = trained["multi_step_loss"]
    msl = f" (multi-step loss {weights if isinstance(weights, list) else 'equal weights'})" \
        if weights else ""
    print(f"\nα = {alpha}; meta-trained with K = {trained['shots']} and {trained['steps']} "
          f"inner step(s){msl} for {trained['iterations']} iterations "
          f"({maml_time:.0f} s for MAML); {args.tasks} held-out tasks, MSE ± 95% interval:\n")
    print(S.format_table(results))
    if not args.evaluate_only:  # otherwise the models were loaded from these files
        for name in sorted(os.listdir(args.out)):    # (--overwrite) the replaced models'
            if name.startswith("results") and name.endswith(".json"):
                os.remove(os.path.join(args.out, name))
                print(f"--overwrite: removed {name}: results of the models replaced")
        for name, model in models.items():
            io.save(os.path.join(args.out, f"{name.lower()}.npz"),
                    {"model": model.state_dict()})
    path = record_path  # how the models were trained, and the results
    run = {"iterations": args.iterations, "shots": args.shots, "train_steps": steps,
           "multi_step_loss": args.multi_step_loss, "seed": args.seed,
           "inner_lr": alpha, "clip_norm": args.clip_norm, "maml_seconds": maml_time}
    if record is not None:             # keep the record of the training
        run = {k: v for k, v in record.items() if k != "results"}
    run["tasks"] = args.tasks          # the held-out tasks these results are over
    run["eval_seed"] = args.eval_seed
    run["results"] = {f"{n} K={k}": {s: dict(zip(("mean", "ci95", "median", "diverged"), v))
                                     for s, v in row.items()}
                      for (n, k), row in results.items()}
    # other held-out tasks go beside the run's results, not over them (an --evaluate-only on
    # 100 tasks had replaced the 600 tasks' results.json without a word)
    if args.eval_seed != 1234 or args.tasks != recorded_tasks:
        path = os.path.join(args.out, "results" + (
            f"_eval{args.eval_seed}" if args.eval_seed != 1234 else "") + (
            f"_{args.tasks}tasks" if args.tasks != recorded_tasks else "") + ".json")
    with open(path + ".tmp", "w") as f:
        json.dump(run, f, indent=1)
    os.replace(path + ".tmp", path)
    print(f"\nresults: {path}")
    try:
        path = S.plot_task(models, os.path.join(args.out, "sinusoid_maml.png"), lr=alpha,
                           trained=f"K = {trained['shots']}, {trained['iterations']} "
                           "iterations")
        print(f"\nfigure: {path}")
    except ImportError:
        print("\n(matplotlib not installed: pip install minimeta[examples] for the figure)")


if __name__ == "__main__":
    from minimeta.cli import script

    raise SystemExit(script(main))
