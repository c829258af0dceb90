"""Section 5 / Fig. 3 bottom: Waterbirds with an ImageNet-pretrained ResNet18 (GPU/TPU).

python main.py --config=configs/waterbirds.py --workdir=DIR \
    --config.data_dir=/path/to/waterbird_complete95_forest2water2 \
    --config.pretrained=/path/to/resnet18_imagenet.npz

The weights are a torchvision ``resnet18`` state dict supplied by the user
(convert once with ``scripts/convert_torchvision_resnet18.py``); the head is
replaced by a fresh binary layer and BatchNorm is frozen with the imported
statistics (affine parameters train). Paper: 4 795 training images, SGD lr
0.001, momentum 0.9, batch 100, alpha in {0.5, 1, 100}; groups same / opposite.
"""

from configs import celeba


def get_config():
    config = celeba.get_config()
    config.dataset = "waterbirds"
    config.model_kwargs.norm = "frozen_batchnorm"
    config.learning_rate = 0.001
    config.num_epochs = (50, 50, 200)
    config.test_size = 0
    return config
