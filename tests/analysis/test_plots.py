"""Fig. 1 plotting on tiny synthetic records."""

import matplotlib.image as mpimg
import numpy as np
import pytest

from lazy_hasty.data.yinyang import sample_train, yinyang_labels
from lazy_hasty.data.yinyang import grid_points as make_grid
from lazy_hasty.analysis.plots import fig1_figsize, grid_to_image, plot_fig1, pretty_name

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
        "alpha=100": labels[None] * np.linspace(0.1, 0.3, t)[:, None] + 0.01 * rng.random((t, res * res)),
        "linearized": -0.8 * labels[None] * np.ones((t, 1)),
    }
    return dict(train_points=np.asarray(x), train_labels=np.asarray(y), steps=steps,
                loss_curves=curves, thresholds=thresholds, grid_points=g, delta_maps=deltas)


def test_plot_fig1_writes_png_with_shared_symmetric_scale(tmp_path):
    rec = _records()
    path = tmp_path / "fig1.png"
    dpi = 50
    vmax = plot_fig1(str(path), dpi=dpi, **rec)
    data = path.read_bytes()
    assert len(data) > 1000 and data[:8] == PNG_MAGIC
    img = mpimg.imread(path)
    w, h = fig1_figsize(len(rec["thresholds"]), len(rec["delta_maps"]))
    assert img.shape[:2] == (round(h * dpi), round(w * dpi))
    expected = max(np.abs(m).max() for m in rec["delta_maps"].values())
    assert vmax == pytest.approx(expected)
    assert vmax == pytest.approx(0.8)  # set by the "linearized" row, shared by all


def test_plot_fig1_single_threshold_single_reference_and_nans(tmp_path):
    rec = _records(thresholds=(0.4,))
    rec["delta_maps"] = {"alpha=100": rec["delta_maps"]["alpha=100"].copy()}
    rec["delta_maps"]["alpha=100"][0, :5] = np.nan  # threshold not reached everywhere
    rec["steps"] = rec["steps"] + 1  # strictly positive: plain log axis
    rec["loss_curves"] = {"alpha=1": rec["loss_curves"]["alpha=1"][0]}  # one run, 1d
    path = tmp_path / "fig1_small.png"
    vmax = plot_fig1(str(path), dpi=40, **rec)
    assert path.read_bytes()[:8] == PNG_MAGIC
    assert vmax == pytest.approx(np.nanmax(np.abs(rec["delta_maps"]["alpha=100"])))


def test_grid_to_image_and_names():
    g = np.asarray(make_grid(6))
    img = grid_to_image(g.T)  # (2, 6, 6) indexed [.., x2, x1]
    assert img.shape == (2, 6, 6)
    assert np.all(np.diff(img[0], axis=1) > 0) and np.all(np.diff(img[1], axis=0) > 0)
    with pytest.raises(ValueError):
        grid_to_image(np.zeros(10))
    assert pretty_name("alpha=100") == "α=100" and pretty_name("linearized") == "linearized"
