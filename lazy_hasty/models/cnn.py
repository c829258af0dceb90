"""Small CNN (~33k params at width 32) for 8x8x1 sklearn digits, NHWC."""

import flax.linen as nn
import jax

from lazy_hasty.models.init import torch_conv, torch_dense


class SmallCNN(nn.Module):
    """conv3x3(w)-relu-conv3x3(w)-relu-avgpool2-conv3x3(2w)-relu-GAP-dense(64)-relu-head.

    Sows every ReLU pre-activation ("preactivations") and the 64-d penultimate
    activation ("features") into the "intermediates" collection.
    """

    num_outputs: int = 10
    width: int = 32

    def _conv_relu(self, x: jax.Array, features: int) -> jax.Array:
        x = torch_conv(features, (3, 3), x.shape[-1], padding=((1, 1), (1, 1)))(x)
        self.sow("intermediates", "preactivations", x)
        return nn.relu(x)

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = self._conv_relu(x, self.width)
        x = self._conv_relu(x, self.width)
        x = nn.avg_pool(x, (2, 2), strides=(2, 2))
        x = self._conv_relu(x, 2 * self.width)
        x = x.mean(axis=(1, 2))
        x = torch_dense(64, x.shape[-1])(x)
        self.sow("intermediates", "preactivations", x)
        x = nn.relu(x)
        self.sow("intermediates", "features", x)
        return torch_dense(self.num_outputs, x.shape[-1], name="head")(x)
