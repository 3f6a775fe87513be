"""Download the original Omniglot archives and convert their PNGs to the ``.npz`` layout.

Used only on a machine with no copy of the data (``omniglot.archive_path`` calls ``fetch`` when
``MINIMETA_DATA_DIR`` is unset and the user cache is empty). Steps, for each part:

1. download ``images_<part>.zip`` from the Omniglot repository (Lake et al.) into the cache
   folder, streaming to a temporary file, and check its md5 against the value published with
   torchvision's Omniglot loader (the archives' own sha256 is not published);
2. convert: every ``<alphabet>/characterNN/CCCC_DD.png`` becomes ``images[CCCC − first, DD − 1]``
   (bool, True for paper; pillow reads the PNGs), and check the **sha256 of the decoded
   pixels** (as bytes 0 and 1, ``pixels_sha256``) against the value of the reference copy,
   which proves the whole pipeline;
3. write ``images_<part>.npz`` (``images``, ``labels``) atomically and delete the zip.

Read next: ``minimeta/data/omniglot.py`` (Omniglot: conversion and splits).
"""
import hashlib
import http.client
import io
import os
import re
import urllib.error
import urllib.request
import zipfile
import zlib

import numpy as np

URL = "https://github.com/brendenlake/omniglot/raw/master/python/images_{part}.zip"
# part: (md5 of the zip, pixels_sha256 of the decoded pixels, characters, first file id)
ARCHIVES = {
    "background": ("68d2efa1b9178cc56df9314c21c6e718",
                   "9121d28f81874a5939b6e932f85c56f0c63db652bfdbd0fb391f6d5eeec01f0f", 964, 1),
    "evaluation": ("6b91aef0f799c5bb55b94e3f2daec811",
                   "ebe4b0f06a588946ccb62c6e8d9e0eede457e4242f1bfca1309a1f946313b72e", 659, 965),
}
DRAWERS = 20
_NAME = re.compile(r"(\d{4})_(\d{2})\.png$")


def pixels_sha256(images):
    """sha256 of the pixels as C-ordered bytes 0 and 1: the content check of a converted
    archive. A bool array may hold any non-zero byte for True (the reference copy's are 255,
    a conversion's are 1), so the bytes are made 0/1 first.

    >>> a = np.array([True, False])
    >>> pixels_sha256(a) == pixels_sha256(np.array([255, 0], np.uint8).view(bool))
    True
    """
    images = np.asarray(images)
    canonical = images.view(np.uint8) != 0 if images.dtype == bool else images != 0
    return hashlib.sha256(np.ascontiguousarray(canonical).tobytes()).hexdigest()


def download(url, path, md5=None, chunk=1 << 20, log=print):
    """Stream ``url`` to ``path`` (atomically), checking its md5 when given. What the network
    does wrong (offline, a cut connection) is a ``ConnectionError``; what the folder does
    wrong (read-only, full) is its own ``OSError``, naming the file. Neither leaves a file."""
    tmp = path + ".part"
    digest = hashlib.md5()
    with open(tmp, "wb") as out:        # a folder we may not write to fails here, offline
        try:
            with _network(url, path, lambda: urllib.request.urlopen(url, timeout=60)) as got:
                total = int(got.headers.get("Content-Length") or 0)
                done = 0
                for block in iter(lambda: _network(url, path, lambda: got.read(chunk)), b""):
                    out.write(block)             # a full disk: its OSError, as it is
                    digest.update(block)
                    done += len(block)
                    if total:
                        log(f"\rdownloading {os.path.basename(path)}: {done / total:.0%}",
                            end="")
        except BaseException:
            out.close()
            os.remove(tmp)
            raise
    log("")
    if md5 and digest.hexdigest() != md5:
        os.remove(tmp)
        raise ValueError(f"Omniglot: {url} has md5 {digest.hexdigest()}, expected {md5} "
                         "(a truncated or changed download); try again")
    os.replace(tmp, path)
    return path


def _network(url, path, call):
    """``call()`` (opening ``url``, reading from it); an error of the network, not of the
    folder (IncompleteRead included), as a ``ConnectionError`` saying what to do."""
    try:
        return call()
    except (urllib.error.URLError, OSError, http.client.HTTPException) as err:
        raise ConnectionError(
            f"Omniglot: could not download {url} ({err}). Offline? Put the two .npz files in "
            f"a folder and set MINIMETA_DATA_DIR to it, or download the zip by hand to "
            f"{path}.") from err


def convert_zip(zip_path, characters=None, first=None):
    """Images (characters, 20, H, W) bool (True = paper) and labels (characters, 20) from an
    Omniglot zip. ``first`` is the smallest character id (default: the smallest found);
    ``characters`` the expected count (default: as many as found)."""
    try:
        from PIL import Image
    except ImportError as err:
        raise ImportError("Omniglot: converting the original PNGs needs pillow: "
                          "pip install 'minimeta[data]'") from err
    try:
        archive = zipfile.ZipFile(zip_path)
    except zipfile.BadZipFile as err:
        raise ValueError(f"Omniglot: {zip_path} is not a valid zip archive (corrupt or "
                         "truncated); delete it and download it again") from err
    with archive:
        entries = [(m.group(1), m.group(2), name) for name in archive.namelist()
                   if (m := _NAME.search(name))]
        if not entries:
            raise ValueError(f"Omniglot: {zip_path} holds no CCCC_DD.png images")
        ids = sorted({int(c) for c, _, _ in entries})
        first = ids[0] if first is None else first
        characters = len(ids) if characters is None else characters
        images = labels = None
        for char, drawer, name in entries:
            row, col = int(char) - first, int(drawer) - 1
            if not (0 <= row < characters and 0 <= col < DRAWERS):
                raise ValueError(f"Omniglot: {name} in {zip_path} is outside {characters} "
                                 f"characters from id {first} × {DRAWERS} drawers")
            pixels = _read_png(archive, name, zip_path, Image)
            if images is None:
                images = np.zeros((characters, DRAWERS) + pixels.shape, dtype=bool)
                labels = np.full((characters, DRAWERS), -1, dtype=np.int64)
            if pixels.shape != images.shape[2:]:
                raise ValueError(f"Omniglot: {name} in {zip_path} is {pixels.shape[1]}×"
                                 f"{pixels.shape[0]} pixels, the images before it "
                                 f"{images.shape[3]}×{images.shape[2]}: not an Omniglot "
                                 "archive; delete it and download it again")
            images[row, col] = pixels
            labels[row, col] = row
    if (labels < 0).any():
        missing = np.argwhere(labels < 0)[0]
        raise ValueError(f"Omniglot: {zip_path} lacks image {first + missing[0]:04d}_"
                         f"{missing[1] + 1:02d}.png (and perhaps others)")
    return images, labels


def _read_png(archive, name, zip_path, image):
    """The pixels of member ``name`` (True for paper); ``ValueError`` naming an unreadable
    one. ``image``: pillow's Image module."""
    try:
        with image.open(io.BytesIO(archive.read(name))) as png:
            return np.asarray(png.convert("L")) >= 128
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as err:
        raise ValueError(f"Omniglot: {name} in {zip_path} is not a readable PNG image ("
                         f"{type(err).__name__}); delete the zip and download it again") from err


def fetch(part, folder, npz_name, log=print):
    """Download, check and convert one part into ``folder/npz_name``; return its path."""
    md5, pixels, characters, first = ARCHIVES[part]
    try:
        import PIL  # noqa: F401  (before a download that could not be converted)
    except ImportError as err:
        raise RuntimeError("Omniglot: no copy found, and converting the original archives "
                           "needs pillow: pip install 'minimeta[data]' (or set "
                           "MINIMETA_DATA_DIR to a folder holding the two .npz files)") from err
    os.makedirs(folder, exist_ok=True)
    zip_path = os.path.join(folder, f"images_{part}.zip")
    if not os.path.exists(zip_path):
        log(f"Omniglot: no copy found; downloading the original {part} archive to {folder}")
        download(URL.format(part=part), zip_path, md5, log=log)
    images, labels = convert_zip(zip_path, characters, first)
    if pixels_sha256(images) != pixels:
        raise ValueError(f"Omniglot: the images converted from {zip_path} differ from the "
                         "reference copy (pixel sha256 mismatch); delete the zip and retry")
    target = os.path.join(folder, npz_name)
    tmp = target + f".tmp{os.getpid()}.npz"
    np.savez_compressed(tmp, images=images, labels=labels)
    os.replace(tmp, target)
    os.remove(zip_path)
    return target
