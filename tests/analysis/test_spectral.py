"""The initial kernel's closed-form prediction (lazy_hasty.analysis.spectral) against
matrix exponentials, brute force on a dense grid and hand-computed cases."""

import numpy as np
import pytest
from scipy.linalg import expm

from lazy_hasty.analysis import spectral


def _kernel(n=6, seed=0):
    a = np.random.default_rng(seed).normal(size=(n, n))
    return a @ a.T + 0.1 * np.eye(n)


def test_outputs_are_the_gradient_flow_solution():
    """f(tau) / C = (I - expm(-Kbar tau)) r0, the solution of df/dtau = -Kbar (f - C r0) / C."""
    kbar, y = _kernel(), np.array([0, 1, 2, 0, 1, 2])
    r0 = spectral.initial_residual(y, 3)
    values, vectors = spectral.eigenbasis(kbar)
    taus = [0.0, 0.05, 0.3, 2.0]
    got = spectral.outputs(values, vectors, r0, taus)
    for t, tau in enumerate(taus):
        np.testing.assert_allclose(got[t], (np.eye(6) - expm(-kbar * tau)) @ r0, atol=1e-12)
    assert np.all(np.diff(values) <= 0)


def test_class_averaged_and_initial_residual_by_hand():
    k = np.zeros((2, 2, 2, 2))
    k[:, 0, :, 0] = [[2.0, 1.0], [1.0, 4.0]]
    k[:, 1, :, 1] = [[4.0, 3.0], [3.0, 6.0]]
    k[0, 0, 1, 1] = 100.0                              # off the class diagonal: ignored
    np.testing.assert_allclose(spectral.class_averaged(k), [[3.0, 2.0], [2.0, 5.0]])
    np.testing.assert_allclose(spectral.initial_residual(np.array([1, 0]), 2),
                               [[-0.5, 0.5], [0.5, -0.5]])


def test_predicted_learning_times_against_brute_force_on_a_dense_grid():
    kbar, y = _kernel(8, seed=3), np.array([0, 1, 2, 0, 1, 2, 2, 2])
    values, vectors = spectral.eigenbasis(kbar)
    taus = np.geomspace(1e-3, 1e2, 400)
    got = spectral.predicted_learning_times(values, vectors, y, 3, taus)
    f = [(np.eye(8) - expm(-kbar * tau)) @ spectral.initial_residual(y, 3) for tau in taus]
    for i in range(8):
        right = [fi[i].argmax() == y[i] for fi in f]
        later = [all(right[t:]) for t in range(len(taus))]
        want = taus[later.index(True)] if any(later) else np.inf
        assert got[i] == want, i
    assert np.isfinite(got).all()            # a positive-definite kernel learns everything


def test_two_examples_that_the_kernel_ties_together():
    """Kbar = [[1, 0.9], [0.9, 1]] with labels (0, 1): the shared eigenvector (1, 1)
    carries no residual, the contrast (1, -1) with eigenvalue 0.1 carries it all:
    f_1 = (1 - exp(-0.1 tau)) (0.5, -0.5) is right for every tau > 0."""
    values, vectors = spectral.eigenbasis(np.array([[1.0, 0.9], [0.9, 1.0]]))
    np.testing.assert_allclose(values, [1.9, 0.1])
    taus = [0.5, 1.0]
    np.testing.assert_allclose(spectral.outputs(values, vectors, spectral.initial_residual(
        np.array([0, 1]), 2), taus)[:, 0, 0], 0.5 * (1 - np.exp(-0.1 * np.array(taus))))
    np.testing.assert_array_equal(
        spectral.predicted_learning_times(values, vectors, np.array([0, 1]), 2, taus), [0.5, 0.5])
    r0 = spectral.initial_residual(np.array([0, 1]), 2)
    np.testing.assert_allclose(spectral.energy_in_top(vectors, r0, [True, True], [0, 1, 2]),
                               [0.0, 0.0, 1.0], atol=1e-12)
    # One example alone: half its residual lies on each eigenvector.
    np.testing.assert_allclose(spectral.energy_in_top(vectors, r0, [True, False], [1, 2]),
                               [0.5, 1.0])


def test_never_learned_within_the_grid_is_inf_and_bad_grids_are_one_line():
    values, vectors = spectral.eigenbasis(np.array([[1.0, 0.0], [0.0, 1.0]]))
    # Zero-time grid: f = 0, argmax picks class 0; the class-1 example is never right.
    got = spectral.predicted_learning_times(values, vectors, np.array([0, 1]), 2, [0.0])
    assert got[1] == np.inf and got[0] == 0.0
    with pytest.raises(ValueError, match="ascending"):
        spectral.predicted_learning_times(values, vectors, np.array([0, 1]), 2, [1.0, 0.5])
    with pytest.raises(ValueError, match="no residual energy"):
        spectral.energy_in_top(vectors, np.zeros((2, 2)), [True, True], [1])


def test_a_kernel_beyond_the_dense_limit_is_one_clear_error(monkeypatch):
    monkeypatch.setattr(spectral, "MAX_EXAMPLES", 3)
    with pytest.raises(ValueError, match="at most 3 examples, got 4; .*take a subset.*"
                                         "kernel_operator gives a larger set's top"):
        spectral.eigenbasis(np.eye(4))
    assert spectral.eigenbasis(np.eye(3))[0].tolist() == [1.0, 1.0, 1.0]
