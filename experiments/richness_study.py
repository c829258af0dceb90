"""The sweeps of each richness experiment (``experiments/richness.py``) and their reports.

An experiment is a list of :class:`SweepSpec`; each trains as
``experiments/sweep.py`` would (:mod:`experiments.sweep_runs`, with a
learning-rate search per value), and its report reads the sweeps'
``sweep_summary.json`` back (:mod:`lazy_hasty.analysis.knobs`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import NamedTuple

from experiments import difficulty_setup, sweep_runs
from lazy_hasty import regimes
from lazy_hasty.analysis import knobs
from lazy_hasty.engine import records

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCALES = ("cpu", "gpu")
EXPERIMENTS = ("eta_star", "continuum", "width", "collapse")
REGIME = "alpha=1"                      # the regime of a sweep along gamma or width
REFERENCE_EPOCHS = 100                  # a gamma or width sweep's linearized references: the alpha = 1 budget
STAT = "hastiness"
GRID = "0.0625,0.125,0.25,0.5,1,2,4,8,16"
WIDE_GRID = ",".join(f"{2.0 ** k:g}" for k in range(-2, 11))   # eta* of gamma << 1 lies high
GPU_GRID = ",".join(f"{2.0 ** k:g}" for k in range(-6, 9))  # no twin has placed its centre
GPU_WIDE_GRID = ",".join(f"{2.0 ** k:g}" for k in range(-6, 13))
MUP = ("--config.parameterization=mup", "--config.lr_rule=richness",
       "--config.learning_rate=0.8")


class SweepSpec(NamedTuple):
    """One sweep of an experiment, in ``<workdir>/<name>``; ``knob``: what it moves."""

    name: str
    knob: str
    config: str                          # relative to the repository root
    axis: str
    values: str
    overrides: tuple[str, ...]
    lr_grid: str = GRID
    reference_epochs: float = 0          # 0: the config's largest num_epochs


def sweeps(experiment: str, scale: str) -> list[SweepSpec]:
    """The sweeps ``experiment`` trains at ``scale`` (``collapse``: all the others')."""
    if experiment == "collapse":
        return [s for e in EXPERIMENTS[:-1] for s in sweeps(e, scale)]
    cpu = scale == "cpu"
    model = "configs/digits_noise.py" if cpu else "configs/cifar10_noise.py"
    richness = ("--config.lr_rule=richness",)
    grid, wide = (GRID, WIDE_GRID) if cpu else (GPU_GRID, GPU_WIDE_GRID)
    return {
        "eta_star": [SweepSpec("eta_star", "gamma (muP)", model, "gamma",
                               "0.003,0.01,0.03,0.1,0.3,1,3,10,100" if cpu else
                               "0.001,0.003,0.01,0.03,0.1,0.3,1,3,10,30,100", MUP, wide,
                               REFERENCE_EPOCHS)],
        "continuum": [SweepSpec("continuum", "alpha", model, "alpha",
                                "0.01,0.03,0.1,0.3,1,3,10,100,1000" if cpu else
                                "0.01,0.03,0.1,0.3,1,3,10,30,100,300,1000", richness, grid)],
        "width": [SweepSpec(f"width_{p}", f"width ({p})", "configs/digits_noise.py",
                            "model_kwargs.features", "64,128,256,512" if cpu else
                            "64,128,256,512,1024,2048,4096", o, grid, REFERENCE_EPOCHS)
                  for p, o in (("standard", richness), ("mup", MUP))],
    }[experiment]


def make_plan(spec: SweepSpec, workdir: str, seeds: Sequence[int]) -> sweep_runs.Plan:
    """The runs of one sweep in ``<workdir>/<spec.name>``."""
    return sweep_runs.make_plan(os.path.join(ROOT, spec.config), os.path.join(workdir, spec.name),
                                spec.axis, spec.values, REGIME, list(seeds),
                                spec.reference_epochs, 0, list(spec.overrides), spec.lr_grid)


def run_sweep(spec: SweepSpec, workdir: str, seeds: Sequence[int]) -> sweep_runs.Plan:
    """Trains (or resumes) one sweep and writes its ``sweep_summary.json``."""
    plan = make_plan(spec, workdir, seeds)
    sweep_runs.run_all(plan, batch=True)
    sweep_runs.aggregate(plan)
    return plan


def summary_of(plan: sweep_runs.Plan) -> dict:
    with open(os.path.join(plan.workdir, "sweep_summary.json")) as f:
        return json.load(f)


def applied_factor(plan: sweep_runs.Plan, value: float) -> float:
    """What a swept run at ``value`` multiplies ``config.learning_rate`` by (the rule's
    factor at its richness, times the parameterization's width multiplier)."""
    extra = [plan.axis_overrides[value]] if value in plan.axis_overrides else []
    config = sweep_runs.load_config(plan.config_path, [*plan.overrides, *extra])
    module = difficulty_setup.module_of(config, num_outputs=1)
    regime = regimes.parse_regime(plan.swept[value][0].regime)
    return difficulty_setup.richness_of(config, module).learning_rate(regime, 1.0)


def best_rates(plan: sweep_runs.Plan, summary: dict) -> list[list]:
    """Per value, each seed's best rate as SGD applied it."""
    return [knobs.applied_best_rates(search, applied_factor(plan, v))
            for v, search in zip(plan.values, summary["learning_rates"])]


def rule_of(plan: sweep_runs.Plan):
    """The learning-rate rule of the sweep's network (its crossover and depth)."""
    config = sweep_runs.load_config(plan.config_path, list(plan.overrides))
    return difficulty_setup.richness_of(config, difficulty_setup.module_of(config, 1)).rule


def run(experiment: str, workdir: str, scale: str, num_seeds: int) -> dict:
    """Trains the experiment's sweeps, then writes ``<experiment>.json``, ``.md`` and
    ``.png`` in ``workdir``; returns the report (``headline``, ``paths``)."""
    if scale not in SCALES or experiment not in EXPERIMENTS:
        raise ValueError(f"--experiment must be one of {EXPERIMENTS} and --scale one of "
                         f"{SCALES}")
    seeds = list(range(num_seeds or (3 if scale == "cpu" else 5)))
    plans = {s.name: (s, run_sweep(s, workdir, seeds)) for s in sweeps(experiment, scale)}
    from experiments import richness_report  # matplotlib only once the sweeps are done
    report = richness_report.REPORTS[experiment](
        {name: (spec, plan, summary_of(plan)) for name, (spec, plan) in plans.items()})
    paths = [os.path.join(workdir, f"{experiment}.{ext}") for ext in ("json", "md", "png")]
    records.write_json(paths[0], {"experiment": experiment, "scale": scale, **report["data"]})
    records.atomic_write(paths[1], lambda f: f.write(report["markdown"]))
    report["draw"](paths[2])
    return {"headline": report["headline"], "paths": paths}
