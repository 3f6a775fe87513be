"""Benchmark: peak memory of second-order MAML for 1, 5 and 10 inner steps.

conv4 backbone, Omniglot-sized random images (28×28), 20-way 1-shot, 5 queries per class, a
meta-batch of 16 tasks. Second-order inner loops keep every step's graph until the meta-gradient
is taken, so memory grows with the steps. Two ways of taking the meta-gradient are measured:
- ``outer_step``: backward per task, each task's graph freed before the next (the default);
- ``meta_gradient``: one backward over the summed meta-batch (all 16 graphs alive at once).
Peak memory is measured with tracemalloc, which sees NumPy's array allocations.

Run: python benchmarks/maml_memory.py [--steps 1 5 10] [--tasks 16]
"""
import argparse
import gc
import time
import tracemalloc

import numpy as np
from threadpoolctl import threadpool_limits

from minimeta import nn
from minimeta.learners import MAML
from _timing import positive


def make_tasks(n_tasks, ways, shots, queries, rng):
    def images(n):
        return rng.random((n, 1, 28, 28), dtype=np.float32)
    return [(images(ways * shots), np.repeat(np.arange(ways), shots),
             images(ways * queries), np.repeat(np.arange(ways), queries))
            for _ in range(n_tasks)]


def peak_mib(fn):
    gc.collect()
    tracemalloc.start()
    start = time.perf_counter()
    fn()
    elapsed = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2 ** 20, elapsed


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=positive, nargs="+", default=[1, 5, 10])
    parser.add_argument("--tasks", type=positive, default=16)
    parser.add_argument("--ways", type=positive, default=20)
    parser.add_argument("--whole-batch-max-steps", type=int, default=1,
                        help="also measure the whole-batch backward up to this many steps "
                        "(it holds every task's graph: about 2.9 GiB at 1 step)")
    args = parser.parse_args()
    tasks = make_tasks(args.tasks, args.ways, 1, 5, np.random.default_rng(0))
    print(f"conv4, {args.ways}-way 1-shot, 5 queries/class, {args.tasks} tasks, float32")
    with threadpool_limits(limits=1):
        for steps in args.steps:
            net = nn.conv4(args.ways)
            learner = MAML(net, 0.4, steps)
            per_task, t1 = peak_mib(lambda: learner.outer_step(tasks))
            line = f"inner steps {steps:2d}: peak {per_task:8.1f} MiB per-task backward " \
                   f"({t1:6.1f} s)"
            if steps <= args.whole_batch_max_steps:  # all graphs alive: grows fast
                batch, t2 = peak_mib(lambda: learner.meta_gradient(tasks))
                line += f"   {batch:8.1f} MiB whole-batch backward ({t2:6.1f} s)"
            print(line, flush=True)


if __name__ == "__main__":
    main()
