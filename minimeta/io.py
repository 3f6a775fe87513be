"""Checkpoints: nested dicts of arrays and scalars saved as ``.npz`` (no pickle), atomically.

Layout inside the archive: each leaf is stored under its '/'-joined key path, and the entry
``__minimeta__`` holds a JSON description (format version, and for every key whether it was an
array, an int, a float, a bool, a string or None), so ``load`` rebuilds the nested dict: the
same Python scalars, arrays and nesting, with every key a string (an int key 5 comes back as
"5") and a NumPy scalar (``np.float32(0.5)``) as a 0-d array. A list or tuple of numbers,
bools or strings (or of arrays or Tensors of one shape, GPU ones too: copied to the host) is
stored as one array, and read back as one; a ragged one, or one mixing those kinds, is refused.
``save`` writes to a temporary file in the same folder and renames it over the target: a crash
mid-write never leaves a half-written checkpoint under the real name. ``folder_lock`` keeps a
run's folder to one writer at a time.

    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "ckpt.npz")
    >>> save(path, {"step": 3, "model": {"w": np.ones(2)}})
    >>> load(path)["model"]["w"]
    array([1., 1.])

Read next: ``minimeta/learners/__init__.py`` (the learners).
"""
import contextlib
import json
import errno
import os
import secrets
import tempfile  # noqa: F401  (folder_lock's doctest)
import tokenize
import zipfile
import zlib

import numpy as np

from .engine.backend import on_gpu, to_host

try:
    import fcntl
except ImportError:  # Windows: no flock
    fcntl = None

FORMAT = "minimeta-checkpoint-1"
_SCALARS = {"int": int, "float": float, "bool": bool, "str": str}
_META = "__minimeta__"
_INT64 = np.iinfo(np.int64)


def _sequence(obj, prefix):
    """A list or tuple as the array NumPy makes of it (numbers, bools, arrays and Tensors of
    one shape stack), refused where that array would not read back as the values given:
    ragged, or mixing kinds (``[1, 'a']`` became two strings, ``[True, 2]`` two ints), or
    holding a string that ends in NUL (dropped)."""
    leaves, stack = [], [obj]
    while stack:
        item = stack.pop()
        if isinstance(item, (list, tuple)):
            stack.extend(item)
        else:
            leaves.append(item)
    kinds = {_kind(v) for v in leaves}

    def host(v):    # Tensors and GPU arrays as host arrays (NumPy refuses CuPy's: "ragged")
        if isinstance(v, (list, tuple)):
            return [host(u) for u in v]
        return to_host(v.numpy()) if hasattr(v, "numpy") else to_host(v) if on_gpu(v) else v
    try:
        data = np.asarray(host(obj))
    except (ValueError, TypeError, RecursionError):     # (host's: a list nested 1000 deep)
        data = None
    nul = any(isinstance(v, str) and v.endswith("\0") for v in leaves)
    if data is None or len(kinds) > 1 or nul or data.dtype.hasobject or \
            not kinds <= {"str", "number", "bool"}:
        what = "ragged" if data is None else "a string ending in NUL" if nul else \
            f"holding {', '.join(sorted(kinds))}"
        raise TypeError(f"save: the {type(obj).__name__} at {prefix!r} ({what}) would not read "
                        "back as given: store numbers or strings of one kind, as an array; "
                        "nothing was written")
    return data


def _kind(value):
    """'bool', 'number' or 'str' for what an array of ``value`` keeps as given; else a type."""
    if isinstance(value, (bool, np.bool_)):
        return "bool"
    if isinstance(value, (int, float, np.number)):
        return "number"
    if isinstance(value, str):
        return "str"
    dtype = getattr(value, "dtype", None)
    if dtype is not None:       # an array or a Tensor: its dtype's kind
        return "bool" if dtype.kind == "b" else "number" if dtype.kind in "iufc" else \
            "str" if dtype.kind == "U" else str(dtype)
    return type(value).__name__


def _flatten(obj, prefix, arrays, kinds, names):
    if isinstance(obj, dict):
        if not obj and prefix:
            kinds[prefix] = "dict"
        for key, value in obj.items():
            text = str(key)
            where = f"{prefix}/{text}" if prefix else text
            if "/" in text:
                raise ValueError(f"save: key {key!r} contains '/', which separates levels")
            if "\0" in text:   # the archive cuts an entry's name there: unreadable back
                raise ValueError(f"save: key {key!r} contains a NUL character; rename it")
            if not text or where == _META:
                raise ValueError(f"save: key {key!r} is reserved or empty; rename it")
            if text.endswith(".npy"):  # NumPy's archive reads "w.npy" back as entry "w"
                raise ValueError(f"save: key {key!r} ends in '.npy', which the archive would "
                                 "read back as another entry; rename it")
            if where in names:  # 1 and "1" are both stored as "1": one would be lost
                raise ValueError(f"save: keys {names[where]!r} and {key!r} are both stored as "
                                 f"{where!r}; rename one of them")
            names[where] = key
            _flatten(value, where, arrays, kinds, names)
    elif obj is None:
        kinds[prefix] = "none"
    elif isinstance(obj, (bool, np.bool_)):
        kinds[prefix], arrays[prefix] = "bool", np.asarray(bool(obj))
    elif isinstance(obj, int):
        if not _INT64.min <= obj <= _INT64.max:
            raise ValueError(f"save: the int at {prefix!r} ({obj}) does not fit in 64 bits; "
                             "store it as a float or a string")
        kinds[prefix], arrays[prefix] = "int", np.asarray(obj, dtype=np.int64)
    elif isinstance(obj, (float, str)):  # np.float64 is a float: stored as one
        if isinstance(obj, str) and obj.endswith("\0"):
            raise ValueError(f"save: the string at {prefix!r} ends in NUL, which the archive "
                             "drops; nothing was written")
        kinds[prefix] = "float" if isinstance(obj, float) else "str"
        arrays[prefix] = np.asarray(float(obj) if isinstance(obj, float) else str(obj))
    elif isinstance(obj, (list, tuple)):
        kinds[prefix], arrays[prefix] = "array", _sequence(obj, prefix)
    elif isinstance(obj, np.ma.MaskedArray):  # the archive would keep the data, not the mask
        raise TypeError(f"save: value at {prefix!r} is a masked array, whose mask would be "
                        "lost; save .filled(...) and the mask as two entries; nothing was "
                        "written")
    else:
        data = to_host(obj.numpy() if hasattr(obj, "numpy") else obj)
        if not isinstance(data, np.ndarray) or data.dtype.hasobject:
            raise TypeError(f"save: value at {prefix!r} is not an array or scalar "
                            f"({type(obj).__name__}); nothing was written")
        kinds[prefix] = "array"
        arrays[prefix] = data


def save(path, obj):
    """Write nested dict ``obj`` to ``path`` (.npz) atomically and durably: a temporary file,
    flushed to the disk, renamed over ``path``, then the rename itself flushed (the folder's
    fsync), so a power cut leaves the old file or the new one. A value it could not read back
    (an object array, an int beyond 64 bits, two keys stored under one name) is refused
    before anything is written."""
    if not isinstance(obj, dict):
        raise TypeError(f"save: expects a dict, got {type(obj).__name__}")
    arrays, kinds = {}, {}
    _flatten(obj, "", arrays, kinds, {})
    arrays[_META] = np.asarray(json.dumps({"format": FORMAT, "kinds": kinds}))
    folder = os.path.dirname(path) or os.curdir   # as given: the OS follows a link, then ..
    os.makedirs(folder, exist_ok=True)
    fd, tmp = temporary(folder)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        sync_folder(folder)
    except BaseException as err:
        with contextlib.suppress(FileNotFoundError):   # cleared by another writer meanwhile
            os.remove(tmp)
        if isinstance(err, OSError) and not err.filename:   # a full disk names no file
            err.filename = path
        raise


def sync_folder(folder):
    """Flush ``folder``'s entries (a rename into it) to the disk, where the system can: POSIX
    wants a folder's own fsync for a rename to last; Windows opens no folder (skipped)."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:          # some file systems refuse a folder's fsync: nothing more to do
        pass
    finally:
        os.close(fd)


def temporary(folder, prefix=".tmp-"):
    """(fd, path) of a new ``<prefix><random>.npz`` in ``folder``, the path as given (not made
    absolute, as ``tempfile.mkstemp`` does: ``link/../run`` had put the checkpoints in
    ``./run`` and the metrics where the link leads), with the mode any new file gets (0666
    less the umask: 0644 under 022), so whoever may read the run's metrics may read it."""
    for _ in range(100):
        tmp = os.path.join(folder, f"{prefix}{secrets.token_hex(6)}.npz")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL
                           | getattr(os, "O_BINARY", 0), 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temporary name", folder)


# what reading a damaged archive raises: zipfile's BadZipFile (a bad CRC too), EOFError,
# NotImplementedError ("zip file version 21.0": a flipped version byte), RuntimeError ("is
# encrypted": a flipped flag), and, from an .npy entry's header, tokenize's TokenError or a
# SyntaxError (a ValueError, a header that parses to nonsense, is handled below)
DAMAGED = (zipfile.BadZipFile, EOFError, OSError, NotImplementedError, RuntimeError,
           tokenize.TokenError, SyntaxError, zlib.error)


def _not_a_checkpoint(path, why):
    return ValueError(f"load: {path} is not a minimeta checkpoint ({why}); give the "
                      "checkpoint.npz that minimeta train wrote")


def _read(path):
    """The description and the arrays of the archive at ``path``."""
    try:
        with open(path, "rb") as f:
            magic = f.read(6)
    except IsADirectoryError:
        raise _not_a_checkpoint(path, "it is a folder") from None
    if magic == b"\x93NUMPY":
        raise _not_a_checkpoint(path, "it is a single .npy array, not an .npz archive")
    if not magic.startswith(b"PK"):
        raise _not_a_checkpoint(path, "not an .npz archive")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {k: archive[k] for k in archive.files}
    except DAMAGED as err:   # a cut file, or a flipped byte in the zip's or an entry's header
        raise ValueError(f"load: {path} is damaged, truncated or not a checkpoint "
                         f"({type(err).__name__}: {err}); use another checkpoint") from None
    except ValueError as err:  # an object array, or an entry numpy cannot parse
        why = "it holds pickled objects, which a checkpoint never does" if "pickle" in \
            str(err) or "Object arrays" in str(err) else f"an unreadable entry: {err}"
        raise _not_a_checkpoint(path, why) from None
    meta = arrays.pop(_META, None)
    if meta is None:
        raise _not_a_checkpoint(path, "an .npz without its '__minimeta__' entry")
    try:
        meta = json.loads(str(meta)) if meta.ndim == 0 and meta.dtype.kind == "U" else None
    except ValueError:
        meta = None
    if not isinstance(meta, dict) or not isinstance(meta.get("kinds"), dict):
        raise _not_a_checkpoint(path, "its '__minimeta__' entry is not the JSON description "
                                "of one")
    if meta.get("format") != FORMAT:
        raise ValueError(f"load: {path} has format {meta.get('format')!r}, expected {FORMAT}")
    return meta["kinds"], arrays


def _scalar(path, key, kind, stored):
    try:
        if stored.ndim == 0:
            return _SCALARS[kind](stored.item())
    except (TypeError, ValueError):
        pass
    raise _not_a_checkpoint(path, f"entry {key!r} is not the {kind} its description says")


def load(path, require=()):
    """Read a checkpoint written by ``save``; clear errors (``ValueError``) for a truncated or
    foreign file, and for one lacking a top-level key of ``require``."""
    if not path:
        raise ValueError("load: no checkpoint path given (an empty one)")
    if not os.path.exists(path):
        raise FileNotFoundError(f"load: no checkpoint at {path}")
    kinds, arrays = _read(path)
    out = {}
    for key, kind in kinds.items():
        *parents, leaf = key.split("/")
        node = out
        for p in parents:
            node = node.setdefault(p, {}) if isinstance(node, dict) else None
        stored = arrays.get(key)
        if not isinstance(node, dict) or leaf in node or (stored is None) != (
                kind in ("none", "dict")):
            raise _not_a_checkpoint(path, f"its description does not match its entry {key!r}")
        if kind == "none":
            node[leaf] = None
        elif kind == "dict":
            node[leaf] = {}
        elif kind == "array":
            node[leaf] = stored
        elif kind in _SCALARS:
            node[leaf] = _scalar(path, key, kind, stored)
        else:
            raise _not_a_checkpoint(path, f"entry {key!r} has the unknown kind {kind!r}")
    missing = [k for k in require if k not in out]
    if missing:
        raise ValueError(f"load: {path} is a minimeta file but not a training checkpoint: it "
                         f"lacks {', '.join(map(repr, missing))} (minimeta train writes them)")
    return out


@contextlib.contextmanager
def folder_lock(folder):
    """Hold ``folder`` (created if missing) for one writer: an exclusive ``flock`` on the
    folder itself, so no file is added, taken at once or refused with a one-line
    ``ValueError``; released when the block ends or when the process does, however it ends (a
    killed run leaves no stale lock). Two runs writing one folder (the same ``--resume`` in two
    terminals, a job requeued while it still runs) would interleave their metrics and
    overwrite each other's checkpoint. Where the system has no ``flock`` (Windows), or the
    file system refuses one on a folder (NFS may: ``EBADF``, ``ENOLCK``), nothing is locked.

    >>> with folder_lock(tempfile.mkdtemp()):
    ...     pass
    """
    if folder is None or fcntl is None:
        yield
        return
    os.makedirs(folder, exist_ok=True)
    fd = os.open(folder, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ValueError(f"{folder} is in use by another run (a process still training "
                             "into it): wait for it to end, or choose another --out") from None
        except OSError:
            pass        # no locks on this file system: the run goes on without one
        yield
    finally:
        os.close(fd)
