"""The Vision Transformer, Eq 1–4 of the paper, built from the ops in :mod:`vitnp.ops`.

    z₀ = [x_class; x_p¹E; …; x_pᴺE] + E_pos          (Eq 1)    embed_forward
    z′_ℓ = MSA(LN(z_{ℓ−1})) + z_{ℓ−1}                 (Eq 2)    encoder_forward (vitnp.ops.block)
    z_ℓ = MLP(LN(z′_ℓ)) + z′_ℓ                        (Eq 3)
    y = LN(z_L⁰),   logits = y W_head + b_head          (Eq 4)    head_forward

This is the reference model: one pass over the whole batch, the clearest ops, no threads.  The same
model, with the same inputs, outputs and cache contract, runs faster as :func:`vitnp.fast.vit_forward`.

Hybrid ViT (paper §3.1 "Hybrid Architecture"), when ``cfg.stem_channels`` is set: the patches x_p of Eq 1
are cut from a CNN feature map instead of the raw image.  The stem is conv ('same') → ReLU → max-pool per
stage (:func:`vitnp.ops.conv.conv_stack_forward`), (B, H, W, C) -> (B, h, w, C_f), and P is then measured on
that map; the paper's hybrids use P = 1, so every feature-map pixel is one token.  From E on nothing
changes; the backward continues below E into the stem.

Parameters are a flat ``dict[str, np.ndarray]``; :func:`vitnp.config.param_shapes` lists the names,
shapes and the matching keys of the original checkpoints.
"""
from __future__ import annotations

import numpy as np

from .config import ViTConfig, check_arrays, param_shapes
from .ops.block import BLOCK_KEYS, encoder_backward, encoder_forward
from .ops.conv import conv_stack_backward, conv_stack_forward, he_normal
from .ops.dropout import dropout_backward, dropout_forward
from .ops.layernorm import layernorm_backward, layernorm_forward
from .ops.linear import linear_backward, linear_forward
from .ops.patches import patchify_backward, patchify_forward
from .ops.posemb import pos_embed_backward, pos_embed_forward, sincos_2d
from .ops.tokens import class_token_backward, class_token_forward, readout_backward, readout_forward


def vit_forward(params, x, cfg: ViTConfig, *, train=False, rng=None, attn_mask=None):
    """Logits of a batch of images, Eq 1–4.

    Parameters
    ----------
    params : dict from :func:`init_params` (names and shapes: :func:`vitnp.config.param_shapes`)
    x : (B, H, W, C) float images
    cfg : ViTConfig
    train : bool, turns dropout on (needs ``rng``)
    rng : np.random.Generator or int seed, for dropout
    attn_mask : optional bool array broadcastable to (T, T); True = may attend (not used by ViT itself)

    Returns
    -------
    logits : (B, K)
    cache : dict for :func:`vit_backward`, with the keys it reads: ``'cfg'`` (cfg), ``'embed'`` (embed_forward's
        cache), ``'attention'`` (the L (B, k, T, T) weights), ``'blocks'`` (encoder_forward's list of block caches),
        ``'head'`` (head_forward's cache)
    """
    x, rng, attn_mask = check_inputs(params, x, cfg, train, rng, attn_mask)
    ### BEGIN SOLUTION
    c = {"cfg": cfg}
    z, c["embed"] = embed_forward(params, x, cfg, train=train, rng=rng)              # Eq 1: z₀ (B, T, D)
    z, c["attention"], c["blocks"] = encoder_forward(                                 # Eq 2–3, ℓ = 1 … L
        z, block_params(params, cfg), cfg.heads, gelu=cfg.gelu, eps=cfg.ln_eps, dropout=cfg.dropout,
        attention_dropout=cfg.attention_dropout, mask=attn_mask, rng=rng, train=train)
    logits, c["head"] = head_forward(params, z, cfg)                                  # Eq 4: (B, K)
    return logits, c
    ### END SOLUTION


def vit_predict(params, x, cfg: ViTConfig, *, attn_mask=None):
    """Logits (B, K) of a batch of images with dropout off: ``vit_forward(params, x, cfg)[0]``.

    What evaluation and prediction call.  Here it is the forward pass with its cache thrown away; the fast
    path's :func:`vitnp.fast.model.vit_predict` keeps no cache in the first place.
    """
    return vit_forward(params, x, cfg, attn_mask=attn_mask)[0]


def vit_backward(dlogits, cache, *, input_grad=False):
    """Gradients of every parameter from ∂loss/∂logits (B, K); same keys and shapes as the params.

    With ``input_grad=True`` returns ``(grads, dx)``, dx (B, H, W, C) the gradient with respect to the
    images (through the hybrid stem, if any).
    """
    cfg = cache["cfg"]
    g = {}
    dz = head_backward(dlogits, cache["head"], g)                                    # Eq 4
    dz, block_grads = encoder_backward(dz, cache["blocks"])                           # Eq 3, 2 for ℓ = L … 1
    for l, bg in enumerate(block_grads):
        g.update({f"blocks.{l}.{k}": v for k, v in bg.items()})
    dx = embed_backward(dz, cache["embed"], g, input_grad=input_grad)                 # Eq 1
    grads = {k: g[k] for k in param_shapes(cfg)}
    return (grads, dx) if input_grad else grads


# ---- Eq 1: from pixels to z₀ -----------------------------------------------------------------------
def embed_forward(params, x, cfg: ViTConfig, *, train=False, rng=None):
    """z₀ = [x_class; x_p¹E; …; x_pᴺE] + E_pos (Eq 1), then dropout.

    x: (B, H, W, C)   ->   z₀: (B, T, D), cache

    cache: a dict with the keys embed_backward reads: ``'cfg'``; ``'stem'`` (conv_stack_forward's cache, hybrid
    only); ``'patch'`` (patchify_forward's); ``'E'`` (linear_forward's, for x_p E); ``'cls'`` (class_token_forward's,
    classifier 'token' only); ``'pos'`` (pos_embed_forward's, pos_embedding 'learned' only); ``'drop'``
    (dropout_forward's).  The sine-cosine table (pos_embedding 'sincos') is added as it is, with no cache.
    """
    ### BEGIN SOLUTION
    c = {"cfg": cfg}
    if cfg.is_hybrid:                                                     # §3.1 hybrid: patches of a CNN map
        x, c["stem"] = conv_stack_forward(x, stem_layers(params, cfg), pool=cfg.stem_pool)   # (B, h, w, C_f)
    x_p, c["patch"] = patchify_forward(x, cfg.patch_size)                 # (B, N, P²C)
    z, c["E"] = linear_forward(x_p, params["E"], params["E_bias"])        # x_p E: (B, N, D)
    if cfg.classifier == "token":
        z, c["cls"] = class_token_forward(z, params["x_class"])          # [x_class; x_p E]: (B, N+1, D)
    if cfg.pos_embedding == "learned":
        z, c["pos"] = pos_embed_forward(z, params["E_pos"])               # z₀ = … + E_pos
    elif cfg.pos_embedding == "sincos":
        z = z + sincos_2d(cfg)                                           # … + a fixed table
    z, c["drop"] = dropout_forward(z, cfg.dropout, rng, train)
    return z, c
    ### END SOLUTION


def embed_backward(dz, cache, grads, *, input_grad=False):
    """Backward of :func:`embed_forward`: puts dE, dE_bias, dx_class, dE_pos (and the stem's) in ``grads``;
    returns dx (B, H, W, C) when ``input_grad`` (or None)."""
    cfg = cache["cfg"]
    dz = dropout_backward(dz, cache["drop"])
    if cfg.pos_embedding == "learned":
        dz, grads["E_pos"] = pos_embed_backward(dz, cache["pos"])          # z₀ = z + E_pos
    if cfg.classifier == "token":
        dz, grads["x_class"] = class_token_backward(dz, cache["cls"])      # z = [x_class; x_p E]
    dx_p, grads["E"], grads["E_bias"] = linear_backward(dz, cache["E"])     # x_p E: dx_p (B, N, P²C)
    if not (cfg.is_hybrid or input_grad):
        return None
    dx = patchify_backward(dx_p, cache["patch"])                           # (B, h, w, C_f)
    if cfg.is_hybrid:
        dx, stem_grads = conv_stack_backward(dx, cache["stem"])             # (B, H, W, C)
        for i, (dW, db) in enumerate(stem_grads):
            grads[f"stem.{i}.W"], grads[f"stem.{i}.b"] = dW, db
    return dx


# ---- Eq 4 and the head -----------------------------------------------------------------------------
def head_forward(params, z, cfg: ViTConfig):
    """y = LN(z_L⁰) (Eq 4; the mean over tokens for 'gap'), logits = y W_head + b_head.

    z: (B, T, D)   ->   logits: (B, K), cache

    cache = (c_ln, c_read, c_lin): the caches of the final LayerNorm (over every token), readout_forward and the
    head's linear_forward, what head_backward reads.
    """
    ### BEGIN SOLUTION
    z, c_ln = layernorm_forward(z, params["ln_f.gamma"], params["ln_f.beta"], cfg.ln_eps)
    y, c_read = readout_forward(z, cfg.classifier)                        # (B, D)
    logits, c_lin = linear_forward(y, params["head.W"], params["head.b"])  # (B, K)
    return logits, (c_ln, c_read, c_lin)
    ### END SOLUTION


def head_backward(dlogits, cache, grads):
    """Backward of :func:`head_forward`: puts the head's and ln_f's gradients in ``grads``; returns dz_L."""
    c_ln, c_read, c_lin = cache
    dy, grads["head.W"], grads["head.b"] = linear_backward(dlogits, c_lin)   # logits = y W + b
    dz = readout_backward(dy, c_read)                                        # y = z_L⁰
    dz, grads["ln_f.gamma"], grads["ln_f.beta"] = layernorm_backward(dz, c_ln)
    return dz


def block_params(params, cfg: ViTConfig) -> list:
    """The L blocks' parameters as dicts keyed by :data:`vitnp.ops.block.BLOCK_KEYS`."""
    return [{k: params[f"blocks.{l}.{k}"] for k in BLOCK_KEYS} for l in range(cfg.depth)]


def stem_layers(params, cfg: ViTConfig) -> list:
    """[(W_i, b_i)] of the hybrid stem, in order; [] for a plain ViT."""
    return [(params[f"stem.{i}.W"], params[f"stem.{i}.b"]) for i in range(len(cfg.stem_channels))]


# ---- checks at the API boundary --------------------------------------------------------------------
def check_inputs(params, x, cfg: ViTConfig, train=False, rng=None, attn_mask=None):
    """Validate the arguments of a forward pass; returns (x, rng, attn_mask) ready to use.

    x becomes a C-contiguous array of ``cfg.dtype``; an int ``rng`` becomes a Generator.  Every problem
    is a TypeError/ValueError that names it (shape, dtype, NaN, a missing parameter …).
    """
    check_params(params, cfg)
    x = check_images(x, cfg)
    if train and (cfg.dropout > 0 or cfg.attention_dropout > 0) and rng is None:
        raise ValueError("training with dropout needs rng (a np.random.Generator or an int seed)")
    rng = np.random.default_rng(rng) if isinstance(rng, (int, np.integer)) else rng
    T = cfg.num_tokens
    if attn_mask is not None:
        attn_mask = np.asarray(attn_mask)
        if attn_mask.dtype != bool or attn_mask.ndim < 2 or attn_mask.shape[-2:] != (T, T):
            raise ValueError(f"attn_mask must be a bool array of shape (..., {T}, {T}), "
                             f"got {attn_mask.dtype} {attn_mask.shape}")
    return x, rng, attn_mask


def check_params(params, cfg: ViTConfig):
    """Raise a clear error unless ``params`` has exactly the config's names, shapes and dtype."""
    check_arrays(params, param_shapes(cfg), cfg.np_dtype)


def check_images(x, cfg: ViTConfig):
    """Validate a batch of images for ``cfg``; returns it as a C-contiguous array of ``cfg.dtype``."""
    if not isinstance(x, np.ndarray):
        raise TypeError(f"x must be a numpy array of shape (B, H, W, C), got {type(x).__name__}")
    H, W = cfg.hw
    want = f"(B, {H}, {W}, {cfg.in_channels})"
    if x.ndim != 4:
        hint = " (add a batch axis: x[None])" if x.ndim == 3 else ""
        raise ValueError(f"x must have shape {want} (batch, height, width, channels), got {x.shape}{hint}")
    if x.shape[1:] != (H, W, cfg.in_channels):
        raise ValueError(f"x has shape {x.shape}, the config needs {want}")
    if x.shape[0] == 0:
        raise ValueError("x is an empty batch")
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(f"x must be a float array, got dtype {x.dtype} (convert and normalise images first, "
                        f"e.g. vitnp.data.normalize)")
    if not np.isfinite(x).all():
        raise ValueError("x contains NaN or Inf")
    return np.ascontiguousarray(x, dtype=cfg.np_dtype)


# ---- initialisation ------------------------------------------------------------------------------
def _truncated_normal(rng, shape, std):
    """Normal(0, std²) cut at ±2 std, rescaled so the result has standard deviation ``std``."""
    x = rng.standard_normal(shape)
    bad = np.abs(x) > 2.0
    while bad.any():                                  # redraw the tail, ~5% at a time
        x[bad] = rng.standard_normal(int(bad.sum()))
        bad = np.abs(x) > 2.0
    return x * (std / 0.87962566103423978)            # std of N(0,1) truncated at ±2


def _xavier_uniform(rng, fan_in, fan_out, shape):
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, shape)


def init_params(cfg: ViTConfig, seed: int = 0) -> dict:
    """Parameters initialised as the original google-research/vision_transformer code does.

    - hybrid stem kernels ``stem.{i}.W``: He normal, std √(2/fan_in) with fan_in = k²·C_{i-1}, as
      :func:`vitnp.cnn.init_cnn_params` (the right scale before a ReLU); stem biases 0;
    - E: LeCun normal (truncated normal, variance 1/fan_in with fan_in = P²C = ``cfg.patch_dim``, C the
      feature map's channels for a hybrid), E_bias = 0;
    - x_class = 0; E_pos ~ Normal(0, 0.02²);
    - query, key, value and out kernels: Xavier uniform, each computed on its own (D, D) matrix,
      so U_qkv is three Xavier blocks side by side; their biases 0;
    - MLP kernels: Xavier uniform; MLP biases ~ Normal(0, 1e-6²);
    - LayerNorm γ = 1, β = 0;
    - head kernel and bias = 0 (the paper's zero-initialised classifier).

    Returns a dict name -> array of ``cfg.dtype``, shapes as :func:`vitnp.config.param_shapes`.
    """
    rng = np.random.default_rng(seed)
    D = cfg.dim
    p = {}
    for name, shape in param_shapes(cfg).items():
        leaf = name.rsplit(".", 1)[-1]
        if name.startswith("stem.") and leaf == "W":
            p[name] = he_normal(rng, shape)                           # fan_in = k²·C_{i-1}
        elif name == "E":
            p[name] = _truncated_normal(rng, shape, np.sqrt(1.0 / cfg.patch_dim))
        elif name == "E_pos":
            p[name] = rng.normal(0.0, 0.02, shape)
        elif leaf == "U_qkv":
            p[name] = np.concatenate([_xavier_uniform(rng, D, D, (D, D)) for _ in range(3)], axis=1)
        elif leaf == "U_msa":
            p[name] = _xavier_uniform(rng, D, D, shape)
        elif leaf in ("W1", "W2"):
            p[name] = _xavier_uniform(rng, *shape, shape)
        elif leaf in ("b1", "b2"):
            p[name] = rng.normal(0.0, 1e-6, shape)
        elif leaf == "gamma":
            p[name] = np.ones(shape)
        else:                                         # stem and E biases, x_class, attention biases, β, head
            p[name] = np.zeros(shape)
    return {k: v.astype(cfg.np_dtype) for k, v in p.items()}
