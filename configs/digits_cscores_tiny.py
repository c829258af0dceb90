"""A seconds-long digits C-score run for tests and smoke checks (tiny C-score budget)."""

from configs import digits_cscores


def get_config():
    config = digits_cscores.get_config()
    config.model_kwargs.features = (32,)
    config.num_epochs = (3, 3)
    config.learning_rate = 0.05
    config.group_size = 20
    config.test_size = 100
    config.probe_size = 8
    config.probe_every = 2
    config.cscore_models_per_ratio = 4
    config.cscore_steps = 20
    return config
