"""Label noise: exact count, always a wrong label, uniform over the other classes."""

import numpy as np
import pytest

from lazy_hasty.data.noise import corrupt_labels


def test_exact_count_and_always_wrong():
    y = np.random.default_rng(0).integers(0, 10, size=1001)
    noisy, mask = corrupt_labels(y, num_classes=10, fraction=0.15, seed=3)
    assert noisy.dtype == np.int32 and mask.dtype == bool
    assert mask.sum() == round(0.15 * 1001)
    assert np.all(noisy[mask] != y[mask])
    np.testing.assert_array_equal(noisy[~mask], y[~mask])


def test_noise_is_uniform_over_other_classes():
    num_classes, n = 5, 200_000
    y = np.zeros(n, dtype=np.int64)  # true class 0: wrong labels should be uniform on 1..4
    noisy, mask = corrupt_labels(y, num_classes, fraction=0.5, seed=0)
    counts = np.bincount(noisy[mask], minlength=num_classes)
    assert counts[0] == 0
    expected = mask.sum() / (num_classes - 1)
    chi2 = float(np.sum((counts[1:] - expected) ** 2 / expected))
    assert chi2 < 20.0  # 3 degrees of freedom: P(chi2 > 20) ~ 2e-4


def test_noise_deterministic_and_validated():
    y = np.arange(100) % 10
    a = corrupt_labels(y, 10, 0.3, seed=1)
    b = corrupt_labels(y, 10, 0.3, seed=1)
    c = corrupt_labels(y, 10, 0.3, seed=2)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])
    assert corrupt_labels(y, 10, 0.0, seed=0)[1].sum() == 0
    for fraction in (1.0, -0.1):
        with pytest.raises(ValueError, match=r"\[0, 1\)"):
            corrupt_labels(y, 10, fraction, seed=0)
    with pytest.raises(ValueError, match="num_classes"):
        corrupt_labels(y, 5, 0.1, seed=0)
