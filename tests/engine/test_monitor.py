"""TensorBoard monitoring (lazy_hasty.engine.monitor): events read back from the files, live after
each record, a resumed run's restart marker, and the missing extra named before anything
is written. The run with monitoring on and off is in test_difficulty.py."""

import os

import pytest
from tensorboardX.crc32c import crc32c
from tensorboardX.proto import event_pb2

from tests import checks
from configs import digits_noise_tiny
from experiments import difficulty
from lazy_hasty.engine import monitor

START = event_pb2.SessionLog.START


def _record(regime, step, loss):
    return {"regime": regime, "step": step, "epoch": step // 2, "train_loss": loss,
            "train/clean/accuracy": 0.1 * step, "note": "not a number", "flag": True}


def _events(logdir, regime):
    return checks.read_tensorboard(str(logdir))[regime]


def _scalars(event):
    return {v.tag: v.simple_value for v in event.summary.value}


def test_crc_is_castagnoli():
    assert crc32c(b"123456789") == 0xE3069283        # the CRC-32C check value


def test_each_record_is_on_disk_at_once(tmp_path):
    write = monitor.TensorBoardMonitor(str(tmp_path))
    for step in range(3):
        write(_record("alpha=1", step, 2.0 - step / 3))
        events = _events(tmp_path, "alpha=1")
        assert len(events) == 3 + step and events[-1].step == step
        assert _scalars(events[-1]) == pytest.approx(
            {"epoch": step // 2, "train_loss": 2.0 - step / 3,
             "train/clean/accuracy": 0.1 * step}, rel=1e-7)
    write(_record("linearized", 0, 2.5))
    assert sorted(os.listdir(tmp_path)) == ["alpha=1", "linearized"]
    first = _events(tmp_path, "linearized")
    assert first[0].file_version == "brain.Event:2"
    assert first[1].session_log.status == START and first[1].step == 0
    assert _scalars(first[2])["train_loss"] == 2.5


def _shown(events, tag):
    """``{step: value}`` of ``tag`` as TensorBoard's Python loader keeps it: a second
    ``SessionLog.START`` drops every point at a step >= its own."""
    shown, started = {}, False
    for e in events:
        if e.session_log.status == START:
            if started:
                shown = {s: v for s, v in shown.items() if s < e.step}
            started = True
        shown.update({e.step: v.simple_value for v in e.summary.value if v.tag == tag})
    return shown


def test_resumed_run_starts_a_new_file_at_its_checkpoint(tmp_path):
    killed = monitor.TensorBoardMonitor(str(tmp_path))
    for step in range(5):                     # killed after step 4
        killed(_record("alpha=1", step, 1.0))
    resumed = monitor.TensorBoardMonitor(str(tmp_path))
    for step in range(3, 6):                  # from its checkpoint before step 3
        resumed(_record("alpha=1", step, 0.5))
    files = sorted(os.listdir(tmp_path / "alpha=1"))
    assert len(files) == 2
    second = checks.read_events(str(tmp_path / "alpha=1" / files[1]))
    assert second[1].session_log.status == START and second[1].step == 3
    assert _shown(_events(tmp_path, "alpha=1"), "train_loss") == {
        0: 1.0, 1: 1.0, 2: 1.0, 3: 0.5, 4: 0.5, 5: 0.5}


def test_missing_extra_is_named_before_anything_is_written(tmp_path, monkeypatch):
    checks.hide_package(monkeypatch, "tensorboardX")
    with pytest.raises(ImportError, match=r"lazy-hasty\[tensorboard\]"):
        monitor.TensorBoardMonitor(str(tmp_path / "tb"))
    config = digits_noise_tiny.get_config()
    config.tensorboard = True
    with pytest.raises(ImportError, match=r"lazy-hasty\[tensorboard\]"):
        difficulty.run(config, str(tmp_path / "work"))
    assert not (tmp_path / "work").exists() and not (tmp_path / "tb").exists()
