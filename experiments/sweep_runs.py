"""The runs of a sweep (``experiments/sweep.py``): plan, training, aggregation.

A run is one ``main.py`` run of one regime at one axis value and seed, in its
own workdir; :class:`Plan` knows every run, its command line and its
linearized reference. Runs of one value train together (seeds vmapped, see
:func:`lazy_hasty.engine.loop.train_members`) or one by one, through the same
driver pieces as ``main.py`` (:mod:`experiments.difficulty`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import sys
from typing import NamedTuple, Optional

import jax
import ml_collections
import numpy as np
from absl import flags, logging
from ml_collections import config_flags

from experiments import common, difficulty
from lazy_hasty import regimes
from lazy_hasty.engine import checkpoint, loop, records
from lazy_hasty.analysis import inference, sweep
from lazy_hasty.difficulty import DifficultySpec

MAIN = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "main.py")
REFERENCE = "linearized"


def load_config(path: str, overrides: list[str]) -> ml_collections.ConfigDict:
    """The config file with ``--config.<key>=<value>`` overrides, parsed as ``main.py`` does."""
    values, argv = flags.FlagValues(), ["sweep.py", f"--config={path}", *overrides]
    config_flags.DEFINE_config_file("config", path, flag_values=values, lock_config=True,
                                    sys_argv=argv)
    try:
        values(argv)
    except (flags.Error, AttributeError, KeyError) as e:
        raise ValueError(f"bad --config override: {e}") from None
    return values.config


class Run(NamedTuple):
    """One run of the sweep: a regime at an axis value (None: the shared alpha
    reference) and a seed, trained for at most ``epochs`` in ``workdir``."""

    value: Optional[float]
    regime: str
    seed: int
    workdir: str
    epochs: float


def _axis_override(config: ml_collections.ConfigDict, axis: str, value: float) -> str:
    """``--config.<axis>=<value>`` in the key's type (a tuple gets ``value`` in every entry)."""
    current = config
    for part in axis.split("."):
        current = current[part]
    number = int(value) if float(value).is_integer() else value
    if isinstance(current, tuple):
        return f"--config.{axis}={tuple([type(current[0])(number)] * len(current))!r}"
    return f"--config.{axis}={type(current)(number)!r}"


@dataclasses.dataclass(frozen=True)
class Plan:
    """Every run of a sweep, and how to launch each."""

    config_path: str
    workdir: str
    axis: str
    values: list[float]
    seeds: list[int]
    overrides: list[str]
    references: dict[Optional[float], list[Run]]      # value (None: shared) -> per seed
    swept: dict[float, list[Run]]                     # value -> per seed
    axis_overrides: dict[float, str]

    def reference_of(self, run: Run) -> Run:
        refs = self.references.get(run.value) or self.references[None]
        return refs[self.seeds.index(run.seed)]

    def overrides_of(self, run: Run, target: Optional[float]) -> list[str]:
        """Every ``--config`` override of ``run`` (``target``: its stop_at_progress)."""
        out = [*self.overrides, f"--config.seed={run.seed}",
               f"--config.regimes=({run.regime!r},)", f"--config.num_epochs=({run.epochs!r},)"]
        if target is not None:
            out.append(f"--config.stop_at_progress={target!r}")
        if run.value in self.axis_overrides:
            out.append(self.axis_overrides[run.value])
        return out

    def command(self, run: Run) -> list[str]:
        """The ``main.py`` command line of ``run`` (its reference must be done, if swept)."""
        target = None if run.regime == REFERENCE else self.target(run)
        return [sys.executable, MAIN, f"--config={self.config_path}",
                f"--workdir={run.workdir}", *self.overrides_of(run, target)]

    def target(self, run: Run) -> Optional[float]:
        """The progress ``run`` trains to: what its reference reached (None: not done)."""
        ref = self.reference_of(run)
        if not records.is_completed(ref.workdir):
            return None
        return sweep.reached_progress(sweep.read_run(ref.workdir).records,
                                      read_spec(ref.workdir))

    def pending_references(self) -> list[Run]:
        return [r for runs in self.references.values() for r in runs if not _done(r)]

    def pending_swept(self) -> list[Run]:
        return [r for runs in self.swept.values() for r in runs
                if not _done(r) and self.target(r) is not None]


def _done(run: Run) -> bool:
    return records.is_completed(run.workdir) or records.diverged(run.workdir) is not None


def read_spec(workdir: str) -> DifficultySpec:
    with open(os.path.join(workdir, "summary.json")) as f:
        return DifficultySpec.from_dict(json.load(f)["spec"])


def _parse_values(text: str, axis: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"--values {text!r} must be comma-separated numbers") from None
    if not values:
        raise ValueError("--values is empty; give at least one value to sweep")
    if len(set(values)) != len(values) or any(not math.isfinite(v) for v in values):
        raise ValueError(f"--values {text!r} must be distinct finite numbers")
    if axis == "alpha" and min(values) <= 0:
        raise ValueError(f"alpha values must be > 0 (alpha scales the network's output), "
                         f"got {min(values):g} in --values")
    return sorted(values)


def make_plan(config_path: str, workdir: str, axis: str, values_text: str, regime: str,
              seeds: list[int], reference_epochs: float, max_epochs: float,
              overrides: list[str]) -> Plan:
    """Checks the sweep's arguments (one-line ValueErrors) and lays out its runs."""
    if not os.path.isfile(config_path):
        raise ValueError(f"--config file {config_path!r} not found")
    if len(seeds) < 2:
        raise ValueError(f"an across-seed interval needs at least 2 seeds; got --seeds="
                         f"{len(seeds)}")
    values = _parse_values(values_text, axis)
    config = load_config(config_path, overrides)
    ref_epochs = reference_epochs or float(max(config.num_epochs))
    cap = max_epochs or 2 * ref_epochs
    run = lambda v, r, k, parts: Run(v, r, k, common.seed_dir(os.path.join(workdir, *parts), k),
                                     ref_epochs if r == REFERENCE else cap)
    if axis == "alpha":
        names = {v: regimes.Regime("rescaled", v).name for v in values}
        references = {None: [run(None, REFERENCE, k, [REFERENCE]) for k in seeds]}
        swept = {v: [run(v, names[v], k, [names[v]]) for k in seeds] for v in values}
        return Plan(config_path, workdir, axis, values, seeds, overrides, references, swept, {})
    if regimes.parse_regime(regime).kind == "linearized":
        raise ValueError("--regime must not be the linearized reference itself")
    try:
        axis_overrides = {v: _axis_override(config, axis, v) for v in values}
    except (KeyError, AttributeError, TypeError, ValueError):
        raise ValueError(f"--axis {axis!r} is not a numeric key of the config") from None
    part = lambda v: f"{axis}={v:g}"
    references = {v: [run(v, REFERENCE, k, [part(v), REFERENCE]) for k in seeds] for v in values}
    swept = {v: [run(v, regime, k, [part(v), regime]) for k in seeds] for v in values}
    return Plan(config_path, workdir, axis, values, seeds, overrides, references, swept,
                axis_overrides)


def _same_model_state(preps: list) -> bool:
    """Whether one compiled program can serve every run (equal non-trainable state)."""
    first = jax.tree.leaves(preps[0].setup.state)
    return all(len(first) == len(leaves) and all(np.array_equal(a, b)
                                                  for a, b in zip(first, leaves))
               for leaves in (jax.tree.leaves(p.setup.state) for p in preps[1:]))


def _train_batch(preps: list) -> None:
    """Trains the runs' one regime in lockstep (seeds vmapped), each reporting to its log."""
    members = [loop.Member(p.setup.params0, p.data.train, p.setup.evaluator, p.log.begin(0),
                           p.setup.probe, p.options[0]) for p in preps]
    loop.train_members(preps[0].setup.apply_fn, preps[0].parsed[0], members)


def _train_one(prep) -> None:
    try:
        difficulty.train_all(prep)
    except loop.NonFiniteLossError:
        pass                                      # its log holds the error


def _resume_step(prep) -> int:
    """The step an unfinished run resumes from (0: from scratch)."""
    return 0 if prep.log.meta is None else prep.log.meta["step"]


def _prepare_group(plan: Plan, runs: list[Run]) -> list:
    """Prepares ``runs`` (restoring their checkpoints) so that the unfinished ones resume
    at one step: the newest checkpoint step they all hold (a kill while their
    checkpoints were being saved can leave some a checkpoint ahead), 0 if none."""
    preps = [_prepare(plan, run) for run in runs]
    unfinished = [i for i, p in enumerate(preps) if p.log.regime_index == 0]
    if len({_resume_step(preps[i]) for i in unfinished}) <= 1:
        return preps
    held = [set(checkpoint.steps(os.path.join(runs[i].workdir, "checkpoints")))
            for i in unfinished]
    common = max(set.intersection(*held) | {0})
    for i in unfinished:
        if _resume_step(preps[i]) != common:
            _close(preps[i])
            checkpoint.discard_after(os.path.join(runs[i].workdir, "checkpoints"), common)
            preps[i] = _prepare(plan, runs[i])
    return preps


def _prepare(plan: Plan, run: Run):
    target = None if run.regime == REFERENCE else plan.target(run)
    config = load_config(plan.config_path, plan.overrides_of(run, target))
    return difficulty.prepare(config, run.workdir)


def _close(prep) -> None:
    if prep.checkpointer is not None:
        prep.checkpointer.close()


def _finish(run: Run, prep) -> None:
    """Writes a trained run's outputs and marks it ``COMPLETED``, or ``DIVERGED``."""
    if prep.log.error is not None:
        logging.warning("sweep: %s diverged: %s", run.workdir, prep.log.error)
        records.mark_diverged(run.workdir, str(prep.log.error))
    elif prep.log.finished:
        difficulty.write_outputs(prep)
        records.mark_completed(run.workdir)


def train_runs(plan: Plan, runs: list[Run], batch: bool) -> None:
    """Trains ``runs`` (one regime, one value; swept runs' references done), writes
    each run's outputs and marks it ``COMPLETED`` or ``DIVERGED``. Every run
    checkpoints; a preempted group resumes from its checkpoints."""
    preps = _prepare_group(plan, runs)
    todo = [p for p in preps if p.log.regime_index == 0]
    logging.info("sweep: training %s for seeds %s%s", runs[0].workdir, [r.seed for r in runs],
                 " (vmapped)" if batch and len(todo) > 1 else "")
    try:
        with contextlib.ExitStack() as closing:
            for prep in preps:
                closing.callback(_close, prep)
            if batch and len(todo) > 1 and _same_model_state(todo):
                _train_batch(todo)
            else:
                for prep in todo:
                    _train_one(prep)
    finally:
        for run, prep in zip(runs, preps):
            _finish(run, prep)


def run_all(plan: Plan, batch: bool) -> None:
    """Trains every pending run: the references, then each value's swept runs."""
    for runs in plan.references.values():
        pending = [r for r in runs if not _done(r)]
        if pending:
            train_runs(plan, pending, batch)
    for runs in plan.swept.values():
        pending = [r for r in runs if not _done(r)]
        skipped = [r for r in pending if plan.target(r) is None]
        for r in skipped:
            logging.warning("sweep: %s skipped: its reference diverged", r.workdir)
        pending = [r for r in pending if r not in skipped]
        if pending:
            train_runs(plan, pending, batch)


def _learning_time_spearman(run: Run) -> Optional[float]:
    """The rank correlation of learning time with difficulty of a finished run."""
    path = os.path.join(run.workdir, "summary.json")
    if not (records.is_completed(run.workdir) and os.path.exists(path)):
        return None
    with open(path) as f:
        return json.load(f)["learning_times"][run.regime]["spearman"]


def _statistics(plan: Plan, spec: DifficultySpec) -> tuple[list, list]:
    """:func:`lazy_hasty.analysis.sweep.run_statistics` and divergence per value and seed."""
    stats, diverged = [], []
    for value in plan.values:
        row, bad = [], []
        for run in plan.swept[value]:
            ref = plan.reference_of(run)
            done = records.is_completed(run.workdir) and records.is_completed(ref.workdir)
            row.append(sweep.run_statistics(sweep.read_run(run.workdir),
                                            sweep.read_run(ref.workdir), spec, run.seed)
                       if done else None)
            bad.append(records.diverged(run.workdir) is not None)
        stats.append(row)
        diverged.append(bad)
    return stats, diverged


def aggregate(plan: Plan) -> list[str]:
    """Writes ``sweep_summary.json``, ``fig5.png`` and the learning-time figure."""
    refs = [r for runs in plan.references.values() for r in runs if records.is_completed(r.workdir)]
    if not refs:
        raise ValueError("no linearized reference finished (all diverged?); nothing to compare")
    spec = read_spec(refs[0].workdir)
    stats, diverged = _statistics(plan, spec)
    names = [plan.swept[v][0].regime for v in plan.values]
    summary = sweep.summarize(plan.axis, plan.values, names, plan.seeds, stats, diverged, spec,
                              REFERENCE, log_axis=min(plan.values) > 0)
    summary["learning_times"] = {
        "by_value": [{"value": v, **inference.across_seeds(
            [_learning_time_spearman(r) for r in plan.swept[v]], require_interval=False)}
            for v in plan.values],
        "reference": [inference.across_seeds(
            [_learning_time_spearman(r) for r in runs], require_interval=False)
            for runs in plan.references.values()]}
    paths = [os.path.join(plan.workdir, n) for n in ("sweep_summary.json", "fig5.png")]
    records.write_json(paths[0], summary)
    from lazy_hasty.analysis import plots  # matplotlib only when drawing (not on bad input)
    plots.plot_sweep(paths[1], summary, spec)
    return paths + _learning_time_figure(plan, spec)


def _learning_time_figure(plan: Plan, spec: DifficultySpec) -> list[str]:
    """``learning_times.png`` of the first seed: the config's ``compare`` pair (e.g.
    alpha=1 and alpha=100, when both were swept) and the reference, per example."""
    compare = tuple(load_config(plan.config_path, plan.overrides).compare)
    by_name = {runs[0].regime: runs[0] for runs in plan.swept.values()}
    runs = [by_name.get(name) for name in compare] + [plan.reference_of(plan.swept[
        plan.values[0]][0])]
    if any(r is None or not records.is_completed(r.workdir) for r in runs):
        return []
    times = {}
    for run in runs:
        with np.load(os.path.join(run.workdir, "learning_times.npz"), allow_pickle=False) as npz:
            times.update({k: npz[k] for k in npz.files})
    times["regimes"] = np.array([r.regime for r in runs])
    path = os.path.join(plan.workdir, "learning_times.png")
    from lazy_hasty.analysis import plots
    plots.plot_learning_times(path, times, spec, compare)
    return [path]
