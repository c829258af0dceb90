"""Structure-exploiting empirical NTK for networks built from flax Dense and Conv layers.

Every ``nn.Dense``/``nn.Conv`` call is intercepted (``flax.linen.intercept_methods``):
its input is recorded and a zero perturbation is added to its output, so one vjp
with respect to the perturbations per output class gives the output cotangents
``D`` of every layer without forming weight gradients. With ``P`` the input patches
at each output position (the input itself for Dense), a layer kernel contributes

    K[ic, jd] = sum_{s,t} (P_is . P_jt) (D_ics . D_jdt)            ("gram" route)

or, where that costs more FLOPs, the contraction of the per-example gradients
``G_ic = sum_s P_is (x) D_ics`` ("grad" route). A bias is a weight on a constant
input: a patch entry of 1. Parameters of other layers (norms, ...) get per-example
gradients from the same backward pass, as do layers whose kernel is not itself a
leaf of ``params`` (e.g. inside flax lifted transforms). Captured kernel and bias
leaves must be used by their Dense/Conv calls only (no weight tying outside
those layers).
"""

from __future__ import annotations

import dataclasses
import functools
import string
from typing import Any, Callable, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax.linen.linear import canonicalize_padding

Features = list[tuple[jax.Array, ...]]   # (gradients,) or (patches, cotangents) per term


@dataclasses.dataclass(frozen=True)
class _Call:
    """One captured layer call: its parameter leaf indices and patch settings."""

    kernel: int
    bias: Optional[int]
    conv: Optional[tuple] = None   # (kernel_size, strides, padding, lhs/rhs dilation)


def _describe(context: Any, ids: dict[int, int]) -> Optional[_Call]:
    """The ``_Call`` of a plain Dense/Conv ``__call__`` whose params are leaves, else None."""
    m = context.module
    if context.method_name != "__call__" or type(m) not in (nn.Dense, nn.Conv):
        return None
    variables = m.variables.get("params", {})
    kernel, bias = ids.get(id(variables.get("kernel"))), ids.get(id(variables.get("bias")))
    if kernel is None or (m.use_bias and bias is None):
        return None
    if isinstance(m, nn.Dense):
        plain = m.dot_general is None and m.dot_general_cls is None
        return _Call(kernel, bias) if plain else None
    size = (m.kernel_size,) if isinstance(m.kernel_size, int) else tuple(m.kernel_size)
    padding = canonicalize_padding(m.padding, len(size))
    if (m.feature_group_count != 1 or m.mask is not None or m.conv_general_dilated
            is not None or m.conv_general_dilated_cls is not None
            or padding in ("CIRCULAR", "REFLECT", "CAUSAL")):
        return None
    padding = padding if isinstance(padding, str) else tuple(map(tuple, padding))
    return _Call(kernel, bias, (size, _per_dim(m.strides, len(size)), padding,
                                _per_dim(m.input_dilation, len(size)),
                                _per_dim(m.kernel_dilation, len(size))))


def _per_dim(value: Any, rank: int) -> tuple[int, ...]:
    """A flax stride/dilation setting as one int per spatial dimension."""
    value = 1 if value is None else value
    return (value,) * rank if isinstance(value, int) else tuple(value)


def _run(apply_fn, leaves, treedef, x, perturbations=None):
    """``apply_fn`` with Dense/Conv calls captured: (out, calls, layer inputs, outputs)."""
    ids = {id(leaf): k for k, leaf in enumerate(leaves)}
    calls, inputs, outputs = [], [], []

    def interceptor(next_fun, args, kwargs, context):
        out = next_fun(*args, **kwargs)
        call = _describe(context, ids) if len(args) == 1 and not kwargs else None
        if call is None:
            return out
        if perturbations is not None:
            out = out + perturbations[len(calls)]
        calls.append(call)
        inputs.append(args[0])
        outputs.append(out)
        return out

    with nn.intercept_methods(interceptor):
        out = apply_fn(jax.tree_util.tree_unflatten(treedef, leaves), x)
    return out, calls, inputs, outputs


def _patches(a: jax.Array, conv: Optional[tuple]) -> jax.Array:
    """Input patches ``(n, positions, patch size)`` of a layer input with n examples."""
    n = a.shape[0]
    if conv is not None:
        size, strides, padding, lhs_dilation, rhs_dilation = conv
        spatial = string.ascii_lowercase[:len(size)]
        a = jax.lax.conv_general_dilated_patches(
            a.reshape((-1,) + a.shape[-len(size) - 1:]), size, strides, padding,
            lhs_dilation, rhs_dilation,
            dimension_numbers=(f"N{spatial}C", f"{spatial}IO", f"N{spatial}C"))
    return a.reshape(n, -1, a.shape[-1])


def _gram_is_cheaper(n1: int, n2: int, c: int, s: int, k: int, o: int) -> bool:
    """FLOP estimate: Gram route vs forming and contracting per-example gradients."""
    gram = n1 * n2 * (s * s * k + c * s * s * o + c * c * s * o)
    grad = (n1 + n2) * c * s * k * o + n1 * n2 * c * c * k * o
    return gram < grad


@dataclasses.dataclass(frozen=True)
class _Plan:
    """What one traced call of ``apply_fn`` found, and the route of each kernel."""

    leaves: list
    treedef: Any
    calls: list[_Call]
    shapes: list[jax.ShapeDtypeStruct]     # layer outputs, for the perturbations
    rest: list[int]                        # leaves no captured layer owns
    groups: dict[int, list[int]]           # kernel leaf -> indices of its calls
    gram: dict[int, bool]                  # kernel leaf -> Gram route?


def _plan(apply_fn: Callable, params: Any, x: jax.Array, n1: int, n2: int) -> _Plan:
    """Traces ``apply_fn`` on one example and picks a route per kernel leaf."""
    leaves, treedef = jax.tree_util.tree_flatten(params)
    if len({id(leaf) for leaf in leaves}) < len(leaves):  # ids must tell leaves apart
        leaves = [jnp.array(leaf, copy=True) for leaf in leaves]
    found = []

    def trace(ls):
        out, calls, _, outputs = _run(apply_fn, ls, treedef, x[:1])
        found.append((calls, [jax.ShapeDtypeStruct(o.shape, o.dtype) for o in outputs]))
        return out

    num_out = jax.eval_shape(trace, leaves).shape[-1]
    calls, shapes = found[0]
    covered = {k for call in calls for k in (call.kernel, call.bias) if k is not None}
    groups = {}
    for i, call in enumerate(calls):
        groups.setdefault(call.kernel, []).append(i)
    gram = {}
    for kernel, idx in groups.items():
        s, o = sum(int(np.prod(shapes[i].shape[:-1])) for i in idx), shapes[idx[0]].shape[-1]
        gram[kernel] = _gram_is_cheaper(n1, n2, num_out, s, leaves[kernel].size // o, o)
    rest = [k for k in range(len(leaves)) if k not in covered]
    return _Plan(leaves, treedef, calls, shapes, rest, groups, gram)


def _features(apply_fn: Callable, plan: _Plan, x: jax.Array) -> Features:
    """Kernel terms of the examples ``x``: per layer either per-example gradients
    ``(n, C, P)`` or Gram-route patches ``(n, S, K)`` and cotangents ``(n, C, S, O)``
    (a bias is a patch entry of 1); then per-example gradients of other leaves."""
    def single(xi):
        def f(perturbations, rest_leaves):
            leaves = list(plan.leaves)
            for k, leaf in zip(plan.rest, rest_leaves):
                leaves[k] = leaf
            out, _, inputs, _ = _run(apply_fn, leaves, plan.treedef, xi[None], perturbations)
            return out[0], inputs

        zeros = [jnp.zeros(s.shape, s.dtype) for s in plan.shapes]
        rest = [plan.leaves[k] for k in plan.rest]
        out, vjp_fn, inputs = jax.vjp(f, zeros, rest, has_aux=True)
        return inputs, jax.vmap(vjp_fn)(jnp.eye(out.shape[-1], dtype=out.dtype))

    inputs, (deltas, rest_grads) = jax.vmap(single)(x)
    terms = []
    for kernel, idx in reversed(plan.groups.items()):     # in the order the vjp ends them
        p = jnp.concatenate([_patches(inputs[i], plan.calls[i].conv) for i in idx], axis=1)
        if plan.calls[idx[0]].bias is not None:             # a weight on a constant input
            p = jnp.concatenate([p, jnp.ones(p.shape[:2] + (1,), p.dtype)], axis=2)
        d = jnp.concatenate([delta.reshape(delta.shape[:2] + (-1, delta.shape[-1]))
                             for delta in (deltas[i] for i in idx)], axis=2)
        if plan.gram[kernel]:
            terms.append((p, d))
        else:
            terms.append((jnp.einsum("isk,icso->icko", p, d).reshape(d.shape[:2] + (-1,)),))
    return terms + [(g.reshape(g.shape[:2] + (-1,)),) for g in rest_grads]


def _contract(f1: Features, f2: Features) -> jax.Array:
    """``(n1, C, n2, C)`` kernel block of two chunks' features. Gram terms, whose
    temporaries are large, are computed one after another."""
    k, chained = 0.0, None
    for t1, t2 in zip(f1, f2):
        if len(t1) == 1:      # per-example gradients (n, C, P)
            k = k + jnp.einsum("icp,jdp->icjd", t1[0], t2[0])
            continue
        # patches (n, S, K) and cotangents (n, C, S, O): large temporaries
        p1 = t1[0] if chained is None else after(t1[0], chained)
        chained = jnp.einsum("isk,jtk,icso,jdto->icjd", p1, t2[0], t1[1], t2[1],
                             optimize="optimal")
        k = k + chained
    return k


def contract_diagonal(f: Features) -> jax.Array:
    """``(n, C, C)``: each example's own block of the kernel, from one chunk's features
    (the diagonal of :func:`_contract` of the chunk with itself, at ``n`` not ``n**2``)."""
    k = 0.0
    for t in f:
        if len(t) == 1:
            k = k + jnp.einsum("icp,idp->icd", t[0], t[0])
        else:
            k = k + jnp.einsum("isk,itk,icso,idto->icd", t[0], t[0], t[1], t[1],
                               optimize="optimal")
    return k


def after(x: jax.Array, token: jax.Array) -> jax.Array:
    """``x`` plus a zero computed from ``token``, so that XLA computes ``token`` first
    and cannot merge repeated steps (``optimization_barrier`` does neither on
    XLA:CPU). The zero stays zero for non-finite tokens."""
    return x + ((jnp.sum(token) > 0) * 0.0).astype(x.dtype)


def kernel_fns(apply_fn: Callable, params: Any, x: jax.Array, n1: int, n2: int
               ) -> tuple[Callable[[jax.Array], Features], Callable[..., jax.Array]]:
    """``(features(chunk), contract(f1, f2) -> (n1, C, n2, C))`` for chunks of n1 and
    n2 examples of the shape of ``x`` (whose first row is traced to find the layers)."""
    plan = _plan(apply_fn, params, x, n1, n2)
    return functools.partial(_features, apply_fn, plan), _contract
