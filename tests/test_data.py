"""Omniglot loading (on synthetic archives and, when present, the real ones) and episodes."""
import os

import numpy as np
import pytest
from hypothesis import given, strategies as st

from minimeta.data import EpisodeSampler, omniglot


@pytest.fixture
def fake_omniglot(tmp_path, monkeypatch):
    """Two small archives in the real layout (bool images, True = paper)."""
    rng = np.random.default_rng(0)
    for part, n in (("background", 6), ("evaluation", 4)):
        images = rng.random((n, 20, 105, 105)) > 0.1
        np.savez_compressed(tmp_path / omniglot.FILES[part][0], images=images,
                            labels=np.repeat(np.arange(n)[:, None], 20, 1))
    monkeypatch.setenv("MINIMETA_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("MINIMETA_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path


def test_resize_is_an_exact_area_average():
    r = omniglot.area_matrix(105, 28)
    np.testing.assert_allclose(r.sum(axis=1), 1.0)
    img = np.random.default_rng(1).random((105, 105)) > 0.5
    small = omniglot.resize(img, 28)
    assert small.shape == (28, 28) and small.dtype == np.float32
    np.testing.assert_allclose(small.mean(), img.mean(), rtol=1e-5)   # ink is conserved
    np.testing.assert_allclose(omniglot.resize(np.ones((105, 105)), 28), 1.0, rtol=1e-6)


def test_load_resizes_inverts_and_caches(fake_omniglot):
    out = omniglot.load("background", verify=False)
    assert out.shape == (6, 20, 28, 28) and out.dtype == np.float32
    assert 0.0 <= out.min() and out.max() <= 1.0 and out.mean() < 0.2   # ink is ~10%
    assert len(os.listdir(fake_omniglot / "cache")) == 1
    np.testing.assert_array_equal(omniglot.load("background", verify=False), out)


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
    finally:
        omniglot.TRAIN_CHARACTERS = saved
    assert train.shape[0] == 4 * 7 and test.shape[0] == 4 * 3 and val.shape[0] == 4 * 2
    np.testing.assert_array_equal(train[7], np.rot90(train[0], 1, axes=(-2, -1)))
    lake = omniglot.class_images("lake", "train", rotations=False, verify=False)
    assert lake.shape == (6, 20, 28, 28)
    with pytest.raises(ValueError, match="no validation"):
        omniglot.class_images("lake", "val", verify=False)


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
    assert 0.05 < train.mean() < 0.2            # about 8% ink before resizing
    xs, ys, xq, yq = EpisodeSampler(test, 20, 5, 15, seed=0).sample()
    assert xs.shape == (100, 1, 28, 28) and xq.shape == (300, 1, 28, 28)
