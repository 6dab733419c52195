#!/usr/bin/env python3
"""Inductive bias against data size: a ViT, a CNN and a hybrid ViT trained on 1k … 60k Fashion-MNIST images.

Paper §3.1 ("Inductive bias"): a CNN builds locality, the 2-D neighbourhood and translation equivariance into
every layer, while a ViT has them only in the patch cut and has to learn the rest (E_pos included) from data.
§4.2, Fig 3 and Fig 4: with little pre-training data ResNets win; ViT overtakes them as the data grow (from
roughly 10M to 300M images).  This script measures the small-data end of that curve on Fashion-MNIST: each
model trained from scratch on N ∈ {1000, 5000, 20000, 60000} training images, tested on the official
10,000-image test split.

Models (``--models``; all from vitnp, 28×28×1 images, 10 classes)::

    vit      the ``fmnist`` preset's ViT: P=7 (N=16 patches), D=64, L=4, k=4, M=128      139,018 parameters
    cnn      vitnp.cnn's default: conv3×3 32 → pool → conv3×3 64 → pool → dense            50,186 parameters
    hybrid   the same ViT whose patches are cut from a conv stem's feature map (§3.1 "Hybrid
             Architecture"): conv3×3 16 + ReLU, no pooling (28×28×16), then P=7       186,218 parameters

Budget rule: the same number S of optimiser steps for every run (``--steps``), each on a batch of B images,
with one recipe for every model and every N: AdamW (β 0.9/0.999, weight decay 0.05 on weight matrices),
linear warm-up over the first 5 % of the steps then cosine decay to 0, peak learning rate 3e-3, label
smoothing 0.1, global-norm clipping at 1, random left-right flips (the ``fmnist`` preset's recipe).  Steps, not
minutes: the machine is shared, and a time budget would favour whichever model happened to run at a quiet
moment (and the slower-per-step CNN would see fewer images).  Steps, not epochs: a fixed number of epochs
would give the N=1000 runs 60 times less compute than the N=60000 runs.  With a fixed S every model sees
S·B images whatever N is, so N=1000 means many passes over few images, N=60000 few passes over many.

The subset of N images is drawn once per seed (:func:`vitnp.data.prepare_data`, ``train_subset``), so every
model trains on the same images, and the subsets are nested (the 1000 images are among the 5000).  Test
accuracy is that of the last step (no early stopping: choosing the best step on the test split would flatter
every model); train accuracy is measured afterwards on the clean (unaugmented) training images, at most
``--train-eval`` of them.

Outputs in ``--out DIR`` (each written atomically: a temporary file, then a rename):

    results.json        settings, the models (config, parameter count) and one record per run
    inductive_bias.png  test accuracy (solid) and train accuracy (dashed) against N, log x axis

Resumable: runs already in ``results.json`` are skipped, so an interrupted sweep continues where it stopped
(the settings must be the same; the script says which differ).  ``--jobs 2`` runs two trainings side by
side in separate processes, each with one BLAS thread.

    python scripts/inductive_bias.py --out runs/inductive_bias                        # the whole sweep
    python scripts/inductive_bias.py --out runs/ib --sizes 1000,5000 --models vit,cnn --steps 200 --jobs 2
"""
from __future__ import annotations

import argparse
import concurrent.futures
import json
import math
import multiprocessing
import os
import platform
import sys
import time

import numpy as np

from vitnp.io.atomic import write_text
from vitnp.data import AUGMENTATIONS

FORMAT = "vitnp-inductive-bias/1"
RESULTS, FIGURE = "results.json", "inductive_bias.png"
DEFAULT_SIZES = (1000, 5000, 20000, 60000)
MODEL_NAMES = ("vit", "cnn", "hybrid")
LABELS = {"vit": "ViT", "cnn": "CNN", "hybrid": "hybrid ViT (conv stem)"}
COLOURS = {"vit": "tab:blue", "cnn": "tab:red", "hybrid": "tab:green"}
DEFAULT_STEPS = 800


# ---- the models ------------------------------------------------------------------------------------
def model_configs() -> dict:
    """name -> config of the three models (module docstring): ViTConfig, CNNConfig, ViTConfig."""
    from vitnp.cnn import CNNConfig
    from vitnp.training.presets import get_preset
    vit, _ = get_preset("fmnist-vit")          # the plain ViT (the fmnist preset itself is the hybrid)
    return {"vit": vit,
            "cnn": CNNConfig(image_size=vit.image_size, in_channels=vit.in_channels, num_classes=vit.num_classes),
            "hybrid": vit.replace(stem_channels=(16,), stem_kernel=3, stem_pool=1)}


def describe_models(names) -> dict:
    """name -> {'kind', 'describe', 'config', 'params'}: what results.json records about each model."""
    from vitnp.training.specs import describe_model, model_spec
    cfgs = model_configs()
    return {n: {"kind": model_spec(cfgs[n]).kind, "describe": describe_model(cfgs[n]),
                "config": cfgs[n].to_dict(), "params": model_spec(cfgs[n]).count(cfgs[n])} for n in names}


# ---- the data --------------------------------------------------------------------------------------
_DATA_CACHE = {}


def load_data(data_dir, verify=True):
    """(train_x, train_y, test_x, test_y) from :func:`vitnp.data.load_fashion_mnist`, kept per process."""
    from vitnp.data import load_fashion_mnist
    key = (None if data_dir is None else os.path.abspath(data_dir), verify)
    if key not in _DATA_CACHE:
        tr_x, tr_y = load_fashion_mnist(data_dir, "train", verify=verify)
        te_x, te_y = load_fashion_mnist(data_dir, "test", verify=verify)
        _DATA_CACHE[key] = (tr_x, tr_y, te_x, te_y)
    return _DATA_CACHE[key]


def data_fingerprint(data) -> dict:
    """Sizes and MD5s of the four arrays: a resumed sweep must use the same data."""
    from vitnp.data import md5
    tr_x, tr_y, te_x, te_y = data
    return {"n_train_available": int(len(tr_x)), "n_test": int(len(te_x)),
            "train_md5": md5(tr_x, tr_y), "test_md5": md5(te_x, te_y)}


# ---- one run ---------------------------------------------------------------------------------------
def hparams_for(settings: dict, n_train: int):
    """The :class:`vitnp.training.presets.HParams` of a run (``epochs`` is unused: the loop counts steps)."""
    from vitnp.training.presets import HParams
    return HParams(batch_size=settings["batch_size"], lr=settings["lr"], final_lr=settings["final_lr"],
                   weight_decay=settings["weight_decay"], label_smoothing=settings["label_smoothing"],
                   clip_grad_norm=settings["clip_grad_norm"], augment=settings["augment"], seed=settings["seed"],
                   train_subset=n_train)


def recipe(steps: int, *, batch_size=128, lr=3e-3, warmup=0.05, weight_decay=0.05, label_smoothing=0.1,
           clip_grad_norm=1.0, augment="flip", seed=0, train_eval=5000, data=None) -> dict:
    """The settings of a sweep: the budget (``steps`` of ``batch_size`` images) and the one training recipe.

    ``warmup`` is a fraction of the steps (linear warm-up, then cosine decay to 0); ``data`` is the
    :func:`data_fingerprint` of the data (recorded so that a resumed sweep cannot mix data sets).
    """
    if not 0 <= warmup <= 1:
        raise ValueError(f"--warmup is a fraction of the steps in [0, 1], got {warmup}")
    if not 0 <= label_smoothing < 1:
        raise ValueError(f"--label-smoothing must be in [0, 1), got {label_smoothing}")
    return {"steps": steps, "batch_size": batch_size, "lr": lr, "final_lr": 0.0,
            "warmup_steps": int(round(warmup * steps)), "weight_decay": weight_decay,
            "label_smoothing": label_smoothing, "clip_grad_norm": clip_grad_norm, "augment": augment,
            "seed": seed, "train_eval": train_eval, "data": data}


def run_one(model: str, n_train: int, settings: dict, data_dir=None, verify=True, *, data=None) -> dict:
    """Train ``model`` for ``settings['steps']`` AdamW steps on the seeded subset of ``n_train`` images.

    The loop is vitnp's (:func:`vitnp.training.fit.fit` with ``total_steps=S``: forward, smoothed cross-entropy,
    backward, clipping, AdamW on batches from :func:`vitnp.data.iterate_batches`, epoch after epoch over the
    subset until S steps are done, then one evaluation on the test split); η follows
    :func:`vitnp.optim.warmup_cosine` over those S steps.  ``data`` (train_x, train_y, test_x, test_y) uint8
    arrays replace the files of ``data_dir``.  Returns the run's record for results.json (see :func:`main`).
    """
    from vitnp.data import prepare_data
    from vitnp.training.evaluation import evaluate_arrays
    from vitnp.fast.parallel import configure, set_blas_threads
    from vitnp.training.fit import TrainState, fit
    from vitnp.training.specs import model_spec
    t_start = time.perf_counter()
    set_blas_threads(1)                                        # one core per run (module docstring)
    configure(threads=1)
    cfg = model_configs()[model]
    spec = model_spec(cfg)
    hp = hparams_for(settings, n_train)
    data = load_data(data_dir, verify) if data is None else data
    splits = prepare_data(data, cfg, hp)                       # the seeded subset of n_train images
    x, y = splits["train"]
    S, B, W = settings["steps"], settings["batch_size"], settings["warmup_steps"]

    last_losses = []                                           # the training loss of the last 50 steps

    def record_loss(info):
        last_losses.append(info["loss"])
        del last_losses[:-50]

    state = TrainState.start(spec.init(cfg, hp.seed), hp)     # the RNGs seeded as vitnp.training.trainer seeds them
    run = fit(state, cfg, hp, splits, total_steps=S, eval_every=S, warmup_steps=W, callback=record_loss)
    if run.status != "completed":                              # Ctrl-C: no record of a cut-short run
        raise KeyboardInterrupt
    if not all(math.isfinite(v) for v in last_losses):
        raise FloatingPointError(f"{model}, N={n_train}: the training loss is not finite")

    test, images_per_s = run.last_eval, run.history[-1]["images_per_s"]   # the test split after step S
    n_eval = min(len(x), settings["train_eval"])
    pick = np.sort(np.random.default_rng([hp.seed, 5]).permutation(len(x))[:n_eval])
    train = evaluate_arrays(run.params, cfg, x[pick], y[pick], batch_size=500)
    return {"model": model, "n_train": int(n_train), "steps": S, "batch_size": B,
            "epochs": round(S * B / n_train, 3), "test_acc": test["accuracy"], "test_loss": test["loss"],
            "train_acc": train["accuracy"], "train_loss": train["loss"], "n_train_eval": int(n_eval),
            "final_train_loss": float(np.mean(last_losses)), "params": spec.count(cfg),
            "train_seconds": round(S * B / images_per_s, 2), "images_per_s": images_per_s,
            "wall_seconds": round(time.perf_counter() - t_start, 2)}


def _run_task(task):
    """Worker entry for --jobs > 1: (model, n_train, settings, data_dir, verify) -> record."""
    return run_one(*task)


def _worker_init():
    from vitnp.fast.parallel import set_blas_threads
    set_blas_threads(1)


# ---- results.json and the figure -------------------------------------------------------------------
def read_results(path):
    """The dict in an existing results.json, or None when there is none; ValueError when it is unusable."""
    if not os.path.exists(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            results = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON ({err}); move it away or choose another --out") from None
    if not isinstance(results, dict) or results.get("format") != FORMAT or not isinstance(results.get("runs"), list):
        raise ValueError(f"{path} is not a results file of this script (format {FORMAT!r}); "
                         f"move it away or choose another --out")
    return results


def _differences(old: dict, new: dict, prefix=""):
    out = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k}: {a!r} (saved) vs {b!r} (now)")
    return out


def results_figure(results):
    """Test (solid) and train (dashed) accuracy against N, log x axis, one colour per model."""
    from matplotlib.lines import Line2D
    from vitnp.analysis.plots import figure
    fig = figure(7.5, 4.8)
    ax = fig.subplots()
    s = results["settings"]
    sizes = sorted({r["n_train"] for r in results["runs"]})
    for name in [m for m in MODEL_NAMES if any(r["model"] == m for r in results["runs"])]:
        runs = sorted((r for r in results["runs"] if r["model"] == name), key=lambda r: r["n_train"])
        n = [r["n_train"] for r in runs]
        colour = COLOURS.get(name)
        params = results["models"][name]["params"]
        ax.plot(n, [100 * r["test_acc"] for r in runs], "o-", color=colour, lw=2,
                label=f"{LABELS.get(name, name)} ({params / 1000:.0f}k parameters)")
        ax.plot(n, [100 * r["train_acc"] for r in runs], "x--", color=colour, lw=1, alpha=0.6)
        for r in runs:
            ax.annotate(f"{100 * r['test_acc']:.1f}", (r["n_train"], 100 * r["test_acc"]), fontsize=7,
                        textcoords="offset points", xytext=(4, -10), color=colour)
    ax.set_xscale("log")
    if sizes:
        ax.set_xticks(sizes, [f"{n:,}" for n in sizes])
        ax.set_xlim(sizes[0] / 1.5, sizes[-1] * 1.5)
    ax.minorticks_off()
    ax.set_xlabel("training images N (log scale; nested random subsets of Fashion-MNIST)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"Fashion-MNIST accuracy vs training-set size\nevery run: {s['steps']} AdamW steps × "
                 f"{s['batch_size']} images, same recipe; test = official 10k test split", fontsize=10)
    ax.grid(True, alpha=0.3)
    models_legend = ax.legend(fontsize=8, loc="lower right", title="model", title_fontsize=8)
    ax.add_artist(models_legend)
    styles = [Line2D([], [], color="grey", marker="o", lw=2), Line2D([], [], color="grey", marker="x", ls="--", lw=1)]
    ax.legend(styles, ["test accuracy", "train accuracy (clean images)"], fontsize=8, loc="lower center",
              bbox_to_anchor=(0.42, 0.0))
    return fig


def save_outputs(out_dir, results) -> None:
    """results.json and inductive_bias.png, each atomically."""
    from vitnp.analysis.plots import save_figure
    results["runs"].sort(key=lambda r: (r["n_train"], MODEL_NAMES.index(r["model"])
                                        if r["model"] in MODEL_NAMES else 99))
    write_text(os.path.join(out_dir, RESULTS), json.dumps(results, indent=1) + "\n")
    if results["runs"]:
        save_figure(results_figure(results), os.path.join(out_dir, FIGURE))


def table(results) -> str:
    """A Markdown table: one row per N, test accuracy (and train accuracy) of each model."""
    models = [m for m in MODEL_NAMES if m in results["models"]]
    by = {(r["model"], r["n_train"]): r for r in results["runs"]}
    sizes = sorted({r["n_train"] for r in results["runs"]})
    head = "| N | epochs | " + " | ".join(f"{LABELS[m]} test % (train %)" for m in models) + " |"
    lines = [head, "|" + "---|" * (2 + len(models))]
    for n in sizes:
        cells = []
        for m in models:
            r = by.get((m, n))
            cells.append("—" if r is None else f"**{100 * r['test_acc']:.2f}** ({100 * r['train_acc']:.1f})")
        epochs = results["settings"]["steps"] * results["settings"]["batch_size"] / n
        lines.append(f"| {n:,} | {epochs:.1f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ---- command line ----------------------------------------------------------------------------------
def _positive_ints(text):
    try:
        values = [int(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers such as 1000,5000, "
                                         f"got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers such as 1000,5000, "
                                         f"got {text!r}")
    if len(set(values)) != len(values):
        raise argparse.ArgumentTypeError(f"a size is repeated in {text!r}")
    return tuple(values)


def _models(text):
    names = [v.strip() for v in str(text).split(",") if v.strip()]
    unknown = [n for n in names if n not in MODEL_NAMES]
    if not names or unknown:
        raise argparse.ArgumentTypeError(f"unknown model {unknown[0] if unknown else text!r}; "
                                         f"choose from {', '.join(MODEL_NAMES)}")
    return tuple(dict.fromkeys(names))


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _rate(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return value


def build_parser():
    p = argparse.ArgumentParser(
        prog="inductive_bias.py", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train a ViT, a CNN and a hybrid ViT on nested subsets of Fashion-MNIST with the same\n"
                    "budget (S optimiser steps of B images each, one recipe) and plot test accuracy against\n"
                    "the number of training images (the small-data end of the paper's Fig 3/4).",
        epilog="Writes DIR/results.json and DIR/inductive_bias.png; runs already in results.json are\n"
               "skipped (resume).  Example: python scripts/inductive_bias.py --out runs/ib --jobs 2")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory (created if missing)")
    p.add_argument("--data", metavar="DIR", default=None,
                   help="Fashion-MNIST IDX directory (default: $VITNP_DATA, then /usr/share/datasets/fashion-mnist)")
    p.add_argument("--no-verify", action="store_true", help="skip the official Fashion-MNIST checksums")
    p.add_argument("--sizes", type=_positive_ints, default=DEFAULT_SIZES, metavar="N,N,…",
                   help="training-set sizes (default: " + ",".join(map(str, DEFAULT_SIZES)) + ")")
    p.add_argument("--models", type=_models, default=MODEL_NAMES, metavar="M,M,…",
                   help=f"models to train, from {', '.join(MODEL_NAMES)} (default: all three)")
    p.add_argument("--steps", type=_positive_int, default=DEFAULT_STEPS, metavar="S",
                   help="optimiser steps of every run: the budget (default: %(default)s)")
    p.add_argument("--jobs", type=_positive_int, default=1,
                   help="trainings run side by side, one process and one BLAS thread each (default: 1)")
    g = p.add_argument_group("the recipe (the same for every model and size; default: the fmnist preset's)")
    g.add_argument("--batch-size", type=_positive_int, default=128, metavar="B", help="(default: %(default)s)")
    g.add_argument("--lr", type=_rate, default=3e-3, help="peak learning rate of AdamW (default: %(default)s)")
    g.add_argument("--warmup", type=_rate, default=0.05, metavar="FRACTION",
                   help="linear warm-up over this fraction of the steps, then cosine decay to 0 (default: %(default)s)")
    g.add_argument("--weight-decay", type=_rate, default=0.05, help="AdamW's decoupled decay (default: %(default)s)")
    g.add_argument("--label-smoothing", type=_rate, default=0.1, help="(default: %(default)s)")
    g.add_argument("--clip", type=_rate, default=1.0,
                   help="global gradient-norm clipping (0: off; default: %(default)s)")
    g.add_argument("--augment", choices=AUGMENTATIONS, default="flip", help="(default: %(default)s)")
    g.add_argument("--seed", type=int, default=0,
                   help="fixes the subsets, initialisation and batch order (default: %(default)s)")
    g.add_argument("--train-eval", type=_positive_int, default=5000, metavar="N",
                   help="measure train accuracy on at most this many training images (default: %(default)s)")
    return p


def make_settings(args, data) -> dict:
    """Everything that must be equal for two runs to belong on the same curve (:func:`recipe`)."""
    return recipe(args.steps, batch_size=args.batch_size, lr=args.lr, warmup=args.warmup,
                  weight_decay=args.weight_decay, label_smoothing=args.label_smoothing, clip_grad_norm=args.clip,
                  augment=args.augment, seed=args.seed, train_eval=args.train_eval, data=data_fingerprint(data))


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _main(args)
    except (OSError, ValueError, TypeError, FloatingPointError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished runs are in results.json; run the same command again to continue",
              file=sys.stderr)
        return 130


def _main(args) -> int:
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise ValueError(f"--out {args.out} exists and is not a directory")
    data = load_data(args.data, not args.no_verify)           # fails early, with the loader's message
    n_avail = len(data[0])
    for n in args.sizes:
        if n > n_avail:
            raise ValueError(f"--sizes: N={n} exceeds the {n_avail} training images of the data")
        if n < args.batch_size:
            raise ValueError(f"--sizes: N={n} is smaller than --batch-size {args.batch_size}, so a pass over "
                             f"the subset would hold no full batch")
    settings = make_settings(args, data)
    models = describe_models(args.models)
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, RESULTS)
    results = read_results(path)
    if results is None:
        results = {"format": FORMAT, "settings": settings, "models": {}, "runs": []}
    else:
        diff = _differences(results["settings"], settings)
        diff += [d for m in models if m in results["models"]
                 for d in _differences({m: results["models"][m]}, {m: models[m]})]
        if diff:
            raise ValueError(f"{path} holds runs made with other settings, which would not be comparable: "
                             + "; ".join(diff) + ". Use the same settings, or another --out")
    results["models"].update(models)
    results["machine"] = {"python": platform.python_version(), "numpy": np.__version__,
                          "platform": platform.platform(), "cpus": os.cpu_count(), "jobs": args.jobs}
    done = {(r["model"], r["n_train"]) for r in results["runs"]}
    todo = [(m, n) for n in sorted(args.sizes) for m in args.models if (m, n) not in done]
    skipped = len(args.sizes) * len(args.models) - len(todo)
    print(f"{len(todo)} run(s) to do, {skipped} already in {path}; every run: {settings['steps']} steps × "
          f"{settings['batch_size']} images, warm-up {settings['warmup_steps']} steps, jobs={args.jobs}", flush=True)
    for m, info in models.items():
        print(f"  {m}: {info['describe']}, {info['params']:,} parameters", flush=True)

    t0 = time.perf_counter()

    def record(rec, k):
        results["runs"].append(rec)
        save_outputs(args.out, results)
        print(f"[{k}/{len(todo)}] {rec['model']:>6}  N={rec['n_train']:>6}  test {100 * rec['test_acc']:.2f}%  "
              f"train {100 * rec['train_acc']:.2f}%  ({rec['epochs']:g} epochs, {rec['images_per_s']:.0f} img/s, "
              f"{rec['wall_seconds']:.0f} s; sweep {(time.perf_counter() - t0) / 60:.1f} min)", flush=True)

    tasks = [(m, n, settings, args.data, not args.no_verify) for m, n in todo]
    if args.jobs == 1 or len(tasks) <= 1:
        for k, task in enumerate(tasks, 1):
            record(_run_task(task), k)
    else:
        os.environ["OPENBLAS_NUM_THREADS"] = "1"               # read by NumPy in the new processes
        ctx = multiprocessing.get_context("spawn")             # fresh interpreters: no forked BLAS state
        with concurrent.futures.ProcessPoolExecutor(max_workers=args.jobs, mp_context=ctx,
                                                    initializer=_worker_init) as pool:
            futures = [pool.submit(_run_task, task) for task in tasks]
            try:
                for k, fut in enumerate(concurrent.futures.as_completed(futures), 1):
                    record(fut.result(), k)
            except BaseException:
                for fut in futures:
                    fut.cancel()
                raise
    if results["runs"]:
        save_outputs(args.out, results)
        print(table(results))
        print(f"wrote {os.path.join(args.out, RESULTS)} and {os.path.join(args.out, FIGURE)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
