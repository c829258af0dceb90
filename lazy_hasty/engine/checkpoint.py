"""Run checkpoints on top of orbax's ``CheckpointManager``.

A checkpoint is one orbax step directory holding named items: pytrees of
arrays (``jax.Array``, replicated or sharded, and numpy arrays) saved with
``StandardSave``, and one JSON item ``"meta"`` (plain numbers, strings and
lists: where the run stands). Saves are asynchronous (the arrays are copied to
the host, then written in a background thread) and atomic: orbax writes each
step to a temporary directory and renames it once complete, so a run killed at
any point leaves only finished checkpoints behind, and ``latest_step`` ignores
the rest.

In a multi-process job every process must make the same calls in the same
order (orbax synchronises them); numpy arrays and the JSON item are written by
the primary process.
"""

from __future__ import annotations

import logging as pylogging
import os
import shutil
from typing import Any, Mapping, Optional

import jax
import numpy as np
import orbax.checkpoint as ocp

META = "meta"


class _OrbaxInfoFilter(pylogging.Filter):
    """Drops orbax's INFO/DEBUG lines (a dozen per save); its warnings pass."""

    def filter(self, record: pylogging.LogRecord) -> bool:
        return (record.levelno >= pylogging.WARNING
                or f"{os.sep}orbax{os.sep}" not in (record.pathname or ""))


def quiet_orbax_logs() -> None:
    """Keeps orbax's per-save INFO lines out of the (absl) log; idempotent."""
    logger = pylogging.getLogger("absl")
    if not any(isinstance(f, _OrbaxInfoFilter) for f in logger.filters):
        logger.addFilter(_OrbaxInfoFilter())


def _is_step_dir(name: str) -> bool:
    return name.isdigit()


def steps(directory: str) -> list[int]:
    """The finished checkpoint steps under ``directory``, oldest first; creates nothing."""
    if not os.path.isdir(directory):
        return []
    return sorted(int(n) for n in os.listdir(directory) if _is_step_dir(n)
                  and os.path.isdir(os.path.join(directory, n))
                  and os.path.exists(os.path.join(directory, n, META)))


def latest_step(directory: str) -> Optional[int]:
    """The newest finished checkpoint step under ``directory`` (None if none)."""
    found = steps(directory)
    return found[-1] if found else None


def discard_after(directory: str, step: int) -> None:
    """Deletes the checkpoints of ``directory`` newer than ``step``, so a run resumed from
    ``step`` (0: from scratch) saves its later checkpoints afresh."""
    for name in os.listdir(directory) if os.path.isdir(directory) else ():
        if _is_step_dir(name) and int(name) > step:
            shutil.rmtree(os.path.join(directory, name))


def abstract(tree: Any) -> Any:
    """Restore target of ``tree``: shapes, dtypes and shardings (numpy leaves stay numpy)."""
    def leaf(a):
        if isinstance(a, jax.Array):
            return jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=a.sharding)
        return a
    return jax.tree_util.tree_map(leaf, tree)


class Checkpointer:
    """Saves and restores a run's checkpoints in ``directory`` (created on first use).

    ``keep`` is how many of the newest checkpoints are kept on disk.
    """

    def __init__(self, directory: str, *, keep: int = 2, async_save: bool = True):
        if keep < 1:
            raise ValueError(f"keep must be >= 1, got {keep}")
        self.directory = os.path.abspath(directory)
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(
                max_to_keep=keep, create=True, enable_async_checkpointing=async_save))

    def latest_step(self) -> Optional[int]:
        """The newest finished checkpoint (None before the first)."""
        self._manager.reload()
        return self._manager.latest_step()

    def path(self, step: int) -> str:
        """The directory of checkpoint ``step``."""
        return os.path.join(self.directory, str(step))

    def save(self, step: int, meta: Mapping[str, Any], **items: Any) -> None:
        """Saves the JSON ``meta`` and each pytree item under checkpoint ``step``."""
        if META in items:
            raise ValueError(f"item name {META!r} is reserved for the metadata")
        args = {name: ocp.args.StandardSave(tree) for name, tree in items.items()}
        args[META] = ocp.args.JsonSave(dict(meta))
        self._manager.save(step, args=ocp.args.Composite(**args), force=True)

    def restore_meta(self, step: int) -> dict:
        """The JSON metadata of checkpoint ``step``."""
        return dict(self._manager.restore(
            step, args=ocp.args.Composite(**{META: ocp.args.JsonRestore()}))[META])

    def restore(self, step: int, **targets: Any) -> dict:
        """Items of checkpoint ``step``, each restored like its target pytree.

        A target is a pytree of arrays or of ``jax.ShapeDtypeStruct`` (see
        :func:`abstract`): ``jax.Array`` leaves come back with the target's
        sharding, numpy leaves as numpy arrays.
        """
        args = {name: ocp.args.StandardRestore(abstract(t)) for name, t in targets.items()}
        restored = self._manager.restore(step, args=ocp.args.Composite(**args))
        return {name: restored[name] for name in targets}

    def wait(self) -> None:
        """Blocks until every asynchronous save has been written."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        """Waits for pending saves and releases the manager."""
        self._manager.wait_until_finished()
        self._manager.close()

    def __enter__(self) -> "Checkpointer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_arrays(directory: str, step: int, item: str) -> Any:
    """One item of a checkpoint as a pytree of numpy arrays, in any process layout.

    For inspection and tests (e.g. comparing runs made on different numbers of
    devices); training code restores with :meth:`Checkpointer.restore`.
    """
    path = os.path.join(os.path.abspath(directory), str(step), item)
    checkpointer = ocp.PyTreeCheckpointer()
    tree = checkpointer.metadata(path)
    tree = getattr(tree, "item_metadata", tree)     # orbax 0.12 wraps the tree metadata
    tree = getattr(tree, "tree", tree)
    restore_args = jax.tree_util.tree_map(
        lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree)
    return checkpointer.restore(path, args=ocp.args.PyTreeRestore(restore_args=restore_args))
