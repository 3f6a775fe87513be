"""glibc malloc under minimeta's process policy (``minimeta/threads.py``: ``malloc_policy``),
each measured in a child process of its own, where the policy is the first thing applied:
large blocks reused without page faults, and one arena per core.
"""
import subprocess
import sys

import pytest


_FAULTS = """
import resource, sys
import numpy as np
from minimeta.threads import malloc_policy
core = getattr(np, "_core", None) or np.core         # NumPy 2, NumPy 1
core.multiarray._set_madvise_hugepage(False)         # 4 KiB pages: 16 384 faults per block
applied = malloc_policy(mmap_max=int(sys.argv[1]))
np.ones(16 << 20, np.float32)                        # the first 64 MiB block faults in
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(4):
    np.ones(16 << 20, np.float32)                    # allocated, filled, freed
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_malloc_policy_reuses_large_blocks_without_page_faults():
    """Under the policy a freed 64 MiB block is reused, not unmapped and faulted in again; the
    mutant (glibc's default, mmap for blocks over the threshold) faults at every block."""
    def faults(mmap_max):
        out = subprocess.run([sys.executable, "-c", _FAULTS, str(mmap_max)], check=True,
                             capture_output=True, text=True).stdout.split()
        if out[0] != "True":
            pytest.skip("malloc_policy not applied (not glibc)")
        return int(out[1])
    policy, mutant = faults(0), faults(65536)
    assert mutant > 4 * 10_000                      # 4 blocks × 16 384 pages
    assert policy < 1_000


_ARENAS = """
import ctypes, os, sys, threading
import numpy as np
from minimeta import threads as policy
from minimeta.kernels import threads as kernel_threads
kernel_threads.cores = lambda: 3                     # as if on 3 cores
applied = policy.malloc_policy() if sys.argv[1] == "policy" else True
start = threading.Barrier(5)

def work():                                          # each thread allocates, all at once
    start.wait()
    blocks = [np.ones(1000 + i) for i in range(50)]
    start.wait()
threads = [threading.Thread(target=work) for _ in range(4)]
for t in threads:
    t.start()
start.wait()
start.wait()
for t in threads:
    t.join()
sys.stderr.flush()
err = os.dup(2)                                      # malloc_stats prints to fd 2
with open(sys.argv[2], "w") as f:
    os.dup2(f.fileno(), 2)
    ctypes.CDLL(None).malloc_stats()
    os.dup2(err, 2)
print(applied)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_malloc_policy_gives_a_heap_per_core(tmp_path):
    """Counted in glibc's own report: four threads allocating at once on "3 cores" (cores()
    replaced) share 3 arenas under the policy (one had made the workers wait on each other's
    lock), 5 (the main thread's and one each) without it; the mutants (one arena, no limit)
    give 1 and 5."""
    def arenas(mode):
        stats = tmp_path / f"{mode}.txt"
        out = subprocess.run([sys.executable, "-c", _ARENAS, mode, str(stats)], check=True,
                             capture_output=True, text=True).stdout.split()
        if out[0] != "True":
            pytest.skip("malloc_policy not applied (not glibc)")
        return stats.read_text().count("Arena ")
    assert arenas("policy") == 3
    assert arenas("default") == 5
