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

from lazy_hasty import function_space, models, ntk, progress, train
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


def _param_space(apply_fn, regime: Regime, learning_rate: float):
    """(init, step, snapshot) of one regime trained in parameter space."""
    opt = train.regime_optimizer(regime, "sgd", learning_rate)
    step_fn = train.make_train_step(apply_fn, regime, opt)
    init = lambda p0, x: train.init_state(regime, p0, opt)
    step = lambda state, p0, x, y, f0: step_fn(state, p0, x, y, f0)
    return init, step, lambda state: state.params


def _function_space(apply_fn, learning_rate: float):
    """(init, step, snapshot) of the exact linearized regime trained in function space."""
    def init(p0, x):
        kernel = ntk.empirical_ntk(apply_fn, p0, x)
        return kernel, function_space.init_kernel_state(len(x), kernel.shape[1])

    def step(carry, p0, x, y, f0):
        kernel, state = carry
        state, m = function_space.kernel_gd_step(state, kernel, y, learning_rate)
        return (kernel, state), m

    return init, step, lambda carry: carry[1].c


def run_yinyang(*, seed: int, num_runs: int, num_steps: int, learning_rate: float,
                thresholds: Sequence[float], regimes: Sequence[str],
                n_train: int = 100, hidden: Sequence[int] = (60, 60, 60),
                grid_resolution: int = 100, function_space_linearized: bool = True,
                stop_when_crossed: bool = True, eval_batch: int = 10, segments: int = 20,
                callback: Optional[Callable[[int, int, float], None]] = None
                ) -> YinYangResult:
    """Trains ``num_runs`` seeds in every regime and evaluates the grid at crossings.

    Full-batch GD with learning rate ``learning_rate`` (``/ alpha**2`` when
    rescaled). ``function_space_linearized`` trains the exact linearized regime
    through its training-set NTK (exact, much cheaper; see ``function_space``).
    ``stop_when_crossed`` stops stepping a regime once every run has reached
    every threshold (its loss curve ends there). ``callback(steps_done,
    num_steps, seconds)`` follows the ``segments`` chunks of the compiled loop.
    """
    parsed: list[Regime] = [parse_regime(r) for r in regimes]
    thr = jnp.asarray(progress.check_thresholds(thresholds, float(np.log(2.0))), jnp.float32)
    module = models.get_model("mlp", features=tuple(hidden), num_outputs=1)
    apply_fn = models.make_apply_fn(module, {})
    run_keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.PRNGKey(seed), i))(
        jnp.arange(num_runs))
    x, y, params0 = _init_runs(run_keys, n_train, module)
    f0 = jax.jit(jax.vmap(apply_fn))(params0, x)              # cached f(params0, x_train)

    def make_segment(init, step, snapshot):
        def init_run(p0, xr):
            state = init(p0, xr)
            saved = jax.tree_util.tree_map(
                lambda a: jnp.zeros((len(thr),) + a.shape, a.dtype), snapshot(state))
            return state, saved, jnp.full((len(thr),), -1, jnp.int32)

        def run_segment(carry, p0, xr, yr, f0r, start, length):
            def body(carry, i):
                state, saved, crossed = carry
                new_state, m = step(state, p0, xr, yr, f0r)
                hit = progress.reached(m["train_loss"], thr) & (crossed < 0)
                saved = jax.tree_util.tree_map(
                    lambda s, p: jnp.where(hit.reshape((-1,) + (1,) * p.ndim), p[None], s),
                    saved, snapshot(state))
                return (new_state, saved, jnp.where(hit, i, crossed)), m["train_loss"]
            return jax.lax.scan(body, carry, start + jnp.arange(length))

        return (jax.jit(jax.vmap(init_run)),
                jax.jit(jax.vmap(run_segment, in_axes=(0, 0, 0, 0, 0, None, None)),
                        static_argnums=6))

    runners = []
    for regime in parsed:
        fs = function_space_linearized and regime.kind == "linearized"
        parts = _function_space(apply_fn, learning_rate) if fs else _param_space(
            apply_fn, regime, learning_rate)
        init_fn, segment_fn = make_segment(*parts)
        runners.append([fs, init_fn(params0, x), segment_fn])

    bounds = np.linspace(0, num_steps, max(1, min(segments, num_steps)) + 1).astype(int)
    curves = np.full((len(parsed), num_runs, num_steps), np.nan, np.float32)
    start = time.perf_counter()
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        for i, runner in enumerate(runners):
            fs, carry, segment_fn = runner
            if stop_when_crossed and bool(np.all(np.asarray(carry[2]) >= 0)):
                continue
            runner[1], seg = segment_fn(carry, params0, x, y, f0, int(lo), int(hi - lo))
            curves[i, :, lo:hi] = np.asarray(seg)
        if callback is not None:
            callback(int(hi), num_steps, time.perf_counter() - start)

    grid = data.grid_points(grid_resolution)
    grid_y = data.yinyang_labels(grid)

    def grid_loss_fn(regime: Regime, fs: bool):
        def one_run(p0, xr, saved):                              # saved: (T, ...)
            def loss(s):
                p = function_space.weights(apply_fn, p0, xr, s) if fs else s
                return train.evaluate(apply_fn, regime, p0, p, grid, grid_y)[0]
            return jax.vmap(loss)(saved)                         # (T, M)
        return jax.jit(jax.vmap(one_run))

    test_losses = {}
    for regime, (fs, carry, _) in zip(parsed, runners):
        fn = grid_loss_fn(regime, fs)
        batches = [fn(*jax.tree_util.tree_map(lambda a: a[lo:lo + eval_batch],
                                              (params0, x, carry[1])))
                   for lo in range(0, num_runs, eval_batch)]
        test_losses[regime.name] = np.concatenate([np.asarray(b) for b in batches])

    return YinYangResult(
        regimes=[r.name for r in parsed], thresholds=np.asarray(thr),
        loss_curves={r.name: curves[i] for i, r in enumerate(parsed)},
        crossings={r.name: np.asarray(runners[i][1][2]) for i, r in enumerate(parsed)},
        grid=np.asarray(grid), test_losses=test_losses,
        train_points=np.asarray(x), train_labels=np.asarray(y))
