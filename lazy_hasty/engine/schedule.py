"""When to write a record: dense in training *progress*, not just in steps.

Equal-progress comparisons interpolate per-group metrics between records, so
records follow the authors' rule: one each time an EMA of the minibatch loss
crosses the next rung of a geometric ladder ``initial * ratio**k``, plus
log-spaced steps, plus the first and the last step.
"""

from __future__ import annotations

import math

from lazy_hasty.engine.records import log_spaced_steps

_TINY = 2.0 ** -1022      # the smallest normal float64


class RecordSchedule:
    """Stateful ``should_record(step, loss)`` for one training run.

    Its state (the loss EMA and the next rung) is checkpointed with
    :meth:`state_dict` so a resumed run records at the same steps.
    """

    def __init__(self, num_steps: int, *, ladder_ratio: float = 0.96,
                 ema_decay: float = 0.9, num_log_steps: int = 50):
        if not 0 < ladder_ratio < 1:
            raise ValueError(f"ladder_ratio must be in (0, 1), got {ladder_ratio}")
        if not 0 <= ema_decay < 1:
            raise ValueError(f"ema_decay must be in [0, 1), got {ema_decay}")
        self._log_steps = set(int(s) for s in log_spaced_steps(num_steps, num_log_steps))
        self._ratio, self._decay = ladder_ratio, ema_decay
        self._ema: float | None = None
        self._next_rung: float | None = None
        self.ema_loss: float = math.nan

    def should_record(self, step: int, loss: float) -> bool:
        """Feeds the loss measured at ``step``; True if a record is due there."""
        if self._ema is None:
            self._ema = loss
            self._next_rung = loss * self._ratio
        else:
            self._ema = self._decay * self._ema + (1 - self._decay) * loss
        self.ema_loss = self._ema
        # Rungs stop below the smallest normal float: there ``x * ratio`` rounds back
        # to ``x`` (or reaches 0), so a loss of exactly 0 would otherwise loop forever.
        crossed = _TINY < self._next_rung and self._ema <= self._next_rung
        while _TINY < self._next_rung and self._ema <= self._next_rung:  # one record for all
            self._next_rung *= self._ratio
        return crossed or step in self._log_steps

    def sure_record_from(self, step: int) -> int:
        """The first step at or after ``step`` that always records (a log-spaced step,
        whatever the loss does); -1 when there is none or ``step`` is negative."""
        later = [s for s in self._log_steps if s >= step] if step >= 0 else []
        return min(later) if later else -1

    def state_dict(self) -> dict:
        """What :meth:`load_state_dict` needs to continue exactly here (JSON-able floats)."""
        return {"ema": self._ema, "next_rung": self._next_rung}

    def load_state_dict(self, state: dict) -> None:
        """Continues from a :meth:`state_dict` of a schedule with the same arguments."""
        self._ema, self._next_rung = state["ema"], state["next_rung"]
        self.ema_loss = math.nan if self._ema is None else self._ema
