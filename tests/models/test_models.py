"""Tests for the model zoo: shapes, pure apply, intermediates, init, norms."""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lazy_hasty.models import get_model, init_model, intermediates, make_apply_fn
from lazy_hasty.models.init import torch_kernel_init
from lazy_hasty.models.resnet import make_norm

# Compiling many small kernels (op by op) is this module's cost; its checks are shapes,
# exact relations and tolerances on the maths (conftest.py).
pytestmark = pytest.mark.usefixtures("quick_compiles_module")

N = 3

# (name, kwargs, input shape, num classes, expected number of ReLU pre-activations)
CASES = [
    ("mlp", {}, (N, 2), 1, 3),
    ("cnn", {"width": 4}, (N, 8, 8, 1), 10, 4),  # 3 conv ReLUs + dense(64) ReLU
] + [
    ("resnet18", {"width": 4, "stem": stem, "norm": norm, "num_outputs": 5},
     (N, 32 if stem == "imagenet" else 16, 32 if stem == "imagenet" else 16, 3), 5, 17)
    for stem in ("cifar", "imagenet")
    for norm in ("none", "frozen_batchnorm", "group")
] + [("resnet18", {"width": 4, "norm": "frozen_batchnorm", "num_outputs": 5,
                   "blocks": (1, 1, 1, 1)}, (N, 16, 16, 3), 5, 9)]   # a ResNet10


def _case_id(case):
    name, kwargs = case[0], case[1]
    return "-".join([name] + [str(v) for k, v in sorted(kwargs.items()) if k != "num_outputs"])


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_shapes_apply_and_intermediates(case):
    name, kwargs, shape, num_classes, n_preacts = case
    module = get_model(name, **kwargs)
    x = jax.random.normal(jax.random.key(1), shape)
    params, state = init_model(module, jax.random.key(0), x)
    assert "intermediates" not in state

    logits = make_apply_fn(module, state)(params, x)
    assert logits.shape == (N, num_classes)
    np.testing.assert_array_equal(logits, module.apply({"params": params, **state}, x))

    preacts, feats = intermediates(module, state, params, x)
    assert len(preacts) == n_preacts
    assert all(p.shape[0] == N for p in preacts)
    assert feats.ndim == 2 and feats.shape[0] == N
    head = params["head"]
    np.testing.assert_allclose(feats @ head["kernel"] + head["bias"], logits, rtol=1e-5, atol=1e-5)


def test_resnet_blocks_per_stage():
    x = jnp.zeros((1, 8, 8, 3))
    params, _ = init_model(get_model("resnet18", width=2, blocks=(1, 1, 1, 1)),
                           jax.random.key(0), x)
    assert sorted(params) == ["conv1", "head", "layer1_0", "layer2_0", "layer3_0", "layer4_0"]
    assert "downsample_conv" in params["layer2_0"]
    assert "downsample_conv" not in params["layer1_0"]
    for blocks in ((2, 2, 2), (1, 0, 1, 1)):
        with pytest.raises(ValueError, match="blocks must give 4 stage counts"):
            init_model(get_model("resnet18", width=2, blocks=blocks), jax.random.key(0), x)


def test_get_model_unknown_name():
    with pytest.raises(ValueError, match="resnet18"):
        get_model("vgg")


def test_mlp_default_architecture_and_features():
    module = get_model("mlp")
    x = jax.random.normal(jax.random.key(1), (N, 2))
    params, _ = init_model(module, jax.random.key(0), x)
    shapes = [params[k]["kernel"].shape for k in ("Dense_0", "Dense_1", "Dense_2", "head")]
    assert shapes == [(2, 60), (60, 60), (60, 60), (60, 1)]
    preacts, feats = intermediates(module, {}, params, x)
    np.testing.assert_allclose(feats, jax.nn.relu(preacts[-1]))


def test_mlp_init_follows_pytorch_default():
    module = get_model("mlp")
    x = jnp.zeros((1, 2))
    inits = [init_model(module, jax.random.key(s), x)[0] for s in range(10)]
    for layer in ("Dense_0", "Dense_1", "Dense_2", "head"):
        kernels = np.concatenate([p[layer]["kernel"].ravel() for p in inits])
        biases = np.concatenate([p[layer]["bias"].ravel() for p in inits])
        fan_in = inits[0][layer]["kernel"].shape[0]
        bound = 1.0 / math.sqrt(fan_in)
        assert np.abs(kernels).max() <= bound
        assert np.abs(biases).max() <= bound
        assert np.abs(kernels).max() > 0.9 * bound  # the bound is attained, not loose
        np.testing.assert_allclose(kernels.std(), bound / math.sqrt(3), rtol=0.1)
        np.testing.assert_allclose(biases.std(), bound / math.sqrt(3), rtol=0.25)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_torch_kernel_init_equals_flax_variance_scaling(dtype, x64):
    """The flat draw gives flax's variance_scaling(1/3, fan_in, uniform) bit for bit,
    for dense and conv kernels (fan_in: every axis but the last)."""
    flax_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")
    for i, shape in enumerate([(4, 3), (64, 10), (1, 1, 8, 16), (3, 3, 2, 4),
                               (7, 7, 3, 64), (3, 3, 16, 16)]):
        key = jax.random.key(i)
        got, want = torch_kernel_init(key, shape, dtype), flax_init(key, shape, dtype)
        assert got.shape == want.shape == shape and got.dtype == want.dtype == dtype
        np.testing.assert_array_equal(got, want)
        assert np.abs(got).max() <= 1.0 / math.sqrt(math.prod(shape[:-1]))


def test_cnn_parameter_count():
    module = get_model("cnn")
    shapes = jax.eval_shape(lambda: init_model(module, jax.random.key(0), jnp.zeros((1, 8, 8, 1))))
    n_params = sum(math.prod(a.shape) for a in jax.tree.leaves(shapes[0]))
    # Width 32, 1 input channel, 10 classes; every layer has a bias:
    # conv3x3 1->32: 9*1*32 + 32 = 320;  conv3x3 32->32: 9*32*32 + 32 = 9_248;
    # conv3x3 32->64: 9*32*64 + 64 = 18_496;  dense 64->64: 64*64 + 64 = 4_160;
    # head 64->10: 64*10 + 10 = 650.  Total 32_874.
    assert n_params == 32_874


def test_frozen_batchnorm_matches_numpy():
    c = 6
    layer = make_norm("frozen_batchnorm", c, name="bn")
    x = np.asarray(jax.random.normal(jax.random.key(0), (4, 5, 5, c)))
    variables = layer.init(jax.random.key(1), x)
    assert set(variables) == {"params", "batch_stats"}
    rng = np.random.default_rng(0)
    mean, var = rng.normal(size=c), rng.uniform(0.5, 2.0, size=c)
    scale, bias = rng.normal(size=c), rng.normal(size=c)
    variables = {"params": {"scale": scale, "bias": bias},
                 "batch_stats": {"mean": mean, "var": var}}
    out = layer.apply(variables, x)
    expected = (x - mean) / np.sqrt(var + 1e-5) * scale + bias
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


def test_frozen_batchnorm_resnet_is_batch_independent():
    module = get_model("resnet18", width=4, norm="frozen_batchnorm")
    x = jax.random.normal(jax.random.key(0), (N, 16, 16, 3))  # CASES' shapes: compiled once
    params, state = init_model(module, jax.random.key(1), x)
    assert set(state) == {"batch_stats"}
    # Non-trivial statistics so the test exercises them.
    leaves, treedef = jax.tree.flatten(state)
    keys = jax.random.split(jax.random.key(2), len(leaves))
    state = jax.tree.unflatten(
        treedef, [leaf + jax.random.uniform(k, leaf.shape) for leaf, k in zip(leaves, keys)])
    apply_fn = make_apply_fn(module, state)
    full = apply_fn(params, x)
    np.testing.assert_allclose(apply_fn(params, x[:1]), full[:1], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(apply_fn(params, x[::-1])[::-1], full, rtol=1e-5, atol=1e-6)
    # The statistics are actually used.
    init_state = init_model(module, jax.random.key(1), x)[1]
    assert not np.allclose(make_apply_fn(module, init_state)(params, x), full)


def test_invalid_norm_and_stem():
    x = jnp.zeros((1, 8, 8, 3))
    with pytest.raises(ValueError, match="frozen_batchnorm"):
        init_model(get_model("resnet18", width=4, norm="batchnorm"), jax.random.key(0), x)
    with pytest.raises(ValueError, match="group"):
        init_model(get_model("resnet18", width=4, norm="layer"), jax.random.key(0), x)
    with pytest.raises(ValueError, match="imagenet"):
        init_model(get_model("resnet18", width=4, stem="mnist"), jax.random.key(0), x)


def test_imagenet_stem_spatial_progression():
    w = 4
    module = get_model("resnet18", width=w, stem="imagenet")
    x = jnp.ones((N, 32, 32, 3))
    params, state = init_model(module, jax.random.key(0), x)
    preacts, feats = intermediates(module, state, params, x)
    shapes = [p.shape[1:] for p in preacts]
    expected = [(16, 16, w)] + [
        (size, size, w * 2**i) for i, size in enumerate((8, 4, 2, 1)) for _ in range(4)
    ]
    assert shapes == expected
    assert feats.shape == (N, 8 * w)


def test_resnet_uses_bias_only_without_norm():
    x = jnp.zeros((N, 16, 16, 3))
    p_none, _ = init_model(get_model("resnet18", width=4), jax.random.key(0), x)
    p_gn, _ = init_model(get_model("resnet18", width=4, norm="group"), jax.random.key(0), x)
    assert "bias" in p_none["conv1"] and "bias" not in p_gn["conv1"]
    assert "downsample_conv" in p_gn["layer2_0"] and "downsample_conv" not in p_gn["layer1_0"]


def test_apply_fns_of_one_network_are_equal_and_share_one_compile():
    """Equal modules with no state (or one state object) give equal apply_fns, so a jit
    taking the apply_fn as a static argument compiles once for them; a different
    network, or a different state object, is a different function."""
    mlp = lambda width: get_model("mlp", features=(width,), num_outputs=3)
    x = jnp.ones((2, 4))
    a, b = make_apply_fn(mlp(8), {}), make_apply_fn(mlp(8), {})
    assert a == b and hash(a) == hash(b) and a != make_apply_fn(mlp(9), {})
    params, _ = init_model(mlp(8), jax.random.PRNGKey(0), x)
    assert np.array_equal(a(params, x), mlp(8).apply({"params": params}, x))
    calls = []                                       # one entry per trace
    traced = jax.jit(lambda fn, p, x: (calls.append(1), fn(p, x))[1], static_argnums=0)
    traced(a, params, x), traced(b, params, x)
    assert len(calls) == 1
    norm = get_model("resnet18", width=2, blocks=(1, 1, 1, 1), norm="frozen_batchnorm")
    _, state = init_model(norm, jax.random.PRNGKey(0), jnp.ones((1, 8, 8, 3)))
    assert make_apply_fn(norm, state) == make_apply_fn(norm, state)
    assert make_apply_fn(norm, state) != make_apply_fn(norm, dict(state))
