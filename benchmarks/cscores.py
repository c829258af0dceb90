"""Throughput of the C-score estimator: held-out models trained per second.

Trains the estimator's models (``lazy_hasty.analysis.consistency.train_and_evaluate``:
per-model init, SGD on the model's random subset, evaluation on all examples)
on scikit-learn digits (8x8 pixels in [0, 1]), all K models vmapped at once
(``batch_models=K``) versus one model at a time (``batch_models=1``, same
compiled code with a model axis of 1). Reports models per second of the best of
a few repeats after a warm-up call, whose time (mostly compilation) is printed
separately. Usage: ``python benchmarks/cscores.py [--quick] [--no-cnn] [--n N]``.
"""

from __future__ import annotations

import argparse
import os
import time

import jax
import numpy as np
from sklearn.datasets import load_digits

from lazy_hasty.analysis.consistency import (DEFAULT_MLP_FEATURES, _prepare_inputs, draw_masks,
                                    train_and_evaluate)
from lazy_hasty.rng import numpy_rng


def measure(model: str, model_kwargs: dict, x: np.ndarray, y: np.ndarray, masks: np.ndarray,
            batch_models: int, steps: int, batch_size: int | None, learning_rate: float,
            repeats: int) -> tuple[float, float]:
    """(first-call seconds, models per second) for training ``len(masks)`` models."""
    x = _prepare_inputs(x, model)
    kwargs = dict(num_outputs=10, **model_kwargs)

    def run() -> None:
        train_and_evaluate(x, y, masks, seed=0, model=model, model_kwargs=kwargs, steps=steps,
                           learning_rate=learning_rate, momentum=0.9, batch_size=batch_size,
                           batch_models=batch_models)

    t0 = time.perf_counter()
    run()
    first = time.perf_counter() - t0
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - t0)
    return first, len(masks) / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer models and steps")
    parser.add_argument("--no-cnn", action="store_true", help="MLP rows only (the CNN is slow)")
    parser.add_argument("--n", type=int, default=1000, help="training examples (<= 1797)")
    args = parser.parse_args()
    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[: args.n, ..., None]
    y = digits.target.astype(np.int32)[: args.n]
    num_models, steps = (4, 50) if args.quick else (32, 200)
    masks = draw_masks(numpy_rng(0, "cscore_masks", 0), len(y), 0.6, num_models)
    configs = [  # (model, kwargs, minibatch size, learning rate)
        ("mlp", {"features": DEFAULT_MLP_FEATURES}, 64, 0.05),
        ("mlp", {"features": DEFAULT_MLP_FEATURES}, None, 0.5),
        ("cnn", {"width": 8}, 64, 0.05),
    ][: 2 if args.no_cnn else 3]
    print(f"digits N={len(y)}, subset ratio 0.6, K={num_models} models x {steps} SGD steps, "
          f"backend={jax.default_backend()}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"{'model':26s} {'batch':>5s} {'vmapped (K)':>12s} {'sequential (1)':>15s} "
          f"{'speedup':>8s} {'first call K/1':>15s}")
    for model, kwargs, batch_size, lr in configs:
        label = f"{model} {kwargs}"
        f_v, v = measure(model, kwargs, x, y, masks, num_models, steps, batch_size, lr, 3)
        f_s, s = measure(model, kwargs, x, y, masks, 1, steps, batch_size, lr, 2)
        print(f"{label:26s} {str(batch_size):>5s} {v:10.1f}/s {s:13.1f}/s {v / s:7.2f}x "
              f"{f_v:6.1f}s/{f_s:.1f}s", flush=True)


if __name__ == "__main__":
    main()
