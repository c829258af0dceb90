"""PyTorch-default initialisers for flax, and layers in every parameterization.

torch ``nn.Linear`` / ``nn.Conv2d`` draw weights from kaiming_uniform(a=sqrt(5)),
i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in)), and biases from the same interval.
Matching this lets the flax networks start from the distribution used in the
paper (and makes torch weight import a drop-in). The ``ntk`` and ``mup``
parameterizations (:mod:`lazy_hasty.richness`) store U(-1, 1) parameters and
multiply the layer's output by its multiplier.
"""

import math
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from lazy_hasty import richness

Layer = Callable[[jax.Array], jax.Array]


def unit_uniform_init(key: jax.Array, shape: Sequence[int], dtype: Any = jnp.float32
                      ) -> jax.Array:
    """U(-1, 1), drawn flat and reshaped: the stored init of ``ntk`` and ``mup``, and
    the draw that :func:`torch_kernel_init` scales."""
    return jax.random.uniform(key, (math.prod(shape),), dtype, -1).reshape(shape)


def torch_kernel_init(key: jax.Array, shape: Sequence[int], dtype: Any = jnp.float32
                      ) -> jax.Array:
    """Kernel init U(-1/sqrt(fan_in), 1/sqrt(fan_in)): bit for bit what
    ``nn.initializers.variance_scaling(1/3, "fan_in", "uniform")`` draws.

    fan_in is every axis but the last: in_features of a dense kernel (in, out),
    in_channels * kh * kw of a conv kernel (kh, kw, in, out). The uniform draw is
    made flat, then reshaped: threefry numbers the elements by their flat index, so
    the bits are the same, and XLA:CPU compiles a flat draw several times faster than
    a 4-D one (these compiles are most of the time it takes to initialise a ResNet).
    """
    variance = jnp.array((1.0 / 3.0) / math.prod(shape[:-1]), dtype)
    return unit_uniform_init(key, shape, dtype) * jnp.sqrt(3 * variance)


def torch_bias_init(fan_in: int) -> nn.initializers.Initializer:
    """Bias init U(-1/sqrt(fan_in), 1/sqrt(fan_in)); fan_in is fixed here because
    flax calls bias_init with the bias shape only."""
    bound = 1.0 / math.sqrt(fan_in)

    def init(key: jax.Array, shape: tuple[int, ...], dtype: Any = float) -> jax.Array:
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def torch_dense(features: int, in_features: int, **kwargs: Any) -> nn.Dense:
    """``nn.Dense`` with torch ``nn.Linear`` default init."""
    return nn.Dense(
        features,
        kernel_init=torch_kernel_init,
        bias_init=torch_bias_init(in_features),
        **kwargs,
    )


def torch_conv(
    features: int, kernel_size: tuple[int, int], in_channels: int, **kwargs: Any
) -> nn.Conv:
    """``nn.Conv`` with torch ``nn.Conv2d`` default init."""
    fan_in = in_channels * kernel_size[0] * kernel_size[1]
    return nn.Conv(
        features,
        kernel_size,
        kernel_init=torch_kernel_init,
        bias_init=torch_bias_init(fan_in),
        **kwargs,
    )


def _scaled(layer: nn.Module, multiplier: float) -> Layer:
    return lambda x: multiplier * layer(x)


def dense(features: int, in_features: int, parameterization: str = "standard",
          readout: bool = False, **kwargs: Any) -> Layer:
    """A dense layer in ``parameterization`` (``readout``: the network's last layer)."""
    if parameterization == "standard":
        return torch_dense(features, in_features, **kwargs)
    layer = nn.Dense(features, kernel_init=unit_uniform_init, bias_init=unit_uniform_init,
                     **kwargs)
    return _scaled(layer, richness.layer_multiplier(parameterization, in_features, readout))


def conv(features: int, kernel_size: tuple[int, int], in_channels: int,
         parameterization: str = "standard", **kwargs: Any) -> Layer:
    """A convolution in ``parameterization`` (never a readout)."""
    if parameterization == "standard":
        return torch_conv(features, kernel_size, in_channels, **kwargs)
    layer = nn.Conv(features, kernel_size, kernel_init=unit_uniform_init,
                    bias_init=unit_uniform_init, **kwargs)
    fan_in = in_channels * kernel_size[0] * kernel_size[1]
    return _scaled(layer, richness.layer_multiplier(parameterization, fan_in, False))


def divide_by_gamma(logits: jax.Array, gamma: float) -> jax.Array:
    """The network's output ``logits / gamma`` (no operation at ``gamma = 1``)."""
    return logits if gamma == 1 else logits / gamma
