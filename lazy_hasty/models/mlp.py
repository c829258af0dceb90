"""The paper's yin-yang network: 2-60-60-60-1 ReLU MLP with torch-default init
(``parameterization="standard"``), or in the ``ntk``/``mup`` parameterizations."""

from collections.abc import Sequence

import flax.linen as nn
import jax

from lazy_hasty.models.init import dense, divide_by_gamma


class MLP(nn.Module):
    """ReLU MLP returning logits (N, num_outputs).

    Sows every ReLU pre-activation ("preactivations") and the last hidden
    activation ("features") into the "intermediates" collection. The logits are
    divided by ``gamma`` (:mod:`lazy_hasty.richness`).
    """

    features: Sequence[int] = (60, 60, 60)
    num_outputs: int = 1
    parameterization: str = "standard"
    gamma: float = 1.0

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = x.reshape((x.shape[0], -1))          # images are flattened
        for width in self.features:
            x = dense(width, x.shape[-1], self.parameterization)(x)
            self.sow("intermediates", "preactivations", x)
            x = nn.relu(x)
        self.sow("intermediates", "features", x)
        logits = dense(self.num_outputs, x.shape[-1], self.parameterization, readout=True,
                       name="head")(x)
        return divide_by_gamma(logits, self.gamma)
