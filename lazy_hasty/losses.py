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
