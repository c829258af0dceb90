"""CelebA blond-hair classification (spurious attribute: male) from TFDS, as in Section 5.

Read through the TFDS ``celeb_a`` data source (array_record, no TensorFlow,
never downloading). Label: ``attributes["Blond_Hair"]``; spurious attribute:
``attributes["Male"]`` (blond is 24% of women, 2% of men).

Splits:
  * ``train``: a seeded random ``train_size`` subset (20,000 in the paper) of
    the TFDS train split, in TFDS order.
  * ``balanced_train``: ``balanced_per_group`` examples of each (blond, male)
    combination from the *rest* of the TFDS train split (disjoint from
    ``train``), for tracking the training dynamics on a balanced set.
  * ``balanced_test``: ``balanced_per_group`` of each combination from the
    TFDS test split. The paper's 180 is the number of blond men in the test
    split, so the default takes all of them.
  * ``test``: the TFDS test split (or a seeded ``test_size`` subset of it).

Groups on every split: ``"men"`` (hard: blond is rare among men) and
``"women"`` (easy). Preprocessing as the authors: center crop 178x178 (the
218x178 aligned faces) then resize to ``image_size`` (bilinear), uint8.

Records are read and preprocessed a batch at a time; the balanced training set
is filled by scanning the rest of the train split in a seeded random order
until each combination is full (blond men are ~1% of it), so the ~140k
remaining training images are not all decoded.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from lazy_hasty.data.splits import Split
from lazy_hasty.data.spurious import (
    SpuriousData,
    binary_groups,
    center_crop_resize,
    first_per_group,
    named_rng,
    seeded_subset,
    too_few_message,
)
from lazy_hasty.data.tfds_sources import DatasetNotPreparedError, open_tfds_source

CELEBA_NAME: str = "celeb_a"
LABEL_ATTRIBUTE: str = "Blond_Hair"
SPURIOUS_ATTRIBUTE: str = "Male"
COMBINATION_NAMES: dict[tuple[int, int], str] = {
    (0, 0): "non-blond women",
    (0, 1): "non-blond men",
    (1, 0): "blond women",
    (1, 1): "blond men",
}
"""(blond, male) -> name, for messages."""

_MANUAL_NOTE = (
    " CelebA's files come from Google Drive, which often refuses automated downloads (quota): "
    "if `tfds build celeb_a` fails to download them, fetch img_align_celeba.zip, "
    "list_eval_partition.txt, list_attr_celeba.txt, list_landmarks_align_celeba.txt and "
    "identity_CelebA.txt by hand (same names, see the CelebA homepage) into the TFDS manual "
    "dir <data_dir>/downloads/manual/ on the machine with network, then rerun the build there."
)


def _open(split: str, data_dir: str | os.PathLike | None) -> Sequence[Any]:
    try:
        return open_tfds_source(CELEBA_NAME, split, data_dir)
    except DatasetNotPreparedError as err:
        raise DatasetNotPreparedError(str(err) + _MANUAL_NOTE) from err


def _get_batch(source: Sequence[Any], keys: list[int]) -> Sequence[Any]:
    getitems = getattr(source, "__getitems__", None)
    return [source[k] for k in keys] if getitems is None else getitems(keys)


def _read(
    source: Sequence[Any], indices: np.ndarray, crop: int | None, image_size: int,
    batch_size: int,
):
    """Yields ``(index, image, blond, male)`` for ``indices`` in order, a batch at a time."""
    for start in range(0, len(indices), batch_size):
        chunk = [int(i) for i in indices[start:start + batch_size]]
        for index, example in zip(chunk, _get_batch(source, chunk)):
            attributes = example["attributes"]
            image = center_crop_resize(np.asarray(example["image"]), crop, image_size)
            yield (index, image, int(bool(attributes[LABEL_ATTRIBUTE])),
                   int(bool(attributes[SPURIOUS_ATTRIBUTE])))


def _read_all(
    source: Sequence[Any], indices: np.ndarray, crop: int | None, image_size: int,
    batch_size: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """uint8 images, int32 blond, int32 male of ``indices``."""
    x = np.empty((len(indices), image_size, image_size, 3), dtype=np.uint8)
    blond = np.empty(len(indices), dtype=np.int32)
    male = np.empty(len(indices), dtype=np.int32)
    for i, (_, image, b, m) in enumerate(_read(source, indices, crop, image_size, batch_size)):
        x[i], blond[i], male[i] = image, b, m
    return x, blond, male


def _scan_balanced(
    source: Sequence[Any], order: np.ndarray, per_group: int, crop: int | None,
    image_size: int, batch_size: int, where: str,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The first ``per_group`` records of each (blond, male) in ``order``, sorted by index.

    Reads ``order`` a batch at a time and stops once every combination is full:
    the same selection as :func:`~lazy_hasty.data.spurious.first_per_group`.
    """
    kept: dict[tuple[int, int], list[tuple[int, np.ndarray]]] = {c: [] for c in COMBINATION_NAMES}
    for start in range(0, len(order), batch_size):
        for index, image, b, m in _read(source, order[start:start + batch_size], crop,
                                        image_size, batch_size):
            if len(kept[(b, m)]) < per_group:
                kept[(b, m)].append((index, image))
        if all(len(v) == per_group for v in kept.values()):
            break
    message = too_few_message({c: len(v) for c, v in kept.items()}, per_group, where,
                              COMBINATION_NAMES)
    if message:
        raise ValueError(message)
    rows = sorted(((index, image, b, m) for (b, m), v in kept.items() for index, image in v),
                  key=lambda row: row[0])
    x = np.stack([row[1] for row in rows]).astype(np.uint8)
    return (x, np.array([row[2] for row in rows], dtype=np.int32),
            np.array([row[3] for row in rows], dtype=np.int32))


def load_celeba(
    data_dir: str | os.PathLike | None,
    *,
    train_size: int = 20000,
    balanced_per_group: int = 180,
    seed: int,
    crop: int | None = 178,
    image_size: int = 224,
    test_size: int | None = None,
    batch_size: int = 256,
) -> SpuriousData:
    """CelebA blond vs not, spurious attribute male: see the module docstring for the splits.

    Args:
      data_dir: TFDS data_dir holding ``celeb_a`` as array_record files.
      train_size: size of the seeded random training subset of TFDS train.
      balanced_per_group: examples of each (blond, male) combination in
        ``balanced_train`` and ``balanced_test`` (180 in the paper).
      seed: seeds the training subset, the balanced sets and the test subset.
      crop: center crop (square) before resizing; None resizes the whole image.
      image_size: side of the resized (square) uint8 images.
      test_size: ``test`` is a seeded random subset of this many TFDS test
        examples (None: all). ``balanced_test`` does not depend on it.
      batch_size: records read per batch.

    Raises:
      DatasetNotPreparedError: ``celeb_a`` is not prepared in ``data_dir``.
      ValueError: bad sizes, or too few examples of a combination (named).
    """
    if balanced_per_group < 1:
        raise ValueError(f"balanced_per_group must be a positive int; got {balanced_per_group}.")
    train_source = _open("train", data_dir)
    test_source = _open("test", data_dir)
    n_train, n_test = len(train_source), len(test_source)
    if not 0 < train_size < n_train:
        raise ValueError(
            f"train_size must be in (0, {n_train}) (the CelebA training split, leaving examples "
            f"for balanced_train); got {train_size}."
        )

    train_idx = seeded_subset(n_train, train_size, seed, "train")
    rest = np.setdiff1d(np.arange(n_train), train_idx)
    rest_order = rest[named_rng(seed, "balanced_train").permutation(rest.size)]
    test_order = named_rng(seed, "balanced_test").permutation(n_test)

    parts = {
        "train": _read_all(train_source, train_idx, crop, image_size, batch_size),
        "balanced_train": _scan_balanced(
            train_source, rest_order, balanced_per_group, crop, image_size, batch_size,
            "the CelebA training split (outside the training subset)"),
    }
    if test_size is None:
        x, blond, male = _read_all(test_source, np.arange(n_test), crop, image_size, batch_size)
        parts["test"] = (x, blond, male)
        positions, counts = first_per_group(blond, male, test_order, balanced_per_group)
        message = too_few_message(counts, balanced_per_group, "the CelebA test split",
                                  COMBINATION_NAMES)
        if message:
            raise ValueError(message)
        parts["balanced_test"] = (x[positions], blond[positions], male[positions])
    else:
        test_idx = seeded_subset(n_test, test_size, seed, "test")
        parts["test"] = _read_all(test_source, test_idx, crop, image_size, batch_size)
        parts["balanced_test"] = _scan_balanced(
            test_source, test_order, balanced_per_group, crop, image_size, batch_size,
            "the CelebA test split")

    names = ("train", "balanced_train", "balanced_test", "test")
    splits = {name: Split(x=parts[name][0], y=parts[name][1]) for name in names}
    groups = {name: binary_groups(parts[name][2] == 1, "men", "women") for name in names}
    return SpuriousData(name=CELEBA_NAME, num_classes=2, splits=splits, groups=groups,
                        easy="women", hard="men")
