"""A ViT pre-trained without labels: masked patch prediction (paper §4.6, Appendix B.1.2).

BERT learns language by filling in masked words; the paper tries the same for images.  Half of the patches of an
image are corrupted (:mod:`vitnp.ops.masking`: 80 % of those replaced by a learnable [mask] embedding, 10 % by
another patch, 10 % kept), the ViT body runs as usual (Eq 1–3), and a small head predicts, from each corrupted
patch's own output token, a coarse summary of the original patch: its mean colour in the paper, its mean intensity
in 8 bins here.  Afterwards the head is dropped and the body fine-tuned with a new classification head, as after
supervised pre-training.  The paper's ViT-B/16 reaches 79.9 % on ImageNet this way, 2 points above training from
scratch and 4 below supervised pre-training (§4.6).

The model, for a batch of normalised images x and a plan of :func:`vitnp.ops.masking.corruption_plan`:

    x_p = flatten(x); x̃_p = corrupt(x_p)                 the corrupted patches (data: no gradient)
    z₀ = Eq 1 of x̃_p, + δ on the masked tokens           (:func:`vitnp.model.embed_forward`, mask_embed_forward)
    z_L = the L blocks of Eq 2–3
    h = LN(z_L) on the corrupted patches' tokens          (the model's final LayerNorm, γ and β of Eq 4)
    logits = h W_mpp + b_mpp                               (n_corrupted, bins)

Its parameters are the ViT's (its head is not used) plus :data:`MPP_KEYS`.  Dropout is not supported here (the
pre-training runs of the paper's Table 3 on JFT use none).
"""
from __future__ import annotations

import numpy as np

from .config import ViTConfig
from .model import block_params, embed_backward, embed_forward, init_params
from .fast import block as fast_block
from .ops import block as reference_block
from .ops.layernorm import layernorm_backward, layernorm_forward
from .ops.linear import linear_backward, linear_forward
from .ops.masking import corrupt_patches, mask_embed_backward, mask_embed_forward
from .ops.patches import patchify_forward, unpatchify

MPP_KEYS = ("mpp.delta", "mpp.W", "mpp.b")     # the [mask] embedding's offset δ (D,), the head (D, bins), (bins,)


def init_mpp_params(cfg: ViTConfig, bins=8, seed=0) -> dict:
    """The ViT's parameters (:func:`vitnp.model.init_params`) and the pre-training head's: δ ~ Normal(0, 0.02²)
    (as E_pos), W_mpp Xavier uniform, b_mpp = 0."""
    if cfg.dropout or cfg.attention_dropout or cfg.is_hybrid:
        raise ValueError("masked patch prediction here takes a plain ViT without dropout (dropout=0, "
                         "attention_dropout=0, no stem)")
    params = init_params(cfg, seed)
    rng = np.random.default_rng([seed, 46])
    limit = np.sqrt(6.0 / (cfg.dim + bins))
    params["mpp.delta"] = rng.normal(0.0, 0.02, cfg.dim).astype(cfg.np_dtype)
    params["mpp.W"] = rng.uniform(-limit, limit, (cfg.dim, bins)).astype(cfg.np_dtype)
    params["mpp.b"] = np.zeros(bins, cfg.np_dtype)
    return params


def mpp_forward(params, x, plan, cfg: ViTConfig, *, fast=False):
    """Logits of every corrupted patch's target bin.

    x: (B, H, W, C) normalised images   plan: :func:`~vitnp.ops.masking.corruption_plan` for (B, N)
    ->   logits: (n, bins), n = plan['corrupted'].sum(), in row-major (image, patch) order; cache

    fast : run the L blocks with :mod:`vitnp.fast.block` (the same functions, proven equal) instead of
        :mod:`vitnp.ops.block`, for the pre-training runs.

    cache = a dict with the keys mpp_backward reads: 'cfg', 'plan', 'encoder_backward' (of the path that ran),
    'embed', 'mask', 'blocks', 'ln', 'head', 'shape' (the tokens' shape (B, T, D)).
    """
    first = 1 if cfg.classifier == "token" else 0                       # the token of patch 0
    x_p, _ = patchify_forward(x, cfg.patch_size)                        # (B, N, P²C)
    x_corrupt = unpatchify(corrupt_patches(x_p, plan), cfg.hw, cfg.patch_size)
    blocks = fast_block if fast else reference_block
    c = {"cfg": cfg, "plan": plan, "encoder_backward": blocks.encoder_backward}
    tokens, c["embed"] = embed_forward(params, x_corrupt, cfg)           # Eq 1 of the corrupted image
    on_masked = np.zeros(tokens.shape[:2], bool)
    on_masked[:, first:] = plan["masked"]
    tokens, c["mask"] = mask_embed_forward(tokens, params["mpp.delta"], on_masked)   # masked: b + δ (+ E_pos)
    z_L, _, c["blocks"] = blocks.encoder_forward(tokens, block_params(params, cfg), cfg.heads, gelu=cfg.gelu,
                                                 eps=cfg.ln_eps)         # Eq 2–3: (B, T, D)
    h, c["ln"] = layernorm_forward(z_L, params["ln_f.gamma"], params["ln_f.beta"], cfg.ln_eps)
    picked = h[:, first:][plan["corrupted"]]                            # (n, D): the corrupted patches' tokens
    logits, c["head"] = linear_forward(picked, params["mpp.W"], params["mpp.b"])
    c["shape"] = h.shape
    return logits, c


def mpp_backward(dlogits, cache) -> dict:
    """Gradients of every parameter used (the ViT's but its head, and :data:`MPP_KEYS`) from ∂loss/∂logits."""
    cfg, plan = cache["cfg"], cache["plan"]
    first = 1 if cfg.classifier == "token" else 0
    g = {}
    d_picked, g["mpp.W"], g["mpp.b"] = linear_backward(dlogits, cache["head"])
    dh = np.zeros(cache["shape"], dlogits.dtype)
    dh[:, first:][plan["corrupted"]] = d_picked                         # only the corrupted tokens were read
    dz, g["ln_f.gamma"], g["ln_f.beta"] = layernorm_backward(dh, cache["ln"])
    dz, block_grads = cache["encoder_backward"](dz, cache["blocks"])
    for l, bg in enumerate(block_grads):
        g.update({f"blocks.{l}.{k}": v for k, v in bg.items()})
    dz, g["mpp.delta"] = mask_embed_backward(dz, cache["mask"])
    embed_backward(dz, cache["embed"], g)                               # E, E_bias, x_class, E_pos
    return g
