"""A seconds-long digits C-score run for tests and smoke checks (tiny C-score budget)."""

from configs import digits_noise_tiny


def get_config():
    config = digits_noise_tiny.get_config()
    config.difficulty = "cscores"
    config.score_base = "cscores"              # under a score:<name> difficulty
    config.group_size = 20
    config.cscore_models_per_ratio = 4
    config.cscore_steps = 20
    return config
