"""TFDS image sources without TensorFlow: a real array_record CIFAR-10 stand-in, mock data,
and one clear error for every bad data_dir, dataset, split, feature or file."""

import glob
import os
import shutil
import time

import numpy as np
import pytest

tfds = pytest.importorskip("tensorflow_datasets")
pytest.importorskip("PIL.Image")

from tests.fakes import (  # noqa: E402
    N_TEST,
    N_TRAIN,
    expected_cifar,
    fake_images,
    fake_labels,
    mock_cifar10_source,
    mock_tfds,
    prepare_fake_cifar10,
)
from lazy_hasty.data import tfds_sources  # noqa: E402
from lazy_hasty.data.tfds_sources import (  # noqa: E402
    DatasetNotPreparedError,
    load_cifar10,
    load_tfds_images,
    original_train_labels,
)


@pytest.fixture(scope="module")
def prepared_dir(tmp_path_factory):
    return prepare_fake_cifar10(tmp_path_factory.mktemp("tfds"))


def test_cifar10_from_array_record_in_original_order(prepared_dir):
    source = tfds_sources.open_tfds_split("cifar10", "train", prepared_dir)
    tfds_order = [example["id"] for example in source.read(range(N_TRAIN))]
    assert tfds_order != sorted(tfds_order)  # TFDS shuffles on write

    ds = load_cifar10(prepared_dir, train_size=20)
    assert ds.name == "cifar10" and ds.num_classes == 10
    sizes = {name: len(split) for name, split in ds.splits.items()}
    assert sizes == {"train": 20, "heldout": N_TRAIN - 20, "test": N_TEST}
    for split in ds.splits.values():
        assert split.x.shape[1:] == (32, 32, 3)
        assert split.x.dtype == np.float32 and split.y.dtype == np.int32
    train_images = fake_images(N_TRAIN, 0)
    np.testing.assert_allclose(ds.splits["train"].x, expected_cifar(train_images[:20]), atol=1e-5)
    np.testing.assert_allclose(ds.splits["heldout"].x, expected_cifar(train_images[20:]),
                               atol=1e-5)
    np.testing.assert_allclose(ds.splits["test"].x, expected_cifar(fake_images(N_TEST, 1)),
                               atol=1e-5)
    np.testing.assert_array_equal(original_train_labels(ds), fake_labels(N_TRAIN))
    np.testing.assert_array_equal(ds.splits["test"].y, fake_labels(N_TEST))
    with pytest.raises(ValueError, match="train_size"):
        load_cifar10(prepared_dir, train_size=N_TRAIN + 1)


def test_load_tfds_images_batches_and_indices(prepared_dir):
    images, labels = load_tfds_images("cifar10", "train", prepared_dir)
    assert images.shape == (N_TRAIN, 32, 32, 3) and images.dtype == np.uint8
    assert labels.dtype == np.int64
    some, some_labels = load_tfds_images("cifar10", "train", prepared_dir, indices=[3, 0])
    np.testing.assert_array_equal(some, images[[3, 0]])
    np.testing.assert_array_equal(some_labels, labels[[3, 0]])
    columns = tfds_sources.read_tfds_examples("cifar10", "test", prepared_dir, ("label",),
                                              batch_size=3)  # several batches
    np.testing.assert_array_equal(np.sort(columns["label"]), np.sort(fake_labels(N_TEST)))


def test_not_prepared_raises_clear_error_fast(tmp_path):
    start = time.monotonic()
    with pytest.raises(DatasetNotPreparedError, match="not prepared in") as info:
        load_cifar10(str(tmp_path), train_size=10)
    assert time.monotonic() - start < 10
    message = str(info.value)
    assert str(tmp_path) in message and "tfds build cifar10" in message
    assert "file_format=array_record" in message and "--config.data_dir" in message
    assert isinstance(info.value, FileNotFoundError)
    assert not any(tmp_path.iterdir())  # nothing downloaded or created


def test_unknown_dataset_split_or_feature_is_one_value_error(prepared_dir):
    with pytest.raises(ValueError, match="TFDS has no dataset 'no_such_set': check the name"):
        load_tfds_images("no_such_set", "train", prepared_dir)
    with pytest.raises(ValueError, match="split 'validation' of cifar10 .*prepared split"):
        load_tfds_images("cifar10", "validation", prepared_dir)
    with pytest.raises(ValueError, match=r"cifar10\[test\] examples have no feature 'label2'"):
        load_tfds_images("cifar10", "test", prepared_dir, label_key="label2")
    with pytest.raises(ValueError, match="no feature 'image/size'.*it has ndarray"):
        tfds_sources.read_tfds_examples("cifar10", "test", prepared_dir, ("image/size",))


@pytest.mark.parametrize("damage", ["delete", "truncate"])
def test_missing_or_corrupt_files_say_prepare_again(prepared_dir, tmp_path, damage):
    data_dir = shutil.copytree(prepared_dir, tmp_path / "tfds")
    for path in glob.glob(f"{data_dir}/cifar10/*/*test.array_record*"):
        if damage == "delete":
            os.remove(path)
        else:
            with open(path, "r+b") as f:
                f.truncate(os.path.getsize(path) // 2)
    with pytest.raises(DatasetNotPreparedError,
                       match=r"cannot read cifar10\[test\] .*missing or corrupt") as info:
        load_cifar10(str(data_dir), train_size=N_TRAIN)
    assert "tfds build cifar10" in str(info.value)


def test_load_cifar10_on_mock_data():
    with mock_tfds(as_data_source_fn=mock_cifar10_source):
        ds = load_cifar10("/nonexistent/data_dir", train_size=25)
    assert ds.splits["train"].x.shape == (25, 32, 32, 3)
    assert ds.splits["heldout"].x.shape == (N_TRAIN - 25, 32, 32, 3)
    np.testing.assert_allclose(ds.splits["train"].x,
                               expected_cifar(fake_images(N_TRAIN, 0)[:25]), atol=1e-5)
    np.testing.assert_array_equal(original_train_labels(ds), fake_labels(N_TRAIN))


def test_generic_loader_on_default_mock_data():
    with mock_tfds(num_examples=12):
        images, labels = load_tfds_images("cifar10", "train", "/nonexistent/data_dir")
        with pytest.raises(ValueError, match="cannot restore the original order"):
            load_cifar10("/nonexistent/data_dir", train_size=6)  # mock ids are random text
    assert images.shape == (12, 32, 32, 3) and images.dtype == np.uint8
    assert labels.shape == (12,) and labels.min() >= 0 and labels.max() < 10
