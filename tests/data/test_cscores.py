"""Published C-scores: decile edges, label check, refusals, download over http."""

import functools
import http.server
import socket
import threading
from pathlib import Path

import numpy as np
import pytest

from lazy_hasty.data.cscores import load_published_cscores
from lazy_hasty.data.groups import decile_bins
from tests import ROOT

CSCORE_DIR = Path(ROOT).parent / "shared" / "data" / "cscores"
CIFAR10_FILE = CSCORE_DIR / "cifar10-cscores-orig-order.npz"


@pytest.fixture(scope="module")
def cifar10_file():
    if not CIFAR10_FILE.is_file():
        pytest.skip(f"published C-scores not found at {CIFAR10_FILE} (../shared/data/cscores)")
    return CIFAR10_FILE


@pytest.fixture(scope="module")
def cifar10_labels(cifar10_file):
    with np.load(cifar10_file, allow_pickle=False) as data:
        return data["labels"]


def test_decile_edges_of_training_split(cifar10_file):
    scores = load_published_cscores(cifar10_file)
    assert scores.shape == (50000,) and scores.dtype == np.float64
    edges = np.quantile(scores[:40000], np.linspace(0, 1, 11))[1:-1]
    np.testing.assert_array_equal(
        np.round(edges, 3), [0.510, 0.704, 0.778, 0.816, 0.839, 0.855, 0.867, 0.877, 0.887]
    )
    assert np.all(np.bincount(decile_bins(scores[:40000])) == 4000)


def test_label_check(cifar10_file, cifar10_labels):
    train_labels = cifar10_labels[:40000].astype(np.int32)
    load_published_cscores(cifar10_file, expected_labels=train_labels)  # passes
    permuted = np.random.default_rng(0).permutation(train_labels)
    with pytest.raises(ValueError, match=r"does not match the dataset order/labels: \d+ of"):
        load_published_cscores(cifar10_file, expected_labels=permuted)
    with pytest.raises(ValueError, match="does not match"):
        load_published_cscores(cifar10_file, expected_labels=np.zeros(50001, dtype=np.int64))


def test_missing_file_names_path_and_source(tmp_path):
    missing = tmp_path / "cifar10-cscores-orig-order.npz"
    with pytest.raises(FileNotFoundError, match="pluskid.github.io/structural-regularity") as info:
        load_published_cscores(missing)
    assert str(missing) in str(info.value)


def test_missing_keys_and_npy_scores(tmp_path):
    np.savez(tmp_path / "bad.npz", scores=np.zeros(5))
    with pytest.raises(ValueError, match="lacks keys"):
        load_published_cscores(tmp_path / "bad.npz")
    np.save(tmp_path / "mnist.npy", np.linspace(0, 1, 6))
    np.testing.assert_allclose(load_published_cscores(tmp_path / "mnist.npy"), np.linspace(0, 1, 6))
    with pytest.warns(UserWarning, match="no labels"):
        load_published_cscores(tmp_path / "mnist.npy", expected_labels=np.zeros(6, dtype=int))


def test_pickled_objects_refused(tmp_path):
    path = tmp_path / "evil.npy"
    np.save(path, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="pickled"):
        load_published_cscores(path)
    np.savez(tmp_path / "evil.npz", scores=np.array([1.0, None], dtype=object),
             labels=np.zeros(2, dtype=np.int64))
    with pytest.raises(ValueError, match="pickled"):
        load_published_cscores(tmp_path / "evil.npz")


@pytest.fixture
def http_dir(tmp_path):
    """Serves a tmp dir on 127.0.0.1; yields (dir, base url); shuts down afterwards."""
    served = tmp_path / "served"
    served.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.timeout = 5
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield served, f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_url_downloaded_once_into_cache(http_dir, tmp_path):
    served, url = http_dir
    scores, labels = np.linspace(0, 1, 20), np.arange(20) % 10
    np.savez(served / "tiny-cscores.npz", scores=scores, labels=labels)
    cache = tmp_path / "cache"
    got = load_published_cscores(url + "tiny-cscores.npz", expected_labels=labels[:15],
                                 cache_dir=cache)
    np.testing.assert_array_equal(got, scores)
    assert (cache / "tiny-cscores.npz").is_file()
    (served / "tiny-cscores.npz").unlink()  # the second call must read the cache
    np.testing.assert_array_equal(
        load_published_cscores(url + "tiny-cscores.npz", cache_dir=cache), scores)
    with pytest.raises(ConnectionError, match="could not download"):
        load_published_cscores(url + "absent.npz", cache_dir=cache)
    assert not any(cache.glob("absent*"))


def test_unreachable_url_fails_fast(tmp_path):
    with socket.socket() as sock:  # a port with nothing listening
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ConnectionError, match="offline"):
        load_published_cscores(f"http://127.0.0.1:{port}/x.npz", cache_dir=tmp_path)
