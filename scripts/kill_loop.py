"""Kill a training run at random moments (SIGKILL, SIGTERM or SIGINT), resume it, and check that it ends
exactly where an uninterrupted run ends: the same checkpoint.npz and best.npz parameters, the same metrics
lines (timing fields aside), the same results.json test numbers, and no temporary files left.

    python scripts/kill_loop.py                    # 30 trials, a few minutes on 2 cores
    python scripts/kill_loop.py --trials 5 --keep DIR

Each trial: a fresh run directory; start ``python -m vitnp train`` on small synthetic IDX files; kill it after
a random delay; repeat (``--resume``) until a call finishes on its own; then compare with the reference run.
Not part of the test suite (it takes minutes and its kills are random by design); issue 16 asks for 30
passing trials.  Exit status 0 when every trial passes.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np

from vitnp.data import write_idx
from vitnp.training.rundir import load_checkpoint

FLAGS = ["--preset", "fast", "--train-subset", "0", "--val-size", "100", "--epochs", "4", "--batch-size", "32",
         "--dim", "16", "--depth", "2", "--heads", "2", "--mlp-dim", "32", "--augment", "flip", "--dropout", "0.1",
         "--no-verify", "--quiet", "--max-minutes", "0"]
TIMING = ("seconds", "images_per_s")


def write_data(directory, seed=0):
    rng = np.random.default_rng(seed)
    for n, prefix in ((900, "train"), (200, "t10k")):
        labels = np.arange(n) % 10
        images = rng.integers(0, 80, size=(n, 28, 28)).astype(np.uint8)
        for k in range(10):
            images[labels == k, 2 + 2 * k:4 + 2 * k, 4:24] += 150
        write_idx(os.path.join(directory, f"{prefix}-images-idx3-ubyte"), images)
        write_idx(os.path.join(directory, f"{prefix}-labels-idx1-ubyte"), labels.astype(np.uint8))


def train(out, data, resume, overwrite=False):
    """``--resume`` when there is a checkpoint; else a fresh start (``--overwrite``: killed before the first
    checkpoint, the directory holds config.json and nothing to resume, which is what the error message says)."""
    argv = [sys.executable, "-m", "vitnp", "train", "--out", out, "--data", data]
    argv += ["--resume", "--no-verify", "--quiet"] if resume else FLAGS + (["--overwrite"] if overwrite else [])
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def snapshot(out):
    """What must agree between two runs: parameters of both checkpoints, metrics, test results."""
    state = {}
    for name in ("checkpoint.npz", "best.npz"):
        params, _, meta = load_checkpoint(os.path.join(out, name))
        state[name] = ({k: v.tobytes() for k, v in params.items()}, meta["epoch"], meta["step"])
    with open(os.path.join(out, "metrics.jsonl"), encoding="utf-8") as f:
        state["metrics"] = [{k: v for k, v in json.loads(line).items() if k not in TIMING} for line in f]
    with open(os.path.join(out, "results.json"), encoding="utf-8") as f:
        results = json.load(f)
    state["results"] = {k: results[k] for k in ("best", "final", "test_md5", "chosen_by")}
    state["stray"] = sorted(n for n in os.listdir(out) if n.endswith(".tmp"))
    return state


def trial(k, root, data, reference, rng, log, span):
    out = os.path.join(root, f"trial-{k}")
    kills, calls = [], 0
    while True:
        resume = calls > 0 and os.path.isfile(os.path.join(out, "checkpoint.npz"))
        proc = train(out, data, resume=resume, overwrite=calls > 0 and not resume)
        calls += 1
        delay = rng.uniform(0.1, 1.0) * span          # somewhere inside a whole run's time
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            sig = rng.choice([signal.SIGKILL, signal.SIGKILL, signal.SIGTERM, signal.SIGINT])
            proc.send_signal(sig)
            proc.wait()
            kills.append(f"{signal.Signals(sig).name}@{delay:.1f}s")
            if calls > 40:
                return False, f"trial {k}: still not finished after 40 calls"
            continue
        err = proc.stderr.read()
        if proc.returncode != 0:
            return False, f"trial {k}: a call exited {proc.returncode} after kills {kills}: {err.strip()[-300:]}"
        break
    got = snapshot(out)
    if got != reference:
        diff = [key for key in reference if reference[key] != got.get(key)]
        return False, f"trial {k}: differs from the uninterrupted run in {diff} after kills {kills}"
    log(f"trial {k}: ok after {len(kills)} kill(s): {', '.join(kills) or 'none'}")
    shutil.rmtree(out)
    return True, ""


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--trials", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--keep", metavar="DIR", help="work in DIR and keep it (default: a temporary directory)")
    args = p.parse_args(argv)
    root = args.keep or tempfile.mkdtemp(prefix="vitnp-kill-")
    os.makedirs(root, exist_ok=True)
    data = os.path.join(root, "data")
    os.makedirs(data, exist_ok=True)
    write_data(data)
    t0 = time.perf_counter()
    ref = train(os.path.join(root, "reference"), data, resume=False)
    if ref.wait() != 0:
        print(ref.stderr.read(), file=sys.stderr)
        return 1
    reference = snapshot(os.path.join(root, "reference"))
    span = time.perf_counter() - t0
    print(f"reference run: {span:.1f} s", flush=True)
    rng = np.random.default_rng(args.seed)
    failures = []
    for k in range(args.trials):
        ok, why = trial(k, root, data, reference, rng, lambda s: print(s, flush=True), span)
        if not ok:
            print(why, flush=True)
            failures.append(why)
    print(f"{args.trials - len(failures)}/{args.trials} trials ended exactly as the uninterrupted run "
          f"({time.perf_counter() - t0:.0f} s)")
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
