"""Import ImageNet-pretrained torchvision ResNet18 weights into the flax ResNet18.

The Waterbirds experiment fine-tunes an ImageNet-pretrained ResNet18 whose
weights the user supplies as a torchvision ``state_dict`` (nothing is downloaded
at run time). Two file formats are accepted by :func:`load_state_dict_arrays`:

* ``.npz`` -- ``{torchvision key: array}``, readable without torch. Produce it
  once, on any machine with torch + torchvision, with
  ``python scripts/convert_torchvision_resnet18.py --out resnet18_imagenet.npz``.
* ``.pth`` / ``.pt`` -- a torch ``state_dict``; needs torch
  (``pip install torch`` or the optional extra ``lazy-hasty[torch]``).

:func:`resnet18_variables_from_torchvision` maps the arrays onto
``ResNet18(stem="imagenet", norm="frozen_batchnorm", width=64)``:

==========================================  ======================================
torchvision                                 flax
==========================================  ======================================
``conv1.weight`` (O, I, H, W)               params ``conv1/kernel`` (H, W, I, O)
``bn1.weight`` / ``bn1.bias``               params ``bn1/scale`` / ``bn1/bias``
``bn1.running_mean`` / ``running_var``      batch_stats ``bn1/mean`` / ``bn1/var``
``layer{i}.{j}.{conv1,bn1,conv2,bn2}.*``    ``layer{i}_{j}/{conv1,bn1,conv2,bn2}``
``layer{i}.0.downsample.0.weight``          ``layer{i}_0/downsample_conv/kernel``
``layer{i}.0.downsample.1.*``               ``layer{i}_0/downsample_bn/*``
``fc.weight`` (out, in) / ``fc.bias``       params ``head/kernel`` (in, out) / ``head/bias``
==========================================  ======================================

``*.num_batches_tracked`` is ignored. By default the classifier is *replaced*
(as in the paper): ``head`` is a fresh ``num_outputs`` layer with the model's
own (torch-default) init drawn from ``rng`` and ``fc.*`` is ignored.

Normalisation: torchvision's BatchNorm2d uses eps=1e-5 and, in eval mode,
``(x - running_mean) / sqrt(running_var + eps) * weight + bias``; the flax model's
frozen BatchNorm is ``nn.BatchNorm(use_running_average=True)`` with flax's default
``epsilon=1e-5`` (``resnet.make_norm`` does not override it), so the two agree;
this is checked at conversion time. Padding/strides already follow torchvision
(see ``lazy_hasty/models/resnet.py``).
"""

import os
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from lazy_hasty.models import State, init_model
from lazy_hasty.models.resnet import ResNet18
from lazy_hasty.types import Params

TORCH_BN_EPS = 1e-5
_CONVERTER = "scripts/convert_torchvision_resnet18.py"

# flax leaf name -> torchvision parameter/buffer suffix, per collection.
_LEAF_NAMES = {
    "params": {"kernel": "weight", "scale": "weight", "bias": "bias"},
    "batch_stats": {"mean": "running_mean", "var": "running_var"},
}


def load_state_dict_arrays(path: str) -> dict[str, np.ndarray]:
    """Read a torchvision ``state_dict`` from ``.npz`` (no torch) or ``.pth``/``.pt``.

    Returns ``{key: np.ndarray}`` with torchvision's key names and layouts.
    Raises FileNotFoundError for a missing file, ImportError for ``.pth``/``.pt``
    when torch is not installed, and ValueError for any other suffix.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"pretrained weights file not found: {path!r}. Supply an ImageNet-pretrained "
            f"torchvision ResNet18 state_dict, either as .npz (create it once with "
            f"`python {_CONVERTER} --out resnet18_imagenet.npz` on a machine with "
            f"torch + torchvision) or as a torch .pth/.pt file."
        )
    suffix = os.path.splitext(path)[1].lower()
    if suffix == ".npz":
        with np.load(path, allow_pickle=False) as f:
            return {k: np.asarray(f[k]) for k in f.files}
    if suffix in (".pth", ".pt"):
        try:
            import torch
        except ImportError:
            raise ImportError(
                f"reading {path!r} needs PyTorch, which is not installed. Either "
                f"`pip install torch` (or the optional extra `pip install "
                f"'lazy-hasty[torch]'`), or convert the weights once to .npz on a machine "
                f"with torch: `python {_CONVERTER} --pth {path} --out resnet18_imagenet.npz`"
                f", then pass the .npz file instead."
            ) from None
        state = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]  # a training checkpoint wrapping the state_dict
        out = {}
        for k, v in state.items():
            if not isinstance(v, torch.Tensor):
                raise ValueError(f"{path!r}: entry {k!r} is a {type(v).__name__}, "
                                 f"not a tensor; expected a plain state_dict")
            v = v.detach().cpu()
            if v.is_floating_point() and v.dtype not in (torch.float16, torch.float32,
                                                         torch.float64):
                v = v.float()  # e.g. bfloat16 has no numpy equivalent
            out[k] = v.numpy()
        return out
    raise ValueError(f"unsupported weights file {path!r}: expected .npz, .pth or .pt")


def _torch_module(flax_path: tuple[str, ...]) -> str:
    """flax module path (e.g. ("layer2_0", "downsample_bn")) -> torchvision name."""
    parts = []
    for name in flax_path:
        if name == "head":
            parts.append("fc")
        elif name.startswith("layer") and "_" in name:
            parts.extend(name.split("_"))  # layer2_0 -> layer2.0
        elif name == "downsample_conv":
            parts.extend(("downsample", "0"))
        elif name == "downsample_bn":
            parts.extend(("downsample", "1"))
        else:
            parts.append(name)
    return ".".join(parts)


def _to_torch_layout(leaf: str, shape: tuple[int, ...]) -> tuple[int, ...]:
    """Shape the torchvision tensor must have for a flax leaf of ``shape``."""
    if leaf == "kernel" and len(shape) == 4:  # conv HWIO <- OIHW
        return (shape[3], shape[2], shape[0], shape[1])
    if leaf == "kernel" and len(shape) == 2:  # dense (in, out) <- (out, in)
        return (shape[1], shape[0])
    return tuple(shape)


def _from_torch_layout(leaf: str, value: np.ndarray) -> np.ndarray:
    if leaf == "kernel" and value.ndim == 4:
        return value.transpose(2, 3, 1, 0)
    if leaf == "kernel" and value.ndim == 2:
        return value.T
    return value


class _Destination(NamedTuple):
    """Where a torchvision tensor goes in the flax variables."""

    collection: str             # "params" or "batch_stats"
    path: tuple[str, ...]       # module names then the leaf name
    shape: tuple[int, ...]      # flax layout
    dtype: Any


def _expected_entries(template: dict[str, Any], keep_head: bool) -> dict[str, _Destination]:
    """torchvision key -> its flax destination, for every leaf of ``template``.

    The head is left out unless ``keep_head`` (it then stays the fresh init).
    """
    expected = {}
    for collection, tree in template.items():
        if collection not in _LEAF_NAMES:
            raise RuntimeError(f"unexpected variable collection {collection!r} in ResNet18")
        for path, value in traverse_util.flatten_dict(tree).items():
            if path[0] == "head" and not keep_head:
                continue  # fresh head from rng
            key = f"{_torch_module(path[:-1])}.{_LEAF_NAMES[collection][path[-1]]}"
            expected[key] = _Destination(collection, path, tuple(value.shape), value.dtype)
    return expected


def _check_keys_and_shapes(state: dict[str, np.ndarray], expected: dict[str, _Destination],
                           keep_head: bool, num_outputs: int) -> None:
    """Raises ValueError listing missing keys, shape mismatches and unexpected keys."""
    missing = sorted(k for k in expected if k not in state)
    mismatched = []
    for key, dest in expected.items():
        if key in state:
            want = _to_torch_layout(dest.path[-1], dest.shape)
            got = tuple(np.shape(state[key]))
            if got != want:
                mismatched.append(f"{key}: got {got}, expected {want}")
    unexpected = sorted(
        k for k in state
        if k not in expected and not k.endswith(".num_batches_tracked")
        and not (not keep_head and k.startswith("fc."))
    )
    if missing or mismatched or unexpected:
        lines = ["torchvision ResNet18 state_dict does not match the flax ResNet18 "
                 "(stem='imagenet', norm='frozen_batchnorm', width=64):"]
        if missing:
            lines.append(f"  missing keys ({len(missing)}): {missing}")
        if mismatched:
            lines.append(f"  shape mismatches ({len(mismatched)}): {sorted(mismatched)}")
        if unexpected:
            lines.append(f"  unexpected keys ({len(unexpected)}): {unexpected}")
        if any(k.startswith("module.") for k in state):
            lines.append("  (keys start with 'module.': strip the DataParallel prefix)")
        if keep_head and any("fc." in m for m in mismatched):
            lines.append(f"  (keep_head=True needs num_outputs to equal fc's output "
                         f"size; got num_outputs={num_outputs})")
        raise ValueError("\n".join(lines))


def resnet18_variables_from_torchvision(
    state: dict[str, np.ndarray], num_outputs: int, rng: jax.Array, *,
    keep_head: bool = False,
) -> tuple[Params, State]:
    """Map a torchvision ResNet18 ``state_dict`` onto the flax ResNet18 variables.

    Target: ``ResNet18(num_outputs, stem="imagenet", norm="frozen_batchnorm",
    width=64)``. Returns ``(params, state)`` as from ``init_model``, for use with
    ``make_apply_fn``. Conv kernels go OIHW -> HWIO; BN weight/bias -> scale/bias
    (params), running_mean/var -> mean/var ("batch_stats"). Values take the
    dtype of the flax initialisation (float32).

    keep_head=False (default, the paper's protocol): ``head`` is a fresh
    ``num_outputs`` layer initialised by the model's own init from ``rng``;
    ``fc.*`` is ignored. keep_head=True: ``fc.weight`` (out, in) -> head kernel
    (in, out) and ``fc.bias`` -> head bias; requires ``num_outputs`` to equal
    fc's output size (1000 for ImageNet).

    Raises ValueError listing missing keys, shape mismatches and unexpected keys
    (anything other than the expected ones, ``fc.*`` and ``*.num_batches_tracked``).
    """
    if nn.BatchNorm.epsilon != TORCH_BN_EPS:  # resnet.make_norm uses flax's default
        raise RuntimeError(f"flax nn.BatchNorm default epsilon is {nn.BatchNorm.epsilon}, "
                           f"torchvision uses {TORCH_BN_EPS}; the import would be inexact")
    module = ResNet18(num_outputs, stem="imagenet", norm="frozen_batchnorm", width=64)
    x = jnp.zeros((1, 32, 32, 3), jnp.float32)
    # Every leaf but the fresh head is replaced: the layout needs only shapes, and
    # only the head's initialisation is computed (jit drops the rest of init).
    template = dict(jax.eval_shape(module.init, rng, x))
    template.pop("intermediates", None)
    expected = _expected_entries(template, keep_head)
    _check_keys_and_shapes(state, expected, keep_head, num_outputs)
    flat = {c: traverse_util.flatten_dict(t) for c, t in template.items()}
    if not keep_head:
        head = jax.jit(lambda key: init_model(module, key, x)[0]["head"])(rng)
        flat["params"].update({("head", k): v for k, v in head.items()})
    for key, dest in expected.items():
        value = _from_torch_layout(dest.path[-1], np.asarray(state[key]))
        flat[dest.collection][dest.path] = jnp.asarray(value, dtype=dest.dtype)
    out = {c: traverse_util.unflatten_dict(f) for c, f in flat.items()}
    new_params = out.pop("params")
    return new_params, out
