"""Inference over seeds (Student-t intervals) and rank statistics (Spearman, bootstrapped).

A statistic measured once per seed is summarized across seeds by its mean and
a Student-t interval, with the sign counts that say how often the effect goes
each way. The t quantile is computed here (regularized incomplete beta by
continued fraction, inverted by bisection) so the library needs only numpy.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from lazy_hasty.rng import numpy_rng

_TINY = 1e-300


def _check_level(level: float) -> None:
    """Raises a one-line ValueError unless ``level`` is a probability strictly in (0, 1)."""
    if not 0 < level < 1:
        raise ValueError(f"level must lie strictly between 0 and 1 (e.g. 0.95), got {level!r}")


def _beta_fraction(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta (modified Lentz); converges for
    ``x < (a + 1) / (a + b + 2)``."""
    nonzero = lambda v: v if abs(v) > _TINY else _TINY
    c, d = 1.0, 1.0 / nonzero(1.0 - (a + b) * x / (a + 1.0))
    h = d
    for m in range(1, 10_000):
        even = m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m))
        odd = -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))
        for coef in (even, odd):
            d = 1.0 / nonzero(1.0 + coef * d)
            c = nonzero(1.0 + coef / c)
            h *= c * d
        if abs(c * d - 1.0) < 1e-15:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta ``I_x(a, b)``, via the symmetry that keeps the fraction fast."""
    if x <= 0.0 or x >= 1.0:
        return float(x >= 1.0)
    log_front = (math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                 + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_fraction(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_fraction(b, a, 1.0 - x) / b


def _t_upper_tail(t: float, df: float) -> float:
    """``P(T > t)`` for ``t >= 0`` and Student-t ``T`` with ``df`` degrees of freedom."""
    return 0.5 * _betainc(df / 2.0, 0.5, df / (df + t * t))


def t_quantile(p: float, df: float) -> float:
    """The ``p`` quantile of Student's t with ``df`` degrees of freedom (like scipy's ``t.ppf``).

    Bisection on the upper tail, so the result is accurate to about 1e-12 relative.
    """
    if not 0 < p < 1 or not df > 0:
        raise ValueError(f"t_quantile needs 0 < p < 1 and df > 0, got p={p!r}, df={df!r}")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    tail, lo, hi = 1.0 - p, 0.0, 1.0
    while _t_upper_tail(hi, df) > tail:
        lo, hi = hi, 2.0 * hi
    while hi - lo > 1e-13 * hi:
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if _t_upper_tail(mid, df) > tail else (lo, mid)
    return 0.5 * (lo + hi)


def across_seeds(values: Sequence[float | None], level: float = 0.95, *,
                 require_interval: bool = True) -> dict:
    """Mean, Student-t ``level`` interval and sign counts of one statistic over seeds.

    None and NaN (a seed without the statistic) are dropped. The interval is
    ``mean ± t_{(1+level)/2, n-1} · sd / √n`` (``sd`` with ddof=1); it needs
    2 seeds, and with ``require_interval=False`` fewer give ``interval: None``.
    """
    _check_level(level)
    kept = np.array([v for v in values if v is not None and not math.isnan(v)], np.float64)
    if np.isinf(kept).any():
        raise ValueError(f"across-seed values must be finite (or None/NaN), got {list(values)}")
    n = len(kept)
    if n < 2 and require_interval:
        raise ValueError(f"an across-seed interval needs at least 2 seeds; got {n} "
                         "(run more seeds, or pass require_interval=False)")
    mean = float(kept.mean()) if n else None
    interval = None
    if n >= 2:
        half = t_quantile((1 + level) / 2, n - 1) * float(kept.std(ddof=1)) / math.sqrt(n)
        interval = [mean - half, mean + half]
    return {"values": list(values), "num_seeds": n, "mean": mean, "interval": interval,
            "positive": int((kept > 0).sum()), "negative": int((kept < 0).sum()),
            "zero": int((kept == 0).sum()),
            "min": float(kept.min()) if n else None, "max": float(kept.max()) if n else None}


def across_seed_summary(stat: str, per_seed_results: Sequence[Mapping | None],
                        level: float = 0.95) -> dict:
    """:func:`across_seeds` of ``stat`` over per-seed results, with each seed's own
    (bootstrap) interval ``<stat>_interval`` kept alongside as ``per_seed_intervals``.

    ``per_seed_results`` holds one mapping per seed (a run's ``summary.json`` or
    statistics); None, or a mapping without ``stat``, is a seed without it. The
    interval over seeds is None under 2 seeds.
    """
    values = [r.get(stat) if r else None for r in per_seed_results]
    return {**across_seeds(values, level, require_interval=False),
            "per_seed_intervals": [r.get(f"{stat}_interval") if r else None
                                   for r in per_seed_results]}


def average_ranks(a: np.ndarray) -> np.ndarray:
    """1-based ranks of ``a``, tied values sharing the mean of their ranks."""
    _, inverse, counts = np.unique(a, return_inverse=True, return_counts=True)
    return (np.cumsum(counts) - (counts - 1) / 2.0)[inverse]


def _paired(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``x`` and ``y`` as 1-D float arrays of equal length, pairs with a NaN dropped."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if x.ndim != 1 or x.shape != y.shape:
        raise ValueError(f"x and y must be 1-D of equal length, got shapes {x.shape} "
                         f"and {y.shape}")
    keep = ~(np.isnan(x) | np.isnan(y))
    return x[keep], y[keep]


def _rank_correlation(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation of the average ranks; NaN under 2 pairs or with a constant side."""
    if len(x) < 2:
        return math.nan
    rx, ry = average_ranks(x), average_ranks(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    scale = math.sqrt(float(rx @ rx) * float(ry @ ry))
    return float(np.clip(rx @ ry / scale, -1.0, 1.0)) if scale > 0 else math.nan


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman rank correlation of ``x`` and ``y`` with average ranks for ties.

    Pairs with a NaN on either side are dropped (e.g. censored learning times).
    NaN when it is undefined: fewer than 2 pairs, or a constant side.
    """
    return _rank_correlation(*_paired(x, y))


def bootstrap_spearman(x: np.ndarray, y: np.ndarray, *, what: str, num_resamples: int = 1000,
                       seed: int = 0, level: float = 0.95
                       ) -> tuple[float, tuple[float, float]]:
    """:func:`spearman` and its percentile ``level`` interval over pairs resampled with
    replacement.

    Resamples where the correlation is undefined (a constant side) are left out.
    The draws are stream ``("bootstrap_spearman", what)`` of ``seed`` (``what``: the
    correlation's name; :mod:`lazy_hasty.rng`).
    """
    _check_level(level)
    if num_resamples < 1:
        raise ValueError(f"num_resamples must be at least 1, got {num_resamples}")
    x, y = _paired(x, y)
    rng = numpy_rng(seed, "bootstrap_spearman", what)
    draws = (rng.integers(0, len(x), len(x)) for _ in range(num_resamples if len(x) else 0))
    reps = np.array([_rank_correlation(x[d], y[d]) for d in draws])
    reps = reps[~np.isnan(reps)]
    tail = (1 - level) / 2
    lo, hi = np.quantile(reps, [tail, 1 - tail]) if reps.size else (math.nan, math.nan)
    return _rank_correlation(x, y), (float(lo), float(hi))
