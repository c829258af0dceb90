"""Per-example losses and accuracies on the regime's (scaled) output.

One output unit (``C = 1``) means binary classification with the logistic loss
``log(1 + exp(-y f))`` and labels ``y`` in {-1, +1} (the yin-yang toy, as the
authors); ``C > 1`` means softmax cross-entropy with integer labels.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def per_example_loss(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Loss of each example: logistic for ``C = 1`` (labels +-1), else cross-entropy."""
    if logits.shape[-1] == 1:
        return jax.nn.softplus(-labels * logits[..., 0])
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


def per_example_correct(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """1.0 where the prediction is right, else 0.0."""
    if logits.shape[-1] == 1:
        return (labels * logits[..., 0] > 0).astype(logits.dtype)
    return (jnp.argmax(logits, -1) == labels).astype(logits.dtype)


def output_gradient(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """``dloss/dlogits`` per example, (N, C): ``softmax - onehot`` for cross-entropy,
    ``-y sigmoid(-y f)`` for the logistic loss."""
    if logits.shape[-1] == 1:
        return (-labels * jax.nn.sigmoid(-labels * logits[..., 0]))[..., None]
    return jax.nn.softmax(logits, -1) - jax.nn.one_hot(labels, logits.shape[-1],
                                                       dtype=logits.dtype)


def label_probability(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """The probability the model gives the label: ``softmax_y``, or ``sigmoid(y f)``."""
    if logits.shape[-1] == 1:
        return jax.nn.sigmoid(labels * logits[..., 0])
    return jnp.take_along_axis(jax.nn.softmax(logits, -1), labels[..., None], -1)[..., 0]


def label_margin(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """The label's logit minus the largest other logit (Pleiss et al. 2020's margin);
    ``y f`` for one output unit."""
    if logits.shape[-1] == 1:
        return labels * logits[..., 0]
    mine = jnp.take_along_axis(logits, labels[..., None], -1)[..., 0]
    others = jnp.where(jax.nn.one_hot(labels, logits.shape[-1], dtype=bool), -jnp.inf, logits)
    return mine - jnp.max(others, -1)


def el2n(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """The error L2 norm ``||softmax - onehot||_2`` (Paul et al. 2021); with one output
    unit, of the two-class probabilities ``(sigmoid(f), sigmoid(-f))``."""
    if logits.shape[-1] == 1:
        return jnp.sqrt(2.0) * (1.0 - label_probability(logits, labels))
    return jnp.linalg.norm(output_gradient(logits, labels), axis=-1)


def gradient_norm(output_gradient: jax.Array, blocks: jax.Array) -> jax.Array:
    """Each example's ``||d loss / d params||_2`` (GraNd, Paul et al. 2021) without a
    per-example parameter gradient: ``sqrt(g^T K(x, x) g)``, with ``output_gradient``
    ``g = d loss / d f`` (N, C) and ``blocks`` the diagonal NTK blocks (N, C, C)."""
    if output_gradient.ndim != 2 or blocks.shape != (*output_gradient.shape,
                                                     output_gradient.shape[1]):
        raise ValueError(f"output_gradient must be (N, C) and blocks (N, C, C), got "
                         f"{output_gradient.shape} and {blocks.shape}")
    quadratic = jnp.einsum("nc,ncd,nd->n", output_gradient, blocks, output_gradient)
    return jnp.sqrt(jnp.maximum(quadratic, 0.0))
