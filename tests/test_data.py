"""Omniglot loading (on synthetic archives and, when present, the real ones) and episodes."""
import os
import struct
import sys
import zipfile

import numpy as np
import pytest
from hypothesis import given, strategies as st

from minimeta.data import EpisodeSampler, fetch, omniglot


def test_resize_is_an_exact_area_average():
    r = omniglot.area_matrix(105, 28)
    np.testing.assert_allclose(r.sum(axis=1), 1.0, rtol=1e-14)
    img = np.random.default_rng(1).random((105, 105)) > 0.5
    small = omniglot.resize(img, 28)
    assert small.shape == (28, 28) and small.dtype == np.float32
    # ink is conserved (up to float32 rounding: the resize computes in float32)
    np.testing.assert_allclose(small.mean(), img.mean(), rtol=1e-5)
    np.testing.assert_allclose(omniglot.resize(np.ones((105, 105)), 28), 1.0, rtol=1e-6)


def test_load_resizes_inverts_and_caches(fake_omniglot):
    out = omniglot.load("background", verify=False)
    assert out.shape == (6, 20, 28, 28) and out.dtype == np.float32
    assert 0.0 <= out.min() and out.max() <= 1.0 and out.mean() < 0.2   # ink is ~10%
    assert len(os.listdir(fake_omniglot / "cache")) == 1
    np.testing.assert_array_equal(omniglot.load("background", verify=False), out)


def test_the_cache_is_named_by_content_and_one_per_part_and_size(fake_omniglot):
    """A touch or a re-copy of the same archive finds its cache; a new cache replaces the older
    versions' caches of its part and size (found by probing, 2026-12-01: keyed by size and
    mtime, each re-copy of the archives had left another 40-60 MB, 870 MB in all on this
    machine), not another content's (two archives sharing the folder, found by the review)."""
    cache = fake_omniglot / "cache"
    cache.mkdir()
    (cache / "omniglot_background_28_123-456.npy").write_bytes(b"an older version's")
    (cache / "omniglot_background_7_123-456.npy").write_bytes(b"another size's")
    (cache / "omniglot_background_28_x.npy.tmp99-1.npy").write_bytes(b"a writer's, now")
    (cache / "omniglot_background_28_0123456789abcdef.npy").write_bytes(b"another content's")
    out = omniglot.load("background", verify=False)
    archive = fake_omniglot / omniglot.FILES["background"][0]
    os.utime(archive, (1, 1))                     # as a re-copy of the archive leaves it
    np.testing.assert_array_equal(omniglot.load("background", verify=False), out)
    names = sorted(os.listdir(cache))
    assert len(names) == 4 and "omniglot_background_7_123-456.npy" in names, names
    assert "omniglot_background_28_123-456.npy" not in names, names
    assert {"omniglot_background_28_x.npy.tmp99-1.npy",
            "omniglot_background_28_0123456789abcdef.npy"} <= set(names), names


def test_a_cache_file_of_another_shape_or_kind_is_made_again(fake_omniglot):
    out = omniglot.load("background", verify=False)
    (cached,) = (fake_omniglot / "cache").iterdir()
    for wrong in (np.zeros((3, 3)), out.astype(np.float64), b"not an array"):
        if isinstance(wrong, bytes):
            cached.write_bytes(wrong)
        else:
            np.save(cached, wrong)
        np.testing.assert_array_equal(omniglot.load("background", verify=False), out)


def test_the_cache_folder_is_no_pattern(fake_omniglot, monkeypatch):
    """A cache folder named like a glob pattern (``cache[12]``) had its pruning delete an old
    cache file in the sibling folder ``cache1`` (found by the review, 2026-12-01)."""
    sibling = fake_omniglot / "cache1"
    sibling.mkdir()
    (sibling / "omniglot_background_28_123-456.npy").write_bytes(b"not this folder's")
    monkeypatch.setenv("MINIMETA_CACHE_DIR", str(fake_omniglot / "cache[12]"))
    omniglot.load("background", verify=False)
    assert os.listdir(sibling) == ["omniglot_background_28_123-456.npy"]


def test_a_cache_folder_that_cannot_be_written_is_said_once(fake_omniglot, monkeypatch):
    (fake_omniglot / "blocked").write_text("")
    monkeypatch.setenv("MINIMETA_CACHE_DIR", str(fake_omniglot / "blocked"))
    with pytest.warns(RuntimeWarning) as said:
        for part in ("background", "evaluation", "background"):
            omniglot.load(part, size=5, verify=False)
    assert len([w for w in said if "cannot cache" in str(w.message)]) == 1


def test_the_cache_warning_names_the_line_that_called_minimeta(fake_omniglot, monkeypatch):
    """Reached through ``class_images`` (``load`` is two calls down), the warning had named a
    line of omniglot.py: it names the caller's, here this file's."""
    import warnings

    (fake_omniglot / "blocked").write_text("")
    monkeypatch.setenv("MINIMETA_CACHE_DIR", str(fake_omniglot / "blocked"))
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        omniglot.class_images("lake", "test", size=6, verify=False)
    assert [w.filename for w in said] == [__file__], [(w.filename, w.lineno) for w in said]


def test_wrong_checksum_and_missing_files_are_clear_errors(fake_omniglot, monkeypatch):
    with pytest.raises(ValueError, match="wrong sha256"):
        omniglot.load("background")
    monkeypatch.setenv("MINIMETA_DATA_DIR", str(fake_omniglot / "nowhere"))
    with pytest.raises(FileNotFoundError, match="MINIMETA_DATA_DIR"):
        omniglot.load("background", verify=False)


def test_splits_and_rotations(fake_omniglot):
    omniglot.TRAIN_CHARACTERS, saved = 7, omniglot.TRAIN_CHARACTERS
    try:
        train = omniglot.class_images("vinyals", "train", verify=False)
        test = omniglot.class_images("vinyals", "test", verify=False)
        val = omniglot.class_images("vinyals", "val", val_size=2, verify=False)
        train5 = omniglot.class_images("vinyals", "train", val_size=2, verify=False)
        test5 = omniglot.class_images("vinyals", "test", val_size=2, verify=False)
    finally:
        omniglot.TRAIN_CHARACTERS = saved
    assert train.shape[0] == 4 * 7 and test.shape[0] == 4 * 3 and val.shape[0] == 4 * 2
    np.testing.assert_array_equal(train[7], np.rot90(train[0], 1, axes=(-2, -1)))
    # the parts share no class, rotations included, and meta-training keeps the rest
    np.testing.assert_array_equal(test5, test)  # validation is cut from training, not test
    parts = [classes_of(part) for part in (train5, val, test5)]
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    assert parts[0] | parts[1] == classes_of(train) and len(parts[0] | parts[1] | parts[2]) == 40
    lake = omniglot.class_images("lake", "train", rotations=False, verify=False)
    assert lake.shape == (6, 20, 28, 28)
    with pytest.raises(ValueError, match="no validation"):
        omniglot.class_images("lake", "val", verify=False)
    # the split is part of every checkpoint's meaning: another seed (or generator) would test
    # old models on characters they trained on
    order = np.random.default_rng(omniglot.SPLIT_SEED).permutation(1623)
    assert order[:6].tolist() == [1229, 854, 493, 864, 898, 584] and saved == 1200


def classes_of(images):
    """Each class's images, as bytes: a set to compare split parts by content."""
    return {c.tobytes() for c in images}


def test_split_parts_are_disjoint_even_when_the_split_rows_overlap(fake_omniglot, monkeypatch):
    """The mutant: a test part that reuses meta-training characters. ``classes_of`` sees it
    (the check above is not vacuous: distinct fake characters give distinct bytes)."""
    train = omniglot.class_images("vinyals", "train", verify=False)
    real = omniglot.np.random.default_rng
    monkeypatch.setattr(omniglot.np.random, "default_rng",
                        lambda seed: _Repeating(real(seed)))
    leaky = omniglot.class_images("vinyals", "test", verify=False)
    assert classes_of(train) & classes_of(leaky)


class _Repeating:
    """A generator whose permutation repeats its first rows at the end (test reuses train)."""

    def __init__(self, rng):
        self.rng = rng

    def permutation(self, n):
        order = self.rng.permutation(n)
        return np.concatenate([order[:n - 4], order[:4]])


def test_episode_labels_are_shuffled_not_tied_to_class_order():
    """An episode's label 0 is not its lowest class: labels tied to class order would tell a
    fixed-head learner (MAML) the rotation, as Omniglot's classes are laid out rotation by
    rotation; each label lands on every class over many episodes, in every order."""
    classes = np.arange(8 * 20, dtype=np.float32).reshape(8, 20, 1, 1)
    sampler, seen, ordered = EpisodeSampler(classes, 4, 1, 0, seed=3), set(), 0
    for _ in range(300):
        xs, ys, _, _ = sampler.sample()
        drawn = (xs[:, 0, 0, 0] // 20).astype(int)[np.argsort(ys)]    # class of label 0, 1, ..
        seen |= {(label, c) for label, c in enumerate(drawn)}
        ordered += bool(np.all(np.diff(drawn) > 0))
    assert seen == {(label, c) for label in range(4) for c in range(8)}
    assert ordered < 300 * 0.15                     # 1/24 of the draws, 12.5 expected


@given(ways=st.integers(1, 6), shots=st.integers(1, 4), queries=st.integers(0, 5),
       seed=st.integers(0, 2 ** 31))
def test_episodes_are_valid_and_reproducible(ways, shots, queries, seed):
    classes = np.arange(8 * 10, dtype=np.float32).reshape(8, 10, 1, 1) * np.ones((1, 1, 2, 3))
    xs, ys, xq, yq = EpisodeSampler(classes, ways, shots, queries, seed).sample()
    assert xs.shape == (ways * shots, 1, 2, 3) and xq.shape == (ways * queries, 1, 2, 3)
    assert sorted(set(ys.tolist())) == list(range(ways)) and np.all(np.bincount(ys) == shots)
    ids_s, ids_q = xs[:, 0, 0, 0].astype(int), xq[:, 0, 0, 0].astype(int)   # class*10 + example
    classes_s = ids_s // 10
    assert len(set(classes_s.tolist())) == ways                   # no class repeated
    assert not set(ids_s.tolist()) & set(ids_q.tolist())          # support and query disjoint
    for label in range(ways):                                     # one class per label
        assert len(set((ids_s[ys == label] // 10).tolist())) == 1
        support_class = set((ids_s[ys == label] // 10).tolist())
        assert set((ids_q[yq == label] // 10).tolist()) <= support_class
    again = EpisodeSampler(classes, ways, shots, queries, seed).sample()
    for a, b in zip((xs, ys, xq, yq), again):
        np.testing.assert_array_equal(a, b)


def test_episode_sampler_rejects_impossible_requests():
    with pytest.raises(ValueError, match="at least 9 classes"):
        EpisodeSampler(np.zeros((8, 20, 2, 2)), 9, 1, 1)
    with pytest.raises(ValueError, match="at most the 20 examples"):
        EpisodeSampler(np.zeros((8, 20, 2, 2)), 5, 10, 11)


REAL = os.path.exists(os.path.join(omniglot.data_dir(), omniglot.FILES["background"][0]))


@pytest.mark.skipif(not REAL, reason="Omniglot not found in MINIMETA_DATA_DIR")
def test_real_omniglot_vinyals_split(tmp_path, monkeypatch):
    monkeypatch.setenv("MINIMETA_CACHE_DIR", str(tmp_path))
    train = omniglot.class_images("vinyals", "train")
    test = omniglot.class_images("vinyals", "test")
    assert train.shape == (4800, 20, 28, 28) and test.shape == (4 * 423, 20, 28, 28)
    assert not classes_of(train) & classes_of(test)       # no character, nor a rotation of it
    assert 0.05 < train.mean() < 0.2            # about 8% ink before resizing
    xs, ys, xq, yq = EpisodeSampler(test, 20, 5, 15, seed=0).sample()
    assert xs.shape == (100, 1, 28, 28) and xq.shape == (300, 1, 28, 28)


@pytest.mark.skipif(not REAL, reason="Omniglot not found in MINIMETA_DATA_DIR")
@pytest.mark.parametrize("part", ["background", "evaluation"])
def test_the_pixel_check_passes_a_conversion_of_the_reference_pixels(part):
    # The reference copy stores True as byte 255, a conversion (PNG >= 128) as byte 1: the
    # check had hashed raw bytes, so every fresh download failed it (found by probing).
    with np.load(omniglot.archive_path(part)) as archive:
        reference = archive["images"]
    converted = reference.view(np.uint8) != 0          # what convert_zip makes: bytes 0/1
    assert np.array_equal(converted, reference)
    assert fetch.pixels_sha256(converted) == fetch.ARCHIVES[part][1]
    assert fetch.pixels_sha256(reference) == fetch.ARCHIVES[part][1]
    converted[0, 0, 0, 0] = ~converted[0, 0, 0, 0]          # one pixel differs: refused
    assert fetch.pixels_sha256(converted) != fetch.ARCHIVES[part][1]


def _png_zip(path, folder, ids, drawers=20, missing=None, seed=0):
    """A small Omniglot-style zip: <folder>/<alphabet>/characterNN/CCCC_DD.png, 6×5 pixels."""
    import zipfile
    from io import BytesIO

    from PIL import Image

    rng = np.random.default_rng(seed)
    truth = rng.random((len(ids), drawers, 6, 5)) > 0.2
    with zipfile.ZipFile(path, "w") as z:
        for row, cid in enumerate(ids):
            for d in range(drawers):
                if (row, d) == missing:
                    continue
                buf = BytesIO()
                Image.fromarray(truth[row, d]).save(buf, format="PNG")
                z.writestr(f"{folder}/Alpha/character{row + 1:02d}/{cid:04d}_{d + 1:02d}.png",
                           buf.getvalue())
    return truth


def test_convert_zip_reads_pngs_into_the_npz_layout(tmp_path):
    pytest.importorskip("PIL")
    truth = _png_zip(tmp_path / "a.zip", "images_background", [5, 6, 7])
    images, labels = fetch.convert_zip(str(tmp_path / "a.zip"), characters=3, first=5)
    assert images.dtype == bool and images.shape == (3, 20, 6, 5)
    np.testing.assert_array_equal(images, truth)
    np.testing.assert_array_equal(labels, np.repeat(np.arange(3)[:, None], 20, 1))


def test_convert_zip_names_a_missing_image_and_a_corrupt_archive(tmp_path):
    pytest.importorskip("PIL")
    _png_zip(tmp_path / "a.zip", "x", [1, 2], missing=(1, 3))
    with pytest.raises(ValueError, match="lacks image 0002_04.png"):
        fetch.convert_zip(str(tmp_path / "a.zip"))
    (tmp_path / "bad.zip").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="bad.zip is not a valid zip"):
        fetch.convert_zip(str(tmp_path / "bad.zip"))


def test_download_offline_is_a_clear_error(tmp_path):
    with pytest.raises(ConnectionError, match="could not download .*Offline"):
        fetch.download("http://127.0.0.1:9/images_background.zip", str(tmp_path / "a.zip"),
                       log=lambda *a, **k: None)
    assert not os.listdir(tmp_path)  # no partial file left behind


def test_fresh_machine_downloads_checks_converts_and_loads(tmp_path, monkeypatch):
    """The whole first-use path, served from a local file:// URL instead of GitHub."""
    pytest.importorskip("PIL")
    import hashlib

    served = tmp_path / "served"
    served.mkdir()
    archives = {}
    for part, ids in (("background", [1, 2, 3]), ("evaluation", [4, 5])):
        truth = _png_zip(served / f"images_{part}.zip", f"images_{part}", ids, seed=len(ids))
        md5 = hashlib.md5((served / f"images_{part}.zip").read_bytes()).hexdigest()
        archives[part] = (md5, fetch.pixels_sha256(truth), len(ids), ids[0])
    monkeypatch.setattr(fetch, "URL", served.as_uri() + "/images_{part}.zip")
    monkeypatch.setattr(fetch, "ARCHIVES", archives)
    monkeypatch.delenv("MINIMETA_DATA_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MINIMETA_CACHE_DIR", str(tmp_path / "cache"))
    out = omniglot.load("evaluation", size=3)          # downloads, converts, verifies pixels
    assert out.shape == (2, 20, 3, 3)
    cache = tmp_path / "home" / ".cache" / "minimeta" / "omniglot"
    assert sorted(os.listdir(cache)) == ["images_evaluation.npz"]   # the zip is gone
    assert omniglot.archive_path("evaluation") == str(cache / "images_evaluation.npz")
    archives["evaluation"] = archives["evaluation"][:1] + ("0" * 64,) + archives["evaluation"][2:]
    with pytest.raises(ValueError, match="wrong sha256"):
        omniglot.archive_path("evaluation")           # neither file nor pixel hash matches
    archives["background"] = ("0" * 32,) + archives["background"][1:]
    with pytest.raises(ValueError, match="has md5 .* expected 0{32}"):
        omniglot.load("background")


def test_corrupt_npz_is_named(fake_omniglot):
    (fake_omniglot / omniglot.FILES["background"][0]).write_bytes(b"garbage")
    with pytest.raises(ValueError, match="cannot read .*images_background.npz"):
        omniglot.load("background", verify=False)


def test_an_npz_with_a_damaged_deflate_stream_is_named(fake_omniglot):
    """A flipped byte inside the compressed images (not a truncation: the zip directory is
    whole) fails in zlib; its zlib.error had escaped both the checksum's pixel fallback and
    ``load``, instead of the errors that say to delete the file and fetch it again."""
    path = fake_omniglot / omniglot.FILES["background"][0]
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        offset = archive.getinfo("images.npy").header_offset
    name_len, extra_len = struct.unpack("<HH", data[offset + 26:offset + 30])
    data[offset + 30 + name_len + extra_len] = 0xFF     # deflate block type 3: invalid
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="wrong sha256"):
        omniglot.load("background")
    with pytest.raises(ValueError, match="cannot read .*images_background.npz"):
        omniglot.load("background", verify=False)


# ----- found by probing (2026-12-01); each failed on the code before its fix ----------------
@pytest.mark.parametrize("size", [39, 78, 93, 95])
def test_area_matrix_for_sizes_whose_last_edge_rounds_above_the_input(size):
    r = omniglot.area_matrix(105, size)        # had raised IndexError: index 105
    np.testing.assert_allclose(r.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(r.sum(axis=0), size / 105, rtol=1e-12)


class _Cut:
    """A response whose connection breaks mid-body (chunked transfer: IncompleteRead)."""
    headers = {"Content-Length": "100"}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def read(self, n):
        import http.client
        raise http.client.IncompleteRead(b"", 100)


def test_a_connection_cut_mid_download_is_a_connection_error(tmp_path, monkeypatch):
    monkeypatch.setattr(fetch.urllib.request, "urlopen", lambda *a, **k: _Cut())
    with pytest.raises(ConnectionError, match=r"could not download .*IncompleteRead"):
        fetch.download("https://example.org/a.zip", str(tmp_path / "a.zip"),
                       log=lambda *a, **k: None)      # had escaped as a traceback
    assert os.listdir(tmp_path) == []                 # and had left a.zip.part


def test_a_folder_that_cannot_be_written_is_not_called_offline(tmp_path, monkeypatch):
    import errno
    import io

    class Full(io.BytesIO):
        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device", self.name)

    opened = []

    def full_open(path, mode):
        opened.append(path)
        out = Full()
        out.name = path
        return out

    response = _Cut()
    response.read = lambda n, blocks=[b"x" * 10, b""]: blocks.pop(0)
    monkeypatch.setattr(fetch.urllib.request, "urlopen", lambda *a, **k: response)
    (tmp_path / "a.part").write_bytes(b"")
    monkeypatch.setattr(fetch, "open", full_open, raising=False)
    monkeypatch.setattr(fetch.os, "remove", lambda path: opened.append(("removed", path)))
    with pytest.raises(OSError, match="No space left") as info:
        fetch.download("https://example.org/a", str(tmp_path / "a"), log=lambda *a, **k: None)
    assert not isinstance(info.value, ConnectionError)       # had said "Offline?"
    assert opened == [str(tmp_path / "a.part"), ("removed", str(tmp_path / "a.part"))]
    monkeypatch.undo()
    with pytest.raises(NotADirectoryError):                   # a file where the folder is
        fetch.download("https://example.org/a", str(tmp_path / "a.part" / "b.zip"),
                       log=lambda *a, **k: None)


def test_without_pillow_nothing_is_downloaded_and_the_error_says_what_to_install(
        tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "PIL", None)             # an import of PIL fails
    monkeypatch.setattr(fetch, "download", lambda *a, **k: pytest.fail("downloaded"))
    with pytest.raises(RuntimeError, match=r"needs pillow: pip install 'minimeta\[data\]'"):
        fetch.fetch("background", str(tmp_path), "images_background.npz")


def test_a_cache_folder_that_cannot_be_written_only_costs_time(fake_omniglot, monkeypatch):
    (fake_omniglot / "not-a-folder").write_text("")
    monkeypatch.setenv("MINIMETA_CACHE_DIR", str(fake_omniglot / "not-a-folder"))
    with pytest.warns(RuntimeWarning, match="cannot cache the resized images .*set "
                                            "MINIMETA_CACHE_DIR"):
        images = omniglot.load("evaluation", size=7, verify=False)   # had raised on saving
    assert images.shape == (4, 20, 7, 7)
