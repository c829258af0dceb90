"""The richness experiments' driver (experiments/richness.py) on a tiny gamma sweep:
the applied best rates and their slopes by hand, the reports, bad input."""

import json
import math
import os

import numpy as np
import pytest
from scipy import stats

from experiments import richness_report, richness_study, sweep_runs, validation
from lazy_hasty.analysis import plots

from tests import ROOT, checks

SCRIPT = os.path.join(ROOT, "experiments", "richness.py")
# The tiny MLP (one hidden layer of 32: depth L = 2) under muP, the richness rule; a
# one-rate search grid (the search's choice is tested in test_sweep.py).
TINY = richness_study.SweepSpec(
    "tiny", "gamma (muP)", "configs/digits_noise_tiny.py", "gamma", "0.5,1,2",
    ("--config.parameterization=mup", "--config.lr_rule=richness",
     "--config.learning_rate=0.02", "--config.lr_search_steps=10", "--config.figures=False",
     "--config.probe_every=3", "--config.checkpoint_every_steps=5"), "2")


@pytest.fixture(scope="module")
def eta_star(tmp_path_factory, quick_compiles_module):
    """The tiny gamma sweep's eta_star experiment (compiling is its cost; its checks are
    relations between its own numbers)."""
    work = tmp_path_factory.mktemp("richness")
    patch = pytest.MonkeyPatch()
    patch.setattr(richness_study, "sweeps", lambda experiment, scale: [TINY])
    try:
        report = richness_study.run("eta_star", str(work), "cpu", 2)
    finally:
        patch.undo()
    with open(work / "eta_star.json") as f:
        out = json.load(f)
    return work, report, out


def _search(work, gamma):
    with open(work / "tiny" / f"gamma={gamma:g}" / "lr_search.json") as f:
        return json.load(f)


def test_best_rates_are_the_grid_choice_times_the_rules_closed_form(eta_star):
    work, _, out = eta_star
    # muP multiplies by the width (32); the rule by g^2 up to g = 1, then g^(2/L), L = 2.
    factors = {0.5: 32 * 0.25, 1.0: 32 * 1.0, 2.0: 32 * 2.0}
    for i, gamma in enumerate((0.5, 1.0, 2.0)):
        chosen = _search(work, gamma)["per_seed_best_rates"]
        assert chosen == [0.04, 0.04]              # the one-rate grid: 2 x 0.02, each seed
        assert out["best_rates"][i] == pytest.approx([r * factors[gamma] for r in chosen])


def test_slopes_on_each_side_are_the_two_point_slopes(eta_star):
    _, report, out = eta_star
    rates = np.array(out["best_rates"], float)
    lazy = np.log(rates[1] / rates[0]) / math.log(2.0)
    rich = np.log(rates[2] / rates[1]) / math.log(2.0)
    scaling = out["scaling"]
    assert scaling["lazy_side"]["values"] == pytest.approx(list(lazy))
    assert scaling["rich_side"]["values"] == pytest.approx(list(rich))
    assert (scaling["lazy_side"]["predicted"], scaling["rich_side"]["predicted"]) == (2.0, 1.0)
    assert report["headline"]["rich_side"]["slope"] == pytest.approx(rich.mean())


def test_report_files_hold_the_table_and_the_figure(eta_star):
    work, report, out = eta_star
    assert report["paths"] == [str(work / f"eta_star.{e}") for e in ("json", "md", "png")]
    table = (work / "eta_star.md").read_text()
    for gamma in ("0.5", "1", "2"):
        assert f"\n| {gamma} | " in table
    assert "| gamma <= 1 | 2 |" in table and "| gamma >= 1 | 2 |" in table
    assert "| above the fitted break | - |" in table
    checks.check_figure(str(work / "eta_star.png"), lambda path: plots.plot_rate_scaling(
        path, [0.5, 1.0, 2.0], out["best_rates"], out["scaling"]))


def _sweeps(work, *knobs):
    plan = richness_study.make_plan(TINY, str(work), [0, 1])
    summary = richness_study.summary_of(plan)
    return {k: (TINY._replace(knob=k), plan, summary) for k in knobs}, summary


def test_collapse_pools_every_run_of_every_knob(eta_star):
    work = eta_star[0]
    sweeps, summary = _sweeps(work, "gamma", "gamma again")
    report = richness_report.collapse(sweeps)
    runs = report["data"]["runs"]
    assert len(runs) == 2 * 3 * 2
    pairs = [(r["sign_similarity"], r["hastiness"]) for r in runs]
    expected = stats.spearmanr(*zip(*pairs)).statistic
    assert report["headline"]["sign_similarity"]["spearman"] == pytest.approx(expected)
    by_knob = report["data"]["spearman"]["sign_similarity"]["by_knob"]
    alone = stats.spearmanr(*zip(*pairs[:6])).statistic
    assert by_knob["gamma"]["spearman"] == pytest.approx(alone)
    assert summary["hastiness"]["by_value"][0]["values"][0] == runs[0]["hastiness"]


def test_width_report_has_a_table_per_sweep(eta_star):
    sweeps, _ = _sweeps(eta_star[0], "width (standard)", "width (mup)")
    text = richness_report.width(sweeps)["markdown"]
    assert text.count("| width |") == 2
    assert "width (standard)\n" in text and "width (mup)\n" in text


@pytest.mark.parametrize("args, message", [
    (["--experiment=eta_star", "--workdir=W", "--scale=tpu"], "flag --scale=tpu"),
    (["--experiment=eta_star", "--workdir=W", "--config.seed=1"],
     "--config.seed=1: the experiments' configs are fixed"),
])
def test_bad_input_is_one_line(tmp_path, args, message):
    checks.check_one_line_error(SCRIPT, args, tmp_path, message)


@pytest.mark.parametrize("scale", richness_study.SCALES)
def test_every_experiments_sweeps_are_valid_configs(scale):
    specs = richness_study.sweeps("collapse", scale)
    assert [s.name for s in specs] == ["eta_star", "continuum", "width_standard", "width_mup"]
    for spec in specs:
        config = sweep_runs.load_config(os.path.join(ROOT, spec.config), list(spec.overrides))
        validation.check_config(config)
        if spec.axis != "alpha":                   # a key of the config, numeric
            assert "64" in sweep_runs._axis_override(config, spec.axis, 64.0)
        assert len(spec.lr_grid.split(",")) >= 9
    assert richness_study.sweeps("width", scale)[1].overrides == richness_study.MUP
