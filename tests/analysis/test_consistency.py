"""Tests for the hold-out consistency score (C-score) estimator."""

import os

import numpy as np
import pytest

from lazy_hasty.analysis import consistency
from lazy_hasty.analysis.consistency import (aggregate, batch_indices, cached_cscores, draw_masks,
                                    estimate_cscores)
from lazy_hasty.data.digits import read_digits

# Small budget shared by the training tests (one compilation serves them all).
BUDGET = dict(ratios=(0.2, 0.4, 0.6, 0.8), models_per_ratio=8, steps=100,
              learning_rate=0.05, batch_size=64)

# Compiling the vmapped training is most of this module's cost; its checks are
# tolerances and exact relations, not the rounding of optimised kernels (conftest.py).
pytestmark = pytest.mark.usefixtures("quick_compiles_module")


def noisy_digits(n: int = 600, flip_fraction: float = 0.1, seed: int = 0):
    """n digits (8x8x1 in [0, 1]) with flip_fraction of the labels moved to another class."""
    images, labels = read_digits()                 # sklearn's load_digits (test_data_digits)
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(labels))[:n]
    x = (images[idx] / 16.0).astype(np.float32)[..., None]
    y = labels[idx].astype(np.int32)
    flipped = np.zeros(n, dtype=bool)
    flipped[rng.permutation(n)[: int(flip_fraction * n)]] = True
    y[flipped] = (y[flipped] + rng.integers(1, 10, flipped.sum())) % 10
    return x, y, flipped


@pytest.fixture(scope="module")
def digits_scores():
    x, y, flipped = noisy_digits()
    return x, y, flipped, estimate_cscores(x, y, 10, seed=0, **BUDGET)


def test_scores_detect_flipped_labels(digits_scores):
    from sklearn.metrics import roc_auc_score      # a second to import: only here
    _, y, flipped, scores = digits_scores
    assert scores.shape == y.shape and np.all(np.isfinite(scores))
    assert np.all((scores >= 0) & (scores <= 1))
    # Measured: AUC 0.989, clean mean 0.886, flipped mean 0.031.
    assert roc_auc_score(flipped, -scores) >= 0.95
    assert scores[~flipped].mean() > 0.75
    assert scores[flipped].mean() < 0.2


def test_deterministic_given_seed(digits_scores):
    x, y, _, scores = digits_scores
    again = estimate_cscores(x, y, 10, seed=0, **BUDGET)
    np.testing.assert_array_equal(scores, again)
    other = estimate_cscores(x, y, 10, seed=1, **BUDGET)
    assert not np.array_equal(scores, other)
    assert np.corrcoef(scores, other)[0, 1] > 0.8  # same quantity, other draw


def test_batch_models_only_changes_memory(digits_scores):
    x, y, _, scores = digits_scores
    chunked = estimate_cscores(x, y, 10, seed=0, batch_models=12, **BUDGET)
    # Same models (per-model seeds); only float rounding of vmapped kernels may differ.
    assert np.abs(chunked - scores).mean() < 0.01


def test_aggregate_matches_loop():
    rng = np.random.default_rng(0)
    correct = rng.random((7, 40)) < 0.6
    masks = rng.random((7, 40)) < 0.7
    masks[:, 0] = True  # example 0 is in every subset: never held out
    expected = np.full(40, np.nan)
    for i in range(40):
        held = [bool(correct[k, i]) for k in range(7) if not masks[k, i]]
        if held:
            expected[i] = sum(held) / len(held)
    got = aggregate(correct, masks)
    assert np.isnan(got[0])
    np.testing.assert_allclose(got, expected, equal_nan=True)


def test_aggregate_rejects_mismatched_shapes():
    with pytest.raises(ValueError):
        aggregate(np.ones((2, 3), bool), np.ones((3, 2), bool))


def _fake_trainer(rule):
    def train_and_evaluate(x, y, masks, **kwargs):
        return rule(masks)
    return train_and_evaluate


@pytest.mark.parametrize("balanced", [True, False])
def test_scores_use_only_held_out_models(monkeypatch, balanced):
    """A trainer that is right exactly on its training subset gets C-score 0, and
    one that is right exactly off it gets 1: only held-out models count."""
    x, y = np.zeros((50, 3), np.float32), np.zeros(50, np.int32)
    kw = dict(seed=3, ratios=(0.3, 0.7), models_per_ratio=40, balanced=balanced)
    monkeypatch.setattr(consistency, "train_and_evaluate", _fake_trainer(lambda m: m.copy()))
    np.testing.assert_array_equal(estimate_cscores(x, y, 2, **kw), np.zeros(50))
    monkeypatch.setattr(consistency, "train_and_evaluate", _fake_trainer(lambda m: ~m))
    np.testing.assert_array_equal(estimate_cscores(x, y, 2, **kw), np.ones(50))


def test_score_is_mean_over_ratios_of_held_out_accuracy(monkeypatch):
    seen = {}

    def rule(masks):
        rng = np.random.default_rng(1)
        seen["masks"] = masks
        seen["correct"] = rng.random(masks.shape) < 0.5
        return seen["correct"]

    monkeypatch.setattr(consistency, "train_and_evaluate", _fake_trainer(rule))
    ratios, K, N = (0.25, 0.5), 6, 12
    scores = estimate_cscores(np.zeros((N, 2)), np.zeros(N, np.int32), 3, seed=0,
                              ratios=ratios, models_per_ratio=K)
    masks, correct = seen["masks"], seen["correct"]
    assert masks.shape == (len(ratios) * K, N)
    for i in range(N):
        profile = []
        for r in range(len(ratios)):
            rows = range(r * K, (r + 1) * K)
            held = [correct[k, i] for k in rows if not masks[k, i]]
            profile.append(np.mean(held))
        assert scores[i] == pytest.approx(np.mean(profile))


def test_uncovered_examples_warn_and_get_nan(monkeypatch):
    monkeypatch.setattr(consistency, "train_and_evaluate", _fake_trainer(lambda m: ~m))
    x, y = np.zeros((20, 2)), np.zeros(20, np.int32)
    with pytest.warns(RuntimeWarning, match="no model at all"):
        scores = estimate_cscores(x, y, 2, seed=0, ratios=(0.8,), models_per_ratio=1)
    assert np.isnan(scores).sum() == 16  # 16 of 20 examples are in the only subset
    assert np.all(scores[~np.isnan(scores)] == 1)


@pytest.mark.parametrize("ratio,num_models", [(0.8, 5), (0.8, 13), (0.3, 4), (0.5, 7)])
def test_balanced_masks(ratio, num_models):
    N = 101
    masks = draw_masks(np.random.default_rng(0), N, ratio, num_models)
    assert masks.shape == (num_models, N)
    assert np.all(masks.sum(1) == round(ratio * N))
    held_out = (~masks).sum(0)
    assert held_out.max() - held_out.min() <= 1
    if num_models * (N - round(ratio * N)) >= N:
        assert held_out.min() >= 1
    iid = draw_masks(np.random.default_rng(0), N, ratio, num_models, balanced=False)
    assert np.all(iid.sum(1) == round(ratio * N))


def test_masks_reject_degenerate_ratios():
    for ratio in (0.0, 1.0, 0.001):
        with pytest.raises(ValueError):
            draw_masks(np.random.default_rng(0), 100, ratio, 2)


def test_batch_indices_are_epochs_of_the_subset():
    subset = np.array([3, 5, 8, 13, 21, 34, 55])
    idx = batch_indices(np.random.default_rng(0), subset, steps=5, batch_size=3)
    assert idx.shape == (5, 3)
    flat = idx.ravel()
    assert sorted(flat[:7]) == sorted(subset) and sorted(flat[7:14]) == sorted(subset)
    small = batch_indices(np.random.default_rng(0), subset[:2], steps=2, batch_size=5)
    assert set(small.ravel()) == {3, 5}


def test_binary_logistic_and_full_batch():
    images, labels = read_digits()
    zeros_and_ones = labels < 2                    # load_digits(n_class=2), in file order
    x = (images[zeros_and_ones][:120].reshape(120, 64) / 16.0).astype(np.float32)
    y = np.where(labels[zeros_and_ones][:120] == 1, 1.0, -1.0)
    scores = estimate_cscores(x, y, 1, seed=0, ratios=(0.5,), models_per_ratio=4, steps=30,
                              learning_rate=0.1, batch_size=None)
    assert scores.shape == (120,) and np.all(np.isfinite(scores))
    assert scores.mean() > 0.9  # 0 vs 1 is easy


def test_cached_cscores(tmp_path, monkeypatch):
    x, y, _ = noisy_digits(n=80, seed=1)
    kw = dict(seed=0, ratios=(0.5,), models_per_ratio=4, steps=20)
    path = str(tmp_path / "sub" / "cscores.npz")
    first = cached_cscores(path, x, y, 10, **kw)
    assert os.path.exists(path) and os.listdir(tmp_path / "sub") == ["cscores.npz"]
    np.testing.assert_array_equal(first, estimate_cscores(x, y, 10, **kw))

    calls = []

    def fake(x, y, num_classes, **kwargs):
        calls.append(kwargs)
        return np.full(len(y), 0.5)

    def refuse(*args, **kwargs):
        raise AssertionError("cached scores should have been reused")

    monkeypatch.setattr(consistency, "estimate_cscores", refuse)
    np.testing.assert_array_equal(cached_cscores(path, x, y, 10, **kw), first)

    monkeypatch.setattr(consistency, "estimate_cscores", fake)
    y2 = y.copy()
    y2[0] = (y2[0] + 1) % 10
    for args, kwargs in [((x, y2, 10), kw), ((x + 1, y, 10), kw),
                         ((x, y, 10), {**kw, "steps": 21})]:
        n_calls = len(calls)
        assert np.all(cached_cscores(path, *args, **kwargs) == 0.5)
        assert len(calls) == n_calls + 1
    # The file now holds the last call's scores; the original inputs recompute.
    assert np.all(cached_cscores(path, x, y, 10, **kw) == 0.5) and len(calls) == 4
    assert np.all(cached_cscores(path, x, y, 10, **kw) == 0.5) and len(calls) == 4

    for junk in (b"not an npz", b"PK\x03\x04 truncated zip"):
        with open(path, "wb") as f:
            f.write(junk)
        n_calls = len(calls)
        assert np.all(cached_cscores(path, x, y, 10, **kw) == 0.5) and len(calls) == n_calls + 1
    assert os.listdir(tmp_path / "sub") == ["cscores.npz"]


def test_fingerprint_ignores_kwarg_order_but_not_values():
    x, y = np.zeros((3, 2)), np.zeros(3, np.int32)
    a = consistency.fingerprint(x, y, 2, {"seed": 0, "model_kwargs": {"a": 1, "b": 2}})
    b = consistency.fingerprint(x, y, 2, {"model_kwargs": {"b": 2, "a": 1}, "seed": 0})
    c = consistency.fingerprint(x, y, 2, {"seed": 1, "model_kwargs": {"a": 1, "b": 2}})
    assert a == b != c
    assert a != consistency.fingerprint(x.astype(np.float32), y, 2,
                                        {"seed": 0, "model_kwargs": {"a": 1, "b": 2}})
