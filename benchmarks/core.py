"""Cost of the training regimes, measured in one run.

For the yin-yang MLP and a norm-free CIFAR ResNet18, times one jitted SGD step
in each regime (standard, rescaled alpha=100 with and without cached f(params0,
x), linearized) and reports XLA's FLOP count and memory figure next to it, all
as ratios to the standard step. The empirical NTK is measured by
``benchmarks/ntk.py``. Usage: ``python benchmarks/core.py [--quick]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import statistics
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp

from lazy_hasty.losses import per_example_loss
from lazy_hasty.models import get_model, init_model, make_apply_fn
from lazy_hasty.regimes import Regime
from lazy_hasty.types import ApplyFn, Params

LR = 0.1
ALPHA = 100.0


@dataclasses.dataclass(frozen=True)
class Timing:
    """Timed repeats per case, seconds per repeat, and a cap on seconds per case."""

    repeats: int
    target_s: float
    budget_s: float


@dataclasses.dataclass
class Setup:
    """A network with its initial parameters and a training batch."""

    name: str
    apply_fn: ApplyFn
    params0: Params
    x: jax.Array
    y: jax.Array


def make_setup(name: str, module: Any, x: jax.Array, y: jax.Array) -> Setup:
    """Initialises ``module`` on ``x`` and packages it as a ``Setup``."""
    params0, state = init_model(module, jax.random.PRNGKey(0), x)
    return Setup(name, make_apply_fn(module, state), params0, x, y)


def setups(quick: bool) -> list[Setup]:
    """The yin-yang MLP (logistic loss) and ResNet18 (cross-entropy)."""
    k1, k2, k3, k4 = jax.random.split(jax.random.PRNGKey(1), 4)
    n_mlp, n_res, width = (16, 2, 8) if quick else (100, 8, 64)
    x_mlp = jax.random.uniform(k1, (n_mlp, 2), minval=-1.0, maxval=1.0)
    y_mlp = jnp.where(jax.random.bernoulli(k2, shape=(n_mlp,)), 1.0, -1.0)
    x_res = jax.random.normal(k3, (n_res, 32, 32, 3))
    y_res = jax.random.randint(k4, (n_res,), 0, 10)
    resnet = get_model("resnet18", num_outputs=10, stem="cifar", norm="none", width=width)
    return [make_setup("MLP 2-60-60-60-1", get_model("mlp"), x_mlp, y_mlp),
            make_setup(f"ResNet18 w={width}", resnet, x_res, y_res)]


def sgd_step(regime: Regime, apply_fn: ApplyFn) -> Callable[..., Any]:
    """Jitted ``step(trainable, params0, x, y, f0) -> (new_trainable, loss)``."""
    lr = regime.learning_rate(LR)

    def loss_fn(trainable, params0, x, y, f0):
        return per_example_loss(regime.predict(apply_fn, params0, trainable, x, f0), y).mean()

    def step(trainable, params0, x, y, f0):
        loss, grads = jax.value_and_grad(loss_fn)(trainable, params0, x, y, f0)
        return jax.tree_util.tree_map(lambda p, g: p - lr * g, trainable, grads), loss

    return jax.jit(step)


def flops(compiled: Any) -> float:
    """XLA's FLOP estimate (NaN if the backend does not report one)."""
    cost = compiled.cost_analysis()
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else {}
    return float((cost or {}).get("flops", math.nan))


def memory_bytes(compiled: Any) -> float:
    """Temporaries + arguments + outputs from ``memory_analysis`` (NaN if absent)."""
    mem = compiled.memory_analysis()
    if mem is None:
        return math.nan
    return float(mem.temp_size_in_bytes + mem.argument_size_in_bytes
                 + mem.output_size_in_bytes)


def calibrate(fn: Callable[..., Any], args: tuple, target_s: float) -> tuple[int, float]:
    """Warms ``fn`` up; returns how many calls fill ``target_s`` and their mean time."""
    jax.block_until_ready(fn(*args))
    calls, start = 0, time.perf_counter()
    while not calls or time.perf_counter() - start < target_s:
        jax.block_until_ready(fn(*args))
        calls += 1
    return calls, (time.perf_counter() - start) / calls


def seconds_per_call(cases: list[tuple[Callable[..., Any], tuple]], timing: Timing
                     ) -> list[float]:
    """Median wall time of each ``fn(*args)`` after warm-up, compile excluded.

    Each repeat runs as many calls as fill ~``target_s`` in the calibration
    pass (its first sample), so dispatch noise does not dominate microsecond
    steps. Further repeats are round-robin over the cases, so a slow spell of a
    shared machine hits all alike; slow calls get fewer repeats (at least the
    calibration one) so that a case takes at most ~``budget_s``.
    """
    calibrated = [calibrate(fn, args, timing.target_s) for fn, args in cases]
    slowest = max(t for _, t in calibrated)
    repeats = min(timing.repeats, int(timing.budget_s / slowest)) - 1
    times = [[t] for _, t in calibrated]
    for _ in range(repeats):
        for (fn, args), (number, _), ts in zip(cases, calibrated, times):
            start = time.perf_counter()
            for _ in range(number):
                out = fn(*args)
            jax.block_until_ready(out)
            ts.append((time.perf_counter() - start) / number)
    return [statistics.median(ts) for ts in times]


def measure(named: list[tuple[str, Callable[..., Any], tuple]], timing: Timing
            ) -> list[tuple[str, float, float, float]]:
    """(name, seconds per call, FLOPs, memory bytes) of each jitted ``fn(*args)``."""
    compiled = [(fn.lower(*args).compile(), args) for _, fn, args in named]
    seconds = seconds_per_call(compiled, timing)
    return [(name, t, flops(c), memory_bytes(c))
            for (name, _, _), t, (c, _) in zip(named, seconds, compiled)]


def step_rows(setup: Setup, timing: Timing) -> list[list[str]]:
    """Table rows for one SGD step per regime, with ratios to the standard step."""
    f0 = jax.jit(setup.apply_fn)(setup.params0, setup.x)
    cases = [("standard", Regime("plain"), None),
             (f"rescaled a={ALPHA:g}, f0 cached", Regime("rescaled", ALPHA), f0),
             (f"rescaled a={ALPHA:g}, uncached", Regime("rescaled", ALPHA), None),
             ("linearized", Regime("linearized"), None)]
    named = [(label, sgd_step(regime, setup.apply_fn),
              (regime.init(setup.params0), setup.params0, setup.x, setup.y, cached))
             for label, regime, cached in cases]
    results = measure(named, timing)
    _, t0, fl0, mem0 = results[0]
    return [[setup.name, label, f"{t * 1e3:.3f}", f"{t / t0:.2f}", f"{fl / 1e9:.4g}",
             f"{fl / fl0:.2f}", f"{mem / 2**20:.3g}", f"{mem / mem0:.2f}"]
            for label, t, fl, mem in results]


def markdown(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table."""
    lines = [header, ["---"] * len(header)] + rows
    return "\n".join("| " + " | ".join(line) + " |" for line in lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke check)")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats")
    args = parser.parse_args()
    # Only costs are measured, so the values drawn do not matter, and the
    # threefry PRNG compiles for ~1 s per parameter shape on XLA:CPU.
    jax.config.update("jax_default_prng_impl", "rbg")
    timing = Timing(3, 0.05, 2.0) if args.quick else Timing(7, 0.2, 10.0)
    if args.repeats:
        timing = dataclasses.replace(timing, repeats=args.repeats)
    print(f"jax {jax.__version__}, backend {jax.default_backend()}, "
          f"{jax.device_count()} device(s) ({jax.devices()[0].device_kind}), "
          f"{os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f}\n")
    all_setups = setups(args.quick)
    steps = [row for s in all_setups for row in step_rows(s, timing)]
    print(markdown(["setup", "step", "ms/step", "time ratio", "GFLOPs", "FLOP ratio",
                    "memory MiB", "memory ratio"], steps))


if __name__ == "__main__":
    main()
