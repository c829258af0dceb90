"""Shared pieces of the spurious-correlation datasets (CelebA, Waterbirds), Section 5.

Each dataset has a binary label and a binary spurious attribute (CelebA: blond
hair / male; Waterbirds: waterbird / water background). Besides the usual
train and test splits it carries *balanced* sets with the same number of
examples of each (label, attribute) combination, and groups of examples on
which the spurious feature helps (``easy``) or misleads (``hard``).

Images are kept as uint8 NHWC to save memory; models normalise them with
:data:`IMAGENET_MEAN` / :data:`IMAGENET_STD` (the ImageNet statistics of the
torchvision models the paper starts from).
"""

from __future__ import annotations

import dataclasses

import numpy as np
from PIL import Image

from lazy_hasty.data.splits import Split
from lazy_hasty.rng import numpy_rng

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

SPURIOUS_SPLIT_NAMES: tuple[str, ...] = ("train", "balanced_train", "balanced_test", "test")
"""The split names every :class:`SpuriousData` carries."""


@dataclasses.dataclass(frozen=True)
class SpuriousData:
    """A binary task with a spurious attribute, its balanced sets and its groups.

    Attributes:
      name: dataset name (``"celeb_a"``, ``"waterbirds"``).
      num_classes: 2.
      splits: ``"train"``, ``"balanced_train"``, ``"balanced_test"``, ``"test"``;
        ``x`` uint8 ``(N, H, W, 3)``, ``y`` int32 in {0, 1}.
      groups: split name -> group name -> sorted indices into that split
        (every example of the split is in exactly one group).
      easy: the group the spurious feature favours (e.g. ``"women"``, ``"same"``).
      hard: the other group (e.g. ``"men"``, ``"opposite"``).
    """

    name: str
    num_classes: int
    splits: dict[str, Split]
    groups: dict[str, dict[str, np.ndarray]]
    easy: str
    hard: str

    def __post_init__(self) -> None:
        missing = [name for name in SPURIOUS_SPLIT_NAMES if name not in self.splits]
        if missing:
            raise ValueError(
                f"SpuriousData {self.name!r} lacks splits {missing}; give it all of "
                f"{list(SPURIOUS_SPLIT_NAMES)}."
            )
        for split_name in self.splits:
            names = set(self.groups.get(split_name, {}))
            if names != {self.easy, self.hard}:
                raise ValueError(
                    f"SpuriousData {self.name!r}: split {split_name!r} needs groups "
                    f"{[self.easy, self.hard]}; got {sorted(names)}."
                )


COMBINATIONS: tuple[tuple[int, int], ...] = ((0, 0), (0, 1), (1, 0), (1, 1))
"""The (label, attribute) combinations, in the order balanced sets list them."""


def _check_binary(y: np.ndarray, attribute: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y).astype(np.int64)
    attribute = np.asarray(attribute).astype(np.int64)
    if y.ndim != 1 or y.shape != attribute.shape:
        raise ValueError(
            f"y and attribute must be 1-d arrays of one length; got {y.shape} and "
            f"{attribute.shape}."
        )
    if not (np.isin(y, (0, 1)).all() and np.isin(attribute, (0, 1)).all()):
        raise ValueError("y and attribute must be binary (0/1 or bool).")
    return y, attribute


def first_per_group(
    y: np.ndarray, attribute: np.ndarray, order: np.ndarray, per_group: int
) -> tuple[np.ndarray, dict[tuple[int, int], int]]:
    """Positions of the first ``per_group`` examples of each (label, attribute) in ``order``.

    Returns the selected positions (sorted) and the number found of each
    combination (at most ``per_group``). Taking the first ones in a random
    order is sampling without replacement within each combination.
    """
    y, attribute = _check_binary(y, attribute)
    combo = 2 * y + attribute
    taken = []
    counts = {}
    for label, attr in COMBINATIONS:
        members = order[combo[order] == 2 * label + attr][:per_group]
        counts[(label, attr)] = int(members.size)
        taken.append(members)
    return np.sort(np.concatenate(taken)).astype(np.int64), counts


def too_few_message(
    counts: dict[tuple[int, int], int], per_group: int, where: str,
    names: dict[tuple[int, int], str] | None = None,
) -> str | None:
    """The error message for the combinations with fewer than ``per_group`` examples, or None."""
    short = [(key, n) for key, n in counts.items() if n < per_group]
    if not short:
        return None
    described = ", ".join(
        f"{names[key] if names else ''} (label={key[0]}, attribute={key[1]}): {n}".lstrip()
        for key, n in short
    )
    return (
        f"balanced set from {where} needs {per_group} examples of each (label, attribute) "
        f"combination, but has only {described}. Ask for per_group <= "
        f"{min(n for _, n in short)}."
    )


def balanced_sample(
    y: np.ndarray, attribute: np.ndarray, per_group: int, seed: int, name: str,
    names: dict[tuple[int, int], str] | None = None,
) -> np.ndarray:
    """Sorted indices with exactly ``per_group`` examples of each (label, attribute) combination.

    The sample is the first ``per_group`` of each combination in the order of
    stream ``("balanced", name)`` of ``seed`` (``name``: the balanced set).
    ``names`` optionally names the combinations in the error message.

    Raises:
      ValueError: a combination has fewer than ``per_group`` examples (named).
    """
    if per_group < 1:
        raise ValueError(f"per_group must be a positive int; got {per_group}.")
    y, attribute = _check_binary(y, attribute)
    order = numpy_rng(seed, "balanced", name).permutation(y.shape[0])
    idx, counts = first_per_group(y, attribute, order, per_group)
    message = too_few_message(counts, per_group, f"{y.shape[0]} examples", names)
    if message:
        raise ValueError(message)
    return idx


def seeded_subset(n: int, size: int | None, seed: int, name: str) -> np.ndarray:
    """Sorted ``size`` indices of ``range(n)`` from stream ``("subset", name)`` of ``seed``
    (all when None)."""
    if size is None:
        return np.arange(n, dtype=np.int64)
    if not 0 < size <= n:
        raise ValueError(f"{name} size must be in (0, {n}]; got {size}.")
    idx = numpy_rng(seed, "subset", name).choice(n, size=size, replace=False)
    return np.sort(idx).astype(np.int64)


def binary_groups(mask: np.ndarray, true_name: str, false_name: str) -> dict[str, np.ndarray]:
    """``{true_name: flatnonzero(mask), false_name: flatnonzero(~mask)}`` (sorted indices)."""
    mask = np.asarray(mask, dtype=bool)
    return {true_name: np.flatnonzero(mask), false_name: np.flatnonzero(~mask)}


def center_crop(image: np.ndarray, size: int) -> np.ndarray:
    """The central ``size`` x ``size`` window (offsets rounded like torchvision's CenterCrop)."""
    height, width = image.shape[:2]
    if size > height or size > width:
        raise ValueError(f"cannot center-crop {size}x{size} from a {height}x{width} image.")
    top = round((height - size) / 2.0)
    left = round((width - size) / 2.0)
    return image[top:top + size, left:left + size]


def resize(image: np.ndarray, size: int) -> np.ndarray:
    """``image`` resized to ``size`` x ``size`` with PIL bilinear (antialiased) resampling."""
    if image.shape[0] == size and image.shape[1] == size:
        return image
    return np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR))


def center_crop_resize(
    image: np.ndarray, crop: int | None, resize_to: int, then_crop: int | None = None
) -> np.ndarray:
    """Center-crop to ``crop`` (if given), resize to ``resize_to`` squared, center-crop again.

    CelebA: ``(crop=178, resize_to=224)``; Waterbirds:
    ``(crop=None, resize_to=256, then_crop=224)``. Takes and returns uint8 HxWx3.
    """
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"need a uint8 HxWx3 image; got {image.dtype} {image.shape}.")
    if crop is not None:
        image = center_crop(image, crop)
    image = resize(image, resize_to)
    if then_crop is not None:
        image = center_crop(image, then_crop)
    return np.ascontiguousarray(image)
