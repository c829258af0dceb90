"""Seeded randomness: every random draw of a run is a named stream of ``config.seed``.

A stream is ``seed`` followed by integers or names (a name counts as its
CRC-32), so adding a new stream never shifts the draws of another one, and the
same seed always gives the same records.
"""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np


def _word(part: int | str) -> int:
    return zlib.crc32(part.encode("utf-8")) if isinstance(part, str) else int(part)


def numpy_rng(seed: int, *stream: int | str) -> np.random.Generator:
    """The numpy generator of stream ``stream`` of ``seed`` (``default_rng([seed, *stream])``)."""
    return np.random.default_rng([int(seed), *(_word(p) for p in stream)])


def jax_key(seed: int, *stream: int) -> Any:
    """The JAX PRNG key of stream ``stream`` of ``seed`` (``PRNGKey(seed)`` folded in).

    JAX is imported here, so the numpy streams work without it."""
    import jax
    key = jax.random.PRNGKey(seed)
    for part in stream:
        key = jax.random.fold_in(key, part)
    return key
