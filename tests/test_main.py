"""Reliability of long runs (issue 6): checkpoints and resume after a real SIGKILL,
metrics.jsonl repair, the divergence guard, config and data errors through main.py,
no unpickling, and data parallelism over two real processes (jax.distributed)."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from configs import digits_noise_tiny
from experiments import common, difficulty
from lazy_hasty import models, regimes
from lazy_hasty.engine import checkpoint, loop, records, train
from lazy_hasty.data.splits import Split
from lazy_hasty.engine.evaluation import GroupEvaluator
from lazy_hasty.engine.schedule import RecordSchedule

from tests import ROOT
EVERY = 5                                        # checkpoint every 5 steps in these runs
# EL2N and GraNd at epoch 1 of 3: their rows go through the checkpoints too.
TINY = ["--config=configs/digits_noise_tiny.py", f"--config.checkpoint_every_steps={EVERY}",
        "--config.early_score_epoch=1"]
LOG_LINE = re.compile(r"^[IWEF]\d{4} ")           # absl log lines
OUTPUTS = ("metrics.jsonl", "summary.json", "config.json")
ARRAYS = ("per_example.npz", "learning_times.npz", "scores.npz")


def _env():
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=ROOT)
    env.pop("JAX_NUM_CPU_DEVICES", None)                 # one device per process
    return env


def _main(workdir, *args, log=None, figures=False):
    """main.py on the tiny config; stderr to a pipe, or to the file ``log`` for processes
    that are not read while they run (a full pipe would block them). Runs that compare
    records draw no figures."""
    stderr = subprocess.PIPE if log is None else open(log, "w")
    proc = subprocess.Popen([sys.executable, "main.py", *TINY, f"--config.figures={figures}",
                             f"--workdir={workdir}", *args],
                            cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL, stderr=stderr,
                            text=True)
    if log is not None:
        stderr.close()                          # the child has its own copy
    return proc


def _messages(stderr):
    return [line for line in stderr.splitlines()
            if line.strip() and not LOG_LINE.match(line) and not line.startswith("[Gloo]")]


def _steps(workdir):
    """Finished checkpoint steps (orbax renames a step's directory once it is complete)."""
    path = os.path.join(workdir, "checkpoints")
    return sorted(int(n) for n in os.listdir(path) if n.isdigit()) if os.path.isdir(path) else []


def _tiny_config():
    config = digits_noise_tiny.get_config()
    config.checkpoint_every_steps = EVERY
    config.early_score_epoch = 1.0
    config.figures = False
    return config


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run of the tiny config, in-process."""
    workdir = str(tmp_path_factory.mktemp("reference") / "work")
    difficulty.run(_tiny_config(), workdir)
    return workdir


def _same_outputs(a, b):
    for name in OUTPUTS:
        with open(os.path.join(a, name), "rb") as fa, open(os.path.join(b, name), "rb") as fb:
            assert fa.read() == fb.read(), name
    for name in ARRAYS:
        with np.load(os.path.join(a, name), allow_pickle=False) as za, \
                np.load(os.path.join(b, name), allow_pickle=False) as zb:
            assert sorted(za.files) == sorted(zb.files), name
            for key in za.files:
                np.testing.assert_array_equal(za[key], zb[key], err_msg=f"{name}: {key}")


# ------------------------------------------------------------- kill -9 and resume

def _run_until_killed(workdir, min_step, log):
    """Starts main.py, SIGKILLs it once a checkpoint at or past ``min_step`` exists."""
    proc = _main(workdir, log=log)
    deadline = time.monotonic() + 240
    while not [s for s in _steps(workdir) if s >= min_step]:
        assert proc.poll() is None, open(log).read()[-3000:]
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not records.is_completed(workdir)


def test_kill_and_resume_gives_identical_records(reference, tmp_path):
    workdir = str(tmp_path / "work")
    # Killed mid second regime (alpha=1, then alpha=100, 30 steps each): the checkpoint
    # holds the finished regime's correctness rows and the running regime's state.
    _run_until_killed(workdir, 30 + EVERY, str(tmp_path / "killed.log"))
    # A line torn by a crash mid-write, after whatever the killed run appended.
    lines = open(os.path.join(workdir, "metrics.jsonl")).read().splitlines()
    assert lines and all(json.loads(line) for line in lines)
    with open(os.path.join(workdir, "metrics.jsonl"), "a") as f:
        f.write('{"step": 12, "regime": "alp')
    latest = max(_steps(workdir))
    proc = _main(workdir)
    _, stderr = proc.communicate(timeout=240)
    assert proc.returncode == 0, stderr[-3000:]
    assert f"resuming from checkpoint {os.path.join(workdir, 'checkpoints', str(latest))}" \
        in stderr
    assert "a torn last line repaired" in stderr
    assert records.is_completed(workdir)
    _same_outputs(reference, workdir)
    # Re-running a completed workdir does nothing; another config there is refused.
    proc = _main(workdir)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0 and "already holds a completed run" in stderr
    _same_outputs(reference, workdir)
    proc = _main(workdir, "--config.seed=1")
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 1 and "differs in ['seed']" in _messages(stderr)[0]


def _copy(src, dst):
    shutil.copytree(src, dst)
    return str(dst)


def test_resume_from_end_checkpoint_only_rewrites_outputs(reference, tmp_path):
    workdir = _copy(reference, tmp_path / "work")
    assert _steps(workdir)[-1] == 60                 # end of run: 2 regimes x 30 steps
    for name in ("summary.json", *ARRAYS):
        os.unlink(os.path.join(workdir, name))
    with open(os.path.join(workdir, "metrics.jsonl"), "a") as f:
        f.write('{"step": 3')                        # torn
    difficulty.run(_tiny_config(), workdir)
    _same_outputs(reference, workdir)


def test_resume_refuses_mismatched_metrics_or_config(reference, tmp_path):
    workdir = _copy(reference, tmp_path / "edited")
    path = os.path.join(workdir, "metrics.jsonl")
    lines = open(path).read().splitlines(keepends=True)
    lines[3] = lines[3].replace('"epoch": 0', '"epoch": 7')
    open(path, "w").write("".join(lines))
    with pytest.raises(ValueError, match="does not match checkpoint"):
        difficulty.run(_tiny_config(), workdir)
    workdir = _copy(reference, tmp_path / "short")
    path = os.path.join(workdir, "metrics.jsonl")
    open(path, "w").write("".join(lines[:10]))
    with pytest.raises(ValueError, match="holds 10 complete line"):
        difficulty.run(_tiny_config(), workdir)
    config = _tiny_config()
    config.learning_rate = 0.01
    with pytest.raises(ValueError, match=r"differs in \['learning_rate'\]"):
        difficulty.run(config, workdir)
    config = _tiny_config()
    config.checkpoint_every_steps = 7                # paces checkpoints only: allowed
    common.check_same_config(workdir, config)


# ------------------------------------------------------------- divergence guard

def test_divergence_is_one_line_naming_regime_step_and_checkpoint(tmp_path):
    # alpha=100 trains at lr / 100^2 = 0.1 and finishes; alpha=1 at lr 1000 blows up.
    # Its training loss grows about 10^2.5-fold a step (2.3 at step 0, 3e32 at step 13)
    # and passes float32's largest value, 3.4e38, at step 14: that step's loss is inf
    # while the parameters it was measured at are still finite. So the guard names
    # the training loss at step 14, and the checkpoint of step 10 (one every 5 steps,
    # 30 + 10 over both regimes) is the last good one.
    workdir = str(tmp_path / "work")
    proc = _main(workdir, "--config.regimes=('alpha=100','alpha=1')",
                 "--config.learning_rate=1000", figures=True)
    _, stderr = proc.communicate(timeout=240)
    assert proc.returncode == 3, stderr[-3000:]
    assert "Traceback" not in stderr
    step, saved = 14, 10
    ckpt = os.path.join(workdir, "checkpoints", str(30 + saved))
    message = ("training diverged: non-finite training loss inf in regime alpha=1 at step "
               f"{step} (alpha = 1); no record from step {step} on; last good checkpoint: "
               f"{ckpt} (regime alpha=1, step {saved})")
    assert _messages(stderr) == [f"main.py: error: {message}"]
    assert records.diverged(workdir) == message            # DIVERGED, for sweeps
    assert max(_steps(workdir)) == 30 + saved
    recs = records.read_jsonl(os.path.join(workdir, "metrics.jsonl"))
    mine = [r for r in recs if r["regime"] == "alpha=1"]
    assert [r["step"] for r in mine] == list(range(step))        # tiny run: every step
    assert mine[-1]["batch_loss"] > 1e30                         # near float32's limit
    assert all(np.isfinite(r["batch_loss"]) for r in recs)
    state = checkpoint.read_arrays(os.path.join(workdir, "checkpoints"), 30 + saved, "state")
    assert np.all(np.isfinite(ravel_pytree(state["params"])[0]))
    for name in ("summary.json", "per_example.npz", "fig2.png", records.COMPLETED):
        assert not os.path.exists(os.path.join(workdir, name)), name


# ------------------------------------------------------------- errors through main.py

def _waterbirds_without_place(tmp_path):
    root = tmp_path / "waterbirds"
    root.mkdir()
    (root / "metadata.csv").write_text("img_id,img_filename,y,split\n1,a/1.png,0,0\n")
    return [f"--config.data_dir={root}", f"--config.pretrained={root / 'metadata.csv'}"]


def _mismatched_cscores(tmp_path):
    """A C-score file in the published format (``labels``, ``scores``) for the digits of
    seed 0 in order, train (1079) then held-out (359), except that the first 100
    labels are off by one class."""
    from lazy_hasty.data import digits
    splits = digits.load_digits(0).splits
    labels = np.zeros(1500, np.int64)
    labels[:1438] = np.concatenate([splits["train"].y, splits["heldout"].y])
    labels[:100] = (labels[:100] + 1) % 10
    path = tmp_path / "digits-cscores.npz"
    np.savez(path, labels=labels, scores=np.linspace(0, 1, 1500))
    return path


def test_data_errors_are_one_line_and_leave_no_workdir(tmp_path):
    pytest.importorskip("tensorflow_datasets")
    empty = tmp_path / "tfds"
    empty.mkdir()
    cscores = _mismatched_cscores(tmp_path)
    waterbirds = tmp_path / "waterbirds" / "metadata.csv"
    cases = {
        "cifar10 not prepared": (
            ["--config=configs/cifar10_noise.py", f"--config.data_dir={empty}"],
            f"cifar10 is not prepared in {empty} as array_record files (the format TFDS reads "
            "without TensorFlow). Download it on a machine with network and TensorFlow with "
            f"`tfds build cifar10 --data_dir={empty} --file_format=array_record` (or `python -c "
            f"'import tensorflow_datasets as tfds; tfds.builder(\"cifar10\", data_dir=\"{empty}\", "
            "file_format=\"array_record\").download_and_prepare()'`) and copy the directory "
            f"{empty}/cifar10 here, or pass --config.data_dir=<the folder holding it>."),
        "waterbirds columns": (
            ["--config=configs/waterbirds.py", *_waterbirds_without_place(tmp_path)],
            f"Waterbirds metadata {waterbirds} lacks columns ['place'] (it has ['img_id', "
            "'img_filename', 'y', 'split']); supply a metadata.csv with columns img_filename, "
            "y, split, place."),
        "C-score labels": (
            ["--config=configs/digits_cscores_tiny.py", f"--config.cscores={cscores}"],
            f"the C-score file {cscores} does not match the dataset order/labels: 100 of the "
            "first 1438 labels differ. The scores are in the original CIFAR training order; "
            "load the dataset in that order (and compare clean, not noisy, labels)."),
    }
    procs = {}
    for name, (args, _) in cases.items():
        workdir = tmp_path / name.replace(" ", "_")
        procs[name] = (workdir, subprocess.Popen(
            [sys.executable, "main.py", *args, f"--workdir={workdir}"], cwd=ROOT, env=_env(),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    for name, (workdir, proc) in procs.items():
        _, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 1, (name, stderr[-3000:])
        assert "Traceback" not in stderr, name
        assert _messages(stderr) == [f"main.py: error: {cases[name][1]}"], name
        assert not workdir.exists(), name


def test_no_data_file_is_unpickled():
    """Every np.load in the package and scripts passes allow_pickle=False; no pickle."""
    calls = 0
    for folder in ("lazy_hasty", "experiments", "scripts", "configs"):
        for dirpath, _, files in os.walk(os.path.join(ROOT, folder)):
            for name in files:
                if not name.endswith(".py"):
                    continue
                source = open(os.path.join(dirpath, name)).read()
                assert not re.search(r"^\s*(import|from) (c?pickle|dill|joblib)\b", source,
                                     re.M), name
                for call in re.finditer(r"\bn(?:p|umpy)\.load\(([^()]*(?:\([^()]*\))?)*\)",
                                        source):
                    calls += 1
                    assert "allow_pickle=False" in call.group(0), (name, call.group(0))
                for call in re.finditer(r"\btorch\.load\([^)]*\)", source):
                    assert "weights_only=True" in call.group(0), (name, call.group(0))
    assert calls >= 3


# ------------------------------------------------------------- two processes

def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _two_processes(workdir, tmp_path):
    port = _free_port()
    logs = [str(tmp_path / f"process_{i}.log") for i in range(2)]
    procs = [_main(workdir, "--distributed", f"--coordinator_address=127.0.0.1:{port}",
                   "--num_processes=2", f"--process_id={i}", log=log)
             for i, log in enumerate(logs)]
    try:
        for p in procs:
            p.wait(timeout=300)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    stderrs = [open(log).read() for log in logs]
    for p, stderr in zip(procs, stderrs):
        assert p.returncode == 0, stderr[-3000:]
    return stderrs


def test_two_processes_match_one_and_resume_bit_identically(reference, tmp_path):
    workdir = str(tmp_path / "work")
    _two_processes(workdir, tmp_path)
    # Same records (every step of the tiny run) and final parameters as one process,
    # up to the order of the gradient all-reduce.
    got = records.read_jsonl(os.path.join(workdir, "metrics.jsonl"))
    want = records.read_jsonl(os.path.join(reference, "metrics.jsonl"))
    assert [(r["regime"], r["step"]) for r in got] == [(r["regime"], r["step"]) for r in want]
    for a, b in zip(got, want):
        assert set(a) == set(b)
        for key, value in b.items():
            if isinstance(value, float):
                assert a[key] == pytest.approx(value, rel=1e-4, abs=1e-5), key
    assert _steps(workdir) == _steps(reference) == [55, 60]
    config = _tiny_config()
    module = models.get_model(config.model, num_outputs=10, **config.model_kwargs.to_dict())
    params0, _ = models.init_model(module, jax.random.PRNGKey(config.seed),
                                   np.zeros((1, 64 + config.distractors), np.float32))
    moved, trace = [], []
    for w in (workdir, reference):                   # alpha=100 after 25 steps
        state = checkpoint.read_arrays(os.path.join(w, "checkpoints"), 55, "state")
        moved.append(ravel_pytree(state["params"])[0] - ravel_pytree(params0)[0])
        trace.append(ravel_pytree(state["opt_state"])[0])
    assert np.linalg.norm(moved[1]) > 1e-4
    np.testing.assert_allclose(moved[0], moved[1], rtol=1e-3, atol=1e-4 * np.abs(moved[1]).max())
    np.testing.assert_allclose(trace[0], trace[1], rtol=1e-3, atol=1e-4 * np.abs(trace[1]).max())
    # Resume both processes from the mid-regime checkpoint (alpha=100, step 25).
    first = {name: open(os.path.join(workdir, name), "rb").read() for name in OUTPUTS}
    shutil.rmtree(os.path.join(workdir, "checkpoints", "60"))
    os.unlink(os.path.join(workdir, records.COMPLETED))
    stderrs = _two_processes(workdir, tmp_path)
    assert all("resuming from checkpoint" in s and "alpha=100, step 25" in s for s in stderrs)
    for name, data in first.items():
        assert open(os.path.join(workdir, name), "rb").read() == data, name


# ------------------------------------------------------------- library pieces

def test_checkpointer_round_trip_and_unfinished_steps(tmp_path):
    module = models.get_model("mlp", features=(8,), num_outputs=3)
    params0, _ = models.init_model(module, jax.random.PRNGKey(0), np.zeros((1, 4), np.float32))
    regime = regimes.parse_regime("alpha=2")
    opt = train.regime_optimizer(regime, "sgd", 0.1, 0.9)
    state = train.init_state(regime, params0, opt)
    state = state._replace(opt_state=jax.tree_util.tree_map(lambda a: a + 0.5, state.opt_state),
                           step=state.step + 7)
    rows = np.arange(12, dtype=np.uint8).reshape(3, 4)
    directory = str(tmp_path / "ck")
    assert checkpoint.latest_step(directory) is None and not os.path.exists(directory)
    with checkpoint.Checkpointer(directory, keep=2) as ck:
        for step in (3, 6, 9):
            ck.save(step, {"step": step, "ema": 0.1 + 0.2}, state=state, correct=rows + step)
    os.makedirs(os.path.join(directory, "12.orbax-checkpoint-tmp-5"))    # unfinished save
    assert checkpoint.latest_step(directory) == 9
    assert sorted(n for n in os.listdir(directory) if n.isdigit()) == ["6", "9"]    # keep=2
    with checkpoint.Checkpointer(directory) as ck:
        assert ck.latest_step() == 9
        meta = ck.restore_meta(9)
        assert meta == {"step": 9, "ema": 0.1 + 0.2}                   # floats exact
        target = jax.tree_util.tree_map(np.zeros_like, state)
        got = ck.restore(6, state=target, correct=np.zeros((3, 4), np.uint8))
    assert type(got["state"]) is train.TrainState
    for a, b in zip(jax.tree_util.tree_leaves(got["state"]), jax.tree_util.tree_leaves(state)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        assert np.asarray(a).dtype == np.asarray(b).dtype
    np.testing.assert_array_equal(got["correct"], rows + 6)
    np.testing.assert_array_equal(checkpoint.read_arrays(directory, 9, "correct"), rows + 9)


def test_schedule_state_round_trip_continues_exactly():
    steps = np.arange(400)
    losses = 2.0 * 0.995 ** steps * (1 + 0.3 * np.sin(steps))
    whole = RecordSchedule(2000)
    want = [whole.should_record(s, float(v)) for s, v in zip(steps, losses)]
    first = RecordSchedule(2000)
    got = [first.should_record(s, float(v)) for s, v in zip(steps[:133], losses[:133])]
    state = json.loads(json.dumps(first.state_dict()))
    second = RecordSchedule(2000)
    second.load_state_dict(state)
    got += [second.should_record(s, float(v)) for s, v in zip(steps[133:], losses[133:])]
    assert got == want and 30 < sum(want[133:]) < 200
    assert second.ema_loss == whole.ema_loss
    fresh = RecordSchedule(2000)          # without the state: other record steps
    assert [fresh.should_record(s, float(v)) for s, v in zip(steps[133:], losses[133:])] \
        != want[133:]


class _Hooks(loop.RecordList):
    """Records in memory, checkpoints in a list, resume from a given function."""

    def __init__(self, resume=None):
        super().__init__()
        self.saved, self._resume = [], resume

    def checkpoint(self, progress):
        self.saved.append(progress)

    def resume(self, initial_state):
        return None if self._resume is None else self._resume(initial_state)


def test_train_regime_resumes_bit_identically_through_orbax(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(48, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int32)
    module = models.get_model("mlp", features=(16,), num_outputs=2)
    params0, mstate = models.init_model(module, jax.random.PRNGKey(1), x[:1])
    apply_fn = models.make_apply_fn(module, mstate)
    evaluator = GroupEvaluator({"train/all": (x, y)})
    options = loop.TrainOptions(num_steps=24, batch_size=8, learning_rate=0.5,
                                     momentum=0.9, seed=4, checkpoint_every=10)
    args = (apply_fn, regimes.parse_regime("alpha=1"), params0, Split(x, y), options,
            evaluator)
    whole = _Hooks()
    final = loop.train_regime(*args, whole)
    assert [p.step for p in whole.saved] == [10, 20]
    progress = whole.saved[0]
    with checkpoint.Checkpointer(str(tmp_path / "ck"), async_save=False) as ck:
        ck.save(progress.step, {}, state=progress.state)

        def resume(initial):
            state = ck.restore(progress.step, state=initial)["state"]
            return progress._replace(state=state)

        rest = _Hooks(resume)
        final2 = loop.train_regime(*args, rest)
    assert rest.records == whole.records[progress.num_records:]
    assert rest.records[0]["step"] >= 10
    np.testing.assert_array_equal(ravel_pytree(final2)[0], ravel_pytree(final)[0])


def test_non_finite_parameters_stop_before_the_next_record():
    x = np.ones((16, 4), np.float32)
    y = np.zeros(16, np.int32)
    module = models.get_model("mlp", features=(8,), num_outputs=2)
    params0, mstate = models.init_model(module, jax.random.PRNGKey(0), x[:1])
    apply_fn = models.make_apply_fn(module, mstate)
    hooks = _Hooks()
    # lr = inf: the step-0 loss is finite, the parameters after it are not.
    with pytest.raises(loop.NonFiniteLossError,
                       match=r"non-finite parameters in regime alpha=2 at step 1 "
                             r"\(alpha = 2\)") as info:
        loop.train_regime(
            apply_fn, regimes.parse_regime("alpha=2"), params0, Split(x, y),
            loop.TrainOptions(num_steps=6, batch_size=8, learning_rate=float("inf"),
                                   checkpoint_every=1),
            GroupEvaluator({"train/all": (x, y)}), hooks)
    assert (info.value.regime, info.value.alpha, info.value.step) == ("alpha=2", 2.0, 1)
    assert [r["step"] for r in hooks.records] == [0] and hooks.saved == []   # no bad checkpoint
