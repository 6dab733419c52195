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
(the settings must be the same; :func:`sweep` says which differ).  ``jobs=2`` runs two trainings side by side
in separate processes, each with one BLAS thread.  The command line (:mod:`vitnp.cli.experiments`)::

    python scripts/inductive_bias.py --out runs/inductive_bias                        # the whole sweep
    python scripts/inductive_bias.py --out runs/ib --sizes 1000,5000 --models vit,cnn --steps 200 --jobs 2
"""
from __future__ import annotations

import concurrent.futures
import json
import math
import multiprocessing
import os
import platform
import time

import numpy as np

from ..io.atomic import write_text
from .figures import LABELS, results_figure

FORMAT = "vitnp-inductive-bias/1"
RESULTS, FIGURE = "results.json", "inductive_bias.png"
DEFAULT_SIZES = (1000, 5000, 20000, 60000)
MODEL_NAMES = ("vit", "cnn", "hybrid")
DEFAULT_STEPS = 800


# ---- the models ------------------------------------------------------------------------------------
def model_configs() -> dict:
    """name -> config of the three models (module docstring): ViTConfig, CNNConfig, ViTConfig."""
    from ..cnn import CNNConfig
    from ..training.presets import get_preset
    vit, _ = get_preset("fmnist-vit")          # the plain ViT (the fmnist preset itself is the hybrid)
    return {"vit": vit,
            "cnn": CNNConfig(image_size=vit.image_size, in_channels=vit.in_channels, num_classes=vit.num_classes),
            "hybrid": vit.replace(stem_channels=(16,), stem_kernel=3, stem_pool=1)}


def describe_models(names) -> dict:
    """name -> {'kind', 'describe', 'config', 'params'}: what results.json records about each model."""
    from ..training.specs import describe_model, model_spec
    cfgs = model_configs()
    return {n: {"kind": model_spec(cfgs[n]).kind, "describe": describe_model(cfgs[n]),
                "config": cfgs[n].to_dict(), "params": model_spec(cfgs[n]).count(cfgs[n])} for n in names}


# ---- the data --------------------------------------------------------------------------------------
_DATA_CACHE = {}


def load_data(data_dir, verify=True):
    """(train_x, train_y, test_x, test_y) from :func:`vitnp.data.load_fashion_mnist`, kept per process."""
    from ..data import load_fashion_mnist
    key = (None if data_dir is None else os.path.abspath(data_dir), verify)
    if key not in _DATA_CACHE:
        tr_x, tr_y = load_fashion_mnist(data_dir, "train", verify=verify)
        te_x, te_y = load_fashion_mnist(data_dir, "test", verify=verify)
        _DATA_CACHE[key] = (tr_x, tr_y, te_x, te_y)
    return _DATA_CACHE[key]


def data_fingerprint(data) -> dict:
    """Sizes and MD5s of the four arrays: a resumed sweep must use the same data."""
    from ..data import md5
    tr_x, tr_y, te_x, te_y = data
    return {"n_train_available": int(len(tr_x)), "n_test": int(len(te_x)),
            "train_md5": md5(tr_x, tr_y), "test_md5": md5(te_x, te_y)}


# ---- one run ---------------------------------------------------------------------------------------
def hparams_for(settings: dict, n_train: int):
    """The :class:`vitnp.training.presets.HParams` of a run (``epochs`` is unused: the loop counts steps)."""
    from ..training.presets import HParams
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
    arrays replace the files of ``data_dir``.  Returns the run's record for results.json.
    """
    from ..data import prepare_data
    from ..training.evaluation import evaluate_arrays
    from ..fast.parallel import configure, set_blas_threads
    from ..training.fit import TrainState, fit
    from ..training.specs import model_spec
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
    """Worker entry for jobs > 1: (model, n_train, settings, data_dir, verify) -> record."""
    return run_one(*task)


def _worker_init():
    from ..fast.parallel import set_blas_threads
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


def save_outputs(out_dir, results) -> None:
    """results.json and inductive_bias.png, each atomically."""
    from ..analysis.plots import save_figure
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


# ---- the sweep ------------------------------------------------------------------------------------------
def sweep(out, sizes=DEFAULT_SIZES, models=MODEL_NAMES, *, steps=DEFAULT_STEPS, data_dir=None, verify=True,
          jobs=1, **recipe_kwargs) -> dict:
    """Train every model of ``models`` on every size of ``sizes`` (the runs not yet in ``out``/results.json), one
    :func:`recipe` (``steps`` and ``recipe_kwargs``) for all, ``jobs`` at a time; returns the results dict, also
    written with its figure into ``out``.  ValueError (naming the command-line flag) for sizes the data cannot
    hold or settings that differ from the runs already in ``out``."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise ValueError(f"--out {out} exists and is not a directory")
    data = load_data(data_dir, verify)                          # fails early, with the loader's message
    n_avail = len(data[0])
    batch_size = recipe_kwargs.get("batch_size", 128)
    for n in sizes:
        if n > n_avail:
            raise ValueError(f"--sizes: N={n} exceeds the {n_avail} training images of the data")
        if n < batch_size:
            raise ValueError(f"--sizes: N={n} is smaller than --batch-size {batch_size}, so a pass over "
                             f"the subset would hold no full batch")
    settings = recipe(steps, data=data_fingerprint(data), **recipe_kwargs)
    names = tuple(models)
    models = describe_models(names)
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, RESULTS)
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
                          "platform": platform.platform(), "cpus": os.cpu_count(), "jobs": jobs}
    done = {(r["model"], r["n_train"]) for r in results["runs"]}
    todo = [(m, n) for n in sorted(sizes) for m in names if (m, n) not in done]
    skipped = len(sizes) * len(names) - len(todo)
    print(f"{len(todo)} run(s) to do, {skipped} already in {path}; every run: {settings['steps']} steps × "
          f"{settings['batch_size']} images, warm-up {settings['warmup_steps']} steps, jobs={jobs}", flush=True)
    for m, info in models.items():
        print(f"  {m}: {info['describe']}, {info['params']:,} parameters", flush=True)

    t0 = time.perf_counter()

    def record(rec, k):
        results["runs"].append(rec)
        save_outputs(out, results)
        print(f"[{k}/{len(todo)}] {rec['model']:>6}  N={rec['n_train']:>6}  test {100 * rec['test_acc']:.2f}%  "
              f"train {100 * rec['train_acc']:.2f}%  ({rec['epochs']:g} epochs, {rec['images_per_s']:.0f} img/s, "
              f"{rec['wall_seconds']:.0f} s; sweep {(time.perf_counter() - t0) / 60:.1f} min)", flush=True)

    tasks = [(m, n, settings, data_dir, verify) for m, n in todo]
    if jobs == 1 or len(tasks) <= 1:
        for k, task in enumerate(tasks, 1):
            record(_run_task(task), k)
    else:
        os.environ["OPENBLAS_NUM_THREADS"] = "1"               # read by NumPy in the new processes
        ctx = multiprocessing.get_context("spawn")             # fresh interpreters: no forked BLAS state
        with concurrent.futures.ProcessPoolExecutor(max_workers=jobs, mp_context=ctx,
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
        save_outputs(out, results)
        print(table(results))
        print(f"wrote {os.path.join(out, RESULTS)} and {os.path.join(out, FIGURE)}")
    return results
