"""The runs and the per-run analysis of ``experiments/agreement.py`` (its docstring
says what is measured): one run per twin and seed, then from its files the notions'
rank correlations, each notion's hastiness and the initial kernel's prediction."""

from __future__ import annotations

import itertools
import json
import os
from typing import Sequence

import ml_collections
import numpy as np

from experiments import difficulty, difficulty_setup, score_difficulty, sweep_runs
from lazy_hasty import datasets, models, ntk, rng
from lazy_hasty.analysis import inference, progress, scores, spectral
from lazy_hasty.data import groups as groups_lib
from lazy_hasty.engine import records

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# twin -> config, and the twin's own hard group among the training groups ("" for the
# C-score deciles, whose hardness is 9 minus the decile).
TWINS = {"noise": ("configs/digits_noise.py", "train/noisy"),
         "cscores": ("configs/digits_cscores.py", ""),
         "spurious": ("configs/digits_spurious.py", "train/minority")}
REGIMES = ("alpha=1", "alpha=100", "linearized")
COMPARE = ("alpha=1", "alpha=100")
OWN = "own"
TOP_K = (1, 10, 100)
TAU_DECADES = (-2.0, 4.0)   # the prediction's time grid, in units of 1 / top eigenvalue
OVERRIDES: tuple[str, ...] = ()   # --config overrides of every run (tests: smaller runs)
KERNEL_EXAMPLES = 0         # the kernel's examples: the first k training examples (0: all)


def twin_config(twin: str, seed: int, workdir: str) -> ml_collections.ConfigDict:
    """The twin's config at ``seed`` with the three regimes (the linearized one gets the
    alpha = 100 budget), whole groups and its score references cached under ``workdir``."""
    config = sweep_runs.load_config(os.path.join(ROOT, TWINS[twin][0]),
                                    [*OVERRIDES, f"--config.seed={seed}"])
    epochs = dict(zip(config.regimes, config.num_epochs))
    config.regimes, config.compare = REGIMES, COMPARE
    config.num_epochs = (epochs["alpha=1"], epochs["alpha=100"], epochs["alpha=100"])
    config.figures, config.group_size = False, 0       # train/all: every training example
    config.score_cache = os.path.join(workdir, "score_cache")
    return config


def _rows_in(x: np.ndarray, among: np.ndarray) -> np.ndarray:
    """Whether each row of ``among`` is one of the rows of ``x``."""
    rows = {row.tobytes() for row in np.asarray(x)}
    return np.array([row.tobytes() in rows for row in np.asarray(among)])


def own_hardness(twin: str, data: datasets.DescribedDataset) -> np.ndarray:
    """The twin's own notion on the training examples (``train/all`` order), larger
    for harder: 1 for a noisy label or the minority, else 0; 9 minus the C-score decile."""
    train, x = data.groups["train"], data.groups["train"]["all"].x
    if TWINS[twin][1]:
        return _rows_in(train[TWINS[twin][1].split("/")[1]].x, x).astype(np.float64)
    hardness = np.full(len(x), np.nan)
    for k in range(10):
        hardness[_rows_in(train[f"decile_{k}"].x, x)] = 9 - k
    return hardness


def notion_spearman(notions: dict[str, np.ndarray]) -> dict[str, float]:
    """``{"a|b": Spearman}`` for every pair of notions (hardness arrays)."""
    return {f"{a}|{b}": inference.spearman(notions[a], notions[b])
            for a, b in itertools.combinations(notions, 2)}


def split_hastiness(rows: Sequence[dict], correct: dict[str, np.ndarray], easy: np.ndarray,
                    hard: np.ndarray) -> float:
    """Hastiness of ``COMPARE[0]`` over ``COMPARE[1]`` for the groups ``easy`` and ``hard``
    (columns of ``correct``), at equal training loss."""
    curves = []
    for regime in COMPARE:
        loss = np.array([r["train_loss"] for r in rows if r["regime"] == regime])
        curves += [loss, correct[regime][:, easy].mean(1), correct[regime][:, hard].mean(1)]
    return float(progress.hastiness(*curves))


def kernel_prediction(config: ml_collections.ConfigDict, data: datasets.DescribedDataset,
                      times: dict[str, np.ndarray], groups: dict[str, np.ndarray]) -> dict:
    """The closed-form learning order of ``K(params0)`` on the training examples against
    each regime's measured ``times`` (Spearman; not learned for good ranks last), and
    each of ``groups``' (masks) share of the initial residual in the top eigenvectors."""
    keep = slice(KERNEL_EXAMPLES or None)
    x, y = data.groups["train"]["all"].x[keep], data.groups["train"]["all"].y[keep]
    times = {r: t[keep] for r, t in times.items()}
    groups = {g: mask[keep] for g, mask in groups.items()}
    module = difficulty_setup.module_of(config, data.num_classes)
    params0, state = models.init_model(module, rng.jax_key(config.seed, "init"), x[:1])
    kernel = ntk.empirical_ntk(models.make_apply_fn(module, state), params0, x,
                               implementation="structured",
                               chunk_size=config.ntk_chunk_size or None)
    values, vectors = spectral.eigenbasis(spectral.class_averaged(np.asarray(kernel)))
    taus = np.logspace(*TAU_DECADES, 241) / values[0]
    predicted = spectral.predicted_learning_times(values, vectors, y, data.num_classes, taus)
    late = lambda t: np.where(np.isnan(t), np.inf, t)
    r0 = spectral.initial_residual(y, data.num_classes)
    return {"spearman": {r: inference.spearman(predicted, late(t)) for r, t in times.items()},
            "learned_within_grid": float(np.isfinite(predicted).mean()),
            "energy_in_top": {g: dict(zip(map(str, TOP_K), map(float, spectral.energy_in_top(
                vectors, r0, mask, TOP_K)))) for g, mask in groups.items()}}


def _read(workdir: str) -> tuple[list, dict, dict, dict]:
    """A finished run's records, correctness by regime, scores and summary."""
    with np.load(os.path.join(workdir, "per_example.npz"), allow_pickle=False) as f:
        correct = {r: f[f"correct_{r}"] for r in REGIMES}
        names, bounds = list(f["group_names"]), f["group_bounds"]
    i = names.index("train/all")
    correct = {r: c[:, bounds[i]:bounds[i + 1]] for r, c in correct.items()}
    with np.load(os.path.join(workdir, "scores.npz"), allow_pickle=False) as f:
        run_scores = {k: f[k] for k in f.files if k != "group"}
    with open(os.path.join(workdir, "summary.json")) as f:
        summary = json.load(f)
    return records.read_jsonl(os.path.join(workdir, "metrics.jsonl")), correct, run_scores, summary


def analyse(twin: str, config: ml_collections.ConfigDict, workdir: str) -> dict:
    """One finished run's notions, hastiness per notion and kernel prediction."""
    rows, correct, run_scores, summary = _read(workdir)
    data = score_difficulty.load(config)
    own = own_hardness(twin, data)
    notions = {r: {OWN: own, **{s: scores.hardness(s, run_scores[f"{s}_{r}"][None])
                                for s in scores.SCORES}} for r in REGIMES}
    across = {s: {f"{a}|{b}": inference.spearman(notions[a][s], notions[b][s])
                  for a, b in itertools.combinations(REGIMES, 2)} for s in scores.SCORES}
    hastiness = {OWN: summary.get("hastiness")}
    for s in scores.SCORES:
        split = groups_lib.quantile_groups(score_difficulty.cached_hardness(config, data, s),
                                           config.score_quantile, None, config.seed, "train")
        hastiness[s] = split_hastiness(rows, correct, split["score_easy"], split["score_hard"])
    groups = {"easy": own == own.min(), "hard": own == own.max()}
    times = {r: run_scores[f"learning_time_{r}"] for r in REGIMES}
    return {"spearman": {r: notion_spearman(n) for r, n in notions.items()},
            "across_regimes": across, "hastiness": hastiness,
            "kernel": kernel_prediction(config, data, times, groups)}


def run_seed(twin: str, seed: int, workdir: str) -> dict:
    """Trains (or resumes) one twin's run at ``seed`` and returns :func:`analyse`."""
    config = twin_config(twin, seed, workdir)
    run_dir = os.path.join(workdir, twin, f"seed_{seed}")
    if not records.is_completed(run_dir):
        difficulty.run(config, run_dir)
    return analyse(twin, config, run_dir)


def aggregate(per_seed: Sequence) -> dict:
    """Every number of the per-seed results (same nesting) as its across-seed summary
    (:func:`lazy_hasty.analysis.inference.across_seeds`)."""
    if isinstance(per_seed[0], dict):
        return {k: aggregate([r[k] for r in per_seed]) for k in per_seed[0]}
    return inference.across_seeds([None if v is None else float(v) for v in per_seed],
                                  require_interval=False)


def twin_markdown(twin: str, result: dict) -> str:
    """The tables of one twin (the full correlation matrices are in the JSON)."""
    from experiments.richness_report import interval_cell, markdown, signs_cell
    pairs = list(itertools.combinations(REGIMES, 2))
    own = [[s, *(interval_cell(result["spearman"][r][f"{OWN}|{s}"]) for r in REGIMES)]
           for s in scores.SCORES]
    across = [[s, *(interval_cell(result["across_regimes"][s][f"{a}|{b}"]) for a, b in pairs)]
              for s in scores.SCORES]
    haste = [[n, interval_cell(v), signs_cell(v)] for n, v in result["hastiness"].items()]
    kernel, hard = result["kernel"], TWINS[twin][1] or "a low C-score decile"
    fit = [[r, interval_cell(kernel["spearman"][r])] for r in REGIMES]
    energy = [[g, *(interval_cell(kernel["energy_in_top"][g][str(k)]) for k in TOP_K)]
              for g in kernel["energy_in_top"]]
    return "\n".join([
        f"### {twin} twin ({TWINS[twin][0]})\n",
        f"Spearman of each score with the twin's own notion ({hard} is hard), per regime:\n",
        markdown(["score", *REGIMES], own),
        "The same score in two regimes:\n",
        markdown(["score", *(f"{a} vs {b}" for a, b in pairs)], across),
        f"Hastiness of {COMPARE[0]} over {COMPARE[1]} per notion (own: the twin's spec; a "
        "score: its tenths from reference runs, at equal training loss):\n",
        markdown(["notion", "hastiness [95% t]", "signs"], haste),
        "Spearman of the initial kernel's predicted learning order with the measured one:\n",
        markdown(["regime", "Spearman [95% t]"], fit),
        "Share of each own group's initial residual in the kernel's top eigenvectors:\n",
        markdown(["group", *(f"top {k}" for k in TOP_K)], energy)])


def run(workdir: str, twins: Sequence[str], seeds: Sequence[int]) -> dict:
    """Every twin's seeds (trained or resumed), then ``agreement.json`` and ``.md``;
    returns the report (``headline``, ``paths``)."""
    unknown = sorted(set(twins) - set(TWINS))
    if unknown or not twins:
        raise ValueError(f"--twins must name some of {tuple(TWINS)}, got {list(twins)}")
    if len(seeds) < 2:
        raise ValueError(f"an across-seed interval needs at least 2 seeds; got {len(seeds)}")
    results = {t: aggregate([run_seed(t, s, workdir) for s in seeds]) for t in twins}
    paths = [os.path.join(workdir, f"agreement.{ext}") for ext in ("json", "md")]
    records.write_json(paths[0], {"seeds": list(seeds), "twins": results})
    records.atomic_write(paths[1], lambda f: f.write(
        "\n".join(twin_markdown(t, r) for t, r in results.items())))
    headline = {t: {"hastiness": {n: v["mean"] for n, v in r["hastiness"].items()},
                    "kernel_spearman": {g: v["mean"] for g, v in r["kernel"]["spearman"].items()}}
                for t, r in results.items()}
    return {"headline": headline, "paths": paths}
