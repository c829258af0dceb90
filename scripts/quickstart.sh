#!/usr/bin/env bash
# Quickstart command 1: sets up ./.venv if needed, then runs the embedded default
# experiment (yin-yang, Fig. 1: 100 seeds x 3 regimes, a few minutes on 2 CPU cores).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py="$(bash "$root/scripts/setup_env.sh")"
workdir="${1:-$root/workdir/yinyang}"
cd "$root"
"$py" main.py --config=configs/yinyang.py --workdir="$workdir"
echo "Figure 1: $workdir/fig1.png (records: config.json, metrics.jsonl, fig1.npz)"
