"""Paper figures, drawn from saved records alone (no training here).

Every figure of the reproduction lives in this module: Fig. 1 (the yin-yang
toy), Figs. 2 and 3 (example difficulty, spurious correlations; one run) and
Fig. 4 (bands over seeds), learning times, Fig. 5 (a sweep) and the richness
experiments (best rate against gamma, statistics against width, the collapse).
Uses matplotlib's "Agg" backend.

Each ``plot_*`` function saves its figure and returns it closed in pyplot: a
driver that draws many figures holds none open, while a caller (a test, a
notebook) can still read what was drawn (axes, titles, line data) or save it again.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.gridspec import GridSpec  # noqa: E402
from matplotlib.patches import Circle  # noqa: E402

from lazy_hasty import linearity  # noqa: E402
from lazy_hasty.engine import records  # noqa: E402
from lazy_hasty.analysis import progress  # noqa: E402
from lazy_hasty.difficulty import DifficultySpec  # noqa: E402
from lazy_hasty.data.yinyang import DISK_CENTRES, DISK_RADIUS  # noqa: E402

DELTA_CMAP = "RdYlGn_r"
"""Diverging map for Δloss = loss(non-linear) - loss(linear): green < 0 < red."""

SQUARE_EXTENT = (-1.0, 1.0, -1.0, 1.0)
"""``imshow`` extent of the yin-yang input square."""

PANEL_INCHES = 3.2
"""Side of one square panel of Fig. 1, in inches."""


def grid_to_image(values: np.ndarray, resolution: int | None = None) -> np.ndarray:
    """Reshape per-grid-point values ``(..., M)`` to images ``(..., res, res)``.

    Assumes the layout of :func:`lazy_hasty.data.yinyang.grid_points` (``x1``
    fastest), so the result is indexed ``[..., x2 index, x1 index]`` and is meant
    for ``imshow(origin="lower")``. ``resolution`` defaults to ``sqrt(M)``.
    """
    values = np.asarray(values)
    m = values.shape[-1]
    if resolution is None:
        resolution = math.isqrt(m)
    if resolution * resolution != m:
        raise ValueError(f"{m} grid values do not form a square of side {resolution}")
    return values.reshape(*values.shape[:-1], resolution, resolution)


def pretty_name(name: str) -> str:
    """Display form of a regime key: ``"alpha=100"`` -> ``"α=100"``."""
    return name.replace("alpha", "α")


def fig1_figsize(n_thresholds: int, n_references: int) -> tuple[float, float]:
    """Figure size (inches) used by :func:`plot_fig1`; width includes the colorbar."""
    ncols = max(n_thresholds, 2)
    return (PANEL_INCHES * ncols + 0.9, PANEL_INCHES * (1 + n_references))


def draw_yinyang_outline(ax: plt.Axes, *, color: str = "black", lw: float = 1.0) -> None:
    """Overlay the two disk outlines and the ``x2 = 0`` class boundary."""
    for centre in DISK_CENTRES:
        ax.add_patch(Circle(centre, DISK_RADIUS, fill=False, ec=color, lw=lw))
    ax.axhline(0.0, color=color, lw=0.6 * lw, ls=":")
    ax.set_xlim(SQUARE_EXTENT[:2])
    ax.set_ylim(SQUARE_EXTENT[2:])
    ax.set_aspect("equal")


def _extent(grid_points: np.ndarray | None, resolution: int) -> tuple[float, float, float, float]:
    """``imshow`` extent of a cell-centred grid (half a cell beyond the centres)."""
    if grid_points is None:
        return SQUARE_EXTENT
    g = grid_to_image(np.asarray(grid_points).T, resolution)  # (2, res, res)
    x1, x2 = g[0, 0, :], g[1, :, 0]
    h1 = (x1[-1] - x1[0]) / max(resolution - 1, 1) / 2
    h2 = (x2[-1] - x2[0]) / max(resolution - 1, 1) / 2
    return (float(x1[0] - h1), float(x1[-1] + h1), float(x2[0] - h2), float(x2[-1] + h2))


def _plot_loss_band(ax: plt.Axes, steps: np.ndarray, curves: np.ndarray, label: str,
                    quantiles: tuple[float, float]) -> None:
    """Median over runs with a quantile band, over the steps where any run has a value
    (a regime stopped early has NaN afterwards). The median is robust to the
    occasional late loss spike of one GD run."""
    curves = np.atleast_2d(np.asarray(curves, dtype=float))  # (runs, steps)
    keep = ~np.isnan(curves).all(axis=0)
    steps, curves = np.asarray(steps)[keep], curves[:, keep]
    (line,) = ax.plot(steps, np.nanmedian(curves, axis=0), label=label, lw=1.6)
    if curves.shape[0] > 1:
        lo, hi = np.nanquantile(curves, quantiles, axis=0)
        ax.fill_between(steps, lo, hi, color=line.get_color(), alpha=0.25, lw=0)


def plot_fig1(
    path: str,
    *,
    train_points: np.ndarray,
    train_labels: np.ndarray,
    steps: np.ndarray,
    loss_curves: Mapping[str, np.ndarray],
    thresholds: Sequence[float],
    delta_maps: Mapping[str, np.ndarray],
    grid_points: np.ndarray | None = None,
    quantiles: tuple[float, float] = (0.1, 0.9),
    loss_yscale: str = "linear",
    suptitle: str | None = None,
    dpi: int = 120,
) -> Figure:
    """Draw Fig. 1, save it as a PNG at ``path`` and return it.

    Args:
      train_points, train_labels: one seed's training set, ``(n, 2)`` and ``(n,)`` in {±1}.
      steps: ``(S,)`` step index of each recorded training loss.
      loss_curves: regime name (e.g. ``"alpha=1"``) -> ``(runs, S)`` (or ``(S,)``)
        training losses; drawn as the median with a shaded ``quantiles`` band.
      thresholds: ``T`` training-loss levels, drawn as horizontal lines in (b).
      delta_maps: linear reference name (e.g. ``"alpha=100"``, ``"linearized"``) ->
        ``(T, M)`` Δloss = loss(non-linear) - loss(reference) on the grid, at each
        threshold. One row of ``T`` maps per reference.
      grid_points: ``(M, 2)`` grid of :func:`~lazy_hasty.data.yinyang.grid_points`,
        used for the image extent (default: the whole square ``[-1, 1]^2``).

    All Δ maps share one symmetric colour scale, ``[-vmax, vmax]`` with ``vmax =
    max |Δ|`` over every map shown (NaNs ignored), green where the non-linear
    regime has the lower loss.
    """
    thresholds = [float(t) for t in thresholds]
    n_t, refs = len(thresholds), list(delta_maps)
    maps = {r: np.asarray(delta_maps[r], dtype=float).reshape(n_t, -1) for r in refs}
    vmax = _max_abs(maps)
    fig = plt.figure(figsize=fig1_figsize(n_t, len(refs)), layout="constrained")
    gs = GridSpec(1 + len(refs), max(n_t, 2), figure=fig)
    _fig1_training_set(fig.add_subplot(gs[0, 0]), train_points, train_labels)
    _fig1_losses(fig.add_subplot(gs[0, 1:]), steps, loss_curves, thresholds, quantiles,
                 loss_yscale)
    _fig1_delta_maps(fig, gs, maps, thresholds, grid_points, vmax if vmax > 0 else 1e-12)
    if suptitle:
        fig.suptitle(suptitle)
    return _save_and_close(fig, path, dpi)


_FIG1_LETTERS = "cdefghijklmnopqrstuvwxyz"
"""Panel letter of each threshold's Δ map in Fig. 1 (after (a) and (b))."""


def _max_abs(maps: Mapping[str, np.ndarray]) -> float:
    """``max |value|`` over the finite values of every map (0 when there are none)."""
    finite = [np.abs(m[np.isfinite(m)]) for m in maps.values()]
    finite = [f for f in finite if f.size]
    return float(max(f.max() for f in finite)) if finite else 0.0


def _fig1_training_set(ax: plt.Axes, train_points: np.ndarray,
                       train_labels: np.ndarray) -> None:
    """Panel (a): one seed's training set over the yin-yang outline."""
    pts, lab = np.asarray(train_points), np.asarray(train_labels)
    for value, colour, name in ((1, "tab:blue", "+1"), (-1, "tab:orange", "−1")):
        sel = lab == value
        ax.scatter(pts[sel, 0], pts[sel, 1], s=12, c=colour, label=f"y = {name}",
                   edgecolors="k", linewidths=0.3)
    draw_yinyang_outline(ax)
    ax.legend(loc="upper right", fontsize=7, framealpha=0.9)
    ax.set(title="(a) training set (one seed)", xlabel="$x_1$", ylabel="$x_2$")


def _fig1_losses(ax: plt.Axes, steps: np.ndarray, loss_curves: Mapping[str, np.ndarray],
                 thresholds: Sequence[float], quantiles: tuple[float, float],
                 loss_yscale: str) -> None:
    """Panel (b): training loss of each regime over steps (log axis), thresholds dashed."""
    steps = np.asarray(steps)
    for name, curves in loss_curves.items():
        _plot_loss_band(ax, steps, curves, pretty_name(name), quantiles)
    for i, thr in enumerate(thresholds):
        ax.axhline(thr, color="grey", ls="--", lw=0.8)
        ax.annotate(f"({_FIG1_LETTERS[i]}) {thr:g}", (0.005, thr),
                    xycoords=("axes fraction", "data"),
                    ha="left", va="bottom", fontsize=7, color="dimgrey")
    if steps.size and steps.min() <= 0:  # step 0 has no logarithm: linear below 1
        ax.set_xscale("symlog", linthresh=1)
        ax.set_xlim(left=0)
    else:
        ax.set_xscale("log")
    ax.set_yscale(loss_yscale)
    q_lo, q_hi = (round(100 * q) for q in quantiles)
    ax.set(title=f"(b) training loss (median, {q_lo}–{q_hi}% band)", xlabel="step",
           ylabel="train loss")
    ax.legend(fontsize=8, loc="upper right")


def _fig1_delta_maps(fig: plt.Figure, gs: GridSpec, maps: Mapping[str, np.ndarray],
                     thresholds: Sequence[float], grid_points: np.ndarray | None,
                     scale: float) -> None:
    """Panels (c, d, ...): Δloss maps on ``[-scale, scale]``, one row per linear
    reference (grid rows 1, 2, ...), one column per threshold, and their colorbar."""
    if not maps:
        return
    resolution = math.isqrt(next(iter(maps.values())).shape[-1])
    extent = _extent(grid_points, resolution)
    map_axes, im = [], None
    for row, (ref, values) in enumerate(maps.items(), start=1):
        images = grid_to_image(values, resolution)
        for i, thr in enumerate(thresholds):
            ax = fig.add_subplot(gs[row, i])
            im = ax.imshow(images[i], origin="lower", extent=extent, cmap=DELTA_CMAP,
                           vmin=-scale, vmax=scale, interpolation="nearest")
            draw_yinyang_outline(ax)
            ax.set_title(f"({_FIG1_LETTERS[i]}) Δloss at train loss {thr:g}\n"
                         f"(vs {pretty_name(ref)})", fontsize=9)
            ax.set_xticks([-1, 0, 1])
            ax.set_yticks([-1, 0, 1])
            map_axes.append(ax)
    if im is not None:
        cbar = fig.colorbar(im, ax=map_axes, shrink=0.8, aspect=30)
        cbar.set_label("Δloss = non-linear − linear\n(green: non-linear lower)")


def save_figure(fig, path: str, dpi: int) -> None:
    """Saves ``fig`` atomically (a temporary file renamed over ``path``): a kill
    never leaves a half-written figure. The format follows ``path``'s extension."""
    fmt = path.rsplit(".", 1)[-1].lower() if "." in path else "png"
    records.atomic_write(path, lambda f: fig.savefig(f, format=fmt, dpi=dpi), mode="wb")


def _save_and_close(fig: Figure, path: str, dpi: int) -> Figure:
    """Saves ``fig`` (:func:`save_figure`), closes it in pyplot and returns it."""
    save_figure(fig, path, dpi)
    plt.close(fig)
    return fig


REGIME_STYLES = ("-", "--", ":", "-.")
"""Line style of each regime, in the order given (paper: solid α=1, dashed α=100)."""


def _regime_curve(records: Sequence[Mapping], regime: str, x_key: str, y_key: str,
                  decreasing: bool, num: int = 60) -> tuple[np.ndarray, np.ndarray]:
    """``y_key`` at the first passage of ``x_key`` through a grid over its range."""
    rows = [r for r in records if r["regime"] == regime and r.get(y_key) is not None]
    if len(rows) < 2:
        return np.array([]), np.array([])
    x = np.array([r[x_key] for r in rows], float)
    y = np.array([r[y_key] for r in rows], float)
    try:
        grid = progress.common_grid(x, x, decreasing=decreasing, num=num)
    except ValueError:                          # no progress at all
        return x[:1], y[:1]
    return grid, progress.at_progress(x, y, grid, decreasing=decreasing)


def _colours(spec: DifficultySpec, groups: Sequence[str]) -> list:
    """Green for the easy group's name, red for the hard one's, then blue, purple, ...;
    a colour ramp for many groups (C-score deciles)."""
    if len(groups) > 4:
        return list(plt.cm.viridis(np.linspace(0, 0.95, len(groups))))
    role = {spec.easy.split("/")[1]: "tab:green", spec.hard.split("/")[1]: "tab:red"}
    others = iter(("tab:blue", "tab:purple", "tab:orange", "tab:brown"))
    return [role.get(g.split("/")[1]) or next(others) for g in groups]


def plot_difficulty(path: str, records: Sequence[Mapping], *, regimes: Sequence[str],
                    spec: DifficultySpec, dpi: int = 110) -> Figure:
    """Figs. 2 and 3 from records: the spec's panels of group accuracy against the
    spec's progress measure (axis reversed when it decreases: progress goes
    right), then the linearity metrics. Solid line: first regime; dashed: second.
    Saved at ``path``; returns the figure.
    """
    x_key, decreasing, xlabel = spec.progress_key, spec.decreasing, spec.progress_label
    panels = spec.figure_panels()
    widths = [2.4 if len(panels) == 1 else 1.4] * len(panels)
    fig = plt.figure(figsize=(12 + 2.5 * (len(panels) - 1), 4.2), layout="constrained")
    gs = GridSpec(1, len(panels) + 1 + len(linearity.METRICS), figure=fig,
                  width_ratios=widths + [0.2] + [1] * len(linearity.METRICS))
    styles = ", ".join(f"{s} {pretty_name(r)}" for r, s in zip(regimes, REGIME_STYLES))
    for i, panel in enumerate(panels):
        ax = fig.add_subplot(gs[0, i])
        for regime, style in zip(regimes, REGIME_STYLES):
            for group, colour in zip(panel.groups, _colours(spec, panel.groups)):
                x, y = _regime_curve(records, regime, x_key, f"{group}/accuracy", decreasing)
                name = "test" if group.startswith("test/") else group.split("/", 1)[1]
                ax.plot(x, y, style, color=colour, lw=1.3,
                        label=name if regime == regimes[0] else None)
        if decreasing:
            ax.invert_xaxis()
        ax.set(xlabel=xlabel, ylabel="accuracy", title=f"{panel.title}\n{styles}")
        ax.legend(fontsize=7, ncol=2 if len(panel.groups) > 5 else 1)
    for i, metric in enumerate(linearity.METRICS):
        ax = fig.add_subplot(gs[0, len(panels) + 1 + i])
        for regime, style in zip(regimes, REGIME_STYLES):
            x, y = _regime_curve(records, regime, x_key, metric, decreasing, num=30)
            ax.plot(x, y, style, color="k", marker=".", ms=3, label=pretty_name(regime))
        if decreasing:
            ax.invert_xaxis()
        ax.set(title=metric.replace("_", " "), xlabel=xlabel, ylim=(-0.05, 1.05))
        if i == 0:
            ax.legend(fontsize=7)
    return _save_and_close(fig, path, dpi)


def seed_panels(spec: DifficultySpec) -> list[tuple[str, str]]:
    """Fig. 4 panels ``(title, record key)``: one per group of the spec's panels."""
    title = lambda g: "test accuracy" if g == "test/all" else g.replace("_", " ").replace(
        "/", ": ")
    return [(title(g), f"{g}/accuracy") for p in spec.figure_panels() for g in p.groups]


def _seed_curves(records: Sequence[Mapping], regime: str, *keys: str) -> list[np.ndarray]:
    """One array per key of the records of ``regime`` that carry every key, in order."""
    rows = [r for r in records
            if r.get("regime") == regime and all(r.get(k) is not None for k in keys)]
    return [np.array([r[k] for r in rows], float) for k in keys]


def align_runs(runs: Sequence[Sequence[Mapping]], regime: str, x_key: str, y_key: str,
               grid: np.ndarray, decreasing: bool = True) -> np.ndarray:
    """``(seeds, G)``: each seed's ``y_key`` at the first passage of ``x_key`` through
    ``grid`` (:func:`lazy_hasty.analysis.progress.at_progress`, linear interpolation); NaN
    where a seed has no such records or never reaches a level."""
    grid = np.asarray(grid, float)
    out = np.full((len(runs), len(grid)), np.nan)
    for s, records in enumerate(runs):
        x, y = _seed_curves(records, regime, x_key, y_key)
        if x.size:
            out[s] = progress.at_progress(x, y, grid, decreasing=decreasing)
    return out


def plot_seed_bands(path: str, runs: Sequence[Sequence[Mapping]], *, regimes: Sequence[str],
                    panels: Sequence[tuple[str, str]], x_key: str = "train_loss",
                    decreasing: bool = True, dpi: int = 110) -> Figure:
    """Fig. 3/4 over seeds: per panel ``(title, y_key)``, each regime's median over
    seeds (line) and min–max band over seeds (shaded), against progress.

    ``runs`` holds one record list per seed (records as in ``metrics.jsonl``).
    Every curve is first read on one progress grid shared by all seeds and
    regimes (:func:`lazy_hasty.analysis.progress.common_grid`, :func:`align_runs`), so
    seeds are compared at equal progress rather than equal step; it raises
    :class:`~lazy_hasty.analysis.progress.NoCommonProgressError` when they share no
    range. ``x_key`` is the progress key (axis reversed when ``decreasing``:
    progress goes right). Saved at ``path``; returns the figure.
    """
    grid = progress.common_grid(*(_seed_curves(records, regime, x_key)[0]
                                  for records in runs for regime in regimes),
                                decreasing=decreasing)
    colours = ("tab:blue", "tab:orange", "tab:green", "tab:red")
    ncols = min(len(panels), 4)
    nrows = max(1, math.ceil(len(panels) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.4 * ncols, 3.0 * nrows),
                             layout="constrained", squeeze=False)
    for ax, (title, y_key) in zip(axes.flat, panels):
        for regime, style, colour in zip(regimes, REGIME_STYLES, colours):
            curves = align_runs(runs, regime, x_key, y_key, grid, decreasing)
            keep = ~np.isnan(curves).all(axis=0)
            if not keep.any():
                continue
            x, c = grid[keep], curves[:, keep]
            ax.plot(x, np.nanmedian(c, axis=0), style, color=colour, lw=1.5,
                    label=pretty_name(regime))
            ax.fill_between(x, np.nanmin(c, axis=0), np.nanmax(c, axis=0), color=colour,
                            alpha=0.2, lw=0)
        if decreasing:
            ax.invert_xaxis()
        ax.set(title=title, xlabel=x_key.replace("_", " "),
               ylabel="accuracy" if y_key.endswith("accuracy") else y_key)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    axes.flat[0].legend(fontsize=7)
    fig.suptitle(f"median and min–max over {len(runs)} seed(s), at equal progress")
    return _save_and_close(fig, path, dpi)


def _ladder_colours(spec: DifficultySpec, ladder: Sequence[str]) -> list:
    """:func:`_colours` of the ladder groups, a ramp running as in Figs. 2-3 (easy last)."""
    return _colours(spec, list(ladder)[::-1])[::-1]


def _learning_time_cdfs(ax: plt.Axes, times: Mapping[str, np.ndarray], regime: str,
                        spec: DifficultySpec) -> None:
    """One regime's empirical CDF of learning time per ladder group (censored examples
    count in each group's total, so a curve tops out at its learned fraction)."""
    ladder = [str(g) for g in times["ladder"]]
    time, censored = times[f"time_{regime}"], times[f"censored_{regime}"]
    for k, (group, colour) in enumerate(zip(ladder, _ladder_colours(spec, ladder))):
        mine = times["rank"] == k
        learned = np.sort(time[mine & ~censored])
        learned = learned[::-1] if spec.decreasing else learned
        fraction = np.arange(1, len(learned) + 1) / max(int(mine.sum()), 1)
        share = 100 * float(censored[mine].mean()) if mine.any() else math.nan
        ax.step(learned, fraction, where="post", color=colour, lw=1.3,
                label=f"{group.split('/', 1)[1]} ({share:.0f}% censored)")
    if spec.decreasing:
        ax.invert_xaxis()
    total = 100 * float(censored.mean()) if censored.size else math.nan
    ax.set_title(f"{pretty_name(regime)}: learned for good ({total:.0f}% censored)",
                 fontsize=10)
    ax.set(xlabel=spec.progress_label, ylabel="fraction of the group learned", ylim=(-0.02, 1.02))
    ax.legend(fontsize=6, ncol=2 if len(ladder) > 5 else 1)


def _learning_time_scatter(ax: plt.Axes, times: Mapping[str, np.ndarray],
                           compare: Sequence[str], spec: DifficultySpec) -> None:
    """Learning time of each example in ``compare[0]`` against ``compare[1]``, by group;
    examples censored in either regime are left out (their count is in the title)."""
    first, second = compare
    ladder = [str(g) for g in times["ladder"]]
    x, y = times[f"time_{first}"], times[f"time_{second}"]
    both = ~(times[f"censored_{first}"] | times[f"censored_{second}"])
    for k, (group, colour) in enumerate(zip(ladder, _ladder_colours(spec, ladder))):
        keep = both & (times["rank"] == k)
        ax.scatter(x[keep], y[keep], s=5, color=colour, alpha=0.6, lw=0,
                   label=group.split("/", 1)[1])
    if both.any():
        ends = [min(x[both].min(), y[both].min()), max(x[both].max(), y[both].max())]
        ax.plot(ends, ends, ":", color="grey", lw=0.8)
    if spec.decreasing:
        ax.invert_xaxis()
        ax.invert_yaxis()
    ax.set_title(f"per example ({int((~both).sum())} censored left out)", fontsize=10)
    ax.set(xlabel=f"{pretty_name(first)}: {spec.progress_label}",
           ylabel=f"{pretty_name(second)}: {spec.progress_label}")
    ax.legend(fontsize=6, ncol=2 if len(ladder) > 5 else 1, markerscale=2)


def plot_learning_times(path: str, times: Mapping[str, np.ndarray], spec: DifficultySpec,
                        compare: Sequence[str] | None, *, dpi: int = 110) -> Figure:
    """Per-example learning times (``learning_times.npz`` arrays, see
    :func:`lazy_hasty.analysis.learning_times.difficulty_learning_times`): one panel per regime
    of per-group empirical CDFs on the spec's progress axis (reversed when it
    decreases: progress goes right), then ``compare[0]`` against ``compare[1]`` per
    example (no scatter when ``compare`` is None: a run of one regime). Saved at
    ``path``; returns the figure.
    """
    regimes = [str(r) for r in times["regimes"]]
    panels = len(regimes) + (compare is not None)
    fig, axes = plt.subplots(1, panels, figsize=(3.8 * panels, 3.6), layout="constrained",
                             squeeze=False)
    for ax, regime in zip(axes[0], regimes):
        _learning_time_cdfs(ax, times, regime, spec)
    if compare is not None:
        _learning_time_scatter(axes[0, -1], times, compare, spec)
    return _save_and_close(fig, path, dpi)


def _sweep_statistic_panel(ax: plt.Axes, summary: Mapping, stat: str, log_axis: bool) -> None:
    """Fig. 5a: the statistic against the axis value, seeds and across-seed mean."""
    rows = summary[stat]["by_value"]
    for row in rows:
        seeds = [v for v in row["values"] if v is not None]
        ax.plot([row["value"]] * len(seeds), seeds, "o", color="0.6", ms=3, zorder=1)
    done = [r for r in rows if r["mean"] is not None]
    x = np.array([r["value"] for r in done])
    mean = np.array([r["mean"] for r in done])
    lo_hi = np.array([r["interval"] or [r["mean"], r["mean"]] for r in done]).reshape(-1, 2)
    ax.errorbar(x, mean, yerr=[mean - lo_hi[:, 0], lo_hi[:, 1] - mean], fmt="o-", color="C0",
                capsize=3, label="mean over seeds, 95% t interval", zorder=2)
    ax.axhline(0.0, color="k", ls="--", lw=1,
               label=f"{summary['reference']} (alpha -> inf): 0 by definition")
    if log_axis:
        ax.set_xscale("log")
    ax.set_xlabel(summary["axis"])
    ax.set_ylabel(stat.replace("_", " "))
    ax.set_title(f"{stat.replace('_', ' ')} against {summary['reference']}, per seed")
    ax.legend(fontsize=7)


def _sweep_linearity_panel(ax: plt.Axes, summary: Mapping, stat: str, metric: str) -> None:
    """Fig. 5b/c: each run's statistic against its linearity at the end of training."""
    values = np.array(summary["values"], float)
    shade = plt.get_cmap("viridis")(np.linspace(0, 1, len(values)))
    for colour, v, s_row, m_row in zip(shade, values, summary[stat]["by_value"],
                                       summary[metric]["by_value"]):
        pairs = [(m, s) for m, s in zip(m_row["values"], s_row["values"])
                 if m is not None and s is not None]
        if pairs:
            ax.plot(*zip(*pairs), "o", color=colour, ms=4, label=f"{summary['axis']}={v:g}")
    ax.set_xlabel(f"{metric.replace('_', ' ')} at the end of training")
    ax.set_ylabel(stat.replace("_", " "))
    ax.legend(fontsize=6, ncol=2)


def plot_sweep(path: str, summary: Mapping, spec: DifficultySpec, *,
               dpi: int = 120) -> Figure:
    """Fig. 5: the spec's first statistic along the sweep's axis, and against how
    linear each run stayed (sign similarity, NTK alignment). Saved at ``path``;
    returns the figure."""
    stat = spec.statistics[0]
    log_axis = min(summary["values"]) > 0
    fig, axes = plt.subplots(1, 3, figsize=(3 * PANEL_INCHES * 1.3, PANEL_INCHES * 1.2))
    _sweep_statistic_panel(axes[0], summary, stat, log_axis)
    for ax, metric in zip(axes[1:], ("sign_similarity", "ntk_alignment")):
        _sweep_linearity_panel(ax, summary, stat, metric)
    fig.suptitle(f"{spec.name}: {len(summary['seeds'])} seeds")
    fig.tight_layout()
    return _save_and_close(fig, path, dpi)


def plot_rate_scaling(path: str, x: Sequence[float], best_rates: Sequence[Sequence],
                      scaling: Mapping, *, dpi: int = 120) -> Figure:
    """The best learning rate against gamma, log-log: each seed's, their geometric
    mean, and the slope fitted on each side of the crossover next to the predicted one
    (:func:`lazy_hasty.analysis.knobs.rate_scaling`)."""
    fig, ax = plt.subplots(figsize=(PANEL_INCHES * 1.5, PANEL_INCHES * 1.2))
    for xi, rates in zip(x, best_rates):
        kept = [r for r in rates if r is not None]
        ax.plot([xi] * len(kept), kept, "o", color="0.6", ms=3)
    means = [(xi, math.exp(np.mean(np.log([r for r in rates if r is not None]))))
             for xi, rates in zip(x, best_rates) if any(r is not None for r in rates)]
    mx, my = map(np.array, zip(*means))
    ax.plot(mx, my, "o", color="C0", label="geometric mean over seeds")
    c = scaling["crossover"]
    anchor = np.exp(np.interp(np.log(c), np.log(mx), np.log(my)))
    for side, colour, span in (("lazy_side", "C1", mx[mx <= c]), ("rich_side", "C2", mx[mx >= c])):
        s = scaling[side]
        for slope, style, what in ((s["mean"], "-", "fitted"), (s["predicted"], ":", "predicted")):
            if slope is not None and len(span):
                ax.plot(span, anchor * (span / c) ** slope, style, color=colour,
                        label=f"{side.replace('_', ' ')}: {what} slope {slope:.2f}")
    fitted = scaling.get("fitted_break", {}).get("log10_break", {}).get("mean")
    if fitted is not None:
        ax.axvline(10 ** fitted, color="0.4", ls="--", lw=1,
                   label=f"fitted break, gamma = {10 ** fitted:.2g} (mean log over seeds)")
    ax.set(xscale="log", yscale="log", xlabel="gamma", ylabel="best learning rate (applied)")
    ax.legend(fontsize=6)
    fig.tight_layout()
    return _save_and_close(fig, path, dpi)


def plot_knob_series(path: str, summaries: Mapping[str, Mapping], xlabel: str,
                     stats: Sequence[str], *, dpi: int = 120) -> Figure:
    """One panel per statistic against the swept value (log x), one line per sweep
    (``summaries``: label -> ``sweep_summary.json``): across-seed means and 95% t
    intervals."""
    fig, axes = plt.subplots(1, len(stats), figsize=(len(stats) * PANEL_INCHES * 1.2,
                                                     PANEL_INCHES * 1.1))
    for ax, stat in zip(np.atleast_1d(axes), stats):
        for colour, (label, summary) in enumerate(summaries.items()):
            rows = [r for r in summary[stat]["by_value"] if r["mean"] is not None]
            x, mean = np.array([r["value"] for r in rows]), np.array([r["mean"] for r in rows])
            lo_hi = np.array([r["interval"] or [r["mean"]] * 2 for r in rows]).reshape(-1, 2)
            ax.errorbar(x, mean, yerr=[mean - lo_hi[:, 0], lo_hi[:, 1] - mean], fmt="o-",
                        color=f"C{colour}", capsize=3, label=label)
        ax.set(xscale="log", xlabel=xlabel, ylabel=stat.replace("_", " "))
        ax.legend(fontsize=7)
    fig.tight_layout()
    return _save_and_close(fig, path, dpi)


def plot_collapse(path: str, runs: Sequence[Mapping], stat: str, *, dpi: int = 120) -> Figure:
    """Each run's ``stat`` against its end-of-training sign similarity and NTK alignment,
    coloured by the knob that moved it (:func:`lazy_hasty.analysis.knobs.runs_of`)."""
    metrics = ("sign_similarity", "ntk_alignment")
    fig, axes = plt.subplots(1, 2, figsize=(2 * PANEL_INCHES * 1.3, PANEL_INCHES * 1.2))
    knobs = list(dict.fromkeys(r["knob"] for r in runs))
    for ax, metric in zip(axes, metrics):
        for colour, knob in enumerate(knobs):
            pairs = [(r[metric], r[stat]) for r in runs if r["knob"] == knob
                     and r[metric] is not None and r[stat] is not None]
            if pairs:
                ax.plot(*zip(*pairs), "o", color=f"C{colour}", ms=4, alpha=0.8, label=knob)
        ax.axhline(0.0, color="k", ls="--", lw=1)
        ax.set(xlabel=f"{metric.replace('_', ' ')} at the end of training",
               ylabel=stat.replace("_", " "))
        ax.legend(fontsize=7)
    fig.tight_layout()
    return _save_and_close(fig, path, dpi)
