"""Fine-tuning: start a model from the weights of another (paper §3.2, "Fine-tuning and higher resolution").

The paper pre-trains once and fine-tunes many times, and the fine-tuned model differs from the pre-trained
one in at most two places:

* **the head.**  "We remove the pre-trained prediction head and attach a zero-initialized D × K feedforward
  layer, where K is the number of downstream classes."  ``head.W`` (D, K) and ``head.b`` (K,) are replaced by
  zeros, the initial head of both models (:func:`vitnp.model.init_params`, :func:`vitnp.cnn.init_cnn_params`),
  whenever the classes change;
* **E_pos, at a higher resolution.**  "We keep the patch size the same, which results in a larger effective
  sequence length … we perform 2D interpolation of the pre-trained position embeddings, according to their
  location in the original image."  When the patch grid (H/P, W/P) changes, E_pos (T, D) is resized with
  :func:`vitnp.io.original.resize_pos_table` (class-token row kept, the grid of patch rows resized
  bilinearly).

Everything else is copied unchanged (bit for bit, as new arrays), and must have the same shape in both
configs.  The CNN baseline (:mod:`vitnp.cnn`) can be adapted the same way: a new zero head for new classes.

A training run starts from a checkpoint with ``train(..., init_from=PATH)`` (``--init-from``):
:func:`load_init` reads and hashes the checkpoint once, and :func:`adapt_init` adapts its weights and says
what was adapted, for the run's ``config.json`` and checkpoints.

>>> from vitnp import ViTConfig, init_params
>>> old = ViTConfig(image_size=28, patch_size=7, dim=16, depth=1, heads=2, mlp_dim=32)
>>> new = old.replace(image_size=56, num_classes=5)          # N: 16 -> 64 patches; K: 10 -> 5
>>> p = adapt_params(init_params(old), old, new)
>>> p["E_pos"].shape, p["head.W"].shape, float(abs(p["head.W"]).max())
((65, 16), (16, 5), 0.0)
"""
from __future__ import annotations

import os

import numpy as np

from ..io.original import resize_pos_table
from ..config import ARITHMETIC_FIELDS, ViTConfig, shape_fields
from ..data import md5
from .specs import model_spec
from .rundir import load_checkpoint

__all__ = ["adapt_params", "pos_table_changes", "ARITHMETIC_FIELDS", "load_init", "adapt_init"]

# A fine-tuned model may change the fields of vitnp.config.ARITHMETIC_FIELDS freely (they change how the
# arithmetic is done, not what the parameters mean; dtype: the arrays are cast).  image_size and num_classes
# are adapted as described above; every other field (vitnp.config.shape_fields: P, D, L, k, M, classifier,
# pos_embedding, in_channels, the hybrid stem, the CNN's channels …) fixes the architecture and must be equal.
HEAD = ("head.W", "head.b")


def pos_table_changes(old_cfg, new_cfg) -> bool:
    """True when fine-tuning from ``old_cfg`` to ``new_cfg`` interpolates E_pos: two ViTs with a learned
    E_pos and different patch grids (paper §3.2, higher resolution)."""
    return (isinstance(old_cfg, ViTConfig) and isinstance(new_cfg, ViTConfig)
            and new_cfg.pos_embedding == "learned" and old_cfg.grid != new_cfg.grid)


def adapt_params(params, old_cfg, new_cfg, *, seed=0, reset_head=None) -> dict:
    """Parameters for ``new_cfg`` from the parameters ``params`` of ``old_cfg`` (paper §3.2).

    Parameters
    ----------
    params : dict name → array, exactly the parameters of ``old_cfg`` (checked)
    old_cfg, new_cfg : ViTConfig (or both CNNConfig)
        May differ in ``image_size`` (ViT: E_pos is interpolated over the new patch grid), ``num_classes``
        (a new head), and the fields of :data:`ARITHMETIC_FIELDS`; all other fields must be equal.
    seed : int
        Unused: the replaced head is zeros (the paper's zero-initialised head), which needs no random
        numbers.  Kept so that callers need not change if a random head is ever offered.
    reset_head : bool or None
        Replace ``head.W``/``head.b`` by new ones.  None (default): exactly when num_classes differs.
        Pass True when the classes change but their number does not (e.g. pre-training on classes 0–4,
        fine-tuning on 5–9).

    Returns
    -------
    dict name → new array of ``new_cfg.dtype``, with the names and shapes of the new config's parameter table
    (:func:`vitnp.config.param_shapes` or :func:`vitnp.cnn.cnn_param_shapes`).  Copied parameters are equal
    to the old ones bit for bit when the dtype is unchanged.

    Raises
    ------
    TypeError   a config of an unknown type, or configs of two different model kinds.
    ValueError  ``params`` do not fit ``old_cfg``; the configs differ in an architecture field (the message
                names the fields and both values); a parameter whose shape would have to change (named, with
                both shapes and the config fields behind them); ``reset_head=False`` with a new class count.
    """
    old_spec, new_spec = model_spec(old_cfg), model_spec(new_cfg)
    if old_spec.kind != new_spec.kind:
        raise TypeError(f"cannot adapt a {old_spec.kind.upper()} ({type(old_cfg).__name__}) to a "
                        f"{new_spec.kind.upper()} ({type(new_cfg).__name__})")
    differ = _architecture_differences(old_cfg, new_cfg)
    if differ:
        raise ValueError(f"cannot adapt the parameters: the configs differ in {'; '.join(differ)} "
                         f"(only image_size, num_classes and {', '.join(ARITHMETIC_FIELDS)} may change)")
    old_spec.check(dict(params), old_cfg)                     # names, shapes, dtype of the old model
    if reset_head is None:
        reset_head = old_cfg.num_classes != new_cfg.num_classes
    elif not reset_head and old_cfg.num_classes != new_cfg.num_classes:
        raise ValueError(f"reset_head=False, but the number of classes changes ({old_cfg.num_classes} -> "
                         f"{new_cfg.num_classes}), so the head cannot be kept")

    old_shapes, new_shapes = old_spec.shapes(old_cfg), new_spec.shapes(new_cfg)
    dtype = np.dtype(new_cfg.dtype)
    resize_pos = pos_table_changes(old_cfg, new_cfg)
    out = {}
    for name, shape in new_shapes.items():
        if reset_head and name in HEAD:
            out[name] = np.zeros(shape, dtype)                               # a new zero head: (D, K), (K,)
        elif name == "E_pos" and resize_pos:
            out[name] = resize_pos_table(params["E_pos"], old_cfg, new_cfg).astype(dtype)   # (T_new, D)
        elif name not in old_shapes:
            raise ValueError(f"cannot adapt: parameter {name!r} exists only in the new config")
        elif old_shapes[name] != shape:
            raise ValueError(f"cannot adapt parameter {name!r}: shape {old_shapes[name]} in the old config, "
                             f"{shape} in the new one ({_why(name, old_cfg, new_cfg)})")
        else:
            out[name] = np.array(params[name], dtype=dtype)                  # a copy, bit-identical
    dropped = [name for name in old_shapes if name not in new_shapes]
    if dropped:
        raise ValueError(f"cannot adapt: the new config has no parameter(s) {', '.join(dropped)}")
    return out


def _architecture_differences(old_cfg, new_cfg) -> list:
    """'field: old vs new' for every field that fixes the architecture (but num_classes) and differs."""
    return [f"{name}: {getattr(old_cfg, name)!r} (old) vs {getattr(new_cfg, name)!r} (new)"
            for name in shape_fields(old_cfg)
            if name != "num_classes" and getattr(old_cfg, name) != getattr(new_cfg, name)]


def _why(name, old_cfg, new_cfg) -> str:
    """The config fields behind a parameter's shape change, for the error message."""
    sizes = f"image_size {old_cfg.image_size} vs {new_cfg.image_size}"
    if name in HEAD:        # the CNN's head: its input width h·w·C_last follows the image size
        return (f"{sizes}: the CNN's dense head reads the whole last feature map, so its input width depends "
                f"on the image size; fine-tune at the old size, or with other classes, which get a new head "
                f"(--classes; in Python also adapt_params(..., reset_head=True))")
    return sizes


# ---- a training run's initial weights (init_from) ------------------------------------------------------
def load_init(path) -> dict:
    """The checkpoint a run starts from, read and validated (:func:`vitnp.training.rundir.load_checkpoint`) and hashed,
    once: {'path', 'md5', 'params', 'cfg', 'meta'}.  Errors say which option they concern (``init_from``)."""
    path = os.fspath(path)
    try:
        params, cfg, meta = load_checkpoint(path)
    except FileNotFoundError as err:
        raise FileNotFoundError(f"init_from: {err}") from None
    except ValueError as err:
        raise ValueError(f"init_from: {err}") from None
    with open(path, "rb") as f:
        digest = md5(f.read())
    return {"path": path, "md5": digest, "params": params, "cfg": cfg, "meta": meta}


def adapt_init(source, cfg, names, seed):
    """(params for ``cfg``, a JSON record of where they came from and what was adapted).

    ``source`` is :func:`load_init`'s dict.  The head is new (zeros) when the source's class names differ
    from this run's ``names`` (other classes, another order, or another number of them); E_pos is
    interpolated when the patch grid changes (:func:`adapt_params`).
    """
    old_cfg, meta = source["cfg"], source["meta"]
    new_head = meta["class_names"] != list(names)
    try:
        params = adapt_params(source["params"], old_cfg, cfg, seed=seed, reset_head=new_head)
    except (TypeError, ValueError) as err:
        raise ValueError(f"init_from {source['path']}: {err}") from None
    adapted = []
    if pos_table_changes(old_cfg, cfg):
        adapted.append("E_pos interpolated from the {}x{} to the {}x{} patch grid".format(*old_cfg.grid, *cfg.grid))
    if new_head:
        adapted.append(f"new zero head for {len(names)} classes")
    info = {"path": source["path"], "md5": source["md5"], "model": model_spec(old_cfg).kind,
            "config": old_cfg.to_dict(), "epoch": meta["epoch"], "step": meta["step"],
            "class_names": meta["class_names"], "classes": meta["data"].get("classes", []),
            "adapted": "; ".join(adapted) or "nothing (same shapes and classes)"}
    return params, info
