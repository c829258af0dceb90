"""The initial tangent kernel's prediction of the learning order, in closed form.

The linearized model trains its training outputs ``f`` (n, C) with the kernel
``K(params0)``. With a class-diagonal kernel ``K[i, c, j, d] = Kbar[i, j] delta_cd``
(:func:`class_averaged`: exact for the readout layer, the average over classes
otherwise) and the cross-entropy linearized at its start ``f = 0`` (where
``softmax(f) - onehot ~ f / C - r0`` on class-centred ``f``, with
``r0 = onehot - 1/C``, :func:`initial_residual`), gradient flow on the mean loss is
``df/dt = -(lr / (n C)) Kbar (f - C r0)``, so

    f(tau) = C V (1 - exp(-Lambda tau)) V^T r0,     tau = lr t / (n C),

with ``Kbar = V Lambda V^T``. The squared loss on one-hot targets gives the same
form with ``r0 = onehot``. An example is learned when ``argmax_c f_ic = y_i``;
its predicted learning time is the first ``tau`` of a grid from which it stays
so (:func:`predicted_learning_times`). :func:`energy_in_top` asks where a group's
initial residual lies in the kernel's eigenbasis. Derivation: docs/scores.md.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def class_averaged(kernel: np.ndarray) -> np.ndarray:
    """``Kbar[i, j] = mean_c K[i, c, j, c]`` of an (n, C, n, C) kernel."""
    kernel = np.asarray(kernel, np.float64)
    n, c = kernel.shape[:2]
    if kernel.shape != (n, c, n, c):
        raise ValueError(f"kernel must be (n, C, n, C), got {kernel.shape}")
    return np.einsum("icjc->ij", kernel) / c


def initial_residual(y: np.ndarray, num_classes: int) -> np.ndarray:
    """``onehot(y) - 1/C``: minus the cross-entropy's output gradient at ``f = 0``."""
    return np.eye(num_classes)[np.asarray(y)] - 1.0 / num_classes


MAX_EXAMPLES = 20_000
"""The largest training set whose dense kernel :func:`eigenbasis` decomposes (its
``n x n`` matrix and eigenvectors take ``16 n**2`` bytes: 6.4 GB here)."""


def eigenbasis(kbar: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (descending, clipped at 0) and eigenvectors (columns) of ``Kbar``."""
    if len(kbar) > MAX_EXAMPLES:
        raise ValueError(f"the dense kernel spectrum takes at most {MAX_EXAMPLES} examples, "
                         f"got {len(kbar)}; the closed form needs every eigenpair: take a subset "
                         "of the examples (lazy_hasty.kernel_operator gives a larger "
                         "set's top eigenpairs without forming its kernel)")
    values, vectors = np.linalg.eigh(np.asarray(kbar, np.float64))
    order = np.argsort(values)[::-1]
    return np.maximum(values[order], 0.0), vectors[:, order]


def outputs(values: np.ndarray, vectors: np.ndarray, r0: np.ndarray,
            taus: Sequence[float]) -> np.ndarray:
    """``f(tau) / C = V (1 - exp(-Lambda tau)) V^T r0`` at each ``tau``: (T, n, C)."""
    coefficients = vectors.T @ r0                                   # (n, C)
    growth = 1.0 - np.exp(-np.outer(taus, values))                  # (T, n)
    return np.einsum("ik,tk,kc->tic", vectors, growth, coefficients)


def predicted_learning_times(values: np.ndarray, vectors: np.ndarray, y: np.ndarray,
                             num_classes: int, taus: Sequence[float]) -> np.ndarray:
    """The first ``tau`` of the ascending grid ``taus`` from which each example's
    predicted class is its label at every later ``tau``; ``inf`` when it is wrong at
    the last one (not learned for good within the grid)."""
    taus = np.asarray(taus, np.float64)
    if taus.ndim != 1 or not len(taus) or np.any(np.diff(taus) <= 0):
        raise ValueError("taus must be a non-empty ascending grid")
    y = np.asarray(y)
    r0 = initial_residual(y, num_classes)
    correct = outputs(values, vectors, r0, taus).argmax(axis=2) == y        # (T, n)
    wrong_later = np.flip(np.cumsum(np.flip(~correct, 0), 0), 0) > 0        # wrong at >= t
    first = np.argmax(~wrong_later, axis=0)
    return np.where(wrong_later[-1], np.inf, taus[first])


def energy_in_top(vectors: np.ndarray, r0: np.ndarray, mask: np.ndarray,
                  ks: Sequence[int]) -> np.ndarray:
    """For each ``k``, the fraction of the squared norm of the group's initial residual
    (``r0`` on the examples of ``mask``, zero elsewhere) that lies in the span of the
    kernel's top ``k`` eigenvectors."""
    masked = np.where(np.asarray(mask, bool)[:, None], r0, 0.0)
    total = float(np.sum(masked ** 2))
    if total == 0:
        raise ValueError("the group has no residual energy (empty mask?)")
    captured = np.cumsum(np.sum((vectors.T @ masked) ** 2, axis=1))
    return np.array([captured[k - 1] if k else 0.0 for k in ks]) / total
