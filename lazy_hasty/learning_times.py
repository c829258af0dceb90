"""Per-example learning times: the progress at which an example is learned for good.

An example is learned for good at the first record from which it is correct
at that record and every later one, so an example that is learned, forgotten
and learned again counts from its last switch to correct. Its learning time is
the experiment's own progress value (e.g. ``train_loss``) at that record, which
makes times comparable between regimes that train at different speeds. An
example wrong at the last record is censored: its time is unknown (NaN).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class LearningTimes(NamedTuple):
    """Per-example learning times; censored examples have index ``-1`` and time NaN."""

    record_index: np.ndarray
    time: np.ndarray
    censored: np.ndarray


def _check(correct: np.ndarray, progress: np.ndarray) -> None:
    """One-line ValueError unless ``correct`` is (R, N) 0/1 and ``progress`` (R,) finite."""
    if correct.ndim != 2 or correct.shape[0] == 0:
        raise ValueError(f"correct must be a (records, examples) array with at least one "
                         f"record, got shape {correct.shape}")
    if not np.isin(correct, (0, 1)).all():
        raise ValueError("correct must hold only 0/1 (or booleans); threshold it first")
    if progress.shape != correct.shape[:1]:
        raise ValueError(f"progress must have one value per record, shape "
                         f"({correct.shape[0]},), got shape {progress.shape}")
    if not np.isfinite(progress).all():
        raise ValueError("progress must be finite at every record; drop records without it")


def learning_times(correct: np.ndarray, progress: np.ndarray) -> LearningTimes:
    """When each example is learned for good, as a record index and a progress value.

    ``correct`` is (records, examples) 0/1 in training order and ``progress``
    (records,) the progress measure of each record. The index is one past the
    last record at which the example is wrong (0 if it is never wrong).
    """
    correct, progress = np.asarray(correct), np.asarray(progress, np.float64)
    _check(correct, progress)
    num_records = correct.shape[0]
    wrong = correct == 0
    last_wrong = np.where(wrong.any(axis=0),
                          num_records - 1 - np.argmax(wrong[::-1], axis=0), -1)
    censored = last_wrong == num_records - 1
    index = np.where(censored, -1, last_wrong + 1)
    time = np.where(censored, np.nan, progress[np.where(censored, 0, index)])
    return LearningTimes(index, time, censored)
