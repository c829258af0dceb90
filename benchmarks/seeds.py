"""Many seeds: the vmapped yin-yang job against the same runs one seed at a time.

Runs ``lazy_hasty.yinyang.run_yinyang`` (3 regimes, full-batch GD, grid
evaluation) once with ``num_runs=R`` (every seed in one vmapped program per
regime) and ``L`` times with ``num_runs=1`` in a Python loop, and reports
seconds per seed for both, with and without compilation. Compilation time is
measured, not guessed: JAX's own trace, lowering and XLA compile events
(``jax.monitoring``) are summed during each part. ``stop_when_crossed`` is off
so both do the same number of steps.

Usage: ``python benchmarks/seeds.py [--quick] [--runs R] [--loop_runs L] [--steps S]``.
"""

from __future__ import annotations

import argparse
import os
import time

import jax

from lazy_hasty.yinyang import run_yinyang

COMPILE_EVENTS = ("/jax/core/compile/jaxpr_trace_duration",
                  "/jax/core/compile/jaxpr_to_mlir_module_duration",
                  "/jax/core/compile/backend_compile_duration")
_compile_seconds = [0.0]


def _listen(event: str, duration: float, **_) -> None:
    if event in COMPILE_EVENTS:
        _compile_seconds[0] += duration


def timed(fn) -> tuple[float, float]:
    """(wall seconds, of which compilation seconds) of ``fn()``."""
    before, t0 = _compile_seconds[0], time.perf_counter()
    fn()
    return time.perf_counter() - t0, _compile_seconds[0] - before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 runs, 300 steps")
    parser.add_argument("--runs", type=int, default=100, help="seeds in the vmapped job")
    parser.add_argument("--loop_runs", type=int, default=10, help="seeds run one at a time")
    parser.add_argument("--steps", type=int, default=3000, help="GD steps per regime")
    args = parser.parse_args()
    if args.quick:
        args.runs, args.loop_runs, args.steps = 10, 2, 300
    jax.monitoring.register_event_duration_secs_listener(_listen)
    common = dict(num_steps=args.steps, learning_rate=0.1, thresholds=(0.5, 0.4, 0.3),
                  regimes=("alpha=1", "alpha=100", "linearized"), stop_when_crossed=False)
    print(f"yin-yang, 3 regimes, {args.steps} steps, 100x100 grid; "
          f"backend={jax.default_backend()}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}")
    for fs in (True, False):
        run = lambda seed, n: run_yinyang(seed=seed, num_runs=n,  # noqa: E731
                                          function_space_linearized=fs, **common)
        v_wall, v_comp = timed(lambda: run(0, args.runs))
        l_wall, l_comp = timed(lambda: [run(k, 1) for k in range(args.loop_runs)])
        per = lambda wall, comp, n: ((wall) / n, (wall - comp) / n)  # noqa: E731
        (v, v_run), (s, s_run) = per(v_wall, v_comp, args.runs), per(l_wall, l_comp,
                                                                     args.loop_runs)
        print(f"linearized in {'function' if fs else 'parameter'} space: vmapped "
              f"{args.runs} seeds {v_wall:.1f} s ({v_comp:.1f} s compiling); loop "
              f"{args.loop_runs} seeds {l_wall:.1f} s ({l_comp:.1f} s compiling)")
        print(f"  s/seed: vmapped {v:.3f} ({v_run:.3f} without compile), loop {s:.3f} "
              f"({s_run:.3f} without compile); speed-up {s / v:.1f}x "
              f"({s_run / v_run:.1f}x without compile)", flush=True)


if __name__ == "__main__":
    main()
