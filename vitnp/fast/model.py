"""Same model as :mod:`vitnp.model` (Eq 1–4); differs by: the batch runs as shards in threads, the encoder
uses the fast ops of :mod:`vitnp.fast.block`, and glibc's malloc keeps freed activations for reuse.

Same arguments, same return values, same cache contract (``cache['attention']``; ``vit_backward`` takes the
cache of this module's ``vit_forward``).  Eq 1 (patches, E, x_class, E_pos, the hybrid stem) and Eq 4 with
the head are the reference functions :func:`vitnp.model.embed_forward` / :func:`vitnp.model.head_forward`:
they are a few percent of the time.  Proven equal to the reference in ``tests/test_fast.py`` (float64 ≤ 1e-12,
float32 ≤ 1e-5, logits and every gradient).

Why: NumPy's elementwise ops use one core, so shards in threads put the second core to work; and without the
malloc tuning every step pays page faults on its fresh activations.  The whole fast path's measured gain over the
reference model is ``python -m vitnp bench --reference``'s, the levers' one by one are in docs/performance.md.
Sharding is skipped when dropout draws masks, so a run stays reproducible from its seed.
"""
from __future__ import annotations

import numpy as np

from ..config import param_shapes
from ..model import block_params, check_inputs, embed_backward, embed_forward, head_backward, head_forward
from . import parallel
from .block import encoder_backward, encoder_forward


def vit_forward(params, x, cfg, *, train=False, rng=None, attn_mask=None):
    """Logits of a batch of images, Eq 1–4; as :func:`vitnp.vit_forward`.

    Returns (logits (B, K), cache); ``cache['attention']`` lists the L (B, k, T, T) weights.
    """
    x, rng, attn_mask = check_inputs(params, x, cfg, train, rng, attn_mask)
    parallel.tune_malloc()
    B = x.shape[0]
    drops = train and (cfg.dropout > 0 or cfg.attention_dropout > 0)
    shards = [slice(0, B)] if drops else parallel.shard_slices(B, cfg.num_tokens)
    mask_of = _shard_mask(attn_mask, B)

    def run(s):
        mask = mask_of(s)
        c = {"cfg": cfg}
        z, c["embed"] = embed_forward(params, x[s], cfg, train=train, rng=rng)
        z, c["attention"], c["blocks"] = encoder_forward(
            z, block_params(params, cfg), cfg.heads, gelu=cfg.gelu, eps=cfg.ln_eps, dropout=cfg.dropout,
            attention_dropout=cfg.attention_dropout, mask=mask, rng=rng, train=train)
        logits, c["head"] = head_forward(params, z, cfg)
        return logits, c

    results = parallel.run_shards(run, shards)
    if len(results) == 1:
        return results[0]
    logits = np.concatenate([r[0] for r in results])                    # (B, K)
    attention = [np.concatenate([c["attention"][l] for _, c in results]) for l in range(cfg.depth)]
    return logits, {"cfg": cfg, "attention": attention, "shards": [(s, c) for s, (_, c) in zip(shards, results)]}


def vit_predict(params, x, cfg, *, attn_mask=None):
    """Logits (B, K) of a batch of images with dropout off, as :func:`vitnp.model.vit_predict`.

    The inference path: the same numbers as ``vit_forward(params, x, cfg)[0]``, but no block keeps a
    cache for a backward pass (each block's activations are freed when it returns, so memory does not grow
    with the depth), GELU skips its derivative, and no attention maps are collected.
    """
    x, _, attn_mask = check_inputs(params, x, cfg, False, None, attn_mask)
    parallel.tune_malloc()
    B = x.shape[0]
    mask_of = _shard_mask(attn_mask, B)
    blocks = block_params(params, cfg)

    def run(s):
        z, _ = embed_forward(params, x[s], cfg)
        z = encoder_forward(z, blocks, cfg.heads, gelu=cfg.gelu, eps=cfg.ln_eps,
                            mask=mask_of(s), keep_cache=False)
        return head_forward(params, z, cfg)[0]

    logits = parallel.run_shards(run, parallel.shard_slices(B, cfg.num_tokens))
    return logits[0] if len(logits) == 1 else np.concatenate(logits)


def _shard_mask(attn_mask, B):
    """slice of the batch -> the attention mask for those images: a per-image (B, …, T, T) mask is cut with
    the batch, a shared one (or None) is the same for every shard."""
    if attn_mask is not None and attn_mask.ndim == 4 and attn_mask.shape[0] == B > 1:
        return lambda s: attn_mask[s]
    return lambda s: attn_mask


def vit_backward(dlogits, cache, *, input_grad=False):
    """Gradients of every parameter from ∂loss/∂logits (B, K); as :func:`vitnp.vit_backward`.

    For a sharded forward each shard's backward runs in its own thread and the gradients are summed
    (every parameter gradient is a sum over the batch); dx is concatenated.
    """
    parts = cache.get("shards", [(slice(None), cache)])
    outs = parallel.run_shards(lambda sc: _backward(dlogits[sc[0]], sc[1], input_grad), parts)
    total = outs[0][0]
    for g, _ in outs[1:]:
        for k, v in g.items():
            total[k] += v
    if not input_grad:
        return total
    return total, outs[0][1] if len(outs) == 1 else np.concatenate([dx for _, dx in outs])   # (B, H, W, C)


def _backward(dlogits, cache, input_grad):
    """(grads, dx or None) of one shard."""
    cfg = cache["cfg"]
    g = {}
    dz = head_backward(dlogits, cache["head"], g)
    dz, block_grads = encoder_backward(dz, cache["blocks"])
    for l, bg in enumerate(block_grads):
        g.update({f"blocks.{l}.{k}": v for k, v in bg.items()})
    dx = embed_backward(dz, cache["embed"], g, input_grad=input_grad)
    return {k: g[k] for k in param_shapes(cfg)}, dx
