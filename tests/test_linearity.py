"""Linearity metrics against closed forms and hand computations."""

import jax.numpy as jnp
import numpy as np
import pytest

from lazy_hasty import linearity


def _psd(rng, n):
    a = rng.normal(size=(n, n))
    return a @ a.T


def test_kernel_alignment_matches_numpy_formula():
    rng = np.random.default_rng(0)
    k1, k2 = _psd(rng, 12), _psd(rng, 12)
    expected = np.trace(k1 @ k2) / (np.linalg.norm(k1) * np.linalg.norm(k2))
    np.testing.assert_allclose(linearity.kernel_alignment(k1, k2), expected, rtol=1e-5)
    # Known value: identity against a rank-one projector -> 1/sqrt(n).
    e = np.zeros((12, 12)); e[0, 0] = 1.0
    np.testing.assert_allclose(linearity.kernel_alignment(np.eye(12), e),
                               1 / np.sqrt(12), rtol=1e-6)


def test_kernel_alignment_properties():
    rng = np.random.default_rng(1)
    k1 = rng.normal(size=(5, 3, 5, 3))
    k1 = k1 + k1.transpose(2, 3, 0, 1)
    k2 = _psd(rng, 15).reshape(5, 3, 5, 3)
    ka = linearity.kernel_alignment
    np.testing.assert_allclose(ka(k1, k1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(ka(k1, k2), ka(k2, k1), rtol=1e-6)
    np.testing.assert_allclose(ka(3.7 * k1, 0.01 * k2), ka(k1, k2), rtol=1e-5)
    assert abs(float(ka(k1, k2))) < 0.99
    with pytest.raises(ValueError, match="shapes differ"):
        ka(np.eye(3), np.eye(4))


def test_sign_similarity_counts_every_unit():
    a0 = [jnp.array([[1.0, -1.0], [2.0, 3.0]]), jnp.array([[-1.0], [1.0]])]
    a1 = [jnp.array([[1.0, 1.0], [2.0, -3.0]]), jnp.array([[-2.0], [0.5]])]
    # 6 units in all, 2 flipped.
    np.testing.assert_allclose(linearity.sign_similarity(a0, a1), 4 / 6)
    np.testing.assert_allclose(linearity.sign_similarity(a0, a0), 1.0)


def test_representation_alignment_is_rotation_invariant():
    rng = np.random.default_rng(2)
    phi = rng.normal(size=(10, 6))
    q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    ra = linearity.representation_alignment
    np.testing.assert_allclose(ra(phi, phi @ q), 1.0, rtol=1e-5)
    other = rng.normal(size=(10, 6))
    g0, g1 = phi @ phi.T, other @ other.T
    expected = np.sum(g0 * g1) / (np.linalg.norm(g0) * np.linalg.norm(g1))
    np.testing.assert_allclose(ra(phi, other), expected, rtol=1e-5)
