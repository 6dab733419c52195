"""The same run over several seeds, and its mean ± standard deviation: ``python -m vitnp train --seeds N``.

One seed is one sample of what a recipe gives: the initialisation, the data order, the augmentation and the
dropout masks all change with it, and on Fashion-MNIST two seeds of the same preset can differ by a few
tenths of a point, as much as many of the choices one would like to compare.  So every number in
``docs/results.md`` is a mean over seeds, with the sample standard deviation (``ddof=1``) beside it.

:func:`train_seeds` trains seeds s, s+1, …, s+N−1 into ``RUN_DIR/seed-<s>`` (each an ordinary run
directory), then :func:`summarize` reads their ``results.json`` (the test set, read once at the end of each
run) and writes ``RUN_DIR/seeds.json``::

    {"seeds": [0, 1, 2], "n": 3, "chosen_by": ["val_acc"],
     "best":  {"values": [...], "mean": …, "std": …},        # test accuracy of the best-by-validation checkpoints
     "final": {"values": [...], "mean": …, "std": …},        # test accuracy of the last epochs
     "best_val_acc": {...}, "best_epoch": [...], "final_epoch": [...],
     "seconds_in_epochs": {...}, "seconds_last_call": {...}, "std": "sample standard deviation …"}
"""
from __future__ import annotations

import json
import os

import numpy as np

from ..io.atomic import write_text

__all__ = ["seed_dirs", "train_seeds", "summarize", "mean_std"]


def seed_dirs(out_dir) -> list:
    """[(s, path)] of the ``seed-<s>`` run directories inside ``out_dir``, by seed."""
    out_dir = os.fspath(out_dir)
    found = []
    for name in os.listdir(out_dir) if os.path.isdir(out_dir) else ():
        tail = name[len("seed-"):]
        if name.startswith("seed-") and tail.isdigit() and os.path.isdir(os.path.join(out_dir, name)):
            found.append((int(tail), os.path.join(out_dir, name)))
    return sorted(found)


def mean_std(values) -> dict:
    """{'values', 'mean', 'std'}: the sample standard deviation (ddof=1), None for a single value."""
    a = np.asarray(values, np.float64)
    return {"values": [float(v) for v in a], "mean": float(a.mean()) if a.size else None,
            "std": float(a.std(ddof=1)) if a.size > 1 else None}


def train_seeds(n, first_seed, out_dir, train_one, log=None) -> str:
    """Train ``n`` seeds, then :func:`summarize`; returns the status of the last run ('completed' when all
    completed and ``seeds.json`` is written).

    ``train_one(seed, run_dir)`` trains one run (the caller fixes everything else) and returns a
    :class:`vitnp.training.fit.Run`; a run that does not complete (Ctrl-C, the budget) stops the loop, and
    ``--resume`` continues it.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"--seeds must be a positive number of runs, got {n!r}")
    os.makedirs(out_dir, exist_ok=True)
    for seed in range(first_seed, first_seed + n):
        if log:
            log(f"--- seed {seed} ({seed - first_seed + 1} of {n}) ---")
        run = train_one(seed, os.path.join(out_dir, f"seed-{seed}"))
        if run.status != "completed":
            return run.status
    summarize(out_dir, log=log)
    return "completed"


def summarize(out_dir, log=None) -> dict:
    """Read ``results.json`` of every ``seed-<s>`` run in ``out_dir``; write and return ``seeds.json``."""
    runs = []
    for seed, path in seed_dirs(out_dir):
        results = os.path.join(path, "results.json")
        if not os.path.isfile(results):
            raise ValueError(f"{path} has no results.json: the run has not completed (continue it with --resume)")
        with open(results, encoding="utf-8") as f:
            try:
                runs.append((seed, json.load(f)))
            except json.JSONDecodeError as err:
                raise ValueError(f"{results}: not valid JSON ({err})") from None
    if not runs:
        raise ValueError(f"{out_dir} holds no seed-<s> run directories")
    summary = {"seeds": [s for s, _ in runs], "n": len(runs),
               "chosen_by": sorted({r.get("chosen_by") for _, r in runs}),
               "best": mean_std([r["best"]["test_acc"] for _, r in runs]),
               "final": mean_std([r["final"]["test_acc"] for _, r in runs]),
               "best_val_acc": mean_std([r["best"]["val_acc"] for _, r in runs if r["best"]["val_acc"] is not None]),
               "best_epoch": [r["best"]["epoch"] for _, r in runs],
               "final_epoch": [r["final"]["epoch"] for _, r in runs],
               "seconds_in_epochs": mean_std([r["seconds_in_epochs"] for _, r in runs]),
               "seconds_last_call": mean_std([r["seconds_this_call"] for _, r in runs if "seconds_this_call" in r]),
               "std": "sample standard deviation (ddof=1) over the seeds"}
    write_text(os.path.join(os.fspath(out_dir), "seeds.json"), json.dumps(summary, indent=2) + "\n")
    if log:
        log(f"test accuracy over {len(runs)} seed(s) {summary['seeds']}, read once at the end of each run: "
            f"best-by-validation checkpoints {_pm(summary['best'])}; final epochs {_pm(summary['final'])} "
            f"(mean ± sample std); {os.path.join(os.fspath(out_dir), 'seeds.json')}")
    return summary


def _pm(stats) -> str:
    std = "" if stats["std"] is None else f" ± {100 * stats['std']:.2f}"
    return f"{100 * stats['mean']:.2f}{std}%"
