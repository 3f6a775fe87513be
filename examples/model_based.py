"""The model-based family with the library API: a CNP on sinusoids, SNAIL and MANN on Omniglot.

None of them takes a gradient step at test time: the support set is an input, read by a
network (a mean of encoded points, a causal sequence model, a recurrent net with a memory).
The command line (``minimeta train --learner cnp|snail|mann``) runs the same learners with
checkpoints; this script shows the lines underneath, trained for ``--minutes`` of training
time (or ``--iterations``), then tested:

- ``cnp``: MSE at K = 5 and 10 on the 600 held-out tasks of the sinusoid table (the same
  tasks as MAML's rows in docs/RESULTS.md); one model serves both K (context sizes 1..10);
- ``snail``: accuracy on 600 test episodes, ``--ways``-way 1-shot and 5-shot, from one model
  trained with 1..5 shots;
- ``mann``: instance accuracy (1st, 2nd, 3rd, 4th, 5th, 10th presentation of a class) on 100
  test episodes of 5 classes × 10 drawings at 20×20, as the paper's table.

    python examples/model_based.py --learner cnp --minutes 7
    python examples/model_based.py --learner snail --ways 5 --minutes 10
    python examples/model_based.py --learner mann --minutes 10

SNAIL and MANN need Omniglot (``MINIMETA_DATA_DIR``, or a download on first use).
"""
import argparse
import time

import numpy as np

from minimeta.data import EpisodeSampler, SinusoidTasks, omniglot
from minimeta.experiments.options import count
from minimeta.experiments.evaluation import mean_ci, run_episodes
from minimeta.experiments.progress import Progress, first_use_note
from minimeta.experiments.sinusoid import held_out_tasks
from minimeta.learners import CNP, MANNLearner, SnailLearner
from minimeta.optim import Adam
from minimeta.threads import configure


def make(args):
    """(learner, sample(i) → the i-th training batch, test(learner) → printed results)."""
    if args.learner == "cnp":
        learner, stream = CNP(seed=args.seed), SinusoidTasks(seed=args.seed + 1)

        def test(learner):
            for k in (5, 10):
                mse = [learner.evaluate(t)[0] for t in held_out_tasks(k, args.test_tasks)]
                mean, half = mean_ci(mse)
                print(f"cnp: K = {k}: MSE {mean:.3f} ± {half:.3f} ({args.test_tasks} "
                      f"held-out tasks, 100 query points)")
        return learner, lambda i: stream.sample(25, 10, 10), test
    if args.learner == "snail":
        learner = SnailLearner(args.ways, 5, seed=args.seed)
        first_use_note(learner.net, "cpu", print)    # its conv embedding: numba compiles, once
        train = EpisodeSampler(omniglot.class_images("vinyals", "train"), args.ways, 5, 2,
                               seed=args.seed)
        test_classes = omniglot.class_images("vinyals", "test")
        EpisodeSampler(test_classes, args.ways, 5, 1)    # the test episodes checked before training

        def test(learner):
            for shots in (1, 5):
                def tasks(seq, n, shots=shots):
                    return EpisodeSampler(test_classes, args.ways, shots, 1, seed=seq).batch(n)
                mean, half = run_episodes(learner, tasks, args.test_tasks, seed=12345)
                print(f"snail: {args.ways}-way {shots}-shot accuracy {mean:.4f} ± {half:.4f} "
                      f"({args.test_tasks} episodes)")
        return learner, lambda i: train.batch(8), test
    resize = omniglot.area_matrix(28, 20).astype(np.float32)
    learner = MANNLearner(5, 20, resize=(resize, resize), seed=args.seed)
    train = EpisodeSampler(omniglot.class_images("vinyals", "train"), 5, 10, 1, seed=args.seed)
    test_classes = omniglot.class_images("vinyals", "test")

    def test(learner):
        tasks = EpisodeSampler(test_classes, 5, 10, 1, seed=12345).batch(args.test_tasks)
        acc = learner.instance_accuracy(tasks)
        shown = ", ".join(f"{n}: {acc[n - 1]:.3f}" for n in (1, 2, 3, 4, 5, 10))
        print(f"mann: instance accuracy by presentation {shown} ({args.test_tasks} episodes)")
    return learner, lambda i: train.batch(16), test


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--learner", choices=["cnp", "snail", "mann"], default="cnp")
    parser.add_argument("--ways", type=count(1), default=None,
                        help="snail: classes per episode (default 5)")
    parser.add_argument("--minutes", type=float, default=None, help="training time budget")
    parser.add_argument("--iterations", type=count(1), default=None,
                        help="training iterations (with --minutes: whichever ends first)")
    parser.add_argument("--test-tasks", type=count(2), default=None,
                        help="test tasks or episodes, >= 2 for an interval (default 600; mann 100)")
    parser.add_argument("--seed", type=count(0), default=0)
    args = parser.parse_args(argv)
    if args.minutes is None and args.iterations is None:
        parser.error("give --minutes or --iterations (the training budget)")
    if args.test_tasks is None:
        args.test_tasks = 100 if args.learner == "mann" else 600
    if args.minutes is not None and not args.minutes > 0:
        parser.error(f"--minutes must be > 0, got {args.minutes}")
    if args.learner != "snail" and args.ways is not None:   # (--ways 5 had been ignored)
        parser.error(f"--ways is snail's; {args.learner} here runs the paper's setting")
    args.ways = 5 if args.ways is None else args.ways
    if args.learner == "snail" and args.ways < 2:
        parser.error(f"--ways must be at least 2 to classify, got {args.ways}")
    if args.iterations is None:
        args.iterations = 10 ** 9       # the minutes end it; the progress line counts time
    configure()
    learner, sample, test = make(args)
    opt = Adam(learner.meta_parameters(), lr=1e-3)
    budget = float("inf") if args.minutes is None else 60 * args.minutes
    bar = Progress(args.iterations, args.learner, budget=None if args.minutes is None else budget)
    start, done = time.perf_counter(), 0
    while done < args.iterations and time.perf_counter() - start < budget:
        metrics = learner.outer_step(sample(done))
        opt.step()
        opt.zero_grad()
        bar.update(done, **metrics)
        done += 1
    print(f"\n{args.learner}: {done} training iterations in {time.perf_counter() - start:.0f} s")
    test(learner)
    return done


if __name__ == "__main__":
    from minimeta.cli import script

    raise SystemExit(script(main))
