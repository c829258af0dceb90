"""Choosing a learning rate from a grid, and the slope of log eta* against log x, on
constructed tables with hand-computed answers."""

import math

import numpy as np
import pytest

from lazy_hasty.analysis.lr_search import parabola_vertex, select, slope_across_seeds

T_975_2 = 4.302652729911275          # Student-t 0.975 quantile, 2 degrees of freedom


def test_best_mean_wins_among_rates_no_seed_diverged_at():
    rates = [0.1, 0.2, 0.4, 0.8]
    scores = [[1.0, 1.2, 1.1],          # mean 1.1
              [0.5, 0.7, 0.6],          # mean 0.6: chosen
              [0.2, None, 0.3],         # best for seeds 0 and 2, but seed 1 diverged
              [0.9, 0.8, math.nan]]     # NaN: as diverged
    got = select(rates, scores, lower_is_better=True)
    assert got["chosen_index"] == 1 and got["chosen_rate"] == 0.2
    assert got["mean"] == pytest.approx([1.1, 0.6, None, None])
    assert got["per_seed_best_rates"] == [0.4, 0.2, 0.4]
    assert got["at_edge"] is False
    assert got["refined"] is None                  # a neighbour is ineligible


def test_higher_is_better_flips_the_choice():
    scores = [[0.5, 0.7], [0.9, 0.8], [0.6, 0.2]]
    got = select([1.0, 2.0, 4.0], scores, lower_is_better=False)
    assert got["chosen_rate"] == 2.0 and got["per_seed_best_rates"] == [2.0, 2.0]
    assert got["mean"] == pytest.approx([0.6, 0.85, 0.4])
    assert select([1.0, 2.0, 4.0], scores, lower_is_better=True)["chosen_rate"] == 4.0


@pytest.mark.parametrize("lower_is_better", [True, False])
def test_refined_is_the_vertex_of_the_parabola_through_the_means(lower_is_better):
    """Means on c (log eta - log 0.25)^2 + d; per-seed offsets that cancel in the mean."""
    rates = [0.05, 0.1, 0.2, 0.4]
    sign = 1 if lower_is_better else -1
    mean = [sign * (3.0 * (math.log(r) - math.log(0.25)) ** 2 + 0.1) for r in rates]
    scores = [[m - 0.01, m + 0.03, m - 0.02] for m in mean]
    got = select(rates, scores, lower_is_better)
    assert got["chosen_index"] == 2 and got["at_edge"] is False
    assert got["refined"] == pytest.approx(math.log(0.25), abs=1e-12)


def test_ties_go_to_the_smaller_rate():
    # Rates 2 and 3 tie: 2 is chosen, and the parabola through (log 1, 0.5),
    # (log 2, 0.3), (log 3, 0.3) is symmetric about the midpoint of log 2 and log 3.
    got = select([1.0, 2.0, 3.0], [[0.5, 0.5], [0.3, 0.3], [0.3, 0.3]], lower_is_better=True)
    assert got["chosen_index"] == 1 and got["per_seed_best_rates"] == [2.0, 2.0]
    assert got["refined"] == pytest.approx(math.log(math.sqrt(6.0)), abs=1e-12)


@pytest.mark.parametrize("scores, chosen", [([[0.1, 0.2], [0.5, 0.6], [0.9, 0.9]], 0),
                                            ([[0.9, 0.9], [0.5, 0.6], [0.1, 0.2]], 2)])
def test_a_choice_at_the_grid_edge_is_flagged_and_not_refined(scores, chosen):
    got = select([0.01, 0.1, 1.0], scores, lower_is_better=True)
    assert got["chosen_index"] == chosen and got["at_edge"] is True and got["refined"] is None


def test_no_eligible_rate_chooses_none_but_keeps_each_seeds_best():
    got = select([0.1, 1.0], [[None, 0.3], [0.2, math.inf]], lower_is_better=True)
    assert got["chosen_index"] is None and got["chosen_rate"] is None
    assert got["at_edge"] is None and got["refined"] is None
    assert got["mean"] == [None, None]
    assert got["per_seed_best_rates"] == [1.0, 0.1]


def test_parabola_vertex_closed_form_and_orientation():
    x = [0.0, 1.0, 4.0]                                   # unevenly spaced
    y = [2.0 * (xi - 1.5) ** 2 + 3.0 for xi in x]
    assert parabola_vertex(x, y, lower_is_better=True) == pytest.approx(1.5, abs=1e-12)
    assert parabola_vertex(x, y, lower_is_better=False) is None     # a minimum, not a maximum
    assert parabola_vertex(x, [-v for v in y], lower_is_better=False) == pytest.approx(1.5)
    assert parabola_vertex(x, [1.0, 2.0, 5.0], lower_is_better=True) is None   # a line


@pytest.mark.parametrize("rates, scores", [([0.2, 0.1], [[1.0], [2.0]]),
                                           ([0.0, 0.1], [[1.0], [2.0]]),
                                           ([0.1, 0.2], [[1.0], [2.0, 3.0]]),
                                           ([0.1, 0.2], [[1.0]])])
def test_select_refuses_a_malformed_grid(rates, scores):
    with pytest.raises(ValueError, match="grid|scores"):
        select(rates, scores, lower_is_better=True)


def test_slope_per_seed_then_t_interval_over_seeds():
    """eta* = c x^s on the selected side (x <= 4) with s = -1, -0.5, -0.75 per seed, and
    another power beyond it; seed 1 has no eta* at x = 2 (its other points still fit)."""
    x = [1.0, 2.0, 4.0, 8.0, 16.0]
    slopes, scale = [-1.0, -0.5, -0.75], [0.3, 1.0, 0.01]
    table = [[c * xi ** (s if xi <= 4 else 2.0) for s, c in zip(slopes, scale)] for xi in x]
    table[1][1] = None
    got = slope_across_seeds(x, table, mask=[xi <= 4 for xi in x])
    assert got["values"] == pytest.approx(slopes, abs=1e-12)
    half = T_975_2 * 0.25 / math.sqrt(3)                  # sd of the slopes: 0.25
    assert got["mean"] == pytest.approx(-0.75)
    assert got["interval"] == pytest.approx([-0.75 - half, -0.75 + half])
    everywhere = slope_across_seeds(x, table)["values"]   # the other side bends the fit
    assert not np.allclose(everywhere, slopes)


def test_slope_is_the_least_squares_line_and_needs_two_points():
    # log x = 0, 1, 2 against log eta = 0, 1, 1: slope 0.5. Seed 1 has one point: none.
    x = [1.0, math.e, math.e ** 2]
    got = slope_across_seeds(x, [[1.0, 3.0], [math.e, None], [math.e, None]])
    assert got["values"][0] == pytest.approx(0.5, abs=1e-12) and got["values"][1] is None
    assert got["num_seeds"] == 1 and got["interval"] is None
