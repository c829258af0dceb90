"""Section 5 (spurious correlations) end to end: the digits twin's data, and the difficulty
driver on the digits twin, on a miniature Waterbirds release with generated torchvision
ResNet18 weights, and on TFDS's mock CelebA."""

import json
import os
import re

import numpy as np
import pytest

from tests import checks
from tests import fakes
from configs import celeba as celeba_config
from configs import digits_spurious_tiny
from configs import waterbirds as waterbirds_config
from experiments import difficulty
from lazy_hasty import models
from lazy_hasty.engine import loop
from lazy_hasty.analysis import progress
from lazy_hasty.data import digits_spurious

SPURIOUS_FILES = ("config.json", "metrics.jsonl", "per_example.npz", "summary.json", "fig3.png")


def _check_spurious_files(run):
    for name in SPURIOUS_FILES:
        assert os.path.getsize(os.path.join(run["dir"], name)) > 0, name
    assert not os.path.exists(os.path.join(run["dir"], "fig2.png"))
    checks.check_difficulty_figure(run, "fig3.png")
    with open(os.path.join(run["dir"], "config.json")) as f:
        assert json.load(f) == json.loads(json.dumps(run["config"].to_dict()))


def _check_all_regimes(run, group_keys):
    """The shared record and per-example checks."""
    checks.check_records(run, group_keys)
    return checks.check_per_example(run)


# ---------------------------------------------------------------- digits twin: data

def _background_reader(train_x):
    """Reads the background (0 red, 1 green) back from standardised images.

    The top-left pixel of every sklearn digit carries no ink, so its red channel is
    ``strength`` (red background) or 0 (green) before the per-channel standardisation,
    which keeps the order (std > 0): two values, the larger one red. The green
    channel is the other way round.
    """
    red_values, green_values = np.unique(train_x[:, 0, 0, 0]), np.unique(train_x[:, 0, 0, 1])
    assert red_values.size == 2 and green_values.size == 2
    red_cut, green_cut = red_values.mean(), green_values.mean()

    def read(x):
        green = (x[:, 0, 0, 0] < red_cut).astype(int)
        np.testing.assert_array_equal(green, x[:, 0, 0, 1] > green_cut)
        return green

    return read


def test_paint_colours_background_not_ink():
    ink = np.zeros((2, 8, 8))
    ink[:, 4, 4], ink[:, 5, 5] = 1.0, 0.5
    out = digits_spurious.paint(ink, np.array([0, 1]), strength=0.5)
    assert out.shape == (2, 8, 8, 3)
    cue = ink + (1.0 - ink) * 0.5                        # coloured channel
    np.testing.assert_allclose(out[0, ..., 0], cue[0])   # red background
    np.testing.assert_allclose(out[0, ..., 1], ink[0])
    np.testing.assert_allclose(out[1, ..., 1], cue[1])   # green background
    np.testing.assert_allclose(out[1, ..., 0], ink[1])
    np.testing.assert_allclose(out[..., 2], ink)         # blue never coloured
    assert out[0, 0, 0, 0] == 0.5 and out[0, 4, 4, 0] == 1.0 and out[0, 5, 5, 0] == 0.75

    corner = digits_spurious.paint(ink, np.array([0, 1]), strength=0.25, patch=3)
    expected = np.repeat(ink[..., None], 3, axis=-1)
    expected[0, :3, :3, 0] = 0.25
    expected[1, :3, :3, 1] = 0.25
    np.testing.assert_allclose(corner, expected)


@pytest.mark.parametrize("fraction", [0.9, 0.75])
def test_digits_spurious_majority_fraction_is_exact(fraction):
    data = digits_spurious.load_digits_spurious(0, majority_fraction=fraction,
                                                balanced_per_group=12)
    assert (data.name, data.num_classes, data.easy, data.hard) == (
        "digits_spurious", 2, "majority", "minority")
    read = _background_reader(data.splits["train"].x)
    for name, split in data.splits.items():
        assert split.x.shape[1:] == (8, 8, 3) and split.x.dtype == np.float32
        assert split.y.dtype == np.int32 and set(np.unique(split.y)) == {0, 1}
        background = read(split.x)
        agree = background == split.y
        groups = data.groups[name]
        np.testing.assert_array_equal(groups["majority"], np.flatnonzero(agree))
        np.testing.assert_array_equal(groups["minority"], np.flatnonzero(~agree))
        n = len(split.y)
        if name == "train":
            assert groups["majority"].size == round(fraction * n)
        elif name == "test":                          # test_majority_fraction, default 0.9
            assert groups["majority"].size == round(0.9 * n)
        elif name == "balanced_train":
            assert n == 4 * 12
            for label in (0, 1):
                for colour in (0, 1):
                    assert np.sum((split.y == label) & (background == colour)) == 12
        else:                                         # every test digit on both colours
            assert n == 2 * len(data.splits["test"].y)
            np.testing.assert_array_equal(background, np.repeat([0, 1], n // 2))


def test_digits_spurious_balanced_test_is_counterfactual():
    data = digits_spurious.load_digits_spurious(1, balanced_per_group=5)
    test, balanced = data.splits["test"], data.splits["balanced_test"]
    n = len(test.y)
    np.testing.assert_array_equal(balanced.y, np.tile(test.y, 2))
    # the blue channel is never coloured: the two copies carry the same digit,
    # the same digit as the test split, and only the background differs
    np.testing.assert_array_equal(balanced.x[:n, ..., 2], test.x[..., 2])
    np.testing.assert_array_equal(balanced.x[n:, ..., 2], test.x[..., 2])
    assert not np.array_equal(balanced.x[:n, ..., :2], balanced.x[n:, ..., :2])
    groups = data.groups["balanced_test"]
    assert len(groups["majority"]) == len(groups["minority"]) == n
    np.testing.assert_array_equal(np.sort(np.concatenate(list(groups.values())) % n),
                                  np.repeat(np.arange(n), 2))


def test_digits_spurious_distractors_follow_their_example():
    plain = digits_spurious.load_digits_spurious(0, balanced_per_group=5)
    noisy = digits_spurious.load_digits_spurious(0, balanced_per_group=5, distractors=16)
    for name, split in noisy.splits.items():
        pixels = plain.splits[name].x.reshape(len(split.y), -1)
        assert split.x.shape == (len(split.y), pixels.shape[1] + 16)
        np.testing.assert_array_equal(split.x[:, :pixels.shape[1]], pixels)
    noise = {name: split.x[:, -16:] for name, split in noisy.splits.items()}
    train_rows = {row.tobytes() for row in noise["train"]}
    assert all(row.tobytes() in train_rows for row in noise["balanced_train"])
    n = len(noisy.splits["test"].y)
    np.testing.assert_array_equal(noise["balanced_test"][:n], noise["test"])
    np.testing.assert_array_equal(noise["balanced_test"][n:], noise["test"])
    assert abs(noise["train"].std() - 1) < 0.05 and abs(noise["train"].mean()) < 0.05


def test_digits_spurious_balanced_sets_from_groups_and_labels():
    per_group = 9
    data = digits_spurious.load_digits_spurious(2, balanced_per_group=per_group)
    split, groups = data.splits["balanced_train"], data.groups["balanced_train"]
    background = split.y.copy()                       # majority: background == label
    background[groups["minority"]] = 1 - split.y[groups["minority"]]
    combos = list(zip(split.y.tolist(), background.tolist()))
    assert {c: combos.count(c) for c in set(combos)} == {
        (0, 0): per_group, (0, 1): per_group, (1, 0): per_group, (1, 1): per_group}
    # every balanced training example is a training example, with its label
    rows = {row.tobytes(): y for row, y in zip(data.splits["train"].x, data.splits["train"].y)}
    assert all(rows[row.tobytes()] == y for row, y in zip(split.x, split.y))
    train_rows = {row.tobytes() for row in data.splits["train"].x}
    assert not any(row.tobytes() in train_rows for row in data.splits["test"].x)


def test_digits_spurious_deterministic():
    first = digits_spurious.load_digits_spurious(3, balanced_per_group=5)
    again = digits_spurious.load_digits_spurious(3, balanced_per_group=5)
    other = digits_spurious.load_digits_spurious(4, balanced_per_group=5)
    for name, split in first.splits.items():
        np.testing.assert_array_equal(split.x, again.splits[name].x)
        np.testing.assert_array_equal(split.y, again.splits[name].y)
        for group, idx in first.groups[name].items():
            np.testing.assert_array_equal(idx, again.groups[name][group])
    assert not np.array_equal(first.splits["train"].x, other.splits["train"].x)


@pytest.mark.parametrize("kwargs, name", [
    ({"majority_fraction": 0.4}, "majority_fraction"),
    ({"majority_fraction": 1.01}, "majority_fraction"),
    ({"test_majority_fraction": -0.1}, "test_majority_fraction"),
])
def test_digits_spurious_invalid_fraction(kwargs, name):
    with pytest.raises(ValueError, match=rf"^{name} must be in \[0.5, 1\]"):
        digits_spurious.load_digits_spurious(0, **kwargs)


# ---------------------------------------------------------------- digits twin: driver

SPURIOUS_KEYS = ("balanced_train/majority/accuracy", "balanced_train/minority/accuracy",
                 "balanced_test/majority/accuracy", "balanced_test/minority/accuracy",
                 "train/majority/accuracy", "train/minority/accuracy",
                 "test/all/accuracy", "train/all/loss")


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    return checks.run(digits_spurious_tiny.get_config(),
                      tmp_path_factory.mktemp("spurious") / "work")


def test_digits_spurious_run_files_records_and_groups(digits_run):
    config = digits_run["config"]
    assert tuple(config.regimes) == ("alpha=0.5", "alpha=1", "alpha=100")
    _check_spurious_files(digits_run)
    assert {r["regime"] for r in digits_run["records"]} == set(config.regimes)
    names, bounds = _check_all_regimes(digits_run, SPURIOUS_KEYS)
    assert names == ["balanced_train/majority", "balanced_train/minority",
                     "balanced_test/majority", "balanced_test/minority",
                     "train/majority", "train/minority", "train/all", "test/all"]
    size = dict(zip(names, np.diff(bounds)))
    per_set = 2 * config.balanced_per_group                  # two (label, colour) combos
    assert size["balanced_train/majority"] == size["balanced_train/minority"] == per_set
    # balanced test: every test digit (heldout + test, 2 x round(0.2 * 1797)) on both colours
    assert size["balanced_test/majority"] == size["balanced_test/minority"] == 718
    assert size["train/majority"] == round(config.majority_fraction * size["train/all"])
    assert size["train/majority"] + size["train/minority"] == size["train/all"]
    assert size["test/all"] == config.test_size
    # the same training run length for every regime
    steps_per_epoch = size["train/all"] // config.batch_size
    for regime, epochs in zip(config.regimes, config.num_epochs):
        steps = [r["step"] for r in digits_run["records"] if r["regime"] == regime]
        assert steps[-1] == epochs * steps_per_epoch - 1


def test_digits_spurious_run_summary(digits_run):
    checks.check_summary(digits_run, "balanced_test/majority", "balanced_test/minority",
                   "train_loss", True)
    summary, npz = digits_run["summary"], digits_run["npz"]
    assert set(summary["by_regime"]) == {"alpha=0.5"}
    other = summary["by_regime"]["alpha=0.5"]
    names = [str(n) for n in npz["group_names"]]
    bounds = npz["group_bounds"]
    idx = lambda g: np.arange(bounds[names.index(g)], bounds[names.index(g) + 1])  # noqa: E731
    prog = {r: np.array([rec["train_loss"] for rec in digits_run["records"]
                         if rec["regime"] == r]) for r in ("alpha=0.5", "alpha=100")}
    args = (prog["alpha=0.5"], npz["correct_alpha=0.5"], prog["alpha=100"],
            npz["correct_alpha=100"], idx("balanced_test/majority"),
            idx("balanced_test/minority"))
    value, interval = progress.bootstrap_hastiness(*args, decreasing=True,
                                                   seed=digits_run["config"].seed)
    assert other["hastiness"] == pytest.approx(value, abs=1e-12)
    assert other["hastiness_interval"] == pytest.approx(list(interval), abs=1e-12)
    value, interval = progress.bootstrap_hard_advantage(*args[:4], args[5], decreasing=True,
                                                        seed=digits_run["config"].seed)
    assert other["hard_advantage"] == pytest.approx(value, abs=1e-12)
    assert other["hard_advantage_interval"] == pytest.approx(list(interval), abs=1e-12)


def test_digits_spurious_twin_shows_the_first_phase(tmp_path):
    """The shipped twin, seed 0: at equal training loss alpha = 100 keeps a higher
    minority accuracy on the balanced test set than alpha = 1 and alpha = 0.5
    (seed 0: 0.045 and 0.047, intervals [0.036, 0.055] and [0.035, 0.058])."""
    from configs import digits_spurious as config_module
    config = config_module.get_config()
    config.probe_every = 10_000                  # linearity metrics do not change training
    config.figures = False                       # nor do figures
    summary = checks.run(config, tmp_path / "work")["summary"]
    for result in (summary, summary["by_regime"]["alpha=0.5"]):
        low, high = result["hard_advantage_interval"]
        assert 0.01 < low <= result["hard_advantage"] <= high < 0.1
        assert result["hastiness_interval"][0] > 0


# ---------------------------------------------------------------- Waterbirds (miniature)

WATERBIRDS_KEYS = ("balanced_test/same/accuracy", "balanced_test/opposite/accuracy",
                   "balanced_train/same/accuracy", "balanced_train/opposite/accuracy",
                   "test/all/accuracy", "train/all/loss")


@pytest.fixture(scope="module")
def waterbirds_files(tmp_path_factory):
    pytest.importorskip("PIL.Image")
    root = tmp_path_factory.mktemp("waterbirds_run")
    fakes.write_waterbirds_release(str(root / "release"))
    state = fakes.torchvision_resnet18_state(seed=7)
    np.savez(root / "resnet18.npz", **state)
    return {"data_dir": str(root / "release"), "pretrained": str(root / "resnet18.npz"),
            "state": state}


def _waterbirds_config(files):
    config = waterbirds_config.get_config()
    config.data_dir, config.pretrained = files["data_dir"], files["pretrained"]
    # The miniature release: 40 train (only 4 waterbirds on land), 24 test (6 of each).
    config.image_size = 16        # ResNet18 width 64 (the imported weights) is slow on CPU
    config.balanced_per_group = 5
    config.regimes = ("alpha=1", "alpha=100")
    config.compare = ("alpha=1", "alpha=100")
    # Two full-batch GD steps with a small rate: the training loss falls in both regimes,
    # so they share a progress range (the random "pretrained" weights are far from trained).
    config.num_epochs = (2, 2)
    config.batch_size, config.learning_rate = 40, 1e-4
    config.probe_size = 4                             # probed at the first record
    config.group_size = 0
    config.eval_batch_size = 32
    return config


def _flax_location(key):
    """torchvision key -> (collection, flax path) of the imported ResNet18."""
    *module, leaf = key.split(".")
    path = []
    while module:
        part = module.pop(0)
        if part.startswith("layer"):
            path.append(f"{part}_{module.pop(0)}")
        elif part == "downsample":
            path.append({"0": "downsample_conv", "1": "downsample_bn"}[module.pop(0)])
        else:
            path.append(part)
    if leaf in ("running_mean", "running_var"):
        return "batch_stats", (*path, leaf[len("running_"):])
    return "params", (*path, {"weight": "kernel" if "conv" in path[-1] else "scale",
                              "bias": "bias"}[leaf])


def test_waterbirds_driver_starts_from_imported_weights(waterbirds_files, tmp_path,
                                                        monkeypatch):
    started, bound = [], []
    train_regime, make_apply_fn = loop.train_regime, models.make_apply_fn

    def spy_train_regime(apply_fn, regime, params0, *args):
        started.append((regime.name, params0))
        return train_regime(apply_fn, regime, params0, *args)

    def spy_make_apply_fn(module, state):
        bound.append(state)
        return make_apply_fn(module, state)

    monkeypatch.setattr(loop, "train_regime", spy_train_regime)
    monkeypatch.setattr(models, "make_apply_fn", spy_make_apply_fn)
    config = _waterbirds_config(waterbirds_files)
    run = checks.run(config, tmp_path / "work")

    _check_spurious_files(run)
    names, bounds = _check_all_regimes(run, WATERBIRDS_KEYS)
    size = dict(zip(names, np.diff(bounds)))
    # balanced_train: min(5, 4 waterbirds on land) per combination; balanced_test: 5.
    assert size["balanced_train/same"] == size["balanced_train/opposite"] == 8
    assert size["balanced_test/same"] == size["balanced_test/opposite"] == 10
    assert size["test/all"] == 24 and size["train/all"] == 40
    assert run["summary"]["easy_group"] == "balanced_test/same"
    assert run["summary"]["hard_group"] == "balanced_test/opposite"

    # Every regime starts from the imported backbone (and one fresh 2-way head).
    assert [name for name, _ in started] == list(config.regimes)
    params0 = started[0][1]
    assert all(p is params0 for _, p in started)
    assert params0["head"]["kernel"].shape == (512, 2)
    state = waterbirds_files["state"]
    variables = {"params": params0, "batch_stats": bound[0]["batch_stats"]}
    checked = 0
    for key, value in state.items():
        if key.startswith("fc.") or key.endswith("num_batches_tracked"):
            continue
        collection, path = _flax_location(key)
        leaf = variables[collection]
        for part in path:
            leaf = leaf[part]
        want = value.transpose(2, 3, 1, 0) if value.ndim == 4 else value
        np.testing.assert_array_equal(np.asarray(leaf), want, err_msg=key)
        checked += 1
    assert checked == 122 - 20 - 2                 # all but fc.* and num_batches_tracked
    # At step 0 the rescaled output alpha * (f - f0) is 0 and argmax picks class 0.
    for rec in (r for r in run["records"] if r["step"] == 0):
        assert rec["balanced_test/same/accuracy"] == pytest.approx(0.5)


@pytest.mark.parametrize("change, error, match", [
    ({"pretrained": ""}, ValueError, "pretrained"),
    ({"pretrained": "MISSING"}, ValueError, "MISSING"),
    ({"data_dir": ""}, ValueError, "data_dir"),
    ({"data_dir": "MISSING"}, FileNotFoundError, "MISSING"),
], ids=["no-pretrained", "pretrained-not-a-file", "no-data-dir", "data-dir-missing"])
def test_waterbirds_driver_errors_before_writing(waterbirds_files, tmp_path, change, error,
                                                 match):
    config = _waterbirds_config(waterbirds_files)
    missing = str(tmp_path / "nowhere" / "resnet18.npz")
    for key, value in change.items():
        config[key] = missing if value == "MISSING" else value
    workdir = tmp_path / "work"
    pattern = re.escape(missing) if match == "MISSING" else match
    with pytest.raises(error, match=pattern):
        difficulty.run(config, str(workdir))
    assert not workdir.exists()


# ---------------------------------------------------------------- CelebA (TFDS mock)

CELEBA_KEYS = ("balanced_test/men/accuracy", "balanced_test/women/accuracy",
               "balanced_train/men/accuracy", "balanced_train/women/accuracy",
               "train/men/accuracy", "train/women/accuracy", "test/all/accuracy",
               "train/all/loss")


@pytest.mark.usefixtures("quick_compiles")     # the ResNet18's compiles are its cost
def test_celeba_driver_runs_under_tfds_mock_data(tmp_path):
    pytest.importorskip("tensorflow_datasets")
    pytest.importorskip("PIL.Image")

    config = celeba_config.get_config()
    config.data_dir = "/nonexistent/tfds_dir"       # mock_data replaces the data dir
    config.train_size, config.balanced_per_group = 30, 4
    config.image_size = 32
    config.model_kwargs.width = 4                     # random init: any width
    config.model_kwargs.blocks = (1, 1, 1, 1)         # and depth (a ResNet10)
    # Two regimes keep this test's compile time down (the digits run covers alpha=0.5).
    config.regimes = config.compare = ("alpha=1", "alpha=100")
    # Two full-batch GD steps: the training loss falls in both regimes (a shared range).
    config.num_epochs = (2, 2)
    config.batch_size, config.momentum = 30, 0.0
    config.probe_size, config.probe_every = 4, 2
    config.group_size, config.test_size = 0, 20
    config.eval_batch_size = 64
    with fakes.mock_tfds():
        run = checks.run(config, tmp_path / "work")

    _check_spurious_files(run)
    names, bounds = _check_all_regimes(run, CELEBA_KEYS)
    size = dict(zip(names, np.diff(bounds)))
    for split in ("balanced_train", "balanced_test"):      # 4 of each (blond, male)
        assert size[f"{split}/men"] == size[f"{split}/women"] == 8
    # group_size 0: the training-set groups are the whole training set, split by sex.
    assert size["train/men"] + size["train/women"] == size["train/all"] == config.train_size
    assert size["test/all"] == config.test_size
    summary = run["summary"]
    assert (summary["easy_group"], summary["hard_group"]) == ("balanced_test/women",
                                                              "balanced_test/men")
    assert summary["by_regime"] == {}
    for regime in config.regimes:
        steps = [r["step"] for r in run["records"] if r["regime"] == regime]
        assert steps[-1] == config.num_epochs[0] * config.train_size // config.batch_size - 1
