"""Benchmark: one sinusoid MAML meta-iteration, minimeta vs PyTorch, task loop vs stacked tasks.

The workload of ``examples/sinusoid_maml.py``: MLP 1-40-40-1 (ReLU), 25 tasks of K = 10 support
and 10 query points, second-order MAML with α = 0.01, an Adam step; 1 and 5 inner steps. Each
engine runs it two ways: a Python loop over the 25 tasks, and the meta-batch stacked on a
leading axis (θ broadcast to one copy per task: ``StackedTasks(MAML(...))`` here, the same
broadcast written in PyTorch; and, stacked, PyTorch's ``torch.func`` transforms through
``torch.compile``, its fastest). The tiny matrices make this a test of per-op overhead.
Run: python benchmarks/sinusoid_maml.py [--repeats 7] [--first-call]

``--first-call`` also times each stacked case's first call, which pays for what later calls
reuse: minimeta's recording of the replay (and numba's loading of its kernels), PyTorch's
``torch.compile`` (16–19 s here with an empty inductor cache: set ``TORCHINDUCTOR_CACHE_DIR``
to a new folder for that figure; a later process reuses the cache, a few seconds), and says
after how many meta-iterations the compiled loop's lead has paid its first call back.
"""
import argparse
import time

import numpy as np
from threadpoolctl import threadpool_limits

from minimeta import nn
from minimeta.data import SinusoidTasks
from minimeta.learners import MAML, StackedTasks
from minimeta.optim import Adam
from _timing import (add_malloc_flag, apply_malloc_policy, median_time, minimeta_threads, positive,
                     report, try_torch)

TASKS = SinusoidTasks(seed=0).sample(25, 10)


def ours(steps, vectorize):
    learner = MAML(nn.mlp((1, 40, 40, 1), init_std=0.01), 0.01, steps, loss="mse")
    learner = StackedTasks(learner) if vectorize else learner
    opt = Adam(learner.meta_parameters(), 1e-3)

    def run():
        learner.outer_step(TASKS)
        opt.step()
        opt.zero_grad()
    return run


def theirs(torch, steps, vectorize):
    """The same meta-iteration in PyTorch (float32, functional MLP), in its own fused ops where
    minimeta has one: a linear layer ``addmm`` (``baddbmm`` on a stack of tasks) as minimeta's
    ``Affine``, the loss ``mse_loss`` as its ``MeanSquaredError`` (x @ w + b and the mean of
    squares, written out, took PyTorch 8-25% longer here, 2026-12-05)."""
    gen = torch.Generator().manual_seed(0)
    sizes = [(1, 40), (40, 40), (40, 1)]
    params = []
    for n_in, n_out in sizes:
        params += [(0.01 * torch.randn(n_in, n_out, generator=gen)).requires_grad_(),
                   torch.zeros(n_out, requires_grad=True)]
    opt = torch.optim.Adam(params, 1e-3)

    def mlp(x, p):  # x (…, n, 1); weights (…, in, out), biases (…, 1, out) or (out,)
        for i in range(0, len(p), 2):
            x = (torch.baddbmm if x.ndim == 3 else torch.addmm)(p[i + 1], x, p[i])  # x @ w + b
            x = torch.relu(x) if i < len(p) - 2 else x
        return x

    mse = torch.nn.functional.mse_loss

    def adapt(p, x, y, scale):
        for _ in range(steps):
            loss = mse(mlp(x, p), y) * scale
            grads = torch.autograd.grad(loss, p, create_graph=True)
            p = [w - 0.01 * g for w, g in zip(p, grads)]
        return p

    def run():   # from the same list of NumPy tasks that minimeta's learner is given
        if vectorize:   # (stacked here, in the call, as StackedTasks stacks them in its own)
            xs, ys, xq, yq = [torch.from_numpy(np.stack(part)) for part in zip(*TASKS)]
            n = xs.shape[0]
            stacked = [w.expand(n, *w.shape) if w.ndim == 2 else w.expand(n, 1, *w.shape)
                       for w in params]
            fast = adapt(stacked, xs, ys, n)
            mse(mlp(xq, fast), yq).backward()
        else:
            for task in TASKS:
                xs, ys, xq, yq = map(torch.from_numpy, task)
                fast = adapt(params, xs, ys, 1)
                (mse(mlp(xq, fast), yq) / len(TASKS)).backward()
        opt.step()
        opt.zero_grad()
    return run


def theirs_compiled(torch, steps):
    """The stacked meta-iteration as PyTorch's functional transforms, through ``torch.compile``:
    the query loss after the inner steps differentiated by ``torch.func.grad`` (each inner step
    a ``torch.func.grad`` too), the same numbers as ``theirs`` to rounding. PyTorch's fastest
    here: compiled, the whole second-order meta-gradient is one fused program (autograd's
    ``create_graph`` double backward is what ``torch.compile`` cannot take). It compiles at its
    first call, some 20 s. (Added 2026-12-05: PyTorch's best had been its eager ops.)"""
    gen = torch.Generator().manual_seed(0)
    params = []
    for n_in, n_out in [(1, 40), (40, 40), (40, 1)]:
        params += [0.01 * torch.randn(n_in, n_out, generator=gen), torch.zeros(n_out)]
    opt = torch.optim.Adam(params, 1e-3)
    mse = torch.nn.functional.mse_loss

    def mlp(x, p):
        for i in range(0, len(p), 2):
            x = torch.baddbmm(p[i + 1], x, p[i])
            x = torch.relu(x) if i < len(p) - 2 else x
        return x

    def query_loss(p, xs, ys, xq, yq):
        n = xs.shape[0]
        fast = tuple(w.expand(n, *w.shape) if w.ndim == 2 else w.expand(n, 1, *w.shape)
                     for w in p)
        for _ in range(steps):
            grads = torch.func.grad(lambda f: mse(mlp(xs, f), ys) * n)(fast)
            fast = tuple(w - 0.01 * g for w, g in zip(fast, grads))
        return mse(mlp(xq, fast), yq)

    meta = torch.compile(torch.func.grad(query_loss))

    def run():
        parts = [torch.from_numpy(np.stack(part)) for part in zip(*TASKS)]
        for p, g in zip(params, meta(tuple(params), *parts)):
            p.grad = g
        opt.step()
        opt.zero_grad()
    return run


def first_call(make):
    """(seconds to build and run the first call, median seconds of a later call)."""
    start = time.perf_counter()
    run = make()
    run()
    return time.perf_counter() - start, median_time(run, repeats=5)


def first_calls(torch):
    """Each stacked case's first call against its later ones, minimeta and PyTorch compiled,
    and the run length from which the compiled loop is ahead, its first call included."""
    for steps in (1, 5):
        mine = first_call(lambda: ours(steps, True))
        line = (f"sinusoid MAML, {steps} step{'s' if steps > 1 else ''}, first call: minimeta "
                f"{mine[0]:.2f} s (then {mine[1] * 1e3:.2f} ms)")
        if torch:
            theirs = first_call(lambda: theirs_compiled(torch, steps))
            lead = mine[1] - theirs[1]      # what each later call of the compiled loop gains
            line += (f", torch.compile {theirs[0]:.1f} s (then {theirs[1] * 1e3:.2f} ms): "
                     + (f"ahead from {(theirs[0] - mine[0]) / lead:,.0f} meta-iterations on"
                        if lead > 0 else "never ahead"))
        print(line, flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=positive, default=7)
    parser.add_argument("--first-call", action="store_true",
                        help="also time each stacked case's first call (compile included)")
    add_malloc_flag(parser)
    args = parser.parse_args()
    apply_malloc_policy(args)
    torch = try_torch()
    if torch:
        torch.set_num_threads(1)
    minimeta_threads(1)
    print("1 thread; medians of", args.repeats)
    cases = [(steps, vectorize) for steps in (1, 5) for vectorize in (False, True)]
    with threadpool_limits(limits=1):
        if args.first_call:
            first_calls(torch)
        # every minimeta case before any PyTorch one: see _timing.py on the order
        mine = [median_time(ours(*case), repeats=args.repeats) for case in cases]
        refs = [median_time(theirs(torch, *case), repeats=args.repeats) if torch else None
                for case in cases]
        compiled = [median_time(theirs_compiled(torch, steps), repeats=args.repeats)
                    if torch else None for steps in (1, 5)]
    for (steps, vectorize), m, r in zip(cases, mine, refs):
        way = "stacked tasks" if vectorize else "task loop"
        report(f"sinusoid MAML, {steps} step{'s' if steps > 1 else ''}, {way}", m, r)
        if vectorize:
            report("  the same, against PyTorch compiled", m, compiled[steps > 1],
                   ref_name="torch.compile")


if __name__ == "__main__":
    main()
