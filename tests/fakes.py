"""Fake datasets and weights shared by the tests: tiny, seeded, offline.

TFDS and PIL are imported inside the functions that need them, so a test
module importing this one is not skipped where they are missing.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import os
from collections.abc import Iterator
from unittest import mock

import numpy as np

N_TRAIN, N_TEST = 30, 10
"""Images in the fake CIFAR-10 train and test splits."""
CELEBA_N = 80
"""Mock ``celeb_a`` examples per split (TFDS's mock gives every split the same ones)."""


def fake_images(n: int, seed: int) -> np.ndarray:
    """``n`` uint8 32x32x3 images, the fake CIFAR-10 content of one split: noise around
    a colour of the image's class (:func:`fake_labels`), so that a network learns them."""
    noise = np.random.default_rng(seed).integers(0, 128, (n, 32, 32, 3))
    colour = fake_labels(n)[:, None] * np.array([37, 73, 109]) % 128
    return (noise + colour[:, None, None, :]).astype(np.uint8)


def fake_labels(n: int) -> np.ndarray:
    """The fake CIFAR-10 labels of a split of ``n`` images, in original order."""
    return (np.arange(n) * 7) % 10


def expected_cifar(images: np.ndarray) -> np.ndarray:
    """uint8 images normalised the way ``load_cifar10`` does."""
    from lazy_hasty.data.tfds_sources import (  # pylint: disable=import-outside-toplevel
        CIFAR10_MEAN,
        CIFAR10_STD,
    )
    return (images / 255.0 - np.array(CIFAR10_MEAN)) / np.array(CIFAR10_STD)


@functools.cache
def _fake_cifar10_builder() -> type:
    import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
    from PIL import Image  # pylint: disable=import-outside-toplevel

    class FakeCifar10(tfds.core.GeneratorBasedBuilder, skip_registration=True):
        """Same name, version and features as TFDS's cifar10, with tiny generated content."""

        name = "cifar10"
        VERSION = tfds.core.Version("3.0.2")

        def _info(self):
            return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
                "id": tfds.features.Text(),
                "image": tfds.features.Image(shape=(32, 32, 3)),
                "label": tfds.features.ClassLabel(num_classes=10),
            }))

        def _split_generators(self, dl_manager):
            del dl_manager
            return {"train": self._generate_examples("train_", N_TRAIN, 0),
                    "test": self._generate_examples("test_", N_TEST, 1)}

        def _generate_examples(self, prefix, n, seed):
            # PIL images are encoded with PIL: no TensorFlow needed to write.
            for i, (image, label) in enumerate(zip(fake_images(n, seed), fake_labels(n))):
                yield i, {"id": f"{prefix}{i:05d}", "image": Image.fromarray(image),
                          "label": int(label)}

    return FakeCifar10


def prepare_fake_cifar10(data_dir: str | os.PathLike) -> str:
    """Writes a real-format (array_record) ``cifar10`` of fake images to ``data_dir``.

    Train: ``fake_images(N_TRAIN, 0)``, test: ``fake_images(N_TEST, 1)``, with
    ``fake_labels`` and ids ``train_00000``...; TFDS shuffles them on write.
    """
    builder = _fake_cifar10_builder()(data_dir=str(data_dir), file_format="array_record")
    builder.download_and_prepare()
    return str(data_dir)


def mock_cifar10_source(self, split, **kwargs) -> list[dict]:
    """``as_data_source`` stand-in: shuffled fake CIFAR-10 examples with real-looking ids."""
    del self, kwargs
    n, seed = (N_TRAIN, 0) if split == "train" else (N_TEST, 1)
    images, labels = fake_images(n, seed), fake_labels(n)
    order = np.random.default_rng(5).permutation(n)
    return [{"id": f"{split}_{i:05d}".encode(), "image": images[i], "label": labels[i]}
            for i in order]


def fixed_mock_getitems(record_keys, generator, serialized=False) -> list:
    """TFDS 4.9.10's mock ``_getitems`` without ``self``.

    The mock sets ``__getitems__`` on a MagicMock instance (not a supported magic
    method), so it is called without ``self`` and fails; this version takes none.
    """
    assert not serialized
    return [generator[key] for key in record_keys]


@contextlib.contextmanager
def mock_tfds(num_examples: int = CELEBA_N, **kwargs) -> Iterator[None]:
    """``tfds.testing.mock_data`` (random examples from the real features) with batch reads fixed.

    ``kwargs`` go to ``mock_data`` (e.g. ``as_data_source_fn``).
    """
    import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
    # A lazily loaded submodule: import it explicitly so the patch works in any test order.
    from tensorflow_datasets.testing import mocking  # pylint: disable=import-outside-toplevel

    with mock.patch.object(mocking, "_getitems", fixed_mock_getitems), tfds.testing.mock_data(
            num_examples=num_examples, policy=tfds.testing.MockPolicy.USE_CODE, **kwargs):
        yield


WATERBIRDS_COUNTS: dict[tuple[int, int, int], int] = {
    (0, 0, 0): 20, (0, 0, 1): 6, (0, 1, 0): 4, (0, 1, 1): 10,
    (1, 0, 0): 2, (1, 0, 1): 2, (1, 1, 0): 2, (1, 1, 1): 2,
    (2, 0, 0): 6, (2, 0, 1): 6, (2, 1, 0): 6, (2, 1, 1): 6,
}
"""(split, y, place) -> count of the miniature release: 40 train (only 4 waterbirds on
land), 8 val, 24 test."""
WATERBIRDS_GRAY_ROW = 5
"""The metadata row saved as a greyscale ("L") image: the loader converts it to RGB."""


def _waterbirds_rows() -> list[dict]:
    triples = [key for key, n in WATERBIRDS_COUNTS.items() for _ in range(n)]
    order = np.random.default_rng(3).permutation(len(triples))  # mix splits like the release
    rows = []
    for row, t in enumerate(order):
        split, y, place = triples[t]
        folder = "001.Albatross" if y else "002.Sparrow"
        rows.append({"img_id": row + 1, "img_filename": f"{folder}/bird_{row:03d}.png", "y": y,
                     "split": split, "place": place, "place_filename": "/x/y.jpg"})
    return rows


def write_waterbirds_release(root: str | os.PathLike, rows: list[dict] | None = None) -> list[dict]:
    """A miniature Waterbirds release: metadata.csv and constant-colour images of varied sizes.

    ``rows`` (default: :data:`WATERBIRDS_COUNTS`, mixed) are the metadata rows.
    Row ``r``'s image has colour ``(r, 255 - r, 37 r mod 256)`` (greyscale ``r`` for
    :data:`WATERBIRDS_GRAY_ROW`), so the red channel names the row.
    """
    from PIL import Image  # pylint: disable=import-outside-toplevel

    rows = _waterbirds_rows() if rows is None else rows
    root = os.fspath(root)
    for row, meta in enumerate(rows):
        path = os.path.join(root, meta["img_filename"])
        os.makedirs(os.path.dirname(path), exist_ok=True)
        size = (40 + row % 3 * 5, 36 + row % 2 * 8)  # (width, height), not square
        if row == WATERBIRDS_GRAY_ROW:
            Image.new("L", size, row).save(path)
        else:
            Image.new("RGB", size, (row, 255 - row, (row * 37) % 256)).save(path)
    with open(os.path.join(root, "metadata.csv"), "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return rows


RESNET18_WIDTHS = (64, 128, 256, 512)


def _bn(rs, prefix, c):
    return {
        f"{prefix}.weight": rs.uniform(0.5, 1.5, c),
        f"{prefix}.bias": rs.normal(0.0, 0.1, c),
        f"{prefix}.running_mean": rs.normal(0.0, 0.2, c),
        # small variances in some channels make the eps value matter
        f"{prefix}.running_var": rs.uniform(0.05, 2.0, c),
        f"{prefix}.num_batches_tracked": np.array(1234, np.int64),
    }


def _conv(rs, key, o, i, k):
    return {key: rs.normal(0.0, 1.0 / np.sqrt(i * k * k), (o, i, k, k))}


def torchvision_resnet18_state(seed: int = 0, num_classes: int = 1000) -> dict[str, np.ndarray]:
    """torchvision.models.resnet18().state_dict() key names and shapes, random values."""
    rs = np.random.RandomState(seed)
    sd = {}
    sd |= _conv(rs, "conv1.weight", 64, 3, 7)
    sd |= _bn(rs, "bn1", 64)
    cin = 64
    for i, c in enumerate(RESNET18_WIDTHS, start=1):
        for j in range(2):
            p = f"layer{i}.{j}"
            sd |= _conv(rs, f"{p}.conv1.weight", c, cin if j == 0 else c, 3)
            sd |= _bn(rs, f"{p}.bn1", c)
            sd |= _conv(rs, f"{p}.conv2.weight", c, c, 3)
            sd |= _bn(rs, f"{p}.bn2", c)
            if j == 0 and i > 1:
                sd |= _conv(rs, f"{p}.downsample.0.weight", c, cin, 1)
                sd |= _bn(rs, f"{p}.downsample.1", c)
        cin = c
    sd["fc.weight"] = rs.uniform(-1, 1, (num_classes, 512)) / np.sqrt(512)
    sd["fc.bias"] = rs.uniform(-1, 1, num_classes) / np.sqrt(512)
    # torch weights are float32; float32 -> float64 is then exact for the reference
    return {k: (v.astype(np.float32) if v.dtype.kind == "f" else v) for k, v in sd.items()}
