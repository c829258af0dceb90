"""Empirical neural tangent kernel, with implementations checked against each other.

``K[i, c, j, d] = <d f_c(x1_i) / d params, d f_d(x2_j) / d params>`` summed over
every parameter. Implementations:

* ``"jacobian"``: per-example Jacobians (``vmap`` of ``jacrev``), contracted
  leaf by leaf. Memory ``chunk * C * P`` per block.
* ``"ntvp"``: NTK-vector products: ``J1 (J2^T e)`` for each basis cotangent
  ``e`` of ``x2``, i.e. a ``jvp`` of a ``vjp``; never forms ``J1``.

Both chunk over examples with ``lax.map`` (sequential, so peak memory is set by
``chunk_size``, not by N) and stay traceable under ``jax.jit``.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp

Params = Any
ApplyFn = Callable[[Params, jax.Array], jax.Array]
NtkFn = Callable[[Params, jax.Array, Optional[jax.Array]], jax.Array]


def _per_example_jacobian(apply_fn: ApplyFn, params: Params, x: jax.Array) -> Params:
    """Pytree of leaves shaped ``(n, C, *leaf.shape)``."""
    single = lambda xi: jax.jacrev(lambda p: apply_fn(p, xi[None])[0])(params)
    return jax.vmap(single)(x)


def _contract(j1: Params, j2: Params) -> jax.Array:
    """``sum_p J1[i, c, p] J2[j, d, p]`` over all leaves -> ``(n1, C, n2, C)``."""
    blocks = jax.tree_util.tree_map(
        lambda a, b: jnp.einsum("icp,jdp->icjd", a.reshape(a.shape[:2] + (-1,)),
                                b.reshape(b.shape[:2] + (-1,))), j1, j2)
    return functools.reduce(jnp.add, jax.tree_util.tree_leaves(blocks))


def _chunks(x: jax.Array, size: int) -> jax.Array:
    """Reshapes ``x`` to ``(n_chunks, size, ...)``, padding with its first row."""
    pad = -len(x) % size
    if pad:
        x = jnp.concatenate([x, jnp.repeat(x[:1], pad, axis=0)])
    return x.reshape((-1, size) + x.shape[1:])


def _jacobian_ntk(apply_fn, params, x1, x2, size1, size2):
    def outer(c1):
        j1 = _per_example_jacobian(apply_fn, params, c1)
        inner = lambda c2: _contract(j1, _per_example_jacobian(apply_fn, params, c2))
        return jax.lax.map(inner, _chunks(x2, size2))         # (m2, n1c, C, n2c, C)

    return jax.lax.map(outer, _chunks(x1, size1))             # (m1, m2, n1c, C, n2c, C)


def _ntvp_ntk(apply_fn, params, x1, x2, size1, size2):
    def outer(c2):
        f2, vjp_fn = jax.vjp(lambda p: apply_fn(p, c2), params)
        n2, c = f2.shape
        basis = jnp.eye(n2 * c, dtype=f2.dtype).reshape(n2 * c, n2, c)
        tangents = jax.vmap(lambda e: vjp_fn(e)[0])(basis)    # J2^T e, one per column

        def inner(c1):
            jvp = lambda t: jax.jvp(lambda p: apply_fn(p, c1), (params,), (t,))[1]
            cols = jax.vmap(jvp)(tangents)                     # (n2 * C, n1c, C)
            return cols.reshape(n2, c, -1, c).transpose(2, 3, 0, 1)

        return jax.lax.map(inner, _chunks(x1, size1))          # (m1, n1c, C, n2c, C)

    blocks = jax.lax.map(outer, _chunks(x2, size2))            # (m2, m1, ...)
    return blocks.swapaxes(0, 1)


_IMPLEMENTATIONS = {"jacobian": _jacobian_ntk, "ntvp": _ntvp_ntk}
IMPLEMENTATIONS = tuple(_IMPLEMENTATIONS)


def empirical_ntk(apply_fn: ApplyFn, params: Params, x1: jax.Array,
                  x2: Optional[jax.Array] = None, *, implementation: str = "jacobian",
                  chunk_size: Optional[int] = None) -> jax.Array:
    """Empirical NTK of ``apply_fn`` at ``params``, shape ``(N1, C, N2, C)``.

    ``x2=None`` means ``x2 = x1``. ``chunk_size`` bounds how many examples enter
    one Jacobian (or one batch of NTK-vector products) at a time; ``None``
    processes all examples at once.
    """
    if implementation not in _IMPLEMENTATIONS:
        raise ValueError(f"unknown NTK implementation {implementation!r}; "
                         f"choose one of {IMPLEMENTATIONS}")
    x2 = x1 if x2 is None else x2
    n1, n2 = len(x1), len(x2)
    if chunk_size is not None and int(chunk_size) < 1:
        raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")
    size1, size2 = (n1, n2) if chunk_size is None else (
        min(n1, int(chunk_size)), min(n2, int(chunk_size)))
    blocks = _IMPLEMENTATIONS[implementation](apply_fn, params, x1, x2, size1, size2)
    m1, m2, b1, c, b2, _ = blocks.shape
    k = blocks.transpose(0, 2, 3, 1, 4, 5).reshape(m1 * b1, c, m2 * b2, c)
    return k[:n1, :, :n2]


def empirical_ntk_fn(apply_fn: ApplyFn, *, implementation: str = "jacobian",
                     chunk_size: Optional[int] = None) -> NtkFn:
    """Jitted ``ntk(params, x1, x2=None)``; keep it to avoid recompiling."""
    fn = functools.partial(empirical_ntk, apply_fn, implementation=implementation,
                           chunk_size=chunk_size)
    return jax.jit(fn)
