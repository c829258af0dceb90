"""The open experiment layer: one-line errors for a bad ``module:function``, the
dataset arguments' checks, what a dataset function returns checked before anything
is written (broken user datasets give one error naming the function, the split or
group, what is wrong and the fix, in-process and through main.py), and the
difficulty spec's meaning. The user's dataset of docs/extending.md, through
seeds.py, and its library snippet run in test_docs.py."""

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


# ---------------------------------------------------------------- what a dataset returns

# A user's file of dataset functions: ``good`` and one broken variant of it per check.
# 12 training examples of 3 features, 3 classes; ``test/all`` is the first 4 of them.
USER_FILE = '''
import numpy as np
from lazy_hasty import difficulty
from lazy_hasty.data.splits import Split
from lazy_hasty.datasets import DescribedDataset

def _data(x, y, test, num_classes=3):
    spec = difficulty.DifficultySpec("toy", easy="train/all", hard="test/all")
    return DescribedDataset(Split(x, y), {"train": {"all": Split(x, y)}, "test": {"all": test}},
                            num_classes, spec)

def _xy(seed):
    x = np.random.default_rng(seed).normal(size=(12, 3)).astype(np.float32)
    return x, (np.arange(12) % 3).astype(np.int32)

def good(seed):
    x, y = _xy(seed)
    return _data(x, y, (x[:4], y[:4]))

def label_too_large(seed):
    x, y = _xy(seed)
    y[7] = 3
    return _data(x, y, (x[:4], y[:4]))

def negative_group_label(seed):
    x, y = _xy(seed)
    return _data(x, y, (x[:4], np.array([0, -1, 2, 1])))

def float_labels(seed):
    x, y = _xy(seed)
    return _data(x, y.astype(np.float32), (x[:4], y[:4]))

def nan_input(seed):
    x, y = _xy(seed)
    x[5, 1] = np.nan
    return _data(x, y, (x[:4], y[:4]))

def inf_group_input(seed):
    x, y = _xy(seed)
    test = x[:4].copy()
    test[2, 0] = -np.inf
    return _data(x, y, (test, y[:4]))

def text_group_input(seed):
    x, y = _xy(seed)
    return _data(x, y, (np.full((4, 3), "a"), y[:4]))

def empty_group(seed):
    x, y = _xy(seed)
    return _data(x, y, (x[:0], y[:0]))

def empty_training_set(seed):
    x, y = _xy(seed)
    return DescribedDataset(Split(x[:0], y[:0]), {"test": {"a": Split(x, y), "b": Split(x, y)}},
                            3, difficulty.DifficultySpec("toy", easy="test/a", hard="test/b"))

def group_shape(seed):
    x, y = _xy(seed)
    return _data(x, y, (x[:4, :2], y[:4]))

def group_label_count(seed):
    x, y = _xy(seed)
    return _data(x, y, (x[:4], y[:3]))

def group_labels_2d(seed):
    x, y = _xy(seed)
    return _data(x, y, (x[:4], y[:4, None]))
'''

LABELS = "labels must lie in [0, 3): remap them or raise num_classes"
SPLIT = ("Split needs x of shape (N, ...) and y of shape (N,); got x {} and y {}. "
         "Pass one label per example.")
# Each broken function and what its message says after "dataset '<file>:<function>': ".
BROKEN = {
    "label_too_large": f"the training set labels span [0, 3] but num_classes is 3; {LABELS}",
    "negative_group_label": f"group 'test/all' labels span [-1, 2] but num_classes is 3; "
                            f"{LABELS}",
    "float_labels": "the training set labels have dtype float32; labels must be integer "
                    "class indices (e.g. y.astype(np.int32))",
    "nan_input": "the training set inputs are not finite: example 5 holds NaN or inf; "
                 "repair or drop such examples",
    "inf_group_input": "group 'test/all' inputs are not finite: example 2 holds NaN or inf; "
                       "repair or drop such examples",
    "text_group_input": "group 'test/all' inputs have dtype <U1; inputs must be numeric arrays",
    "empty_group": "group 'test/all' is empty; give it examples or leave it out",
    "empty_training_set": "the training set is empty; return at least one training example",
    "group_shape": "group 'test/all' has examples of shape (2,) but the training set's are "
                   "(3,); give every group inputs shaped like the training inputs",
    "group_label_count": "group 'test/all': " + SPLIT.format((4, 3), (3,)),
    "group_labels_2d": "group 'test/all': " + SPLIT.format((4, 3), (4, 1)),
}


@pytest.fixture(scope="module")
def user_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("user") / "broken.py"
    path.write_text(USER_FILE)
    return str(path)


def test_good_user_dataset_loads_unchanged(user_file):
    data = datasets.load(f"{user_file}:good", {"seed": 0, "learning_rate": 0.1})
    x = np.random.default_rng(0).normal(size=(12, 3)).astype(np.float32)
    np.testing.assert_array_equal(data.train.x, x)
    np.testing.assert_array_equal(data.train.y, [0, 1, 2] * 4)
    assert list(data.flat_groups()) == ["train/all", "test/all"]
    np.testing.assert_array_equal(data.flat_groups()["test/all"][0], x[:4])


@pytest.mark.parametrize("function", list(BROKEN))
def test_broken_user_dataset_is_one_line_naming_function_group_and_fix(user_file, function):
    name = f"{user_file}:{function}"
    with pytest.raises(ValueError) as info:
        datasets.load(name, {"seed": 0})
    assert str(info.value) == f"dataset {name!r}: {BROKEN[function]}"
    assert "\n" not in str(info.value)


class _Unreadable:
    """A uint8 image array-like whose examples must not be read."""

    dtype, ndim, shape = np.dtype(np.uint8), 4, (6, 2, 2, 3)

    def __len__(self):
        return self.shape[0]

    def __getitem__(self, index):
        raise AssertionError("integer inputs are finite by construction: not read")


def test_integer_inputs_are_not_read_and_float_memmaps_are_read_in_chunks(tmp_path,
                                                                          monkeypatch):
    assert datasets._first_non_finite(_Unreadable()) is None
    x = np.memmap(tmp_path / "x.f32", np.float32, "w+", shape=(9, 3))
    x[:] = 1.0
    x[7, 2] = np.nan
    seen = []

    class Spy(np.memmap):
        def __getitem__(self, index):
            seen.append((index.start, index.stop))
            return super().__getitem__(index)

    monkeypatch.setattr(datasets, "FINITE_CHECK_BYTES", 2 * 3 * 4)      # 2 examples a chunk
    assert datasets._first_non_finite(x.view(Spy)) == 7
    assert seen == [(0, 2), (2, 4), (4, 6), (6, 8)]                      # stops at the bad one
    x[7, 2] = 2.0
    assert datasets._first_non_finite(x) is None


def test_broken_user_dataset_through_main_is_one_line_exit_1_and_no_workdir(user_file,
                                                                            tmp_path):
    """Before the check, these labels ran and were reported as a divergence (exit 3),
    with a workdir left behind."""
    name = f"{user_file}:label_too_large"
    workdir = tmp_path / "work"
    proc = subprocess.run(
        [sys.executable, "main.py", f"--config={TINY}", f"--config.dataset={name}",
         f"--workdir={workdir}"], cwd=ROOT, capture_output=True, text=True, timeout=300,
        env=dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=ROOT))
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert proc.stderr.splitlines() == [
        f"main.py: error: dataset {name!r}: {BROKEN['label_too_large']}"]
    assert not workdir.exists()
