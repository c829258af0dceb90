"""Minibatch training of one regime with progress-dense records (image experiments).

Every regime of a run starts from the same ``params0`` and sees the same
minibatch order (a fresh seeded shuffle each epoch, shared by all regimes).
Batches are sharded over the ``"data"`` mesh axis, state is replicated.
At each record (``schedule.RecordSchedule``) the regime is evaluated on every
example group, and every ``probe_every``-th record also on the linearity probe.
A run can be checkpointed and resumed mid-regime (:class:`RegimeProgress`; the
driver stores it), and stops with :class:`NonFiniteLossError` on divergence.
"""

from __future__ import annotations

import time
from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from lazy_hasty import regimes as regimes_lib, sharding, train
from lazy_hasty.evaluation import GroupEvaluator, LinearityProbe
from lazy_hasty.regimes import ApplyFn, Params, Regime
from lazy_hasty.schedule import RecordSchedule

OnRecord = Callable[[dict, np.ndarray], None]


def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """The shared, seeded example order of one epoch."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def batch_indices(seed: int, step: int, n: int, batch_size: int) -> np.ndarray:
    """Indices of the minibatch at ``step`` (incomplete last batches are dropped)."""
    per_epoch = n // batch_size
    epoch, i = divmod(step, per_epoch)
    return epoch_order(seed, epoch, n)[i * batch_size:(i + 1) * batch_size]


class NonFiniteLossError(FloatingPointError):
    """Training diverged: the loss or the parameters became NaN or infinite.

    ``regime`` (its name), ``alpha`` (None for the linearized and plain
    regimes), ``step`` (the first step whose state is bad: the loss measured
    there, or the parameters reached there) and ``what`` (``"training loss"``
    or ``"parameters"``) say where; a driver that checkpoints sets ``last_checkpoint`` (a
    description of the last good checkpoint) before re-raising.
    """

    def __init__(self, regime: Regime, step: int, what: str, value: Optional[float] = None):
        self.regime, self.alpha, self.step, self.what = regime.name, regime.alpha, step, what
        self.value = value
        self.last_checkpoint: Optional[str] = None
        super().__init__()

    def __str__(self) -> str:
        value = "" if self.value is None else f" {self.value}"
        alpha = "" if self.alpha is None else f" (alpha = {self.alpha:g})"
        text = (f"training diverged: non-finite {self.what}{value} in regime {self.regime} "
                f"at step {self.step}{alpha}; no record from step {self.step} on")
        if self.last_checkpoint is not None:
            text += f"; last good checkpoint: {self.last_checkpoint}"
        return text


class RegimeProgress(NamedTuple):
    """Where the training of one regime stands: enough to continue it bit-identically.

    The minibatch order and every other random draw are pure functions of the
    seed and the step, so no random state is carried.
    """

    step: int                       # the next step to run
    state: train.TrainState         # trainable params and optimiser state before ``step``
    schedule: dict                  # ``RecordSchedule.state_dict()``
    num_records: int                # records written so far (the probe runs every k-th)


def _all_finite(tree) -> jax.Array:
    leaves = jax.tree_util.tree_leaves(tree)
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(a)) for a in leaves]))


def train_regime(*, apply_fn: ApplyFn, regime: Regime, params0: Params,
                 x_train: np.ndarray, y_train: np.ndarray, num_steps: int,
                 batch_size: int, learning_rate: float, momentum: float, seed: int,
                 evaluator: GroupEvaluator, on_record: OnRecord,
                 probe: Optional[LinearityProbe] = None, probe_every: int = 5,
                 ladder_ratio: float = 0.96, optimizer: str = "sgd",
                 log_every_seconds: float = 30.0,
                 resume: Optional[Callable[[train.TrainState], Optional[RegimeProgress]]] = None,
                 checkpoint_every: int = 0,
                 on_checkpoint: Optional[Callable[[RegimeProgress], None]] = None) -> Params:
    """Trains ``regime`` for ``num_steps`` SGD steps; returns its trainable params.

    ``on_record(record, correct)`` receives each record (the metrics JSONL
    schema) and the per-example correctness over ``evaluator``'s groups.

    Checkpointing: every ``checkpoint_every`` steps (0: never) before the last,
    ``on_checkpoint(progress)`` receives the :class:`RegimeProgress` after the
    step (its state is checked finite). ``resume(initial_state)``, if given, is
    called once with the step-0 state (a restore target: structure, dtypes,
    shardings) and returns the progress to continue from, or None to start at 0.

    Raises :class:`NonFiniteLossError` when the loss (at a step) or the
    parameters (after it) are not finite; the step's record is written only
    when its loss is finite.
    """
    n = len(y_train)
    if batch_size > n:
        raise ValueError(f"batch_size {batch_size} exceeds the {n} training examples")
    mesh = sharding.data_mesh()
    sharding.check_batch_size(batch_size, mesh)
    opt = train.regime_optimizer(regime, optimizer, learning_rate, momentum)
    step_core = train.make_train_step(apply_fn, regime, opt)

    def guarded_step(state, params0, *batch):
        new_state, measurements = step_core(state, params0, *batch)
        return new_state, dict(measurements, params_finite=_all_finite(new_state.params))

    step_fn = jax.jit(guarded_step)
    params0 = sharding.replicate(params0, mesh)
    state = sharding.replicate(train.init_state(regime, params0, opt), mesh)
    f0 = None
    if regime.kind == "rescaled":    # f(params0, x) of the fixed, unaugmented train set
        f0 = np.asarray(regimes_lib.initial_outputs(apply_fn, params0, x_train))
    schedule = RecordSchedule(num_steps, ladder_ratio=ladder_ratio)
    num_records, first_step = 0, 0
    progress = resume(state) if resume is not None else None
    if progress is not None:
        first_step, state, num_records = progress.step, progress.state, progress.num_records
        schedule.load_state_dict(progress.schedule)
        logging.info("%s: resuming at step %d/%d", regime.name, first_step, num_steps)
    start, last_log = time.perf_counter(), time.perf_counter()

    def finish(step, state, measurements, new_state):
        """Host side of ``step``: divergence guard, record, checkpoint, log."""
        nonlocal num_records, last_log
        loss, finite = jax.device_get((measurements["train_loss"],
                                       measurements["params_finite"]))
        loss = float(loss)                            # measured at state.params (step)
        if not np.isfinite(loss):
            raise NonFiniteLossError(regime, step, "training loss", loss)
        if schedule.should_record(step, loss):
            network = regime.network_params(params0, state.params)
            per_loss, correct = evaluator.per_example(apply_fn, regime, params0, state.params)
            record = {"step": step, "regime": regime.name, "epoch": step * batch_size // n,
                      "batch_loss": loss, "train_loss_ema": schedule.ema_loss,
                      **evaluator.summarize(per_loss, correct)}
            record["train_loss"] = record.get("train/all/loss", schedule.ema_loss)
            if probe is not None and num_records % probe_every == 0:
                record.update(probe(network))
            on_record(record, correct)
            num_records += 1
        if not finite:
            raise NonFiniteLossError(regime, step + 1, "parameters")
        if (on_checkpoint is not None and checkpoint_every > 0
                and (step + 1) % checkpoint_every == 0 and step + 1 < num_steps):
            on_checkpoint(RegimeProgress(step + 1, new_state, schedule.state_dict(),
                                         num_records))
        now = time.perf_counter()
        if now - last_log > log_every_seconds:
            rate = (step + 1 - first_step) / (now - start)
            logging.info("%s: step %d/%d, loss %.4f, %.1f steps/s, ETA %.0fs", regime.name,
                         step + 1, num_steps, schedule.ema_loss, rate,
                         (num_steps - step - 1) / rate)
            last_log = now

    # One step of lag: step k+1 is dispatched before step k's loss is read on the
    # host, so the accelerator never waits for the host between steps. The record
    # of step k still evaluates the state at step k.
    pending = None
    for step in range(first_step, num_steps):
        idx = batch_indices(seed, step, n, batch_size)
        batch = (x_train[idx], y_train[idx]) + (() if f0 is None else (f0[idx],))
        new_state, measurements = step_fn(state, params0, *sharding.shard_batch(batch, mesh))
        if pending is not None:
            finish(*pending)
        pending = (step, state, measurements, new_state)
        state = new_state
    if pending is not None:
        finish(*pending)
    return state.params
