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
  * ``test``: the TFDS test split, or the seeded ``test_size`` subset of it
    the driver evaluates (the examples ``groups.all_group`` draws).

Groups on every split: ``"men"`` (hard: blond is rare among men) and
``"women"`` (easy). Preprocessing as the authors: center crop 178x178 (the
218x178 aligned faces) then resize to ``image_size`` (bilinear), uint8.

Only the returned images are cropped and resized: the indices of every split
are chosen first, from the attributes, then those records are read again and
preprocessed a batch at a time (TFDS decodes the JPEG of every record read).
The balanced sets are filled by scanning a split in a seeded random order until
each combination is full (blond men are ~1% of the train split), so most of the
~140k remaining training records are not read at all.
"""

from __future__ import annotations

import functools
import os

import numpy as np

from lazy_hasty.data import subsets
from lazy_hasty.data.spurious import SpuriousData, center_crop_resize
from lazy_hasty.data.tfds_sources import TfdsSplit, feature, open_tfds_split
from lazy_hasty.rng import numpy_rng

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


def _blond_male(example: dict, split: TfdsSplit) -> tuple[int, int]:
    what = f"{CELEBA_NAME}[{split.split}]"
    return (int(bool(feature(example, f"attributes/{LABEL_ATTRIBUTE}", what))),
            int(bool(feature(example, f"attributes/{SPURIOUS_ATTRIBUTE}", what))))


def _decode(
    split: TfdsSplit, indices: np.ndarray, crop: int | None, image_size: int, batch_size: int
) -> subsets.Arrays:
    """uint8 images (cropped and resized), int32 blond, int32 male of ``indices``."""
    x = np.empty((len(indices), image_size, image_size, 3), dtype=np.uint8)
    labels = np.empty((len(indices), 2), dtype=np.int32)
    for start in range(0, len(indices), batch_size):
        for i, example in enumerate(split.read(indices[start:start + batch_size]), start):
            image = feature(example, "image", f"{CELEBA_NAME}[{split.split}]")
            x[i] = center_crop_resize(np.asarray(image), crop, image_size)
            labels[i] = _blond_male(example, split)
    return x, labels[:, 0], labels[:, 1]


def _scan_balanced(
    split: TfdsSplit, order: np.ndarray, per_group: int, batch_size: int, where: str
) -> np.ndarray:
    """Sorted indices of the first ``per_group`` records of each (blond, male) in ``order``.

    Reads labels a batch at a time (images are not kept) and stops once every
    combination is full: blond men are ~1% of CelebA.
    """
    labels = np.empty((len(order), 2), dtype=np.int64)
    read = 0
    for start in range(0, len(order), batch_size):
        for example in split.read(order[start:start + batch_size]):
            labels[read] = _blond_male(example, split)
            read += 1
        if np.bincount(labels[:read] @ (2, 1), minlength=4).min() >= per_group:
            break
    positions = subsets.balanced_indices(labels[:read, 0], labels[:read, 1], np.arange(read),
                                         per_group, where, COMBINATION_NAMES)
    return np.sort(order[positions])


def load_celeba(
    data_dir: str | os.PathLike | None,
    *,
    train_size: int = 20000,
    balanced_per_group: int = 180,
    seed: int,
    crop: int | None = 178,
    image_size: int = 224,
    test_size: int = 0,
    batch_size: int = 256,
) -> SpuriousData:
    """CelebA blond vs not, spurious attribute male: see the module docstring for the splits.

    Only the returned images are cropped and resized. ``test`` is already the
    evaluated subset: the examples ``groups.all_group(n_test, test_size, seed, "test")``
    would pick from the whole TFDS test split.

    Args:
      data_dir: TFDS data_dir holding ``celeb_a`` as array_record files.
      train_size: size of the seeded random training subset of TFDS train.
      balanced_per_group: examples of each (blond, male) combination in
        ``balanced_train`` and ``balanced_test`` (180 in the paper).
      seed: seeds the training subset, the balanced sets and the test subset.
      crop: center crop (square) before resizing; None resizes the whole image.
      image_size: side of the resized (square) uint8 images.
      test_size: test examples evaluated (0: all); ``balanced_test`` does not
        depend on it.
      batch_size: records read per batch.

    Raises:
      DatasetNotPreparedError: ``celeb_a`` is not prepared (readably) in ``data_dir``.
      ValueError: bad sizes, a missing feature, or too few examples of a combination (named).
    """
    subsets.check_sizes(balanced_per_group, test_size)
    train = open_tfds_split(CELEBA_NAME, "train", data_dir, hint=_MANUAL_NOTE)
    test = open_tfds_split(CELEBA_NAME, "test", data_dir, hint=_MANUAL_NOTE)
    if not 0 < train_size < len(train):
        raise ValueError(
            f"train_size must be in (0, {len(train)}) (the CelebA training split, leaving "
            f"examples for balanced_train); got {train_size}."
        )
    train_idx = np.sort(numpy_rng(seed, "subset", "train").choice(len(train), train_size,
                                                                  replace=False))
    rest = np.setdiff1d(np.arange(len(train)), train_idx)
    rest_order = rest[numpy_rng(seed, "balanced", "balanced_train").permutation(rest.size)]
    test_order = numpy_rng(seed, "balanced", "balanced_test").permutation(len(test))
    scan = functools.partial(_scan_balanced, per_group=balanced_per_group, batch_size=batch_size)
    chosen_train = {"train": train_idx, "balanced_train": scan(
        train, rest_order, where="the CelebA training split (outside the training subset)")}
    chosen_test = {"test": subsets.evaluated_test_indices(len(test), test_size, seed),
                   "balanced_test": scan(test, test_order, where="the CelebA test split")}
    decode = functools.partial(_decode, crop=crop, image_size=image_size, batch_size=batch_size)
    parts = {**subsets.decode_once(chosen_train, functools.partial(decode, train)),
             **subsets.decode_once(chosen_test, functools.partial(decode, test))}
    return subsets.assemble(CELEBA_NAME, {name: (x, blond, male == 1)
                                          for name, (x, blond, male) in parts.items()},
                            ("men", "women"), hard="men")
