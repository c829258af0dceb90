"""The empirical NTK as a matrix-free operator, and its top eigenpairs.

``K V = J (J^T V)`` for a block ``V`` of ``p`` vectors shaped ``(N, C, p)``: one
pass of vjps over the examples sums ``J^T V`` (``p`` parameter tangents), one pass
of jvps maps them back. Neither forms ``J`` nor ``K``: the working set is a chunk's
forward and backward pass for ``p`` vectors plus ``p`` parameter-sized tangents.

:func:`top_eigenpairs` runs block Lanczos on that operator: the products in the
parameters' precision (float32 as trained), the Krylov basis in float64 on the
host with full reorthogonalisation (twice, against every earlier block), so that
clusters of nearly equal eigenvalues (a kernel close to ``K_0 (x) I_C``) come out
whole up to the block size. Each returned pair carries its residual
``||K u - lambda u|| / lambda`` from one more product.
"""

from __future__ import annotations

import functools
from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from lazy_hasty.types import ApplyFn, Params

MatVec = Callable[[np.ndarray], np.ndarray]


def _chunked(a: jax.Array, size: int) -> jax.Array:
    """``(n_chunks, size, ...)``, zero-padded."""
    pad = -len(a) % size
    a = jnp.concatenate([a, jnp.zeros((pad,) + a.shape[1:], a.dtype)]) if pad else a
    return a.reshape((-1, size) + a.shape[1:])


@functools.partial(jax.jit, static_argnums=(0, 4))
def _product(apply_fn: ApplyFn, params: Params, x: jax.Array, v: jax.Array, size: int
             ) -> jax.Array:
    """``K V`` for ``V`` of shape ``(N, C, p)``, ``size`` examples at a time. Padded
    rows repeat a real example with a zero vector: they add nothing."""
    n = len(x)
    xs = _chunked(x, size)
    xs = jnp.where(jnp.arange(xs.shape[0] * size).reshape(xs.shape[:2] + (1,) * (x.ndim - 1))
                   < n, xs, x[0])
    vs = _chunked(v, size)

    def pull(total, chunk):
        xc, vc = chunk
        _, vjp_fn = jax.vjp(lambda p: apply_fn(p, xc), params)
        tangents = jax.vmap(lambda col: vjp_fn(col)[0], in_axes=2)(vc)
        return jax.tree_util.tree_map(jnp.add, total, tangents), None

    zero = jax.tree_util.tree_map(lambda a: jnp.zeros((v.shape[-1],) + a.shape, a.dtype), params)
    tangents, _ = jax.lax.scan(pull, zero, (xs, vs))

    def push(_, xc):
        jvp = lambda t: jax.jvp(lambda p: apply_fn(p, xc), (params,), (t,))[1]
        return None, jnp.moveaxis(jax.vmap(jvp)(tangents), 0, -1)

    _, out = jax.lax.scan(push, None, xs)
    return out.reshape((-1,) + out.shape[2:])[:n]


def kernel_operator(apply_fn: ApplyFn, params: Params, x: jax.Array, *,
                    chunk_size: Optional[int] = None) -> MatVec:
    """``matvec(V) -> K V`` of the empirical NTK on ``x``: ``V`` of shape ``(N, C)``
    or ``(N, C, p)`` (a NumPy or JAX array, any float dtype), computed in the
    parameters' dtype and returned as float64 NumPy. ``chunk_size`` examples go
    through one pass at a time (None: all)."""
    size = len(x) if chunk_size is None else min(len(x), int(chunk_size))
    if size < 1:
        raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")
    dtype = jax.tree_util.tree_leaves(params)[0].dtype

    def matvec(v):
        single = np.ndim(v) == 2
        block = jnp.asarray(v, dtype)[..., None] if single else jnp.asarray(v, dtype)
        out = np.asarray(_product(apply_fn, params, x, block, size), np.float64)
        return out[..., 0] if single else out

    return matvec


class Eigenpairs(NamedTuple):
    """Top eigenpairs, largest first: ``values (k,)``, ``vectors (N, C, k)``
    (orthonormal over ``N * C``), ``residuals (k,)`` = ``||K u - lambda u|| /
    lambda``, ``products``: how many kernel-vector products it took."""

    values: np.ndarray
    vectors: np.ndarray
    residuals: np.ndarray
    products: int


def _orthonormal_block(w: np.ndarray, basis: list[np.ndarray], rng: np.random.Generator
                       ) -> tuple[np.ndarray, np.ndarray]:
    """``w`` orthogonalised twice against ``basis``, then QR: ``(Q, R)``. Directions
    it has lost (an invariant subspace) are refilled with random ones orthogonal to
    everything, with zero rows in ``R``."""
    for _ in range(2):
        for q in basis:
            w = w - q @ (q.T @ w)
    q, r = np.linalg.qr(w)
    lost = np.abs(np.diag(r)) <= 1e-10 * max(1.0, np.abs(r).max())
    if lost.any():
        fill = rng.standard_normal((w.shape[0], int(lost.sum())))
        for _ in range(2):
            for b in basis + [q[:, ~lost]]:
                fill = fill - b @ (b.T @ fill)
        q[:, lost] = np.linalg.qr(fill)[0]
        r[lost] = 0.0
    return q, r


def _ritz(alphas: list, betas: list, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top ``k`` Ritz values, their coefficients in the basis and the Lanczos
    estimate of their residual norms ``||B_last s_last||``."""
    p, m = alphas[0].shape[0], len(alphas)
    t = np.zeros((m * p, m * p))
    for j, a in enumerate(alphas):
        t[j * p:(j + 1) * p, j * p:(j + 1) * p] = a
    for j, b in enumerate(betas[:m - 1]):
        t[(j + 1) * p:(j + 2) * p, j * p:(j + 1) * p] = b
        t[j * p:(j + 1) * p, (j + 1) * p:(j + 2) * p] = b.T
    values, vectors = np.linalg.eigh(t)
    top = np.argsort(values)[::-1][:k]
    s = vectors[:, top]
    estimate = np.linalg.norm(betas[m - 1] @ s[-p:], axis=0) if len(betas) >= m else np.zeros(k)
    return values[top], s, estimate


def top_eigenpairs(matvec: MatVec, shape: tuple[int, int], k: int, *,
                   block_size: Optional[int] = None, tol: float = 1e-4,
                   max_products: int = 2000, seed: int = 0) -> Eigenpairs:
    """The ``k`` largest eigenpairs of the symmetric PSD operator ``matvec`` on
    ``(N, C)`` arrays (e.g. :func:`kernel_operator`) by block Lanczos.

    Stops when every top-``k`` Lanczos residual estimate is at most ``tol`` times
    its Ritz value, or after ``max_products`` products (the residuals returned then
    say how far it got). ``block_size`` (default ``k``) bounds the multiplicity of
    an eigenvalue it resolves. Host memory: the basis, ``8 N C`` bytes per product.
    """
    dim = shape[0] * shape[1]
    p = min(block_size or k, dim)
    if not 1 <= k <= dim:
        raise ValueError(f"k must be in [1, N * C = {dim}], got {k}")
    rng = np.random.default_rng(seed)
    apply = lambda q: matvec(q.reshape(shape + (q.shape[1],))).reshape(dim, q.shape[1])
    q, _ = np.linalg.qr(rng.standard_normal((dim, p)))
    basis, alphas, betas, products = [q], [], [], 0
    while True:
        w = apply(basis[-1])
        products += p
        alphas.append(basis[-1].T @ w)
        w = w - basis[-1] @ alphas[-1] - (basis[-2] @ betas[-1].T if betas else 0.0)
        q, r = _orthonormal_block(w, basis, rng)
        betas.append(r)
        values, s, estimate = _ritz(alphas, betas, min(k, len(alphas) * p))
        full = len(basis) * p + p > dim
        if (len(values) == k and np.all(estimate <= tol * np.abs(values))) or full or \
                products + p > max_products:
            break
        basis.append(q)
    vectors = np.concatenate(basis, axis=1) @ s
    residual = apply(vectors) - vectors * values
    products += vectors.shape[1]
    residuals = np.linalg.norm(residual, axis=0) / np.abs(values)
    return Eigenpairs(values, vectors.reshape(shape + (len(values),)), residuals, products)
