"""The motivating toy of Section 3 / Fig. 1: many seeds, three regimes, Δloss maps.

Each run (seed) draws its own training set and initialisation and trains it,
full batch, in every regime from that one ``params0``. All runs and regimes
advance together in one compiled program (``vmap`` over runs, ``scan`` over
steps); the parameters are snapshotted the first time each regime's mean
training loss reaches each threshold, and the test loss on a grid paving the
square is compared there: ``Δloss = loss_nonlinear - loss_linear``.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from lazy_hasty import models, progress, train
from lazy_hasty.data import yinyang as data
from lazy_hasty.regimes import Regime, parse_regime


@dataclasses.dataclass
class YinYangResult:
    """Everything Fig. 1 and the records need, as numpy arrays."""

    regimes: list[str]
    thresholds: np.ndarray            # (T,)
    loss_curves: dict[str, np.ndarray]  # regime -> (R, S) mean training loss per step
    crossings: dict[str, np.ndarray]  # regime -> (R, T) first step reaching each threshold
    grid: np.ndarray                  # (M, 2) test points
    test_losses: dict[str, np.ndarray]  # regime -> (R, T, M) grid loss at each crossing
    train_points: np.ndarray          # (R, N, 2) training sets
    train_labels: np.ndarray          # (R, N)

    def delta(self, nonlinear: str, linear: str) -> tuple[np.ndarray, np.ndarray]:
        """Mean Δloss map (T, M) over runs where both regimes reached the threshold,
        and the number of runs used per threshold (T,)."""
        used = (self.crossings[nonlinear] >= 0) & (self.crossings[linear] >= 0)  # (R, T)
        diff = self.test_losses[nonlinear] - self.test_losses[linear]
        mean = progress.masked_mean(jnp.asarray(diff), jnp.asarray(used), axis=0)
        return np.asarray(mean), used.sum(axis=0)


def _init_runs(run_keys: jax.Array, n_train: int, module) -> tuple:
    """Per-run training set and initialisation, all batched over runs."""
    def one(key):
        k_data, k_init = jax.random.split(key)
        x, y = data.sample_train(k_data, n_train)
        params0, _ = models.init_model(module, k_init, x)
        return x, y, params0
    return jax.vmap(one)(run_keys)


def run_yinyang(*, seed: int, num_runs: int, num_steps: int, learning_rate: float,
                thresholds: Sequence[float], regimes: Sequence[str],
                n_train: int = 100, hidden: Sequence[int] = (60, 60, 60),
                grid_resolution: int = 100, eval_batch: int = 10, segments: int = 20,
                callback: Optional[Callable[[int, int, float], None]] = None
                ) -> YinYangResult:
    """Trains ``num_runs`` seeds in every regime and evaluates the grid at crossings.

    ``callback(steps_done, num_steps, seconds)`` is called after each of the
    ``segments`` chunks of the compiled training loop (progress bar / ETA).
    """
    parsed: list[Regime] = [parse_regime(r) for r in regimes]
    thr = jnp.asarray(progress.check_thresholds(thresholds, float(np.log(2.0))), jnp.float32)
    module = models.get_model("mlp", features=tuple(hidden), num_outputs=1)
    apply_fn = models.make_apply_fn(module, {})
    run_keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.PRNGKey(seed), i))(
        jnp.arange(num_runs))
    x, y, params0 = _init_runs(run_keys, n_train, module)

    steps, opts = [], []
    for regime in parsed:
        opt = train.regime_optimizer(regime, "sgd", learning_rate)
        steps.append(train.make_train_step(apply_fn, regime, opt))
        opts.append(opt)

    def init_carry(p0):
        carry = []
        for regime, opt in zip(parsed, opts):
            state = train.init_state(regime, p0, opt)
            saved = jax.tree_util.tree_map(
                lambda a: jnp.zeros((len(thr),) + a.shape, a.dtype), state.params)
            carry.append((state, saved, jnp.full((len(thr),), -1, jnp.int32)))
        return carry

    def one_run_segment(carry, p0, xr, yr, length):
        def body(carry, _):
            new, losses = [], []
            for step_fn, (state, saved, crossed) in zip(steps, carry):
                new_state, m = step_fn(state, p0, xr, yr)
                hit = progress.reached(m["train_loss"], thr) & (crossed < 0)
                saved = jax.tree_util.tree_map(
                    lambda s, p: jnp.where(hit.reshape((-1,) + (1,) * p.ndim), p[None], s),
                    saved, state.params)
                crossed = jnp.where(hit, state.step, crossed)
                new.append((new_state, saved, crossed))
                losses.append(m["train_loss"])
            return new, jnp.stack(losses)
        return jax.lax.scan(body, carry, None, length=length)

    segment_fn = jax.jit(jax.vmap(one_run_segment, in_axes=(0, 0, 0, 0, None)),
                         static_argnums=4)
    carry = jax.vmap(init_carry)(params0)
    bounds = np.linspace(0, num_steps, max(1, min(segments, num_steps)) + 1).astype(int)
    curves, start = [], time.perf_counter()
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        carry, seg = segment_fn(carry, params0, x, y, int(hi - lo))
        curves.append(np.asarray(seg))                         # (R, L, regimes)
        if callback is not None:
            callback(int(hi), num_steps, time.perf_counter() - start)
    curves = np.concatenate(curves, axis=1)

    grid = data.grid_points(grid_resolution)
    grid_y = data.yinyang_labels(grid)

    def grid_loss_fn(regime: Regime):
        def one_run(p0, saved):                                  # saved: (T, ...) params
            loss = lambda p: train.evaluate(apply_fn, regime, p0, p, grid, grid_y)[0]
            return jax.vmap(loss)(saved)                         # (T, M)
        return jax.jit(jax.vmap(one_run))

    test_losses = {}
    for i, regime in enumerate(parsed):
        fn, saved = grid_loss_fn(regime), carry[i][1]
        batches = [fn(*jax.tree_util.tree_map(lambda a: a[lo:lo + eval_batch], (params0, saved)))
                   for lo in range(0, num_runs, eval_batch)]
        test_losses[regime.name] = np.concatenate([np.asarray(b) for b in batches])

    return YinYangResult(
        regimes=[r.name for r in parsed], thresholds=np.asarray(thr),
        loss_curves={r.name: curves[..., i] for i, r in enumerate(parsed)},
        crossings={r.name: np.asarray(carry[i][2]) for i, r in enumerate(parsed)},
        grid=np.asarray(grid), test_losses=test_losses,
        train_points=np.asarray(x), train_labels=np.asarray(y))
