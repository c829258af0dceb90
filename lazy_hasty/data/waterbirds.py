"""Waterbirds (Sagawa et al., 2020) from the standard release folder, as in Section 5.

The release (``waterbird_complete95_forest2water2``) is a folder with
``metadata.csv`` (columns ``img_filename, y, split, place``, among others) and
the images at ``<root>/<img_filename>``. ``split`` is 0 (train, 4,795
examples), 1 (validation) or 2 (test); ``y`` is 0 for landbirds and 1 for
waterbirds; ``place`` is 0 for land and 1 for water backgrounds.

Preprocessing follows the Waterbirds reference code (Sagawa et al.'s
``group_DRO``): resize to ``resize`` x ``resize`` (both sides, like
``transforms.Resize((256, 256))``, not the shorter side) then center-crop
``image_size``. Images stay uint8; normalise with
:data:`~lazy_hasty.data.spurious.IMAGENET_MEAN` / ``IMAGENET_STD``.

The paper extracts "from the training set" a balanced set of 180 examples of
each (bird, background) combination, but the real training split has only 56
waterbirds on land (and 184 landbirds on water): ``balanced_train`` therefore
takes ``min(balanced_per_group, smallest training combination)`` per
combination unless ``balanced_train_per_group`` asks for an exact number.
"""

from __future__ import annotations

import concurrent.futures
import csv
import os
from collections.abc import Callable

import numpy as np
from PIL import Image

from lazy_hasty.data import subsets
from lazy_hasty.data.spurious import SpuriousData, center_crop_resize
from lazy_hasty.rng import numpy_rng

WATERBIRDS_COLUMNS: tuple[str, ...] = ("img_filename", "y", "split", "place")
"""The metadata.csv columns the loader needs."""
TRAIN_SPLIT, VAL_SPLIT, TEST_SPLIT = 0, 1, 2
COMBINATION_NAMES: dict[tuple[int, int], str] = {
    (0, 0): "landbirds on land",
    (0, 1): "landbirds on water",
    (1, 0): "waterbirds on land",
    (1, 1): "waterbirds on water",
}
"""(y, place) -> name, for messages."""


def read_metadata(root: str | os.PathLike) -> dict[str, np.ndarray]:
    """The needed columns of ``<root>/metadata.csv``: ``img_filename`` (str) and int64 the rest.

    Raises:
      FileNotFoundError: ``root`` or ``metadata.csv`` is missing.
      ValueError: columns are missing (listed) or values are not 0/1 (0/1/2 for split).
    """
    root = os.fspath(root)
    if not os.path.isdir(root):
        raise FileNotFoundError(
            f"Waterbirds root folder {root} does not exist. Pass the folder of the standard "
            "release (waterbird_complete95_forest2water2, containing metadata.csv and the "
            "image folders)."
        )
    path = os.path.join(root, "metadata.csv")
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"Waterbirds metadata {path} is missing. Supply the release's metadata.csv (columns "
            f"{', '.join(WATERBIRDS_COLUMNS)}) in {root}."
        )
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        header = [name.strip() for name in (reader.fieldnames or [])]
        missing = [name for name in WATERBIRDS_COLUMNS if name not in header]
        if missing:
            raise ValueError(
                f"Waterbirds metadata {path} lacks columns {missing} (it has {header}); supply "
                f"a metadata.csv with columns {', '.join(WATERBIRDS_COLUMNS)}."
            )
        rows = [{key.strip(): value for key, value in row.items() if key} for row in reader]
    columns: dict[str, np.ndarray] = {
        "img_filename": np.array([row["img_filename"].strip() for row in rows], dtype=object)
    }
    for name, allowed in (("y", (0, 1)), ("split", (0, 1, 2)), ("place", (0, 1))):
        try:
            values = np.array([int(float(row[name])) for row in rows], dtype=np.int64)
        except (TypeError, ValueError) as err:
            raise ValueError(
                f"Waterbirds metadata {path}: column {name!r} must hold integers {allowed}."
            ) from err
        if not np.isin(values, allowed).all():
            raise ValueError(
                f"Waterbirds metadata {path}: column {name!r} must hold values in {allowed}; "
                f"got {sorted(set(values.tolist()) - set(allowed))}."
            )
        columns[name] = values
    return columns


def _load_image(path: str, resize: int, image_size: int) -> np.ndarray:
    with Image.open(path) as image:
        array = np.asarray(image.convert("RGB"))
    return center_crop_resize(array, crop=None, resize_to=resize, then_crop=image_size)


def load_images(
    root: str | os.PathLike, filenames: np.ndarray, resize: int, image_size: int,
    num_threads: int = 8,
) -> np.ndarray:
    """uint8 ``(N, image_size, image_size, 3)``: each file resized then center-cropped.

    Raises:
      FileNotFoundError: naming the first missing image (checked before decoding any).
    """
    root = os.fspath(root)
    paths = [os.path.join(root, str(name)) for name in filenames]
    for name, path in zip(filenames, paths):
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"Waterbirds image {name} (listed in metadata.csv) is missing: no file {path}. "
                f"Supply the full release under {root}."
            )
    out = np.empty((len(paths), image_size, image_size, 3), dtype=np.uint8)
    if not paths:
        return out
    workers = max(1, min(num_threads, len(paths), os.cpu_count() or 1))
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        for i, image in enumerate(pool.map(lambda p: _load_image(p, resize, image_size), paths)):
            out[i] = image
    return out


def _split_rows(meta: dict[str, np.ndarray], split: int, name: str) -> np.ndarray:
    rows = np.flatnonzero(meta["split"] == split)
    if rows.size == 0:
        raise ValueError(f"Waterbirds metadata lists no {name} examples; supply the full "
                         "metadata.csv.")
    return rows


def _balanced_rows(
    meta: dict[str, np.ndarray], rows: np.ndarray, per_group: int, seed: int, name: str,
    at_most: bool = False,
) -> np.ndarray:
    """Positions in ``rows`` of the balanced set ``name``: ``per_group`` of each (y, place).

    ``at_most`` caps ``per_group`` at the smallest combination instead of raising.
    """
    y, place = meta["y"][rows], meta["place"][rows]
    if at_most:
        per_group = max(1, min(per_group, *(int(np.sum((y == label) & (place == p)))
                                            for label, p in COMBINATION_NAMES)))
    if per_group < 1:
        raise ValueError(f"{name}_per_group must be a positive int; got {per_group}.")
    where = f"the Waterbirds {'training' if name == 'balanced_train' else 'test'} split"
    order = numpy_rng(seed, "balanced", name).permutation(rows.size)
    return subsets.balanced_indices(y, place, order, per_group, where, COMBINATION_NAMES)


def load_waterbirds(
    root: str | os.PathLike,
    *,
    balanced_per_group: int = 180,
    seed: int,
    resize: int = 256,
    image_size: int = 224,
    test_size: int = 0,
    balanced_train_per_group: int | None = None,
    num_threads: int = 8,
) -> SpuriousData:
    """Waterbirds as in the paper: train (split 0), balanced train / test sets, test (split 2).

    Only the returned images are decoded, each once. ``test`` is already the
    evaluated ``test_size`` subset of split 2 (0: all of it), the examples
    ``groups.all_group(n_test, test_size, seed, "test")`` would pick from the whole split.

    Args:
      root: the release folder (``metadata.csv`` and the images).
      balanced_per_group: examples of each (y, place) combination in
        ``balanced_test`` (drawn from the whole test split, whatever
        ``test_size``); 180 in the paper.
      seed: seeds the balanced sets and the test subset.
      resize, image_size: resize to ``resize`` squared, center-crop ``image_size``.
      test_size: test examples evaluated (0: all).
      balanced_train_per_group: examples of each combination in
        ``balanced_train`` (drawn from ``train``); None takes
        ``min(balanced_per_group, smallest training combination)`` (56 on the
        real release). An explicit number larger than a combination raises.
      num_threads: threads decoding images.

    Returns :class:`SpuriousData` ``"waterbirds"`` (labels: 1 = waterbird), groups
    ``"same"`` (bird and background agree: easy) and ``"opposite"``.

    Raises:
      FileNotFoundError: missing root folder, metadata.csv or image (named).
      ValueError: bad sizes, metadata with missing columns (listed) or bad
        values; a combination with fewer examples than asked for.
    """
    subsets.check_sizes(balanced_per_group, test_size)
    meta = read_metadata(root)
    train_rows = _split_rows(meta, TRAIN_SPLIT, "train (split 0)")
    test_rows = _split_rows(meta, TEST_SPLIT, "test (split 2)")
    chosen_train = {"train": np.arange(train_rows.size), "balanced_train": _balanced_rows(
        meta, train_rows, balanced_per_group if balanced_train_per_group is None else
        balanced_train_per_group, seed, "balanced_train", balanced_train_per_group is None)}
    chosen_test = {"test": subsets.evaluated_test_indices(test_rows.size, test_size, seed),
                   "balanced_test": _balanced_rows(meta, test_rows, balanced_per_group, seed,
                                                   "balanced_test")}

    def decode(rows: np.ndarray) -> Callable[[np.ndarray], subsets.Arrays]:
        return lambda pos: (load_images(root, meta["img_filename"][rows[pos]], resize,
                                        image_size, num_threads),
                            meta["y"][rows[pos]], meta["place"][rows[pos]])

    parts = {**subsets.decode_once(chosen_train, decode(train_rows)),
             **subsets.decode_once(chosen_test, decode(test_rows))}
    return subsets.assemble("waterbirds", {name: (x, y, y == place)
                                           for name, (x, y, place) in parts.items()},
                            ("same", "opposite"), hard="opposite")
