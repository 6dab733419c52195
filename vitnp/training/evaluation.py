"""Evaluating and using a trained ViT (or CNN) on arrays: what the training loop and the commands share.

evaluate_arrays(params, cfg, images, labels)  -> dict: loss, accuracy, predictions, per_class, confusion
predict_proba(params, cfg, x)                 -> (B, K) softmax probabilities of normalised images
cross_entropy_sum(logits, labels)             -> Σ −log softmax, float64: the loss every report uses
validation_split(data, cfg, meta)             -> the validation images a checkpoint's run held out, rebuilt
checkpoint_view(images, labels, cfg, meta)    -> images and labels as the checkpoint's model saw them
param_groups(params)                          -> [(group, count)] for ``info``

``cfg`` is a ViTConfig or a CNNConfig; the forward pass comes from :func:`vitnp.training.specs.model_spec`: the
fast path, or with ``reference=True`` the clear reference model, equal up to float32 rounding.  The commands
``evaluate``, ``predict`` and ``info`` (:mod:`vitnp.cli.evaluate`) call these.
"""
from __future__ import annotations

import sys

import numpy as np

from ..data import MEAN, STD, check_images, normalize, prepare_data, resize_images, select_classes
from .rundir import checkpoint_classes
from ..ops.loss import log_softmax
from .presets import HParams
from .specs import model_spec

__all__ = ["evaluate_arrays", "predict_proba", "cross_entropy_sum", "validation_split", "checkpoint_view",
           "param_groups"]


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


def validation_split(data, cfg, meta, *, verify=True, path="the checkpoint"):
    """The validation images the checkpoint's run held out (its ``val_size`` or ``val_fraction``, classes,
    training subset and image size), rebuilt from the training files exactly as
    :func:`vitnp.training.trainer.train` did: (images, labels) ready for the model.  ValueError if the run had no validation split."""
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
    (:func:`vitnp.data.resize_images`).  ``meta`` is the third value of :func:`vitnp.training.rundir.load_checkpoint`.

    images : uint8 (N, h, w, C), labels : (N,)  ->  uint8 (n, H, W, C), int64 (n,)
    Shrinking by more than 2× raises ValueError (:func:`vitnp.data.resize_images` would alias).
    """
    classes = checkpoint_classes(meta)
    if classes:
        images, labels = select_classes(images, labels, classes)
    if tuple(images.shape[1:3]) != tuple(cfg.image_size):
        images = resize_images(images, cfg.image_size)
    return images, labels


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
