"""Which examples of a spurious-correlation dataset to decode, chosen before decoding any.

CelebA and Waterbirds choose the indices of each split (training subset,
balanced sets, evaluated test subset) from labels alone, then decode the images
of each source split once (:func:`decode_once`) and assemble a
:class:`~lazy_hasty.data.spurious.SpuriousData` (:func:`assemble`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from lazy_hasty.data import groups
from lazy_hasty.data.splits import Split
from lazy_hasty.data.spurious import (
    SPURIOUS_SPLIT_NAMES,
    SpuriousData,
    binary_groups,
    first_per_group,
    too_few_message,
)

Arrays = tuple[np.ndarray, ...]


def check_sizes(balanced_per_group: int, test_size: int) -> None:
    """Raises ValueError for a non-positive ``balanced_per_group`` or a negative ``test_size``."""
    if balanced_per_group < 1:
        raise ValueError(f"balanced_per_group must be a positive int; got {balanced_per_group}.")
    if test_size < 0:
        raise ValueError(f"test_size must be >= 0 (0: the whole test split); got {test_size}.")


def evaluated_test_indices(n_test: int, test_size: int, seed: int) -> np.ndarray:
    """Sorted indices of the evaluated test examples (``test_size`` 0: all of them).

    The very indices ``groups.all_group(n_test, test_size or None, seed, "test")`` draws,
    so choosing them before decoding changes no evaluated example; drawing
    ``all_group`` again on the subset keeps it whole.
    """
    return groups.all_group(n_test, test_size or None, seed, "test")["all"]


def balanced_indices(
    y: np.ndarray, attribute: np.ndarray, order: np.ndarray, per_group: int, where: str,
    names: dict[tuple[int, int], str],
) -> np.ndarray:
    """Sorted positions of the first ``per_group`` of each (label, attribute) in ``order``.

    Raises:
      ValueError: a combination has fewer than ``per_group`` examples (named,
        with ``where`` saying which split).
    """
    positions, counts = first_per_group(y, attribute, order, per_group)
    message = too_few_message(counts, per_group, where, names)
    if message:
        raise ValueError(message)
    return positions


def decode_once(
    chosen: dict[str, np.ndarray], decode: Callable[[np.ndarray], Arrays]
) -> dict[str, Arrays]:
    """``decode`` the union of several index sets of one source once; each set gets its rows.

    ``decode(sorted unique indices)`` returns arrays with one row per index
    (images, labels, ...); ``chosen`` maps a split name to its sorted indices.
    """
    union = np.unique(np.concatenate([np.asarray(idx, dtype=np.int64) for idx in chosen.values()]))
    arrays = decode(union)
    return {name: tuple(a[np.searchsorted(union, idx)] for a in arrays)
            for name, idx in chosen.items()}


def assemble(
    name: str, parts: dict[str, Arrays], group_names: tuple[str, str], hard: str
) -> SpuriousData:
    """SpuriousData from ``{split: (uint8 images, 0/1 labels, mask of group_names[0])}``.

    Every example of a split is in group ``group_names[0]`` (where the mask is
    true) or ``group_names[1]``; ``hard`` is one of them, the other is easy.
    """
    splits = {s: Split(x=parts[s][0], y=np.asarray(parts[s][1], dtype=np.int32))
              for s in SPURIOUS_SPLIT_NAMES}
    named = {s: binary_groups(parts[s][2], *group_names) for s in SPURIOUS_SPLIT_NAMES}
    easy = group_names[1] if hard == group_names[0] else group_names[0]
    return SpuriousData(name=name, num_classes=2, splits=splits, groups=named, easy=easy,
                        hard=hard)
