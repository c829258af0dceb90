"""Datasets of the example-difficulty experiments, as registered functions.

A dataset function takes explicit keyword arguments and returns one
:class:`DescribedDataset`: the training data, the evaluation groups by split and
the :class:`~lazy_hasty.difficulty.DifficultySpec` that says how to compare
them. ``config.dataset`` is a registered name (``digits``, ``digits_spurious``,
``cifar10``, ``celeba``, ``waterbirds``: :mod:`lazy_hasty.data.builtin`) or the
import path of a user's own function, ``package.module:function`` or
``path/to/file.py:function``; a module path is looked up from the current
directory too. :func:`load` calls the function with the config values its
parameters name (and ``config.dataset_kwargs``), so a new dataset needs no edit
of the library.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import inspect
import os
import sys
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from lazy_hasty.data.splits import Split
from lazy_hasty.difficulty import DifficultySpec

DatasetFn = Callable[..., "DescribedDataset"]


@dataclasses.dataclass(frozen=True)
class DescribedDataset:
    """What a difficulty experiment needs of its data.

    Attributes:
      train: the training set; ``x`` is an array or any array-like indexed by
        integer arrays (e.g. ``np.memmap``), ``y`` int32 labels as trained on.
      groups: split name -> group name -> examples (:class:`Split` or ``(x, y)``)
        evaluated at every record as ``"<split>/<group>"``.
      num_classes: network outputs.
      spec: which groups are easy and hard, and how progress is measured.
    """

    train: Split
    groups: Mapping[str, Mapping[str, Split]]
    num_classes: int
    spec: DifficultySpec

    def __post_init__(self) -> None:
        if not isinstance(self.train, Split):
            raise ValueError(f"DescribedDataset.train must be a Split, got "
                             f"{type(self.train).__name__}")
        if not isinstance(self.spec, DifficultySpec):
            raise ValueError(f"DescribedDataset.spec must be a DifficultySpec, got "
                             f"{type(self.spec).__name__}")
        groups = {split: {name: g if isinstance(g, Split) else Split(*map(np.asarray, g))
                          for name, g in members.items()}
                  for split, members in self.groups.items()}
        object.__setattr__(self, "groups", groups)
        self.spec.check_groups(self.flat_groups())

    def flat_groups(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """``{"split/group": (x, y)}`` in split, then group order."""
        return {f"{split}/{name}": (g.x, g.y)
                for split, members in self.groups.items() for name, g in members.items()}


BUILTIN: dict[str, str] = {
    name: f"lazy_hasty.data.builtin:{name}"
    for name in ("digits", "cifar10", "digits_spurious", "celeba", "waterbirds")}
"""The paper's datasets: name -> import path of their function, imported when resolved
(so :mod:`lazy_hasty.data.builtin` may import this module without a cycle)."""


def registered() -> tuple[str, ...]:
    """The registered dataset names."""
    return tuple(BUILTIN)


def _import(module: str, name: str) -> Any:
    """The module of ``module`` (a dotted path or a ``.py`` file), with one-line errors."""
    try:
        if module.endswith(".py"):
            if not os.path.isfile(module):
                raise ValueError(f"dataset {name!r}: no such file {module!r}")
            spec = importlib.util.spec_from_file_location(
                os.path.splitext(os.path.basename(module))[0], module)
            loaded = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(loaded)
            return loaded
        if os.getcwd() not in sys.path:
            sys.path.append(os.getcwd())
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name is not None and module.startswith(e.name):
            raise ValueError(f"dataset {name!r}: no module named {module!r} (run from its "
                             "folder, or put that folder on PYTHONPATH)") from None
        raise ValueError(f"dataset {name!r}: importing {module!r} failed: {e}") from None
    except (ImportError, SyntaxError) as e:
        raise ValueError(f"dataset {name!r}: importing {module!r} failed: {e}") from None


def resolve(name: str) -> DatasetFn:
    """The dataset function named by ``config.dataset``."""
    if not isinstance(name, str) or ":" not in name:
        if name not in registered():
            raise ValueError(f"unknown dataset {name!r}; choose one of {registered()} or "
                             "give your own as 'package.module:function'")
        name = BUILTIN[name]
    module, _, attr = name.rpartition(":")
    fn = getattr(_import(module, name), attr, None)
    if fn is None:
        raise ValueError(f"dataset {name!r}: module {module!r} has no function {attr!r}")
    if not callable(fn):
        raise ValueError(f"dataset {name!r}: {attr!r} is a {type(fn).__name__}, "
                         "not a function")
    return fn


def load(name: str, values: Mapping[str, Any],
         extra: Mapping[str, Any] | None = None) -> DescribedDataset:
    """Calls dataset ``name`` with the ``values`` its parameters name, plus ``extra``.

    ``values`` are the config's values; ``extra`` (``config.dataset_kwargs``)
    passes arguments the config has no key for. Raises ValueError naming a
    missing or unknown argument, or a wrong return type.
    """
    fn, extra = resolve(name), dict(extra or {})
    params = inspect.signature(fn).parameters
    unknown = sorted(set(extra) - set(params))
    if unknown:
        raise ValueError(f"dataset {name!r} takes no argument(s) {unknown} (from "
                         f"dataset_kwargs); it takes {list(params)}")
    kwargs = {}
    for key, param in params.items():
        if key in extra or key in values:
            kwargs[key] = extra[key] if key in extra else values[key]
        elif param.default is param.empty and param.kind not in (param.VAR_KEYWORD,
                                                                 param.VAR_POSITIONAL):
            raise ValueError(f"dataset {name!r} needs argument {key!r}, which the config "
                             "does not have; pass it in config.dataset_kwargs")
    data = fn(**kwargs)
    if not isinstance(data, DescribedDataset):
        raise ValueError(f"dataset {name!r} returned a {type(data).__name__}; a dataset "
                         "function must return lazy_hasty.datasets.DescribedDataset")
    return data
