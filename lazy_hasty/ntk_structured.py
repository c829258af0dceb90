"""Structure-exploiting empirical NTK for networks built from flax Dense and Conv layers.

Every ``nn.Dense``/``nn.Conv`` call is intercepted (``flax.linen.intercept_methods``):
its input is recorded and a zero perturbation is added to its output, so one vjp
with respect to the perturbations per output class gives the output cotangents
``D`` of every layer without forming weight gradients. With ``P`` the input patches
at each output position (the input itself for Dense), a layer kernel contributes

    K[ic, jd] = sum_{s,t} (P_is . P_jt) (D_ics . D_jdt)            ("gram" route)

or, where that costs more FLOPs, the contraction of the per-example gradients
``G_ic = sum_s P_is (x) D_ics`` ("grad" route). A bias contributes through its
gradient ``sum_s D_ics``. Parameters of other layers (norms, ...) get per-example
gradients from the same backward pass. Captured kernel and bias leaves must be
used by their Dense/Conv calls only (no weight tying outside those layers).
"""

from __future__ import annotations

import dataclasses
import string
from typing import Any, Callable, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax.linen.linear import canonicalize_padding

Features = tuple[jax.Array, list[tuple[jax.Array, jax.Array]]]


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
        calls.append(call), inputs.append(args[0]), outputs.append(out)
        return out

    with nn.intercept_methods(interceptor):
        out = apply_fn(jax.tree_util.tree_unflatten(treedef, leaves), x)
    return out, calls, inputs, outputs


def _patches(a: jax.Array, conv: Optional[tuple]) -> jax.Array:
    """Input patches of one example's layer input, ``(positions, patch size)``."""
    if conv is None:
        return a.reshape(-1, a.shape[-1])
    size, strides, padding, lhs_dilation, rhs_dilation = conv
    spatial = string.ascii_lowercase[:len(size)]
    a = a.reshape((-1,) + a.shape[-len(size) - 1:])
    p = jax.lax.conv_general_dilated_patches(
        a, size, strides, padding, lhs_dilation, rhs_dilation,
        dimension_numbers=(f"N{spatial}C", f"{spatial}IO", f"N{spatial}C"))
    return p.reshape(-1, p.shape[-1])


def _gram_is_cheaper(n1: int, n2: int, c: int, s: int, k: int, o: int) -> bool:
    """FLOP estimate: Gram route vs forming and contracting per-example gradients."""
    gram = n1 * n2 * (s * s * k + c * s * s * o + c * c * s * o)
    grad = (n1 + n2) * c * s * k * o + n1 * n2 * c * c * k * o
    return gram < grad


def kernel_fns(apply_fn: Callable, params: Any, x: jax.Array, n1: int, n2: int
               ) -> tuple[Callable[[jax.Array], Features], Callable[..., jax.Array]]:
    """``(features(x_chunk), contract(f1, f2) -> (n1, C, n2, C))`` for chunks of n1, n2.

    ``x`` is an example batch (its first row is traced to find the layers).
    """
    leaves, treedef = jax.tree_util.tree_flatten(params)
    if len({id(leaf) for leaf in leaves}) < len(leaves):  # ids must tell leaves apart
        leaves = [jnp.array(leaf, copy=True) for leaf in leaves]
    found = []

    def trace(ls):
        out, calls, _, outputs = _run(apply_fn, ls, treedef, x[:1])
        found.append((calls, [(o.shape, o.dtype) for o in outputs]))
        return out

    num_out = jax.eval_shape(trace, leaves).shape[-1]
    calls, shapes = found[0]
    covered = {k for call in calls for k in (call.kernel, call.bias) if k is not None}
    rest = [k for k in range(len(leaves)) if k not in covered]
    groups = {}                                          # kernel leaf -> its call indices
    for i, call in enumerate(calls):
        groups.setdefault(call.kernel, []).append(i)
    gram = {kernel: _gram_is_cheaper(
        n1, n2, num_out, sum(int(np.prod(shapes[i][0][:-1])) for i in idx),
        int(np.prod(leaves[kernel].shape)) // shapes[idx[0]][0][-1], shapes[idx[0]][0][-1])
        for kernel, idx in groups.items()}

    def single(xi):
        def f(perturbations, rest_leaves):
            full = list(leaves)
            for k, leaf in zip(rest, rest_leaves):
                full[k] = leaf
            out, _, inputs, _ = _run(apply_fn, full, treedef, xi[None], perturbations)
            return out[0], inputs

        zeros = [jnp.zeros(shape, dtype) for shape, dtype in shapes]
        out, vjp_fn, inputs = jax.vjp(f, zeros, [leaves[k] for k in rest], has_aux=True)
        return inputs, jax.vmap(vjp_fn)(jnp.eye(out.shape[-1], dtype=out.dtype))

    def features(xc: jax.Array) -> Features:
        inputs, (deltas, rest_grads) = jax.vmap(single)(xc)
        n = len(xc)
        grads = [g.reshape(n, num_out, -1) for g in rest_grads]
        grams = []
        for kernel, idx in groups.items():
            p = jnp.concatenate([jax.vmap(lambda a: _patches(a, calls[i].conv))(inputs[i])
                                 for i in idx], axis=1)                  # (n, S, K)
            d = jnp.concatenate([deltas[i].reshape(n, num_out, -1, deltas[i].shape[-1])
                                 for i in idx], axis=2)                  # (n, C, S, O)
            if calls[idx[0]].bias is not None:
                grads.append(d.sum(axis=2))
            if gram[kernel]:
                grams.append((p, d))
            else:
                grads.append(jnp.einsum("isk,icso->icko", p, d).reshape(n, num_out, -1))
        empty = jnp.zeros((n, num_out, 0), xc.dtype)
        return jnp.concatenate([empty] + grads, axis=2), grams

    def contract(f1: Features, f2: Features) -> jax.Array:
        (g1, grams1), (g2, grams2) = f1, f2
        k = jnp.einsum("icp,jdp->icjd", g1, g2)
        for (p1, d1), (p2, d2) in zip(grams1, grams2):
            h = jnp.einsum("ijst,icso->ijcto", jnp.einsum("isk,jtk->ijst", p1, p2), d1)
            k = k + jnp.einsum("ijcto,jdto->icjd", h, d2)
        return k

    return features, contract
