"""The GPU check: one command for a machine with an NVIDIA GPU and CuPy.

1. runs the ``gpu`` tests (``tests/test_gpu.py``: kernels against their references on real
   hardware, second derivatives and the MAML meta-gradient GPU == CPU, every learner's step);
2. times, on the GPU, conv4 forward + backward on 640 images of 28×28 (float32) and one
   second-order MAML meta-iteration (5-way 1-shot, 15 queries per class, 32 tasks, 1 inner
   step), printing medians (each timed call ends with a device synchronisation);
3. prints the same two workloads on this machine's CPU for scale (one repeat each).

The first calls compile the numba.cuda kernels and CuPy's own; they are warm-up, not timed.
Finishes in well under 5 minutes on an H100. Run: python benchmarks/gpu_check.py
"""
import os
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def run_gpu_tests():
    print("== gpu tests", flush=True)
    start = time.perf_counter()
    code = subprocess.call([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                            "-o", "addopts=", "-m", "gpu",
                            os.path.join(HERE, "..", "tests", "test_gpu.py")])
    print(f"gpu tests exit code {code} ({time.perf_counter() - start:.0f} s)", flush=True)
    return code


def median(fn, sync, repeats, warmup=2):
    for _ in range(warmup):
        fn()
        sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def workloads(device):
    import minimeta as mm
    import minimeta.functional as F
    from minimeta import nn
    from minimeta.learners import MAML

    rng = np.random.default_rng(0)
    net = nn.conv4(5).to(device)
    x = mm.tensor(rng.random((640, 1, 28, 28), dtype=np.float32), device=device)
    y = rng.integers(0, 5, 640)
    params = net.parameters()

    def conv4():
        return mm.grad(F.cross_entropy(net(x), y), params)

    tasks = [(rng.random((5, 1, 28, 28), dtype=np.float32), np.arange(5),
              rng.random((75, 1, 28, 28), dtype=np.float32), np.repeat(np.arange(5), 15))
             for _ in range(32)]
    learner = MAML(nn.conv4(5).to(device), 0.4, 1)

    def maml():
        learner.outer_step(tasks)
        for p in learner.meta_parameters():
            p.grad = None

    return conv4, maml


def main():
    code = run_gpu_tests()
    from minimeta.engine.backend import cupy_module

    try:
        cp = cupy_module()
    except RuntimeError as err:
        print(f"no timings: {err}")
        return 2
    sync = cp.cuda.Device().synchronize
    name = cp.cuda.runtime.getDeviceProperties(0)["name"].decode()
    print(f"== timings on {name} (CuPy {cp.__version__})", flush=True)
    conv4, maml = workloads("cuda")
    print(f"conv4 forward + backward, 640 images   median {median(conv4, sync, 10):.4f} s",
          flush=True)
    print(f"MAML meta-iteration, 5-way 1-shot, 32 tasks (second order)   median "
          f"{median(maml, sync, 5):.3f} s", flush=True)
    from minimeta.threads import configure

    configure()
    conv4, maml = workloads("cpu")
    print(f"== the same on the CPU ({os.cpu_count()} cores), 1 repeat: conv4 "
          f"{median(conv4, lambda: None, 1, 1):.3f} s, MAML "
          f"{median(maml, lambda: None, 1, 1):.3f} s", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
