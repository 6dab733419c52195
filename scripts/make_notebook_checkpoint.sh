#!/usr/bin/env bash
# Re-make notebooks/assets/vit_fmnist.npz, the small trained ViT that notebook 07_what_vit_learns reads.
#
#   bash scripts/make_notebook_checkpoint.sh                 train the plain ViT into runs/nb07, then copy
#   bash scripts/make_notebook_checkpoint.sh RUN_DIR         the same with another run directory
#   bash scripts/make_notebook_checkpoint.sh RUN/best.npz    no training: copy an existing checkpoint
#
# The copy keeps what evaluate/predict/visualize need (parameters, config, normalisation, class names) and the
# record of the run (hyper-parameters, epoch, per-epoch metrics); it drops any optimiser and RNG state. It is
# written atomically and must stay under 5 MB. Needs Fashion-MNIST for training (see scripts/main.sh).
#
# The shipped file is run e08 of docs/results.md: the `fmnist-vit` preset (a plain ViT, no conv stem, so that
# its E is a filter over pixels) trained for 11 epochs on one thread, on all 60,000 training images. That run is
# older than the validation split: it had none, kept the epoch of best test accuracy (epoch 11, the last) and
# recorded the test accuracy after every epoch, which notebooks 07-09 print. The command below repeats its
# settings with today's flags: --augment flip (the preset now adds random erasing), --val-size 0 (the preset now
# holds out 5,000 images; without a validation split best.npz is the last epoch, the same epoch 11) and --test-curve
# (the per-epoch test accuracy, only recorded).
# Runs are deterministic for a given seed, thread count and version of vitnp, but the code has changed since
# e08: it now gives close, not identical numbers (epoch 1: test accuracy 80.67% against e08's recorded 80.90%,
# bit for bit the same before and after the validation split was added), so a re-made file changes the numbers
# that notebooks 07-09 print.
set -euo pipefail
cd "$(dirname "$0")/.."
src=${1:-runs/nb07}
asset=notebooks/assets/vit_fmnist.npz

if [[ "$src" == *.npz ]]; then
    best=$src
else
    python3 -m vitnp train --preset fmnist-vit --epochs 11 --augment flip --val-size 0 --test-curve --threads 1 \
        --max-minutes 0 --out "$src"
    best=$src/best.npz
fi
mkdir -p "$(dirname "$asset")"
python3 - "$best" "$asset" <<'PY'
import os
import shutil
import sys

from vitnp.io.original import load_npz
from vitnp.training.presets import HParams
from vitnp.training import load_checkpoint, save_checkpoint

src, dst = sys.argv[1], sys.argv[2]
params, cfg, meta = load_checkpoint(src)                    # validated: every array matches the config
state = [k for k in load_npz(src) if k.startswith("optim/") or k == "rng_json"]
if not state:                                               # best.npz: already weights only, copy it as it is
    tmp = f"{dst}.tmp"
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)                                    # atomic: never half a file
else:                                                       # checkpoint.npz: drop the optimiser and RNG state
    hp = HParams.from_dict(meta["hparams"]) if meta["hparams"] is not None else None
    save_checkpoint(dst, params, cfg, hparams=hp, epoch=meta["epoch"], step=meta["step"],
                    progress=meta["progress"], history=meta["history"], names=meta["class_names"],
                    norm=(meta["norm_mean"], meta["norm_std"]))
size = os.path.getsize(dst)
assert size <= 5 * 2**20, f"{dst} is {size:,} bytes; the notebook asset must stay under 5 MB"
best = meta["progress"].get("best_acc")
print(f"wrote {dst} ({'copied' if not state else f'stripped {len(state)} optimiser/RNG entries'}): {size:,} bytes, "
      f"epoch {meta['epoch']}" + (f", best accuracy {100 * best:.2f}%" if best is not None else ""))
PY
python3 -m vitnp info "$asset"
