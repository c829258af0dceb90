"""Seeds vmapped in one program against one run at a time, in a sweep.

Trains the linearized references of ``configs/digits_noise.py`` (5 seeds, the
config's 300 epochs; ``--quick``: 2 seeds, 20 epochs) twice, side by side in
one process: as the sweep does by default (seeds in lockstep, one vmapped
program, :func:`lazy_hasty.engine.loop.train_members`) and one run at a time
(``--nobatch``). Both include loading the data, building the network, every
record's evaluation and probe, and writing each run's outputs; the records
are checked identical. Usage: ``python benchmarks/sweep.py [--quick]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from experiments import sweep_runs  # noqa: E402
from lazy_hasty.engine import records  # noqa: E402

CONFIG = os.path.join(ROOT, "configs", "digits_noise.py")


def _time_references(workdir: str, seeds: int, epochs: float, batch: bool
                     ) -> tuple[float, list]:
    """Seconds to train the references, and their records."""
    plan = sweep_runs.make_plan(CONFIG, workdir, "alpha", "1", "alpha=1", list(range(seeds)),
                                reference_epochs=epochs, max_epochs=0, overrides=[])
    runs = plan.references[None]
    start = time.perf_counter()
    sweep_runs.train_runs(plan, runs, batch)
    elapsed = time.perf_counter() - start
    return elapsed, [records.read_jsonl(os.path.join(r.workdir, "metrics.jsonl"))
                     for r in runs]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    seeds, epochs = (2, 20) if args.quick else (5, 300)
    with tempfile.TemporaryDirectory() as tmp:
        one_s, one = _time_references(os.path.join(tmp, "one"), seeds, epochs, batch=False)
        vmap_s, vmapped = _time_references(os.path.join(tmp, "vmap"), seeds, epochs, batch=True)
    print(f"{seeds} seeds x {epochs:g} epochs of the linearized digits-noise reference: "
          f"one at a time {one_s:.1f} s, vmapped {vmap_s:.1f} s, "
          f"speed-up {one_s / vmap_s:.2f}x; records: {_difference(one, vmapped)}")


def _difference(a: list, b: list) -> str:
    """"identical", or the largest difference of any recorded value."""
    if a == b:
        return "identical"
    steps = [[r["step"] for r in run] for run in a] == [[r["step"] for r in run] for run in b]
    diffs = [abs(x[k] - y[k]) for ra, rb in zip(a, b) for x, y in zip(ra, rb)
             for k in x if isinstance(x[k], float)]
    return f"same record steps: {steps}, largest difference {max(diffs, default=0):.2e}"


if __name__ == "__main__":
    main()
