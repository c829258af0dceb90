"""The example-difficulty driver end to end: tiny digits runs (label noise, C-scores), a tiny
real array_record CIFAR-10, output files against independent recomputation, determinism
and config validation before anything is written."""

import json
import os
import time

import ml_collections
import numpy as np
import pytest

from configs import difficulty_base, digits_cscores_tiny, digits_noise_tiny
from experiments import difficulty
from lazy_hasty import progress, records
from lazy_hasty.data import splits

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PUBLISHED = os.path.join(ROOT, "..", "shared", "data", "cscores",
                         "cifar10-cscores-orig-order.npz")
FILES = ("config.json", "metrics.jsonl", "per_example.npz", "summary.json", "fig2.png")
REGIMES = {"alpha=1", "alpha=100"}
PROBE_KEYS = ("sign_similarity", "ntk_alignment", "representation_alignment")


def _run(config, workdir):
    difficulty.run(config, str(workdir))
    return {"config": config, "dir": str(workdir),
            "records": records.read_jsonl(os.path.join(workdir, "metrics.jsonl")),
            "npz": dict(np.load(os.path.join(workdir, "per_example.npz"), allow_pickle=False)),
            "summary": json.load(open(os.path.join(workdir, "summary.json")))}


def _noise_config():
    return digits_noise_tiny.get_config()


@pytest.fixture(scope="module")
def noise_run(tmp_path_factory):
    return _run(_noise_config(), tmp_path_factory.mktemp("noise") / "work")


@pytest.fixture(scope="module")
def cscores_run(tmp_path_factory):
    config = digits_cscores_tiny.get_config()
    config.cscore_cache = str(tmp_path_factory.mktemp("cache") / "digits_cscores.npz")
    return _run(config, tmp_path_factory.mktemp("cscores") / "work")


# ---------------------------------------------------------------- shared checks

def _check_files(run):
    for name in FILES:
        assert os.path.getsize(os.path.join(run["dir"], name)) > 0, name
    with open(os.path.join(run["dir"], "fig2.png"), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    with open(os.path.join(run["dir"], "config.json")) as f:
        assert json.load(f) == json.loads(json.dumps(run["config"].to_dict()))


def _check_records(run, group_keys):
    recs = run["records"]
    assert {r["regime"] for r in recs} == REGIMES
    for r in recs:
        assert isinstance(r["step"], int) and r["step"] >= 0
        assert isinstance(r["train_loss"], float) and np.isfinite(r["train_loss"])
        missing = [k for k in group_keys if k not in r]
        assert not missing, missing
        for k in group_keys:
            if k.endswith("/accuracy"):
                assert 0.0 <= r[k] <= 1.0
        assert r["train_loss"] == r["train/all/loss"]
    for regime in REGIMES:
        mine = [r for r in recs if r["regime"] == regime]
        steps = [r["step"] for r in mine]
        assert steps == sorted(set(steps)) and steps[0] == 0
        with_probe = [r for r in mine if PROBE_KEYS[0] in r]
        every = run["config"].probe_every
        assert [i for i, r in enumerate(mine) if all(k in r for k in PROBE_KEYS)] == \
            list(range(0, len(mine), every))
        assert len(with_probe) == len(range(0, len(mine), every))
        for r in with_probe:
            for k in PROBE_KEYS:
                assert -1e-5 <= r[k] <= 1 + 1e-5, (k, r[k])
        for k in PROBE_KEYS:               # the first record is at params0
            assert mine[0][k] == pytest.approx(1.0, abs=1e-5)


def _check_per_example(run):
    npz, recs = run["npz"], run["records"]
    names = [str(n) for n in npz["group_names"]]
    bounds = npz["group_bounds"]
    assert bounds[0] == 0 and np.all(np.diff(bounds) > 0)
    for regime in REGIMES:
        correct = npz[f"correct_{regime}"]
        mine = [r for r in recs if r["regime"] == regime]
        assert correct.shape == (len(mine), bounds[-1])
        assert set(np.unique(correct)) <= {0, 1}
        for row, rec in zip(correct, mine):      # group accuracies from the same arrays
            for i, name in enumerate(names):
                assert rec[f"{name}/accuracy"] == pytest.approx(
                    row[bounds[i]:bounds[i + 1]].mean(), abs=1e-6), name
    return names, bounds


def _check_summary(run, easy, hard, progress_key, decreasing):
    summary, npz = run["summary"], run["npz"]
    assert {"hastiness", "hastiness_interval", "nonlinear", "linear"} <= set(summary)
    assert (summary["nonlinear"], summary["linear"]) == tuple(run["config"].compare)
    assert summary["easy_group"] == easy and summary["hard_group"] == hard
    names, bounds = [str(n) for n in npz["group_names"]], npz["group_bounds"]
    idx = lambda g: np.arange(bounds[names.index(g)], bounds[names.index(g) + 1])
    prog = {r: np.array([rec[progress_key] for rec in run["records"] if rec["regime"] == r])
            for r in REGIMES}
    nl, lin = run["config"].compare
    args = (prog[nl], npz[f"correct_{nl}"], prog[lin], npz[f"correct_{lin}"],
            idx(easy), idx(hard))
    if summary["hastiness"] is None:               # a tiny run may make no common progress
        assert summary["hastiness_interval"] is None and summary["error"]
        with pytest.raises(ValueError, match=summary["error"][:20]):
            progress.bootstrap_hastiness(*args, decreasing=decreasing,
                                         seed=run["config"].seed)
        return
    value, interval = progress.bootstrap_hastiness(*args, decreasing=decreasing,
                                                   seed=run["config"].seed)
    assert summary["hastiness"] == pytest.approx(value, abs=1e-12)
    assert summary["hastiness_interval"] == pytest.approx(list(interval), abs=1e-12)
    lo, hi = summary["hastiness_interval"]
    assert lo <= hi and -1 <= summary["hastiness"] <= 1


# ---------------------------------------------------------------- digits, label noise

NOISE_KEYS = ("train/clean/accuracy", "train/noisy/accuracy", "train/all/loss",
              "train/all/accuracy", "heldout/all/accuracy", "test/all/accuracy")


def test_noise_run_files_and_records(noise_run):
    _check_files(noise_run)
    _check_records(noise_run, NOISE_KEYS)


def test_noise_run_per_example_and_groups(noise_run):
    names, bounds = _check_per_example(noise_run)
    assert names == ["train/clean", "train/noisy", "train/all", "heldout/all", "test/all"]
    size = dict(zip(names, np.diff(bounds)))
    config = noise_run["config"]
    assert size["train/clean"] == size["train/noisy"] == config.group_size
    assert size["test/all"] == config.test_size


def test_noise_run_summary_matches_recomputation(noise_run):
    _check_summary(noise_run, "train/clean", "train/noisy", "train/clean/accuracy", False)


def test_noise_run_is_deterministic(noise_run, tmp_path):
    again = _run(_noise_config(), tmp_path / "again")
    for name in ("metrics.jsonl", "summary.json", "config.json"):
        with open(os.path.join(noise_run["dir"], name), "rb") as a, \
                open(os.path.join(again["dir"], name), "rb") as b:
            assert a.read() == b.read(), name
    for key, value in noise_run["npz"].items():
        np.testing.assert_array_equal(again["npz"][key], value)


# ---------------------------------------------------------------- digits, C-scores

CSCORE_KEYS = (tuple(f"train/decile_{k}/accuracy" for k in range(10))
               + tuple(f"heldout/decile_{k}/{m}" for k in range(10) for m in ("loss", "accuracy"))
               + ("train/all/loss", "heldout/all/accuracy", "test/all/accuracy"))


def test_cscores_run_files_records_and_summary(cscores_run):
    _check_files(cscores_run)
    _check_records(cscores_run, CSCORE_KEYS)
    names, bounds = _check_per_example(cscores_run)
    size = dict(zip(names, np.diff(bounds)))
    assert all(size[f"train/decile_{k}"] == cscores_run["config"].group_size
               for k in range(10))
    _check_summary(cscores_run, "train/decile_9", "train/decile_0", "train_loss", True)
    assert os.path.exists(cscores_run["config"].cscore_cache)      # not ~/.cache


# ---------------------------------------------------------------- validation

def _bad(**overrides):
    config = _noise_config()
    for key, value in overrides.items():
        config[key] = value
    return config


@pytest.mark.parametrize("config, match", [
    (_bad(num_epoch=3), r"unknown config key\(s\) \['num_epoch'\]"),
    (_bad(regimes=("alpha=1", "alpha=0"), compare=("alpha=1", "alpha=0")),
     "alpha must be a finite number > 0"),
    (_bad(num_epochs=(3,)), "needs one entry per regime"),
    (_bad(compare=("alpha=1", "linearized")), "must name two of the regimes"),
    (_bad(dataset="mnist"), "unknown dataset 'mnist'"),
    (_bad(label_noise=1.5), r"label_noise must be in \(0, 1\)"),
    (_bad(difficulty="loss"), "unknown difficulty 'loss'"),
    (_bad(probe_size=100000), r"probe_size 100000 must be in \[1, \d+\]"),
    (_bad(regimes=("alpha=1", "alpha=-2"), compare=("alpha=1", "alpha=-2")),
     "alpha must be a finite number > 0"),
    (_bad(label_noise=1e-5), "group 'noisy' is empty"),
    (_bad(ladder_ratio=1.2), r"ladder_ratio must be in \(0, 1\)"),
    (_bad(momentum=1.0), r"momentum must be in \[0, 1\)"),
    (_bad(learning_rate=0.0), "learning_rate must be > 0"),
    (_bad(probe_every=0), "probe_every must be > 0"),
    (_bad(num_epochs=(3, 0)), "must all be > 0"),
    (_bad(num_epochs=(3, 0.01)), r"give \[30, 0\] steps"),
    (_bad(batch_size=5000), "batch_size 5000 exceeds the 1079 training examples"),
    (_bad(checkpoint_every_steps=-1), "checkpoint_every_steps must be >= 0"),
    (_bad(regimes=("alpha=1", "alpha=1.0"), num_epochs=(1, 1)), "name a regime twice"),
], ids=["unknown-key", "alpha0", "epochs", "compare", "dataset", "noise", "difficulty",
        "probe-size", "alpha-negative", "empty-group", "ladder", "momentum", "lr",
        "probe-every", "epochs-zero", "no-steps", "batch-size", "checkpoint-every",
        "duplicate-regime"])
def test_invalid_config_raises_before_writing(config, match, tmp_path):
    workdir = tmp_path / "work"
    with pytest.raises(ValueError, match=match):
        difficulty.run(config, str(workdir))
    assert not workdir.exists()


def test_workdir_that_is_a_file_is_rejected(tmp_path):
    path = tmp_path / "file"
    path.write_text("x")
    with pytest.raises(ValueError, match="not a directory"):
        difficulty.run(_noise_config(), str(path))


def test_cifar10_not_prepared_is_clear_and_fast(tmp_path):
    tfds_sources = pytest.importorskip("lazy_hasty.data.tfds_sources")
    pytest.importorskip("tensorflow_datasets")
    data_dir, workdir = tmp_path / "data", tmp_path / "work"
    data_dir.mkdir()
    config = _bad(dataset="cifar10", data_dir=str(data_dir))
    start = time.monotonic()
    with pytest.raises(tfds_sources.DatasetNotPreparedError, match="not prepared in") as info:
        difficulty.run(config, str(workdir))
    assert time.monotonic() - start < 15
    assert "tfds build cifar10" in str(info.value) and str(data_dir) in str(info.value)
    assert not workdir.exists() and not any(data_dir.iterdir())


# ---------------------------------------------------------------- CIFAR-10 (tiny, real files)

CIFAR_TRAIN_SIZE = 20       # of the fixture's 30 training images; 10 are held out


@pytest.fixture(scope="module")
def cifar_dir(tmp_path_factory):
    pytest.importorskip("tensorflow_datasets")
    from test_tfds_sources import FakeCifar10   # the real-format stand-in (30 + 10 images)
    data_dir = tmp_path_factory.mktemp("tfds")
    FakeCifar10(data_dir=str(data_dir), file_format="array_record").download_and_prepare()
    return str(data_dir)


def _cifar_config(data_dir):
    config = difficulty_base.get_config()
    config.dataset, config.data_dir, config.difficulty = "cifar10", data_dir, "noise"
    config.model = "resnet18"
    config.model_kwargs = ml_collections.ConfigDict({"width": 2, "stem": "cifar",
                                                     "norm": "none"})
    config.num_epochs = (1, 1)
    config.batch_size, config.learning_rate, config.momentum = 4, 0.05, 0.0
    config.probe_size, config.probe_every = 4, 2
    config.group_size, config.test_size = 3, 5
    return config


def test_cifar10_groups_from_tiny_dataset(cifar_dir):
    from lazy_hasty.data import tfds_sources
    from test_tfds_sources import _expected, _fake_images, _fake_labels
    ds = tfds_sources.load_cifar10(cifar_dir, train_size=CIFAR_TRAIN_SIZE)
    config = _cifar_config(cifar_dir)
    prepared = difficulty.build_groups(config, ds)
    train, groups = prepared.train, prepared.groups
    easy, hard, key, decreasing = (prepared.easy, prepared.hard, prepared.progress_key,
                                   prepared.decreasing)
    assert (easy, hard, key, decreasing) == ("train/clean", "train/noisy",
                                             "train/clean/accuracy", False)
    assert set(groups) == {"train/clean", "train/noisy", "train/all", "heldout/all",
                           "test/all"}
    images, labels = _fake_images(30, 0), _fake_labels(30)
    noisy = train.y != labels[:CIFAR_TRAIN_SIZE]
    assert noisy.sum() == round(config.label_noise * CIFAR_TRAIN_SIZE)
    for name in ("train/clean", "train/noisy"):
        gx, gy = groups[name]
        members = noisy if name == "train/noisy" else ~noisy
        assert len(gy) == min(config.group_size, int(members.sum()))
        # Each group example is a real training image with its (possibly noisy) label.
        for x, y in zip(gx, gy):
            i = int(np.argmin(np.abs(_expected(images[:CIFAR_TRAIN_SIZE]) - x).sum((1, 2, 3))))
            np.testing.assert_allclose(x, _expected(images[i]), atol=1e-5)
            assert y == train.y[i] and noisy[i] == (name == "train/noisy")
    assert groups["heldout/all"][0].shape == (config.group_size, 32, 32, 3)   # of 10
    assert groups["test/all"][0].shape == (config.test_size, 32, 32, 3)


def test_cifar10_driver_runs_on_tiny_dataset(cifar_dir, tmp_path):
    config = _cifar_config(cifar_dir)
    config.train_size = CIFAR_TRAIN_SIZE
    run = _run(config, tmp_path / "work")
    _check_files(run)
    _check_records(run, NOISE_KEYS)
    _check_per_example(run)
    _check_summary(run, "train/clean", "train/noisy", "train/clean/accuracy", False)
    steps_per_regime = CIFAR_TRAIN_SIZE // config.batch_size
    for regime in REGIMES:
        steps = [r["step"] for r in run["records"] if r["regime"] == regime]
        assert steps[-1] == steps_per_regime - 1


def test_cifar10_driver_runs_under_tfds_mock_data(tmp_path):
    """The CIFAR-10 path, a few SGD steps per regime, on TFDS's own mock data."""
    tfds = pytest.importorskip("tensorflow_datasets")
    from test_tfds_sources import N_TRAIN, _mock_cifar10_source
    config = _cifar_config("/nonexistent/tfds_dir")     # mock_data replaces the data dir
    config.train_size = N_TRAIN - 10
    with tfds.testing.mock_data(policy=tfds.testing.MockPolicy.USE_CODE,
                                as_data_source_fn=_mock_cifar10_source):
        run = _run(config, tmp_path / "work")
    _check_records(run, NOISE_KEYS)
    steps = [r["step"] for r in run["records"] if r["regime"] == "alpha=100"]
    assert steps[-1] == config.train_size // config.batch_size - 1


# ---------------------------------------------------------------- published C-scores

def _published():
    if not os.path.exists(PUBLISHED):
        pytest.skip(f"published C-scores not found at {PUBLISHED}")
    with np.load(PUBLISHED, allow_pickle=False) as f:
        return np.asarray(f["scores"]), np.asarray(f["labels"])


def _tiny_dataset(labels_train, labels_heldout):
    rng = np.random.default_rng(0)
    make = lambda y: splits.Split(rng.normal(size=(len(y), 4, 4, 3)).astype(np.float32),
                                  np.asarray(y, np.int32))
    return splits.Dataset("cifar10", 10, {"train": make(labels_train),
                                          "heldout": make(labels_heldout),
                                          "test": make(np.arange(10) % 10)})


def test_published_cscores_reject_mismatched_labels():
    _, labels = _published()
    config = difficulty_base.get_config()
    config.cscores = PUBLISHED
    wrong = (labels[:40] + 1) % 10
    with pytest.raises(ValueError, match="does not match the dataset order/labels"):
        difficulty._cscores(config, _tiny_dataset(wrong[:30], wrong[30:]))


def test_published_cscores_give_decile_groups_when_labels_match():
    scores, labels = _published()
    config = difficulty_base.get_config()
    config.difficulty, config.cscores, config.group_size = "cscores", PUBLISHED, 0
    ds = _tiny_dataset(labels[:30], labels[30:40])
    s_train, s_heldout = difficulty._cscores(config, ds)
    np.testing.assert_array_equal(s_train, scores[:30])
    np.testing.assert_array_equal(s_heldout, scores[30:40])
    groups = difficulty.build_groups(config, ds).groups
    # 30 training examples in 10 deciles of 3, by ascending published score.
    order = np.argsort(scores[:30], kind="stable")
    for k in range(10):
        gx, _ = groups[f"train/decile_{k}"]
        want = ds.splits["train"].x[np.sort(order[3 * k:3 * k + 3])]
        np.testing.assert_array_equal(gx, want)


def test_cifar10_train_size_too_large_raises_before_writing(cifar_dir, tmp_path):
    config = _cifar_config(cifar_dir)
    config.train_size = 31                        # the stand-in has 30 training images
    with pytest.raises(ValueError, match="train_size"):
        difficulty.run(config, str(tmp_path / "work"))
    assert not (tmp_path / "work").exists()
