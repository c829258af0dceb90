"""Image datasets from TFDS without TensorFlow, through random-access data sources.

``tfds.data_source`` reads datasets prepared as ``array_record`` files with
numpy and PIL only. It never downloads here (``download=False``): a dataset
missing from ``data_dir`` (or prepared in the default, TensorFlow-only
``tfrecord`` format, or with missing or corrupt files) raises
:class:`DatasetNotPreparedError` saying how to prepare it elsewhere; an unknown
dataset, split or feature raises ValueError naming what there is.

TFDS shuffles examples when it writes them, so a split's TFDS order is not the
dataset's original order. CIFAR ``id`` features (``"train_01234"``) keep the
original index, and :func:`load_cifar10` restores the original order, the one
of the published C-scores and of the paper's ``train[:40000]``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from lazy_hasty.data.splits import Dataset, Split

CIFAR10_MEAN: tuple[float, float, float] = (0.4914, 0.4822, 0.4465)
CIFAR10_STD: tuple[float, float, float] = (0.2470, 0.2435, 0.2616)
CIFAR10_TRAIN_SIZE: int = 40000
"""The paper's CIFAR-10 training set is ``train[:40000]``; ``train[40000:]`` is held out."""


class DatasetNotPreparedError(FileNotFoundError):
    """A TFDS dataset is not prepared (as readable array_record files) in the given data_dir."""


def _import_tfds() -> Any:
    try:
        import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
    except ImportError as err:
        raise ImportError(
            "TFDS datasets need tensorflow-datasets: pip install 'lazy-hasty[tfds]'."
        ) from err
    return tfds


def _where(data_dir: str | os.PathLike | None) -> str:
    return str(data_dir) if data_dir is not None else "the default TFDS data_dir"


def _how_to_prepare(name: str, data_dir: str | os.PathLike | None) -> str:
    target = str(data_dir) if data_dir is not None else "DATA_DIR"
    return (
        "Download it on a machine with network and TensorFlow with "
        f"`tfds build {name} --data_dir={target} --file_format=array_record` (or `python -c "
        f"'import tensorflow_datasets as tfds; tfds.builder(\"{name}\", data_dir=\"{target}\", "
        "file_format=\"array_record\").download_and_prepare()'`) and copy the directory "
        f"{os.path.join(target, name)} here, or pass --config.data_dir=<the folder holding it>."
    )


def _not_prepared_message(name: str, data_dir: str | os.PathLike | None) -> str:
    return (
        f"{name} is not prepared in {_where(data_dir)} as array_record files (the format TFDS "
        "reads without TensorFlow). " + _how_to_prepare(name, data_dir)
    )


@dataclasses.dataclass(frozen=True)
class TfdsSplit:
    """One split of a prepared TFDS dataset: its random-access source and where it came from."""

    name: str
    split: str
    data_dir: str | os.PathLike | None
    source: Sequence[Any]

    def __len__(self) -> int:
        return len(self.source)

    def read(self, keys: Sequence[int] | np.ndarray) -> list[Any]:
        """Examples at ``keys``, in one batch read when the source supports it.

        Raises DatasetNotPreparedError when the array_record files are missing or corrupt.
        """
        keys = [int(k) for k in keys]
        getitems = getattr(self.source, "__getitems__", None)
        try:
            return [self.source[k] for k in keys] if getitems is None else list(getitems(keys))
        except (RuntimeError, OSError) as err:  # array_record: "open() failed"; bad image bytes
            raise DatasetNotPreparedError(
                f"cannot read {self.name}[{self.split}] from {_where(self.data_dir)}: its "
                f"files are missing or corrupt ({err}). Prepare it again. "
                + _how_to_prepare(self.name, self.data_dir)
            ) from err


def open_tfds_split(
    name: str, split: str, data_dir: str | os.PathLike | None, hint: str = ""
) -> TfdsSplit:
    """The random-access TFDS data source of one split, never downloading.

    ``hint`` is appended to the not-prepared message (e.g. how to fetch files by hand).

    Raises:
      DatasetNotPreparedError: the dataset is not in ``data_dir`` as array_record
        files. (TFDS itself raises ``NotImplementedError`` "Random access data
        source for file format tfrecord is not supported" then, because a
        missing dataset defaults to the tfrecord format.)
      ValueError: TFDS knows no dataset ``name``, or the prepared dataset has no
        split ``split``.
    """
    tfds = _import_tfds()
    try:
        source = tfds.data_source(name, split=split, data_dir=data_dir, download=False)
    except NotImplementedError as err:
        raise DatasetNotPreparedError(_not_prepared_message(name, data_dir) + hint) from err
    except tfds.core.DatasetNotFoundError as err:
        raise ValueError(
            f"TFDS has no dataset {name!r}: check the name (e.g. 'cifar10', 'celeb_a')."
        ) from err
    except ValueError as err:  # e.g. "Unknown split 'x'. Should be one of ['train', 'test']."
        raise ValueError(
            f"cannot open split {split!r} of {name} in {_where(data_dir)}: {err} Ask for a "
            f"prepared split, or prepare {name} again with all its splits."
        ) from err
    return TfdsSplit(name, split, data_dir, source)


def feature(example: Mapping[str, Any], path: str, what: str) -> Any:
    """``example[a][b]`` for ``path`` ``"a/b"``: a missing feature raises ValueError, not KeyError.

    ``what`` names the examples in the message (e.g. ``"celeb_a[test]"``).
    """
    value: Any = example
    for part in path.split("/"):
        if not isinstance(value, Mapping) or part not in value:
            have = sorted(value) if isinstance(value, Mapping) else type(value).__name__
            raise ValueError(
                f"{what} examples have no feature {path!r} ({part!r} missing; it has {have}): "
                "prepare the dataset again with `tfds build`, or ask for an existing feature."
            )
        value = value[part]
    return value


def read_tfds_examples(
    name: str,
    split: str,
    data_dir: str | os.PathLike | None,
    keys: Sequence[str],
    indices: Sequence[int] | np.ndarray | None = None,
    batch_size: int = 1024,
) -> dict[str, np.ndarray]:
    """Features ``keys`` of a TFDS split, stacked into numpy arrays, in TFDS order.

    ``indices`` (default: all) selects records of the split, e.g. a subsample of
    a large dataset. Records are read ``batch_size`` at a time.
    """
    source = open_tfds_split(name, split, data_dir)
    indices = np.arange(len(source)) if indices is None else np.asarray(indices, dtype=np.int64)
    columns: dict[str, list[Any]] = {key: [] for key in keys}
    for start in range(0, len(indices), batch_size):
        for example in source.read(indices[start:start + batch_size]):
            for key in keys:
                columns[key].append(feature(example, key, f"{name}[{split}]"))
    return {key: np.stack(values) if values else np.empty((0,)) for key, values in columns.items()}


def load_tfds_images(
    name: str,
    split: str,
    data_dir: str | os.PathLike | None,
    image_key: str = "image",
    label_key: str = "label",
    indices: Sequence[int] | np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``(images, labels)`` of a TFDS split in TFDS order: uint8 NHWC and int64 ``(N,)``."""
    columns = read_tfds_examples(name, split, data_dir, (image_key, label_key), indices)
    return columns[image_key], columns[label_key].astype(np.int64)


def original_order(ids: np.ndarray, prefix: str) -> np.ndarray:
    """Permutation putting examples with ids ``f"{prefix}{index:05d}"`` in index order.

    Raises ValueError unless the ids are exactly ``prefix0 .. prefix(N-1)``.
    """
    texts = [i.decode("utf-8") if isinstance(i, bytes) else str(i) for i in ids]
    try:
        index = np.array([int(t[len(prefix):]) if t.startswith(prefix) else -1 for t in texts])
    except ValueError:
        index = np.full(len(texts), -1)
    if not np.array_equal(np.sort(index), np.arange(len(texts))):
        raise ValueError(
            f"example ids are not {prefix}00000 .. {prefix}{len(texts) - 1:05d} (first: "
            f"{texts[:3]}); cannot restore the original order. Load the full split."
        )
    return np.argsort(index)


def normalise_images(
    images: np.ndarray, mean: Sequence[float], std: Sequence[float]
) -> np.ndarray:
    """uint8 NHWC images to float32 ``(x / 255 - mean) / std`` per channel."""
    mean_arr = np.asarray(mean, dtype=np.float32)
    std_arr = np.asarray(std, dtype=np.float32)
    return (images.astype(np.float32) / np.float32(255.0) - mean_arr) / std_arr


def _load_in_original_order(
    name: str, split: str, data_dir: str | os.PathLike | None
) -> tuple[np.ndarray, np.ndarray]:
    columns = read_tfds_examples(name, split, data_dir, ("image", "label", "id"))
    order = original_order(columns["id"], prefix=f"{split}_")
    return columns["image"][order], columns["label"][order].astype(np.int32)


def load_cifar10(
    data_dir: str | os.PathLike | None, train_size: int = CIFAR10_TRAIN_SIZE
) -> Dataset:
    """CIFAR-10 as in the paper: train ``[:train_size]``, heldout the rest, test.

    Both TFDS splits are put back in the original CIFAR-10 order (the order of
    the published C-scores), so ``train`` then ``heldout`` is the original
    training set: see :func:`original_train_labels`. Images are float32 NHWC
    normalised per channel with :data:`CIFAR10_MEAN` / :data:`CIFAR10_STD`;
    labels are int32.
    """
    train_images, train_labels = _load_in_original_order("cifar10", "train", data_dir)
    if not 0 < train_size <= len(train_labels):
        raise ValueError(
            f"train_size must be in (0, {len(train_labels)}] (the CIFAR-10 training set); got "
            f"{train_size}."
        )
    test_images, test_labels = _load_in_original_order("cifar10", "test", data_dir)
    x_train = normalise_images(train_images, CIFAR10_MEAN, CIFAR10_STD)
    splits = {
        "train": Split(x=x_train[:train_size], y=train_labels[:train_size]),
        "heldout": Split(x=x_train[train_size:], y=train_labels[train_size:]),
        "test": Split(x=normalise_images(test_images, CIFAR10_MEAN, CIFAR10_STD), y=test_labels),
    }
    return Dataset(name="cifar10", num_classes=10, splits=splits)


def original_train_labels(dataset: Dataset) -> np.ndarray:
    """Labels of the whole original training set (``train`` then ``heldout``).

    Compare them with the published C-score labels *before* corrupting labels.
    """
    return np.concatenate([dataset.splits["train"].y, dataset.splits["heldout"].y])
