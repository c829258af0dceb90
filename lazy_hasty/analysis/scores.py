"""Per-example difficulty scores from a run's own training trace.

Each score reduces what the run recorded at its records (``R`` evaluations of
the ``N`` training examples, in training order) to one number per example:

* ``forgetting``: the number of forgetting events, transitions from correct to
  wrong between consecutive evaluations; an example never correct counts as
  infinitely forgotten (Toneva et al., ICLR 2019);
* ``aum``: the area under the margin, the mean over evaluations of the label's
  logit minus the largest other logit (Pleiss et al., NeurIPS 2020);
* ``el2n``: ``||softmax - onehot||_2`` at one early evaluation (Paul, Ganguli &
  Dziugaite, NeurIPS 2021);
* ``grand``: ``||d loss / d params||_2`` at that evaluation
  (:func:`lazy_hasty.losses.gradient_norm`, from the tangent kernel's diagonal);
* ``confidence``, ``variability``, ``correctness``: the mean and the standard
  deviation over evaluations of the probability of the label, and the fraction
  of evaluations at which the example is correct (dataset cartography,
  Swayamdipta et al., EMNLP 2020).

Where these papers read minibatch presentations (forgetting, AUM) or epochs
(cartography), this module reads the run's record evaluations, which see every
training example at the same parameters (docs/scores.md).
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from lazy_hasty.analysis import inference, learning_times


def _trace(values: np.ndarray, name: str) -> np.ndarray:
    """``values`` as a (records, examples) float64 array; one-line ValueError otherwise."""
    values = np.asarray(values, np.float64)
    if values.ndim != 2 or values.shape[0] == 0:
        raise ValueError(f"{name} must be a (records, examples) array with at least one "
                         f"record, got shape {values.shape}")
    return values


def forgetting(correct: np.ndarray) -> np.ndarray:
    """Forgetting events per example: correct-to-wrong transitions between consecutive
    records; ``inf`` for an example never correct."""
    correct = _trace(correct, "correct") > 0.5
    events = (correct[:-1] & ~correct[1:]).sum(axis=0).astype(np.float64)
    return np.where(correct.any(axis=0), events, np.inf)


def aum(margin: np.ndarray) -> np.ndarray:
    """Area under the margin: each example's label margin averaged over records."""
    return _trace(margin, "margin").mean(axis=0)


def cartography(probability: np.ndarray, correct: np.ndarray) -> dict[str, np.ndarray]:
    """Confidence (mean label probability over records), variability (its standard
    deviation, ddof=0 as in allenai/cartography) and correctness (fraction correct)."""
    probability = _trace(probability, "probability")
    correct = _trace(correct, "correct")
    if probability.shape != correct.shape:
        raise ValueError(f"probability {probability.shape} and correct {correct.shape} "
                         "must have the same shape")
    return {"confidence": probability.mean(axis=0), "variability": probability.std(axis=0),
            "correctness": correct.mean(axis=0)}


SCORES = ("forgetting", "aum", "el2n", "grand", "confidence", "variability", "correctness",
          "learning_time")
"""Every score of ``scores.npz``, in its order."""

HARDER_WHEN_HIGHER = {"forgetting": True, "aum": False, "el2n": True, "grand": True,
                      "confidence": False, "variability": True, "correctness": False,
                      "learning_time": True}
"""Each score's direction of difficulty: more forgetting events, a larger EL2N or GraNd,
a higher variability (cartography's ambiguous examples) or a later learning time mark
a harder example; a larger margin, confidence or correctness an easier one."""


def hardness(name: str, runs: np.ndarray) -> np.ndarray:
    """One difficulty per example from score ``name`` of several runs (``(runs, N)``):
    the mean over runs of each run's ranks (ties averaged), oriented so that the
    largest is the hardest. An example never learned for good (learning time NaN)
    ranks as the latest; an infinite forgetting count as the most forgotten."""
    runs = np.asarray(runs, np.float64)
    if runs.ndim != 2 or runs.shape[0] < 1:
        raise ValueError(f"score runs must be (runs, examples), got shape {runs.shape}")
    if name == "learning_time":
        runs = np.where(np.isnan(runs), np.inf, runs)
    if np.isnan(runs).any():
        raise ValueError(f"score {name!r} is NaN for some examples: its early evaluation "
                         "was not reached (lower early_score_epoch below the run's epochs)")
    sign = 1.0 if HARDER_WHEN_HIGHER[name] else -1.0
    return np.mean([inference.average_ranks(sign * r) for r in runs], axis=0)


def run_scores(correct: np.ndarray, margin: np.ndarray, probability: np.ndarray,
               el2n: Optional[np.ndarray] = None,
               grand: Optional[np.ndarray] = None) -> dict[str, np.ndarray]:
    """Every score (:data:`SCORES`) of the scored examples in one regime's run.

    ``correct``, ``margin``, ``probability``: (records, examples) at its records,
    in training order; ``el2n``, ``grand``: at the early-scores record (None: it was
    not reached, NaN). The learning time is the index of the record from which the
    example stays correct (:func:`lazy_hasty.analysis.learning_times.learning_times`
    on the record count; NaN when not learned for good): it orders the examples in
    time whatever the run's progress measure, which may rise or fall.
    """
    n = _trace(correct, "correct").shape[1]
    early = lambda row: np.full(n, np.nan) if row is None else np.asarray(row, np.float64)
    records = np.arange(np.shape(correct)[0], dtype=np.float64)
    return {"forgetting": forgetting(correct), "aum": aum(margin), "el2n": early(el2n),
            "grand": early(grand), **cartography(probability, correct),
            "learning_time": learning_times.learning_times(correct, records).time}
