"""The runs of a sweep (``experiments/sweep.py``): plan, training, aggregation.

A run is one ``main.py`` run of one regime at one axis value and seed, in its
own workdir; :class:`Plan` knows every run, its command line and its
linearized reference. Runs of one value train together (seeds vmapped, see
:func:`lazy_hasty.engine.loop.train_members`) or one by one, through the same
driver pieces as ``main.py`` (:mod:`experiments.difficulty`). With a
learning-rate grid, each value's search runs (the swept regime at every rate of
the grid) come before its swept runs, which train at the rate the search chose
(:mod:`lazy_hasty.analysis.lr_search`).
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

from experiments import common, difficulty, score_difficulty, validation
from lazy_hasty import regimes
from lazy_hasty.engine import checkpoint, loop, records
from lazy_hasty.analysis import inference, lr_search, sweep
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
    reference) and a seed, trained for at most ``epochs`` in ``workdir``;
    ``lr_multiplier``: a learning-rate search run at that multiple of
    ``config.learning_rate`` (None: not a search run)."""

    value: Optional[float]
    regime: str
    seed: int
    workdir: str
    epochs: float
    lr_multiplier: Optional[float] = None


class LrSearch(NamedTuple):
    """How each value's learning rate is searched (``--lr_grid``, ``config.lr_search_*``)."""

    multipliers: tuple[float, ...]      # ascending
    base_rate: float                    # config.learning_rate
    steps: int
    criterion: str                      # one of lazy_hasty.analysis.lr_search.CRITERIA
    target: float
    spec: DifficultySpec                # what progress means

    def rates(self) -> list[float]:
        return [self.base_rate * m for m in self.multipliers]

    def lower_is_better(self) -> bool:
        return self.criterion != "progress" or self.spec.decreasing


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
    value_dirs: dict[float, str]                      # value -> its directory
    search: Optional[LrSearch] = None                 # None: no learning-rate search
    searches: dict[float, dict[float, list[Run]]] = dataclasses.field(
        default_factory=dict)                         # value -> multiplier -> per seed

    def reference_of(self, run: Run) -> Run:
        refs = self.references.get(run.value) or self.references[None]
        return refs[self.seeds.index(run.seed)]

    def _is_swept(self, run: Run) -> bool:
        return run.regime != REFERENCE and run.lr_multiplier is None

    def overrides_of(self, run: Run) -> list[str]:
        """Every ``--config`` override of ``run``: the sweep's, its seed, regime, epochs and
        axis value; a swept run's stop at its reference's progress; a search run's grid
        rate (and no difficulty scores), or a swept run's chosen rate
        (:meth:`learning_rate_of`)."""
        out = [*self.overrides, f"--config.seed={run.seed}",
               f"--config.regimes=({run.regime!r},)", f"--config.num_epochs=({run.epochs!r},)"]
        target = self.target(run) if self._is_swept(run) else None
        if target is not None:
            out.append(f"--config.stop_at_progress={target!r}")
        if run.value in self.axis_overrides:
            out.append(self.axis_overrides[run.value])
        rate = self.learning_rate_of(run)
        if rate is not None:
            out.append(f"--config.learning_rate={rate!r}")
        if run.lr_multiplier is not None:
            out.append("--config.scores=False")
        return out

    def command(self, run: Run) -> list[str]:
        """The ``main.py`` command line of ``run`` (a swept run must be :meth:`ready`)."""
        return [sys.executable, MAIN, f"--config={self.config_path}",
                f"--workdir={run.workdir}", *self.overrides_of(run)]

    def learning_rate_of(self, run: Run) -> Optional[float]:
        """The rate ``run`` trains at when it is not the config's (None: the config's):
        a search run's grid rate; a swept run's, its value's chosen rate (None until
        chosen). The references keep the config's rate."""
        if self.search is None or run.regime == REFERENCE:
            return None
        if run.lr_multiplier is not None:
            return self.search.base_rate * run.lr_multiplier
        result = self.search_result(run.value)
        return None if result is None else result["chosen_rate"]

    def search_result(self, value: float) -> Optional[dict]:
        """``lr_search.json`` of ``value``: the grid, each search run's score (None:
        diverged or never reached the target) and
        :func:`lazy_hasty.analysis.lr_search.select`; None while a search run is pending."""
        grid, search = self.searches[value], self.search
        if any(not _done(r) for runs in grid.values() for r in runs):
            return None
        scores = [[_search_score(r, search) for r in grid[m]] for m in search.multipliers]
        return {"value": value, "criterion": search.criterion, "steps": search.steps,
                "target": search.target if search.criterion == "steps_to_target" else None,
                "lower_is_better": search.lower_is_better(), "seeds": list(self.seeds),
                "multipliers": list(search.multipliers), "rates": search.rates(),
                "scores": scores, **lr_search.select(search.rates(), scores,
                                                     search.lower_is_better())}

    def ready(self, run: Run) -> bool:
        """Whether swept ``run`` can train: its reference finished and, with a search,
        its value's search chose a rate."""
        return self.target(run) is not None and (
            self.search is None or self.learning_rate_of(run) is not None)

    def target(self, run: Run) -> Optional[float]:
        """The progress ``run`` trains to: what its reference reached (None: not done)."""
        ref = self.reference_of(run)
        if not records.is_completed(ref.workdir):
            return None
        return sweep.reached_progress(sweep.read_run(ref.workdir).records,
                                      read_spec(ref.workdir))

    def pending_references(self) -> list[Run]:
        return [r for runs in self.references.values() for r in runs if not _done(r)]

    def pending_searches(self) -> list[Run]:
        return [r for grid in self.searches.values() for runs in grid.values() for r in runs
                if not _done(r)]

    def pending_swept(self) -> list[Run]:
        return [r for runs in self.swept.values() for r in runs
                if not _done(r) and self.ready(r)]


def _done(run: Run) -> bool:
    return records.is_completed(run.workdir) or records.diverged(run.workdir) is not None


def read_spec(workdir: str) -> DifficultySpec:
    with open(os.path.join(workdir, "summary.json")) as f:
        return DifficultySpec.from_dict(json.load(f)["spec"])


def _search_score(run: Run, search: LrSearch) -> Optional[float]:
    """A finished search run's score by ``search.criterion`` (None: it diverged, or never
    reached ``search.target``), from its ``metrics.jsonl``."""
    if records.diverged(run.workdir) is not None:
        return None
    rows = records.read_jsonl(os.path.join(run.workdir, "metrics.jsonl"))
    if search.criterion == "train_loss":
        return float(rows[-1]["train_loss"])
    key = search.spec.progress_key
    if search.criterion == "progress":
        return float(rows[-1][key])
    reached = loop.StopRule(key, search.target, search.spec.decreasing).reached
    return next((float(r["step"]) for r in rows if reached(r)), None)


def _parse_numbers(text: str, flag: str, what: str) -> list[float]:
    """The numbers of comma-separated ``text`` (given as ``flag``), ascending; one-line
    ValueErrors unless they are finite, distinct and at least one."""
    try:
        numbers = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{flag} {text!r} must be comma-separated numbers") from None
    if not numbers:
        raise ValueError(f"{flag} is empty; give at least one {what}")
    if len(set(numbers)) != len(numbers) or any(not math.isfinite(v) for v in numbers):
        raise ValueError(f"{flag} {text!r} must be distinct finite numbers")
    return sorted(numbers)


def _parse_values(text: str, axis: str) -> list[float]:
    values = _parse_numbers(text, "--values", "value to sweep")
    if axis == "alpha" and min(values) <= 0:
        raise ValueError(f"alpha values must be > 0 (alpha scales the network's output), "
                         f"got {min(values):g} in --values")
    return values


def _parse_grid(text: str) -> list[float]:
    multipliers = _parse_numbers(text, "--lr_grid", "learning-rate multiplier")
    if min(multipliers) <= 0:
        raise ValueError(f"--lr_grid multipliers must be > 0 (each multiplies "
                         f"config.learning_rate), got {min(multipliers):g}")
    return multipliers


def make_plan(config_path: str, workdir: str, axis: str, values_text: str, regime: str,
              seeds: list[int], reference_epochs: float, max_epochs: float,
              overrides: list[str], lr_grid: Optional[str] = None) -> Plan:
    """Checks the sweep's arguments (one-line ValueErrors) and lays out its runs; with
    ``lr_grid`` (comma-separated multipliers of ``config.learning_rate``), also each
    value's learning-rate search runs."""
    if not os.path.isfile(config_path):
        raise ValueError(f"--config file {config_path!r} not found")
    if len(seeds) < 2:
        raise ValueError(f"an across-seed interval needs at least 2 seeds; got --seeds="
                         f"{len(seeds)}")
    values = _parse_values(values_text, axis)
    multipliers = None if lr_grid is None else _parse_grid(lr_grid)
    config = load_config(config_path, overrides)
    plan = _lay_out(config_path, config, workdir, axis, values, regime, seeds,
                    reference_epochs, max_epochs, overrides)
    return plan if multipliers is None else _with_search(plan, config, multipliers)


def _lay_out(config_path: str, config: ml_collections.ConfigDict, workdir: str, axis: str,
             values: list[float], regime: str, seeds: list[int], reference_epochs: float,
             max_epochs: float, overrides: list[str]) -> Plan:
    """The references and swept runs of every value and seed (:func:`make_plan`)."""
    ref_epochs = reference_epochs or float(max(config.num_epochs))
    cap = max_epochs or 2 * ref_epochs
    run = lambda v, r, k, parts: Run(v, r, k, common.seed_dir(os.path.join(workdir, *parts), k),
                                     ref_epochs if r == REFERENCE else cap)
    if axis == "alpha":
        names = {v: regimes.Regime("rescaled", v).name for v in values}
        references = {None: [run(None, REFERENCE, k, [REFERENCE]) for k in seeds]}
        swept = {v: [run(v, names[v], k, [names[v]]) for k in seeds] for v in values}
        return Plan(config_path, workdir, axis, values, seeds, overrides, references, swept, {},
                    {v: os.path.join(workdir, names[v]) for v in values})
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
                axis_overrides, {v: os.path.join(workdir, part(v)) for v in values})


def _with_search(plan: Plan, config: ml_collections.ConfigDict,
                 multipliers: list[float]) -> Plan:
    """``plan`` with each value's learning-rate search runs: its swept regime, every seed,
    every multiplier, ``config.lr_search_steps`` steps each, in
    ``<value dir>/lr_search/lr=<multiplier>/seed_<k>``."""
    validation.check_config(config)
    epochs, spec = _search_epochs(plan, config.lr_search_steps)
    search = LrSearch(tuple(multipliers), float(config.learning_rate), config.lr_search_steps,
                      config.lr_search_criterion, float(config.lr_search_target), spec)
    searches = {v: {m: [Run(v, plan.swept[v][0].regime, k, common.seed_dir(os.path.join(
        plan.value_dirs[v], "lr_search", f"lr={m:g}"), k), epochs[v], m) for k in plan.seeds]
        for m in multipliers} for v in plan.values}
    return dataclasses.replace(plan, search=search, searches=searches)


def _search_epochs(plan: Plan, steps: int) -> tuple[dict[float, float], DifficultySpec]:
    """Per value, the ``num_epochs`` that train exactly ``steps`` steps on its training
    set (as the first seed draws it), and the difficulty spec of the (first) data.

    A run trains ``int(num_epochs * steps_per_epoch)`` steps; the extra half step keeps
    float rounding off that boundary.
    """
    loaded, epochs = {}, {}
    for value in plan.values:
        extra = (f"--config.seed={plan.seeds[0]}",
                 *([plan.axis_overrides[value]] if value in plan.axis_overrides else []))
        if extra not in loaded:
            config = load_config(plan.config_path, [*plan.overrides, *extra])
            data = score_difficulty.load(config)
            validation.check_against_data(config, len(data.train.y))
            loaded[extra] = (validation.steps_per_epoch(config, len(data.train.y)), data.spec)
        epochs[value] = (steps + 0.5) / loaded[extra][0]
    return epochs, next(iter(loaded.values()))[1]


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
    config = load_config(plan.config_path, plan.overrides_of(run))
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


def _train_pending(plan: Plan, runs: list[Run], batch: bool) -> None:
    """:func:`train_runs` of those of ``runs`` neither completed nor diverged."""
    pending = [r for r in runs if not _done(r)]
    if pending:
        train_runs(plan, pending, batch)


def run_all(plan: Plan, batch: bool) -> None:
    """Trains every pending run: the references; then per value, with a search, its
    search runs (one group per grid rate) and ``lr_search.json``; then its swept runs."""
    for runs in plan.references.values():
        _train_pending(plan, runs, batch)
    for value, runs in plan.swept.items():
        if plan.search is not None:
            for group in plan.searches[value].values():
                _train_pending(plan, group, batch)
            records.write_json(os.path.join(plan.value_dirs[value], "lr_search.json"),
                               plan.search_result(value))
        pending = [r for r in runs if not _done(r)]
        ready = [r for r in pending if plan.ready(r)]
        for r in pending:
            if r not in ready:
                logging.warning("sweep: %s skipped: %s", r.workdir, "its reference diverged"
                                if plan.target(r) is None else "no rate of its learning-rate "
                                "grid is eligible (lr_search.json)")
        _train_pending(plan, ready, batch)


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
    if plan.search is not None:
        summary["learning_rates"] = [plan.search_result(v) for v in plan.values]
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
