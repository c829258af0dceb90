"""Empirical NTK implementations against a float64 brute-force oracle and each other."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from lazy_hasty import models, ntk, ntk_structured


# Compiling many kernels on tiny inputs is this module's cost; its checks are
# tolerances on the maths (conftest.py).
pytestmark = pytest.mark.usefixtures("quick_compiles_module")


# name -> (model kwargs, input shape of one example, (n1, n2)). Chunks of 2 then
# split the MLP's inputs 3 x 2 (a grid of chunks, padded); the conv nets, whose
# unrolled chunks each compile a copy of the network, get 2 x 1 (still padded).
# The ResNet module has one block per stage (a ResNet10): every layer kind of the
# ResNet18 (stem, blocks with and without projection shortcuts, pooled head) at
# half the compile time.
SETUPS = {
    "mlp": (dict(features=(7, 5), num_outputs=3), (4,), (5, 4)),
    "cnn": (dict(num_outputs=3, width=4), (8, 8, 1), (3, 2)),
    "resnet": (dict(num_outputs=2, width=2, stem="cifar", blocks=(1, 1, 1, 1)), (8, 8, 3),
               (3, 2)),
}
# (chunk size, with x2) cases per set-up. The MLP and CNN take all four; the ResNet,
# whose every compile costs seconds, takes the chunked one (tests/test_ntk_zoo.py has
# the unchunked ResNet18, and every network in float32).
ALL_CASES = ((None, True), (None, False), (2, True), (2, False))
CASES = {"mlp": ALL_CASES, "cnn": ALL_CASES, "resnet": ((2, False),)}


def _setup(name, n1=None, n2=None, seed=0):
    kwargs, shape, sizes = SETUPS[name]
    n1, n2 = n1 or sizes[0], n2 or sizes[1]
    module = models.get_model("resnet18" if name == "resnet" else name, **kwargs)
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(seed), 3)
    x1 = jax.random.normal(k1, (n1,) + shape)
    x2 = jax.random.normal(k2, (n2,) + shape)
    params, state = models.init_model(module, k3, x1)
    return models.make_apply_fn(module, state), params, x1, x2


def _to64(*trees):
    return jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), trees)


def oracle_ntks(apply_fn, params, x1, x2):
    """``(K(x1, x2), K(x1, x1))`` from one explicit Jacobian of the ravelled
    parameters on ``[x1; x2]``, contracted by hand."""
    flat, unravel = ravel_pytree(params)
    x = jnp.concatenate([x1, x2])
    jac = np.asarray(jax.jit(jax.jacrev(lambda p: apply_fn(unravel(p), x)))(flat))
    j1, j2 = jac[:len(x1)], jac[len(x1):]           # (N, C, P)
    return np.einsum("icp,jdp->icjd", j1, j2), np.einsum("icp,jdp->icjd", j1, j1)


@functools.cache
def _float64_case(name):
    """A float64 set-up and its oracle kernels, shared by the tests that need them."""
    with jax.enable_x64(True):
        apply_fn, params, x1, x2 = _setup(name)
        params, x1, x2 = _to64(params, x1, x2)
        return apply_fn, params, x1, x2, oracle_ntks(apply_fn, params, x1, x2)


def _assert_matches_oracle(apply_fn, params, x1, x2, wants, implementation,
                           cases=ALL_CASES):
    """Each (chunk size, with ``x2``) case of ``cases`` (``x2=None``: ``K(x1, x1)``)
    equals the oracle to 1e-10."""
    for chunk, with_x2 in cases:
        x2_, want = (x2, wants[0]) if with_x2 else (None, wants[1])
        got = ntk.empirical_ntk(apply_fn, params, x1, x2_, implementation=implementation,
                                chunk_size=chunk)
        assert got.dtype == jnp.float64 and got.shape == want.shape
        assert _rel(got, want) <= 1e-10, (implementation, with_x2, chunk)


def _rel(a, b):
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)) / np.linalg.norm(b))


@pytest.mark.parametrize("name", list(SETUPS))
def test_ntk_equals_float64_oracle(name, x64):
    for impl in ntk.IMPLEMENTATIONS:
        _assert_matches_oracle(*_float64_case(name), impl, CASES[name])


# The structured diagonal (what GraNd uses) on every net; the Jacobian one, whose
# compile costs most on the ResNet, on the MLP and the CNN.
@pytest.mark.parametrize("implementation, name, chunk", [
    ("structured", "mlp", None), ("structured", "mlp", 2), ("structured", "cnn", 2),
    ("structured", "resnet", 2), ("jacobian", "mlp", None), ("jacobian", "cnn", 2)])
def test_diagonal_blocks_are_the_oracles_diagonal(implementation, name, chunk, x64):
    apply_fn, params, x1, _, (_, k11) = _float64_case(name)
    got = jax.jit(lambda p: ntk.diagonal_blocks(apply_fn, p, x1, implementation=implementation,
                                                chunk_size=chunk))(params)
    want = np.stack([k11[i, :, i] for i in range(len(x1))])
    assert got.dtype == jnp.float64 and got.shape == want.shape
    assert _rel(got, want) <= 1e-10


class Assorted(nn.Module):
    """Layer kinds the structured NTK must handle, by sites or per-example gradients."""

    @nn.compact
    def __call__(self, x):
        x = nn.Conv(3, (3, 3), strides=2, padding="SAME", use_bias=False)(x)
        x = nn.tanh(nn.Conv(4, (2, 2), kernel_dilation=2, padding=((1, 0), (0, 1)))(x))
        shared = nn.Dense(4)                          # called twice, on all positions
        x = shared(nn.tanh(shared(x)))
        x = nn.GroupNorm(num_groups=2)(x)             # params left to per-example grads
        x = nn.Conv(3, (3,), padding="CIRCULAR")(x.reshape(x.shape[0], -1, 4))  # a pad, then a conv
        return nn.Dense(2)(x.mean(axis=1))


def _mlp_without_flax(params, x):
    return jnp.tanh(x @ params["w1"]) @ params["w2"]


@pytest.mark.parametrize("which", ["assorted", "plain_jax"])
def test_structured_handles_assorted_layers(which, x64):
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(2), 3)
    if which == "assorted":
        x1, x2 = jax.random.normal(k1, (3, 6, 6, 2)), jax.random.normal(k2, (2, 6, 6, 2))
        module = Assorted()
        params = _to64(module.init(k3, x1)["params"])[0]
        apply_fn = lambda p, x: module.apply({"params": p}, x)
    else:
        x1, x2 = jax.random.normal(k1, (3, 4)), jax.random.normal(k2, (2, 4))
        params = {"w1": jax.random.normal(k3, (4, 6)), "w2": jnp.ones((6, 2))}
        apply_fn = _mlp_without_flax
    plan = ntk_structured.make_plan(apply_fn, params, x1, len(x1), len(x2))
    sites = [len(g.sites) for g in plan.groups]
    # assorted: every kernel is a site, the shared Dense's twice; the biases of the
    # Gram-route layers are their ones inputs; the shared Dense's bias and the norm's
    # scale and bias go by per-example gradients
    assert sites == ([1, 1, 1, 2, 1] if which == "assorted" else [1, 1])
    assert [g.bias is not None for g in plan.groups] == (
        [False, True, True, False, True] if which == "assorted" else [False, False])
    assert len(plan.grads) == (3 if which == "assorted" else 0)
    wants = oracle_ntks(apply_fn, params, x1, x2)
    _assert_matches_oracle(apply_fn, params, x1, x2, wants, "structured")


@pytest.mark.parametrize("gram", [True, False])
def test_structured_routes_each_equal_the_oracle(gram, monkeypatch, x64):
    # By default the CNN and ResNet mix both routes; here every layer takes one.
    monkeypatch.setattr(ntk_structured, "_gram_is_cheaper", lambda *_: gram)
    apply_fn, params, x1, x2, (want, _) = _float64_case("cnn")
    fresh = lambda p, x: apply_fn(p, x)        # a new function: not a cached trace
    got = ntk.empirical_ntk(fresh, params, x1, x2, implementation="structured")
    assert _rel(got, want) <= 1e-10


def test_gram_route_is_chosen_where_cheaper():
    # ResNet18 CIFAR, C = 10, chunks of 20: the 4x4 layer4 conv takes the Gram
    # route, the 32x32 layer1 conv contracts per-example gradients.
    assert ntk_structured._gram_is_cheaper(20, 20, 10, 1, 16, 4608, 512)
    assert not ntk_structured._gram_is_cheaper(20, 20, 10, 1, 1024, 576, 64)


@pytest.mark.parametrize("x2_is_none", [True, False])
def test_loop_and_unrolled_chunking_agree(x2_is_none, monkeypatch):
    # 2 x 2 chunks, padded. The chunk loop wraps the whole kernel function, whatever
    # the layers, so the MLP (a conv net compiles a copy of itself per chunk) serves.
    apply_fn, params, x1, x2 = _setup("mlp", n1=3, n2=3)
    x2 = None if x2_is_none else x2
    for impl in ntk.IMPLEMENTATIONS:
        unrolled = ntk.empirical_ntk(apply_fn, params, x1, x2, implementation=impl,
                                     chunk_size=2)
        with monkeypatch.context() as m:
            m.setattr(ntk, "MAX_UNROLLED", 0)
            fresh = lambda p, x: apply_fn(p, x)    # a new function: not a cached trace
            looped = ntk.empirical_ntk(fresh, params, x1, x2, implementation=impl,
                                       chunk_size=2)
        assert _rel(looped, unrolled) <= 1e-6, impl


def test_ntk_is_symmetric_psd_and_jittable():
    apply_fn, params, x1, _ = _setup("mlp", n1=6)
    k = ntk.empirical_ntk_fn(apply_fn, implementation="ntvp", chunk_size=4)(params, x1)
    m = np.asarray(k).reshape(18, 18)
    np.testing.assert_allclose(m, m.T, rtol=1e-5, atol=1e-6)
    assert np.linalg.eigvalsh(m).min() > -1e-4 * np.abs(m).max()


def test_bad_arguments():
    apply_fn, params, x1, _ = _setup("mlp")
    with pytest.raises(ValueError, match="implementation"):
        ntk.empirical_ntk(apply_fn, params, x1, implementation="nope")
    with pytest.raises(ValueError, match="chunk_size"):
        ntk.empirical_ntk(apply_fn, params, x1, chunk_size=0)


def _wide_mlp(params, x):
    h = jnp.tanh(x @ params["w1"])
    return jnp.tanh(h @ params["w2"]) @ params["w3"]


def test_auto_keeps_structured_unless_another_scores_a_margin_below():
    score = lambda **kw: {k: {"score": v} for k, v in kw.items()}
    assert ntk.STRUCTURED_MARGIN == 0.1
    assert ntk.pick(score(jacobian=91.0, ntvp=300.0, structured=100.0)) == "structured"
    assert ntk.pick(score(jacobian=89.0, ntvp=300.0, structured=100.0)) == "jacobian"
    assert ntk.pick(score(jacobian=95.0, ntvp=80.0, structured=100.0)) == "ntvp"
    assert ntk.pick(score(jacobian=300.0, ntvp=150.0, structured=100.0)) == "structured"


@pytest.mark.parametrize("case", ["mlp", "wide_mlp"])
def test_auto_runs_the_cheapest_by_xla_cost_analysis(case):
    if case == "mlp":
        apply_fn, params, x1, x2 = _setup("mlp")
    else:                                     # 64-512-512-10 on 32 examples
        keys = jax.random.split(jax.random.PRNGKey(5), 4)
        sizes = ((64, 512), (512, 512), (512, 10))
        params = {f"w{i + 1}": jax.random.normal(k, s) / np.sqrt(s[0])
                  for i, (k, s) in enumerate(zip(keys, sizes))}
        apply_fn, x1, x2 = _wide_mlp, jax.random.normal(keys[3], (32, 64)), None
    choice = ntk.choose_implementation(apply_fn, params, x1, x2)
    assert set(choice.costs) == set(ntk.IMPLEMENTATIONS)
    for cost in choice.costs.values():
        assert cost["flops"] > 0 and cost["bytes accessed"] > 0
        assert cost["score"] == cost["flops"] + ntk.FLOPS_PER_BYTE * cost["bytes accessed"]
    assert choice.implementation == ntk.pick(choice.costs)
    if case == "wide_mlp":
        # The Jacobian route contracts (N C)^2 P multiply-adds, by hand; the structured
        # route's layer Grams need a tenth of that.
        contraction = 2 * (32 * 10) ** 2 * sum(a.size for a in params.values())
        assert choice.costs["jacobian"]["flops"] >= contraction
        assert choice.costs["structured"]["flops"] < contraction / 10
        assert choice.implementation == "structured"
        return
    auto = ntk.empirical_ntk(apply_fn, params, x1, x2, implementation="auto")
    chosen = ntk.empirical_ntk(apply_fn, params, x1, x2, implementation=choice.implementation)
    np.testing.assert_array_equal(auto, chosen)
