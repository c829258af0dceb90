"""Hold-out consistency scores (C-scores, Jiang et al. 2021; the paper's eq. 5).

For an example ``(x, y)`` of a training set ``D`` and a subset ratio ``r``, the
consistency profile is the probability that a model trained on a random subset of
``D`` of size ``n = round(r |D|)`` that does *not* contain ``(x, y)`` classifies
``x`` as ``y``; the C-score is its average over the ratios.

Estimator. For each ratio, ``models_per_ratio`` (K) subsets of exactly ``n``
examples are drawn at random (one boolean mask (N,) per model). All models of all
ratios are trained together, ``batch_models`` at a time, with ``jax.vmap`` over
models; every model gets the full (N, ...) array plus either its minibatch
indices (``batch_size``: its subset reshuffled every epoch, precomputed on the
host as a (steps, batch_size) array) or, with ``batch_size=None``, its mask as
per-example loss weights (full-batch GD on the masked mean loss). Shapes do not
depend on the ratio, so one compilation serves every ratio (and is cached across
calls). After ``steps`` SGD (+ momentum) steps each model classifies every
example, and example ``i``'s profile at ratio ``r`` is the fraction correct among
the ratio-``r`` models whose mask excludes ``i`` (:func:`aggregate`). The
C-score is the mean of the profiles over the ratios.

Speed. On CPU, vmapping models brings no gain: minibatch MLP training runs at
the same rate vmapped or one model at a time, and vmapped full-batch GD or CNNs
are slower (batched matmuls and grouped convolutions are slower XLA:CPU kernels).
The vmapped path is for accelerators; results do not depend on
``batch_models``. ``benchmarks/cscores.py`` measures both, and
benchmarks/README.md holds the figures, including the default budget's (MLP
64-256-C, K = 32 per ratio, 200 steps of batch 64, lr 0.05, momentum 0.9) on
the digits.

Coverage. By default the subsets follow a balanced design (:func:`draw_masks`):
each is still a uniform random n-subset marginally, but every example is held
out by ``floor`` or ``ceil`` of ``K (1 - r)`` models, so all examples are covered
at every ratio once ``K >= 1 / (1 - r)`` (5 for r = 0.8). With i.i.d. subsets
(``balanced=False``) an example is missed by all K models of ratio r with
probability ``r**K`` (``0.8**16 ~ 3%``); that ratio is then left out of its
average (with a warning), and an example held out by no model at all gets NaN.

All randomness (masks, initialisations, minibatch order) derives from ``seed``;
results are deterministic for a given seed, inputs and backend.
"""

from __future__ import annotations

import hashlib
import os
import warnings
import zipfile
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lazy_hasty import losses
from lazy_hasty.engine import records
from lazy_hasty.models import get_model, init_model, make_apply_fn
from lazy_hasty.regimes import Regime
from lazy_hasty.rng import jax_key, numpy_rng
from lazy_hasty.engine.train import TrainState, init_state, make_optimizer, make_train_step

DEFAULT_RATIOS = (0.2, 0.4, 0.6, 0.8)
DEFAULT_MLP_FEATURES = (256,)
PLAIN = Regime("plain")  # each model is trained as the network itself


def draw_masks(rng: np.random.Generator, num_examples: int, ratio: float, num_models: int,
               balanced: bool = True) -> np.ndarray:
    """``num_models`` random subsets of exactly ``round(ratio * N)`` examples each.

    Returns a (num_models, N) boolean array, True where the example is in the subset.
    ``balanced=False``: i.i.d. uniform subsets. ``balanced=True``: model k holds out
    the ``N - n`` examples held out least often by models 0..k-1 (ties broken at
    random), so hold-out counts differ by at most one across examples and every
    example is held out once ``num_models >= N / (N - n)``. The procedure is
    symmetric in the examples, so each model's subset is still marginally uniform
    and, given that it excludes example i, uniform over the subsets without i:
    each hold-out term of the estimator keeps its expectation (eq. 5).
    """
    n = int(round(ratio * num_examples))
    if not 0 < n < num_examples:
        raise ValueError(
            f"ratio {ratio!r} gives a subset of {n} of {num_examples} examples; "
            "need 0 < n < N so that the subset is non-empty and holds examples out")
    u = rng.random((num_models, num_examples))
    if not balanced:
        # The n smallest of N i.i.d. uniforms form a uniform random n-subset.
        ranks = np.argsort(np.argsort(u, axis=1), axis=1)
        return ranks < n
    masks = np.ones((num_models, num_examples), dtype=bool)
    held_out_count = np.zeros(num_examples)
    for k in range(num_models):
        out = np.argsort(held_out_count + u[k])[: num_examples - n]
        masks[k, out] = False
        held_out_count[out] += 1
    return masks


def aggregate(correct: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Hold-out accuracy of each example: mean of ``correct[k, i]`` over the models
    ``k`` with ``masks[k, i]`` False (i.e. trained without example ``i``).

    ``correct`` and ``masks`` are (K, N) booleans (masks: True = in the training
    subset). Returns (N,) floats, NaN where no model holds the example out.
    """
    correct = np.asarray(correct, dtype=bool)
    masks = np.asarray(masks, dtype=bool)
    if correct.shape != masks.shape or correct.ndim != 2:
        raise ValueError(f"correct {correct.shape} and masks {masks.shape} must be equal (K, N)")
    held_out = ~masks
    count = held_out.sum(axis=0)
    hits = (correct & held_out).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, hits / np.maximum(count, 1), np.nan)


def _prepare_inputs(x: np.ndarray, model: str) -> np.ndarray:
    """float32 inputs; flattened to (N, D) for the MLP."""
    x = np.asarray(x, dtype=np.float32)
    if model == "mlp":
        x = x.reshape(x.shape[0], -1)
    return x


def batch_indices(rng: np.random.Generator, subset: np.ndarray, steps: int,
                  batch_size: int) -> np.ndarray:
    """(steps, batch_size) example indices: the subset's examples in a fresh random
    order every epoch, the epochs laid end to end and cut into minibatches."""
    total = steps * batch_size
    reps = -(-total // len(subset))
    order = np.concatenate([rng.permutation(subset) for _ in range(reps)])[:total]
    return order.reshape(steps, batch_size).astype(np.int32)


_COMPILED: dict[str, tuple[Any, Any]] = {}


def _compiled_fns(model: str, model_kwargs: dict, learning_rate: float, momentum: float,
                  steps: int, full_batch: bool) -> tuple[Any, Any]:
    """Jitted ``(init_fn, train_eval_fn)`` for one model and training setup, cached
    so that repeated calls (other data, seeds, ratios) reuse the compilations.

    ``init_fn(key, x1) -> (params, state)`` initialises one model (one model per
    call: vmapping threefry initialisers compiles several times slower on CPU
    than looping over models).
    ``train_eval_fn(params, state, data, x, y) -> correct (M, N)`` trains M models
    in parallel (vmap) for ``steps`` steps of the engine's ``make_train_step``,
    ``data`` being minibatch indices (M, steps, B) or, full-batch, per-example
    loss weights (M, N), then classifies every example of ``x``.
    """
    cache_key = repr((model, sorted(model_kwargs.items()), learning_rate, momentum, steps,
                      full_batch))
    if cache_key in _COMPILED:
        return _COMPILED[cache_key]
    module = get_model(model, **model_kwargs)
    optimizer = make_optimizer("sgd", learning_rate, momentum)

    def init_fn(key: jax.Array, x1: jax.Array) -> tuple[Any, Any]:
        return init_model(module, key, x1)  # (params, state)

    def one_model(params: Any, state: Any, data: jax.Array, x: jax.Array,
                  y: jax.Array) -> jax.Array:
        apply_fn = make_apply_fn(module, state)
        train_step = make_train_step(apply_fn, PLAIN, optimizer)

        def step(train_state: TrainState, idx: jax.Array | None) -> tuple[TrainState, None]:
            if full_batch:
                return train_step(train_state, params, x, y, weights=data)[0], None
            return train_step(train_state, params, x[idx], y[idx])[0], None

        start = init_state(PLAIN, params, optimizer)
        if full_batch:
            trained, _ = jax.lax.scan(step, start, None, length=steps)
        else:
            trained, _ = jax.lax.scan(step, start, data)
        return losses.per_example_correct(apply_fn(trained.params, x), y) > 0

    fns = (jax.jit(init_fn),
           jax.jit(jax.vmap(one_model, in_axes=(0, 0, 0, None, None))))
    if len(_COMPILED) >= 8:
        _COMPILED.pop(next(iter(_COMPILED)))
    _COMPILED[cache_key] = fns
    return fns


def train_and_evaluate(x: np.ndarray, y: np.ndarray, masks: np.ndarray, *, seed: int,
                       model: str, model_kwargs: dict, steps: int, learning_rate: float,
                       momentum: float, batch_size: int | None,
                       batch_models: int | None) -> np.ndarray:
    """Train one model per mask row on its subset; return correct (K, N) booleans.

    Model ``k`` is initialised from stream ``("cscore_init", k)`` of ``seed`` and
    draws its minibatch order from stream ``("cscore_batches", k)``, so a model's
    result does not depend on ``batch_models`` (up to floating-point rounding of
    vmapped versus single-model kernels).
    """
    num_models, num_examples = masks.shape
    full_batch = batch_size is None
    init_fn, train_eval = _compiled_fns(model, model_kwargs, learning_rate, momentum, steps,
                                        full_batch)
    x_dev, y_dev = jnp.asarray(x), jnp.asarray(y)
    num_chunks = -(-num_models // (batch_models or num_models))
    chunk = -(-num_models // num_chunks)  # equal chunks: one compilation, little padding
    correct = np.zeros((num_models, num_examples), dtype=bool)
    for start in range(0, num_models, chunk):
        stop = min(start + chunk, num_models)
        ids = np.arange(start, start + chunk).clip(max=stop - 1)  # pad the last chunk
        inits = [init_fn(jax_key(seed, "cscore_init", int(k)), x_dev[:1]) for k in ids]
        params, state = jax.tree.map(lambda *leaves: jnp.stack(leaves), *inits)
        if full_batch:
            data = masks[ids].astype(np.float32)
        else:
            data = np.stack([
                batch_indices(numpy_rng(seed, "cscore_batches", int(k)),
                              np.flatnonzero(masks[k]), steps, batch_size)
                for k in ids])
        out = train_eval(params, state, jnp.asarray(data), x_dev, y_dev)
        correct[start:stop] = np.asarray(out)[: stop - start]
    return correct


def _checked_labels(y: np.ndarray, num_examples: int, num_classes: int, *,
                    ratios: Sequence[float], models_per_ratio: int, steps: int,
                    batch_size: int | None, batch_models: int | None) -> np.ndarray:
    """Validates :func:`estimate_cscores`' arguments; returns ``y`` in the loss's dtype."""
    y = np.asarray(y)
    if y.shape != (num_examples,):
        raise ValueError(f"y must have shape ({num_examples},), got {y.shape}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if models_per_ratio < 1 or steps < 0:
        raise ValueError("models_per_ratio must be >= 1 and steps >= 0")
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be >= 1 or None, got {batch_size}")
    if batch_models is not None and batch_models < 1:
        raise ValueError(f"batch_models must be >= 1 or None, got {batch_models}")
    if len(ratios) == 0:
        raise ValueError("need at least one ratio")
    return y.astype(np.float32 if num_classes == 1 else np.int32)


def _full_model_kwargs(model: str, model_kwargs: dict | None, num_classes: int) -> dict:
    """``model_kwargs`` with the defaults: ``num_classes`` outputs, MLP hidden widths."""
    kwargs = dict(model_kwargs or {})
    kwargs.setdefault("num_outputs", num_classes)
    if model == "mlp":
        kwargs["features"] = tuple(kwargs.get("features", DEFAULT_MLP_FEATURES))
    return kwargs


def _mean_profile(profiles: np.ndarray, models_per_ratio: int) -> np.ndarray:
    """Mean over the ratios (R, N) -> (N,) of the profiles, warning about uncovered examples."""
    missing = np.isnan(profiles)
    if missing.any():
        n_partial = int((missing.any(0) & ~missing.all(0)).sum())
        n_none = int(missing.all(0).sum())
        warnings.warn(
            f"C-scores: {n_partial} examples were not held out by any model of some ratio "
            f"(those ratios are left out of their average) and {n_none} by no model at all "
            f"(NaN); increase models_per_ratio (now {models_per_ratio})", RuntimeWarning,
            stacklevel=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns -> NaN
        return np.nanmean(profiles, axis=0)


def estimate_cscores(x: np.ndarray, y: np.ndarray, num_classes: int, *, seed: int,
                     ratios: Sequence[float] = DEFAULT_RATIOS, models_per_ratio: int = 32,
                     model: str = "mlp", model_kwargs: dict | None = None,
                     steps: int = 200, learning_rate: float = 0.05, momentum: float = 0.9,
                     batch_size: int | None = 64,
                     batch_models: int | None = None, balanced: bool = True) -> np.ndarray:
    """Hold-out consistency score of every example of ``(x, y)``, shape (N,) in [0, 1].

    Args:
      x: inputs (N, ...); flattened to (N, D) for ``model="mlp"``, else passed as is
        (e.g. (N, 8, 8, 1) for ``"cnn"``).
      y: integer labels (N,) for ``num_classes > 1``; +-1 labels for ``num_classes == 1``
        (logistic loss, see ``lazy_hasty.losses``).
      num_classes: number of network outputs.
      seed: the only source of randomness (masks, inits, minibatch order).
      ratios: subset ratios r; each subset holds ``round(r * N)`` examples.
      models_per_ratio: K, models trained per ratio.
      model, model_kwargs: network from ``lazy_hasty.models.get_model``;
        ``num_outputs`` defaults to ``num_classes`` and, for the MLP, ``features``
        to ``DEFAULT_MLP_FEATURES``.
      steps, learning_rate, momentum: SGD (heavy-ball momentum) training budget.
      batch_size: minibatch size drawn from each model's subset (reshuffled every
        epoch); None = full-batch gradient descent on the masked mean loss.
      batch_models: at most this many models are vmapped at once (memory bound);
        None = all ``len(ratios) * models_per_ratio`` at once.
      balanced: balanced hold-out design (see :func:`draw_masks`) instead of
        i.i.d. uniform subsets; same expectation, every example covered once
        ``models_per_ratio >= 1 / (1 - r)``.

    Returns:
      (N,) float64 C-scores; NaN (with a warning) for examples no model held out.
    """
    x = _prepare_inputs(x, model)
    num_examples = x.shape[0]
    y = _checked_labels(y, num_examples, num_classes, ratios=ratios,
                        models_per_ratio=models_per_ratio, steps=steps,
                        batch_size=batch_size, batch_models=batch_models)
    masks = np.concatenate([
        draw_masks(numpy_rng(seed, "cscore_masks", r_idx), num_examples, r, models_per_ratio,
                   balanced)
        for r_idx, r in enumerate(ratios)])                       # (R*K, N)
    correct = train_and_evaluate(
        x, y, masks, seed=seed, model=model,
        model_kwargs=_full_model_kwargs(model, model_kwargs, num_classes), steps=steps,
        learning_rate=learning_rate, momentum=momentum, batch_size=batch_size,
        batch_models=batch_models)
    K = models_per_ratio
    profiles = np.stack([aggregate(correct[i * K:(i + 1) * K], masks[i * K:(i + 1) * K])
                         for i in range(len(ratios))])            # (R, N)
    return _mean_profile(profiles, models_per_ratio)


_CACHE_VERSION = 2  # bump when the estimator, its defaults or its random streams change


def _canonical(value: Any) -> Any:
    """Dicts as sorted item lists (recursively), so key order cannot change a fingerprint."""
    if isinstance(value, dict):
        return [(k, _canonical(v)) for k, v in sorted(value.items())]
    if isinstance(value, (list, tuple)):
        return type(value)(_canonical(v) for v in value)
    return value


def fingerprint(x: np.ndarray, y: np.ndarray, num_classes: int, kwargs: dict) -> str:
    """sha256 of the inputs' bytes, shapes, dtypes and the sorted keyword arguments."""
    h = hashlib.sha256()
    for a in (np.ascontiguousarray(x), np.ascontiguousarray(y)):
        h.update(repr((a.shape, a.dtype.str)).encode())
        h.update(a.tobytes())
    h.update(repr((_CACHE_VERSION, num_classes)).encode())
    h.update(repr(_canonical(kwargs)).encode())
    return h.hexdigest()


def cached_cscores(path: str, x: np.ndarray, y: np.ndarray, num_classes: int,
                   **kwargs: Any) -> np.ndarray:
    """:func:`estimate_cscores` cached in the ``.npz`` at ``path``.

    The file stores ``scores`` and a ``fingerprint`` of (x, y, num_classes,
    kwargs); it is reused when the fingerprint matches, else the scores are
    recomputed and the file atomically replaced (temp file + ``os.replace``).
    """
    fp = fingerprint(x, y, num_classes, kwargs)
    if os.path.exists(path):
        try:
            with np.load(path, allow_pickle=False) as f:
                if str(f["fingerprint"]) == fp:
                    return np.array(f["scores"])
        except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile):
            pass  # unreadable or foreign file: recompute and overwrite
    scores = estimate_cscores(x, y, num_classes, **kwargs)
    records.write_npz(path, scores=scores, fingerprint=np.array(fp))
    return scores


__all__ = ["aggregate", "batch_indices", "cached_cscores", "draw_masks", "estimate_cscores",
           "fingerprint", "train_and_evaluate"]
