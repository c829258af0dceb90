"""Run records: config dump, metrics JSONL, atomic file writes.

Every run writes ``config.json`` and ``metrics.jsonl`` to its workdir, so any
figure can be redrawn from records alone. Files are written whole (to a
temporary name, then renamed) so a crash never leaves a half-written one.
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


def append_jsonl(path: str, record: Mapping[str, Any]) -> None:
    """Appends one record as a single line (one ``write`` call), flushed to disk."""
    line = json.dumps(_jsonable(record), sort_keys=True) + "\n"
    with open(path, "a") as f:
        f.write(line)
        f.flush()
        os.fsync(f.fileno())


COMPLETED = "COMPLETED"
"""Marker file written in a workdir once its run has finished successfully."""


def mark_completed(workdir: str) -> None:
    """Marks ``workdir`` as a finished run (multi-seed drivers skip such runs)."""
    atomic_write(os.path.join(workdir, COMPLETED), lambda f: f.write("ok\n"))


def is_completed(workdir: str) -> bool:
    """Whether ``workdir`` holds a finished run."""
    return os.path.exists(os.path.join(workdir, COMPLETED))
