"""Richness beyond alpha: the four experiments of docs/richness.md.

python experiments/richness.py --experiment=eta_star --workdir=DIR [--scale=cpu] [--seeds=3]

``--experiment``:

* ``eta_star``: the best learning rate against gamma under muP (alpha = 1), with the
  slope of ``log eta*`` against ``log gamma`` on each side of the rule's crossover;
* ``continuum``: the alpha sweep from the ultra-rich side (alpha = 0.01) to the
  near-lazy one (alpha = 1000), each value at its own best rate;
* ``width``: hidden widths at alpha = 1, under the standard parameterization and under
  muP at gamma = 1, each width at its own best rate;
* ``collapse``: every run of the three above (run first if missing), its hastiness
  against its end-of-training sign similarity and NTK alignment.

Each experiment is one or more ``experiments/sweep.py`` sweeps with ``--lr_grid``
(``DIR/<sweep>/``, resumable like any sweep: the same command goes on after a
preemption, exit code 75), then its analysis: ``DIR/<experiment>.json``, a table
``DIR/<experiment>.md`` and a figure ``DIR/<experiment>.png``. ``--scale=cpu`` is
the digits noise twin's MLP (minutes on 2 cores); ``--scale=gpu`` trains the
CIFAR-10 ResNet18 for ``eta_star`` and ``continuum`` and widths up to 4096 for
``width``, with 5 seeds.
"""

from __future__ import annotations

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from absl import app, flags  # noqa: E402

from experiments import common, richness_study  # noqa: E402

FLAGS = flags.FLAGS


def define_flags() -> None:
    """This script's flags (defined when run, so importing the module defines none)."""
    flags.DEFINE_enum("experiment", None, list(richness_study.EXPERIMENTS),
                      "Which experiment of docs/richness.md to run.")
    flags.DEFINE_string("workdir", None, "Directory of the experiments' sweeps and reports.")
    flags.DEFINE_enum("scale", "cpu", list(richness_study.SCALES),
                      "cpu: the digits MLP; gpu: CIFAR-10 ResNet18 and wider MLPs.")
    flags.DEFINE_integer("seeds", 0, "Number of seeds (0: 3 at cpu scale, 5 at gpu).",
                         lower_bound=0)
    flags.mark_flags_as_required(["experiment", "workdir"])


def parse_flags(argv):
    """absl parsing; a bad flag or a ``--config`` override exits with one line."""
    return common.parse_fixed_flags(argv, "richness.py", "the experiments' configs are fixed "
                                    "(docs/richness.md); run experiments/sweep.py for another "
                                    "sweep")


def main(argv):
    common.launch("richness.py", argv, lambda workdir: richness_study.run(
        FLAGS.experiment, workdir, FLAGS.scale, FLAGS.seeds))


if __name__ == "__main__":
    define_flags()
    app.run(main, flags_parser=parse_flags)
