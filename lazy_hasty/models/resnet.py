"""BasicBlock ResNet18 with a choice of stem and batch-independent normalisation.

Layout and padding follow torchvision (explicit torch-style padding, no conv bias
when a norm follows) so torchvision weights can be mapped in by name:
``conv1``/``bn1`` stem, ``layer{i}_{j}`` blocks with ``conv1, bn1, conv2, bn2,
downsample_conv, downsample_bn``; torchvision's ``fc`` is called ``head``.
"""

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from lazy_hasty.models.init import conv, dense, divide_by_gamma

NORMS = ("none", "frozen_batchnorm", "group")
STEMS = ("cifar", "imagenet")


def make_norm(norm: str, channels: int, name: str, dtype: Any = None) -> nn.Module | None:
    """Normalisation layer for ``channels`` features, or None for norm="none".

    Only batch-independent norms are allowed: the network function must not
    depend on the other examples in the batch, otherwise linearisation and the
    NTK are ill-defined. Frozen BatchNorm keeps its statistics in "batch_stats"
    (never updated); its affine scale/bias are trainable params.
    """
    if norm == "batchnorm":
        raise ValueError(
            "norm='batchnorm' (train-mode BatchNorm) makes the network function depend "
            "on the batch, which breaks linearization and the NTK; use "
            "'frozen_batchnorm' or 'group'."
        )
    if norm == "none":
        return None
    if norm == "frozen_batchnorm":
        return nn.BatchNorm(use_running_average=True, dtype=dtype, name=name)
    if norm == "group":
        # gcd(32, c) == min(32, c) for power-of-two widths, and always divides c.
        return nn.GroupNorm(num_groups=math.gcd(32, channels), dtype=dtype, name=name)
    raise ValueError(f"unknown norm {norm!r}; valid options: {NORMS}")


def _conv(x: jax.Array, features: int, kernel: int, stride: int, pad: int,
          use_bias: bool, name: str, dtype: Any, parameterization: str) -> jax.Array:
    """Torch-style conv: explicit symmetric padding, torch-default init (standard)."""
    return conv(
        features, (kernel, kernel), x.shape[-1], parameterization, strides=(stride, stride),
        padding=((pad, pad), (pad, pad)), use_bias=use_bias, dtype=dtype, name=name,
    )(x)


def _norm(x: jax.Array, norm: str, name: str, dtype: Any) -> jax.Array:
    layer = make_norm(norm, x.shape[-1], name, dtype)
    return x if layer is None else layer(x)


class BasicBlock(nn.Module):
    """Two 3x3 convs plus (projection) shortcut.

    Returns the block output and its two ReLU pre-activations so the parent can
    sow them in forward order.
    """

    features: int
    stride: int = 1
    norm: str = "none"
    dtype: Any = None
    parameterization: str = "standard"

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
        bias = self.norm == "none"
        conv_args = (self.dtype, self.parameterization)
        y = _conv(x, self.features, 3, self.stride, 1, bias, "conv1", *conv_args)
        pre1 = _norm(y, self.norm, "bn1", self.dtype)
        y = _conv(nn.relu(pre1), self.features, 3, 1, 1, bias, "conv2", *conv_args)
        y = _norm(y, self.norm, "bn2", self.dtype)
        if self.stride != 1 or x.shape[-1] != self.features:
            x = _conv(x, self.features, 1, self.stride, 0, bias, "downsample_conv", *conv_args)
            x = _norm(x, self.norm, "downsample_bn", self.dtype)
        pre2 = y + x
        return nn.relu(pre2), (pre1, pre2)


class ResNet18(nn.Module):
    """ResNet18 ([2,2,2,2] BasicBlocks, widths w,2w,4w,8w) returning logits (N, C).

    stem="cifar": conv3x3 stride 1, no maxpool; stem="imagenet": conv7x7 stride 2
    pad 3 + maxpool3x3 stride 2 pad 1. Sows all ReLU pre-activations (1 + 2 per
    block: 17 in a ResNet18, 9 in a ResNet10) ("preactivations") and the pooled
    features ("features") into "intermediates".
    ``blocks`` sets the BasicBlocks per stage: (1, 1, 1, 1) is a ResNet10 with the
    same layer kinds (stem, blocks with and without a projection shortcut, head)
    and half the layers, e.g. for checks whose cost is compiling the network.
    ``parameterization`` and ``gamma``: :mod:`lazy_hasty.richness` (norm layers keep
    their standard form).
    """

    num_outputs: int = 10
    stem: str = "cifar"
    norm: str = "none"
    width: int = 64
    blocks: tuple[int, ...] = (2, 2, 2, 2)
    dtype: Any = None
    input_mean: tuple[float, ...] | None = None   # set: x is uint8, scaled to [0, 1]
    input_std: tuple[float, ...] | None = None    # and normalised per channel here
    parameterization: str = "standard"
    gamma: float = 1.0

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if self.input_mean is not None:     # keeps large image sets in uint8 on the host
            x = (x.astype(self.dtype or jnp.float32) / 255.0 - jnp.asarray(self.input_mean)) / (
                jnp.asarray(self.input_std))
        bias = self.norm == "none"
        if self.stem == "cifar":
            x = _conv(x, self.width, 3, 1, 1, bias, "conv1", self.dtype, self.parameterization)
        elif self.stem == "imagenet":
            x = _conv(x, self.width, 7, 2, 3, bias, "conv1", self.dtype, self.parameterization)
        else:
            raise ValueError(f"unknown stem {self.stem!r}; valid options: {STEMS}")
        x = _norm(x, self.norm, "bn1", self.dtype)
        self.sow("intermediates", "preactivations", x)
        x = nn.relu(x)
        if self.stem == "imagenet":
            x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        if len(self.blocks) != 4 or min(self.blocks) < 1:
            raise ValueError(f"blocks must give 4 stage counts >= 1, got {self.blocks!r}")
        for i, (stride, count) in enumerate(zip((1, 2, 2, 2), self.blocks)):
            for j in range(count):
                block = BasicBlock(self.width * 2**i, stride if j == 0 else 1, self.norm,
                                   self.dtype, self.parameterization, name=f"layer{i + 1}_{j}")
                x, preacts = block(x)
                for p in preacts:
                    self.sow("intermediates", "preactivations", p)
        x = x.mean(axis=(1, 2))
        self.sow("intermediates", "features", x)
        logits = dense(self.num_outputs, x.shape[-1], self.parameterization, readout=True,
                       dtype=self.dtype, name="head")(x)
        return divide_by_gamma(logits, self.gamma)
