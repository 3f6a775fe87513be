"""Benchmark: the engine's own per-op overhead (MAML runs thousands of tiny ops).

Workloads, each timed as a median and compared with PyTorch (CPU) when it is installed:
1. a chain of 3000 small ops on 8-vectors, forward then backward;
2. the same chain's second derivative (create_graph=True, then grad of the gradient);
3. one training step of the sinusoid MLP 1-40-40-1 (batch 25): forward, MSE, backward, SGD.

Then the cost of anomaly mode (``mm.detect_anomaly()``): the same three workloads with the mode
on and off, interleaved over ``--rounds`` rounds (median of the per-round ratios, and their
spread). Off, the mode costs one attribute test per op and per VJP.

Thread policy: both libraries run on one BLAS / intra-op thread; malloc thresholds fixed (see
docs/PERFORMANCE.md, "Process policy").
Run: python benchmarks/engine_overhead.py
"""
import argparse
import statistics

import numpy as np
from threadpoolctl import threadpool_limits

import minimeta as mm
from _timing import apply_malloc_policy, median_time, minimeta_threads, positive, report, try_torch

STEPS = 1000


def chain_minimeta(order):
    rng = np.random.default_rng(0)
    x = mm.tensor(rng.standard_normal(8), requires_grad=True)
    w, b = mm.tensor(rng.standard_normal(8) * 0.5), mm.tensor(rng.standard_normal(8) * 0.1)

    def run():
        y = x
        for _ in range(STEPS):
            y = mm.tanh(y * w + b)
        (g,) = mm.grad(y.sum(), [x], create_graph=order > 1)
        if order > 1:
            mm.grad(g.sum(), [x])
    return run


def chain_torch(torch, order):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(8, dtype=torch.float64, generator=gen, requires_grad=True)
    w, b = torch.randn(8, dtype=torch.float64) * 0.5, torch.randn(8, dtype=torch.float64) * 0.1

    def run():
        y = x
        for _ in range(STEPS):
            y = torch.tanh(y * w + b)
        (g,) = torch.autograd.grad(y.sum(), [x], create_graph=order > 1)
        if order > 1:
            torch.autograd.grad(g.sum(), [x])
    return run


def mlp_minimeta():
    rng = np.random.default_rng(0)
    shapes = [(1, 40), (40,), (40, 40), (40,), (40, 1), (1,)]
    params = [mm.tensor(rng.standard_normal(s).astype(np.float32) * 0.1, requires_grad=True)
              for s in shapes]
    x = mm.tensor(rng.uniform(-5, 5, (25, 1)).astype(np.float32))
    y = mm.tensor(np.sin(x.numpy()))

    def run():
        w1, b1, w2, b2, w3, b3 = params
        h = mm.relu(x @ w1 + b1)
        h = mm.relu(h @ w2 + b2)
        loss = ((h @ w3 + b3 - y) ** 2).mean()
        grads = mm.grad(loss, params)
        with mm.no_grad():
            for p, g in zip(params, grads):
                p.data -= 0.01 * g.data
    return run


def mlp_torch(torch):
    gen = torch.Generator().manual_seed(0)
    shapes = [(1, 40), (40,), (40, 40), (40,), (40, 1), (1,)]
    params = [(torch.randn(s, generator=gen) * 0.1).requires_grad_() for s in shapes]
    x = torch.rand(25, 1, generator=gen) * 10 - 5
    y = torch.sin(x)

    def run():
        w1, b1, w2, b2, w3, b3 = params
        h = torch.relu(x @ w1 + b1)
        h = torch.relu(h @ w2 + b2)
        loss = ((h @ w3 + b3 - y) ** 2).mean()
        grads = torch.autograd.grad(loss, params)
        with torch.no_grad():
            for p, g in zip(params, grads):
                p -= 0.01 * g
    return run


def anomaly_cost(rounds):
    """Per workload: median and range of (time with detect_anomaly) / (time without)."""
    cases = [("chain order-1", chain_minimeta(1)), ("chain order-2", chain_minimeta(2)),
             ("MLP step", mlp_minimeta())]
    for name, fn in cases:
        ratios, offs = [], []
        for _ in range(rounds):  # off, on, off, on ...: interleaved against drift
            off = median_time(fn, repeats=3)
            with mm.detect_anomaly():
                on = median_time(fn, repeats=3)
            ratios.append(on / off)
            offs.append(off)
        print(f"detect_anomaly on / off, {name:14s}: median {statistics.median(ratios):.2f}x "
              f"(range {min(ratios):.2f}-{max(ratios):.2f}, {rounds} rounds; off "
              f"{statistics.median(offs) * 1e3:.2f} ms)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=positive, default=5, help="anomaly on/off rounds")
    parser.add_argument("--anomaly-only", action="store_true")
    args = parser.parse_args()
    apply_malloc_policy()
    minimeta_threads(1)   # the tiny ops' cost, not numba threads fighting for the cores
    if args.anomaly_only:
        with threadpool_limits(limits=1):
            anomaly_cost(args.rounds)
        return
    torch = try_torch()
    if torch is not None:
        torch.set_num_threads(1)
    else:
        print("PyTorch not installed: printing minimeta's medians only")
    with threadpool_limits(limits=1):
        # every minimeta case before any PyTorch one: see _timing.py on the order
        ours = [median_time(chain_minimeta(order), repeats=5) for order in (1, 2)]
        ours.append(median_time(mlp_minimeta()))
        refs = [median_time(chain_torch(torch, order), repeats=5) if torch else None
                for order in (1, 2)]
        refs.append(median_time(mlp_torch(torch)) if torch else None)
    for order in (1, 2):
        report(f"chain of {3 * STEPS} ops, order-{order} grad", ours[order - 1], refs[order - 1])
        print(f"{'':44s} minimeta per forward op {ours[order - 1] / (3 * STEPS) * 1e6:.1f} us")
    report("MLP 1-40-40-1 training step (batch 25)", ours[2], refs[2])
    with threadpool_limits(limits=1):
        anomaly_cost(args.rounds)


if __name__ == "__main__":
    main()
