"""TFDS image sources without TensorFlow: a real array_record CIFAR-10 stand-in, mock data,
and the not-prepared error."""

import time

import numpy as np
import pytest

tfds = pytest.importorskip("tensorflow_datasets")
PIL_Image = pytest.importorskip("PIL.Image")

from lazy_hasty.data import tfds_sources  # noqa: E402
from lazy_hasty.data.tfds_sources import (  # noqa: E402
    CIFAR10_MEAN,
    CIFAR10_STD,
    DatasetNotPreparedError,
    load_cifar10,
    load_tfds_images,
    original_train_labels,
)

N_TRAIN, N_TEST = 30, 10


def _fake_images(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)


def _fake_labels(n: int) -> np.ndarray:
    return (np.arange(n) * 7) % 10


class FakeCifar10(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Same name, version and features as TFDS's cifar10, with tiny generated content."""

    name = "cifar10"
    VERSION = tfds.core.Version("3.0.2")

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict({
                "id": tfds.features.Text(),
                "image": tfds.features.Image(shape=(32, 32, 3)),
                "label": tfds.features.ClassLabel(num_classes=10),
            }),
        )

    def _split_generators(self, dl_manager):
        del dl_manager
        return {"train": self._generate_examples("train_", N_TRAIN, 0),
                "test": self._generate_examples("test_", N_TEST, 1)}

    def _generate_examples(self, prefix, n, seed):
        # PIL images are encoded with PIL: no TensorFlow needed to write.
        for i, (image, label) in enumerate(zip(_fake_images(n, seed), _fake_labels(n))):
            yield i, {"id": f"{prefix}{i:05d}", "image": PIL_Image.fromarray(image),
                      "label": int(label)}


@pytest.fixture(scope="module")
def prepared_dir(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("tfds")
    FakeCifar10(data_dir=str(data_dir), file_format="array_record").download_and_prepare()
    return str(data_dir)


def _expected(images: np.ndarray) -> np.ndarray:
    return (images / 255.0 - np.array(CIFAR10_MEAN)) / np.array(CIFAR10_STD)


def test_cifar10_from_array_record_in_original_order(prepared_dir):
    source = tfds_sources.open_tfds_source("cifar10", "train", prepared_dir)
    tfds_order = [source[i]["id"] for i in range(N_TRAIN)]
    assert tfds_order != sorted(tfds_order)  # TFDS shuffles on write

    ds = load_cifar10(prepared_dir, train_size=20)
    assert ds.name == "cifar10" and ds.num_classes == 10
    sizes = {name: len(split) for name, split in ds.splits.items()}
    assert sizes == {"train": 20, "heldout": N_TRAIN - 20, "test": N_TEST}
    for split in ds.splits.values():
        assert split.x.shape[1:] == (32, 32, 3)
        assert split.x.dtype == np.float32 and split.y.dtype == np.int32
    train_images = _fake_images(N_TRAIN, 0)
    np.testing.assert_allclose(ds.splits["train"].x, _expected(train_images[:20]), atol=1e-5)
    np.testing.assert_allclose(ds.splits["heldout"].x, _expected(train_images[20:]), atol=1e-5)
    np.testing.assert_allclose(ds.splits["test"].x, _expected(_fake_images(N_TEST, 1)), atol=1e-5)
    np.testing.assert_array_equal(original_train_labels(ds), _fake_labels(N_TRAIN))
    np.testing.assert_array_equal(ds.splits["test"].y, _fake_labels(N_TEST))
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
    np.testing.assert_array_equal(np.sort(columns["label"]), np.sort(_fake_labels(N_TEST)))


def test_not_prepared_raises_clear_error_fast(tmp_path):
    start = time.monotonic()
    with pytest.raises(DatasetNotPreparedError, match="not prepared in") as info:
        load_cifar10(str(tmp_path), train_size=10)
    assert time.monotonic() - start < 10
    message = str(info.value)
    assert str(tmp_path) in message and "tfds build cifar10" in message
    assert "file_format=array_record" in message
    assert isinstance(info.value, FileNotFoundError)
    assert not any(tmp_path.iterdir())  # nothing downloaded or created


def _mock_cifar10_source(self, split, **kwargs):
    """`as_data_source` stand-in: shuffled examples with real-looking CIFAR ids."""
    del self, kwargs
    n = N_TRAIN if split == "train" else N_TEST
    seed = 0 if split == "train" else 1
    images, labels = _fake_images(n, seed), _fake_labels(n)
    order = np.random.default_rng(5).permutation(n)
    return [{"id": f"{split}_{i:05d}".encode(), "image": images[i], "label": labels[i]}
            for i in order]


def test_load_cifar10_on_mock_data():
    with tfds.testing.mock_data(policy=tfds.testing.MockPolicy.USE_CODE,
                                as_data_source_fn=_mock_cifar10_source):
        ds = load_cifar10("/nonexistent/data_dir", train_size=25)
    assert ds.splits["train"].x.shape == (25, 32, 32, 3)
    assert ds.splits["heldout"].x.shape == (N_TRAIN - 25, 32, 32, 3)
    np.testing.assert_allclose(ds.splits["train"].x, _expected(_fake_images(N_TRAIN, 0)[:25]),
                               atol=1e-5)
    np.testing.assert_array_equal(original_train_labels(ds), _fake_labels(N_TRAIN))


def _fixed_mock_getitems(record_keys, generator, serialized=False):
    # TFDS 4.9.10's mock sets `__getitems__` on a MagicMock instance (not a supported
    # magic method), so it is called without `self` and fails; this version takes none.
    assert not serialized
    return [generator[key] for key in record_keys]


def test_generic_loader_on_default_mock_data(monkeypatch):
    # `tfds.testing.mocking` is a lazily loaded submodule: import it explicitly so the
    # patch works when this test runs alone.
    from tensorflow_datasets.testing import mocking  # pylint: disable=import-outside-toplevel

    monkeypatch.setattr(mocking, "_getitems", _fixed_mock_getitems)
    with tfds.testing.mock_data(num_examples=12, policy=tfds.testing.MockPolicy.USE_CODE):
        images, labels = load_tfds_images("cifar10", "train", "/nonexistent/data_dir")
        with pytest.raises(ValueError, match="cannot restore the original order"):
            load_cifar10("/nonexistent/data_dir", train_size=6)  # mock ids are random text
    assert images.shape == (12, 32, 32, 3) and images.dtype == np.uint8
    assert labels.shape == (12,) and labels.min() >= 0 and labels.max() < 10
