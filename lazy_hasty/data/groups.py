"""Groups of examples (C-score deciles, clean / noisy, all) as index arrays into a split.

Per-group metrics are tracked on a fixed sample of each group; the sample of a
group depends only on ``(seed, split, group name, mask)``, not on the other groups.
"""

from __future__ import annotations

import numpy as np

from lazy_hasty.rng import numpy_rng


def decile_bins(scores: np.ndarray, num_bins: int = 10) -> np.ndarray:
    """Bin id (int32, ``(N,)``) per example: equal-count bins of the sorted scores.

    Bin 0 holds the lowest scores. Ties are broken stably by index (the earlier
    example goes to the lower bin). When ``num_bins`` does not divide ``N``,
    bin sizes differ by at most one.
    """
    scores = np.asarray(scores)
    if scores.ndim != 1 or not np.all(np.isfinite(scores)):
        raise ValueError(f"scores must be a 1-d array of finite numbers; got shape {scores.shape}.")
    if not 1 <= num_bins <= scores.shape[0]:
        raise ValueError(f"num_bins must be in [1, N={scores.shape[0]}]; got {num_bins}.")
    n = scores.shape[0]
    order = np.argsort(scores, kind="stable")
    bins = np.empty(n, dtype=np.int32)
    bins[order] = (np.arange(n) * num_bins) // n
    return bins


def sample_groups(
    membership: dict[str, np.ndarray], size: int | None, seed: int, split: str
) -> dict[str, np.ndarray]:
    """A seeded sample of at most ``size`` sorted indices from each named boolean mask
    of ``split`` (stream ``("group_sample", split, name)``).

    A group smaller than ``size`` (or any group when ``size`` is None) is taken
    whole. An empty group raises ValueError naming it.
    """
    if size is not None and size < 1:
        raise ValueError(f"size must be a positive int or None (whole groups); got {size}.")
    groups = {}
    for name, mask in membership.items():
        mask = np.asarray(mask)
        if mask.dtype != bool or mask.ndim != 1:
            raise ValueError(
                f"group {name!r} must be a 1-d boolean mask; got dtype {mask.dtype}, "
                f"shape {mask.shape}."
            )
        idx = np.flatnonzero(mask)
        if idx.size == 0:
            raise ValueError(f"group {name!r} is empty; drop it or check how it was built.")
        if size is not None and size < idx.size:
            idx = np.sort(numpy_rng(seed, "group_sample", split, name).choice(idx, size=size,
                                                                      replace=False))
        groups[name] = idx
    return groups


def decile_groups(scores: np.ndarray, size: int | None, seed: int, split: str
                  ) -> dict[str, np.ndarray]:
    """``{"decile_0": idx, ..., "decile_9": idx}``; decile 0 has the lowest scores."""
    bins = decile_bins(scores, num_bins=10)
    return sample_groups({f"decile_{b}": bins == b for b in range(10)}, size, seed, split)


def quantile_groups(hardness: np.ndarray, quantile: float, size: int | None, seed: int,
                    split: str) -> dict[str, np.ndarray]:
    """``{"score_easy": idx, "score_hard": idx}``: the ``quantile`` fraction of examples
    with the lowest and the highest ``hardness`` (at least one each; ties broken
    stably by index), each sampled to ``size``."""
    hardness = np.asarray(hardness)
    if not 0 < quantile <= 0.5:
        raise ValueError(f"score_quantile must be in (0, 0.5], got {quantile}")
    n = len(hardness)
    count = max(1, int(round(quantile * n)))
    order = np.argsort(hardness, kind="stable")
    easy, hard = np.zeros(n, bool), np.zeros(n, bool)
    easy[order[:count]], hard[order[n - count:]] = True, True
    return sample_groups({"score_easy": easy, "score_hard": hard}, size, seed, split)


def noise_groups(noisy_mask: np.ndarray, size: int | None, seed: int, split: str
                 ) -> dict[str, np.ndarray]:
    """``{"clean": idx, "noisy": idx}`` from the mask returned by ``corrupt_labels``."""
    noisy_mask = np.asarray(noisy_mask, dtype=bool)
    return sample_groups({"clean": ~noisy_mask, "noisy": noisy_mask}, size, seed, split)


def all_group(n: int, size: int | None, seed: int, split: str) -> dict[str, np.ndarray]:
    """``{"all": idx}``: a sample of ``range(n)``."""
    return sample_groups({"all": np.ones(n, dtype=bool)}, size, seed, split)
