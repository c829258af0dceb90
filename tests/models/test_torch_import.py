"""torchvision ResNet18 weight import, checked without torch.

A torchvision-format state_dict (exact key names and OIHW/(out, in) layouts) is
built from NumPy random arrays, and the imported flax network is compared with an
independent float64 NumPy forward pass of torchvision's ResNet18 in eval mode.
"""

import importlib.util

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from tests.fakes import torchvision_resnet18_state
from lazy_hasty.models import init_model, make_apply_fn
from lazy_hasty.models.resnet import ResNet18
from lazy_hasty.models.torch_import import (
    load_state_dict_arrays,
    resnet18_variables_from_torchvision,
)

EPS = 1e-5  # torch.nn.BatchNorm2d default


# ---- independent NumPy (float64, NHWC) reference of torchvision's eval forward ----

def np_conv(x, w, stride, pad):
    """x (N, H, W, C), torch weight w (O, I, kh, kw)."""
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    win = sliding_window_view(xp, w.shape[2:], axis=(1, 2))[:, ::stride, ::stride]
    return np.einsum("nhwcij,ocij->nhwo", win, w.astype(np.float64), optimize=True)


def np_bn(x, sd, p):
    g = lambda k: sd[f"{p}.{k}"].astype(np.float64)  # noqa: E731
    return (x - g("running_mean")) / np.sqrt(g("running_var") + EPS) * g("weight") + g("bias")


def np_maxpool(x):
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=-np.inf)
    return sliding_window_view(xp, (3, 3), axis=(1, 2))[:, ::2, ::2].max(axis=(-2, -1))


def np_resnet18(sd, x):
    relu = lambda v: np.maximum(v, 0.0)  # noqa: E731
    x = relu(np_bn(np_conv(x, sd["conv1.weight"], 2, 3), sd, "bn1"))
    x = np_maxpool(x)
    for i in range(1, 5):
        for j in range(2):
            p = f"layer{i}.{j}"
            stride = 2 if (i > 1 and j == 0) else 1
            y = relu(np_bn(np_conv(x, sd[f"{p}.conv1.weight"], stride, 1), sd, f"{p}.bn1"))
            y = np_bn(np_conv(y, sd[f"{p}.conv2.weight"], 1, 1), sd, f"{p}.bn2")
            if f"{p}.downsample.0.weight" in sd:
                x = np_bn(np_conv(x, sd[f"{p}.downsample.0.weight"], stride, 0), sd,
                          f"{p}.downsample.1")
            x = relu(y + x)
    x = x.mean(axis=(1, 2))
    return x @ sd["fc.weight"].astype(np.float64).T + sd["fc.bias"].astype(np.float64)


# ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sd():
    return torchvision_resnet18_state()


@pytest.fixture(scope="module")
def npz_path(sd, tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "resnet18.npz"
    np.savez(path, **sd)
    return str(path)


def test_key_enumeration_matches_torchvision(sd):
    # 62 tensors in torchvision resnet18's named_parameters, 20 BNs x 3 buffers.
    assert sum(not k.endswith(("running_mean", "running_var", "num_batches_tracked"))
               for k in sd) == 62
    assert sum(k.endswith("num_batches_tracked") for k in sd) == 20
    assert len(sd) == 122
    assert sd["layer2.0.downsample.0.weight"].shape == (128, 64, 1, 1)
    assert sd["layer4.1.conv2.weight"].shape == (512, 512, 3, 3)


def test_full_network_matches_numpy_reference(sd, npz_path):
    """keep_head=True: the whole imported network equals torchvision's eval forward."""
    assert nn.BatchNorm.epsilon == EPS  # frozen BN in resnet.py uses flax's default
    loaded = load_state_dict_arrays(npz_path)
    assert loaded.keys() == sd.keys()
    params, state = resnet18_variables_from_torchvision(
        loaded, 1000, jax.random.PRNGKey(0), keep_head=True)
    assert set(state) == {"batch_stats"}
    np.testing.assert_array_equal(params["conv1"]["kernel"],
                                  sd["conv1.weight"].transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(state["batch_stats"]["layer3_0"]["downsample_bn"]["var"],
                                  sd["layer3.0.downsample.1.running_var"])

    x = np.random.RandomState(1).normal(size=(2, 32, 32, 3))
    ref = np_resnet18(sd, x)
    module = ResNet18(1000, stem="imagenet", norm="frozen_batchnorm", width=64)
    with jax.enable_x64(True):
        to64 = lambda t: jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), t)  # noqa: E731
        out = make_apply_fn(module, to64(state))(to64(params), jnp.asarray(x))
        assert out.dtype == jnp.float64
        out = np.asarray(out)
    assert out.shape == (2, 1000)
    assert np.std(ref) > 1e-2  # non-degenerate signal
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())


def test_fresh_head(sd, quick_compiles):
    rng = jax.random.PRNGKey(3)
    params, state = resnet18_variables_from_torchvision(sd, 2, rng)
    assert params["head"]["kernel"].shape == (512, 2)
    assert params["head"]["bias"].shape == (2,)
    assert not np.allclose(params["head"]["kernel"], sd["fc.weight"][:2].T)
    # the model's own init from rng, and the backbone is the imported one
    module = ResNet18(2, stem="imagenet", norm="frozen_batchnorm", width=64)
    ref_params, _ = init_model(module, rng, jnp.zeros((1, 32, 32, 3)))
    np.testing.assert_array_equal(params["head"]["kernel"], ref_params["head"]["kernel"])
    np.testing.assert_array_equal(params["head"]["bias"], ref_params["head"]["bias"])
    np.testing.assert_array_equal(params["layer1_0"]["bn2"]["scale"], sd["layer1.0.bn2.weight"])
    assert params["layer4_1"]["conv2"]["kernel"].dtype == jnp.float32
    logits = make_apply_fn(module, state)(params, jnp.zeros((1, 32, 32, 3)))
    assert logits.shape == (1, 2)


def _convert_error(sd, **kw):
    with pytest.raises(ValueError) as exc:
        resnet18_variables_from_torchvision(sd, kw.pop("num_outputs", 2),
                                            jax.random.PRNGKey(0), **kw)
    return str(exc.value)


def test_validation_errors(sd):
    bad = dict(sd)
    del bad["layer3.1.bn1.running_var"]
    bad["layer2.0.downsample.0.weight"] = np.zeros((128, 64, 3, 3), np.float32)
    bad["layer5.0.conv1.weight"] = np.zeros((1,), np.float32)
    msg = _convert_error(bad)
    assert "missing keys (1): ['layer3.1.bn1.running_var']" in msg
    assert "layer2.0.downsample.0.weight: got (128, 64, 3, 3), expected (128, 64, 1, 1)" in msg
    assert "unexpected keys (1): ['layer5.0.conv1.weight']" in msg
    # keep_head=True with a num_outputs different from fc's size
    assert "fc.weight: got (1000, 512), expected (2, 512)" in _convert_error(sd, keep_head=True)
    # keep_head=True needs fc.*
    no_fc = {k: v for k, v in sd.items() if not k.startswith("fc.")}
    assert "'fc.bias', 'fc.weight'" in _convert_error(no_fc, num_outputs=1000, keep_head=True)


def test_load_errors(tmp_path):
    missing = tmp_path / "nope.npz"
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        load_state_dict_arrays(str(missing))
    other = tmp_path / "w.bin"
    other.write_bytes(b"x")
    with pytest.raises(ValueError, match="unsupported"):
        load_state_dict_arrays(str(other))


@pytest.mark.skipif(importlib.util.find_spec("torch") is not None, reason="torch installed")
def test_pth_without_torch(tmp_path):
    pth = tmp_path / "resnet18.pth"
    pth.write_bytes(b"not really a torch file")
    with pytest.raises(ImportError, match="pip install torch") as exc:
        load_state_dict_arrays(str(pth))
    assert "convert_torchvision_resnet18.py" in str(exc.value)
    assert "lazy-hasty[torch]" in str(exc.value)
