"""Published consistency scores (C-scores) of Jiang, Zhang, Talwar & Mozer (ICML 2021).

Files as distributed at ``https://pluskid.github.io/structural-regularity/cscores/<file>``:

- ``cifar10-cscores-orig-order.npz`` / ``cifar100-cscores-orig-order.npz``:
  ``labels`` (50000,) int and ``scores`` (50000,) float, in the original CIFAR
  *training* order (no test-set scores).
- ``mnist-cscores.npy``: scores only, (60000,) float. With no labels in the file,
  ``expected_labels`` can only be checked for length, not for order.

Files are always read with ``allow_pickle=False``: a file holding pickled
objects is refused rather than executed.
"""

from __future__ import annotations

import os
import pathlib
import urllib.parse
import urllib.request
import warnings

import numpy as np

CSCORES_URL: str = "https://pluskid.github.io/structural-regularity/cscores/"
"""Where the published files live; append the file name."""

DEFAULT_CACHE_DIR: str = "~/.cache/lazy_hasty"
DOWNLOAD_TIMEOUT_S: float = 30.0


def _is_url(path_or_url: str) -> bool:
    return urllib.parse.urlparse(str(path_or_url)).scheme in ("http", "https")


def _download(url: str, cache_dir: str | os.PathLike) -> pathlib.Path:
    """Downloads ``url`` once into ``cache_dir`` (atomically) and returns the local path."""
    name = pathlib.PurePosixPath(urllib.parse.urlparse(url).path).name
    if not name:
        raise ValueError(f"C-score URL {url!r} does not end in a file name; give the file's URL.")
    cache = pathlib.Path(cache_dir).expanduser()
    target = cache / name
    if target.exists():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
            data = response.read()
    except OSError as err:  # URLError, HTTPError, timeouts, refused connections
        raise ConnectionError(
            f"could not download the C-scores from {url} ({err}). If this machine is offline, "
            f"download the file elsewhere ({CSCORES_URL}{name}) and pass its local path."
        ) from err
    partial = target.with_name(f"{name}.part{os.getpid()}")
    partial.write_bytes(data)
    partial.replace(target)
    return target


def _read(path: pathlib.Path) -> tuple[np.ndarray, np.ndarray | None]:
    """``(scores, labels or None)`` from a ``.npz`` (scores + labels) or ``.npy`` (scores)."""
    try:
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.lib.npyio.NpzFile):
            with loaded:
                missing = [key for key in ("scores", "labels") if key not in loaded.files]
                if missing:
                    raise ValueError(
                        f"C-score file {path} lacks keys {missing} (has {loaded.files}); expected "
                        "the published format with 'scores' and 'labels'."
                    )
                return np.asarray(loaded["scores"]), np.asarray(loaded["labels"])
        return np.asarray(loaded), None
    except ValueError as err:
        if "pickle" in str(err).lower():
            raise ValueError(
                f"C-score file {path} holds pickled objects; refusing to load it "
                "(allow_pickle=False). Use the published numeric .npz / .npy file."
            ) from err
        raise


def load_published_cscores(
    path_or_url: str | os.PathLike,
    expected_labels: np.ndarray | None = None,
    cache_dir: str | os.PathLike = DEFAULT_CACHE_DIR,
) -> np.ndarray:
    """The ``(N,)`` float64 C-scores from a local path or an http(s) URL.

    A URL is downloaded once into ``cache_dir``, under its file name (timeout
    30 s; ``ConnectionError`` when unreachable). If ``expected_labels`` (``(M,)``,
    ``M <= N``) is given, the file's labels must equal them on the first ``M``
    examples, e.g. the clean labels of CIFAR-10 ``train[:40000]`` in original
    order; otherwise ValueError. A ``.npy`` file (MNIST) has no labels: only
    ``M <= N`` is checked, with a warning that the order cannot be verified.
    """
    if _is_url(str(path_or_url)):
        path = _download(str(path_or_url), cache_dir)
    else:
        path = pathlib.Path(path_or_url).expanduser()
        if not path.is_file():
            raise FileNotFoundError(
                f"C-score file not found: {path}. Get it from "
                f"{CSCORES_URL}{path.name} (or pass that URL)."
            )
    scores, labels = _read(path)
    if scores.ndim != 1 or not np.issubdtype(scores.dtype, np.floating):
        raise ValueError(
            f"C-scores in {path} must be a 1-d float array; got shape {scores.shape}, "
            f"dtype {scores.dtype}."
        )
    if labels is not None and (labels.shape != scores.shape or
                               not np.issubdtype(labels.dtype, np.integer)):
        raise ValueError(
            f"labels in {path} must be integers of the scores' shape {scores.shape}; got "
            f"shape {labels.shape}, dtype {labels.dtype}."
        )
    if expected_labels is not None:
        _check_labels(path, scores, labels, np.asarray(expected_labels))
    return scores.astype(np.float64)


def _check_labels(
    path: pathlib.Path, scores: np.ndarray, labels: np.ndarray | None, expected: np.ndarray
) -> None:
    if expected.ndim != 1 or expected.shape[0] > scores.shape[0]:
        raise ValueError(
            f"the C-score file {path} has {scores.shape[0]} scores but expected_labels has shape "
            f"{expected.shape}: the file does not match the dataset."
        )
    if labels is None:
        warnings.warn(
            f"{path} holds no labels: cannot check that its order matches the dataset's.",
            stacklevel=3,
        )
        return
    m = expected.shape[0]
    mismatches = int(np.count_nonzero(labels[:m] != expected))
    if mismatches:
        raise ValueError(
            f"the C-score file {path} does not match the dataset order/labels: {mismatches} of "
            f"the first {m} labels differ. The scores are in the original CIFAR training order; "
            "load the dataset in that order (and compare clean, not noisy, labels)."
        )
