"""Checkpoints: the original ViT ``.npz`` layout, and safe ``.npz`` files for our own.

The google-research/vision_transformer checkpoints are flat ``.npz`` files whose keys are flax module
paths joined with '/'.  vitnp keeps one array per paper symbol instead (:func:`vitnp.config.param_shapes`).
:func:`to_jax` and :func:`from_jax` convert between the two; both directions only reshape, split and
concatenate, so a round trip is exact to the bit.  ``{i}`` is the block index ℓ−1, ``A`` abbreviates
``Transformer/encoderblock_{i}/MultiHeadDotProductAttention_1``.

==================================================  =============================  ===============  ============
original checkpoint key                             vitnp name                     original shape   vitnp shape
==================================================  =============================  ===============  ============
``embedding/kernel``                                ``E``                          (P, P, C, D)     (P²C, D)
``embedding/bias``                                  ``E_bias``                     (D,)             (D,)
``cls`` (‡)                                         ``x_class``                    (1, 1, D)        (D,)
``Transformer/posembed_input/pos_embedding`` (†)    ``E_pos``                      (1, T, D)        (T, D)
``…/encoderblock_{i}/LayerNorm_0/scale``, ``bias``  ``blocks.{i}.ln1.gamma/beta``  (D,)             (D,)
``A/query/kernel``, ``A/key/…``, ``A/value/…``      ``blocks.{i}.U_qkv``           3 × (D, k, D_h)  (D, 3D)
``A/query/bias``, ``A/key/bias``, ``A/value/bias``  ``blocks.{i}.U_qkv_bias``      3 × (k, D_h)     (3D,)
``A/out/kernel``                                    ``blocks.{i}.U_msa``           (k, D_h, D)      (D, D)
``A/out/bias``                                      ``blocks.{i}.U_msa_bias``      (D,)             (D,)
``…/encoderblock_{i}/LayerNorm_2/scale``, ``bias``  ``blocks.{i}.ln2.gamma/beta``  (D,)             (D,)
``…/encoderblock_{i}/MlpBlock_3/Dense_0/kernel``    ``blocks.{i}.mlp.W1``          (D, M)           (D, M)
``…/encoderblock_{i}/MlpBlock_3/Dense_0/bias``      ``blocks.{i}.mlp.b1``          (M,)             (M,)
``…/encoderblock_{i}/MlpBlock_3/Dense_1/kernel``    ``blocks.{i}.mlp.W2``          (M, D)           (M, D)
``…/encoderblock_{i}/MlpBlock_3/Dense_1/bias``      ``blocks.{i}.mlp.b2``          (D,)             (D,)
``Transformer/encoder_norm/scale``, ``bias``        ``ln_f.gamma/beta``            (D,)             (D,)
``head/kernel``, ``head/bias``                      ``head.W``, ``head.b``         (D, K), (K,)     (D, K), (K,)
==================================================  =============================  ===============  ============

(†) pos_embedding='learned' only; (‡) classifier='token' only.  Three facts make the reshapes exact:

* a patch is flattened in (row, col, channel) order, so ``E.reshape(P, P, C, D)`` is the conv kernel
  (height, width, in, out) of a P×P convolution with stride P;
* U_qkv's columns are [q | k | v], and inside each block of D columns head h owns columns
  h·D_h … (h+1)·D_h − 1, so the query block reshaped to (D, k, D_h) is flax's query kernel (Eq 5);
* U_msa's rows are head-major, as the concatenation [SA₁; …; SA_k] of Eq 8, so it reshapes to
  (k, D_h, D).

A hybrid config (``cfg.stem_channels``, paper §3.1) has no place in this layout: the original hybrid
checkpoints store a ResNet stem (``conv_root``, ``gn_root``, ``block{i}/…``) with group norms and
bottleneck units, which vitnp's small conv → ReLU → pool stem is not.  :func:`to_jax`, :func:`from_jax`,
:func:`jax_shapes` and :func:`save_original` refuse a hybrid config; keep hybrids in
:func:`vitnp.io.npz.save_npz` files (the training checkpoints of :mod:`vitnp.training.rundir` are such files).

The ``pre_logits`` layer of the ImageNet-21k pre-training files (a hidden tanh layer in the head) has no
vitnp counterpart; :func:`from_jax` refuses it with a message saying so.

The files themselves are read and written by :func:`vitnp.io.npz.load_npz` and :func:`vitnp.io.npz.save_npz`
(atomic, no pickle).  E_pos for a new patch grid (§3.2) is interpolated here too, as in the reference code,
with the bilinear matrices of :mod:`vitnp.data.resample`.
"""
from __future__ import annotations

import os
import re
from collections.abc import Mapping

import numpy as np

from ..config import ViTConfig, check_arrays, param_shapes, shape_fields
from .npz import load_npz, save_npz
from ..data.resample import resize_grid

__all__ = ["jax_shapes", "to_jax", "from_jax"]

_QKV = ("query", "key", "value")


# ---- the layout ------------------------------------------------------------------------------------
def _refuse_hybrid(cfg: ViTConfig, where: str) -> None:
    """A clear ValueError for a hybrid config, which the original layout cannot hold (module docstring)."""
    if isinstance(cfg, ViTConfig) and cfg.is_hybrid:
        raise ValueError(f"{where}: this config is a hybrid ViT (stem_channels={cfg.stem_channels}); the "
                         f"original checkpoint layout stores a ResNet stem (conv_root, block{{i}}/…) that vitnp "
                         f"does not model, so its conv stem has no keys there. Save hybrids with save_npz")


def _layout(cfg: ViTConfig) -> dict:
    """vitnp name → [(original key, original shape), …], in the order of :func:`param_shapes`.

    One original key: the two arrays hold the same values in the same C order (a reshape).
    Three keys (query, key, value): our last axis is their concatenation, each reshaped.
    """
    P, C, D, M, K = cfg.patch_size, cfg.in_channels, cfg.dim, cfg.mlp_dim, cfg.num_classes
    k, D_h, T = cfg.heads, cfg.head_dim, cfg.num_tokens
    layout = {"E": [("embedding/kernel", (P, P, C, D))], "E_bias": [("embedding/bias", (D,))]}
    if cfg.classifier == "token":
        layout["x_class"] = [("cls", (1, 1, D))]
    if cfg.pos_embedding == "learned":
        layout["E_pos"] = [("Transformer/posembed_input/pos_embedding", (1, T, D))]
    for i in range(cfg.depth):
        ours, blk = f"blocks.{i}.", f"Transformer/encoderblock_{i}/"
        attn = blk + "MultiHeadDotProductAttention_1/"
        layout.update({
            ours + "ln1.gamma": [(blk + "LayerNorm_0/scale", (D,))],
            ours + "ln1.beta": [(blk + "LayerNorm_0/bias", (D,))],
            ours + "U_qkv": [(f"{attn}{n}/kernel", (D, k, D_h)) for n in _QKV],
            ours + "U_qkv_bias": [(f"{attn}{n}/bias", (k, D_h)) for n in _QKV],
            ours + "U_msa": [(attn + "out/kernel", (k, D_h, D))],
            ours + "U_msa_bias": [(attn + "out/bias", (D,))],
            ours + "ln2.gamma": [(blk + "LayerNorm_2/scale", (D,))],
            ours + "ln2.beta": [(blk + "LayerNorm_2/bias", (D,))],
            ours + "mlp.W1": [(blk + "MlpBlock_3/Dense_0/kernel", (D, M))],
            ours + "mlp.b1": [(blk + "MlpBlock_3/Dense_0/bias", (M,))],
            ours + "mlp.W2": [(blk + "MlpBlock_3/Dense_1/kernel", (M, D))],
            ours + "mlp.b2": [(blk + "MlpBlock_3/Dense_1/bias", (D,))],
        })
    layout.update({
        "ln_f.gamma": [("Transformer/encoder_norm/scale", (D,))],
        "ln_f.beta": [("Transformer/encoder_norm/bias", (D,))],
        "head.W": [("head/kernel", (D, K))],
        "head.b": [("head/bias", (K,))],
    })
    ours = param_shapes(cfg)
    if list(layout) != list(ours):   # config.py grew or renamed a parameter this table does not know
        raise NotImplementedError(f"checkpoint layout and param_shapes disagree: "
                                  f"{sorted(set(layout) ^ set(ours))}")
    return layout


def jax_shapes(cfg: ViTConfig) -> dict:
    """Original checkpoint key → shape for ``cfg``: the keys :func:`to_jax` writes, :func:`from_jax` reads.

    Parameters
    ----------
    cfg : ViTConfig

    Returns
    -------
    dict[str, tuple]
        E.g. ViT-B/16 has 200 keys, among them ``embedding/kernel`` (16, 16, 3, 768).

    Raises
    ------
    ValueError
        For a hybrid config (the layout has no keys for vitnp's conv stem).
    """
    _refuse_hybrid(cfg, "jax_shapes")
    return {key: shape for targets in _layout(cfg).values() for key, shape in targets}


# ---- conversion ------------------------------------------------------------------------------------
def to_jax(params: Mapping, cfg: ViTConfig) -> dict:
    """vitnp parameters → the flat '/'-keyed layout of the original checkpoints (module docstring table).

    Parameters
    ----------
    params : mapping of str to ndarray
        Exactly the names and shapes of ``param_shapes(cfg)``.
    cfg : ViTConfig

    Returns
    -------
    dict[str, ndarray]
        Keys and shapes of :func:`jax_shapes`; C-contiguous copies with the input dtypes.

    Raises
    ------
    ValueError
        If names are unknown or missing or shapes differ; the message lists every offending name.
        For a hybrid config (the layout has no keys for vitnp's conv stem).
    """
    _refuse_hybrid(cfg, "to_jax")
    layout = _layout(cfg)
    params = _validated(params, param_shapes(cfg), "to_jax", cfg)
    flat = {}
    for name, targets in layout.items():
        # U_qkv (D, 3D) -> [q | k | v], three (D, D); U_qkv_bias (3D,) -> three (D,); else the whole array
        parts = np.split(params[name], len(targets), axis=-1)
        for (key, shape), part in zip(targets, parts):
            flat[key] = part.reshape(shape).copy(order="C")   # e.g. (D, D) -> (D, k, D_h)
    return flat


def from_jax(flat: Mapping, cfg: ViTConfig) -> dict:
    """The flat '/'-keyed arrays of an original checkpoint → vitnp parameters (module docstring table).

    Parameters
    ----------
    flat : mapping of str to ndarray
        Exactly the keys and shapes of ``jax_shapes(cfg)``, e.g. ``load_npz('ViT-B_16.npz')``.
    cfg : ViTConfig

    Returns
    -------
    dict[str, ndarray]
        Names and shapes of ``param_shapes(cfg)``; C-contiguous copies with the input dtypes.

    Raises
    ------
    ValueError
        If keys are unknown (``pre_logits/*`` gets its own explanation) or missing, shapes differ, or
        query/key/value arrays that fuse into one U_qkv have different dtypes; a hybrid config.
    """
    _refuse_hybrid(cfg, "from_jax")
    layout = _layout(cfg)
    flat = _validated(flat, jax_shapes(cfg), "from_jax", cfg)
    ours = param_shapes(cfg)
    params = {}
    for name, sources in layout.items():
        keys = [key for key, _ in sources]
        dtypes = sorted({str(flat[key].dtype) for key in keys})
        if len(dtypes) > 1:
            raise ValueError(f"from_jax: {', '.join(keys)} have dtypes {', '.join(dtypes)}; "
                             f"they are fused into {name!r}, which has one dtype")
        lead = ours[name][:-1]
        parts = [flat[key].reshape(lead + (-1,)) for key in keys]   # e.g. (D, k, D_h) -> (D, D)
        params[name] = np.concatenate(parts, axis=-1) if len(parts) > 1 else parts[0].copy(order="C")
    return params


def _validated(arrays, expected: dict, where: str, cfg: ViTConfig) -> dict:
    """``arrays`` as a dict of ndarrays, or a ValueError listing every unknown, missing, mis-shaped key."""
    if not isinstance(arrays, Mapping):
        raise TypeError(f"{where}: expected a mapping of name -> array, got {type(arrays).__name__}")
    got = {key: np.asarray(value) for key, value in arrays.items()}
    problems = []
    for key in got:
        if key not in expected:
            problems.append(f"unknown key {key!r} with shape {got[key].shape}{_hint(key, cfg)}")
    for key, shape in expected.items():
        if key not in got:
            problems.append(f"missing key {key!r}: expected shape {shape}")
        elif got[key].shape != shape:
            problems.append(f"wrong shape for {key!r}: expected {shape}, got {got[key].shape}")
    if problems:
        summary = (f"D={cfg.dim}, k={cfg.heads}, L={cfg.depth}, M={cfg.mlp_dim}, K={cfg.num_classes}, "
                   f"P={cfg.patch_size}, C={cfg.in_channels}, T={cfg.num_tokens}, "
                   f"classifier={cfg.classifier!r}, pos_embedding={cfg.pos_embedding!r}")
        raise ValueError(f"{where}: {len(problems)} problem(s) against the config ({summary}):\n  "
                         + "\n  ".join(problems))
    return got


def _hint(key, cfg: ViTConfig) -> str:
    """Why an unknown key may be there, for the error message ('' when there is nothing to add)."""
    key = str(key)
    if key.startswith("pre_logits/"):
        return (": the pre-logits layer (the hidden tanh layer of the pre-training head) is not part of "
                "this config, whose head is one linear layer; drop the pre_logits/* keys to fine-tune")
    if key in ("cls", "x_class"):
        return f": a class token, but this config has classifier={cfg.classifier!r}"
    if key in ("E_pos", "Transformer/posembed_input/pos_embedding"):
        return f": a learned position embedding, but this config has pos_embedding={cfg.pos_embedding!r}"
    block = re.match(r"(?:blocks\.|Transformer/encoderblock_)(\d+)[./]", key)
    if block and int(block.group(1)) >= cfg.depth:
        return f": block {block.group(1)}, but this config has depth L={cfg.depth}"
    return ""


# ---- higher-resolution fine-tuning: resizing E_pos ----------------------------------------------------
__all__ += ["resize_pos_table", "resize_pos_embedding", "load_original", "save_original"]


def resize_pos_table(E_pos, old_cfg: ViTConfig, new_cfg: ViTConfig) -> np.ndarray:
    """E_pos (T_old, D) of ``old_cfg`` interpolated in 2-D to the patch grid of ``new_cfg`` (paper §3.2).

    The class token's row (classifier 'token') is kept; the N patch rows are laid out on ``old_cfg.grid``,
    row-major, and resized bilinearly and corner-aligned (:func:`vitnp.data.resample.resize_grid`) to
    ``new_cfg.grid``.  Only the grids, ``dim`` and ``classifier`` are read: :func:`resize_pos_embedding`
    checks the rest.

    E_pos : (T_old, D)   ->   (T_new, D) float64
    """
    n_cls = 1 if old_cfg.classifier == "token" else 0
    table = np.asarray(E_pos, dtype=np.float64)                       # (T_old, D)
    if table.shape != (old_cfg.num_tokens, old_cfg.dim) or new_cfg.dim != old_cfg.dim or \
            new_cfg.classifier != old_cfg.classifier:
        raise ValueError(f"resize_pos_table: E_pos has shape {table.shape}; the old config needs "
                         f"({old_cfg.num_tokens}, {old_cfg.dim}), and both configs the same dim and classifier")
    grid = table[n_cls:].reshape(*old_cfg.grid, old_cfg.dim)          # (h_old, w_old, D), row-major patches
    new_grid = resize_grid(grid, new_cfg.grid, align_corners=True)    # (h_new, w_new, D)
    return np.concatenate([table[:n_cls], new_grid.reshape(-1, new_cfg.dim)])   # (T_new, D)


def resize_pos_embedding(params: Mapping, old_cfg: ViTConfig, new_cfg: ViTConfig) -> dict:
    """Parameters for fine-tuning at another resolution: E_pos interpolated in 2-D over the patch grid.

    The patch size stays, so a larger image has more patches (N grows) and E_pos needs more rows (paper
    §3.2).  As in the reference code, the class token's row is kept as it is; the N patch rows are laid
    out on the old patch grid ``old_cfg.grid`` — (H/P, W/P), or the feature map's (h/P, w/P) for a
    hybrid — and resized bilinearly, corner-aligned (the first and last rows and
    columns of the grid map onto themselves), to the new grid.  Each of the D columns is resized
    independently.  The arithmetic is done in float64, the result has ``new_cfg.dtype``.

    Parameters
    ----------
    params : parameters of ``old_cfg`` (names, shapes, dtype of ``param_shapes(old_cfg)``)
    old_cfg, new_cfg : ViTConfig
        Must agree on every field that fixes a parameter shape except the image size (patch_size,
        in_channels, num_classes, dim, depth, heads, mlp_dim, classifier, pos_embedding and the hybrid
        stem's stem_channels, stem_kernel, stem_pool); replace the head separately if the number of
        classes changes.

    Returns
    -------
    dict
        New arrays (copies, cast to ``new_cfg.dtype``) with the names and shapes of
        ``param_shapes(new_cfg)``.  With pos_embedding 'sincos' or 'none' there is nothing to resize
        (the fixed table is recomputed for any grid) and the copies are returned unchanged.
    """
    if not isinstance(old_cfg, ViTConfig) or not isinstance(new_cfg, ViTConfig):
        raise TypeError("resize_pos_embedding(params, old_cfg, new_cfg): both configs must be ViTConfig")
    differ = [f"{f}: {getattr(old_cfg, f)!r} vs {getattr(new_cfg, f)!r}" for f in shape_fields(ViTConfig)
              if getattr(old_cfg, f) != getattr(new_cfg, f)]
    if differ:
        raise ValueError("resize_pos_embedding: the configs may differ only in image size (and in fields "
                         "that do not change parameter shapes); they differ in " + "; ".join(differ))
    check_arrays(dict(params), param_shapes(old_cfg), old_cfg.np_dtype)
    dtype = new_cfg.np_dtype
    out = {name: np.array(value, dtype=dtype) for name, value in params.items()}   # copies
    if old_cfg.pos_embedding != "learned":
        return out
    out["E_pos"] = resize_pos_table(params["E_pos"], old_cfg, new_cfg).astype(dtype)   # (T_new, D)
    return out


# ---- original checkpoint files ------------------------------------------------------------------------
_POS_KEY = "Transformer/posembed_input/pos_embedding"
_ATTN0 = "Transformer/encoderblock_0/MultiHeadDotProductAttention_1/"


def load_original(path, *, image_size=None, gelu="tanh", dtype=None, drop_pre_logits=False):
    """Read a google-research/vision_transformer ``.npz`` checkpoint; the config comes from the shapes.

    Inferred from the arrays:

    * P, C, D from ``embedding/kernel`` (P, P, C, D);
    * k and D_h from ``…/encoderblock_0/MultiHeadDotProductAttention_1/query/kernel`` (D, k, D_h);
    * L from the number of ``Transformer/encoderblock_{i}`` (they must be numbered 0 … L−1);
    * M from ``…/MlpBlock_3/Dense_0/kernel`` (D, M), K from ``head/kernel`` (D, K);
    * classifier 'token' if ``cls`` is present, else 'gap';
    * pos_embedding 'learned' if ``Transformer/posembed_input/pos_embedding`` (1, T, D) is present, else
      'none'; its T − 1 (token) or T (gap) patches give the grid, assumed square unless ``image_size`` says
      otherwise (needed, too, when there is no position embedding);
    * dtype: that of the arrays (float32 in the published files) unless ``dtype`` is given.

    Not stored in the file, so set by arguments: ``gelu`` defaults to 'tanh' because the original JAX
    code uses flax's tanh approximation (pass 'exact' for a model trained with x·Φ(x)); LayerNorm ε is
    the config default 1e-6, the reference value.

    The ImageNet-21k pre-training files have a ``pre_logits`` layer (a dense + tanh "representation"
    layer before the head) that vitnp's ViT does not have.  Such files are refused with an error that
    says so, unless ``drop_pre_logits=True``: then the layer is discarded and ``head/*`` kept, which is
    what fine-tuning needs (the head is replaced anyway) — but the logits are then *not* the original
    model's, since the head was trained on tanh(y W_pre + b_pre).

    Parameters
    ----------
    path : str or os.PathLike, an .npz file
    image_size : int or (H, W), optional
    gelu : 'tanh' | 'exact'
    dtype : 'float32' | 'float64', optional; the arrays are cast to it
    drop_pre_logits : bool

    Returns
    -------
    params : dict, names and shapes of ``param_shapes(cfg)``, ready for :func:`vitnp.vit_forward`
    cfg : ViTConfig

    Raises
    ------
    FileNotFoundError, ValueError
        A missing file; not an .npz; a pickled (object) array; missing or unknown keys; shapes that do not
        fit together; a hybrid (ResNet + ViT) checkpoint; a pre_logits layer (see above).  Each message
        starts with ``load_original: <path>`` and names the key or the shape at fault.
    """
    where = f"load_original: {os.fspath(path)!r}"
    try:
        flat = load_npz(path)
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from None

    hybrid = sorted(k for k in flat if k.split("/")[0] in ("conv_root", "gn_root") or re.match(r"block\d+/", k))
    if hybrid:
        raise ValueError(f"{where}: this is a hybrid (ResNet + ViT) checkpoint ({hybrid[0]!r} and "
                         f"{len(hybrid) - 1} more ResNet keys); vitnp can only load the pure ViT")
    pre = sorted(k for k in flat if k.startswith("pre_logits/"))
    if pre and not drop_pre_logits:
        raise ValueError(f"{where}: the checkpoint has a pre-logits layer ({', '.join(pre)}): a dense + tanh "
                         f"representation layer between y and the head, used in ImageNet-21k pre-training. "
                         f"vitnp's ViT has no such layer, so it cannot run this model as it is; pass "
                         f"drop_pre_logits=True to discard it (and fine-tune a new head)")
    for key in pre:
        del flat[key]

    def array(key, ndim, meaning):
        if key not in flat:
            raise ValueError(f"{where}: missing key {key!r}, needed for {meaning}")
        a = flat[key]
        if a.ndim != ndim:
            raise ValueError(f"{where}: {key!r} should be {ndim}-D ({meaning}), got shape {a.shape}")
        return a

    E = array("embedding/kernel", 4, "P, C and D: shape (P, P, C, D)")
    P, _, C, D = E.shape
    if E.shape[0] != E.shape[1]:
        raise ValueError(f"{where}: 'embedding/kernel' has shape {E.shape}; a square P×P patch kernel "
                         f"(P, P, C, D) is needed")
    blocks = sorted({int(m.group(1)) for k in flat if (m := re.match(r"Transformer/encoderblock_(\d+)/", k))})
    if not blocks:
        raise ValueError(f"{where}: no 'Transformer/encoderblock_{{i}}/…' keys: the encoder is missing")
    if blocks != list(range(len(blocks))):
        missing = sorted(set(range(blocks[-1] + 1)) - set(blocks))
        raise ValueError(f"{where}: encoder blocks must be numbered 0 … L−1; encoderblock_"
                         f"{', encoderblock_'.join(map(str, missing))} missing (found {len(blocks)} blocks)")
    q = array(_ATTN0 + "query/kernel", 3, "the heads k and D_h: shape (D, k, D_h)")
    heads, head_dim = q.shape[1], q.shape[2]
    if q.shape[0] != D or heads * head_dim != D:
        raise ValueError(f"{where}: {_ATTN0 + 'query/kernel'!r} has shape {q.shape}; with D={D} (from "
                         f"'embedding/kernel') it must be (D, k, D_h) with k·D_h = D")
    mlp_key = "Transformer/encoderblock_0/MlpBlock_3/Dense_0/kernel"
    mlp_dim = array(mlp_key, 2, "the MLP width M: shape (D, M)").shape[1]
    head = array("head/kernel", 2, "the number of classes K: shape (D, K)")
    if head.shape[0] != D:
        extra = " (the pre-logits layer was dropped, but the head reads its output)" if pre else ""
        raise ValueError(f"{where}: 'head/kernel' has shape {head.shape}; it must be (D={D}, K){extra}")
    classifier = "token" if "cls" in flat else "gap"

    if _POS_KEY in flat:
        pos = array(_POS_KEY, 3, "E_pos: shape (1, T, D)")
        n_patches = pos.shape[1] - (classifier == "token")
        if n_patches < 1:
            raise ValueError(f"{where}: {_POS_KEY!r} has shape {pos.shape}: no rows for the patches")
        if image_size is None:
            side = int(round(n_patches ** 0.5))
            if side * side != n_patches:
                raise ValueError(f"{where}: E_pos has {n_patches} patch rows, not a square grid; pass "
                                 f"image_size=(H, W) to say how they are laid out")
            image_size = side * P
    elif image_size is None:
        raise ValueError(f"{where}: the checkpoint has no position embedding, so the image size cannot be "
                         f"inferred; pass image_size=")

    if dtype is None:
        dtypes = sorted({str(a.dtype) for a in flat.values()})
        if len(dtypes) != 1 or dtypes[0] not in ("float32", "float64"):
            raise ValueError(f"{where}: arrays have dtype(s) {', '.join(dtypes)}; pass dtype='float32' or "
                             f"'float64' to convert them")
        dtype = dtypes[0]
    try:
        cfg = ViTConfig(image_size=image_size, patch_size=P, in_channels=C, num_classes=head.shape[1],
                        dim=D, depth=len(blocks), heads=heads, mlp_dim=mlp_dim, classifier=classifier,
                        pos_embedding="learned" if _POS_KEY in flat else "none", gelu=gelu, dtype=dtype)
        params = from_jax(flat, cfg)   # checks every key and shape against the inferred config
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from None
    if not all(np.issubdtype(a.dtype, np.floating) for a in params.values()):
        bad = sorted(k for k, a in params.items() if not np.issubdtype(a.dtype, np.floating))
        raise ValueError(f"{where}: non-float arrays: {', '.join(bad)}")
    return {k: v.astype(cfg.np_dtype, copy=False) for k, v in params.items()}, cfg


def save_original(path, params: Mapping, cfg: ViTConfig) -> None:
    """Write ``params`` as an original-layout ``.npz`` (module docstring table), atomically, no pickle.

    :func:`load_original` reads it back to the same arrays and the same shape fields of the config.
    The file stores arrays only: gelu, ln_eps and dropout are not in it (the original checkpoints'
    defaults are gelu='tanh', ε = 1e-6).  A model with the fixed 'sincos' table is refused, because the
    layout has no key for it and the file would load as a model without position embedding.  A hybrid
    is refused too: the original layout's stem is a ResNet, which vitnp does not model.
    """
    if not isinstance(cfg, ViTConfig):
        raise TypeError(f"save_original(path, params, cfg): cfg must be a ViTConfig, got {type(cfg).__name__}")
    _refuse_hybrid(cfg, "save_original")
    if cfg.pos_embedding == "sincos":
        raise ValueError("save_original: the original layout has no fixed sine-cosine position table; the "
                         "file would load as pos_embedding='none'. Save it with save_npz instead")
    save_npz(path, to_jax(params, cfg))
