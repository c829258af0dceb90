"""CelebA on TFDS's own mock data for ``celeb_a`` (no TensorFlow, offline): splits, the
evaluated test subset decoded alone, and the bad-data errors."""

import time

import numpy as np
import pytest

tfds = pytest.importorskip("tensorflow_datasets")
pytest.importorskip("PIL.Image")

from tests.fakes import mock_tfds  # noqa: E402
from lazy_hasty.data import celeba, groups, spurious  # noqa: E402
from lazy_hasty.data.tfds_sources import DatasetNotPreparedError  # noqa: E402

N, TRAIN, PER = 32, 12, 2  # mock examples per split (every split: the same ones); sizes
SIZE = 12


def _load(**kwargs):
    args = {"train_size": TRAIN, "balanced_per_group": PER, "seed": 0, "image_size": SIZE}
    args.update(kwargs)
    with mock_tfds(num_examples=N):  # random examples of the real features
        return celeba.load_celeba("/nonexistent/data_dir", **args)


@pytest.fixture(scope="module")
def truth():
    """The mock examples: 218x178 images (resized like the loader), bool attributes."""
    with mock_tfds(num_examples=N):
        source = tfds.data_source("celeb_a", split="train", data_dir="/nonexistent",
                                  download=False)
        examples = [source[i] for i in range(N)]
    return {
        "images": np.stack([spurious.center_crop_resize(e["image"], 178, SIZE)
                            for e in examples]),
        "blond": np.array([bool(e["attributes"]["Blond_Hair"]) for e in examples]),
        "male": np.array([bool(e["attributes"]["Male"]) for e in examples]),
    }


@pytest.fixture(scope="module")
def loaded():
    return _load()


def _indices(x: np.ndarray, images: np.ndarray) -> np.ndarray:
    """The mock index of each loaded image (the random images are all distinct)."""
    flat = images.reshape(len(images), -1)
    found = [np.flatnonzero((flat == im.reshape(-1)).all(axis=1)) for im in x]
    assert all(f.size == 1 for f in found)
    return np.array([int(f[0]) for f in found])


def test_celeba_splits_balanced_sets_and_groups(truth, loaded):
    assert 0 < truth["blond"].mean() < 1 and 0 < truth["male"].mean() < 1
    data = loaded
    assert data.name == "celeb_a" and data.num_classes == 2
    assert (data.easy, data.hard) == ("women", "men")
    assert {name: len(s) for name, s in data.splits.items()} == {
        "train": TRAIN, "balanced_train": 4 * PER, "balanced_test": 4 * PER, "test": N}
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
                assert np.sum((split.y == label) & (male == attr)) == PER
    np.testing.assert_array_equal(where["test"], np.arange(N))
    assert not set(where["balanced_train"]) & set(where["train"])  # disjoint from train


def test_celeba_other_seed_other_subsets(loaded):
    other = _load(seed=4)
    assert not np.array_equal(loaded.splits["train"].x, other.splits["train"].x)


def test_celeba_decodes_only_the_evaluated_test_subset(truth, loaded, monkeypatch):
    decoded = []
    resize = celeba.center_crop_resize
    monkeypatch.setattr(celeba, "center_crop_resize",
                        lambda *args: decoded.append(1) or resize(*args))
    capped = _load(test_size=10)
    test_idx = _indices(capped.splits["test"].x, truth["images"])
    # The examples the driver used to draw from the whole test split.
    np.testing.assert_array_equal(test_idx, groups.all_group(N, 10, seed=0, split="test")["all"])
    np.testing.assert_array_equal(capped.splits["test"].x,
                                  loaded.splits["test"].x[
                                      groups.all_group(N, 10, 0, "test")["all"]])
    balanced_idx = _indices(capped.splits["balanced_test"].x, truth["images"])
    assert len(decoded) == TRAIN + 4 * PER + len(set(test_idx) | set(balanced_idx))  # once each
    # Same seed, same examples: test_size changes nothing else.
    for name in ("train", "balanced_train", "balanced_test"):
        np.testing.assert_array_equal(capped.splits[name].x, loaded.splits[name].x)


def test_celeba_bad_sizes_and_too_few():
    with pytest.raises(ValueError, match=r"\(label=1, attribute=1\)"):
        _load(balanced_per_group=N // 2)
    with pytest.raises(ValueError, match="train_size"):
        _load(train_size=N)
    with pytest.raises(ValueError, match="test_size must be >= 0"):
        _load(test_size=-1)


def test_celeba_missing_attribute_is_one_value_error():
    def no_blond(self, split, **kwargs):
        del self, split, kwargs
        return [{"image": np.zeros((218, 178, 3), np.uint8), "attributes": {"Male": True}}] * 4

    with mock_tfds(num_examples=N, as_data_source_fn=no_blond), pytest.raises(
            ValueError, match=r"celeb_a\[train\] examples have no feature 'attributes/Blond_Hair'"):
        celeba.load_celeba("/nonexistent/data_dir", train_size=2, seed=0)


def test_celeba_not_prepared_raises_clear_error_fast(tmp_path):
    start = time.monotonic()
    with pytest.raises(DatasetNotPreparedError, match="celeb_a is not prepared in") as info:
        celeba.load_celeba(str(tmp_path), seed=0)
    assert time.monotonic() - start < 10
    message = str(info.value)
    assert "tfds build celeb_a" in message and "downloads/manual" in message
    assert not any(tmp_path.iterdir())  # nothing downloaded or created
