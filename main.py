"""Entry point: python main.py --config=configs/<experiment>.py --workdir=DIR.

The config names its experiment (``config.experiment``); the matching driver in
``experiments/`` runs it. Overrides work as usual: ``--config.seed=3``.

Re-running a command is safe: a workdir marked ``COMPLETED`` is left as it is
(nothing runs; a different config there is refused), and an unfinished run
with checkpoints (the example-difficulty experiments) resumes from its newest
one. Exit codes: 0 success (or already completed), 1 a configuration or data
error (one line on stderr), 3 training diverged (one line naming the regime,
step and last good checkpoint; the workdir gets ``DIVERGED`` holding it), 75
preempted: SIGTERM or SIGINT stopped an example-difficulty run at a step boundary
after a checkpoint (one line; re-run the same command to resume; a scheduler can
requeue on this code).
"""

import importlib
import os
import sys

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from experiments import common
from lazy_hasty.engine import checkpoint, preemption, records

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for records and figures.")
_DEBUG = flags.DEFINE_bool("debug", False, "Show full tracebacks for configuration errors.")
_DISTRIBUTED = flags.DEFINE_bool(
    "distributed", False, "Call jax.distributed.initialize() first (multi-host data "
    "parallelism; coordinator and process ids come from the cluster environment).")
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None, "With --distributed, outside a detected cluster: the "
    "host:port of process 0 (then --num_processes and --process_id are needed too).")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "With --distributed: how many.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "With --distributed: this one's id.")
flags.mark_flags_as_required(["config", "workdir"])

DIVERGED_EXIT_CODE = 3

EXPERIMENTS = ("yinyang", "difficulty")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.INFO)
    checkpoint.quiet_orbax_logs()
    if _DISTRIBUTED.value:
        jax.distributed.initialize(coordinator_address=_COORDINATOR.value,
                                   num_processes=_NUM_PROCESSES.value,
                                   process_id=_PROCESS_ID.value)
    try:
        config = _CONFIG.value
        name = config.get("experiment")
    except OSError as e:                      # missing or broken config file
        detail = " ".join(line.strip() for line in str(e).splitlines()[-3:])
        sys.exit(f"main.py: error: cannot load --config: {detail}")
    if name not in EXPERIMENTS:
        sys.exit(f"main.py: error: unknown experiment {name!r} in config; "
                 f"choose one of {EXPERIMENTS}")
    driver = importlib.import_module(f"experiments.{name}")
    try:
        if records.is_completed(_WORKDIR.value):
            common.check_same_config(_WORKDIR.value, config)
            print(f"main.py: {_WORKDIR.value} already holds a completed run of this config; "
                  "nothing to do (use a new --workdir to run it again)", file=sys.stderr)
            return
        driver.run(config, _WORKDIR.value)
    except preemption.Preempted as e:        # SIGTERM/SIGINT: stopped at a step, saved
        print(f"main.py: {e}", file=sys.stderr)
        sys.exit(preemption.EXIT_CODE)
    except FloatingPointError as e:          # loop.NonFiniteLossError: divergence
        if _DEBUG.value:
            raise
        if jax.process_index() == 0 and os.path.isdir(_WORKDIR.value):
            records.mark_diverged(_WORKDIR.value, str(e))      # sweeps count it, go on
        print(f"main.py: error: {e}", file=sys.stderr)
        sys.exit(DIVERGED_EXIT_CODE)
    except (ValueError, FileNotFoundError, ConnectionError, ImportError) as e:
        if _DEBUG.value:
            raise
        sys.exit(f"main.py: error: {e}")
    if jax.process_index() == 0:
        records.mark_completed(_WORKDIR.value)


def parse_flags(argv):
    """absl flag parsing with one-line errors instead of a traceback wall."""
    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        sys.exit(f"main.py: error: {e}")
    except (AttributeError, KeyError) as e:   # ml_collections: override of a missing key
        key = str(e).strip("\"'")
        sys.exit(f"main.py: error: unknown config key {key!r} in a --config.<key> override; "
                 "valid keys are those set in the config file")


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
