"""Driver for Sections 4-5: example groups of different difficulty, per regime.

The dataset (``config.dataset``: a registered name or ``module:function``, see
:mod:`lazy_hasty.datasets`) gives the training set, the evaluation groups and
the difficulty spec. Every regime trains from the same ``params0`` on the same
minibatch order; each record evaluates every group (and, every few records, the
linearity probe). Outputs in the workdir: ``config.json``, ``metrics.jsonl``
(streamed), ``per_example.npz`` (per-record correctness of every group example),
``learning_times.npz``/``.png`` (per-example learning times), ``scores.npz`` (per-example
difficulty scores of the ``train/all`` group: :mod:`lazy_hasty.analysis.scores`),
``summary.json`` (the
spec's statistics with intervals, and the spec) and ``fig2.png`` (``fig3.png``: spurious;
``config.figures=False`` leaves out the two figures).

Preemption: ``checkpoints/`` holds orbax checkpoints (every
``checkpoint_every_steps`` steps, at the end of each regime, and when SIGTERM or
SIGINT stops the run at a step: :mod:`lazy_hasty.engine.preemption`); the same command
resumes from the newest one and writes the same ``metrics.jsonl`` as an
uninterrupted run (see :class:`lazy_hasty.engine.run_log.RunLog`).
"""

from __future__ import annotations

import os
from typing import NamedTuple, Optional

import jax
import ml_collections
import numpy as np
from absl import logging

from experiments import common, score_difficulty, validation
from experiments.difficulty_setup import Setup, build, options
from lazy_hasty import datasets, regimes
from lazy_hasty.engine import checkpoint, loop, preemption, records, run_log
from lazy_hasty.analysis import learning_times, progress, scores
from lazy_hasty.engine.monitor import TensorBoardMonitor


class Prepared(NamedTuple):
    """A run ready to train: its config, data, network, options, log and files."""

    config: ml_collections.ConfigDict
    parsed: list[regimes.Regime]
    data: datasets.DescribedDataset
    setup: Setup
    options: list[loop.TrainOptions]    # per regime
    log: run_log.RunLog
    checkpointer: Optional[checkpoint.Checkpointer]
    paths: dict[str, str]
    writer: bool                             # this process writes the files


def prepare(config: ml_collections.ConfigDict, workdir: str) -> Prepared:
    """Checks, loads and builds everything; writes ``config.json`` and starts
    ``metrics.jsonl``, or restores the newest checkpoint of the same config."""
    parsed = validation.check_config(config)
    common.check_workdir(workdir)
    checkpoint_dir = os.path.join(workdir, "checkpoints")
    resume_step = checkpoint.latest_step(checkpoint_dir)
    if resume_step is not None:
        common.check_same_config(workdir, config)
    data = score_difficulty.load(config)
    num_steps = validation.check_against_data(config, len(data.train.y))
    setup = build(config, data)
    figures = ("fig3.png" if data.spec.name == "spurious" else "fig2.png",
               "learning_times.png") if config.figures else ()
    paths = {n: os.path.join(workdir, n) for n in (
        "config.json", "metrics.jsonl", "per_example.npz", "summary.json",
        "learning_times.npz", "scores.npz", *figures)}
    writer = jax.process_index() == 0           # one process writes (multi-host runs)
    if writer:
        records.write_json(paths["config.json"], config.to_dict())
        if resume_step is None:
            records.write_jsonl(paths["metrics.jsonl"], [])
    checkpointer = None
    if resume_step is not None or config.checkpoint_every_steps > 0:
        checkpointer = checkpoint.Checkpointer(checkpoint_dir, keep=config.checkpoints_to_keep)
    log = run_log.RunLog(paths["metrics.jsonl"], [p.name for p in parsed], num_steps, writer,
                         checkpointer, save=config.checkpoint_every_steps > 0,
                         monitor=TensorBoardMonitor(os.path.join(workdir, "tensorboard"))
                         if writer and config.tensorboard else None,
                         score_slice=_score_slice(setup.evaluator))
    if resume_step is not None:
        log.restore(resume_step, setup.evaluator.size)
    per_epoch = validation.steps_per_epoch(config, len(data.train.y))
    train_options = [options(config, n, data.spec, setup.richness, per_epoch)
                     for n in num_steps]
    return Prepared(config, parsed, data, setup, train_options, log, checkpointer, paths,
                    writer)


def train_all(prep: Prepared) -> None:
    """Trains every regime not finished at the restored checkpoint, reporting to its log
    (which checkpoints the end of each regime, the last being the end of the run)."""
    for i, (regime, opts) in enumerate(zip(prep.parsed, prep.options)):
        if i < prep.log.regime_index:
            continue                              # finished before the checkpoint
        logging.info("training %s for %d steps (%g epochs)", regime.name, opts.num_steps,
                     prep.config.num_epochs[i])
        try:
            loop.train_regime(prep.setup.apply_fn, regime, prep.setup.params0,
                              prep.data.train, opts, prep.setup.evaluator,
                              prep.log.begin(i), prep.setup.probe)
        except preemption.Preempted as err:
            err.last_checkpoint = prep.log.describe_last()
            raise


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Trains every regime, streams records, writes the summary and Fig. 2 (or 3).

    Resumes from ``<workdir>/checkpoints`` when it holds a checkpoint of the same config.
    """
    prep = prepare(config, workdir)
    try:
        with preemption.graceful():           # SIGTERM/SIGINT: checkpoint, then stop
            train_all(prep)
    finally:
        if prep.checkpointer is not None:
            prep.checkpointer.close()
    write_outputs(prep)
    return prep.paths


def _score_slice(evaluator) -> Optional[slice]:
    """Where the scored group's examples sit among the evaluated ones (None: no scores)."""
    return None if evaluator.score_group is None else evaluator.slice(evaluator.score_group)


def _write_scores(prep: Prepared, correct: dict[str, np.ndarray]) -> None:
    """``scores.npz``: every difficulty score of the scored group's examples, per regime
    (``<score>_<regime>``; :func:`lazy_hasty.analysis.scores.run_scores`)."""
    log, at = prep.log, prep.log.score_slice
    out = {"group": np.array(prep.setup.evaluator.score_group)}
    for i, name in enumerate(log.names):
        rows = {kind: log.rows[kind][i] for kind in ("margin", "probability", "el2n", "grand")}
        early = {k: rows[k][0] if rows[k] else None for k in ("el2n", "grand")}
        per_regime = scores.run_scores(correct[name][:, at], np.stack(rows["margin"]),
                                       np.stack(rows["probability"]), **early)
        out.update({f"{score}_{name}": v for score, v in per_regime.items()})
    records.write_npz(prep.paths["scores.npz"], **out)


def write_outputs(prep: Prepared) -> None:
    """``per_example.npz``, the figures, learning times and ``summary.json`` (process 0 only).

    A run of one regime has no comparison: its summary holds the spec and the
    learning times. Regimes that share no progress range leave no summary: the
    error names the fix, after the records and the figures are written.
    """
    paths, log, spec, config = prep.paths, prep.log, prep.data.spec, prep.config
    names, evaluator = log.names, prep.setup.evaluator
    correct = {name: np.stack(rows) for name, rows in zip(names, log.correct)}
    slices = {name: evaluator.slice(name) for name in evaluator.names}
    times, times_summary = learning_times.difficulty_learning_times(
        log.records, correct, slices, spec, names, config.seed)
    compare = tuple(config.compare) if len(names) > 1 else None
    if prep.writer:
        records.write_npz(paths["per_example.npz"], group_names=np.array(evaluator.names),
                          group_bounds=evaluator.bounds,
                          **{f"correct_{k}": v for k, v in correct.items()})
        records.write_npz(paths["learning_times.npz"], **times)
        if log.score_slice is not None:
            _write_scores(prep, correct)
    if prep.writer and config.figures:
        from lazy_hasty.analysis import plots  # matplotlib only when drawing
        plots.plot_difficulty(paths["fig3.png" if "fig3.png" in paths else "fig2.png"],
                              log.records, regimes=names, spec=spec)
        plots.plot_learning_times(paths["learning_times.png"], times, spec, compare)
    summary = {"spec": spec.to_dict()} if compare is None else progress.summarize(
        log.records, correct, slices, spec, compare, names, config.seed)
    if prep.writer:
        records.write_json(paths["summary.json"], {**summary, "learning_times": times_summary})
    if compare is not None:
        logging.info("%s vs %s: %s", *compare, {k: summary.get(k) for k in spec.statistics})
