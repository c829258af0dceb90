"""Seeded randomness: every random draw of a run comes from a stream of ``config.seed``
named by its purpose.

A stream is the seed, a purpose (a name) and optional indices (integers or
names). Its words are the seed, the purpose's CRC-32, the number of indices
and the indices (a name counts as its CRC-32); they seed numpy's generator, or
are folded one by one into the JAX key of the seed. The count keeps
``("epoch", 0)`` apart from ``("epoch",)``: numpy's seeding ignores trailing
zero words. So adding a stream never shifts the draws of another, the same
seed always gives the same records, and no two purposes share a stream
(``tests/test_rng.py`` collects the streams of a run of every built-in
dataset). The library's purposes:

===================  ========================================================
``init``             the network's initialisation (JAX); ``("init", i)``: run ``i``
``train_set``        a run's yin-yang training points (JAX), ``("train_set", i)``
``split``            the train / held-out / test partition (digits)
``distractors``      the pure-noise input features (digits twins)
``label_noise``      which training labels are replaced, and by what
``backgrounds``      the digits spurious twin's background colours
``subset``           a seeded subset of a split, ``("subset", name)``
``balanced``         the order a balanced set is filled in, ``("balanced", name)``
``group_sample``     a group's sampled examples, ``("group_sample", split, group)``
``probe``            the examples of the linearity probe
``epoch``            the minibatch order of epoch ``k``, ``("epoch", k)``
``cscore_masks``     the held-out masks of C-score ratio ``r``, ``("cscore_masks", r)``
``cscore_batches``   C-score model ``k``'s minibatch order
``cscore_init``      C-score model ``k``'s initialisation (JAX)
``score_reference``  the seed of score reference run ``k``, ``("score_reference", k)``
``bootstrap``        a statistic's bootstrap over examples, ``("bootstrap", statistic)``
``bootstrap_spearman``  a rank correlation's bootstrap, ``("bootstrap_spearman", what)``
===================  ========================================================
"""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import Iterator
from typing import Any, NamedTuple

import numpy as np


class Stream(NamedTuple):
    """One stream a draw came from: generator kind, purpose, indices and words."""

    kind: str                       # "numpy" or "jax"
    purpose: str
    index: tuple
    words: tuple


_traces: list[list[Stream]] = []


def _word(part: Any) -> Any:
    return zlib.crc32(part.encode("utf-8")) if isinstance(part, str) else part


def words(seed: int, purpose: str, *index: int | str) -> tuple:
    """The words of stream ``(purpose, *index)`` of ``seed`` (the seed and indices may be
    traced JAX integers)."""
    if not isinstance(purpose, str) or not purpose:
        raise ValueError(f"a random stream is named by its purpose (a non-empty str), "
                         f"got {purpose!r}")
    return (seed, _word(purpose), len(index), *(_word(i) for i in index))


def _note(kind: str, purpose: str, index: tuple, stream_words: tuple) -> None:
    for trace in _traces:
        trace.append(Stream(kind, purpose, index, stream_words))


@contextlib.contextmanager
def traced() -> Iterator[list[Stream]]:
    """Within: every stream drawn from is appended to the yielded list (an audit of
    which purposes a run draws from)."""
    trace: list[Stream] = []
    _traces.append(trace)
    try:
        yield trace
    finally:
        _traces.remove(trace)


def numpy_rng(seed: int, purpose: str, *index: int | str) -> np.random.Generator:
    """The numpy generator of stream ``(purpose, *index)`` of ``seed``."""
    stream_words = words(seed, purpose, *index)
    _note("numpy", purpose, index, stream_words)
    return np.random.default_rng([int(w) for w in stream_words])


def jax_key(seed: int, purpose: str, *index: Any) -> Any:
    """The JAX PRNG key of stream ``(purpose, *index)`` of ``seed``: ``PRNGKey(seed)``
    with the other words folded in (an index may be traced, e.g. under ``vmap``).

    JAX is imported here, so the numpy streams work without it."""
    import jax
    stream_words = words(seed, purpose, *index)
    _note("jax", purpose, index, stream_words)
    key = jax.random.PRNGKey(seed)
    for word in stream_words[1:]:
        key = jax.random.fold_in(key, word)
    return key

