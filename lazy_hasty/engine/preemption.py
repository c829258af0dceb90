"""Graceful preemption: SIGTERM or SIGINT ends a run at a step boundary.

A preemptible node (or ``scancel``, or Ctrl-C) sends SIGTERM/SIGINT. Inside
:func:`graceful`, the first such signal only sets a flag; the training loop
asks :func:`stop_requested` once per step, finishes the step it is in, saves
a checkpoint, flushes its records and raises :class:`Preempted`, and
``main.py`` exits with :data:`EXIT_CODE` so a scheduler can requeue the job.
A second signal, more than :data:`FORCE_AFTER_S` seconds after the first,
stops at once (the default behaviour); signals in one burst (a scheduler
signalling every process of a job, and a launcher forwarding it) count once.

With several processes (``jax.distributed``) every process must stop at the
same step: they ask JAX's preemption sync point, which the coordination
service turns true on all of them at one agreed step once any was notified.
"""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Iterator

EXIT_CODE = 75
"""Exit status of a preempted run (``EX_TEMPFAIL``: re-run the same command to resume)."""

SIGNALS = (signal.SIGTERM, signal.SIGINT)
FORCE_AFTER_S = 2.0

_received: list[float] = []                         # when each signal arrived


class Preempted(Exception):
    """The run stopped on a signal before ``step`` of ``regime``; a driver that
    checkpoints sets ``last_checkpoint`` (where the same command resumes from)."""

    def __init__(self, regime: str, step: int):
        self.regime, self.step = regime, step
        self.last_checkpoint: str | None = None
        super().__init__()

    def __str__(self) -> str:
        where = ("" if self.last_checkpoint is None
                 else f"; last checkpoint: {self.last_checkpoint}")
        return (f"preempted in regime {self.regime} before step {self.step}{where}; "
                "re-run the same command to resume")


def _handler(signum: int, frame) -> None:
    now = time.monotonic()
    if _received and now - _received[0] > FORCE_AFTER_S:     # asked again: stop now
        signal.signal(signum, signal.SIG_DFL)
        signal.raise_signal(signum)
    _received.append(now)


@contextlib.contextmanager
def _handling(signals, handler) -> Iterator[None]:
    """``handler`` for ``signals`` within, the previous handlers restored after."""
    previous = {s: signal.signal(s, handler) for s in signals}
    try:
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, old)


def graceful() -> contextlib.AbstractContextManager:
    """Within: the first SIGTERM/SIGINT asks the loop to stop at its next step.

    With several processes the handlers stay as they are: JAX's coordination
    service takes the preemption notice and agrees on the step.
    """
    import jax
    _received.clear()
    return _handling(SIGNALS if jax.process_count() == 1 else (), _handler)


def stop_requested(step: int) -> bool:
    """Whether to stop before ``step`` (every process answers alike; call it every step)."""
    import jax
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils
        return multihost_utils.reached_preemption_sync_point(step)
    return bool(_received)


def forward_to(child) -> contextlib.AbstractContextManager:
    """Within: SIGTERM/SIGINT received by this launcher are sent on to ``child`` (a
    ``subprocess.Popen``), which stops gracefully while the launcher waits for it."""
    return _handling(SIGNALS, lambda signum, frame: child.send_signal(signum))
