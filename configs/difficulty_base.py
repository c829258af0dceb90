"""Every key of the example-group experiments (Sections 4-5), with defaults.

The defaults are the digits label-noise twin; derived configs (``digits_*.py``,
``cifar10_*.py``, ``celeba.py``, ``waterbirds.py``) override what differs.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    _data(config)
    _training(config)
    _run(config)
    _learning_rate_search(config)
    return config


def _data(config: ml_collections.ConfigDict) -> None:
    """The dataset, its notion of difficulty and the seed."""
    config.experiment = "difficulty"
    config.seed = 0                     # init, minibatch order, noise, groups, probe set
    # A registered dataset ("digits" (embedded), "cifar10" (TFDS), "digits_spurious",
    # "celeba", "waterbirds") or your own function, "package.module:function" or
    # "path/to/file.py:function" (lazy_hasty/datasets.py says what it returns).
    config.dataset = "digits"
    config.dataset_kwargs = ml_collections.ConfigDict()   # extra arguments of a user dataset
    config.data_dir = ""                # TFDS data_dir for cifar10 (prepared offline)
    config.train_size = 40_000          # cifar10 only: train = train[:40k], held-out = rest
    # digits only: pure-noise input features appended to the 64 pixels. They make
    # the initial tangent kernel memorisation-prone, as on CIFAR-10; without them
    # the kernel already generalises on digits and both regimes learn alike.
    config.distractors = 512
    config.difficulty = "noise"         # "noise" (clean/noisy), "cscores" (deciles) or
    # "score:<name>": the lowest and highest score_quantile of the training examples by a
    # score of docs/scores.md, measured in score_references reference runs of score_regime
    # for score_epochs (other seeds; cached in score_cache, default
    # ~/.cache/lazy_hasty/scores); the data is loaded with difficulty = score_base, whose
    # groups are kept.
    config.score_base = "noise"
    config.score_references = 4
    config.score_quantile = 0.1
    config.score_regime = "alpha=1"
    config.score_epochs = 100.0
    config.score_cache = ""
    config.label_noise = 0.15           # fraction of training labels replaced (paper: 15%)
    config.cscores = "estimate"         # "estimate" (eq. 5) or a path/URL to a published npz
    config.cscore_cache = ""            # default ~/.cache/lazy_hasty/<dataset>_cscores_seed<k>.npz
    config.cscore_models_per_ratio = 32
    config.cscore_steps = 200
    config.majority_fraction = 0.9      # digits_spurious: background agrees with label
    config.cue_strength = 0.1           # digits_spurious: colour intensity of the (faint) cue
    config.cue_patch = 0                # digits_spurious: 0 whole background, k: k x k corner
    config.balanced_per_group = 30      # spurious: examples per (label, attribute) group
    config.image_size = 224             # celeba / waterbirds: side after crop and resize
    config.pretrained = ""              # torchvision ResNet18 state dict (.npz/.pth)
    config.group_size = 0               # examples sampled per group (0: all)
    config.test_size = 0                # test examples evaluated (0: all)


def _training(config: ml_collections.ConfigDict) -> None:
    """The model, the regimes and how each is trained, recorded and probed."""
    # A ReLU MLP on flattened 8x8 digits: with it, alpha = 100 stays linear
    # (sign similarity >= 0.95), which the small CNN at this size does not.
    config.model = "mlp"
    config.model_kwargs = ml_collections.ConfigDict({"features": (256, 256)})
    # Richness beyond alpha (lazy_hasty/richness.py, docs/richness.md): "standard",
    # "ntk" or "mup"; the network's output is divided by gamma (> 0).
    config.parameterization = "standard"
    config.gamma = 1.0
    # The learning rate's dependence on g = gamma / alpha: "lazy" (lr * g^2, the paper's
    # lr / alpha^2) or "richness" (g^2 up to lr_crossover, then g^(2/L) beyond, with
    # L = lr_depth, 0: the model's number of weight layers).
    config.lr_rule = "lazy"
    config.lr_crossover = 1.0
    config.lr_depth = 0
    config.regimes = ("alpha=1", "alpha=100")
    config.num_epochs = (100, 300)      # one entry per regime
    config.compare = ("alpha=1", "alpha=100")   # (non-linear, linear) for hastiness
    # > 0: a regime stops at its first record whose progress (the difficulty spec's
    # measure, e.g. clean accuracy or training loss) reaches this value; num_epochs
    # is then a cap. The alpha sweep (experiments/sweep.py) sets it per run.
    config.stop_at_progress = 0.0
    config.batch_size = 100
    config.learning_rate = 0.05         # base rate; rescaled regimes use lr / alpha^2
    config.momentum = 0.9
    config.ladder_ratio = 0.96          # a record each time the loss EMA drops 4%
    config.probe_size = 32              # examples for the linearity metrics
    config.probe_every = 5              # linearity metrics on every 5th record
    # Per-example difficulty scores of the "train/all" group (scores.npz, docs/scores.md);
    # EL2N and GraNd at the first log-spaced record from early_score_epoch (Paul et al.
    # 2021 score CIFAR-10 at epoch 20 of 200). A sweep's learning-rate search runs skip them.
    config.scores = True
    config.early_score_epoch = 10.0
    config.ntk_implementation = "structured"   # or "jacobian", "ntvp", "auto" (XLA picks)
    config.ntk_chunk_size = 0           # 0: no chunking
    config.eval_batch_size = 512


def _run(config: ml_collections.ConfigDict) -> None:
    """Where the data lives, checkpoints, monitoring and figures."""
    # A training set up to this size (MiB, with f(params0, x)) is put on every device
    # once and minibatches are gathered there; a larger one is gathered on the host,
    # one step ahead. 0: always the host.
    config.device_data_mb = 1024
    # Preemption: an orbax checkpoint every this many training steps (and at the end
    # of each regime); re-running the same command resumes from the newest one.
    # 0 turns checkpointing off (a killed run then starts over).
    config.checkpoint_every_steps = 1000
    config.checkpoints_to_keep = 2      # newest checkpoints kept in <workdir>/checkpoints
    # Live monitoring: True writes every record's scalars as TensorBoard event files to
    # <workdir>/tensorboard/<regime>/ (tensorboard --logdir <workdir>/tensorboard); needs
    # pip install 'lazy-hasty[tensorboard]'. metrics.jsonl is the same either way.
    config.tensorboard = False
    # False: no fig2/fig3.png or learning_times.png (e.g. for the many runs of a sweep,
    # which draws its own figures); records, arrays and summary are the same.
    config.figures = True


def _learning_rate_search(config: ml_collections.ConfigDict) -> None:
    """How ``experiments/sweep.py --lr_grid`` picks each swept value's learning rate.

    Every grid rate trains a search run per seed for ``lr_search_steps`` steps;
    ``lr_search_criterion`` scores it: ``"train_loss"`` is the training loss at
    its last record (lower is better: the loss after a fixed number of steps, as
    Atanasov et al. 2025 choose); ``"progress"`` is the difficulty spec's
    progress measure at its last record (lower loss or higher accuracy is
    better); ``"steps_to_target"`` is the step of its first record whose progress
    reaches ``lr_search_target`` (fewer is better; never reached is worst). The
    rate with the best mean over seeds, among those no seed diverged at, trains
    the value's swept runs. A ``main.py`` run only checks these keys.
    """
    config.lr_search_steps = 200
    config.lr_search_criterion = "train_loss"   # or "progress", "steps_to_target"
    config.lr_search_target = 0.0       # steps_to_target only: the progress to reach (> 0)
