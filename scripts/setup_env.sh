#!/usr/bin/env bash
# Creates ./.venv from the pinned constraints if it is missing or stale, then
# prints its python. Sourced by the Quickstart scripts; needs only python3.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${LAZY_HASTY_VENV:-$root/.venv}"
stamp="$venv/.lazy-hasty-installed"
python="${PYTHON:-python3}"
if [[ ! -x "$venv/bin/python" ]]; then
  echo "setup: creating $venv" >&2
  "$python" -m venv "$venv"
fi
if [[ ! -f "$stamp" || "$root/constraints.txt" -nt "$stamp" || "$root/setup.cfg" -nt "$stamp" ]]; then
  echo "setup: installing lazy-hasty and its pinned dependencies into $venv" >&2
  "$venv/bin/python" -m pip install -q --upgrade pip >&2
  "$venv/bin/python" -m pip install -q -c "$root/constraints.txt" -e "$root[test]" >&2
  touch "$stamp"
fi
echo "$venv/bin/python"
