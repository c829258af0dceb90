"""Equal-progress helpers against hand-computed answers and numpy."""

import jax.numpy as jnp
import numpy as np
import pytest

from lazy_hasty import progress


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
