"""CPU-scale twin of the spurious-correlation experiments (Section 5) on digits.

Binary task: is the digit < 5? Each image is painted on a faint red or green
background. In training, the background agrees with the label for a
``majority_fraction`` of the examples (the *majority* group, like blond women
or waterbirds on water) and disagrees for the rest (the *minority* group). The
background is a simple, spurious feature; the digit's shape is the real one.

The cue is faint on purpose (``strength`` 0.1 of full colour): a small input
direction weighs little in the tangent kernel at initialisation, so the
linear regime leans on the shape, while feature learning amplifies the cue
because it is simple and 90% predictive. With a strong cue (0.5) every regime
learns the colour first and the comparison reverses (docs/results.md).
"""

from __future__ import annotations

import numpy as np

from lazy_hasty.data.digits import read_digits, stratified_three_way_split
from lazy_hasty.data.spurious import SpuriousData, balanced_sample
from lazy_hasty.data.splits import Split
from lazy_hasty.rng import numpy_rng

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
                         test_majority_fraction: float = 0.9, strength: float = 0.1,
                         patch: int = 0, balanced_per_group: int = 30,
                         distractors: int = 0) -> SpuriousData:
    """Train / balanced_train / balanced_test / test splits with majority/minority groups.

    ``balanced_train`` samples ``balanced_per_group`` training examples per
    (label, background). ``balanced_test`` paints every test digit on *both*
    backgrounds, so its majority and minority groups hold the same digits and
    differ only in the cue. ``distractors`` appends that many pure-noise
    features to the flattened pixels (see ``digits.with_distractors``); an
    example keeps its distractors in every split it appears in.
    """
    for name, value in (("majority_fraction", majority_fraction),
                        ("test_majority_fraction", test_majority_fraction)):
        if not 0.5 <= value <= 1.0:
            raise ValueError(f"{name} must be in [0.5, 1], got {value}")
    images, target = read_digits()
    labels = (target < 5).astype(np.int32)
    idx = stratified_three_way_split(target, seed, 0.2, 0.2)
    train_idx, test_idx = idx["train"], np.concatenate([idx["heldout"], idx["test"]])
    rng = numpy_rng(seed, "backgrounds")
    bg_train = _backgrounds(labels[train_idx], majority_fraction, rng)
    bg_test = _backgrounds(labels[test_idx], test_majority_fraction, rng)
    pick = balanced_sample(labels[train_idx], bg_train, balanced_per_group, seed,
                           "balanced_train")
    n = len(test_idx)
    sources = {  # split -> (indices into the raw digits, backgrounds)
        "train": (train_idx, bg_train),
        "balanced_train": (train_idx[pick], bg_train[pick]),
        "balanced_test": (np.tile(test_idx, 2), np.repeat(np.array([0, 1]), n)),
        "test": (test_idx, bg_test)}
    painted = {s: paint(images[i] / 16.0, bg, strength, patch)
               for s, (i, bg) in sources.items()}
    mean, std = painted["train"].mean((0, 1, 2)), painted["train"].std((0, 1, 2))
    noise = numpy_rng(seed, "distractors").standard_normal(
        (len(labels), distractors)).astype(np.float32)     # one row per raw digit
    splits, groups = {}, {}
    for name, (i, bg) in sources.items():
        x = ((painted[name] - mean) / std).astype(np.float32)
        if distractors:
            x = np.concatenate([x.reshape(len(i), -1), noise[i]], axis=1)
        splits[name] = Split(x, labels[i])
        majority = bg == labels[i]
        groups[name] = {"majority": np.flatnonzero(majority),
                        "minority": np.flatnonzero(~majority)}
    return SpuriousData(name="digits_spurious", num_classes=2, splits=splits, groups=groups,
                        easy="majority", hard="minority")
