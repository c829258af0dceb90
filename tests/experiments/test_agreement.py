"""The agreement experiment (experiments/agreement.py) on the tiny noise twin: one
seed's numbers against a recomputation from the run's files and against a run of
the score difficulty itself, the across-seed summary and report, and bad input."""

import json
import os

import numpy as np
import pytest
from scipy import stats

from experiments import agreement_study, difficulty, score_difficulty
from lazy_hasty.analysis import scores

from tests import ROOT, checks

SCRIPT = os.path.join(ROOT, "experiments", "agreement.py")


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    work = tmp_path_factory.mktemp("agreement")
    patch = pytest.MonkeyPatch()
    patch.setitem(agreement_study.TWINS, "noise", ("configs/digits_noise_tiny.py", "train/noisy"))
    patch.setattr(agreement_study, "OVERRIDES", ("--config.early_score_epoch=1",
                                                 "--config.score_references=2"))
    patch.setattr(agreement_study, "KERNEL_EXAMPLES", 200)    # the full kernel costs most
    try:
        per_seed = [agreement_study.run_seed("noise", 0, str(work))]
        config = agreement_study.twin_config("noise", 0, str(work))
    finally:
        patch.undo()
    return work, per_seed, config


def test_correlations_are_those_of_the_runs_scores(study):
    work, per_seed, config = study
    with np.load(work / "noise" / "seed_0" / "scores.npz") as f:
        el2n, aum = f["el2n_alpha=1"], f["aum_linearized"]
        times = f["learning_time_alpha=100"]
    data = score_difficulty.load(config)
    noisy = agreement_study.own_hardness("noise", data)
    assert noisy.sum() == len(data.groups["train"]["noisy"].y)
    got = per_seed[0]["spearman"]
    assert got["alpha=1"]["own|el2n"] == pytest.approx(stats.spearmanr(noisy, el2n).statistic)
    # AUM is oriented (a small margin is hard); a late learning time, or none, is hard.
    assert got["linearized"]["own|aum"] == pytest.approx(stats.spearmanr(noisy, -aum).statistic)
    late = np.where(np.isnan(times), np.inf, times)
    assert got["alpha=100"]["own|learning_time"] == pytest.approx(
        stats.spearmanr(noisy, late).statistic)
    with np.load(work / "noise" / "seed_0" / "scores.npz") as f:
        a, b = f["forgetting_alpha=1"], f["forgetting_linearized"]
    assert per_seed[0]["across_regimes"]["forgetting"]["alpha=1|linearized"] == pytest.approx(
        stats.spearmanr(a, b).statistic)


def test_a_scores_hastiness_is_that_of_a_run_of_the_score_difficulty(study, tmp_path):
    work, per_seed, config = study
    config.difficulty, config.regimes = "score:el2n", ("alpha=1", "alpha=100")
    config.num_epochs = config.num_epochs[:2]
    difficulty.run(config, str(tmp_path / "el2n"))
    with open(tmp_path / "el2n" / "summary.json") as f:
        assert per_seed[0]["hastiness"]["el2n"] == pytest.approx(json.load(f)["hastiness"],
                                                                abs=1e-12)
    with open(work / "noise" / "seed_0" / "summary.json") as f:
        assert per_seed[0]["hastiness"]["own"] == json.load(f)["hastiness"]


def test_kernel_prediction_and_energy_are_well_formed(study):
    kernel = study[1][0]["kernel"]
    assert set(kernel["spearman"]) == set(agreement_study.REGIMES)
    assert all(-1 <= v <= 1 for v in kernel["spearman"].values())
    for group in ("easy", "hard"):
        shares = [kernel["energy_in_top"][group][str(k)] for k in agreement_study.TOP_K]
        assert 0 <= shares[0] <= shares[1] <= shares[2] <= 1 + 1e-9


def test_the_summary_is_across_seeds_of_the_per_seed_numbers(study, tmp_path, monkeypatch):
    # A second seed: the first's numbers shifted, so every summary is checkable by hand.
    first = study[1][0]
    second = json.loads(json.dumps(first), parse_float=lambda v: float(v) + 0.25)
    monkeypatch.setattr(agreement_study, "run_seed",
                        lambda twin, seed, workdir: [first, second][seed])
    report = agreement_study.run(str(tmp_path), ["noise"], [0, 1])
    out = json.loads((tmp_path / "agreement.json").read_text())["twins"]["noise"]
    for got, one, two in ((out["hastiness"]["aum"], first["hastiness"]["aum"],
                           second["hastiness"]["aum"]),
                          (out["kernel"]["spearman"]["alpha=1"],
                           first["kernel"]["spearman"]["alpha=1"],
                           second["kernel"]["spearman"]["alpha=1"])):
        assert got["values"] == [one, two] and got["mean"] == pytest.approx(one + 0.125)
        # 95 % t interval of two values 0.25 apart: mean +- 12.706 * 0.25 / 2.
        assert got["interval"] == pytest.approx([one + 0.125 - 12.7062 * 0.125,
                                                 one + 0.125 + 12.7062 * 0.125], rel=1e-4)
    assert report["headline"]["noise"]["hastiness"]["aum"] == out["hastiness"]["aum"]["mean"]
    table = (tmp_path / "agreement.md").read_text()
    assert table.count("| score | alpha=1 | alpha=100 | linearized |") == 1
    assert all(f"\n| {s} | " in table for s in scores.SCORES)


@pytest.mark.parametrize("args, message", [
    (["--workdir=W", "--twins=noise,mnist"], "--twins must name some of"),
    (["--workdir=W", "--config.seed=3"], "--config.seed=3: the twins' configs are fixed"),
])
def test_bad_input_is_one_line(tmp_path, args, message):
    checks.check_one_line_error(SCRIPT, args, tmp_path, message)
