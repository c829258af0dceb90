"""scikit-learn's embedded handwritten digits (1,797 8x8 images, no download).

The offline stand-in for CIFAR-10 in the example-difficulty experiments (label
noise, C-score deciles), small enough to train on a laptop CPU.
"""

from __future__ import annotations

import gzip
import importlib.util
import os

import numpy as np

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


def read_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's embedded digits: images ``(1797, 8, 8)`` in 0..16 and labels.

    The file is read as ``sklearn.datasets.load_digits`` reads it, without importing
    scikit-learn (about 1 s per process, most of a short run's start-up).
    """
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the digits ship with scikit-learn: pip install scikit-learn")
    path = os.path.join(spec.submodule_search_locations[0], "datasets", "data",
                        "digits.csv.gz")
    with gzip.open(path, mode="rt", encoding="utf-8") as f:
        data = np.loadtxt(f, delimiter=",")
    return data[:, :-1].reshape(-1, 8, 8), data[:, -1].astype(int)


def _approximate_mode(counts: np.ndarray, n_draws: int, rng: np.random.RandomState
                      ) -> np.ndarray:
    """Per-class draws summing to ``n_draws``: the floored proportional share, plus
    one for the largest remainders (ties broken at random)."""
    continuous = counts / counts.sum() * n_draws
    floored = np.floor(continuous)
    need = int(n_draws - floored.sum())
    remainder = continuous - floored
    for value in np.sort(np.unique(remainder))[::-1] if need > 0 else ():
        (inds,) = np.where(remainder == value)
        add = min(len(inds), need)
        floored[rng.choice(inds, size=add, replace=False)] += 1
        need -= add
        if need == 0:
            break
    return floored.astype(int)


def stratified_split(y: np.ndarray, n_test: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions ``(train, test)`` of a seeded split stratified by class, ``n_test`` in test.

    Draw for draw what scikit-learn's ``train_test_split(range(len(y)),
    test_size=n_test, stratify=y, random_state=seed)`` returns (a test checks it),
    without importing scikit-learn.
    """
    rng = np.random.RandomState(seed)
    _, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
    by_class = np.split(np.argsort(inverse, kind="stable"), np.cumsum(counts)[:-1])
    n_train = _approximate_mode(counts, len(y) - n_test, rng)
    n_tested = _approximate_mode(counts - n_train, n_test, rng)
    train, test = [], []
    for members, a, b in zip(by_class, n_train, n_tested):
        members = members.take(rng.permutation(len(members)), mode="clip")
        train.extend(members[:a])
        test.extend(members[a:a + b])
    return rng.permutation(train), rng.permutation(test)


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
    rng = numpy_rng(seed, "split")
    seeds = rng.integers(0, 2**31 - 1, size=2)
    rest, test = stratified_split(y, n_test, int(seeds[0]))
    train, heldout = (rest[i] for i in stratified_split(y[rest], n_heldout, int(seeds[1])))
    return {"train": np.sort(train), "heldout": np.sort(heldout), "test": np.sort(test)}


def load_digits(seed: int, heldout_fraction: float = 0.2, test_fraction: float = 0.2) -> Dataset:
    """The digits as a :class:`Dataset` of ``(N, 8, 8, 1)`` float32 images, int32 labels.

    Pixels are scaled to ``[0, 1]`` (the raw values are 0..16), then standardised
    with the scalar mean and standard deviation of the *train* split. The split
    into train / heldout / test is stratified by class and deterministic given
    ``seed``.
    """
    pixels, target = read_digits()
    images = (pixels / 16.0)[..., None]  # (N, 8, 8, 1)
    labels = target.astype(np.int32)
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
    rng = numpy_rng(seed, "distractors")
    splits = {}
    for name, split in dataset.splits.items():
        flat = split.x.reshape(len(split.y), -1)
        noise = rng.standard_normal((len(split.y), dims)).astype(np.float32)
        splits[name] = Split(x=np.concatenate([flat, noise], axis=1), y=split.y)
    return Dataset(name=dataset.name, num_classes=dataset.num_classes, splits=splits)
