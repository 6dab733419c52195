"""The gradient-check suite: every forward/backward pair, the encoder block and the whole model,
each compared with centred differences in float64 on small random inputs — for the reference
(:mod:`vitnp.ops`, :mod:`vitnp.model`) and for the fast twins (:mod:`vitnp.fast`).

``python -m vitnp gradcheck`` runs :func:`cases` of both paths and prints a table; the tests run the same
cases.  A check passes only if it compared something and every error is a number within the tolerance:
NaN never passes.
"""
from __future__ import annotations

import itertools
import math
import time
from types import SimpleNamespace

import numpy as np

from . import fast, model
from .config import ViTConfig
from .fast import attention as fast_attention, block as fast_block, gelu as fast_gelu
from .fast import layernorm as fast_layernorm, linear as fast_linear, ln_linear as fast_ln_linear
from .fast import softmax as fast_softmax
from .gradcheck import MODEL_TOL, OP_TOL, check_gradients, check_pair
from .model import init_params
from .ops import attention, block, gelu, layernorm, linear, ln_linear, softmax
from .ops.attention import causal_mask
from .ops.block import BLOCK_KEYS
from .ops.conv import (conv2d_backward, conv2d_forward, conv_stack_backward, conv_stack_forward, maxpool_backward,
                       maxpool_forward, relu_backward, relu_forward)
from .ops.dropout import dropout_backward, dropout_forward
from .ops.loss import softmax_cross_entropy
from .ops.masking import corruption_plan, mask_embed_backward, mask_embed_forward
from .ops.mlp import mlp_backward, mlp_forward
from .ops.patches import patchify_backward, patchify_forward
from .ops.posemb import pos_embed_backward, pos_embed_forward
from .ops.tokens import class_token_backward, class_token_forward, readout_backward, readout_forward

PATHS = ("reference", "fast")
# The modules that have a fast twin, by path: the cases below are written once and run on both.
_TWINS = {
    "reference": SimpleNamespace(attention=attention, block=block, gelu=gelu, layernorm=layernorm, linear=linear,
                                 ln_linear=ln_linear, softmax=softmax, model=model),
    "fast": SimpleNamespace(attention=fast_attention, block=fast_block, gelu=fast_gelu, layernorm=fast_layernorm,
                            linear=fast_linear, ln_linear=fast_ln_linear, softmax=fast_softmax, model=fast),
}



def _seeded(seed):
    """A fresh generator with a fixed seed for every evaluation: dropout draws the same mask each time."""
    return lambda: np.random.default_rng(seed)


def random_block_params(rng, D, M) -> dict:
    """The parameters of one encoder block (:data:`~vitnp.ops.block.BLOCK_KEYS`), random, scale 0.5, γ around 1."""
    shapes = {"ln1.gamma": (D,), "ln1.beta": (D,), "U_qkv": (D, 3 * D), "U_qkv_bias": (3 * D,),
              "U_msa": (D, D), "U_msa_bias": (D,), "ln2.gamma": (D,), "ln2.beta": (D,),
              "mlp.W1": (D, M), "mlp.b1": (M,), "mlp.W2": (M, D), "mlp.b2": (D,)}
    p = {k: 0.5 * rng.standard_normal(s) for k, s in shapes.items()}
    p["ln1.gamma"] += 1.0
    p["ln2.gamma"] += 1.0
    return p


def _check_block(ns, stack, mask=None, dropout=0.0, gelu="exact", seed=0):
    """Encoder block (or a two-block encoder when ``stack``) of ``ns.block`` on every input and parameter."""
    rng = np.random.default_rng(seed)
    B, T, D, M, heads = 2, 4, 6, 10, 2
    z = rng.standard_normal((B, T, D))
    blocks = [random_block_params(rng, D, M) for _ in range(2 if stack else 1)]
    g = rng.standard_normal((B, T, D))
    kw = dict(gelu=gelu, mask=mask, dropout=dropout, attention_dropout=dropout, train=dropout > 0)

    def run():
        kw["rng"] = np.random.default_rng(seed + 1)
        if stack:
            return ns.block.encoder_forward(z, blocks, heads, **kw)
        return ns.block.encoder_block_forward(z, blocks[0], heads, **kw)

    out, _, cache = run()
    if stack:
        dz, grads = ns.block.encoder_backward(g, cache)
    else:
        dz, grad0 = ns.block.encoder_block_backward(g, cache)
        grads = [grad0]
    arrays = {"z": z}
    analytic = {"z": dz}
    for l, (p, gp) in enumerate(zip(blocks, grads)):
        for k in BLOCK_KEYS:
            arrays[f"{l}.{k}"], analytic[f"{l}.{k}"] = p[k], gp[k]
    return check_gradients(lambda: float(np.sum(run()[0] * g)), arrays, analytic, seed=seed)


def tiny_config(**overrides) -> ViTConfig:
    """A ViT small enough to check every parameter numerically: 6×4×2 images, P=2 (3×2 grid), D=8."""
    fields = dict(image_size=(6, 4), patch_size=2, in_channels=2, num_classes=3, dim=8, depth=2, heads=2,
                  mlp_dim=12, dtype="float64")
    fields.update(overrides)
    return ViTConfig(**fields)


def hybrid_tiny_config(**overrides) -> ViTConfig:
    """A hybrid ViT (§3.1) small enough to check numerically: 8×4×2 images, one conv stage of 3 channels
    with 2×2 pooling -> a 4×2×3 feature map, P=2 (2×1 grid), D=8, one block (the plain cases check
    deeper encoders; the stem is what is new here)."""
    fields = dict(image_size=(8, 4), patch_size=2, stem_channels=(3,), stem_pool=2, depth=1)
    fields.update(overrides)
    return tiny_config(**fields)


def check_model(cfg: ViTConfig, *, train=False, attn_mask=None, seed=0, max_checks=None, check_input=False,
                path="reference"):
    """The whole model's gradient of every parameter (and of the images x, with ``check_input``), with
    random (non-zero) parameters; ``path`` 'reference' (:mod:`vitnp.model`) or 'fast' (:mod:`vitnp.fast`)."""
    vit_forward, vit_backward = _TWINS[path].model.vit_forward, _TWINS[path].model.vit_backward
    rng = np.random.default_rng(seed)
    params = {k: v + 0.3 * rng.standard_normal(v.shape) for k, v in init_params(cfg, seed).items()}
    x = rng.standard_normal((2, *cfg.hw, cfg.in_channels))
    logits, cache = vit_forward(params, x, cfg, train=train, rng=seed, attn_mask=attn_mask)
    g = rng.standard_normal(logits.shape)
    grads = vit_backward(g, cache, input_grad=check_input)
    arrays = params
    if check_input:
        grads, dx = grads
        arrays, grads = {**params, "x": x}, {**grads, "x": dx}

    def loss():
        out, _ = vit_forward(params, x, cfg, train=train, rng=seed, attn_mask=attn_mask)
        return float(np.sum(out * g))

    return check_gradients(loss, arrays, grads, seed=seed, max_checks=max_checks)


def _check_cross_entropy(smoothing, seed=0):
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((4, 5)) * 3.0
    labels = rng.integers(0, 5, 4)
    _, dlogits = softmax_cross_entropy(logits, labels, smoothing)
    return check_gradients(lambda: softmax_cross_entropy(logits, labels, smoothing)[0],
                           {"logits": logits}, {"logits": dlogits})


def _check_mask_embed(r):
    """z + δ on a random half of the tokens: every input (z and δ)."""
    masked = r(2, 5) > 0

    def forward(z, delta):
        return mask_embed_forward(z, delta, masked)

    return check_pair(forward, mask_embed_backward, dict(z=r(2, 5, 4), delta=r(4)))


def check_masked_patch_prediction(classifier="token", seed=0, max_checks=None):
    """The pre-training model of §4.6 (:mod:`vitnp.self_supervised`): every parameter it uses, through the
    corruption (masked, replaced and kept patches), the body and the patch head, with the cross-entropy on top."""
    from .self_supervised import init_mpp_params, mpp_backward, mpp_forward
    cfg = tiny_config(classifier=classifier)
    rng = np.random.default_rng(seed)
    params = {k: v + 0.3 * rng.standard_normal(v.shape) for k, v in init_mpp_params(cfg, bins=4, seed=seed).items()}
    x = rng.standard_normal((2, *cfg.hw, cfg.in_channels))
    plan = corruption_plan(np.random.default_rng(seed + 1), 2, cfg.num_patches)
    targets = rng.integers(0, 4, int(plan["corrupted"].sum()))
    logits, cache = mpp_forward(params, x, plan, cfg)
    grads = mpp_backward(softmax_cross_entropy(logits, targets)[1], cache)
    used = {k: params[k] for k in grads}
    return check_gradients(lambda: softmax_cross_entropy(mpp_forward(params, x, plan, cfg)[0], targets)[0],
                           used, grads, seed=seed, max_checks=max_checks)


def _check_conv_stack(r):
    """Two conv → ReLU → max-pool stages (the hybrid stem), every input and parameter: the backward's
    (dx, [(dW, db) per stage]) flattened into check_pair's order."""
    def forward(x, W1, b1, W2, b2):
        return conv_stack_forward(x, [(W1, b1), (W2, b2)], pool=2)

    def backward(dout, cache):
        dx, ((dW1, db1), (dW2, db2)) = conv_stack_backward(dout, cache)
        return dx, dW1, db1, dW2, db2

    return check_pair(forward, backward, dict(x=r(2, 8, 6, 2), W1=r(3, 3, 2, 3), b1=r(3), W2=r(3, 3, 3, 2), b2=r(2)))


def cases(seed=0, path="reference"):
    """(name, tolerance, thunk) for every check of one path; the thunk returns {input name: max relative error}.

    path : 'reference' — every pair of :mod:`vitnp.ops`, the blocks and the model variants;
           'fast' — the ops with a fast twin, the fast block and the fast model (names start with "fast ").
    """
    if path not in PATHS:
        raise ValueError(f"path must be one of {PATHS}, got {path!r}")
    ns = _TWINS[path]
    rng = np.random.default_rng(seed)
    r = lambda *shape: rng.standard_normal(shape)
    q, k, v = r(2, 2, 5, 3), r(2, 2, 5, 3), r(2, 2, 5, 3)
    qkv = dict(q=q, k=k, v=v)
    msa_in = dict(z=r(2, 5, 6), U_qkv=r(6, 18), U_qkv_bias=r(18), U_msa=r(6, 6), U_msa_bias=r(6))
    mlp_in = dict(x=r(2, 3, 4), W1=r(4, 7), b1=r(7), W2=r(7, 4), b2=r(4))
    ln_in = dict(x=r(2, 3, 6) * 2.0 + 1.0, gamma=r(6), beta=r(6))
    att, sm = ns.attention, ns.softmax
    twins = [
        ("linear", lambda: check_pair(ns.linear.linear_forward, ns.linear.linear_backward,
                                      dict(x=r(2, 3, 5), W=r(5, 4), b=r(4)))),
        ("layernorm", lambda: check_pair(ns.layernorm.layernorm_forward, ns.layernorm.layernorm_backward, ln_in,
                                         kwargs={"eps": 1e-6})),
        ("normalize (LayerNorm, γ = 1, β = 0)", lambda: check_pair(ns.layernorm.normalize_forward,
                                                               ns.layernorm.normalize_backward, {"x": ln_in["x"]})),
        ("ln_linear (LayerNorm → linear)", lambda: check_pair(
            ns.ln_linear.ln_linear_forward, ns.ln_linear.ln_linear_backward,
            dict(z=ln_in["x"], gamma=ln_in["gamma"], beta=ln_in["beta"], W=r(6, 5), b=r(5)))),
        ("softmax last axis", lambda: check_pair(sm.softmax_forward, sm.softmax_backward, {"x": r(2, 3, 5) * 3})),
        ("softmax axis 0", lambda: check_pair(sm.softmax_forward, sm.softmax_backward, {"x": r(4, 3)},
                                              kwargs={"axis": 0})),
        ("attention", lambda: check_pair(att.attention_forward, att.attention_backward, qkv)),
        ("attention causal mask", lambda: check_pair(att.attention_forward, att.attention_backward, qkv,
                                                     kwargs={"mask": causal_mask(5)})),
        ("attention dropout", lambda: check_pair(att.attention_forward, att.attention_backward, qkv,
                                                 kwargs={"dropout": 0.3, "rng": _seeded(1), "train": True})),
        ("msa", lambda: check_pair(att.msa_forward, att.msa_backward, msa_in, kwargs={"heads": 2})),
        ("msa 3 heads, causal mask", lambda: check_pair(att.msa_forward, att.msa_backward, msa_in,
                                                        kwargs={"heads": 3, "mask": causal_mask(5)})),
        ("qkv_attention, 2 heads, causal mask", lambda: check_pair(
            att.qkv_attention_forward, att.qkv_attention_backward, {"qkv": r(2, 5, 12)},
            kwargs={"heads": 2, "mask": causal_mask(5)})),
        ("gelu exact", lambda: check_pair(ns.gelu.gelu_forward, ns.gelu.gelu_backward, {"x": r(4, 6) * 2},
                                          kwargs={"approximate": "exact"})),
        ("gelu tanh", lambda: check_pair(ns.gelu.gelu_forward, ns.gelu.gelu_backward, {"x": r(4, 6) * 2},
                                         kwargs={"approximate": "tanh"})),
    ]
    others = [
        ("patchify", lambda: check_pair(patchify_forward, patchify_backward, {"x": r(2, 6, 4, 3)},
                                        kwargs={"P": 2})),
        ("class_token", lambda: check_pair(class_token_forward, class_token_backward,
                                           dict(x=r(2, 3, 4), x_class=r(4)))),
        ("readout token", lambda: check_pair(readout_forward, readout_backward, {"z": r(2, 4, 5)},
                                             kwargs={"mode": "token"})),
        ("readout gap", lambda: check_pair(readout_forward, readout_backward, {"z": r(2, 4, 5)},
                                           kwargs={"mode": "gap"})),
        ("pos_embed", lambda: check_pair(pos_embed_forward, pos_embed_backward, dict(z=r(2, 4, 5), E_pos=r(4, 5)))),
        ("dropout", lambda: check_pair(dropout_forward, dropout_backward, {"x": r(3, 8)},
                                       kwargs={"p": 0.4, "rng": _seeded(2), "train": True})),
        ("mlp exact", lambda: check_pair(mlp_forward, mlp_backward, mlp_in, kwargs={"gelu": "exact"})),
        ("mlp tanh, dropout", lambda: check_pair(mlp_forward, mlp_backward, mlp_in,
                                                 kwargs={"gelu": "tanh", "dropout": 0.3, "rng": _seeded(3),
                                                         "train": True})),
        ("conv2d 3x3, padding 1", lambda: check_pair(conv2d_forward, conv2d_backward,
                                                     dict(x=r(2, 5, 4, 3), W=r(3, 3, 3, 4), b=r(4)),
                                                     kwargs={"padding": 1})),
        ("conv2d 2x3, stride 2, padding (1, 0)", lambda: check_pair(conv2d_forward, conv2d_backward,
                                                                    dict(x=r(2, 7, 6, 2), W=r(2, 3, 2, 3), b=r(3)),
                                                                    kwargs={"stride": 2, "padding": (1, 0)})),
        ("relu", lambda: check_pair(relu_forward, relu_backward, {"x": r(3, 4, 5)})),
        ("maxpool 2x2, odd size", lambda: check_pair(maxpool_forward, maxpool_backward, {"x": r(2, 5, 4, 3)})),
        ("conv stack, 2 stages, pool 2", lambda: _check_conv_stack(r)),
        ("maxpool 3x3", lambda: check_pair(maxpool_forward, maxpool_backward, {"x": r(2, 6, 7, 2)},
                                           kwargs={"size": 3})),
        ("mask_embed (masked patch prediction's [mask])", lambda: _check_mask_embed(r)),
        ("cross-entropy", lambda: _check_cross_entropy(0.0)),
        ("cross-entropy, smoothing 0.1", lambda: _check_cross_entropy(0.1)),
    ]
    out = [(name, OP_TOL, fn) for name, fn in twins + (others if path == "reference" else [])]
    out += [
        ("encoder block", MODEL_TOL, lambda: _check_block(ns, False)),
        ("encoder block, causal mask, tanh", MODEL_TOL, lambda: _check_block(ns, False, causal_mask(4), gelu="tanh")),
        ("encoder block, dropout", MODEL_TOL, lambda: _check_block(ns, False, dropout=0.2)),
        ("encoder, 2 blocks", MODEL_TOL, lambda: _check_block(ns, True)),
    ]
    variants = itertools.product(("token", "gap"), ("exact", "tanh"), ("learned", "sincos", "none"))
    if path == "fast":                                         # the fast model shares Eq 1 and Eq 4 with the
        variants = [("token", "exact", "learned"), ("gap", "tanh", "sincos")]   # reference: two variants suffice
    for classifier, gelu_form, pos in variants:
        cfg = tiny_config(classifier=classifier, gelu=gelu_form, pos_embedding=pos)
        out.append((f"model {classifier}/{gelu_form}/{pos}", MODEL_TOL, lambda cfg=cfg: check_model(cfg, path=path)))
    out.append(("model, dropout 0.1 (fixed seed)", MODEL_TOL,
                lambda: check_model(tiny_config(dropout=0.1, attention_dropout=0.1), train=True, path=path)))
    out.append(("model, causal mask", MODEL_TOL,
                lambda: check_model(tiny_config(), attn_mask=causal_mask(7), path=path)))
    out.append(("hybrid: 1 stage, pool 2, P=2, with x", MODEL_TOL,          # §3.1 hybrid, stem and input too
                lambda: check_model(hybrid_tiny_config(), check_input=True, path=path)))
    if path == "reference":
        out += [(f"masked patch prediction ({c})", MODEL_TOL, lambda c=c: check_masked_patch_prediction(c))
                for c in ("token", "gap")]
    if path == "reference":
        out.append(("hybrid: 2 stages, pool 2, P=1 (paper)", MODEL_TOL,      # 9×8×1 image -> 2×2×4 map, 4 tokens
                    lambda: check_model(hybrid_tiny_config(image_size=(9, 8), in_channels=1, stem_channels=(3, 4),
                                                           patch_size=1))))
    prefix = "fast " if path == "fast" else ""
    return [(prefix + name, tol, fn) for name, tol, fn in out]


def worst_error(errors: dict) -> float:
    """The largest error of a check; ``inf`` if any error is NaN or if the check compared nothing, as
    :func:`vitnp.gradcheck.rel_error` and ``check_gradients`` report them, so that no tolerance passes it."""
    values = [float(e) for e in errors.values()]
    return math.inf if any(math.isnan(e) for e in values) else max(values, default=math.inf)


def run(print_fn=print, paths=PATHS) -> bool:
    """Run every case of ``paths``, print a table (check, max relative error, tolerance, ok); True if all pass."""
    print_fn(f"{'check':<44} {'max rel err':>12} {'tolerance':>10} {'ok':>4} {'seconds':>8}")
    all_ok = True
    start = time.perf_counter()
    for name, tol, fn in (case for path in paths for case in cases(path=path)):
        t0 = time.perf_counter()
        worst = worst_error(fn())
        ok = bool(worst <= tol)
        all_ok &= ok
        print_fn(f"{name:<44} {worst:>12.2e} {tol:>10.0e} {'yes' if ok else 'NO':>4} {time.perf_counter() - t0:>8.2f}")
    print_fn(f"{'all passed' if all_ok else 'FAILED'} in {time.perf_counter() - start:.1f} s")
    return all_ok
