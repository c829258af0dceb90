"""Live monitoring: a run's records as TensorBoard scalars (the ``tensorboard`` extra).

:class:`TensorBoardMonitor` is called with each record as it is written to
``metrics.jsonl`` (``RunLog(..., monitor=...)``) and appends it to
``<logdir>/<regime>/events.out.tfevents.*`` as one event: a scalar per numeric key
(``train_loss``, ``train/clean/accuracy``, ``sign_similarity``, ...) at the record's
``step``. Each event is flushed and fsynced at once, so ``tensorboard --logdir
<logdir>`` follows a run live.

The protocol buffers and the masked CRC-32C come from ``tensorboardX``, imported by
the constructor only (no monitor, no import). The TFRecord framing is written here,
synchronously: tensorboardX's ``SummaryWriter`` hands events to a background thread
and its ``flush`` does not wait for them.

Resume: every monitor (so every process) starts a new event file per regime,
opened by a ``SessionLog.START`` at its first record's step. A resumed run streams
again the records after its checkpoint, at the same steps (on CPU with the same
values); TensorBoard keeps the newest: its Rust loader drops a tag's points at
steps >= a new point's step, its Python loader (``--load_fast=false``) every point
at steps >= a second ``START``'s step.
"""

from __future__ import annotations

import importlib.util
import itertools
import numbers
import os
import socket
import struct
import time

_FILE_NUMBER = itertools.count()       # distinct file names within one process
INSTALL_HINT = ("config.tensorboard needs tensorboardX: pip install 'lazy-hasty[tensorboard]' "
                "(or pip install tensorboardX)")


def check_installed() -> None:
    """Raises ImportError (naming the extra) if tensorboardX is missing; imports nothing."""
    if importlib.util.find_spec("tensorboardX") is None:
        raise ImportError(INSTALL_HINT)


def scalars(record: dict) -> dict[str, float]:
    """The record's numeric values by key, ``step`` (the global step) aside."""
    return {k: float(v) for k, v in record.items()
            if k != "step" and isinstance(v, numbers.Real) and not isinstance(v, bool)}


class TensorBoardMonitor:
    """Writes each record it is called with as TensorBoard scalars, one directory per
    regime (``record["regime"]``) under ``logdir``."""

    def __init__(self, logdir: str):
        try:                                 # the optional extra, imported only here
            from tensorboardX.proto import event_pb2, summary_pb2
            from tensorboardX.record_writer import masked_crc32c
        except ImportError as err:
            raise ImportError(INSTALL_HINT) from err
        self.logdir, self.files = logdir, {}
        self._event, self._summary, self._crc = event_pb2, summary_pb2, masked_crc32c

    def __call__(self, record: dict) -> None:
        """Appends ``record`` to its regime's event file; flushes and fsyncs it."""
        regime, step, now = str(record["regime"]), int(record["step"]), time.time()
        Event, Summary = self._event.Event, self._summary.Summary
        events = []
        if regime not in self.files:
            self.files[regime] = self._new_file(regime)
            events += [Event(wall_time=now, file_version="brain.Event:2"),
                       Event(wall_time=now, step=step, session_log=self._event.SessionLog(
                           status=self._event.SessionLog.START))]
        values = [Summary.Value(tag=k, simple_value=v) for k, v in scalars(record).items()]
        events.append(Event(wall_time=now, step=step, summary=Summary(value=values)))
        with open(self.files[regime], "ab") as f:
            f.write(b"".join(self._frame(e.SerializeToString()) for e in events))
            f.flush()
            os.fsync(f.fileno())

    def _new_file(self, regime: str) -> str:
        """A fresh event file name in ``<logdir>/<regime>/`` (its directory made)."""
        directory = os.path.join(self.logdir, regime)
        os.makedirs(directory, exist_ok=True)
        name = (f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}."
                f"{os.getpid()}.{next(_FILE_NUMBER)}")
        return os.path.join(directory, name)

    def _frame(self, data: bytes) -> bytes:
        """One TFRecord: length, its masked CRC, the payload, its masked CRC."""
        header = struct.pack("<Q", len(data))
        return (header + struct.pack("<I", self._crc(header)) + data
                + struct.pack("<I", self._crc(data)))
