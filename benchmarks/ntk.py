"""Cost of the empirical NTK implementations: wall time, XLA memory and peak RSS.

Each case runs in its own subprocess, so that its peak resident memory is its
own. For the yin-yang MLP and a norm-free CIFAR ResNet18 (C = 10) the full
kernel ``(N, C, N, C)`` is timed per implementation, and for N too large to
run every implementation the cost is extrapolated from the measured cost of one
chunk evaluation and one block contraction. Usage:
``python benchmarks/ntk.py [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time
from typing import Any

import jax

from core import markdown, memory_bytes
from lazy_hasty import ntk
from lazy_hasty.models import get_model, init_model, make_apply_fn


def build(setup: str, n: int, quick: bool) -> tuple[Any, Any, jax.Array]:
    """``(apply_fn, params, x)`` of the MLP or the ResNet18 with ``n`` inputs."""
    key = jax.random.PRNGKey(1)
    if setup == "mlp":
        module, x = get_model("mlp"), jax.random.uniform(key, (n, 2), minval=-1.0)
    else:
        module = get_model("resnet18", num_outputs=10, stem="cifar", norm="none",
                           width=8 if quick else 64)
        x = jax.random.normal(key, (n, 32, 32, 3))
    params, state = init_model(module, jax.random.PRNGKey(0), x[:1])
    return make_apply_fn(module, state), params, x


def timed(compiled: Any, args: tuple, budget_s: float) -> float:
    """Median seconds per call after a warm-up call, over ~``budget_s`` (at least one
    call, at most 20)."""
    jax.block_until_ready(compiled(*args))
    times = []
    while not times or sum(times) < budget_s and len(times) < 20:
        start = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run_case(case: dict) -> dict:
    """Compiles and times one case; returns its figures."""
    apply_fn, params, x = build(case["setup"], case["n"], case["quick"])
    ntk.MAX_UNROLLED = ntk.MAX_UNROLLED if case["unroll"] else 0
    chunk = case["chunk"]
    if case["kind"] == "kernel":
        fns = [(ntk.empirical_ntk_fn(apply_fn, implementation=case["impl"],
                                     chunk_size=chunk), (params, x))]
    else:   # one chunk evaluation, one block contraction
        fns = lambda p, xc: ntk.chunk_functions(case["impl"], apply_fn, p, xc, chunk, chunk)
        features = jax.jit(lambda p, xc: fns(p, xc)[0](xc))
        f = features(params, x[:chunk])
        contract = jax.jit(fns(params, x[:chunk])[1])
        fns = [(features, (params, x[:chunk])), (contract, (f, f))]
    start = time.perf_counter()
    compiled = [fn.lower(*args).compile() for fn, args in fns]
    compile_s = time.perf_counter() - start
    seconds = [timed(c, args, case["budget_s"]) for c, (_, args) in zip(compiled, fns)]
    return {**case, "seconds": seconds, "compile_s": compile_s,
            "xla_mib": max(memory_bytes(c) for c in compiled) / 2**20,
            "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10}


def spawn(case: dict) -> dict:
    """``run_case`` in a fresh interpreter."""
    out = subprocess.run([sys.executable, __file__, "--case", json.dumps(case)],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def extrapolated_seconds(result: dict, n: int) -> float:
    """Symmetric kernel of ``n`` inputs from one chunk evaluation and one block."""
    m = math.ceil(n / result["chunk"])
    t_features, t_contract = result["seconds"]
    return (m + m * (m - 1) // 2) * t_features + m * (m + 1) // 2 * t_contract


def cases(quick: bool) -> list[dict]:
    """The cases to run (ResNet sizes shrink with ``--quick``)."""
    n_mlp, n_mid, n_big, c_jac, c_str = (16, 8, 16, 2, 8) if quick else (100, 20, 100, 4, 25)
    base = {"quick": quick, "unroll": True, "kind": "kernel", "budget_s": 2.0 if quick else 10.0}
    mk = lambda **kw: {**base, **kw}
    out = [mk(setup="mlp", n=n_mlp, chunk=None, impl=impl) for impl in ntk.IMPLEMENTATIONS]
    out += [mk(setup="resnet", n=4, chunk=None, impl=impl) for impl in ntk.IMPLEMENTATIONS]
    out += [mk(setup="resnet", n=n_mid, chunk=c_jac, impl="jacobian"),
            mk(setup="resnet", n=n_mid, chunk=c_jac, impl="structured"),
            mk(setup="resnet", n=n_mid, chunk=c_jac, impl="structured", unroll=False),
            mk(setup="resnet", n=n_mid, chunk=None, impl="structured"),
            mk(setup="resnet", n=n_big, chunk=c_str, impl="structured"),
            mk(setup="resnet", n=n_big, chunk=c_jac, impl="jacobian", kind="parts"),
            mk(setup="resnet", n=n_big, chunk=c_str, impl="structured", kind="parts")]
    return out


def row(r: dict, width: int) -> list[str]:
    """One table row; ``parts`` cases report their extrapolation to ``n``."""
    name = "MLP 2-60-60-60-1" if r["setup"] == "mlp" else f"ResNet18 w={width}"
    loop = "-" if r["chunk"] is None else "unrolled" if r["unroll"] else "lax.map"
    if r["kind"] == "kernel":
        seconds, how = r["seconds"][0], "measured"
    else:
        seconds = extrapolated_seconds(r, r["n"])
        how = (f"extrapolated: {r['seconds'][0]:.3g} s/chunk, "
               f"{r['seconds'][1]:.3g} s/block")
    memory = [f"{r['xla_mib']:.0f}", f"{r['rss_mib']:.0f}"] if how == "measured" else ["-"] * 2
    return [name, r["impl"], str(r["n"]), str(r["chunk"] or "-"), loop, f"{seconds:.3g}",
            how, f"{r['compile_s']:.1f}", *memory]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke check)")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args()
    jax.config.update("jax_default_prng_impl", "rbg")   # threefry compiles slowly on CPU
    if args.case:
        print(json.dumps(run_case(json.loads(args.case))))
        return
    print(f"jax {jax.__version__}, backend {jax.default_backend()}, "
          f"{os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f}\n")
    results = []
    for case in cases(args.quick):
        results.append(spawn(case))
        print(" | ".join(row(results[-1], 8 if args.quick else 64)), file=sys.stderr)
    print(markdown(["setup", "implementation", "N", "chunk", "chunk loop", "seconds", "how",
                    "compile s", "XLA MiB", "peak RSS MiB"],
                   [row(r, 8 if args.quick else 64) for r in results]))
    print(f"\nload average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
