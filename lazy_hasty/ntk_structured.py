"""Structure-exploiting empirical NTK of any JAX function ``f(params, x)``, read from its jaxpr.

Every ``dot_general`` and ``conv_general_dilated`` one of whose operands is a
parameter (a leaf of ``params``, or a reshape, transpose, slice, cast, ... of one)
is a *site*, wherever it sits: in nested ``jit``, ``checkpoint``, ``custom_jvp``
calls or in a ``scan`` body (a parameter sliced along the scan, e.g. stacked layer
weights, or shared by every step). The function is re-evaluated with a zero
perturbation added to each site's output and the site's other operand recorded,
so one vjp per output class gives the output cotangents ``D`` of every site. With
``A`` the other operand arranged as ``(B, S, K)`` (batch, positions, contraction;
for a convolution its input patches) and ``D`` as ``(B, S, O)``, a parameter
contributes

    K[ic, jd] = sum_{b,s,t} (A_ibs . A_jbt) (D_icbs . D_jdbt)        ("gram" route)

or, where that costs more FLOPs, the contraction of its per-example gradients
``G_icbko = sum_s A_ibsk D_icbso`` ("grad" route). Sites that read the same
entries of a parameter in the same arrangement (a weight shared between layers, or
by every step of a scan) add their positions; sites on disjoint entries add their
kernels. A parameter added to the output of a Gram-route site (a bias), used
nowhere else and the same at every position, is that site's input column of ones:
its kernel is the site's cotangent Gram summed, computed with the weight's. Every
other parameter, and every parameter with any other use (a norm
scale, an embedding read by ``gather``, a weight tied in two arrangements, one
entering a ``custom_vjp``, ``cond`` or ``while``) gets per-example gradients from
the same backward pass. The decomposition is exact: it only reorders the sums of
``J J^T``. Inside a ``custom_jvp`` call that a parameter enters, the derivative is
that of its primal computation, not its custom rule.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

Features = list[tuple[jax.Array, ...]]   # (gradients,) or (A, D) per term
CALLS = ("pjit", "jit", "closed_call", "core_call", "remat", "remat2", "checkpoint",
         "custom_jvp_call")


@dataclasses.dataclass(frozen=True)
class _View:
    """A value that is a rearrangement of parameter leaf ``leaf``: ``idx`` holds, per
    entry, the leaf's flat index, with a leading axis per scan level in ``stack``
    along which the parameter is sliced ("B"); "S": shared by every step."""

    leaf: int
    idx: np.ndarray
    stack: tuple[str, ...] = ()

    def apply(self, fn: Callable[[np.ndarray, int], np.ndarray]) -> "_View":
        return _View(self.leaf, fn(self.idx, self.stack.count("B")), self.stack)


class _NotAView(Exception):
    """A structural equation that copies entries (a broadcast): not a rearrangement."""


def _broadcast_view(idx: np.ndarray, nb: int, shape: tuple) -> np.ndarray:
    """A broadcast that only inserts axes of size 1 is a reshape."""
    if int(np.prod(shape)) != int(np.prod(idx.shape[nb:])):
        raise _NotAView
    return idx.reshape(idx.shape[:nb] + tuple(shape))


def _slice(idx, nb, start, limit, strides):
    strides = strides or (1,) * len(start)
    return idx[(slice(None),) * nb + tuple(map(slice, start, limit, strides))]


_STRUCTURAL = {
    "reshape": lambda idx, nb, p: idx.reshape(idx.shape[:nb] + tuple(p["new_sizes"])),
    "transpose": lambda idx, nb, p: idx.transpose(
        tuple(range(nb)) + tuple(nb + d for d in p["permutation"])),
    "squeeze": lambda idx, nb, p: idx.squeeze(tuple(nb + d for d in p["dimensions"])),
    "broadcast_in_dim": lambda idx, nb, p: _broadcast_view(idx, nb, p["shape"]),
    "convert_element_type": lambda idx, nb, p: idx,
    "copy": lambda idx, nb, p: idx,
    "copy_p": lambda idx, nb, p: idx,
    "reduce_precision": lambda idx, nb, p: idx,
    "slice": lambda idx, nb, p: _slice(idx, nb, p["start_indices"], p["limit_indices"],
                                       p["strides"]),
    "rev": lambda idx, nb, p: np.flip(idx, tuple(nb + d for d in p["dimensions"])),
}


@dataclasses.dataclass(frozen=True)
class _Site:
    """One parameter-consuming ``dot_general``/``conv_general_dilated`` equation."""

    path: tuple[int, ...]                 # equation indices through nested jaxprs
    kind: str                             # "dot" or "conv"
    side: int                             # which operand is the parameter
    params: Any                           # the equation's params
    view: _View
    lengths: tuple[int, ...]              # lengths of the enclosing scans
    out: jax.ShapeDtypeStruct             # the equation's output, per step
    operand_ndim: int                     # rank of the other operand

    def canonical_idx(self) -> np.ndarray:
        """``(B, K, O)`` flat leaf indices in the arrangement of :meth:`arrange`."""
        idx, nb = self.view.idx, self.view.stack.count("B")
        w_dims = list(range(nb, idx.ndim))
        if self.kind == "dot":
            (contract, batch) = self.params["dimension_numbers"]
            wc, wb = list(contract[self.side]), list(batch[self.side])
            wf = [d for d in range(idx.ndim - nb) if d not in wc and d not in wb]
            order = list(range(nb)) + [nb + d for d in wb + wc + wf]
            shaped = idx.transpose(order)
            b = int(np.prod(shaped.shape[:nb + len(wb)]))
            k = int(np.prod([idx.shape[nb + d] for d in wc]))
            return shaped.reshape(b, k, -1)
        spec = self.params["dimension_numbers"].rhs_spec     # (out, in, spatial...)
        groups = self.params["feature_group_count"]
        shaped = idx.transpose(list(range(nb)) + [w_dims[d] for d in spec])
        cout = shaped.shape[nb]
        shaped = shaped.reshape(shaped.shape[:nb] + (groups, cout // groups) + shaped.shape[nb + 1:])
        last = shaped.ndim
        shaped = shaped.transpose(list(range(nb)) + [nb] + list(range(nb + 2, last)) + [nb + 1])
        b = int(np.prod(shaped.shape[:nb + 1]))
        return shaped.reshape(b, -1, cout // groups)


@dataclasses.dataclass(frozen=True)
class _Bias:
    """Parameter leaf ``leaf`` broadcast (entries copied): ``idx`` holds, per entry of
    the broadcast value, the leaf's flat index. Added to a site's output and used
    nowhere else, it is that site's input column of ones."""

    leaf: int
    idx: np.ndarray


@dataclasses.dataclass
class _Scan:
    """What the analysis of a jaxpr found."""

    sites: list[_Site] = dataclasses.field(default_factory=list)
    other: set[int] = dataclasses.field(default_factory=set)   # leaves with other uses
    biases: list[tuple[tuple, _Bias]] = dataclasses.field(default_factory=list)  # site path


def _is_var(v: Any) -> bool:
    return not hasattr(v, "val")      # jaxpr Literals carry a value, Vars do not


def _sub_jaxpr(eqn) -> tuple[Any, list]:
    """(open jaxpr, consts) of a call-like equation."""
    inner = eqn.params.get("jaxpr", eqn.params.get("call_jaxpr"))
    if hasattr(inner, "jaxpr"):
        return inner.jaxpr, list(inner.consts)
    return inner, []


def _broadcast_idx(idx: np.ndarray, params: dict) -> np.ndarray:
    """The leaf indices of a ``broadcast_in_dim`` of a view's ``idx``."""
    shape = [1] * len(params["shape"])
    for axis, size in zip(params["broadcast_dimensions"], idx.shape):
        shape[axis] = size
    return np.broadcast_to(idx.reshape(shape), params["shape"])


def _bias_use(eqn, ins: list, site_outs: dict, uses: dict, found: _Scan) -> bool:
    """Records a parameter (a view or a broadcast of one, outside scans) added to the
    output of a site, each used only there."""
    if eqn.primitive.name != "add" or len(ins) != 1 or getattr(ins[0][1], "stack", ()):
        return False
    k, bias = ins[0]
    out = eqn.invars[1 - k]
    if out not in site_outs or uses[out] != 1 or uses[eqn.invars[k]] != 1:
        return False
    found.biases.append((site_outs[out].path, _Bias(bias.leaf, bias.idx)))
    return True


def _analyze(jaxpr, views: dict, found: _Scan, path: tuple, lengths: tuple) -> dict:
    """Walks ``jaxpr`` with the parameter views of its inputs; records sites, biases
    and other uses in ``found``; returns the views among its outputs."""
    views, site_outs = dict(views), {}
    uses = collections.Counter(v for eqn in jaxpr.eqns for v in eqn.invars if _is_var(v))
    uses.update(v for v in jaxpr.outvars if _is_var(v))
    for e, eqn in enumerate(jaxpr.eqns):
        ins = [(k, views[v]) for k, v in enumerate(eqn.invars) if _is_var(v) and v in views]
        if not ins:
            continue
        name, here = eqn.primitive.name, path + (e,)
        if _bias_use(eqn, ins, site_outs, uses, found):
            continue
        if any(isinstance(v, _Bias) for _, v in ins):
            found.other.update(v.leaf for _, v in ins)
            continue
        if name in _STRUCTURAL and len(eqn.invars) == 1:
            try:
                views[eqn.outvars[0]] = ins[0][1].apply(
                    lambda idx, nb: _STRUCTURAL[name](idx, nb, eqn.params))
                continue
            except _NotAView:
                if name == "broadcast_in_dim" and not ins[0][1].stack:
                    views[eqn.outvars[0]] = _Bias(ins[0][1].leaf,
                                                  _broadcast_idx(ins[0][1].idx, eqn.params))
                    continue
        elif name in ("dot_general", "conv_general_dilated") and len(ins) == 1 and (
                name == "dot_general" or (ins[0][0] == 1 and eqn.params["batch_group_count"] == 1)):
            side, view = ins[0]
            out = eqn.outvars[0].aval
            found.sites.append(_Site(here, "dot" if name == "dot_general" else "conv", side,
                                     eqn.params, view, lengths,
                                     jax.ShapeDtypeStruct(out.shape, out.dtype),
                                     eqn.invars[1 - side].aval.ndim))
            site_outs[eqn.outvars[0]] = found.sites[-1]
            continue
        elif name in CALLS:
            inner, _ = _sub_jaxpr(eqn)
            inner_views = {inner.invars[k]: v for k, v in ins}
            outs = _analyze(inner, inner_views, found, here, lengths)
            views.update({eqn.outvars[i]: v for i, v in outs.items()})
            continue
        elif name == "scan":
            _analyze_scan(eqn, ins, found, here, lengths)
            continue
        found.other.update(v.leaf for _, v in ins)
    out_views = {i: views[v] for i, v in enumerate(jaxpr.outvars) if _is_var(v) and v in views}
    return out_views


def _analyze_scan(eqn, ins, found: _Scan, path: tuple, lengths: tuple) -> None:
    """Views entering a scan: consts are shared by every step, xs are sliced."""
    body = eqn.params["jaxpr"].jaxpr
    consts, carry = eqn.params["num_consts"], eqn.params["num_carry"]
    inner = {}
    for k, v in ins:
        if k < consts:
            inner[body.invars[k]] = _View(v.leaf, v.idx, v.stack + ("S",))
        elif k < consts + carry:
            found.other.add(v.leaf)
        else:
            inner[body.invars[k]] = _View(v.leaf, v.idx, v.stack + ("B",))
    outs = _analyze(body, inner, found, path, lengths + (eqn.params["length"],))
    found.other.update(v.leaf for v in outs.values())


@dataclasses.dataclass
class _Run:
    """One evaluation: the active sites (path -> parameter operand), the paths of the
    calls and scans that hold them, their perturbations and what they record."""

    active: dict
    containers: frozenset
    eps: dict
    rec: dict = dataclasses.field(default_factory=dict)


def _bind(eqn, invals: list) -> list:
    got = eqn.primitive.get_bind_params(eqn.params)    # jax < 0.5: (subfuns, params)
    subfuns, params = ([], got) if isinstance(got, dict) else got
    out = eqn.primitive.bind(*subfuns, *invals, **params)
    return list(out) if eqn.primitive.multiple_results else [out]


def _eval(jaxpr, consts: list, args: list, run: _Run, path: tuple) -> list:
    """Evaluates ``jaxpr`` as it is, except that each active site's output gets its
    perturbation added and its non-parameter operand recorded."""
    env = dict(zip(jaxpr.constvars, consts))
    env.update(zip(jaxpr.invars, args))
    read = lambda v: env[v] if _is_var(v) else v.val
    for e, eqn in enumerate(jaxpr.eqns):
        here, invals = path + (e,), [read(v) for v in eqn.invars]
        if here in run.active:
            out = _bind(eqn, invals)
            run.rec[here] = invals[1 - run.active[here]]
            out = [out[0] + run.eps[here]]
        elif here in run.containers and eqn.primitive.name == "scan":
            out = _eval_scan(eqn, invals, run, here)
        elif here in run.containers:
            out = _eval(*_sub_jaxpr(eqn), invals, run, here)
        else:
            out = _bind(eqn, invals)
        env.update(zip(eqn.outvars, out))
    return [read(v) for v in jaxpr.outvars]


def _eval_scan(eqn, invals: list, run: _Run, path: tuple) -> list:
    """A scan holding active sites: their perturbations enter as extra ``xs``, what
    they record leaves as extra ``ys``."""
    p = eqn.params
    body, nc, ncarry = p["jaxpr"], p["num_consts"], p["num_carry"]
    consts, init, xs = invals[:nc], invals[nc:nc + ncarry], invals[nc + ncarry:]
    keys = [k for k in run.active if k[:len(path)] == path]

    def step(carry, x):
        x_vals, eps = x
        inner = _Run(run.active, run.containers, dict(zip(keys, eps)))
        outs = _eval(body.jaxpr, list(body.consts), [*consts, *carry, *x_vals], inner, path)
        return outs[:ncarry], (outs[ncarry:], [inner.rec[k] for k in keys])

    carry, (ys, recs) = jax.lax.scan(step, list(init), (list(xs), [run.eps[k] for k in keys]),
                                     length=p["length"], reverse=p["reverse"], unroll=p["unroll"])
    run.rec.update(zip(keys, recs))
    return [*carry, *ys]


def _arrange(x: jax.Array, lead: int, b: list, s: list, k: list) -> jax.Array:
    """``x`` with ``lead`` leading axes kept and axes ``b``, ``s``, ``k`` merged into
    three, in that order."""
    y = x.transpose(list(range(lead)) + b + s + k)
    size = lambda dims: int(np.prod([x.shape[d] for d in dims]))
    return y.reshape(x.shape[:lead] + (size(b), size(s), size(k)))


def _levels(site: _Site, lead: int) -> tuple[list, list]:
    """Axes of the enclosing scans along which the parameter is sliced / shared."""
    tags = site.view.stack
    return ([lead + i for i, t in enumerate(tags) if t == "B"],
            [lead + i for i, t in enumerate(tags) if t == "S"])


def _patches(x: jax.Array, window: tuple, strides: tuple, padding: tuple,
             lhs_dilation: tuple, rhs_dilation: tuple) -> jax.Array:
    """Input patches of a convolution, ``x`` ``(M, *spatial, C)`` to ``(M, *out,
    prod(window), C)``: padding, then one gather of constant indices, with none of
    the multiplications of ``lax.conv_general_dilated_patches``' one-hot filter."""
    config = [(0, 0, 0), *((lo, hi, d - 1) for (lo, hi), d in zip(padding, lhs_dilation)),
              (0, 0, 0)]
    padded = jax.lax.pad(x, jnp.zeros((), x.dtype), config)
    out = [(n - r * (w - 1) - 1) // s + 1
           for n, w, s, r in zip(padded.shape[1:-1], window, strides, rhs_dilation)]
    grids = np.meshgrid(*(np.arange(n) * s for n, s in zip(out, strides)),
                        *(np.arange(w) * r for w, r in zip(window, rhs_dilation)),
                        indexing="ij")
    rank = len(window)
    index = tuple(grids[d] + grids[rank + d] for d in range(rank))    # (*out, *window)
    gathered = padded[(slice(None), *index, slice(None))]
    return gathered.reshape(gathered.shape[:1 + rank] + (-1, x.shape[-1]))


def _arrange_operand(site: _Site, a: jax.Array) -> jax.Array:
    """The recorded operand ``(n, *scan lengths, ...)`` as ``(n, B, S, K)``."""
    bl, sl = _levels(site, 1)
    o = 1 + len(site.lengths)
    if site.kind == "dot":
        contract, batch = site.params["dimension_numbers"]
        ab, ac = list(batch[1 - site.side]), list(contract[1 - site.side])
        af = [d for d in range(a.ndim - o) if d not in ab and d not in ac]
        return _arrange(a, 1, bl + [o + d for d in ab], sl + [o + d for d in af],
                        [o + d for d in ac])
    p = site.params
    lhs_spec = p["dimension_numbers"].lhs_spec        # (batch, feature, spatial...)
    groups, rank = p["feature_group_count"], len(lhs_spec) - 2
    moved = a.transpose(list(range(o)) + [o + d for d in lhs_spec[:1] + lhs_spec[2:]]
                        + [o + lhs_spec[1]])
    window = tuple(site.view.idx.shape[site.view.stack.count("B") + d]
                   for d in p["dimension_numbers"].rhs_spec[2:])
    patches = _patches(moved.reshape((-1,) + moved.shape[-rank - 1:]), window,
                       p["window_strides"], p["padding"], p["lhs_dilation"], p["rhs_dilation"])
    patches = patches.reshape(moved.shape[:o + 1] + patches.shape[1:-1]
                              + (groups, patches.shape[-1] // groups))
    last = patches.ndim
    return _arrange(patches, 1, bl + [last - 2], sl + list(range(o, last - 3)),
                    [last - 3, last - 1])


def _arrange_cotangent(site: _Site, d: jax.Array) -> jax.Array:
    """The output cotangents ``(n, C, *scan lengths, ...)`` as ``(n, C, B, S, O)``."""
    bl, sl = _levels(site, 2)
    o = 2 + len(site.lengths)
    if site.kind == "dot":
        contract, batch = site.params["dimension_numbers"]
        nb = len(batch[0])
        naf = site.operand_ndim - nb - len(contract[0])
        nwf = d.ndim - o - nb - naf
        free = list(range(o + nb, d.ndim))
        af, wf = (free[:naf], free[naf:]) if site.side == 1 else (free[nwf:], free[:nwf])
        return _arrange(d, 2, bl + list(range(o, o + nb)), sl + af, wf)
    out_spec, groups = site.params["dimension_numbers"].out_spec, site.params["feature_group_count"]
    moved = d.transpose(list(range(o)) + [o + k for k in out_spec[:1] + out_spec[2:]]
                        + [o + out_spec[1]])
    moved = moved.reshape(moved.shape[:-1] + (groups, moved.shape[-1] // groups))
    last = moved.ndim
    return _arrange(moved, 2, bl + [last - 2], sl + list(range(o, last - 2)), [last - 1])


def _gram_is_cheaper(n1: int, n2: int, c: int, b: int, s: int, k: int, o: int) -> bool:
    """FLOP estimate: Gram route vs forming and contracting per-example gradients."""
    gram = n1 * n2 * b * (s * s * k + c * s * s * o + c * c * s * o)
    grad = (n1 + n2) * c * b * s * k * o + n1 * n2 * c * c * b * k * o
    return gram < grad


@dataclasses.dataclass(frozen=True)
class _Group:
    """Sites reading the same entries of one leaf in the same arrangement."""

    sites: tuple[_Site, ...]
    gram: bool
    bias: Optional[int] = None            # a leaf added to the output: a ones input


@dataclasses.dataclass(frozen=True)
class Plan:
    """How the kernel of one function is computed: its jaxpr for one example, the
    site groups of the structured leaves and the leaves by per-example gradients."""

    jaxpr: Any
    leaves: list
    groups: list[_Group]
    grads: list[int]
    active: dict
    containers: frozenset

    def describe(self) -> list[dict]:
        """Per term: the leaf, its route and sizes (B, S, K, O or P)."""
        rows = [{"leaf": g.sites[0].view.leaf, "route": "gram" if g.gram else "grad",
                 "sites": len(g.sites), "B, S, K, O": _sizes(g.sites), "bias": g.bias}
                for g in self.groups]
        return rows + [{"leaf": k, "route": "per-example gradient",
                        "P": int(np.size(self.leaves[k]))} for k in self.grads]


def _sizes(sites: tuple[_Site, ...]) -> tuple[int, int, int, int]:
    """(B, S, K, O) of a group: positions add up over its sites."""
    b, k, o = sites[0].canonical_idx().shape
    s = 0
    for site in sites:
        b_own = b // int(np.prod([n for n, t in zip(site.lengths, site.view.stack) if t == "B"]))
        shared = int(np.prod([n for n, t in zip(site.lengths, site.view.stack) if t == "S"]))
        s += int(np.prod(site.out.shape)) // (b_own * o) * shared
    return b, s, k, o


def _split(sites: list[_Site], size: int) -> Optional[list[tuple[_Site, ...]]]:
    """Sites of one leaf (of ``size`` entries) grouped by identical arrangement; None
    if two groups share entries (their cross terms need the leaf's gradient)."""
    groups: list[tuple[np.ndarray, list]] = []
    for site in sites:
        idx = site.canonical_idx()
        for seen, members in groups:
            if seen.shape == idx.shape and np.array_equal(seen, idx):
                members.append(site)
                break
        else:
            groups.append((idx, [site]))
    if len(groups) > 1:
        taken = np.zeros(size, bool)
        for idx, _ in groups:
            mine = np.zeros(size, bool)
            mine[idx.ravel()] = True
            if (taken & mine).any():
                return None
            taken |= mine
    return [tuple(members) for _, members in groups]


def _containers(sites) -> frozenset:
    return frozenset(s.path[:i] for s in sites for i in range(1, len(s.path)))


def _adds_ones(group: _Group, bias: _Bias, size: int) -> bool:
    """Whether ``bias`` (added to the output of the group's one site) contributes
    exactly what a column of ones in the site's input would: no scan, no batch
    axes, and at every position the same arrangement of all of its entries."""
    site = group.sites[0]
    if len(group.sites) != 1 or site.lengths or not group.gram:
        return False
    arranged = _arrange_cotangent(site, bias.idx[None, None])[0, 0]    # (B, S, O)
    return (arranged.shape[0] == 1 and arranged.shape[2] == size
            and bool((arranged == arranged[:, :1]).all())
            and np.array_equal(np.sort(arranged[0, 0]), np.arange(size)))


def _attach_biases(groups: list[_Group], found: _Scan, leaves: list
                   ) -> tuple[list[_Group], set[int]]:
    """Gram-route groups with the bias added to their output (a leaf with no other
    use, once); the leaves so attached. The others go by per-example gradients."""
    once = collections.Counter(b.leaf for _, b in found.biases)
    by_site = {path: b for path, b in found.biases
               if once[b.leaf] == 1 and b.leaf not in found.other}
    out, attached = [], set()
    for g in groups:
        bias = by_site.get(g.sites[0].path)
        if bias is not None and _adds_ones(g, bias, int(np.size(leaves[bias.leaf]))):
            g = dataclasses.replace(g, bias=bias.leaf)
            attached.add(bias.leaf)
        out.append(g)
    return out, attached


def make_plan(apply_fn: Callable, params: Any, x: jax.Array, n1: int, n2: int) -> Plan:
    """Traces ``apply_fn`` on one example and picks a route per leaf and site group."""
    leaves, treedef = jax.tree_util.tree_flatten(params)
    closed = jax.make_jaxpr(lambda ls, xi: apply_fn(jax.tree_util.tree_unflatten(treedef, ls),
                                                    xi))(leaves, x[:1])
    jaxpr = closed.jaxpr
    views = {jaxpr.invars[k]: _View(k, np.arange(np.size(leaf)).reshape(np.shape(leaf)))
             for k, leaf in enumerate(leaves)}
    found = _Scan()
    found.other.update(v.leaf for v in _analyze(jaxpr, views, found, (), ()).values())
    # a leaf added as a bias and also read by a site needs its whole gradient
    found.other.update({b.leaf for _, b in found.biases} & {s.view.leaf for s in found.sites})
    num_out = closed.out_avals[0].shape[-1]
    groups, grads = [], []
    for leaf in range(len(leaves)):
        sites = [s for s in found.sites if s.view.leaf == leaf]
        split = None if leaf in found.other or not sites else _split(
            sites, int(np.size(leaves[leaf])))
        if split is None:
            grads += [leaf] if sites or leaf in found.other else []
            continue
        groups += [_Group(g, _gram_is_cheaper(n1, n2, num_out, *_sizes(g))) for g in split]
    groups, attached = _attach_biases(groups, found, leaves)
    grads = sorted(set(grads) | {b.leaf for _, b in found.biases} - attached)
    active = {s.path: s.side for g in groups for s in g.sites}
    return Plan(closed, leaves, groups, grads, active,
                _containers([s for g in groups for s in g.sites]))


def _features(plan: Plan, x: jax.Array) -> Features:
    """Kernel terms of the examples ``x``: per site group either per-example gradients
    ``(n, C, P)`` or Gram-route operands ``(n, B, S, K)`` and cotangents
    ``(n, C, B, S, O)``; then per-example gradients of the other leaves."""
    sites = [s for g in plan.groups for s in g.sites]

    def single(xi):
        def f(eps, grad_leaves):
            leaves = list(plan.leaves)
            for k, leaf in zip(plan.grads, grad_leaves):
                leaves[k] = leaf
            run = _Run(plan.active, plan.containers, eps)
            out = _eval(plan.jaxpr.jaxpr, list(plan.jaxpr.consts), [*leaves, xi[None]], run, ())
            return out[0][0], run.rec

        zeros = {s.path: jnp.zeros(s.lengths + s.out.shape, s.out.dtype) for s in sites}
        out, vjp_fn, rec = jax.vjp(f, zeros, [plan.leaves[k] for k in plan.grads],
                                   has_aux=True)
        return rec, jax.vmap(vjp_fn)(jnp.eye(out.shape[-1], dtype=out.dtype))

    recs, (deltas, grads) = jax.vmap(single)(x)
    terms = []
    for g in plan.groups:
        a = jnp.concatenate([_arrange_operand(s, recs[s.path]) for s in g.sites], axis=2)
        if g.bias is not None:
            a = jnp.concatenate([a, jnp.ones(a.shape[:-1] + (1,), a.dtype)], axis=-1)
        d = jnp.concatenate([_arrange_cotangent(s, deltas[s.path]) for s in g.sites], axis=3)
        terms.append((a, d) if g.gram else
                     (jnp.einsum("ibsk,icbso->icbko", a, d).reshape(d.shape[:2] + (-1,)),))
    return terms + [(g.reshape(g.shape[:2] + (-1,)),) for g in grads]


def _contract(f1: Features, f2: Features) -> jax.Array:
    """``(n1, C, n2, C)`` kernel block of two chunks' features. Gram terms, whose
    temporaries are large, are computed one after another."""
    k, chained = 0.0, None
    for t1, t2 in zip(f1, f2):
        if len(t1) == 1:      # per-example gradients (n, C, P)
            k = k + jnp.einsum("icp,jdp->icjd", t1[0], t2[0])
            continue
        a1 = t1[0] if chained is None else after(t1[0], chained)
        chained = jnp.einsum("ibsk,jbtk,icbso,jdbto->icjd", a1, t2[0], t1[1], t2[1],
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
            k = k + jnp.einsum("ibsk,ibtk,icbso,idbto->icd", t[0], t[0], t[1], t[1],
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
    n2 examples of the shape of ``x`` (whose first row is traced to find the sites)."""
    plan = make_plan(apply_fn, params, x, n1, n2)
    return functools.partial(_features, plan), _contract
