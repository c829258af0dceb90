"""A seconds-long yin-yang run for tests and smoke checks."""

from configs import yinyang


def get_config():
    config = yinyang.get_config()
    config.num_runs = 4
    config.num_steps = 2_000
    config.learning_rate = 0.5
    config.grid_resolution = 16
    return config
