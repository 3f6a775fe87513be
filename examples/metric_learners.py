"""Prototypical, Matching and Relation Networks on Omniglot, written out with the library API.

The command line (``minimeta train --learner protonet|matching|relation``) runs the same
learners with checkpoints and validation, each with its paper's settings; this script shows
the few lines underneath, with one set of settings for all three (give Relation Networks
their paper's 5-way episodes of 19 queries a class, as below): a backbone, a learner, an
episode sampler, Adam, and the outer step. It trains on the "vinyals" training characters,
then tests on 600 episodes of the test characters (mean accuracy ± 95%).

    python examples/metric_learners.py --learner protonet --episodes 300
    python examples/metric_learners.py --learner matching --fce --train-way 5 --episodes 300
    python examples/metric_learners.py --learner relation --train-way 5 --queries 19 \
        --episodes 300

Needs Omniglot (``MINIMETA_DATA_DIR``, or a download on first use).
"""
import argparse

from minimeta import nn
from minimeta.data import EpisodeSampler, omniglot
from minimeta.experiments.options import count
from minimeta.experiments.evaluation import run_episodes
from minimeta.experiments.progress import Progress, first_use_note
from minimeta.learners import MatchingNet, ProtoNet, RelationNet
from minimeta.optim import Adam
from minimeta.threads import configure


def make_learner(name, fce=False, seed=0):
    """The three metric learners on their papers' backbones."""
    if name == "protonet":
        return ProtoNet(nn.conv4(seed=seed))                    # 28×28 → 64 features
    if name == "matching":
        return MatchingNet(nn.conv4(seed=seed), fce=fce, seed=seed)
    return RelationNet(nn.relation_embedding(seed=seed),
                       nn.relation_module(seed=nn.layers.derived(seed, 1)))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--learner", choices=["protonet", "matching", "relation"],
                        default="protonet")
    parser.add_argument("--fce", action="store_true", help="matching: full context embeddings")
    parser.add_argument("--episodes", type=count(1), default=300, help="training episodes")
    parser.add_argument("--train-way", type=count(2), default=20)
    parser.add_argument("--shots", type=count(1), default=1, help="in training and test")
    parser.add_argument("--queries", type=count(1), default=5, help="per class, in training")
    parser.add_argument("--test-way", type=count(2), default=5)
    parser.add_argument("--test-queries", type=count(1), default=None,
                        help="per class, in test (default: 15, or what --shots leaves of 20)")
    parser.add_argument("--test-episodes", type=count(2), default=600)
    parser.add_argument("--seed", type=count(0), default=0)
    args = parser.parse_args(argv)
    if args.fce and args.learner != "matching":
        parser.error(f"--fce: full context embeddings are Matching Networks'; not {args.learner}")
    if args.test_queries is None:
        args.test_queries = max(1, min(15, 20 - args.shots))
    for what, queries in (("--queries", args.queries), ("--test-queries", args.test_queries)):
        if args.shots + queries > 20:   # checked before training, not after it (test queries)
            parser.error(f"--shots + {what} = {args.shots + queries}: an Omniglot class has "
                         "20 drawings")
    configure()

    train = omniglot.class_images("vinyals", "train")         # (4800 classes, 20, 28, 28)
    test = omniglot.class_images("vinyals", "test")
    EpisodeSampler(test, args.test_way, args.shots, args.test_queries)  # checked before training
    learner = make_learner(args.learner, args.fce, args.seed)
    first_use_note(learner.net, "cpu", print)    # numba compiles on a first run, once
    opt = Adam(learner.meta_parameters(), lr=1e-3)
    sampler = EpisodeSampler(train, args.train_way, args.shots, args.queries, seed=args.seed)
    bar = Progress(args.episodes, f"{args.learner} train")
    for i in range(args.episodes):
        metrics = learner.outer_step([sampler.sample()])      # one episode per step
        opt.step()
        opt.zero_grad()
        bar.update(i, **metrics)

    def tasks(seq, n):
        return EpisodeSampler(test, args.test_way, args.shots, args.test_queries,
                              seed=seq).batch(n)

    mean, half = run_episodes(learner, tasks, args.test_episodes, seed=12345)
    print(f"{args.learner}{' (FCE)' if args.fce else ''}: {args.test_way}-way {args.shots}-shot "
          f"test accuracy {mean:.4f} ± {half:.4f} ({args.test_episodes} episodes, "
          f"{args.test_queries} queries per class) after {args.episodes} {args.train_way}-way "
          "training episodes")
    return mean


if __name__ == "__main__":
    from minimeta.cli import script

    raise SystemExit(script(main))
