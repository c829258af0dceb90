"""Data parallelism with ``jax.jit`` + ``NamedSharding`` on a ``"data"`` mesh axis.

The batch is split across every device (all hosts after
``jax.distributed.initialize``); parameters and optimiser states are
replicated. XLA inserts the gradient all-reduce. Each process holds the full
dataset and contributes its slice of every global batch.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P


BATCH = P("data")
"""The batch's partition: its leading axis split over the ``"data"`` mesh axis."""


def data_mesh() -> Mesh:
    """A 1-d mesh named ``"data"`` over all devices of all processes."""
    return jax.make_mesh((jax.device_count(),), ("data",))


def check_batch_size(batch_size: int, mesh: Mesh) -> None:
    """The global batch must split evenly over devices (and processes)."""
    if batch_size % mesh.size:
        raise ValueError(f"batch_size {batch_size} is not divisible by the {mesh.size} "
                         "devices of the data mesh; choose a multiple of the device count")


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Places a pytree on every device of ``mesh``."""
    sharding = NamedSharding(mesh, P())
    return jax.tree_util.tree_map(
        lambda a: jax.make_array_from_process_local_data(sharding, np.asarray(a)), tree)


def shard_batch(tree: Any, mesh: Mesh) -> Any:
    """Splits the leading (batch) axis of each leaf over the ``"data"`` axis.

    ``tree`` holds the *global* batch on every process; each process passes on
    its own contiguous slice, as ``jax.make_array_from_process_local_data`` expects.
    """
    sharding = NamedSharding(mesh, BATCH)
    index, count = jax.process_index(), jax.process_count()

    def put(a):
        a = np.asarray(a)
        local = np.array_split(a, count)[index]
        return jax.make_array_from_process_local_data(sharding, local, a.shape)

    return jax.tree_util.tree_map(put, tree)
