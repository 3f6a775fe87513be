"""Benchmark: conv4 forward + backward on a batch of 640 images of 28×28 (float32).

Times minimeta (kernel table as configured: the NumPy references until numba kernels land;
``MINIMETA_KERNELS=reference`` forces them) and, where installed, PyTorch's CPU build on the
same network, same batch, same thread count. Prints medians and the ratio.

Run: python benchmarks/conv4_step.py [--batch 640] [--threads 1]
"""
import argparse

import numpy as np
from threadpoolctl import threadpool_limits

import minimeta as mm
import minimeta.functional as F
from minimeta import nn
from _timing import median_time, report, try_torch


def minimeta_step(batch, rng):
    net = nn.conv4(5)
    x = mm.tensor(rng.random((batch, 1, 28, 28), dtype=np.float32))
    labels = rng.integers(0, 5, batch)
    params = net.parameters()

    def run():
        mm.grad(F.cross_entropy(net(x), labels), params)
    return run


def torch_step(torch, batch, rng):
    tnn = torch.nn
    layers = []
    for i in range(4):
        layers += [tnn.Conv2d(1 if i == 0 else 64, 64, 3, padding=1), tnn.BatchNorm2d(64),
                   tnn.ReLU(), tnn.MaxPool2d(2)]
    net = tnn.Sequential(*layers, tnn.Flatten(), tnn.Linear(64, 5))
    x = torch.from_numpy(rng.random((batch, 1, 28, 28), dtype=np.float32))
    labels = torch.from_numpy(rng.integers(0, 5, batch))
    params = list(net.parameters())

    def run():
        torch.autograd.grad(torch.nn.functional.cross_entropy(net(x), labels), params)
    return run


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=640)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    torch = try_torch()
    if torch is not None:
        torch.set_num_threads(args.threads)
    with threadpool_limits(limits=args.threads):
        ours = median_time(minimeta_step(args.batch, rng), repeats=args.repeats, warmup=1)
        ref = median_time(torch_step(torch, args.batch, rng), repeats=args.repeats,
                          warmup=1) if torch else None
    report(f"conv4 fwd+bwd, batch {args.batch}, {args.threads} thread(s)", ours, ref)


if __name__ == "__main__":
    main()
