"""Section 5 / Fig. 3 top: CelebA, blond vs not, spurious attribute Male (GPU/TPU).

python main.py --config=configs/celeba.py --workdir=DIR --config.data_dir=TFDS_DIR

Paper: 20 000 training images, ResNet18 without normalisation from a random
init, 224 x 224 (center crop 178, resize 224, ImageNet normalisation), SGD lr
0.01, momentum 0.9, batch 100, alpha in {0.5, 1, 100}; balanced sets of 180
per (blond, male) group (the authors' code used 150); groups men / women.
"""

import ml_collections

from configs import difficulty_base
from lazy_hasty.data.spurious import IMAGENET_MEAN, IMAGENET_STD


def get_config():
    config = difficulty_base.get_config()
    config.dataset = "celeba"
    config.difficulty = "spurious"
    config.score_base = "spurious"             # under a score:<name> difficulty
    config.distractors = 0
    config.train_size = 20_000
    config.balanced_per_group = 180
    config.image_size = 224
    config.model = "resnet18"
    config.model_kwargs = ml_collections.ConfigDict(
        {"stem": "imagenet", "norm": "none", "width": 64, "blocks": (2, 2, 2, 2),
         "input_mean": IMAGENET_MEAN, "input_std": IMAGENET_STD})
    config.regimes = ("alpha=0.5", "alpha=1", "alpha=100")
    config.num_epochs = (20, 20, 100)
    config.score_epochs = 20.0                  # the alpha = 1 budget
    config.compare = ("alpha=1", "alpha=100")
    config.batch_size = 100
    config.learning_rate = 0.01
    config.momentum = 0.9
    config.test_size = 2000
    config.probe_size = 50
    config.ntk_chunk_size = 10
    config.eval_batch_size = 200
    return config
