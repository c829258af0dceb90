"""The paper's training regimes as function transforms (Section 2, eqs. 3-4).

Given a network ``f(params, x)`` and its initialisation ``params0``:

* ``rescale``: ``f_alpha(params, x) = alpha * (f(params, x) - f(params0, x))``,
  trained from ``params0`` with learning rate ``lr / alpha**2`` (Chizat et
  al. 2018). ``alpha = 1`` is standard feature learning from a zero-output
  start, ``alpha < 1`` more feature learning, large ``alpha`` nearly lazy.
* ``linearize``: ``f_lin(params, x) = f(params0, x) + J(params0, x) (params -
  params0)``, the exact first-order model, computed with ``jax.jvp`` (the
  Jacobian is never materialised).

``Regime`` holds this maths once, for the training engine and for the two
functions above, with ``params0`` passed as an explicit argument so that XLA
cannot fold it into constants. The exact linearized regime is the ``alpha ->
inf`` limit of the rescaled one: it trains ``w = alpha (params - params0)`` from
zero with the unscaled learning rate and predicts ``J(params0, x) w``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
from typing import Callable, Optional

import jax
import jax.numpy as jnp

from lazy_hasty.types import ApplyFn, Params  # re-exported: ``regimes.ApplyFn`` still works


def _sub(a: Params, b: Params) -> Params:
    return jax.tree_util.tree_map(jnp.subtract, a, b)


def jvp_at(apply_fn: ApplyFn, params0: Params, tangent: Params,
           x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Returns ``(f(params0, x), J(params0, x) @ tangent)`` in one pass."""
    return jax.jvp(lambda p: apply_fn(p, x), (params0,), (tangent,))


def linearize(apply_fn: ApplyFn, params0: Params) -> ApplyFn:
    """First-order Taylor expansion of ``apply_fn`` around ``params0`` (eq. 3).

    ``f(params0, x)`` plus the ``Regime("linearized")`` output at ``w = params -
    params0``; both come from the one ``jvp_at`` pass that regime uses.
    """

    def f_lin(params: Params, x: jax.Array) -> jax.Array:
        f0, df = jvp_at(apply_fn, params0, _sub(params, params0), x)
        return f0 + df

    return f_lin


def check_positive(name: str, value: float, hint: str = "") -> float:
    """Validates a finite number > 0 (alpha, gamma, a crossover): returns it as a float."""
    if (isinstance(value, bool) or not isinstance(value, numbers.Real)
            or not math.isfinite(value) or value <= 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}{hint}")
    return float(value)


def check_alpha(alpha: float) -> float:
    """Validates a rescaling factor: it must be a finite positive number."""
    return check_positive("alpha", alpha,
                          "; use the 'linearized' regime for the alpha -> inf limit.")


def rescale(apply_fn: ApplyFn, params0: Params, alpha: float
            ) -> Callable[..., jax.Array]:
    """``f_alpha(params, x, f0=None) = alpha * (f(params, x) - f(params0, x))`` (eq. 4).

    ``Regime("rescaled", alpha).predict`` bound to the network. The optional
    ``f0`` (``f(params0, x)``, e.g. from ``initial_outputs``) spares a fixed
    training set a second forward pass at every step.
    """
    return functools.partial(Regime("rescaled", alpha).predict, apply_fn, params0)


def rescaled_learning_rate(lr: float, alpha: float) -> float:
    """The learning rate ``lr / alpha**2`` that keeps function-space steps O(1)."""
    return lr / check_alpha(alpha) ** 2


def initial_outputs(apply_fn: ApplyFn, params0: Params, x: jax.Array,
                    batch_size: int = 1024) -> jax.Array:
    """Caches ``f(params0, x)`` for a fixed, unaugmented training set."""
    fn = jax.jit(apply_fn)
    outs = [fn(params0, x[i:i + batch_size]) for i in range(0, len(x), batch_size)]
    return jnp.concatenate(outs)


@jax.tree_util.register_pytree_node_class
@dataclasses.dataclass(frozen=True)
class Regime:
    """One way to train from a shared initialisation ``params0``.

    ``kind`` is ``"rescaled"`` (needs ``alpha``), ``"linearized"`` (exact
    linear model, ``alpha -> inf``) or ``"plain"`` (``f(params, x)`` itself).
    A pytree whose one leaf is ``alpha``: a jitted function that takes the
    regime as an argument compiles once per kind and serves every ``alpha``.
    """

    kind: str
    alpha: Optional[float] = None

    def tree_flatten(self) -> tuple[tuple[Optional[float]], str]:
        return (self.alpha,), self.kind

    @classmethod
    def tree_unflatten(cls, kind: str, children: tuple) -> "Regime":
        regime = object.__new__(cls)        # no validation: alpha may be a tracer
        object.__setattr__(regime, "kind", kind)
        object.__setattr__(regime, "alpha", children[0])
        return regime

    def __post_init__(self):
        if self.kind == "rescaled":
            object.__setattr__(self, "alpha", check_alpha(self.alpha))
        elif self.kind in ("linearized", "plain"):
            if self.alpha is not None:
                raise ValueError(f"regime {self.kind!r} takes no alpha")
        else:
            raise ValueError(f"unknown regime kind {self.kind!r}; "
                             "expected 'rescaled', 'linearized' or 'plain'")

    @property
    def name(self) -> str:
        """Record name: ``"alpha=%g"``, ``"linearized"`` or ``"plain"``."""
        return f"alpha={self.alpha:g}" if self.kind == "rescaled" else self.kind

    def init(self, params0: Params) -> Params:
        """Trainable variables at step 0: ``params0``, or ``w = 0`` if linearized."""
        if self.kind == "linearized":
            return jax.tree_util.tree_map(jnp.zeros_like, params0)
        return params0

    def learning_rate(self, lr: float) -> float:
        """Learning rate for this regime given the base rate ``lr``."""
        return rescaled_learning_rate(lr, self.alpha) if self.kind == "rescaled" else lr

    def predict(self, apply_fn: ApplyFn, params0: Params, trainable: Params,
                x: jax.Array, f0: Optional[jax.Array] = None) -> jax.Array:
        """The regime's output on ``x`` (``f0`` optionally caches ``f(params0, x)``)."""
        if self.kind == "plain":
            return apply_fn(trainable, x)
        if self.kind == "linearized":
            return jvp_at(apply_fn, params0, trainable, x)[1]
        if f0 is None:
            f0 = apply_fn(params0, x)
        return self.alpha * (apply_fn(trainable, x) - f0)

    def network_params(self, params0: Params, trainable: Params) -> Params:
        """Parameters at which the network's own features and kernel are measured.

        The linearized model's tangent features are those of ``params0``
        forever, so its linearity metrics are 1 by construction.
        """
        return params0 if self.kind == "linearized" else trainable


def parse_regime(name: str) -> Regime:
    """Parses ``"alpha=100"``, ``"linearized"`` or ``"plain"`` into a ``Regime``."""
    if name in ("linearized", "plain"):
        return Regime(name)
    if name.startswith("alpha="):
        try:
            alpha = float(name[len("alpha="):])
        except ValueError:
            alpha = None
        if alpha is not None:
            return Regime("rescaled", alpha)
    raise ValueError(f"unknown regime {name!r}; use 'alpha=<number>', "
                     "'linearized' or 'plain'")
