"""Named random streams: their words, and an audit of every stream a run of each
built-in dataset draws from (no two purposes share one, no draw is unnamed)."""

import collections
import contextlib
import sys

import jax
import numpy as np
import pytest

from configs import (celeba, difficulty_base, digits_cscores_tiny, digits_noise_tiny,
                     digits_spurious_tiny, waterbirds)
from experiments import difficulty
from lazy_hasty import datasets, rng
from tests import fakes


def test_a_stream_is_its_seed_purpose_and_indices():
    assert rng.words(3, "epoch", 0) != rng.words(3, "epoch")
    draw = lambda *stream: rng.numpy_rng(*stream).integers(0, 2**31, 4).tolist()
    # numpy's seeding ignores trailing zero words: the index count keeps these apart.
    assert draw(3, "epoch", 0) != draw(3, "epoch")
    assert draw(3, "epoch", 0) != draw(3, "epoch", 1) != draw(4, "epoch", 1)
    assert draw(3, "epoch", 2) == draw(3, "epoch", 2)
    assert draw(3, "group_sample", "train", "all") != draw(3, "group_sample", "test", "all")
    key = lambda *stream: np.asarray(jax.random.key_data(rng.jax_key(*stream))).tolist()
    assert key(0, "init") != key(0, "init", 0) != key(1, "init", 0)
    with pytest.raises(ValueError, match="named by its purpose"):
        rng.numpy_rng(0, 7)


@contextlib.contextmanager
def _audit():
    """Within: every numpy generator and JAX key the project's code makes, and the
    streams noted by rng; yields the trace. Fails if the library or a driver makes a
    generator or key outside a named stream (test fixtures, e.g. TFDS's mock data,
    may make their own)."""
    made = collections.Counter()
    default_rng, prng_key = np.random.default_rng, jax.random.PRNGKey

    def counted(kind, make):
        def wrapper(*args, **kwargs):
            caller = sys._getframe(1).f_globals.get("__name__", "")
            if caller.split(".")[0] in ("lazy_hasty", "experiments"):
                made.update([kind])
            return make(*args, **kwargs)
        return wrapper

    with pytest.MonkeyPatch.context() as patch, rng.traced() as trace:
        patch.setattr(np.random, "default_rng", counted("numpy", default_rng))
        patch.setattr(jax.random, "PRNGKey", counted("jax", prng_key))
        yield trace
    noted = collections.Counter(s.kind for s in trace)
    assert made == noted, f"generators made outside rng's named streams: {made - noted}"


def _check_purposes(trace, want):
    """No two purposes share words; the trace's purposes are ``want``."""
    purposes = collections.defaultdict(set)
    for stream in trace:
        purposes[(stream.kind, tuple(int(w) for w in stream.words))].add(stream.purpose)
    shared = {words: p for words, p in purposes.items() if len(p) > 1}
    assert not shared, shared
    assert {s.purpose for s in trace} == want


RUN = {"init", "probe", "epoch", "bootstrap", "bootstrap_spearman"}
"""What a difficulty run draws besides its dataset (model, probe, minibatches, summary)."""
TWIN = {"split", "backgrounds", "distractors", "balanced", "group_sample"}
"""What the digits spurious twin's dataset draws."""


@pytest.fixture(scope="module")
def run_streams(tmp_path_factory):
    """The streams of a whole tiny run of the digits spurious twin (both statistics)."""
    config = digits_spurious_tiny.get_config()
    config.figures = False
    with _audit() as trace:
        difficulty.run(config, str(tmp_path_factory.mktemp("run") / "work"))
    return list(trace)


def test_a_run_draws_from_named_streams_only(run_streams):
    _check_purposes(run_streams, RUN | TWIN)
    statistics = {s.index for s in run_streams if s.purpose == "bootstrap"}
    assert statistics == {("hastiness",), ("hard_advantage",)}


def _load(config):
    return datasets.load(config.dataset, config.to_dict(), config.dataset_kwargs.to_dict())


def _digits(difficulty_name, tmp_path):
    config = (digits_noise_tiny if difficulty_name == "noise" else digits_cscores_tiny
              ).get_config()
    config.cscore_cache = str(tmp_path / "cscores.npz")
    return config


@pytest.mark.parametrize("name, want", [
    ("noise", {"split", "distractors", "label_noise", "group_sample"}),
    ("cscores", {"split", "distractors", "group_sample", "cscore_masks", "cscore_batches",
                 "cscore_init"}),
])
def test_digits_streams(run_streams, name, want, tmp_path):
    with _audit() as trace:
        _load(_digits(name, tmp_path))
    _check_purposes(trace, want)
    _check_purposes(run_streams + trace, RUN | TWIN | want)


def test_cifar10_streams(run_streams, tmp_path):
    pytest.importorskip("tensorflow_datasets")
    config = difficulty_base.get_config()
    config.dataset, config.data_dir = "cifar10", fakes.prepare_fake_cifar10(tmp_path)
    config.train_size, config.group_size, config.test_size = 20, 4, 5
    with _audit() as trace:
        _load(config)
    _check_purposes(trace, {"label_noise", "group_sample"})
    _check_purposes(run_streams + trace, RUN | TWIN | {"label_noise"})


def test_celeba_streams(run_streams):
    pytest.importorskip("tensorflow_datasets")
    config = celeba.get_config()
    config.data_dir, config.image_size = "/nonexistent", 8
    config.train_size, config.balanced_per_group, config.test_size = 20, 2, 10
    with fakes.mock_tfds(), _audit() as trace:
        _load(config)
    _check_purposes(trace, {"subset", "balanced", "group_sample"})
    _check_purposes(run_streams + trace, RUN | TWIN | {"subset"})


def test_waterbirds_streams(run_streams, tmp_path):
    fakes.write_waterbirds_release(tmp_path)
    config = waterbirds.get_config()
    config.data_dir, config.image_size = str(tmp_path), 8
    config.balanced_per_group, config.test_size, config.pretrained = 1, 4, ""
    with _audit() as trace:
        _load(config)
    _check_purposes(trace, {"balanced", "group_sample"})
    _check_purposes(run_streams + trace, RUN | TWIN)
