"""Comparing regimes at equal training progress (paper, Sections 3-4).

The non-linear regime trains faster overall, so regimes are compared where
they have made the same progress: the first step at which the mean training
loss reaches a threshold (yin-yang), and by interpolation onto a common
progress grid for per-group curves (image experiments).
"""

from __future__ import annotations

import numpy as np
import jax.numpy as jnp


def reached(loss, thresholds):
    """``loss <= threshold`` for each threshold (last axis); jnp or numpy."""
    return loss[..., None] <= thresholds


def first_crossings(curves: np.ndarray, thresholds) -> np.ndarray:
    """Index of the first step whose loss reaches each threshold, ``-1`` if never.

    ``curves`` has steps on its last axis; the result has shape
    ``curves.shape[:-1] + (len(thresholds),)``.
    """
    curves = np.asarray(curves)
    hit = reached(curves, np.asarray(thresholds, curves.dtype))   # (..., S, T)
    first = np.argmax(hit, axis=-2)
    return np.where(hit.any(axis=-2), first, -1)


def check_thresholds(thresholds, initial_loss: float) -> np.ndarray:
    """Validates loss thresholds: strictly decreasing, positive, below the start."""
    t = np.asarray(thresholds, dtype=np.float64)
    if t.ndim != 1 or t.size == 0:
        raise ValueError(f"thresholds must be a non-empty list, got {thresholds!r}")
    if np.any(t <= 0) or np.any(t >= initial_loss):
        raise ValueError(f"thresholds {t.tolist()} must lie in (0, {initial_loss:.4g}), "
                         "the initial training loss, to be crossed during training")
    if np.any(np.diff(t) >= 0):
        raise ValueError(f"thresholds {t.tolist()} must be strictly decreasing")
    return t


def masked_mean(values: jnp.ndarray, mask: jnp.ndarray, axis: int = 0):
    """Mean of ``values`` over ``axis`` where ``mask``; NaN where nothing is kept."""
    mask = jnp.broadcast_to(jnp.expand_dims(mask, tuple(range(mask.ndim, values.ndim))),
                            values.shape)
    count = mask.sum(axis)
    return jnp.where(count > 0, jnp.where(mask, values, 0).sum(axis) / jnp.maximum(count, 1),
                     jnp.nan)
