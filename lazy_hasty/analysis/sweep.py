"""The alpha continuum (or any swept config value): statistics of each run against
the exactly linearized reference of its seed, summarized over seeds.

A sweep trains, for every value ``v`` of an axis and every seed ``k``, one run
of one regime (``alpha=v`` on the default axis) and, per seed, the exactly
linearized reference (the ``alpha -> inf`` limit; one per value when the axis
changes the network, e.g. its width). A run of seed ``k`` is compared with the
reference of seed ``k`` (same ``params0``, data and minibatch order), so the
statistics of the difficulty spec (:func:`lazy_hasty.analysis.progress.compare_regimes`:
hastiness, hard advantage) are paired within a seed, and the reference itself
is their zero: the ``alpha -> inf`` asymptote.

Each run's records are those of ``main.py`` (``metrics.jsonl``,
``per_example.npz`` in its own workdir); this module reads them back, so the
summary is the same whether the runs were batched in one program or launched
one by one.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import NamedTuple, Optional

import numpy as np

from lazy_hasty import linearity
from lazy_hasty.engine import records
from lazy_hasty.analysis import inference, progress
from lazy_hasty.difficulty import DifficultySpec



class RunData(NamedTuple):
    """One finished single-regime run, read back from its workdir."""

    regime: str
    records: list[dict]
    correct: np.ndarray                  # (records, examples) over all evaluated groups
    slices: dict[str, slice]


def read_run(workdir: str) -> RunData:
    """The records and per-example correctness ``main.py`` wrote to ``workdir``."""
    rows = records.read_jsonl(os.path.join(workdir, "metrics.jsonl"))
    regimes = list(dict.fromkeys(r["regime"] for r in rows))
    if len(regimes) != 1:
        raise ValueError(f"{workdir} must hold the records of one regime, found {regimes}")
    with np.load(os.path.join(workdir, "per_example.npz"), allow_pickle=False) as npz:
        correct = np.asarray(npz[f"correct_{regimes[0]}"])
        bounds, names = npz["group_bounds"], [str(n) for n in npz["group_names"]]
    slices = {n: slice(int(a), int(b)) for n, a, b in zip(names, bounds[:-1], bounds[1:])}
    return RunData(regimes[0], rows, correct, slices)


def end_linearity(rows: Sequence[Mapping]) -> dict[str, Optional[float]]:
    """The linearity metrics of the last record that measured them (None: never)."""
    probed = [r for r in rows if linearity.METRICS[0] in r]
    return {k: (probed[-1][k] if probed else None) for k in linearity.METRICS}


def reached_progress(rows: Sequence[Mapping], spec: DifficultySpec) -> float:
    """The furthest progress a run reached (its lowest loss, or highest accuracy)."""
    values = [r[spec.progress_key] for r in rows]
    return float(min(values) if spec.decreasing else max(values))


def run_statistics(run: RunData, reference: RunData, spec: DifficultySpec, seed: int) -> dict:
    """The spec's statistics of ``run`` over its seed's ``reference``, with the
    per-seed bootstrap intervals, and the run's linearity at the end of training."""
    if run.regime == reference.regime:
        raise ValueError(f"a run and its reference are both {run.regime!r}")
    stats = progress.compare_regimes(
        run.records + reference.records, {run.regime: run.correct,
                                          reference.regime: reference.correct},
        run.slices, spec, run.regime, reference.regime, seed)
    return {**stats, **end_linearity(run.records)}


def _per_value(stat: str, value: float, regime: str, runs: Sequence[Optional[dict]],
               diverged: Sequence[bool]) -> dict:
    """Across-seed summary of ``stat`` at one axis value (seeds without it: None)."""
    return {"value": value, "regime": regime, **inference.across_seed_summary(stat, runs),
            "diverged_seeds": int(sum(diverged))}


def _trend(stat: str, values: Sequence[float],
           stat_by_value: Sequence[Sequence[Optional[float]]], log_axis: bool, seed: int
           ) -> dict:
    """Spearman correlation of the statistic with (log) value over every run, bootstrapped."""
    x, y = [], []
    for v, per_seed in zip(values, stat_by_value):
        for s in per_seed:
            if s is not None:
                x.append(math.log(v) if log_axis else v)
                y.append(s)
    rho, interval = inference.bootstrap_spearman(np.array(x), np.array(y),
                                                 what=f"{stat} trend", seed=seed)
    return {"spearman": rho, "interval": list(interval), "num_runs": len(x),
            "against": "log value" if log_axis else "value"}


def summarize(axis: str, values: Sequence[float], regimes: Sequence[str], seeds: Sequence[int],
              runs: Sequence[Sequence[Optional[dict]]], diverged: Sequence[Sequence[bool]],
              spec: DifficultySpec, reference: str, log_axis: bool = True) -> dict:
    """``sweep_summary.json``: per statistic and value, the across-seed mean, 95 %
    Student-t interval, sign counts, per-seed values and intervals; the rank
    correlation of the statistic with the (log) axis value; end-of-training
    linearity per value. ``runs[i][j]``: :func:`run_statistics` of value ``i``,
    seed ``j`` (None: diverged or missing)."""
    out = {"axis": axis, "values": list(values), "regimes": list(regimes),
           "seeds": list(seeds), "reference": reference, "spec": spec.to_dict(),
           "interval": "95% Student-t over seeds; per_seed_intervals: bootstrap over examples"}
    for stat in list(spec.statistics) + list(linearity.METRICS):
        by_value = [_per_value(stat, v, r, rs, d)
                    for v, r, rs, d in zip(values, regimes, runs, diverged)]
        out[stat] = {"by_value": by_value}
        if stat in spec.statistics:
            out[stat]["trend"] = _trend(stat, values, [b["values"] for b in by_value], log_axis,
                                        seeds[0] if seeds else 0)
    return out
