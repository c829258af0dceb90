"""A score as the difficulty (experiments/score_difficulty.py): the groups are the
references' score quantiles, recomputed here from the cached scores; a reference in
the vmapped program is the run trained alone; the cache is read back; the sweep (and
so main.py's preparation of a run) works on it like on any dataset."""

import json
import os

import numpy as np
import pytest

from configs import digits_noise_tiny
from experiments import difficulty_setup, score_difficulty, sweep_runs
from lazy_hasty import models, regimes, rng
from lazy_hasty.analysis import scores
from lazy_hasty.engine import loop, records
from lazy_hasty.engine.evaluation import GroupEvaluator

from tests import ROOT


def _config(cache):
    config = digits_noise_tiny.get_config()
    config.difficulty, config.score_cache = "score:el2n", str(cache)
    config.score_references, config.early_score_epoch = 2, 1.0
    config.group_size, config.figures = 0, False        # whole quantiles
    return config


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    cache = tmp_path_factory.mktemp("score_cache")
    config = _config(cache)
    data = score_difficulty.load(config)
    (path,) = cache.iterdir()
    with np.load(path) as cached:
        return config, data, {s: cached[s] for s in scores.SCORES}


def _rows(x, of):
    """Indices of the rows of ``x`` within ``of`` (the digits rows are distinct)."""
    where = {row.tobytes(): i for i, row in enumerate(of)}
    return sorted(where[row.tobytes()] for row in x)


def test_groups_are_the_extreme_tenths_of_the_references_mean_rank(loaded):
    config, data, runs = loaded
    el2n = runs["el2n"]
    assert el2n.shape == (2, len(data.train.y)) and np.isfinite(el2n).all()
    ranks = np.mean([np.argsort(np.argsort(r)) for r in el2n], axis=0)  # no ties in floats
    order = np.argsort(ranks, kind="stable")
    count = round(0.1 * len(order))
    groups = data.groups["train"]
    assert _rows(groups["score_easy"].x, data.train.x) == sorted(order[:count])
    assert _rows(groups["score_hard"].x, data.train.x) == sorted(order[-count:])
    assert {"clean", "noisy", "all"} <= set(groups)          # the noise twin's groups stay
    assert (data.spec.name, data.spec.easy, data.spec.hard) == (
        "score:el2n", "train/score_easy", "train/score_hard")
    # EL2N ranks label noise: the hard tenth is mostly noisy labels (15 % of all), the
    # easy tenth rarely.
    noisy = set(_rows(groups["noisy"].x, data.train.x))
    assert len(noisy & set(order[-count:])) > count / 2 > 4 * len(noisy & set(order[:count]))


def test_a_reference_is_the_run_trained_alone(loaded):
    config, data, runs = loaded
    module = difficulty_setup.module_of(config, data.num_classes)
    seed = score_difficulty.reference_seeds(config.seed, 2)[1]
    assert seed != config.seed
    params0, state = models.init_model(module, rng.jax_key(seed, "init"), data.train.x[:1])
    per_epoch = len(data.train.y) // config.batch_size
    options = difficulty_setup.options(config, int(config.score_epochs * per_epoch), None,
                                       difficulty_setup.richness_of(config, module), per_epoch)
    trace = score_difficulty._Trace()
    evaluator = GroupEvaluator({"train/all": (data.train.x, data.train.y)},
                               score_group="train/all", score_chunk=16)
    loop.train_regime(models.make_apply_fn(module, state), regimes.parse_regime("alpha=1"),
                      params0, data.train, options._replace(seed=seed), evaluator, trace)
    alone = trace.scores()
    for name in ("aum", "el2n", "grand", "confidence", "variability"):
        np.testing.assert_allclose(runs[name][1], alone[name], rtol=1e-4, atol=1e-5,
                                   err_msg=name)


def test_the_cache_is_read_back(loaded, monkeypatch):
    config, data, _ = loaded
    monkeypatch.setattr(score_difficulty, "reference_scores", lambda *a: pytest.fail("retrained"))
    again = score_difficulty.load(config)
    for name in ("score_easy", "score_hard"):
        assert np.array_equal(again.groups["train"][name].x, data.groups["train"][name].x)


def test_the_sweep_runs_on_a_score(loaded, tmp_path):
    """Through the sweep, every run prepared as main.py prepares it."""
    config = loaded[0]
    plan = sweep_runs.make_plan(
        os.path.join(ROOT, "configs", "digits_noise_tiny.py"), str(tmp_path / "sweep"),
        "alpha", "1", "alpha=1", [0, 1], reference_epochs=2, max_epochs=2,
        overrides=["--config.difficulty=score:el2n", f"--config.score_cache={config.score_cache}",
                   "--config.score_references=2", "--config.early_score_epoch=1",
                   "--config.group_size=0", "--config.figures=False",
                   "--config.checkpoint_every_steps=0"])
    sweep_runs.run_all(plan, batch=True)
    sweep_runs.aggregate(plan)
    with open(os.path.join(plan.workdir, "sweep_summary.json")) as f:
        summary = json.load(f)
    assert summary["spec"]["name"] == "score:el2n"
    assert np.isfinite(summary["hastiness"]["by_value"][0]["values"]).all()
    first = records.read_jsonl(os.path.join(plan.swept[1.0][0].workdir, "metrics.jsonl"))[0]
    assert {"train/score_easy/accuracy", "train/score_hard/loss", "train/noisy/loss"} <= set(first)
