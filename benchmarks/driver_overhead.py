"""The driver's training steps against a bare jitted loop of the same step.

On ``configs/digits_noise.py`` (regime alpha=1, its 1000 steps, seed 0), side
by side in one process, compile time excluded from both (each is run once
before it is timed, through a JAX compilation cache):

- *bare*: ``jax.jit(train.make_train_step(...))`` over the run's own
  minibatches, all put on the device beforehand, one ``block_until_ready`` at
  the end: the least any driver can do;
- *driver*: :func:`lazy_hasty.engine.loop.train_regime` as ``main.py`` runs it
  (minibatch indices, gather, divergence guard, loss read one step late,
  record schedule), minus the time its records spend in group evaluation and
  in the linearity probe, which are timed and reported apart.

Both with the training set on the device (``--device_data_mb``, default
1024) and on the host (``--device_data_mb=0``). Usage: ``python
benchmarks/driver_overhead.py [--repeats=3] [--quick]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", tempfile.mkdtemp(prefix="jax_cache_"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")

import jax  # noqa: E402
import numpy as np  # noqa: E402

from configs import digits_noise  # noqa: E402
from experiments import difficulty  # noqa: E402
from lazy_hasty.engine import loop, sharding, train  # noqa: E402


class Timed:
    """Wraps an evaluator or probe, adding the seconds spent in its calls to ``seconds``."""

    def __init__(self, inner, names: tuple[str, ...] = ("__call__",)):
        self.inner, self.seconds = inner, 0.0
        for name in names:
            setattr(self, name, self._timed(getattr(inner, name)))

    def _timed(self, fn):
        def call(*args, **kwargs):
            start = time.perf_counter()
            out = jax.block_until_ready(fn(*args, **kwargs))
            self.seconds += time.perf_counter() - start
            return out
        return call

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def __call__(self, *args, **kwargs):
        return self.__dict__["__call__"](*args, **kwargs)


def _driver(prep, options) -> tuple[float, float, float]:
    """Seconds of train_regime: total, in group evaluation, in the probe."""
    evaluator = Timed(prep.setup.evaluator, ("per_example",))
    probe = Timed(prep.setup.probe)
    start = time.perf_counter()
    params = loop.train_regime(prep.setup.apply_fn, prep.parsed[0], prep.setup.params0,
                                    prep.data.train, options, evaluator,
                                    loop.RecordList(), probe)
    jax.block_until_ready(params)
    return time.perf_counter() - start, evaluator.seconds, probe.seconds


def _bare(prep, options) -> float:
    """Seconds of the bare loop over the same minibatches (already on the device)."""
    regime, train_set = prep.parsed[0], prep.data.train
    opt = train.regime_optimizer(regime, options.optimizer, options.learning_rate,
                                 options.momentum)
    step = jax.jit(train.make_train_step(prep.setup.apply_fn, regime, opt))
    mesh = sharding.data_mesh()
    n = len(train_set.y)
    batches = [sharding.shard_batch((train_set.x[i], train_set.y[i]), mesh) for i in
               (loop.batch_indices(options.seed, s, n, options.batch_size)
                for s in range(options.num_steps))]
    params0 = sharding.replicate(prep.setup.params0, mesh)
    state = sharding.replicate(train.init_state(regime, params0, opt), mesh)
    jax.block_until_ready(batches)
    start = time.perf_counter()
    for batch in batches:
        state, _ = step(state, params0, *batch)
    jax.block_until_ready(state)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="100 steps, 1 repeat")
    args = parser.parse_args()
    config = digits_noise.get_config()
    config.regimes, config.num_epochs, config.checkpoint_every_steps = ("alpha=1",), (100,), 0
    if args.quick:
        config.num_epochs, args.repeats = (10,), 1
    for budget in (1024, 0):
        config.device_data_mb = budget
        with tempfile.TemporaryDirectory() as tmp:
            prep = difficulty.prepare(config, tmp)
        options = prep.options[0]
        _driver(prep, options), _bare(prep, options)           # compile, warm up
        runs = [(_driver(prep, options), _bare(prep, options)) for _ in range(args.repeats)]
        steps = [d[0] - d[1] - d[2] for d, _ in runs]
        bare = [b for _, b in runs]
        print(f"data on {'device' if budget else 'host'}: {options.num_steps} steps; "
              f"driver steps {statistics.median(steps):.2f} s (records' evaluation "
              f"{statistics.median(d[1] for d, _ in runs):.2f} s, probe "
              f"{statistics.median(d[2] for d, _ in runs):.2f} s), bare loop "
              f"{statistics.median(bare):.2f} s; ratio "
              f"{statistics.median(np.array(steps) / np.array(bare)):.3f}")


if __name__ == "__main__":
    main()
