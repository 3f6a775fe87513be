"""Omniglot for few-shot learning: find, verify, resize and split it (NumPy arrays only).

The data are the two archives described in the shared data README: ``images_background.npz``
(964 characters) and ``images_evaluation.npz`` (659), each holding ``images`` of shape
(characters, 20 drawers, 105, 105), True for paper. They are found in ``MINIMETA_DATA_DIR``,
else in ``~/.cache/minimeta/omniglot``; their sha256 is checked on first use (a file converted
here from the original PNGs has other bytes, so for it the decoded pixels' sha256 is checked).
With ``MINIMETA_DATA_DIR`` unset and no copy in the cache, ``fetch.py`` downloads and converts
the original archives.

Preparation, as in the few-shot papers (Vinyals et al. 2016, Finn et al. 2017, Snell et al.
2017): ink becomes 1.0 and paper 0.0; each image is resized from 105×105 to 28×28 by exact area
averaging (every output pixel is the mean of the 3.75×3.75 input patch it covers, which is the
anti-aliased resize); the result is cached as float32 in ``MINIMETA_CACHE_DIR`` (default
``~/.cache/minimeta``). ``class_images`` then returns the classes of a split, each character
rotated by 0/90/180/270° counting as 4 classes when ``rotations=True``.

Splits:
- "vinyals": all 1623 characters shuffled with a fixed seed (0); the first 1200 are for
  meta-training (the last ``val_size`` of those for validation if asked), the other 423 for
  testing;
- "lake": the background file for meta-training, the evaluation file for testing.

Read next: ``minimeta/experiments/__init__.py`` (the papers' experiments).
"""
import contextlib
import hashlib
import numbers
import os
import re
import sys
import threading
import warnings
import zipfile
import zlib

import numpy as np

from . import fetch

FILES = {
    "background": ("images_background.npz",
                   "8bf84167413cd00beacdce3fe582f780ab538d8dbef043a6d688f2527bbce199"),
    "evaluation": ("images_evaluation.npz",
                   "0b84c7ffd94c4841c0040e529c86a82eaaccb986d8eadad5673f7991b7475276"),
}
SPLIT_SEED, TRAIN_CHARACTERS = 0, 1200


def data_dir():
    """The folder holding the two archives: ``MINIMETA_DATA_DIR`` or the user cache."""
    return os.environ.get("MINIMETA_DATA_DIR") or os.path.join(
        os.path.expanduser("~"), ".cache", "minimeta", "omniglot")


def cache_dir():
    """Where resized arrays are cached (never inside the data folder, which may be read-only)."""
    return os.environ.get("MINIMETA_CACHE_DIR") or os.path.join(
        os.path.expanduser("~"), ".cache", "minimeta")


def sha256(path):
    """Hex sha256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def archive_path(part, folder=None, verify=True):
    """Path of the archive of ``part`` ('background' or 'evaluation'), checked to exist and,
    with ``verify``, to have the published sha256."""
    name, expected = FILES[part]
    path = os.path.join(folder or data_dir(), name)
    if not os.path.exists(path):
        if folder is None and not os.environ.get("MINIMETA_DATA_DIR"):
            return fetch.fetch(part, data_dir(), name)
        raise FileNotFoundError(
            f"Omniglot: {path} is missing. Set MINIMETA_DATA_DIR to a folder holding "
            f"{FILES['background'][0]} and {FILES['evaluation'][0]} (or unset it to download "
            "them into the user cache).")
    if verify and sha256(path) != expected and not _pixels_match(path, part):
        raise ValueError(f"Omniglot: {path} has the wrong sha256 (corrupt, truncated or a "
                         f"different file); expected {expected}. Delete it and fetch it again.")
    return path


def _pixels_match(path, part):
    """Whether the archive's decoded pixels are the reference ones (a self-converted copy)."""
    try:
        with open(path, "rb") as f, np.load(f) as archive:  # f closed even if np.load fails
            return fetch.pixels_sha256(archive["images"]) == fetch.ARCHIVES[part][1]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error):
        return False  # truncated, not an .npz or a damaged stream: then "the wrong sha256"


def area_matrix(n_in, n_out):
    """R (n_out × n_in) with R[i, j] = overlap of output pixel i with input pixel j, rows
    summing to 1: ``R @ img @ R.T`` is the exact area-average resize.

    >>> area_matrix(4, 2)
    array([[0.5, 0.5, 0. , 0. ],
           [0. , 0. , 0.5, 0.5]])
    """
    scale = n_in / n_out
    r = np.zeros((n_out, n_in))
    for i in range(n_out):
        lo, hi = i * scale, (i + 1) * scale
        for j in range(int(np.floor(lo)), min(int(np.ceil(hi)), n_in)):  # hi may round above n_in
            r[i, j] = min(hi, j + 1) - max(lo, j)
    return r / scale


def resize(images, size):
    """Area-average resize of ink images (..., H, W) (ink = 1.0) to (..., size, size): each
    output pixel the mean of its patch, in [0, 1] up to float32 rounding (a patch all ink may
    give 1.0000002: the float32 weights of a row sum to 1 within an ulp)."""
    r_rows = area_matrix(images.shape[-2], size).astype(np.float32)
    r_cols = area_matrix(images.shape[-1], size).astype(np.float32)
    return np.einsum("ij,...jk,lk->...il", r_rows, images.astype(np.float32), r_cols,
                     optimize=True)


_UNCACHED = set()   # the cache folders a warning has named (once each, not once a load)


def load(part, size=28, folder=None, verify=True):
    """Images of ``part`` as float32 (characters, 20, size, size), ink 1.0, cached on disk.

    The cache is named by the archive's content (its sha256), so a copy or a touch of the same
    archive finds it (keyed by size and modification time, each re-copy of the archive had
    added 40-60 MB; a new cache removes those older ones of its part and size)."""
    path = archive_path(part, folder, verify)
    cached = os.path.join(cache_dir(), f"omniglot_{part}_{size}_{sha256(path)[:16]}.npy")
    with contextlib.suppress(OSError, ValueError, EOFError):   # none, gone or damaged:
        images = np.load(cached)                              # made again
        if images.dtype == np.float32 and images.shape[1:] == (20, size, size):
            return images     # (a file of another shape or dtype had been returned as it was)
    try:
        with np.load(path) as archive:
            raw = archive["images"]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, zlib.error) as err:
        raise ValueError(f"Omniglot: cannot read {path} ({err}); it should be an .npz with an "
                         "'images' array. Delete it and fetch it again.") from err
    ink = ~raw.astype(bool)
    out = np.concatenate([resize(ink[a:a + 64], size) for a in range(0, len(ink), 64)])
    tmp = cached + f".tmp{os.getpid()}-{threading.get_ident()}.npy"   # (two threads, two files)
    try:
        os.makedirs(cache_dir(), exist_ok=True)
        np.save(tmp, out)
        os.replace(tmp, cached)  # atomic: a crash never leaves half a cache file
        _forget_others(part, size)
    except OSError as err:       # the cache only saves time: go on without it, once said
        with contextlib.suppress(OSError):
            os.remove(tmp)
        if cache_dir() in _UNCACHED:
            return out
        _UNCACHED.add(cache_dir())
        warnings.warn(f"Omniglot: cannot cache the resized images in {cache_dir()} "
                      f"({err.strerror or err}); set MINIMETA_CACHE_DIR to a writable folder "
                      "to save the resize next time", RuntimeWarning,
                      stacklevel=_user_stacklevel())
    return out


def _user_stacklevel():
    """The ``stacklevel`` that names the first frame outside minimeta: the user's call, not
    ``split_characters`` (``class_images`` and the training loop reach ``load`` through it).
    A copy of ``kernels.threads.user_stacklevel`` (its docstring says why each step), as the
    data layer imports NumPy and the standard library only."""
    frame, level = sys._getframe(2), 1
    while frame is not None:
        name = frame.f_code.co_filename
        if not ("importlib" in name and "_bootstrap" in name):
            level += 1
            module = frame.f_globals.get("__name__", "")
            if module != "minimeta" and not module.startswith("minimeta."):
                return level
        frame = frame.f_back
    return level


def _forget_others(part, size):
    """Remove the caches of ``part`` at ``size`` that older versions keyed by the archive's size
    and modification time (``<bytes>-<seconds>``); not those of another content (two archives
    sharing a cache folder would delete each other's) nor a writer's temporary file."""
    old = re.compile(rf"omniglot_{part}_{size}_\d+-\d+\.npy")
    for name in os.listdir(cache_dir()):
        if old.fullmatch(name):
            with contextlib.suppress(OSError):
                os.remove(os.path.join(cache_dir(), name))


def split_characters(split, part, val_size=0, folder=None, verify=True, size=28):
    """Character images (characters, 20, size, size) of ``part`` ('train', 'val', 'test')."""
    if part not in ("train", "val", "test"):
        raise ValueError(f"Omniglot: part must be 'train', 'val' or 'test', got {part!r}")
    if isinstance(val_size, (bool, np.bool_)) or not isinstance(val_size, numbers.Integral):
        raise ValueError(f"Omniglot: val_size must be an integer, got {val_size!r}")
    if split == "lake":
        if part == "val":
            raise ValueError("Omniglot: the 'lake' split has no validation part")
        if val_size:    # (it had been ignored: the parts are the two published files)
            raise ValueError(f"Omniglot: the 'lake' split holds no characters out for "
                             f"validation, got val_size={val_size}: give 0")
        return load("background" if part == "train" else "evaluation", size, folder, verify)
    if split != "vinyals":
        raise ValueError(f"Omniglot: split must be 'vinyals' or 'lake', got {split!r}")
    if part == "val" and not val_size:      # (had been an empty part: no episode to draw)
        raise ValueError("Omniglot: the 'val' part is empty with val_size=0: hold some "
                         "characters out (val_size > 0)")
    both = np.concatenate([load("background", size, folder, verify),
                           load("evaluation", size, folder, verify)])
    order = np.random.default_rng(SPLIT_SEED).permutation(len(both))
    train = min(TRAIN_CHARACTERS, len(both) - 1)
    if not 0 <= val_size < train:
        raise ValueError(f"Omniglot: val_size must lie in [0, {train}), got {val_size}")
    rows = {"train": order[:train - val_size], "val": order[train - val_size:train],
            "test": order[train:]}
    if part not in rows:
        raise ValueError(f"Omniglot: part must be 'train', 'val' or 'test', got {part!r}")
    return both[rows[part]]


def with_rotations(characters):
    """Each character as 4 classes, rotated by 0, 90, 180 and 270 degrees."""
    return np.concatenate([np.rot90(characters, k, axes=(-2, -1)) for k in range(4)])


def published_classes(split="vinyals", part="train", val_size=0, rotations=True):
    """The classes ``class_images`` gives of the published archives (964 and 659 characters),
    known without loading them: a request for more ways is refused before a download.

    >>> published_classes("vinyals", "train", val_size=100), published_classes("lake", "test")
    (4400, 2636)
    >>> published_classes("vinyals", "test", rotations=False)    # characters, not rotations
    423
    """
    characters = {name: info[2] for name, info in fetch.ARCHIVES.items()}
    if split == "lake":
        count = characters["background" if part == "train" else "evaluation"]
    else:
        count = {"train": TRAIN_CHARACTERS - val_size, "val": val_size,
                 "test": sum(characters.values()) - TRAIN_CHARACTERS}.get(part, 0)
    return count * (4 if rotations else 1)


def class_images(split="vinyals", part="train", rotations=True, val_size=0, folder=None,
                 verify=True, size=28):
    """The classes of a split part, (classes, 20, size, size) float32, ready for episodes."""
    chars = split_characters(split, part, val_size, folder, verify, size)
    return np.ascontiguousarray(with_rotations(chars) if rotations else chars)
