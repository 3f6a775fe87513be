"""Summarise several sinusoid runs (``examples/sinusoid_maml.py --out DIR``) in one table.

Reads each run's ``results.json`` and prints one Markdown row per run: how MAML was trained
(seed, inner steps, multi-step loss, clipping, iterations, time) and its MSE on the paper's anchor
setting, K = 5 support points after 1, 5 and 10 steps, beside the pretrained baseline and the
paper's numbers. Nothing is typed in by hand except the paper's anchors.

    python examples/sinusoid_table.py outputs/sinusoid_70k_s1 outputs/sinusoid_70k_s2 ...
    python examples/sinusoid_table.py outputs/sinusoid_70k_s1/results_eval99.json
"""
import argparse
import json
import math
import os

PAPER = {"MAML": (0.67, 0.38, 0.35), "pretrained": (2.41, 2.23, 2.19)}  # Finn et al., Table 2
STEPS = ("1", "5", "10")


def cell(stat):
    """'mean ± ci95', or the median when some tasks diverged (their count said)."""
    mean, half, median, diverged = (stat[k] for k in ("mean", "ci95", "median", "diverged"))
    text = f"{mean:.3f} ± {half:.3f}" if math.isfinite(mean) and mean < 1e3 else "diverged"
    return text + (f" ({diverged} div., median {median:.3f})" if diverged else "")


def row(where):
    """One table row from a run folder (its results.json) or a results*.json file."""
    path = where if where.endswith(".json") else os.path.join(where, "results.json")
    with open(path) as f:
        run = json.load(f)
    name = os.path.basename(os.path.normpath(os.path.dirname(path)))
    if not path.endswith("/results.json") and path != "results.json":
        name += f" (tasks seed {run.get('eval_seed')})"
    steps = run.get("train_steps", 1)
    how = f"{steps} step{'s' if steps > 1 else ''}"
    weights = run.get("multi_step_loss")
    if weights:
        how += ", multi-step loss" + ("" if weights is True else
                                      " (" + "/".join(f"{w:g}" for w in weights) + ")")
    if run.get("clip_norm"):
        how += f", meta-gradient clipped at norm {run['clip_norm']:g}"
    if run.get("inner_lr", 0.01) != 0.01:     # the paper's α and K unless said
        how += f", α = {run['inner_lr']:g}"
    if run.get("shots", 10) != 10:
        how += f", trained with K = {run['shots']}"
    if run.get("tasks", 600) != 600:
        name += f" ({run['tasks']} test tasks)"
    maml = run["results"]["MAML K=5"]
    base = run["results"]["pretrained K=5"]["10"]
    return (f"| {name} | {run.get('seed', '—')} | {how} | "
            f"{run['iterations']} | {run['maml_seconds']:.0f} s | "
            + " | ".join(cell(maml[s]) for s in STEPS) + f" | {cell(base)} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="output folders of examples/sinusoid_maml.py "
                        "(or their other results: results_eval<seed>.json, "
                        "results[_eval<seed>]_<N>tasks.json)")
    args = parser.parse_args()
    for where in args.runs:                 # each checked before the table starts
        path = where if where.endswith(".json") else os.path.join(where, "results.json")
        if not os.path.isfile(path):
            parser.error(f"{path} is not a file: give a folder examples/sinusoid_maml.py "
                         "wrote, or one of its results*.json files")
    print("| run | seed | meta-training | iterations | MAML time | MSE at K = 5 (± 95%), 1 step "
          "| 5 steps | 10 steps | pretrained, 10 steps |")
    print("|---|---|---|---|---|---|---|---|---|")
    paper = " | ".join(f"{v:.2f}" for v in PAPER["MAML"])
    print(f"| paper (Finn et al. 2017) | — | 1 step | 70000 | — | {paper} | "
          f"{PAPER['pretrained'][2]:.2f} |")
    for folder in args.runs:
        print(row(folder))


if __name__ == "__main__":
    from minimeta.cli import script

    raise SystemExit(script(main))
