"""The figures on tiny synthetic records: what each plot function draws (axes, titles,
labels, the data of every curve) against the records or inputs it was drawn from."""

import matplotlib
import matplotlib.image as mpimg
import matplotlib.pyplot as plt
import numpy as np
import pytest

from lazy_hasty import difficulty, linearity
from lazy_hasty.data.yinyang import sample_train, yinyang_labels
from lazy_hasty.data.yinyang import grid_points as make_grid
from lazy_hasty.analysis.plots import (fig1_figsize, grid_to_image, plot_difficulty, plot_fig1,
                                       plot_learning_times, plot_seed_bands, plot_sweep,
                                       pretty_name)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _records(res=12, n_steps=30, runs=4, thresholds=(0.5, 0.3, 0.1)):
    import jax

    rng = np.random.default_rng(0)
    x, y = sample_train(jax.random.key(0), 40)
    steps = np.arange(n_steps)
    decay = np.exp(-steps / 8.0)
    curves = {
        "alpha=1": 0.7 * decay[None] + 0.02 * rng.random((runs, n_steps)),
        "alpha=100": 0.7 * decay[None] ** 0.5 + 0.02 * rng.random((runs, n_steps)),
    }
    g = np.asarray(make_grid(res))
    labels = np.asarray(yinyang_labels(g))
    t = len(thresholds)
    deltas = {
        "alpha=100": (labels[None] * np.linspace(0.1, 0.3, t)[:, None]
                      + 0.01 * rng.random((t, res * res))),
        "linearized": -0.8 * labels[None] * np.ones((t, 1)),
    }
    return dict(train_points=np.asarray(x), train_labels=np.asarray(y), steps=steps,
                loss_curves=curves, thresholds=thresholds, grid_points=g, delta_maps=deltas)


def _pixel_of_each_point(grid):
    """(row, column) of each grid point in an ``origin="lower"`` image: the rank of its
    x2 among the grid's x2 values, and of its x1."""
    return [np.searchsorted(np.unique(grid[:, k]), grid[:, k]) for k in (1, 0)]


def test_plot_fig1_draws_set_losses_and_maps_on_one_symmetric_scale(tmp_path):
    rec = _records()
    path = tmp_path / "fig1.png"
    dpi = 50
    fig = plot_fig1(str(path), dpi=dpi, **rec)
    img = mpimg.imread(path)
    w, h = fig1_figsize(len(rec["thresholds"]), len(rec["delta_maps"]))
    assert img.shape[:2] == (round(h * dpi), round(w * dpi))
    training, losses, *maps, colorbar = fig.axes
    assert len(maps) == 3 * 2                        # thresholds x linear references
    # (a): each class of the training set where it lies.
    assert training.get_title() == "(a) training set (one seed)"
    assert (training.get_xlabel(), training.get_ylabel()) == ("$x_1$", "$x_2$")
    for points, label in zip(training.collections, (1, -1)):
        np.testing.assert_array_equal(points.get_offsets(),
                                      rec["train_points"][rec["train_labels"] == label])
    # (b): the median over runs of each regime against the step, then the thresholds.
    assert losses.get_title() == "(b) training loss (median, 10–90% band)"
    assert (losses.get_xlabel(), losses.get_ylabel()) == ("step", "train loss")
    assert losses.get_xscale() == "symlog"           # step 0 is drawn
    curves = losses.get_lines()
    assert len(curves) == 2 + 3                      # regimes, then thresholds
    for line, (name, runs) in zip(curves, rec["loss_curves"].items()):
        assert line.get_label() == pretty_name(name)
        np.testing.assert_allclose(line.get_xydata(),
                                   np.c_[rec["steps"], np.median(runs, axis=0)])
    assert [line.get_ydata()[0] for line in curves[2:]] == list(rec["thresholds"])
    assert len(losses.collections) == 2              # one quantile band per regime
    # (c, d, e) per reference: its map at each threshold, pixel by grid point.
    # One colour scale for all: [-vmax, vmax], vmax set by the linearized row.
    vmax = max(np.abs(m).max() for m in rec["delta_maps"].values())
    assert vmax == pytest.approx(0.8)
    rows, cols = _pixel_of_each_point(rec["grid_points"])
    for k, ax in enumerate(maps):
        ref, t = list(rec["delta_maps"])[k // 3], k % 3
        assert ax.get_title() == (f"({'cde'[t]}) Δloss at train loss {rec['thresholds'][t]:g}"
                                  f"\n(vs {pretty_name(ref)})")
        (image,) = ax.get_images()
        np.testing.assert_array_equal(image.get_array()[rows, cols], rec["delta_maps"][ref][t])
        assert image.get_clim() == pytest.approx((-vmax, vmax))
        # Cell-centred points: the cells, half a spacing beyond them, tile the square.
        np.testing.assert_allclose(image.get_extent(), [-1, 1, -1, 1], atol=1e-6)
    assert colorbar.get_ylabel().startswith("Δloss = non-linear − linear")
    plt.close(fig)


def test_plot_fig1_single_threshold_single_reference_and_nans(tmp_path):
    rec = _records(thresholds=(0.4,))
    rec["delta_maps"] = {"alpha=100": rec["delta_maps"]["alpha=100"].copy()}
    rec["delta_maps"]["alpha=100"][0, :5] = np.nan  # threshold not reached everywhere
    rec["steps"] = rec["steps"] + 1  # strictly positive: plain log axis
    rec["loss_curves"] = {"alpha=1": rec["loss_curves"]["alpha=1"][0]}  # one run, 1d
    path = tmp_path / "fig1_small.png"
    fig = plot_fig1(str(path), dpi=40, **rec)
    assert path.read_bytes()[:8] == PNG_MAGIC
    training, losses, delta, colorbar = fig.axes
    assert losses.get_xscale() == "log" and len(losses.collections) == 0   # one run: no band
    np.testing.assert_array_equal(losses.get_lines()[0].get_xydata(),
                                  np.c_[rec["steps"], rec["loss_curves"]["alpha=1"]])
    vmax = np.nanmax(np.abs(rec["delta_maps"]["alpha=100"]))
    assert delta.get_images()[0].get_clim() == pytest.approx((-vmax, vmax))
    plt.close(fig)


def test_grid_to_image_and_names():
    g = np.asarray(make_grid(6))
    img = grid_to_image(g.T)  # (2, 6, 6) indexed [.., x2, x1]
    assert img.shape == (2, 6, 6)
    assert np.all(np.diff(img[0], axis=1) > 0) and np.all(np.diff(img[1], axis=0) > 0)
    with pytest.raises(ValueError):
        grid_to_image(np.zeros(10))
    assert pretty_name("alpha=100") == "α=100" and pretty_name("linearized") == "linearized"


# ------------------------------------------------------------------ Figs. 2-3

TOY = difficulty.DifficultySpec("toy", easy="train/easy", hard="train/hard")
# A decreasing training loss per regime; accuracies piecewise linear in it.
LOSS = {"alpha=1": [2.0, 1.5, 1.0, 0.6, 0.5], "alpha=100": [2.0, 1.6, 1.2, 0.9, 0.7]}
EASY = {"alpha=1": [0.1, 0.5, 0.8, 0.9, 1.0], "alpha=100": [0.1, 0.3, 0.6, 0.7, 0.8]}
HARD = {"alpha=1": [0.0, 0.1, 0.2, 0.5, 0.7], "alpha=100": [0.0, 0.2, 0.3, 0.5, 0.6]}
SIGN = {"alpha=1": [1.0, None, 0.6, None, 0.2], "alpha=100": [1.0, None, 0.95, None, 0.9]}


def _difficulty_records():
    """Records of two regimes; the probe's metrics every other record, as in a run."""
    rows = []
    for regime in LOSS:
        for step in range(5):
            row = {"regime": regime, "step": step, "train_loss": LOSS[regime][step],
                   "train/easy/accuracy": EASY[regime][step],
                   "train/hard/accuracy": HARD[regime][step]}
            if SIGN[regime][step] is not None:
                row.update({m: SIGN[regime][step] for m in linearity.METRICS})
            rows.append(row)
    return rows


def _at_loss(loss, values, x):
    """``values`` read at losses ``x`` along a decreasing loss (np.interp wants it rising)."""
    return np.interp(x, np.asarray(loss, float)[::-1], np.asarray(values, float)[::-1])


def test_plot_difficulty_draws_each_group_of_each_regime_at_equal_loss(tmp_path):
    fig = plot_difficulty(str(tmp_path / "fig2.png"), _difficulty_records(),
                          regimes=["alpha=1", "alpha=100"], spec=TOY, dpi=30)
    assert (tmp_path / "fig2.png").read_bytes()[:8] == PNG_MAGIC
    panel, *metrics = fig.axes
    assert len(metrics) == len(linearity.METRICS) == 3
    assert panel.get_title() == "toy: easy and hard\n- α=1, -- α=100"
    assert (panel.get_xlabel(), panel.get_ylabel()) == ("mean training loss", "accuracy")
    assert panel.xaxis_inverted()                     # the loss falls: progress goes right
    assert [t.get_text() for t in panel.get_legend().get_texts()] == ["easy", "hard"]
    drawn = iter(panel.get_lines())
    for regime, style in (("alpha=1", "-"), ("alpha=100", "--")):
        for accuracy, colour in ((EASY, "tab:green"), (HARD, "tab:red")):
            line = next(drawn)
            x, y = line.get_xydata().T
            assert (x[0], x[-1], len(x)) == (2.0, min(LOSS[regime]), 60)   # its loss range
            assert np.all(np.diff(x) < 0)
            np.testing.assert_allclose(y, _at_loss(LOSS[regime], accuracy[regime], x),
                                       atol=1e-12)
            assert line.get_linestyle() == style
            assert matplotlib.colors.same_color(line.get_color(), colour)
    assert next(drawn, None) is None
    for ax, metric in zip(metrics, linearity.METRICS):
        assert ax.get_title() == metric.replace("_", " ") and ax.xaxis_inverted()
        for line, regime in zip(ax.get_lines(), LOSS):
            x, y = line.get_xydata().T
            probed = [(l, s) for l, s in zip(LOSS[regime], SIGN[regime]) if s is not None]
            assert (x[0], x[-1], len(x)) == (2.0, probed[-1][0], 30)
            np.testing.assert_allclose(y, _at_loss(*zip(*probed), x), atol=1e-12)
    plt.close(fig)


# ------------------------------------------------------------------ Fig. 4

SHIFTS = (0.0, 0.05, -0.2)          # three seeds: median 0 (mean -0.05), band [-0.2, 0.05]


def test_plot_seed_bands_draws_median_and_band_on_the_shared_grid(tmp_path):
    runs = [[dict(r, **{"train/easy/accuracy": r["train/easy/accuracy"] + shift})
             for r in _difficulty_records()] for shift in SHIFTS]
    fig = plot_seed_bands(str(tmp_path / "fig4.png"), runs, regimes=["alpha=1", "alpha=100"],
                          panels=[("easy", "train/easy/accuracy"), ("none", "no/such/key")],
                          dpi=30)
    assert (tmp_path / "fig4.png").read_bytes()[:8] == PNG_MAGIC
    assert fig.get_suptitle() == "median and min–max over 3 seed(s), at equal progress"
    easy, none = fig.axes
    assert [ax.get_title() for ax in fig.axes] == ["easy", "none"]
    assert (easy.get_xlabel(), easy.get_ylabel()) == ("train loss", "accuracy")
    assert none.get_lines() == [] and none.get_ylabel() == "no/such/key"
    assert [t.get_text() for t in easy.get_legend().get_texts()] == ["α=1", "α=100"]
    # The seeds share their losses: the grid runs from 2.0 to the least progress
    # reached, alpha=100's 0.7, for both regimes.
    for line, band, regime in zip(easy.get_lines(), easy.collections, LOSS):
        x, y = line.get_xydata().T
        assert (x[0], x[-1], len(x)) == (2.0, 0.7, 100)
        median = _at_loss(LOSS[regime], EASY[regime], x)
        np.testing.assert_allclose(y, median, atol=1e-12)
        vx, vy = band.get_paths()[0].vertices.T
        at = _at_loss(LOSS[regime], EASY[regime], vx)
        edge = np.minimum(np.abs(vy - (at - 0.2)), np.abs(vy - (at + 0.05)))
        np.testing.assert_allclose(edge, 0.0, atol=1e-12)
        assert vy.min() == pytest.approx(median.min() - 0.2)
        assert vy.max() == pytest.approx(median.max() + 0.05)
    plt.close(fig)


# ------------------------------------------------------------------ learning times

# Six examples, three per ladder group; example 2 is never learned for good in "a".
TIMES = {"regimes": np.array(["a", "b"]), "ladder": np.array(["train/easy", "train/hard"]),
         "rank": np.array([0, 0, 0, 1, 1, 1]),
         "time_a": np.array([0.9, 0.5, np.nan, 0.3, 0.2, 0.7]),
         "censored_a": np.array([False, False, True, False, False, False]),
         "time_b": np.array([0.8, 0.8, 0.6, 0.4, 0.1, 0.5]),
         "censored_b": np.zeros(6, bool)}


def test_plot_learning_times_draws_cdfs_per_group_and_the_per_example_scatter(tmp_path):
    fig = plot_learning_times(str(tmp_path / "lt.png"), TIMES, TOY, ("a", "b"), dpi=30)
    assert (tmp_path / "lt.png").read_bytes()[:8] == PNG_MAGIC
    a, b, scatter = fig.axes
    assert a.get_title() == "a: learned for good (17% censored)"
    assert b.get_title() == "b: learned for good (0% censored)"
    assert (a.get_xlabel(), a.get_ylabel()) == ("mean training loss",
                                               "fraction of the group learned")
    assert a.xaxis_inverted() and scatter.xaxis_inverted() and scatter.yaxis_inverted()
    assert [t.get_text() for t in a.get_legend().get_texts()] == [
        "easy (33% censored)", "hard (0% censored)"]
    # Each group's learned times, latest progress last, against the fraction learned
    # of the whole group (the censored example counts in its group's three).
    (easy, hard) = [line.get_xydata() for line in a.get_lines()]
    np.testing.assert_allclose(easy, [[0.9, 1 / 3], [0.5, 2 / 3]])
    np.testing.assert_allclose(hard, [[0.7, 1 / 3], [0.3, 2 / 3], [0.2, 1.0]])
    assert all(line.get_drawstyle() == "steps-post" for line in a.get_lines())
    np.testing.assert_allclose(b.get_lines()[0].get_xydata(),
                               [[0.8, 1 / 3], [0.8, 2 / 3], [0.6, 1.0]])
    assert scatter.get_title() == "per example (1 censored left out)"
    assert (scatter.get_xlabel(), scatter.get_ylabel()) == ("a: mean training loss",
                                                           "b: mean training loss")
    easy_points, hard_points = (c.get_offsets() for c in scatter.collections)
    np.testing.assert_allclose(easy_points, [[0.9, 0.8], [0.5, 0.8]])
    np.testing.assert_allclose(hard_points, [[0.3, 0.4], [0.2, 0.1], [0.7, 0.5]])
    np.testing.assert_allclose(scatter.get_lines()[0].get_xydata(), [[0.1, 0.1], [0.9, 0.9]])
    plt.close(fig)


# ------------------------------------------------------------------ Fig. 5

def _row(value, seeds, mean=None, interval=None):
    return {"value": value, "values": seeds, "mean": mean, "interval": interval}


SWEEP = {"axis": "alpha", "values": [1.0, 10.0], "seeds": [0, 1], "reference": "linearized",
         "hastiness": {"by_value": [_row(1.0, [0.2, 0.4], 0.3, [0.1, 0.5]),
                                    _row(10.0, [0.1, None], 0.1, None)]},
         "sign_similarity": {"by_value": [_row(1.0, [0.5, 0.6]), _row(10.0, [0.9, 0.95])]},
         "ntk_alignment": {"by_value": [_row(1.0, [None, 0.3]), _row(10.0, [None, None])]}}


def test_plot_sweep_draws_the_statistic_along_the_axis_and_against_linearity(tmp_path):
    spec = difficulty.DifficultySpec("toy", easy="train/easy", hard="train/hard")
    fig = plot_sweep(str(tmp_path / "fig5.png"), SWEEP, spec, dpi=30)
    assert (tmp_path / "fig5.png").read_bytes()[:8] == PNG_MAGIC
    assert fig.get_suptitle() == "toy: 2 seeds"
    trend, sign, ntk = fig.axes
    assert trend.get_title() == "hastiness against linearized, per seed"
    assert (trend.get_xlabel(), trend.get_ylabel(), trend.get_xscale()) == (
        "alpha", "hastiness", "log")
    seeds_1, seeds_10, mean, low, high, zero = trend.get_lines()
    np.testing.assert_array_equal(seeds_1.get_xydata(), [[1.0, 0.2], [1.0, 0.4]])
    np.testing.assert_array_equal(seeds_10.get_xydata(), [[10.0, 0.1]])    # None left out
    np.testing.assert_array_equal(mean.get_xydata(), [[1.0, 0.3], [10.0, 0.1]])
    assert mean is trend.containers[0].lines[0]      # the error bar's
    caps = [np.asarray(cap.get_ydata(), float) for cap in (low, high)]
    np.testing.assert_allclose(caps, [[0.1, 0.1], [0.5, 0.1]])    # no interval: the mean
    assert zero.get_label() == "linearized (alpha -> inf): 0 by definition"
    assert list(zero.get_ydata()) == [0.0, 0.0]
    assert (sign.get_xlabel(), sign.get_ylabel()) == ("sign similarity at the end of training",
                                                     "hastiness")
    value_1, value_10 = sign.get_lines()            # (linearity, statistic) of each seed
    np.testing.assert_array_equal(value_1.get_xydata(), [[0.5, 0.2], [0.6, 0.4]])
    np.testing.assert_array_equal(value_10.get_xydata(), [[0.9, 0.1]])
    assert [t.get_text() for t in sign.get_legend().get_texts()] == ["alpha=1", "alpha=10"]
    (only,) = ntk.get_lines()                         # one seed of one value has both
    np.testing.assert_array_equal(only.get_xydata(), [[0.3, 0.4]])
    plt.close(fig)
