"""Difficulty scores from a run's trace (lazy_hasty.analysis.scores) and the per-example
quantities of lazy_hasty.losses they read, on constructed traces and logits."""

import math

import jax.numpy as jnp
import numpy as np
import pytest

from lazy_hasty import losses
from lazy_hasty.analysis import scores

# Records down, examples across: learned for good; learned, forgotten, relearned;
# forgotten twice; never learned; always right.
CORRECT = np.array([[0, 0, 1, 0, 1],
                    [1, 1, 0, 0, 1],
                    [1, 0, 1, 0, 1],
                    [1, 1, 0, 0, 1]])


def test_forgetting_counts_correct_to_wrong_transitions_and_never_learned_is_inf():
    assert scores.forgetting(CORRECT).tolist() == [0, 1, 2, math.inf, 0]


def test_forgetting_of_one_record_is_zero_or_never_learned():
    assert scores.forgetting(np.array([[1, 0]])).tolist() == [0, math.inf]


def test_aum_is_the_mean_margin_over_records():
    margin = np.array([[-1.0, 2.0], [0.5, 4.0], [3.5, -3.0]])
    assert scores.aum(margin) == pytest.approx([1.0, 1.0])


def test_cartography_by_hand():
    probability = np.array([[0.1, 0.9], [0.5, 0.9], [0.9, 0.9]])
    correct = np.array([[0, 1], [0, 1], [1, 1]])
    out = scores.cartography(probability, correct)
    assert out["confidence"] == pytest.approx([0.5, 0.9])
    assert out["variability"] == pytest.approx([math.sqrt(0.32 / 3), 0.0])
    assert out["correctness"] == pytest.approx([1 / 3, 1.0])


def test_gradient_norm_is_the_quadratic_form():
    g = jnp.array([[1.0, -2.0], [0.0, 3.0]])
    blocks = jnp.array([[[2.0, 1.0], [1.0, 3.0]], [[5.0, 0.0], [0.0, 4.0]]])
    # g K g: 2 - 2*2 + 3*4 = 10; 9 * 4 = 36.
    assert np.asarray(losses.gradient_norm(g, blocks)) == pytest.approx([math.sqrt(10.0), 6.0])


@pytest.mark.parametrize("bad, message", [
    (lambda: scores.forgetting(np.zeros(3)), "correct must be a \\(records, examples\\)"),
    (lambda: scores.aum(np.zeros((0, 2))), "margin must be a \\(records, examples\\)"),
    (lambda: scores.cartography(np.zeros((2, 3)), np.zeros((3, 3))), "must have the same"),
    (lambda: losses.gradient_norm(jnp.zeros((2, 3)), jnp.zeros((2, 3, 2))), "blocks"),
])
def test_bad_traces_are_one_line(bad, message):
    with pytest.raises(ValueError, match=message):
        bad()


LOGITS = jnp.array([[2.0, 0.0, 1.0], [0.0, 3.0, 3.0]], jnp.float32)
LABELS = jnp.array([2, 0])


def test_margin_probability_and_el2n_of_softmax_logits_by_hand():
    assert np.asarray(losses.label_margin(LOGITS, LABELS)) == pytest.approx([-1.0, -3.0])
    p = np.exp([[2.0, 0.0, 1.0], [0.0, 3.0, 3.0]])
    p /= p.sum(axis=1, keepdims=True)
    assert np.asarray(losses.label_probability(LOGITS, LABELS)) == pytest.approx(
        [p[0, 2], p[1, 0]], rel=1e-6)
    onehot = np.eye(3)[[2, 0]]
    assert np.asarray(losses.el2n(LOGITS, LABELS)) == pytest.approx(
        np.linalg.norm(p - onehot, axis=1), rel=1e-6)
    assert np.asarray(losses.output_gradient(LOGITS, LABELS)) == pytest.approx(
        p - onehot, abs=1e-6)


def test_one_output_unit_uses_the_logistic_forms():
    f, y = jnp.array([[1.5], [-0.5]]), jnp.array([1.0, 1.0])
    sig = 1 / (1 + np.exp(-np.array([1.5, -0.5])))
    assert np.asarray(losses.label_margin(f, y)) == pytest.approx([1.5, -0.5])
    assert np.asarray(losses.label_probability(f, y)) == pytest.approx(sig, rel=1e-6)
    # Two-class probabilities (sig, 1 - sig) against (1, 0): sqrt(2) (1 - sig).
    assert np.asarray(losses.el2n(f, y)) == pytest.approx(math.sqrt(2) * (1 - sig), rel=1e-6)
    # d/df log(1 + exp(-y f)) = -y sigmoid(-y f).
    assert np.asarray(losses.output_gradient(f, y))[:, 0] == pytest.approx(-(1 - sig), rel=1e-6)


@pytest.mark.usefixtures("quick_compiles")          # compiling is its cost
def test_grand_from_the_kernels_diagonal_is_the_per_example_gradient_norm(x64):
    """GraNd as sqrt(g^T K(x, x) g) equals ||d loss / d params|| taken directly (float64),
    for the alpha-rescaled and the linearized regimes' outputs."""
    import jax
    from jax.flatten_util import ravel_pytree

    from lazy_hasty import models, ntk, regimes

    module = models.get_model("mlp", features=(6, 5), num_outputs=3)
    x = jax.random.normal(jax.random.PRNGKey(0), (5, 4), jnp.float64)
    y = jnp.array([0, 2, 1, 1, 0])
    params0, state = models.init_model(module, jax.random.PRNGKey(1), x)
    params0 = jax.tree.map(lambda a: a.astype(jnp.float64), params0)
    apply_fn = models.make_apply_fn(module, state)
    params = jax.tree.map(lambda a: a * 1.3 + 0.01, params0)      # away from params0
    for regime in (regimes.parse_regime("alpha=2"), regimes.parse_regime("linearized")):
        trainable = params if regime.kind == "rescaled" else jax.tree.map(
            lambda a, b: a - b, params, params0)
        f = lambda p, xs: regime.predict(apply_fn, params0, p, xs)
        logits = f(trainable, x)
        loss_i = lambda p, xi, yi: losses.per_example_loss(f(p, xi[None]), yi[None])[0]
        grads = jax.jit(jax.vmap(jax.grad(loss_i), in_axes=(None, 0, 0)))(trainable, x, y)
        want = [np.linalg.norm(ravel_pytree(jax.tree.map(lambda g: g[i], grads))[0])
                for i in range(len(y))]
        for implementation in ("jacobian", "structured"):
            blocks = jax.jit(lambda p: ntk.diagonal_blocks(
                f, p, x, implementation=implementation, chunk_size=2))(trainable)
            got = np.asarray(losses.gradient_norm(losses.output_gradient(logits, y), blocks))
            assert got == pytest.approx(want, rel=1e-10), (regime.name, implementation)


def test_hardness_averages_each_runs_oriented_ranks():
    # Two runs of four examples; AUM: a larger margin is easier, so ranks run reversed.
    aum = np.array([[0.5, -1.0, 2.0, 0.0],
                    [0.1, -2.0, 3.0, 0.2]])
    # Run 1 hardest-first: 1, 3, 0, 2 -> ranks [2, 4, 1, 3]; run 2: 1, 0, 3, 2 -> [3, 4, 1, 2].
    assert scores.hardness("aum", aum).tolist() == [2.5, 4.0, 1.0, 2.5]
    # Never learned (NaN learning time) ranks latest; ties share their mean rank.
    times = np.array([[5.0, np.nan, 1.0, 1.0]])
    assert scores.hardness("learning_time", times).tolist() == [3.0, 4.0, 1.5, 1.5]
    assert scores.hardness("forgetting", np.array([[0, math.inf, 2, 1]])).tolist() == [
        1.0, 4.0, 3.0, 2.0]
    with pytest.raises(ValueError, match="lower early_score_epoch"):
        scores.hardness("el2n", np.array([[0.1, np.nan]]))
    assert set(scores.HARDER_WHEN_HIGHER) == set(scores.SCORES)


def test_quantile_groups_take_the_extreme_fractions():
    from lazy_hasty.data import groups
    hardness = np.array([3.0, 9.0, 1.0, 7.0, 5.0, 2.0, 8.0, 4.0, 6.0, 0.0])
    chosen = groups.quantile_groups(hardness, 0.2, None, 0, "train")
    assert chosen["score_easy"].tolist() == [2, 9] and chosen["score_hard"].tolist() == [1, 6]
    one = groups.quantile_groups(hardness, 0.01, None, 0, "train")     # at least one each
    assert one["score_easy"].tolist() == [9] and one["score_hard"].tolist() == [1]
    with pytest.raises(ValueError, match=r"score_quantile must be in \(0, 0.5\]"):
        groups.quantile_groups(hardness, 0.6, None, 0, "train")
