"""Driver for Section 3 / Fig. 1: runs the seeds, writes records and the figure.

Outputs in the workdir: ``config.json``, ``metrics.jsonl`` (training-loss mean
and quantiles per regime at log-spaced steps), ``fig1.npz`` and ``fig1.png``.

Not checkpointed: the whole experiment is one vmapped program of about two
minutes, and its files are written only at the end (each atomically), so a
killed run leaves no partial output and re-running the command starts it over.
"""

from __future__ import annotations

import os

import jax
import numpy as np
from absl import logging
import ml_collections

from configs import yinyang as yinyang_config
from experiments import common
from lazy_hasty import regimes
from lazy_hasty.engine import records, yinyang

QUANTILES = (0.1, 0.5, 0.9)


def _regime_names(config) -> tuple[str, str]:
    nonlinear = regimes.Regime("rescaled", config.nonlinear_alpha).name
    linear = regimes.Regime("rescaled", config.linear_alpha).name
    if nonlinear == linear:
        raise ValueError(f"nonlinear_alpha and linear_alpha are both {nonlinear}; "
                         "compare two different regimes")
    return nonlinear, linear


def _metrics(result: yinyang.YinYangResult, num_steps: int) -> list[dict]:
    """Training-loss mean and quantiles over runs, per regime, at log-spaced steps."""
    rows = []
    for step in records.log_spaced_steps(num_steps):
        for name in result.regimes:
            losses = result.loss_curves[name][:, step]
            if np.isnan(losses).all():       # regime stopped: every run crossed
                continue
            q = np.nanquantile(losses, QUANTILES)
            rows.append({"step": int(step), "regime": name, "train_loss": np.nanmean(losses),
                         **{f"train_loss_q{round(100 * p)}": v for p, v in zip(QUANTILES, q)}})
    return rows


def _progress(done: int, total: int, seconds: float) -> None:
    eta = seconds / max(done, 1) * (total - done)
    logging.info("yinyang: step %d/%d, %.0fs elapsed, ETA %.0fs", done, total, seconds, eta)


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Runs Fig. 1 end to end; returns the paths written."""
    common.check_keys(config, yinyang_config.get_config())
    nonlinear, linear = _regime_names(config)
    if config.num_runs < 1 or config.num_steps < 1:
        raise ValueError("num_runs and num_steps must be >= 1")
    common.check_workdir(workdir)

    result = yinyang.run_yinyang(
        seed=config.seed, num_runs=config.num_runs, num_steps=config.num_steps,
        learning_rate=config.learning_rate, thresholds=config.thresholds,
        regimes=[nonlinear, linear, "linearized"], n_train=config.n_train,
        hidden=config.hidden, grid_resolution=config.grid_resolution,
        function_space_linearized=config.function_space_linearized,
        stop_when_crossed=config.stop_when_crossed, callback=_progress)

    deltas, used = {}, []
    for reference in (linear, "linearized"):
        deltas[reference], counts = result.delta(nonlinear, reference)
        used.append(counts)
        for t, count in zip(result.thresholds, counts):
            if count == 0:
                raise ValueError(
                    f"no run reached train loss {t:g} in both {nonlinear} and {reference} "
                    f"within {config.num_steps} steps; raise num_steps or the threshold")
    runs_used = np.stack(used, axis=1)                          # (T, 2)
    for t, (a, b) in zip(result.thresholds, runs_used):
        logging.info("threshold %g: %d runs vs %s, %d vs linearized (of %d)",
                     t, a, linear, b, config.num_runs)

    paths = {name: os.path.join(workdir, name)
             for name in ("config.json", "metrics.jsonl", "fig1.npz", "fig1.png")}
    if jax.process_index() == 0:                     # one process writes
        _write(paths, config, result, deltas, runs_used, (nonlinear, linear))
    return paths


def _write(paths: dict, config, result: yinyang.YinYangResult, deltas: dict,
           runs_used: np.ndarray, compared: tuple[str, str]) -> None:
    """config.json, metrics.jsonl, fig1.npz and fig1.png, each written atomically."""
    nonlinear, linear = compared
    records.write_json(paths["config.json"], config.to_dict())
    records.write_jsonl(paths["metrics.jsonl"], _metrics(result, config.num_steps))
    records.write_npz(
        paths["fig1.npz"], points=result.grid, thresholds=result.thresholds,
        delta_alpha100=deltas[linear], delta_linearized=deltas["linearized"],
        runs_used=runs_used, train_points=result.train_points[0],
        train_labels=result.train_labels[0],
        **{f"loss_{name}": result.loss_curves[name] for name in result.regimes},
        **{f"crossings_{name}": result.crossings[name] for name in result.regimes})
    from lazy_hasty.analysis import plots  # matplotlib only when drawing (not on a config error)
    plots.plot_fig1(
        paths["fig1.png"], train_points=result.train_points[0],
        train_labels=result.train_labels[0], steps=np.arange(config.num_steps),
        loss_curves={n: result.loss_curves[n] for n in (nonlinear, linear)},
        thresholds=result.thresholds, delta_maps=deltas, grid_points=result.grid)
    logging.info("yinyang: wrote %s", ", ".join(paths.values()))
