"""Using a trained ViT (or CNN): test accuracy, predictions on image files, and what a checkpoint holds.

Command line (each needs only the checkpoint file, which describes its own model: ViT or CNN, its image
size, and its classes)::

    python -m vitnp evaluate RUN/best.npz [--data DIR]    test accuracy, loss and per-class accuracy
    python -m vitnp predict RUN/best.npz shirt.png …      top-3 classes with probabilities per image
    python -m vitnp info RUN/checkpoint.npz               config, parameter counts per group, training state

Python API
----------
evaluate_arrays(params, cfg, images, labels)  -> dict: loss, accuracy, predictions, per_class, confusion
predict_proba(params, cfg, x)                 -> (B, K) softmax probabilities of normalised images
cross_entropy_sum(logits, labels)             -> Σ −log softmax, float64: the loss every report uses
load_image(path)                              -> float array in [0, 1], (H, W, C) as stored in the file
image_to_input(image, cfg, mean, std)         -> ((H, W, C) float32 model input, inverted: bool)
param_groups(params)                          -> [(group, count)] for ``info``

``cfg`` is a ViTConfig or a CNNConfig; the forward pass comes from :func:`vitnp.training.specs.model_spec`: the fast
path, or with ``reference=True`` (``--reference``) the clear reference model, equal up to float32 rounding.
A checkpoint trained on a class subset (``--classes``) is evaluated on the same classes, relabelled the same
way, and one trained at another image size (``--image-size``) gets the test images resized as in training.

A bad path, a corrupt file or a checkpoint whose arrays do not match its config raises FileNotFoundError or
ValueError with a one-line message; the commands print it as ``error: …`` and exit with status 2.
"""
from __future__ import annotations

import os
import sys

import numpy as np

from .config import ViTConfig
from .data import (MEAN, STD, check_images, load_fashion_mnist, normalize, prepare_data, resize_images,
                   select_classes)
from .fast.parallel import set_blas_threads
from .training.specs import describe_model, model_spec
from .ops.loss import log_softmax
from .training.presets import HParams
from .data.resample import resize_area
from .io.rundir import checkpoint_classes, load_checkpoint

__all__ = ["evaluate_arrays", "predict_proba", "cross_entropy_sum", "load_image", "image_to_input",
           "param_groups", "checkpoint_view"]


# ---- evaluation ------------------------------------------------------------------------------------
def cross_entropy_sum(logits, labels) -> float:
    """Σ_b −log softmax(logits_b)[y_b] in float64 (no label smoothing): the loss we report.

    logits: (B, K)   labels: (B,) ints   ->   float (a sum; divide by B for the mean)
    """
    log_p = log_softmax(logits.astype(np.float64))                        # (B, K)
    return float(-log_p[np.arange(len(labels)), labels].sum())


def _batches_of_inputs(images, batch_size, mean, std, dtype):
    """uint8 (N, H, W, C) → normalised (B, H, W, C) batches of :func:`vitnp.data.normalize`."""
    for i in range(0, len(images), batch_size):
        yield normalize(images[i:i + batch_size], dtype, mean=mean, std=std)


def evaluate_arrays(params, cfg, images, labels, *, batch_size=500, mean=None, std=None,
                    progress=False, desc="eval", reference=False):
    """Loss and accuracy of the model on uint8 images, in batches, with dropout off (``train=False``).

    Parameters
    ----------
    params : dict, names and shapes of the config's parameter table
    cfg : ViTConfig or CNNConfig
    images : uint8 (N, H, W, C)          raw pixels of the model's size; normalised here with ``mean``/``std``
    labels : int (N,)
    batch_size : int                     memory and speed; results change only by float32 rounding
    mean, std : float                    default: Fashion-MNIST's (vitnp.data.MEAN, STD)
    progress : bool                      show a tqdm bar
    reference : bool                     the reference model instead of the fast path (the ViT's)

    Returns
    -------
    dict with ``loss`` (mean cross-entropy, no smoothing), ``accuracy`` (fraction), ``correct`` (int),
    ``n``, ``predictions`` (N,) int64, ``per_class`` (K,) accuracy per true class (NaN where a class is
    absent), ``confusion`` (K, K) int64 counts, rows = true class, columns = predicted class.

    Raises
    ------
    TypeError    images not uint8 (e.g. already normalised floats); labels not integers.
    ValueError   images not of the model's (H, W, C); as many labels as images needed; labels outside
                 0 … K−1 (:func:`vitnp.data.check_images`); batch_size < 1.
    """
    predict = model_spec(cfg, reference=reference).predict
    mean = MEAN if mean is None else mean
    std = STD if std is None else std
    K = cfg.num_classes
    labels = check_images(images, labels, what="evaluate_arrays", channels=cfg.in_channels, size=cfg.image_size,
                          num_classes=K)
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    preds = np.empty(len(labels), np.int64)
    loss_sum = 0.0
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(labels), unit="img", desc=desc, leave=False, file=sys.stderr)
    for i, x in enumerate(_batches_of_inputs(images, batch_size, mean, std, cfg.np_dtype)):
        y = labels[i * batch_size:(i + 1) * batch_size]
        logits = predict(params, x, cfg)                                     # (B, K), dropout off
        loss_sum += cross_entropy_sum(logits, y)
        preds[i * batch_size:i * batch_size + len(y)] = logits.argmax(1)
        if bar is not None:
            bar.update(len(y))
    if bar is not None:
        bar.close()
    confusion = np.zeros((K, K), np.int64)
    np.add.at(confusion, (labels, preds), 1)                                 # rows true, columns predicted
    per_class_n = confusion.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_class = np.diag(confusion) / per_class_n                         # NaN for absent classes
    correct = int(np.diag(confusion).sum())
    n = len(labels)
    return {"loss": loss_sum / max(n, 1), "accuracy": correct / max(n, 1), "correct": correct, "n": n,
            "predictions": preds, "per_class": per_class, "confusion": confusion}


def predict_proba(params, cfg, x, batch_size=500, *, reference=False):
    """Softmax probabilities (B, K), float64, of normalised float images x (B, H, W, C), dropout off (ViT or
    CNN; ``reference``: the ViT's reference model instead of the fast path)."""
    predict = model_spec(cfg, reference=reference).predict
    out = []
    for i in range(0, len(x), batch_size):
        logits = predict(params, x[i:i + batch_size], cfg)                           # (b, K), dropout off
        out.append(np.exp(log_softmax(logits.astype(np.float64))))
    return np.concatenate(out)


# ---- image files -----------------------------------------------------------------------------------
MAX_IMAGE_PIXELS = 25_000_000      # 5000×5000: far beyond any input a ViT here needs, far below a bomb


def load_image(path, max_pixels=MAX_IMAGE_PIXELS):
    """Read a PNG or JPEG (matplotlib; JPEG through Pillow) → float64 array in [0, 1], (H, W, C), C ∈ 1..4.

    The pixel count is read from the file's header (Pillow) before anything is decoded, and an image of more
    than ``max_pixels`` pixels is refused: a few hundred KB of PNG can otherwise decode to gigabytes.
    """
    import matplotlib.image as mpimg
    from PIL import Image
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such image file: {path}")
    if not os.path.isfile(path):
        raise ValueError(f"{path}: not a file")
    try:
        with Image.open(path) as header:                                   # reads the header only
            width, height = header.size
    except Exception as err:                      # Pillow's UnidentifiedImageError, truncated headers, …
        raise ValueError(f"{path}: cannot read it as an image ({type(err).__name__}: "
                         f"{' '.join(str(err).split())})") from None
    if width * height > max_pixels:
        raise ValueError(f"{path}: {width}×{height} = {width * height:,} pixels, more than the {max_pixels:,} "
                         f"allowed (a decompression bomb, or an image far larger than the model needs)")
    try:
        img = mpimg.imread(path)
    except Exception as err:                      # Pillow's UnidentifiedImageError, libpng errors, …
        raise ValueError(f"{path}: cannot read it as an image ({type(err).__name__}: "
                         f"{' '.join(str(err).split())})") from None
    a = np.asarray(img)
    if np.issubdtype(a.dtype, np.integer):
        a = a / float(np.iinfo(a.dtype).max)      # uint8 JPEG → [0, 1]; 16-bit PNG too
    a = a.astype(np.float64)
    if a.ndim == 2:
        a = a[..., None]                          # (H, W) → (H, W, 1)
    if a.ndim != 3 or a.shape[2] not in (1, 2, 3, 4) or min(a.shape[:2]) < 1:
        raise ValueError(f"{path}: unsupported image shape {a.shape}")
    return a


def image_to_input(image, cfg, mean, std, invert="auto", *, source_size=None):
    """Turn an image in [0, 1] into one model input the way the training images look.

    1. transparency is composited over white; colour → grey by luminance (0.299 R + 0.587 G + 0.114 B)
       when the model has 1 channel, grey → 3 equal channels when it has 3;
    2. Fashion-MNIST shows light clothes on a black background: with ``invert='auto'`` an image whose
       border is mostly light (mean > 0.5) is inverted (1 − x); 'yes' / 'no' force the choice;
    3. padded with its border colour to the model's aspect ratio (keeping the object's shape), then
       resized to (H, W) by area averaging;
    4. quantised to 0..255 and normalised x̂ = (x/255 − mean)/std, as the training images were.

    ``source_size`` (h, w): for a model trained on images upsampled from h×w (e.g. Fashion-MNIST's 28×28
    at ``--image-size 56``), step 3 resizes to (h, w) and the 0..255 image is then resized to (H, W) with
    :func:`vitnp.data.resize_images`, exactly as the training images were.

    ``cfg`` is a ViTConfig or CNNConfig.  Returns ((H, W, C) array of ``cfg.dtype``, inverted: bool).
    """
    a = np.asarray(image, dtype=np.float64)
    if a.ndim == 2:
        a = a[..., None]
    if a.shape[2] in (2, 4):                                       # grey+alpha or RGBA
        alpha = a[..., -1:]
        a = a[..., :-1] * alpha + (1.0 - alpha)                    # over white
    C = cfg.in_channels
    if a.shape[2] == 3 and C == 1:
        a = a @ np.array([0.299, 0.587, 0.114])[:, None]            # (H, W, 3) → (H, W, 1)
    elif a.shape[2] == 1 and C == 3:
        a = np.repeat(a, 3, axis=2)
    elif a.shape[2] != C:
        raise ValueError(f"cannot turn a {a.shape[2]}-channel image into the model's {C} channels")
    border = np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]])      # (2W + 2H, C)
    if invert not in ("auto", "yes", "no"):
        raise ValueError(f"invert must be 'auto', 'yes' or 'no', got {invert!r}")
    inverted = invert == "yes" or (invert == "auto" and border.mean() > 0.5)
    if inverted:
        a, border = 1.0 - a, 1.0 - border
    H, W = cfg.image_size                                         # (H, W) for either config
    h, w = a.shape[:2]
    if h * W != w * H:                                             # pad the short side to H:W
        th, tw = max(h, -(-w * H // W)), max(w, -(-h * W // H))
        fill = np.median(border, axis=0)                           # (C,) the background colour
        padded = np.empty((th, tw, a.shape[2]))
        padded[...] = fill
        top, left = (th - h) // 2, (tw - w) // 2
        padded[top:top + h, left:left + w] = a
        a = padded
    first = (H, W) if source_size is None else tuple(source_size)
    a = resize_area(a, first)                                      # (H, W, C), or the source's (h, w, C)
    pixels = np.clip(np.rint(a * 255.0), 0, 255).astype(np.uint8)
    if pixels.shape[:2] != (H, W):
        pixels = resize_images(pixels[None], (H, W))[0]           # (h, w, C) -> (H, W, C), as in training
    x = next(_batches_of_inputs(pixels[None], 1, mean, std, cfg.np_dtype))[0]
    return x, inverted


# ---- parameter groups --------------------------------------------------------------------------------
def param_groups(params) -> list:
    """[(group, count)] over the parameter names, blocks summed over ℓ.

    ViT groups: hybrid stem (if any), patch embedding (E, E_bias), class token, position embedding,
    per-block attention (U_qkv, U_msa and their biases), per-block MLP, per-block LayerNorms, final
    LayerNorm, head.  CNN groups: one per conv stage (conv{i}.W, conv{i}.b), head.
    """
    def group(name):
        if name.startswith("stem."):
            return "hybrid CNN stem (stem.{i}.W, .b)"
        if name.startswith("conv"):
            stage = name.split(".")[0]
            return f"{stage} ({stage}.W, {stage}.b)"
        if name in ("E", "E_bias"):
            return "patch embedding (E, E_bias)"
        if name == "x_class":
            return "class token (x_class)"
        if name == "E_pos":
            return "position embedding (E_pos)"
        if name.startswith("blocks."):
            leaf = name.split(".", 2)[2]
            if leaf.startswith("U_"):
                return "blocks: attention (U_qkv, U_msa, biases)"
            if leaf.startswith("mlp."):
                return "blocks: MLP (W1, b1, W2, b2)"
            return "blocks: LayerNorms (ln1, ln2)"
        if name.startswith("ln_f."):
            return "final LayerNorm (ln_f)"
        if name.startswith("head."):
            return "head (head.W, head.b)"
        return "other"
    counts = {}
    for name, a in params.items():
        counts[group(name)] = counts.get(group(name), 0) + int(np.size(a))
    return list(counts.items())


# ---- commands ----------------------------------------------------------------------------------------
def add_evaluate_arguments(p):
    p.add_argument("checkpoint", help="a checkpoint.npz or best.npz written by `python -m vitnp train`")
    p.add_argument("--data", metavar="DIR", default=None,
                   help="Fashion-MNIST directory (default: $VITNP_DATA, then /usr/share/datasets/fashion-mnist)")
    p.add_argument("--split", choices=("test", "val", "train"), default="test",
                   help="which split (default: test); val: the validation images the checkpoint's run held out of "
                        "the training set (compare checkpoints on this one, and read the test split once, at the end)")
    p.add_argument("--batch-size", type=int, default=500, help="evaluation batch size (default 500)")
    p.add_argument("--no-verify", action="store_true",
                   help="accept IDX files that are not the official Fashion-MNIST (skip the checksums)")
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


def validation_split(data, cfg, meta, *, verify=True, path="the checkpoint"):
    """The validation images the checkpoint's run held out (its ``val_size`` or ``val_fraction``, classes,
    training subset and image size), rebuilt from the training files exactly as :func:`vitnp.training.trainer.train` did:
    (images, labels) ready for the model.  ValueError if the run had no validation split."""
    try:
        hp = HParams.from_dict(meta["hparams"] or {})
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path}: its hparams cannot rebuild the validation split ({err})") from None
    if not (hp.val_size or hp.val_fraction) or not meta["hparams"]:
        raise ValueError(f"{path}: its run held out no validation split (val_size 0); use --split test or train")
    return prepare_data(data, cfg, hp, verify=verify, test=False)["val"]


def checkpoint_view(images, labels, cfg, meta):
    """A data split as the checkpoint's model saw it in training: only its classes, relabelled 0 … k−1 in
    the training order (:func:`vitnp.data.select_classes`), and resized to its image size
    (:func:`vitnp.data.resize_images`).  ``meta`` is the third value of :func:`vitnp.io.rundir.load_checkpoint`.

    images : uint8 (N, h, w, C), labels : (N,)  ->  uint8 (n, H, W, C), int64 (n,)
    Shrinking by more than 2× raises ValueError (:func:`vitnp.data.resize_images` would alias).
    """
    classes = checkpoint_classes(meta)
    if classes:
        images, labels = select_classes(images, labels, classes)
    if tuple(images.shape[1:3]) != tuple(cfg.image_size):
        images = resize_images(images, cfg.image_size)
    return images, labels


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
