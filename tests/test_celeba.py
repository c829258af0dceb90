"""CelebA on TFDS's own mock data for ``celeb_a`` (no TensorFlow, offline), and the
not-prepared error."""

import time

import numpy as np
import pytest

tfds = pytest.importorskip("tensorflow_datasets")
pytest.importorskip("PIL.Image")

from lazy_hasty.data import spurious
from lazy_hasty.data.celeba import load_celeba
from lazy_hasty.data.tfds_sources import DatasetNotPreparedError

N = 80  # mock examples per split; TFDS's mock gives train and test the same examples
SIZE = 12


def _fixed_mock_getitems(record_keys, generator, serialized=False):
    # TFDS 4.9.10's mock sets `__getitems__` on a MagicMock instance, so it is called
    # without `self` and fails (see tests/test_tfds_sources.py).
    assert not serialized
    return [generator[key] for key in record_keys]


@pytest.fixture
def mock_celeba(monkeypatch):
    """Random examples generated from the real celeb_a features: 218x178 images, bool attributes."""
    from tensorflow_datasets.testing import mocking  # pylint: disable=import-outside-toplevel

    monkeypatch.setattr(mocking, "_getitems", _fixed_mock_getitems)
    with tfds.testing.mock_data(num_examples=N, policy=tfds.testing.MockPolicy.USE_CODE):
        source = tfds.data_source("celeb_a", split="train", data_dir="/nonexistent",
                                  download=False)
        examples = [source[i] for i in range(N)]
        yield {
            "images": np.stack([spurious.center_crop_resize(e["image"], 178, SIZE)
                                for e in examples]),
            "blond": np.array([bool(e["attributes"]["Blond_Hair"]) for e in examples]),
            "male": np.array([bool(e["attributes"]["Male"]) for e in examples]),
        }


def _indices(x: np.ndarray, images: np.ndarray) -> np.ndarray:
    """The mock index of each loaded image (the random images are all distinct)."""
    flat = images.reshape(len(images), -1)
    found = [np.flatnonzero((flat == im.reshape(-1)).all(axis=1)) for im in x]
    assert all(f.size == 1 for f in found)
    return np.array([int(f[0]) for f in found])


def _load(**kwargs):
    args = {"train_size": 30, "balanced_per_group": 4, "seed": 0, "image_size": SIZE}
    args.update(kwargs)
    return load_celeba("/nonexistent/data_dir", **args)


def test_celeba_splits_balanced_sets_and_groups(mock_celeba):
    truth = mock_celeba
    assert 0 < truth["blond"].mean() < 1 and 0 < truth["male"].mean() < 1
    data = _load()
    assert data.name == "celeb_a" and data.num_classes == 2
    assert (data.easy, data.hard) == ("women", "men")
    assert {name: len(s) for name, s in data.splits.items()} == {
        "train": 30, "balanced_train": 16, "balanced_test": 16, "test": N}
    where = {}
    for name, split in data.splits.items():
        assert split.x.shape[1:] == (SIZE, SIZE, 3) and split.x.dtype == np.uint8
        assert split.y.dtype == np.int32
        idx = where[name] = _indices(split.x, truth["images"])
        assert np.all(np.diff(idx) > 0)  # TFDS order, no duplicates
        np.testing.assert_array_equal(split.y, truth["blond"][idx])
        male = truth["male"][idx]
        np.testing.assert_array_equal(data.groups[name]["men"], np.flatnonzero(male))
        np.testing.assert_array_equal(data.groups[name]["women"], np.flatnonzero(~male))
        if name.startswith("balanced"):
            for label, attr in spurious.COMBINATIONS:
                assert np.sum((split.y == label) & (male == attr)) == 4
    np.testing.assert_array_equal(where["test"], np.arange(N))
    assert not set(where["balanced_train"]) & set(where["train"])  # disjoint from train


def test_celeba_deterministic_and_test_subset(mock_celeba):
    del mock_celeba
    first, again = _load(seed=3), _load(seed=3)
    for name in first.splits:
        np.testing.assert_array_equal(first.splits[name].x, again.splits[name].x)
    other = _load(seed=4)
    assert not np.array_equal(first.splits["train"].x, other.splits["train"].x)
    capped = _load(seed=3, test_size=20)
    assert len(capped.splits["test"]) == 20
    # balanced_test is drawn from the whole test split, whatever test_size.
    np.testing.assert_array_equal(capped.splits["balanced_test"].x,
                                  first.splits["balanced_test"].x)
    with pytest.raises(ValueError, match=r"\(label=1, attribute=1\)"):
        _load(balanced_per_group=N // 2)
    with pytest.raises(ValueError, match="train_size"):
        _load(train_size=N)


def test_celeba_not_prepared_raises_clear_error_fast(tmp_path):
    start = time.monotonic()
    with pytest.raises(DatasetNotPreparedError, match="celeb_a is not prepared in") as info:
        load_celeba(str(tmp_path), seed=0)
    assert time.monotonic() - start < 10
    message = str(info.value)
    assert "tfds build celeb_a" in message and "downloads/manual" in message
    assert not any(tmp_path.iterdir())  # nothing downloaded or created
