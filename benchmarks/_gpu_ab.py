"""``gpu_check.py``'s ``ab`` phase: the checkouts that ``gpu_prepare.sh REV...`` put in
``.gpu/trees`` and this one, profiled on this GPU one after another, a child process each
(``gpu_profile.py --trees``): a before / after on one machine, where two sessions' runs are two
machines. Skipped where no checkout was prepared."""
import os
import sys

import _gpu_train

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def prepared(root=ROOT):
    """The checkouts in ``<root>/.gpu/trees`` (each with a ``minimeta/``), sorted by name."""
    folder = os.path.join(root, ".gpu", "trees")
    found = sorted(os.listdir(folder)) if os.path.isdir(folder) else []
    return [os.path.join(folder, name) for name in found
            if os.path.isdir(os.path.join(folder, name, "minimeta"))]


def ab(out, seconds, simulate, cases=("conv4", "maml5_stacked"), root=ROOT):
    """{"trees", "exit_code", "compare": compare.txt's text or None} of ``gpu_profile.py
    --trees`` on the prepared checkouts and ``root``, in ``<out>/ab``, for at most ``seconds``
    (past them its whole process group is killed: a tree's child holds the GPU too, and each
    tree's profile.txt stays); {"skipped": why} where none was prepared."""
    trees = prepared(root)
    if not trees:
        return {"skipped": "no checkout in .gpu/trees (bash benchmarks/gpu_prepare.sh REV)"}
    folder = os.path.join(out, "ab")
    cmd = [sys.executable, os.path.join(HERE, "gpu_profile.py"), "--out", folder, "--only",
           *cases, "--trees", *trees, root] + (["--simulate"] if simulate else [])
    code = _gpu_train.bounded(cmd, None, seconds, grace=0, group=True)
    path = os.path.join(folder, "compare.txt")
    return {"trees": trees + [root], "exit_code": code,
            "compare": open(path).read() if os.path.exists(path) else None}
