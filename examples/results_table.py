"""Render the Omniglot results table and the learning curves from the runs' own files.

Reads the JSON lines that ``minimeta eval --report`` appended (default
``outputs/results/omniglot.jsonl``, written by ``examples/omniglot_results.sh``) and each run's
``metrics.jsonl``; prints a Markdown table (accuracy ± 95% interval beside the paper's number,
the protocol, the budget, and the commands that reproduce the row) and draws the learning curves
to a PNG. Nothing is typed in by hand except the papers' numbers.

    python examples/results_table.py [--report outputs/results/omniglot.jsonl]
"""
import argparse
import dataclasses
import json
import os

from minimeta.experiments.config import FLAGS, OMNIGLOT_ONLY, RunConfig
from minimeta.experiments.options import flag
from minimeta.experiments.curve import iter_metrics

# Paper anchors, % (5-way 1-shot, 5-way 5-shot, 20-way 1-shot, 20-way 5-shot).
PAPER = {
    "maml": ("Finn et al. 2017", (98.7, 99.9, 95.8, 98.9)),
    "fomaml": ("Finn et al. 2017, first order", (98.3, 99.2, 89.4, 97.9)),
    "reptile": ("Nichol et al. 2018, transductive", (97.68, 99.48, 89.43, 97.12)),
    "metasgd": ("Li et al. 2017", (99.53, 99.93, 95.93, 98.97)),
    "anil": ("Raghu et al. 2020 (MiniImageNet only; no Omniglot number)", (None,) * 4),
    "protonet": ("Snell et al. 2017", (98.8, 99.7, 96.0, 98.9)),
    "matching": ("Vinyals et al. 2016 (cosine, no FCE)", (98.1, 98.9, 93.8, 98.5)),
    "relation": ("Sung et al. 2018", (99.6, 99.8, 97.6, 99.1)),
}
COLUMNS = [(5, 1), (5, 5), (20, 1), (20, 5)]
# options that say how a run was watched or run, not what it learned: left out of commands
WATCHING = {"resume", "overwrite", "device", "checkpoint_every", "detect_anomaly", "threads",
            "val_episodes"}


def train_command(s):
    """The ``minimeta train`` command that reproduces a run's settings: its learner, ways,
    shots, iterations and folder, and every other setting that differs from what ``minimeta
    train`` would choose for them (a 0 included: ``--lr-halve-every 0`` is not the default)."""
    config = RunConfig.from_settings(s, resume=False, overwrite=False)
    chosen = RunConfig(learner=config.learner, dataset=config.dataset, ways=config.ways,
                       shots=config.shots)
    parts, note = ["minimeta train", f"--learner {config.learner}"], ""
    for f in dataclasses.fields(RunConfig):
        name, value = f.name, getattr(config, f.name)
        if name not in FLAGS or name in WATCHING or name == "learner" or value is None or \
                (config.dataset == "sinusoid" and name in OMNIGLOT_ONLY):   # refused there
            continue
        shown = name in ("ways", "shots", "iterations", "out") or \
            (name == "dataset" and value != "omniglot")
        if not shown and value == getattr(chosen, name):
            continue
        if isinstance(value, tuple):            # step weights: the Python API's only
            parts.append(flag(name))
            note = f"  # and multi_step_loss={list(value)} (from Python)"
        elif isinstance(value, bool):
            parts += [flag(name)] if value else []
        else:
            parts.append(f"{flag(name)} {value}")
    return " ".join(parts) + note


def eval_command(row):
    return (f"minimeta eval --checkpoint {row['checkpoint']} --episodes {row['episodes']} "
            f"--ways {row['ways']} --shots {row['shots']} --queries {row['queries']}")


def wall_seconds(row):
    """The run's wall time (rows written before ``wall_seconds`` kept it in ``train_seconds``)."""
    return row.get("wall_seconds", row["train_seconds"])


def table(rows):
    lines = ["| learner | run | setting | accuracy (± 95%) | paper | test queries/class | "
             "trained on | iterations | wall time |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        paper = PAPER.get(r["learner"], ("", (None,) * 4))[1]
        col = COLUMNS.index((r["ways"], r["shots"])) if (r["ways"], r["shots"]) in COLUMNS \
            else None
        anchor = f"{paper[col]}%" if col is not None and paper[col] else "—"
        name = r["learner"] + (" (FCE)" if r.get("fce") else "")
        lines.append(f"| {name} | {run_name(r)} | {r['ways']}-way {r['shots']}-shot | "
                     f"{100 * r['accuracy']:.1f} ± {100 * r['interval']:.1f}% | {anchor} | "
                     f"{r['queries']} | {r['train_ways']}-way {r['train_shots']}-shot | "
                     f"{r['iterations']} | {wall_seconds(r) / 60:.0f} min |")
    return "\n".join(lines)


def run_name(row):
    """The run's folder name (several runs may train the same learner)."""
    return os.path.basename(os.path.dirname(row["checkpoint"]))


def commands(rows):
    out, seen = [], set()
    for r in rows:
        cmd = train_command(r["settings"])
        if cmd not in seen:
            seen.add(cmd)
            out.append(f"\n{run_name(r)}:\n\n    {cmd}")
        out.append(f"    {eval_command(r)}")
    return "\n".join(out)


def plot_curves(runs, path, smooth=50):
    """One panel per run: training accuracy (moving average) and validation accuracy.

    ``runs`` maps a label to a run folder. Training accuracy is on each run's own training
    episodes (their way count differs); validation on held-out characters at the run's
    shot count, 5-way for metric learners and at the training way count for the MAML
    family (``val_ways`` in the run's settings)."""
    import math

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    cols = 4
    rows = math.ceil(len(runs) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), sharey=True,
                             squeeze=False)
    for ax, (name, folder) in zip(axes.flat, runs.items()):
        it, acc, val = [], [], []     # one pass over the log, keeping only what is drawn
        for r in iter_metrics(folder):
            it.append(r["iteration"])
            acc.append(r.get("accuracy", np.nan))
            if r.get("val_accuracy") is not None:
                val.append((r["iteration"], r["val_accuracy"]))
        it, acc = np.array(it), np.array(acc)
        k = max(1, min(smooth, len(acc) // 5))   # a short run keeps some points to draw
        mean = np.convolve(acc, np.ones(k) / k, "valid")
        ax.plot(it[k - 1:], mean, ".-" if len(mean) < 30 else "-", lw=1, color="C0",
                label="training (running mean)")
        if val:
            ax.plot(*zip(*val), "o--", color="C1", label="validation")
        ax.set_title(f"{name}\n(training: mean of {k} iteration{'s' * (k != 1)})",
                     fontsize=8)
        ax.grid(alpha=0.3)
        ax.set_xlabel("iteration", fontsize=8)
    for ax in axes.flat[len(runs):]:
        ax.axis("off")
    for row in axes[:, 0]:
        row.set_ylabel("query accuracy (fraction)")
    handles = [plt.Line2D([], [], color="C0", marker=".", label="training (running mean)"),
               plt.Line2D([], [], color="C1", marker="o", ls="--", label="validation")]
    fig.legend(handles=handles, loc="upper right", fontsize=7)   # one legend for every panel
    fig.suptitle("Omniglot meta-training on this machine")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--report", default="outputs/results/omniglot.jsonl")
    parser.add_argument("--plot", default=None,
                        help="the learning curves' figure (default: learning_curves.png beside "
                        "the report)")
    args = parser.parse_args(argv)
    if not os.path.isfile(args.report):
        parser.error(f"{args.report} is not a file: run examples/omniglot_results.sh first")
    rows = [json.loads(line) for line in open(args.report) if line.strip()]
    other = [r for r in rows if "accuracy" not in r]      # a sinusoid row records its MSE
    rows = [r for r in rows if "accuracy" in r]
    if other:
        print(f"results_table: {len(other)} row(s) without an accuracy (sinusoid runs) "
              f"left out of the Omniglot table")
    if not rows:
        parser.error(f"{args.report} holds no Omniglot rows: run examples/omniglot_results.sh "
                     "first")
    plot = args.plot or os.path.join(os.path.dirname(args.report), "learning_curves.png")
    order = {name: i for i, name in enumerate(PAPER)}
    rows.sort(key=lambda r: (order.get(r["learner"], 99), r["fce"], run_name(r), r["ways"],
                             r["shots"]))
    print(table(rows))
    print("\nCommands:" + commands(rows))
    runs = {f"{run_name(r)} ({r['train_ways']}-way {r['train_shots']}-shot)":
            os.path.dirname(r["checkpoint"]) for r in rows}
    try:
        os.makedirs(os.path.dirname(plot) or ".", exist_ok=True)
        print(f"\nlearning curves: {plot_curves(runs, plot)}")
    except ImportError:
        print("\n(no plot: pip install matplotlib)")


if __name__ == "__main__":
    from minimeta.cli import script

    raise SystemExit(script(main))
