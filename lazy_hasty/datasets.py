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
of the library. :func:`load` also checks what the function returns (:func:`check`)
before a driver writes anything, so a broken dataset is one clear error, not a
divergence or a crash mid-run.
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

FINITE_CHECK_BYTES = 64 << 20
"""Floating inputs are checked for NaN and inf in chunks of about this many bytes, so
a large memory-mapped array is read once, piece by piece, not copied whole."""


class DatasetError(ValueError):
    """A dataset function returned data that cannot be trained on; :func:`load` names
    the function in the message."""


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
            raise DatasetError(f"DescribedDataset.train must be a Split, got "
                               f"{type(self.train).__name__}")
        if not isinstance(self.spec, DifficultySpec):
            raise DatasetError(f"DescribedDataset.spec must be a DifficultySpec, got "
                               f"{type(self.spec).__name__}")
        groups = {split: {name: _as_split(f"{split}/{name}", g)
                          for name, g in members.items()}
                  for split, members in self.groups.items()}
        object.__setattr__(self, "groups", groups)
        self.spec.check_groups(self.flat_groups())

    def flat_groups(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """``{"split/group": (x, y)}`` in split, then group order."""
        return {f"{split}/{name}": (g.x, g.y)
                for split, members in self.groups.items() for name, g in members.items()}


def _as_split(group: str, examples: Split | tuple) -> Split:
    """``examples`` as a :class:`Split`; an ``(x, y)`` pair that cannot be one names ``group``."""
    if isinstance(examples, Split):
        return examples
    try:
        return Split(*map(np.asarray, examples))
    except (TypeError, ValueError) as err:
        raise DatasetError(f"group {group!r}: {err}") from None


def _first_non_finite(x: Any) -> int | None:
    """Index of the first example of ``x`` holding NaN or inf (None if there is none).

    Integer and boolean inputs are finite by construction and are not read; floating
    ones are read in chunks of about :data:`FINITE_CHECK_BYTES`. Raises TypeError
    for non-numeric inputs.
    """
    dtype = np.dtype(x.dtype)
    if np.issubdtype(dtype, np.integer) or dtype == bool:
        return None
    if not np.issubdtype(dtype, np.number):
        raise TypeError(f"inputs have dtype {dtype}")
    row_bytes = max(dtype.itemsize * int(np.prod(x.shape[1:])), 1)
    chunk = max(FINITE_CHECK_BYTES // row_bytes, 1)
    for start in range(0, len(x), chunk):
        finite = np.isfinite(np.asarray(x[start:start + chunk]))
        bad = np.flatnonzero(~finite.all(axis=tuple(range(1, finite.ndim))))
        if bad.size:
            return start + int(bad[0])
    return None


def _check_examples(where: str, examples: Split, num_classes: int) -> None:
    """Integer labels in ``[0, num_classes)`` and finite numeric inputs."""
    x, y = examples.x, examples.y
    if not np.issubdtype(y.dtype, np.integer):
        raise DatasetError(f"{where} labels have dtype {y.dtype}; labels must be integer "
                           "class indices (e.g. y.astype(np.int32))")
    low, high = int(y.min()), int(y.max())
    if low < 0 or high >= num_classes:
        raise DatasetError(f"{where} labels span [{low}, {high}] but num_classes is "
                           f"{num_classes}; labels must lie in [0, {num_classes}): remap them "
                           "or raise num_classes")
    try:
        bad = _first_non_finite(x)
    except TypeError as err:
        raise DatasetError(f"{where} {err}; inputs must be numeric arrays") from None
    if bad is not None:
        raise DatasetError(f"{where} inputs are not finite: example {bad} holds NaN or inf; "
                           "repair or drop such examples")


def check(data: DescribedDataset) -> None:
    """Refuses data a run could not train on or evaluate, before anything is written.

    The training set and every group must be non-empty, with integer labels in
    ``[0, num_classes)`` and finite inputs; every group's examples must have the
    training examples' shape. (:class:`Split` already holds one label per example,
    ``y`` 1-D.) Out-of-range labels or NaN inputs would otherwise surface as a
    divergence mid-run, an empty group as NaN accuracies.
    """
    if len(data.train) == 0:
        raise DatasetError("the training set is empty; return at least one training example")
    _check_examples("the training set", data.train, data.num_classes)
    shape = tuple(data.train.x.shape[1:])
    for split, members in data.groups.items():
        for name, examples in members.items():
            where = f"group '{split}/{name}'"
            if len(examples) == 0:
                raise DatasetError(f"{where} is empty; give it examples or leave it out")
            if tuple(examples.x.shape[1:]) != shape:
                raise DatasetError(f"{where} has examples of shape {tuple(examples.x.shape[1:])}"
                                   f" but the training set's are {shape}; give every group "
                                   "inputs shaped like the training inputs")
            _check_examples(where, examples, data.num_classes)


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
    missing or unknown argument, or a wrong return type, and :class:`DatasetError`
    naming the dataset when its data fail :func:`check`.
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
    try:
        data = fn(**kwargs)
        if not isinstance(data, DescribedDataset):
            raise ValueError(f"dataset {name!r} returned a {type(data).__name__}; a dataset "
                             "function must return lazy_hasty.datasets.DescribedDataset")
        check(data)
    except DatasetError as err:
        raise DatasetError(f"dataset {name!r}: {err}") from None
    return data
