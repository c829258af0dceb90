"""Difficulty from the runs themselves: ``config.difficulty = "score:<name>"``.

The easy and hard groups are the lowest and highest ``config.score_quantile`` of
the training examples by a per-example score (:data:`lazy_hasty.analysis.scores.SCORES`)
measured in ``config.score_references`` independent reference runs: the config's
network trained in ``config.score_regime`` for ``config.score_epochs`` on the same
training set (one budget for every run of a sweep, so all share the groups), each from its
own initialisation and minibatch order (seeds drawn from the stream
``("score_reference", k)`` of ``config.seed``), so that no run is graded by its own
score. The references' ranks are averaged (:func:`lazy_hasty.analysis.scores.hardness`).
The dataset itself is loaded with ``difficulty = config.score_base`` (its own notion:
its training set and groups are kept, its spec replaced). The hardness is cached
in ``config.score_cache`` (default ``~/.cache/lazy_hasty/scores``) under a digest
of the training set and of every setting the references depend on.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Optional

import jax
import ml_collections
import numpy as np

from experiments import difficulty_setup
from lazy_hasty import datasets, difficulty, models, regimes, rng
from lazy_hasty.analysis import scores
from lazy_hasty.data import groups as groups_lib, splits
from lazy_hasty.engine import loop, records, train
from lazy_hasty.engine.evaluation import GroupEvaluator

PREFIX = "score:"
# What the references depend on besides the training set (and their seeds' source),
# and the version of the scores' definitions (a new one recomputes cached scores).
SCORES_VERSION = 2
REFERENCE_KEYS = ("seed", "model", "model_kwargs", "parameterization", "gamma", "lr_rule",
                  "lr_crossover", "lr_depth", "batch_size", "learning_rate", "momentum",
                  "ladder_ratio", "early_score_epoch", "score_references", "score_regime",
                  "score_epochs")


def score_name(difficulty_name: str) -> Optional[str]:
    """The score of a ``"score:<name>"`` difficulty (None for any other difficulty)."""
    if not difficulty_name.startswith(PREFIX):
        return None
    name = difficulty_name[len(PREFIX):]
    if name not in scores.SCORES:
        raise ValueError(f"difficulty {difficulty_name!r}: unknown score {name!r}; choose "
                         f"one of {tuple(PREFIX + s for s in scores.SCORES)}")
    return name


def load(config: ml_collections.ConfigDict) -> datasets.DescribedDataset:
    """The config's dataset; with a score difficulty, its score's quantile groups."""
    name, values = score_name(config.difficulty), config.to_dict()
    if name is not None:
        values["difficulty"] = config.score_base
    data = datasets.load(config.dataset, values, config.dataset_kwargs.to_dict())
    return data if name is None else with_score_groups(config, data, name)


def with_score_groups(config: ml_collections.ConfigDict, data: datasets.DescribedDataset,
                      name: str) -> datasets.DescribedDataset:
    """``data`` with groups ``train/score_easy`` and ``train/score_hard`` of score
    ``name`` (:func:`cached_hardness`) and their spec."""
    chosen = groups_lib.quantile_groups(cached_hardness(config, data, name),
                                        config.score_quantile, config.group_size or None,
                                        config.seed, "train")
    train = {**data.groups.get("train", {}),
             **{g: splits.subset(data.train, idx) for g, idx in chosen.items()}}
    return datasets.DescribedDataset(data.train, {**data.groups, "train": train},
                                     data.num_classes, difficulty.score_quantiles(name))


def cached_hardness(config: ml_collections.ConfigDict, data: datasets.DescribedDataset,
                    name: str) -> np.ndarray:
    """:func:`reference_scores` of ``name`` as one hardness per training example, read
    from the cache when an identical request was computed (process 0 writes it)."""
    values = config.to_dict()
    settings = {"version": SCORES_VERSION, **{k: values[k] for k in REFERENCE_KEYS}}
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    digest.update(np.ascontiguousarray(data.train.x).tobytes())
    digest.update(np.ascontiguousarray(data.train.y).tobytes())
    folder = config.score_cache or os.path.expanduser("~/.cache/lazy_hasty/scores")
    path = os.path.join(folder, f"{digest.hexdigest()[:32]}.npz")
    if os.path.exists(path):
        with np.load(path, allow_pickle=False) as cached:
            runs = {s: cached[s] for s in scores.SCORES}
    else:
        runs = reference_scores(config, data)
        if jax.process_index() == 0:
            os.makedirs(folder, exist_ok=True)
            records.write_npz(path, **runs)
    return scores.hardness(name, runs[name])


def reference_seeds(seed: int, count: int) -> list[int]:
    """The reference runs' seeds, from the stream ``("score_reference", k)``."""
    return [int(rng.numpy_rng(seed, "score_reference", k).integers(2**31)) for k in range(count)]


class _Trace:
    """:class:`lazy_hasty.engine.loop.Hooks` keeping what the scores read of each record."""

    def __init__(self):
        self.rows: list[train.PerExample] = []
        self.early: tuple = (None, None)

    def record(self, record: dict, per_example: train.PerExample,
               grand: Optional[np.ndarray] = None) -> None:
        self.rows.append(per_example)
        if grand is not None:
            self.early = (per_example.el2n, grand)

    def resume(self, initial_state: train.TrainState) -> None:
        return None

    def checkpoint(self, progress: loop.RegimeProgress) -> None:
        pass

    def end(self, error: Optional[loop.NonFiniteLossError]) -> None:
        if error is not None:
            raise ValueError(f"a score reference run diverged ({error}); lower "
                             "learning_rate or pick another score_regime") from None

    def scores(self) -> dict[str, np.ndarray]:
        stack = lambda field: np.stack([getattr(r, field) for r in self.rows])
        return scores.run_scores(stack("correct"), stack("margin"), stack("probability"),
                                 *self.early)


def reference_scores(config: ml_collections.ConfigDict, data: datasets.DescribedDataset
                     ) -> dict[str, np.ndarray]:
    """Every score of every training example in each reference run, ``(runs, N)``; the
    runs train as one vmapped program."""
    module = difficulty_setup.module_of(config, data.num_classes)
    regime = regimes.parse_regime(config.score_regime)
    per_epoch = len(data.train.y) // config.batch_size
    evaluator = GroupEvaluator({"train/all": (data.train.x, data.train.y)},
                               batch_size=config.eval_batch_size, score_group="train/all",
                               score_chunk=config.ntk_chunk_size or difficulty_setup.SCORE_CHUNK)
    options = difficulty_setup.options(config, int(config.score_epochs * per_epoch), None,
                                       difficulty_setup.richness_of(config, module), per_epoch)
    members, traces, state = [], [], None
    for seed in reference_seeds(config.seed, config.score_references):
        params0, state = models.init_model(module, rng.jax_key(seed, "init"), data.train.x[:1])
        traces.append(_Trace())
        members.append(loop.Member(params0, data.train, evaluator, traces[-1], None,
                                   options._replace(seed=seed, checkpoint_every=0)))
    loop.train_members(models.make_apply_fn(module, state), regime, members)
    per_run = [t.scores() for t in traces]
    return {s: np.stack([run[s] for run in per_run]) for s in scores.SCORES}
