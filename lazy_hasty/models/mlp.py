"""The paper's yin-yang network: 2-60-60-60-1 ReLU MLP with torch-default init."""

from collections.abc import Sequence

import flax.linen as nn
import jax

from lazy_hasty.models.init import torch_dense


class MLP(nn.Module):
    """ReLU MLP returning logits (N, num_outputs).

    Sows every ReLU pre-activation ("preactivations") and the last hidden
    activation ("features") into the "intermediates" collection.
    """

    features: Sequence[int] = (60, 60, 60)
    num_outputs: int = 1

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = x.reshape((x.shape[0], -1))          # images are flattened
        for width in self.features:
            x = torch_dense(width, x.shape[-1])(x)
            self.sow("intermediates", "preactivations", x)
            x = nn.relu(x)
        self.sow("intermediates", "features", x)
        return torch_dense(self.num_outputs, x.shape[-1], name="head")(x)
