#!/usr/bin/env bash
# Quickstart command 2: sets up ./.venv if needed, then runs the test suite.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py="$(bash "$root/scripts/setup_env.sh")"
cd "$root"
exec "$py" -m pytest -q "$@"
