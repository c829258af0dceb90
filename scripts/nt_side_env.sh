#!/usr/bin/env bash
# Builds the side venv of benchmarks/nt_compare.py (default ./.venv-nt): neural-tangents
# 0.6.5 on its pinned jax 0.4.30 / flax 0.8.5 / tensorflow-cpu 2.17 (it does not import
# with jax >= 0.6). Never a dependency of lazy-hasty. Skips what is built; prints the
# venv's python. Usage: scripts/nt_side_env.sh [DIR]   (PYTHON= a Python 3.11)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${1:-$root/.venv-nt}"
constraints="$root/scripts/nt_side_constraints.txt"
stamp="$venv/.nt-side-installed"
python="${PYTHON:-python3}"
if ! "$python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
  echo "nt_side_env: needs Python 3.11 (the pins were resolved on it); set PYTHON=" >&2
  exit 1
fi
if [[ ! -x "$venv/bin/python" ]]; then
  echo "nt_side_env: creating $venv" >&2
  "$python" -m venv "$venv"
fi
if [[ ! -f "$stamp" || "$constraints" -nt "$stamp" ]]; then
  echo "nt_side_env: installing neural-tangents and its pinned dependencies into $venv" >&2
  "$venv/bin/python" -m pip install -q -c "$constraints" "jax==0.4.30" "jaxlib==0.4.30" \
    "flax==0.8.5" "tensorflow-cpu==2.17.*" "numpy<2" "neural-tangents==0.6.5" >&2
  touch "$stamp"
fi
echo "$venv/bin/python"
