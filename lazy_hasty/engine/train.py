"""The training engine shared by every experiment: state, optimiser, jitted step.

A step is a pure function ``step(state, params0, x, y, f0=None, weights=None) ->
(state, measurements)``; ``params0`` and the data are arguments (never closure
constants), so the same compiled step serves all regimes' shapes, can be
``vmap``-ed over seeds and ``scan``-ned over steps (full-batch runs), or fed
sharded minibatches (image runs).
"""

from __future__ import annotations

import numbers
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax

from lazy_hasty import losses
from lazy_hasty.regimes import Regime
from lazy_hasty.types import ApplyFn, Params

OPTIMIZERS = ("sgd",)


class TrainState(NamedTuple):
    """Trainable variables of one regime (``theta`` or ``w``) and optimiser state."""

    params: Params
    opt_state: optax.OptState
    step: jax.Array


def make_optimizer(name: str, learning_rate: float | jax.Array, momentum: float = 0.0
                   ) -> optax.GradientTransformation:
    """The paper's optimiser: plain GD/SGD, optionally with (heavy-ball) momentum.

    ``learning_rate`` may be traced (one compiled step for every rate); only a
    Python number is checked here.
    """
    if name != "sgd":
        raise ValueError(f"unknown optimizer {name!r}; choose one of {OPTIMIZERS}")
    if isinstance(learning_rate, numbers.Real) and not learning_rate > 0:
        raise ValueError(f"learning rate must be > 0, got {learning_rate!r}")
    return optax.sgd(learning_rate, momentum=momentum or None)


def regime_optimizer(regime: Regime, name: str, base_lr: float, momentum: float = 0.0
                     ) -> optax.GradientTransformation:
    """Optimiser with the regime's learning rate (``lr / alpha**2`` when rescaled)."""
    return make_optimizer(name, regime.learning_rate(base_lr), momentum)


def init_state(regime: Regime, params0: Params,
               optimizer: optax.GradientTransformation) -> TrainState:
    """Step-0 state of ``regime`` starting from the shared initialisation."""
    params = regime.init(params0)
    return TrainState(params, optimizer.init(params), jnp.zeros((), jnp.int32))


def _mean(values: jax.Array, weights: Optional[jax.Array]) -> jax.Array:
    """Mean of ``values``, or ``sum(w v) / max(sum(w), 1)``: the mean over a 0/1 mask."""
    if weights is None:
        return jnp.mean(values)
    return jnp.sum(weights * values) / jnp.maximum(jnp.sum(weights), 1.0)


def make_train_step(apply_fn: ApplyFn, regime: Regime,
                    optimizer: optax.GradientTransformation) -> Callable[..., Any]:
    """Un-jitted step on the mean per-example loss of the regime's output.

    Optional per-example ``weights`` turn the mean into a weighted mean, so that
    full-batch GD can train on a subset given as a 0/1 mask (C-scores).
    Measurements are taken at the parameters *before* the update, so the loss
    reported at step ``s`` is that of ``state.params`` at step ``s``.
    """

    def loss_fn(params, params0, x, y, f0, weights):
        logits = regime.predict(apply_fn, params0, params, x, f0)
        return _mean(losses.per_example_loss(logits, y), weights), logits

    def step(state: TrainState, params0: Params, x: jax.Array, y: jax.Array,
             f0: Optional[jax.Array] = None, weights: Optional[jax.Array] = None
             ) -> tuple[TrainState, dict[str, jax.Array]]:
        (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state.params, params0, x, y, f0, weights)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        measurements = {
            "train_loss": loss,
            "train_accuracy": _mean(losses.per_example_correct(logits, y), weights),
            "grad_norm": optax.tree.norm(grads),
        }
        return TrainState(params, opt_state, state.step + 1), measurements

    return step


def all_finite(tree: Any) -> jax.Array:
    """Whether every leaf of ``tree`` is finite (one boolean scalar)."""
    leaves = jax.tree_util.tree_leaves(tree)
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(a)) for a in leaves]))


def make_regime_step(apply_fn: ApplyFn, optimizer: str, momentum: float = 0.0
                     ) -> Callable[..., Any]:
    """Un-jitted step ``(regime, learning_rate, state, params0, *batch) -> (state,
    measurements)`` that also measures whether the new parameters are finite.

    The regime (a pytree whose leaf is alpha) and its learning rate are
    arguments, so one compiled step serves every alpha; the optimiser is built
    from the traced rate.
    """

    def step(regime: Regime, learning_rate: jax.Array, state: TrainState, params0: Params,
             *batch: jax.Array) -> tuple[TrainState, dict[str, jax.Array]]:
        opt = make_optimizer(optimizer, learning_rate, momentum)
        new_state, measurements = make_train_step(apply_fn, regime, opt)(state, params0, *batch)
        return new_state, dict(measurements, params_finite=all_finite(new_state.params))

    return step


class PerExample(NamedTuple):
    """What a record measures of each example, from the regime's output (the scores of
    :mod:`lazy_hasty.analysis.scores` read the last three)."""

    loss: Any
    correct: Any
    margin: Any                     # the label's logit minus the largest other
    probability: Any                # the probability of the label
    el2n: Any                       # ||softmax - onehot||_2


def evaluate(apply_fn: ApplyFn, regime: Regime, params0: Params, params: Params,
             x: jax.Array, y: jax.Array) -> PerExample:
    """Per-example loss, correctness, margin, label probability and EL2N of the
    regime's output on ``(x, y)``."""
    logits = regime.predict(apply_fn, params0, params, x)
    return PerExample(losses.per_example_loss(logits, y), losses.per_example_correct(logits, y),
                      losses.label_margin(logits, y), losses.label_probability(logits, y),
                      losses.el2n(logits, y))
