#!/usr/bin/env bash
# The one-command accelerator check: sets up ./.venv if needed (install the accelerator
# build of JAX into it first, e.g. .venv/bin/pip install 'jax[cuda12]'), then writes
# OUTDIR/accelerator_check.json (fields: benchmarks/accelerator_check.py). --quick: tiny
# sizes, runs on CPU in about a minute (the test suite runs it).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py="$(bash "$root/scripts/setup_env.sh")"
cd "$root"
exec "$py" benchmarks/accelerator_check.py "$@"
