"""Empirical neural tangent kernel, with implementations checked against each other.

``K[i, c, j, d] = <d f_c(x1_i) / d params, d f_d(x2_j) / d params>`` summed over
every parameter. Implementations:

* ``"jacobian"``: per-example Jacobians (``vmap`` of ``jacrev``), contracted
  leaf by leaf. Memory ``chunk * C * P`` per chunk.
* ``"ntvp"``: NTK-vector products: ``J1 (J2^T e)`` for each basis cotangent
  ``e`` of ``x2``, i.e. a ``jvp`` of a ``vjp``; never forms ``J1``.
* ``"structured"``: per-site kernels from the inputs and output cotangents of
  the function's parameter-consuming ``dot_general``/``conv_general_dilated``
  equations, read from its jaxpr, with no per-example weight gradients where
  that is cheaper (see ``lazy_hasty.ntk_structured``); any JAX function.
* ``"auto"`` (the default): whichever of the three XLA's cost analysis of one
  chunk block says is cheapest, ``structured`` on near ties
  (:func:`choose_implementation`).

Chunking: at most two chunks of ``chunk_size`` examples have their Jacobians (or
layer features) alive at once; the inner chunk is recomputed for every outer
one. With ``x2=None`` only the upper triangle of chunk blocks is computed and
the diagonal blocks reuse the outer chunk; a kernel of one block is contracted
from three half blocks (with more blocks that saves little and lengthens the
compile). XLA:CPU canonicalises convolution
layouts only in the entry computation, not in loop bodies, so conv backward
passes inside ``lax.map`` run ~3-9x slower. Up to ``MAX_UNROLLED`` chunk
evaluations are therefore unrolled in Python, each step made data-dependent on
the previous one (``ntk_structured.after``) so that they run in order with
bounded memory; more use ``lax.map``. Everything stays traceable under
``jax.jit``.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp

from lazy_hasty import ntk_structured
from lazy_hasty.ntk_structured import after
from lazy_hasty.types import ApplyFn, Params

NtkFn = Callable[[Params, jax.Array, Optional[jax.Array]], jax.Array]
MAX_UNROLLED = 64   # unrolled chunk evaluations; compile time grows with them
FLOPS_PER_BYTE = 10.0   # a byte moved costs as much as this many FLOPs (CPU roofline)
# Another implementation must score this fraction below "structured" to be chosen:
# XLA counts the bytes of the unfused program, and routes doing the same
# contractions (per-example gradients of convolutions, say) land within it.
STRUCTURED_MARGIN = 0.1


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


def _map(fn: Callable[[Any, jax.Array], jax.Array], xs: jax.Array, unroll: bool
         ) -> jax.Array:
    """``stack([fn(i, xs[i]) for i])``: unrolled and run in order, or ``lax.map``."""
    if not unroll:
        return jax.lax.map(lambda ix: fn(*ix), (jnp.arange(len(xs)), xs))
    outs = []
    for i in range(len(xs)):
        outs.append(fn(i, after(xs[i], outs[-1]) if outs else xs[i]))
    return jnp.stack(outs)


def _self_contract(contract: Callable, f: Any) -> jax.Array:
    """``contract(f, f)`` from three of its four half blocks: the examples split in
    two, the lower-left block is the upper-right one transposed (3/4 of the
    products)."""
    n = jax.tree_util.tree_leaves(f)[0].shape[0]
    if n < 2:
        return contract(f, f)
    top, bottom = (jax.tree_util.tree_map(lambda a: a[:n // 2], f),
                   jax.tree_util.tree_map(lambda a: a[n // 2:], f))
    upper = contract(top, bottom)
    return jnp.concatenate([
        jnp.concatenate([contract(top, top), upper], axis=2),
        jnp.concatenate([upper.transpose(2, 3, 0, 1), contract(bottom, bottom)], axis=2)],
        axis=0)


def _blockwise(features, contract, x1, x2, size1, size2):
    """Blocks ``(m1, m2, b1, C, b2, C)`` of ``contract(features(c1), features(c2))``."""
    symmetric = x2 is None
    c1 = _chunks(x1, size1)
    c2 = c1 if symmetric else _chunks(x2, size2)
    m1, m2 = len(c1), len(c2)
    unroll = m1 + (m1 * (m1 - 1) // 2 if symmetric else m1 * m2) <= MAX_UNROLLED

    def row(a, xa):
        f1 = features(xa)
        diag = lambda: _self_contract(contract, f1) if m1 == 1 else contract(f1, f1)

        def block(b, xb):
            upper = lambda: contract(f1, features(xb))
            if not symmetric:
                return upper()
            lower = lambda: jnp.zeros_like(jax.eval_shape(diag))
            branches, index = (lower, diag, upper), (b > a) * 2 + (b == a)
            return branches[index]() if unroll else jax.lax.switch(index, branches)

        return _map(block, after(c2, xa), unroll)           # a fresh copy per row

    blocks = _map(row, c1, unroll)
    if symmetric:          # lower blocks are transposed upper ones
        below = jnp.arange(m1)[:, None] > jnp.arange(m1)[None, :]
        mirrored = blocks.transpose(1, 0, 4, 5, 2, 3)
        blocks = jnp.where(below[:, :, None, None, None, None], mirrored, blocks)
    return blocks


def chunk_functions(implementation: str, apply_fn: ApplyFn, params: Params,
                    x: jax.Array, n1: int, n2: int) -> tuple[Callable, Callable]:
    """``(features(chunk), contract(f1, f2))`` of ``"jacobian"`` or ``"structured"``
    for chunks of ``n1`` and ``n2`` examples shaped like ``x``."""
    if implementation == "jacobian":
        return functools.partial(_per_example_jacobian, apply_fn, params), _contract
    return ntk_structured.kernel_fns(apply_fn, params, x, n1, n2)


def _feature_ntk(implementation, apply_fn, params, x1, x2, size1, size2):
    """Blocks of an implementation that contracts per-chunk features."""
    fns = chunk_functions(implementation, apply_fn, params, x1, size1, size2)
    return _blockwise(*fns, x1, x2, size1, size2)


def _ntvp_ntk(apply_fn, params, x1, x2, size1, size2):
    x2 = x1 if x2 is None else x2
    c1, c2 = _chunks(x1, size1), _chunks(x2, size2)
    unroll = len(c2) * (1 + len(c1)) <= MAX_UNROLLED

    def outer(_, xb):
        f2, vjp_fn = jax.vjp(lambda p: apply_fn(p, xb), params)
        n2, c = f2.shape
        basis = jnp.eye(n2 * c, dtype=f2.dtype).reshape(n2 * c, n2, c)
        tangents = jax.vmap(lambda e: vjp_fn(e)[0])(basis)    # J2^T e, one per column

        def inner(_, xa):
            jvp = lambda t: jax.jvp(lambda p: apply_fn(p, xa), (params,), (t,))[1]
            cols = jax.vmap(jvp)(tangents)                     # (n2 * C, n1c, C)
            return cols.reshape(n2, c, -1, c).transpose(2, 3, 0, 1)

        return _map(inner, after(c1, xb), unroll)             # (m1, n1c, C, n2c, C)

    return _map(outer, c2, unroll).swapaxes(0, 1)              # (m1, m2, ...)


_IMPLEMENTATIONS = {"jacobian": functools.partial(_feature_ntk, "jacobian"), "ntvp": _ntvp_ntk,
                    "structured": functools.partial(_feature_ntk, "structured")}
IMPLEMENTATIONS = tuple(_IMPLEMENTATIONS)


@dataclasses.dataclass(frozen=True)
class Choice:
    """What ``implementation="auto"`` runs, and why: per implementation, XLA's
    FLOPs and bytes accessed for one ``(size1, size2)`` block and their score
    ``flops + FLOPS_PER_BYTE * bytes``; the lowest score runs, ``structured`` unless
    another scores at least ``STRUCTURED_MARGIN`` below it (:func:`pick`)."""

    implementation: str
    costs: dict[str, dict[str, float]]


def _sizes(n1: int, n2: int, chunk_size: Optional[int]) -> tuple[int, int]:
    if chunk_size is not None and int(chunk_size) < 1:
        raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")
    return (n1, n2) if chunk_size is None else (min(n1, int(chunk_size)),
                                                min(n2, int(chunk_size)))


def choose_implementation(apply_fn: ApplyFn, params: Params, x1: jax.Array,
                          x2: Optional[jax.Array] = None, *,
                          chunk_size: Optional[int] = None) -> Choice:
    """The cheapest implementation for these shapes and chunking by XLA's cost
    analysis of one chunk block (every implementation computes the same grid of
    blocks). Lowers each implementation once; compiles nothing."""
    size1, size2 = _sizes(len(x1), len(x1 if x2 is None else x2), chunk_size)
    spec = lambda a, n: jax.ShapeDtypeStruct((n,) + tuple(a.shape[1:]), a.dtype)
    p = jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), params)
    xa, xb = spec(x1, size1), spec(x1 if x2 is None else x2, size2)
    costs = {}
    for name, impl in _IMPLEMENTATIONS.items():
        lowered = jax.jit(impl, static_argnums=(0, 4, 5)).lower(apply_fn, p, xa, xb, size1, size2)
        cost = lowered.cost_analysis()
        cost = cost[0] if isinstance(cost, (list, tuple)) else cost
        flops, moved = float(cost.get("flops", 0.0)), float(cost.get("bytes accessed", 0.0))
        costs[name] = {"flops": flops, "bytes accessed": moved,
                       "score": flops + FLOPS_PER_BYTE * moved}
    return Choice(pick(costs), costs)


def pick(costs: dict[str, dict[str, float]]) -> str:
    """The implementation of lowest score, or ``structured`` where none scores
    ``STRUCTURED_MARGIN`` below it."""
    best = min(costs, key=lambda k: costs[k]["score"])
    if costs[best]["score"] > (1 - STRUCTURED_MARGIN) * costs["structured"]["score"]:
        return "structured"
    return best


def empirical_ntk(apply_fn: ApplyFn, params: Params, x1: jax.Array,
                  x2: Optional[jax.Array] = None, *, implementation: str = "auto",
                  chunk_size: Optional[int] = None) -> jax.Array:
    """Empirical NTK of ``apply_fn`` at ``params``, shape ``(N1, C, N2, C)``.

    ``x2=None`` means ``x2 = x1`` (and exploits the symmetry). ``chunk_size``
    bounds how many examples enter one Jacobian (or one batch of NTK-vector
    products, or of layer features) at a time; ``None`` processes all at once.
    """
    if implementation not in (*IMPLEMENTATIONS, "auto"):
        raise ValueError(f"unknown NTK implementation {implementation!r}; "
                         f"choose one of {(*IMPLEMENTATIONS, 'auto')}")
    size1, size2 = _sizes(len(x1), len(x1 if x2 is None else x2), chunk_size)
    if implementation == "auto":
        implementation = choose_implementation(apply_fn, params, x1, x2,
                                               chunk_size=chunk_size).implementation
    impl = jax.jit(_IMPLEMENTATIONS[implementation], static_argnums=(0, 4, 5))
    blocks = impl(apply_fn, params, x1, x2, size1, size2)
    m1, m2, b1, c, b2, _ = blocks.shape
    k = blocks.transpose(0, 2, 3, 1, 4, 5).reshape(m1 * b1, c, m2 * b2, c)
    return k[:len(x1), :, :len(x1 if x2 is None else x2)]


def _jacobian_diagonal(jac: Params) -> jax.Array:
    """``(n, C, C)`` blocks ``J_i J_i^T`` of per-example Jacobians."""
    blocks = jax.tree_util.tree_map(
        lambda a: jnp.einsum("icp,idp->icd", *(a.reshape(a.shape[:2] + (-1,)),) * 2), jac)
    return functools.reduce(jnp.add, jax.tree_util.tree_leaves(blocks))


def diagonal_blocks(apply_fn: ApplyFn, params: Params, x: jax.Array, *,
                    implementation: str = "structured",
                    chunk_size: Optional[int] = None) -> jax.Array:
    """Each example's own ``C x C`` block of the empirical NTK, ``K(x_i, x_i)``:
    shape ``(N, C, C)``, the diagonal of :func:`empirical_ntk` from ``N`` examples'
    features rather than ``N**2`` kernel blocks. ``implementation``: ``"jacobian"``
    (per-example Jacobians) or ``"structured"`` (layer inputs and output
    cotangents, :mod:`lazy_hasty.ntk_structured`); ``chunk_size`` examples have
    their features alive at once (None: all)."""
    if implementation not in ("jacobian", "structured"):
        raise ValueError(f"unknown diagonal NTK implementation {implementation!r}; choose "
                         "'jacobian' or 'structured'")
    n = len(x)
    size = n if chunk_size is None else min(n, int(chunk_size))
    if size < 1:
        raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")
    features, _ = chunk_functions(implementation, apply_fn, params, x, size, size)
    diagonal = (_jacobian_diagonal if implementation == "jacobian"
                else ntk_structured.contract_diagonal)
    chunk = lambda i, xs: diagonal(features(xs))

    xs = _chunks(x, size)
    out = _map(chunk, xs, unroll=len(xs) <= MAX_UNROLLED)
    return out.reshape((-1,) + out.shape[2:])[:n]


def nnx_function(module: Any) -> tuple[ApplyFn, Params]:
    """``(apply_fn, params)`` of a flax NNX module: its ``nnx.Param`` variables as a
    pytree and a pure ``apply_fn(params, x)`` that merges them back with the rest of
    its state (``nnx.split``/``nnx.merge``), for every function of this module."""
    from flax import nnx
    graphdef, params, rest = nnx.split(module, nnx.Param, ...)
    return (lambda p, x: nnx.merge(graphdef, p, rest)(x)), params


def empirical_ntk_fn(apply_fn: ApplyFn, *, implementation: str = "auto",
                     chunk_size: Optional[int] = None) -> NtkFn:
    """Jitted ``ntk(params, x1, x2=None)``; keep it to avoid recompiling."""
    fn = functools.partial(empirical_ntk, apply_fn, implementation=implementation,
                           chunk_size=chunk_size)
    return jax.jit(fn)
