"""Richness knobs beyond alpha: parameterizations, the output multiplier gamma,
and the learning-rate rules that go with them.

A layer with fan-in ``n`` computes ``W x + b`` with ``W = m * w`` and ``b = m * c``:
the stored parameters ``(w, c)`` are what SGD trains, and ``m`` is a forward
multiplier fixed by the parameterization (docs/richness.md derives each):

* ``standard`` (PyTorch's default): ``m = 1``; ``w, c ~ U(-1/sqrt(n), 1/sqrt(n))``.
* ``ntk`` (Jacot et al. 2018): ``m = 1/sqrt(n)`` for every layer; ``w, c ~
  U(-1, 1)``, so the network at initialisation is the standard one.
* ``mup`` (Yang & Hu 2021, in the form of Atanasov et al. 2025): as ``ntk``,
  except the readout, whose multiplier is ``1/n``; and the learning rate is
  multiplied by the width (:func:`width_multiplier`).

Every parameterization divides the network's output by ``gamma`` (Atanasov et
al.'s ``gamma_0``): ``gamma`` sets the feature-learning strength at any width.
The paper's alpha-rescaling acts on top: the regime ``alpha`` trains
``alpha * (f(params, x) - f(params0, x))``, so ``g = gamma / alpha`` is the
combined richness.

Learning-rate rules map ``g`` to a factor of the base rate:

* ``lazy``: ``g**2``, the paper's ``lr / alpha**2``; it keeps function-space
  steps O(1) in the lazy limit.
* ``richness``: ``g**2`` up to a crossover ``g_c``, then ``g_c**2 (g / g_c)**(2/L)``
  for a network of depth ``L``: the optimal rates Atanasov et al. measured on
  both sides.
"""

from __future__ import annotations

import dataclasses
import math

from lazy_hasty.regimes import Regime, check_positive

PARAMETERIZATIONS = ("standard", "ntk", "mup")
LR_RULES = ("lazy", "richness")


def check_parameterization(name: str) -> str:
    """Validates a parameterization's name."""
    if name not in PARAMETERIZATIONS:
        raise ValueError(f"unknown parameterization {name!r}; choose one of "
                         f"{', '.join(PARAMETERIZATIONS)}")
    return name


def layer_multiplier(parameterization: str, fan_in: int, readout: bool) -> float:
    """The forward multiplier ``m`` of a layer with ``fan_in`` inputs."""
    if parameterization == "standard":
        return 1.0
    if parameterization == "mup" and readout:
        return 1.0 / fan_in
    return 1.0 / math.sqrt(fan_in)


def width_multiplier(parameterization: str, width: int) -> float:
    """The factor on every parameter's learning rate: the width under ``mup``, else 1."""
    return float(width) if parameterization == "mup" else 1.0


def effective_learning_rate(parameterization: str, lr: float, fan_in: int, readout: bool,
                            width: int) -> float:
    """The rate at which SGD on ``w`` moves ``W = m w``: ``lr * width_multiplier * m**2``.

    It is the per-layer learning rate of the same network written with ``m = 1``,
    the form in which parameterizations are usually compared (Yang & Hu, Table 3).
    """
    m = layer_multiplier(parameterization, fan_in, readout)
    return lr * width_multiplier(parameterization, width) * m * m


@dataclasses.dataclass(frozen=True)
class LearningRateRule:
    """How the learning rate follows the richness ``g = gamma / alpha``.

    ``kind`` is ``"lazy"`` or ``"richness"``; ``crossover`` (``g_c``) and ``depth``
    (``L``, the number of weight layers) shape the ``richness`` rule.
    """

    kind: str = "lazy"
    crossover: float = 1.0
    depth: int = 0

    def __post_init__(self):
        if self.kind not in LR_RULES:
            raise ValueError(f"unknown learning-rate rule {self.kind!r}; choose one of "
                             f"{', '.join(LR_RULES)}")
        check_positive("the learning-rate rule's crossover", self.crossover)
        if self.kind == "richness" and not (isinstance(self.depth, int) and self.depth >= 1):
            raise ValueError(f"the richness rule needs the network's depth >= 1, got "
                             f"{self.depth!r}")

    def lazy_side(self, g: float) -> bool:
        """Whether richness ``g`` is on the rule's ``g**2`` branch."""
        return self.kind == "lazy" or g <= self.crossover

    def factor(self, g: float) -> float:
        """The factor on the base rate at richness ``g`` (closed form above)."""
        if self.lazy_side(g):
            return g * g
        return self.crossover ** 2 * (g / self.crossover) ** (2.0 / self.depth)


@dataclasses.dataclass(frozen=True)
class Richness:
    """A network's richness settings that the learning rate depends on: its output
    multiplier ``gamma``, the parameterization's :func:`width_multiplier` and the rule."""

    gamma: float = 1.0
    width_multiplier: float = 1.0
    rule: LearningRateRule = LearningRateRule()

    def learning_rate(self, regime: Regime, base: float) -> float:
        """The rate that trains ``regime`` from the base rate ``base``.

        ``g = gamma / alpha`` for a rescaled regime, ``gamma`` for the plain network;
        the linearized regime is the ``alpha -> inf`` limit, trained (in its own
        coordinates) at the lazy side's ``base * width_multiplier * gamma**2``.
        On the lazy side the rate is ``regime.learning_rate`` of that, the paper's
        ``lr / alpha**2`` exactly when ``gamma`` and the multiplier are 1.
        """
        lazy = base * self.width_multiplier * self.gamma ** 2
        g = self.gamma / regime.alpha if regime.kind == "rescaled" else self.gamma
        if regime.kind == "linearized" or self.rule.lazy_side(g):
            return regime.learning_rate(lazy)
        return base * self.width_multiplier * self.rule.factor(g)
