"""Tables, figures and headline numbers of the richness experiments
(``experiments/richness.py``), from their sweeps' summaries.

Each report takes ``{sweep name: (SweepSpec, Plan, sweep_summary)}`` and returns
``data`` (for ``<experiment>.json``), ``markdown`` (the table the docs show),
``headline`` (printed) and ``draw(path)`` (the figure).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Optional

import numpy as np

from experiments import richness_study
from lazy_hasty.analysis import knobs, plots
from lazy_hasty.difficulty import DifficultySpec

STAT = richness_study.STAT


def markdown(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub markdown table."""
    lines = [header, ["---"] * len(header), *rows]
    return "\n".join("| " + " | ".join(map(str, line)) + " |" for line in lines) + "\n"


def interval_cell(summary: Mapping) -> str:
    """``mean [lo, hi]`` of an across-seed summary (``-`` without a mean)."""
    if summary.get("mean") is None:
        return "-"
    lo_hi = summary.get("interval")
    text = f"{summary['mean']:.3f}"
    return text + (f" [{lo_hi[0]:.3f}, {lo_hi[1]:.3f}]" if lo_hi else "")


def signs_cell(summary: Mapping) -> str:
    return f"{summary['positive']}+/{summary['negative']}-"


def _geomean(rates: Sequence[Optional[float]]) -> Optional[float]:
    kept = [r for r in rates if r is not None]
    return math.exp(np.mean(np.log(kept))) if kept else None


def _rate(rates: Sequence[Optional[float]], at_edge: Optional[bool]) -> str:
    """The seeds' geometric-mean best rate, flagged when the grid's edge was chosen."""
    g = _geomean(rates)
    return "-" if g is None else f"{g:.3g}" + (" (edge)" if at_edge else "")


def _value_rows(summary: Mapping, rates: Sequence[Sequence[Optional[float]]]) -> list[list]:
    """Per swept value: its best rate, the statistic (interval, signs), linearity."""
    rows = []
    for i, value in enumerate(summary["values"]):
        stat = summary[STAT]["by_value"][i]
        search = summary["learning_rates"][i]
        rows.append([f"{value:g}", _rate(rates[i], search["at_edge"]), interval_cell(stat),
                     signs_cell(stat), stat["diverged_seeds"],
                     *(interval_cell(summary[m]["by_value"][i]) for m in knobs.LINEARITY)])
    return rows


VALUE_HEADER = ["best rate (seeds' geometric mean)", f"{STAT} [95% t]", "signs", "diverged",
                "sign similarity", "NTK alignment"]


def eta_star(sweeps: Mapping) -> dict:
    """η* against γ: its slope on each side of the rule's crossover."""
    (_, plan, summary), = sweeps.values()
    rates = richness_study.best_rates(plan, summary)
    rule = richness_study.rule_of(plan)
    scaling = knobs.rate_scaling(plan.values, rates, rule.crossover, rule.depth)
    c = f"{rule.crossover:g}"
    sides = [[f"gamma <= {c}", scaling["lazy_side"]["points"], interval_cell(scaling["lazy_side"]),
              "2"],
             [f"gamma >= {c}", scaling["rich_side"]["points"], interval_cell(scaling["rich_side"]),
              f"2/L = {scaling['rich_side']['predicted']:.3g}"]]
    fit = scaling["fitted_break"]
    sides += [[f"below the fitted break, log10 gamma = {interval_cell(fit['log10_break'])}", "-",
               interval_cell(fit["left_slope"]), "2"],
              ["above the fitted break", "-", interval_cell(fit["right_slope"]),
               f"2/L = {scaling['rich_side']['predicted']:.3g}"]]
    text = (markdown(["gamma", *VALUE_HEADER], _value_rows(summary, rates)) + "\n"
            + markdown(["fit", "gammas", "slope of log eta* on log gamma [95% t]",
                        "Atanasov et al."], sides))
    headline = {n: {"slope": scaling[n]["mean"], "interval": scaling[n]["interval"],
                    "predicted": scaling[n]["predicted"]} for n in ("lazy_side", "rich_side")}
    headline["fitted_break"] = {k: fit[k]["mean"] for k in fit}
    return {"data": {"best_rates": rates, "scaling": scaling}, "markdown": text,
            "headline": headline,
            "draw": lambda path: plots.plot_rate_scaling(path, plan.values, rates, scaling)}


def continuum(sweeps: Mapping) -> dict:
    """The alpha sweep from ultra-rich to near-lazy, each value at its best rate."""
    (_, plan, summary), = sweeps.values()
    rates = richness_study.best_rates(plan, summary)
    text = markdown(["alpha", *VALUE_HEADER], _value_rows(summary, rates))
    return {"data": {"best_rates": rates, "trend": summary[STAT]["trend"]}, "markdown": text,
            "headline": {"trend": summary[STAT]["trend"]},
            "draw": lambda path: plots.plot_sweep(path, summary,
                                                  DifficultySpec.from_dict(summary["spec"]))}


def width(sweeps: Mapping) -> dict:
    """Hastiness and end-of-training linearity against width, per parameterization."""
    text, data, series = "", {}, {}
    for name, (spec, plan, summary) in sweeps.items():
        rates = richness_study.best_rates(plan, summary)
        text += f"\n{spec.knob}\n\n" + markdown(["width", *VALUE_HEADER],
                                                 _value_rows(summary, rates))
        data[name] = {"best_rates": rates, "trend": summary[STAT]["trend"]}
        series[spec.knob] = summary
    headline = {n: d["trend"] for n, d in data.items()}
    return {"data": data, "markdown": text.lstrip(), "headline": headline,
            "draw": lambda path: plots.plot_knob_series(path, series, "hidden width",
                                                        (STAT, *knobs.LINEARITY))}


def collapse(sweeps: Mapping) -> dict:
    """Every run's hastiness against its end-of-training linearity, pooled and per knob."""
    rows = [r for spec, _, summary in sweeps.values()
            for r in knobs.runs_of(summary, spec.knob, STAT)]
    result = knobs.collapse(rows, STAT)
    cell = lambda c: "-" if c["spearman"] is None else (
        f"{c['spearman']:.2f} [{c['interval'][0]:.2f}, {c['interval'][1]:.2f}] (n={c['num_runs']})")
    knob_names = list(result[knobs.LINEARITY[0]]["by_knob"])
    table = [[m, cell(result[m]["all"]), *(cell(result[m]["by_knob"][k]) for k in knob_names)]
             for m in knobs.LINEARITY]
    text = markdown(["end-of-training metric", "all runs", *knob_names], table)
    headline = {m: result[m]["all"] for m in knobs.LINEARITY}
    return {"data": {"runs": rows, "spearman": result}, "markdown": text, "headline": headline,
            "draw": lambda path: plots.plot_collapse(path, rows, STAT)}


REPORTS = {"eta_star": eta_star, "continuum": continuum, "width": width, "collapse": collapse}
