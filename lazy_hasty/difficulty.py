"""A notion of example difficulty, as one value: :class:`DifficultySpec`.

A spec names the evaluated group that should be learnt first (``easy``) and
the one that should be learnt late (``hard``), both as ``"split/group"``; the
record key that measures training progress and its direction; the summary
statistics that apply; and the figure panels. Drivers, figures and the
seeds aggregation read the spec (it is written to ``summary.json``) instead of
re-deriving the meaning of a difficulty from record key names, so a new
notion of difficulty is a new spec and nothing else.

The paper's three notions are built by :func:`label_noise` (Section 4,
clean/noisy), :func:`cscore_deciles` (Section 4, Fig. 2) and :func:`spurious`
(Section 5, Fig. 3).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

STATISTICS = ("hastiness", "hard_advantage")
"""Summary statistics a spec may ask for (:func:`lazy_hasty.analysis.progress.summarize`)."""

RUN_PROGRESS_KEYS = ("train_loss", "train_loss_ema", "batch_loss")
"""Progress keys every record carries, whatever its groups."""


@dataclasses.dataclass(frozen=True)
class Panel:
    """One figure panel: accuracy curves of ``groups`` (``"split/group"``) at equal progress."""

    title: str
    groups: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class DifficultySpec:
    """Which groups to compare, along which progress axis, with which statistics.

    ``progress_key`` is a record key: one of :data:`RUN_PROGRESS_KEYS` or
    ``"<split>/<group>/accuracy"`` / ``".../loss"`` of an evaluated group;
    ``decreasing`` says that progress makes it fall (a loss).
    """

    name: str
    easy: str
    hard: str
    progress_key: str = "train_loss"
    decreasing: bool = True
    progress_label: str = "mean training loss"
    statistics: tuple[str, ...] = STATISTICS   # the first is the headline (Fig. 5)
    panels: tuple[Panel, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "statistics", tuple(self.statistics))
        object.__setattr__(self, "panels", tuple(
            p if isinstance(p, Panel) else Panel(p[0], tuple(p[1])) for p in self.panels))
        for role, group in (("easy", self.easy), ("hard", self.hard)):
            if not isinstance(group, str) or group.count("/") != 1:
                raise ValueError(f"difficulty spec {self.name!r}: {role} group must be "
                                 f"'split/group', got {group!r}")
        if self.easy == self.hard:
            raise ValueError(f"difficulty spec {self.name!r}: easy and hard are both "
                             f"{self.easy!r}; name two different groups")
        unknown = [s for s in self.statistics if s not in STATISTICS]
        if unknown or not self.statistics:
            raise ValueError(f"difficulty spec {self.name!r}: statistics {self.statistics} "
                             f"must be a non-empty subset of {STATISTICS}")

    def figure_panels(self) -> tuple[Panel, ...]:
        """The panels of Figs. 2-4 (by default one: the easy and the hard group)."""
        return self.panels or (Panel(f"{self.name}: easy and hard", (self.easy, self.hard)),)

    def groups(self) -> list[str]:
        """Every group the spec refers to, in order of first mention."""
        named = [self.easy, self.hard] + [g for p in self.figure_panels() for g in p.groups]
        return list(dict.fromkeys(named))

    def difficulty_ladder(self) -> tuple[str, ...]:
        """The groups from easy to hard: an example's difficulty rank is its group's position.

        The groups between ``easy`` and ``hard`` (both included) in the first
        figure panel holding both, in panel order, turned to start at ``easy``
        (C-score deciles: ``decile_9`` ... ``decile_0``); ``(easy, hard)`` if no
        panel holds both.
        """
        for panel in self.figure_panels():
            if self.easy in panel.groups and self.hard in panel.groups:
                i, j = panel.groups.index(self.easy), panel.groups.index(self.hard)
                between = panel.groups[min(i, j):max(i, j) + 1]
                return between if i < j else between[::-1]
        return (self.easy, self.hard)

    def check_groups(self, evaluated: Iterable[str]) -> None:
        """Refuses a spec that names groups (or a progress key) the data does not have."""
        evaluated = list(evaluated)
        missing = [g for g in self.groups() if g not in evaluated]
        if missing:
            raise ValueError(f"difficulty spec {self.name!r} names groups {missing} that the "
                             f"dataset does not evaluate; it has {evaluated}")
        keys = set(RUN_PROGRESS_KEYS) | {f"{g}/{m}" for g in evaluated
                                         for m in ("accuracy", "loss")}
        if self.progress_key not in keys:
            raise ValueError(f"difficulty spec {self.name!r}: progress_key "
                             f"{self.progress_key!r} is not a record key; use one of "
                             f"{RUN_PROGRESS_KEYS} or '<split>/<group>/accuracy'")

    def to_dict(self) -> dict[str, Any]:
        """JSON form (as written to ``summary.json``)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "DifficultySpec":
        """Inverse of :meth:`to_dict`."""
        values = dict(values)
        values["panels"] = tuple(Panel(p["title"], tuple(p["groups"]))
                                 for p in values.get("panels", ()))
        return cls(**values)


def label_noise() -> DifficultySpec:
    """Section 4, clean vs noisy labels, compared at equal clean-example accuracy."""
    return DifficultySpec(
        "noise", easy="train/clean", hard="train/noisy", progress_key="train/clean/accuracy",
        decreasing=False, progress_label="clean-example accuracy",
        panels=(Panel("accuracy per group at equal progress",
                      ("train/clean", "train/noisy", "test/all")),))


def cscore_deciles(num_bins: int = 10) -> DifficultySpec:
    """Section 4 / Fig. 2, C-score deciles (hard: the lowest), at equal training loss."""
    deciles = tuple(f"train/decile_{k}" for k in range(num_bins))
    return DifficultySpec(
        "cscores", easy=deciles[-1], hard=deciles[0],
        panels=(Panel("training accuracy per C-score decile", deciles),))


def score_quantiles(score: str) -> DifficultySpec:
    """A per-example score's lowest and highest quantiles of the training set (easy and
    hard, :func:`lazy_hasty.data.groups.quantile_groups`), at equal training loss."""
    return DifficultySpec(
        f"score:{score}", easy="train/score_easy", hard="train/score_hard",
        panels=(Panel(f"training accuracy by {score}", ("train/score_easy",
                                                         "train/score_hard")),))


def spurious(easy: str, hard: str) -> DifficultySpec:
    """Section 5 / Fig. 3: the groups a spurious feature helps (``easy``) or misleads,
    on the balanced test set, at equal training loss; its headline statistic is
    the hard advantage (the minority's accuracy, linear minus non-linear)."""
    balanced = lambda split: (f"{split}/{easy}", f"{split}/{hard}")
    return DifficultySpec(
        "spurious", easy=f"balanced_test/{easy}", hard=f"balanced_test/{hard}",
        statistics=("hard_advantage", "hastiness"),
        panels=(Panel("test accuracy", ("test/all",)),
                Panel("balanced train accuracy", balanced("balanced_train")),
                Panel("balanced test accuracy", balanced("balanced_test"))))
