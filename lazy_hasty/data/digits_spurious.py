"""CPU-scale twin of the spurious-correlation experiments (Section 5) on digits.

Binary task: is the digit < 5? Each image is painted on a red or a green
background. In training, the background agrees with the label for a
``majority_fraction`` of the examples (the *majority* group, like blond women
or waterbirds on water) and disagrees for the rest (the *minority* group). The
background is an easy, spurious feature; the digit's shape is the real one.
Balanced sets hold the same number of examples of each (label, background).
"""

from __future__ import annotations

import numpy as np
import sklearn.datasets

from lazy_hasty.data.digits import stratified_three_way_split
from lazy_hasty.data.spurious import SpuriousData, balanced_sample
from lazy_hasty.data.splits import Split

RED, GREEN = np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0])


def paint(images: np.ndarray, background: np.ndarray, strength: float,
          patch: int = 0) -> np.ndarray:
    """Grey digits (N, 8, 8) in [0, 1] -> (N, 8, 8, 3) with a red (0) or green (1) cue.

    ``patch=0`` colours the whole background; ``patch=k`` only a k x k corner.
    """
    colour = np.where(background[:, None, None, None] == 1, GREEN, RED)
    ink = images[..., None]
    region = np.ones((8, 8, 1))
    if patch:
        region = np.zeros((8, 8, 1))
        region[:patch, :patch] = 1.0
    return ink + (1.0 - ink) * strength * colour * region


def _backgrounds(labels: np.ndarray, agree_fraction: float, rng: np.random.Generator
                 ) -> np.ndarray:
    """Background = label for ``agree_fraction`` of the examples (exact count), else flipped."""
    agree = np.zeros(len(labels), bool)
    agree[rng.choice(len(labels), round(agree_fraction * len(labels)), replace=False)] = True
    return np.where(agree, labels, 1 - labels)


def load_digits_spurious(seed: int, *, majority_fraction: float = 0.9,
                         test_majority_fraction: float = 0.9, strength: float = 0.5,
                         patch: int = 0, balanced_per_group: int = 30) -> SpuriousData:
    """Train / balanced_train / balanced_test / test splits with majority/minority groups."""
    for name, value in (("majority_fraction", majority_fraction),
                        ("test_majority_fraction", test_majority_fraction)):
        if not 0.5 <= value <= 1.0:
            raise ValueError(f"{name} must be in [0.5, 1], got {value}")
    raw = sklearn.datasets.load_digits()
    images = raw.images / 16.0
    labels = (raw.target < 5).astype(np.int32)
    idx = stratified_three_way_split(raw.target, seed, 0.2, 0.2)
    train_idx, test_idx = idx["train"], np.concatenate([idx["heldout"], idx["test"]])
    rng = np.random.default_rng([seed, 11])
    backgrounds = {"train": _backgrounds(labels[train_idx], majority_fraction, rng),
                   "test": _backgrounds(labels[test_idx], test_majority_fraction, rng)}
    painted = {s: paint(images[i], backgrounds[s], strength, patch)
               for s, i in (("train", train_idx), ("test", test_idx))}
    mean, std = painted["train"].mean((0, 1, 2)), painted["train"].std((0, 1, 2))
    full = {s: Split(((painted[s] - mean) / std).astype(np.float32), labels[i])
            for s, i in (("train", train_idx), ("test", test_idx))}
    splits, groups = dict(full), {}
    for name, source in (("balanced_train", "train"), ("balanced_test", "test")):
        pick = balanced_sample(full[source].y, backgrounds[source], balanced_per_group, seed)
        splits[name] = Split(full[source].x[pick], full[source].y[pick])
        backgrounds[name] = backgrounds[source][pick]
    for name, split in splits.items():
        majority = backgrounds[name] == split.y
        groups[name] = {"majority": np.flatnonzero(majority),
                        "minority": np.flatnonzero(~majority)}
    return SpuriousData(name="digits_spurious", num_classes=2, splits=splits, groups=groups,
                        easy="majority", hard="minority")
