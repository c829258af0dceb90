"""Seed-level intervals and rank statistics against t tables, closed forms,
brute-force loops and (when installed) scipy."""

import math

import numpy as np
import pytest

from lazy_hasty.analysis.inference import (across_seed_summary, across_seeds, bootstrap_spearman,
                                           spearman, t_quantile)
from lazy_hasty.rng import numpy_rng

# Two-sided table values t_{p, df}.
TABLE = [(0.975, 1, 12.70620474), (0.975, 4, 2.776445105), (0.975, 9, 2.262157163),
         (0.975, 3, 3.182446305), (0.95, 9, 1.833112933), (0.995, 2, 9.924843201)]


def _brute_spearman(x, y):
    """Pearson correlation of average ranks, by loops: rank = 1 + #smaller + (#equal - 1) / 2."""
    rank = lambda a: [1 + sum(b < v for b in a) + (sum(b == v for b in a) - 1) / 2 for v in a]
    rx, ry = rank(list(x)), rank(list(y))
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    return cov / math.sqrt(sum((a - mx) ** 2 for a in rx) * sum((b - my) ** 2 for b in ry))


@pytest.mark.parametrize("p, df, expected", TABLE)
def test_t_quantile_table_values(p, df, expected):
    assert t_quantile(p, df) == pytest.approx(expected, abs=1e-8)
    assert t_quantile(1 - p, df) == pytest.approx(-expected, abs=1e-8)


def test_t_quantile_matches_scipy():
    stats = pytest.importorskip("scipy.stats")
    for df in (1, 2, 3, 5, 10, 30, 100, 1000, 0.5, 7.5):
        for p in (0.5, 0.6, 0.9, 0.975, 0.995, 0.9995, 0.05):
            assert t_quantile(p, df) == pytest.approx(stats.t.ppf(p, df), rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("p, df", [(0.0, 3), (1.0, 3), (np.nan, 3), (0.9, 0), (0.9, -1)])
def test_t_quantile_bad_input_raises(p, df):
    with pytest.raises(ValueError, match="0 < p < 1 and df > 0"):
        t_quantile(p, df)


def test_across_seeds_closed_form():
    # 1..5: mean 3, sd sqrt(2.5), half-width t_{0.975,4} * sqrt(2.5 / 5).
    got = across_seeds([1.0, 2.0, 3.0, 4.0, 5.0])
    half = 2.776445105 * math.sqrt(0.5)
    assert got["mean"] == 3.0 and got["num_seeds"] == 5
    np.testing.assert_allclose(got["interval"], [3 - half, 3 + half], rtol=1e-9)
    assert (got["positive"], got["negative"], got["zero"]) == (5, 0, 0)
    assert (got["min"], got["max"]) == (1.0, 5.0)


def test_across_seeds_drops_missing_and_counts_signs():
    values = [0.5, None, -0.2, math.nan, 0.0, 1.5]
    got = across_seeds(values)
    # Kept 0.5, -0.2, 0.0, 1.5: mean 0.45, sd by hand, t_{0.975,3} from the table.
    sd = math.sqrt(sum((v - 0.45) ** 2 for v in (0.5, -0.2, 0.0, 1.5)) / 3)
    half = 3.182446305 * sd / 2
    assert got["values"] is not values and got["values"][:3] == [0.5, None, -0.2]
    assert got["num_seeds"] == 4 and got["mean"] == pytest.approx(0.45)
    np.testing.assert_allclose(got["interval"], [0.45 - half, 0.45 + half], rtol=1e-9)
    assert (got["positive"], got["negative"], got["zero"]) == (2, 1, 1)
    assert (got["min"], got["max"]) == (-0.2, 1.5)


def test_across_seed_summary_of_per_seed_results():
    # Seeds 0, 2, 3 have the statistic (1, 2, 4); seed 1 is missing. Mean 7/3, sd with
    # ddof=1 sqrt(7/3), half-width t_{0.975,2} = 4.30265273 (table) times sd / sqrt(3).
    results = [{"h": 1.0, "h_interval": [0.5, 1.5]}, None,
               {"h": 2.0, "h_interval": [1.0, 3.0], "other": 9.0}, {"h": 4.0}]
    got = across_seed_summary("h", results)
    half = 4.30265273 * math.sqrt(7 / 3) / math.sqrt(3)
    assert list(got) == ["values", "num_seeds", "mean", "interval", "positive", "negative",
                         "zero", "min", "max", "per_seed_intervals"]
    assert got["values"] == [1.0, None, 2.0, 4.0] and got["num_seeds"] == 3
    assert got["mean"] == pytest.approx(7 / 3, abs=1e-12)
    np.testing.assert_allclose(got["interval"], [7 / 3 - half, 7 / 3 + half], rtol=1e-8)
    assert (got["positive"], got["negative"], got["zero"]) == (3, 0, 0)
    assert (got["min"], got["max"]) == (1.0, 4.0)
    assert got["per_seed_intervals"] == [[0.5, 1.5], None, [1.0, 3.0], None]
    one = across_seed_summary("h", [None, {"h": -0.5, "h_interval": [-1.0, 0.0]}])
    assert (one["mean"], one["interval"], one["negative"]) == (-0.5, None, 1)
    assert one["per_seed_intervals"] == [None, [-1.0, 0.0]]


def test_across_seeds_level_and_constant_values():
    got = across_seeds(list(range(10)), level=0.90)
    half = 1.833112933 * float(np.std(range(10), ddof=1)) / math.sqrt(10)
    np.testing.assert_allclose(got["interval"], [4.5 - half, 4.5 + half], rtol=1e-9)
    assert across_seeds([0.25, 0.25, 0.25])["interval"] == [0.25, 0.25]


def test_across_seeds_too_few_seeds():
    with pytest.raises(ValueError, match="needs at least 2 seeds; got 1"):
        across_seeds([0.3, None])
    one = across_seeds([0.3, None], require_interval=False)
    assert one["interval"] is None and one["mean"] == 0.3 and one["num_seeds"] == 1
    none = across_seeds([None, math.nan], require_interval=False)
    assert none["mean"] is None and none["min"] is None and none["num_seeds"] == 0


@pytest.mark.parametrize("values, level, match", [
    ([1.0, 2.0], 1.0, "level must lie strictly between 0 and 1"),
    ([1.0, 2.0], 0.0, "level must lie strictly between 0 and 1"),
    ([1.0, math.inf], 0.95, "must be finite"),
])
def test_across_seeds_bad_input_raises(values, level, match):
    with pytest.raises(ValueError, match=match):
        across_seeds(values, level)


def test_spearman_constructed():
    x = np.arange(8.0)
    assert spearman(x, x ** 3) == 1.0
    assert spearman(x, -np.exp(x)) == -1.0
    # x ranks 1, 2.5, 2.5, 4 against 1..4: 4.5 / sqrt(4.5 * 5) = sqrt(0.9).
    assert spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(math.sqrt(0.9), rel=1e-12)


def test_spearman_matches_brute_force_and_scipy():
    rng = np.random.default_rng(1)
    x = rng.integers(0, 6, 50).astype(float)          # many ties
    y = x + rng.integers(0, 4, 50)
    assert spearman(x, y) == pytest.approx(_brute_spearman(x, y), rel=1e-12)
    try:
        from scipy.stats import spearmanr
    except ImportError:
        return
    assert spearman(x, y) == pytest.approx(spearmanr(x, y).statistic, rel=1e-12)


def test_spearman_drops_nan_pairs_and_undefined_is_nan():
    x = np.array([1.0, np.nan, 3.0, 4.0, 2.0, 5.0])
    y = np.array([2.0, 9.0, 1.0, np.nan, 4.0, 3.0])
    keep = [0, 2, 4, 5]
    assert spearman(x, y) == pytest.approx(_brute_spearman(x[keep], y[keep]), rel=1e-12)
    assert math.isnan(spearman([1.0, 2.0, 3.0], [4.0, 4.0, 4.0]))
    assert math.isnan(spearman([1.0, np.nan], [np.nan, 2.0]))


@pytest.mark.parametrize("x, y", [(np.ones((2, 3)), np.ones((2, 3))), (np.ones(3), np.ones(4))])
def test_spearman_bad_shapes_raise(x, y):
    with pytest.raises(ValueError, match="1-D of equal length"):
        spearman(x, y)


def test_bootstrap_spearman_matches_loop_and_is_seeded():
    rng = np.random.default_rng(2)
    x = rng.standard_normal(30)
    y = x + rng.standard_normal(30)
    value, (lo, hi) = bootstrap_spearman(x, y, what="t", num_resamples=200, seed=5)
    # Oracle: the same resampled pairs, brute-force correlation, 2.5/97.5 percentiles.
    draws = numpy_rng(5, "bootstrap_spearman", "t")
    reps = [_brute_spearman(x[d], y[d]) for d in (draws.integers(0, 30, 30) for _ in range(200))]
    assert value == pytest.approx(_brute_spearman(x, y), rel=1e-12)
    np.testing.assert_allclose([lo, hi], np.quantile(reps, [0.025, 0.975]), rtol=1e-12)
    assert lo < value < hi
    assert bootstrap_spearman(x, y, what="t", num_resamples=200, seed=5) == (value, (lo, hi))
    assert bootstrap_spearman(x, y, what="t", num_resamples=200, seed=6)[1] != (lo, hi)


def test_bootstrap_spearman_monotone_is_one():
    x = np.linspace(0.0, 1.0, 25)
    assert bootstrap_spearman(x, np.log1p(x), what="t", num_resamples=100) == (1.0, (1.0, 1.0))


@pytest.mark.parametrize("kwargs, match", [
    ({"num_resamples": 0}, "num_resamples must be at least 1"),
    ({"level": 1.5}, "level must lie strictly between 0 and 1"),
])
def test_bootstrap_spearman_bad_input_raises(kwargs, match):
    with pytest.raises(ValueError, match=match):
        bootstrap_spearman(np.arange(4.0), np.arange(4.0), what="t", **kwargs)
