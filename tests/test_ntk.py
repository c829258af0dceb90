"""Empirical NTK implementations against a float64 brute-force oracle and each other."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from lazy_hasty import models, ntk

# name -> (model kwargs, input shape of one example)
SETUPS = {
    "mlp": (dict(features=(7, 5), num_outputs=3), (4,)),
    "cnn": (dict(num_outputs=3, width=4), (8, 8, 1)),
    "resnet": (dict(num_outputs=2, width=2, stem="cifar"), (8, 8, 3)),
}


def _setup(name, n1=5, n2=4, seed=0):
    kwargs, shape = SETUPS[name]
    module = models.get_model("resnet18" if name == "resnet" else name, **kwargs)
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(seed), 3)
    x1 = jax.random.normal(k1, (n1,) + shape)
    x2 = jax.random.normal(k2, (n2,) + shape)
    params, state = models.init_model(module, k3, x1)
    return models.make_apply_fn(module, state), params, x1, x2


def oracle_ntk(apply_fn, params, x1, x2):
    """Explicit Jacobian of the ravelled parameters, contracted by hand."""
    flat, unravel = ravel_pytree(params)
    jac = lambda x: np.asarray(jax.jacrev(lambda p: apply_fn(unravel(p), x))(flat))
    j1, j2 = jac(x1), jac(x2)                       # (N, C, P)
    return np.einsum("icp,jdp->icjd", j1, j2)


def _rel(a, b):
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)) / np.linalg.norm(b))


@pytest.mark.parametrize("name", list(SETUPS))
def test_ntk_equals_float64_oracle(name, x64):
    apply_fn, params, x1, x2 = _setup(name)
    params = jax.tree_util.tree_map(lambda p: p.astype(jnp.float64), params)
    x1, x2 = x1.astype(jnp.float64), x2.astype(jnp.float64)
    want12 = oracle_ntk(apply_fn, params, x1, x2)
    want11 = oracle_ntk(apply_fn, params, x1, x1)
    for impl in ntk.IMPLEMENTATIONS:
        for chunk in (None, 2):
            got = ntk.empirical_ntk(apply_fn, params, x1, x2, implementation=impl,
                                    chunk_size=chunk)
            assert got.dtype == jnp.float64 and got.shape == want12.shape
            assert _rel(got, want12) <= 1e-10, (impl, chunk)
        got11 = ntk.empirical_ntk(apply_fn, params, x1, implementation=impl, chunk_size=3)
        assert _rel(got11, want11) <= 1e-10, impl


@pytest.mark.parametrize("name", list(SETUPS))
def test_implementations_agree_in_float32(name):
    apply_fn, params, x1, x2 = _setup(name, n1=7, seed=1)
    ref = ntk.empirical_ntk(apply_fn, params, x1, x2, implementation="jacobian")
    assert ref.dtype == jnp.float32
    for impl in ntk.IMPLEMENTATIONS:
        for chunk in (None, 3):
            got = ntk.empirical_ntk(apply_fn, params, x1, x2, implementation=impl,
                                    chunk_size=chunk)
            assert _rel(got, ref) <= 1e-5, (impl, chunk)


def test_ntk_is_symmetric_psd_and_jittable():
    apply_fn, params, x1, _ = _setup("mlp", n1=6)
    k = ntk.empirical_ntk_fn(apply_fn, implementation="ntvp", chunk_size=4)(params, x1)
    m = np.asarray(k).reshape(18, 18)
    np.testing.assert_allclose(m, m.T, rtol=1e-5, atol=1e-6)
    assert np.linalg.eigvalsh(m).min() > -1e-4 * np.abs(m).max()


def test_bad_arguments():
    apply_fn, params, x1, _ = _setup("mlp")
    with pytest.raises(ValueError, match="implementation"):
        ntk.empirical_ntk(apply_fn, params, x1, implementation="nope")
    with pytest.raises(ValueError, match="chunk_size"):
        ntk.empirical_ntk(apply_fn, params, x1, chunk_size=0)
