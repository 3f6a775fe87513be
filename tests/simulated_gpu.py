"""A pytest plugin that runs the ``gpu`` tests (``tests/test_gpu.py``) without a GPU: CuPy is
stood in by ``fake_cupy`` (strict about host ↔ device crossings) and the numba.cuda kernels run
in numba's CUDA simulator. The kernel tests there call the CUDA kernels directly; the engine's
own path (models, learners) uses the kernels' NumPy references (``kernels.use_reference``),
because the simulator runs each GPU thread in Python, far too slowly for conv4 on 28×28 images.
So a dry run here proves the tests and ``benchmarks/gpu_check.py`` run end to end before the
scarce minutes on a real GPU.

Use: NUMBA_ENABLE_CUDASIM=1 python -m pytest -p simulated_gpu -o addopts= -m gpu tests/test_gpu.py
"""
import os


def pytest_configure(config):
    if os.environ.get("NUMBA_ENABLE_CUDASIM") != "1":
        raise RuntimeError("simulated_gpu: set NUMBA_ENABLE_CUDASIM=1 before numba's import")
    # the references for every thread of this process and its children
    os.environ["MINIMETA_KERNELS"] = "reference"
    import fake_cupy
    from minimeta.kernels import threads

    fake_cupy.install()
    threads._DEFAULTS["reference"] = threads.LOCAL.reference = True   # if imported already
