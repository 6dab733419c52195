"""§4.6 on our own model: does masked patch prediction, without labels, help when labels are few?

The paper pre-trains ViT-B/16 on JFT without labels by masked patch prediction and fine-tunes it on ImageNet:
79.9 % top-1, 2 points above training from scratch and 4 below supervised pre-training.  Here, on Fashion-MNIST:

1. **Pre-train** the ``fmnist-vit`` architecture (P = 7, D = 64, L = 4) on all 60,000 training images *without
   their labels*: half the patches of each image corrupted as the paper does (80 % [mask], 10 % another patch, 10 %
   kept, :mod:`vitnp.ops.masking`), and each corrupted patch's mean intensity predicted in 8 bins (3 bits, as the
   paper's 3-bit mean colour), :mod:`vitnp.self_supervised`.  AdamW, linear warm-up then cosine decay, clipping at 1.
2. **Fine-tune** on a small labelled subset (1,000 or 5,000 images, a fifth of them held out for validation), from
   the pre-trained body with a new zero head, and **from scratch** with the same recipe, for 3 seeds (the seed draws
   the subset, the initialisation and the batch order; both arms of a seed see the same images).  Each arm's
   learning rate (of :data:`LEARNING_RATES`) and epoch are chosen on its validation images; the test split is read
   once per run, after training, by :func:`vitnp.training.trainer.train`.
3. **Probe**: a linear head on the frozen pre-trained body, and on a frozen *random* body, with the same labels
   (:func:`vitnp.training.probe.linear_probe`): how much the features alone carry.

Everything lands in ``out``: ``results.json`` (settings, the pre-training curve, every run, the summaries), the
pre-trained body ``pretrained.npz`` (a checkpoint ``train --init-from`` reads) and one run directory per fine-tuning
run.  Resumable: finished parts are skipped.  ``python scripts/self_supervision.py`` is the command line.
"""
from __future__ import annotations

import os
import time

import numpy as np

from ..data import load_fashion_mnist, normalize, prepare_data
from ..ops.loss import softmax_cross_entropy
from ..ops.masking import corruption_plan, mean_intensity_bins
from ..optim import AdamW, clip_grad_norm, warmup_cosine
from ..self_supervised import MPP_KEYS, init_mpp_params, mpp_backward, mpp_forward
from ..training import train
from ..training.presets import HParams, get_preset
from ..training.probe import linear_probe
from ..model import init_params
from ..training.rundir import load_checkpoint, save_checkpoint
from .results import Results

FORMAT = "vitnp-self-supervision/1"
LEARNING_RATES = (1e-3, 3e-3)          # each arm's is chosen on validation
DEFAULTS = {"pretrain_epochs": 6, "pretrain_lr": 1e-3, "batch": 128, "bins": 8, "labels": [1000, 5000],
            "epochs": {}, "seeds": [0, 1, 2], "probe_epochs": 30}    # epochs: {str(n): epochs}, else finetune_epochs(n)


def finetune_epochs(n) -> int:
    """Epochs of a fine-tuning run on n labelled images: 120,000 images' worth, 10 to 60 (1,000: 60; 5,000: 24)."""
    return int(min(60, max(10, round(120_000 / n))))


def pretrain(cfg, images, *, epochs, lr, batch_size=128, bins=8, warmup=0.05, weight_decay=0.05, clip=1.0,
             seed=0, monitor=None, log=print):
    """Masked patch prediction on uint8 ``images`` (N, H, W, C), no labels; returns (params, history).

    history: one line every 500 steps and at the end: step, the mean training loss since the last line, and, with
    ``monitor`` images (uint8), the task's accuracy on their corrupted patches (one fixed corruption) beside the
    accuracy of always predicting the most frequent bin.  Nothing is chosen with it.
    """
    rng = np.random.default_rng(seed)
    params = init_mpp_params(cfg, bins=bins, seed=seed)
    trained = {k: v for k, v in params.items() if not k.startswith("head.")}
    opt = AdamW(trained, lr, weight_decay=weight_decay)
    steps_per_epoch = len(images) // batch_size
    total = epochs * steps_per_epoch
    warm = int(round(warmup * total))
    P, N = cfg.patch_size, cfg.num_patches
    val = None
    if monitor is not None:
        v_plan = corruption_plan(np.random.default_rng([seed, 7]), len(monitor), N)
        v_target = mean_intensity_bins(monitor, P, bins)[v_plan["corrupted"]]
        val = (normalize(monitor, cfg.np_dtype), v_plan, v_target,
               float(np.bincount(v_target, minlength=bins).max() / len(v_target)))
    history, losses, step, t0 = [], [], 0, time.perf_counter()
    for epoch in range(epochs):
        order = rng.permutation(len(images))
        for i in range(steps_per_epoch):
            batch = images[order[i * batch_size:(i + 1) * batch_size]]
            plan = corruption_plan(rng, batch_size, N)
            target = mean_intensity_bins(batch, P, bins)[plan["corrupted"]]
            logits, cache = mpp_forward(params, normalize(batch, cfg.np_dtype), plan, cfg, fast=True)
            loss, dlogits = softmax_cross_entropy(logits, target)
            grads = mpp_backward(dlogits, cache)
            if clip:
                clip_grad_norm(grads, clip)
            opt.step(trained, grads, lr=warmup_cosine(step, total, warm, lr, 0.0))
            losses.append(loss)
            step += 1
            if step % 500 == 0 or step == total:
                line = {"step": step, "epoch": round(step / steps_per_epoch, 2), "train_loss": float(np.mean(losses)),
                        "seconds": round(time.perf_counter() - t0, 1)}
                losses = []
                if val is not None:
                    line["task_acc"], line["majority_acc"] = _task_accuracy(params, cfg, val), val[3]
                history.append(line)
                log(f"  pre-training step {step}/{total}: loss {line['train_loss']:.4f}"
                    + (f", masked-patch accuracy {100 * line['task_acc']:.2f}% (most frequent bin "
                       f"{100 * line['majority_acc']:.2f}%)" if val is not None else "") + f", {line['seconds']:.0f} s")
    return params, history


def _task_accuracy(params, cfg, val, batch_size=500):
    x, plan, target, _ = val
    correct = done = 0                                             # done: targets of the batches before
    for i in range(0, len(x), batch_size):
        part = {k: v[i:i + batch_size] for k, v in plan.items()}
        logits, _ = mpp_forward(params, x[i:i + batch_size], part, cfg, fast=True)
        correct += int((logits.argmax(1) == target[done:done + len(logits)]).sum())
        done += len(logits)
    return correct / len(target)


def body_checkpoint(params, cfg, path) -> None:
    """The pre-trained ViT without the pre-training head, with a zero classification head (the paper's new head),
    as a checkpoint ``train(init_from=path)`` reads."""
    body = {k: v for k, v in params.items() if k not in MPP_KEYS}
    body["head.W"], body["head.b"] = np.zeros_like(body["head.W"]), np.zeros_like(body["head.b"])
    save_checkpoint(path, body, cfg)


def run(out, settings=None, *, data_dir=None, verify=True, data=None, cfg=None, log=print) -> dict:
    """Pre-train, fine-tune both arms and probe (the module docstring); returns the results dict.

    settings : overrides of :data:`DEFAULTS`.  data : (train_x, train_y, test_x, test_y) uint8 arrays instead of
    the Fashion-MNIST files of ``data_dir``.  cfg : the ViT (default: the ``fmnist-vit`` preset's).
    """
    s = {**DEFAULTS, **(settings or {})}
    cfg = get_preset("fmnist-vit")[0] if cfg is None else cfg
    res = Results(out, s, FORMAT, free=("seeds", "labels"), parts=("runs", "probe"))
    if data is None:
        data = (*load_fashion_mnist(data_dir, "train", verify=verify), *load_fashion_mnist(data_dir, "test",
                                                                                          verify=verify))
    train_x = data[0]
    body_path = os.path.join(out, "pretrained.npz")
    if "pretrain" not in res.data:
        log(f"pre-training on {len(train_x):,} unlabelled images, {s['pretrain_epochs']} epochs")
        params, history = pretrain(cfg, train_x, epochs=s["pretrain_epochs"], lr=s["pretrain_lr"],
                                   batch_size=s["batch"], bins=s["bins"], monitor=train_x[-2000:],
                                   log=log)
        body_checkpoint(params, cfg, body_path)
        res.data["pretrain"] = {"history": history, "images": len(train_x), "checkpoint": "pretrained.npz"}
        res.save()
    for n in s["labels"]:
        for seed in s["seeds"]:
            for arm in ("pretrained", "scratch"):
                for lr in LEARNING_RATES:
                    key = f"n{n}.seed{seed}.{arm}.lr{lr:g}"
                    if key in res.data["runs"]:
                        continue
                    hp = finetune_hparams(n, seed, lr, s["epochs"].get(str(n), finetune_epochs(n)), s["batch"])
                    t0 = time.perf_counter()
                    r = train(cfg, hp, data=data, out_dir=os.path.join(out, "runs", key), plots=False,
                              init_from=body_path if arm == "pretrained" else None, overwrite=True)
                    best = r.test["best"]["val_acc"]                   # the epoch train() kept, by validation
                    res.data["runs"][key] = {"n": n, "seed": seed, "arm": arm, "lr": lr, "best_val_acc": best,
                                             "best_epoch": r.test["best"]["epoch"],
                                             "test_acc": r.test["best"]["test_acc"], "epochs": len(r.history),
                                             "wall_seconds": round(time.perf_counter() - t0, 1)}
                    res.save()
                    log(f"  {key}: validation {100 * best:.2f}%, test (read once) "
                        f"{100 * r.test['best']['test_acc']:.2f}%")
            todo = [kind for kind in ("pretrained", "random")
                    if f"n{n}.seed{seed}.probe.{kind}" not in res.data["probe"]]
            if todo:
                hp = finetune_hparams(n, seed, 1e-3, s["probe_epochs"], s["batch"])
                splits = prepare_data(data, cfg, hp)                     # the fine-tuning runs' images, once
            for kind in todo:
                key = f"n{n}.seed{seed}.probe.{kind}"
                body = load_checkpoint(body_path)[0] if kind == "pretrained" else init_params(cfg, seed)
                res.data["probe"][key] = {"n": n, "seed": seed, **probe(cfg, splits, hp, body)}
                res.save()
                log(f"  {key}: test {100 * res.data['probe'][key]['test_acc']:.2f}%")
    res.data["summary"] = summarise(res.data, s)
    res.save()
    return res.data


def finetune_hparams(n, seed, lr, epochs, batch=128) -> HParams:
    """One fine-tuning (or from-scratch) run on ``n`` labelled images: n − n/5 to train, n/5 to validate."""
    return HParams(epochs=epochs, batch_size=batch, lr=lr, warmup_epochs=max(1.0, epochs / 20), weight_decay=0.05,
                   label_smoothing=0.1, augment="flip", train_subset=n, val_size=n // 5, seed=seed, max_minutes=None)


def probe(cfg, splits, hp, body) -> dict:
    """A linear head on a frozen ``body`` (the pre-trained one, or a random initialisation), trained on the splits of
    the fine-tuning runs (the same n − n/5 images); no choice is made, the last epoch is reported."""
    (x, y), (tx, ty) = splits["train"], splits["test"]
    history, seconds = linear_probe(body, cfg, x, y, tx, ty, hp, flip=True)
    return {"test_acc": history[-1]["test_acc"], "seconds": round(seconds, 1)}


def summarise(data, s) -> dict:
    """Per n: each arm's chosen run (learning rate by validation) per seed, mean ± sample std of their test
    accuracies, the paired gain pretrained − scratch, and the probes."""
    out = {}
    for n in s["labels"]:
        row = {}
        for arm in ("pretrained", "scratch"):
            chosen = []
            for seed in s["seeds"]:
                runs = [r for r in data["runs"].values() if (r["n"], r["seed"], r["arm"]) == (n, seed, arm)]
                if len(runs) == len(LEARNING_RATES):
                    chosen.append(max(runs, key=lambda r: r["best_val_acc"]))
            row[arm] = {"test_acc": [c["test_acc"] for c in chosen], "lr": [c["lr"] for c in chosen],
                        **_spread([c["test_acc"] for c in chosen])}
        gains = [a - b for a, b in zip(row["pretrained"]["test_acc"], row["scratch"]["test_acc"])]
        row["gain"] = _spread(gains)
        for body_kind in ("pretrained", "random"):
            accs = [p["test_acc"] for k, p in data["probe"].items() if p["n"] == n and k.endswith("." + body_kind)]
            row[f"probe_{body_kind}"] = _spread(accs)
        out[str(n)] = row
    return out


def _spread(values) -> dict:
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return {"n": 0}
    return {"n": int(v.size), "mean": float(v.mean()), "std": float(v.std(ddof=1)) if v.size > 1 else 0.0}
