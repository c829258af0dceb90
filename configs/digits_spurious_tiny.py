"""A seconds-long digits spurious-correlation run for tests and smoke checks."""

from configs import digits_spurious


def get_config():
    config = digits_spurious.get_config()
    config.model_kwargs.features = (32,)
    config.num_epochs = (2, 2, 2)
    config.score_epochs = 2.0
    config.balanced_per_group = 10
    config.test_size = 100
    config.probe_size = 8
    config.probe_every = 2
    return config
