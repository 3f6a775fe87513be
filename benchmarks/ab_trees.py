"""A/B timing of a source tree, for "behaviour unchanged" checks of a refactor.

Run it on two checkouts (say a ``git worktree`` of the old commit and this one), alternately,
several rounds each, and compare the best times: the machines here are shared, and the minimum
of many short repeats is what noise moves least. Each line: case, best ms, median ms.

    for r in 1 2 3 4 5 6; do for t in /tmp/before .; do
        (cd $t && PYTHONPATH=$t python benchmarks/ab_trees.py $t); done; done

``--cases`` picks some: the engine's overhead (``chain1 chain2 mlp``), the sinusoid
meta-iteration (``stacked1 stacked5 loop1``), and ``machine.py``'s stacked MAML 5-way
meta-iteration of conv4 (``maml5_stacked``, 2 s a call here: not in the default list).
"""
import argparse
import statistics
import sys
import time

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("tree", help="the checkout whose benchmarks/ (and minimeta, through "
                    "PYTHONPATH) to time")
REPS = {"chain1": 15, "chain2": 10, "mlp": 200, "stacked1": 60, "stacked5": 30, "loop1": 15,
        "maml5_stacked": 4}
parser.add_argument("--cases", nargs="+", choices=list(REPS), default=list(REPS)[:-1])
args = parser.parse_args()
sys.path.insert(0, args.tree + "/benchmarks")
from threadpoolctl import threadpool_limits
import sinusoid_maml as S
import engine_overhead as E
from _timing import apply_malloc_policy
apply_malloc_policy()


def maml5_stacked():
    import machine     # the tree's (its benchmarks/ is first on sys.path); conv4 and numba

    return machine.minimeta_cases("maml5_stacked")[0]


MAKE = {"chain1": lambda: E.chain_minimeta(1), "chain2": lambda: E.chain_minimeta(2),
        "mlp": E.mlp_minimeta, "stacked1": lambda: S.ours(1, True),
        "stacked5": lambda: S.ours(5, True), "loop1": lambda: S.ours(1, False),
        "maml5_stacked": maml5_stacked}
cases = {name: MAKE[name]() for name in args.cases}
with threadpool_limits(limits=1):
    for name, fn in cases.items():
        for _ in range(3):
            fn()
        ts = []
        for _ in range(REPS[name]):
            t = time.perf_counter(); fn(); ts.append(time.perf_counter() - t)
        print(f"{name} {min(ts)*1e3:.4f} {statistics.median(ts)*1e3:.4f}")
