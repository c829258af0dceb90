"""Exact linearized full-batch gradient descent, run in function space.

For the linear model ``f(w) = J w`` (``J`` the Jacobian at ``params0`` on the
``n`` training points), plain GD on the mean loss, ``w <- w - lr J^T g / n``
with ``g = dloss/df``, moves the training outputs by ``f <- f - lr K g / n``
with ``K = J J^T`` the empirical NTK. Both stay exact: ``w_t = J^T c_t`` with
``c_t = -lr / n * sum_{s<t} g_s``. So the training loop needs only an ``n x n``
kernel, and the weights at any step are one vector-Jacobian product away.
This applies to full-batch GD without momentum (the yin-yang toy).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from lazy_hasty import losses
from lazy_hasty.types import ApplyFn, Params


class KernelState(NamedTuple):
    """Training outputs ``f`` (n, C) and the coefficients ``c`` with ``w = J^T c``."""

    f: jax.Array
    c: jax.Array
    step: jax.Array


def init_kernel_state(n: int, num_outputs: int, dtype=jnp.float32) -> KernelState:
    """The linearized model starts at ``w = 0``: zero outputs, zero coefficients."""
    zeros = jnp.zeros((n, num_outputs), dtype)
    return KernelState(zeros, zeros, jnp.zeros((), jnp.int32))


def kernel_gd_step(state: KernelState, kernel: jax.Array, y: jax.Array,
                   learning_rate: float) -> tuple[KernelState, dict[str, jax.Array]]:
    """One GD step; ``kernel`` is the (n, C, n, C) NTK of the training set at ``params0``.

    Measurements are those of the outputs before the update, as in ``train``.
    """
    n, c = state.f.shape
    loss_fn = lambda f: jnp.mean(losses.per_example_loss(f, y))
    loss, g = jax.value_and_grad(loss_fn)(state.f)             # g already carries 1/n
    delta = -learning_rate * g
    df = jnp.einsum("icjd,jd->ic", kernel, delta)
    measurements = {"train_loss": loss,
                    "train_accuracy": jnp.mean(losses.per_example_correct(state.f, y))}
    return KernelState(state.f + df, state.c + delta, state.step + 1), measurements


def weights(apply_fn: ApplyFn, params0: Params, x_train: jax.Array, c: jax.Array) -> Params:
    """The linearized regime's trainable ``w = J(params0, x_train)^T c``."""
    _, vjp_fn = jax.vjp(lambda p: apply_fn(p, x_train), params0)
    return vjp_fn(c.astype(jax.tree_util.tree_leaves(params0)[0].dtype))[0]
