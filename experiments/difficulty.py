"""Driver for Sections 4-5: example groups of different difficulty, per regime.

The dataset (``config.dataset``: a registered name or ``module:function``, see
:mod:`lazy_hasty.datasets`) gives the training set, the evaluation groups and
the difficulty spec. Every regime trains from the same ``params0`` on the same
minibatch order; each record evaluates every group (and, every few records, the
linearity probe). Outputs in the workdir: ``config.json``, ``metrics.jsonl``
(streamed), ``per_example.npz`` (per-record correctness of every group example),
``learning_times.npz``/``.png`` (per-example learning times), ``summary.json`` (the
spec's statistics with intervals, and the spec) and ``fig2.png`` (``fig3.png``: spurious).

Preemption: ``checkpoints/`` holds orbax checkpoints (every
``checkpoint_every_steps`` steps and at the end of each regime); the same
command resumes from the newest one and writes the same ``metrics.jsonl`` as an
uninterrupted run (see :class:`lazy_hasty.run_log.RunLog`).
"""

from __future__ import annotations

import os
from typing import NamedTuple

import jax
import ml_collections
import numpy as np
from absl import logging

from experiments import common, validation
from lazy_hasty import (checkpoint, datasets, learning_times, minibatch, models, plots,
                        progress, records, rng, run_log)
from lazy_hasty.evaluation import GroupEvaluator, LinearityProbe
from lazy_hasty.types import ApplyFn, Params


class Setup(NamedTuple):
    """The network, its shared initialisation and what is measured at each record."""

    apply_fn: ApplyFn
    params0: Params
    evaluator: GroupEvaluator
    probe: LinearityProbe


def build(config: ml_collections.ConfigDict, data: datasets.DescribedDataset) -> Setup:
    """Model and ``params0`` (seeded, or imported weights), evaluator and probe."""
    module = models.get_model(config.model, num_outputs=data.num_classes,
                              **config.model_kwargs.to_dict())
    train = data.train
    params0, state = models.init_model(module, rng.jax_key(config.seed), train.x[:1])
    if config.pretrained:           # ImageNet ResNet18 weights, fresh head (Waterbirds)
        from lazy_hasty.models import torch_import
        params0, state = torch_import.resnet18_variables_from_torchvision(
            torch_import.load_state_dict_arrays(config.pretrained), data.num_classes,
            rng.jax_key(config.seed))
    probe_idx = rng.numpy_rng(config.seed, 1).choice(len(train.y), config.probe_size,
                                                     replace=False)
    probe = LinearityProbe(module, state, params0, train.x[np.sort(probe_idx)],
                           ntk_implementation=config.ntk_implementation,
                           ntk_chunk_size=config.ntk_chunk_size or None)
    evaluator = GroupEvaluator(data.flat_groups(), batch_size=config.eval_batch_size)
    return Setup(models.make_apply_fn(module, state), params0, evaluator, probe)


def options(config: ml_collections.ConfigDict, num_steps: int) -> minibatch.TrainOptions:
    """The training options of one regime."""
    return minibatch.TrainOptions(
        num_steps=num_steps, batch_size=config.batch_size, learning_rate=config.learning_rate,
        momentum=config.momentum, seed=config.seed, ladder_ratio=config.ladder_ratio,
        probe_every=config.probe_every, checkpoint_every=config.checkpoint_every_steps)


def train_all(config, parsed, num_steps, data, setup: Setup, log: run_log.RunLog) -> None:
    """Trains every regime not finished at the restored checkpoint, reporting to ``log``."""
    for i, (regime, steps) in enumerate(zip(parsed, num_steps)):
        if i < log.regime_index:
            continue                              # finished before the checkpoint
        logging.info("training %s for %d steps (%g epochs)", regime.name, steps,
                     config.num_epochs[i])
        try:
            minibatch.train_regime(setup.apply_fn, regime, setup.params0, data.train,
                                   options(config, steps), setup.evaluator, log.begin(i),
                                   setup.probe)
        except minibatch.NonFiniteLossError as err:
            err.last_checkpoint = log.describe_last()
            raise
        log.save(i + 1, None)                     # regime done (the last: run done)


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Trains every regime, streams records, writes the summary and Fig. 2 (or 3).

    Resumes from ``<workdir>/checkpoints`` when it holds a checkpoint of the same config.
    """
    parsed = validation.check_config(config)
    common.check_workdir(workdir)
    checkpoint_dir = os.path.join(workdir, "checkpoints")
    resume_step = checkpoint.latest_step(checkpoint_dir)
    if resume_step is not None:
        common.check_same_config(workdir, config)
    data = datasets.load(config.dataset, config.to_dict(), config.dataset_kwargs.to_dict())
    num_steps = validation.check_against_data(config, len(data.train.y))
    setup = build(config, data)
    figure = "fig3.png" if data.spec.name == "spurious" else "fig2.png"
    paths = {n: os.path.join(workdir, n) for n in ("config.json", "metrics.jsonl", figure,
             "per_example.npz", "summary.json", "learning_times.npz", "learning_times.png")}
    writer = jax.process_index() == 0           # one process writes (multi-host runs)
    if writer:
        records.write_json(paths["config.json"], config.to_dict())
        if resume_step is None:
            records.write_jsonl(paths["metrics.jsonl"], [])
    names = [p.name for p in parsed]
    checkpointer = None
    if resume_step is not None or config.checkpoint_every_steps > 0:
        checkpointer = checkpoint.Checkpointer(checkpoint_dir, keep=config.checkpoints_to_keep)
    log = run_log.RunLog(paths["metrics.jsonl"], names, num_steps, writer, checkpointer,
                         save=config.checkpoint_every_steps > 0)
    try:
        if resume_step is not None:
            log.restore(resume_step, setup.evaluator.size)
        train_all(config, parsed, num_steps, data, setup, log)
    finally:
        if checkpointer is not None:
            checkpointer.close()
    write_outputs(paths, figure, log, names, setup.evaluator, data.spec, config, writer)
    return paths


def write_outputs(paths: dict, figure: str, log: run_log.RunLog, names: list[str],
                  evaluator: GroupEvaluator, spec, config, writer: bool) -> None:
    """``per_example.npz``, the figures, learning times and ``summary.json`` (process 0 only).

    Regimes that share no progress range leave no summary: the error names the
    fix, after the records and the figures are written.
    """
    correct = {name: np.stack(rows) for name, rows in zip(names, log.correct)}
    slices = {name: evaluator.slice(name) for name in evaluator.names}
    times, times_summary = learning_times.difficulty_learning_times(
        log.records, correct, slices, spec, names, config.seed)
    if writer:
        records.write_npz(paths["per_example.npz"], group_names=np.array(evaluator.names),
                          group_bounds=evaluator.bounds,
                          **{f"correct_{k}": v for k, v in correct.items()})
        records.write_npz(paths["learning_times.npz"], **times)
        plots.plot_difficulty(paths[figure], log.records, regimes=names, spec=spec)
        plots.plot_learning_times(paths["learning_times.png"], times, spec, config.compare)
    summary = progress.summarize(log.records, correct, slices, spec, tuple(config.compare),
                                 names, config.seed)
    if writer:
        records.write_json(paths["summary.json"], {**summary, "learning_times": times_summary})
    logging.info("%s vs %s: %s", *config.compare, {k: summary.get(k) for k in spec.statistics})
