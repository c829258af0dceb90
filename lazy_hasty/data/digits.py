"""scikit-learn's embedded handwritten digits (1,797 8x8 images, no download).

The offline stand-in for CIFAR-10 in the example-difficulty experiments (label
noise, C-score deciles), small enough to train on a laptop CPU.
"""

from __future__ import annotations

import numpy as np
import sklearn.datasets
from sklearn.model_selection import train_test_split

from lazy_hasty.data.splits import Dataset, Split
from lazy_hasty.rng import numpy_rng

NUM_CLASSES: int = 10


def _check_fractions(heldout_fraction: float, test_fraction: float) -> None:
    for name, value in (("heldout_fraction", heldout_fraction), ("test_fraction", test_fraction)):
        if not 0.0 < value < 1.0:
            raise ValueError(f"{name} must be in (0, 1); got {value}.")
    if heldout_fraction + test_fraction >= 1.0:
        raise ValueError(
            f"heldout_fraction + test_fraction must be < 1 to leave a training set; got "
            f"{heldout_fraction} + {test_fraction}."
        )


def stratified_three_way_split(
    y: np.ndarray, seed: int, heldout_fraction: float, test_fraction: float
) -> dict[str, np.ndarray]:
    """Seeded stratified partition of ``range(len(y))`` into train / heldout / test indices.

    The heldout and test sizes are ``round(fraction * N)``; each index array is sorted.
    """
    _check_fractions(heldout_fraction, test_fraction)
    n = len(y)
    n_test = int(round(test_fraction * n))
    n_heldout = int(round(heldout_fraction * n))
    rng = numpy_rng(seed)
    seeds = rng.integers(0, 2**31 - 1, size=2)
    all_idx = np.arange(n)
    rest, test = train_test_split(
        all_idx, test_size=n_test, stratify=y, random_state=int(seeds[0])
    )
    train, heldout = train_test_split(
        rest, test_size=n_heldout, stratify=y[rest], random_state=int(seeds[1])
    )
    return {"train": np.sort(train), "heldout": np.sort(heldout), "test": np.sort(test)}


def load_digits(seed: int, heldout_fraction: float = 0.2, test_fraction: float = 0.2) -> Dataset:
    """The digits as a :class:`Dataset` of ``(N, 8, 8, 1)`` float32 images, int32 labels.

    Pixels are scaled to ``[0, 1]`` (the raw values are 0..16), then standardised
    with the scalar mean and standard deviation of the *train* split. The split
    into train / heldout / test is stratified by class and deterministic given
    ``seed``.
    """
    raw = sklearn.datasets.load_digits()
    images = (raw.images.astype(np.float64) / 16.0)[..., None]  # (N, 8, 8, 1)
    labels = raw.target.astype(np.int32)
    idx = stratified_three_way_split(labels, seed, heldout_fraction, test_fraction)
    train_images = images[idx["train"]]
    mean, std = train_images.mean(), train_images.std()
    standardised = ((images - mean) / std).astype(np.float32)
    splits = {name: Split(x=standardised[i], y=labels[i]) for name, i in idx.items()}
    return Dataset(name="digits", num_classes=NUM_CLASSES, splits=splits)


def with_distractors(dataset: Dataset, dims: int, seed: int) -> Dataset:
    """Flattens the images and appends ``dims`` standard-normal features per example.

    The distractors carry no label information. They make the network's tangent
    kernel at initialisation a poor, memorisation-prone predictor, as it is on
    CIFAR-10 (on the raw digits the initial kernel already generalises well),
    while a network that learns features can still find the 64 informative ones.
    Seeded; each example keeps its own distractors in every split.
    """
    if dims < 0:
        raise ValueError(f"distractor dims must be >= 0, got {dims}")
    rng = numpy_rng(seed, 7)
    splits = {}
    for name, split in dataset.splits.items():
        flat = split.x.reshape(len(split.y), -1)
        noise = rng.standard_normal((len(split.y), dims)).astype(np.float32)
        splits[name] = Split(x=np.concatenate([flat, noise], axis=1), y=split.y)
    return Dataset(name=dataset.name, num_classes=dataset.num_classes, splits=splits)
