"""Section 5 CPU twin: digits < 5 on a faint red/green background that agrees with
the label for 90% of the training examples (majority) and disagrees for 10%
(minority). The balanced test set paints every test digit on both colours.

python main.py --config=configs/digits_spurious.py --workdir=/tmp/digits_spurious
python experiments/seeds.py --config=configs/digits_spurious.py --seeds=5 --workdir=DIR
"""

from configs import difficulty_base


def get_config():
    config = difficulty_base.get_config()
    config.dataset = "digits_spurious"
    config.difficulty = "spurious"
    config.score_base = "spurious"             # under a score:<name> difficulty
    config.distractors = 0
    config.regimes = ("alpha=0.5", "alpha=1", "alpha=100")
    config.num_epochs = (100, 100, 300)
    config.compare = ("alpha=1", "alpha=100")
    config.majority_fraction = 0.9
    config.cue_strength = 0.1
    config.balanced_per_group = 45      # the training set's smallest combination has ~49
    return config
