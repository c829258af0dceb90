"""A seconds-long digits label-noise run for tests and smoke checks."""

from configs import digits_noise


def get_config():
    config = digits_noise.get_config()
    config.model_kwargs.features = (32,)
    config.num_epochs = (3, 3)
    config.score_epochs = 3.0
    config.learning_rate = 0.05
    config.group_size = 40
    config.test_size = 100
    config.probe_size = 8
    config.probe_every = 2
    return config
