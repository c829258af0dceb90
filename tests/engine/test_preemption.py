"""Graceful preemption: SIGTERM stops a run at a step with a checkpoint and exit code
75; the same command resumes to the records of an uninterrupted run, also through
experiments/seeds.py."""

import os
import re
import signal
import subprocess
import sys
import time

import pytest

from configs import digits_noise_tiny
from experiments import difficulty
from lazy_hasty.engine import checkpoint, preemption, records

from tests import ROOT
# Regime alpha=1 for 30 steps, then alpha=100 for 150 (10 steps an epoch): SIGTERM lands
# mid-regime, with 100 steps to spare after the checkpoint it waits for (step 40).
EPOCHS = (3, 15)
OVERRIDES = ["--config.num_epochs=(%d,%d)" % EPOCHS, "--config.checkpoint_every_steps=5",
             "--config.figures=False"]                 # the records are what is compared
STOPPED = re.compile(r"preempted in regime (\S+) before step (\d+); last checkpoint: "
                     r"(\S+) \(regime \1, step \2\); re-run the same command to resume")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run, in-process."""
    config = digits_noise_tiny.get_config()
    config.num_epochs, config.checkpoint_every_steps, config.figures = EPOCHS, 5, False
    workdir = str(tmp_path_factory.mktemp("reference") / "work")
    difficulty.run(config, workdir)
    return open(os.path.join(workdir, "metrics.jsonl")).read()


def _start(args, log):
    with open(log, "w") as err:
        return subprocess.Popen([sys.executable, *args], cwd=ROOT, stdout=subprocess.DEVNULL,
                                stderr=err, env=dict(os.environ, PYTHONPATH=ROOT))


def _signal_once_checkpointed(proc, workdir, log, min_step=40):
    """SIGTERM to ``proc`` once ``workdir`` has a checkpoint at or past ``min_step``."""
    deadline = time.monotonic() + 240
    path = os.path.join(workdir, "checkpoints")
    while (checkpoint.latest_step(path) or 0) < min_step:
        assert proc.poll() is None, open(log).read()[-3000:]
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.01)
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(timeout=60)
    return code, time.monotonic() - sent


def _one_line(log):
    return [line for line in open(log).read().splitlines()
            if line.startswith(("main.py:", "seeds.py:"))]


def test_sigterm_checkpoints_at_the_step_and_resumes_identically(reference, tmp_path):
    workdir = str(tmp_path / "work")
    log = str(tmp_path / "stopped.log")
    args = ["main.py", "--config=configs/digits_noise_tiny.py", f"--workdir={workdir}",
            *OVERRIDES]
    code, seconds = _signal_once_checkpointed(_start(args, log), workdir, log)
    assert code == preemption.EXIT_CODE == 75, open(log).read()[-3000:]
    assert seconds < 10
    lines = _one_line(log)
    assert len(lines) == 1, lines
    match = STOPPED.search(lines[0])
    assert match and match.group(1) == "alpha=100", lines[0]
    step = int(match.group(2))
    # The checkpoint is that step: 30 steps of alpha=1, then `step` of alpha=100.
    latest = checkpoint.latest_step(os.path.join(workdir, "checkpoints"))
    assert latest == 30 + step and match.group(3).endswith(f"checkpoints/{latest}")
    assert not records.is_completed(workdir)
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"resuming at step {step}/{EPOCHS[1] * 10}" in proc.stderr
    assert open(os.path.join(workdir, "metrics.jsonl")).read() == reference


def test_seeds_forwards_sigterm_and_resumes_identically(reference, tmp_path):
    parent = tmp_path / "seeds"
    log = str(tmp_path / "seeds.log")
    args = ["experiments/seeds.py", "--config=configs/digits_noise_tiny.py",
            f"--workdir={parent}", "--seeds=1", "--noaggregate", *OVERRIDES]
    code, _ = _signal_once_checkpointed(_start(args, log), str(parent / "seed_0"), log)
    assert code == 75, open(log).read()[-3000:]
    assert any("seed 0 was preempted" in line for line in _one_line(log))
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert open(parent / "seed_0" / "metrics.jsonl").read() == reference
