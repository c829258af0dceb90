"""The records of a minibatch run so far, and its checkpoints (preemption-safe resume).

Records are appended to ``metrics.jsonl`` one fsynced line at a time; a
checkpoint remembers how many lines it covers (and their SHA-256), so a
resumed run cuts the file back to them, repairing a torn last line.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
from absl import logging

from lazy_hasty.engine import loop, records


class RunLog:
    """Records of a run so far, and its checkpoints.

    Every record is kept as its metrics.jsonl line reads back (so a resumed
    run summarises exactly what an uninterrupted one does), with the running
    SHA-256 of those lines and each regime's per-example correctness rows.

    A checkpoint (orbax step = training steps done over all regimes) holds
    ``meta`` (JSON: the regime being trained and its next step, the record
    schedule's state, its record count, the number and SHA-256 of the
    metrics.jsonl lines written, the correctness rows per regime), ``state``
    (the regime's ``TrainState``: parameters, optimiser state; absent between
    regimes) and ``correct`` (every correctness row so far, uint8). The
    minibatch order and every random draw are pure functions of
    ``config.seed`` and the step, so no random state is stored.
    """

    FORMAT = 1

    def __init__(self, metrics_path, names, num_steps, writer, checkpointer, save,
                 monitor=None):
        self.path, self.names, self.writer = metrics_path, names, writer
        self.monitor = monitor            # called with each new record (lazy_hasty.engine.monitor)
        self.offsets = np.concatenate([[0], np.cumsum(num_steps)]).astype(int).tolist()
        self.checkpointer, self.saving = checkpointer, save
        self.records: list[dict] = []
        self.correct: list[list[np.ndarray]] = [[] for _ in names]
        self.hash = hashlib.sha256()
        self.regime_index, self.meta, self.last = 0, None, None
        self.current = 0
        self.error: loop.NonFiniteLossError | None = None     # set when a regime diverged

    def begin(self, regime_index: int) -> "RunLog":
        """Makes regime ``regime_index`` the one the training loop reports to."""
        self.current = regime_index
        return self

    def record(self, record: dict, correct: np.ndarray) -> None:
        """:class:`lazy_hasty.engine.loop.Hooks`: streams a record of the current regime."""
        line = records.jsonl_line(record)
        if self.writer:
            records.append_line(self.path, line)
        self.hash.update(line.encode("utf-8"))
        self.records.append(json.loads(line))
        self.correct[self.current].append(correct.astype(np.uint8))
        if self.monitor is not None:
            self.monitor(self.records[-1])

    def checkpoint(self, progress: loop.RegimeProgress) -> None:
        """:class:`lazy_hasty.engine.loop.Hooks`: checkpoints the current regime mid-way."""
        self.save(self.current, progress)

    @property
    def finished(self) -> bool:
        """Whether every regime of the run has been trained."""
        return self.regime_index == len(self.names)

    def end(self, error: loop.NonFiniteLossError | None) -> None:
        """:class:`lazy_hasty.engine.loop.Hooks`: the current regime ended. Trained out or
        stopped: checkpoints the run before the next regime (the last: the end of the
        run). Diverged: keeps ``error``, naming the last good checkpoint in it."""
        if error is None:
            self.regime_index = self.current + 1
            self.save(self.regime_index, None)
        else:
            error.last_checkpoint = self.describe_last()
            self.error = error

    def save(self, regime_index: int, progress: loop.RegimeProgress | None) -> None:
        """Checkpoints the run before ``progress.step`` of regime ``regime_index``
        (``progress`` None: before that regime starts)."""
        if not self.saving:
            return
        step = 0 if progress is None else progress.step
        meta = {"format": self.FORMAT, "regimes": self.names, "regime_index": regime_index,
                "step": step, "schedule": None if progress is None else progress.schedule,
                "num_records": 0 if progress is None else progress.num_records,
                "metrics_lines": len(self.records), "metrics_sha256": self.hash.hexdigest(),
                "correct_rows": [len(rows) for rows in self.correct]}
        items = {}
        if progress is not None:
            items["state"] = progress.state
        rows = [r for regime_rows in self.correct for r in regime_rows]
        if rows:                          # orbax refuses zero-size arrays
            items["correct"] = np.stack(rows)
        global_step = self.offsets[regime_index] + step
        self.checkpointer.save(global_step, meta, **items)
        self.last = (global_step, regime_index, step)

    def restore(self, global_step, num_examples) -> None:
        """Loads checkpoint ``global_step``; repairs metrics.jsonl to match it."""
        meta = self.checkpointer.restore_meta(global_step)
        if meta.get("format") != self.FORMAT or meta.get("regimes") != self.names:
            raise ValueError(f"checkpoint {self.checkpointer.path(global_step)} is not one of "
                             f"this run (format {meta.get('format')}, regimes "
                             f"{meta.get('regimes')}); use a new --workdir")
        lines, dropped, torn = records.truncate_jsonl(self.path, meta["metrics_lines"],
                                                      rewrite=self.writer)
        digest = hashlib.sha256("".join(lines).encode("utf-8")).hexdigest()
        if digest != meta["metrics_sha256"]:
            raise ValueError(f"{self.path} does not match checkpoint "
                             f"{self.checkpointer.path(global_step)} (its first "
                             f"{meta['metrics_lines']} lines differ); use a new --workdir")
        self.hash.update("".join(lines).encode("utf-8"))
        self.records = [json.loads(line) for line in lines]
        total = sum(meta["correct_rows"])
        if total:
            rows = self.checkpointer.restore(
                global_step, correct=np.zeros((total, num_examples), np.uint8))["correct"]
            bounds = np.cumsum([0] + meta["correct_rows"])
            self.correct = [list(rows[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]
        self.regime_index, self.meta = meta["regime_index"], meta
        self.last = (global_step, meta["regime_index"], meta["step"])
        logging.info("resuming from checkpoint %s; metrics.jsonl: %d records kept, %d "
                     "dropped%s", self.describe_last(), len(lines), dropped,
                     ", a torn last line repaired" if torn else "")

    def resume(self, initial_state) -> loop.RegimeProgress | None:
        """:class:`lazy_hasty.engine.loop.Hooks`: the current regime's progress at the
        restored checkpoint, if that is mid-regime."""
        meta = self.meta
        if meta is None or meta["regime_index"] != self.current or meta["step"] == 0:
            return None
        global_step = self.offsets[self.current] + meta["step"]
        state = self.checkpointer.restore(global_step, state=initial_state)["state"]
        return loop.RegimeProgress(meta["step"], state, meta["schedule"],
                                        meta["num_records"])

    def describe_last(self) -> str:
        if self.last is None:
            return "none (re-running starts from scratch)"
        global_step, regime_index, step = self.last
        where = ("end of run" if regime_index == len(self.names)
                 else f"regime {self.names[regime_index]}, step {step}")
        return f"{self.checkpointer.path(global_step)} ({where})"
