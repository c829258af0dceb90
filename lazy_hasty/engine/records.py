"""Run records: config dump, metrics JSONL, atomic file writes.

Every run writes ``config.json`` and ``metrics.jsonl`` to its workdir, so any
figure can be redrawn from records alone. Files are written whole (to a
temporary name, then renamed) so a crash never leaves a half-written one;
``metrics.jsonl`` grows by whole lines (one ``write`` each, fsynced), and a
resumed run cuts it back to the lines its checkpoint vouches for
(:func:`truncate_jsonl`), which also drops a line torn by a crash.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from typing import Any, Iterable, Mapping

import numpy as np


def _jsonable(value: Any) -> Any:
    """Plain-Python version of numpy/jax scalars and arrays; NaN/inf become None."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        return _jsonable(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def atomic_write(path: str, write_fn, mode: str = "w") -> None:
    """Calls ``write_fn(file)`` on a temporary file, then renames it to ``path``."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=os.path.basename(path))
    try:
        with os.fdopen(fd, mode) as f:
            write_fn(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def write_json(path: str, obj: Any) -> None:
    """Writes ``obj`` as indented JSON, atomically."""
    atomic_write(path, lambda f: json.dump(_jsonable(obj), f, indent=2, sort_keys=True))


def write_jsonl(path: str, records: Iterable[Mapping[str, Any]]) -> None:
    """Writes one JSON object per line, atomically."""
    lines = [json.dumps(_jsonable(r), sort_keys=True) for r in records]
    atomic_write(path, lambda f: f.write("".join(line + "\n" for line in lines)))


def read_jsonl(path: str) -> list[dict[str, Any]]:
    """Reads a metrics file back (one dict per line)."""
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def write_npz(path: str, **arrays: Any) -> None:
    """Saves arrays to ``.npz`` atomically (loadable with ``allow_pickle=False``)."""
    atomic_write(path, lambda f: np.savez(f, **{k: np.asarray(v) for k, v in arrays.items()}),
                 mode="wb")


def log_spaced_steps(num_steps: int, num: int = 100) -> np.ndarray:
    """About ``num`` distinct steps, log-spaced from 0 to ``num_steps - 1`` inclusive."""
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    steps = np.unique(np.round(np.geomspace(1, num_steps, num)).astype(int) - 1)
    return np.union1d([0, num_steps - 1], steps)


def jsonl_line(record: Mapping[str, Any]) -> str:
    """``record`` as one JSONL line (sorted keys, NaN as null, newline included)."""
    return json.dumps(_jsonable(record), sort_keys=True) + "\n"


def append_line(path: str, line: str) -> None:
    """Appends ``line`` (ending in a newline) with one ``write`` call, flushed to disk.

    A kill can at worst leave a last line without its newline;
    :func:`truncate_jsonl` drops such a line when a run resumes.
    """
    if not line.endswith("\n"):
        raise ValueError("a JSONL line must end in a newline")
    data = line.encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        written = os.write(fd, data)
        while written < len(data):                 # a short write (rare): finish the line
            written += os.write(fd, data[written:])
        os.fsync(fd)
    finally:
        os.close(fd)


def truncate_jsonl(path: str, num_lines: int, rewrite: bool = True
                   ) -> tuple[list[str], int, bool]:
    """Keeps the first ``num_lines`` complete lines of a JSONL file, atomically.

    Returns ``(kept lines, number of complete lines dropped, whether a torn
    last line (no newline, e.g. from a crash mid-write) was dropped)``. The
    file is rewritten only when something is dropped (and ``rewrite``; other
    processes of a multi-process run only read). Raises ValueError if it
    holds fewer than ``num_lines`` complete lines, or a kept line is not JSON.
    """
    with open(path, "rb") as f:
        data = f.read()
    parts = data.split(b"\n")
    complete, tail = parts[:-1], parts[-1]
    if len(complete) < num_lines:
        raise ValueError(f"{path} holds {len(complete)} complete line(s), fewer than the "
                         f"{num_lines} recorded by the checkpoint; it was modified or lost")
    kept = [line.decode("utf-8") + "\n" for line in complete[:num_lines]]
    for i, line in enumerate(kept):
        try:
            json.loads(line)
        except ValueError as err:
            raise ValueError(f"{path}: line {i + 1} is not valid JSON ({err})") from None
    dropped, torn = len(complete) - num_lines, bool(tail)
    if rewrite and (dropped or torn):
        atomic_write(path, lambda f: f.write("".join(kept)))
    return kept, dropped, torn


COMPLETED = "COMPLETED"
"""Marker file written in a workdir once its run has finished successfully."""


def mark_completed(workdir: str) -> None:
    """Marks ``workdir`` as a finished run (multi-seed drivers skip such runs)."""
    atomic_write(os.path.join(workdir, COMPLETED), lambda f: f.write("ok\n"))


def is_completed(workdir: str) -> bool:
    """Whether ``workdir`` holds a finished run."""
    return os.path.exists(os.path.join(workdir, COMPLETED))


DIVERGED = "DIVERGED"
"""Marker file (holding the error) of a run that stopped on a non-finite loss or parameters."""


def mark_diverged(workdir: str, message: str) -> None:
    """Marks ``workdir`` as a run that diverged; sweeps count it and go on."""
    atomic_write(os.path.join(workdir, DIVERGED), lambda f: f.write(message + "\n"))


def diverged(workdir: str) -> str | None:
    """The divergence message of ``workdir``'s run, or None if it did not diverge."""
    path = os.path.join(workdir, DIVERGED)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return f.read().strip()
