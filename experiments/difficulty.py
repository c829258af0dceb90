"""Driver for Sections 4-5: example groups of different difficulty, per regime.

Groups are C-score deciles or clean/noisy labels (Section 4, Fig. 2), or the
majority/minority groups of a spurious correlation (Section 5, Fig. 3). Every regime trains from the same ``params0`` on the same minibatch order; at
each record every example group is evaluated (and, every few records, the
linearity probe). Outputs in the workdir: ``config.json``, ``metrics.jsonl``
(streamed, one line per record), ``per_example.npz`` (per-record correctness of
every group example, for bootstrap intervals), ``summary.json`` (hastiness and
its interval) and ``fig2.png`` (``fig3.png`` for spurious correlations).

Preemption: ``checkpoints/`` holds orbax checkpoints (every
``checkpoint_every_steps`` steps and at the end of each regime); the same
command on the same workdir resumes from the newest one and writes the same
``metrics.jsonl`` as an uninterrupted run (see :class:`lazy_hasty.run_log.RunLog`).
"""

from __future__ import annotations

import functools
import os
from typing import NamedTuple

import jax
import ml_collections
import numpy as np
from absl import logging

from configs import difficulty_base
from experiments import common
from lazy_hasty import (checkpoint, consistency, minibatch, models, plots, progress,
                        records, regimes, run_log, sharding)
from lazy_hasty.data import cscores as cscores_lib, groups as groups_lib, noise, splits
from lazy_hasty.evaluation import GroupEvaluator, LinearityProbe

DATASETS = ("digits", "cifar10", "digits_spurious", "celeba", "waterbirds")
SPURIOUS_DATASETS = ("digits_spurious", "celeba", "waterbirds")
DIFFICULTIES = ("cscores", "noise", "spurious")


class Prepared(NamedTuple):
    """Training split, evaluation groups (``"split/group" -> (x, y)``) and what to compare."""

    train: splits.Split
    groups: dict
    num_classes: int
    easy: str
    hard: str
    progress_key: str
    decreasing: bool


def load_dataset(name: str, seed: int, data_dir: str, distractors: int = 0,
                 train_size: int = 40_000) -> splits.Dataset:
    """The dataset named in the config (digits are embedded; CIFAR-10 via TFDS)."""
    if name == "digits":
        from lazy_hasty.data import digits
        ds = digits.load_digits(seed)
        return digits.with_distractors(ds, distractors, seed) if distractors else ds
    if name == "cifar10":
        from lazy_hasty.data import tfds_sources
        return tfds_sources.load_cifar10(data_dir or None, train_size=train_size)
    raise ValueError(f"unknown dataset {name!r}; choose one of {DATASETS}")


def _cscores(config, ds: splits.Dataset) -> tuple[np.ndarray, np.ndarray]:
    """C-scores of the train and held-out splits: published file or estimated."""
    train, heldout = ds.splits["train"], ds.splits["heldout"]
    if config.cscores != "estimate":
        labels = np.concatenate([train.y, heldout.y])
        scores = cscores_lib.load_published_cscores(config.cscores, expected_labels=labels)
        return scores[:len(train.y)], scores[len(train.y):len(labels)]
    x = np.concatenate([train.x, heldout.x])
    y = np.concatenate([train.y, heldout.y])
    cache = config.cscore_cache or os.path.join(
        os.path.expanduser("~/.cache/lazy_hasty"), f"{config.dataset}_cscores.npz")
    scores = consistency.cached_cscores(
        cache, x, y, ds.num_classes, seed=config.seed,
        models_per_ratio=config.cscore_models_per_ratio, steps=config.cscore_steps)
    return scores[:len(train.y)], scores[len(train.y):]


def build_groups(config, ds: splits.Dataset) -> Prepared:
    """Training labels (noisy if asked) and the evaluation groups (Section 4)."""
    size = config.group_size or None
    train, heldout, test = (ds.splits[s] for s in splits.SPLIT_NAMES)
    named: dict[str, dict[str, np.ndarray]] = {}
    if config.difficulty == "noise":
        y_noisy, mask = noise.corrupt_labels(train.y, ds.num_classes, config.label_noise,
                                             config.seed)
        train = splits.Split(train.x, y_noisy)          # noisy examples scored on noisy labels
        named["train"] = groups_lib.noise_groups(mask, size, config.seed)
        named["heldout"] = {}
        easy, hard, key, decreasing = "train/clean", "train/noisy", "train/clean/accuracy", False
    else:
        s_train, s_heldout = _cscores(config, ds)
        named["train"] = groups_lib.decile_groups(s_train, size, config.seed)
        named["heldout"] = groups_lib.decile_groups(s_heldout, size, config.seed)
        easy, hard, key, decreasing = "train/decile_9", "train/decile_0", "train_loss", True
    named["train"].update(groups_lib.all_group(len(train.y), size, config.seed))
    named["heldout"].update(groups_lib.all_group(len(heldout.y), size, config.seed))
    named["test"] = groups_lib.all_group(len(test.y), config.test_size or None, config.seed)
    source = {"train": train, "heldout": heldout, "test": test}
    return Prepared(train, _materialise(named, source), ds.num_classes, easy, hard, key,
                    decreasing)


def _materialise(named, source) -> dict:
    return {f"{split}/{name}": (source[split].x[idx], source[split].y[idx])
            for split, members in named.items() for name, idx in members.items()}


def load_spurious(config):
    """A Section-5 dataset: digits twin (embedded), CelebA (TFDS) or Waterbirds (folder)."""
    if config.dataset == "digits_spurious":
        from lazy_hasty.data import digits_spurious
        return digits_spurious.load_digits_spurious(
            config.seed, majority_fraction=config.majority_fraction,
            strength=config.cue_strength, patch=config.cue_patch,
            balanced_per_group=config.balanced_per_group, distractors=config.distractors)
    if config.dataset == "celeba":
        from lazy_hasty.data import celeba
        return celeba.load_celeba(config.data_dir or None, train_size=config.train_size,
                                  balanced_per_group=config.balanced_per_group,
                                  seed=config.seed, image_size=config.image_size)
    from lazy_hasty.data import waterbirds
    if not config.data_dir:
        raise ValueError("waterbirds needs --config.data_dir=<folder of the Waterbirds "
                         "release, with metadata.csv>")
    return waterbirds.load_waterbirds(config.data_dir, balanced_per_group=config.balanced_per_group,
                                      seed=config.seed, image_size=config.image_size)


def spurious_groups(config, data) -> Prepared:
    """Groups of a spurious-correlation dataset (Section 5), compared at equal train loss."""
    size = config.group_size or None
    named = {split: dict(members) for split, members in data.groups.items()
             if split in ("balanced_train", "balanced_test")}
    n_train = len(data.splits["train"].y)
    masks = {name: np.isin(np.arange(n_train), idx) for name, idx in data.groups["train"].items()}
    named["train"] = {**groups_lib.sample_groups(masks, size, config.seed),
                      **groups_lib.all_group(n_train, size, config.seed)}
    named["test"] = groups_lib.all_group(len(data.splits["test"].y), config.test_size or None,
                                         config.seed)
    return Prepared(data.splits["train"], _materialise(named, data.splits), data.num_classes,
                    f"balanced_test/{data.easy}", f"balanced_test/{data.hard}", "train_loss",
                    True)


def prepare(config) -> Prepared:
    """Loads the configured dataset and builds its groups."""
    if config.difficulty == "spurious":
        return spurious_groups(config, load_spurious(config))
    ds = load_dataset(config.dataset, config.seed, config.data_dir, config.distractors,
                      config.train_size)
    return build_groups(config, ds)


def validate(config) -> list[regimes.Regime]:
    """All config checks that need no data, before any compute."""
    common.check_keys(config, difficulty_base.get_config())
    if config.dataset not in DATASETS:
        raise ValueError(f"unknown dataset {config.dataset!r}; choose one of {DATASETS}")
    if config.difficulty not in DIFFICULTIES:
        raise ValueError(f"unknown difficulty {config.difficulty!r}; "
                         f"choose one of {DIFFICULTIES}")
    if (config.difficulty == "spurious") != (config.dataset in SPURIOUS_DATASETS):
        raise ValueError(f"difficulty 'spurious' goes with the datasets {SPURIOUS_DATASETS}; "
                         f"got difficulty {config.difficulty!r} with {config.dataset!r}")
    if config.dataset == "waterbirds" and not config.pretrained:
        raise ValueError("waterbirds starts from an ImageNet-pretrained ResNet18: pass "
                         "--config.pretrained=<torchvision resnet18 state dict .npz/.pth> "
                         "(convert once with scripts/convert_torchvision_resnet18.py)")
    if config.pretrained and not os.path.isfile(config.pretrained):
        raise ValueError(f"pretrained weights file {config.pretrained!r} not found; pass a "
                         "torchvision resnet18 state dict (.npz, or .pth with torch installed)")
    if config.difficulty == "noise" and not 0 < config.label_noise < 1:
        raise ValueError(f"label_noise must be in (0, 1), got {config.label_noise}")
    positive = {"batch_size": config.batch_size, "learning_rate": config.learning_rate,
                "probe_every": config.probe_every, "eval_batch_size": config.eval_batch_size,
                "checkpoints_to_keep": config.checkpoints_to_keep}
    for key, value in positive.items():
        if not value > 0:
            raise ValueError(f"{key} must be > 0, got {value!r}")
    for key in ("group_size", "test_size", "checkpoint_every_steps", "distractors"):
        if config[key] < 0:
            raise ValueError(f"{key} must be >= 0, got {config[key]!r}")
    if not 0 <= config.momentum < 1:
        raise ValueError(f"momentum must be in [0, 1), got {config.momentum!r}")
    if not 0 < config.ladder_ratio < 1:
        raise ValueError(f"ladder_ratio must be in (0, 1), got {config.ladder_ratio!r}: each "
                         "record rung is the previous training loss times this ratio")
    parsed = [regimes.parse_regime(r) for r in config.regimes]
    if len({p.name for p in parsed}) != len(parsed):
        raise ValueError(f"regimes {tuple(config.regimes)} name a regime twice")
    if any(not e > 0 for e in config.num_epochs):
        raise ValueError(f"num_epochs {tuple(config.num_epochs)} must all be > 0")
    if len(config.num_epochs) != len(parsed):
        raise ValueError(f"num_epochs {tuple(config.num_epochs)} needs one entry per regime "
                         f"{tuple(config.regimes)}")
    missing = [r for r in config.compare if r not in [p.name for p in parsed]]
    if len(config.compare) != 2 or missing:
        raise ValueError(f"compare {tuple(config.compare)} must name two of the regimes "
                         f"{[p.name for p in parsed]}")
    return parsed


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Trains every regime, streams records, writes the summary and Fig. 2.

    Resumes from ``<workdir>/checkpoints`` when it holds a checkpoint of the
    same config (see :class:`lazy_hasty.run_log.RunLog` for what a checkpoint holds).
    """
    parsed = validate(config)
    common.check_workdir(workdir)
    checkpoint_dir = os.path.join(workdir, "checkpoints")
    resume_step = checkpoint.latest_step(checkpoint_dir)
    if resume_step is not None:
        common.check_same_config(workdir, config)
    data = prepare(config)
    train, groups = data.train, data.groups
    if not 0 < config.probe_size <= len(train.y):
        raise ValueError(f"probe_size {config.probe_size} must be in [1, {len(train.y)}] "
                         "(the number of training examples)")
    if config.batch_size > len(train.y):
        raise ValueError(f"batch_size {config.batch_size} exceeds the {len(train.y)} "
                         "training examples")
    sharding.check_batch_size(config.batch_size, sharding.data_mesh())
    steps_per_epoch = len(train.y) // config.batch_size
    num_steps = [int(epochs * steps_per_epoch) for epochs in config.num_epochs]
    if min(num_steps) < 1:
        raise ValueError(f"num_epochs {tuple(config.num_epochs)} give {num_steps} steps of "
                         f"{steps_per_epoch} per epoch; every regime needs at least one")

    module = models.get_model(config.model, num_outputs=data.num_classes,
                              **config.model_kwargs.to_dict())
    params0, state = models.init_model(module, jax.random.PRNGKey(config.seed), train.x[:1])
    if config.pretrained:           # ImageNet ResNet18 weights, fresh head (Waterbirds)
        from lazy_hasty.models import torch_import
        params0, state = torch_import.resnet18_variables_from_torchvision(
            torch_import.load_state_dict_arrays(config.pretrained), data.num_classes,
            jax.random.PRNGKey(config.seed))
    apply_fn = models.make_apply_fn(module, state)
    evaluator = GroupEvaluator(groups, batch_size=config.eval_batch_size)
    probe_idx = np.random.default_rng([config.seed, 1]).choice(
        len(train.y), config.probe_size, replace=False)
    probe = LinearityProbe(module, state, params0, train.x[np.sort(probe_idx)],
                           ntk_implementation=config.ntk_implementation,
                           ntk_chunk_size=config.ntk_chunk_size or None)

    figure = "fig3.png" if config.difficulty == "spurious" else "fig2.png"
    paths = {n: os.path.join(workdir, n) for n in
             ("config.json", "metrics.jsonl", "per_example.npz", "summary.json", figure)}
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
            log.restore(resume_step, evaluator.size)
        for i, (regime, steps) in enumerate(zip(parsed, num_steps)):
            if i < log.regime_index:
                continue                              # finished before the checkpoint
            logging.info("training %s for %d steps (%g epochs)", regime.name, steps,
                         config.num_epochs[i])
            try:
                minibatch.train_regime(
                    apply_fn=apply_fn, regime=regime, params0=params0, x_train=train.x,
                    y_train=train.y, num_steps=steps, batch_size=config.batch_size,
                    learning_rate=config.learning_rate, momentum=config.momentum,
                    seed=config.seed, evaluator=evaluator,
                    on_record=functools.partial(log.record, i), probe=probe,
                    probe_every=config.probe_every, ladder_ratio=config.ladder_ratio,
                    resume=functools.partial(log.resume, i),
                    checkpoint_every=config.checkpoint_every_steps,
                    on_checkpoint=functools.partial(log.save, i))
            except minibatch.NonFiniteLossError as err:
                err.last_checkpoint = log.describe_last()
                raise
            log.save(i + 1, None)                     # regime done (the last: run done)
    finally:
        if checkpointer is not None:
            checkpointer.close()

    all_records = log.records
    correct = {name: np.stack(rows) for name, rows in zip(names, log.correct)}
    summary = summarize(all_records, correct, evaluator, tuple(config.compare), names, data,
                        config.seed)
    if writer:
        records.write_npz(paths["per_example.npz"], group_names=np.array(evaluator.names),
                          group_bounds=evaluator.bounds,
                          **{f"correct_{k}": v for k, v in correct.items()})
        records.write_json(paths["summary.json"], summary)
        plots.plot_difficulty(paths[figure], all_records, regimes=names,
                              difficulty=config.difficulty)
    logging.info("hastiness %s vs %s: %s, 95%% interval %s", *config.compare,
                 summary["hastiness"], summary["hastiness_interval"])
    return paths


def _hastiness(all_records, correct, evaluator, nonlinear, linear, data, seed) -> dict:
    """Hastiness of ``nonlinear`` over ``linear``, and the linear run's accuracy
    advantage on the hard group at equal progress, with bootstrap intervals."""
    prog = {r: np.array([rec[data.progress_key] for rec in all_records if rec["regime"] == r])
            for r in (nonlinear, linear)}
    e, h = evaluator.slice(data.easy), evaluator.slice(data.hard)
    easy_idx, hard_idx = np.arange(e.start, e.stop), np.arange(h.start, h.stop)
    try:
        value, interval = progress.bootstrap_hastiness(
            prog[nonlinear], correct[nonlinear], prog[linear], correct[linear],
            easy_idx, hard_idx, decreasing=data.decreasing, seed=seed)
        advantage, advantage_interval = progress.bootstrap_hard_advantage(
            prog[nonlinear], correct[nonlinear], prog[linear], correct[linear], hard_idx,
            decreasing=data.decreasing, seed=seed)
    except ValueError as e:          # e.g. the runs never made comparable progress
        logging.warning("no hastiness for %s vs %s: %s", nonlinear, linear, e)
        return {"hastiness": None, "hastiness_interval": None, "hard_advantage": None,
                "hard_advantage_interval": None, "error": str(e)}
    means = {r: (correct[r][:, easy_idx].mean(1), correct[r][:, hard_idx].mean(1))
             for r in (nonlinear, linear)}
    diff = progress.gap_difference(prog[nonlinear], *means[nonlinear], prog[linear],
                                   *means[linear], decreasing=data.decreasing)
    return {"hastiness": value, "hastiness_interval": interval,
            "fraction_hastier": float(np.mean(diff[np.isfinite(diff)] > 0)),
            "hard_advantage": advantage, "hard_advantage_interval": advantage_interval}


def summarize(all_records, correct, evaluator, compare, regime_names, data, seed) -> dict:
    """Hastiness of ``compare[0]`` (and of every other regime) over ``compare[1]``."""
    nonlinear, linear = compare
    summary = {"nonlinear": nonlinear, "linear": linear, "easy_group": data.easy,
               "hard_group": data.hard, "progress": data.progress_key,
               "interval": "95% bootstrap over the examples of the two groups",
               **_hastiness(all_records, correct, evaluator, nonlinear, linear, data, seed)}
    summary["by_regime"] = {
        r: _hastiness(all_records, correct, evaluator, r, linear, data, seed)
        for r in regime_names if r not in (linear, nonlinear)}
    return summary
