"""``gpu_check.py``'s ``raw`` phase (``benchmarks/_gpu_raw.py``): before anything else runs on
the GPU, CuPy's launch of numba's kernels (``kernels/_cuda_raw.py``) is held to numba's own on
every kernel, and where it fails, disagrees or never ran, the rest of the run launches through
numba (``MINIMETA_CUDA_LAUNCH=numba``) and the phase fails: a wrong layout of parameters must
cost one child process, not the GPU session's timings. (The layout itself, against the PTX and
numba's own launch: ``tests/test_cuda_compile.py``.)
"""
import json
import os
import subprocess
import sys
import types

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "benchmarks"))
import _gpu_raw  # noqa: E402


@pytest.fixture
def launch_env(monkeypatch):
    """The launch switches as a fresh run has them, restored afterwards."""
    from minimeta.kernels import _cuda

    monkeypatch.delenv("MINIMETA_CUDA_LAUNCH", raising=False)
    monkeypatch.setattr(_cuda, "RAW", True)
    return _cuda


GOOD = {"cases": 14, "disagree": [], "raw_launches": 19, "fell_back": [],
        "us_per_launch": {"cupy": 9.0, "numba": 39.0}}


@pytest.mark.parametrize("child, simulate, ok", [
    ((0, GOOD), False, True),
    ((0, dict(GOOD, disagree=["conv2d float32"])), False, False),
    ((0, dict(GOOD, raw_launches=0)), False, False),         # on a GPU, CuPy never launched
    ((0, dict(GOOD, raw_launches=0)), True, True),           # the simulator cannot
    ((0, dict(GOOD, fell_back=["_im2col: TypingError"])), False, False),
    ((-11, None), False, False),                             # the child crashed
    ((0, "a numba warning, not the report"), False, False),
    ((0, ["a list"]), False, False),
    ("timed out", False, False)])
def test_the_gate_keeps_cupy_s_launch_only_where_it_agreed_on_this_gpu(child, simulate, ok,
                                                                       launch_env, monkeypatch):
    def run(cmd, **kwargs):
        if child == "timed out":
            raise subprocess.TimeoutExpired(cmd, kwargs["timeout"])
        code, report = child
        out = report if isinstance(report, str) else json.dumps(report or {})
        return types.SimpleNamespace(returncode=code, stdout=out + "\n",
                                     stderr="Segmentation fault")
    monkeypatch.setattr(subprocess, "run", run)
    report = _gpu_raw.gate(60, simulate)
    assert report["ok"] is ok
    assert os.environ.get("MINIMETA_CUDA_LAUNCH") == (None if ok else "numba")
    assert launch_env.RAW is ok


def test_the_comparison_finds_a_kernel_whose_two_launches_disagree(monkeypatch):
    """Each case runs twice on the same inputs, ``_cuda.RAW`` on then off; a mutant case whose
    output differs between the two is named (and outputs within the case's tolerance are
    not: the float32 pooling scatter's atomic adds have no fixed order)."""
    import cuda_cases
    import fake_cupy
    from minimeta.kernels import _cuda

    fake_cupy.install(monkeypatch, run=False)
    monkeypatch.setattr(_gpu_raw, "per_launch", lambda cp, n: {})

    def case(name, dtype):
        shift = {"conv2d": 1e-3, "batch_norm": 1e-9}[name]     # over, under the tolerance
        return types.SimpleNamespace(inputs=[np.ones(3, dtype)], tol=(1e-6, 1e-6),
                                     cuda=lambda x: x + (shift if _cuda.RAW else 0))
    monkeypatch.setattr(cuda_cases, "case", case)
    monkeypatch.setattr(_cuda, "RAW", True)
    report = _gpu_raw.compare(sys.modules["cupy"], simulate=True)
    assert report["cases"] == 2 and report["disagree"] == ["conv2d float64"]


def test_the_raw_phase_runs_on_a_simulated_gpu():
    """The child end to end on numba's simulator and the stand-in CuPy (two cases; nothing
    launches through CuPy there, so the gate passes on agreement alone)."""
    report = _gpu_raw.gate(300, simulate=True)
    assert report["ok"] and report["cases"] == 2 and report["raw_launches"] == 0, report
    assert set(report["us_per_launch"]) == {"cupy", "numba"}
