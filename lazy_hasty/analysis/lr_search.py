"""Choosing a learning rate from a grid, and how the best rate scales with another quantity.

A learning-rate search trains every seed at every rate of a grid and scores
each run (:data:`CRITERIA`: the progress it reached, or the step at which it
reached a target). :func:`select` picks the rate with the best mean score over
seeds, the same way for every sweep value, so the compared runs are each at
their own tuned rate rather than at one rate tuned for one of them; it also
says whether the choice sits at the grid's edge (the optimum may lie outside
it) and refines it between grid points. :func:`slope_across_seeds` fits how
the best rate scales with a swept quantity (``log eta*`` against ``log x``),
seed by seed, with an across-seed Student-t interval.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Optional

import numpy as np

from lazy_hasty.analysis import inference

CRITERIA = ("train_loss", "progress", "steps_to_target")
"""How a search run is scored: ``"train_loss"``, the training loss at its last
record (lower is better; Atanasov et al. 2025 pick the rate by the loss after a
fixed number of steps); ``"progress"``, the spec's progress measure at its last
record; ``"steps_to_target"``, the step of its first record reaching a target
(fewer is better; never reached scores as worst)."""


def _costs(scores: Sequence[Sequence[Optional[float]]], lower_is_better: bool) -> np.ndarray:
    """``scores`` as a (grid, seeds) float array where lower is better; NaN: worst."""
    table = np.array([[math.nan if s is None else s for s in row] for row in scores],
                     np.float64)
    table[~np.isfinite(table)] = math.nan
    return table if lower_is_better else -table


def _best(costs: np.ndarray) -> Optional[int]:
    """The index of the lowest cost (the first on ties), None if every cost is NaN."""
    return None if np.isnan(costs).all() else int(np.nanargmin(costs))


def parabola_vertex(x: Sequence[float], y: Sequence[float], lower_is_better: bool
                    ) -> Optional[float]:
    """The abscissa of the vertex of the parabola through three points ``(x[i], y[i])``
    (distinct ``x``), None unless it opens toward the better side (a minimum when
    lower is better, a maximum otherwise)."""
    (x0, x1, x2), (y0, y1, y2) = map(float, x), map(float, y)
    slope01 = (y1 - y0) / (x1 - x0)
    curvature = ((y2 - y1) / (x2 - x1) - slope01) / (x2 - x0)
    if not (curvature > 0 if lower_is_better else curvature < 0):
        return None
    return (x0 + x1) / 2 - slope01 / (2 * curvature)


def _check_grid(rates: Sequence[float], scores: Sequence[Sequence]) -> None:
    """One-line ValueErrors unless ``rates`` ascend above 0 and ``scores`` has one
    equally long, non-empty row per rate."""
    if not rates or any(r <= 0 for r in rates) or any(
            a >= b for a, b in zip(rates[:-1], rates[1:])):
        raise ValueError(f"learning-rate grid {list(rates)} must be non-empty, positive and "
                         "strictly ascending")
    if len(scores) != len(rates) or len({len(row) for row in scores}) != 1 or not scores[0]:
        raise ValueError(f"scores must hold one row per grid rate ({len(rates)}), each with "
                         "one entry per seed (the same number, at least one)")


def select(rates: Sequence[float], scores: Sequence[Sequence[Optional[float]]],
           lower_is_better: bool) -> dict:
    """The best learning rate of a grid from per-seed scores.

    ``rates``: the grid, ascending; ``scores[i][j]``: seed ``j``'s score at rate
    ``i`` (None or NaN: it diverged or never reached the target, the worst).
    A rate where any seed scored worst is ineligible (a rate that diverges
    for some seeds is no choice). Returns ``mean`` (per rate, over seeds; None
    where ineligible), ``chosen_index`` and ``chosen_rate`` (the best mean, the
    smaller rate on ties; None when no rate is eligible), ``per_seed_best_rates``
    (each seed's own best, None if it has none), ``at_edge`` (the choice is the
    grid's first or last rate: the optimum may lie beyond) and ``refined``: the
    natural log of the rate at the vertex of the parabola through the means at
    the chosen rate and its two neighbours against log rate (None at an edge,
    with an ineligible neighbour, or when it does not open toward the better side).
    """
    _check_grid(rates, scores)
    costs = _costs(scores, lower_is_better)
    mean_cost = costs.mean(axis=1)                     # NaN wherever a seed is NaN
    chosen = _best(mean_cost)
    per_seed = [_best(costs[:, j]) for j in range(costs.shape[1])]
    refined = None
    if chosen is not None and 0 < chosen < len(rates) - 1 and not np.isnan(
            mean_cost[chosen - 1:chosen + 2]).any():
        refined = parabola_vertex(np.log(rates[chosen - 1:chosen + 2]),
                                  mean_cost[chosen - 1:chosen + 2], lower_is_better=True)
    sign = 1.0 if lower_is_better else -1.0
    return {"mean": [None if math.isnan(c) else sign * float(c) for c in mean_cost],
            "chosen_index": chosen,
            "chosen_rate": None if chosen is None else float(rates[chosen]),
            "per_seed_best_rates": [None if i is None else float(rates[i]) for i in per_seed],
            "at_edge": None if chosen is None else chosen in (0, len(rates) - 1),
            "refined": refined}


def _least_squares_slope(u: np.ndarray, v: np.ndarray) -> Optional[float]:
    """The slope of the least-squares line of ``v`` on ``u`` (None under two distinct ``u``)."""
    if len(np.unique(u)) < 2:
        return None
    du = u - u.mean()
    return float(du @ (v - v.mean()) / (du @ du))


def slope_across_seeds(x: Sequence[float], best_rates: Sequence[Sequence[Optional[float]]],
                       mask: Optional[Sequence[bool]] = None, level: float = 0.95) -> dict:
    """How the best learning rate scales with ``x``: the slope of ``log eta*`` against
    ``log x``, fitted per seed, summarized over seeds.

    ``best_rates[i][j]``: seed ``j``'s best rate at ``x[i]`` (None: it has none,
    e.g. every rate diverged); ``mask`` selects the ``x`` fitted (e.g. one side of
    a crossover; default all). Each seed's slope is its least-squares line over
    its selected points (None under two); the result is
    :func:`lazy_hasty.analysis.inference.across_seeds` of those slopes (``values``:
    the per-seed slopes; ``interval``: the Student-t ``level`` interval of their
    mean, None under two seeds).
    """
    x = np.asarray(x, np.float64)
    keep = np.ones(len(x), bool) if mask is None else np.asarray(mask, bool)
    if len(best_rates) != len(x) or keep.shape != x.shape or (x[keep] <= 0).any():
        raise ValueError(f"best_rates and mask need one entry per x ({len(x)}), and the "
                         "selected x must be > 0")
    slopes = []
    for column in zip(*best_rates):
        points = [(xi, eta) for xi, eta, k in zip(x, column, keep) if k and eta is not None]
        u, v = np.log(np.array(points, np.float64).reshape(-1, 2)).T
        slopes.append(_least_squares_slope(u, v))
    return inference.across_seeds(slopes, level, require_interval=False)
