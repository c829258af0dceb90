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

import concurrent.futures
import functools
import math
import time
from typing import Callable, NamedTuple, Optional, Protocol

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding
from absl import logging

from lazy_hasty import regimes as regimes_lib, rng
from lazy_hasty.engine import preemption, sharding, train
from lazy_hasty.engine.evaluation import GroupEvaluator, LinearityProbe
from lazy_hasty.data.splits import Split
from lazy_hasty.regimes import Regime
from lazy_hasty.engine.schedule import RecordSchedule
from lazy_hasty.types import ApplyFn, Params


def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """The shared, seeded example order of one epoch."""
    return rng.numpy_rng(seed, epoch).permutation(n)


def batch_slice(step: int, n: int, batch_size: int) -> tuple[int, slice]:
    """The epoch of ``step`` and where its minibatch sits in that epoch's order."""
    epoch, i = divmod(step, n // batch_size)
    return epoch, slice(i * batch_size, (i + 1) * batch_size)


def batch_indices(seed: int, step: int, n: int, batch_size: int) -> np.ndarray:
    """Indices of the minibatch at ``step`` (incomplete last batches are dropped)."""
    epoch, where = batch_slice(step, n, batch_size)
    return epoch_order(seed, epoch, n)[where]


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


class StopRule(NamedTuple):
    """Stop a regime at the first record whose ``key`` reaches ``target``.

    ``decreasing``: the key falls with progress (a loss), so reaching means
    ``<= target``; otherwise ``>= target``. Runs of several regimes (or of an
    alpha sweep) trained to one progress level cover the same comparison range
    without hand-tuned epochs; the step budget is then a cap.
    """

    key: str
    target: float
    decreasing: bool = True

    def reached(self, record: dict) -> bool:
        value = record[self.key]
        return value <= self.target if self.decreasing else value >= self.target


class TrainOptions(NamedTuple):
    """How one regime is trained: SGD budget, record ladder, probe and checkpoint pace."""

    num_steps: int
    batch_size: int
    learning_rate: float
    momentum: float = 0.0
    seed: int = 0                   # minibatch order (shared by all regimes of a run)
    ladder_ratio: float = 0.96      # a record each time the loss EMA falls by this ratio
    probe_every: int = 5            # linearity probe on every k-th record
    checkpoint_every: int = 0       # steps between checkpoints (0: never)
    optimizer: str = "sgd"
    log_every_seconds: float = 30.0
    stop: Optional[StopRule] = None  # None: train for num_steps
    device_data_bytes: int = 0      # training sets up to this size are kept on device


class Hooks(Protocol):
    """What the training loop tells the outside world (the driver's run log)."""

    def record(self, record: dict, correct: np.ndarray) -> None:
        """A record (the metrics JSONL schema) and the per-example correctness."""

    def resume(self, initial_state: train.TrainState) -> Optional["RegimeProgress"]:
        """Where to continue from (``initial_state``: a restore target), or None."""

    def checkpoint(self, progress: "RegimeProgress") -> None:
        """Save ``progress`` (every ``checkpoint_every`` steps, state checked finite)."""


class RecordList:
    """:class:`Hooks` that keep records and correctness in memory (no checkpoints)."""

    def __init__(self):
        self.records: list[dict] = []
        self.correct: list[np.ndarray] = []

    def record(self, record: dict, correct: np.ndarray) -> None:
        self.records.append(record)
        self.correct.append(correct)

    def resume(self, initial_state: train.TrainState) -> None:
        return None

    def checkpoint(self, progress: "RegimeProgress") -> None:
        pass


class _Loop(NamedTuple):
    """The pieces of one regime's loop that stay fixed while it runs."""

    apply_fn: ApplyFn
    regime: Regime
    params0: Params
    options: TrainOptions
    evaluator: GroupEvaluator
    hooks: Hooks
    probe: Optional[LinearityProbe]
    schedule: RecordSchedule
    num_examples: int


def _guarded_step(apply_fn: ApplyFn, optimizer: str, momentum: float) -> Callable:
    """The un-jitted step ``(regime, learning_rate, state, params0, *batch)``, also
    reporting whether the new parameters are finite. The regime and its rate are
    arguments, so that one compile serves every alpha."""

    def guarded_step(regime, learning_rate, state, params0, *batch):
        opt = train.make_optimizer(optimizer, learning_rate, momentum)
        new_state, measurements = train.make_train_step(apply_fn, regime, opt)(
            state, params0, *batch)
        return new_state, dict(measurements, params_finite=_all_finite(new_state.params))

    return guarded_step


@functools.lru_cache(maxsize=16)
def _jitted_step(apply_fn: ApplyFn, optimizer: str, momentum: float,
                 gather: Optional[NamedSharding]) -> Callable:
    """The jitted step, once per network, optimiser and batch source; ``gather`` is
    the sharding of minibatches gathered on device from the step's indices."""
    step = _guarded_step(apply_fn, optimizer, momentum)
    if gather is None:
        return jax.jit(step)
    take = lambda a, idx: a.at[idx].get(out_sharding=gather)
    return jax.jit(lambda regime, lr, state, params0, idx, *data: step(
        regime, lr, state, params0, *(take(a, idx) for a in data)))


def _regime_step(jitted: Callable, regime: Regime, options: TrainOptions
                 ) -> tuple[Callable, optax.GradientTransformation]:
    """``jitted`` bound to ``regime`` and its learning rate, and the regime's optimiser
    (it checks the rate and makes the step-0 state)."""
    lr = regime.learning_rate(options.learning_rate)
    opt = train.make_optimizer(options.optimizer, lr, options.momentum)
    return functools.partial(jitted, regime, lr), opt


class _Batches:
    """Where a regime's minibatches come from: the device or the host.

    When the training set (and ``f0``) fits in ``options.device_data_bytes``,
    it is put on every device once and each step gathers its minibatch there
    from the step's indices (only the indices travel). Otherwise the host
    gathers each minibatch, one step ahead in a background thread, so the
    step never waits for it. The gathered values are the same either way.
    """

    def __init__(self, train_set: Split, f0: Optional[np.ndarray], options: TrainOptions):
        self.mesh = sharding.data_mesh()
        sharding.check_batch_size(options.batch_size, self.mesh)
        self.options, self.n = options, len(train_set.y)
        arrays = (train_set.x, train_set.y) + (() if f0 is None else (f0,))
        size = sum(getattr(a, "nbytes", math.inf) for a in arrays)
        on_device = 0 < size <= options.device_data_bytes and isinstance(train_set.x,
                                                                           np.ndarray)
        self.arrays = sharding.replicate(arrays, self.mesh) if on_device else arrays
        self.on_device = on_device
        self._pool = None if on_device else concurrent.futures.ThreadPoolExecutor(1)
        self._next: Optional[tuple[int, concurrent.futures.Future]] = None
        self._order: tuple[int, Optional[np.ndarray]] = (-1, None)   # (epoch, its order)

    @property
    def gather(self) -> Optional[NamedSharding]:
        """On device: the sharding of a minibatch gathered from :meth:`args`'s indices."""
        return NamedSharding(self.mesh, sharding.BATCH) if self.on_device else None

    def indices(self, step: int) -> np.ndarray:
        """:func:`batch_indices` of ``step``, its epoch's order drawn once."""
        epoch, where = batch_slice(step, self.n, self.options.batch_size)
        if self._order[0] != epoch:
            self._order = (epoch, epoch_order(self.options.seed, epoch, self.n))
        return self._order[1][where]

    def _host_batch(self, step: int) -> tuple:
        idx = self.indices(step)
        return sharding.shard_batch(tuple(a[idx] for a in self.arrays), self.mesh)

    def args(self, step: int) -> tuple:
        """The step's batch arguments (host path: prefetches the next step's)."""
        if self.on_device:
            return (*sharding.shard_batch((self.indices(step),), self.mesh), *self.arrays)
        if self._next is not None and self._next[0] == step:
            batch = self._next[1].result()
        else:
            batch = self._host_batch(step)
        if step + 1 < self.options.num_steps:
            self._next = (step + 1, self._pool.submit(self._host_batch, step + 1))
        return batch

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)


def _finish(loop: _Loop, step: int, loss: float, finite: bool,
            params_at: Callable[[], Params], num_records: int) -> tuple[int, bool]:
    """Host side of ``step``: divergence guard and record.

    ``loss`` was measured at the parameters of ``step`` (``params_at()``),
    ``finite`` says whether the update left them finite. Returns the record
    count and whether the stop rule was reached (training should end).
    """
    regime, options, schedule = loop.regime, loop.options, loop.schedule
    if not np.isfinite(loss):
        raise NonFiniteLossError(regime, step, "training loss", loss)
    if schedule.should_record(step, loss):
        params = params_at()
        per_loss, correct = loop.evaluator.per_example(loop.apply_fn, regime, loop.params0,
                                                       params)
        record = {"step": step, "regime": regime.name,
                  "epoch": step * options.batch_size // loop.num_examples,
                  "batch_loss": loss, "train_loss_ema": schedule.ema_loss,
                  **loop.evaluator.summarize(per_loss, correct)}
        record["train_loss"] = record.get("train/all/loss", schedule.ema_loss)
        if loop.probe is not None and num_records % options.probe_every == 0:
            record.update(loop.probe(regime.network_params(loop.params0, params)))
        loop.hooks.record(record, correct)
        num_records += 1
        if options.stop is not None and options.stop.reached(record):
            return num_records, True
    if not finite:
        raise NonFiniteLossError(regime, step + 1, "parameters")
    return num_records, False


def _host_values(measurements: dict) -> tuple[np.ndarray, np.ndarray]:
    """The step's loss (float64) and parameter finiteness, fetched together."""
    loss, finite = jax.device_get((measurements["train_loss"], measurements["params_finite"]))
    return np.asarray(loss, np.float64), np.asarray(finite)


def _maybe_checkpoint(loop: _Loop, step: int, new_state: train.TrainState,
                      num_records: int) -> None:
    """Hands ``hooks.checkpoint`` the progress after ``step`` every ``checkpoint_every``."""
    options = loop.options
    if (options.checkpoint_every > 0 and (step + 1) % options.checkpoint_every == 0
            and step + 1 < options.num_steps):
        loop.hooks.checkpoint(RegimeProgress(step + 1, new_state, loop.schedule.state_dict(),
                                             num_records))


def train_regime(apply_fn: ApplyFn, regime: Regime, params0: Params, train_set: Split,
                 options: TrainOptions, evaluator: GroupEvaluator, hooks: Hooks,
                 probe: Optional[LinearityProbe] = None) -> Params:
    """Trains ``regime`` for ``options.num_steps`` SGD steps; returns its trainable params.

    Each record goes to ``hooks.record``; ``hooks.resume`` is asked once where
    to start; ``hooks.checkpoint`` gets the progress every
    ``options.checkpoint_every`` steps before the last. Raises
    :class:`NonFiniteLossError` when the loss (at a step) or the parameters
    (after it) are not finite; a step's record is written only when its loss is.
    With ``options.stop``, training ends at the first record that reaches it.
    """
    n = len(train_set.y)
    if options.batch_size > n:
        raise ValueError(f"batch_size {options.batch_size} exceeds the {n} training examples")
    params0 = sharding.replicate(params0, sharding.data_mesh())
    f0 = None
    if regime.kind == "rescaled":    # f(params0, x) of the fixed, unaugmented train set
        f0 = np.asarray(regimes_lib.initial_outputs(apply_fn, params0, train_set.x))
    batches = _Batches(train_set, f0, options)
    jitted = _jitted_step(apply_fn, options.optimizer, options.momentum, batches.gather)
    step_fn, opt = _regime_step(jitted, regime, options)
    state = sharding.replicate(train.init_state(regime, params0, opt), batches.mesh)
    loop = _Loop(apply_fn, regime, params0, options, evaluator, hooks, probe,
                 RecordSchedule(options.num_steps, ladder_ratio=options.ladder_ratio), n)
    first_step, num_records = 0, 0
    progress = hooks.resume(state)
    if progress is not None:
        first_step, state, num_records = progress.step, progress.state, progress.num_records
        loop.schedule.load_state_dict(progress.schedule)
        logging.info("%s: resuming at step %d/%d", regime.name, first_step, options.num_steps)
    try:
        return _steps(loop, step_fn, batches, state, first_step, num_records)
    finally:
        batches.close()


def _steps(loop: _Loop, step_fn: Callable, batches: _Batches, state: train.TrainState,
           first_step: int, num_records: int) -> Params:
    """The step loop of :func:`train_regime` from ``first_step``; returns the params.

    One step of lag: step k+1 is dispatched before step k's loss is read on the
    host, so the accelerator never waits for the host between steps. The record
    of step k still evaluates the state at step k.
    """
    log = _ProgressLog(loop.regime.name, loop.options, first_step)
    pending = None
    for step in range(first_step, loop.options.num_steps):
        if preemption.stop_requested(step):
            _preempt(loop, pending, state, step, num_records)
        new_state, measurements = step_fn(state, loop.params0, *batches.args(step))
        if pending is not None:
            num_records, stop = _finish_single(loop, pending, num_records)
            log.step(pending.step, loop.schedule.ema_loss)
            if stop:
                return pending.state.params
        pending, state = _Pending(step, state, measurements, new_state), new_state
    if pending is not None:
        _finish_single(loop, pending, num_records)
    return state.params


def _preempt(loop: _Loop, pending: Optional["_Pending"], state: train.TrainState, step: int,
             num_records: int) -> None:
    """Stops before ``step`` on a signal: finishes the pending step, checkpoints the
    progress (unless nothing ran since the last checkpoint), raises ``Preempted``."""
    if pending is not None:
        num_records, stop = _finish_single(loop, pending, num_records)
        every = loop.options.checkpoint_every
        if not stop and not (every > 0 and step % every == 0):   # else just saved
            loop.hooks.checkpoint(RegimeProgress(step, state, loop.schedule.state_dict(),
                                                 num_records))
    raise preemption.Preempted(loop.regime.name, step)


class _Pending(NamedTuple):
    """A dispatched step whose host side (:func:`_finish`) is still to run."""

    step: int
    state: train.TrainState         # before the step: what its record evaluates
    measurements: dict
    new_state: train.TrainState


def _finish_single(loop: _Loop, pending: _Pending, num_records: int) -> tuple[int, bool]:
    """:func:`_finish` of one regime's pending step, then its checkpoint when one is due."""
    loss, finite = _host_values(pending.measurements)
    num_records, stop = _finish(loop, pending.step, float(loss), bool(finite),
                                lambda: pending.state.params, num_records)
    if not stop:
        _maybe_checkpoint(loop, pending.step, pending.new_state, num_records)
    return num_records, stop


class Member(NamedTuple):
    """One run of a batch trained in lockstep: its own start, data, options and hooks.

    The members' options may differ only in ``seed`` (minibatch order) and
    ``stop``: the rest shapes the one compiled step.
    """

    params0: Params
    train_set: Split
    evaluator: GroupEvaluator
    hooks: Hooks
    probe: Optional[LinearityProbe]
    options: TrainOptions


def _shared_options(members: list[Member]) -> TrainOptions:
    """The options every member shares (one-line ValueError if they differ otherwise)."""
    shared = {m.options._replace(seed=0, stop=None) for m in members}
    n = {len(m.train_set.y) for m in members}
    if len(shared) != 1 or len(n) != 1:
        raise ValueError("members trained in one program must share their training options "
                         "(seed and stop aside) and training-set size")
    options = shared.pop()
    if options.batch_size > n.pop():
        raise ValueError(f"batch_size {options.batch_size} exceeds the training examples")
    return options


def _stacked_batch(members: list[Member], f0: Optional[np.ndarray], step: int,
                   options: TrainOptions) -> tuple[jax.Array, ...]:
    """Each member's minibatch at ``step`` (its own order), stacked on a leading axis."""
    n = len(members[0].train_set.y)
    idx = [batch_indices(m.options.seed, step, n, options.batch_size) for m in members]
    batch = (np.stack([m.train_set.x[i] for m, i in zip(members, idx)]),
             np.stack([m.train_set.y[i] for m, i in zip(members, idx)]))
    if f0 is not None:
        batch += (np.stack([f0[k][i] for k, i in enumerate(idx)]),)
    return tuple(jnp.asarray(a) for a in batch)


@functools.lru_cache(maxsize=16)
def _jitted_batched_step(apply_fn: ApplyFn, optimizer: str, momentum: float) -> Callable:
    """:func:`_jitted_step` vmapped over members (state, ``params0`` and batch)."""
    step = _guarded_step(apply_fn, optimizer, momentum)

    def batched(regime, lr, state, params0, *batch):
        return jax.vmap(lambda s, p, *b: step(regime, lr, s, p, *b))(state, params0, *batch)

    return jax.jit(batched)


def train_members(apply_fn: ApplyFn, regime: Regime, members: list[Member]
                  ) -> list[Optional[NonFiniteLossError]]:
    """Trains ``regime`` once per member in lockstep, as one vmapped program.

    Every member is a run of :func:`train_regime` (same records, up to the
    summation order of vmapped kernels) on one device, without checkpoints:
    its own ``params0``, training set (same size), evaluator, probe, hooks and
    options. A member stops at its ``options.stop`` or when it diverges; the
    others go on. Returns each member's :class:`NonFiniteLossError`, or None.
    """
    options = _shared_options(members)
    n = len(members[0].train_set.y)
    params0 = jax.tree.map(lambda *a: jnp.stack(a), *[m.params0 for m in members])
    jitted = _jitted_batched_step(apply_fn, options.optimizer, options.momentum)
    step_fn, opt = _regime_step(jitted, regime, options)
    state = jax.vmap(lambda p: train.init_state(regime, p, opt))(params0)
    f0 = None
    if regime.kind == "rescaled":
        f0 = [np.asarray(regimes_lib.initial_outputs(apply_fn, m.params0, m.train_set.x))
              for m in members]
    loops = [_Loop(apply_fn, regime, m.params0, m.options, m.evaluator, m.hooks, m.probe,
                   RecordSchedule(options.num_steps, ladder_ratio=options.ladder_ratio), n)
             for m in members]
    active, counts = list(range(len(members))), [0] * len(members)
    errors: list[Optional[NonFiniteLossError]] = [None] * len(members)
    pending = None
    for step in range(options.num_steps):
        if preemption.stop_requested(step):         # runs are the unit: no checkpoint
            if pending is not None:
                _finish_members(loops, pending, active, counts, errors)
            raise preemption.Preempted(regime.name, step)
        new_state, measurements = step_fn(state, params0,
                                          *_stacked_batch(members, f0, step, options))
        if pending is not None:
            _finish_members(loops, pending, active, counts, errors)
            if not active:
                return errors
        pending, state = _Pending(step, state, measurements, new_state), new_state
    if pending is not None:
        _finish_members(loops, pending, active, counts, errors)
    return errors


def _finish_members(loops: list[_Loop], pending: _Pending, active: list[int],
                    counts: list[int], errors: list) -> None:
    """:func:`_finish` of each active member; drops those that stop or diverge."""
    losses, finite = _host_values(pending.measurements)
    for k in list(active):
        params_at = lambda k=k: jax.tree.map(lambda a: a[k], pending.state.params)
        try:
            counts[k], stop = _finish(loops[k], pending.step, float(losses[k]),
                                      bool(finite[k]), params_at, counts[k])
        except NonFiniteLossError as err:
            errors[k], stop = err, True
        if stop:
            active.remove(k)


class _ProgressLog:
    """A log line every ``log_every_seconds``: step, loss, speed and time left."""

    def __init__(self, name: str, options: TrainOptions, first_step: int):
        self.name, self.options, self.first_step = name, options, first_step
        self.start = self.last = time.perf_counter()

    def step(self, step: int, loss: float) -> None:
        now, total = time.perf_counter(), self.options.num_steps
        if now - self.last > self.options.log_every_seconds:
            rate = (step + 1 - self.first_step) / (now - self.start)
            logging.info("%s: step %d/%d, loss %.4f, %.1f steps/s, ETA %.0fs", self.name,
                         step + 1, total, loss, rate, (total - step - 1) / rate)
            self.last = now
