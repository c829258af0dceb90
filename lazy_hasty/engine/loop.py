"""The training loop: one run of a regime, or a set of runs trained in lockstep.

A *member* is one run: its own ``params0``, training set, evaluator, probe,
options and hooks (where its records and checkpoints go). :func:`train_regime`
trains one member with the plain jitted step, its batches sharded over the
``"data"`` mesh axis; :func:`train_members` trains several (e.g. the seeds of
one alpha of a sweep) as one vmapped program on one device. Both go through
the same loop (:func:`_run`): the minibatch order (a fresh seeded shuffle
each epoch), the one-step lag between dispatching a step and reading its loss,
the records (``schedule.RecordSchedule``: every group at each record, the
linearity probe every ``probe_every``-th), the checkpoints, the divergence
guard and graceful preemption. Minibatches are gathered on the device when
the training sets fit in ``options.device_data_bytes``, else on the host one
step ahead.
"""

from __future__ import annotations

import concurrent.futures
import functools
import math
import time
from collections.abc import Sequence
from typing import Callable, NamedTuple, Optional, Protocol

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from absl import logging

from lazy_hasty import regimes as regimes_lib, rng
from lazy_hasty.data.splits import Split
from lazy_hasty.engine import preemption, sharding, train
from lazy_hasty.engine.evaluation import GroupEvaluator, LinearityProbe
from lazy_hasty.engine.schedule import RecordSchedule
from lazy_hasty.regimes import Regime
from lazy_hasty.richness import Richness
from lazy_hasty.types import ApplyFn, Params


def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """The shared, seeded example order of one epoch."""
    return rng.numpy_rng(seed, "epoch", epoch).permutation(n)


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
    or ``"parameters"``) say where; hooks that checkpoint set ``last_checkpoint``
    (a description of the last good checkpoint) in :meth:`Hooks.end`.
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
    richness: Richness = Richness()  # the learning rate's dependence on gamma and alpha
    early_score_step: int = -1      # EL2N and GraNd at the first sure record from here (-1: none)


class Hooks(Protocol):
    """What the training loop tells the outside world about one run (its run log)."""

    def record(self, record: dict, per_example: train.PerExample,
               grand: Optional[np.ndarray] = None) -> None:
        """A record (the metrics JSONL schema), what it measured of each example and,
        at the early-scores record, the scored group's GraNd."""

    def resume(self, initial_state: train.TrainState) -> Optional["RegimeProgress"]:
        """Where to continue from (``initial_state``: a restore target), or None."""

    def checkpoint(self, progress: "RegimeProgress") -> None:
        """Save ``progress`` (every ``checkpoint_every`` steps, state checked finite)."""

    def end(self, error: Optional[NonFiniteLossError]) -> None:
        """The regime ended: trained out or stopped (``error`` None), or diverged."""


class RecordList:
    """:class:`Hooks` that keep records and correctness in memory (no checkpoints)."""

    def __init__(self):
        self.records: list[dict] = []
        self.correct: list[np.ndarray] = []

    def record(self, record: dict, per_example: train.PerExample,
               grand: Optional[np.ndarray] = None) -> None:
        self.records.append(record)
        self.correct.append(per_example.correct)

    def resume(self, initial_state: train.TrainState) -> None:
        return None

    def checkpoint(self, progress: "RegimeProgress") -> None:
        pass

    def end(self, error: Optional[NonFiniteLossError]) -> None:
        pass


class Member(NamedTuple):
    """One run: its own start, data, measurements, hooks and options.

    Members trained together may differ in their options only in ``seed``
    (minibatch order) and ``stop``: the rest shapes the one compiled step.
    """

    params0: Params
    train_set: Split
    evaluator: GroupEvaluator
    hooks: Hooks
    probe: Optional[LinearityProbe]
    options: TrainOptions


class _Loop(NamedTuple):
    """The pieces of one member's loop that stay fixed while it runs."""

    apply_fn: ApplyFn
    regime: Regime
    member: Member
    schedule: RecordSchedule


def _shared_options(members: Sequence[Member]) -> TrainOptions:
    """The options every member shares (one-line ValueError if they differ otherwise)."""
    shared = {m.options._replace(seed=0, stop=None) for m in members}
    sizes = {len(m.train_set.y) for m in members}
    if len(shared) != 1 or len(sizes) != 1:
        raise ValueError("runs trained in one program must share their training options "
                         "(seed and stop aside) and training-set size")
    options, n = shared.pop(), sizes.pop()
    if options.batch_size > n:
        raise ValueError(f"batch_size {options.batch_size} exceeds the {n} training examples")
    return options


@functools.lru_cache(maxsize=16)
def _compiled_step(apply_fn: ApplyFn, optimizer: str, momentum: float,
                   gather: Optional[NamedSharding], on_device: bool, vmapped: bool) -> Callable:
    """The jitted step ``(regime, lr, state, params0, *batch)``, once per network,
    optimiser and batch source. ``on_device``: the batch is the step's indices
    and the whole training arrays, gathered in the step (``gather``: the
    sharding of the gathered minibatch). ``vmapped``: state, ``params0`` and
    batch carry a leading axis of members."""
    step = train.make_regime_step(apply_fn, optimizer, momentum)
    if on_device:
        take = ((lambda a, idx: a[idx]) if vmapped
                else (lambda a, idx: a.at[idx].get(out_sharding=gather)))
        inner = lambda regime, lr, state, params0, idx, *data: step(
            regime, lr, state, params0, *(take(a, idx) for a in data))
    else:
        inner = step
    if not vmapped:
        return jax.jit(inner)
    return jax.jit(lambda regime, lr, state, params0, *batch: jax.vmap(
        functools.partial(inner, regime, lr))(state, params0, *batch))


class _Batches:
    """Where the members' minibatches come from: the device or the host.

    When the training sets (and their ``f0``) fit in ``device_data_bytes``,
    they are put on the device once and each step gathers its minibatches
    there from the step's indices (only the indices travel). Otherwise the
    host gathers them, one step ahead in a background thread, so the step
    never waits. The gathered values are the same either way. One member is
    sharded over the data ``mesh``; several (``mesh`` None) carry a leading
    member axis on one device.
    """

    def __init__(self, members: Sequence[Member], f0: Sequence[Optional[np.ndarray]],
                 options: TrainOptions, mesh: Optional[Mesh]):
        if mesh is not None:
            sharding.check_batch_size(options.batch_size, mesh)
        self.options, self.mesh, self.vmapped = options, mesh, mesh is None
        self.n, self.seeds = len(members[0].train_set.y), [m.options.seed for m in members]
        self.arrays = [(m.train_set.x, m.train_set.y) + (() if f is None else (f,))
                       for m, f in zip(members, f0)]
        size = sum(getattr(a, "nbytes", math.inf) for arrays in self.arrays for a in arrays)
        self.on_device = (0 < size <= options.device_data_bytes
                          and all(isinstance(m.train_set.x, np.ndarray) for m in members))
        if self.on_device:
            self.device_arrays = (
                tuple(jnp.asarray(np.stack(a)) for a in zip(*self.arrays)) if self.vmapped
                else sharding.replicate(self.arrays[0], self.mesh))
        self._pool = None if self.on_device else concurrent.futures.ThreadPoolExecutor(1)
        self._next: Optional[tuple[int, concurrent.futures.Future]] = None
        self._orders: dict[int, tuple[int, np.ndarray]] = {}   # member -> (epoch, order)

    @property
    def gather(self) -> Optional[NamedSharding]:
        """On device, one member: the sharding of a minibatch gathered in the step."""
        return (NamedSharding(self.mesh, sharding.BATCH)
                if self.on_device and not self.vmapped else None)

    def indices(self, k: int, step: int) -> np.ndarray:
        """:func:`batch_indices` of member ``k`` at ``step``, its epoch's order drawn once."""
        epoch, where = batch_slice(step, self.n, self.options.batch_size)
        if self._orders.get(k, (-1,))[0] != epoch:
            self._orders[k] = (epoch, epoch_order(self.seeds[k], epoch, self.n))
        return self._orders[k][1][where]

    def _host_batch(self, step: int) -> tuple:
        idx = [self.indices(k, step) for k in range(len(self.arrays))]
        if self.vmapped:
            return tuple(jnp.asarray(np.stack([a[i] for a, i in zip(column, idx)]))
                         for column in zip(*self.arrays))
        return sharding.shard_batch(tuple(a[idx[0]] for a in self.arrays[0]), self.mesh)

    def args(self, step: int) -> tuple:
        """The step's batch arguments (host path: prefetches the next step's)."""
        if self.on_device:
            idx = [self.indices(k, step) for k in range(len(self.arrays))]
            idx = ((jnp.asarray(np.stack(idx)),) if self.vmapped
                   else sharding.shard_batch((idx[0],), self.mesh))
            return (*idx, *self.device_arrays)
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


class _Program:
    """The members' compiled step, with their shared start and batches.

    The state of one member is its :class:`train.TrainState`; vmapped
    members' states are stacked on a leading axis, and :meth:`member` takes
    one out.
    """

    def __init__(self, apply_fn: ApplyFn, regime: Regime, members: Sequence[Member],
                 vmapped: bool):
        options = _shared_options(members)
        self.regime, self.options, self.vmapped = regime, options, vmapped
        mesh = sharding.data_mesh()
        self.starts = ([m.params0 for m in members] if vmapped
                       else [sharding.replicate(members[0].params0, mesh)])
        f0 = [np.asarray(regimes_lib.initial_outputs(apply_fn, p, m.train_set.x))
              if regime.kind == "rescaled" else None            # the fixed training set
              for p, m in zip(self.starts, members)]
        self.batches = _Batches(members, f0, options, mesh if not vmapped else None)
        self._lr = options.richness.learning_rate(regime, options.learning_rate)
        self.optimizer = train.make_optimizer(options.optimizer, self._lr, options.momentum)
        self._step = _compiled_step(apply_fn, options.optimizer, options.momentum,
                                    self.batches.gather, self.batches.on_device, vmapped)
        self.params0 = self.stack(self.starts)

    def initial_state(self, k: int) -> train.TrainState:
        """Member ``k``'s step-0 state (replicated over the mesh when alone)."""
        state = train.init_state(self.regime, self.starts[k], self.optimizer)
        return state if self.vmapped else sharding.replicate(state, self.batches.mesh)

    def stack(self, trees: Sequence):
        """The program's state (or ``params0``) from each member's."""
        return jax.tree.map(lambda *a: jnp.stack(a), *trees) if self.vmapped else trees[0]

    def member(self, tree, k: int):
        """Member ``k``'s part of a state or parameters of the program."""
        return jax.tree.map(lambda a: a[k], tree) if self.vmapped else tree

    def step(self, state: train.TrainState, step: int) -> tuple[train.TrainState, dict]:
        """Dispatches ``step`` (returns at once; the values are read later)."""
        return self._step(self.regime, self._lr, state, self.params0, *self.batches.args(step))


def _host_values(measurements: dict) -> tuple[np.ndarray, np.ndarray]:
    """The step's losses (float64) and parameter finiteness, fetched together, one per
    member."""
    loss, finite = jax.device_get((measurements["train_loss"], measurements["params_finite"]))
    return np.atleast_1d(np.asarray(loss, np.float64)), np.atleast_1d(np.asarray(finite))


def _record(loop: _Loop, step: int, loss: float, params: Params, num_records: int) -> dict:
    """The record of ``step``: every group, and every ``probe_every``-th time the probe."""
    member, regime = loop.member, loop.regime
    per = member.evaluator.per_example(loop.apply_fn, regime, member.params0, params)
    record = {"step": step, "regime": regime.name,
              "epoch": step * member.options.batch_size // len(member.train_set.y),
              "batch_loss": loss, "train_loss_ema": loop.schedule.ema_loss,
              **member.evaluator.summarize(per.loss, per.correct)}
    record["train_loss"] = record.get("train/all/loss", loop.schedule.ema_loss)
    if member.probe is not None and num_records % member.options.probe_every == 0:
        record.update(member.probe(regime.network_params(member.params0, params)))
    grand = None
    if step == loop.schedule.sure_record_from(member.options.early_score_step):
        grand = member.evaluator.grand(loop.apply_fn, regime, member.params0, params)
    member.hooks.record(record, per, grand)
    return record


def _finish(loop: _Loop, step: int, loss: float, finite: bool,
            params_at: Callable[[], Params], num_records: int) -> tuple[int, bool]:
    """Host side of one member's ``step``: divergence guard and record.

    ``loss`` was measured at the parameters of ``step`` (``params_at()``),
    ``finite`` says whether the update left them finite. Returns the record
    count and whether the stop rule was reached (training should end).
    """
    if not np.isfinite(loss):
        raise NonFiniteLossError(loop.regime, step, "training loss", loss)
    if loop.schedule.should_record(step, loss):
        record = _record(loop, step, loss, params_at(), num_records)
        num_records += 1
        stop = loop.member.options.stop
        if stop is not None and stop.reached(record):
            return num_records, True
    if not finite:
        raise NonFiniteLossError(loop.regime, step + 1, "parameters")
    return num_records, False


class _Pending(NamedTuple):
    """A dispatched step whose host side (:func:`_finish`) is still to run."""

    step: int
    state: train.TrainState         # before the step: what its record evaluates
    measurements: dict
    new_state: train.TrainState


class _Members:
    """The members still training: their loops, record counts and how each ended."""

    def __init__(self, loops: list[_Loop], counts: list[int]):
        self.loops, self.counts = loops, counts
        self.active = list(range(len(loops)))
        self.ended: list[Optional[tuple[Params, Optional[NonFiniteLossError]]]] = [
            None] * len(loops)

    def end(self, k: int, params: Optional[Params], error: Optional[NonFiniteLossError]):
        """Member ``k`` stopped (its final ``params``) or diverged (``error``)."""
        self.active.remove(k)
        self.ended[k] = (params, error)
        self.loops[k].member.hooks.end(error)

    def progress(self, k: int, step: int, state: train.TrainState) -> RegimeProgress:
        return RegimeProgress(step, state, self.loops[k].schedule.state_dict(), self.counts[k])


def _finish_step(program: _Program, members: _Members, pending: _Pending) -> None:
    """:func:`_finish` of each active member's pending step, then its checkpoint when
    one is due; a member that stops or diverges leaves the active ones."""
    losses, finite = _host_values(pending.measurements)
    every, total = program.options.checkpoint_every, program.options.num_steps
    for k in list(members.active):
        params_at = lambda k=k: program.member(pending.state.params, k)
        try:
            members.counts[k], stop = _finish(members.loops[k], pending.step, float(losses[k]),
                                              bool(finite[k]), params_at, members.counts[k])
        except NonFiniteLossError as err:
            members.end(k, None, err)
            continue
        if stop:
            members.end(k, params_at(), None)
        elif every > 0 and (pending.step + 1) % every == 0 and pending.step + 1 < total:
            members.loops[k].member.hooks.checkpoint(members.progress(
                k, pending.step + 1, program.member(pending.new_state, k)))


def _preempt(program: _Program, members: _Members, pending: Optional[_Pending],
             state: train.TrainState, step: int) -> None:
    """Stops before ``step`` on a signal: finishes the pending step, checkpoints each
    member still active (unless nothing ran since its last checkpoint) and raises
    ``Preempted``; returns when no member is left (they all stopped or diverged)."""
    if pending is not None:
        _finish_step(program, members, pending)
        every = program.options.checkpoint_every
        if not (every > 0 and step % every == 0):          # else just saved
            for k in members.active:
                members.loops[k].member.hooks.checkpoint(
                    members.progress(k, step, program.member(state, k)))
    if members.active:
        raise preemption.Preempted(program.regime.name, step)


def _run(program: _Program, members: _Members, state: train.TrainState,
         first_step: int) -> None:
    """The step loop from ``first_step`` until every member has ended.

    One step of lag: step k+1 is dispatched before step k's losses are read on
    the host, so the accelerator never waits for the host between steps. The
    record of step k still evaluates the state at step k.
    """
    log = _ProgressLog(program.regime.name, program.options, first_step)
    pending = None
    try:
        for step in range(first_step, program.options.num_steps):
            if preemption.stop_requested(step):
                return _preempt(program, members, pending, state, step)
            new_state, measurements = program.step(state, step)
            if pending is not None:
                _finish_step(program, members, pending)
                if not members.active:
                    return
                log.step(pending.step, members.loops[members.active[0]].schedule.ema_loss)
            pending, state = _Pending(step, state, measurements, new_state), new_state
        if pending is not None:
            _finish_step(program, members, pending)
        for k in list(members.active):
            members.end(k, program.member(state.params, k), None)
    finally:
        program.batches.close()


def _start(program: _Program, loops: list[_Loop]) -> tuple[_Members, train.TrainState, int]:
    """The members' state at the step they resume from (every member's hooks agree)."""
    states, counts, steps = [], [], set()
    for loop in loops:
        initial = program.initial_state(len(states))
        progress = loop.member.hooks.resume(initial)
        if progress is None:
            progress = RegimeProgress(0, initial, loop.schedule.state_dict(), 0)
        else:
            logging.info("%s: resuming at step %d/%d", loop.regime.name, progress.step,
                         program.options.num_steps)
        loop.schedule.load_state_dict(progress.schedule)
        states.append(progress.state)
        counts.append(progress.num_records)
        steps.add(progress.step)
    if len(steps) != 1:
        raise ValueError(f"runs trained in one program must resume at one step, got "
                         f"{sorted(steps)}")
    return _Members(loops, counts), program.stack(states), steps.pop()


def _train(apply_fn: ApplyFn, regime: Regime, members: Sequence[Member],
           vmapped: bool) -> _Members:
    program = _Program(apply_fn, regime, members, vmapped)
    loops = [_Loop(apply_fn, regime, m, RecordSchedule(
        program.options.num_steps, ladder_ratio=program.options.ladder_ratio))
        for m in members]
    trained, state, first_step = _start(program, loops)
    _run(program, trained, state, first_step)
    return trained


def train_regime(apply_fn: ApplyFn, regime: Regime, params0: Params, train_set: Split,
                 options: TrainOptions, evaluator: GroupEvaluator, hooks: Hooks,
                 probe: Optional[LinearityProbe] = None) -> Params:
    """Trains ``regime`` for ``options.num_steps`` SGD steps; returns its trainable params.

    Each record goes to ``hooks.record``; ``hooks.resume`` is asked once where
    to start; ``hooks.checkpoint`` gets the progress every
    ``options.checkpoint_every`` steps before the last, and ``hooks.end`` the
    outcome. Raises :class:`NonFiniteLossError` when the loss (at a step) or
    the parameters (after it) are not finite; a step's record is written only
    when its loss is. With ``options.stop``, training ends at the first record
    that reaches it.
    """
    member = Member(params0, train_set, evaluator, hooks, probe, options)
    params, error = _train(apply_fn, regime, [member], vmapped=False).ended[0]
    if error is not None:
        raise error
    return params


def train_members(apply_fn: ApplyFn, regime: Regime, members: Sequence[Member]
                  ) -> list[Optional[NonFiniteLossError]]:
    """Trains ``regime`` once per member in lockstep, as one vmapped program.

    Every member is a run of :func:`train_regime` (same records, up to the
    summation order of vmapped kernels), on one device: its own ``params0``,
    training set (same size), evaluator, probe, hooks and options (see
    :class:`Member`). A member ends at its ``options.stop`` or when it
    diverges; the others go on. Every member checkpoints, and all resume at
    one step. Returns each member's :class:`NonFiniteLossError`, or None.
    """
    return [error for _, error in _train(apply_fn, regime, members, vmapped=True).ended]


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
