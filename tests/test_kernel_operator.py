"""The matrix-free NTK operator against the float64 oracle's dense kernel, and block
Lanczos against ``numpy.linalg.eigh`` on operators with known spectra."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lazy_hasty import kernel_operator as ko
from tests.ntk_zoo import ZOO
from tests.test_ntk import oracle_ntks

pytestmark = pytest.mark.usefixtures("quick_compiles_module")


def _dense(apply_fn, params, x):
    k = oracle_ntks(apply_fn, params, x, x)[1]                  # (N, C, N, C)
    return k.reshape(k.shape[0] * k.shape[1], -1)


@pytest.mark.parametrize("name", ["mlp", "transformer"])
@pytest.mark.parametrize("chunk", [None, 2])
def test_products_equal_the_dense_kernel_times_the_vectors(name, chunk, x64):
    # 3 examples in chunks of 2: the second chunk is padded; the transformer's
    # inputs are integer tokens.
    apply_fn, params, x, _ = ZOO[name](jax.random.PRNGKey(0), jnp.float64)
    k = _dense(apply_fn, params, x)
    n, c = len(x), k.shape[0] // len(x)
    matvec = ko.kernel_operator(apply_fn, params, x, chunk_size=chunk)
    rng = np.random.default_rng(0)
    v, block = rng.standard_normal((n, c)), rng.standard_normal((n, c, 4))
    got = matvec(v)
    assert got.shape == (n, c) and got.dtype == np.float64
    np.testing.assert_allclose(got.ravel(), k @ v.ravel(), rtol=1e-12, atol=1e-12 * abs(k).max())
    got = matvec(block).reshape(n * c, 4)
    np.testing.assert_allclose(got, k @ block.reshape(n * c, 4), rtol=1e-12,
                               atol=1e-12 * abs(k).max())


def _operator(values, seed=0):
    """A symmetric operator on ``(N, 2)`` arrays with the given spectrum, and its
    eigenvectors (columns, in the order of ``values``)."""
    q = np.linalg.qr(np.random.default_rng(seed).standard_normal((len(values),) * 2))[0]
    a = (q * values) @ q.T
    shape = (len(values) // 2, 2)
    return (lambda v: (a @ v.reshape(len(values), -1)).reshape(v.shape)), shape, q


def _subspace_sine(u, w):
    """Largest principal-angle sine between the column spans of ``u`` and ``w``."""
    return float(np.linalg.norm(u - w @ (w.T @ u), ord=2))


def test_top_eigenpairs_resolve_an_exact_cluster():
    # 200 dims: 9, then 4 exactly equal (a cluster like K_0 (x) I_C), then 2, then a tail.
    values = np.concatenate([[9.0], [4.0] * 4, [2.0], np.linspace(1.0, 0.01, 194)])
    matvec, shape, q = _operator(values)
    got = ko.top_eigenpairs(matvec, shape, 6, block_size=4, tol=1e-9)
    np.testing.assert_allclose(got.values, values[:6], rtol=1e-9)
    assert got.vectors.shape == shape + (6,)
    u = got.vectors.reshape(-1, 6)
    np.testing.assert_allclose(u.T @ u, np.eye(6), atol=1e-10)
    assert _subspace_sine(u[:, 1:5], q[:, 1:5]) <= 1e-7
    assert abs(abs(u[:, 0] @ q[:, 0]) - 1) <= 1e-10
    assert np.all(got.residuals <= 1e-7)
    assert got.products < 100                      # it stopped before filling the space


def test_a_block_smaller_than_the_cluster_still_finds_its_values():
    values = np.concatenate([[4.0] * 3, np.linspace(1.0, 0.1, 17)])
    matvec, shape, _ = _operator(values, seed=1)
    got = ko.top_eigenpairs(matvec, shape, 2, block_size=1, tol=1e-10)
    np.testing.assert_allclose(got.values, [4.0, 4.0], rtol=1e-9)


def test_a_low_rank_operator_refills_the_lost_directions():
    # rank 3 in 12 dims: the Krylov space is invariant after one block.
    values = np.concatenate([[5.0, 3.0, 1.0], np.zeros(9)])
    matvec, shape, q = _operator(values, seed=2)
    got = ko.top_eigenpairs(matvec, shape, 3, tol=1e-10)
    np.testing.assert_allclose(got.values, [5.0, 3.0, 1.0], rtol=1e-10)
    u = got.vectors.reshape(-1, 3)
    assert _subspace_sine(u, q[:, :3]) <= 1e-8 and np.all(got.residuals <= 1e-9)


def test_the_ntk_spectrum_equals_eigh_of_the_dense_kernel(x64):
    apply_fn, params, x, _ = ZOO["mlp"](jax.random.PRNGKey(3), jnp.float64)
    k = _dense(apply_fn, params, x)
    want = np.linalg.eigvalsh(k)[::-1]
    got = ko.top_eigenpairs(ko.kernel_operator(apply_fn, params, x, chunk_size=2),
                            (len(x), k.shape[0] // len(x)), 3, tol=1e-10)
    np.testing.assert_allclose(got.values, want[:3], rtol=1e-9)


def test_max_products_stops_early_and_the_residuals_say_so():
    values = np.linspace(1.0, 0.9, 200)            # a flat spectrum converges slowly
    matvec, shape, _ = _operator(values, seed=4)
    got = ko.top_eigenpairs(matvec, shape, 2, tol=1e-12, max_products=10)
    assert got.products <= 10 + 2                  # the basis, then one product per pair
    assert got.residuals.max() > 1e-6
    assert np.all(got.values <= 1.0 + 1e-12) and np.all(got.values >= 0.9)


def test_bad_arguments_are_clear_errors():
    matvec, shape, _ = _operator(np.ones(4))
    for k in (0, 5):
        with pytest.raises(ValueError, match=r"k must be in \[1, N \* C = 4\]"):
            ko.top_eigenpairs(matvec, shape, k)
    apply_fn, params, x, _ = ZOO["mlp"](jax.random.PRNGKey(0), jnp.float32)
    with pytest.raises(ValueError, match="chunk_size must be a positive int"):
        ko.kernel_operator(apply_fn, params, x, chunk_size=0)
