"""What every experiment driver shares: config checks and the workdir contract."""

from __future__ import annotations

import os

import ml_collections


def check_keys(config: ml_collections.ConfigDict,
               reference: ml_collections.ConfigDict) -> None:
    """Rejects keys the experiment does not know (typos silently ignored are worse)."""
    unknown = sorted(set(config.keys()) - set(reference.keys()))
    if unknown:
        raise ValueError(f"unknown config key(s) {unknown} for experiment "
                         f"{config.experiment!r}; known keys: {sorted(reference.keys())}")


def check_workdir(workdir: str) -> str:
    """Validates the workdir; it is created only when a run's outputs are written."""
    if not workdir:
        raise ValueError("--workdir is required")
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise ValueError(f"--workdir {workdir!r} exists and is not a directory")
    return workdir
