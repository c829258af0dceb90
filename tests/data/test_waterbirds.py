"""Waterbirds from a miniature release folder, and the shared spurious-data helpers."""

import os

import numpy as np
import pytest

pytest.importorskip("PIL.Image")

from tests.fakes import WATERBIRDS_GRAY_ROW, write_waterbirds_release  # noqa: E402
from lazy_hasty.data import groups, spurious, waterbirds  # noqa: E402
from lazy_hasty.data.waterbirds import load_waterbirds, read_metadata  # noqa: E402


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    root = tmp_path_factory.mktemp("waterbirds")
    return str(root), write_waterbirds_release(str(root))


def _rows_of(x: np.ndarray) -> np.ndarray:
    """The metadata row of each loaded image, read back from its colour."""
    assert np.all(x == x[:, :1, :1, :])  # constant images stay constant through resize / crop
    return x[:, 0, 0, 0].astype(int)


def _load(root, **kwargs):
    args = {"balanced_per_group": 5, "seed": 0, "resize": 32, "image_size": 28}
    args.update(kwargs)
    return load_waterbirds(root, **args)


def test_splits_balanced_sets_and_groups(release):
    root, rows = release
    data = _load(root)
    assert data.name == "waterbirds" and data.num_classes == 2
    assert (data.easy, data.hard) == ("same", "opposite")
    sizes = {name: len(split) for name, split in data.splits.items()}
    # balanced_train: min(5, smallest training combination = 4) per combination.
    assert sizes == {"train": 40, "balanced_train": 16, "balanced_test": 20, "test": 24}
    expected_split = {"train": 0, "balanced_train": 0, "balanced_test": 2, "test": 2}
    for name, split in data.splits.items():
        assert split.x.dtype == np.uint8 and split.x.shape[1:] == (28, 28, 3)
        assert split.y.dtype == np.int32
        meta_rows = _rows_of(split.x)
        assert len(set(meta_rows.tolist())) == len(split)  # no duplicates
        assert np.all(meta_rows == np.sort(meta_rows))  # metadata order
        assert all(rows[r]["split"] == expected_split[name] for r in meta_rows)
        np.testing.assert_array_equal(split.y, [rows[r]["y"] for r in meta_rows])
        same = np.array([rows[r]["y"] == rows[r]["place"] for r in meta_rows])
        np.testing.assert_array_equal(data.groups[name]["same"], np.flatnonzero(same))
        np.testing.assert_array_equal(data.groups[name]["opposite"], np.flatnonzero(~same))
        if name.startswith("balanced"):
            combos = [(rows[r]["y"], rows[r]["place"]) for r in meta_rows]
            per = len(split) // 4
            assert all(combos.count(c) == per for c in spurious.COMBINATIONS)
    grey = data.splits[["train", "test"][rows[WATERBIRDS_GRAY_ROW]["split"] == 2]]
    assert WATERBIRDS_GRAY_ROW in _rows_of(grey.x)


def test_deterministic_and_test_subset(release):
    root, _ = release
    first, again = _load(root, seed=4), _load(root, seed=4)
    for name in first.splits:
        np.testing.assert_array_equal(first.splits[name].x, again.splits[name].x)
    other = _load(root, seed=5)
    assert not np.array_equal(first.splits["balanced_test"].x, other.splits["balanced_test"].x)
    capped = _load(root, seed=4, test_size=10, balanced_train_per_group=3)
    assert len(capped.splits["test"]) == 10 and len(capped.splits["balanced_train"]) == 12
    # The examples the driver used to draw from the whole test split.
    np.testing.assert_array_equal(capped.splits["test"].x,
                                  first.splits["test"].x[
                                      groups.all_group(24, 10, 4, "test")["all"]])
    np.testing.assert_array_equal(capped.splits["balanced_test"].x,
                                  first.splits["balanced_test"].x)


def test_decodes_each_returned_image_once(release, monkeypatch):
    root, _ = release
    decoded = []
    load_image = waterbirds._load_image  # pylint: disable=protected-access
    monkeypatch.setattr(waterbirds, "_load_image",
                        lambda path, *args: decoded.append(path) or load_image(path, *args))
    data = _load(root, test_size=3, balanced_per_group=1)
    test_rows = set(_rows_of(data.splits["test"].x)) | set(_rows_of(data.splits["balanced_test"].x))
    assert len(decoded) == len(set(decoded)) == 40 + len(test_rows)  # all train, 3-7 of test


def test_too_few_or_bad_sizes(release):
    root, _ = release
    with pytest.raises(ValueError, match="waterbirds on land .*: 4"):
        _load(root, balanced_train_per_group=5)
    with pytest.raises(ValueError, match="test split"):
        _load(root, balanced_per_group=7)
    with pytest.raises(ValueError, match="balanced_train_per_group must be a positive int"):
        _load(root, balanced_train_per_group=0)
    with pytest.raises(ValueError, match="test_size must be >= 0"):
        _load(root, test_size=-2)


def test_missing_root_and_metadata(tmp_path):
    with pytest.raises(FileNotFoundError, match="root folder .*nowhere.* does not exist"):
        load_waterbirds(str(tmp_path / "nowhere"), seed=0)
    with pytest.raises(FileNotFoundError, match="metadata.csv"):
        load_waterbirds(str(tmp_path), seed=0)


def test_missing_columns_are_listed(tmp_path):
    (tmp_path / "metadata.csv").write_text("img_id,img_filename,y\n1,a.png,0\n")
    with pytest.raises(ValueError, match=r"lacks columns \['split', 'place'\]"):
        read_metadata(tmp_path)


def test_missing_image_is_named(tmp_path):
    rows = [{"img_filename": f"b/{i}.png", "y": i % 2, "split": 0 if i < 8 else 2,
             "place": i // 2 % 2} for i in range(16)]
    write_waterbirds_release(str(tmp_path), rows)
    os.remove(tmp_path / "b" / "3.png")
    with pytest.raises(FileNotFoundError, match="image b/3.png"):
        load_waterbirds(str(tmp_path), seed=0, balanced_per_group=2, resize=8, image_size=8)


def test_balanced_sample_exact_and_seeded():
    rng = np.random.default_rng(0)
    y, attribute = rng.integers(0, 2, 200), rng.integers(0, 2, 200).astype(bool)
    idx = spurious.balanced_sample(y, attribute, per_group=7, seed=1, name="b")
    assert np.all(np.diff(idx) > 0) and idx.size == 28
    for label, attr in spurious.COMBINATIONS:
        assert np.sum((y[idx] == label) & (attribute[idx] == attr)) == 7
    np.testing.assert_array_equal(idx, spurious.balanced_sample(y, attribute, 7, seed=1, name="b"))
    assert not np.array_equal(idx, spurious.balanced_sample(y, attribute, 7, seed=2, name="b"))
    with pytest.raises(ValueError, match=r"blond men \(label=1, attribute=1\): 1"):
        spurious.balanced_sample([0, 0, 1, 1, 1], [0, 1, 0, 0, 1], 2, seed=0, name="b",
                                 names={(1, 1): "blond men", (0, 0): "a", (0, 1): "b",
                                        (1, 0): "c"})


def test_center_crop_resize():
    image = np.zeros((218, 178, 3), dtype=np.uint8)
    image[20:198] = 255  # the central 178x178 square
    out = spurious.center_crop_resize(image, crop=178, resize_to=16)
    assert out.shape == (16, 16, 3) and out.dtype == np.uint8 and np.all(out == 255)
    grid = np.arange(10 * 12 * 3, dtype=np.uint8).reshape(10, 12, 3)
    np.testing.assert_array_equal(spurious.center_crop(grid, 6), grid[2:8, 3:9])
    out = spurious.center_crop_resize(grid, crop=None, resize_to=12, then_crop=8)
    assert out.shape == (8, 8, 3)
    with pytest.raises(ValueError, match="uint8 HxWx3"):
        spurious.center_crop_resize(grid.astype(np.float32), crop=None, resize_to=4)
