"""Every check of an example-difficulty config, in one place.

:func:`check_config` runs before anything is loaded or written (it also
resolves ``config.dataset``, so a bad ``module:function`` fails first);
:func:`check_against_data` runs once the training set's size is known, still
before any training or file.
"""

from __future__ import annotations

import os

import ml_collections

from configs import difficulty_base
from experiments import common, score_difficulty
from lazy_hasty import datasets, regimes, richness
from lazy_hasty.analysis import lr_search
from lazy_hasty.engine import monitor, sharding

POSITIVE_KEYS = ("batch_size", "learning_rate", "probe_every", "eval_batch_size",
                 "checkpoints_to_keep")
NON_NEGATIVE_KEYS = ("group_size", "test_size", "checkpoint_every_steps", "distractors",
                     "device_data_mb", "early_score_epoch")


def _check_ranges(config: ml_collections.ConfigDict) -> None:
    for key in POSITIVE_KEYS:
        if not config[key] > 0:
            raise ValueError(f"{key} must be > 0, got {config[key]!r}")
    for key in NON_NEGATIVE_KEYS:
        if config[key] < 0:
            raise ValueError(f"{key} must be >= 0, got {config[key]!r}")
    if not 0 <= config.momentum < 1:
        raise ValueError(f"momentum must be in [0, 1), got {config.momentum!r}")
    if not 0 < config.ladder_ratio < 1:
        raise ValueError(f"ladder_ratio must be in (0, 1), got {config.ladder_ratio!r}: each "
                         "record rung is the previous training loss times this ratio")


def _check_weights(config: ml_collections.ConfigDict) -> None:
    if config.dataset == "waterbirds" and not config.pretrained:
        raise ValueError("waterbirds starts from an ImageNet-pretrained ResNet18: pass "
                         "--config.pretrained=<torchvision resnet18 state dict .npz/.pth> "
                         "(convert once with scripts/convert_torchvision_resnet18.py)")
    if config.pretrained and not os.path.isfile(config.pretrained):
        raise ValueError(f"pretrained weights file {config.pretrained!r} not found; pass a "
                         "torchvision resnet18 state dict (.npz, or .pth with torch installed)")


def _check_richness(config: ml_collections.ConfigDict) -> None:
    richness.check_parameterization(config.parameterization)
    regimes.check_positive("gamma", config.gamma)
    if config.lr_depth < 0:
        raise ValueError(f"lr_depth must be >= 0 (0: the model's depth), got "
                         f"{config.lr_depth!r}")
    richness.LearningRateRule(config.lr_rule, config.lr_crossover, config.lr_depth or 1)
    shadowed = {"parameterization", "gamma"} & set(config.model_kwargs.keys())
    if shadowed:
        raise ValueError(f"set config.{sorted(shadowed)[0]}, not model_kwargs."
                         f"{sorted(shadowed)[0]}")
    if config.pretrained and config.parameterization != "standard":
        raise ValueError(f"imported weights (config.pretrained) are in the standard "
                         f"parameterization; {config.parameterization!r} does not support "
                         "them: drop --config.pretrained or use 'standard'")


def _check_score_difficulty(config: ml_collections.ConfigDict) -> None:
    """A ``score:<name>`` difficulty: a known score and usable reference settings."""
    if score_difficulty.score_name(config.difficulty) is None:
        return
    if config.pretrained:
        raise ValueError(f"difficulty {config.difficulty!r} trains its reference networks "
                         "from random initialisations; drop --config.pretrained")
    if config.score_references < 1:
        raise ValueError(f"score_references must be >= 1 (the runs that grade the "
                         f"examples), got {config.score_references!r}")
    if not 0 < config.score_quantile <= 0.5:
        raise ValueError(f"score_quantile must be in (0, 0.5] (the fraction of examples in "
                         f"each of the easy and hard groups), got {config.score_quantile!r}")
    if not config.score_epochs > 0:
        raise ValueError(f"score_epochs must be > 0 (the reference runs' budget), got "
                         f"{config.score_epochs!r}")
    regimes.parse_regime(config.score_regime)


def check_lr_search(config: ml_collections.ConfigDict) -> None:
    """The learning-rate search keys (``lr_search_*``, read by ``sweep.py --lr_grid``)."""
    if config.lr_search_steps < 1:
        raise ValueError(f"lr_search_steps must be >= 1 (the training steps of each "
                         f"learning-rate search run), got {config.lr_search_steps!r}")
    if config.lr_search_criterion not in lr_search.CRITERIA:
        raise ValueError(f"lr_search_criterion must be one of {lr_search.CRITERIA}, got "
                         f"{config.lr_search_criterion!r}")
    if not 0 <= config.lr_search_target < float("inf"):
        raise ValueError(f"lr_search_target must be a finite number >= 0, got "
                         f"{config.lr_search_target!r}")
    if config.lr_search_criterion == "steps_to_target" and config.lr_search_target == 0:
        raise ValueError("lr_search_target must be > 0 with lr_search_criterion="
                         "'steps_to_target': set it to the progress each search run must reach")


def check_config(config: ml_collections.ConfigDict) -> list[regimes.Regime]:
    """All checks that need no data; returns the parsed regimes."""
    common.check_keys(config, difficulty_base.get_config())
    datasets.resolve(config.dataset)
    _check_weights(config)
    _check_ranges(config)
    _check_richness(config)
    _check_score_difficulty(config)
    check_lr_search(config)
    if config.tensorboard:
        monitor.check_installed()
    parsed = [regimes.parse_regime(r) for r in config.regimes]
    names = [p.name for p in parsed]
    if len(set(names)) != len(parsed):
        raise ValueError(f"regimes {tuple(config.regimes)} name a regime twice")
    if any(not e > 0 for e in config.num_epochs):
        raise ValueError(f"num_epochs {tuple(config.num_epochs)} must all be > 0")
    if len(config.num_epochs) != len(parsed):
        raise ValueError(f"num_epochs {tuple(config.num_epochs)} needs one entry per regime "
                         f"{tuple(config.regimes)}")
    if len(parsed) > 1 and (len(config.compare) != 2 or any(r not in names
                                                            for r in config.compare)):
        raise ValueError(f"compare {tuple(config.compare)} must name two of the regimes "
                         f"{names}")
    if config.stop_at_progress < 0:
        raise ValueError(f"stop_at_progress must be >= 0 (0: train for num_epochs), got "
                         f"{config.stop_at_progress!r}")
    return parsed


def check_against_data(config: ml_collections.ConfigDict, num_train: int) -> list[int]:
    """Checks that need the training-set size; returns each regime's number of steps."""
    if not 0 < config.probe_size <= num_train:
        raise ValueError(f"probe_size {config.probe_size} must be in [1, {num_train}] "
                         "(the number of training examples)")
    if config.batch_size > num_train:
        raise ValueError(f"batch_size {config.batch_size} exceeds the {num_train} "
                         "training examples")
    sharding.check_batch_size(config.batch_size, sharding.data_mesh())
    steps = steps_per_epoch(config, num_train)
    num_steps = [int(epochs * steps) for epochs in config.num_epochs]
    if min(num_steps) < 1:
        raise ValueError(f"num_epochs {tuple(config.num_epochs)} give {num_steps} steps of "
                         f"{steps} per epoch; every regime needs at least one")
    return num_steps


def steps_per_epoch(config: ml_collections.ConfigDict, num_train: int) -> int:
    """SGD steps in one epoch of ``num_train`` examples (an incomplete last batch is
    dropped); a regime trains ``int(num_epochs * steps_per_epoch)`` steps."""
    return num_train // config.batch_size
