"""Exact linearized full-batch gradient descent, run in function space.

For the linear model ``f(w) = J w`` (``J`` the Jacobian at ``params0`` on the
``n`` training points), plain GD on the mean loss, ``w <- w - lr J^T g / n``
with ``g = dloss/df``, moves the training outputs by ``f <- f - lr K g / n``
with ``K = J J^T`` the empirical NTK. Both stay exact: ``w_t = J^T c_t`` with
``c_t = -lr / n * sum_{s<t} g_s``. So the training loop needs only an ``n x n``
kernel, and the weights at any step are one vector-Jacobian product away.
Full-batch GD without momentum (the yin-yang toy): :func:`kernel_gd_step`.
Minibatch SGD with momentum, as the difficulty experiments train the linearized
regime: :func:`kernel_sgd_step` and :func:`replay`, which replay a run from
``K(params0)`` on its training set, its minibatch order, rate and momentum.
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


class MomentumKernelState(NamedTuple):
    """Minibatch SGD with heavy-ball momentum of the linear model, in function space.

    ``f`` (n, C): the training outputs ``J w``; ``c`` (n, C): coefficients with
    ``w = J^T c``; ``trace`` (n, C): coefficients of the momentum buffer (optax's
    ``trace``, ``t = J^T trace``); ``velocity`` (n, C): the buffer's outputs ``J t``.
    """

    f: jax.Array
    c: jax.Array
    trace: jax.Array
    velocity: jax.Array
    step: jax.Array


def init_momentum_state(n: int, num_outputs: int, dtype=jnp.float32) -> MomentumKernelState:
    """``w = 0`` and an empty momentum buffer."""
    zeros = jnp.zeros((n, num_outputs), dtype)
    return MomentumKernelState(zeros, zeros, zeros, zeros, jnp.zeros((), jnp.int32))


def kernel_sgd_step(state: MomentumKernelState, kernel: jax.Array, y: jax.Array,
                    batch: jax.Array, learning_rate: float, momentum: float
                    ) -> tuple[MomentumKernelState, dict[str, jax.Array]]:
    """One step of ``optax.sgd(learning_rate, momentum)`` on the mean loss of the
    minibatch ``batch`` (indices into the ``n`` training examples), exactly as the
    linearized regime takes it in parameter space.

    The gradient in ``w`` is ``J_B^T g_B`` (``g_B = dloss/df`` of the batch mean), so
    the buffer ``t <- momentum t + J_B^T g_B`` moves the outputs by
    ``J t <- momentum J t + K[:, B] g_B`` and the step is ``f <- f - lr J t``:
    only the batch's columns of ``kernel`` (n, C, n, C, the NTK at ``params0``) enter.
    Measurements are those of the batch before the update, as in ``train``.
    """
    loss_fn = lambda f_b: jnp.mean(losses.per_example_loss(f_b, y[batch]))
    loss, g_b = jax.value_and_grad(loss_fn)(state.f[batch])
    trace = momentum * state.trace + jnp.zeros_like(state.trace).at[batch].add(g_b)
    velocity = momentum * state.velocity + jnp.einsum("icjd,jd->ic", kernel[:, :, batch], g_b)
    measurements = {"train_loss": loss, "train_accuracy": jnp.mean(
        losses.per_example_correct(state.f[batch], y[batch]))}
    return MomentumKernelState(state.f - learning_rate * velocity,
                               state.c - learning_rate * trace, trace, velocity,
                               state.step + 1), measurements


def replay(kernel: jax.Array, y: jax.Array, batches: jax.Array, learning_rate: float,
           momentum: float) -> tuple[MomentumKernelState, jax.Array]:
    """The linearized run in function space: :func:`kernel_sgd_step` over ``batches``
    (steps, batch size) of training indices, in order. Returns the final state and
    the training outputs before each step (steps, n, C)."""
    n, num_outputs = kernel.shape[:2]

    def step(state, batch):
        new, _ = kernel_sgd_step(state, kernel, y, batch, learning_rate, momentum)
        return new, state.f

    return jax.lax.scan(step, init_momentum_state(n, num_outputs, kernel.dtype), batches)
