"""The alpha sweep (experiments/sweep.py): batched runs equal runs one by one, the
statistics against the linearized reference, divergence, bad input, and the
learning-rate search of each value (--lr_grid)."""

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest

from experiments import sweep_runs
from lazy_hasty import difficulty
from lazy_hasty.engine import checkpoint, preemption, records, run_log
from lazy_hasty.analysis import plots, sweep

from tests import ROOT, checks
SCRIPT = os.path.join(ROOT, "experiments", "sweep.py")
CONFIG = os.path.join(ROOT, "configs", "digits_noise_tiny.py")
# Two alphas and one that diverges at once (lr / alpha^2 = 5e4). The runs draw no
# figures of their own (the sweep still draws its own) and checkpoint every 5 steps.
SMALL = ["--config.probe_every=3", "--config.figures=False",
         "--config.checkpoint_every_steps=5"]
VALUES = "0.001,1,100"


def _plan(workdir):
    return sweep_runs.make_plan(CONFIG, str(workdir), "alpha", VALUES, "alpha=1", [0, 1],
                                reference_epochs=2, max_epochs=4, overrides=SMALL)


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """The same sweep, vmapped over seeds and one run at a time."""
    out = {}
    for batch in (True, False):
        work = tmp_path_factory.mktemp("batched" if batch else "one_by_one")
        plan = _plan(work)
        sweep_runs.run_all(plan, batch=batch)
        sweep_runs.aggregate(plan)
        out[batch] = plan
    return out


def _records(run):
    return records.read_jsonl(os.path.join(run.workdir, "metrics.jsonl"))


def _assert_same_records(a, b, tol):
    assert [r["step"] for r in a] == [r["step"] for r in b]
    for ra, rb in zip(a, b):
        assert ra.keys() == rb.keys()
        for k, v in ra.items():
            if isinstance(v, float):
                assert abs(v - rb[k]) <= tol * max(1.0, abs(v)), (k, ra["step"])
            else:
                assert v == rb[k], k


def test_batched_sweep_equals_runs_one_by_one(swept):
    batched, single = swept[True], swept[False]
    for value in (1.0, 100.0):
        for a, b in zip(batched.swept[value], single.swept[value]):
            _assert_same_records(_records(a), _records(b), 1e-6)
    for a, b in zip(batched.references[None], single.references[None]):
        _assert_same_records(_records(a), _records(b), 1e-6)
        for run in (a, b):                                 # --config.figures=False
            files = os.listdir(run.workdir)
            assert "learning_times.npz" in files and not [f for f in files if ".png" in f]
    for name in ("sweep_summary.json",):
        sa = json.load(open(os.path.join(batched.workdir, name)))
        sb = json.load(open(os.path.join(single.workdir, name)))
        np.testing.assert_allclose(sa["hastiness"]["by_value"][1]["values"],
                                   sb["hastiness"]["by_value"][1]["values"], atol=1e-6)


def test_printed_command_reproduces_a_batched_run(swept, tmp_path):
    plan = swept[True]
    run = plan.swept[1.0][1]
    argv = plan.command(run)
    assert f"--config.stop_at_progress={plan.target(run)!r}" in argv
    workdir = tmp_path / "alone"
    argv = [a if not a.startswith("--workdir=") else f"--workdir={workdir}" for a in argv]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    alone = records.read_jsonl(str(workdir / "metrics.jsonl"))
    _assert_same_records(_records(run), alone, 1e-6)


def test_swept_runs_stop_at_their_reference_progress(swept):
    plan = swept[True]
    spec = difficulty.label_noise()
    for run in plan.swept[1.0] + plan.swept[100.0]:
        rows = _records(run)
        target = plan.target(run)
        reached = [r[spec.progress_key] >= target for r in rows]
        # Trained until the first record at the target, or to the cap.
        assert reached[-1] or rows[-1]["epoch"] >= run.epochs - 1
        assert not any(reached[:-1])


def test_divergence_is_recorded_and_the_sweep_goes_on(swept):
    plan = swept[True]
    summary = json.load(open(os.path.join(plan.workdir, "sweep_summary.json")))
    tiny = summary["hastiness"]["by_value"][0]
    assert tiny["value"] == 0.001 and tiny["diverged_seeds"] == 2 and tiny["num_seeds"] == 0
    for run in plan.swept[0.001]:
        assert "alpha = 0.001" in records.diverged(run.workdir)
        assert not records.is_completed(run.workdir)
    assert summary["hastiness"]["by_value"][2]["num_seeds"] == 2


def test_summary_statistics_are_those_of_each_seed_against_its_reference(swept):
    plan = swept[True]
    summary = json.load(open(os.path.join(plan.workdir, "sweep_summary.json")))
    spec = difficulty.label_noise()
    for i, value in enumerate(plan.values):
        for j, run in enumerate(plan.swept[value]):
            got = summary["hastiness"]["by_value"][i]["values"][j]
            if value == 0.001:
                assert got is None
                continue
            ref = plan.reference_of(run)
            want = sweep.run_statistics(sweep.read_run(run.workdir), sweep.read_run(ref.workdir),
                                        spec, run.seed)
            assert got == want["hastiness"]
            assert summary["sign_similarity"]["by_value"][i]["values"][j] == \
                _last_probe(_records(run))
    values = summary["hastiness"]["by_value"][1]["values"]
    assert summary["hastiness"]["by_value"][1]["mean"] == pytest.approx(np.mean(values))
    checks.check_figure(os.path.join(plan.workdir, "fig5.png"),
                        lambda path: plots.plot_sweep(path, summary, spec))


def _last_probe(rows):
    return [r["sign_similarity"] for r in rows if "sign_similarity" in r][-1]


def test_run_statistics_of_a_run_against_itself_are_zero(swept):
    run = sweep.read_run(swept[True].swept[1.0][0].workdir)
    twin = run._replace(regime="linearized", records=[dict(r, regime="linearized")
                                                      for r in run.records])
    stats = sweep.run_statistics(run, twin, difficulty.label_noise(), 0)
    assert stats["hastiness"] == 0 and stats["hard_advantage"] == 0


@pytest.mark.parametrize("args, message", [
    (["--values=0.5,-1", "--seeds=2"], "alpha values must be > 0"),
    (["--values=", "--seeds=2"], "--values is empty"),
    (["--seeds=1"], "at least 2 seeds"),
    (["--axis=no_such_key", "--seeds=2"], "not a numeric key"),
])
def test_bad_input_is_one_line(tmp_path, args, message):
    work = tmp_path / "w"
    proc = subprocess.run([sys.executable, SCRIPT, f"--config={CONFIG}", f"--workdir={work}",
                           *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert not work.exists()


def test_print_commands_lists_references_first(tmp_path):
    work = tmp_path / "w"
    proc = subprocess.run([sys.executable, SCRIPT, f"--config={CONFIG}", f"--workdir={work}",
                           "--seeds=2", "--values=1,100", "--print_commands", *SMALL],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = [shlex.split(line) for line in proc.stdout.strip().splitlines()]
    assert [a for line in lines for a in line if a.startswith("--workdir")] == [
        f"--workdir={work / 'linearized' / f'seed_{k}'}" for k in (0, 1)]
    assert all("--config.regimes=('linearized',)" in line for line in lines)
    assert "once these references are done" in proc.stderr
    assert not work.exists()


def test_another_axis_gives_each_value_its_reference(tmp_path):
    work = tmp_path / "w"
    proc = subprocess.run([sys.executable, SCRIPT, f"--config={CONFIG}", f"--workdir={work}",
                           "--seeds=2", "--values=16,64", "--axis=model_kwargs.features",
                           "--print_commands"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = [shlex.split(line) for line in proc.stdout.strip().splitlines()]
    got = {(a, b) for line in lines for a in line if a.startswith("--workdir")
           for b in line if b.startswith("--config.model_kwargs.features=")}
    assert got == {(f"--workdir={work / f'model_kwargs.features={v}' / 'linearized' / f'seed_{k}'}",
                    f"--config.model_kwargs.features=({v},)") for v in (16, 64) for k in (0, 1)}


@pytest.fixture(scope="module")
def preempted(swept, tmp_path_factory):
    """The batched sweep with its alpha = 1 group to train again, stopped by a real
    SIGTERM while its seeds train as one vmapped program (sent when seed 1 records
    step 10; the loop stops before step 12)."""
    done = swept[True]
    work = tmp_path_factory.mktemp("preempted") / "sweep"
    shutil.copytree(done.workdir, work)
    shutil.rmtree(os.path.join(work, done.swept[1.0][0].regime))
    record = run_log.RunLog.record

    def signal_at_step_10(log, rec, *per_example):
        record(log, rec, *per_example)
        if rec["regime"] == "alpha=1" and rec["step"] == 10 and log.path.endswith(
                os.path.join("seed_1", "metrics.jsonl")):
            os.kill(os.getpid(), signal.SIGTERM)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(run_log.RunLog, "record", signal_at_step_10)
        with pytest.raises(preemption.Preempted) as stopped, preemption.graceful():
            sweep_runs.run_all(_plan(work), batch=True)
    return work, stopped.value


def _resume(work, tmp_path, monkeypatch, runs=None):
    """Copies the preempted sweep and resumes it (``runs``: only those) as sweep.py does;
    returns its plan and, per restored run, the checkpoint step it trained on from."""
    shutil.copytree(work, tmp_path / "sweep")
    plan, restored, restore = _plan(tmp_path / "sweep"), [], run_log.RunLog.restore
    monkeypatch.setattr(run_log.RunLog, "restore", lambda log, step, n: (
        restored.append((os.path.dirname(log.path), step)), restore(log, step, n))[1])
    with preemption.graceful():
        if runs is None:
            sweep_runs.run_all(plan, batch=True)
        else:
            sweep_runs.train_runs(plan, runs(plan), batch=True)
    return plan, dict(restored)                  # a run's last restore is its start


def test_sigterm_checkpoints_every_member_of_a_vmapped_group_at_one_step(preempted):
    work, stopped = preempted
    assert (stopped.regime, stopped.step) == ("alpha=1", 12)
    for k in (0, 1):                         # every 5 steps (keep 2), and at the signal
        run = os.path.join(work, "alpha=1", f"seed_{k}")
        assert checkpoint.steps(os.path.join(run, "checkpoints")) == [10, 12]
        assert not records.is_completed(run)


def test_rerun_resumes_every_member_to_the_uninterrupted_records(swept, preempted, tmp_path,
                                                                 monkeypatch):
    plan, restored = _resume(preempted[0], tmp_path, monkeypatch)
    assert restored == {run.workdir: 12 for run in plan.swept[1.0]}     # none starts over
    for a, b in zip(swept[True].swept[1.0], plan.swept[1.0]):
        for name in ("metrics.jsonl", "per_example.npz", "learning_times.npz"):
            assert _bytes(a.workdir, name) == _bytes(b.workdir, name), (b, name)
    with open(os.path.join(plan.workdir, "sweep_summary.json")) as f:
        resumed = json.load(f)
    with open(os.path.join(swept[True].workdir, "sweep_summary.json")) as f:
        assert resumed == json.load(f)


def test_members_a_checkpoint_apart_resume_at_the_newest_step_they_share(
        swept, preempted, tmp_path, monkeypatch):
    """As if killed while saving seed 0's step-12 checkpoint: both resume at step 10
    (seed 1's newer checkpoint is discarded) and end as the uninterrupted runs."""
    shutil.rmtree(os.path.join(preempted[0], "alpha=1", "seed_0", "checkpoints", "12"))
    plan, restored = _resume(preempted[0], tmp_path, monkeypatch,
                             runs=lambda plan: plan.swept[1.0])
    assert restored == {run.workdir: 10 for run in plan.swept[1.0]}
    for a, b in zip(swept[True].swept[1.0], plan.swept[1.0]):
        assert _bytes(a.workdir, "metrics.jsonl") == _bytes(b.workdir, "metrics.jsonl")


def _bytes(workdir, name):
    with open(os.path.join(workdir, name), "rb") as f:
        return f.read()


# ------------------------------------------------- a learning rate per value (--lr_grid)

GRID = "0.5,4"                      # rates 0.025 and 0.2 of the tiny config's 0.05
SEARCH = [*SMALL, "--config.lr_search_steps=10", "--config.lr_search_criterion=progress"]


def _grid_plan(workdir, overrides=SEARCH):
    return sweep_runs.make_plan(CONFIG, str(workdir), "alpha", "1", "alpha=1", [0, 1],
                                reference_epochs=2, max_epochs=4, overrides=overrides,
                                lr_grid=GRID)


@pytest.fixture(scope="module")
def searched(swept, tmp_path_factory):
    """alpha = 1 with a learning-rate search on two rates; the references are the
    batched sweep's (the same runs), so only the search and swept runs train."""
    work = tmp_path_factory.mktemp("lr_grid") / "sweep"
    shutil.copytree(os.path.join(swept[True].workdir, "linearized"), work / "linearized")
    plan = _grid_plan(work)
    sweep_runs.run_all(plan, batch=True)
    sweep_runs.aggregate(plan)
    return plan


def _json(*parts):
    with open(os.path.join(*parts)) as f:
        return json.load(f)


def test_lr_search_trains_each_rate_and_chooses_the_best_mean(searched):
    result = _json(searched.workdir, "alpha=1", "lr_search.json")
    assert result["rates"] == [0.025, 0.2] and result["multipliers"] == [0.5, 4.0]
    scores = []
    for m, rate in zip(("0.5", "4"), result["rates"]):
        row = []
        for k in (0, 1):
            run = os.path.join(searched.workdir, "alpha=1", "lr_search", f"lr={m}", f"seed_{k}")
            assert records.is_completed(run) and _json(run, "config.json")["learning_rate"] == rate
            assert not os.path.exists(os.path.join(run, "scores.npz"))   # no scores searched
            rows = records.read_jsonl(os.path.join(run, "metrics.jsonl"))
            assert rows[-1]["step"] == 9                   # lr_search_steps = 10 steps
            row.append(rows[-1]["train/clean/accuracy"])   # the spec's progress, higher better
        scores.append(row)
    assert result["scores"] == scores and result["lower_is_better"] is False
    means = [float(np.mean(row)) for row in scores]
    assert result["mean"] == pytest.approx(means)
    best = int(np.argmax(means))                           # no exact tie in these runs
    assert means[best] > means[1 - best]
    assert result["chosen_index"] == best and result["chosen_rate"] == result["rates"][best]
    assert result["at_edge"] is True and result["refined"] is None      # two points


def test_swept_runs_train_at_the_chosen_rate_and_the_references_at_the_configs(searched):
    chosen = _json(searched.workdir, "alpha=1", "lr_search.json")["chosen_rate"]
    for run in searched.swept[1.0]:
        assert _json(run.workdir, "config.json")["learning_rate"] == chosen
        assert records.is_completed(run.workdir)
        assert os.path.exists(os.path.join(run.workdir, "scores.npz"))
    resumed = _grid_plan(searched.workdir)                 # what a re-run sees
    assert not resumed.pending_searches() and not resumed.pending_swept()
    assert f"--config.learning_rate={chosen!r}" in resumed.command(resumed.swept[1.0][0])
    reference = resumed.references[None][0]
    assert not [a for a in resumed.command(reference) if "learning_rate" in a]


def test_sweep_summary_gives_the_search_of_each_value(searched, swept):
    summary = _json(searched.workdir, "sweep_summary.json")
    assert summary["learning_rates"] == [_json(searched.workdir, "alpha=1", "lr_search.json")]
    assert summary["hastiness"]["by_value"][0]["num_seeds"] == 2
    assert "learning_rates" not in _json(swept[True].workdir, "sweep_summary.json")


def test_steps_to_target_scores_the_first_record_at_the_target(searched):
    """The same search runs scored by the step their clean accuracy first reaches 0.8
    (None: never; fewer steps is better)."""
    plan = _grid_plan(searched.workdir, [*SEARCH, "--config.lr_search_criterion=steps_to_target",
                                         "--config.lr_search_target=0.8"])
    want = []
    for runs in plan.searches[1.0].values():
        firsts = [[r["step"] for r in _records(run) if r["train/clean/accuracy"] >= 0.8]
                  for run in runs]
        want.append([float(f[0]) if f else None for f in firsts])
    result = plan.search_result(1.0)
    assert result["scores"] == want and result["lower_is_better"] is True
    assert any(s is not None for row in want for s in row)


def test_train_loss_scores_the_last_records_training_loss(searched):
    """The same search runs scored by their training loss at step 9 (lower is better)."""
    plan = _grid_plan(searched.workdir, [*SEARCH, "--config.lr_search_criterion=train_loss"])
    want = [[_records(run)[-1]["train_loss"] for run in runs]
            for runs in plan.searches[1.0].values()]
    result = plan.search_result(1.0)
    assert result["scores"] == want and result["lower_is_better"] is True
    means = np.mean(want, axis=1)
    assert result["chosen_index"] == int(np.argmin(means)) and means[0] != means[1]


def test_a_rate_a_seed_diverged_at_is_not_chosen(searched, tmp_path):
    work = tmp_path / "sweep"
    shutil.copytree(searched.workdir, work)
    chosen = _json(work, "alpha=1", "lr_search.json")["chosen_index"]
    lr = ("0.5", "4")[chosen]
    records.mark_diverged(str(work / "alpha=1" / "lr_search" / f"lr={lr}" / "seed_1"), "test")
    result = _grid_plan(work).search_result(1.0)
    assert result["scores"][chosen][1] is None and result["mean"][chosen] is None
    assert result["chosen_index"] == 1 - chosen
    assert result["chosen_rate"] == result["rates"][1 - chosen]


def test_print_commands_lists_search_runs_before_the_swept_runs(searched, tmp_path, capsys):
    from experiments import sweep as sweep_cli
    sweep_cli._print_commands(_grid_plan(tmp_path / "fresh"))
    out = capsys.readouterr()
    workdirs = [a for line in out.out.splitlines() for a in shlex.split(line)
                if a.startswith("--workdir=")]
    assert workdirs == [f"--workdir={tmp_path / 'fresh' / d / f'seed_{k}'}" for d in (
        "linearized", "alpha=1/lr_search/lr=0.5", "alpha=1/lr_search/lr=4") for k in (0, 1)]
    assert "references and learning-rate search runs are done" in out.err
    work = tmp_path / "searched"                      # searched, swept runs to do
    shutil.copytree(searched.workdir, work)
    for k in (0, 1):
        shutil.rmtree(work / "alpha=1" / f"seed_{k}")
    sweep_cli._print_commands(_grid_plan(work))
    chosen = _json(work, "alpha=1", "lr_search.json")["chosen_rate"]
    lines = [shlex.split(line) for line in capsys.readouterr().out.splitlines()]
    assert [a for line in lines for a in line if a.startswith("--workdir=")] == [
        f"--workdir={work / 'alpha=1' / f'seed_{k}'}" for k in (0, 1)]
    assert all(f"--config.learning_rate={chosen!r}" in line for line in lines)


@pytest.mark.parametrize("grid, message", [
    ("", "--lr_grid is empty"),
    ("0.5,0,2", "--lr_grid multipliers must be > 0"),
    ("0.5,fast", "--lr_grid '0.5,fast' must be comma-separated numbers"),
    ("1,2,1.0", "--lr_grid '1,2,1.0' must be distinct finite numbers"),
])
def test_bad_lr_grid_is_one_line(tmp_path, grid, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        sweep_runs.make_plan(CONFIG, str(tmp_path / "w"), "alpha", "1", "alpha=1", [0, 1],
                             2, 4, SMALL, lr_grid=grid)
    assert not (tmp_path / "w").exists()


@pytest.mark.parametrize("overrides, message", [
    (["--config.lr_search_criterion=fastest"], "lr_search_criterion must be one of"),
    (["--config.lr_search_criterion=steps_to_target"], "lr_search_target must be > 0"),
    (["--config.lr_search_steps=0"], "lr_search_steps must be >= 1"),
])
def test_bad_lr_search_keys_are_one_line(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        _grid_plan(tmp_path / "w", [*SMALL, *overrides])
    assert not (tmp_path / "w").exists()


def test_bad_lr_grid_exits_1_with_one_line_and_no_workdir(tmp_path):
    work = tmp_path / "w"
    proc = subprocess.run([sys.executable, SCRIPT, f"--config={CONFIG}", f"--workdir={work}",
                           "--seeds=2", "--lr_grid="], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "sweep.py: error: --lr_grid is empty; give at least one learning-rate multiplier"]
    assert not work.exists()
