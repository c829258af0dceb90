"""Section 4, C-score deciles, CPU scale: digits with C-scores estimated by eq. 5.

python main.py --config=configs/digits_cscores.py --workdir=/tmp/digits_cscores
"""

from configs import difficulty_base


def get_config():
    config = difficulty_base.get_config()
    config.difficulty = "cscores"
    config.score_base = "cscores"              # under a score:<name> difficulty
    return config
