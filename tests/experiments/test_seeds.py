"""Multi-seed runner (experiments/seeds.py) and the seed-band figure (Fig. 4)."""

import json
import os
import shlex
import subprocess
import sys

import numpy as np
import pytest

from lazy_hasty import difficulty
from lazy_hasty.engine import records
from lazy_hasty.analysis import plots, progress

from tests import ROOT, checks
SCRIPT = os.path.join(ROOT, "experiments", "seeds.py")
CONFIG = os.path.join(ROOT, "configs", "digits_noise_tiny.py")
FAST = '--config.num_epochs=(2,2)'
RECORDS_ONLY = '--config.figures=False'          # fig4 reads records, not the runs' figures


def _seeds(tmp_path, workdir, *args):
    """Runs seeds.py from an unrelated cwd (paths must not depend on it)."""
    return subprocess.run(
        [sys.executable, SCRIPT, f"--config={CONFIG}", f"--workdir={workdir}", *args],
        cwd=tmp_path, capture_output=True, text=True, timeout=600)


# ------------------------------------------------------------------ CLI

def test_print_commands_lists_pending_seeds_only(tmp_path):
    work = tmp_path / "w"
    proc = _seeds(tmp_path, work, "--seeds=3", "--print_commands", FAST,
                  "--config.learning_rate", "0.1")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 3
    for k, line in enumerate(lines):
        argv = shlex.split(line)
        assert argv[:3] == ["cd", str(tmp_path), "&&"]     # where a module:function is found
        assert argv[3] == sys.executable and argv[4] == os.path.join(ROOT, "main.py")
        assert f"--config.seed={k}" in argv
        assert f"--workdir={work / f'seed_{k}'}" in argv
        assert FAST in argv and "--config.learning_rate=0.1" in argv
    assert not work.exists()                               # nothing was run

    records.mark_completed(str(work / "seed_1"))
    proc = _seeds(tmp_path, work, "--seeds=3", "--print_commands", FAST)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert [shlex.split(l)[6] for l in lines] == ["--config.seed=0", "--config.seed=2"]
    assert "seed 1 already completed" in proc.stderr


def test_first_seed_and_rejected_seed_override(tmp_path):
    proc = _seeds(tmp_path, tmp_path / "w", "--seeds=2", "--first_seed=4", "--print_commands")
    assert ["--config.seed=4" in proc.stdout, "--config.seed=5" in proc.stdout] == [True, True]
    assert "--config.seed=3" not in proc.stdout
    proc = _seeds(tmp_path, tmp_path / "w", "--seeds=2", "--config.seed=3")
    assert proc.returncode != 0 and "--first_seed" in proc.stderr


def test_failing_seed_stops_with_its_exit_code(tmp_path):
    work = tmp_path / "w"
    proc = _seeds(tmp_path, work, "--seeds=2", "--config.no_such_key=1")
    assert proc.returncode == 1, proc.stderr
    assert "seed 0 failed with exit code 1" in proc.stderr
    assert "running seed 1" not in proc.stdout
    assert not records.is_completed(str(work / "seed_0"))


@pytest.fixture(scope="module")
def two_seeds(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("seeds")
    work = tmp / "w"
    proc = _seeds(tmp, work, "--seeds=2", FAST, RECORDS_ONLY)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return tmp, work, proc


def test_run_writes_seeds_figure_and_summary(two_seeds):
    _, work, proc = two_seeds
    for k in (0, 1):
        assert records.is_completed(str(work / f"seed_{k}"))
        with open(work / f"seed_{k}" / "config.json") as f:
            config = json.load(f)
        assert config["seed"] == k and config["num_epochs"] == [2, 2]   # pass-through
    runs = [records.read_jsonl(str(work / f"seed_{k}" / "metrics.jsonl")) for k in (0, 1)]
    spec = difficulty.label_noise()
    checks.check_figure(str(work / "fig4.png"), lambda path: plots.plot_seed_bands(
        path, runs, regimes=["alpha=1", "alpha=100"], panels=plots.seed_panels(spec),
        x_key=spec.progress_key, decreasing=spec.decreasing))
    with open(work / "seeds_summary.json") as f:
        summary = json.load(f)
    for key in ("hastiness", "hard_advantage"):
        values = []
        for k, entry in zip((0, 1), summary["per_seed"]):
            with open(work / f"seed_{k}" / "summary.json") as f:
                own = json.load(f)
            assert entry["seed"] == k and entry[key] == own[key]
            assert entry["summary"] == own
            values.append(own[key])
        assert summary[key]["values"] == values and all(np.isfinite(values))
        assert summary[key]["mean"] == pytest.approx(np.mean(values))
        assert summary[key]["min"] == min(values) and summary[key]["max"] == max(values)
        assert summary[key]["num_seeds"] == 2
        half = 12.706204736 * np.std(values, ddof=1) / np.sqrt(2)   # t(0.975, 1 dof)
        assert summary[key]["interval"] == pytest.approx([np.mean(values) - half,
                                                          np.mean(values) + half])
        assert summary[key]["positive"] == sum(v > 0 for v in values)
        assert summary[key]["positive"] + summary[key]["negative"] == 2
        assert summary[key]["per_seed_intervals"] == [
            json.load(open(work / f"seed_{k}" / "summary.json"))[f"{key}_interval"]
            for k in (0, 1)]
    assert summary["seeds"] == [0, 1] and summary["overrides"] == [FAST, RECORDS_ONLY]
    assert difficulty.DifficultySpec.from_dict(summary["spec"]) == difficulty.label_noise()


def test_second_invocation_runs_nothing(two_seeds):
    tmp, work, _ = two_seeds
    marks = [work / f"seed_{k}" / records.COMPLETED for k in (0, 1)]
    before = [os.stat(m).st_mtime_ns for m in marks]
    proc = _seeds(tmp, work, "--seeds=2", FAST, RECORDS_ONLY)
    assert proc.returncode == 0, proc.stderr
    assert "running seed" not in proc.stdout
    assert proc.stdout.count("already completed") == 2
    assert [os.stat(m).st_mtime_ns for m in marks] == before


# ----------------------------------------------------------- seed bands

def _records(shift=0.0):
    return ([{"regime": "alpha=1", "step": i, "train_loss": x, "test/all/accuracy": y + shift}
             for i, (x, y) in enumerate([(2.0, 0.0), (1.5, 0.5), (1.0, 0.9)])]
            + [{"regime": "alpha=100", "step": i, "train_loss": x, "test/all/accuracy": 0.1}
               for i, x in enumerate([1.8, 1.2, 1.1])])


def test_seed_bands_need_a_progress_range_every_seed_shares(tmp_path):
    path = tmp_path / "fig4.png"
    rising = [{"regime": "a", "p": p, "y": 0.5} for p in (0.1, 0.5, 0.7)]
    draw = lambda runs: plots.plot_seed_bands(str(path), runs, regimes=["a"],
                                              panels=[("y", "y")], x_key="p",
                                              decreasing=False)
    with pytest.raises(progress.NoCommonProgressError, match="share no progress range"):
        draw([[{"regime": "a", "p": 0.5, "y": 0.5}], rising])     # one seed never moves
    with pytest.raises(progress.NoCommonProgressError, match="a curve is empty"):
        draw([[{"regime": "b", "p": 0.5, "y": 0.5}], rising])     # no records of regime a
    assert not path.exists()


def test_align_runs_interpolates_and_identical_seeds_have_no_band():
    grid = np.array([2.5, 1.75, 1.25, 1.0, 0.5])
    aligned = plots.align_runs([_records(), _records()], "alpha=1", "train_loss",
                               "test/all/accuracy", grid)
    # 2.5: reached at once (first record); 1.75: halfway 2.0 -> 1.5; 1.25: halfway
    # 1.5 -> 1.0; 1.0: the last record; 0.5: never reached.
    expected = [0.0, 0.25, 0.7, 0.9, np.nan]
    assert aligned.shape == (2, 5)
    np.testing.assert_allclose(aligned, [expected, expected])
    band = aligned[:, :4].max(0) - aligned[:, :4].min(0)
    np.testing.assert_array_equal(band, 0.0)
    shifted = plots.align_runs([_records(), _records(0.1)], "alpha=1", "train_loss",
                               "test/all/accuracy", grid[:4])
    np.testing.assert_allclose(shifted[1] - shifted[0], 0.1)
    missing = plots.align_runs([_records()], "alpha=1", "train_loss", "no/such/key", grid)
    assert np.isnan(missing).all()


def test_seed_panels_follow_the_spec():
    assert plots.seed_panels(difficulty.label_noise()) == [
        ("train: clean", "train/clean/accuracy"), ("train: noisy", "train/noisy/accuracy"),
        ("test accuracy", "test/all/accuracy")]
    assert plots.seed_panels(difficulty.spurious("majority", "minority")) == [
        ("test accuracy", "test/all/accuracy"),
        ("balanced train: majority", "balanced_train/majority/accuracy"),
        ("balanced train: minority", "balanced_train/minority/accuracy"),
        ("balanced test: majority", "balanced_test/majority/accuracy"),
        ("balanced test: minority", "balanced_test/minority/accuracy")]
    own = difficulty.DifficultySpec("mine", easy="train/a", hard="heldout/b_c")
    assert plots.seed_panels(own) == [("train: a", "train/a/accuracy"),
                                      ("heldout: b c", "heldout/b_c/accuracy")]
