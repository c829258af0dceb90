"""Function-space linearized GD against parameter-space GD on the linearized model."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from lazy_hasty import function_space, models, ntk
from lazy_hasty.engine import train
from lazy_hasty.regimes import Regime

N, LR, STEPS = 6, 0.7, 12

# Compiling is this module's cost; its checks are tolerances on the maths (conftest.py).
pytestmark = pytest.mark.usefixtures("quick_compiles_module")


def _problem():
    """Small MLP in float64, N training points with +-1 labels."""
    module = models.get_model("mlp", features=(8, 8), num_outputs=1)
    kx, ki = jax.random.split(jax.random.PRNGKey(3))
    x = jax.random.uniform(kx, (N, 2), minval=-1.0, maxval=1.0).astype(jnp.float64)
    y = jnp.array([1.0, -1.0, -1.0, 1.0, 1.0, -1.0], jnp.float64)
    params0, state = models.init_model(module, ki, x)
    params0 = jax.tree_util.tree_map(lambda p: p.astype(jnp.float64), params0)
    return models.make_apply_fn(module, state), params0, x, y


def _rel(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))


def _function_space_run(apply_fn, params0, x, y, kernel) -> dict:
    """``STEPS`` of function-space GD: outputs before, losses at, coefficients and
    accuracies after each step, the final state and its weights ``w = J^T c``."""
    fs = function_space.init_kernel_state(N, 1, jnp.float64)
    kstep = jax.jit(function_space.kernel_gd_step)
    losses, outputs, coefs, accuracies = [], [], [], []
    for _ in range(STEPS):
        outputs.append(np.asarray(fs.f))
        fs, m = kstep(fs, kernel, y, LR)
        losses.append(float(m["train_loss"]))
        accuracies.append(float(m["train_accuracy"]))
        coefs.append(np.asarray(fs.c))
    w_fs = jax.jit(function_space.weights, static_argnums=0)(apply_fn, params0, x, fs.c)
    return dict(fs=fs, w_fs=w_fs, fs_losses=np.array(losses), fs_outputs=np.array(outputs),
                fs_coefs=np.array(coefs), fs_accuracies=np.array(accuracies))


def _parameter_space_run(apply_fn, params0, x, y) -> dict:
    """``STEPS`` of plain GD on the linearized regime's parameters."""
    regime = Regime("linearized")
    opt = train.make_optimizer("sgd", LR)
    step = jax.jit(train.make_train_step(apply_fn, regime, opt))
    ps = train.init_state(regime, params0, opt)
    predict = jax.jit(lambda w: regime.predict(apply_fn, params0, w, x))
    losses, outputs = [], []
    for _ in range(STEPS):
        outputs.append(np.asarray(predict(ps.params)))
        ps, m = step(ps, params0, x, y)
        losses.append(float(m["train_loss"]))
    return dict(ps=ps, ps_losses=np.array(losses), ps_outputs=np.array(outputs),
                final_ps=np.asarray(predict(ps.params)))


@pytest.fixture(scope="module")
def runs():
    with jax.enable_x64(True):
        apply_fn, params0, x, y = _problem()
        kernel = ntk.empirical_ntk(apply_fn, params0, x)
        assert kernel.dtype == jnp.float64 and kernel.shape == (N, 1, N, 1)
        fs = _function_space_run(apply_fn, params0, x, y, kernel)
        ps = _parameter_space_run(apply_fn, params0, x, y)

        # Explicit Jacobian oracle for w = J^T c.
        flat0, unravel = ravel_pytree(params0)
        jac = np.asarray(jax.jit(jax.jacrev(lambda p: apply_fn(unravel(p), x)))(flat0))
        w_oracle = np.einsum("icp,ic->p", jac, np.asarray(fs["fs"].c))   # jac: (N, 1, P)

        return dict(kernel=np.asarray(kernel), y=np.asarray(y), **fs, **ps,
                    w_oracle=w_oracle, jac=jac)


def test_losses_per_step_agree(runs):
    assert runs["fs_losses"][0] == pytest.approx(np.log(2.0), rel=1e-14)
    np.testing.assert_allclose(runs["fs_losses"], runs["ps_losses"], rtol=1e-10, atol=0)
    # Training actually happened (the test would be vacuous otherwise).
    assert runs["fs_losses"][-1] < runs["fs_losses"][0] - 0.01


def test_outputs_per_step_and_final_agree(runs):
    np.testing.assert_allclose(runs["fs_outputs"], runs["ps_outputs"], rtol=1e-10,
                               atol=1e-12)
    assert _rel(runs["fs"].f, runs["final_ps"]) <= 1e-10
    assert np.abs(runs["final_ps"]).max() > 1e-2
    assert int(runs["fs"].step) == STEPS


def test_weights_equal_parameter_space_w(runs, x64):
    w_ps = ravel_pytree(runs["ps"].params)[0]
    w_fs = ravel_pytree(runs["w_fs"])[0]
    assert w_fs.dtype == jnp.float64
    assert _rel(w_fs, w_ps) <= 1e-10
    assert _rel(w_fs, runs["w_oracle"]) <= 1e-10
    # f = J w on the training set, by the explicit Jacobian.
    f = np.einsum("icp,p->ic", runs["jac"], np.asarray(w_fs))
    assert _rel(f, runs["fs"].f) <= 1e-10


def test_coefficients_are_minus_lr_times_summed_gradients(runs):
    """c_T = -lr * sum_t dloss/df(f_t), with the logistic-loss gradient by hand."""
    y, n = runs["y"][:, None], N
    grads = [-y / (1.0 + np.exp(y * f)) / n for f in runs["fs_outputs"]]   # d/df mean softplus(-yf)
    want = -LR * np.sum(grads, axis=0)
    assert _rel(runs["fs"].c, want) <= 1e-10


def test_first_step_closed_form(runs):
    """f1 = -lr K g0, g0 = -y sigmoid(0) / n = -y / (2n)."""
    y = runs["y"]
    g0 = -y / (2 * N)
    k = runs["kernel"][:, 0, :, 0]
    want_f1 = -LR * k @ g0
    np.testing.assert_allclose(runs["fs_outputs"][1][:, 0], want_f1, rtol=1e-12)
    np.testing.assert_allclose(runs["fs_coefs"][0][:, 0], -LR * g0, rtol=1e-14)
    assert runs["fs_losses"][0] == pytest.approx(np.log(2.0), rel=1e-14)
    # Accuracy at f = 0: y * 0 > 0 is never true.
    assert runs["fs_accuracies"][0] == 0.0
    # The loss after the step, by hand.
    want_loss1 = np.mean(np.log1p(np.exp(-y * want_f1)))
    assert runs["fs_losses"][1] == pytest.approx(want_loss1, rel=1e-12)
    assert want_loss1 < np.log(2.0)


def test_init_kernel_state():
    s = function_space.init_kernel_state(4, 3)
    assert s.f.shape == s.c.shape == (4, 3) and s.f.dtype == jnp.float32
    assert not np.asarray(s.f).any() and int(s.step) == 0


def _momentum_problem(dtype):
    """A 5 -> 16 -> 16 -> 3 MLP, 40 training examples, 3 classes."""
    module = models.get_model("mlp", features=(16, 16), num_outputs=3)
    kx, ky, ki = jax.random.split(jax.random.PRNGKey(7), 3)
    x = jax.random.normal(kx, (40, 5)).astype(dtype)
    y = jax.random.randint(ky, (40,), 0, 3)
    params0, state = models.init_model(module, ki, x)
    params0 = jax.tree_util.tree_map(lambda p: p.astype(dtype), params0)
    return models.make_apply_fn(module, state), params0, x, y


@pytest.mark.parametrize("dtype, tol", [(jnp.float32, 1e-5), (jnp.float64, 1e-12)])
def test_replay_is_the_linearized_sgd_momentum_run(dtype, tol, request):
    """200 minibatch SGD steps with momentum 0.9, the loop's own minibatch order: the
    function-space replay from K(params0) gives the parameter-space run's logits on
    every training example at every step, and its weights w = J^T c."""
    from lazy_hasty.engine import loop
    if dtype == jnp.float64:
        request.getfixturevalue("x64")
    apply_fn, params0, x, y = _momentum_problem(dtype)
    regime, lr, momentum, steps, batch = Regime("linearized"), 0.5, 0.9, 200, 8
    batches = np.stack([loop.batch_indices(0, s, len(y), batch) for s in range(steps)])
    opt = train.make_optimizer("sgd", lr, momentum)
    step = jax.jit(train.make_train_step(apply_fn, regime, opt))
    state = train.init_state(regime, params0, opt)
    predict = jax.jit(lambda p: regime.predict(apply_fn, params0, p, x))
    want = []
    for b in batches:
        want.append(predict(state.params))
        state, _ = step(state, params0, x[b], y[b])
    kernel = ntk.empirical_ntk(apply_fn, params0, x)
    final, got = jax.jit(function_space.replay, static_argnums=(3, 4))(
        kernel, y, jnp.asarray(batches), lr, momentum)
    scale = float(np.max(np.abs(np.asarray(want))))
    assert scale > 1.0                                   # it trained: outputs moved
    assert float(np.max(np.abs(np.asarray(got) - np.stack(want)))) <= tol * scale
    w = function_space.weights(apply_fn, params0, x, final.c)
    assert _rel(ravel_pytree(w)[0], ravel_pytree(state.params)[0]) <= 100 * tol
