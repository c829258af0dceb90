"""How linear a run stayed (paper, Appendix A).

* ``kernel_alignment``: ``Tr[K1 K2] / (||K1||_F ||K2||_F)`` (Cristianini et al.
  2001), used on the tangent kernel against its value at initialisation.
* ``sign_similarity``: fraction of (example, ReLU unit) pairs whose
  pre-activation sign is the same as at initialisation.
* ``representation_alignment``: kernel alignment of the ``N x N`` Gram matrices
  of the penultimate features.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp

METRICS = ("sign_similarity", "ntk_alignment", "representation_alignment")
"""The three metrics' record keys (``evaluation.LinearityProbe`` writes them)."""


def _as_matrix(k: jax.Array) -> jax.Array:
    """Flattens an ``(N, C, N, C)`` kernel to ``(N C, N C)``; matrices pass through."""
    if k.ndim == 4:
        return k.reshape(k.shape[0] * k.shape[1], k.shape[2] * k.shape[3])
    if k.ndim != 2:
        raise ValueError(f"expected a kernel of rank 2 or 4, got shape {k.shape}")
    return k


def kernel_alignment(k1: jax.Array, k2: jax.Array) -> jax.Array:
    """``Tr[K1 K2] / (||K1||_F ||K2||_F)``; 1 for proportional kernels."""
    a, b = _as_matrix(k1), _as_matrix(k2)
    if a.shape != b.shape:
        raise ValueError(f"kernel shapes differ: {a.shape} vs {b.shape}")
    trace = jnp.sum(a * b.T)                    # Tr[A B] without the matmul
    return trace / (jnp.linalg.norm(a) * jnp.linalg.norm(b))


def sign_similarity(preacts0: Sequence[jax.Array],
                    preacts: Sequence[jax.Array]) -> jax.Array:
    """Fraction of all (example, unit) pre-activations with unchanged sign.

    Both arguments are lists of pre-activation tensors (one per ReLU layer, same
    shapes); every unit of every layer counts once. A unit is "on" when its
    pre-activation is > 0, as the ReLU sees it.
    """
    if len(preacts0) != len(preacts):
        raise ValueError("pre-activation lists have different lengths")
    same = sum(jnp.sum((a > 0) == (b > 0)) for a, b in zip(preacts0, preacts))
    total = sum(a.size for a in preacts0)
    return same / total


def gram(features: jax.Array) -> jax.Array:
    """``N x N`` Gram matrix ``phi phi^T`` of features flattened per example."""
    phi = features.reshape(features.shape[0], -1)
    return phi @ phi.T


def representation_alignment(features0: jax.Array, features: jax.Array) -> jax.Array:
    """Kernel alignment of the penultimate-feature Gram matrices."""
    return kernel_alignment(gram(features), gram(features0))
