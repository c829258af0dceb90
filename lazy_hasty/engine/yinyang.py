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
import functools
import time
from typing import Any, Callable, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from lazy_hasty import function_space, models, ntk, rng
from lazy_hasty.engine import train
from lazy_hasty.analysis import progress
from lazy_hasty.data import yinyang as data
from lazy_hasty.regimes import Regime, parse_regime
from lazy_hasty.types import ApplyFn, Params


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


class Runs(NamedTuple):
    """What every regime of every run starts from, batched over runs (leading axis R)."""

    x: jax.Array        # (R, N, 2) training points
    y: jax.Array        # (R, N) labels in {±1}
    params0: Params     # the shared initialisation
    f0: jax.Array       # (R, N, 1) f(params0, x), cached for the regimes that need it


class KernelCarry(NamedTuple):
    """State of the exact linearized regime in function space: its fixed NTK and GD state."""

    kernel: jax.Array
    state: function_space.KernelState


class Carry(NamedTuple):
    """Scan carry of one regime and run."""

    state: Any           # the regime's training state
    saved: Params        # snapshot at each threshold's first crossing, leading axis (T,)
    crossed: jax.Array   # (T,) step of each threshold's first crossing, -1 until then


@dataclasses.dataclass(frozen=True)
class Dynamics:
    """How one regime trains: ``init(p0, x) -> state``, ``step(state, p0, x, y, f0) ->
    (state, metrics)`` and ``snapshot(state)``, what is saved at a crossing."""

    init: Callable[[Params, jax.Array], Any]
    step: Callable[..., tuple[Any, dict]]
    snapshot: Callable[[Any], Params]


@dataclasses.dataclass
class RegimeRun:
    """One regime trained over all runs: its compiled segment, carry and loss curves."""

    regime: Regime
    in_function_space: bool    # trained through its NTK (``Carry.saved`` holds coefficients)
    segment: Callable[..., tuple[Carry, jax.Array]]
    carry: Carry               # batched over runs
    loss_curves: np.ndarray    # (R, S) mean training loss per step, NaN where not stepped

    def all_crossed(self) -> bool:
        """Whether every run has reached every threshold."""
        return bool(np.all(np.asarray(self.carry.crossed) >= 0))

    def advance(self, runs: Runs, start: int, length: int) -> None:
        """Steps every run ``length`` times from step ``start``, recording the losses."""
        self.carry, losses = self.segment(self.carry, runs.params0, runs.x, runs.y, runs.f0,
                                          start, length)
        self.loss_curves[:, start:start + length] = np.asarray(losses)


@functools.partial(jax.jit, static_argnames=("module", "n_train", "num_runs"))
def _draw_runs(seed: jax.Array, module, n_train: int, num_runs: int):
    """Each run's training set and ``params0``, drawn in one compiled program (op by op,
    every op compiles on its own); compiled once per network and size, not per call.
    Run ``i`` draws its points from stream ``("train_set", i)`` of ``seed`` and its
    initialisation from ``("init", i)``."""
    def one(i):
        x, y = data.sample_train(rng.jax_key(seed, "train_set", i), n_train)
        params0, _ = models.init_model(module, rng.jax_key(seed, "init", i), x)
        return x, y, params0
    return jax.vmap(one)(jnp.arange(num_runs))


def _init_runs(seed: int, num_runs: int, n_train: int, module, apply_fn: ApplyFn) -> Runs:
    """Per-run training set and initialisation, each run its own streams of ``seed``."""
    x, y, params0 = _draw_runs(seed, module, n_train, num_runs)
    return Runs(x, y, params0, jax.jit(jax.vmap(apply_fn))(params0, x))


def _param_space(apply_fn: ApplyFn, regime: Regime, learning_rate: float) -> Dynamics:
    """One regime trained in parameter space."""
    opt = train.regime_optimizer(regime, "sgd", learning_rate)
    return Dynamics(init=lambda p0, x: train.init_state(regime, p0, opt),
                    step=train.make_train_step(apply_fn, regime, opt),
                    snapshot=lambda state: state.params)


def _function_space(apply_fn: ApplyFn, learning_rate: float) -> Dynamics:
    """The exact linearized regime trained in function space; snapshots its coefficients."""
    def init(p0, x):
        kernel = ntk.empirical_ntk(apply_fn, p0, x)
        return KernelCarry(kernel, function_space.init_kernel_state(len(x), kernel.shape[1]))

    def step(carry, p0, x, y, f0):
        state, metrics = function_space.kernel_gd_step(carry.state, carry.kernel, y,
                                                       learning_rate)
        return carry._replace(state=state), metrics

    return Dynamics(init, step, snapshot=lambda carry: carry.state.c)


def _save_crossings(saved: Params, snapshot: Params, hit: jax.Array) -> Params:
    """``saved`` with ``snapshot`` written at the thresholds ``hit`` (``(T,)`` booleans)."""
    return jax.tree_util.tree_map(
        lambda s, p: jnp.where(hit.reshape((-1,) + (1,) * p.ndim), p[None], s),
        saved, snapshot)


def _compile(dynamics: Dynamics, thr: jax.Array) -> tuple[Callable, Callable]:
    """Jitted, run-batched ``init(p0, x) -> Carry`` and ``segment(carry, p0, x, y, f0,
    start, length) -> (carry, (R, length) losses)``, which scans ``length`` steps and
    snapshots each threshold's first crossing inside the loop (no host round trip)."""
    def init_run(p0, xr):
        state = dynamics.init(p0, xr)
        saved = jax.tree_util.tree_map(
            lambda a: jnp.zeros((len(thr),) + a.shape, a.dtype), dynamics.snapshot(state))
        return Carry(state, saved, jnp.full((len(thr),), -1, jnp.int32))

    def run_segment(carry, p0, xr, yr, f0r, start, length):
        def body(carry: Carry, i):
            new_state, m = dynamics.step(carry.state, p0, xr, yr, f0r)
            hit = progress.reached(m["train_loss"], thr) & (carry.crossed < 0)
            saved = _save_crossings(carry.saved, dynamics.snapshot(carry.state), hit)
            return Carry(new_state, saved, jnp.where(hit, i, carry.crossed)), m["train_loss"]
        return jax.lax.scan(body, carry, start + jnp.arange(length))

    return (jax.jit(jax.vmap(init_run)),
            jax.jit(jax.vmap(run_segment, in_axes=(0, 0, 0, 0, 0, None, None)),
                    static_argnums=6))


def _start_regime(regime: Regime, apply_fn: ApplyFn, runs: Runs, thr: jax.Array,
                  learning_rate: float, function_space_linearized: bool,
                  num_steps: int) -> RegimeRun:
    """``regime`` compiled and initialised for every run, before its first step."""
    fs = function_space_linearized and regime.kind == "linearized"
    dynamics = (_function_space(apply_fn, learning_rate) if fs
                else _param_space(apply_fn, regime, learning_rate))
    init, segment = _compile(dynamics, thr)
    curves = np.full((len(runs.x), num_steps), np.nan, np.float32)
    return RegimeRun(regime, fs, segment, init(runs.params0, runs.x), curves)


def _train(regime_runs: Sequence[RegimeRun], runs: Runs, num_steps: int, segments: int,
           stop_when_crossed: bool, callback: Optional[Callable[[int, int, float], None]]
           ) -> None:
    """Advances every regime through ``segments`` chunks of the ``num_steps`` steps."""
    bounds = np.linspace(0, num_steps, max(1, min(segments, num_steps)) + 1).astype(int)
    start = time.perf_counter()
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        for run in regime_runs:
            if not (stop_when_crossed and run.all_crossed()):
                run.advance(runs, int(lo), int(hi - lo))
        if callback is not None:
            callback(int(hi), num_steps, time.perf_counter() - start)


def _grid_losses(run: RegimeRun, apply_fn: ApplyFn, runs: Runs, grid: jax.Array,
                 eval_batch: int) -> np.ndarray:
    """``(R, T, M)`` test loss on ``grid`` of each run's snapshot at each threshold,
    ``eval_batch`` runs at a time (bounds the memory of the batched evaluation)."""
    grid_y = data.yinyang_labels(grid)

    def one_run(p0, xr, saved):                                  # saved: (T, ...)
        def loss(s):
            p = function_space.weights(apply_fn, p0, xr, s) if run.in_function_space else s
            return train.evaluate(apply_fn, run.regime, p0, p, grid, grid_y)[0]
        return jax.vmap(loss)(saved)                             # (T, M)

    fn = jax.jit(jax.vmap(one_run))
    batches = [fn(*jax.tree_util.tree_map(lambda a: a[lo:lo + eval_batch],
                                          (runs.params0, runs.x, run.carry.saved)))
               for lo in range(0, len(runs.x), eval_batch)]
    return np.concatenate([np.asarray(b) for b in batches])


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
    runs = _init_runs(seed, num_runs, n_train, module, apply_fn)
    regime_runs = [_start_regime(r, apply_fn, runs, thr, learning_rate,
                                 function_space_linearized, num_steps) for r in parsed]
    _train(regime_runs, runs, num_steps, segments, stop_when_crossed, callback)
    grid = data.grid_points(grid_resolution)
    return YinYangResult(
        regimes=[r.name for r in parsed], thresholds=np.asarray(thr),
        loss_curves={run.regime.name: run.loss_curves for run in regime_runs},
        crossings={run.regime.name: np.asarray(run.carry.crossed) for run in regime_runs},
        grid=np.asarray(grid),
        test_losses={run.regime.name: _grid_losses(run, apply_fn, runs, grid, eval_batch)
                     for run in regime_runs},
        train_points=np.asarray(runs.x), train_labels=np.asarray(runs.y))
