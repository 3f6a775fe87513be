"""``gpu_check.py``'s first step: an NVVM whose kernels this GPU's driver runs.

numba-cuda compiles every kernel with NVVM, the CUDA toolkit's compiler library, into PTX, and
the driver loads the PTX. Two ways to lose the whole GPU session before a single test: no NVVM
found (numba-cuda brings one only with its ``[cu13]`` extra), or an NVVM newer than the driver,
whose PTX the driver refuses at the first launch (``CUDA_ERROR_UNSUPPORTED_PTX_VERSION``: NVVM
13.5 writes PTX ISA 9.5, a CUDA 13.0 driver loads up to 9.0). Compiling alone proves neither,
so the probe compiles a kernel that calls libdevice, **launches it and checks its result**, in
a child Python (a failed library load is not retried within a process), and records the PTX
version and the driver's. Where the probe fails, ``nvvm`` tries, in order, the machine's own
toolkit (``CUDA_HOME=/usr/local/cuda``, when it has an ``nvvm`` folder and CUDA_HOME is unset:
numba-cuda looks there only when told) and the copy ``gpu_prepare.sh`` carried (NVVM 13.0,
xz-compressed, unpacked to a temporary CUDA_HOME outside the checkout). The first that runs the
kernel is kept in CUDA_HOME for this process and its children (CuPy reads CUDA_PATH, not
CUDA_HOME); the report's ``env`` says which, and why the others failed.
"""
import json
import os
import subprocess
import sys

PROBE = """
import json, math
import numpy as np
if not hasattr(np, "row_stack"):    # NumPy 2.5 and numba-cuda: as kernels/_cuda.py does
    np.row_stack = np.vstack
from numba import cuda, types

@cuda.jit
def probe(x):
    i = cuda.grid(1)
    if i < x.size:
        x[i] = math.sqrt(x[i])

info = {}
ptx, _ = cuda.compile_ptx(probe.py_func, (types.float32[::1],), cc=(9, 0))
info["ptx_version"] = next((l.split()[1] for l in ptx.splitlines()
                            if l.startswith(".version")), "unknown")
try:
    info["driver"] = ".".join(map(str, cuda.cudadrv.driver.driver.get_version()))
except Exception as err:
    info["driver"] = f"unknown ({type(err).__name__})"
print("NVVM_PROBE " + json.dumps(info), flush=True)
x = cuda.to_device(np.array([4.0, 9.0], dtype=np.float32))
probe[1, 32](x)
cuda.synchronize()
assert x.copy_to_host().tolist() == [2.0, 3.0], x.copy_to_host()
info["kernel_ran"] = True
print("NVVM_PROBE " + json.dumps(info), flush=True)
"""


def probe():
    """(None, info) when the probe kernel compiled and ran in a child Python (with this
    process's CUDA_HOME); (the error's line, info) when not. ``info``: what the child found
    before it stopped (``ptx_version``, ``driver``, ``kernel_ran``)."""
    try:
        done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                              timeout=120)
    except subprocess.TimeoutExpired as err:
        return f"the probe ran past {err.timeout:.0f} s", {}
    info = {}
    for line in done.stdout.splitlines():
        if line.startswith("NVVM_PROBE "):
            info = json.loads(line[len("NVVM_PROBE "):])
    if done.returncode == 0 and info.get("kernel_ran"):
        return None, info
    lines = done.stderr.strip().splitlines() or ["no output"]
    return next((line for line in reversed(lines) if "Error" in line), lines[-1])[:300], info


def nvvm(root, system="/usr/local/cuda"):
    """Find an NVVM that runs a kernel here (see the module docstring), set CUDA_HOME to it
    when it is not numba's own, and say which: ``{"nvvm": how, ...the probe's info,
    "nvvm_failed": {where: why} for those tried before}``. Called before numba is imported."""
    failed = {}
    error, info = probe()
    if error is None:
        return {"nvvm": "found by numba", **info}
    failed["numba's own search"] = dict(info, error=error)
    if "CUDA_HOME" not in os.environ and os.path.isdir(os.path.join(system, "nvvm", "lib64")):
        os.environ["CUDA_HOME"] = system
        error, info = probe()
        if error is None:
            return {"nvvm": f"the system's, CUDA_HOME={system}", **info, "nvvm_failed": failed}
        failed[system] = dict(info, error=error)
        del os.environ["CUDA_HOME"]
    carried = os.path.join(root, ".gpu", "cuda", "nvvm")
    packed = os.path.join(carried, "lib64", "libnvvm.so.4.xz")
    if not os.path.exists(packed):
        return {"nvvm": f"missing: {error}", "nvvm_failed": failed}
    home = unpack(carried, packed)
    previous = os.environ.get("CUDA_HOME")
    os.environ["CUDA_HOME"] = home
    error, info = probe()
    if error is None:
        return {"nvvm": f"carried, unpacked to {home}", **info, "nvvm_failed": failed}
    failed["carried"] = dict(info, error=error)
    if previous is None:
        del os.environ["CUDA_HOME"]
    else:
        os.environ["CUDA_HOME"] = previous
    return {"nvvm": f"missing: {error}", "nvvm_failed": failed}


def unpack(carried, packed):
    """The carried NVVM and libdevice unpacked into a new temporary CUDA_HOME (outside the
    checkout: not carried back)."""
    import lzma
    import shutil
    import tempfile

    home = tempfile.mkdtemp(prefix="minimeta-cuda-")
    os.makedirs(os.path.join(home, "nvvm", "lib64"))
    with lzma.open(packed) as src, \
            open(os.path.join(home, "nvvm", "lib64", "libnvvm.so.4"), "wb") as dst:
        shutil.copyfileobj(src, dst)
    shutil.copytree(os.path.join(carried, "libdevice"), os.path.join(home, "nvvm", "libdevice"))
    return home
