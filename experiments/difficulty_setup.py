"""What a difficulty run is made of, from its config: network, ``params0``,
evaluator, linearity probe and training options (``experiments/difficulty.py``
and the sweep share them)."""

from __future__ import annotations

from typing import NamedTuple, Optional

import ml_collections
import numpy as np

from lazy_hasty import datasets, models, richness, rng
from lazy_hasty.engine import loop
from lazy_hasty.difficulty import DifficultySpec
from lazy_hasty.engine.evaluation import GroupEvaluator, LinearityProbe
from lazy_hasty.types import ApplyFn, Params


SCORE_GROUP = "train/all"
"""The group whose examples get difficulty scores (``scores.npz``), when the data has it."""
SCORE_CHUNK = 16
"""Examples whose Jacobians GraNd holds at once, unless ``config.ntk_chunk_size`` says."""


class Setup(NamedTuple):
    """The network, its shared initialisation and what is measured at each record."""

    apply_fn: ApplyFn
    params0: Params
    evaluator: GroupEvaluator
    probe: LinearityProbe
    state: Params                   # non-trainable variables apply_fn closes over
    richness: richness.Richness     # what the learning rate depends on besides alpha


def module_of(config: ml_collections.ConfigDict, num_outputs: int):
    """The config's network (its model, parameterization, gamma and model_kwargs)."""
    return models.get_model(config.model, num_outputs=num_outputs,
                            parameterization=config.parameterization, gamma=config.gamma,
                            **config.model_kwargs.to_dict())


def build(config: ml_collections.ConfigDict, data: datasets.DescribedDataset) -> Setup:
    """Model and ``params0`` (seeded, or imported weights), evaluator and probe."""
    module = module_of(config, data.num_classes)
    train = data.train
    if config.pretrained:           # ImageNet ResNet18 weights, fresh head (Waterbirds)
        from lazy_hasty.models import torch_import
        params0, state = torch_import.resnet18_variables_from_torchvision(
            torch_import.load_state_dict_arrays(config.pretrained), data.num_classes,
            rng.jax_key(config.seed, "init"))
    else:
        params0, state = models.init_model(module, rng.jax_key(config.seed, "init"), train.x[:1])
    probe_idx = rng.numpy_rng(config.seed, "probe").choice(len(train.y), config.probe_size,
                                                     replace=False)
    probe = LinearityProbe(module, state, params0, train.x[np.sort(probe_idx)],
                           ntk_implementation=config.ntk_implementation,
                           ntk_chunk_size=config.ntk_chunk_size or None)
    groups = data.flat_groups()
    evaluator = GroupEvaluator(groups, batch_size=config.eval_batch_size,
                               score_group=SCORE_GROUP if config.scores and SCORE_GROUP in groups
                               else None,
                               score_chunk=config.ntk_chunk_size or SCORE_CHUNK)
    return Setup(models.make_apply_fn(module, state), params0, evaluator, probe, state,
                 richness_of(config, module))


def richness_of(config: ml_collections.ConfigDict, module) -> richness.Richness:
    """The network's :class:`richness.Richness` (its width and depth from ``module``)."""
    rule = richness.LearningRateRule(config.lr_rule, config.lr_crossover,
                                     config.lr_depth or models.depth(module))
    return richness.Richness(config.gamma, richness.width_multiplier(
        config.parameterization, models.width(module)), rule)


def options(config: ml_collections.ConfigDict, num_steps: int, spec: Optional[DifficultySpec],
            rich: richness.Richness, steps_per_epoch: int) -> loop.TrainOptions:
    """The training options of one regime (a stop rule on the spec's progress measure
    when ``config.stop_at_progress`` is set and a spec given)."""
    stop = None
    if config.stop_at_progress > 0 and spec is not None:
        stop = loop.StopRule(spec.progress_key, config.stop_at_progress, spec.decreasing)
    return loop.TrainOptions(
        num_steps=num_steps, batch_size=config.batch_size, learning_rate=config.learning_rate,
        momentum=config.momentum, seed=config.seed, ladder_ratio=config.ladder_ratio,
        probe_every=config.probe_every, checkpoint_every=config.checkpoint_every_steps,
        stop=stop, device_data_bytes=int(config.device_data_mb * 2**20),
        richness=rich,
        early_score_step=int(round(config.early_score_epoch * steps_per_epoch)))
