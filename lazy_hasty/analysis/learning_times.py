"""Per-example learning times: the progress at which an example is learned for good.

An example is learned for good at the first record from which it is correct
at that record and every later one, so an example that is learned, forgotten
and learned again counts from its last switch to correct. Its learning time is
the experiment's own progress value (e.g. ``train_loss``) at that record, which
makes times comparable between regimes that train at different speeds. An
example wrong at the last record is censored: its time is unknown (NaN).

For a difficulty spec, :func:`difficulty_learning_times` gives the times of
the examples of its difficulty ladder (easy to hard) per regime and the rank
correlation between how late an example is learned (:func:`lateness`: censored
examples latest) and its difficulty rank; positive means hard examples are
learned later.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np

from lazy_hasty.analysis import inference
from lazy_hasty.difficulty import DifficultySpec


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


class LadderTimes(NamedTuple):
    """Learning times of the examples of a spec's difficulty ladder, in one regime.

    ``example`` is each example's column in the (records, examples) correctness
    over all evaluated groups, ``group`` its group's index in the group names
    (the order of ``slices``) and ``rank`` that group's position in
    :meth:`~lazy_hasty.difficulty.DifficultySpec.difficulty_ladder` (0: easiest).
    """

    times: LearningTimes
    example: np.ndarray
    group: np.ndarray
    rank: np.ndarray


def ladder_examples(slices: Mapping[str, slice], ladder: Sequence[str]
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``example``, ``group`` and ``rank`` of :class:`LadderTimes` for the groups of ``ladder``."""
    names = list(slices)
    missing = [g for g in ladder if g not in slices]
    if missing:
        raise ValueError(f"difficulty ladder groups {missing} are not evaluated; the groups "
                         f"are {names}")
    example = [np.arange(slices[g].start, slices[g].stop) for g in ladder]
    group = [np.full(len(e), names.index(g)) for g, e in zip(ladder, example)]
    rank = [np.full(len(e), k) for k, e in enumerate(example)]
    return tuple(np.concatenate(a).astype(int) for a in (example, group, rank))


def ladder_times(correct: np.ndarray, records: Sequence[Mapping], slices: Mapping[str, slice],
                 spec: DifficultySpec) -> LadderTimes:
    """:func:`learning_times` of every example of ``spec``'s ladder groups, on its progress.

    ``correct`` is one regime's (records, examples) correctness over all
    groups; ``records`` that regime's records (rows of ``metrics.jsonl``, each
    carrying ``spec.progress_key``); ``slices[group]`` where a group's examples sit.
    """
    example, group, rank = ladder_examples(slices, spec.difficulty_ladder())
    progress = np.array([r[spec.progress_key] for r in records], np.float64)
    return LadderTimes(learning_times(np.asarray(correct)[:, example], progress),
                       example, group, rank)


def lateness(times: LearningTimes, decreasing: bool) -> np.ndarray:
    """How late each example is learned: its time on a progress measure that grows.

    ``-time`` for a ``decreasing`` measure (a loss: a smaller value comes
    later), ``time`` otherwise; censored examples (never learned for good) are
    ``+inf``, later than every learned one and tied among themselves.
    """
    late = -times.time if decreasing else np.array(times.time, np.float64)
    return np.where(times.censored, np.inf, late)


def time_rank_correlation(times: LadderTimes, decreasing: bool, *, seed: int,
                          num_resamples: int = 1000, level: float = 0.95
                          ) -> tuple[float, tuple[float, float]]:
    """Spearman correlation of :func:`lateness` with the difficulty rank, bootstrapped.

    Positive: harder examples (a higher rank) are learned later. The interval
    is :func:`lazy_hasty.analysis.inference.bootstrap_spearman` over examples.
    """
    return inference.bootstrap_spearman(lateness(times.times, decreasing), times.rank,
                                        what="learning_times", num_resamples=num_resamples,
                                        seed=seed, level=level)


def difficulty_learning_times(records: Sequence[Mapping], correct: Mapping[str, np.ndarray],
                              slices: Mapping[str, slice], spec: DifficultySpec,
                              regimes: Sequence[str], seed: int
                              ) -> tuple[dict[str, np.ndarray], dict]:
    """The arrays of ``learning_times.npz`` and the ``learning_times`` entry of ``summary.json``.

    Arrays: ``time_<regime>``, ``censored_<regime>`` and ``record_index_<regime>``
    per ladder example, and, the same for every regime, ``example``, ``group``,
    ``rank`` (:class:`LadderTimes`), ``group_names``, ``ladder``, ``regimes``,
    ``progress_key`` and ``decreasing``. Summary, per regime: ``spearman`` of
    :func:`time_rank_correlation` with its 95% ``interval``, ``num_examples``
    and ``num_censored``. ``records`` and ``correct[regime]`` cover all regimes.
    """
    arrays: dict[str, np.ndarray] = {}
    summary = {}
    for regime in regimes:
        mine = [r for r in records if r["regime"] == regime]
        got = ladder_times(correct[regime], mine, slices, spec)
        arrays.update({f"{field}_{regime}": getattr(got.times, field)
                       for field in ("time", "censored", "record_index")})
        rho, interval = time_rank_correlation(got, spec.decreasing, seed=seed)
        summary[regime] = {"spearman": rho, "interval": list(interval),
                           "num_examples": int(len(got.rank)),
                           "num_censored": int(got.times.censored.sum())}
    ladder = spec.difficulty_ladder()
    example, group, rank = ladder_examples(slices, ladder)
    arrays.update(example=example, group=group, rank=rank, group_names=np.array(list(slices)),
                  ladder=np.array(ladder), regimes=np.array(list(regimes)),
                  progress_key=np.array(spec.progress_key), decreasing=np.array(spec.decreasing))
    return arrays, summary
