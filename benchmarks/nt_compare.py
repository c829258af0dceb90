"""Our empirical NTK against neural-tangents' ``empirical_ntk_fn``: agreement and time.

neural-tangents 0.6.5 does not import with jax >= 0.6, so it runs in the pinned
side venv of ``scripts/nt_side_env.sh``; run this script with that venv's
python. It is only a benchmark: ``lazy_hasty`` never imports neural-tangents.
The script spawns workers on one set of inputs and parameters (an ``.npz``): in
the side venv (neural-tangents and ``lazy_hasty.ntk`` on jax 0.4.30) and in the
main venv (``lazy_hasty.ntk`` on the current jax). They compute every kernel in
float32 and float64 for the comparison, then time them (float32, jitted,
compile excluded, after a warm-up call) in rounds that alternate the two venvs.
Usage::

    $(scripts/nt_side_env.sh) benchmarks/nt_compare.py [OUT.json] [--rounds 3] [--quick]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OURS = {"jacobian": ("jacobian", "pure"), "ntvp": ("ntvp", "pure"),
        "structured": ("structured", "pure"),
        "structured, flax layers": ("structured", "flax")}
THEIRS = {"JACOBIAN_CONTRACTION": 1, "NTK_VECTOR_PRODUCTS": 2,
          "STRUCTURED_DERIVATIVES": 3, "AUTO": 0}
MATCH = {"jacobian": "JACOBIAN_CONTRACTION", "ntvp": "NTK_VECTOR_PRODUCTS",
         "structured": "STRUCTURED_DERIVATIVES",
         "structured, flax layers": "STRUCTURED_DERIVATIVES"}
TOLERANCE = {"float32": 1e-5, "float64": 1e-10}


@dataclasses.dataclass(frozen=True)
class Spec:
    """A model: ``hidden`` Dense (MLP) or 3x3 Conv (CNN) layers, then Dense(classes)."""

    name: str
    n: int
    input_shape: tuple[int, ...]
    hidden: tuple[int, ...]
    classes: int = 10

    @property
    def conv(self) -> bool:
        return len(self.input_shape) == 3

    def describe(self) -> str:
        widths = "-".join(map(str, self.hidden))
        kind = f"CNN 3x3 conv {widths}, avg pool" if self.conv else f"MLP {widths}"
        return f"{kind}, in {'x'.join(map(str, self.input_shape))}, C={self.classes}, N={self.n}"


def specs(quick: bool) -> list[Spec]:
    """The MLP and the CNN (small with ``quick``)."""
    if quick:
        return [Spec("mlp", 12, (16,), (32, 32)), Spec("cnn", 6, (6, 6, 3), (4, 4))]
    return [Spec("mlp", 100, (64,), (512, 512)), Spec("cnn", 32, (16, 16, 3), (32, 32))]


def make_inputs(spec: Spec, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Float64 inputs ``x`` and parameters ``layer{i}.kernel|bias`` (flax names)."""
    arrays = {"x": rng.normal(size=(spec.n,) + spec.input_shape)}
    fan_in = spec.input_shape[-1]
    for i, width in enumerate(spec.hidden + (spec.classes,)):
        conv = spec.conv and i < len(spec.hidden)
        shape = (3, 3, fan_in, width) if conv else (fan_in, width)
        arrays[f"layer{i}.kernel"] = rng.normal(size=shape) / np.sqrt(np.prod(shape[:-1]))
        arrays[f"layer{i}.bias"] = 0.1 * rng.normal(size=width)
        fan_in = width
    return arrays


def pure_fn(spec: Spec) -> Callable[[Any, Any], Any]:
    """``f(params, x)`` in plain jax (``params = {"params": {"layer{i}": ...}}``)."""
    import jax

    def apply(params: Any, x: Any) -> Any:
        layers = params["params"]
        for i in range(len(spec.hidden)):
            k, b = layers[f"layer{i}"]["kernel"], layers[f"layer{i}"]["bias"]
            x = jax.lax.conv_general_dilated(
                x, k, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
            ) if spec.conv else x @ k
            x = jax.nn.relu(x + b)
        x = x.mean(axis=(1, 2)) if spec.conv else x
        last = layers[f"layer{len(spec.hidden)}"]
        return x @ last["kernel"] + last["bias"]

    return apply


def flax_fn(spec: Spec) -> Callable[[Any, Any], Any]:
    """The same function from ``flax.linen`` Dense/Conv layers (for ``structured``)."""
    import flax.linen as nn

    class Net(nn.Module):
        @nn.compact
        def __call__(self, x: Any) -> Any:
            for i, width in enumerate(spec.hidden):
                layer = (nn.Conv(width, (3, 3), padding="SAME", name=f"layer{i}")
                         if spec.conv else nn.Dense(width, name=f"layer{i}"))
                x = nn.relu(layer(x))
            x = x.mean(axis=(1, 2)) if spec.conv else x
            return nn.Dense(spec.classes, name=f"layer{len(spec.hidden)}")(x)

    return Net().apply


def restore_nt_aliases() -> None:
    """neural-tangents 0.6.5's STRUCTURED_DERIVATIVES reads ``jax.interpreters.ad``'s
    ``source_info_util`` and ``config``, aliases that jax 0.4.30 dropped: put the same
    objects back (this process only)."""
    import jax
    from jax._src import source_info_util
    from jax.interpreters import ad
    if not hasattr(ad, "source_info_util"):
        ad.source_info_util = source_info_util
    if not hasattr(ad, "config"):
        ad.config = jax.config


def kernel_cases(spec: Spec, arrays: dict, dtype: str, with_nt: bool
                 ) -> dict[str, tuple[Callable, tuple, bool]]:
    """``name -> (jitted fn, args, neural-tangents layout?)`` of every kernel."""
    import jax
    import jax.numpy as jnp
    from lazy_hasty import ntk

    x = jnp.asarray(arrays["x"], dtype)
    layers: dict = {}
    for key, value in arrays.items():
        if key != "x":
            layer, leaf = key.split(".")
            layers.setdefault(layer, {})[leaf] = jnp.asarray(value, dtype)
    params = {"params": layers}
    fns = {"pure": pure_fn(spec), "flax": flax_fn(spec)}
    cases = {f"ours: {name}": (ntk.empirical_ntk_fn(fns[fn], implementation=impl),
                               (params, x), False)
             for name, (impl, fn) in OURS.items()}
    if with_nt:
        import neural_tangents as nt
        restore_nt_aliases()
        for name, impl in THEIRS.items():
            fn = nt.empirical_ntk_fn(fns["pure"], trace_axes=(), vmap_axes=0,
                                     implementation=impl)
            cases[f"neural-tangents: {name}"] = (jax.jit(fn), (x, None, params), True)
    return cases


def worker(task: str, workdir: Path, dtype: str, with_nt: bool, quick: bool,
           repeats: int, out: Path) -> None:
    """Computes (``kernels``) or times (``times``) every case of every model."""
    import jax
    jax.config.update("jax_enable_x64", dtype == "float64")
    inputs = np.load(workdir / "inputs.npz")
    result: dict[str, Any] = {"jax": jax.__version__, "times": {}}
    kernels = {}
    for spec in specs(quick):
        arrays = {k.split("/", 1)[1]: inputs[k] for k in inputs if k.startswith(spec.name + "/")}
        cases = kernel_cases(spec, arrays, dtype, with_nt)
        if task == "kernels":
            for name, (fn, args, nt_layout) in cases.items():
                start = time.perf_counter()
                k = np.asarray(jax.block_until_ready(fn(*args)))
                result["times"][f"{spec.name}/{name}"] = time.perf_counter() - start
                kernels[f"{spec.name}/{name}"] = k.transpose(0, 2, 1, 3) if nt_layout else k
        else:
            result["times"][spec.name] = time_cases(cases, repeats)
    if kernels:
        np.savez(out.with_suffix(".npz"), **kernels)
    out.write_text(json.dumps(result))


def time_cases(cases: dict[str, tuple[Callable, tuple, bool]], repeats: int,
               target_s: float = 0.2) -> dict[str, list[float]]:
    """Seconds per call of each case: compiled ahead of time, one warm-up call, then
    ``repeats`` samples round-robin over the cases (load hits all alike), each the
    mean of as many calls as the warm-up says fill ``target_s`` (at least one)."""
    import jax
    compiled, number = {}, {}
    for name, (fn, args, _) in cases.items():
        compiled[name] = (fn.lower(*args).compile(), args)
        start = time.perf_counter()
        jax.block_until_ready(compiled[name][0](*args))
        number[name] = max(1, int(target_s / (time.perf_counter() - start)))
    times: dict[str, list[float]] = {name: [] for name in compiled}
    for _ in range(repeats):
        for name, (fn, args) in compiled.items():
            start = time.perf_counter()
            for _ in range(number[name]):
                out = fn(*args)
            jax.block_until_ready(out)
            times[name].append((time.perf_counter() - start) / number[name])
    return times


def spawn(venv: str, python: str, task: str, workdir: Path, dtype: str,
          args: argparse.Namespace) -> dict:
    """Runs ``worker`` in ``python`` (neural-tangents too in the side venv); returns its
    JSON (and ``kernels`` if any)."""
    with_nt = venv == "side"
    out = workdir / f"{task}-{venv}-{dtype}-{time.time_ns()}.json"
    cmd = [python, str(Path(__file__).resolve()), "--worker", task, "--workdir",
           str(workdir), "--dtype", dtype, "--repeats", str(args.repeats),
           "--result", str(out)] + ["--nt"] * with_nt + ["--quick"] * args.quick
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    result = json.loads(out.read_text())
    if out.with_suffix(".npz").exists():
        with np.load(out.with_suffix(".npz")) as z:
            result["kernels"] = {k: z[k].astype(np.float64) for k in z}
    return result


def relative(a: np.ndarray, b: np.ndarray) -> float:
    """``||a - b|| / ||b||`` (Frobenius)."""
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def agreement(kernels: dict[tuple[str, str], dict], quick: bool) -> dict:
    """Per venv, dtype, model and case: the largest relative difference to any
    neural-tangents kernel of the same model and dtype."""
    table: dict = {}
    for (venv, dtype), ks in kernels.items():
        theirs = kernels[("side", dtype)]
        for spec in specs(quick):
            refs = [v for k, v in theirs.items() if k.startswith(f"{spec.name}/neural")]
            for key, k in ks.items():
                if key.startswith(spec.name + "/"):
                    worst = max(relative(k, ref) for ref in refs)
                    table.setdefault(venv, {}).setdefault(dtype, {})[key] = worst
    return table


def medians(rounds: list[dict]) -> dict[str, dict[str, float]]:
    """Median over every timed call of every round, per venv/model/case."""
    pooled: dict = {}
    for r in rounds:
        for model, cases in r["times"].items():
            for name, ts in cases.items():
                pooled.setdefault(f"{r['venv']}/{model}/{name}", []).extend(ts)
    return {k: statistics.median(v) for k, v in pooled.items()}


def rows(report: dict, quick: bool) -> list[list[str]]:
    """Table rows: agreement per precision and venv, times and ratios to neural-tangents."""
    agree, t = report["agreement"], report["seconds"]
    out = []
    for spec in specs(quick):
        for name in list(OURS) + list(THEIRS):
            ours = name in OURS
            key = f"{spec.name}/{'ours' if ours else 'neural-tangents'}: {name}"
            nt_key = f"side/{spec.name}/neural-tangents: {MATCH.get(name, name)}"
            errs = [agree.get(v, {}).get(d, {}).get(key) for v in ("side", "main")
                    for d in ("float32", "float64")]
            secs = [t.get(f"{v}/{key}") for v in ("side", "main")] if ours else [
                t.get(f"side/{key}"), None]
            ratios = [s / t[nt_key] if s is not None and ours else None for s in secs]
            out.append([spec.name, key.split("/", 1)[1]] + [fmt(e, ".1e") for e in errs]
                       + [fmt(s, ".4g") for s in secs] + [fmt(r, ".2f") for r in ratios])
    return out


def fmt(value: float | None, spec: str) -> str:
    """``value`` formatted, or ``-``."""
    return "-" if value is None else format(value, spec)


def markdown(header: list[str], body: list[list[str]]) -> str:
    """A Markdown table."""
    lines = [header, ["---"] * len(header)] + body
    return "\n".join("| " + " | ".join(line) + " |" for line in lines)


def versions(python: str) -> str:
    """``jax X, flax Y`` of a venv's python."""
    code = "import jax, flax; print(f'jax {jax.__version__}, flax {flax.__version__}')"
    return subprocess.run([python, "-c", code], check=True, capture_output=True,
                          text=True).stdout.strip()


def all_kernels(venvs: dict[str, str], workdir: Path, args: argparse.Namespace
                ) -> tuple[dict[tuple[str, str], dict], dict[str, dict[str, float]]]:
    """Every kernel per (venv, dtype), and the seconds of its one call (compile
    included)."""
    kernels, seconds = {}, {}
    for dtype in ("float32", "float64"):
        for venv, python in venvs.items():
            result = spawn(venv, python, "kernels", workdir, dtype, args)
            kernels[(venv, dtype)] = result["kernels"]
            seconds[f"{venv}/{dtype}"] = result["times"]
            print(f"{dtype} kernels: {venv} done", file=sys.stderr, flush=True)
    return kernels, seconds


def timed_rounds(venvs: dict[str, str], workdir: Path, args: argparse.Namespace
                 ) -> list[dict]:
    """``args.rounds`` timing workers per venv, the venvs' order alternating."""
    rounds = []
    for r in range(args.rounds):
        order = list(venvs.items()) if r % 2 == 0 else list(venvs.items())[::-1]
        for venv, python in order:
            rounds.append({"venv": venv, **spawn(venv, python, "times", workdir, "float32",
                                                 args)})
            print(f"round {r + 1}/{args.rounds}: {venv} timed", file=sys.stderr, flush=True)
    return rounds


def run(args: argparse.Namespace, workdir: Path) -> dict:
    """Writes the inputs, computes and compares the kernels, times them in rounds."""
    rng = np.random.default_rng(args.seed)
    np.savez(workdir / "inputs.npz", **{f"{s.name}/{k}": v for s in specs(args.quick)
                                        for k, v in make_inputs(s, rng).items()})
    venvs = {"side": sys.executable}
    if args.main_python:
        venvs["main"] = args.main_python
    report = {"models": {s.name: s.describe() for s in specs(args.quick)},
              "versions": {v: versions(p) for v, p in venvs.items()},
              "cpu_count": os.cpu_count(), "load_average_start": os.getloadavg()[0],
              "command": " ".join(sys.argv), "rounds": args.rounds, "repeats": args.repeats}
    kernels, report["kernel_seconds"] = all_kernels(venvs, workdir, args)
    report["agreement"] = agreement(kernels, args.quick)
    report["accepted"] = all(err <= TOLERANCE[d] for v in report["agreement"].values()
                             for d, errs in v.items() for err in errs.values())
    rounds = timed_rounds(venvs, workdir, args)
    report["seconds"] = medians(rounds)
    report["rounds_raw"] = [{k: r[k] for k in ("venv", "jax", "times")} for r in rounds]
    report["load_average_end"] = os.getloadavg()[0]
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", default="/tmp/nt_compare.json", help="JSON report")
    parser.add_argument("--main-python", default=str(ROOT / ".venv" / "bin" / "python"),
                        help="the main venv's python ('' to skip it)")
    parser.add_argument("--rounds", type=int, default=3, help="timing rounds per venv")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per round")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="tiny models (smoke check)")
    for flag in ("--worker", "--workdir", "--dtype", "--result"):
        parser.add_argument(flag, help=argparse.SUPPRESS)
    parser.add_argument("--nt", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        sys.path.insert(0, str(ROOT))          # lazy_hasty from this checkout
        worker(args.worker, Path(args.workdir), args.dtype, args.nt, args.quick,
               args.repeats, Path(args.result))
        return 0
    with tempfile.TemporaryDirectory(prefix="nt_compare-") as tmp:
        report = run(args, Path(tmp))
    Path(args.out).write_text(json.dumps(report, indent=1))
    side, main_ = report["versions"]["side"], report["versions"].get("main", "-")
    print(f"side venv: {side}; main venv: {main_}; {report['cpu_count']} CPU cores, "
          f"load average {report['load_average_start']:.1f} -> "
          f"{report['load_average_end']:.1f}\n")
    print(markdown(["model", "kernel", "f32 diff (side)", "f64 diff (side)", "f32 diff (main)",
                    "f64 diff (main)", "s (side)", "s (main)", "ratio side/NT",
                    "ratio main/NT"], rows(report, args.quick)))
    print(f"\naccepted (f32 <= 1e-5, f64 <= 1e-10): {report['accepted']}; report {args.out}")
    return 0 if report["accepted"] else 1


if __name__ == "__main__":
    sys.exit(main())
