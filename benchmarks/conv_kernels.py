"""Benchmark: the conv family kernels on the conv4 layer shapes (batch 640, float32).

For each layer: forward + input gradient + weight gradient, timed for the numba kernels and the
NumPy reference, with GFLOP/s (2·N·O·C·k²·Ho·Wo per pass, three passes; the input gradient is
skipped for the first layer, as in training, where images need no gradient), against the FLOP
rate of NumPy's own GEMM on the equivalent im2col product measured in the same run: the
practical ceiling on this machine. PyTorch's CPU conv is timed too where it is installed.

With ``--threads N`` each library uses N cores at its own best setting: minimeta one BLAS
thread with its kernels split over N threads (``kernels/threads.py``), PyTorch N threads, and
the GEMM ceiling is NumPy's product on N BLAS threads.

Run: python benchmarks/conv_kernels.py [--batch 640] [--threads 1]
"""
import argparse

import numpy as np
from threadpoolctl import threadpool_limits

from minimeta import kernels as K
from _timing import apply_omp_policy, median_time, positive

LAYERS = [(1, 28), (64, 14), (64, 7), (64, 3)]   # (input channels, side); 64 outputs, 3×3, pad 1


def passes(impl, x, w, g, first):
    conv, ig, wg = (impl(n) for n in ("conv2d", "conv2d_input_grad", "conv2d_weight_grad"))

    def run():
        conv(x, w, 1, 1)
        if not first:
            ig(g, w, x.shape, 1, 1)
        wg(x, g, w.shape, 1, 1)
    return run


def torch_passes(torch, x, w, g, first):
    tx = torch.from_numpy(x).requires_grad_(not first)
    tw = torch.from_numpy(w).requires_grad_()
    tg = torch.from_numpy(g)

    def run():
        y = torch.nn.functional.conv2d(tx, tw, padding=1)
        torch.autograd.grad(y, [tw] if first else [tx, tw], tg)
    return run


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=positive, default=640)
    parser.add_argument("--threads", type=positive, default=1)
    args = parser.parse_args()
    torch = apply_omp_policy(args.threads)
    rng = np.random.default_rng(0)
    numba_impl = lambda n: K.resolve(K.TABLE[n].cpu)  # noqa: E731
    ref_impl = lambda n: K.TABLE[n].reference  # noqa: E731
    print(f"batch {args.batch}, float32, {args.threads} thread(s) (minimeta: 1 BLAS thread, "
          f"its kernels split over {args.threads}; the GEMM ceiling: {args.threads} BLAS)")
    import numba
    numba.set_num_threads(args.threads)
    try:
        from minimeta.kernels import threads as kernel_threads
        kernel_threads.set_split_threads(args.threads)
    except ImportError:  # an older tree
        pass
    if torch:   # after numba's: its threading layer, launched by its first set_num_threads, sets
        torch.set_num_threads(args.threads)  # the OpenMP runtime's count, which PyTorch shares
        # (set before it, "--threads 1" had timed PyTorch on every core: 2 here, until 2026-12-05)
    # BLAS only: a bare limit also caps OpenMP, PyTorch's intra-op pool (its threads, and
    # oneDNN's), which had timed PyTorch on one thread at --threads 2
    with threadpool_limits(limits=1, user_api="blas"):
        for c, side in LAYERS:
            n, o = args.batch, 64
            x = rng.standard_normal((n, c, side, side)).astype(np.float32)
            w = rng.standard_normal((o, c, 3, 3)).astype(np.float32)
            g = rng.standard_normal((n, o, side, side)).astype(np.float32)
            first = c == 1
            flops = 2 * n * o * c * 9 * side * side * (2 if first else 3)
            a = rng.standard_normal((o, c * 9)).astype(np.float32)
            b = rng.standard_normal((c * 9, n * side * side)).astype(np.float32)
            with threadpool_limits(limits=args.threads, user_api="blas"):
                gemm = median_time(lambda: a @ b, repeats=5) * (2 if first else 3)
            t_numba = median_time(passes(numba_impl, x, w, g, first), repeats=5)
            t_ref = median_time(passes(ref_impl, x, w, g, first), repeats=3, warmup=1)
            line = (f"{n}x{c}x{side}x{side}->64: numba {t_numba * 1e3:7.1f} ms "
                    f"{flops / t_numba / 1e9:6.1f} GFLOP/s ({gemm / t_numba:5.0%} of GEMM "
                    f"{flops / gemm / 1e9:5.1f} GFLOP/s) | reference {t_ref * 1e3:7.1f} ms")
            if torch:
                t_torch = median_time(torch_passes(torch, x, w, g, first), repeats=5)
                line += f" | torch {t_torch * 1e3:7.1f} ms ratio {t_numba / t_torch:4.2f}"
            print(line, flush=True)


if __name__ == "__main__":
    main()
