"""Every NTK implementation on the zoo (tests/ntk_zoo.py) against a float64 brute-force
Jacobian, and the structured engine's decomposition of each network."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lazy_hasty import ntk, ntk_structured
from tests.ntk_zoo import ZOO
from tests.test_ntk import _rel, oracle_ntks

pytestmark = pytest.mark.usefixtures("quick_compiles_module")


def _kernels(apply_fn, params, x1, x2, implementation):
    return (ntk.empirical_ntk(apply_fn, params, x1, x2, implementation=implementation),
            ntk.empirical_ntk(apply_fn, params, x1, implementation=implementation))


@pytest.mark.parametrize("name", list(ZOO))
def test_every_implementation_equals_the_float64_oracle(name, x64):
    apply_fn, params, x1, x2 = ZOO[name](jax.random.PRNGKey(0), jnp.float64)
    wants = oracle_ntks(apply_fn, params, x1, x2)
    for impl in ntk.IMPLEMENTATIONS:
        for got, want in zip(_kernels(apply_fn, params, x1, x2, impl), wants):
            assert got.dtype == jnp.float64 and got.shape == want.shape
            assert _rel(got, want) <= 1e-10, impl


@pytest.mark.parametrize("name", list(ZOO))
def test_float32_kernels_within_1e5_of_the_float64_oracle(name):
    # K(x1, x2) only: the float64 test above covers the symmetric path's indexing.
    apply_fn, params, x1, x2 = ZOO[name](jax.random.PRNGKey(1), jnp.float32)
    got = {impl: ntk.empirical_ntk(apply_fn, params, x1, x2, implementation=impl)
           for impl in ntk.IMPLEMENTATIONS}
    with jax.enable_x64(True):
        wide = jax.tree_util.tree_map(
            lambda a: a.astype(jnp.float64) if a.dtype == jnp.float32 else a, (params, x1, x2))
        want = oracle_ntks(apply_fn, *wide)[0]
    for impl, k in got.items():
        assert k.dtype == jnp.float32
        assert _rel(k, want) <= 1e-5, impl



@pytest.mark.parametrize("gram", [True, False])
def test_grouped_cnn_takes_either_route_exactly(gram, monkeypatch, x64):
    # Every conv (strided, dilated, transposed, grouped) by the Gram route, then every
    # one by per-example gradients: both reorderings of the sums are exact.
    monkeypatch.setattr(ntk_structured, "_gram_is_cheaper", lambda *_: gram)
    apply_fn, params, x1, x2 = ZOO["cnn_grouped"](jax.random.PRNGKey(0), jnp.float64)
    plan = ntk_structured.make_plan(apply_fn, params, x1, len(x1), len(x2))
    assert {g.gram for g in plan.groups} == {gram} and len(plan.groups) == 5
    got = ntk.empirical_ntk(lambda p, x: apply_fn(p, x), params, x1, x2,
                            implementation="structured")
    assert _rel(got, oracle_ntks(apply_fn, params, x1, x2)[0]) <= 1e-10

# name -> per structured term: (leaf path, number of sites) ; then the leaves by
# per-example gradients.
def _routes(name):
    apply_fn, params, x1, x2 = ZOO[name](jax.random.PRNGKey(0), jnp.float32)
    plan = ntk_structured.make_plan(apply_fn, params, x1, len(x1), len(x2))
    paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]]
    sites = {paths[g.sites[0].view.leaf]: (len(g.sites), ntk_structured._sizes(g.sites))
             for g in plan.groups}
    return sites, sorted(paths[k] for k in plan.grads)


def test_scan_slices_stacked_weights_and_shares_the_mixing_matrix():
    sites, grads = _routes("scan")
    assert grads == []
    # stacked (3, 6, 6): one site in the scan body, a batch of 3 steps, one position
    assert sites["['stacked']"] == (1, (3, 1, 6, 6))
    # shared (6, 6): the same entries at every step, so 3 positions of one batch
    assert sites["['shared']"] == (1, (1, 3, 6, 6))
    assert sites["['embed']"] == (1, (1, 1, 4, 6)) and sites["['readout']"][0] == 1


def test_transformer_ties_and_norms_go_by_per_example_gradients():
    sites, grads = _routes("transformer")
    assert grads == ["['embed']", "['ln1_bias']", "['ln1_scale']", "['ln2_bias']",
                     "['ln2_scale']", "['position']"]
    # the projections act on each of the 5 positions
    assert {n: s[1][1] for n, s in sites.items()} == {
        f"['{w}']": 5 for w in ("w1", "w2", "wk", "wo", "wq", "wv")}


def test_a_weight_used_transposed_and_plain_needs_its_gradient(x64):
    # W and W.T read the same entries in two arrangements: their cross terms need
    # the leaf's own per-example gradient; a slice of W read twice adds positions.
    def f(p, x):
        w = p["w"]
        h = jnp.tanh(x @ w) @ w.T
        return jnp.tanh(h @ w[:, :2]) @ w[:2, :2] + jnp.tanh(h @ w[:, :2])
    params = {"w": jax.random.normal(jax.random.PRNGKey(3), (4, 4))}
    x1 = jax.random.normal(jax.random.PRNGKey(4), (3, 4))
    plan = ntk_structured.make_plan(f, params, x1, 3, 3)
    assert plan.grads == [0] and plan.groups == []
    got = ntk.empirical_ntk(f, params, x1, implementation="structured")
    np.testing.assert_allclose(got, oracle_ntks(f, params, x1, x1)[1], rtol=1e-10)

    def g(p, x):                 # two reads of one slice, one of a disjoint slice
        w = p["w"]
        h = jnp.tanh(x @ w[:, :2])
        return jnp.tanh(jnp.concatenate([h, x[:, :2]], 1) @ w[:, :2]) + x[:, 1:3] @ w[1:3, 2:]
    plan = ntk_structured.make_plan(g, params, x1, 3, 3)
    assert plan.grads == [] and [len(gr.sites) for gr in plan.groups] == [2, 1]
    got = ntk.empirical_ntk(g, params, x1, implementation="structured")
    np.testing.assert_allclose(got, oracle_ntks(g, params, x1, x1)[1], rtol=1e-10)


@pytest.mark.parametrize("shape, window, strides, padding, lhs_dilation, rhs_dilation", [
    ((2, 7, 9, 3), (3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1), (1, 1)),
    ((2, 7, 9, 4), (3, 2), (2, 1), ((0, 2), (1, -1)), (1, 2), (2, 1)),
    ((1, 8, 5), (4,), (3,), ((2, 1),), (2,), (1,)),
    ((2, 5, 6, 7, 2), (2, 3, 2), (1, 2, 1), ((1, 0), (0, 0), (1, 1)), (1, 1, 1), (1, 1, 2)),
])
def test_patches_equal_lax_patches(x64, shape, window, strides, padding,
                                             lhs_dilation, rhs_dilation):
    # lax's one-hot convolution orders the features (C, window); ours (window, C).
    x = jax.random.normal(jax.random.PRNGKey(5), shape, jnp.float64)
    spatial = "abc"[:len(window)]
    want = jax.lax.conv_general_dilated_patches(
        x, window, strides, padding, lhs_dilation, rhs_dilation,
        dimension_numbers=(f"N{spatial}C", f"{spatial}IO", f"N{spatial}C"),
        precision=jax.lax.Precision.HIGHEST)
    got = ntk_structured._patches(x, window, strides, padding, lhs_dilation, rhs_dilation)
    want = want.reshape(want.shape[:-1] + (shape[-1], -1))
    np.testing.assert_array_equal(got, jnp.swapaxes(want, -1, -2))


def test_a_bias_is_a_ones_input_only_where_that_is_exact(x64):
    # b1: added once to a Gram-route site's output -> that site's ones input. b2:
    # also read elsewhere; b3: added to an output read elsewhere too; b4: a different
    # entry per position; b5: added to a per-example-gradient site; a row of w6 added
    # to w6's own product -> all of these by per-example gradients, w6 with no site.
    def f(p, x):                                    # x: (N, 3, 4), three positions
        h = jnp.tanh(x @ p["w1"] + p["b1"])
        h = jnp.tanh(h @ p["w2"] + p["b2"]) * p["b2"]
        y = h @ p["w3"]
        h = jnp.tanh(y + p["b3"]) + y
        h = jnp.tanh(h @ p["w4"] + p["b4"])
        h = jnp.tanh(h @ p["w6"] + p["w6"][:1])
        return (h @ p["w5"] + p["b5"]).sum(axis=1)
    keys = jax.random.split(jax.random.PRNGKey(6), 13)
    shapes = {"w1": (4, 5), "w2": (5, 5), "w3": (5, 5), "w4": (5, 5), "w5": (5, 2),
              "w6": (5, 5), "b1": (5,), "b2": (5,), "b3": (5,), "b4": (3, 5), "b5": (2,)}
    params = {k: jax.random.normal(key, s) for (k, s), key in zip(shapes.items(), keys)}
    x1, x2 = jax.random.normal(keys[11], (3, 3, 4)), jax.random.normal(keys[12], (2, 3, 4))
    gram = lambda n1, n2, c, b, s, k, o: o != 2          # w5: per-example gradients
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ntk_structured, "_gram_is_cheaper", gram)
        plan = ntk_structured.make_plan(f, params, x1, len(x1), len(x2))
        got = ntk.empirical_ntk(lambda p, x: f(p, x), params, x1, x2,
                                implementation="structured")
    names = sorted(params)
    assert {names[g.sites[0].view.leaf]: g.bias is not None for g in plan.groups} == {
        "w1": True, "w2": False, "w3": False, "w4": False, "w5": False}
    assert [names[k] for k in plan.grads] == ["b2", "b3", "b4", "b5", "w6"]
    assert _rel(got, oracle_ntks(f, params, x1, x2)[0]) <= 1e-10
