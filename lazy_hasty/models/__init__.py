"""Model zoo (MLP, SmallCNN, ResNet18) and pure-function helpers around it.

Every model's ``__call__(x)`` returns logits (N, C) and sows its ReLU
pre-activations ("preactivations") and penultimate features ("features") into
the "intermediates" collection; sowing is inert unless that collection is mutable.
"""

from typing import Any

import flax.linen as nn
import jax

from lazy_hasty import regimes, richness
from lazy_hasty.models.cnn import SmallCNN
from lazy_hasty.models.mlp import MLP
from lazy_hasty.models.resnet import ResNet18
from lazy_hasty.types import ApplyFn, Params

State = dict[str, Any]

MODELS: dict[str, type[nn.Module]] = {"mlp": MLP, "cnn": SmallCNN, "resnet18": ResNet18}


def get_model(name: str, **kwargs: Any) -> nn.Module:
    """Instantiate the model registered under ``name`` with ``kwargs`` (a
    ``parameterization`` and ``gamma`` are checked here)."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; valid names: {sorted(MODELS)}")
    richness.check_parameterization(kwargs.get("parameterization", "standard"))
    regimes.check_positive("gamma", kwargs.get("gamma", 1.0))
    return MODELS[name](**kwargs)


def width(module: nn.Module) -> int:
    """The width that ``mup`` scales the learning rate by: the MLP's last hidden
    layer, the CNN's and ResNet's ``width``."""
    return module.features[-1] if isinstance(module, MLP) else module.width


def depth(module: nn.Module) -> int:
    """The number of weight layers on the longest path (the ``L`` of the richness
    learning-rate rule): hidden layers + 1, 5 in the small CNN, 18 in a ResNet18."""
    if isinstance(module, MLP):
        return len(module.features) + 1
    if isinstance(module, SmallCNN):
        return 5
    return 2 + 2 * sum(module.blocks)


def init_model(module: nn.Module, rng: jax.Array, x: jax.Array) -> tuple[Params, State]:
    """Initialise ``module`` on example input ``x``.

    Returns (params, state) where state holds every non-param collection except
    "intermediates" (e.g. {"batch_stats": ...} for frozen BatchNorm, else {}).
    """
    variables = dict(module.init(rng, x))
    params = variables.pop("params")
    variables.pop("intermediates", None)
    return params, variables


class BoundModule:
    """``apply_fn(params, x) -> logits``: ``module`` with its non-trainable ``state``
    bound in. Two are equal, and hash alike, when their modules are equal and they
    hold the same state object or both have none, so that the jitted functions taking
    an apply_fn as a static argument compile once for all runs of one network."""

    __slots__ = ("module", "state", "__weakref__")

    def __init__(self, module: nn.Module, state: State):
        self.module, self.state = module, state

    def __call__(self, params: Params, x: jax.Array) -> jax.Array:
        return self.module.apply({"params": params, **self.state}, x)

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, BoundModule) and self.module == other.module
                and (self.state is other.state or not (self.state or other.state)))

    def __hash__(self) -> int:
        return hash(self.module)


def make_apply_fn(module: nn.Module, state: State) -> ApplyFn:
    """Pure ``apply_fn(params, x) -> logits`` with the non-trainable state bound in
    (a :class:`BoundModule`)."""
    return BoundModule(module, state)


def intermediates(
    module: nn.Module, state: State, params: Params, x: jax.Array
) -> tuple[list[jax.Array], jax.Array]:
    """Return (ReLU pre-activations in forward order, penultimate features (N, D))."""
    _, mutated = module.apply({"params": params, **state}, x, mutable=["intermediates"])
    sown = mutated["intermediates"]
    return list(sown["preactivations"]), sown["features"][0]


__all__ = [
    "BoundModule", "MLP", "MODELS", "ResNet18", "SmallCNN", "depth", "get_model", "init_model",
    "intermediates", "make_apply_fn", "width",
]
