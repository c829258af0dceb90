"""Comparing regimes at equal training progress (paper, Sections 3-4).

The non-linear regime trains faster overall, so regimes are compared where
they have made the same progress: the first step at which the mean training
loss reaches a threshold (yin-yang), and by interpolation onto a common
progress grid for per-group curves (image experiments).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import jax.numpy as jnp

from lazy_hasty.difficulty import DifficultySpec
from lazy_hasty.rng import numpy_rng


class NoCommonProgressError(ValueError):
    """Runs share no progress range, so they cannot be compared at equal progress."""


def reached(loss, thresholds):
    """``loss <= threshold`` for each threshold (last axis); jnp or numpy."""
    return loss[..., None] <= thresholds


def first_crossings(curves: np.ndarray, thresholds) -> np.ndarray:
    """Index of the first step whose loss reaches each threshold, ``-1`` if never.

    ``curves`` has steps on its last axis; the result has shape
    ``curves.shape[:-1] + (len(thresholds),)``.
    """
    curves = np.asarray(curves)
    hit = reached(curves, np.asarray(thresholds, curves.dtype))   # (..., S, T)
    first = np.argmax(hit, axis=-2)
    return np.where(hit.any(axis=-2), first, -1)


def check_thresholds(thresholds, initial_loss: float) -> np.ndarray:
    """Validates loss thresholds: strictly decreasing, positive, below the start."""
    t = np.asarray(thresholds, dtype=np.float64)
    if t.ndim != 1 or t.size == 0:
        raise ValueError(f"thresholds must be a non-empty list, got {thresholds!r}")
    if np.any(t <= 0) or np.any(t >= initial_loss):
        raise ValueError(f"thresholds {t.tolist()} must lie in (0, {initial_loss:.4g}), "
                         "the initial training loss, to be crossed during training")
    if np.any(np.diff(t) >= 0):
        raise ValueError(f"thresholds {t.tolist()} must be strictly decreasing")
    return t


def masked_mean(values: jnp.ndarray, mask: jnp.ndarray, axis: int = 0):
    """Mean of ``values`` over ``axis`` where ``mask``; NaN where nothing is kept."""
    mask = jnp.broadcast_to(jnp.expand_dims(mask, tuple(range(mask.ndim, values.ndim))),
                            values.shape)
    count = mask.sum(axis)
    return jnp.where(count > 0, jnp.where(mask, values, 0).sum(axis) / jnp.maximum(count, 1),
                     jnp.nan)


def at_progress(progress_values: np.ndarray, metric: np.ndarray, grid: np.ndarray,
                *, decreasing: bool = True) -> np.ndarray:
    """``metric`` where ``progress_values`` first reaches each level of ``grid``.

    Records are in training order; ``metric`` has records on axis 0. The value is
    interpolated linearly between the record before and the record at the first
    crossing, so a noisy (non-monotone) progress curve is read at its first
    passage, as the yin-yang thresholds. Levels never reached give NaN.
    """
    sign = 1.0 if decreasing else -1.0
    prog = sign * np.asarray(progress_values, np.float64)
    levels = sign * np.asarray(grid, np.float64)
    metric = np.asarray(metric, np.float64)
    first = first_crossings(prog, levels)                             # (G,)
    out = np.full((len(levels),) + metric.shape[1:], np.nan)
    for g, i in enumerate(first):
        if i < 0:
            continue
        if i == 0 or prog[i - 1] == prog[i]:
            out[g] = metric[i]
            continue
        w = (prog[i - 1] - levels[g]) / (prog[i - 1] - prog[i])
        out[g] = (1 - w) * metric[i - 1] + w * metric[i]
    return out


def common_grid(*curves: np.ndarray, decreasing: bool = True, num: int = 100) -> np.ndarray:
    """``num`` progress levels that every curve passes, from their common start.

    Each curve is one run's progress values in training order (e.g. its training
    loss). The levels run from the latest start (the lowest first value when
    ``decreasing``) to the least progress any curve reaches (the highest
    minimum), so every curve can be read at every level (:func:`at_progress`).
    Raises :class:`NoCommonProgressError` when the curves share no range (or
    none, or an empty one, is given).
    """
    arrays = [np.asarray(c, float) for c in curves]
    if not arrays or any(a.size == 0 for a in arrays):
        raise NoCommonProgressError("no progress values to compare (a curve is empty)")
    starts = [a[0] for a in arrays]
    if decreasing:
        start, end = min(starts), max(a.min() for a in arrays)
    else:
        start, end = max(starts), min(a.max() for a in arrays)
    if (end >= start) if decreasing else (end <= start):
        raise NoCommonProgressError("the curves share no progress range; train them longer")
    return np.linspace(start, end, num)


def gap_difference(progress_nl: np.ndarray, easy_nl: np.ndarray, hard_nl: np.ndarray,
                   progress_lin: np.ndarray, easy_lin: np.ndarray, hard_lin: np.ndarray,
                   *, decreasing: bool = True, num: int = 100) -> np.ndarray:
    """``gap_nonlinear - gap_linear`` on ``num`` common progress levels.

    ``gap = accuracy(easy) - accuracy(hard)`` at equal progress. Positive: the
    non-linear run favours easy examples more than the linear one (it "hastens").
    Inputs are per-record curves (records in training order); ``easy_*`` and
    ``hard_*`` may carry trailing axes (e.g. bootstrap replicates).
    """
    grid = common_grid(progress_nl, progress_lin, decreasing=decreasing, num=num)
    gap = lambda p, e, h: (at_progress(p, e, grid, decreasing=decreasing)
                           - at_progress(p, h, grid, decreasing=decreasing))
    return gap(progress_nl, easy_nl, hard_nl) - gap(progress_lin, easy_lin, hard_lin)


def hastiness(*curves: np.ndarray, decreasing: bool = True, num: int = 100) -> np.ndarray:
    """Mean of :func:`gap_difference` over the common progress range (same arguments)."""
    return np.nanmean(gap_difference(*curves, decreasing=decreasing, num=num), axis=0)


def hard_advantage(progress_nl: np.ndarray, hard_nl: np.ndarray, progress_lin: np.ndarray,
                   hard_lin: np.ndarray, *, decreasing: bool = True, num: int = 100) -> np.ndarray:
    """Linear minus non-linear accuracy on the hard group at equal progress.

    Mean over ``num`` common progress levels. Positive: at equal progress the
    linear run does better on the hard group (Section 5: the minority of a
    spurious correlation). Curves as in :func:`gap_difference`.
    """
    grid = common_grid(progress_nl, progress_lin, decreasing=decreasing, num=num)
    return np.nanmean(at_progress(progress_lin, hard_lin, grid, decreasing=decreasing)
                      - at_progress(progress_nl, hard_nl, grid, decreasing=decreasing), axis=0)


def _bootstrap(statistic, correct_nl: np.ndarray, correct_lin: np.ndarray, groups: list,
               *, name: str, num_resamples: int, seed: int, level: float
               ) -> tuple[float, tuple[float, float]]:
    """``statistic(means_nl, means_lin)`` and its interval over resampled group examples.

    ``means_*`` holds one per-record accuracy curve per group (trailing axis:
    replicates). Resampling is paired between the two regimes (same examples);
    the progress curves are held fixed. The draws are stream ``("bootstrap",
    name)`` of ``seed`` (``name``: the statistic).
    """
    rng = numpy_rng(seed, "bootstrap", name)
    draws = [[rng.choice(g, len(g)) for g in groups] for _ in range(num_resamples)]
    means = lambda c: tuple(c[:, g].mean(1) for g in groups)
    stack = lambda c: tuple(np.stack([c[:, d[k]].mean(1) for d in draws], axis=-1)
                            for k in range(len(groups)))
    value = statistic(means(correct_nl), means(correct_lin))
    reps = statistic(stack(correct_nl), stack(correct_lin))
    tail = (1 - level) / 2
    lo, hi = np.quantile(reps, [tail, 1 - tail])
    return float(value), (float(lo), float(hi))


def bootstrap_hastiness(progress_nl: np.ndarray, correct_nl: np.ndarray,
                        progress_lin: np.ndarray, correct_lin: np.ndarray,
                        easy: np.ndarray, hard: np.ndarray, *, decreasing: bool = True,
                        num_resamples: int = 200, seed: int = 0, level: float = 0.95
                        ) -> tuple[float, tuple[float, float]]:
    """Hastiness and a bootstrap interval over the examples of the two groups.

    ``correct_*`` are (records, examples) 0/1 arrays; ``easy``/``hard`` index
    the examples of each group.
    """
    stat = lambda nl, lin: hastiness(progress_nl, *nl, progress_lin, *lin,
                                     decreasing=decreasing)
    return _bootstrap(stat, correct_nl, correct_lin, [easy, hard], name="hastiness",
                      num_resamples=num_resamples, seed=seed, level=level)


def bootstrap_hard_advantage(progress_nl: np.ndarray, correct_nl: np.ndarray,
                             progress_lin: np.ndarray, correct_lin: np.ndarray,
                             hard: np.ndarray, *, decreasing: bool = True,
                             num_resamples: int = 200, seed: int = 0, level: float = 0.95
                             ) -> tuple[float, tuple[float, float]]:
    """:func:`hard_advantage` and a bootstrap interval over the hard group's examples."""
    stat = lambda nl, lin: hard_advantage(progress_nl, nl[0], progress_lin, lin[0],
                                          decreasing=decreasing)
    return _bootstrap(stat, correct_nl, correct_lin, [hard], name="hard_advantage",
                      num_resamples=num_resamples, seed=seed, level=level)


def _progress_curves(records: Sequence[Mapping], key: str, regimes: Sequence[str]) -> dict:
    return {r: np.array([rec[key] for rec in records if rec["regime"] == r]) for r in regimes}


def compare_regimes(records: Sequence[Mapping], correct: Mapping[str, np.ndarray],
                    slices: Mapping[str, slice], spec: DifficultySpec, nonlinear: str,
                    linear: str, seed: int) -> dict:
    """The spec's statistics of ``nonlinear`` over ``linear``, with bootstrap intervals.

    ``correct[regime]`` is the (records, examples) correctness over all groups;
    ``slices[group]`` is where a group's examples sit in it. Raises
    :class:`NoCommonProgressError` (naming the regimes) when they share no progress range.
    """
    prog = _progress_curves(records, spec.progress_key, (nonlinear, linear))
    e, h = slices[spec.easy], slices[spec.hard]
    easy_idx, hard_idx = np.arange(e.start, e.stop), np.arange(h.start, h.stop)
    curves = (prog[nonlinear], correct[nonlinear], prog[linear], correct[linear])
    out = {}
    try:
        if "hastiness" in spec.statistics:
            out["hastiness"], out["hastiness_interval"] = bootstrap_hastiness(
                *curves, easy_idx, hard_idx, decreasing=spec.decreasing, seed=seed)
            means = {r: (correct[r][:, easy_idx].mean(1), correct[r][:, hard_idx].mean(1))
                     for r in (nonlinear, linear)}
            diff = gap_difference(prog[nonlinear], *means[nonlinear], prog[linear],
                                  *means[linear], decreasing=spec.decreasing)
            out["fraction_hastier"] = float(np.mean(diff[np.isfinite(diff)] > 0))
        if "hard_advantage" in spec.statistics:
            out["hard_advantage"], out["hard_advantage_interval"] = bootstrap_hard_advantage(
                *curves, hard_idx, decreasing=spec.decreasing, seed=seed)
    except NoCommonProgressError:
        raise NoCommonProgressError(
            f"regimes {nonlinear} and {linear} share no range of {spec.progress_key!r}, so "
            "they cannot be compared at equal progress; train them longer (num_epochs)"
            ) from None
    return out


def summarize(records: Sequence[Mapping], correct: Mapping[str, np.ndarray],
              slices: Mapping[str, slice], spec: DifficultySpec, compare: Sequence[str],
              regimes: Sequence[str], seed: int) -> dict:
    """``summary.json``: the spec's statistics of ``compare[0]`` (and of every other
    regime) over ``compare[1]``, and the spec itself."""
    nonlinear, linear = compare
    summary = {"nonlinear": nonlinear, "linear": linear, "easy_group": spec.easy,
               "hard_group": spec.hard, "progress": spec.progress_key,
               "interval": "95% bootstrap over the examples of the two groups",
               "spec": spec.to_dict(),
               **compare_regimes(records, correct, slices, spec, nonlinear, linear, seed)}
    summary["by_regime"] = {
        r: compare_regimes(records, correct, slices, spec, r, linear, seed)
        for r in regimes if r not in (linear, nonlinear)}
    return summary
