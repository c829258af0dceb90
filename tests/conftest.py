"""Shared test fixtures, and the test session's set-up: one compilation cache,
XLA:CPU flags, the order of the files and each parallel worker's share of the cores.

Many tests compile the same small programs, in-process and in the ``main.py``
subprocesses they start (which inherit the environment). JAX's persistent
compilation cache, in a directory of this session only, compiles each once: a
cached executable is the same machine code, so no number changes. The first
process to import this file (pytest, or its controller when tests run in
parallel workers) makes the directory; the workers inherit it.
"""

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile


def _xla_accepts(flag: str) -> bool:
    """Whether this jaxlib's XLA knows ``flag`` (it aborts a process on an unknown one)."""
    probe = subprocess.run([sys.executable, "-c", "import jax; jax.devices()"],
                           env=dict(os.environ, XLA_FLAGS=flag), capture_output=True)
    return probe.returncode == 0


# XLA:CPU settings for the whole session (the workers and the main.py subprocesses
# inherit them); XLA ignores a token without "--", so only XLA flags belong here.
# - No Eigen intra-op threads: the parallel workers already use every core, and on
#   tiny programs Eigen's thread pool costs more than it gives.
# - The loop emitters instead of the MLIR fusion emitters: they compile the suite's
#   programs about 2x faster (compiling was about 40% of its CPU time). The code
#   they give computes the same maths: the digits twins' and yin-yang's records are
#   byte-identical either way; a ResNet's losses are too, and its linearity metrics
#   differ in the last float32 bit (benchmarks/README.md, Test suite). The suite
#   passes either way. Only where this jaxlib's XLA still has the flag.
# A flag already in XLA_FLAGS, with any value, is left as the caller set it.
for flag, needs_probe in (("--xla_cpu_multi_thread_eigen=false", False),
                          ("--xla_cpu_use_fusion_emitters=false", True)):
    name = flag.split("=")[0]
    if name not in os.environ.get("XLA_FLAGS", "") and (not needs_probe
                                                         or _xla_accepts(flag)):
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {flag}".strip()

_OWN_CACHE = None
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _OWN_CACHE = tempfile.mkdtemp(prefix="lazy_hasty_jax_cache_")
    os.environ.update(JAX_COMPILATION_CACHE_DIR=_OWN_CACHE,
                      JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
                      JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")

import jax  # noqa: E402  (reads the cache settings above)
import pytest  # noqa: E402


# The slowest files, slowest first (benchmarks/README.md, Test suite, has their
# times). The parallel workers (scripts/test.sh: --dist loadfile
# --no-loadscope-reorder) take files in collection order, so the long ones start
# early and the short ones fill the gaps.
SLOWEST_FIRST = ("experiments/test_difficulty_spurious.py", "test_main.py", "test_ntk_zoo.py",
                 "test_ntk.py", "experiments/test_sweep.py", "test_docs.py",
                 "experiments/test_yinyang.py", "engine/test_preemption.py",
                 "benchmarks/test_accelerator_check.py", "engine/test_loop.py",
                 "experiments/test_richness_experiments.py", "experiments/test_difficulty.py",
                 "models/test_models.py", "colabs/test_yinyang.py", "experiments/test_seeds.py",
                 "experiments/test_agreement.py", "test_richness.py",
                 "analysis/test_consistency.py", "models/test_torch_import.py",
                 "test_function_space.py", "test_kernel_operator.py")


def pytest_collection_modifyitems(items):
    here = os.path.dirname(os.path.abspath(__file__))
    rank = {name: i for i, name in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(os.path.relpath(item.path, here), len(rank)))


def pytest_unconfigure(config):
    if _OWN_CACHE is not None:
        shutil.rmtree(_OWN_CACHE, ignore_errors=True)


@pytest.fixture
def x64():
    """Runs a test with 64-bit floats, restoring the default afterwards."""
    with jax.enable_x64(True):
        yield


@contextlib.contextmanager
def _unoptimized_compiles():
    """Skips XLA's optimisation passes within: compiles about 2x faster.

    For tests whose cost is compiling many kernels on tiny inputs and whose checks
    are exact relations or tolerances on the maths, not the rounding of optimised
    kernels. The caches are cleared after, so no kernel compiled here serves
    another test.
    """
    before = jax.config.read("jax_disable_most_optimizations")
    jax.config.update("jax_disable_most_optimizations", True)
    try:
        yield
    finally:
        jax.config.update("jax_disable_most_optimizations", before)
        jax.clear_caches()


@pytest.fixture
def quick_compiles():
    """:func:`_unoptimized_compiles` for one test."""
    with _unoptimized_compiles():
        yield


@pytest.fixture(scope="module")
def quick_compiles_module():
    """:func:`_unoptimized_compiles` for a whole test module."""
    with _unoptimized_compiles():
        yield


def pytest_configure(config):
    """Gives each parallel worker (and the processes it starts) its own share of the
    cores. XLA:CPU's runtime threads keep spinning for a while after each small
    program; unpinned, they spin on the core the other worker needs."""
    worker = getattr(config, "workerinput", None)
    if worker is None or not hasattr(os, "sched_setaffinity"):     # e.g. macOS
        return
    cpus = sorted(os.sched_getaffinity(0))
    index, count = int(worker["workerid"][2:]), worker["workercount"]
    os.sched_setaffinity(0, cpus[index::count] or [cpus[index % len(cpus)]])
