"""Top eigenpairs of K(params0) without forming K (``lazy_hasty.kernel_operator``).

1. The digits noise twin's MLP at its initialisation on its 1,079 training examples
   (C = 10): the top 20 pairs by block Lanczos on the float32 operator against a
   float64 ``eigh`` of the full kernel (formed by ``ntk.empirical_ntk``): the
   eigenvalues' relative error, the largest principal angle between the two
   20-dimensional eigenspaces and between the largest leading ones that a gap sets
   apart from the rest, the residuals, and both times.
2. The same network on N = 20,000 generated inputs (standard normal, the digits'
   inputs' shape; C = 10, a kernel of 4e10 entries never formed): the top 20 pairs,
   their residuals, the time, the products and the process's peak RSS.

Usage: ``python benchmarks/spectrum.py [--quick] [--out OUT.json]`` (``--quick``:
N = 200 and 2,000).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from experiments import difficulty_setup, score_difficulty, sweep_runs  # noqa: E402
from lazy_hasty import kernel_operator, models, ntk, rng  # noqa: E402

K = 20
CHUNK = 1000


def network(n: int):
    """``(apply_fn, params0, x)``: the twin's MLP at its init, on its training
    examples (all, or the first ``n``)."""
    config = sweep_runs.load_config(os.path.join(ROOT, "configs/digits_noise.py"), [])
    data = score_difficulty.load(config)
    x = jnp.asarray(data.groups["train"]["all"].x[:n or None])
    module = difficulty_setup.module_of(config, data.num_classes)
    params, state = models.init_model(module, rng.jax_key(config.seed, "init"), x[:1])
    return models.make_apply_fn(module, state), params, x


def principal_sine(a: np.ndarray, b: np.ndarray) -> float:
    """Sine of the largest principal angle between the column spans of ``a`` and ``b``."""
    qa, qb = np.linalg.qr(a)[0], np.linalg.qr(b)[0]
    cosines = np.linalg.svd(qa.T @ qb, compute_uv=False)
    return float(np.sqrt(max(0.0, 1.0 - cosines.min() ** 2)))


def separated_prefix(values: np.ndarray, gap: float = 0.99) -> int:
    """The largest ``j <= K`` whose ``lambda_{j+1} / lambda_j <= gap``: the top ``j``
    eigenvectors span a subspace set apart from the rest (0 if none)."""
    ok = [j for j in range(1, K + 1) if values[j] / values[j - 1] <= gap]
    return max(ok, default=0)


def against_eigh(n: int) -> dict:
    """The top ``K`` pairs by Lanczos against a float64 ``eigh`` of the whole kernel:
    the eigenvalues' relative error, and the principal-angle sine of the largest
    separated leading subspace (within a near-cluster the vectors are not unique)."""
    apply_fn, params, x = network(n)
    start = time.perf_counter()
    dense = np.asarray(ntk.empirical_ntk(apply_fn, params, x, chunk_size=CHUNK), np.float64)
    all_values, all_vectors = np.linalg.eigh(dense.reshape(dense.shape[0] * 10, -1))
    all_values, all_vectors = all_values[::-1], all_vectors[:, ::-1]
    values, vectors = all_values[:K], all_vectors[:, :K]
    dense_s = time.perf_counter() - start
    start = time.perf_counter()
    op = kernel_operator.kernel_operator(apply_fn, params, x, chunk_size=CHUNK)
    pairs = kernel_operator.top_eigenpairs(op, (len(x), 10), K)
    lanczos_s = time.perf_counter() - start
    j = separated_prefix(all_values)
    got = pairs.vectors.reshape(-1, K)
    return {"n": len(x), "eigh_seconds": dense_s, "lanczos_seconds": lanczos_s,
            "products": pairs.products,
            "max_value_error": float(np.max(np.abs(pairs.values - values) / values)),
            "subspace_sine_top20": principal_sine(got, vectors),
            "gap_20_21": float(all_values[K] / values[-1]),
            "separated_prefix": j,
            "subspace_sine_separated": principal_sine(got[:, :j], vectors[:, :j]) if j else None,
            "max_residual": float(pairs.residuals.max())}


def large(n: int) -> dict:
    """The top ``K`` pairs on ``n`` generated inputs: time, products, residuals, the
    Krylov basis's size and the process's peak RSS."""
    apply_fn, params, example = network(1)
    x = jax.random.normal(jax.random.PRNGKey(0), (n,) + example.shape[1:], jnp.float32)
    start = time.perf_counter()
    op = kernel_operator.kernel_operator(apply_fn, params, x, chunk_size=CHUNK)
    pairs = kernel_operator.top_eigenpairs(op, (n, 10), K, tol=1e-4)
    return {"n": n, "seconds": time.perf_counter() - start, "products": pairs.products,
            "max_residual": float(pairs.residuals.max()),
            "basis_gb": 8 * n * 10 * pairs.products / 2 ** 30,
            "values": [float(v) for v in pairs.values],
            "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    generated = large(2000 if args.quick else 20000)     # first: its peak RSS is its own
    result = {"jax": jax.__version__, "digits": against_eigh(200 if args.quick else 0),
              "generated": generated}
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
