"""Entry point: python main.py --config=configs/<experiment>.py --workdir=DIR.

The config names its experiment (``config.experiment``); the matching driver in
``experiments/`` runs it. Overrides work as usual: ``--config.seed=3``.
"""

import importlib
import sys

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from lazy_hasty import records

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for records and figures.")
_DEBUG = flags.DEFINE_bool("debug", False, "Show full tracebacks for configuration errors.")
_DISTRIBUTED = flags.DEFINE_bool(
    "distributed", False, "Call jax.distributed.initialize() first (multi-host data "
    "parallelism; coordinator and process ids come from the cluster environment).")
flags.mark_flags_as_required(["config", "workdir"])

EXPERIMENTS = ("yinyang", "difficulty")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.INFO)
    if _DISTRIBUTED.value:
        jax.distributed.initialize()
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
        driver.run(config, _WORKDIR.value)
    except (ValueError, FileNotFoundError) as e:
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
