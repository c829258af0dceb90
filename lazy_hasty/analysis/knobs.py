"""Richness knobs compared: how the best learning rate scales with gamma, and whether
hastiness follows end-of-training linearity whichever knob (alpha, gamma, width)
moved it.

Both read back ``sweep_summary.json`` of sweeps run by ``experiments/sweep.py``:
its ``learning_rates`` (``--lr_grid``) for the best rates, and its per-seed
statistics and linearity metrics for the collapse (docs/richness.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Optional

import numpy as np

from lazy_hasty.analysis import inference, lr_search

LINEARITY = ("sign_similarity", "ntk_alignment")
"""The end-of-training linearity metrics a run's statistic is set against."""


def applied_best_rates(search: Mapping, factor: float) -> list[Optional[float]]:
    """Each seed's best rate at one swept value as SGD applied it.

    ``search``: the value's ``lr_search.json`` (its grid rates are values of
    ``config.learning_rate``); ``factor``: what the run multiplies that by, the
    learning-rate rule's factor at the value's richness times the
    parameterization's width multiplier. None: the seed has no best rate.
    """
    return [None if r is None else r * factor for r in search["per_seed_best_rates"]]


def rate_scaling(x: Sequence[float], best_rates: Sequence[Sequence[Optional[float]]],
                 crossover: float, depth: int) -> dict:
    """The slope of ``log eta*`` against ``log x`` on each side of ``crossover``.

    ``best_rates[i][j]``: seed ``j``'s best rate at ``x[i]``. The lazy side fits
    ``x <= crossover``, the rich side ``x >= crossover`` (the crossover point is in
    both), each per seed with an across-seed Student-t interval
    (:func:`lazy_hasty.analysis.lr_search.slope_across_seeds`), next to the slopes
    Atanasov et al. (2025) measured: 2 on the lazy side, ``2 / depth`` on the rich;
    and ``fitted_break``, where the data put the change (:func:`fitted_break`).
    """
    x = np.asarray(x, np.float64)
    sides = {"lazy_side": (x <= crossover, 2.0), "rich_side": (x >= crossover, 2.0 / depth)}
    out: dict = {"crossover": crossover, "depth": depth}
    for name, (mask, predicted) in sides.items():
        out[name] = {**lr_search.slope_across_seeds(x, best_rates, mask),
                     "points": int(mask.sum()), "predicted": predicted}
    out["fitted_break"] = fitted_break(x, best_rates)
    return out


def _sse(u: np.ndarray, v: np.ndarray) -> float:
    """Residual sum of squares of the least-squares line of ``v`` on ``u``."""
    slope = np.polyfit(u, v, 1)
    return float(np.sum((np.polyval(slope, u) - v) ** 2))


def _best_break(u: np.ndarray, v: np.ndarray) -> Optional[tuple[float, float, float]]:
    """``(break, left slope, right slope)`` of the two lines, one through the points up to
    the break and one from it (the break in both, each side at least two points),
    with the least total squared residual; None under three points."""
    if len(u) < 3:
        return None
    fits = [(_sse(u[:k + 1], v[:k + 1]) + _sse(u[k:], v[k:]), k) for k in range(1, len(u) - 1)]
    _, k = min(fits)
    return (float(np.exp(u[k])), float(np.polyfit(u[:k + 1], v[:k + 1], 1)[0]),
            float(np.polyfit(u[k:], v[k:], 1)[0]))


def fitted_break(x: Sequence[float], best_rates: Sequence[Sequence[Optional[float]]],
                 level: float = 0.95) -> dict:
    """Where the scaling of the best rate changes, read from the data: per seed, the
    two-line fit of ``log eta*`` on ``log x`` with the least squared residual over the
    breaks at each inner ``x`` (:func:`_best_break`); across seeds, the Student-t
    summaries of the two slopes and of ``log10`` of the break."""
    x = np.asarray(x, np.float64)
    fits = []
    for column in zip(*best_rates):
        kept = [(xi, r) for xi, r in zip(x, column) if r is not None]
        u, v = np.log(np.array(kept, np.float64).reshape(-1, 2)).T
        fits.append(_best_break(u, v))
    pick = lambda i: [None if f is None else f[i] for f in fits]
    return {"log10_break": inference.across_seeds(
                [None if b is None else float(np.log10(b)) for b in pick(0)], level,
                require_interval=False),
            "left_slope": inference.across_seeds(pick(1), level, require_interval=False),
            "right_slope": inference.across_seeds(pick(2), level, require_interval=False)}


def runs_of(summary: Mapping, knob: str, stat: str) -> list[dict]:
    """Every run of a sweep as ``{knob, value, seed, <stat>, sign_similarity,
    ntk_alignment}`` (None where a run lacks one: diverged or never probed)."""
    rows = []
    for i, value in enumerate(summary["values"]):
        for j, seed in enumerate(summary["seeds"]):
            row = {"knob": knob, "value": value, "seed": seed}
            for key in (stat, *LINEARITY):
                row[key] = summary[key]["by_value"][i]["values"][j]
            rows.append(row)
    return rows


def _spearman(rows: Sequence[Mapping], stat: str, metric: str, seed: int) -> dict:
    """Spearman correlation of ``stat`` with ``metric`` over ``rows``, bootstrapped."""
    pairs = [(r[metric], r[stat]) for r in rows if r[metric] is not None and r[stat] is not None]
    x, y = (np.array(p, np.float64) for p in zip(*pairs)) if pairs else (np.zeros(0),) * 2
    if len(x) < 3:
        return {"spearman": None, "interval": None, "num_runs": len(x)}
    rho, interval = inference.bootstrap_spearman(x, y, what=f"{stat} vs {metric}", seed=seed)
    return {"spearman": rho, "interval": list(interval), "num_runs": len(x)}


def collapse(rows: Sequence[Mapping], stat: str, seed: int = 0) -> dict:
    """Does ``stat`` follow end-of-training linearity whichever knob moved it?

    Per linearity metric: the Spearman correlation of ``stat`` with it over all
    ``rows`` (:func:`runs_of` of every sweep) and within each knob, each with a
    bootstrap interval over runs (None under 3 runs). One curve for all knobs
    shows as pooled and per-knob correlations that agree.
    """
    knobs = list(dict.fromkeys(r["knob"] for r in rows))
    return {metric: {"all": _spearman(rows, stat, metric, seed),
                     "by_knob": {k: _spearman([r for r in rows if r["knob"] == k], stat,
                                              metric, seed) for k in knobs}}
            for metric in LINEARITY}
