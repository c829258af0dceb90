"""Section 3 / Fig. 1: the yin-yang toy, 100 seeds, alpha = 1 vs alpha = 100 vs linearized.

python main.py --config=configs/yinyang.py --workdir=/tmp/yinyang
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.experiment = "yinyang"
    config.seed = 0                      # drives every training set and init
    config.num_runs = 100                # independent seeds (paper: 100)
    config.n_train = 100                 # training points per run (paper: 100)
    config.hidden = (60, 60, 60)         # MLP 2-60-60-60-1, PyTorch-default init
    # Full-batch GD. The paper's text says 0.01; the authors' code used 0.1,
    # which reaches the thresholds 10x sooner with the same picture.
    config.learning_rate = 0.1
    config.num_steps = 30_000            # enough for ~90% of linear runs to reach 0.3
    config.nonlinear_alpha = 1.0         # feature learning (alpha <= 1)
    config.linear_alpha = 100.0          # near-lazy reference; "linearized" is always run
    config.thresholds = (0.5, 0.4, 0.3)  # equal-progress levels of the mean train loss
    config.grid_resolution = 100         # test grid paving [-1, 1]^2 (100 x 100)
    config.function_space_linearized = True  # exact, cheaper: see lazy_hasty.function_space
    config.stop_when_crossed = True      # stop a regime once all runs reached all thresholds
    return config
