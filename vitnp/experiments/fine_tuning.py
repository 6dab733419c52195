"""Two fine-tuning experiments with vitnp (paper §3.2): a higher resolution, and transfer to new classes.

:func:`run` runs them from a settings dict (the flags of the command line, :mod:`vitnp.cli.experiments`)::

    python scripts/finetune_experiments.py --out runs/finetune                 # both experiments
    python scripts/finetune_experiments.py --out runs/finetune --figures docs/figures
    python scripts/finetune_experiments.py --out runs/finetune --only transfer --seeds 0,1,2

**Resolution** (§3.2, "Fine-tuning and higher resolution").  Start from a ViT trained at 28×28
(``--checkpoint``, default ``notebooks/assets/vit_fmnist.npz``) and measure on the test split:

============================  ===========================================================================
``eval_base``                 the checkpoint at its own size (28×28, N = 16 patches)
``eval_high_interpolated``    at ``--high-res`` (56×56: the same P, so N = 64), E_pos interpolated in 2-D
                              (:func:`vitnp.training.finetune.adapt_params`), images upsampled bilinearly, *no training*
``finetune_high``             the same start, then trained at 56×56 for ``--res-epochs`` (``init_from``)
``continue_base``             the checkpoint trained on at 28×28 with the same steps and schedule: separates the
                              gain of the resolution from the gain of more training
``finetune_high_{n}ep``,      the same two with a longer budget of ``--res-longer-epochs`` n epochs (run last,
``continue_base_{n}ep``       after the transfer experiment; 0 skips them)
============================  ===========================================================================

**Transfer.**  ``pretrain``: the checkpoint's architecture (by default the plain ViT of the notebook asset: P=7,
D=64, L=4, k=4, M=128), trained from scratch on the ``--pretrain-classes`` (0–4, all their ~30,000 training
images).  Then, on the ``--target-classes`` (5–9), with a seeded subset of ``--transfer-subset`` training
images (3,000 = 10 %), for each seed: ``finetune`` (the pre-trained body, a new zero-initialised head:
``init_from``) and ``scratch`` (a fresh initialisation), same steps, schedule and augmentation; ``probe``: only a
new linear head on the frozen pre-trained body (logistic regression on y = LN(z_L⁰), computed once per image and
its mirror image);
``finetune_alt_lr`` and ``scratch_alt_lr``: both again at ``--alt-lr`` (every seed), so that neither is judged at
a learning rate that suits only the other.  All are evaluated on every test image of the target classes.

Everything lands in ``--out``: ``results.json`` (settings, every part's accuracy, steps, wall time and
per-epoch history, summaries), ``transfer.png`` and one run directory per training part (``runs/<part>``,
written by :func:`vitnp.training.trainer.train`).  The experiments are resumable: parts recorded in ``results.json`` are
skipped, and a training part that was interrupted continues bit-exactly from its run directory.  Every file is
written atomically (temporary file, rename).  ``--figures DIR`` also writes ``DIR/finetune.json`` and
``DIR/transfer.png``.
"""
from __future__ import annotations

import json
import os
import platform
import time

import numpy as np

from ..config import ViTConfig
from ..data import load_fashion_mnist, md5, prepare_data
from ..fast.parallel import set_blas_threads
from ..io.atomic import write_text
from ..training.rundir import checkpoint_classes
from ..training import load_checkpoint, train
from ..training.evaluation import checkpoint_view, evaluate_arrays
from ..training.finetune import adapt_params
from ..training.presets import HParams
from ..training.probe import linear_probe
from ..analysis.plots import save_figure
from .figures import classes_text, transfer_figure
from .results import Results

FORMAT = "vitnp-finetune-experiments/1"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))   # the project
RESOLUTION_PARTS = ("eval_base", "eval_high_interpolated", "finetune_high", "continue_base")
TRANSFER_PARTS = ("pretrain", "finetune", "scratch", "probe", "finetune_alt_lr", "scratch_alt_lr")
# settings that may change between calls on the same --out (they select what to run, not how)
FREE_SETTINGS = ("only", "seeds", "figures", "threads", "probe", "res_longer_epochs")   # part keys say the epochs


# ---- small helpers ------------------------------------------------------------------------------------
def write_atomic(path, text: str) -> None:
    """Write a text file atomically (vitnp.io.atomic), creating its directory first."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    write_text(path, text)


def md5_of_file(path) -> str:
    with open(path, "rb") as f:
        return md5(f.read())


def arch_flags(cfg: ViTConfig) -> str:
    """The `python -m vitnp train` model flags that rebuild ``cfg`` whatever the preset's model is."""
    H, W = cfg.image_size
    flags = (f"--image-size {H} --patch-size {cfg.patch_size} --dim {cfg.dim} --depth {cfg.depth} "
             f"--heads {cfg.heads} --mlp-dim {cfg.mlp_dim} --classifier {cfg.classifier} "
             f"--pos-embedding {cfg.pos_embedding} --gelu {cfg.gelu} --dropout {cfg.dropout:g}")
    if cfg.is_hybrid:
        flags += (f" --stem {','.join(map(str, cfg.stem_channels))} --stem-kernel {cfg.stem_kernel} "
                  f"--stem-pool {cfg.stem_pool}")
    else:
        flags += " --config 'stem_channels=[]'"               # a plain ViT even if the preset is a hybrid
    default = ViTConfig()
    for field in ("in_channels", "ln_eps", "attention_dropout", "dtype"):
        if getattr(cfg, field) != getattr(default, field):
            flags += f" --config '{field}={json.dumps(getattr(cfg, field))}'"
    if H != W:
        flags += f" --config 'image_size=[{H},{W}]'"
    return flags


def hp_flags(hp: HParams) -> str:
    """The `python -m vitnp train` training flags that rebuild ``hp`` whatever the preset's HParams are."""
    flags = (f"--epochs {hp.epochs} --batch-size {hp.batch_size} --lr {hp.lr:g} --final-lr {hp.final_lr:g} "
             f"--warmup {hp.warmup_epochs:g} --weight-decay {hp.weight_decay:g} "
             f"--label-smoothing {hp.label_smoothing:g} --clip {hp.clip_grad_norm:g} --augment {hp.augment} "
             f"--seed {hp.seed} --val-size {hp.val_size} --max-minutes 0")
    if hp.test_curve:
        flags += " --test-curve"
    if "crop" in hp.augment:
        flags += f" --crop-padding {hp.crop_padding}"
    if hp.classes:
        flags += f" --classes {classes_text(hp.classes)}"
    if hp.train_subset:
        flags += f" --train-subset {hp.train_subset}"
    return flags


def shown_path(path) -> str:
    """A path for the printed command lines: relative to the repository when inside it, else absolute."""
    path = os.path.abspath(path)
    return os.path.relpath(path, ROOT) if path.startswith(ROOT + os.sep) else path


def spread(values) -> dict:
    """Mean, sample standard deviation, min and max of a few accuracies (fractions)."""
    v = np.asarray(values, dtype=np.float64)
    return {"n": int(v.size), "mean": float(v.mean()), "std": float(v.std(ddof=1)) if v.size > 1 else 0.0,
            "min": float(v.min()), "max": float(v.max())}


# ---- one training part --------------------------------------------------------------------------------
def train_part(name, out_dir, cfg, hp, data, *, init_from=None):
    """Train (or resume) one part in ``OUT/runs/<name>``; returns its record for results.json.

    Every part trains a fixed schedule and chooses nothing, so its HParams ask for a test curve
    (``test_curve``): the record's history holds the test accuracy after each epoch.
    The record: final test accuracy and loss (after the last epoch), steps, epochs, wall time of this
    call, the summed epoch times (training + evaluation, across resumes), throughput, the per-epoch
    history (step, test_acc, train_acc, train_loss); the equivalent `python -m vitnp train` command lines are
    made from these records by :func:`command_lines`.
    """
    run_dir = os.path.join(out_dir, "runs", name)
    resume = os.path.isfile(os.path.join(run_dir, "checkpoint.npz"))
    print(f"\n== {name}: {'resuming ' if resume else ''}{hp.epochs} epoch(s), lr {hp.lr:g}, image "
          f"{cfg.image_size[0]}x{cfg.image_size[1]}" + (f", from {init_from}" if init_from and not resume else ""),
          flush=True)
    t0 = time.perf_counter()
    run = train(cfg, hp, out_dir=run_dir, data=data, resume=resume, init_from=None if resume else init_from,
                quiet=True, log=lambda s: print("   ", s, flush=True), plots=False)
    wall = time.perf_counter() - t0
    if run.status == "interrupted":
        raise KeyboardInterrupt
    if run.status != "completed":
        raise RuntimeError(f"{name}: training ended with status {run.status!r}; run the script again to resume")
    h = run.history
    return {"test_acc": h[-1]["test_acc"], "test_loss": h[-1]["test_loss"], "steps": h[-1]["step"],
            "epochs": len(h), "image_size": list(cfg.image_size), "wall_seconds": round(wall, 1),
            "resumed": resume, "epoch_seconds": round(sum(x["seconds"] for x in h), 1),
            "images_per_s": round(float(np.mean([x["images_per_s"] for x in h])), 1),
            "hparams": hp.to_dict(), "run_dir": os.path.relpath(run_dir, out_dir), "init_from": init_from,
            "history": [{k: x[k] for k in ("epoch", "step", "train_loss", "train_acc", "test_loss", "test_acc")}
                        for x in h]}


def eval_part(params, cfg, images, labels, meta):
    t0 = time.perf_counter()
    r = evaluate_arrays(params, cfg, images, labels, mean=meta["norm_mean"], std=meta["norm_std"])
    return {"test_acc": r["accuracy"], "test_loss": r["loss"], "n": r["n"], "image_size": list(cfg.image_size),
            "steps": 0, "wall_seconds": round(time.perf_counter() - t0, 1)}


# ---- the hyper-parameters of each part (explicit, so that a change of a preset changes nothing here) ------
def res_hparams(s, meta, epochs) -> HParams:
    """Fine-tuning at the higher resolution, and training on at the base size: the same settings."""
    return HParams(epochs=epochs, batch_size=s["batch_size"], lr=s["res_lr"], warmup_epochs=s["res_warmup"],
                   augment=(meta["hparams"] or {}).get("augment", "flip"), classes=tuple(checkpoint_classes(meta)),
                   seed=0, test_curve=True)


def pretrain_hparams(s) -> HParams:
    return HParams(epochs=s["pretrain_epochs"], batch_size=s["batch_size"], lr=s["pretrain_lr"], warmup_epochs=0.5,
                   augment="flip", classes=tuple(s["pretrain_classes"]), seed=0, test_curve=True)


def transfer_hparams(s, seed, lr=None) -> HParams:
    """Fine-tune, scratch and probe alike: only the initial weights differ."""
    return HParams(epochs=s["transfer_epochs"], batch_size=s["batch_size"], lr=lr or s["transfer_lr"],
                   warmup_epochs=s["transfer_warmup"], augment="flip", classes=tuple(s["target_classes"]),
                   train_subset=s["transfer_subset"], seed=seed, test_curve=True)


# ---- experiment 1: resolution -------------------------------------------------------------------------
def resolution_experiment(res: Results, s, out_dir, source, data, *, longer=False):
    """The four parts of the module docstring (``longer``: the two ``…_{n}ep`` training parts only)."""
    params, cfg, meta = source["params"], source["cfg"], source["meta"]
    high = s["high_res"] or 2 * cfg.image_size[0]
    cfg_high = cfg.replace(image_size=high)                   # ValueError if P does not divide it
    train_x, train_y, test_x, test_y = data
    hp = res_hparams(s, meta, s["res_longer_epochs"] if longer else s["res_epochs"])
    if longer:
        names = [f"finetune_high_{hp.epochs}ep", f"continue_base_{hp.epochs}ep"]
    else:
        names = ["finetune_high", "continue_base"]
        res.put(("resolution", "setup"), {
            "checkpoint": s["checkpoint"], "checkpoint_md5": source["md5"], "config": cfg.to_dict(),
            "base_size": list(cfg.image_size), "high_size": [high, high], "patch_size": cfg.patch_size,
            "grid_base": list(cfg.grid), "grid_high": list(cfg_high.grid),
            "recorded_test_acc": meta["history"][-1].get("test_acc") if meta["history"] else None,
            "hparams": hp.to_dict()})

    if not longer and not res.has("resolution", "eval_base"):
        x, y = checkpoint_view(test_x, test_y, cfg, meta)       # the checkpoint's classes, its size
        rec = eval_part(params, cfg, x, y, meta)
        print(f"eval_base: {100 * rec['test_acc']:.2f}% at {cfg.image_size[0]}x{cfg.image_size[1]}", flush=True)
        res.put(("resolution", "eval_base"), rec)
    if not longer and not res.has("resolution", "eval_high_interpolated"):
        p_high = adapt_params(params, cfg, cfg_high)           # E_pos: 2-D interpolation over the patch grid
        x, y = checkpoint_view(test_x, test_y, cfg_high, meta)  # test images upsampled bilinearly
        rec = eval_part(p_high, cfg_high, x, y, meta)
        print(f"eval_high_interpolated: {100 * rec['test_acc']:.2f}% at {high}x{high}, no training", flush=True)
        res.put(("resolution", "eval_high_interpolated"), rec)
    ckpt = s["checkpoint"]
    for name, c in zip(names, (cfg_high, cfg)):
        if res.has("resolution", name):
            continue
        res.put(("resolution", name), train_part(f"resolution_{name}", out_dir, c, hp, data, init_from=ckpt))


# ---- experiment 2: transfer ---------------------------------------------------------------------------
def transfer_experiment(res: Results, s, out_dir, source, data):
    cfg0 = source["cfg"]
    pre, tgt = tuple(s["pretrain_classes"]), tuple(s["target_classes"])
    cfg_pre, cfg_tgt = cfg0.replace(num_classes=len(pre)), cfg0.replace(num_classes=len(tgt))
    hp_pre = pretrain_hparams(s)
    train_x, train_y, test_x, test_y = data
    n_target = int(np.isin(train_y, tgt).sum())
    res.put(("transfer", "setup"), {
        "config": cfg0.to_dict(), "pretrain_classes": list(pre), "target_classes": list(tgt),
        "n_target_train": n_target, "transfer_subset": s["transfer_subset"],
        "target_fraction": s["transfer_subset"] / n_target, "n_target_test": int(np.isin(test_y, tgt).sum()),
        "hparams_pretrain": hp_pre.to_dict(), "hparams_transfer": transfer_hparams(s, s["seeds"][0]).to_dict()})
    if not res.has("transfer", "pretrain"):
        res.put(("transfer", "pretrain"), train_part("transfer_pretrain", out_dir, cfg_pre, hp_pre, data))
    body_ckpt = os.path.join(out_dir, res.get("transfer", "pretrain", "run_dir"), "checkpoint.npz")

    for seed in s["seeds"]:
        key = f"seed_{seed}"
        hp = transfer_hparams(s, seed)
        if not res.has("transfer", "finetune", key):
            res.put(("transfer", "finetune", key), train_part(f"transfer_finetune_{key}", out_dir, cfg_tgt, hp,
                                                              data, init_from=body_ckpt))
        if not res.has("transfer", "scratch", key):
            res.put(("transfer", "scratch", key), train_part(f"transfer_scratch_{key}", out_dir, cfg_tgt, hp, data))
        if s["probe"] and not res.has("transfer", "probe", key):
            body, body_cfg, _ = load_checkpoint(body_ckpt)
            splits = prepare_data(data, cfg_tgt, hp)       # the same class subset and images as train() uses
            (x, y), (tx, ty) = splits["train"], splits["test"]
            print(f"\n== transfer probe {key}: a linear head on the frozen pre-trained body", flush=True)
            history, secs = linear_probe(body, body_cfg, x, y, tx, ty, hp, flip=True)
            print(f"    test accuracy {100 * history[-1]['test_acc']:.2f}% after {history[-1]['step']} steps "
                  f"({secs:.0f} s)", flush=True)
            res.put(("transfer", "probe", key), {
                "test_acc": history[-1]["test_acc"], "steps": history[-1]["step"], "epochs": len(history),
                "wall_seconds": round(secs, 1), "hparams": hp.to_dict(), "history": history})
    alt = s["alt_lr"]
    for seed in s["seeds"] if alt else ():                    # the same pairs at the other learning rate
        key, hp = f"seed_{seed}", transfer_hparams(s, seed, lr=alt)
        if not res.has("transfer", "finetune_alt_lr", key):
            res.put(("transfer", "finetune_alt_lr", key), train_part(
                f"transfer_finetune_lr{alt:g}_{key}", out_dir, cfg_tgt, hp, data, init_from=body_ckpt))
        if not res.has("transfer", "scratch_alt_lr", key):
            res.put(("transfer", "scratch_alt_lr", key), train_part(
                f"transfer_scratch_lr{alt:g}_{key}", out_dir, cfg_tgt, hp, data))


def command_lines(res: Results, s, cfg: ViTConfig) -> dict:
    """'part' -> the `python -m vitnp train` line that repeats a recorded training part, from its recorded
    hyper-parameters (RUN: a new run directory; PRETRAIN: the pre-training part's run directory)."""
    lines = {}
    for key, rec in res.data.get("resolution", {}).items():
        if key.startswith(("finetune_high", "continue_base")):
            lines[f"resolution.{key}"] = (f"python -m vitnp train --out RUN --init-from {shown_path(s['checkpoint'])} "
                                          f"--image-size {rec['image_size'][0]} "
                                          f"{hp_flags(HParams.from_dict(rec['hparams']))}")
    t = res.data.get("transfer", {})
    parts = [("pretrain", {"": t["pretrain"]})] if "pretrain" in t else []
    parts += [(part, t.get(part, {})) for part in ("finetune", "scratch", "finetune_alt_lr", "scratch_alt_lr")]
    for part, records in parts:
        for key, rec in records.items():
            hp = HParams.from_dict(rec["hparams"])
            start = ("--init-from PRETRAIN/checkpoint.npz" if part.startswith("finetune")
                     else arch_flags(cfg.replace(num_classes=len(hp.classes))))
            lines[f"transfer.{part}" + (f".{key}" if key else "")] = f"python -m vitnp train --out RUN {start} " \
                                                                     f"{hp_flags(hp)}"
    if t.get("probe"):
        lines["transfer.probe"] = ("(no command line: this script's softmax regression on the frozen body's "
                                   "y = LN(z_L^0))")
    return lines


def summarise(res: Results, seeds) -> None:
    """Mean ± spread over the seeds of this call, and the paired fine-tune − scratch gain per seed (at each
    learning rate)."""
    t = res.data.get("transfer", {})
    summary = {}
    for part in ("finetune", "scratch", "probe", "finetune_alt_lr", "scratch_alt_lr"):
        accs = [t[part][f"seed_{s}"]["test_acc"] for s in seeds if f"seed_{s}" in t.get(part, {})]
        if accs:
            summary[part] = spread(accs)
    for ft, sc, name in (("finetune", "scratch", "finetune_minus_scratch"),
                         ("finetune_alt_lr", "scratch_alt_lr", "finetune_minus_scratch_alt_lr")):
        paired = [t[ft][f"seed_{s}"]["test_acc"] - t[sc][f"seed_{s}"]["test_acc"] for s in seeds
                  if f"seed_{s}" in t.get(ft, {}) and f"seed_{s}" in t.get(sc, {})]
        if paired:
            summary[name] = spread(paired)
    if summary:
        res.put(("transfer", "summary"), summary)


def publish(res: Results, out_dir, figures_dir) -> None:
    """OUT/transfer.png, and with ``figures_dir`` also its finetune.json and transfer.png."""
    save_figure(transfer_figure(res.data), os.path.join(out_dir, "transfer.png"))
    if figures_dir:
        os.makedirs(figures_dir, exist_ok=True)
        write_atomic(os.path.join(figures_dir, "finetune.json"), json.dumps(res.data, indent=1, allow_nan=False) + "\n")
        save_figure(transfer_figure(res.data), os.path.join(figures_dir, "transfer.png"))


# ---- running both -------------------------------------------------------------------------------------
def run(out, s: dict) -> int:
    """Run the experiments of ``s['only']`` into ``out`` with the settings ``s`` (the command line's flags, checked:
    :func:`vitnp.cli.experiments.fine_tuning_settings`), resuming what ``out`` already holds; prints the headline
    numbers.  ValueError or FileNotFoundError, naming the flag, for a checkpoint or data it cannot use."""
    if not os.path.isfile(s["checkpoint"]):
        raise FileNotFoundError(f"--checkpoint: no such file: {s['checkpoint']}")
    try:
        params, cfg, meta = load_checkpoint(s["checkpoint"])
    except ValueError as err:
        raise ValueError(f"--checkpoint: {err}") from None
    if not isinstance(cfg, ViTConfig):
        raise ValueError(f"--checkpoint {s['checkpoint']} holds a {meta['model'].upper()}; the experiments need a ViT")
    if s["threads"]:
        set_blas_threads(s["threads"])
    train_x, train_y = load_fashion_mnist(s["data"], "train", verify=s["verify"])
    test_x, test_y = load_fashion_mnist(s["data"], "test", verify=s["verify"])
    if tuple(train_x.shape[1:3]) != tuple(cfg.image_size):
        raise ValueError(f"--checkpoint was trained at {cfg.image_size[0]}x{cfg.image_size[1]}, the data are "
                         f"{train_x.shape[1]}x{train_x.shape[2]}; the experiments start at the data's own size")
    if s["high_res"] is not None:
        try:
            cfg.replace(image_size=s["high_res"])
        except ValueError as err:
            raise ValueError(f"--high-res {s['high_res']}: {err}") from None
    n_target = int(np.isin(train_y, s["target_classes"]).sum())
    if s["only"] != "resolution" and s["transfer_subset"] > n_target:
        raise ValueError(f"--transfer-subset {s['transfer_subset']} exceeds the {n_target} training images of "
                         f"classes {s['target_classes']}")
    data = (train_x, train_y, test_x, test_y)
    res = Results(out, s, FORMAT, free=FREE_SETTINGS, parts=("resolution", "transfer"))
    res.data.setdefault("created", time.strftime("%Y-%m-%d %H:%M:%S"))
    res.data["machine"] = {"cpus": os.cpu_count(), "blas_threads": s["threads"], "python": platform.python_version(),
                           "numpy": np.__version__,
                           "load_average_at_start_of_last_call": [round(x, 2) for x in os.getloadavg()]}
    res.data["data"] = {"n_train": len(train_x), "n_test": len(test_x), "source": s["data"] or
                        os.environ.get("VITNP_DATA") or "/usr/share/datasets/fashion-mnist"}
    res.save()
    source = {"params": params, "cfg": cfg, "meta": meta, "md5": md5_of_file(s["checkpoint"])}
    t0 = time.perf_counter()
    try:
        if s["only"] in ("resolution", "both"):
            resolution_experiment(res, s, out, source, data)
        if s["only"] in ("transfer", "both"):
            transfer_experiment(res, s, out, source, data)
            summarise(res, s["seeds"])
        if s["only"] in ("resolution", "both") and s["res_longer_epochs"]:
            resolution_experiment(res, s, out, source, data, longer=True)
    finally:
        for exp in ("resolution", "transfer"):       # older files kept one line per part: now all in "commands"
            for rec in res.data.get(exp, {}).values():
                for r in [rec, *rec.values()] if isinstance(rec, dict) else ():
                    if isinstance(r, dict):
                        r.pop("command", None)
        res.data["commands"] = command_lines(res, s, cfg)
        res.save()
        if res.data.get("resolution") or res.data.get("transfer"):
            publish(res, out, s["figures"])
    print(f"\ndone in {(time.perf_counter() - t0) / 60:.1f} min; results in {res.path}", flush=True)
    report(res.data)
    return 0


def report(data) -> None:
    """A few lines with the headline numbers."""
    r, t = data.get("resolution", {}), data.get("transfer", {})
    for k in list(RESOLUTION_PARTS) + sorted(k for k in r if k.endswith("ep")):
        if k in r:
            print(f"  resolution {k:<24} {100 * r[k]['test_acc']:6.2f}%  at {r[k]['image_size'][0]}px, "
                  f"{r[k]['steps']} steps, {r[k]['wall_seconds']:.0f} s")
    for k, v in t.get("summary", {}).items():
        print(f"  transfer {k:<24} {100 * v['mean']:6.2f}% ± {100 * v['std']:.2f} (n={v['n']}, "
              f"{100 * v['min']:.2f}..{100 * v['max']:.2f})")
