"""RecordSchedule against a straightforward re-implementation of the authors' rule."""

import threading

import numpy as np
import pytest

from lazy_hasty.engine import records
from lazy_hasty.engine.schedule import RecordSchedule


def _oracle(losses, num_steps, ratio=0.96, decay=0.9, num_log=50):
    """Record steps and EMAs: EMA of the loss from the first loss; a record when the EMA
    reaches the next rung ``initial * ratio**k`` (several rungs at once give one record);
    plus the log-spaced steps."""
    log_steps = set(int(s) for s in records.log_spaced_steps(num_steps, num_log))
    initial, ema, k = None, None, 1
    steps, emas = [], []
    for step, loss in enumerate(losses):
        if ema is None:
            initial = ema = float(loss)
        else:
            ema = decay * ema + (1 - decay) * float(loss)
        crossed = ema <= initial * ratio ** k
        while ema <= initial * ratio ** k:
            k += 1
        emas.append(ema)
        if crossed or step in log_steps:
            steps.append(step)
    return steps, emas


def _run(losses, num_steps, **kwargs):
    schedule = RecordSchedule(num_steps, **kwargs)
    steps, emas = [], []
    for step, loss in enumerate(losses):
        if schedule.should_record(step, float(loss)):
            steps.append(step)
        emas.append(schedule.ema_loss)
    return steps, emas


def _decay(n):
    return 2.3 * np.exp(-np.arange(n) / 150.0)


def _noisy(n):
    rng = np.random.default_rng(0)
    return 2.3 * np.exp(-np.arange(n) / 200.0) * rng.uniform(0.5, 1.5, n) + 0.01


def _plateaus(n):      # a sudden drop passes many rungs at once
    return np.where(np.arange(n) < n // 2, 2.0, 0.2)


def _down_up_down(n):  # falls, climbs back, then falls again past its first low
    t = np.arange(n)
    again = 2.0 * np.exp(-(t - n // 2) / 50.0)
    return np.where(t < n // 4, 2.0 * np.exp(-t / 50.0), np.where(t < n // 2, 2.0, again))


@pytest.mark.parametrize("make", [_decay, _noisy, _plateaus, _down_up_down])
@pytest.mark.parametrize("num_steps", [1000, 37])
def test_matches_oracle(make, num_steps):
    losses = make(num_steps)
    got, emas = _run(losses, num_steps)
    want, want_emas = _oracle(losses, num_steps)
    assert got == want
    np.testing.assert_allclose(emas, want_emas, rtol=1e-12)
    assert got[0] == 0 and got[-1] == num_steps - 1


def _extra_records(losses):
    """Recorded steps that are not log-spaced (progress records), and the EMAs."""
    got, emas = _run(losses, len(losses))
    log_steps = set(records.log_spaced_steps(len(losses), 50).tolist())
    return [s for s in got if s not in log_steps], emas


def test_progress_records_beyond_log_steps():
    extra, _ = _extra_records(_decay(1000))
    # exp(-t/150) crosses a 4% rung every ~6 steps once the EMA lags steadily.
    assert len(extra) > 50


def test_rungs_passed_once_are_not_recrossed():
    extra, emas = _extra_records(_down_up_down(1000))
    first_low = min(emas[:250])
    # A progress record marks a new low of the EMA: climbing back and falling
    # again through the rungs passed before (steps 500 to ~750) records nothing.
    assert all(emas[s] < min(emas[:s]) for s in extra if s > 0)
    assert not [s for s in extra if s >= 250 and emas[s] > first_low]
    assert any(s < 250 for s in extra) and any(s >= 750 for s in extra)


def test_plateau_drop_gives_one_record_not_one_per_rung():
    extra, emas = _extra_records(_plateaus(400))
    # 2.0 -> 0.2 is ~56 rungs of 4%; the EMA takes ~22 steps to fall 10x, so far
    # fewer records than rungs, but some.
    assert 0 < len(extra) < 56
    assert emas[-1] == pytest.approx(0.2, rel=1e-6)


def test_constant_loss_records_only_log_spaced_steps():
    num_steps = 500
    got, emas = _run(np.full(num_steps, 0.7), num_steps)
    assert got == sorted(records.log_spaced_steps(num_steps, 50).tolist())
    assert emas == pytest.approx([0.7] * num_steps)


def test_custom_ratio_and_decay_match_oracle():
    num_steps = 300
    losses = _noisy(num_steps)
    got, emas = _run(losses, num_steps, ladder_ratio=0.8, ema_decay=0.5, num_log_steps=10)
    want, want_emas = _oracle(losses, num_steps, ratio=0.8, decay=0.5, num_log=10)
    assert got == want
    np.testing.assert_allclose(emas, want_emas, rtol=1e-12)


def test_first_and_last_step_always_recorded_single_step():
    got, _ = _run([1.0], 1)
    assert got == [0]


@pytest.mark.parametrize("kwargs, match", [
    ({"ladder_ratio": 1.0}, "ladder_ratio"), ({"ladder_ratio": 0.0}, "ladder_ratio"),
    ({"ema_decay": 1.0}, "ema_decay"), ({"ema_decay": -0.1}, "ema_decay"),
])
def test_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RecordSchedule(10, **kwargs)


def _terminates(fn, timeout=10.0):
    result = {}

    def target():
        result["value"] = fn()

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    return not thread.is_alive(), result.get("value")


def test_zero_first_loss_does_not_hang():
    def feed():
        schedule = RecordSchedule(100)
        return [s for s in range(100) if schedule.should_record(s, 0.0)]

    done, got = _terminates(feed)
    assert done, "should_record hangs on a loss of exactly 0"
    assert got == sorted(records.log_spaced_steps(100, 50).tolist())


def test_loss_reaching_zero_for_long_does_not_hang():
    # The EMA decays to denormals (where x * 0.9 rounds back to x) and then 0.
    num_steps = 10000

    def feed():
        schedule = RecordSchedule(num_steps)
        got = [s for s in range(num_steps)
               if schedule.should_record(s, 1.0 if s == 0 else 0.0)]
        return got, schedule.ema_loss

    done, value = _terminates(feed)
    assert done, "should_record hangs once the loss EMA underflows"
    got, ema = value
    assert ema < 1e-300 and got[-1] == num_steps - 1
    # After the rungs bottom out, only log-spaced steps are recorded.
    log_steps = set(records.log_spaced_steps(num_steps, 50).tolist())
    assert all(s in log_steps for s in got if s > 8000)


@pytest.mark.parametrize("num_steps", [30, 1000])
def test_sure_record_from_is_the_next_step_recorded_whatever_the_loss(num_steps):
    schedule = RecordSchedule(num_steps)
    # A loss that never moves: only the log-spaced steps record.
    recorded = [s for s in range(num_steps) if schedule.should_record(s, 1.0)]
    for step in range(-1, num_steps + 2):
        later = [s for s in recorded if s >= step]
        want = later[0] if later and step >= 0 else -1
        assert RecordSchedule(num_steps).sure_record_from(step) == want, step
