#!/usr/bin/env bash
# The main job on a fresh machine: install vitnp, get Fashion-MNIST, train the `fmnist` preset (choosing the
# best epoch on a validation split of the training set), then read the official test set once and print the
# best-by-validation checkpoint's test accuracy, the wall time, and where the plots are.
# Usage: bash scripts/main.sh [RUN_DIR]     (default: a new runs/fmnist-YYYYmmdd-HHMMSS)
# Runs in the active venv/conda environment, or else in .venv (created here; see scripts/env.sh).
# VITNP_MAX_MINUTES=M sets the training budget (`train --max-minutes M`; CI uses a short one).
set -euo pipefail
cd "$(dirname "$0")/.."
run_dir=${1:-runs/fmnist-$(date +%Y%m%d-%H%M%S)}
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
start=$SECONDS
"$PY" -m vitnp train --preset fmnist --out "$run_dir" ${budget[@]+"${budget[@]}"}
train_seconds=$((SECONDS - start))
[ -f "$run_dir/results.json" ] ||
    { echo "error: the run did not complete, so the test set was not read; continue it with: $PY -m vitnp train --out $run_dir --resume" >&2; exit 1; }
"$PY" -m vitnp evaluate "$run_dir/best.npz"          # per class; the same numbers as results.json's "best"
"$PY" - "$run_dir/results.json" "$train_seconds" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
b, f = r["best"], r["final"]
print(f"\nTest accuracy of the best-by-validation checkpoint (epoch {b['epoch']} of {f['epoch']}, validation "
      f"{100 * b['val_acc']:.2f}%): {100 * b['test_acc']:.2f}%  (final epoch: {100 * f['test_acc']:.2f}%)")
print(f"Wall time of training, the test read included: {int(sys.argv[2]) // 60} min {int(sys.argv[2]) % 60} s")
PY
echo "Plots: $run_dir/curves.png, $run_dir/confusion.png, $run_dir/predictions.png"
