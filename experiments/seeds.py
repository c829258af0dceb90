"""Runs one config over several seeds, then draws Fig. 4 (median and min–max band).

python experiments/seeds.py --config=configs/digits_noise.py --seeds=5 --workdir=DIR \\
    [--first_seed=0] [--print_commands] [--noaggregate] [--config.<key>=<value> ...]

Seed ``k`` (``first_seed <= k < first_seed + seeds``) runs, one after the other, as
``python main.py --config=<config> --config.seed=<k> --workdir=DIR/seed_<k> <overrides>``
(a subprocess; every ``--config.<key>=<value>`` given here is passed through
verbatim). A seed whose workdir holds ``COMPLETED`` (written by ``main.py`` after
a successful run) is skipped, so re-launching after a preemption only runs what
is missing; a seed that was interrupted resumes from its last checkpoint. A
failing seed stops the script with that seed's exit code. SIGTERM or SIGINT is
forwarded to the running seed, which checkpoints at its next step and exits
with ``main.py``'s preempted code (75), as this script then does. Seeds run in the
current directory, so a ``--config.dataset=module:function`` found from there
is found by every seed.

When every seed is done, the script aggregates (unless ``--noaggregate``), as
the difficulty spec in the seeds' ``summary.json`` says:
``DIR/fig4.png`` (:func:`lazy_hasty.analysis.plots.plot_seed_bands`: one panel per
group of the spec's panels, against its progress measure) and
``DIR/seeds_summary.json`` (each seed's ``summary.json``, the spec, and for each
of the spec's statistics the mean over seeds with a 95 % Student-t interval (2
seeds or more), the number of seeds of each sign, min, max, and every seed's own
bootstrap interval).

``--print_commands`` prints one self-contained shell command per pending seed
(absolute paths) and exits without running anything.

On a SLURM cluster, one array task per seed, then one job that only aggregates
(all seeds completed, so it runs nothing else)::

    JOB=$(sbatch --parsable --array=0-4 --wrap 'python experiments/seeds.py \\
        --config=configs/digits_noise.py --workdir=$SCRATCH/noise \\
        --first_seed=$SLURM_ARRAY_TASK_ID --seeds=1 --noaggregate')
    sbatch --dependency=afterok:$JOB --wrap 'python experiments/seeds.py \\
        --config=configs/digits_noise.py --workdir=$SCRATCH/noise --seeds=5'

or, from the printed commands (only the seeds still missing)::

    python experiments/seeds.py --config=configs/digits_noise.py \\
        --workdir=$SCRATCH/noise --seeds=5 --print_commands > cmds.txt
    sbatch --array=1-$(wc -l < cmds.txt) --wrap 'eval "$(sed -n ${SLURM_ARRAY_TASK_ID}p cmds.txt)"'
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from absl import app, flags  # noqa: E402

from experiments import common  # noqa: E402
from lazy_hasty.engine import preemption, records  # noqa: E402
from lazy_hasty.analysis import inference
from lazy_hasty.difficulty import DifficultySpec  # noqa: E402

MAIN = os.path.join(ROOT, "main.py")

FLAGS = flags.FLAGS


def define_flags() -> None:
    """This script's flags (defined when run, so importing the module defines none)."""
    flags.DEFINE_string("config", None, "Experiment config file (as for main.py).")
    flags.DEFINE_string("workdir", None, "Parent directory; seed k runs in seed_<k>/.")
    flags.DEFINE_integer("seeds", None, "Number of seeds.", lower_bound=1)
    flags.DEFINE_integer("first_seed", 0, "First seed.", lower_bound=0)
    flags.DEFINE_bool("print_commands", False,
                      "Print a shell command per pending seed and exit.")
    flags.DEFINE_bool("aggregate", True,
                      "Draw fig4.png and write seeds_summary.json once all are done.")
    flags.mark_flags_as_required(["config", "workdir", "seeds"])


_OVERRIDES: list[str] = []
"""The ``--config.<key>=<value>`` arguments, passed through to ``main.py``."""


def parse_flags(argv):
    """absl parsing of this script's flags; ``--config.*`` are kept for ``main.py``."""
    return common.parse_launcher_flags(argv, "seeds.py", {"--config.seed": "--first_seed/--seeds"},
                                       _OVERRIDES)


def seed_command(config: str, workdir: str, seed: int, overrides: list[str]) -> list[str]:
    """The ``main.py`` command line of one seed (absolute paths)."""
    return [sys.executable, MAIN, f"--config={config}", f"--config.seed={seed}",
            f"--workdir={common.seed_dir(workdir, seed)}", *overrides]


def _read_summaries(workdir: str, seeds: list[int]) -> list[dict | None]:
    summaries = []
    for k in seeds:
        path = os.path.join(common.seed_dir(workdir, k), "summary.json")
        summaries.append(json.load(open(path)) if os.path.exists(path) else None)
    return summaries


def aggregate(config: str, workdir: str, seeds: list[int], overrides: list[str]) -> None:
    """Writes ``seeds_summary.json`` and ``fig4.png`` from the seeds' records and the
    difficulty spec their ``summary.json`` carries."""
    summaries = _read_summaries(workdir, seeds)
    found = [s for s in summaries if s is not None]
    if not found:
        print("seeds.py: no seed has a summary.json; nothing to aggregate", file=sys.stderr)
        return
    spec = DifficultySpec.from_dict(found[0]["spec"])
    per_seed = [{"seed": k, "workdir": common.seed_dir(workdir, k), "summary": summary,
                 **{key: summary.get(key) if summary else None for key in spec.statistics}}
                for k, summary in zip(seeds, summaries)]
    out = {"config": config, "overrides": overrides, "seeds": seeds, "spec": spec.to_dict(),
           "per_seed": per_seed,
           **{key: inference.across_seed_summary(key, summaries) for key in spec.statistics}}
    records.write_json(os.path.join(workdir, "seeds_summary.json"), out)
    for key in spec.statistics:
        stats = out[key]
        print(f"seeds.py: {key} mean {stats['mean']}, 95% interval over seeds "
              f"{stats['interval']}, {stats['positive']} of {stats['num_seeds']} seed(s) > 0")
    print(f"seeds.py: wrote {os.path.join(workdir, 'seeds_summary.json')}")
    _draw_fig4(workdir, seeds, spec)


def _draw_fig4(workdir: str, seeds: list[int], spec: DifficultySpec) -> None:
    """Fig. 4: the spec's groups, median and band over seeds, at equal progress."""
    runs = [records.read_jsonl(os.path.join(common.seed_dir(workdir, k), "metrics.jsonl"))
            for k in seeds
            if os.path.exists(os.path.join(common.seed_dir(workdir, k), "metrics.jsonl"))]
    if not runs or not runs[0]:
        print("seeds.py: no metrics.jsonl records; fig4.png not drawn", file=sys.stderr)
        return
    from lazy_hasty.analysis import plots  # matplotlib only when drawing
    regimes = list(dict.fromkeys(r["regime"] for r in runs[0]))
    path = os.path.join(workdir, "fig4.png")
    try:
        plots.plot_seed_bands(path, runs, regimes=regimes, panels=plots.seed_panels(spec),
                              x_key=spec.progress_key, decreasing=spec.decreasing)
        print(f"seeds.py: wrote {path}")
    except ValueError as e:                       # e.g. no shared progress range
        print(f"seeds.py: fig4.png not drawn: {e}", file=sys.stderr)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    config = os.path.abspath(FLAGS.config)
    if not os.path.isfile(config.split(":", 1)[0]) and not os.path.isfile(config):
        sys.exit(f"seeds.py: error: --config file {FLAGS.config!r} not found")
    workdir = os.path.abspath(FLAGS.workdir)
    seeds = list(range(FLAGS.first_seed, FLAGS.first_seed + FLAGS.seeds))
    pending = [k for k in seeds if not records.is_completed(common.seed_dir(workdir, k))]
    for k in seeds:
        if k not in pending:
            print(f"seeds.py: seed {k} already completed in {common.seed_dir(workdir, k)}, "
                  "skipped",
                  file=sys.stderr if FLAGS.print_commands else sys.stdout, flush=True)
    if FLAGS.print_commands:
        for k in pending:
            print(f"cd {shlex.quote(os.getcwd())} && "
                  f"{shlex.join(seed_command(config, workdir, k, _OVERRIDES))}")
        return
    for k in pending:
        cmd = seed_command(config, workdir, k, _OVERRIDES)
        print(f"seeds.py: running seed {k}: {shlex.join(cmd)}", flush=True)
        child = subprocess.Popen(cmd)
        with preemption.forward_to(child):          # the seed checkpoints and stops
            code = child.wait()
        if code == preemption.EXIT_CODE:
            print(f"seeds.py: seed {k} was preempted (workdir {common.seed_dir(workdir, k)}); "
                  "re-run the same command to resume", file=sys.stderr, flush=True)
            sys.exit(code)
        if code != 0:
            print(f"seeds.py: error: seed {k} failed with exit code {code} "
                  f"(workdir {common.seed_dir(workdir, k)}); seeds before it are done, "
                  "re-run the same command to resume", file=sys.stderr, flush=True)
            sys.exit(code if code > 0 else 1)
    if FLAGS.aggregate:
        aggregate(config, workdir, seeds, list(_OVERRIDES))


if __name__ == "__main__":
    define_flags()
    app.run(main, flags_parser=parse_flags)
