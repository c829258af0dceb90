"""Cost of the per-example difficulty scores (docs/scores.md), side by side in one run.

Two set-ups: the digits noise twin (``configs/digits_noise.py``, regime alpha=1,
its 1000 steps) and a CIFAR-10-shaped ResNet18 (width 64, batch 125, the
evaluated groups of ``configs/cifar10_noise.py``: 3 training groups of 1000
examples and 2000 test examples, ``train/all`` scored). For each, compile
excluded, medians of repeats (5 for the digits, 2 for the ResNet):

- one SGD step of the regime;
- one record's evaluation of every group with the scores' outputs (loss,
  correctness, margin, label probability, EL2N: ``train.evaluate``) and
  without them (loss and correctness only);
- GraNd of the scored group, once per regime (the ResNet's on 64 examples,
  scaled to the group's 1000: its cost is linear in the examples).

The scores' cost per step is ``(records * extra evaluation + GraNd) / steps``,
reported as a fraction of the step, with GraNd compiled and with its compile
(once per run: a new network function compiles anew). Records and steps: the digits run's own;
for the ResNet, ``configs/cifar10_noise.py``'s alpha=1 budget (200 epochs of
40,000 examples) and 250 records (50 log-spaced and a rung for each 4 % fall of
the loss from 2.3 to 0.001). Usage: ``python benchmarks/scores.py [--quick]``.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from configs import digits_noise  # noqa: E402
from experiments import difficulty  # noqa: E402
from lazy_hasty import losses, models, regimes  # noqa: E402
from lazy_hasty.engine import evaluation, loop, train  # noqa: E402


def _median_seconds(fn, repeats: int) -> float:
    """Median wall time of ``fn()`` (its result blocked on), after one untimed call."""
    jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _evaluations(evaluator, apply_fn, regime, params0, params, repeats) -> tuple[float, float]:
    """Seconds of one record's evaluation with and without the scores' outputs (the
    same batches, one jitted call each, results fetched to the host)."""
    with_scores = lambda: evaluator.per_example(apply_fn, regime, params0, params)

    @jax.jit
    def plain(p, x, y):
        logits = regime.predict(apply_fn, params0, p, x)
        return losses.per_example_loss(logits, y), losses.per_example_correct(logits, y)

    b = evaluator.batch_size

    def without():
        return [np.asarray(a) for i in range(0, len(evaluator._y), b)
                for a in plain(params, evaluator._x[i:i + b], evaluator._y[i:i + b])]
    return _median_seconds(with_scores, repeats), _median_seconds(without, repeats)


def _first_call_seconds(fn) -> float:
    """Wall time of ``fn()``'s first call: compile and run."""
    start = time.perf_counter()
    jax.block_until_ready(fn())
    return time.perf_counter() - start


def _step_seconds(apply_fn, regime, params0, x, y, lr, repeats) -> float:
    opt = train.regime_optimizer(regime, "sgd", lr, 0.9)
    step = jax.jit(train.make_train_step(apply_fn, regime, opt))
    state = train.init_state(regime, params0, opt)
    return _median_seconds(lambda: step(state, params0, x, y), repeats)


def _report(name, step, evals, grand, records, steps) -> None:
    """One table row; ``grand``: (first call with its compile, compiled call) seconds."""
    extra = evals[0] - evals[1]
    per_step = (records * extra + grand[1]) / steps
    print(f"| {name} | {step * 1e3:.1f} | {evals[1] * 1e3:.1f} | {evals[0] * 1e3:.1f} | "
          f"{grand[1]:.2f} ({grand[0]:.1f} with its compile) | {records} | {steps} | "
          f"{100 * per_step / step:.2f} % | {100 * (records * extra + grand[0]) / steps / step:.1f} % |")


def digits(repeats: int) -> None:
    config = digits_noise.get_config()
    config.regimes, config.num_epochs, config.checkpoint_every_steps = ("alpha=1",), (100,), 0
    with tempfile.TemporaryDirectory() as tmp:
        prep = difficulty.prepare(config, tmp)
        options, setup = prep.options[0], prep.setup
        hooks = loop.RecordList()
        loop.train_regime(setup.apply_fn, prep.parsed[0], setup.params0, prep.data.train,
                          options, setup.evaluator, hooks)
    regime = prep.parsed[0]
    train_set = prep.data.train
    idx = loop.batch_indices(options.seed, 0, len(train_set.y), options.batch_size)
    step = _step_seconds(setup.apply_fn, regime, setup.params0, jnp.asarray(train_set.x[idx]),
                         jnp.asarray(train_set.y[idx]), options.learning_rate, repeats)
    evals = _evaluations(setup.evaluator, setup.apply_fn, regime, setup.params0,
                         setup.params0, repeats)
    call = lambda: setup.evaluator.grand(setup.apply_fn, regime, setup.params0, setup.params0)
    grand = (_first_call_seconds(call), _median_seconds(call, repeats))
    _report("digits MLP (256, 256), batch 100", step, evals, grand, len(hooks.records),
            options.num_steps)


def resnet(repeats: int, grand_examples: int = 64) -> None:
    rng = np.random.default_rng(0)
    module = models.get_model("resnet18", num_outputs=10, width=64, stem="cifar", norm="none")
    x = rng.normal(size=(125, 32, 32, 3)).astype(np.float32)
    y = rng.integers(0, 10, 125).astype(np.int32)
    params0, state = models.init_model(module, jax.random.PRNGKey(0), x[:1])
    apply_fn, regime = models.make_apply_fn(module, state), regimes.parse_regime("alpha=1")
    step = _step_seconds(apply_fn, regime, params0, jnp.asarray(x), jnp.asarray(y), 0.01,
                         repeats)
    group = lambda n: (rng.normal(size=(n, 32, 32, 3)).astype(np.float32),
                       rng.integers(0, 10, n).astype(np.int32))
    groups = {"train/clean": group(1000), "train/noisy": group(1000), "train/all": group(1000),
              "test/all": group(2000)}
    evaluator = evaluation.GroupEvaluator(groups, batch_size=500)
    evals = _evaluations(evaluator, apply_fn, regime, params0, params0, repeats)
    small = evaluation.GroupEvaluator({"train/all": group(grand_examples)},
                                      score_group="train/all", score_chunk=8)
    call = lambda: small.grand(apply_fn, regime, params0, params0)
    first = _first_call_seconds(call)
    once = _median_seconds(call, max(1, repeats // 3))
    grand = (first + once * (1000 / grand_examples - 1), once * 1000 / grand_examples)
    steps = 200 * (40_000 // 125)
    records = 50 + math.ceil(math.log(2.3 / 0.001) / math.log(1 / 0.96))
    _report("ResNet18 width 64, batch 125 (GraNd scaled from 64 examples)", step, evals,
            grand, records, steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 repeat, digits only")
    args = parser.parse_args()
    repeats = 1 if args.quick else 5
    print("| set-up | step ms | evaluation ms, without scores | with scores | GraNd s, once "
          "| records | steps | scores per step, compiled | with GraNd's compile |")
    print("|---|---|---|---|---|---|---|---|---|")
    digits(repeats)
    if not args.quick:
        resnet(2)


if __name__ == "__main__":
    main()
