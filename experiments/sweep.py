"""Sweeps alpha (or any numeric config key) over seeds: Fig. 5 and ``sweep_summary.json``.

python experiments/sweep.py --config=configs/digits_noise.py --workdir=DIR [--seeds=5] \\
    [--values=0.5,1,3,10,30,100,300,1000] [--first_seed=0] [--axis=alpha --regime=alpha=1] \\
    [--reference_epochs=0] [--max_epochs=0] [--lr_grid=0.25,0.5,1,2,4] [--nobatch] \\
    [--print_commands] [--config.<key>=<value> ...]

What runs. For every seed ``k``, the exactly linearized reference
``DIR/linearized/seed_<k>`` trains for ``--reference_epochs`` (default: the
config's largest ``num_epochs``); the progress it reaches (the spec's progress
measure, its best value) is seed ``k``'s target. Then every value ``v`` trains
``DIR/alpha=<v>/seed_<k>`` from the same ``params0`` and minibatch order until
its first record reaches that target, at most ``--max_epochs`` (default: twice
the reference's), so every run covers the range the comparison needs without
epochs tuned per alpha. Each run is a ``main.py`` run of one regime (same
records; ``--print_commands`` prints those commands) with ``metrics.jsonl``,
``per_example.npz``, learning times and ``summary.json`` in its workdir.

Another axis: ``--axis=model_kwargs.features --values=64,256,1024
--regime=alpha=1`` runs ``--config.<axis>=<v>`` (a tuple key gets ``v`` in
every entry: every hidden layer ``v`` wide) and gives each value its own
linearized reference: ``DIR/model_kwargs.features=64/{alpha=1,linearized}/seed_<k>``.

Learning rate per value: ``--lr_grid=0.25,0.5,1,2,4`` (multipliers of
``config.learning_rate``) gives each value the rate that suits it rather than one
rate for all. Before a value's swept runs, every grid rate trains the swept
regime from every seed for ``config.lr_search_steps`` steps
(``DIR/<value dir>/lr_search/lr=<m>/seed_<k>``, ordinary runs like the others);
``config.lr_search_criterion`` scores each (the training loss or the progress at its
last record, or the step it first reaches ``config.lr_search_target``), and the rate
with the best mean over seeds among those no seed diverged at
(:func:`lazy_hasty.analysis.lr_search.select`) trains that value's swept runs
(``--config.learning_rate``); the linearized references keep the config's rate.
``DIR/<value dir>/lr_search.json`` holds the scores and the choice. Without
``--lr_grid`` no search runs and every run trains at the config's rate.

Batching: the seeds of one value train in lockstep as one vmapped program
(:func:`lazy_hasty.engine.loop.train_members`: the same records as one at a time,
``--nobatch``). A run that diverges gets ``DIVERGED`` in its workdir and the
sweep goes on. Every run checkpoints as a ``main.py`` run does
(``checkpoint_every_steps``); SIGTERM/SIGINT stop the sweep at a step with a
checkpoint of every run in training and exit code 75. The same command then
resumes: runs holding ``COMPLETED`` or ``DIVERGED`` are skipped and the others
continue from their checkpoints, to the records of an uninterrupted sweep.
``--print_commands`` prints one command per pending run,
references (and search runs) first: a value's targets (and rate) are known once
its references (and search runs) are done, so run what it prints, then ask again.

Outputs in ``DIR`` (:mod:`lazy_hasty.analysis.sweep`): ``sweep_summary.json`` (per
statistic of the spec and value: across-seed mean, 95 % Student-t interval,
sign counts, per-seed values and bootstrap intervals, diverged seeds; the
rank correlation with log alpha; end-of-training linearity; learning-time
rank correlations; with ``--lr_grid``, ``learning_rates``: per value, the
``lr_search.json`` contents), ``fig5.png`` and ``learning_times.png`` (the config's
``compare`` pair at the first seed, when both are swept).
"""

from __future__ import annotations

import os
import shlex
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from absl import app, flags, logging  # noqa: E402

from experiments import common, sweep_runs  # noqa: E402
from lazy_hasty.engine import preemption  # noqa: E402

FLAGS = flags.FLAGS
DEFAULT_VALUES = "0.5,1,3,10,30,100,300,1000"
RESERVED = {f"--config.{k}": "the sweep's flags" for k in
            ("seed", "regimes", "num_epochs", "compare", "stop_at_progress")}


def define_flags() -> None:
    """This script's flags (defined when run, so importing the module defines none)."""
    flags.DEFINE_string("config", None, "Experiment config file (as for main.py).")
    flags.DEFINE_string("workdir", None, "Sweep directory.")
    flags.DEFINE_string("axis", "alpha", "'alpha', or a numeric config key to sweep.")
    flags.DEFINE_string("values", DEFAULT_VALUES, "Comma-separated values of the axis.")
    flags.DEFINE_string("regime", "alpha=1", "The regime trained at each value of another axis.")
    flags.DEFINE_integer("seeds", 5, "Number of seeds.", lower_bound=1)
    flags.DEFINE_integer("first_seed", 0, "First seed.", lower_bound=0)
    flags.DEFINE_float("reference_epochs", 0, "Epochs of the linearized references "
                       "(0: the config's largest num_epochs).", lower_bound=0)
    flags.DEFINE_float("max_epochs", 0, "Cap of the swept runs (0: twice the references').",
                       lower_bound=0)
    flags.DEFINE_string("lr_grid", None, "Comma-separated multipliers of config.learning_rate "
                        "searched per value before its swept runs (default: no search).")
    flags.DEFINE_bool("batch", True, "Train the seeds of a value as one vmapped program.")
    flags.DEFINE_bool("print_commands", False, "Print a main.py command per pending run.")
    flags.mark_flags_as_required(["config", "workdir"])


_OVERRIDES: list[str] = []


def parse_flags(argv):
    return common.parse_launcher_flags(argv, "sweep.py", RESERVED, _OVERRIDES)


def _print_commands(plan: sweep_runs.Plan) -> None:
    """Prints the pending references and search runs or, once none is left, the pending
    swept runs, one ``main.py`` command each."""
    pending = plan.pending_references() + plan.pending_searches()
    if pending:
        what = "references and learning-rate search runs" if plan.search else "references"
        print(f"sweep.py: the swept runs follow once these {what} are done; run these, "
              "then print again", file=sys.stderr)
    else:
        pending = plan.pending_swept()
    for run in pending:
        print(f"cd {shlex.quote(os.getcwd())} && {shlex.join(plan.command(run))}")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.INFO)
    try:
        plan = sweep_runs.make_plan(
            os.path.abspath(FLAGS.config), os.path.abspath(FLAGS.workdir), FLAGS.axis,
            FLAGS.values, FLAGS.regime, list(range(FLAGS.first_seed,
                                                   FLAGS.first_seed + FLAGS.seeds)),
            FLAGS.reference_epochs, FLAGS.max_epochs, list(_OVERRIDES), FLAGS.lr_grid)
        if FLAGS.print_commands:
            return _print_commands(plan)
        with preemption.graceful():
            sweep_runs.run_all(plan, batch=FLAGS.batch)
        paths = sweep_runs.aggregate(plan)
    except preemption.Preempted as e:
        print(f"sweep.py: {e}", file=sys.stderr)
        sys.exit(preemption.EXIT_CODE)
    except (ValueError, FileNotFoundError, ImportError) as e:
        sys.exit(f"sweep.py: error: {e}")
    print(f"sweep.py: wrote {', '.join(paths)}")


if __name__ == "__main__":
    define_flags()
    app.run(main, flags_parser=parse_flags)
