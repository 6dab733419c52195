"""The command line of training: ``python -m vitnp train``'s flags, and how they become a config, HParams
and a call of :func:`vitnp.training.trainer.train`.

Each flag overrides one field of the preset (``--preset``), or of the ``--init-from`` checkpoint's config;
``--config KEY=VALUE`` sets any other field.  A resumed run (``--resume``) takes everything from its
checkpoint except ``--max-minutes`` and ``--config eval_batch_size=N``; ``--threads``, ``--quiet`` and
``--reference`` (the reference model instead of the fast path) may change on any call.  ``--seeds N`` trains
the same set-up over N seeds and reports the mean ± std of the test accuracy (:mod:`vitnp.training.seeds`).
"""
from __future__ import annotations

import dataclasses
import json
import math
import os

from ..training import finetune
from ..cnn import CNNConfig
from ..data import AUGMENTATIONS
from ..fast.parallel import set_blas_threads
from ..training.specs import MODELS, model_spec
from ..training.presets import DESCRIPTIONS, PRESETS, HParams, get_preset
from ..training.rundir import load_checkpoint
from ..training.seeds import seed_dirs, summarize, train_seeds
from ..training.trainer import RESUMABLE_CHANGES, train
from . import add_data_flags

__all__ = ["parse_classes", "add_train_arguments", "train_cli"]

# flag (argparse dest) -> type; every flag defaults to None = "not given"
_MODEL_FLAGS = {"image_size": int, "num_classes": int, "dropout": float,                      # both models
                "patch_size": int, "dim": int, "depth": int, "heads": int, "mlp_dim": int, "classifier": str,
                "pos_embedding": str, "gelu": str, "stem": "ints", "stem_kernel": int, "stem_pool": int,  # ViT
                "cnn_channels": "ints"}                                                       # CNN
_VIT_ONLY = ("patch_size", "dim", "depth", "heads", "mlp_dim", "classifier", "pos_embedding", "gelu", "stem",
             "stem_kernel", "stem_pool")
_CNN_ONLY = ("cnn_channels",)
_MODEL_FIELD = {"stem": "stem_channels", "cnn_channels": "channels"}
_HP_FLAGS = {"epochs": int, "batch_size": int, "lr": float, "final_lr": float, "warmup": float,
             "weight_decay": float, "label_smoothing": float, "clip": float, "augment": str,
             "crop_padding": int, "val_size": int, "val_fraction": float, "train_subset": int, "seed": int}
_HP_FIELD = {"warmup": "warmup_epochs", "clip": "clip_grad_norm"}


def _flag(dest):
    return "--" + dest.replace("_", "-")


def parse_classes(text) -> tuple:
    """'0,1,2,3,4', '0-4' or '0-2,7' -> (0, 1, 2, 3, 4) … : class indices in the order written.

    Raises ValueError naming the problem (not an integer, a descending range, a repeated class).
    """
    classes = []
    for part in str(text).split(","):
        part = part.strip()
        lo, dash, hi = part.partition("-")
        try:
            first, last = (int(lo), int(hi)) if dash else (int(part), int(part))
        except ValueError:
            raise ValueError(f"--classes: {part!r} is not a class index or a range a-b (e.g. 0,1,2 or 0-4)") \
                from None
        if first < 0 or last < first:
            raise ValueError(f"--classes: bad range {part!r}; write ascending non-negative ranges such as 0-4")
        classes.extend(range(first, last + 1))
    if len(set(classes)) != len(classes):
        raise ValueError(f"--classes: {text!r} names a class twice")
    return tuple(classes)


def _parse_ints(flag, text) -> tuple:
    try:
        values = tuple(int(v) for v in str(text).split(","))
    except ValueError:
        raise ValueError(f"{flag}: expected comma-separated integers such as 16,32, got {text!r}") from None
    if not values or min(values) < 1:
        raise ValueError(f"{flag}: the channel counts must be positive, got {text!r}")
    return values


def add_train_arguments(p) -> None:
    """The flags of ``python -m vitnp train``."""
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="run directory (created if missing)")
    p.add_argument("--preset", choices=tuple(PRESETS), default=None,
                   help="; ".join(f"{k}: {v}" for k, v in DESCRIPTIONS.items()).replace("%", "%%")
                   + " (default: fmnist)")
    p.add_argument("--resume", action="store_true",
                   help="continue RUN_DIR/checkpoint.npz bit-exactly (model and training flags, and the thread "
                        "layout, come from it)")
    p.add_argument("--overwrite", action="store_true",
                   help="start a new run in RUN_DIR even if it holds one (its files are replaced); without it "
                        "such a directory is refused")
    add_data_flags(p)
    p.add_argument("--init-from", metavar="CHECKPOINT",
                   help="start from this checkpoint's weights (fine-tuning; fresh optimiser at step 0): the "
                        "model flags default to its config, E_pos is interpolated for a new --image-size, and "
                        "a new zero head is made when the classes differ; the preset gives only the training "
                        "flags")
    g = p.add_argument_group("training (override the preset)")
    g.add_argument("--epochs", type=int)
    g.add_argument("--batch-size", type=int)
    g.add_argument("--lr", type=float, help="peak learning rate of AdamW")
    g.add_argument("--final-lr", type=float, help="learning rate at the end of the cosine decay")
    g.add_argument("--warmup", type=float, metavar="EPOCHS", help="linear warm-up length in epochs")
    g.add_argument("--weight-decay", type=float)
    g.add_argument("--label-smoothing", type=float)
    g.add_argument("--clip", type=float, metavar="MAX_NORM", help="global gradient-norm clipping (0: off)")
    g.add_argument("--augment", choices=AUGMENTATIONS)
    g.add_argument("--no-augment", dest="augment", action="store_const", const="none",
                   help="same as --augment none")
    g.add_argument("--crop-padding", type=int, metavar="PIXELS")
    g.add_argument("--val-size", type=int, metavar="N",
                   help="hold out N training images for validation, stratified by class, the same for every "
                        "seed (the presets: 5000); best.npz is the epoch of highest validation accuracy; 0: none "
                        "(best.npz is then the last epoch)")
    g.add_argument("--val-fraction", type=float,
                   help="instead of --val-size: hold out this part of the training set, a random split that "
                        "depends on --seed")
    g.add_argument("--test-curve", action="store_true",
                   help="for teaching: also evaluate the test set after every epoch and plot it (labelled as a "
                        "curve; nothing is chosen with it). Without it the test set is read once, after training")
    g.add_argument("--classes", metavar="LIST",
                   help="train and test on these classes only, relabelled 0..k-1 in the order given: 0,1,2,3,4 "
                        "or 0-4 or 0-2,7 (sets --num-classes to k unless given)")
    g.add_argument("--train-subset", type=int, metavar="N",
                   help="train on a seeded random N images (after --classes; 0: all)")
    g.add_argument("--seed", type=int)
    g = p.add_argument_group("model (override the preset, or the --init-from checkpoint's config)")
    g.add_argument("--model", choices=tuple(MODELS),
                   help="vit (default) or cnn, the CNN baseline of vitnp.cnn trained with the same data, "
                        "optimiser, schedule, augmentation and budget")
    g.add_argument("--image-size", type=int, metavar="N",
                   help="train on N x N images: Fashion-MNIST is resized (bilinear) when N != 28")
    g.add_argument("--num-classes", type=int, metavar="K", help="number of classes of the head")
    g.add_argument("--patch-size", type=int, metavar="P")
    g.add_argument("--dim", type=int, metavar="D")
    g.add_argument("--depth", type=int, metavar="L")
    g.add_argument("--heads", type=int, metavar="K")
    g.add_argument("--mlp-dim", type=int, metavar="M")
    g.add_argument("--classifier", choices=("token", "gap"))
    g.add_argument("--pos-embedding", choices=("learned", "sincos", "none"))
    g.add_argument("--gelu", choices=("exact", "tanh"))
    g.add_argument("--dropout", type=float)
    g.add_argument("--stem", metavar="C1,C2,...",
                   help="hybrid ViT: a CNN stem (conv, ReLU, max-pool per stage) with these channels makes the "
                        "feature map the patches are cut from")
    g.add_argument("--stem-kernel", type=int, metavar="K", help="kernel size of the stem's convolutions")
    g.add_argument("--stem-pool", type=int, metavar="S", help="max-pool window and stride of each stem stage")
    g.add_argument("--cnn-channels", metavar="C1,C2,...",
                   help="--model cnn: output channels of each conv stage (default 32,64)")
    g.add_argument("--config", action="append", default=[], metavar="KEY=VALUE",
                   help="set any field of the model's config (ViTConfig or CNNConfig) or of HParams, e.g. "
                        "--config beta2=0.99 (repeatable)")
    g = p.add_argument_group("run control")
    g.add_argument("--seeds", type=int, metavar="N",
                   help="train N runs with seeds s, s+1, ... (s: --seed, or the preset's) into RUN_DIR/seed-<s>, "
                        "then print the mean and sample standard deviation of their test accuracy (RUN_DIR/seeds.json); "
                        "with --resume: continue every unfinished RUN_DIR/seed-<s>")
    g.add_argument("--max-minutes", type=float, metavar="M",
                   help="wall-clock budget of this call (0: none); stops at an epoch boundary when the next "
                        "epoch would not fit, or mid-epoch with a checkpoint")
    g.add_argument("--stop-after-epoch", type=int, metavar="N",
                   help="stop once N epochs are complete, as if interrupted (--resume continues)")
    g.add_argument("--threads", type=int, metavar="N", default=0,
                   help="cores to use: BLAS (OpenBLAS) threads, which is also the number of batch-shard threads "
                        "(vitnp.fast.parallel); default 0 = NumPy's default, one per core")
    g.add_argument("--quiet", action="store_true", help="no progress bars (one line per epoch still)")
    g.add_argument("--reference", action="store_true",
                   help="train with the clear reference model (vitnp.model) instead of the fast path (vitnp.fast): "
                        "the same numbers up to float32 rounding, slower; recorded in config.json")


def _parse_value(text):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def train_cli(args) -> int:
    """``python -m vitnp train``; exit status 0 when completed or stopped cleanly, 130 after Ctrl-C."""
    if args.threads:
        set_blas_threads(args.threads)
    given = [flag for flag in _MODEL_FLAGS if getattr(args, flag) is not None]
    model = {}
    for flag in given:
        value = getattr(args, flag)
        model[_MODEL_FIELD.get(flag, flag)] = _parse_ints(_flag(flag), value) if _MODEL_FLAGS[flag] == "ints" \
            else value
    hp_changes = {_HP_FIELD.get(flag, flag): getattr(args, flag) for flag in _HP_FLAGS
                  if getattr(args, flag) is not None}
    if args.classes is not None:
        hp_changes["classes"] = parse_classes(args.classes)
    if args.test_curve:
        hp_changes["test_curve"] = True
    if args.val_fraction and args.val_size is None:
        hp_changes["val_size"] = 0                 # --val-fraction replaces the preset's --val-size
    if args.seeds is not None and args.seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {args.seeds}")
    if args.max_minutes is not None:
        if not math.isfinite(args.max_minutes) or args.max_minutes < 0:
            raise ValueError(f"--max-minutes must be a finite number of minutes >= 0 (0: no budget), got "
                             f"{args.max_minutes}")
        hp_changes["max_minutes"] = args.max_minutes if args.max_minutes > 0 else None
    if args.stop_after_epoch is not None and args.stop_after_epoch < 1:
        raise ValueError(f"--stop-after-epoch must be >= 1, got {args.stop_after_epoch}")
    log = (lambda s: print(s, flush=True))
    hp_fields = {f.name for f in dataclasses.fields(HParams)}

    if args.resume:
        cfg_fields = {f.name for spec in MODELS.values() for f in dataclasses.fields(spec.config)}
        config_model, config_hp = _config_items(args.config, cfg_fields, hp_fields)
        fixed = {k for k in {**model, **config_model, **hp_changes, **config_hp} if k not in RESUMABLE_CHANGES}
        fixed |= {name for name, value in (("model", args.model), ("init_from", args.init_from),
                                           ("overwrite", args.overwrite), ("preset", args.preset)) if value}
        if fixed:
            raise ValueError("--resume continues the saved run with its own settings; drop "
                             + ", ".join(sorted(fixed)) + " (only --max-minutes and --config eval_batch_size=N "
                             "may change)")
        hp_changes.update(config_hp)

        def resume(out):
            hp = None
            if hp_changes:                         # max_minutes and/or eval_batch_size
                saved = load_checkpoint(os.path.join(out, "checkpoint.npz"))[2]["hparams"] or {}
                try:
                    hp = HParams.from_dict(saved).replace(**hp_changes)
                except TypeError as err:           # a wrongly typed --config value
                    raise ValueError(str(err)) from None
            return train(None, hp, out_dir=out, data=args.data, resume=True, quiet=args.quiet, log=log,
                         stop_after_epoch=args.stop_after_epoch, verify_data=not args.no_verify,
                         reference=args.reference, threads=args.threads or None)
        if args.seeds is None:
            return _status(resume(args.out).status)
        for _, out in seed_dirs(args.out):         # --seeds --resume: every unfinished seed, then the summary
            if not os.path.isfile(os.path.join(out, "results.json")):
                status = resume(out).status
                if status != "completed":
                    return _status(status)
        summarize(args.out, log=log)
        return 0

    args.preset = args.preset or "fmnist"
    preset_cfg, hp = get_preset(args.preset)
    init = None
    if args.init_from is not None:                 # the model is the checkpoint's, unless flags change it
        init = finetune.load_init(args.init_from)  # read (and hashed) once; train() gets the result
        base = init["cfg"]
        kind = model_spec(base).kind
        if args.model is not None and args.model != kind:
            raise ValueError(f"--model {args.model}, but --init-from {args.init_from} holds a {kind.upper()}; "
                             f"fine-tuning keeps the model kind")
    else:
        kind = args.model or "vit"
        base = preset_cfg if kind == "vit" else CNNConfig(
            image_size=preset_cfg.image_size, in_channels=preset_cfg.in_channels,
            num_classes=preset_cfg.num_classes, dtype=preset_cfg.dtype)
    other = _CNN_ONLY if kind == "vit" else _VIT_ONLY
    wrong = [_flag(f) for f in given if f in other]
    if wrong:
        raise ValueError(f"{', '.join(wrong)} do(es) not apply to the {kind.upper()} "
                         f"({'--model cnn' if kind == 'vit' else 'ViT'} only)")
    cfg_fields = {f.name for f in dataclasses.fields(model_spec(kind).config)}
    missing = [f"{_flag(flag)} needs {type(base).__name__}.{field}, which this version of vitnp does not have"
               for flag, field in _MODEL_FIELD.items() if flag in given and field not in cfg_fields]
    if missing:
        raise ValueError("; ".join(missing))
    config_model, config_hp = _config_items(args.config, cfg_fields, hp_fields)
    model.update(config_model)
    hp_changes.update(config_hp)
    if hp_changes.get("classes") and "num_classes" not in model:
        model["num_classes"] = len(hp_changes["classes"])          # --classes 0-4 -> a 5-class head
    try:
        cfg, hp = base.replace(**model), hp.replace(**hp_changes)
    except TypeError as err:                       # a wrongly typed --config value
        raise ValueError(str(err)) from None

    def train_one(seed, out):
        return train(cfg, hp.replace(seed=seed), out_dir=out, data=args.data, quiet=args.quiet, log=log,
                     stop_after_epoch=args.stop_after_epoch, verify_data=not args.no_verify, preset=args.preset,
                     init_from=init, reference=args.reference, overwrite=args.overwrite)
    if args.seeds is None:
        return _status(train_one(hp.seed, args.out).status)
    return _status(train_seeds(args.seeds, hp.seed, args.out, train_one, log=log))


def _status(status) -> int:
    """The exit status of a training call: 130 after Ctrl-C, else 0 (completed, or stopped cleanly)."""
    return 130 if status == "interrupted" else 0


def _config_items(items, cfg_fields, hp_fields):
    """--config KEY=VALUE items -> ({config field: value}, {HParams field: value}); VALUE is JSON if it parses."""
    model, hp = {}, {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--config expects KEY=VALUE, got {item!r}")
        if key in hp_fields:
            hp[key] = _parse_value(value)
        elif key in cfg_fields:
            model[key] = _parse_value(value)
        else:
            raise ValueError(f"--config: unknown field {key!r}; the model config has "
                             f"{', '.join(sorted(cfg_fields))}; HParams has {', '.join(sorted(hp_fields))}")
    return model, hp
