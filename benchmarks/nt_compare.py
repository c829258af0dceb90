"""Our empirical NTK against neural-tangents' ``empirical_ntk_fn``: agreement, time,
memory, and each against the structured route's FLOP floor.

neural-tangents 0.6.5 does not import with jax >= 0.6, so it runs in the pinned
side venv of ``scripts/nt_side_env.sh``; run this script with that venv's
python. It is only a benchmark: ``lazy_hasty`` never imports neural-tangents.
The script spawns workers on one set of inputs and parameters (an ``.npz``): in
the side venv (neural-tangents and ``lazy_hasty.ntk`` on jax 0.4.30) and in the
main venv (``lazy_hasty.ntk`` on the current jax). They compute every kernel in
float32, and in float64 neural-tangents' Jacobian contraction (the reference
every kernel is compared with) and ours (XLA:CPU's float64 convolutions are slow;
``tests/test_ntk_zoo.py`` checks every implementation in float64), then time
them (float32, jitted, compile excluded, after a warm-up call) in rounds that
alternate the two venvs.
Every implementation of both libraries takes the same function ``f(params, x)``:
plain-JAX and flax.linen MLPs and CNNs, and a flax ResNet18.

The floor of a kernel is the FLOPs XLA counts for our structured route on the
whole kernel (its layer Grams and the passes that produce their factors) at the
float32 rate of a large matmul measured in the same worker. Memory is XLA's plan
for the compiled call (temporaries plus the output), where the jax reports it.
Usage::

    $(scripts/nt_side_env.sh) benchmarks/nt_compare.py [OUT.json] [--rounds 2] [--quick]
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
OURS = {"jacobian": ("jacobian", None), "ntvp": ("ntvp", None),
        "structured": ("structured", None), "auto": ("auto", None),
        "auto, chunks of 10": ("auto", 10)}
THEIRS = {"JACOBIAN_CONTRACTION": 1, "NTK_VECTOR_PRODUCTS": 2,
          "STRUCTURED_DERIVATIVES": 3, "AUTO": 0}
TOLERANCE = {"float32": 1e-5, "float64": 1e-10}
REFERENCE = "neural-tangents: JACOBIAN_CONTRACTION"
# Only these run in float64 (XLA:CPU's float64 convolutions are slow): the reference
# and our Jacobian contraction on the other jax. The float64 oracle tests of
# tests/test_ntk_zoo.py cover every implementation.
FLOAT64_CASES = (REFERENCE, "ours: jacobian")


@dataclasses.dataclass(frozen=True)
class Spec:
    """A model: ``hidden`` Dense (MLP) or 3x3 Conv (CNN) layers then Dense(classes),
    as plain JAX or flax.linen layers; a CNN pools globally, or with ``dense``
    2x2 and then its Dense layers; or (``family="resnet18"``) the project's CIFAR
    ResNet18 of base width ``hidden[0]`` with frozen BatchNorm."""

    name: str
    family: str
    layers: str
    n: int
    input_shape: tuple[int, ...]
    hidden: tuple[int, ...]
    classes: int = 10
    dense: tuple[int, ...] = ()

    def describe(self) -> str:
        widths = "-".join(map(str, self.hidden))
        shape = "x".join(map(str, self.input_shape))
        pool = (f"2x2 avg pool, dense {'-'.join(map(str, self.dense))}" if self.dense
                else "global avg pool")
        kind = {"mlp": f"MLP {widths}", "cnn": f"CNN 3x3 conv {widths}, {pool}",
                "resnet18": f"ResNet18 width {widths}, frozen BatchNorm"}[self.family]
        return f"{kind} ({self.layers}), in {shape}, C={self.classes}, N={self.n}"


def specs(quick: bool) -> list[Spec]:
    """The models (tiny with ``quick``)."""
    if quick:
        return [Spec("mlp", "mlp", "jax", 12, (16,), (32, 32)),
                Spec("cnn_flax", "cnn", "flax", 6, (6, 6, 3), (4, 4)),
                Spec("cnn512", "cnn", "jax", 6, (6, 6, 3), (4,), dense=(8,)),
                Spec("resnet18", "resnet18", "flax", 4, (8, 8, 3), (2,))]
    mlp, cnn = ((64,), (512, 512)), ((16, 16, 3), (32, 32))
    return [Spec("mlp", "mlp", "jax", 100, *mlp), Spec("mlp_flax", "mlp", "flax", 100, *mlp),
            Spec("cnn", "cnn", "jax", 32, *cnn), Spec("cnn_flax", "cnn", "flax", 32, *cnn),
            Spec("cnn512", "cnn", "jax", 32, *cnn, dense=(512,)),
            Spec("cnn512_flax", "cnn", "flax", 32, *cnn, dense=(512,)),
            Spec("resnet18", "resnet18", "flax", 20, (16, 16, 3), (8,))]


def _resnet(spec: Spec) -> tuple[Callable, Any]:
    """The ResNet18's ``apply_fn`` and its initial parameters (a fixed key)."""
    import jax
    import jax.numpy as jnp
    from lazy_hasty import models
    module = models.get_model("resnet18", num_outputs=spec.classes, width=spec.hidden[0],
                              stem="cifar")
    params, state = models.init_model(module, jax.random.PRNGKey(0),
                                      jnp.zeros((1,) + spec.input_shape))
    return models.make_apply_fn(module, state), params


def make_inputs(spec: Spec, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Float64 inputs ``x`` and parameters: ``layer{i}.kernel|bias`` (flax names), or
    the ResNet's initial leaves ``leaf{i}`` in pytree order."""
    arrays = {"x": rng.normal(size=(spec.n,) + spec.input_shape)}
    if spec.family == "resnet18":
        import jax
        leaves = jax.tree_util.tree_leaves(_resnet(spec)[1])
        return {**arrays, **{f"leaf{i}": np.asarray(a, np.float64) for i, a in enumerate(leaves)}}
    fan_in = spec.input_shape[-1]
    for i, width in enumerate(spec.hidden + spec.dense + (spec.classes,)):
        conv = spec.family == "cnn" and i < len(spec.hidden)
        if spec.dense and i == len(spec.hidden):          # after the 2x2 pool, flattened
            fan_in *= (spec.input_shape[0] // 2) * (spec.input_shape[1] // 2)
        shape = (3, 3, fan_in, width) if conv else (fan_in, width)
        arrays[f"layer{i}.kernel"] = rng.normal(size=shape) / np.sqrt(np.prod(shape[:-1]))
        arrays[f"layer{i}.bias"] = 0.1 * rng.normal(size=width)
        fan_in = width
    return arrays


def _pool(spec: Spec, x: Any) -> Any:
    """A CNN's features: the global mean, or (with ``dense``) 2x2 means flattened."""
    if spec.family != "cnn":
        return x
    if not spec.dense:
        return x.mean(axis=(1, 2))
    n, h, w, c = x.shape
    return x.reshape(n, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4)).reshape(n, -1)


def pure_fn(spec: Spec) -> Callable[[Any, Any], Any]:
    """``f(params, x)`` in plain jax (``params = {"params": {"layer{i}": ...}}``)."""
    import jax

    def apply(params: Any, x: Any) -> Any:
        layers = params["params"]
        for i in range(len(spec.hidden)):
            k, b = layers[f"layer{i}"]["kernel"], layers[f"layer{i}"]["bias"]
            x = jax.lax.conv_general_dilated(
                x, k, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
            ) if spec.family == "cnn" else x @ k
            x = jax.nn.relu(x + b)
        x = _pool(spec, x)
        for i in range(len(spec.hidden), len(spec.hidden) + len(spec.dense)):
            x = jax.nn.relu(x @ layers[f"layer{i}"]["kernel"] + layers[f"layer{i}"]["bias"])
        last = layers[f"layer{len(spec.hidden) + len(spec.dense)}"]
        return x @ last["kernel"] + last["bias"]

    return apply


def flax_fn(spec: Spec) -> Callable[[Any, Any], Any]:
    """The same function from ``flax.linen`` Dense/Conv layers."""
    import flax.linen as nn

    class Net(nn.Module):
        @nn.compact
        def __call__(self, x: Any) -> Any:
            for i, width in enumerate(spec.hidden):
                layer = (nn.Conv(width, (3, 3), padding="SAME", name=f"layer{i}")
                         if spec.family == "cnn" else nn.Dense(width, name=f"layer{i}"))
                x = nn.relu(layer(x))
            x = _pool(spec, x)
            for i, width in enumerate(spec.dense, start=len(spec.hidden)):
                x = nn.relu(nn.Dense(width, name=f"layer{i}")(x))
            return nn.Dense(spec.classes, name=f"layer{len(spec.hidden) + len(spec.dense)}")(x)

    return Net().apply


def model(spec: Spec, arrays: dict, dtype: str) -> tuple[Callable, Any, Any]:
    """``(f, params, x)`` of ``spec`` from the shared arrays, in ``dtype``."""
    import jax
    import jax.numpy as jnp
    x = jnp.asarray(arrays["x"], dtype)
    if spec.family == "resnet18":
        apply_fn, template = _resnet(spec)
        leaves = [jnp.asarray(arrays[f"leaf{i}"], dtype)
                  for i in range(len(jax.tree_util.tree_leaves(template)))]
        return apply_fn, jax.tree_util.tree_unflatten(
            jax.tree_util.tree_structure(template), leaves), x
    layers: dict = {}
    for key, value in arrays.items():
        if key != "x":
            layer, leaf = key.split(".")
            layers.setdefault(layer, {})[leaf] = jnp.asarray(value, dtype)
    return (flax_fn if spec.layers == "flax" else pure_fn)(spec), {"params": layers}, x


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
    from lazy_hasty import ntk

    f, params, x = model(spec, arrays, dtype)
    cases = {f"ours: {name}": (ntk.empirical_ntk_fn(f, implementation=impl, chunk_size=chunk),
                               (params, x), False)
             for name, (impl, chunk) in OURS.items()}
    if with_nt:
        import neural_tangents as nt
        restore_nt_aliases()
        for name, impl in THEIRS.items():
            fn = nt.empirical_ntk_fn(f, trace_axes=(), vmap_axes=0, implementation=impl)
            cases[f"neural-tangents: {name}"] = (jax.jit(fn), (x, None, params), True)
    return cases


def floor(spec: Spec, arrays: dict) -> dict[str, Any]:
    """The structured route's FLOPs (XLA's count for the whole float32 kernel), the
    float32 rate of a 2048 x 2048 matmul here, their ratio in seconds, and what
    ``auto`` chooses."""
    import jax
    import jax.numpy as jnp
    from lazy_hasty import ntk
    f, params, x = model(spec, arrays, "float32")
    choice = ntk.choose_implementation(f, params, x)
    a = jnp.ones((2048, 2048), jnp.float32)
    matmul = jax.jit(lambda m: m @ m).lower(a).compile()
    jax.block_until_ready(matmul(a))
    best = min(_seconds(lambda: jax.block_until_ready(matmul(a))) for _ in range(5))
    rate = 2 * 2048 ** 3 / best
    flops = choice.costs["structured"]["flops"]
    return {"flops": flops, "matmul_flops_per_s": rate, "seconds": flops / rate,
            "auto": choice.implementation}


def _seconds(call: Callable[[], Any]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def worker(task: str, workdir: Path, dtype: str, with_nt: bool, quick: bool,
           repeats: int, out: Path) -> None:
    """Computes (``kernels``) or times (``times``) every case of every model; a case
    that fails is recorded with its error."""
    import jax
    jax.config.update("jax_enable_x64", dtype == "float64")
    inputs = np.load(workdir / "inputs.npz")
    result: dict[str, Any] = {"jax": jax.__version__, "times": {}, "memory": {},
                              "errors": {}, "floor": {}}
    kernels = {}
    for spec in specs(quick):
        arrays = {k.split("/", 1)[1]: inputs[k] for k in inputs if k.startswith(spec.name + "/")}
        cases = kernel_cases(spec, arrays, dtype, with_nt)
        if dtype == "float64":       # the reference and an independent check of it
            cases = {k: v for k, v in cases.items() if k in FLOAT64_CASES}
        for name, (fn, args, nt_layout) in cases.items():
            key = f"{spec.name}/{name}"
            try:
                compiled = fn.lower(*args).compile()
                k = np.asarray(jax.block_until_ready(compiled(*args)))
            except Exception as error:                   # noqa: BLE001 (recorded)
                result["errors"][key] = f"{type(error).__name__}: {str(error)[:200]}"
                continue
            if task == "kernels":
                kernels[key] = k.transpose(0, 2, 1, 3) if nt_layout else k
            else:
                result["times"].setdefault(spec.name, {})[name] = time_case(
                    compiled, args, repeats)
                result["memory"][key] = planned_bytes(compiled)
        if task == "times":
            result["floor"][spec.name] = floor(spec, arrays)
    if kernels:
        np.savez(out.with_suffix(".npz"), **kernels)
    out.write_text(json.dumps(result))


def planned_bytes(compiled: Any) -> float | None:
    """XLA's memory plan of a compiled call: temporaries plus output (None where this
    jax does not report it)."""
    try:
        analysis = compiled.memory_analysis()
        return float(analysis.temp_size_in_bytes + analysis.output_size_in_bytes)
    except (AttributeError, NotImplementedError, TypeError):
        return None


def time_case(compiled: Any, args: tuple, repeats: int, target_s: float = 0.2
              ) -> list[float]:
    """Seconds per call: after the warm-up call, ``repeats`` samples, each the mean of
    as many calls as one call says fill ``target_s`` (at least one)."""
    import jax
    number = max(1, int(target_s / _seconds(lambda: jax.block_until_ready(compiled(*args)))))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(number):
            out = compiled(*args)
        jax.block_until_ready(out)
        times.append((time.perf_counter() - start) / number)
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
    """Per venv, dtype, model and case: the relative difference to neural-tangents'
    float64 Jacobian contraction of that model."""
    table: dict = {}
    for (venv, dtype), ks in kernels.items():
        for spec in specs(quick):
            ref = kernels[("side", "float64")][f"{spec.name}/{REFERENCE}"]
            for key, k in ks.items():
                if key.startswith(spec.name + "/"):
                    table.setdefault(venv, {}).setdefault(dtype, {})[key] = relative(k, ref)
    return table


def medians(rounds: list[dict]) -> dict[str, dict[str, float]]:
    """Median over every timed call of every round, per venv/model/case."""
    pooled: dict = {}
    for r in rounds:
        for model, cases in r["times"].items():
            for name, ts in cases.items():
                pooled.setdefault(f"{r['venv']}/{model}/{name}", []).extend(ts)
    return {k: statistics.median(v) for k, v in pooled.items()}


def _nt_best(seconds: dict, model: str) -> float | None:
    """neural-tangents' fastest implementation that ran on ``model`` (side venv)."""
    ts = [seconds[f"side/{model}/neural-tangents: {name}"] for name in THEIRS
          if f"side/{model}/neural-tangents: {name}" in seconds]
    return min(ts) if ts else None


def rows(report: dict, quick: bool) -> list[list[str]]:
    """Per model and kernel: the largest difference to the reference over both venvs
    per precision, seconds and planned MiB per venv, seconds over the floor, and over
    neural-tangents' best (ours on the current jax, and on its jax 0.4.30)."""
    agree, t, mem, floors = (report[k] for k in ("agreement", "seconds", "memory", "floor"))
    out = []
    for spec in specs(quick):
        best = _nt_best(t, spec.name)
        for name in list(OURS) + list(THEIRS):
            ours = name in OURS
            key = f"{spec.name}/{'ours' if ours else 'neural-tangents'}: {name}"
            errs = [max((agree[v][d][key] for v in agree if key in agree[v].get(d, {})),
                        default=None) for d in ("float32", "float64")]
            secs = [t.get(f"{v}/{key}") for v in ("side", "main")]
            mib = [mem.get(f"{v}/{key}") for v in ("side", "main")]
            own, venv = (secs[1], "main") if ours else (secs[0], "side")
            over_floor = own / floors[venv][spec.name] if own and venv in floors else None
            vs_nt = [s / best if ours and s and best else None for s in (secs[1], secs[0])]
            failed = report["errors"].get(f"side/{key}")
            out.append([spec.name, key.split("/", 1)[1]] + [fmt(e, ".1e") for e in errs]
                       + [("fails" if failed and s is None and v == "side" else fmt(s, ".3g"))
                          for s, v in zip(secs, ("side", "main"))]
                       + [fmt(m and m / 2 ** 20, ".0f") for m in mib]
                       + [fmt(over_floor, ".1f")] + [fmt(r, ".2f") for r in vs_nt])
    return out


HEADER = ["model", "kernel", "f32 diff", "f64 diff", "s (jax 0.4.30)", "s (current jax)",
          "MiB (jax 0.4.30)", "MiB (current jax)", "x floor", "/ NT best",
          "/ NT best, same jax"]


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
                ) -> tuple[dict[tuple[str, str], dict], dict[str, str]]:
    """Every kernel per (venv, dtype), and the cases that failed (``venv/model/case``
    -> error)."""
    kernels, errors = {}, {}
    for dtype in ("float32", "float64"):
        for venv, python in venvs.items():
            result = spawn(venv, python, "kernels", workdir, dtype, args)
            kernels[(venv, dtype)] = result.get("kernels", {})
            errors.update({f"{venv}/{k}": e for k, e in result["errors"].items()})
            print(f"{dtype} kernels: {venv} done", file=sys.stderr, flush=True)
    return kernels, errors


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
    kernels, report["errors"] = all_kernels(venvs, workdir, args)
    report["agreement"] = agreement(kernels, args.quick)
    report["accepted"] = all(err <= TOLERANCE[d] for v in report["agreement"].values()
                             for d, errs in v.items() for err in errs.values())
    rounds = timed_rounds(venvs, workdir, args)
    report["seconds"] = medians(rounds)
    report["memory"] = {f"{r['venv']}/{k}": m for r in rounds for k, m in r["memory"].items()}
    report["floor"] = {v: {m: statistics.median(r["floor"][m]["seconds"] for r in rounds
                                                if r["venv"] == v)
                           for m in report["models"]} for v in venvs}
    report["auto"] = {f"{r['venv']}/{m}": f["auto"] for r in rounds for m, f in r["floor"].items()}
    report["floor_flops"] = {m: f["flops"] for m, f in rounds[0]["floor"].items()}
    report["rounds_raw"] = [{k: r[k] for k in ("venv", "jax", "times", "floor")} for r in rounds]
    report["load_average_end"] = os.getloadavg()[0]
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", default="/tmp/nt_compare.json", help="JSON report")
    parser.add_argument("--main-python", default=str(ROOT / ".venv" / "bin" / "python"),
                        help="the main venv's python ('' to skip it)")
    parser.add_argument("--rounds", type=int, default=2, help="timing rounds per venv")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per round")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="tiny models (smoke check)")
    for flag in ("--worker", "--workdir", "--dtype", "--result"):
        parser.add_argument(flag, help=argparse.SUPPRESS)
    parser.add_argument("--nt", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))              # lazy_hasty from this checkout
    if args.worker:
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
    print(markdown(HEADER, rows(report, args.quick)))
    print(f"\nauto chose: {report['auto']}\nfailed: {report['errors']}")
    print(f"\naccepted (f32 <= 1e-5, f64 <= 1e-10): {report['accepted']}; report {args.out}")
    return 0 if report["accepted"] else 1


if __name__ == "__main__":
    sys.exit(main())
