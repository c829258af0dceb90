"""The example-difficulty driver end to end: tiny digits runs (label noise, C-scores), a tiny
real array_record CIFAR-10, output files against independent recomputation, determinism
and config validation before anything is written."""

import json
import os
import time

import ml_collections
import numpy as np
import pytest

from tests import checks
from tests import fakes
from configs import difficulty_base, digits_cscores_tiny, digits_noise_tiny
from experiments import difficulty
from lazy_hasty import difficulty as spec_lib
from lazy_hasty.data import builtin, splits

from tests import ROOT
PUBLISHED = os.path.join(ROOT, "..", "shared", "data", "cscores",
                         "cifar10-cscores-orig-order.npz")


def _noise_config():
    config = digits_noise_tiny.get_config()
    config.early_score_epoch = 1.0                # EL2N and GraNd within its 3 epochs
    return config


@pytest.fixture(scope="module")
def noise_run(tmp_path_factory):
    config = _noise_config()
    with pytest.MonkeyPatch.context() as patch:   # monitoring off: tensorboardX never imported
        checks.hide_package(patch, "tensorboardX")
        return checks.run(config, tmp_path_factory.mktemp("noise") / "work")


@pytest.fixture(scope="module")
def monitored_run(tmp_path_factory):
    config = _noise_config()
    config.tensorboard = True
    return checks.run(config, tmp_path_factory.mktemp("monitored") / "work")


@pytest.fixture(scope="module")
def cscores_run(tmp_path_factory):
    config = digits_cscores_tiny.get_config()
    config.cscore_cache = str(tmp_path_factory.mktemp("cache") / "digits_cscores.npz")
    return checks.run(config, tmp_path_factory.mktemp("cscores") / "work")


# ---------------------------------------------------------------- digits, label noise

NOISE_KEYS = ("train/clean/accuracy", "train/noisy/accuracy", "train/all/loss",
              "train/all/accuracy", "heldout/all/accuracy", "test/all/accuracy")


def test_noise_run_files_and_records(noise_run):
    checks.check_files(noise_run)
    checks.check_records(noise_run, NOISE_KEYS)
    assert not os.path.exists(os.path.join(noise_run["dir"], "tensorboard"))


def test_noise_run_scores(noise_run):
    scores = checks.check_scores(noise_run)
    # The alpha = 100 run's loss gradient in its parameters is about alpha times larger.
    ratio = np.median(scores["grand_alpha=100"] / scores["grand_alpha=1"])
    assert 30 < ratio < 300


def test_noise_run_per_example_and_groups(noise_run):
    names, bounds = checks.check_per_example(noise_run)
    assert names == ["train/clean", "train/noisy", "train/all", "heldout/all", "test/all"]
    size = dict(zip(names, np.diff(bounds)))
    config = noise_run["config"]
    assert size["train/clean"] == size["train/noisy"] == config.group_size
    assert size["test/all"] == config.test_size


def test_noise_run_summary_matches_recomputation(noise_run):
    checks.check_summary(noise_run, "train/clean", "train/noisy", "train/clean/accuracy",
                         False)
    checks.check_learning_times(noise_run)


def test_noise_run_is_deterministic(noise_run, monitored_run):
    """Run again, with TensorBoard monitoring on: the same files, byte for byte."""
    again = monitored_run
    for name in ("metrics.jsonl", "summary.json"):
        with open(os.path.join(noise_run["dir"], name), "rb") as a, \
                open(os.path.join(again["dir"], name), "rb") as b:
            assert a.read() == b.read(), name
    configs = [json.load(open(os.path.join(r["dir"], "config.json"))) for r in (noise_run, again)]
    assert configs[0] == {**configs[1], "tensorboard": False}
    for key, value in noise_run["npz"].items():
        np.testing.assert_array_equal(again["npz"][key], value)


def test_noise_run_tensorboard_events_match_records(monitored_run):
    checks.check_tensorboard(monitored_run)


# ---------------------------------------------------------------- digits, C-scores

CSCORE_KEYS = (tuple(f"train/decile_{k}/accuracy" for k in range(10))
               + tuple(f"heldout/decile_{k}/{m}" for k in range(10) for m in ("loss", "accuracy"))
               + ("train/all/loss", "heldout/all/accuracy", "test/all/accuracy"))


def test_cscores_run_files_records_and_summary(cscores_run):
    checks.check_files(cscores_run)
    checks.check_records(cscores_run, CSCORE_KEYS)
    names, bounds = checks.check_per_example(cscores_run)
    size = dict(zip(names, np.diff(bounds)))
    assert all(size[f"train/decile_{k}"] == cscores_run["config"].group_size
               for k in range(10))
    checks.check_summary(cscores_run, "train/decile_9", "train/decile_0", "train_loss", True)
    checks.check_learning_times(cscores_run)
    assert os.path.exists(cscores_run["config"].cscore_cache)      # not ~/.cache
    # The spec's easy group (highest C-scores) is learnt better than its hard group.
    mean = lambda g: np.mean([r[f"{g}/accuracy"] for r in cscores_run["records"]])
    assert mean("train/decile_9") > mean("train/decile_0") + 0.2


# ---------------------------------------------------------------- difficulty ladders

def test_difficulty_ladder_of_builtin_specs():
    deciles = tuple(f"train/decile_{k}" for k in range(10))
    assert spec_lib.cscore_deciles().difficulty_ladder() == deciles[::-1]
    assert spec_lib.label_noise().difficulty_ladder() == ("train/clean", "train/noisy")
    assert spec_lib.spurious("same", "opposite").difficulty_ladder() == (
        "balanced_test/same", "balanced_test/opposite")


def test_difficulty_ladder_of_custom_specs():
    panels = (spec_lib.Panel("no hard", ("train/b", "train/x")),
              spec_lib.Panel("both", ("train/a", "train/d", "train/c", "train/b", "train/e")))
    spec = lambda easy, hard, panels=panels: spec_lib.DifficultySpec(
        "x", easy=easy, hard=hard, panels=panels)
    assert spec("train/b", "train/d").difficulty_ladder() == ("train/b", "train/c", "train/d")
    assert spec("train/a", "train/c").difficulty_ladder() == ("train/a", "train/d", "train/c")
    assert spec("train/b", "train/y").difficulty_ladder() == ("train/b", "train/y")
    assert spec("train/b", "train/e", ()).difficulty_ladder() == ("train/b", "train/e")


# ---------------------------------------------------------------- validation

def _section4_args(config):
    keys = ("difficulty", "seed", "label_noise", "group_size", "test_size", "cscores",
            "cscore_cache", "cscore_models_per_ratio", "cscore_steps")
    return {k: config[k] for k in keys}


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
    (_bad(parameterization="mu"), "unknown parameterization 'mu'; choose one of standard, "
                                  "ntk, mup"),
    (_bad(gamma=0.0), "gamma must be a finite number > 0, got 0.0"),
    (_bad(gamma=-2.0), "gamma must be a finite number > 0, got -2.0"),
    (_bad(lr_rule="fast"), "unknown learning-rate rule 'fast'"),
    (_bad(lr_rule="richness", lr_depth=-1), "lr_depth must be >= 0"),
    (_bad(model_kwargs={"features": (8,), "gamma": 2.0}),
     r"set config.gamma, not model_kwargs.gamma"),
    (_bad(parameterization="mup", pretrained=__file__),
     "'mup' does not support them"),
    (_bad(difficulty="score:loss"), r"unknown score 'loss'; choose one of \('score:forgetting'"),
    (_bad(difficulty="score:aum", score_quantile=0.6), r"score_quantile must be in \(0, 0.5\]"),
    (_bad(difficulty="score:aum", score_references=0), "score_references must be >= 1"),
    (_bad(difficulty="score:aum", pretrained=__file__), "drop --config.pretrained"),
    (_bad(difficulty="score:aum", score_base="loss"), "unknown difficulty 'loss'"),
], ids=["unknown-key", "alpha0", "epochs", "compare", "dataset", "noise", "difficulty",
        "probe-size", "alpha-negative", "empty-group", "ladder", "momentum", "lr",
        "probe-every", "epochs-zero", "no-steps", "batch-size", "checkpoint-every",
        "duplicate-regime", "parameterization", "gamma0", "gamma-negative", "lr-rule",
        "lr-depth", "gamma-in-model-kwargs", "pretrained-mup", "score-unknown",
        "score-quantile", "score-references", "score-pretrained", "score-base"])
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
    return fakes.prepare_fake_cifar10(tmp_path_factory.mktemp("tfds"))   # 30 + 10 images


def _cifar_config(data_dir):
    config = difficulty_base.get_config()
    config.dataset, config.data_dir, config.difficulty = "cifar10", data_dir, "noise"
    config.model = "resnet18"
    # A ResNet10: the ResNet18's layer kinds at half the compile time.
    config.model_kwargs = ml_collections.ConfigDict({"width": 2, "stem": "cifar",
                                                     "norm": "none", "blocks": (1, 1, 1, 1)})
    config.num_epochs = (2, 2)
    config.batch_size, config.learning_rate, config.momentum = 4, 0.05, 0.0
    config.probe_size, config.probe_every = 4, 2
    config.group_size, config.test_size = 8, 5
    return config


def test_cifar10_groups_from_tiny_dataset(cifar_dir):
    from lazy_hasty.data import tfds_sources
    ds = tfds_sources.load_cifar10(cifar_dir, train_size=CIFAR_TRAIN_SIZE)
    config = _cifar_config(cifar_dir)
    prepared = builtin.section4(ds, **_section4_args(config))
    train, groups = prepared.train, prepared.flat_groups()
    assert prepared.spec == spec_lib.label_noise()
    assert set(groups) == {"train/clean", "train/noisy", "train/all", "heldout/all",
                           "test/all"}
    images, labels = fakes.fake_images(30, 0), fakes.fake_labels(30)
    noisy = train.y != labels[:CIFAR_TRAIN_SIZE]
    assert noisy.sum() == round(config.label_noise * CIFAR_TRAIN_SIZE)
    for name in ("train/clean", "train/noisy"):
        gx, gy = groups[name]
        members = noisy if name == "train/noisy" else ~noisy
        assert len(gy) == min(config.group_size, int(members.sum()))
        # Each group example is a real training image with its (possibly noisy) label.
        for x, y in zip(gx, gy):
            expected = fakes.expected_cifar(images[:CIFAR_TRAIN_SIZE])
            i = int(np.argmin(np.abs(expected - x).sum((1, 2, 3))))
            np.testing.assert_allclose(x, expected[i], atol=1e-5)
            assert y == train.y[i] and noisy[i] == (name == "train/noisy")
    assert groups["heldout/all"][0].shape == (config.group_size, 32, 32, 3)   # of 10
    assert groups["test/all"][0].shape == (config.test_size, 32, 32, 3)


@pytest.mark.usefixtures("quick_compiles")     # the ResNet18's compiles are its cost
def test_cifar10_driver_runs_on_tiny_dataset(cifar_dir, tmp_path):
    config = _cifar_config(cifar_dir)
    # The small CNN learns the 20 images' class colours within 25 steps, so the two
    # regimes share a range of clean accuracy (the ResNet runs on the mock data below).
    config.model, config.model_kwargs = "cnn", ml_collections.ConfigDict({"width": 8})
    config.num_epochs, config.momentum = (5, 5), 0.9
    config.train_size = CIFAR_TRAIN_SIZE
    run = checks.run(config, tmp_path / "work")
    checks.check_files(run)
    checks.check_records(run, NOISE_KEYS)
    checks.check_per_example(run)
    checks.check_summary(run, "train/clean", "train/noisy", "train/clean/accuracy", False)
    steps_per_regime = CIFAR_TRAIN_SIZE // config.batch_size * config.num_epochs[0]
    for regime in checks.regimes(run):
        steps = [r["step"] for r in run["records"] if r["regime"] == regime]
        assert steps[-1] == steps_per_regime - 1


def test_cifar10_driver_runs_under_tfds_mock_data(tmp_path):
    """The CIFAR-10 path, a few SGD steps per regime, on TFDS's own mock data."""
    tfds = pytest.importorskip("tensorflow_datasets")
    config = _cifar_config("/nonexistent/tfds_dir")     # mock_data replaces the data dir
    config.train_size = fakes.N_TRAIN - 10
    # The loader is under test here; the ResNet18 path is the tiny-dataset test's.
    config.model, config.model_kwargs = "mlp", ml_collections.ConfigDict({"features": (16,)})
    with tfds.testing.mock_data(policy=tfds.testing.MockPolicy.USE_CODE,
                                as_data_source_fn=fakes.mock_cifar10_source):
        run = checks.run(config, tmp_path / "work")
    checks.check_records(run, NOISE_KEYS)
    steps = [r["step"] for r in run["records"] if r["regime"] == "alpha=100"]
    assert steps[-1] == config.train_size // config.batch_size * config.num_epochs[1] - 1


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
    config.difficulty, config.cscores = "cscores", PUBLISHED
    wrong = (labels[:40] + 1) % 10                   # every one of the 30 + 10 labels off
    with pytest.raises(ValueError, match=r"does not match the dataset order/labels: 40 of "
                                         r"the first 40 labels differ\."):
        builtin.section4(_tiny_dataset(wrong[:30], wrong[30:]), **_section4_args(config))


def test_published_cscores_give_decile_groups_when_labels_match():
    scores, labels = _published()
    config = difficulty_base.get_config()
    config.difficulty, config.cscores, config.group_size = "cscores", PUBLISHED, 0
    ds = _tiny_dataset(labels[:30], labels[30:40])
    s_train, s_heldout = builtin.estimated_or_published_cscores(ds, PUBLISHED, "", 0, 32, 200)
    np.testing.assert_array_equal(s_train, scores[:30])
    np.testing.assert_array_equal(s_heldout, scores[30:40])
    groups = builtin.section4(ds, **_section4_args(config)).flat_groups()
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
