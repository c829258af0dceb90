"""Do the notions of difficulty agree, and does the regime change the ranking?

python experiments/agreement.py --workdir=DIR [--seeds=5] [--twins=noise,cscores,spurious]

For each digits twin and seed, one run of alpha=1, alpha=100 and the linearized
regime (``DIR/<twin>/seed_<k>``; the same command resumes), then from its files:

* per regime, the Spearman correlation between every pair of notions over the
  training examples, each oriented so that a positive value agrees on what is hard:
  the run's eight scores (``scores.npz``) and the twin's own notion (a noisy label,
  a low C-score decile, the spurious minority); and each score between regimes;
* per notion, the hastiness of alpha=1 over alpha=100 from this run's records: the
  twin's own (``summary.json``) and each score's quantile split, the score taken from
  reference runs (:mod:`experiments.score_difficulty`), at equal training loss;
* per regime, the Spearman correlation of the measured learning times with the
  initial kernel's closed-form prediction (:mod:`lazy_hasty.analysis.spectral`), and
  per own group the share of its initial residual in the kernel's top eigenvectors.

Across seeds: the mean, the 95 % t interval and the signs
(:func:`lazy_hasty.analysis.inference.across_seeds`), in ``DIR/agreement.json`` and
the tables of ``DIR/agreement.md`` (docs/scores.md).
"""

from __future__ import annotations

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from absl import app, flags  # noqa: E402

from experiments import agreement_study, common  # noqa: E402

FLAGS = flags.FLAGS


def define_flags() -> None:
    """This script's flags (defined when run, so importing the module defines none)."""
    flags.DEFINE_string("workdir", None, "Directory of the runs and the tables.")
    flags.DEFINE_integer("seeds", 5, "Number of seeds (at least 2).", lower_bound=2)
    flags.DEFINE_list("twins", list(agreement_study.TWINS), "The digits twins to run.")
    flags.register_validator("twins", lambda twins: bool(twins) and set(twins) <= set(
        agreement_study.TWINS), f"--twins must name some of {tuple(agreement_study.TWINS)}")
    flags.mark_flags_as_required(["workdir"])


def parse_flags(argv):
    """absl parsing; a bad flag or a ``--config`` override exits with one line."""
    return common.parse_fixed_flags(argv, "agreement.py",
                                    "the twins' configs are fixed (docs/scores.md)")


def main(argv):
    common.launch("agreement.py", argv, lambda workdir: agreement_study.run(
        workdir, FLAGS.twins, list(range(FLAGS.seeds))))


if __name__ == "__main__":
    define_flags()
    app.run(main, flags_parser=parse_flags)
