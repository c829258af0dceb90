"""CIFAR-shaped generated data as a dataset function, for runs without the real data.

``--config.dataset=benchmarks/generated_cifar.py:cifar10_shaped`` gives the
CIFAR-10 configs random 32 x 32 x 3 float32 images with random labels, through
the same Section 4 groups and difficulty spec as the real loader
(:func:`lazy_hasty.data.builtin.section4`). It measures speed and exercises
the whole path (records, checkpoints); its accuracies mean nothing.
"""

from __future__ import annotations

import numpy as np

from lazy_hasty.data import builtin, splits
from lazy_hasty.datasets import DescribedDataset
from lazy_hasty.rng import numpy_rng


def cifar10_shaped(*, seed: int, label_noise: float, group_size: int, test_size: int,
                   train_size: int) -> DescribedDataset:
    """``train_size`` training images (``config.train_size``), and a fifth as many
    held-out and test images."""
    rng = numpy_rng(seed, "generated_cifar")
    sizes = {"train": train_size, "heldout": train_size // 5, "test": train_size // 5}
    parts = {name: splits.Split(rng.normal(size=(n, 32, 32, 3)).astype(np.float32),
                                rng.integers(0, 10, n).astype(np.int32))
             for name, n in sizes.items()}
    ds = splits.Dataset(name="cifar10_shaped", num_classes=10, splits=parts)
    return builtin.section4(ds, difficulty="noise", seed=seed, label_noise=label_noise,
                            group_size=group_size, test_size=test_size, cscores="estimate",
                            cscore_cache="", cscore_models_per_ratio=1, cscore_steps=1)
