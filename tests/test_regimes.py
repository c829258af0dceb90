"""Regimes: exact linearization, rescaling and the alpha -> inf limit."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from lazy_hasty import losses, models, regimes

# Compiling is this module's cost; its checks are tolerances on the maths (conftest.py).
pytestmark = pytest.mark.usefixtures("quick_compiles_module")


def _mlp(seed=0, n=12, dtype=jnp.float64):
    module = models.get_model("mlp", features=(16, 16), num_outputs=2)
    kx, kp = jax.random.split(jax.random.PRNGKey(seed))
    x = jax.random.normal(kx, (n, 3), dtype)
    params, state = models.init_model(module, kp, x)
    params = jax.tree_util.tree_map(lambda p: p.astype(dtype), params)
    return models.make_apply_fn(module, state), params, x


def _direction(params, seed, scale=0.3):
    flat, unravel = ravel_pytree(params)
    return unravel(scale * jax.random.normal(jax.random.PRNGKey(seed), flat.shape, flat.dtype))


def _add(a, b, t=1.0):
    return jax.tree_util.tree_map(lambda u, v: u + t * v, a, b)


def test_linearize_equals_f_at_params0_and_is_affine(x64):
    apply_fn, params0, x = _mlp()
    f_lin = regimes.linearize(apply_fn, params0)
    f0 = apply_fn(params0, x)
    np.testing.assert_array_equal(f_lin(params0, x), f0)
    u, v = _direction(params0, 1), _direction(params0, 2)
    du = f_lin(_add(params0, u), x) - f0
    dv = f_lin(_add(params0, v), x) - f0
    for t in (-2.0, 0.5, 3.0):
        np.testing.assert_allclose(f_lin(_add(params0, u, t), x) - f0, t * du, rtol=1e-12,
                                   atol=1e-12)
    np.testing.assert_allclose(f_lin(_add(_add(params0, u), v), x) - f0, du + dv,
                               rtol=1e-12, atol=1e-12)
    # The network itself is not affine along u: the test above can fail.
    nonlin = apply_fn(_add(params0, u, 3.0), x) - f0 - 3.0 * du
    assert np.abs(nonlin).max() > 1e-3


def test_linearize_gradient_is_jacobian_transpose(x64):
    apply_fn, params0, x = _mlp(seed=3)
    f_lin = regimes.linearize(apply_fn, params0)
    g = jax.random.normal(jax.random.PRNGKey(4), (len(x), 2), jnp.float64)
    flat0, unravel = ravel_pytree(params0)
    jac = jax.jacrev(lambda p: apply_fn(unravel(p), x))(flat0)     # (N, C, P) oracle
    want = np.einsum("icp,ic->p", jac, g)
    for seed in (None, 5):        # at params0 and away from it: J is frozen at params0
        params = params0 if seed is None else _add(params0, _direction(params0, seed))
        grad = jax.grad(lambda p: jnp.sum(g * f_lin(p, x)))(params)
        np.testing.assert_allclose(ravel_pytree(grad)[0], want, rtol=1e-11, atol=1e-12)


def test_rescale_definition_and_f0_cache(x64):
    apply_fn, params0, x = _mlp(seed=6)
    f_alpha = regimes.rescale(apply_fn, params0, 7.0)
    np.testing.assert_array_equal(f_alpha(params0, x), np.zeros((len(x), 2)))
    params = _add(params0, _direction(params0, 7))
    want = 7.0 * (apply_fn(params, x) - apply_fn(params0, x))
    np.testing.assert_allclose(f_alpha(params, x), want, rtol=1e-13)
    f0 = regimes.initial_outputs(apply_fn, params0, x, batch_size=5)
    np.testing.assert_allclose(f_alpha(params, x, f0), want, rtol=1e-13)
    assert regimes.rescaled_learning_rate(0.1, 10.0) == pytest.approx(1e-3)


def _train_outputs(regime, apply_fn, params0, x, y, lr=1.0, steps=30):
    """Full-batch GD for ``steps``; returns the regime's outputs on ``x``."""
    eta = regime.learning_rate(lr)
    loss = lambda p: jnp.mean(losses.per_example_loss(
        regime.predict(apply_fn, params0, p, x), y))

    @jax.jit
    def step(p, _):
        return jax.tree_util.tree_map(lambda a, g: a - eta * g, p, jax.grad(loss)(p)), None

    params, _ = jax.lax.scan(step, regime.init(params0), None, length=steps)
    return regime.predict(apply_fn, params0, params, x)


def _tanh_net(seed=8, n=16, width=32):
    """A smooth two-layer net: the O(1/alpha) law holds without ReLU kinks."""
    k = jax.random.split(jax.random.PRNGKey(seed), 3)
    params = {"w1": jax.random.normal(k[0], (3, width)) / np.sqrt(3),
              "w2": jax.random.normal(k[1], (width, 2)) / np.sqrt(width)}
    apply_fn = lambda p, x: jnp.tanh(x @ p["w1"]) @ p["w2"]
    return apply_fn, params, jax.random.normal(k[2], (n, 3))


def _gaps(apply_fn, params0, x, alphas):
    y = jnp.arange(len(x)) % 2
    lin = _train_outputs(regimes.Regime("linearized"), apply_fn, params0, x, y)
    assert float(jnp.abs(lin).max()) > 0.5          # training moved the outputs
    return {a: float(jnp.abs(_train_outputs(regimes.Regime("rescaled", a), apply_fn,
                                            params0, x, y) - lin).max()) for a in alphas}


def test_rescaled_training_approaches_linearized_like_one_over_alpha(x64):
    gaps = _gaps(*_tanh_net(), alphas=(1.0, 10.0, 100.0, 1000.0))
    slope = np.polyfit(np.log([10, 100, 1000]), np.log([gaps[10], gaps[100], gaps[1000]]), 1)[0]
    assert -1.05 < slope < -0.95, (slope, gaps)
    assert gaps[1.0] > 5 * gaps[10.0] and gaps[1.0] > 0.1, gaps


def test_relu_mlp_rescaled_approaches_linearized(x64):
    # ReLU sign flips make the approach noisier before the 1/alpha law sets in
    # (each unit near zero flips once the step is small enough); the gap still
    # shrinks monotonically and ends 1/alpha-like.
    apply_fn, params0, x = _mlp(seed=8, n=16)
    alphas = (1.0, 10.0, 100.0, 1000.0, 3000.0)
    gaps = _gaps(apply_fn, params0, x, alphas)
    values = [gaps[a] for a in alphas]
    assert all(a > b for a, b in zip(values, values[1:])), gaps
    assert 2.5 < gaps[1000.0] / gaps[3000.0] < 3.5, gaps
    assert gaps[1.0] > 0.5 and gaps[3000.0] < 1e-3, gaps


def test_regime_names_and_errors():
    assert regimes.parse_regime("alpha=100").name == "alpha=100"
    assert regimes.parse_regime("alpha=0.5").alpha == 0.5
    assert regimes.parse_regime("linearized").name == "linearized"
    assert regimes.Regime("rescaled", 1e3).name == "alpha=1000"
    for bad in (0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="alpha must be"):
            regimes.Regime("rescaled", bad)
    with pytest.raises(ValueError, match="unknown regime"):
        regimes.parse_regime("lazy")
    with pytest.raises(ValueError, match="alpha must be"):
        regimes.rescale(lambda p, x: x, {}, 0)
