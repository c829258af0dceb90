"""Section 4, label noise, CPU scale: scikit-learn digits with 15% noisy labels.

python main.py --config=configs/digits_noise.py --workdir=/tmp/digits_noise
"""

from configs import difficulty_base


def get_config():
    config = difficulty_base.get_config()
    config.difficulty = "noise"
    return config
