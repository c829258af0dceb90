"""The paper's datasets as registered dataset functions (see :mod:`lazy_hasty.datasets`).

Section 4 (``digits``, ``cifar10``): ``difficulty="noise"`` corrupts a fraction
of the training labels and compares clean with noisy examples;
``difficulty="cscores"`` splits the train and held-out sets into C-score
deciles (a published file, or estimated by eq. 5 and cached). Section 5
(``digits_spurious``, ``celeba``, ``waterbirds``, ``difficulty="spurious"``):
the groups a spurious feature helps or misleads, on balanced sets.

Every group is a seeded sample of at most ``group_size`` examples (0: all);
``test/all`` holds ``test_size`` test examples (0: all).

The functions' arguments have no defaults: :func:`lazy_hasty.datasets.load` passes
the config's values, so the configs (``configs/difficulty_base.py`` and the configs
derived from it) are the one place a dataset's defaults are set.
"""

from __future__ import annotations

import os

import jax
import numpy as np

from lazy_hasty import difficulty as spec_lib
from lazy_hasty.analysis import consistency
from lazy_hasty.data import cscores as cscores_lib, groups as groups_lib, noise, splits
from lazy_hasty.data.spurious import SpuriousData
from lazy_hasty.datasets import DescribedDataset

SECTION4_DIFFICULTIES = ("noise", "cscores")


def _check_difficulty(dataset: str, difficulty: str, allowed: tuple[str, ...]) -> None:
    if difficulty not in allowed:
        raise ValueError(f"unknown difficulty {difficulty!r} for dataset {dataset!r}; "
                         f"choose one of {allowed}")


def _materialise(named: dict, source: dict) -> dict[str, dict[str, splits.Split]]:
    """Index arrays per split and group -> the examples they select."""
    return {split: {name: splits.subset(source[split], idx) for name, idx in members.items()}
            for split, members in named.items()}


def estimated_or_published_cscores(ds: splits.Dataset, source: str, cache: str, seed: int,
                                   models_per_ratio: int, steps: int
                                   ) -> tuple[np.ndarray, np.ndarray]:
    """C-scores of the train and held-out splits: a published file or eq. 5 (cached).

    ``source`` is ``"estimate"`` or a path/URL of a published npz; the cache
    defaults to ``~/.cache/lazy_hasty/<dataset>_cscores_seed<seed>.npz`` (one per seed,
    so runs of several seeds do not evict each other's) and is written by
    process 0 only.
    """
    train, heldout = ds.splits["train"], ds.splits["heldout"]
    if source != "estimate":
        labels = np.concatenate([train.y, heldout.y])
        scores = cscores_lib.load_published_cscores(source, expected_labels=labels)
        return scores[:len(train.y)], scores[len(train.y):len(labels)]
    x = np.concatenate([train.x, heldout.x])
    y = np.concatenate([train.y, heldout.y])
    kwargs = dict(seed=seed, models_per_ratio=models_per_ratio, steps=steps)
    if jax.process_index() != 0:
        scores = consistency.estimate_cscores(x, y, ds.num_classes, **kwargs)
    else:
        cache = cache or os.path.join(os.path.expanduser("~/.cache/lazy_hasty"),
                                      f"{ds.name}_cscores_seed{seed}.npz")
        scores = consistency.cached_cscores(cache, x, y, ds.num_classes, **kwargs)
    return scores[:len(train.y)], scores[len(train.y):]


def section4(ds: splits.Dataset, *, difficulty: str, seed: int, label_noise: float,
             group_size: int, test_size: int, cscores: str, cscore_cache: str,
             cscore_models_per_ratio: int, cscore_steps: int) -> DescribedDataset:
    """Clean/noisy groups (noisy labels trained on) or C-score deciles of ``ds``."""
    size = group_size or None
    train, heldout, test = (ds.splits[s] for s in splits.SPLIT_NAMES)
    named: dict[str, dict[str, np.ndarray]] = {}
    if difficulty == "noise":
        if not 0 < label_noise < 1:
            raise ValueError(f"label_noise must be in (0, 1), got {label_noise}")
        y_noisy, mask = noise.corrupt_labels(train.y, ds.num_classes, label_noise, seed)
        train = splits.Split(train.x, y_noisy)      # noisy examples scored on noisy labels
        named["train"], named["heldout"] = groups_lib.noise_groups(mask, size, seed, "train"), {}
        spec = spec_lib.label_noise()
    else:
        s_train, s_heldout = estimated_or_published_cscores(
            ds, cscores, cscore_cache, seed, cscore_models_per_ratio, cscore_steps)
        named["train"] = groups_lib.decile_groups(s_train, size, seed, "train")
        named["heldout"] = groups_lib.decile_groups(s_heldout, size, seed, "heldout")
        spec = spec_lib.cscore_deciles()
    named["train"].update(groups_lib.all_group(len(train.y), size, seed, "train"))
    named["heldout"].update(groups_lib.all_group(len(heldout.y), size, seed, "heldout"))
    named["test"] = groups_lib.all_group(len(test.y), test_size or None, seed, "test")
    source = {"train": train, "heldout": heldout, "test": test}
    return DescribedDataset(train, _materialise(named, source), ds.num_classes, spec)


def digits(*, seed: int, difficulty: str, distractors: int, label_noise: float,
           group_size: int, test_size: int, cscores: str, cscore_cache: str,
           cscore_models_per_ratio: int, cscore_steps: int) -> DescribedDataset:
    """scikit-learn's digits (embedded), optionally with pure-noise distractor features."""
    from lazy_hasty.data import digits as digits_lib
    _check_difficulty("digits", difficulty, SECTION4_DIFFICULTIES)
    if distractors < 0:
        raise ValueError(f"distractors must be >= 0, got {distractors!r}")
    ds = digits_lib.load_digits(seed)
    ds = digits_lib.with_distractors(ds, distractors, seed) if distractors else ds
    return section4(ds, difficulty=difficulty, seed=seed, label_noise=label_noise,
                    group_size=group_size, test_size=test_size, cscores=cscores,
                    cscore_cache=cscore_cache, cscore_models_per_ratio=cscore_models_per_ratio,
                    cscore_steps=cscore_steps)


def cifar10(*, seed: int, data_dir: str, train_size: int, difficulty: str,
            label_noise: float, group_size: int, test_size: int, cscores: str,
            cscore_cache: str, cscore_models_per_ratio: int,
            cscore_steps: int) -> DescribedDataset:
    """CIFAR-10 from a TFDS ``data_dir`` prepared offline: train[:train_size], held-out rest."""
    from lazy_hasty.data import tfds_sources
    _check_difficulty("cifar10", difficulty, SECTION4_DIFFICULTIES)
    ds = tfds_sources.load_cifar10(data_dir or None, train_size=train_size)
    return section4(ds, difficulty=difficulty, seed=seed, label_noise=label_noise,
                    group_size=group_size, test_size=test_size, cscores=cscores,
                    cscore_cache=cscore_cache, cscore_models_per_ratio=cscore_models_per_ratio,
                    cscore_steps=cscore_steps)


def section5(data: SpuriousData, *, seed: int, group_size: int,
             test_size: int) -> DescribedDataset:
    """Balanced train/test groups, sampled training groups and ``test/all`` of ``data``.

    The loaders decode only ``test_size`` test examples, so ``test/all`` is their test split.
    """
    size = group_size or None
    named = {split: dict(data.groups[split]) for split in ("balanced_train", "balanced_test")}
    n_train = len(data.splits["train"].y)
    masks = {name: np.isin(np.arange(n_train), idx) for name, idx in data.groups["train"].items()}
    named["train"] = {**groups_lib.sample_groups(masks, size, seed, "train"),
                      **groups_lib.all_group(n_train, size, seed, "train")}
    named["test"] = groups_lib.all_group(len(data.splits["test"].y), test_size or None, seed,
                                         "test")
    return DescribedDataset(data.splits["train"], _materialise(named, data.splits),
                            data.num_classes, spec_lib.spurious(data.easy, data.hard))


def digits_spurious(*, seed: int, difficulty: str, majority_fraction: float,
                    cue_strength: float, cue_patch: int, balanced_per_group: int,
                    distractors: int, group_size: int, test_size: int) -> DescribedDataset:
    """Digits < 5 on a faint background colour that agrees with the label for the majority."""
    from lazy_hasty.data import digits_spurious as twin
    _check_difficulty("digits_spurious", difficulty, ("spurious",))
    data = twin.load_digits_spurious(
        seed, majority_fraction=majority_fraction, strength=cue_strength, patch=cue_patch,
        balanced_per_group=balanced_per_group, distractors=distractors)
    return section5(data, seed=seed, group_size=group_size, test_size=test_size)


def celeba(*, seed: int, data_dir: str, difficulty: str, train_size: int,
           balanced_per_group: int, image_size: int, group_size: int,
           test_size: int) -> DescribedDataset:
    """CelebA blond vs not, spurious attribute male, from a TFDS ``data_dir``."""
    from lazy_hasty.data import celeba as celeba_lib
    _check_difficulty("celeba", difficulty, ("spurious",))
    data = celeba_lib.load_celeba(data_dir or None, train_size=train_size,
                                  balanced_per_group=balanced_per_group, seed=seed,
                                  image_size=image_size, test_size=test_size)
    return section5(data, seed=seed, group_size=group_size, test_size=test_size)


def waterbirds(*, seed: int, data_dir: str, difficulty: str, balanced_per_group: int,
               image_size: int, group_size: int, test_size: int) -> DescribedDataset:
    """Waterbirds from the folder of its release (``metadata.csv`` and the images)."""
    from lazy_hasty.data import waterbirds as waterbirds_lib
    _check_difficulty("waterbirds", difficulty, ("spurious",))
    if not data_dir:
        raise ValueError("waterbirds needs --config.data_dir=<folder of the Waterbirds "
                         "release, with metadata.csv>")
    data = waterbirds_lib.load_waterbirds(data_dir, balanced_per_group=balanced_per_group,
                                          seed=seed, image_size=image_size,
                                          test_size=test_size)
    return section5(data, seed=seed, group_size=group_size, test_size=test_size)
