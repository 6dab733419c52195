"""The experiments' command lines (:mod:`vitnp.experiments`), run as ``python scripts/inductive_bias.py …``,
``python scripts/finetune_experiments.py …``, ``python scripts/self_supervision.py …`` and
``python scripts/new_heads.py …``: parsers and flag checks; the experiments themselves are library code.
Bad arguments or data end with ``error: …`` and exit status 2; Ctrl-C with 130 (both experiments resume)."""
from __future__ import annotations

import argparse
import math
import os
import sys

from ..data import AUGMENTATIONS
from ..experiments import fine_tuning as ft, inductive_bias as ib, new_heads as nh, self_supervision as ss
from . import add_data_flags
from .train import parse_classes

DEFAULT_CHECKPOINT = os.path.join(ft.ROOT, "notebooks", "assets", "vit_fmnist.npz")
RESUME = "interrupted; run the same command again to resume"


def _guarded(call, errors=(OSError, ValueError, TypeError), interrupted=RESUME) -> int:
    """Run an experiment: 0 when it ends, 2 with one line ``error: …`` for an expected error, 130 on Ctrl-C."""
    try:
        status = call()
        return status if isinstance(status, int) else 0      # an experiment returns its results, or 0
    except errors as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(interrupted, file=sys.stderr)
        return 130


# ---- inductive bias against data size --------------------------------------------------------------------------
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
    unknown = [n for n in names if n not in ib.MODEL_NAMES]
    if not names or unknown:
        raise argparse.ArgumentTypeError(f"unknown model {unknown[0] if unknown else text!r}; "
                                         f"choose from {', '.join(ib.MODEL_NAMES)}")
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


def inductive_bias_parser():
    p = argparse.ArgumentParser(
        prog="inductive_bias.py", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train a ViT, a CNN and a hybrid ViT on nested subsets of Fashion-MNIST with the same\n"
                    "budget (S optimiser steps of B images each, one recipe) and plot test accuracy against\n"
                    "the number of training images (the small-data end of the paper's Fig 3/4).",
        epilog="Writes DIR/results.json and DIR/inductive_bias.png; runs already in results.json are\n"
               "skipped (resume).  Example: python scripts/inductive_bias.py --out runs/ib --jobs 2")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory (created if missing)")
    add_data_flags(p)
    p.add_argument("--sizes", type=_positive_ints, default=ib.DEFAULT_SIZES, metavar="N,N,…",
                   help="training-set sizes (default: " + ",".join(map(str, ib.DEFAULT_SIZES)) + ")")
    p.add_argument("--models", type=_models, default=ib.MODEL_NAMES, metavar="M,M,…",
                   help=f"models to train, from {', '.join(ib.MODEL_NAMES)} (default: all three)")
    p.add_argument("--steps", type=_positive_int, default=ib.DEFAULT_STEPS, metavar="S",
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


def inductive_bias_main(argv=None) -> int:
    """``python scripts/inductive_bias.py …``: :func:`vitnp.experiments.inductive_bias.sweep` with the flags."""
    args = inductive_bias_parser().parse_args(argv)
    return _guarded(lambda: ib.sweep(
        args.out, args.sizes, args.models, steps=args.steps, data_dir=args.data, verify=not args.no_verify,
        jobs=args.jobs, batch_size=args.batch_size, lr=args.lr, warmup=args.warmup, weight_decay=args.weight_decay,
        label_smoothing=args.label_smoothing, clip_grad_norm=args.clip, augment=args.augment, seed=args.seed,
        train_eval=args.train_eval), errors=(OSError, ValueError, TypeError, FloatingPointError),
        interrupted="interrupted: finished runs are in results.json; run the same command again to continue")


# ---- fine-tuning: a higher resolution, and transfer to new classes -----------------------------------------------
def fine_tuning_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="finetune_experiments.py", description=ft.__doc__.split("\n\n")[0],
        epilog="Resumable: run the same command again to continue; finished parts are skipped.")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory (results.json, run directories)")
    add_data_flags(p)
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


def fine_tuning_settings(args) -> dict:
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
    seeds = list(parse_seeds(args.seeds))
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


def fine_tuning_main(argv=None) -> int:
    """``python scripts/finetune_experiments.py …``: :func:`vitnp.experiments.fine_tuning.run` with the flags."""
    args = fine_tuning_parser().parse_args(argv)
    return _guarded(lambda: ft.run(args.out, fine_tuning_settings(args)),
                    errors=(ValueError, FileNotFoundError, FileExistsError, RuntimeError), interrupted="\n" + RESUME)


# ---- self-supervision: masked patch prediction, then fine-tuning on few labels -----------------------------------
def self_supervision_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="self_supervision.py", description=ss.__doc__.split("\n\n")[0],
                                epilog="Resumable: run the same command again to continue; finished parts are skipped.")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory (results.json, pretrained.npz, runs)")
    add_data_flags(p)
    p.add_argument("--pretrain-epochs", type=_positive_int, default=ss.DEFAULTS["pretrain_epochs"],
                   help="epochs of masked patch prediction over the 60,000 unlabelled images (default: %(default)s)")
    p.add_argument("--labels", type=_positive_ints, default=tuple(ss.DEFAULTS["labels"]), metavar="N,N,…",
                   help="labelled subsets, a fifth of each held out for validation (default: 1000,5000)")
    p.add_argument("--seeds", type=_seeds, default=tuple(ss.DEFAULTS["seeds"]), metavar="S,S,…",
                   help="seeds of the fine-tuning runs and probes (default: 0,1,2)")
    return p


def parse_seeds(text) -> tuple:
    """'0,1,2' -> (0, 1, 2): distinct integers >= 0; ValueError naming --seeds otherwise."""
    try:
        seeds = tuple(int(v) for v in str(text).split(","))
    except ValueError:
        raise ValueError(f"--seeds: expected comma-separated integers such as 0,1,2, got {text!r}") from None
    if min(seeds) < 0 or len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds must be distinct integers >= 0, got {text!r}")
    return seeds


def _seeds(text):
    """:func:`parse_seeds` as an argparse type (argparse names the flag itself)."""
    try:
        return parse_seeds(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err).removeprefix("--seeds").lstrip(": ")) from None


def self_supervision_main(argv=None) -> int:
    """``python scripts/self_supervision.py …``: :func:`vitnp.experiments.self_supervision.run` with the flags."""
    args = self_supervision_parser().parse_args(argv)
    settings = {"pretrain_epochs": args.pretrain_epochs, "labels": list(args.labels), "seeds": list(args.seeds)}
    return _guarded(lambda: ss.run(args.out, settings, data_dir=args.data, verify=not args.no_verify))


# ---- new heads on a frozen body ------------------------------------------------------------------------------------
def new_heads_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="new_heads.py", description=nh.__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, metavar="DIR", help="output directory (results.json)")
    p.add_argument("--checkpoint", default=nh.DEFAULT_CHECKPOINT, metavar="NPZ",
                   help="the trained ViT whose body is frozen (default: notebooks/assets/vit_fmnist.npz)")
    p.add_argument("--self-supervised", default=None, metavar="NPZ",
                   help="also a body pre-trained without labels (scripts/self_supervision.py's pretrained.npz)")
    add_data_flags(p)
    return p


def new_heads_main(argv=None) -> int:
    """``python scripts/new_heads.py …``: :func:`vitnp.experiments.new_heads.run` with the flags."""
    args = new_heads_parser().parse_args(argv)
    return _guarded(lambda: nh.run(args.out, args.checkpoint, self_supervised=args.self_supervised,
                                   data_dir=args.data, verify=not args.no_verify), interrupted="interrupted")
