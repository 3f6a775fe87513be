"""The same-budget table: train for 5, 10, 20 and 30 minutes of training time, test after each.

One run per learner, extended by ``--resume`` (the training clock, ``train_seconds``, counts on
across resumes, so "10 minutes" is the 5-minute run trained 5 minutes more):

- ``protonet``: 60-way 1-shot 5-query episodes, Adam 1e-3 (no halving), tested 5-way 1-shot
  and 20-way 1-shot on 600 test episodes;
- ``maml``: second-order MAML 5-way 1-shot, 32 tasks, α 0.4, 1 inner step (3 at test), tested
  5-way 1-shot on 600 test episodes;
- ``snail``: SNAIL 5-way (one model for 1..5 shots, 8 episodes a batch, Adam 1e-3), tested
  5-way 1-shot and 5-shot; ``snail20``: the same at 20 ways (4 episodes a batch), tested
  20-way 1-shot and 5-shot. No learning-rate halving for either.

The first two are PyTorch's protocol in issue 13 (figures there, measured on this kind of
machine); with ``snail`` they make the three families' learning curves at equal training time.
Every command is printed before it runs, and its output, progress lines included, as it
comes; results go to ``<out>/budget.jsonl``, the commands' output to ``<out>/budget.log``.
A row's ``train_seconds`` is the run's training clock over all its segments (the budget);
``train_wall_s`` the wall-clock seconds of this segment's command alone (validation and
checkpoints too).

Run: python benchmarks/budget.py [--learners protonet maml snail snail20] [--minutes 5 10 20 30]
     [--out outputs/budget]
"""
import argparse
import json
import os
import shlex
import subprocess
import sys
import time

TRAIN = {
    "protonet": ["--learner", "protonet", "--ways", "60", "--shots", "1", "--queries", "5",
                 "--lr-halve-every", "0"],
    "maml": ["--learner", "maml", "--ways", "5", "--shots", "1"],
    "snail": ["--learner", "snail", "--ways", "5", "--shots", "5", "--lr-halve-every", "0"],
    "snail20": ["--learner", "snail", "--ways", "20", "--shots", "5", "--lr-halve-every", "0"],
}
TESTS = {"protonet": [("5", "1"), ("20", "1")], "maml": [("5", "1")],
         "snail": [("5", "1"), ("5", "5")], "snail20": [("20", "1"), ("20", "5")]}


def run(cmd, log):
    """Run ``cmd``; its output (the progress lines of a run of many minutes) goes to ``log``
    and, indented, to this script's stderr as it comes. Returns the wall-clock seconds."""
    print("$ " + " ".join(shlex.quote(c) for c in cmd), flush=True)
    start = time.perf_counter()
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          bufsize=1) as child:
        said = []
        for line in child.stdout:
            log.write(line)
            log.flush()
            sys.stderr.write("    " + line)
            said.append(line)
    if child.returncode:
        sys.exit(f"budget: the command above failed (exit {child.returncode}):\n"
                 + "".join(said[-20:]))
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--learners", nargs="+", default=["protonet", "maml"],
                        choices=sorted(TRAIN))
    parser.add_argument("--minutes", nargs="+", type=float, default=[5, 10, 20, 30])
    parser.add_argument("--episodes", type=int, default=600)
    parser.add_argument("--out", default="outputs/budget")
    parser.add_argument("--extend", action="store_true",
                        help="the runs in <out> exist: resume each one for every --minutes")
    parser.add_argument("--plot-only", action="store_true",
                        help="draw <out>/curves.png from <out>/budget.jsonl, train nothing")
    args = parser.parse_args()
    if args.episodes < 2 or not all(m > 0 for m in args.minutes):
        parser.error(f"--episodes must be at least 2 and every --minutes > 0, got "
                     f"{args.episodes} and {args.minutes}")
    if args.plot_only:
        if not os.path.isfile(os.path.join(args.out, "budget.jsonl")):
            parser.error(f"--plot-only: {args.out} holds no budget.jsonl: run without "
                         "--plot-only first")
        return plot(args.out)
    os.makedirs(args.out, exist_ok=True)
    mm = [sys.executable, "-m", "minimeta.cli"]
    results = open(os.path.join(args.out, "budget.jsonl"), "a")
    log = open(os.path.join(args.out, "budget.log"), "a")
    earlier = [json.loads(line) for line in open(os.path.join(args.out, "budget.jsonl"))]
    for learner in args.learners:
        folder = os.path.join(args.out, learner)
        # a fresh training run (--overwrite) is a new curve; --extend goes on with the last
        ids = [r.get("run") for r in earlier if r["learner"] == learner]
        run_id = ids[-1] if args.extend and ids else time.strftime("%Y-%m-%dT%H:%M:%S")
        for i, minutes in enumerate(sorted(args.minutes)):
            cmd = mm + ["train"] + TRAIN[learner] + [
                "--iterations", "1000000", "--minutes", str(minutes), "--validate-every", "0",
                "--out", folder] + (["--resume"] if i or args.extend else ["--overwrite"])
            wall = run(cmd, log)
            last = json.loads(open(os.path.join(folder, "metrics.jsonl")).readlines()[-1])
            for ways, shots in TESTS[learner]:
                report = os.path.join(args.out, "eval.jsonl")
                cmd = mm + ["eval", "--checkpoint", os.path.join(folder, "checkpoint.npz"),
                            "--episodes", str(args.episodes), "--ways", ways, "--shots", shots,
                            "--report", report]
                run(cmd, log)
                row = json.loads(open(report).readlines()[-1])
                record = {"learner": learner, "minutes": minutes,
                          "iterations": last["iteration"],
                          "train_seconds": last.get("train_seconds"), "train_wall_s": wall,
                          "ways": int(ways), "shots": int(shots),
                          "accuracy": row.get("accuracy"), "interval": row.get("interval"),
                          "episodes": args.episodes, "run": run_id}
                results.write(json.dumps(record) + "\n")
                results.flush()
                print(json.dumps(record), flush=True)
    plot(args.out)


def latest_runs(rows):
    """The rows of each learner's last training run (``run``): a fresh run's 5 minutes had
    been drawn on one curve with an earlier run's 10 and 20."""
    latest = {r["learner"]: r.get("run") for r in rows}
    return [r for r in rows if r.get("run") == latest[r["learner"]]]


def plot(out):
    """``<out>/curves.png``: accuracy (with its 95% interval) against minutes of training."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("budget: matplotlib is not installed, so no curves.png (pip install matplotlib)")
        return
    curves, episodes = {}, set()
    for r in latest_runs([json.loads(line) for line in open(os.path.join(out, "budget.jsonl"))]):
        key = f"{r['learner']} ({r['ways']}-way {r['shots']}-shot)"
        curves.setdefault(key, {})[r["minutes"]] = (100 * r["accuracy"], 100 * r["interval"])
        episodes.add(r.get("episodes", 600))                # (rows before it was recorded)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for key, points in sorted(curves.items()):
        m = sorted(points)
        ax.errorbar(m, [points[t][0] for t in m], [points[t][1] for t in m], marker="o",
                    capsize=3, label=key)
    counts = " or ".join(str(e) for e in sorted(episodes))
    ax.set(xlabel="minutes of training (this machine)",
           ylabel=f"test accuracy (%, ± 95%), {counts} episodes",
           title="Omniglot: accuracy at equal training time")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    path = os.path.join(out, "curves.png")
    fig.savefig(path, dpi=120, bbox_inches="tight")
    print(f"curves: {path}")


if __name__ == "__main__":
    main()
