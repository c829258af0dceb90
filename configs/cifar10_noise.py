"""Section 4 / Fig. 2 bottom: CIFAR-10 with 15% random labels, ResNet18 (GPU/TPU).

python main.py --config=configs/cifar10_noise.py --workdir=DIR --config.data_dir=TFDS_DIR

Paper hyper-parameters: ResNet18 without normalisation, SGD lr 0.01, momentum
0.9, batch 125; train = CIFAR-10 train[:40k], held-out = train[40k:]. The
alpha = 1 run takes 200 epochs, alpha = 100 needs 1000 to converge.
"""

import ml_collections

from configs import difficulty_base


def get_config():
    config = difficulty_base.get_config()
    config.dataset = "cifar10"
    config.difficulty = "noise"
    config.label_noise = 0.15
    config.distractors = 0
    config.model = "resnet18"
    config.model_kwargs = ml_collections.ConfigDict(   # blocks (1, 1, 1, 1): a ResNet10
        {"stem": "cifar", "norm": "none", "width": 64, "blocks": (2, 2, 2, 2)})
    config.regimes = ("alpha=1", "alpha=100")
    config.num_epochs = (200, 1000)
    config.score_epochs = 200.0                 # the alpha = 1 budget
    config.batch_size = 125
    config.learning_rate = 0.01
    config.momentum = 0.9
    config.group_size = 1000            # examples evaluated per group at each record
    config.test_size = 2000
    config.probe_size = 100             # NTK on 100 x 10 outputs
    config.ntk_chunk_size = 10
    config.eval_batch_size = 500
    return config
