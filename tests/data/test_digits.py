"""scikit-learn digits loader: shapes, stratified split, standardisation, seeding."""

import numpy as np
import pytest

from lazy_hasty.data.digits import load_digits, read_digits, stratified_split
from lazy_hasty.data.splits import Split, subset


@pytest.fixture(scope="module")
def digits():
    return load_digits(seed=0)


def test_shapes_and_dtypes(digits):
    assert digits.name == "digits" and digits.num_classes == 10
    assert set(digits.splits) == {"train", "heldout", "test"}
    for split in digits.splits.values():
        assert split.x.shape[1:] == (8, 8, 1)
        assert split.x.dtype == np.float32 and split.y.dtype == np.int32


def test_split_sizes_partition_the_dataset(digits):
    sizes = {name: len(split) for name, split in digits.splits.items()}
    assert sizes == {"train": 1797 - 359 - 359, "heldout": 359, "test": 359}


def test_splits_are_stratified(digits):
    overall = np.bincount(np.concatenate([s.y for s in digits.splits.values()]), minlength=10)
    for split in digits.splits.values():
        expected = overall * len(split) / 1797
        np.testing.assert_allclose(np.bincount(split.y, minlength=10), expected, atol=1.5)


def test_standardised_on_train(digits):
    train = digits.splits["train"].x
    assert abs(float(train.mean())) < 1e-5
    assert abs(float(train.std()) - 1.0) < 1e-5
    assert abs(float(digits.splits["test"].x.mean())) < 0.1  # same statistics, not refitted


def test_deterministic_and_seed_dependent(digits):
    again = load_digits(seed=0)
    other = load_digits(seed=1)
    for name in digits.splits:
        np.testing.assert_array_equal(digits.splits[name].x, again.splits[name].x)
        np.testing.assert_array_equal(digits.splits[name].y, again.splits[name].y)
    assert not np.array_equal(digits.splits["train"].y, other.splits["train"].y)


def test_bad_fractions_name_the_fix():
    with pytest.raises(ValueError, match="heldout_fraction"):
        load_digits(seed=0, heldout_fraction=1.5)
    with pytest.raises(ValueError, match="< 1"):
        load_digits(seed=0, heldout_fraction=0.5, test_fraction=0.5)


def test_subset():
    split = Split(x=np.arange(10, dtype=np.float32)[:, None], y=np.arange(10, dtype=np.int32))
    part = subset(split, np.array([3, 1]))
    np.testing.assert_array_equal(part.y, [3, 1])
    assert len(subset(split, [])) == 0
    with pytest.raises(ValueError, match="one label per example"):
        Split(x=np.zeros((3, 2)), y=np.zeros(4, dtype=np.int32))


def test_read_digits_equals_sklearn():
    sklearn_datasets = pytest.importorskip("sklearn.datasets")
    raw = sklearn_datasets.load_digits()
    images, labels = read_digits()
    np.testing.assert_array_equal(images, raw.images)
    np.testing.assert_array_equal(labels, raw.target)
    assert images.dtype == raw.images.dtype and labels.dtype == raw.target.dtype


@pytest.mark.parametrize("seed", [0, 1, 12345, 2**31 - 2])
def test_stratified_split_equals_sklearn_train_test_split(seed):
    """The oracle is scikit-learn's own split: the same positions, in the same order, for
    the full label set (remainder ties included) and for a shuffled subset of it."""
    model_selection = pytest.importorskip("sklearn.model_selection")
    labels = read_digits()[1].astype(np.int32)
    subset_idx = np.random.default_rng(seed).permutation(len(labels))[:1000]
    for y, n_test in ((labels, 359), (labels, 17), (labels[subset_idx], 359),
                      (labels[:100], 23)):
        want = model_selection.train_test_split(np.arange(len(y)), test_size=n_test,
                                                stratify=y, random_state=seed)
        got = stratified_split(y, n_test, seed)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])
