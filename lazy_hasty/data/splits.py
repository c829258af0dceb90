"""Containers for in-memory datasets: a :class:`Split` and a named :class:`Dataset`."""

from __future__ import annotations

import dataclasses

import numpy as np

SPLIT_NAMES: tuple[str, ...] = ("train", "heldout", "test")
"""The split names every :class:`Dataset` carries."""


@dataclasses.dataclass(frozen=True)
class Split:
    """Inputs and integer labels of one split.

    Attributes:
      x: ``(N, ...)`` float32 inputs (NHWC images or feature vectors).
      y: ``(N,)`` int32 labels used for training / evaluation (possibly noisy).
    """

    x: np.ndarray
    y: np.ndarray

    def __post_init__(self) -> None:
        if self.x.ndim < 1 or self.y.ndim != 1 or self.x.shape[0] != self.y.shape[0]:
            raise ValueError(
                f"Split needs x of shape (N, ...) and y of shape (N,); got x {self.x.shape} "
                f"and y {self.y.shape}. Pass one label per example."
            )

    def __len__(self) -> int:
        return int(self.y.shape[0])


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A named classification dataset with ``"train"``, ``"heldout"`` and ``"test"`` splits."""

    name: str
    num_classes: int
    splits: dict[str, Split]

    def __post_init__(self) -> None:
        missing = [name for name in SPLIT_NAMES if name not in self.splits]
        if missing:
            raise ValueError(
                f"Dataset {self.name!r} lacks splits {missing}; give it all of {list(SPLIT_NAMES)} "
                "(an empty Split is fine)."
            )


def subset(split: Split, idx: np.ndarray) -> Split:
    """The examples of ``split`` at integer indices (or boolean mask) ``idx``, in that order."""
    idx = np.asarray(idx)
    if idx.size == 0 and idx.dtype != bool:
        idx = idx.astype(np.int64)  # ``[]`` comes in as float64
    if idx.dtype != bool and not np.issubdtype(idx.dtype, np.integer):
        raise ValueError(f"subset needs integer indices or a boolean mask; got dtype {idx.dtype}.")
    return Split(x=split.x[idx], y=split.y[idx])
