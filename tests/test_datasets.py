"""The open experiment layer: one-line errors for a bad ``module:function``, the
dataset arguments' checks, and the difficulty spec's meaning. The user's dataset of
docs/extending.md, through seeds.py, and its library snippet run in test_docs.py."""

import inspect
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from configs import difficulty_base, digits_spurious
from lazy_hasty import datasets, difficulty
from lazy_hasty.data import builtin
from lazy_hasty.analysis import progress

from tests import ROOT
TINY = os.path.join(ROOT, "configs", "digits_noise_tiny.py")


@pytest.fixture(scope="module")
def user_folder(tmp_path_factory):
    """A user's folder whose ``my_difficulty.py`` holds no dataset function."""
    folder = tmp_path_factory.mktemp("user")
    (folder / "my_difficulty.py").write_text("def not_a_dataset(seed):\n    return {}\n")
    return folder


BAD_DATASETS = {
    "no_module_here:fn": "no module named 'no_module_here'",
    "my_difficulty:nothing": "module 'my_difficulty' has no function 'nothing'",
    "my_difficulty:not_a_dataset": "returned a dict; a dataset function must return",
}


def test_bad_module_function_is_one_line_exit_1_and_no_files(user_folder):
    procs = {name: subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "main.py"), f"--config={TINY}",
         f"--config.dataset={name}", f"--workdir=bad_{i}"], cwd=user_folder,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i, name in enumerate(BAD_DATASETS)}
    for i, (name, proc) in enumerate(procs.items()):
        _, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 1, stderr
        assert len(stderr.strip().splitlines()) == 1 and BAD_DATASETS[name] in stderr, stderr
        assert not (user_folder / f"bad_{i}").exists()


@pytest.mark.parametrize("extra, match", [
    ({"colour": 1}, r"takes no argument\(s\) \['colour'\]"),
    ({}, "needs argument 'scale'"),
])
def test_dataset_arguments_are_checked(extra, match, monkeypatch):
    def needs_scale(seed, scale):
        raise AssertionError("not called")
    monkeypatch.setattr(datasets, "resolve", {"needs_scale": needs_scale}.__getitem__)
    with pytest.raises(ValueError, match=match):
        datasets.load("needs_scale", {"seed": 0}, extra)


def test_spec_errors_name_the_fix():
    with pytest.raises(ValueError, match="easy and hard are both"):
        difficulty.DifficultySpec("x", easy="train/a", hard="train/a")
    with pytest.raises(ValueError, match="must be a non-empty subset"):
        difficulty.DifficultySpec("x", easy="train/a", hard="train/b", statistics=("auc",))
    spec = difficulty.DifficultySpec("x", easy="train/a", hard="train/b",
                                     progress_key="train/c/accuracy")
    with pytest.raises(ValueError, match=r"names groups \['train/b'\]"):
        spec.check_groups(["train/a"])
    with pytest.raises(ValueError, match="progress_key 'train/c/accuracy' is not a record key"):
        spec.check_groups(["train/a", "train/b"])
    assert difficulty.DifficultySpec.from_dict(
        json.loads(json.dumps(difficulty.spurious("same", "opposite").to_dict()))
    ) == difficulty.spurious("same", "opposite")


def _two_group_history():
    """Records of two regimes over 4 examples (2 easy, then 2 hard) at 5 records."""
    records = [{"regime": r, "train_loss": loss} for r in ("nl", "lin")
               for loss in (1.0, 0.8, 0.6, 0.4, 0.2)]
    correct = {"nl": np.array([[0, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0], [1, 1, 1, 1],
                               [1, 1, 1, 1]]),
               "lin": np.array([[0, 0, 0, 0], [1, 0, 1, 0], [1, 1, 1, 0], [1, 1, 1, 1],
                                [1, 1, 1, 1]])}
    slices = {"train/easy": slice(0, 2), "train/hard": slice(2, 4)}
    return records, correct, slices


def test_swapping_easy_and_hard_negates_hastiness():
    records, correct, slices = _two_group_history()
    spec = difficulty.DifficultySpec("toy", easy="train/easy", hard="train/hard")
    swapped = difficulty.DifficultySpec("toy", easy="train/hard", hard="train/easy")
    right = progress.compare_regimes(records, correct, slices, spec, "nl", "lin", seed=0)
    wrong = progress.compare_regimes(records, correct, slices, swapped, "nl", "lin", seed=0)
    # Closed form: at losses 0.8 -> 0.6 the gap (easy - hard) is 1 for nl and 0 for lin;
    # over the common grid from 1.0 to 0.2 its mean is that piecewise-linear bump's area.
    assert right["hastiness"] > 0.2
    assert wrong["hastiness"] == pytest.approx(-right["hastiness"], abs=1e-12)


def test_no_common_progress_is_one_clear_error():
    records, correct, slices = _two_group_history()
    records = [dict(r, train_loss=r["train_loss"] + (5.0 if r["regime"] == "lin" else 0))
               for r in records]
    spec = difficulty.DifficultySpec("toy", easy="train/easy", hard="train/hard")
    with pytest.raises(progress.NoCommonProgressError,
                       match="regimes nl and lin share no range of 'train_loss'"):
        progress.summarize(records, correct, slices, spec, ("nl", "lin"), ["nl", "lin"], 0)


def test_registered_datasets_take_every_argument_from_the_config():
    """The configs are the one source of dataset defaults: every argument of a
    registered dataset is a key of configs/difficulty_base.py, and none has a default."""
    keys = set(difficulty_base.get_config().keys())
    assert datasets.registered() == ("digits", "cifar10", "digits_spurious", "celeba",
                                     "waterbirds")
    for name in datasets.registered():
        fn = datasets.resolve(name)
        assert fn is getattr(builtin, name)
        params = inspect.signature(fn).parameters
        assert set(params) <= keys, (name, sorted(set(params) - keys))
        assert [k for k, p in params.items() if p.default is not p.empty] == [], name


def test_builtin_specs_put_the_easy_group_first(tmp_path):
    """On the data the specs describe, the easy group is the better-learnt one."""
    noise = datasets.load("digits", {**difficulty_base.get_config().to_dict(), "distractors": 0})
    assert noise.spec == difficulty.label_noise()
    # A nearest-class-mean classifier fit on the noisy training labels: clean examples
    # agree with their label far more often than noisy ones.
    train = noise.groups["train"]
    x, y = noise.train.x.reshape(len(noise.train.y), -1), noise.train.y
    centres = np.stack([x[y == c].mean(0) for c in range(10)])
    acc = lambda g: np.mean(np.argmin(((g.x.reshape(len(g.y), -1)[:, None] - centres) ** 2)
                                      .sum(-1), 1) == g.y)
    easy, hard = (noise.spec.easy.split("/")[1], noise.spec.hard.split("/")[1])
    assert acc(train[easy]) > acc(train[hard]) + 0.5
    spurious = datasets.load("digits_spurious", digits_spurious.get_config().to_dict())
    assert spurious.spec.easy == "balanced_test/majority"
    assert set(spurious.groups["balanced_test"]) == {"majority", "minority"}
