"""Yin-yang toy: labels, training sampler and test grid."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lazy_hasty.data.yinyang import DISK_CENTRES, DISK_RADIUS, sample_train, yinyang_labels
from lazy_hasty.data.yinyang import grid_points as make_grid


@pytest.mark.parametrize(
    "point, label",
    [
        ((0.5, 0.5), -1.0),  # upper half plane
        ((-0.5, -0.5), 1.0),  # lower half plane
        ((0.5, -0.5), -1.0),  # centre of the lower disk
        ((-0.5, 0.5), 1.0),  # centre of the upper disk
        ((0.5, -0.5 + 0.29), -1.0),  # just inside the lower disk
        ((0.5, -0.5 + 0.31), 1.0),  # just outside it, still below the axis
        ((-0.5, 0.5 - 0.29), 1.0),  # just inside the upper disk
        ((-0.5, 0.5 - 0.31), -1.0),  # just outside it, above the axis
        ((0.3, 0.0), 1.0),  # exactly on x2 = 0 counts as the lower half
        ((-1.0, 1.0), -1.0),  # corner
    ],
)
def test_labels_at_known_points(point, label):
    assert float(yinyang_labels(np.array([point], np.float32))[0]) == label


def test_labels_numpy_and_jax_agree_and_are_float32():
    pts = np.random.default_rng(0).uniform(-1, 1, (500, 2)).astype(np.float32)
    a, b = yinyang_labels(pts), yinyang_labels(jnp.asarray(pts))
    assert isinstance(a, jax.Array) and a.dtype == jnp.float32 and a.shape == (500,)
    np.testing.assert_array_equal(a, b)
    assert set(np.unique(np.asarray(a))) <= {-1.0, 1.0}


def test_disk_area_fraction():
    g = make_grid(1000)
    flipped = yinyang_labels(g) != jnp.where(g[:, 1] <= 0, 1.0, -1.0)
    expected = 2 * np.pi * DISK_RADIUS**2 / 4  # two disks over the area 4 of the square
    assert abs(float(flipped.mean()) - expected) < 0.01 * expected
    assert len(DISK_CENTRES) == 2


def test_sample_train_shapes_range_determinism():
    key = jax.random.key(0)
    x, y = sample_train(key, 100)
    assert x.shape == (100, 2) and x.dtype == jnp.float32
    assert y.shape == (100,) and y.dtype == jnp.float32
    assert float(x.min()) >= -1.0 and float(x.max()) <= 1.0
    np.testing.assert_array_equal(y, yinyang_labels(x))
    x2, y2 = sample_train(jax.random.key(0), 100)
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)
    x3, _ = sample_train(jax.random.key(1), 100)
    assert not np.allclose(x, x3)
    assert sample_train(key)[0].shape == (100, 2)  # default n


def test_sample_train_vmaps_over_keys():
    keys = jax.random.split(jax.random.key(3), 5)
    xs, ys = jax.vmap(lambda k: sample_train(k, 64))(keys)
    assert xs.shape == (5, 64, 2) and ys.shape == (5, 64)
    one = jax.jit(sample_train, static_argnums=1)      # one compile for the 5 references
    for i in range(5):
        x, y = one(keys[i], 64)
        np.testing.assert_allclose(xs[i], x)
        np.testing.assert_array_equal(ys[i], y)
    assert not np.allclose(xs[0], xs[1])
    # both classes appear with a reasonable balance over many draws
    assert 0.3 < float((ys > 0).mean()) < 0.7


def test_grid_shape_spacing_bounds_and_layout():
    res = 10
    g = np.asarray(make_grid(res))
    assert g.shape == (res * res, 2) and g.dtype == np.float32
    coords = -1 + (np.arange(res) + 0.5) * 2 / res
    np.testing.assert_allclose(np.unique(g[:, 0]), coords, atol=1e-6)
    np.testing.assert_allclose(np.diff(coords), 2 / res)
    assert g.min() == pytest.approx(-1 + 1 / res) and g.max() == pytest.approx(1 - 1 / res)
    img = g.reshape(res, res, 2)  # [x2 index, x1 index]
    np.testing.assert_allclose(img[0, :, 0], coords, atol=1e-6)  # x1 varies fastest
    np.testing.assert_allclose(img[:, 0, 1], coords, atol=1e-6)  # x2 along rows
    assert np.all(img[:, :, 1] == img[:, :1, 1])  # rows share x2
    assert make_grid().shape == (100 * 100, 2)
