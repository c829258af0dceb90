"""Equal progress: threshold crossings, first-passage alignment onto a common grid and
hastiness, against hand-computed answers, closed forms, loop oracles and numpy."""

import jax.numpy as jnp
import numpy as np
import pytest

from lazy_hasty.analysis import progress


def _brute_first_crossings(curves, thresholds):
    """Loop oracle: first index with loss <= t, -1 if none."""
    curves = np.asarray(curves)
    out = np.full(curves.shape[:-1] + (len(thresholds),), -1, int)
    for idx in np.ndindex(curves.shape[:-1]):
        for k, t in enumerate(thresholds):
            for s, v in enumerate(curves[idx]):
                if v <= t:
                    out[idx + (k,)] = s
                    break
    return out


def test_monotone_curve_known_answer():
    curve = np.array([0.7, 0.6, 0.5, 0.45, 0.35, 0.25, 0.2], np.float32)
    got = progress.first_crossings(curve, [0.55, 0.4, 0.3])
    np.testing.assert_array_equal(got, [2, 4, 5])
    assert got.shape == (3,)


def test_spike_first_crossing_counts():
    # Dips below 0.4 at step 2, spikes back up, then settles below at step 6.
    curve = np.array([0.7, 0.5, 0.39, 0.6, 0.55, 0.45, 0.3, 0.2])
    got = progress.first_crossings(curve, [0.5, 0.4, 0.25])
    np.testing.assert_array_equal(got, [1, 2, 7])


def test_touching_threshold_exactly_counts():
    curve = np.array([0.7, 0.5, 0.5, 0.3], np.float32)
    got = progress.first_crossings(curve, np.array([0.5, 0.3], np.float32))
    np.testing.assert_array_equal(got, [1, 3])
    # Just above the threshold does not count.
    got = progress.first_crossings(np.array([0.7, 0.5000001, 0.6]), [0.5])
    np.testing.assert_array_equal(got, [-1])


def test_never_reached_is_minus_one():
    curve = np.array([0.69, 0.6, 0.55, 0.52])
    np.testing.assert_array_equal(progress.first_crossings(curve, [0.6, 0.5, 0.3]), [1, -1, -1])


def test_nan_tail_is_not_a_crossing():
    curve = np.array([0.69, 0.45, np.nan, np.nan])
    np.testing.assert_array_equal(progress.first_crossings(curve, [0.5, 0.3]), [1, -1])


def test_batched_shapes_match_loop_oracle():
    rng = np.random.default_rng(0)
    # Noisy decreasing curves with spikes: (runs=5, seeds=3, steps=40).
    steps = np.arange(40)
    curves = (0.7 * np.exp(-steps / 15.0) + 0.05 * rng.standard_normal((5, 3, 40))
              ).astype(np.float32)
    curves[0, 0] = 0.9                               # one curve never moves
    thresholds = [0.5, 0.3, 0.1, 0.01]
    got = progress.first_crossings(curves, thresholds)
    assert got.shape == (5, 3, 4)
    np.testing.assert_array_equal(got, _brute_first_crossings(curves, thresholds))
    np.testing.assert_array_equal(got[0, 0], [-1, -1, -1, -1])
    assert (got >= 0).any() and (got == -1).any()
    # 2-d (runs, steps) x T, the yin-yang layout.
    got2 = progress.first_crossings(curves[:, 0], thresholds)
    assert got2.shape == (5, 4)
    np.testing.assert_array_equal(got2, got[:, 0])


def test_reached_matches_comparison():
    loss = jnp.array([0.6, 0.4, 0.3])
    thr = jnp.array([0.5, 0.4])
    np.testing.assert_array_equal(np.asarray(progress.reached(loss, thr)),
                                  [[False, False], [True, True], [True, True]])


def test_check_thresholds_accepts_and_returns_float64():
    t = progress.check_thresholds([0.5, 0.4, 0.3], np.log(2.0))
    assert t.dtype == np.float64
    np.testing.assert_array_equal(t, [0.5, 0.4, 0.3])


@pytest.mark.parametrize("thresholds, match", [
    ([0.3, 0.4], "strictly decreasing"),
    ([0.5, 0.5], "strictly decreasing"),
    ([0.7, 0.4], r"must lie in \(0, 0\.6931\)"),
    ([np.log(2.0)], "must lie in"),                 # equal to the initial loss
    ([0.5, 0.0], "must lie in"),
    ([0.5, -0.1], "must lie in"),
    ([], "non-empty"),
    ([[0.5, 0.4]], "non-empty"),
])
def test_check_thresholds_errors(thresholds, match):
    with pytest.raises(ValueError, match=match):
        progress.check_thresholds(thresholds, float(np.log(2.0)))


def _numpy_masked_mean(values, mask):
    values, mask = np.asarray(values, np.float64), np.asarray(mask, bool)
    out = np.full(values.shape[1:], np.nan)
    for idx in np.ndindex(values.shape[1:]):
        m = mask[(slice(None),) + idx[:mask.ndim - 1]]
        if m.any():
            out[idx] = values[(slice(None),) + idx][m].mean()
    return out


def test_masked_mean_matches_numpy_with_nan_where_empty():
    rng = np.random.default_rng(1)
    values = rng.standard_normal((6, 3, 7)).astype(np.float32)   # (R, T, M)
    mask = rng.random((6, 3)) < 0.5                               # (R, T)
    mask[:, 1] = False                                            # threshold 1: no run
    mask[2, 0] = mask[0, 2] = True
    got = np.asarray(progress.masked_mean(jnp.asarray(values), jnp.asarray(mask), axis=0))
    want = _numpy_masked_mean(values, mask)
    assert got.shape == (3, 7)
    assert np.isnan(got[1]).all()
    assert np.isfinite(got[[0, 2]]).all()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)   # NaNs compare equal


def test_masked_mean_same_shape_mask():
    values = jnp.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    mask = jnp.array([[True, False], [True, False], [False, False]])
    got = np.asarray(progress.masked_mean(values, mask))
    assert got[0] == pytest.approx(2.0)
    assert np.isnan(got[1])

def _loop_at_progress(prog, metric, grid, decreasing=True):
    """Oracle: walk the records, stop at the first one at/after each level, interpolate."""
    prog, metric = np.asarray(prog, float), np.asarray(metric, float)
    out = np.full((len(grid),) + metric.shape[1:], np.nan)
    for g, level in enumerate(grid):
        for i, p in enumerate(prog):
            if (p <= level) if decreasing else (p >= level):
                if i == 0:
                    out[g] = metric[0]
                else:
                    t = (level - prog[i - 1]) / (p - prog[i - 1])
                    out[g] = metric[i - 1] + t * (metric[i] - metric[i - 1])
                break
    return out


def test_linear_interpolation_between_records():
    prog = [1.0, 0.8, 0.4, 0.2]
    metric = [0.0, 10.0, 20.0, 30.0]
    got = progress.at_progress(prog, metric, np.array([1.0, 0.9, 0.6, 0.2, 0.1, 1.5]))
    np.testing.assert_allclose(got[:4], [0.0, 5.0, 15.0, 30.0], atol=1e-12)
    assert np.isnan(got[4])                      # never reached
    assert got[5] == 0.0                         # above the start: reached at record 0


def test_first_passage_for_non_monotone_progress():
    prog = [1.0, 0.5, 0.9, 0.3]                  # dips below 0.7 at record 1, comes back
    metric = [0.0, 10.0, 20.0, 30.0]
    got = progress.at_progress(prog, metric, np.array([0.7, 0.4]))
    np.testing.assert_allclose(got, [6.0, 20.0 + 10.0 * 5.0 / 6.0], atol=1e-12)


def test_increasing_progress():
    prog = [0.1, 0.3, 0.7]
    metric = [1.0, 2.0, 3.0]
    got = progress.at_progress(prog, metric, np.array([0.2, 0.5, 0.7, 0.8]), decreasing=False)
    np.testing.assert_allclose(got[:3], [1.5, 2.5, 3.0], atol=1e-12)
    assert np.isnan(got[3])


def test_trailing_axes_match_per_column_oracle():
    rng = np.random.default_rng(0)
    prog = np.cumsum(-rng.uniform(0.0, 0.2, 25)) + 2.0 + rng.normal(0, 0.05, 25)
    metric = rng.normal(size=(25, 3, 2))
    grid = np.linspace(2.1, 0.0, 40)
    got = progress.at_progress(prog, metric, grid)
    assert got.shape == (40, 3, 2)
    np.testing.assert_allclose(got, _loop_at_progress(prog, metric, grid), equal_nan=True,
                               atol=1e-12)
    for a in range(3):
        for b in range(2):
            np.testing.assert_allclose(got[:, a, b],
                                       progress.at_progress(prog, metric[:, a, b], grid),
                                       equal_nan=True)


def test_random_increasing_matches_oracle():
    rng = np.random.default_rng(1)
    prog = np.cumsum(rng.uniform(-0.02, 0.1, 30))
    metric = rng.uniform(size=30)
    grid = np.linspace(prog[0], prog.max() + 0.1, 50)
    np.testing.assert_allclose(progress.at_progress(prog, metric, grid, decreasing=False),
                               _loop_at_progress(prog, metric, grid, decreasing=False),
                               equal_nan=True, atol=1e-12)


def test_common_grid_decreasing_and_increasing():
    grid = progress.common_grid(np.array([2.0, 1.0, 0.5]), np.array([1.8, 0.9, 0.7]), num=12)
    np.testing.assert_allclose(grid, np.linspace(1.8, 0.7, 12))
    # Non-monotone: the range ends at each run's best value, not its last.
    grid = progress.common_grid(np.array([0.1, 0.5, 0.9, 0.8]), np.array([0.2, 0.6, 0.4]),
                                decreasing=False, num=5)
    np.testing.assert_allclose(grid, np.linspace(0.2, 0.6, 5))
    assert len(progress.common_grid(np.array([1.0, 0.0]), np.array([1.0, 0.0]))) == 100


def test_common_grid_of_many_curves():
    # Decreasing: from the lowest start (1.8) to the highest minimum (0.8, the third curve's).
    curves = [np.array([2.0, 1.0, 0.5]), np.array([1.8, 0.9, 0.7]),
              np.array([1.9, 1.2, 0.8, 1.0])]
    np.testing.assert_allclose(progress.common_grid(*curves, num=6),
                               [1.8, 1.6, 1.4, 1.2, 1.0, 0.8], atol=1e-15)
    # Increasing: from the highest start (0.3) to the lowest maximum (0.6, reached then lost).
    curves = [np.array([0.1, 0.5, 0.9]), np.array([0.2, 0.6, 0.4]), np.array([0.3, 0.95])]
    np.testing.assert_allclose(progress.common_grid(*curves, decreasing=False, num=4),
                               [0.3, 0.4, 0.5, 0.6], atol=1e-15)
    np.testing.assert_allclose(progress.common_grid(np.array([1.0, 0.0]), num=3),
                               [1.0, 0.5, 0.0])


@pytest.mark.parametrize("curves, match", [
    ([[2.0, 1.0], [1.8, 0.9], [0.8, 0.5]], "share no progress range"),  # the third starts late
    ([[2.0, 1.0], []], "a curve is empty"),
    ([], "a curve is empty"),
])
def test_common_grid_of_many_curves_without_a_shared_range_raises(curves, match):
    with pytest.raises(progress.NoCommonProgressError, match=match):
        progress.common_grid(*map(np.array, curves))


@pytest.mark.parametrize("a, b, decreasing", [
    ([1.0, 0.9], [0.8, 0.5], True),              # b starts below a's best
    ([0.7, 0.7], [0.7, 0.7], True),              # nobody moves
    ([0.1, 0.2], [0.3, 0.5], False),
    ([0.3, 0.3], [0.3, 0.2], False),
])
def test_common_grid_no_overlap_raises(a, b, decreasing):
    with pytest.raises(ValueError, match="share no progress range"):
        progress.common_grid(np.array(a), np.array(b), decreasing=decreasing)


def _linear_curves(prog, slope_easy, slope_hard, shift=0.0):
    prog = np.asarray(prog)
    return 0.9 + slope_easy * prog + shift, 0.3 + slope_hard * prog


def test_hastiness_identical_curves_is_zero():
    p = np.linspace(2.3, 0.2, 30)
    easy, hard = _linear_curves(p, -0.2, -0.1)
    assert progress.hastiness(p, easy, hard, p, easy, hard) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("c", [0.25, -0.1])
def test_hastiness_constant_gap_difference(c):
    # Metrics linear in progress are interpolated exactly, whatever the record spacing.
    p_nl = 2.3 * np.exp(-np.linspace(0, 3, 40))            # faster, unevenly spaced
    p_lin = np.linspace(2.3, 0.5, 17)
    easy_nl, hard_nl = _linear_curves(p_nl, -0.3, -0.05, shift=c)
    easy_lin, hard_lin = _linear_curves(p_lin, -0.3, -0.05)
    got = progress.hastiness(p_nl, easy_nl, hard_nl, p_lin, easy_lin, hard_lin)
    assert got == pytest.approx(c, abs=1e-12)
    assert np.sign(got) == np.sign(c)          # positive: the non-linear gap is larger


def test_hastiness_gap_difference_linear_in_progress():
    # gap_nl - gap_lin = k * p, averaged over the uniform grid from 2.0 down to 0.5.
    k = 0.4
    p_nl = np.linspace(2.0, 0.1, 23)
    p_lin = np.linspace(2.5, 0.5, 11)
    easy_nl, hard_nl = 1.0 - 0.2 * p_nl + k * p_nl, 0.5 - 0.1 * p_nl
    easy_lin, hard_lin = 1.0 - 0.2 * p_lin, 0.5 - 0.1 * p_lin
    got = progress.hastiness(p_nl, easy_nl, hard_nl, p_lin, easy_lin, hard_lin, num=101)
    assert got == pytest.approx(k * (2.0 + 0.5) / 2, abs=1e-12)


def test_hastiness_increasing_progress_and_trailing_axes():
    p_nl, p_lin = np.linspace(0.1, 0.9, 12), np.linspace(0.1, 0.6, 9)
    shifts = np.array([0.0, 0.1, -0.3])
    easy_nl = (0.2 + p_nl)[:, None] + shifts
    hard_nl = np.repeat((0.1 + 0.5 * p_nl)[:, None], 3, 1)
    easy_lin = np.repeat((0.2 + p_lin)[:, None], 3, 1)
    hard_lin = np.repeat((0.1 + 0.5 * p_lin)[:, None], 3, 1)
    got = progress.hastiness(p_nl, easy_nl, hard_nl, p_lin, easy_lin, hard_lin,
                             decreasing=False)
    np.testing.assert_allclose(got, shifts, atol=1e-12)


def _correct_curves(rng, num_records, num_examples, rates):
    """0/1 correctness: example j becomes correct at a random record, earlier if easy."""
    onset = rng.exponential(rates * num_records)            # (examples,)
    return (np.arange(num_records)[:, None] >= onset[None, :]).astype(np.uint8)


def _bootstrap_problem(n_easy, n_hard, seed=0):
    rng = np.random.default_rng(seed)
    rates = np.concatenate([np.full(n_easy, 0.2), np.full(n_hard, 0.8)])
    c_nl = _correct_curves(rng, 30, n_easy + n_hard, rates)
    c_lin = _correct_curves(rng, 25, n_easy + n_hard, rates * 1.5)
    p_nl = 2.3 * np.exp(-np.linspace(0, 2.5, 30))
    p_lin = 2.3 * np.exp(-np.linspace(0, 1.5, 25))
    easy, hard = np.arange(n_easy), np.arange(n_easy, n_easy + n_hard)
    return p_nl, c_nl, p_lin, c_lin, easy, hard


def test_bootstrap_point_estimate_is_hastiness_of_group_means():
    p_nl, c_nl, p_lin, c_lin, easy, hard = _bootstrap_problem(40, 30)
    value, (lo, hi) = progress.bootstrap_hastiness(p_nl, c_nl, p_lin, c_lin, easy, hard,
                                                   num_resamples=100)
    want = progress.hastiness(p_nl, c_nl[:, easy].mean(1), c_nl[:, hard].mean(1),
                              p_lin, c_lin[:, easy].mean(1), c_lin[:, hard].mean(1))
    assert value == pytest.approx(float(want), abs=1e-12)
    assert lo <= value <= hi and lo < hi


def test_bootstrap_single_example_groups_have_zero_width():
    p_nl, c_nl, p_lin, c_lin, _, _ = _bootstrap_problem(5, 5)
    easy, hard = np.array([1]), np.array([7])
    value, (lo, hi) = progress.bootstrap_hastiness(p_nl, c_nl, p_lin, c_lin, easy, hard,
                                                   num_resamples=50)
    want = progress.hastiness(p_nl, c_nl[:, 1].astype(float), c_nl[:, 7].astype(float),
                              p_lin, c_lin[:, 1].astype(float), c_lin[:, 7].astype(float))
    assert value == pytest.approx(float(want), abs=1e-12)
    assert lo == pytest.approx(value, abs=1e-12) and hi == pytest.approx(value, abs=1e-12)


def test_bootstrap_interval_shrinks_with_group_size():
    def width(n):
        p_nl, c_nl, p_lin, c_lin, easy, hard = _bootstrap_problem(n, n, seed=3)
        _, (lo, hi) = progress.bootstrap_hastiness(p_nl, c_nl, p_lin, c_lin, easy, hard,
                                                   num_resamples=200)
        return hi - lo

    small, large = width(10), width(640)
    # Standard errors scale as 1/sqrt(n): 8x narrower expected; ask for 3x.
    assert large < small / 3


def test_bootstrap_deterministic_given_seed():
    args = _bootstrap_problem(20, 20)
    a = progress.bootstrap_hastiness(*args, num_resamples=60, seed=7)
    b = progress.bootstrap_hastiness(*args, num_resamples=60, seed=7)
    c = progress.bootstrap_hastiness(*args, num_resamples=60, seed=8)
    assert a == b
    assert a[0] == c[0] and a[1] != c[1]


def test_bootstrap_level_widens_interval():
    args = _bootstrap_problem(30, 30)
    _, (lo50, hi50) = progress.bootstrap_hastiness(*args, num_resamples=200, level=0.5)
    _, (lo95, hi95) = progress.bootstrap_hastiness(*args, num_resamples=200, level=0.95)
    assert lo95 <= lo50 <= hi50 <= hi95 and hi95 - lo95 > hi50 - lo50


def test_hard_advantage_closed_form():
    # Accuracy linear in progress, sampled at different records per run:
    # lin - nl = 0.1 * p at every level, whose mean over linspace(1, 0) is 0.05.
    p_nl, p_lin = np.linspace(1, 0, 11), np.linspace(1, 0, 21)
    acc_nl, acc_lin = 1 - p_nl, 1 - 0.9 * p_lin
    value = progress.hard_advantage(p_nl, acc_nl, p_lin, acc_lin)
    assert value == pytest.approx(0.05, abs=1e-12)
    swapped = progress.hard_advantage(p_lin, acc_lin, p_nl, acc_nl)
    assert swapped == pytest.approx(-0.05, abs=1e-12)


def test_bootstrap_hard_advantage_point_estimate_and_interval():
    p_nl, c_nl, p_lin, c_lin, _, hard = _bootstrap_problem(20, 40)
    value, (lo, hi) = progress.bootstrap_hard_advantage(p_nl, c_nl, p_lin, c_lin, hard,
                                                        num_resamples=100)
    want = progress.hard_advantage(p_nl, c_nl[:, hard].mean(1), p_lin, c_lin[:, hard].mean(1))
    assert value == pytest.approx(float(want), abs=1e-12)
    assert lo <= value <= hi and lo < hi
    one = np.array([hard[3]])
    value1, (lo1, hi1) = progress.bootstrap_hard_advantage(p_nl, c_nl, p_lin, c_lin, one,
                                                           num_resamples=20)
    assert lo1 == pytest.approx(value1, abs=1e-12) and hi1 == pytest.approx(value1, abs=1e-12)
