#!/usr/bin/env python3
"""Two fine-tuning experiments with vitnp (paper §3.2): a higher resolution, and transfer to new classes.

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
written by :func:`vitnp.training.trainer.train`).  The script is resumable: parts recorded in ``results.json`` are
skipped, and a training part that was interrupted continues bit-exactly from its run directory.  Every file is
written atomically (temporary file, rename).  ``--figures DIR`` also writes ``DIR/finetune.json`` and
``DIR/transfer.png``.  Bad arguments or data end with ``error: …`` and exit status 2.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np

from vitnp.io.atomic import write_text
from vitnp.config import ViTConfig
from vitnp.data import load_fashion_mnist, md5, normalize, prepare_data
from vitnp.training.evaluation import checkpoint_view, evaluate_arrays
from vitnp.fast.parallel import set_blas_threads
from vitnp.training.finetune import adapt_params
from vitnp.model import vit_forward
from vitnp.ops.loss import softmax_cross_entropy
from vitnp.optim import AdamW, clip_grad_norm, warmup_cosine
from vitnp.analysis.plots import figure, save_figure
from vitnp.training.presets import HParams
from vitnp.io.rundir import checkpoint_classes
from vitnp.training import load_checkpoint, train
from vitnp.cli.train import parse_classes

FORMAT = "vitnp-finetune-experiments/1"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CHECKPOINT = os.path.join(ROOT, "notebooks", "assets", "vit_fmnist.npz")
RESOLUTION_PARTS = ("eval_base", "eval_high_interpolated", "finetune_high", "continue_base")
TRANSFER_PARTS = ("pretrain", "finetune", "scratch", "probe", "finetune_alt_lr", "scratch_alt_lr")
# settings that may change between calls on the same --out (they select what to run, not how)
FREE_SETTINGS = ("only", "seeds", "figures", "threads", "probe", "res_longer_epochs")   # part keys say the epochs


# ---- arguments ----------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="finetune_experiments.py", description=__doc__.split("\n\n")[0],
        epilog="Resumable: run the same command again to continue; finished parts are skipped.")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory (results.json, run directories)")
    p.add_argument("--data", metavar="DIR", help="Fashion-MNIST IDX directory (default: $VITNP_DATA, then "
                                                "/usr/share/datasets/fashion-mnist)")
    p.add_argument("--no-verify", action="store_true", help="accept IDX files that are not the official data")
    p.add_argument("--checkpoint", default=DEFAULT_CHECKPOINT, metavar="NPZ",
                   help="the trained ViT the resolution experiment starts from; its architecture is also the "
                        "transfer model (default: notebooks/assets/vit_fmnist.npz)")
    p.add_argument("--only", choices=("resolution", "transfer", "both"), default="both")
    p.add_argument("--figures", metavar="DIR", help="also write DIR/finetune.json and DIR/transfer.png")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--threads", type=int, default=1, help="BLAS threads (1 is fastest on a busy machine)")
    g = p.add_argument_group("resolution experiment")
    g.add_argument("--high-res", type=int, metavar="N", help="fine-tuning size (default: twice the checkpoint's)")
    g.add_argument("--res-epochs", type=int, default=1)
    g.add_argument("--res-lr", type=float, default=3e-4, help="peak AdamW learning rate (small: a fine-tuning)")
    g.add_argument("--res-warmup", type=float, default=0.1, help="warm-up in epochs")
    g.add_argument("--res-longer-epochs", type=int, default=2, metavar="N",
                   help="also fine-tune (and train on at the base size) for N epochs, after the transfer "
                        "experiment; 0: skip")
    g = p.add_argument_group("transfer experiment")
    g.add_argument("--pretrain-classes", default="0-4", metavar="LIST")
    g.add_argument("--target-classes", default="5-9", metavar="LIST")
    g.add_argument("--pretrain-epochs", type=int, default=4)
    g.add_argument("--pretrain-lr", type=float, default=3e-3)
    g.add_argument("--transfer-subset", type=int, default=3000, metavar="N",
                   help="training images of the target classes (a seeded random subset)")
    g.add_argument("--transfer-epochs", type=int, default=20)
    g.add_argument("--transfer-lr", type=float, default=1e-3, help="for fine-tune, scratch and probe alike")
    g.add_argument("--transfer-warmup", type=float, default=2.0, help="warm-up in epochs")
    g.add_argument("--alt-lr", type=float, default=3e-3,
                   help="also train fine-tune and scratch at this learning rate (every seed); 0: skip")
    g.add_argument("--no-probe", action="store_true", help="skip the linear probe")
    g.add_argument("--seeds", default="0,1,2", metavar="LIST", help="seeds of finetune/scratch/probe, e.g. 0,1,2")
    return p


def check_args(args) -> dict:
    """The settings as a JSON-able dict; ValueError naming the flag for anything out of range."""
    for name in ("batch_size", "res_epochs", "pretrain_epochs", "transfer_epochs", "transfer_subset", "threads"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be a positive integer, got {getattr(args, name)}")
    for name in ("res_lr", "pretrain_lr", "transfer_lr"):
        if not getattr(args, name) > 0:
            raise ValueError(f"--{name.replace('_', '-')} must be > 0, got {getattr(args, name)}")
    for name in ("res_warmup", "transfer_warmup", "alt_lr", "res_longer_epochs"):
        if not getattr(args, name) >= 0:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(args, name)}")
    try:
        seeds = [int(s) for s in args.seeds.split(",")]
    except ValueError:
        raise ValueError(f"--seeds: expected comma-separated integers such as 0,1,2, got {args.seeds!r}") from None
    if min(seeds) < 0 or len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds must be distinct integers >= 0, got {args.seeds!r}")
    pre, tgt = (classes_arg(flag, text) for flag, text in (("--pretrain-classes", args.pretrain_classes),
                                                            ("--target-classes", args.target_classes)))
    if set(pre) & set(tgt):
        raise ValueError(f"--pretrain-classes {list(pre)} and --target-classes {list(tgt)} must not share a "
                         f"class (the transfer test is on classes the body never saw)")
    if args.high_res is not None and args.high_res < 1:
        raise ValueError(f"--high-res must be a positive integer, got {args.high_res}")
    return {"checkpoint": os.path.abspath(args.checkpoint), "data": args.data, "verify": not args.no_verify,
            "only": args.only, "figures": args.figures, "batch_size": args.batch_size, "threads": args.threads,
            "high_res": args.high_res, "res_epochs": args.res_epochs, "res_lr": args.res_lr,
            "res_warmup": args.res_warmup, "res_longer_epochs": args.res_longer_epochs,
            "pretrain_classes": list(pre), "target_classes": list(tgt),
            "pretrain_epochs": args.pretrain_epochs, "pretrain_lr": args.pretrain_lr,
            "transfer_subset": args.transfer_subset, "transfer_epochs": args.transfer_epochs,
            "transfer_lr": args.transfer_lr, "transfer_warmup": args.transfer_warmup,
            "alt_lr": args.alt_lr, "probe": not args.no_probe, "seeds": seeds}


def classes_arg(flag, text) -> tuple:
    """vitnp.cli.train.parse_classes, with the flag's own name in the error message."""
    try:
        return parse_classes(text)
    except ValueError as err:
        raise ValueError(f"{flag}: {str(err).removeprefix('--classes: ')}") from None


# ---- small helpers ------------------------------------------------------------------------------------
def write_atomic(path, text: str) -> None:
    """Write a text file atomically (vitnp.io.atomic), creating its directory first."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    write_text(path, text)


def md5_of_file(path) -> str:
    with open(path, "rb") as f:
        return md5(f.read())


def classes_text(classes) -> str:
    """[5, 6, 7, 8, 9] -> '5-9' when consecutive, else '5,7,9' (for the equivalent command lines)."""
    c = list(classes)
    if c == list(range(c[0], c[0] + len(c))) and len(c) > 1:
        return f"{c[0]}-{c[-1]}"
    return ",".join(map(str, c))


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


# ---- the results file ---------------------------------------------------------------------------------
class Results:
    """``OUT/results.json``: nested dict, saved atomically after every part; ``has``/``get``/``put`` by path."""

    def __init__(self, out_dir, settings):
        self.path = os.path.join(out_dir, "results.json")
        if os.path.exists(self.path):
            try:
                with open(self.path, encoding="utf-8") as f:
                    self.data = json.load(f)
            except (OSError, json.JSONDecodeError) as err:
                raise ValueError(f"{self.path}: cannot read it ({err}); move it away to start afresh") from None
            if not isinstance(self.data, dict) or self.data.get("format") != FORMAT:
                raise ValueError(f"{self.path}: not a results file of this script (format {FORMAT!r})")
            old = self.data.get("settings", {})
            differ = [f"{k}: {old.get(k)!r} (saved) vs {settings.get(k)!r}" for k in sorted(set(old) | set(settings))
                      if k not in FREE_SETTINGS and old.get(k) != settings.get(k)]
            if differ:
                raise ValueError(f"{self.path} was made with other settings ({'; '.join(differ)}); run with the "
                                 f"same settings to resume, or choose another --out")
            self.data["settings"] = settings
        else:
            self.data = {"format": FORMAT, "settings": settings, "resolution": {}, "transfer": {}}

    def has(self, *keys) -> bool:
        d = self.data
        for k in keys:
            if not isinstance(d, dict) or k not in d:
                return False
            d = d[k]
        return True

    def get(self, *keys):
        d = self.data
        for k in keys:
            d = d[k]
        return d

    def put(self, keys, value) -> None:
        d = self.data
        for k in keys[:-1]:
            d = d.setdefault(k, {})
        d[keys[-1]] = value
        self.save()

    def save(self) -> None:
        self.data["updated"] = time.strftime("%Y-%m-%d %H:%M:%S")
        write_atomic(self.path, json.dumps(self.data, indent=1, allow_nan=False) + "\n")


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
            "recorded_test_acc": meta["history"][-1].get("test_acc") if meta["history"] else None, "hparams": hp.to_dict()})

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
def linear_probe(body, cfg, train_x, train_y, test_x, test_y, hp, *, flip):
    """A new linear head on the frozen body: softmax regression on y = LN(z_L⁰) (Eq 4), trained with AdamW.

    The features are computed once: the body with an identity head (K = D, head.W = I, head.b = 0) returns
    y itself as its "logits".  Training then uses the fine-tuning recipe on the (N, D) features: the same
    steps, warm-up + cosine schedule, label smoothing, clipping and weight decay; flip augmentation picks,
    per image and step, the features of the image or of its mirror image.

    train_x, test_x : uint8 (N, H, W, C)   train_y, test_y : (N,) labels 0 … K−1
    Returns (history: [{'epoch', 'step', 'test_acc', 'train_loss'}], seconds).
    """
    t0 = time.perf_counter()
    D, K = cfg.dim, int(max(train_y.max(), test_y.max())) + 1
    feat_cfg = cfg.replace(num_classes=D)
    p = dict(body)
    p["head.W"], p["head.b"] = np.eye(D, dtype=cfg.np_dtype), np.zeros(D, cfg.np_dtype)

    def features(x):                                           # uint8 (N, H, W, C) -> (N, D) float64
        out = [vit_forward(p, normalize(x[i:i + 500], cfg.np_dtype), feat_cfg)[0] for i in range(0, len(x), 500)]
        return np.concatenate(out).astype(np.float64)

    f_tr, f_te = features(train_x), features(test_x)           # (N, D), (N_test, D)
    f_flip = features(train_x[:, :, ::-1]) if flip else f_tr  # mirror images (W axis reversed)
    head = {"W": np.zeros((D, K)), "b": np.zeros(K)}           # zero-initialised, as the paper's new head
    opt = AdamW(head, hp.lr, betas=(hp.beta1, hp.beta2), eps=hp.eps, weight_decay=hp.weight_decay)
    B = hp.batch_size
    steps_per_epoch = len(f_tr) // B
    total = hp.epochs * steps_per_epoch
    warm = min(total, int(round(hp.warmup_epochs * steps_per_epoch)))
    rng = np.random.default_rng([hp.seed, 1])
    history, step = [], 0
    for epoch in range(hp.epochs):
        order = rng.permutation(len(f_tr))
        loss_sum = 0.0
        for i in range(steps_per_epoch):
            idx = order[i * B:(i + 1) * B]                                       # (B,)
            mirror = rng.random(B) < 0.5 if flip else np.zeros(B, bool)
            f = np.where(mirror[:, None], f_flip[idx], f_tr[idx])              # (B, D)
            loss, dlogits = softmax_cross_entropy(f @ head["W"] + head["b"], train_y[idx], hp.label_smoothing)
            grads = {"W": f.T @ dlogits, "b": dlogits.sum(0)}                  # (D, K), (K,)
            if hp.clip_grad_norm > 0:
                clip_grad_norm(grads, hp.clip_grad_norm)
            opt.step(head, grads, lr=warmup_cosine(step, total, warm, hp.lr, hp.final_lr))
            step += 1
            loss_sum += loss
        acc = float(((f_te @ head["W"] + head["b"]).argmax(1) == test_y).mean())
        history.append({"epoch": epoch + 1, "step": step, "test_acc": acc, "train_loss": loss_sum / steps_per_epoch})
    return history, time.perf_counter() - t0


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


# ---- the figure ---------------------------------------------------------------------------------------
def transfer_figure(data: dict):
    """Left: test accuracy vs optimiser step on the target classes, fine-tune vs scratch (and probe), one
    thin line per seed and the mean; right: the resolution experiment's four accuracies."""
    fig = figure(12, 4.4)
    ax, ax_r = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.6, 1]})
    t = data.get("transfer", {})
    styles = {"finetune": ("tab:blue", "-", "fine-tuned"), "finetune_alt_lr": ("tab:blue", "--", "fine-tuned"),
              "scratch": ("tab:orange", "-", "from scratch"), "scratch_alt_lr": ("tab:orange", "--", "from scratch"),
              "probe": ("tab:green", ":", "linear probe (head only)")}
    for part, (color, style, label) in styles.items():
        runs = [r for r in t.get(part, {}).values() if isinstance(r, dict) and "history" in r]
        if not runs:
            continue
        for r in runs:
            ax.plot([h["step"] for h in r["history"]], [100 * h["test_acc"] for h in r["history"]], color=color,
                    alpha=0.3, lw=1)
        n = min(len(r["history"]) for r in runs)
        mean = np.mean([[100 * h["test_acc"] for h in r["history"][:n]] for r in runs], axis=0)
        lr = runs[0]["hparams"]["lr"]
        ax.plot([h["step"] for h in runs[0]["history"][:n]], mean, color=color, lw=2.2, ls=style,
                label=f"{label}, lr {lr:g}: {mean[-1]:.2f}% (mean of {len(runs)})")
    setup = t.get("setup", {})
    if setup:
        ax.set_title(f"Transfer: classes {classes_text(setup['target_classes'])} with {setup['transfer_subset']:,} "
                     f"training images ({100 * setup['target_fraction']:.0f}%)\nbody pre-trained on classes "
                     f"{classes_text(setup['pretrain_classes'])} (fine-tuned: that body, a new zero head)")
    ax.set_xlabel("optimiser step (batch of 128)" if setup.get("hparams_transfer", {}).get("batch_size") == 128
                  else "optimiser step")
    ax.set_ylabel("test accuracy on the target classes (%)")
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend(fontsize=8, loc="lower right")
    r = data.get("resolution", {})
    bars = [("eval_base", "{b}, as trained", "tab:gray"),
            ("eval_high_interpolated", "{h}, E_pos interpolated,\nno training", "tab:purple")]
    for suffix, n in [("", r.get("setup", {}).get("hparams", {}).get("epochs"))] + sorted(
            (k[len("finetune_high"):], r[k]["epochs"]) for k in r if k.startswith("finetune_high_")):
        bars += [(f"continue_base{suffix}", f"{{b}}, trained on, {n} ep.", "tab:orange"),
                 (f"finetune_high{suffix}", f"{{h}}, fine-tuned, {n} ep.", "tab:blue")]
    bars = [bar for bar in bars if bar[0] in r]
    if bars and "setup" in r:
        b, h = "{}×{}".format(*r["setup"]["base_size"]), "{}×{}".format(*r["setup"]["high_size"])
        vals = [100 * r[k]["test_acc"] for k, _, _ in bars]
        ax_r.barh(range(len(bars)), vals, color=[color for _, _, color in bars])
        for i, v in enumerate(vals):
            ax_r.text(v + 0.3, i, f"{v:.2f}%", va="center", fontsize=9)
        ax_r.set_yticks(range(len(bars)), [lab.format(b=b, h=h) for _, lab, _ in bars], fontsize=8)
        ax_r.invert_yaxis()
        ax_r.set_xlim(max(0.0, min(vals) - 10), min(100.0, max(vals) + 6))
        ax_r.set_title("Resolution (§3.2): one 28×28 checkpoint,\nfine-tuned at 56×56 or trained on at 28×28"
                       if (b, h) == ("28×28", "56×56") else "Resolution (§3.2): one checkpoint")
        ax_r.set_xlabel("test accuracy, all classes (%)")
    else:
        ax_r.set_axis_off()
    fig.suptitle("Fine-tuning a NumPy ViT on Fashion-MNIST (measured by scripts/finetune_experiments.py)")
    return fig


def publish(res: Results, out_dir, figures_dir) -> None:
    save_figure(transfer_figure(res.data), os.path.join(out_dir, "transfer.png"))
    if figures_dir:
        os.makedirs(figures_dir, exist_ok=True)
        write_atomic(os.path.join(figures_dir, "finetune.json"), json.dumps(res.data, indent=1, allow_nan=False) + "\n")
        save_figure(transfer_figure(res.data), os.path.join(figures_dir, "transfer.png"))


# ---- main ---------------------------------------------------------------------------------------------
def run(argv=None) -> int:
    args = build_parser().parse_args(argv)
    s = check_args(args)
    if not os.path.isfile(s["checkpoint"]):
        raise FileNotFoundError(f"--checkpoint: no such file: {args.checkpoint}")
    try:
        params, cfg, meta = load_checkpoint(s["checkpoint"])
    except ValueError as err:
        raise ValueError(f"--checkpoint: {err}") from None
    if not isinstance(cfg, ViTConfig):
        raise ValueError(f"--checkpoint {args.checkpoint} holds a {meta['model'].upper()}; the experiments need a ViT")
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
    os.makedirs(args.out, exist_ok=True)
    res = Results(args.out, s)
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
            resolution_experiment(res, s, args.out, source, data)
        if s["only"] in ("transfer", "both"):
            transfer_experiment(res, s, args.out, source, data)
            summarise(res, s["seeds"])
        if s["only"] in ("resolution", "both") and s["res_longer_epochs"]:
            resolution_experiment(res, s, args.out, source, data, longer=True)
    finally:
        for exp in ("resolution", "transfer"):       # older files kept one line per part: now all in "commands"
            for rec in res.data.get(exp, {}).values():
                for r in [rec, *rec.values()] if isinstance(rec, dict) else ():
                    if isinstance(r, dict):
                        r.pop("command", None)
        res.data["commands"] = command_lines(res, s, cfg)
        res.save()
        if res.data.get("resolution") or res.data.get("transfer"):
            publish(res, args.out, s["figures"])
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


def main(argv=None) -> int:
    try:
        return run(argv)
    except (ValueError, FileNotFoundError, FileExistsError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
