"""The training engine: the step, the one training loop, records, checkpoints, sharding."""
