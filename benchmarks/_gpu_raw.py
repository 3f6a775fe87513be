"""``gpu_check.py``'s ``raw`` phase: CuPy's launch of numba's kernels (``kernels/_cuda_raw.py``)
against numba's own, on this GPU, before anything else runs on it.

A child process (a kernel handed wrong parameters may leave the GPU's context unusable for the
process that launched it) runs every case of ``tests/cuda_cases.py`` in float32 (the training
dtype; the ``gpu`` tests then hold every kernel, in both dtypes, to its reference), launched
both ways on the same inputs, and the outputs must agree (to the case's tolerance:
the float32 pooling scatter adds atomically, in no fixed order); it then times a one-array
kernel both ways. Where the child fails, disagrees, or launched nothing through CuPy on a GPU,
the check sets ``MINIMETA_CUDA_LAUNCH=numba`` for the rest of the run (numba's launch: the
``gpu`` tests and the timings then measure what they did before), and the phase fails. Under
``--simulate`` nothing launches through CuPy (the stand-in's arrays are NumPy's inside), so
the child only proves the comparison runs (on two cases: the simulator is slow).

Run alone: python benchmarks/_gpu_raw.py [--simulate]   (prints one JSON line)
"""
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def compare(cp, simulate):
    """{"cases", "disagree": [...], "raw_launches", "fell_back", "us_per_launch": {way: µs}}."""
    import numpy as np

    import cuda_cases
    from minimeta.kernels import _cuda, _cuda_raw

    launched, raw_launch = [0], _cuda_raw.launch

    def counted(*args):
        went = raw_launch(*args)
        launched[0] += went
        return went
    _cuda_raw.launch, disagree, cases = counted, [], 0
    names, dtypes = (("conv2d", "batch_norm"), (np.float64,)) if simulate else (
        cuda_cases.NAMES, (np.float32,))
    for name in names:
        for dtype in dtypes:
            case = cuda_cases.case(name, dtype)
            outs = []
            for raw in (True, False):
                _cuda.RAW = raw
                got = case.cuda(*[cp.asarray(a) for a in case.inputs])
                outs.append([cp.asnumpy(g) for g in (got if isinstance(got, tuple) else (got,))])
            rtol, atol = case.tol
            for a, b in zip(*outs):
                if not np.allclose(a, b, rtol=rtol, atol=atol * max(1, abs(b).max(initial=0)),
                                   equal_nan=True):
                    disagree.append(f"{name} {np.dtype(dtype).name}")
            cases += 1
    _cuda_raw.launch = raw_launch
    return {"cases": cases, "disagree": disagree, "raw_launches": launched[0],
            "fell_back": [f"{k[0]}: {why}" for k, why in _cuda_raw.FELL_BACK.items()],
            "us_per_launch": per_launch(cp, 20 if simulate else 2000)}


def per_launch(cp, n):
    """µs a launch of a one-array kernel through ``_cuda.launch``, by CuPy and by numba."""
    import _launch_kernel
    from minimeta.kernels import _cuda

    a, kernel = cp.zeros(256, dtype=cp.float32), _launch_kernel.add_one
    _cuda.RAW = True            # (the comparison leaves it off)
    return {"cupy": _launch_kernel.us_per_call(cp, lambda: _cuda.launch(kernel, a.size, a), n),
            "numba": _launch_kernel.us_per_call(
                cp, lambda: _launch_kernel.numbas_launch(kernel, a.size, a), n)}


def gate(seconds, simulate):
    """The phase: the child's report, ``"ok"``, and where not ok ``MINIMETA_CUDA_LAUNCH=numba``
    set for the rest of this process and its children."""
    cmd = [sys.executable, os.path.join(HERE, "_gpu_raw.py")] + (["--simulate"] * simulate)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [ROOT, os.path.join(ROOT, "tests"), HERE, os.environ.get("PYTHONPATH", "")]))
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds, env=env)
        lines = done.stdout.strip().splitlines()
        report = json.loads(lines[-1]) if done.returncode == 0 and lines else {
            "exit_code": done.returncode, "stderr": done.stderr[-2000:]}
    except subprocess.TimeoutExpired:
        report = {"exit_code": "timed out"}
    except ValueError:      # its last line is not the report: whatever it says, not ok
        report = {"exit_code": 0, "stdout": done.stdout[-2000:]}
    if not isinstance(report, dict):
        report = {"stdout": done.stdout[-2000:]}
    report["ok"] = bool(report.get("cases")) and report.get("disagree") == [] and (
        simulate or (report.get("raw_launches", 0) > 0 and report.get("fell_back") == []))
    if not report["ok"]:
        os.environ["MINIMETA_CUDA_LAUNCH"] = "numba"
        if "minimeta.kernels._cuda" in sys.modules:
            sys.modules["minimeta.kernels._cuda"].RAW = False
        report["launch"] = "numba (MINIMETA_CUDA_LAUNCH=numba for the rest of the run)"
    return report


def main():
    simulate = "--simulate" in sys.argv[1:]
    sys.path[:0] = [ROOT, os.path.join(ROOT, "tests"), HERE]
    if simulate:            # the simulator (before numba's import) and the stand-in CuPy
        os.environ["NUMBA_ENABLE_CUDASIM"] = "1"
        import simulated_gpu
        simulated_gpu.pytest_configure(None)
    from minimeta.engine.backend import cupy_module
    print(json.dumps(compare(cupy_module(), simulate)))


if __name__ == "__main__":
    main()
