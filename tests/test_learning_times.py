"""Per-example learning times against histories worked out by hand and a loop oracle."""

import numpy as np
import pytest

from lazy_hasty.learning_times import LearningTimes, learning_times

# Five records of a decreasing progress measure (a training loss).
PROGRESS = np.array([0.9, 0.7, 0.5, 0.3, 0.2])


def _brute(correct, progress):
    """Loop oracle: the first record r with correct[r:, n] all 1; censored if none."""
    num_records, num_examples = correct.shape
    index, time = np.full(num_examples, -1), np.full(num_examples, np.nan)
    for n in range(num_examples):
        for r in range(num_records):
            if all(correct[s, n] == 1 for s in range(r, num_records)):
                index[n], time[n] = r, progress[r]
                break
    return index, time


def test_hand_worked_histories():
    # One column per example, records top to bottom.
    correct = np.array([
        # always, at 2, relearned, forgotten, never
        [1, 0, 1, 1, 0],
        [1, 0, 1, 1, 0],
        [1, 1, 0, 1, 0],
        [1, 1, 1, 1, 0],
        [1, 1, 1, 0, 0],
    ])
    got = learning_times(correct, PROGRESS)
    assert isinstance(got, LearningTimes)
    # always correct: index 0, time 0.9; learned at record 2: time 0.5;
    # 1,1,0,1,1 counts from the last switch to correct, record 3: time 0.3;
    # 1,1,1,1,0 is wrong at the end and 0,0,0,0,0 never correct: both censored.
    np.testing.assert_array_equal(got.record_index, [0, 2, 3, -1, -1])
    np.testing.assert_array_equal(got.time, [0.9, 0.5, 0.3, np.nan, np.nan])
    np.testing.assert_array_equal(got.censored, [False, False, False, True, True])
    assert got.record_index.dtype.kind == "i" and got.time.dtype == np.float64
    assert got.censored.dtype == bool


def test_single_record_history():
    # One record: correct there means learned at it; wrong means censored.
    got = learning_times(np.array([[1, 0, True]]), [0.4])
    np.testing.assert_array_equal(got.record_index, [0, -1, 0])
    np.testing.assert_array_equal(got.time, [0.4, np.nan, 0.4])
    np.testing.assert_array_equal(got.censored, [False, True, False])


def test_increasing_progress_and_booleans_match_loop_oracle():
    rng = np.random.default_rng(0)
    correct = rng.random((12, 40)) < np.linspace(0.2, 0.95, 12)[:, None]
    accuracy = np.linspace(0.1, 1.0, 12)          # an increasing progress measure
    got = learning_times(correct, accuracy)
    index, time = _brute(correct.astype(int), accuracy)
    np.testing.assert_array_equal(got.record_index, index)
    np.testing.assert_array_equal(got.time, time)
    np.testing.assert_array_equal(got.censored, index == -1)
    assert 0 < got.censored.sum() < 40             # both kinds occur


def test_no_examples():
    got = learning_times(np.zeros((3, 0)), [3.0, 2.0, 1.0])
    assert got.record_index.shape == got.time.shape == got.censored.shape == (0,)


@pytest.mark.parametrize("correct, progress, match", [
    (np.ones(5), PROGRESS, "correct must be a \\(records, examples\\) array"),
    (np.ones((0, 3)), [], "at least one record"),
    (np.full((5, 2), 0.5), PROGRESS, "only 0/1"),
    (np.ones((5, 2)), PROGRESS[:4], "one value per record"),
    (np.ones((5, 2)), PROGRESS[:, None], "one value per record"),
    (np.ones((5, 2)), [0.9, np.nan, 0.5, 0.3, 0.2], "finite"),
])
def test_bad_input_raises(correct, progress, match):
    with pytest.raises(ValueError, match=match):
        learning_times(correct, progress)
