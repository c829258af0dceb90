"""Per-example learning times against histories worked out by hand and a loop oracle."""

import numpy as np
import pytest

from lazy_hasty.analysis.learning_times import LearningTimes, learning_times

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


# ---------------------------------------------------------------- difficulty ladders

from lazy_hasty.analysis import inference  # noqa: E402
from lazy_hasty.difficulty import DifficultySpec, Panel  # noqa: E402
from lazy_hasty.analysis.learning_times import (  # noqa: E402
    difficulty_learning_times, ladder_examples, ladder_times, lateness, time_rank_correlation)

# Columns: 1 example of train/other, 2 of train/easy, 2 of train/mid, 2 of train/hard.
SLICES = {"train/other": slice(0, 1), "train/easy": slice(1, 3), "train/mid": slice(3, 5),
          "train/hard": slice(5, 7)}
LADDER_SPEC = DifficultySpec("t", easy="train/easy", hard="train/hard",
                             panels=(Panel("p", ("train/hard", "train/mid", "train/easy")),))
HISTORY = np.array([
    # other, easy: always, at 1 | mid: relearned (3), at 2 | hard: censored, forgotten
    [0, 1, 0, 1, 0, 0, 1],
    [0, 1, 1, 0, 0, 0, 1],
    [0, 1, 1, 0, 1, 0, 1],
    [1, 1, 1, 1, 1, 0, 0],
])
LOSS_RECORDS = [{"regime": "a", "train_loss": v} for v in (2.0, 1.5, 1.0, 0.5)]


def test_ladder_times_decreasing_progress():
    got = ladder_times(HISTORY, LOSS_RECORDS, SLICES, LADDER_SPEC)
    np.testing.assert_array_equal(got.example, [1, 2, 3, 4, 5, 6])
    np.testing.assert_array_equal(got.group, [1, 1, 2, 2, 3, 3])
    np.testing.assert_array_equal(got.rank, [0, 0, 1, 1, 2, 2])
    np.testing.assert_array_equal(got.times.record_index, [0, 1, 3, 2, -1, -1])
    np.testing.assert_array_equal(got.times.time, [2.0, 1.5, 0.5, 1.0, np.nan, np.nan])
    np.testing.assert_array_equal(got.times.censored, [0, 0, 0, 0, 1, 1])
    # Lateness grows as the loss falls; censored examples come last, tied.
    np.testing.assert_array_equal(lateness(got.times, True),
                                  [-2.0, -1.5, -0.5, -1.0, np.inf, np.inf])


def test_ladder_times_increasing_progress():
    spec = DifficultySpec("t", easy="train/easy", hard="train/hard",
                          progress_key="train/easy/accuracy", decreasing=False)
    records = [{"regime": "a", "train/easy/accuracy": v} for v in (0.1, 0.4, 0.8, 0.9)]
    got = ladder_times(HISTORY, records, SLICES, spec)      # no panel: the ladder is easy, hard
    np.testing.assert_array_equal(got.example, [1, 2, 5, 6])
    np.testing.assert_array_equal(got.rank, [0, 0, 1, 1])
    np.testing.assert_array_equal(got.times.time, [0.1, 0.4, np.nan, np.nan])
    np.testing.assert_array_equal(lateness(got.times, False), [0.1, 0.4, np.inf, np.inf])
    with pytest.raises(ValueError, match="one value per record"):
        ladder_times(HISTORY, records[:3], SLICES, spec)


def test_ladder_groups_must_be_evaluated():
    with pytest.raises(ValueError, match=r"ladder groups \['train/mid'\] are not evaluated"):
        ladder_examples({"train/easy": slice(0, 2)}, ("train/easy", "train/mid"))


def _ranked_history(hard_later: bool, num_per_group: int = 6):
    """Three groups; the examples of one group are all learned at the same record, the
    easy group first when ``hard_later`` (the hard group then never: censored)."""
    records = 5
    learned_at = (1, 3, records) if hard_later else (3, 1, 0)
    correct = np.zeros((records, 3 * num_per_group), int)
    for k, r in enumerate(learned_at):
        correct[r:, k * num_per_group:(k + 1) * num_per_group] = 1
    slices = {f"train/g{k}": slice(k * num_per_group, (k + 1) * num_per_group)
              for k in range(3)}
    return correct, slices


@pytest.mark.parametrize("decreasing", [True, False])
@pytest.mark.parametrize("hard_later", [True, False])
def test_rank_correlation_sign(decreasing, hard_later):
    correct, slices = _ranked_history(hard_later)
    spec = DifficultySpec("t", easy="train/g0", hard="train/g2", decreasing=decreasing,
                          progress_key="train_loss" if decreasing else "train/g0/accuracy",
                          panels=(Panel("p", tuple(slices)),))
    values = np.linspace(1.0, 0.2, 5) if decreasing else np.linspace(0.2, 1.0, 5)
    records = [{"regime": "a", spec.progress_key: v} for v in values]
    got = ladder_times(correct, records, slices, spec)
    assert got.times.censored.sum() == (6 if hard_later else 0)
    rho, (lo, hi) = time_rank_correlation(got, decreasing, seed=0, num_resamples=200)
    # Whole groups tie, so the correlation is that of the ranks themselves: +-1.
    assert rho == pytest.approx(1.0 if hard_later else -1.0)
    assert lo <= rho <= hi


def test_difficulty_learning_times_arrays_and_summary():
    correct = {"a": HISTORY, "b": np.ones_like(HISTORY)}
    records = LOSS_RECORDS + [{"regime": "b", "train_loss": v} for v in (3.0, 2.0, 1.0, 0.1)]
    arrays, summary = difficulty_learning_times(records, correct, SLICES, LADDER_SPEC,
                                                ("a", "b"), seed=3)
    np.testing.assert_array_equal(arrays["time_a"], [2.0, 1.5, 0.5, 1.0, np.nan, np.nan])
    np.testing.assert_array_equal(arrays["time_b"], np.full(6, 3.0))
    np.testing.assert_array_equal(arrays["record_index_a"], [0, 1, 3, 2, -1, -1])
    np.testing.assert_array_equal(arrays["censored_b"], np.zeros(6, bool))
    assert list(arrays["ladder"]) == ["train/easy", "train/mid", "train/hard"]
    assert list(arrays["group_names"]) == list(SLICES)
    assert list(arrays["regimes"]) == ["a", "b"]
    assert str(arrays["progress_key"]) == "train_loss" and bool(arrays["decreasing"])
    np.testing.assert_array_equal(arrays["ladder"][arrays["rank"]],
                                  arrays["group_names"][arrays["group"]])
    assert summary["a"]["num_examples"] == 6 and summary["a"]["num_censored"] == 2
    want = inference.bootstrap_spearman([-2.0, -1.5, -0.5, -1.0, np.inf, np.inf],
                                        [0, 0, 1, 1, 2, 2], what="learning_times",
                                        seed=3)
    assert summary["a"]["spearman"] == want[0] and summary["a"]["interval"] == list(want[1])
    assert want[0] > 0
    assert np.isnan(summary["b"]["spearman"])               # all learned at once: undefined
    assert summary["b"]["num_censored"] == 0


def test_plot_learning_times_of_the_arrays_with_a_wholly_censored_regime(tmp_path):
    """The figure of difficulty_learning_times' own arrays: "a" per group as worked out
    above (the hard group censored: no step drawn), "b" all censored, so the
    per-example scatter holds no point and no diagonal."""
    from lazy_hasty.analysis import plots
    correct = {"a": HISTORY, "b": np.zeros_like(HISTORY)}   # b: every example censored
    records = LOSS_RECORDS + [dict(r, regime="b") for r in LOSS_RECORDS]
    arrays, _ = difficulty_learning_times(records, correct, SLICES, LADDER_SPEC, ("a", "b"), 0)
    fig = plots.plot_learning_times(str(tmp_path / "learning_times.png"), arrays, LADDER_SPEC,
                                    ("a", "b"))
    a, b, scatter = fig.axes
    assert a.get_title() == "a: learned for good (33% censored)"
    easy, mid, hard = (line.get_xydata() for line in a.get_lines())
    np.testing.assert_array_equal(easy, [[2.0, 0.5], [1.5, 1.0]])
    np.testing.assert_array_equal(mid, [[1.0, 0.5], [0.5, 1.0]])
    assert hard.shape == (0, 2)
    assert [t.get_text() for t in a.get_legend().get_texts()] == [
        "easy (0% censored)", "mid (0% censored)", "hard (100% censored)"]
    assert b.get_title() == "b: learned for good (100% censored)"
    assert all(line.get_xydata().shape == (0, 2) for line in b.get_lines())
    assert scatter.get_title() == "per example (6 censored left out)"
    assert all(len(c.get_offsets()) == 0 for c in scatter.collections)
    assert len(scatter.get_lines()) == 0
