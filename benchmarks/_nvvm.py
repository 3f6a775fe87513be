"""``gpu_check.py``'s first step: an NVVM whose kernels this GPU's driver runs.

numba-cuda compiles every kernel with NVVM, the CUDA toolkit's compiler library, into PTX, and
the driver loads the PTX. Two ways to lose the whole GPU session before a single test: no NVVM
found (numba-cuda brings one only with its ``[cu13]`` extra), or an NVVM newer than the driver,
whose PTX the driver refuses at the first launch (``CUDA_ERROR_UNSUPPORTED_PTX_VERSION``: NVVM
13.5 writes PTX ISA 9.5, a CUDA 13.0 driver loads up to 9.0). Compiling alone proves neither,
so the probe compiles a kernel that calls libdevice, **launches it and checks its result**, in
a child Python (a failed library load is not retried within a process), and records the PTX
version, the driver's and the library numba loaded. Where the probe fails (but for a hang,
which no other library would cure), ``nvvm`` tries, in order, the machine's own toolkit
(``/usr/local/cuda/nvvm``) and the copy ``gpu_prepare.sh`` carried (NVVM 13.0, xz-compressed,
unpacked to a temporary folder outside the checkout, removed if it fails too). Setting
CUDA_HOME is not enough: numba-cuda finds NVVM through cuda-pathfinder, which takes a pip
wheel's library (``numba-cuda[cu13]`` brings the newest) before CUDA_HOME, but keeps one that
is already loaded. So a candidate is **preloaded**: ``LD_PRELOAD`` for the probe and, once
chosen, for this process's children (the tests, training, evaluation), and ``ctypes.CDLL`` in
this process before numba is imported; CUDA_HOME is set too (libdevice). The report's ``env``
says which library ran the kernel and why the others did not (a review, 2026-12-02, found
that CUDA_HOME alone would have probed the wheel's library three times).
"""
import ctypes
import glob
import json
import lzma
import os
import shutil
import subprocess
import sys
import tempfile

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
try:
    from numba.cuda.cuda_paths import _get_nvvm_path
    info["nvvm_path"] = str(_get_nvvm_path())
except Exception as err:    # (a private function: another numba-cuda may lack it)
    info["nvvm_path"] = f"unknown ({type(err).__name__})"
print("NVVM_PROBE " + json.dumps(info), flush=True)
x = cuda.to_device(np.array([4.0, 9.0], dtype=np.float32))
probe[1, 32](x)
cuda.synchronize()
assert x.copy_to_host().tolist() == [2.0, 3.0], x.copy_to_host()
info["kernel_ran"] = True
print("NVVM_PROBE " + json.dumps(info), flush=True)
"""


def probe(env=None):
    """(None, info) when the probe kernel compiled and ran in a child Python (this process's
    environment updated by ``env``); (the error's line, info) when not. ``info``: what the
    child found before it stopped (``ptx_version``, ``driver``, ``nvvm_path``,
    ``kernel_ran``)."""
    try:
        done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                              timeout=120, env=dict(os.environ, **(env or {})))
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
    """Find an NVVM that runs a kernel here (see the module docstring), preload it when it is
    not numba's own, and say which: ``{"nvvm": how, ...the probe's info, "nvvm_failed":
    {where: why} for those tried before}``. Called before numba is imported."""
    failed = {}
    error, info = probe()
    if error is None:
        return {"nvvm": "found by numba", **info}
    failed["numba's own search"] = dict(info, error=error)
    for how, home, lib, made in ([] if hung(error) else candidates(root, system)):
        env = {"CUDA_HOME": home, "LD_PRELOAD": " ".join(
            filter(None, [lib, os.environ.get("LD_PRELOAD")]))}
        error, info = probe(env)
        if error is None:
            os.environ.update(env)      # the children load it first, and so does this process
            ctypes.CDLL(lib, mode=ctypes.RTLD_GLOBAL)
            return {"nvvm": f"{how}: {lib}", **info, "nvvm_failed": failed}
        failed[how] = dict(info, error=error)
        if made:
            shutil.rmtree(home, ignore_errors=True)
        if hung(error):                 # a hang: not a matter of which NVVM
            break
    return {"nvvm": f"missing: {error}", "nvvm_failed": failed}


def hung(error):
    """Whether a probe's ``error`` is its time running out."""
    return error.startswith("the probe ran past")


def candidates(root, system):
    """(how, CUDA_HOME, the library, made here) for each NVVM to try after numba's own, in
    order, made only when reached: the system toolkit's, then the carried one unpacked."""
    found = sorted(glob.glob(os.path.join(system, "nvvm", "lib64", "libnvvm.so*")))
    if found:
        yield "the system's", system, found[0], False
    carried = os.path.join(root, ".gpu", "cuda", "nvvm")
    packed = os.path.join(carried, "lib64", "libnvvm.so.4.xz")
    if os.path.exists(packed):
        home = unpack(carried, packed)
        yield "carried", home, os.path.join(home, "nvvm", "lib64", "libnvvm.so.4"), True


def unpack(carried, packed):
    """The carried NVVM and libdevice unpacked into a new temporary CUDA_HOME (outside the
    checkout: not carried back)."""
    home = tempfile.mkdtemp(prefix="minimeta-cuda-")
    os.makedirs(os.path.join(home, "nvvm", "lib64"))
    with lzma.open(packed) as src, \
            open(os.path.join(home, "nvvm", "lib64", "libnvvm.so.4"), "wb") as dst:
        shutil.copyfileobj(src, dst)
    shutil.copytree(os.path.join(carried, "libdevice"), os.path.join(home, "nvvm", "libdevice"))
    return home
