"""Parameterizations, gamma and the learning-rate rules (lazy_hasty/richness.py and the
models' layers) against hand-derived values and closed forms."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lazy_hasty import losses, models, ntk, richness
from lazy_hasty.engine import train
from lazy_hasty.regimes import Regime, parse_regime

# Compiling small programs is this module's cost; its checks are the maths, not the
# rounding of optimised kernels (conftest.py).
pytestmark = pytest.mark.usefixtures("quick_compiles_module")

X = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)


def _mlp(parameterization, gamma=1.0, features=(3,), outputs=2):
    module = models.get_model("mlp", features=features, num_outputs=outputs,
                              parameterization=parameterization, gamma=gamma)
    params, _ = models.init_model(module, jax.random.key(3), X)
    return module, params


@pytest.mark.parametrize("parameterization, m_hidden, m_head", [
    ("standard", 1.0, 1.0),
    ("ntk", 1 / 2.0, 1 / math.sqrt(3)),     # 1/sqrt(fan_in): fan_in 4, then 3
    ("mup", 1 / 2.0, 1 / 3.0),              # the readout: 1/fan_in
])
def test_forward_is_the_hand_derived_two_layer_network(parameterization, m_hidden, m_head):
    module, params = _mlp(parameterization, gamma=2.5)
    w1, c1 = (np.asarray(params["Dense_0"][k], np.float64) for k in ("kernel", "bias"))
    w2, c2 = (np.asarray(params["head"][k], np.float64) for k in ("kernel", "bias"))
    hidden = np.maximum(m_hidden * (X @ w1 + c1), 0)
    want = m_head * (hidden @ w2 + c2) / 2.5
    np.testing.assert_allclose(module.apply({"params": params}, X), want, rtol=1e-5, atol=1e-6)
    bound = 0.5 if parameterization == "standard" else 1.0     # U(-1/sqrt(4), .) or U(-1, 1)
    assert np.abs(w1).max() <= bound and np.abs(w1).max() > 0.5 * bound


@pytest.mark.parametrize("name, kwargs, shape", [
    ("mlp", {"features": (16, 16)}, (6, 4)),
    ("cnn", {"width": 4}, (3, 8, 8, 1)),
    ("resnet18", {"width": 4, "blocks": (1, 1, 1, 1)}, (2, 8, 8, 3)),
])
def test_ntk_parameterization_starts_as_the_standard_network(name, kwargs, shape):
    """Same draws, U(-1, 1) times 1/sqrt(fan_in) = torch's U(-1/sqrt(fan_in), .): every
    layer's fan-in (conv: channels x kernel area) is the one the standard init uses."""
    x = np.random.default_rng(1).normal(size=shape).astype(np.float32)
    outs = []
    for parameterization in ("standard", "ntk"):
        module = models.get_model(name, num_outputs=3, parameterization=parameterization,
                                  **kwargs)
        params, state = models.init_model(module, jax.random.key(0), x)
        outs.append(models.make_apply_fn(module, state)(params, x))
    np.testing.assert_allclose(outs[1], outs[0], rtol=1e-4, atol=1e-6)


def test_mup_learning_rates_per_layer_are_the_derived_ones(x64):
    """4 -> 8 -> 8 -> 3 under mup, width 8: W moves at lr * 8 * m**2, i.e. 2 lr (input,
    m = 1/2), lr (hidden, 1/sqrt(8)) and lr / 8 (readout, 1/8): Yang & Hu's Table 3
    (one SGD step in float64 against the gradient of the same network with m = 1)."""
    lr = 0.01
    assert [richness.effective_learning_rate("mup", lr, n, readout, 8)
            for n, readout in ((4, False), (8, False), (8, True))] == pytest.approx(
        [2 * lr, lr, lr / 8], rel=1e-12)
    module, params = _mlp("mup", features=(8, 8), outputs=3)
    params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params)
    x, y = jnp.asarray(X, jnp.float64), jnp.asarray(np.arange(5) % 3)
    regime = parse_regime("plain")
    rate = richness.Richness(1.0, richness.width_multiplier("mup", models.width(module))
                             ).learning_rate(regime, lr)
    assert rate == pytest.approx(8 * lr)
    apply_fn = models.make_apply_fn(module, {})
    step = train.make_train_step(apply_fn, regime, train.make_optimizer("sgd", rate))
    new = step(train.init_state(regime, params, train.make_optimizer("sgd", rate)),
               params, x, y)[0].params
    names, fan_ins = ("Dense_0", "Dense_1", "head"), (4, 8, 8)
    m = [richness.layer_multiplier("mup", n, name == "head") for name, n in zip(names, fan_ins)]

    def loss_of_effective(weights):          # the same network written with m = 1
        h = x
        for i, name in enumerate(names):
            h = h @ weights[name] + m[i] * params[name]["bias"]
            h = jax.nn.relu(h) if name != "head" else h
        return losses.per_example_loss(h, y).mean()

    effective = {n: m[i] * params[n]["kernel"] for i, n in enumerate(names)}
    grads = jax.grad(loss_of_effective)(effective)
    for i, (name, want) in enumerate(zip(names, (2 * lr, lr, lr / 8))):
        moved = m[i] * (new[name]["kernel"] - params[name]["kernel"])
        np.testing.assert_allclose(moved, -want * grads[name], rtol=1e-9, atol=1e-15)


def _kernels(parameterization, width, seeds, x):
    """NTKs at init of a one-hidden-layer net, one per independent draw, (seeds, N, N)."""
    module = models.get_model("mlp", features=(width,), num_outputs=1,
                              parameterization=parameterization)
    apply_fn = models.make_apply_fn(module, {})

    def one(key):
        params = models.init_model(module, key, x)[0]
        params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params)
        return ntk.empirical_ntk(apply_fn, params, x).reshape(len(x), len(x))

    keys = jax.random.split(jax.random.key(width), seeds)      # independent across widths
    return np.asarray(jax.jit(jax.vmap(one))(keys))


def test_ntk_parameterization_kernel_converges_at_one_over_sqrt_width(x64):
    """One hidden layer of width n in the NTK parameterization: the kernel at init is a
    mean over n i.i.d. units, so its mean does not depend on n and its spread over
    draws is O(1/sqrt(n)): it halves when n is quadrupled.
    Under the standard parameterization the kernel instead grows with n."""
    x = jnp.asarray(np.random.default_rng(3).normal(size=(4, 3)))
    small, large = _kernels("ntk", 64, 64, x), _kernels("ntk", 256, 64, x)
    rms = lambda a: np.sqrt((a ** 2).mean())
    spread = lambda k: rms(k.std(axis=0)) / rms(k.mean(axis=0))
    assert 1.6 < spread(small) / spread(large) < 2.5, (spread(small), spread(large))
    assert rms(small.mean(0) - large.mean(0)) / rms(large.mean(0)) < 0.15
    growth = rms(_kernels("standard", 256, 8, x).mean(0)) / rms(
        _kernels("standard", 64, 8, x).mean(0))
    assert growth > 2.5                                # ~ n: the head's term sums n units


def test_lazy_rule_is_the_papers_rate_bit_for_bit():
    plain = richness.Richness()
    for alpha in (0.3, 1.0, 7.0, 100.0):
        regime = Regime("rescaled", alpha)
        assert plain.learning_rate(regime, 0.05) == 0.05 / alpha ** 2
    assert plain.learning_rate(parse_regime("linearized"), 0.05) == 0.05
    assert richness.Richness(gamma=3.0).learning_rate(Regime("rescaled", 2.0), 0.1) == \
        pytest.approx(0.1 * 9 / 4)


def test_richness_rule_closed_form_and_slopes():
    rule = richness.LearningRateRule("richness", crossover=2.0, depth=3)
    g = np.array([0.01, 0.1, 1.0, 2.0, 20.0, 2000.0])
    want = np.where(g <= 2.0, g ** 2, 4.0 * (g / 2.0) ** (2 / 3))
    np.testing.assert_allclose([rule.factor(v) for v in g], want, rtol=1e-12)
    slope = lambda a, b: math.log(rule.factor(b) / rule.factor(a)) / math.log(b / a)
    assert slope(0.01, 1.0) == pytest.approx(2.0) and slope(20.0, 2000.0) == pytest.approx(2 / 3)
    assert rule.factor(2.0 * (1 + 1e-9)) == pytest.approx(rule.factor(2.0), rel=1e-8)
    rates = richness.Richness(gamma=1.0, width_multiplier=64.0, rule=rule)
    # alpha = 0.01: g = 100 on the rich side; alpha = 4: g = 1/4 on the lazy side.
    assert rates.learning_rate(Regime("rescaled", 0.01), 0.1) == pytest.approx(
        0.1 * 64 * 4 * 50 ** (2 / 3))
    assert rates.learning_rate(Regime("rescaled", 4.0), 0.1) == pytest.approx(0.1 * 64 / 16)
    assert rates.learning_rate(parse_regime("linearized"), 0.1) == pytest.approx(6.4)


@pytest.mark.parametrize("call, message", [
    (lambda: models.get_model("mlp", parameterization="sp"), "unknown parameterization 'sp'"),
    (lambda: models.get_model("cnn", gamma=0.0), "gamma must be a finite number > 0"),
    (lambda: richness.LearningRateRule("richness", depth=0), "needs the network's depth"),
    (lambda: richness.LearningRateRule("lazy", crossover=-1.0), "crossover must be"),
])
def test_bad_values_name_the_fix(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_depth_and_width_of_the_models():
    assert models.depth(models.get_model("mlp", features=(256, 256))) == 3
    assert models.depth(models.get_model("resnet18")) == 18
    assert models.depth(models.get_model("resnet18", blocks=(1, 1, 1, 1))) == 10
    assert models.width(models.get_model("mlp", features=(64, 32))) == 32
    assert models.width(models.get_model("cnn", width=8)) == 8
