"""Example groups: C-score deciles, sampled, clean/noisy and ``all`` groups."""

import numpy as np
import pytest

from lazy_hasty.data.groups import (
    all_group,
    decile_bins,
    decile_groups,
    noise_groups,
    sample_groups,
)


def test_decile_bins_known_array():
    scores = np.array([0.9, 0.1, 0.5, 0.5, 0.3, 0.7, 0.2, 0.8, 0.6, 0.4])
    np.testing.assert_array_equal(decile_bins(scores, num_bins=5), [4, 0, 2, 2, 1, 3, 0, 4, 3, 1])
    ties = decile_bins(np.zeros(6), num_bins=3)  # all tied: stable by index
    np.testing.assert_array_equal(ties, [0, 0, 1, 1, 2, 2])


def test_decile_bins_equal_counts_and_order():
    scores = np.random.default_rng(0).random(1000)
    bins = decile_bins(scores)
    np.testing.assert_array_equal(np.bincount(bins), np.full(10, 100))
    for b in range(9):
        assert scores[bins == b].max() <= scores[bins == b + 1].min()
    assert np.ptp(np.bincount(decile_bins(np.arange(1003.0)))) <= 1  # 10 does not divide N


def test_sample_groups_sizes_and_seeding():
    mask = np.zeros(100, dtype=bool)
    mask[:30] = True
    sample = lambda masks, size, seed=0, split="train": sample_groups(masks, size, seed, split)
    groups = sample({"a": mask, "b": ~mask}, 20)
    assert len(groups["a"]) == 20 and len(groups["b"]) == 20
    assert np.all(mask[groups["a"]]) and not np.any(mask[groups["b"]])
    assert np.all(np.diff(groups["a"]) > 0)
    again = sample({"b": ~mask}, 20)                     # independent of the other groups
    np.testing.assert_array_equal(again["b"], groups["b"])
    assert not np.array_equal(sample({"b": ~mask}, 20, seed=1)["b"], groups["b"])
    # The same group name in another split is another stream.
    assert not np.array_equal(sample({"b": ~mask}, 20, split="test")["b"], groups["b"])
    np.testing.assert_array_equal(sample({"a": mask}, None)["a"], np.arange(30))
    np.testing.assert_array_equal(sample({"a": mask}, 50)["a"], np.arange(30))


def test_empty_group_is_named():
    with pytest.raises(ValueError, match="'noisy' is empty"):
        noise_groups(np.zeros(10, dtype=bool), size=5, seed=0, split="train")


def test_named_group_helpers():
    scores = np.random.default_rng(1).random(500)
    deciles = decile_groups(scores, size=10, seed=0, split="train")
    assert list(deciles) == [f"decile_{b}" for b in range(10)]
    assert all(len(idx) == 10 for idx in deciles.values())
    assert scores[deciles["decile_0"]].max() < scores[deciles["decile_9"]].min()
    mask = np.arange(50) < 10
    groups = noise_groups(mask, size=None, seed=0, split="train")
    np.testing.assert_array_equal(groups["noisy"], np.arange(10))
    np.testing.assert_array_equal(groups["clean"], np.arange(10, 50))
    assert len(all_group(50, size=7, seed=0, split="train")["all"]) == 7
