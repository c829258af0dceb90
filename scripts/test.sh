#!/usr/bin/env bash
# Quickstart command 2: sets up ./.venv if needed, then runs the test suite.
# Test files run in parallel on LAZY_HASTY_TEST_WORKERS processes (default 2, one per
# core; 0 runs everything in this process), each file's tests in one process so
# that its shared fixtures are built once.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py="$(bash "$root/scripts/setup_env.sh")"
cd "$root"
exec "$py" -m pytest -q -n "${LAZY_HASTY_TEST_WORKERS:-2}" --dist loadfile \
    --no-loadscope-reorder "$@"
