"""Networks the NTK engine is checked on: ``name -> build(key, dtype) -> (apply_fn,
params, x1, x2)``, each a function of ``(params, x)`` with ``(N, C)`` outputs.

Plain-JAX functions (a scan over layers; a transformer block with tied embeddings),
flax.linen models (an MLP; a CNN with strides, dilation and feature groups; a
ResNet18 with frozen BatchNorm) and an NNX model.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import nnx

from lazy_hasty import models, ntk


def _normal(key, shape, dtype, scale=1.0):
    return scale * jax.random.normal(key, shape, dtype)


def _mlp(key, dtype):
    module = models.get_model("mlp", features=(7, 5), num_outputs=3)
    k1, k2, k3 = jax.random.split(key, 3)
    x1, x2 = _normal(k1, (3, 4), dtype), _normal(k2, (2, 4), dtype)
    params, state = models.init_model(module, k3, x1)
    return models.make_apply_fn(module, state), _cast(params, dtype), x1, x2


class GroupedCNN(nn.Module):
    """Strided, dilated, transposed (input-dilated) and grouped convolutions, then a
    dense head."""

    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Conv(4, (3, 3), strides=2, padding="SAME")(x))
        x = nn.relu(nn.ConvTranspose(4, (2, 3), strides=(2, 1), padding="VALID")(x))
        x = nn.tanh(nn.Conv(4, (2, 2), kernel_dilation=2, feature_group_count=2)(x))
        x = nn.Conv(6, (3, 3), strides=(1, 2), feature_group_count=2, use_bias=False)(x)
        return nn.Dense(3)(x.reshape(x.shape[0], -1))


def _cnn(key, dtype):
    module = GroupedCNN()
    k1, k2, k3 = jax.random.split(key, 3)
    x1, x2 = _normal(k1, (3, 7, 7, 2), dtype), _normal(k2, (2, 7, 7, 2), dtype)
    params = _cast(module.init(k3, x1)["params"], dtype)
    return (lambda p, x: module.apply({"params": p}, x)), params, x1, x2


def _resnet18(key, dtype):
    module = models.get_model("resnet18", num_outputs=2, width=2, stem="cifar")
    k1, k2, k3 = jax.random.split(key, 3)
    x1, x2 = _normal(k1, (2, 8, 8, 3), dtype), _normal(k2, (2, 8, 8, 3), dtype)
    params, state = models.init_model(module, k3, x1)
    state = _cast(state, dtype)
    return models.make_apply_fn(module, state), _cast(params, dtype), x1, x2


def _layer_norm(h, scale, bias):
    mean = h.mean(-1, keepdims=True)
    var = ((h - mean) ** 2).mean(-1, keepdims=True)
    return (h - mean) / jnp.sqrt(var + 1e-5) * scale + bias


def transformer(params, tokens):
    """One pre-norm attention block on token sequences ``(N, T)`` with embeddings
    tied to the output layer; the last position's logits ``(N, V)``."""
    emb = params["embed"]
    h = emb[tokens] + params["position"]                        # gather
    a = _layer_norm(h, params["ln1_scale"], params["ln1_bias"])
    q, k, v = (a @ params[w] for w in ("wq", "wk", "wv"))
    att = jax.nn.softmax(q @ k.swapaxes(-1, -2) / jnp.sqrt(q.shape[-1]), axis=-1)
    h = h + (att @ v) @ params["wo"]
    m = _layer_norm(h, params["ln2_scale"], params["ln2_bias"])
    h = h + jax.nn.gelu(m @ params["w1"]) @ params["w2"]
    return h[:, -1] @ emb.T                                     # tied: a second use


def _transformer(key, dtype, vocab=11, length=5, width=8):
    keys = jax.random.split(key, 12)
    shapes = {"embed": (vocab, width), "position": (length, width), "wq": (width, width),
              "wk": (width, width), "wv": (width, width), "wo": (width, width),
              "w1": (width, 2 * width), "w2": (2 * width, width)}
    params = {n: _normal(k, s, dtype, s[0] ** -0.5) for (n, s), k in zip(shapes.items(), keys)}
    for i in (1, 2):
        params[f"ln{i}_scale"] = 1 + _normal(keys[8 + i], (width,), dtype, 0.1)
        params[f"ln{i}_bias"] = _normal(keys[9 + i], (width,), dtype, 0.1)
    x1 = jax.random.randint(keys[-1], (3, length), 0, vocab)
    x2 = jax.random.randint(keys[-2], (2, length), 0, vocab)
    return transformer, params, x1, x2


def scanned(params, x):
    """Layers in a ``scan``: stacked weights sliced per step, a mixing matrix shared
    by every step, a readout."""
    def layer(h, w):
        return jnp.tanh(h @ w + jnp.sin(h) @ params["shared"]), None

    h, _ = jax.lax.scan(layer, x @ params["embed"], params["stacked"])
    return h @ params["readout"]


def _scan(key, dtype, depth=3, width=6):
    k = jax.random.split(key, 6)
    params = {"embed": _normal(k[0], (4, width), dtype, 0.5),
              "stacked": _normal(k[1], (depth, width, width), dtype, width ** -0.5),
              "shared": _normal(k[2], (width, width), dtype, width ** -0.5),
              "readout": _normal(k[3], (width, 3), dtype, width ** -0.5)}
    return scanned, params, _normal(k[4], (3, 4), dtype), _normal(k[5], (2, 4), dtype)


class NnxNet(nnx.Module):
    """An NNX model: a convolution, a LayerNorm and two linear layers."""

    def __init__(self, rngs: nnx.Rngs):
        self.conv = nnx.Conv(2, 3, (3, 3), strides=2, rngs=rngs)
        self.norm = nnx.LayerNorm(3, rngs=rngs)
        self.hidden = nnx.Linear(27, 5, rngs=rngs)
        self.out = nnx.Linear(5, 2, rngs=rngs)

    def __call__(self, x):
        h = self.norm(nnx.relu(self.conv(x)))
        return self.out(jnp.tanh(self.hidden(h.reshape(h.shape[0], -1))))


def _nnx(key, dtype):
    k1, k2, k3 = jax.random.split(key, 3)
    net = NnxNet(nnx.Rngs(int(k3[-1])))
    apply_fn, params = ntk.nnx_function(net)
    return apply_fn, _cast(params, dtype), _normal(k1, (3, 6, 6, 2), dtype), \
        _normal(k2, (2, 6, 6, 2), dtype)


def _cast(tree, dtype):
    return jax.tree_util.tree_map(
        lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a, tree)


ZOO = {"mlp": _mlp, "cnn_grouped": _cnn, "resnet18": _resnet18,
       "transformer": _transformer, "scan": _scan, "nnx": _nnx}
