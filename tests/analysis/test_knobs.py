"""Richness knobs compared (lazy_hasty.analysis.knobs) on constructed rates and runs."""

import math

import numpy as np

import pytest

from lazy_hasty.analysis import inference, knobs


def test_applied_best_rates_scale_each_seeds_best_and_keep_missing_ones():
    search = {"per_seed_best_rates": [0.1, None, 0.4]}
    assert knobs.applied_best_rates(search, 2.5) == [0.25, None, 1.0]


def _power_law_rates(x, lazy_slopes, rich_slope, crossover):
    """Seed j's rate: c_j x^lazy_slopes[j] up to the crossover, then continuous with
    slope rich_slope."""
    rates = []
    for xi in x:
        row = []
        for j, slope in enumerate(lazy_slopes):
            c = 0.3 * (j + 1)
            at_c = c * crossover ** slope
            row.append(c * xi ** slope if xi <= crossover else at_c * (xi / crossover) ** rich_slope)
        rates.append(row)
    return rates


def test_rate_scaling_fits_each_side_of_the_crossover_per_seed():
    x = [0.01, 0.1, 1.0, 10.0, 100.0]
    rates = _power_law_rates(x, [2.0, 2.1, 2.2], 2 / 3, crossover=1.0)
    rates[0][1] = None                       # a seed without a best rate at one gamma
    out = knobs.rate_scaling(x, rates, crossover=1.0, depth=3)
    lazy, rich = out["lazy_side"], out["rich_side"]
    assert lazy["points"] == 3 and rich["points"] == 3
    assert lazy["values"] == pytest.approx([2.0, 2.1, 2.2], abs=1e-12)
    half = inference.t_quantile(0.975, 2) * 0.1 / math.sqrt(3)
    assert lazy["mean"] == pytest.approx(2.1, abs=1e-12)
    assert lazy["interval"] == pytest.approx([2.1 - half, 2.1 + half], abs=1e-12)
    assert rich["values"] == pytest.approx([2 / 3] * 3, abs=1e-12)
    assert (lazy["predicted"], rich["predicted"]) == (2.0, pytest.approx(2 / 3))


def test_rate_scaling_at_another_crossover_moves_the_split():
    x = [0.1, 1.0, 10.0, 100.0]
    rates = _power_law_rates(x, [2.0, 2.0], 0.5, crossover=10.0)
    out = knobs.rate_scaling(x, rates, crossover=10.0, depth=4)
    assert out["lazy_side"]["points"] == 3 and out["rich_side"]["points"] == 2
    assert out["lazy_side"]["mean"] == pytest.approx(2.0)
    assert out["rich_side"]["mean"] == pytest.approx(0.5)
    assert out["rich_side"]["predicted"] == 0.5


SUMMARY = {"values": [1.0, 10.0], "seeds": [3, 4],
           "hastiness": {"by_value": [{"values": [0.1, 0.2]}, {"values": [None, 0.4]}]},
           "sign_similarity": {"by_value": [{"values": [0.9, 0.8]}, {"values": [None, 0.5]}]},
           "ntk_alignment": {"by_value": [{"values": [0.7, 0.6]}, {"values": [None, 0.3]}]}}


def test_runs_of_lists_every_value_and_seed():
    rows = knobs.runs_of(SUMMARY, "gamma", "hastiness")
    assert [(r["value"], r["seed"]) for r in rows] == [(1.0, 3), (1.0, 4), (10.0, 3), (10.0, 4)]
    assert rows[1] == {"knob": "gamma", "value": 1.0, "seed": 4, "hastiness": 0.2,
                       "sign_similarity": 0.8, "ntk_alignment": 0.6}
    assert rows[2]["hastiness"] is None and rows[2]["sign_similarity"] is None


def _row(knob, stat, sign, ntk):
    return {"knob": knob, "value": 1.0, "seed": 0, "hastiness": stat,
            "sign_similarity": sign, "ntk_alignment": ntk}


def test_collapse_pooled_and_per_knob_spearman_by_hand():
    rows = [_row("a", 0.0, 0.9, 0.1), _row("a", 0.1, 0.8, 0.2), _row("a", 0.2, 0.7, 0.3),
            _row("b", 0.3, 0.6, 0.9), _row("b", 0.4, 0.5, 0.8), _row("b", 0.5, 0.4, 0.7),
            _row("b", None, 0.3, 0.6)]                     # a run without its statistic
    out = knobs.collapse(rows, "hastiness")
    sign, ntk = out["sign_similarity"], out["ntk_alignment"]
    # Hastiness falls monotonically with sign similarity across both knobs: one curve.
    assert sign["all"]["spearman"] == pytest.approx(-1.0)
    assert sign["all"]["interval"] == pytest.approx([-1.0, -1.0])
    assert sign["all"]["num_runs"] == 6
    assert sign["by_knob"]["a"]["spearman"] == pytest.approx(-1.0)
    # NTK alignment: ranks (1,2,3,6,5,4) against (1..6): rho = 1 - 6 * 8 / (6 * 35).
    assert ntk["all"]["spearman"] == pytest.approx(1 - 48 / 210)
    assert ntk["by_knob"]["a"]["spearman"] == pytest.approx(1.0)
    assert ntk["by_knob"]["b"]["spearman"] == pytest.approx(-1.0)


def test_collapse_under_three_runs_gives_no_correlation():
    rows = [_row("a", 0.0, 0.9, 0.1), _row("a", 0.1, 0.8, 0.2)]
    assert knobs.collapse(rows, "hastiness")["sign_similarity"]["all"] == {
        "spearman": None, "interval": None, "num_runs": 2}


def test_fitted_break_finds_the_kink_and_both_slopes_per_seed():
    x = [0.001, 0.01, 0.1, 1.0, 10.0, 100.0]
    # Seed 0 bends at 0.1, seed 1 at 1 (slopes 2 then 0.5), with a None at one x.
    rates = [[(xi / c) ** (2.0 if xi <= c else 0.5) for c in (0.1, 1.0)] for xi in x]
    rates[5][0] = None
    out = knobs.fitted_break(x, rates)
    assert out["log10_break"]["values"] == pytest.approx([-1.0, 0.0])
    assert out["left_slope"]["values"] == pytest.approx([2.0, 2.0])
    assert out["right_slope"]["values"] == pytest.approx([0.5, 0.5])
    assert knobs.rate_scaling(x, rates, 1.0, 4)["fitted_break"] == out


def test_fitted_break_picks_the_least_squares_split_by_hand():
    # log-log points (0,0), (1,1), (2,2), (3,2.5), (4,2): a split at 2 leaves the right
    # side (2,2),(3,2.5),(4,2) with SSE 1/6; at 3 the left side has SSE 0.075 and the
    # right two points none: 3 wins.
    x = list(np.exp([0.0, 1.0, 2.0, 3.0, 4.0]))
    rates = [[r] for r in np.exp([0.0, 1.0, 2.0, 2.5, 2.0])]
    out = knobs.fitted_break(x, rates)
    assert out["log10_break"]["values"] == pytest.approx([3.0 / np.log(10)])
    assert out["left_slope"]["values"] == pytest.approx([0.85])
    assert out["right_slope"]["values"] == pytest.approx([-0.5])
