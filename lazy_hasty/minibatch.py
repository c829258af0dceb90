"""Minibatch training of one regime with progress-dense records (image experiments).

Every regime of a run starts from the same ``params0`` and sees the same
minibatch order (a fresh seeded shuffle each epoch, shared by all regimes).
Batches are sharded over the ``"data"`` mesh axis, state is replicated.
At each record (``schedule.RecordSchedule``) the regime is evaluated on every
example group, and every ``probe_every``-th record also on the linearity probe.
"""

from __future__ import annotations

import time
from typing import Callable, Optional

import jax
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
    """Training diverged: the loss is NaN or infinite."""


def train_regime(*, apply_fn: ApplyFn, regime: Regime, params0: Params,
                 x_train: np.ndarray, y_train: np.ndarray, num_steps: int,
                 batch_size: int, learning_rate: float, momentum: float, seed: int,
                 evaluator: GroupEvaluator, on_record: OnRecord,
                 probe: Optional[LinearityProbe] = None, probe_every: int = 5,
                 ladder_ratio: float = 0.96, optimizer: str = "sgd",
                 log_every_seconds: float = 30.0) -> Params:
    """Trains ``regime`` for ``num_steps`` SGD steps; returns its trainable params.

    ``on_record(record, correct)`` receives each record (the metrics JSONL
    schema) and the per-example correctness over ``evaluator``'s groups.
    """
    n = len(y_train)
    if batch_size > n:
        raise ValueError(f"batch_size {batch_size} exceeds the {n} training examples")
    mesh = sharding.data_mesh()
    sharding.check_batch_size(batch_size, mesh)
    opt = train.regime_optimizer(regime, optimizer, learning_rate, momentum)
    step_fn = jax.jit(train.make_train_step(apply_fn, regime, opt))
    params0 = sharding.replicate(params0, mesh)
    state = sharding.replicate(train.init_state(regime, params0, opt), mesh)
    f0 = None
    if regime.kind == "rescaled":    # f(params0, x) of the fixed, unaugmented train set
        f0 = np.asarray(regimes_lib.initial_outputs(apply_fn, params0, x_train))
    schedule = RecordSchedule(num_steps, ladder_ratio=ladder_ratio)
    num_records, start, last_log = 0, time.perf_counter(), time.perf_counter()

    for step in range(num_steps):
        idx = batch_indices(seed, step, n, batch_size)
        batch = (x_train[idx], y_train[idx]) + (() if f0 is None else (f0[idx],))
        new_state, measurements = step_fn(state, params0, *sharding.shard_batch(batch, mesh))
        loss = float(measurements["train_loss"])      # measured at state.params (step)
        if not np.isfinite(loss):
            raise NonFiniteLossError(f"non-finite training loss {loss} in regime "
                                     f"{regime.name} at step {step}")
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
        state = new_state
        now = time.perf_counter()
        if now - last_log > log_every_seconds:
            rate = (step + 1) / (now - start)
            logging.info("%s: step %d/%d, loss %.4f, %.1f steps/s, ETA %.0fs", regime.name,
                         step + 1, num_steps, schedule.ema_loss, rate,
                         (num_steps - step - 1) / rate)
            last_log = now
    return state.params
