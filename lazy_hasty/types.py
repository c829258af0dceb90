"""The common types of the library, defined once."""

from __future__ import annotations

from typing import Any, Callable

import jax

Params = Any
"""A pytree of network parameters (``{"params": ...}`` contents, or tangents of them)."""

ApplyFn = Callable[[Params, jax.Array], jax.Array]
"""A pure network function ``f(params, x) -> outputs`` (what linearization needs)."""
