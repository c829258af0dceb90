"""Random label noise (paper Section 4: 15 % of CIFAR-10 labels replaced)."""

from __future__ import annotations

import numpy as np

from lazy_hasty.rng import numpy_rng


def corrupt_labels(
    y: np.ndarray, num_classes: int, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Replaces the labels of a random ``round(fraction * N)`` examples by wrong ones.

    Each chosen example gets a label drawn uniformly among the ``num_classes - 1``
    classes other than its true one, so every corrupted label is wrong.

    Returns:
      ``(noisy_labels, noisy_mask)``: int32 ``(N,)`` labels and a bool ``(N,)``
      mask that is True exactly where the label was changed.
    """
    y = np.asarray(y)
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"fraction must be in [0, 1); got {fraction}.")
    if num_classes < 2:
        raise ValueError(f"label noise needs num_classes >= 2; got {num_classes}.")
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"y must be a 1-d integer array; got shape {y.shape}, dtype {y.dtype}.")
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(
            f"labels must lie in [0, {num_classes}); got range [{y.min()}, {y.max()}]. "
            "Check num_classes."
        )
    n = y.shape[0]
    rng = numpy_rng(seed, "label_noise")
    chosen = rng.choice(n, size=int(round(fraction * n)), replace=False)
    shift = rng.integers(1, num_classes, size=chosen.shape[0])  # never 0: never the true class
    noisy = y.astype(np.int32)
    noisy[chosen] = (noisy[chosen] + shift) % num_classes
    mask = np.zeros(n, dtype=bool)
    mask[chosen] = True
    return noisy, mask
