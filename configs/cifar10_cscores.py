"""Section 4 / Fig. 2 top: CIFAR-10 C-score deciles, ResNet18 (GPU/TPU).

python main.py --config=configs/cifar10_cscores.py --workdir=DIR --config.data_dir=TFDS_DIR \
    --config.cscores=/path/to/cifar10-cscores-orig-order.npz

The published C-scores (Jiang et al. 2021) are read from a path or URL and
checked against the dataset's labels in original CIFAR-10 order.
"""

from configs import cifar10_noise

CSCORES_URL = ("https://pluskid.github.io/structural-regularity/cscores/"
               "cifar10-cscores-orig-order.npz")


def get_config():
    config = cifar10_noise.get_config()
    config.difficulty = "cscores"
    config.score_base = "cscores"              # under a score:<name> difficulty
    config.cscores = CSCORES_URL
    config.group_size = 500             # per decile, train and held-out
    return config
