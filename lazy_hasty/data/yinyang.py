"""The 2d yin-yang toy of Fig. 1 (Section 3).

Inputs live in the square ``[-1, 1]^2``. The label is ``+1`` on the lower half
plane (``x2 <= 0``) and ``-1`` on the upper one, flipped inside two small disks
of radius :data:`DISK_RADIUS`: the disk centred at ``(0.5, -0.5)`` (lower half)
is ``-1`` and the one centred at ``(-0.5, 0.5)`` (upper half) is ``+1``. The
disks are the "difficult" minority regions of the paper.

Everything is written with ``jax.numpy`` so sampling can be ``vmap``-ed over
seeds.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

DISK_RADIUS: float = 0.3
"""Radius of both flipped disks."""

DISK_CENTRES: tuple[tuple[float, float], ...] = ((0.5, -0.5), (-0.5, 0.5))
"""Centres ``(x1, x2)`` of the flipped disks."""

LOW: float = -1.0
HIGH: float = 1.0
"""Bounds of the input square ``[LOW, HIGH]^2``."""


def in_disks(points: jax.Array | np.ndarray) -> jax.Array:
    """Boolean ``(..., )`` mask: the point lies strictly inside one of the disks."""
    points = jnp.asarray(points)
    centres = jnp.asarray(DISK_CENTRES, dtype=points.dtype)  # (2, 2)
    sq_dist = jnp.sum((points[..., None, :] - centres) ** 2, axis=-1)  # (..., 2)
    return jnp.any(sq_dist < DISK_RADIUS**2, axis=-1)


def yinyang_labels(points: jax.Array | np.ndarray) -> jax.Array:
    """Labels in {+1, -1} (float32) of points of shape ``(..., 2)``.

    ``+1`` where ``x2 <= 0``, ``-1`` above, with the sign flipped inside the disks.
    Accepts numpy or jax arrays; always returns a jax array (traceable).
    """
    points = jnp.asarray(points)
    base = jnp.where(points[..., 1] <= 0, 1.0, -1.0)
    return jnp.where(in_disks(points), -base, base).astype(jnp.float32)


def sample_train(key: jax.Array, n: int = 100) -> tuple[jax.Array, jax.Array]:
    """``n`` points uniform on ``[-1, 1]^2`` (float32, ``(n, 2)``) and labels ``(n,)``.

    Deterministic given ``key``; ``jax.vmap(lambda k: sample_train(k, n))`` draws
    one training set per seed.
    """
    points = jax.random.uniform(key, (n, 2), dtype=jnp.float32, minval=LOW, maxval=HIGH)
    return points, yinyang_labels(points)


def grid_points(resolution: int = 100) -> jax.Array:
    """Cell centres of a regular ``resolution x resolution`` grid paving ``[-1, 1]^2``.

    Coordinates are ``-1 + (i + 0.5) * 2 / resolution``. Row-major with ``x1``
    varying fastest: point ``k = r * resolution + c`` has ``x1 = coord[c]`` and
    ``x2 = coord[r]``, so any per-point vector reshapes to ``(resolution,
    resolution)`` indexed ``[x2 index, x1 index]``, ready for
    ``imshow(..., origin="lower", extent=(-1, 1, -1, 1))``. Shape
    ``(resolution**2, 2)``, float32.
    """
    coords = LOW + (jnp.arange(resolution, dtype=jnp.float32) + 0.5) * (HIGH - LOW) / resolution
    x2, x1 = jnp.meshgrid(coords, coords, indexing="ij")  # each (res, res): [x2 idx, x1 idx]
    return jnp.stack([x1.ravel(), x2.ravel()], axis=-1)


