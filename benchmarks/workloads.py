"""Benchmark: the meta-learning workloads, minimeta (kernels on / NumPy reference) vs PyTorch.

1. conv4 forward + backward on 640 images of 28×28 (float32);
2. one second-order MAML meta-iteration through ``minimeta.learners.MAML``: 5-way 1-shot,
   15 queries per class, 32 tasks, 1 inner step, α = 0.4 (conv4 with a 5-way head);
3. one ProtoNet training episode: 60-way 5-shot 5-query, conv4 embedding, logits −‖q − c‖²,
   cross-entropy, an Adam step.

PyTorch (CPU build, optional) runs the same computation written functionally (torch.func style
conv4, the same batch-norm mode) in the same process, with the same thread count.
Run: python benchmarks/workloads.py [--threads 1] [--only maml]
"""
import argparse

import numpy as np

import minimeta as mm
import minimeta.functional as F
from minimeta import kernels as K, nn
from minimeta.learners import MAML
from minimeta.optim import Adam
from _timing import (add_malloc_flag, apply_malloc_policy, apply_omp_policy, median_time,
                     minimeta_threads, positive, report)

RNG = np.random.default_rng(0)
DTYPE = np.float32    # the images' (and so the computation's); a test sets float64


def images(n):
    return RNG.random((n, 1, 28, 28), dtype=DTYPE)


def mm_conv4(batch=640, device="cpu"):
    net, y = nn.conv4(5).to(device), RNG.integers(0, 5, batch)
    x = mm.tensor(images(batch), device=device)
    params = net.parameters()
    return lambda: mm.grad(F.cross_entropy(net(x), y), params)


def maml_tasks(n_tasks=32, ways=5, shots=1, queries=15):
    return [(images(ways * shots), np.repeat(np.arange(ways), shots),
             images(ways * queries), np.repeat(np.arange(ways), queries))
            for _ in range(n_tasks)]


def mm_maml():
    net = nn.conv4(5)
    learner, tasks = MAML(net, 0.4, 1), maml_tasks()
    opt = Adam(learner.meta_parameters(), 1e-3)

    def run():
        learner.outer_step(tasks)
        opt.step()
        opt.zero_grad()
    return run


def proto_episode(ways=60, shots=5, queries=5):
    return images(ways * shots), images(ways * queries), np.repeat(np.arange(ways), queries)


def mm_protonet(device="cpu"):
    net = nn.conv4().to(device)
    params = net.parameters()
    opt = Adam(params, 1e-3)
    xs, xq, yq = proto_episode()
    # made once, where the computation runs, as PyTorch's are (until 2026-12-05 each call
    # had copied them again, and uploaded them on a GPU)
    xs, xq = mm.tensor(xs, device=device), mm.tensor(xq, device=device)

    def run():
        emb_s = net(xs)
        protos = mm.mean(mm.reshape(emb_s, (60, 5, -1)), axis=1)
        logits = -F.pairwise_sq_distances(net(xq), protos)
        opt.step(mm.grad(F.cross_entropy(logits, yq), params))
    return run


# ----- PyTorch, written functionally like minimeta's conv4 --------------------------------------
def torch_conv4_params(torch, head=5, device="cpu", channels_last=False):
    """conv4's parameters, as minimeta's ``nn.conv4`` draws them; ``channels_last``: the conv
    weights in NHWC memory order, which makes PyTorch's convolutions (oneDNN) take and give
    NHWC activations, its faster CPU layout (an audit of these benchmarks, 2026-12-03)."""
    gen = torch.Generator().manual_seed(0)
    params = []
    for i in range(4):
        fan = (1 if i == 0 else 64) * 9
        params += [torch.randn(64, 1 if i == 0 else 64, 3, 3, generator=gen) * (2 / fan) ** 0.5,
                   torch.zeros(64), torch.ones(64), torch.zeros(64)]
    if head:
        params += [torch.randn(64, head, generator=gen) * (2 / 64) ** 0.5, torch.zeros(head)]
    params = [p.to(device) for p in params]
    if channels_last:
        params = [p.contiguous(memory_format=torch.channels_last) if p.ndim == 4 else p
                  for p in params]
    return [p.requires_grad_() for p in params]


def torch_conv4(torch, x, params):
    tf = torch.nn.functional
    for i in range(4):
        w, b, g, beta = params[4 * i:4 * i + 4]
        x = tf.conv2d(x, w, b, padding=1)
        x = tf.batch_norm(x, None, None, g, beta, training=True)
        x = tf.relu(tf.max_pool2d(x, 2))   # pool, then relu: nn.conv4's order
    x = x.flatten(1)
    return x @ params[16] + params[17] if len(params) > 16 else x


def torch_maml(torch, ways=5, queries=15, n_tasks=32, steps=1, device="cpu", step=True,
               workers=1, channels_last=False):
    """PyTorch's second-order MAML meta-iteration (functional conv4, α 0.4, Adam step; with
    ``step=False`` the meta-gradient is left in ``run.params``' ``.grad``). ``workers`` > 1
    runs the tasks on that many Python threads, as minimeta's learners do (autograd releases
    the GIL; the caller sets ``torch.set_num_threads(1)``): each thread sums its tasks'
    meta-gradients, then the sums are added in a fixed order. ``channels_last``: the conv
    weights NHWC (``torch_conv4_params``)."""
    import concurrent.futures

    tf = torch.nn.functional
    params = torch_conv4_params(torch, head=ways, device=device, channels_last=channels_last)
    opt = torch.optim.Adam(params, 1e-3)
    tasks = [tuple(torch.from_numpy(a).to(device) for a in t)
             for t in maml_tasks(n_tasks, ways, 1, queries)]

    def query_loss(xs, ys, xq, yq):
        fast = params
        for _ in range(steps):
            loss = tf.cross_entropy(torch_conv4(torch, xs, fast), ys)
            grads = torch.autograd.grad(loss, fast, create_graph=True)
            fast = [p - 0.4 * g for p, g in zip(fast, grads)]
        return tf.cross_entropy(torch_conv4(torch, xq, fast), yq) / len(tasks)

    def summed(part):
        total = None
        for task in part:
            grads = torch.autograd.grad(query_loss(*task), params)
            total = grads if total is None else [a + b for a, b in zip(total, grads)]
        return total

    pool = concurrent.futures.ThreadPoolExecutor(workers) if workers > 1 else None

    def run():
        if pool is None:
            for task in tasks:
                query_loss(*task).backward()
        else:
            shares = [tasks[w::workers] for w in range(min(workers, len(tasks)))]
            for part in pool.map(summed, shares):
                for p, g in zip(params, part):
                    p.grad = g if p.grad is None else p.grad + g
        if step:
            opt.step()
            opt.zero_grad()
    run.params = params
    return run


def torch_maml_compiled(torch, ways=5, queries=15, n_tasks=32, steps=1, device="cpu",
                        step=True):
    """``torch_maml`` in PyTorch's functional transforms, through ``torch.compile``: a task's
    meta-gradient is ``torch.func.grad`` of its query loss after inner steps that are
    ``torch.func.grad`` themselves (autograd's ``create_graph`` double backward, ``torch_maml``'s,
    does not compile); the tasks in a loop, their gradients summed. The same meta-gradient
    (tests/test_benchmark_workloads.py); compiled once, for a task's shapes, at the first call
    (some 65 s for 5-way here). Added 2026-12-05: 1.5× faster than PyTorch's eager loop on this
    project's CPU, so PyTorch's best MAML setting had been left out again."""
    tf = torch.nn.functional
    params = torch_conv4_params(torch, head=ways, device=device)
    opt = torch.optim.Adam(params, 1e-3)
    tasks = [tuple(torch.from_numpy(a).to(device) for a in t)
             for t in maml_tasks(n_tasks, ways, 1, queries)]

    def query_loss(p, xs, ys, xq, yq):
        fast = p
        for _ in range(steps):
            grads = torch.func.grad(lambda f: tf.cross_entropy(torch_conv4(torch, xs, f), ys))(
                fast)
            fast = tuple(w - 0.4 * g for w, g in zip(fast, grads))
        return tf.cross_entropy(torch_conv4(torch, xq, fast), yq) / len(tasks)

    meta = torch.compile(torch.func.grad(query_loss))

    def run():
        values, total = tuple(p.detach() for p in params), None
        for task in tasks:
            grads = meta(values, *task)
            total = grads if total is None else [a + b for a, b in zip(total, grads)]
        for p, g in zip(params, total):
            p.grad = g
        if step:
            opt.step()
            opt.zero_grad()
    run.params = params
    return run


def torch_conv4_stacked(torch, x, params, tasks):
    """``torch_conv4`` on a stack of tasks, every parameter with a leading task axis: images
    (N, T·C, H, W), each task's channels a group of grouped convolutions (``groups=T``), batch
    norm over T·C channels (statistics per task and channel), the head a batched matmul."""
    tf = torch.nn.functional
    for i in range(4):
        w, b, g, beta = params[4 * i:4 * i + 4]
        x = tf.conv2d(x, w.reshape((-1,) + w.shape[2:]), b.reshape(-1), padding=1,
                      groups=tasks)
        x = tf.batch_norm(x, None, None, g.reshape(-1), beta.reshape(-1), training=True)
        x = tf.relu(tf.max_pool2d(x, 2))   # pool, then relu: nn.conv4's order
    x = x.reshape(x.shape[0], tasks, -1).transpose(0, 1)           # (T, N, features)
    return x @ params[16] + params[17]


def torch_maml_stacked(torch, ways=5, queries=15, n_tasks=32, steps=1, device="cpu",
                       step=True):
    """``torch_maml`` with the meta-batch stacked as minimeta's ``StackedTasks`` stacks it
    (grouped convolutions): the same meta-gradient from one graph
    (tests/test_benchmark_workloads.py)."""
    tf = torch.nn.functional
    params = torch_conv4_params(torch, head=ways, device=device)
    opt = torch.optim.Adam(params, 1e-3)
    xs, ys, xq, yq = (torch.from_numpy(np.stack(part)).to(device)
                      for part in zip(*maml_tasks(n_tasks, ways, 1, queries)))

    def images(x):      # (T, N, C, H, W) → (N, T·C, H, W)
        return x.transpose(0, 1).reshape(x.shape[1], -1, *x.shape[3:])

    def loss(x, y, fast):   # the sum over tasks of each task's mean loss
        logits = torch_conv4_stacked(torch, images(x), fast, n_tasks)
        return tf.cross_entropy(logits.reshape(-1, ways), y.reshape(-1)) * n_tasks

    def run():
        fast = [p.expand((n_tasks,) + (1,) * (p.ndim == 1) + p.shape) for p in params]
        for _ in range(steps):
            grads = torch.autograd.grad(loss(xs, ys, fast), fast, create_graph=True)
            fast = [p - 0.4 * g for p, g in zip(fast, grads)]
        (loss(xq, yq, fast) / n_tasks).backward()
        if step:
            opt.step()
            opt.zero_grad()
    run.params = params
    return run


def torch_workloads(torch, device="cpu", layout="nchw", batch=640):
    """PyTorch's conv4 and ProtoNet runs (and MAML's); ``layout`` "channels_last" (the conv
    weights, hence the activations, NHWC) or "compile" (channels_last, and the network
    through ``torch.compile``: fused, as minimeta's kernels are; it compiles at the first call,
    the warm-up; it cannot take autograd's double backward, so MAML has neither: a
    ``torch.func`` version, which it can take, is written for the sinusoid only,
    ``sinusoid_maml.theirs_compiled``); ``batch``: conv4's images,
    as ``mm_conv4``'s."""
    tf = torch.nn.functional
    last = layout != "nchw"
    net = (lambda x, params: torch_conv4(torch, x, params))
    if layout == "compile":
        net = torch.compile(net)

    def conv4():
        params = torch_conv4_params(torch, device=device, channels_last=last)
        x = torch.from_numpy(images(batch)).to(device)
        y = torch.from_numpy(RNG.integers(0, 5, batch)).to(device)
        return lambda: torch.autograd.grad(tf.cross_entropy(net(x, params), y), params)

    def maml():
        return torch_maml(torch, device=device)

    def protonet():
        params = torch_conv4_params(torch, head=0, device=device, channels_last=last)
        opt = torch.optim.Adam(params, 1e-3)
        xs, xq, yq = (torch.from_numpy(a).to(device) for a in proto_episode())

        def run():
            protos = net(xs, params).reshape(60, 5, -1).mean(1)
            logits = -torch.cdist(net(xq, params), protos) ** 2
            opt.zero_grad()
            tf.cross_entropy(logits, yq).backward()
            opt.step()
        return run
    return {"conv4": conv4, "maml": maml, "protonet": protonet}


WORKLOADS = {"conv4": ("conv4 fwd+bwd, 640 images", mm_conv4),
             "maml": ("MAML meta-iteration 5w1s, 32 tasks", mm_maml),
             "protonet": ("ProtoNet episode 60w5s5q + Adam", mm_protonet)}


def main():
    from threadpoolctl import threadpool_limits

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=positive, default=1)
    parser.add_argument("--numba-threads", type=int, default=None,
                        help="numba's threads (default: --threads)")
    parser.add_argument("--repeats", type=positive, default=5)
    parser.add_argument("--only", choices=sorted(WORKLOADS), nargs="*")
    add_malloc_flag(parser)
    parser.add_argument("--no-reference", action="store_true",
                        help="skip the (slow) NumPy-reference kernel timings")
    args = parser.parse_args()
    apply_malloc_policy(args)
    torch = apply_omp_policy(max(args.threads, args.numba_threads or 1))
    if torch:
        torch.set_num_threads(args.threads)
    minimeta_threads(args.numba_threads or args.threads)   # numba and the kernels' split
    print(f"{args.threads} thread(s) for BLAS and torch, {args.numba_threads or args.threads} "
          f"for numba; medians of {args.repeats}")
    with threadpool_limits(limits=args.threads):
        for key in args.only or list(WORKLOADS):
            label, make = WORKLOADS[key]
            ours = median_time(make(), repeats=args.repeats, warmup=1)
            ref = median_time(torch_workloads(torch)[key](), repeats=args.repeats,
                              warmup=1) if torch else None
            report(label + " [kernels]", ours, ref)
            if not args.no_reference:
                with K.use_reference():
                    slow = median_time(make(), repeats=max(2, args.repeats // 2), warmup=1)
                report(label + " [reference]", slow, ours, "kernels")


if __name__ == "__main__":
    main()
