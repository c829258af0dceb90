"""The yin-yang experiment (Fig. 1): records, oracles for the in-scan logic, the CLI."""

import json
import os
import pathlib
import re
import subprocess
import sys
from typing import Any, NamedTuple

import jax
import ml_collections
import numpy as np
import pytest

import configs.yinyang_tiny
from experiments import yinyang as driver
from lazy_hasty import models, rng
from lazy_hasty.engine import records, train, yinyang
from lazy_hasty.analysis import progress
from lazy_hasty.data import yinyang as data
from lazy_hasty.regimes import parse_regime

from tests import ROOT as REPO
from tests import checks
REGIMES = ["alpha=1", "alpha=100", "linearized"]

# Compiling the in-process runs is most of their cost; the checks are oracles and
# tolerances on the maths, not the rounding of optimised kernels (conftest.py). So do
# the main.py processes of the CLI tests, which check errors.
pytestmark = pytest.mark.usefixtures("quick_compiles_module")

# A very small run for determinism (compile-dominated).
SMALL = dict(num_runs=3, num_steps=200, learning_rate=0.5, thresholds=(0.6, 0.5),
             regimes=["alpha=1", "linearized"], n_train=40, hidden=(16, 16),
             grid_resolution=6, segments=4)


class TinyRun(NamedTuple):
    """The driver's run of configs/yinyang_tiny.py and the library result behind it."""

    config: ml_collections.ConfigDict
    workdir: str
    paths: dict[str, str]
    kwargs: dict[str, Any]               # what the driver passed to run_yinyang
    result: yinyang.YinYangResult


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> TinyRun:
    """One training shared by the record tests and the library tests: the driver
    runs the tiny config while a spy keeps the ``run_yinyang`` call it makes."""
    workdir = str(tmp_path_factory.mktemp("yinyang") / "work")      # not yet existing
    config = configs.yinyang_tiny.get_config()
    real, calls = yinyang.run_yinyang, []

    def spy(**kwargs):
        calls.append((kwargs, real(**kwargs)))
        return calls[-1][1]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(yinyang, "run_yinyang", spy)
        paths = driver.run(config, workdir)
    ((kwargs, result),) = calls
    return TinyRun(config, workdir, paths, kwargs, result)


def test_driver_writes_the_four_files(tiny_run):
    workdir, paths = tiny_run.workdir, tiny_run.paths
    names = ("config.json", "metrics.jsonl", "fig1.npz", "fig1.png")
    assert sorted(paths) == sorted(names)
    assert sorted(os.listdir(workdir)) == sorted(names)             # no temporaries left
    for name in names:
        assert paths[name] == os.path.join(workdir, name)
        assert os.path.getsize(paths[name]) > 0


def test_fig1_png_is_the_drawing_of_fig1_npz(tiny_run):
    """As the driver draws it: alpha=1 against alpha=100, Δ maps against alpha=100 and
    the linearized regime (the drawing itself: tests/analysis/test_plots.py)."""
    from lazy_hasty.analysis import plots
    with np.load(tiny_run.paths["fig1.npz"], allow_pickle=False) as z:
        fig1 = dict(z)
    checks.check_figure(tiny_run.paths["fig1.png"], lambda path: plots.plot_fig1(
        path, train_points=fig1["train_points"], train_labels=fig1["train_labels"],
        steps=np.arange(tiny_run.config.num_steps),
        loss_curves={name: fig1[f"loss_{name}"] for name in ("alpha=1", "alpha=100")},
        thresholds=fig1["thresholds"], grid_points=fig1["points"],
        delta_maps={"alpha=100": fig1["delta_alpha100"],
                    "linearized": fig1["delta_linearized"]}))


def test_config_json_round_trips(tiny_run):
    config, paths = tiny_run.config, tiny_run.paths
    with open(paths["config.json"]) as f:
        loaded = json.load(f)
    want = {k: list(v) if isinstance(v, tuple) else v for k, v in config.to_dict().items()}
    assert loaded == want
    assert loaded["hidden"] == [60, 60, 60] and loaded["thresholds"] == [0.5, 0.4, 0.3]
    assert loaded["num_runs"] == 4 and loaded["learning_rate"] == 0.5


def test_fig1_npz_holds_the_library_result(tiny_run):
    """fig1.npz is the run's result (whose crossings, Δ maps and counts are checked
    against oracles below) on the config's grid and thresholds."""
    config, paths, result = tiny_run.config, tiny_run.paths, tiny_run.result
    with np.load(paths["fig1.npz"], allow_pickle=False) as z:
        np.testing.assert_allclose(z["points"],
                                   np.asarray(data.grid_points(config.grid_resolution)))
        np.testing.assert_allclose(z["thresholds"], config.thresholds, rtol=1e-6)
        for name in REGIMES:
            np.testing.assert_array_equal(z[f"loss_{name}"], result.loss_curves[name])
            np.testing.assert_array_equal(z[f"crossings_{name}"], result.crossings[name])
        counts = []
        for key, reference in (("delta_alpha100", "alpha=100"),
                               ("delta_linearized", "linearized")):
            mean, used = result.delta("alpha=1", reference)
            np.testing.assert_array_equal(z[key], mean)
            assert np.isfinite(z[key]).all()          # the driver refuses empty thresholds
            counts.append(used)
        np.testing.assert_array_equal(z["runs_used"], np.stack(counts, axis=1))
        assert np.issubdtype(z["runs_used"].dtype, np.integer)
        np.testing.assert_array_equal(z["train_points"], result.train_points[0])
        assert z["train_points"].shape == (config.n_train, 2)
        np.testing.assert_array_equal(z["train_labels"],
                                      np.asarray(data.yinyang_labels(z["train_points"])))


def test_metrics_rows_match_recorded_curves(tiny_run):
    config, paths = tiny_run.config, tiny_run.paths
    rows = records.read_jsonl(paths["metrics.jsonl"])
    z = np.load(paths["fig1.npz"], allow_pickle=False)
    assert rows and {r["regime"] for r in rows} == set(REGIMES)
    seen = {name: [] for name in REGIMES}
    for row in rows:
        assert set(row) == {"step", "regime", "train_loss", "train_loss_q10",
                            "train_loss_q50", "train_loss_q90"}
        step = row["step"]
        assert isinstance(step, int) and 0 <= step < config.num_steps
        seen[row["regime"]].append(step)
        assert row["train_loss_q10"] <= row["train_loss_q50"] <= row["train_loss_q90"]
        # Oracle: the statistics of the curves saved in fig1.npz at that step.
        col = z[f"loss_{row['regime']}"][:, step]
        assert not np.isnan(col).all()
        np.testing.assert_allclose(row["train_loss"], np.nanmean(col), rtol=1e-6)
        np.testing.assert_allclose(
            [row["train_loss_q10"], row["train_loss_q50"], row["train_loss_q90"]],
            np.nanquantile(col, [0.1, 0.5, 0.9]), rtol=1e-6)
    for name, steps in seen.items():
        assert steps == sorted(set(steps)) and steps[0] == 0        # strictly increasing
        # Every log-spaced step is recorded until the regime's curves stop.
        curves = z[f"loss_{name}"]
        want = [s for s in records.log_spaced_steps(config.num_steps)
                if not np.isnan(curves[:, s]).all()]
        assert steps == want
    first = [r for r in rows if r["step"] == 0]
    for r in first:                                   # every regime starts at f = 0
        assert r["train_loss"] == pytest.approx(np.log(2.0), rel=1e-5)


# ------------------------------------------------------------ direct library

@pytest.fixture(scope="module")
def result(tiny_run) -> yinyang.YinYangResult:
    """The library result of the tiny driver run (4 seeds: enough for the finding)."""
    return tiny_run.result


@pytest.fixture(scope="module")
def kw(tiny_run) -> dict[str, Any]:
    """The ``run_yinyang`` arguments of ``result``."""
    return tiny_run.kwargs


def test_result_shapes(result, kw):
    assert kw["regimes"] == REGIMES
    r, t, m = kw["num_runs"], len(kw["thresholds"]), kw["grid_resolution"] ** 2
    n = kw["n_train"]
    assert result.regimes == REGIMES
    np.testing.assert_allclose(result.thresholds, kw["thresholds"], rtol=1e-6)
    assert result.grid.shape == (m, 2)
    assert result.train_points.shape == (r, n, 2) and result.train_labels.shape == (r, n)
    for name in REGIMES:
        assert result.loss_curves[name].shape == (r, kw["num_steps"])
        assert result.crossings[name].shape == (r, t)
        assert result.test_losses[name].shape == (r, t, m)
    # Each run has its own training set.
    assert not np.array_equal(result.train_points[0], result.train_points[1])


def test_crossings_match_host_first_crossings(result):
    for name in REGIMES:
        got = result.crossings[name]
        want = progress.first_crossings(result.loss_curves[name], result.thresholds)
        np.testing.assert_array_equal(got, want, err_msg=name)
        assert (got[:, 0] >= 0).all()                 # the first threshold is easy
    # The non-linear regime is the fast one (paper: it trains faster overall).
    assert np.all(result.crossings["alpha=1"][:, 0] < result.crossings["linearized"][:, 0])


def test_stop_when_crossed_only_cuts_after_every_crossing(result):
    for name in REGIMES:
        curves = result.loss_curves[name]
        nan_steps = np.flatnonzero(np.isnan(curves).all(axis=0))
        assert np.array_equal(np.isnan(curves).any(0), np.isnan(curves).all(0))
        if nan_steps.size:
            assert (result.crossings[name] >= 0).all()
            assert nan_steps[0] > result.crossings[name].max()
            assert np.array_equal(nan_steps, np.arange(nan_steps[0], curves.shape[1]))
    # alpha=1 reaches every threshold in every run within 2000 steps here.
    assert np.isnan(result.loss_curves["alpha=1"][:, -1]).all()


def test_delta_equals_numpy_masked_mean(result, kw):
    for nonlinear, linear in (("alpha=1", "linearized"), ("alpha=1", "alpha=100")):
        mean, counts = result.delta(nonlinear, linear)
        used = (result.crossings[nonlinear] >= 0) & (result.crossings[linear] >= 0)
        diff = (result.test_losses[nonlinear].astype(np.float64)
                - result.test_losses[linear].astype(np.float64))
        np.testing.assert_array_equal(counts, used.sum(0))
        for t in range(len(result.thresholds)):
            if used[:, t].any():
                np.testing.assert_allclose(mean[t], diff[used[:, t], t].mean(0),
                                           rtol=1e-4, atol=1e-6)
            else:
                assert np.isnan(mean[t]).all()
    # Some run misses the last threshold in the linear regime (not all used).
    assert result.delta("alpha=1", "linearized")[1][-1] < kw["num_runs"]


def _reconstruct_run(seed, run, n_train, hidden):
    module = models.get_model("mlp", features=tuple(hidden), num_outputs=1)
    x, y = data.sample_train(rng.jax_key(seed, "train_set", run), n_train)
    params0, _ = models.init_model(module, rng.jax_key(seed, "init", run), x)
    return models.make_apply_fn(module, {}), params0, x, y


@pytest.mark.parametrize("name", REGIMES)
def test_grid_loss_at_crossing_matches_independent_retraining(result, kw, name):
    """Retrain one run in parameter space (unbatched, plain loop) up to its
    crossing step and evaluate the grid: equals the in-scan snapshot's loss."""
    run, t = 0, 1
    apply_fn, params0, x, y = _reconstruct_run(kw["seed"], run, kw["n_train"], kw["hidden"])
    np.testing.assert_array_equal(np.asarray(x), result.train_points[run])
    np.testing.assert_array_equal(np.asarray(y), result.train_labels[run])
    regime = parse_regime(name)
    opt = train.regime_optimizer(regime, "sgd", kw["learning_rate"])
    step_fn = jax.jit(train.make_train_step(apply_fn, regime, opt))
    state = train.init_state(regime, params0, opt)
    crossing = int(result.crossings[name][run, t])
    assert crossing > 0
    losses = []
    for _ in range(crossing + 1):
        new_state, m = step_fn(state, params0, x, y)
        losses.append(float(m["train_loss"]))
        if len(losses) <= crossing:
            state = new_state
    # The independent curve crosses at the same step (with a float32 margin check).
    np.testing.assert_allclose(losses, result.loss_curves[name][run, :crossing + 1],
                               rtol=2e-4, atol=1e-6)
    assert losses[crossing] <= kw["thresholds"][t] + 1e-6
    assert min(losses[:crossing]) > kw["thresholds"][t] - 1e-6
    grid = data.grid_points(kw["grid_resolution"])
    want = jax.jit(train.evaluate, static_argnums=(0, 1))(
        apply_fn, regime, params0, state.params, grid, data.yinyang_labels(grid))[0]
    np.testing.assert_allclose(result.test_losses[name][run, t], np.asarray(want),
                               rtol=2e-3, atol=2e-4)


@pytest.mark.parametrize("linear, margin", [("linearized", 0.05), ("alpha=100", 0.02)])
def test_fig1_finding(result, linear, margin):
    """Paper: at equal progress the non-linear regime does worse inside the flipped
    disks than outside: Δloss (alpha=1 minus the linear regime) is higher there, at
    the lowest loss threshold that at least 2 of the 4 runs reach in both regimes,
    against the linearized regime and against alpha=100."""
    inside = np.asarray(data.in_disks(result.grid))
    assert 0 < inside.sum() < inside.size
    delta, used = result.delta("alpha=1", linear)
    deepest = max(t for t in range(len(used)) if used[t] >= 2)
    assert deepest >= 1                          # past the first threshold
    d = delta[deepest]
    assert d[inside].mean() > d[~inside].mean() + margin


@pytest.fixture(scope="module")
def small_pair():
    return yinyang.run_yinyang(seed=1, **SMALL), yinyang.run_yinyang(seed=1, **SMALL)


def test_same_seed_is_deterministic(small_pair):
    a, b = small_pair
    for name in SMALL["regimes"]:
        np.testing.assert_array_equal(a.loss_curves[name], b.loss_curves[name])
        np.testing.assert_array_equal(a.crossings[name], b.crossings[name])
        np.testing.assert_array_equal(a.test_losses[name], b.test_losses[name])
    np.testing.assert_array_equal(a.train_points, b.train_points)
    assert (a.crossings["alpha=1"] >= 0).all()


@pytest.fixture(scope="module")
def other_seed():
    """Seed 2, alpha=1 only, 20 steps never stopped, in 3 uneven segments: the
    ``(done, total)`` calls of the progress callback are kept."""
    calls = []
    res = yinyang.run_yinyang(
        seed=2, **dict(SMALL, regimes=["alpha=1"], num_steps=20, segments=3,
                       stop_when_crossed=False),
        callback=lambda done, total, seconds: calls.append((done, total)))
    return res, calls


def test_different_seed_differs(small_pair, other_seed):
    (a, _), (c, _) = small_pair, other_seed
    assert not np.array_equal(a.train_points, c.train_points)
    first = slice(0, 20)                         # before any regime stops
    assert not np.allclose(a.loss_curves["alpha=1"][:, first],
                           c.loss_curves["alpha=1"][:, first])
    # Both start from f = 0 (loss log 2) whatever the seed.
    np.testing.assert_allclose(c.loss_curves["alpha=1"][:, 0], np.log(2.0), rtol=1e-5)


def test_callback_follows_segments(other_seed):
    res, calls = other_seed
    assert calls == [(6, 20), (13, 20), (20, 20)]   # segment bounds rounded down
    assert not np.isnan(res.loss_curves["alpha=1"]).any()


# ----------------------------------------------------- in-process validation

# Bad values the driver rejects before training and before writing: each config change
# and what its error names. main.py turns any such ValueError into one line (the CLI
# tests below check that on other bad values).
DRIVER_ERRORS = {
    "equal_alphas": (dict(linear_alpha=1.0), "both alpha=1"),
    "nonlinear_alpha_negative": (dict(nonlinear_alpha=-1.0),
                                 r"alpha must be a finite number > 0, got -1\.0"),
    "increasing_thresholds": (dict(thresholds=(0.5, 0.6)), "strictly decreasing"),
    "thresholds_outside_the_loss_range": (dict(thresholds=(0.8, 0.5)),
                                          r"must lie in \(0, 0\.6931\)"),
}


@pytest.mark.parametrize("name", list(DRIVER_ERRORS))
def test_driver_rejects_bad_values_and_writes_nothing(tmp_path, name):
    change, error = DRIVER_ERRORS[name]
    config = configs.yinyang_tiny.get_config()
    config.update(change)
    with pytest.raises(ValueError, match=error):
        driver.run(config, str(tmp_path / "w"))
    assert not os.path.exists(tmp_path / "w")


def test_driver_rejects_unknown_key(tmp_path):
    config = configs.yinyang_tiny.get_config()
    config.bogus = 1
    with pytest.raises(ValueError, match=r"unknown config key\(s\) \['bogus'\]"):
        driver.run(config, str(tmp_path / "w"))


def test_bad_thresholds_rejected_before_training():
    with pytest.raises(ValueError, match="strictly decreasing"):
        yinyang.run_yinyang(seed=0, **dict(SMALL, thresholds=(0.5, 0.6)))


# ------------------------------------------------------------------------ CLI

LOG_LINE = re.compile(r"^[IWEF]\d{4} ")            # absl log lines

# Each failing command: its --config overrides and what its one error line names.
CLI_ERRORS = {
    "linear_alpha_zero": (["--config.linear_alpha=0"],
                          ["alpha must be a finite number > 0, got 0"]),
    "unknown_key": (["--config.bogus=1"], ["bogus"]),
    "thresholds_never_reached": (
        ["--config.num_steps=5", "--config.num_runs=2", "--config.grid_resolution=4",
         "--config.hidden=(8,)", "--config.n_train=10"], ["num_steps", "within 5 steps"]),
    "unknown_experiment": (["--config.experiment=nope"],
                           ["unknown experiment 'nope'", "yinyang"]),
    "workdir_is_a_file": ([], ["not a directory"]),   # the workdir is made a file first
}


class CliRun(NamedTuple):
    """One finished ``main.py`` command."""

    returncode: int
    stderr: str
    messages: list[str]          # stderr lines other than absl log lines
    workdir: pathlib.Path


@pytest.fixture(scope="module", autouse=True)
def cli_commands(tmp_path_factory):
    """Starts every command of ``CLI_ERRORS`` with the module: they run in their own
    processes, on the core the in-process tests leave idle, until the CLI tests
    collect them; any still running at the end is killed."""
    started = {}
    try:
        for name, (overrides, _) in CLI_ERRORS.items():
            workdir = tmp_path_factory.mktemp(name) / "work"
            if name == "workdir_is_a_file":
                workdir.write_text("x")
            started[name] = workdir, subprocess.Popen(
                [sys.executable, "main.py", "--config=configs/yinyang_tiny.py",
                 f"--workdir={workdir}", *overrides],
                cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                env=dict(os.environ, JAX_DISABLE_MOST_OPTIMIZATIONS="1"))   # errors, not numbers
        yield started
    finally:
        for _, proc in started.values():
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            proc.stdout.close()
            proc.stderr.close()


@pytest.fixture(scope="module")
def cli_runs(cli_commands) -> dict[str, CliRun]:
    """The commands of ``CLI_ERRORS``, finished."""
    finished = {}
    for name, (workdir, proc) in cli_commands.items():
        _, stderr = proc.communicate(timeout=300)
        messages = [l for l in stderr.splitlines() if l.strip() and not LOG_LINE.match(l)]
        finished[name] = CliRun(proc.returncode, stderr, messages, workdir)
    return finished


@pytest.mark.parametrize("name", list(CLI_ERRORS))
def test_cli_error_is_one_clean_line(cli_runs, name):
    """Exit status 1, one ``main.py: error:`` line naming the problem, no traceback."""
    run = cli_runs[name]
    assert run.returncode == 1, run.stderr
    assert "Traceback" not in run.stderr, run.stderr
    assert len(run.messages) == 1, run.stderr
    assert run.messages[0].startswith("main.py: error:"), run.messages
    for needle in CLI_ERRORS[name][1]:
        assert needle in run.messages[0], run.messages


@pytest.mark.parametrize("name", [n for n in CLI_ERRORS if n != "workdir_is_a_file"])
def test_cli_error_writes_nothing(cli_runs, name):
    assert not cli_runs[name].workdir.exists()


def test_cli_leaves_a_file_workdir_alone(cli_runs):
    assert cli_runs["workdir_is_a_file"].workdir.read_text() == "x"
