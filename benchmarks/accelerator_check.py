"""One short command that measures the accelerator path, written to one JSON file.

python benchmarks/accelerator_check.py OUTDIR [--quick]
(or ``bash scripts/accelerator_check.sh OUTDIR [--quick]``, which sets up the venv)

Fields of ``OUTDIR/accelerator_check.json`` (``--quick``: tiny sizes, for the
test suite on CPU; each section that fails records ``{"error": ...}`` and the
others still run, so a scarce GPU slot is never wasted on one bug):

- ``device``: backend, device kind and count, ``jax`` and ``jaxlib`` versions,
  ``quick``, and ``load_average`` (CPU machines are shared).
- ``resnet18_steps``: ResNet18 (CIFAR stem, no norm, width 64) SGD steps at
  batch 125 in each regime: ``images_per_s`` of ``standard``,
  ``alpha_cached`` (rescaled, ``f(θ0, x)`` cached), ``alpha_uncached`` and
  ``linearized``, and ``ratio_to_standard`` (time per step over the standard
  step's).
- ``ntk``: the empirical NTK of that ResNet18 at N = 100, C = 10, ``structured``
  in chunks of 25: ``seconds`` (compiled, median of repeats),
  ``compile_seconds``, ``peak_bytes`` (the device's peak memory in use,
  ``memory_stats``; null where the backend has none) and the kernel's ``shape``.
- ``cifar10_noise``: 300 steps of ``configs/cifar10_noise.py`` (regime alpha = 1,
  a checkpoint every 100 steps) through ``main.py`` on generated CIFAR-shaped data
  (``benchmarks/generated_cifar.py``, 2 500 training images): ``seconds``, ``returncode``,
  ``records`` (lines of metrics.jsonl), ``checkpoints`` (steps saved) and the
  ``workdir``.
- ``yinyang``: wall ``seconds`` and ``returncode`` of the 100-seed yin-yang run
  (``configs/yinyang.py``; ``--quick``: a smaller ``configs/yinyang_tiny.py``, an
  8 x 8 grid and thresholds 0.5 and 0.4).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import traceback
from typing import Any, Callable

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax  # noqa: E402

import core  # noqa: E402
from lazy_hasty import models, ntk  # noqa: E402
from lazy_hasty.engine import checkpoint, records


def _device(quick: bool) -> dict:
    import jaxlib
    dev = jax.devices()[0]
    return {"backend": jax.default_backend(), "device_kind": dev.device_kind,
            "device_count": jax.device_count(), "jax": jax.__version__,
            "jaxlib": jaxlib.__version__, "quick": quick,
            "load_average": os.getloadavg()[0]}


def _resnet(quick: bool) -> core.Setup:
    """ResNet18 (CIFAR stem, no norm) and a batch of 125 CIFAR-shaped images
    (``quick``: a width-2 ResNet10, one block per stage, on 4 tiny images)."""
    batch, width, side, blocks = (4, 2, 8, 1) if quick else (125, 64, 32, 2)
    kx, ky = jax.random.split(jax.random.PRNGKey(0))
    x = jax.random.normal(kx, (batch, side, side, 3))
    y = jax.random.randint(ky, (batch,), 0, 10)
    module = models.get_model("resnet18", num_outputs=10, stem="cifar", norm="none",
                              width=width, blocks=(blocks,) * 4)
    return core.make_setup(f"ResNet{8 * blocks + 2} w={width}", module, x, y)


def resnet18_steps(quick: bool) -> dict:
    setup = _resnet(quick)
    timing = core.Timing(2, 0.05, 2.0) if quick else core.Timing(5, 0.5, 20.0)
    rows = core.step_rows(setup, timing)         # standard, cached, uncached, linearized
    names = ("standard", "alpha_cached", "alpha_uncached", "linearized")
    seconds = [float(row[2]) / 1e3 for row in rows]
    return {"batch": int(setup.x.shape[0]), "model": setup.name,
            "images_per_s": {n: setup.x.shape[0] / s for n, s in zip(names, seconds)},
            "ratio_to_standard": {n: s / seconds[0] for n, s in zip(names, seconds)}}


def _peak_bytes() -> int | None:
    stats = jax.devices()[0].memory_stats() or {}
    return stats.get("peak_bytes_in_use")


def ntk_resnet18(quick: bool) -> dict:
    setup = _resnet(quick)
    n, chunk = (2, None) if quick else (100, 25)
    x = jax.random.normal(jax.random.PRNGKey(1), (n,) + setup.x.shape[1:])
    fn = ntk.empirical_ntk_fn(setup.apply_fn, implementation="structured", chunk_size=chunk)
    start = time.perf_counter()
    kernel = jax.block_until_ready(fn(setup.params0, x))
    first = time.perf_counter() - start
    times = []
    for _ in range(2 if quick else 3):
        start = time.perf_counter()
        jax.block_until_ready(fn(setup.params0, x))
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    return {"n": n, "outputs": 10, "implementation": "structured", "chunk_size": chunk,
            "seconds": median, "compile_seconds": first - median,
            "peak_bytes": _peak_bytes(), "shape": list(kernel.shape)}


def _run(argv: list[str]) -> tuple[float, int, str]:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, *argv], cwd=ROOT, capture_output=True, text=True)
    return time.perf_counter() - start, proc.returncode, proc.stderr[-2000:]


def cifar10_noise(quick: bool, outdir: str) -> dict:
    workdir = os.path.join(outdir, "cifar10_noise")
    generated = os.path.join(ROOT, "benchmarks", "generated_cifar.py") + ":cifar10_shaped"
    size = ["--config.train_size=100", "--config.batch_size=50",
            "--config.model_kwargs.width=2", "--config.model_kwargs.blocks=(1,1,1,1)",
            "--config.num_epochs=(4,)",
            "--config.group_size=10", "--config.test_size=10",
            "--config.probe_size=2", "--config.ntk_chunk_size=0",
            "--config.checkpoint_every_steps=4"] if quick else \
        ["--config.train_size=2500", "--config.num_epochs=(15,)",
         "--config.checkpoint_every_steps=100"]
    # One regime: random labels leave two regimes no common progress to compare.
    seconds, code, err = _run(["main.py", "--config=configs/cifar10_noise.py",
                               f"--workdir={workdir}", f"--config.dataset={generated}",
                               "--config.regimes=('alpha=1',)", *size])
    metrics = os.path.join(workdir, "metrics.jsonl")
    out = {"seconds": seconds, "returncode": code, "workdir": workdir,
           "records": len(records.read_jsonl(metrics)) if os.path.exists(metrics) else 0,
           "checkpoints": checkpoint.latest_step(os.path.join(workdir, "checkpoints"))}
    if code:
        out["stderr"] = err
    return out


def yinyang(quick: bool, outdir: str) -> dict:
    config = "configs/yinyang_tiny.py" if quick else "configs/yinyang.py"
    # Quick: two thresholds, which every run crosses early, so training stops sooner.
    size = ["--config.grid_resolution=8", "--config.thresholds=(0.5,0.4)"] if quick else []
    seconds, code, err = _run(["main.py", f"--config={config}",
                               f"--workdir={os.path.join(outdir, 'yinyang')}", *size])
    return {"config": config, "seconds": seconds, "returncode": code,
            **({"stderr": err} if code else {})}


def _section(fn: Callable[..., dict], *args: Any) -> dict:
    """``fn(*args)``, or the error it raised (the other sections still run)."""
    try:
        return fn(*args)
    except Exception as e:                       # noqa: BLE001 (recorded, not hidden)
        return {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outdir")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (CPU smoke test)")
    args = parser.parse_args()
    os.makedirs(args.outdir, exist_ok=True)
    result = {"device": _device(args.quick)}
    for name, fn, extra in (("resnet18_steps", resnet18_steps, ()),
                            ("ntk", ntk_resnet18, ()),
                            ("cifar10_noise", cifar10_noise, (args.outdir,)),
                            ("yinyang", yinyang, (args.outdir,))):
        start = time.perf_counter()
        result[name] = _section(fn, args.quick, *extra)
        print(f"accelerator_check: {name} done in {time.perf_counter() - start:.1f} s",
              flush=True)
    path = os.path.join(args.outdir, "accelerator_check.json")
    records.write_json(path, result)
    print(json.dumps(result, indent=1, default=str)[:4000])
    print(f"accelerator_check: wrote {path}")


if __name__ == "__main__":
    main()
