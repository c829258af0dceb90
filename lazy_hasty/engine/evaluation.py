"""Evaluators run at each record: per-group metrics and linearity probes.

``GroupEvaluator`` concatenates every (split, group) example set once, so one
compiled batched pass gives per-example loss and correctness for all groups;
the per-example correctness is kept for bootstrap intervals. Groups overlap
(``train/all`` holds ``train/majority``, a balanced split re-uses training
examples), so each distinct (input, label) pair is evaluated once and its result
copied to every place it appears. The copies are the numbers a second evaluation
would give: the models allow only batch-independent norms
(``resnet.make_norm``), so one example's output does not depend on the other
rows of its batch. ``LinearityProbe`` measures how far the network moved from
its initialisation on a fixed probe set (paper, Appendix A).
"""

from __future__ import annotations

import hashlib
import functools
from typing import Any, Mapping, Optional

import jax
import jax.numpy as jnp
import numpy as np

from lazy_hasty import linearity, losses, models, ntk
from lazy_hasty.engine import sharding, train
from lazy_hasty.regimes import Regime
from lazy_hasty.types import ApplyFn, Params


# The regime is a traced argument: one compile per network and kind serves every alpha.
_evaluate = jax.jit(train.evaluate, static_argnums=0)
# The probe's measurements, compiled once per network (the model state is traced).
_intermediates = jax.jit(models.intermediates, static_argnums=0)
_probe_ntk = jax.jit(ntk.empirical_ntk, static_argnums=0,
                     static_argnames=("implementation", "chunk_size"))


class GroupEvaluator:
    """Loss and accuracy of a regime on named example groups (``"split/group"``)."""

    def __init__(self, groups: Mapping[str, tuple[np.ndarray, np.ndarray]],
                 batch_size: int = 512, score_group: Optional[str] = None,
                 score_chunk: Optional[int] = None):
        self.names = list(groups)
        if score_group is not None and score_group not in self.names:
            raise ValueError(f"score group {score_group!r} is not one of the groups {self.names}")
        self.score_group, self.score_chunk = score_group, score_chunk
        sizes = [len(groups[n][1]) for n in self.names]
        self.bounds = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
        x = np.concatenate([groups[n][0] for n in self.names])
        y = np.concatenate([groups[n][1] for n in self.names])
        self.size = len(y)
        first, self._copies = distinct_examples(x, y)
        self.batch_size = int(min(batch_size, len(first)))
        pad = -len(first) % self.batch_size
        first = np.concatenate([first, np.repeat(first[:1], pad)])
        self._x, self._y = x[first], y[first]

    def slice(self, name: str) -> slice:
        """Where group ``name``'s examples sit in the per-example arrays."""
        i = self.names.index(name)
        return slice(self.bounds[i], self.bounds[i + 1])

    def per_example(self, apply_fn: ApplyFn, regime: Regime, params0: Params,
                    params: Params) -> train.PerExample:
        """:class:`lazy_hasty.engine.train.PerExample` over all groups, in ``self.names``
        order (numpy arrays)."""
        b = self.batch_size
        out = [_evaluate(apply_fn, regime, params0, params, self._x[i:i + b], self._y[i:i + b])
               for i in range(0, len(self._y), b)]
        return train.PerExample(*(np.concatenate([np.asarray(o[k]) for o in out])[self._copies]
                                  for k in range(len(train.PerExample._fields))))

    def examples(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """The inputs and labels of group ``name``."""
        at = self._copies[self.slice(name)]
        return self._x[at], self._y[at]

    def grand(self, apply_fn: ApplyFn, regime: Regime, params0: Params, params: Params
              ) -> Optional[np.ndarray]:
        """GraNd of the score group's examples (None without one): the norm of each
        example's loss gradient in the regime's trainable parameters, as
        ``sqrt(g^T K(x, x) g)`` from the diagonal blocks of the regime's tangent kernel
        (:func:`lazy_hasty.losses.gradient_norm`)."""
        if self.score_group is None:
            return None
        x, y = self.examples(self.score_group)
        return np.asarray(_grand(apply_fn, regime, params0, params, x, y, self.score_chunk))

    def summarize(self, loss: np.ndarray, correct: np.ndarray) -> dict[str, float]:
        """``{"split/group/loss": ..., "split/group/accuracy": ...}`` per group."""
        out = {}
        for name in self.names:
            s = self.slice(name)
            out[f"{name}/loss"] = float(np.mean(loss[s]))
            out[f"{name}/accuracy"] = float(np.mean(correct[s]))
        return out


@functools.partial(jax.jit, static_argnums=(0, 6))
def _grand(apply_fn: ApplyFn, regime: Regime, params0: Params, params: Params,
           x: jax.Array, y: jax.Array, chunk_size: Optional[int]) -> jax.Array:
    """GraNd from ``d loss / d output`` and the diagonal NTK blocks of the regime's output."""
    predict = lambda p, xs: regime.predict(apply_fn, params0, p, xs)
    return losses.gradient_norm(losses.output_gradient(predict(params, x), y),
                                ntk.diagonal_blocks(predict, params, x, chunk_size=chunk_size))


def distinct_examples(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(first, copies)``: the index of each distinct (input, label) pair's first
    occurrence, in order, and for every example the position of its pair in
    ``first`` (so ``x[first][copies]`` is ``x``). Pairs are told apart by a 128-bit
    digest of their bytes."""
    position: dict[bytes, int] = {}
    first, copies = [], np.empty(len(y), int)
    for i in range(len(y)):
        digest = hashlib.blake2b(x[i].tobytes(), digest_size=16)
        digest.update(np.asarray(y[i]).tobytes())
        copies[i] = position.setdefault(digest.digest(), len(first))
        if copies[i] == len(first):
            first.append(i)
    return np.asarray(first, int), copies


class LinearityProbe:
    """Sign similarity, NTK alignment and representation alignment vs ``params0``."""

    def __init__(self, module, model_state: Mapping[str, Any], params0: Params,
                 x_probe: np.ndarray, *, ntk_implementation: str = "jacobian",
                 ntk_chunk_size: int | None = None):
        state = dict(model_state)
        # Replicated on the data mesh like the trained params: one compile serves both.
        params0 = sharding.replicate(params0, sharding.data_mesh())
        self._x = jnp.asarray(x_probe)
        apply_fn = models.make_apply_fn(module, state)
        self._ntk = functools.partial(_probe_ntk, apply_fn, implementation=ntk_implementation,
                                      chunk_size=ntk_chunk_size)
        self._inter = functools.partial(_intermediates, module, state)
        self._pre0, self._feat0 = self._inter(params0, self._x)
        self._k0 = self._ntk(params0, self._x)
        self._last: tuple[Params, dict[str, float]] | None = None

    def __call__(self, params: Params) -> dict[str, float]:
        # The linearized regime hands in the same params0 object at every record:
        # measure it once instead of recomputing a kernel that cannot change.
        if self._last is None or params is not self._last[0]:
            pre, feat = self._inter(params, self._x)
            self._last = (params, {
                "sign_similarity": float(linearity.sign_similarity(self._pre0, pre)),
                "ntk_alignment": float(linearity.kernel_alignment(self._ntk(params, self._x),
                                                                  self._k0)),
                "representation_alignment": float(
                    linearity.representation_alignment(self._feat0, feat)),
            })
        return dict(self._last[1])
