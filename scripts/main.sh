#!/usr/bin/env bash
# The main job on a fresh machine: install vitnp, get Fashion-MNIST, train the `fmnist` preset,
# evaluate on the official test set, and say where the plots are.   Usage: bash scripts/main.sh [RUN_DIR]
# Runs in the active venv/conda environment, or else in .venv (created here; see scripts/env.sh).
# VITNP_MAX_MINUTES=M sets the training budget (`train --max-minutes M`; CI uses a short one).
set -euo pipefail
cd "$(dirname "$0")/.."
run_dir=${1:-runs/fmnist}
data=${VITNP_DATA:-/usr/share/datasets/fashion-mnist}

source scripts/env.sh
"$PY" -m pip install -q -e .
if [ ! -d "$data" ]; then
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
        apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist
    else
        echo "Fashion-MNIST not found at $data." >&2
        echo "Either: apt-get install dataset-fashion-mnist (Debian/Ubuntu, as root)," >&2
        echo "or: $PY -c 'import vitnp.data as d; d.download_fashion_mnist(\"data/fmnist\")'" >&2
        echo "then: VITNP_DATA=data/fmnist bash scripts/main.sh" >&2
        exit 1
    fi
fi
budget=()
if [ -n "${VITNP_MAX_MINUTES:-}" ]; then
    budget=(--max-minutes "$VITNP_MAX_MINUTES")
fi
"$PY" -m vitnp train --preset fmnist --out "$run_dir" ${budget[@]+"${budget[@]}"}
[ -f "$run_dir/best.npz" ] ||
    { echo "error: no epoch finished within the training budget, so there is no $run_dir/best.npz to evaluate (VITNP_MAX_MINUTES: give it 2 or more)" >&2; exit 1; }
"$PY" -m vitnp evaluate "$run_dir/best.npz"
echo "Plots: $run_dir/curves.png, $run_dir/confusion.png, $run_dir/predictions.png"
