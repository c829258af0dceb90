"""Many seeds: the vmapped yin-yang job against the same runs one seed at a time.

Runs ``lazy_hasty.engine.yinyang.run_yinyang`` (3 regimes, full-batch GD, grid
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
import numpy as np

from lazy_hasty import models
from lazy_hasty.engine import train
from lazy_hasty.data import yinyang as data
from lazy_hasty.regimes import parse_regime
from lazy_hasty.engine.yinyang import run_yinyang

REGIMES = ("alpha=1", "alpha=100", "linearized")

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


def textbook_seconds_per_seed(steps: int, timed_steps: int) -> float:
    """Seconds per seed of a per-step Python loop over every regime, scaled to ``steps``."""
    module = models.get_model("mlp", features=(60, 60, 60), num_outputs=1)
    apply_fn = models.make_apply_fn(module, {})
    k_data, k_init = jax.random.split(jax.random.PRNGKey(0))
    x, y = data.sample_train(k_data, 100)
    params0, _ = models.init_model(module, k_init, x)
    f0 = apply_fn(params0, x)
    total = 0.0
    for regime in map(parse_regime, REGIMES):
        opt = train.regime_optimizer(regime, "sgd", 0.1)
        step = jax.jit(train.make_train_step(apply_fn, regime, opt))
        state = train.init_state(regime, params0, opt)
        state, m = step(state, params0, x, y, f0)              # compile
        float(m["train_loss"])
        t0 = time.perf_counter()
        for _ in range(timed_steps):
            state, m = step(state, params0, x, y, f0)
            if not np.isfinite(float(m["train_loss"])):       # what a training loop reads
                raise FloatingPointError("diverged")
        total += (time.perf_counter() - t0) / timed_steps * steps
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 runs, 300 steps")
    parser.add_argument("--runs", type=int, default=100, help="seeds in the vmapped job")
    parser.add_argument("--loop_runs", type=int, default=10, help="seeds run one at a time")
    parser.add_argument("--steps", type=int, default=3000, help="GD steps per regime")
    parser.add_argument("--textbook_steps", type=int, default=2000,
                        help="steps timed for the per-step Python loop baseline")
    args = parser.parse_args()
    if args.quick:
        args.runs, args.loop_runs, args.steps, args.textbook_steps = 10, 2, 300, 200
    jax.monitoring.register_event_duration_secs_listener(_listen)
    common = dict(num_steps=args.steps, learning_rate=0.1, thresholds=(0.5, 0.4, 0.3),
                  regimes=REGIMES, stop_when_crossed=False)
    print(f"yin-yang, 3 regimes, {args.steps} steps, 100x100 grid; "
          f"backend={jax.default_backend()}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}")
    textbook = textbook_seconds_per_seed(args.steps, args.textbook_steps)
    print(f"textbook per-step loop, parameter space: {textbook:.3f} s/seed", flush=True)
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
              f"({s_run / v_run:.1f}x without compile); textbook loop (no compile) / "
              f"vmapped (no compile) {textbook / v_run:.1f}x", flush=True)


if __name__ == "__main__":
    main()
