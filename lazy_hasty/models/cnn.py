"""Small CNN (~33k params at width 32) for 8x8x1 sklearn digits, NHWC."""

import flax.linen as nn
import jax

from lazy_hasty.models.init import conv, dense, divide_by_gamma


class SmallCNN(nn.Module):
    """conv3x3(w)-relu-conv3x3(w)-relu-avgpool2-conv3x3(2w)-relu-GAP-dense(64)-relu-head.

    Sows every ReLU pre-activation ("preactivations") and the 64-d penultimate
    activation ("features") into the "intermediates" collection. The logits are
    divided by ``gamma`` (:mod:`lazy_hasty.richness`).
    """

    num_outputs: int = 10
    width: int = 32
    parameterization: str = "standard"
    gamma: float = 1.0

    def _conv_relu(self, x: jax.Array, features: int) -> jax.Array:
        x = conv(features, (3, 3), x.shape[-1], self.parameterization,
                 padding=((1, 1), (1, 1)))(x)
        self.sow("intermediates", "preactivations", x)
        return nn.relu(x)

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = self._conv_relu(x, self.width)
        x = self._conv_relu(x, self.width)
        x = nn.avg_pool(x, (2, 2), strides=(2, 2))
        x = self._conv_relu(x, 2 * self.width)
        x = x.mean(axis=(1, 2))
        x = dense(64, x.shape[-1], self.parameterization)(x)
        self.sow("intermediates", "preactivations", x)
        x = nn.relu(x)
        self.sow("intermediates", "features", x)
        logits = dense(self.num_outputs, x.shape[-1], self.parameterization, readout=True,
                       name="head")(x)
        return divide_by_gamma(logits, self.gamma)
