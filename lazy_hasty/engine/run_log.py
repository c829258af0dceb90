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

from lazy_hasty.engine import loop, records, train


ROWS = ("correct", "margin", "probability", "el2n", "grand")
"""The per-example rows a run keeps per regime: correctness of every evaluated example
at every record (uint8); the label margin and probability of the scored group's
examples at every record; their EL2N and GraNd at the early-scores record (float32)."""


class RunLog:
    """Records of a run so far, and its checkpoints.

    Every record is kept as its metrics.jsonl line reads back (so a resumed
    run summarises exactly what an uninterrupted one does), with the running
    SHA-256 of those lines and each regime's per-example rows (:data:`ROWS`;
    ``score_slice``: where the scored group sits among the evaluated examples,
    None: no scores).

    A checkpoint (orbax step = training steps done over all regimes) holds
    ``meta`` (JSON: the regime being trained and its next step, the record
    schedule's state, its record count, the number and SHA-256 of the
    metrics.jsonl lines written, the number of rows of each kind per regime),
    ``state`` (the regime's ``TrainState``: parameters, optimiser state; absent
    between regimes) and one item per kind of row (every row so far). The
    minibatch order and every random draw are pure functions of
    ``config.seed`` and the step, so no random state is stored.
    """

    FORMAT = 2

    def __init__(self, metrics_path, names, num_steps, writer, checkpointer, save,
                 monitor=None, score_slice=None):
        self.path, self.names, self.writer = metrics_path, names, writer
        self.monitor = monitor            # called with each new record (lazy_hasty.engine.monitor)
        self.offsets = np.concatenate([[0], np.cumsum(num_steps)]).astype(int).tolist()
        self.checkpointer, self.saving = checkpointer, save
        self.records: list[dict] = []
        self.score_slice = score_slice
        self.rows: dict[str, list[list[np.ndarray]]] = {k: [[] for _ in names] for k in ROWS}
        self.hash = hashlib.sha256()
        self.regime_index, self.meta, self.last = 0, None, None
        self.current = 0
        self.error: loop.NonFiniteLossError | None = None     # set when a regime diverged

    def begin(self, regime_index: int) -> "RunLog":
        """Makes regime ``regime_index`` the one the training loop reports to."""
        self.current = regime_index
        return self

    @property
    def correct(self) -> list[list[np.ndarray]]:
        """Per regime, the correctness rows of its records."""
        return self.rows["correct"]

    def record(self, record: dict, per_example: train.PerExample,
               grand: np.ndarray | None = None) -> None:
        """:class:`lazy_hasty.engine.loop.Hooks`: streams a record of the current regime."""
        line = records.jsonl_line(record)
        if self.writer:
            records.append_line(self.path, line)
        self.hash.update(line.encode("utf-8"))
        self.records.append(json.loads(line))
        self._keep_rows(per_example, grand)
        if self.monitor is not None:
            self.monitor(self.records[-1])

    def _keep_rows(self, per_example: train.PerExample, grand: np.ndarray | None) -> None:
        """The record's rows of each kind (:data:`ROWS`) for the current regime."""
        rows = {"correct": per_example.correct.astype(np.uint8)}
        if self.score_slice is not None:
            s = self.score_slice
            rows["margin"], rows["probability"] = per_example.margin[s], per_example.probability[s]
            if grand is not None:
                rows["el2n"], rows["grand"] = per_example.el2n[s], grand
        for kind, row in rows.items():
            dtype = np.uint8 if kind == "correct" else np.float32
            self.rows[kind][self.current].append(np.asarray(row).astype(dtype))

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
                "rows": {k: [len(rows) for rows in per] for k, per in self.rows.items()}}
        items = {}
        if progress is not None:
            items["state"] = progress.state
        for kind, per_regime in self.rows.items():
            rows = [r for regime_rows in per_regime for r in regime_rows]
            if rows:                      # orbax refuses zero-size arrays
                items[kind] = np.stack(rows)
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
        self._restore_rows(global_step, meta["rows"], num_examples)
        self.regime_index, self.meta = meta["regime_index"], meta
        self.last = (global_step, meta["regime_index"], meta["step"])
        logging.info("resuming from checkpoint %s; metrics.jsonl: %d records kept, %d "
                     "dropped%s", self.describe_last(), len(lines), dropped,
                     ", a torn last line repaired" if torn else "")

    def _restore_rows(self, global_step: int, counts: dict[str, list[int]],
                      num_examples: int) -> None:
        """Each kind of row of checkpoint ``global_step`` (``counts``: rows per regime)."""
        for kind, per_regime in counts.items():
            total = sum(per_regime)
            if not total:
                continue
            width = num_examples if kind == "correct" else len(range(num_examples)[
                self.score_slice])
            dtype = np.uint8 if kind == "correct" else np.float32
            rows = self.checkpointer.restore(
                global_step, **{kind: np.zeros((total, width), dtype)})[kind]
            bounds = np.cumsum([0] + per_regime)
            self.rows[kind] = [list(rows[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]

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
