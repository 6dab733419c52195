"""The commands that use a trained ViT (or CNN): test accuracy, predictions on image files, what a checkpoint holds.

Command line (each needs only the checkpoint file, which describes its own model: ViT or CNN, its image
size, and its classes)::

    python -m vitnp evaluate RUN/best.npz [--data DIR]    test accuracy, loss and per-class accuracy
    python -m vitnp predict RUN/best.npz shirt.png …      top-3 classes with probabilities per image
    python -m vitnp info RUN/checkpoint.npz               config, parameter counts per group, training state

The library they call: :mod:`vitnp.training.evaluation` (evaluate_arrays, predict_proba, validation_split …)
and :mod:`vitnp.data.image_files` (load_image, image_to_input).

``cfg`` is a ViTConfig or a CNNConfig; the forward pass comes from :func:`vitnp.training.specs.model_spec`: the fast
path, or with ``reference=True`` (``--reference``) the clear reference model, equal up to float32 rounding.
A checkpoint trained on a class subset (``--classes``) is evaluated on the same classes, relabelled the same
way, and one trained at another image size (``--image-size``) gets the test images resized as in training.

A bad path, a corrupt file or a checkpoint whose arrays do not match its config raises FileNotFoundError or
ValueError with a one-line message; the commands print it as ``error: …`` and exit with status 2.
"""
from __future__ import annotations

import os

import numpy as np

from ..config import ViTConfig
from ..data import load_fashion_mnist
from ..data.image_files import image_to_input, load_image
from ..fast.parallel import set_blas_threads
from ..training.rundir import checkpoint_classes, load_checkpoint
from ..training.evaluation import checkpoint_view, evaluate_arrays, param_groups, predict_proba, validation_split
from ..training.specs import describe_model, model_spec
from . import add_data_flags


# ---- commands ----------------------------------------------------------------------------------------
def add_evaluate_arguments(p):
    p.add_argument("checkpoint", help="a checkpoint.npz or best.npz written by `python -m vitnp train`")
    add_data_flags(p)
    p.add_argument("--split", choices=("test", "val", "train"), default="test",
                   help="which split (default: test); val: the validation images the checkpoint's run held out of "
                        "the training set (compare checkpoints on this one, and read the test split once, at the end)")
    p.add_argument("--batch-size", type=int, default=500, help="evaluation batch size (default 500)")
    p.add_argument("--threads", type=int, default=0, metavar="N",
                   help="cores to use (BLAS and batch-shard threads); default 0 = NumPy's default, one per core")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_reference_argument(p)


def add_reference_argument(p):
    """``--reference``, for every command that runs the model."""
    p.add_argument("--reference", action="store_true",
                   help="run the clear reference model (vitnp.model) instead of the fast path (vitnp.fast); the "
                        "numbers agree up to float32 rounding")


def add_predict_arguments(p):
    p.add_argument("checkpoint", help="a checkpoint.npz or best.npz written by `python -m vitnp train`")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="PNG or JPEG files")
    p.add_argument("--top", type=int, default=3, help="how many classes to print per image (default 3)")
    p.add_argument("--invert", choices=("auto", "yes", "no"), default="auto",
                   help="invert light-background images to Fashion-MNIST's light-on-black (default: auto, "
                        "when the image border is mostly light)")
    add_reference_argument(p)


def add_info_arguments(p):
    p.add_argument("checkpoint", help="a checkpoint.npz or best.npz written by `python -m vitnp train`")


def _pct(x):
    return "  n/a" if not np.isfinite(x) else f"{100 * x:5.2f}%"


def evaluate_cli(args) -> int:
    """``python -m vitnp evaluate``: test accuracy and per-class accuracy of a checkpoint."""
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.threads:
        set_blas_threads(args.threads)
    params, cfg, meta = load_checkpoint(args.checkpoint)
    if args.split == "val":
        images, labels = validation_split(args.data, cfg, meta, verify=not args.no_verify, path=args.checkpoint)
    else:
        images, labels = load_fashion_mnist(args.data, args.split, verify=not args.no_verify)
        images, labels = checkpoint_view(images, labels, cfg, meta)
    r = evaluate_arrays(params, cfg, images, labels, batch_size=args.batch_size, mean=meta["norm_mean"],
                        std=meta["norm_std"], progress=not args.quiet, reference=args.reference)
    names = meta["class_names"]
    classes = checkpoint_classes(meta)
    print(f"checkpoint: {args.checkpoint} (epoch {meta['epoch']}, step {meta['step']})")
    source = meta["data"].get("source_size")
    resized = source is not None and tuple(source) != tuple(cfg.image_size)
    if classes or resized:
        print(f"data: the {args.split} images" + (f" of classes {','.join(map(str, classes))}" if classes else "")
              + (" resized {}x{} -> {}x{}".format(*source, *cfg.image_size) if resized else ""))
    print(f"{args.split} accuracy: {100 * r['accuracy']:.2f}% ({r['correct']}/{r['n']}), "
          f"loss {r['loss']:.4f} (cross-entropy)")
    print("per-class accuracy:")
    width = max(len(n) for n in names)
    for k, name in enumerate(names):
        print(f"  {k:2d} {name:<{width}}  {_pct(r['per_class'][k])}  ({r['confusion'][k, k]}/"
              f"{r['confusion'][k].sum()})")
    return 0


def predict_cli(args) -> int:
    """``python -m vitnp predict``: the top classes of each image file."""
    if args.top < 1:
        raise ValueError(f"--top must be >= 1, got {args.top}")
    params, cfg, meta = load_checkpoint(args.checkpoint)
    names = meta["class_names"]
    source_size = meta["data"].get("source_size")           # e.g. 28x28 for a model trained at 56x56
    inputs = []
    for path in args.images:                      # read all first: a bad file fails before any output
        x, inverted = image_to_input(load_image(path), cfg, meta["norm_mean"], meta["norm_std"], args.invert,
                                     source_size=source_size)
        inputs.append((path, x, inverted))
    probs = predict_proba(params, cfg, np.stack([x for _, x, _ in inputs]), reference=args.reference)   # (B, K)
    top = min(args.top, cfg.num_classes)
    for (path, _, inverted), p in zip(inputs, probs):
        order = np.argsort(-p, kind="stable")[:top]
        ranked = ", ".join(f"{names[k]} {100 * p[k]:.1f}%" for k in order)
        print(f"{path}: {ranked}" + ("   (inverted to light-on-dark)" if inverted else ""))
    return 0


def info_cli(args) -> int:
    """``python -m vitnp info``: what a checkpoint holds (a ViT or a CNN)."""
    params, cfg, meta = load_checkpoint(args.checkpoint)
    vit = isinstance(cfg, ViTConfig)
    print(f"checkpoint: {args.checkpoint} ({os.path.getsize(args.checkpoint):,} bytes, {meta['format']})")
    print(f"model: {describe_model(cfg)}")
    print("config:")
    for key, value in cfg.to_dict().items():
        print(f"  {key:<18} {value}")
    if vit:
        print(f"  {'(derived)':<18} N={cfg.num_patches} patches, T={cfg.num_tokens} tokens, "
              f"P²C={cfg.patch_dim}, D_h={cfg.head_dim}")
    else:
        print(f"  {'(derived)':<18} last feature map " + "{}x{}".format(*cfg.feature_hw)
              + f"x{cfg.channels[-1]}, head input {cfg.feature_dim}")
    print("parameters:")
    groups = param_groups(params)
    width = max(len(g) for g, _ in groups)
    for g, n in groups:
        each = f"   ({n // cfg.depth:,} per block × {cfg.depth})" if vit and g.startswith("blocks:") else ""
        print(f"  {g:<{width}} {n:>11,}{each}")
    total = sum(n for _, n in groups)
    print(f"  {'total':<{width}} {total:>11,}")
    if total != model_spec(cfg).count(cfg):       # cannot happen: load_checkpoint validated every shape
        raise ValueError(f"{args.checkpoint}: the parameter groups hold {total:,} numbers, the config "
                         f"{model_spec(cfg).count(cfg):,}")
    classes = checkpoint_classes(meta)
    print(f"classes: {', '.join(meta['class_names'])}"
          + (f" (Fashion-MNIST classes {','.join(map(str, classes))}, relabelled 0..{len(classes) - 1})"
             if classes else ""))
    source = meta["data"].get("source_size")
    if source and tuple(source) != tuple(cfg.image_size):
        print("images: {}x{} data resized to {}x{} (bilinear)".format(*source, *cfg.image_size))
    if meta["init_from"] is not None:
        init = meta["init_from"]
        print(f"initial weights: {init['path']} (epoch {init['epoch']}; {init['adapted']})")
    print("training:")
    print(f"  epoch {meta['epoch']}, step {meta['step']}"
          + (f", {meta['batch']} batches into the next epoch" if meta.get("batch") else "")
          + ("; optimiser state included (resumable)" if meta["optim"] is not None
             else "; no optimiser state (weights only)"))
    if meta["history"]:
        last = meta["history"][-1]
        seen = [f"{name} accuracy {100 * last[f'{key}_acc']:.2f}%" for key, name in
                (("train", "train"), ("val", "validation"), ("test", "test")) if _is_fraction(last.get(f"{key}_acc"))]
        print(f"  last epoch ({last.get('epoch', '?')}): {'; '.join(seen) or 'no accuracy recorded'}")
    best = meta["progress"].get("best_split")
    if best is not None:
        print(f"  chosen as the best epoch by: {'validation accuracy' if best == 'val' else best}")
    if meta["hparams"] is not None:
        hp = ", ".join(f"{k}={v}" for k, v in meta["hparams"].items())
        print(f"  hparams: {hp}")
    return 0


def _is_fraction(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 1
