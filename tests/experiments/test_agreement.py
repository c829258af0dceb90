"""The agreement experiment (experiments/agreement.py) on the tiny noise twin, two
seeds: its numbers against a recomputation from the run's files, against a run of
the score difficulty itself, the across-seed summary, the report and bad input."""

import json
import os

import numpy as np
import pytest
from scipy import stats

from experiments import agreement_study, difficulty, score_difficulty
from lazy_hasty.analysis import inference, scores

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
        per_seed = [agreement_study.run_seed("noise", s, str(work)) for s in (0, 1)]
        report = agreement_study.run(str(work), ["noise"], [0, 1])
        config = agreement_study.twin_config("noise", 0, str(work))
    finally:
        patch.undo()
    return work, per_seed, report, config


def test_correlations_are_those_of_the_runs_scores(study):
    work, per_seed, _, config = study
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
    work, per_seed, _, config = study
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


def test_the_summary_is_across_seeds_of_the_per_seed_numbers(study):
    work, per_seed, report, _ = study
    out = json.loads((work / "agreement.json").read_text())["twins"]["noise"]
    for got, path in ((out["hastiness"]["aum"], ("hastiness", "aum")),
                      (out["kernel"]["spearman"]["linearized"], ("kernel", "spearman",
                                                                 "linearized"))):
        values = [r[path[0]][path[1]] if len(path) == 2 else r[path[0]][path[1]][path[2]]
                  for r in per_seed]
        want = inference.across_seeds(values, require_interval=False)
        stored = [np.nan if v is None else v for v in got["values"]]   # JSON: NaN -> null
        np.testing.assert_equal(stored, values)
        assert got["interval"] == want["interval"] and got["mean"] == want["mean"]
    assert report["headline"]["noise"]["hastiness"]["aum"] == out["hastiness"]["aum"]["mean"]
    table = (work / "agreement.md").read_text()
    assert table.count("| score | alpha=1 | alpha=100 | linearized |") == 1
    assert all(f"\n| {s} | " in table for s in scores.SCORES)


@pytest.mark.parametrize("args, message", [
    (["--workdir=W", "--twins=noise,mnist"], "--twins must name some of"),
    (["--workdir=W", "--seeds=1"], "flag --seeds=1"),
    (["--workdir=W", "--config.seed=3"], "--config.seed=3: the twins' configs are fixed"),
])
def test_bad_input_is_one_line(tmp_path, args, message):
    checks.check_one_line_error(SCRIPT, args, tmp_path, message)
