"""What every experiment driver shares: config checks and the workdir contract.

The workdir contract: a workdir holding ``COMPLETED`` is a finished run
(``main.py`` does nothing there, or refuses a different config); one holding
checkpoints but no ``COMPLETED`` is resumed by the same command (refused if the
config differs); anything else is (re)started from scratch.
"""

from __future__ import annotations

import json
import os
import sys

import ml_collections
from absl import app, flags, logging

from lazy_hasty.engine import preemption, records

RESUME_FREE_KEYS = ("checkpoint_every_steps", "checkpoints_to_keep", "data_dir",
                    "cscore_cache", "tensorboard", "figures")
"""Config keys that may differ when a run is resumed: they move, pace or mirror files, not
results."""


def check_keys(config: ml_collections.ConfigDict,
               reference: ml_collections.ConfigDict) -> None:
    """Rejects keys the experiment does not know (typos silently ignored are worse)."""
    unknown = sorted(set(config.keys()) - set(reference.keys()))
    if unknown:
        raise ValueError(f"unknown config key(s) {unknown} for experiment "
                         f"{config.experiment!r}; known keys: {sorted(reference.keys())}")


def check_workdir(workdir: str) -> str:
    """Validates the workdir; it is created only when a run's outputs are written."""
    if not workdir:
        raise ValueError("--workdir is required")
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise ValueError(f"--workdir {workdir!r} exists and is not a directory")
    return workdir


def seed_dir(workdir: str, seed: int) -> str:
    """Where seed ``seed`` of an experiment under ``workdir`` runs: ``<workdir>/seed_<seed>``,
    the layout the seed and sweep drivers share."""
    return os.path.join(workdir, f"seed_{seed}")


def check_same_config(workdir: str, config: ml_collections.ConfigDict,
                      ignore=RESUME_FREE_KEYS) -> None:
    """Refuses to continue a run of ``workdir`` made with another config.

    Compares ``config`` with the run's ``config.json`` (keys in ``ignore`` aside).
    """
    path = os.path.join(workdir, "config.json")
    if not os.path.isfile(path):
        raise ValueError(f"--workdir {workdir!r} holds a run but no config.json to check it "
                         "against; use a new --workdir")
    with open(path) as f:
        saved = json.load(f)
    current = json.loads(records.jsonl_line(config.to_dict()))
    missing = object()
    differ = sorted(k for k in set(saved) | set(current) if k not in ignore
                    and saved.get(k, missing) != current.get(k, missing))
    if differ:
        raise ValueError(f"--workdir {workdir!r} holds a run of a different config (it differs "
                         f"in {differ}); re-run with the same config and overrides, or use a "
                         "new --workdir")


def split_overrides(argv: list[str]) -> tuple[list[str], list[str]]:
    """``(other args, --config.* overrides)``; ``--config.k v`` becomes ``--config.k=v``."""
    rest, overrides, i = [], [], 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("--config."):
            if "=" not in arg and i + 1 < len(argv) and not argv[i + 1].startswith("--"):
                arg, i = f"{arg}={argv[i + 1]}", i + 1
            overrides.append(arg)
        else:
            rest.append(arg)
        i += 1
    return rest, overrides


def parse_launcher_flags(argv: list[str], prog: str, reserved: dict[str, str],
                         overrides_out: list[str]) -> list[str]:
    """absl parsing of a launcher's own flags (``seeds.py``, ``sweep.py``).

    The ``--config.*`` overrides go to ``overrides_out`` (passed on to every
    run); ``reserved`` maps an override the launcher sets per run to the flags
    that choose it instead. Errors exit with one line.
    """
    rest, overrides = split_overrides(list(argv))
    for arg in overrides:
        key = arg.split("=", 1)[0]
        if key in reserved:
            sys.exit(f"{prog}: error: {key} is set per run by {prog}; use {reserved[key]}")
    overrides_out[:] = overrides
    try:
        return flags.FLAGS(rest)
    except flags.Error as e:
        sys.exit(f"{prog}: error: {e}")


def parse_fixed_flags(argv: list[str], prog: str, why: str) -> list[str]:
    """:func:`parse_launcher_flags` for a launcher whose configs are fixed: a
    ``--config`` override exits with one line saying ``why``."""
    overrides: list[str] = []
    rest = parse_launcher_flags(argv, prog, {}, overrides)
    if overrides:
        sys.exit(f"{prog}: error: {overrides[0]}: {why}")
    return rest


def launch(prog: str, argv: list[str], run) -> None:
    """A reporting launcher's ``main``: no positional arguments, INFO logging, then
    ``run(workdir)`` (``--workdir``, absolute) through :func:`report_run`."""
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.INFO)
    workdir = os.path.abspath(flags.FLAGS.workdir)
    report_run(prog, lambda: run(workdir))


def report_run(prog: str, run) -> None:
    """Runs ``run()`` (which returns a report with ``headline`` and ``paths``) with
    graceful preemption; prints the headline and the files written. A preemption exits
    with :data:`preemption.EXIT_CODE`, bad input with one line and exit code 1."""
    try:
        with preemption.graceful():
            report = run()
    except preemption.Preempted as e:
        print(f"{prog}: {e}", file=sys.stderr)
        sys.exit(preemption.EXIT_CODE)
    except (ValueError, FileNotFoundError, ImportError) as e:
        sys.exit(f"{prog}: error: {e}")
    print(json.dumps(report["headline"], indent=1))
    print(f"{prog}: wrote {', '.join(report['paths'])}")
