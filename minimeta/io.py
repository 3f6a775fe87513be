"""Checkpoints: nested dicts of arrays and scalars saved as ``.npz`` (no pickle), atomically.

Layout inside the archive: each leaf is stored under its '/'-joined key path, and the entry
``__minimeta__`` holds a JSON description (format version, and for every key whether it was an
array, an int, a float, a bool, a string or None), so ``load`` rebuilds the same nested dict.
``save`` writes to a temporary file in the same folder and renames it over the target: a crash
mid-write never leaves a half-written checkpoint under the real name.

    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "ckpt.npz")
    >>> save(path, {"step": 3, "model": {"w": np.ones(2)}})
    >>> load(path)["model"]["w"]
    array([1., 1.])

Read next: ``minimeta/learners/__init__.py`` (the learners).
"""
import json
import os
import tempfile
import zipfile

import numpy as np

from .engine.backend import to_host

FORMAT = "minimeta-checkpoint-1"
_SCALARS = {"int": int, "float": float, "bool": bool, "str": str}


def _flatten(obj, prefix, arrays, kinds):
    if isinstance(obj, dict):
        if not obj and prefix:
            kinds[prefix] = "dict"
        for key, value in obj.items():
            key = str(key)
            if "/" in key:
                raise ValueError(f"save: key {key!r} contains '/', which separates levels")
            _flatten(value, f"{prefix}/{key}" if prefix else key, arrays, kinds)
    elif obj is None:
        kinds[prefix] = "none"
    elif isinstance(obj, (bool, int, float, str)) and not isinstance(obj, np.ndarray):
        kinds[prefix] = type(obj).__name__
        arrays[prefix] = np.asarray(obj)
    else:
        data = to_host(obj.numpy() if hasattr(obj, "numpy") else obj)
        if data.dtype == object:
            raise TypeError(f"save: value at {prefix!r} is not an array or scalar ({type(obj)})")
        kinds[prefix] = "array"
        arrays[prefix] = data


def save(path, obj):
    """Write nested dict ``obj`` to ``path`` (.npz) atomically."""
    if not isinstance(obj, dict):
        raise TypeError(f"save: expects a dict, got {type(obj).__name__}")
    arrays, kinds = {}, {}
    _flatten(obj, "", arrays, kinds)
    arrays["__minimeta__"] = np.asarray(json.dumps({"format": FORMAT, "kinds": kinds}))
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def load(path):
    """Read a checkpoint written by ``save``; clear errors for truncated or foreign files."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"load: no checkpoint at {path}")
    try:
        with np.load(path, allow_pickle=False) as archive:
            if "__minimeta__" not in archive.files:
                raise ValueError(f"load: {path} is an .npz but not a minimeta checkpoint")
            meta = json.loads(str(archive["__minimeta__"]))
            arrays = {k: archive[k] for k in archive.files if k != "__minimeta__"}
    except (zipfile.BadZipFile, EOFError, OSError) as err:
        raise ValueError(f"load: {path} is truncated or not a checkpoint ({err})") from None
    if meta.get("format") != FORMAT:
        raise ValueError(f"load: {path} has format {meta.get('format')!r}, expected {FORMAT}")
    out = {}
    for key, kind in meta["kinds"].items():
        *parents, leaf = key.split("/")
        node = out
        for p in parents:
            node = node.setdefault(p, {})
        if kind == "none":
            node[leaf] = None
        elif kind == "dict":
            node[leaf] = {}
        elif kind == "array":
            node[leaf] = arrays[key]
        else:
            node[leaf] = _SCALARS[kind](arrays[key].item())
    return out
