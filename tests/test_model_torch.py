"""vitnp against an independent PyTorch ViT (the llm.c ``test_gpt2.c`` idea).

The same ViT is written a second time below, functionally, from torch primitives (``F.layer_norm``,
``F.gelu``, ``torch.softmax``, ``@``) in float64, and differentiated by autograd.  Both models get the
same parameters, images and labels; we compare the logits, the loss, ∂loss/∂logits and the gradient
of every parameter by name.  The torch model reads nothing from vitnp except the config and the fixed
sine-cosine table (which has no gradient), so a shared mistake would have to be made twice.

The reference itself is checked against torch's own building blocks: the patch embedding against
``F.conv2d`` (kernel P, stride P) and one encoder block against ``nn.TransformerEncoderLayer``
(``norm_first=True``, the pre-LN of Eq 2–3).  The hybrid's CNN stem (paper §3.1) is written with torch's
``F.conv2d`` (NCHW, OIHW: our NHWC images and HWIO kernels are transposed), ``F.relu`` and
``F.max_pool2d``; the gradient with respect to the images is compared too.

Error measure: ``vitnp.gradcheck.rel_error``, max|a − b| / max(1e-12, max|a| + max|b|) per array.
"""
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

import vitnp  # noqa: E402
from vitnp.gradcheck import rel_error  # noqa: E402
from vitnp.ops import attention, layernorm, loss, posemb  # noqa: E402

TOL = 1e-6      # max relative error allowed between vitnp and torch (both float64)
BATCH = 3


# ================================================================================================
# The reference: a functional PyTorch ViT, float64
# ================================================================================================
def t_patchify(x, P):
    """(B, H, W, C) -> x_p (B, N, P²C): patches row-major over the grid, each (row, col, channel)."""
    B, H, W, C = x.shape
    x = x.reshape(B, H // P, P, W // P, P, C)            # (B, H/P, P, W/P, P, C)
    x = x.permute(0, 1, 3, 2, 4, 5)                      # (B, H/P, W/P, P, P, C)
    return x.reshape(B, (H // P) * (W // P), P * P * C)  # (B, N, P²C)


def t_attention(q, k, v, mask=None):
    """softmax(q kᵀ / √D_h) v over the key axis (Eq 6–7); mask True = may attend.  -> (out, A)"""
    s = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (..., T, T)
    if mask is not None:
        s = s.masked_fill(~mask, float("-inf"))
    A = torch.softmax(s, dim=-1)
    return A @ v, A


def t_block(z, b, heads, eps, gelu):
    """One pre-LN encoder block (Eq 2–3).  z: (B, T, D); b: the block's parameters without the prefix."""
    B, T, D = z.shape
    Dh = D // heads
    a = F.layer_norm(z, (D,), b["ln1.gamma"], b["ln1.beta"], eps)
    qkv = a @ b["U_qkv"] + b["U_qkv_bias"]                              # (B, T, 3D)
    q, k, v = (t.reshape(B, T, heads, Dh).transpose(1, 2)               # (B, k, T, D_h) each
               for t in qkv.split(D, dim=-1))
    o, _ = t_attention(q, k, v)                                         # (B, k, T, D_h)
    o = o.transpose(1, 2).reshape(B, T, D)                              # heads merged, head-major
    z = z + o @ b["U_msa"] + b["U_msa_bias"]                            # Eq 2
    m = F.layer_norm(z, (D,), b["ln2.gamma"], b["ln2.beta"], eps)
    h = F.gelu(m @ b["mlp.W1"] + b["mlp.b1"], approximate="none" if gelu == "exact" else "tanh")
    return z + h @ b["mlp.W2"] + b["mlp.b2"]                            # Eq 3


def t_stem(x, p, cfg):
    """The hybrid's CNN stem with torch's NCHW layers: (B, H, W, C) -> feature map (B, h, w, C_f)."""
    f = x.permute(0, 3, 1, 2)                                           # (B, C, H, W)
    for i in range(len(cfg.stem_channels)):
        kernel = p[f"stem.{i}.W"].permute(3, 2, 0, 1)                   # (k, k, C_in, C_out) -> OIHW
        f = F.relu(F.conv2d(f, kernel, p[f"stem.{i}.b"], padding=cfg.stem_kernel // 2))   # 'same'
        if cfg.stem_pool > 1:
            f = F.max_pool2d(f, cfg.stem_pool)                          # floor mode, like vitnp
    return f.permute(0, 2, 3, 1)                                        # (B, h, w, C_f)


def t_vit_logits(p, x, cfg, pos_table=None):
    """The whole ViT in torch.  p: name -> tensor; x: (B, H, W, C); pos_table: (T, D) for 'sincos'."""
    B = x.shape[0]
    if cfg.stem_channels:                                               # hybrid: patches of the CNN map
        x = t_stem(x, p, cfg)
    z = t_patchify(x, cfg.patch_size) @ p["E"] + p["E_bias"]           # (B, N, D)
    if cfg.classifier == "token":
        z = torch.cat([p["x_class"].expand(B, 1, -1), z], dim=1)       # (B, N+1, D)
    if cfg.pos_embedding == "learned":
        z = z + p["E_pos"]                                              # Eq 1
    elif cfg.pos_embedding == "sincos":
        z = z + torch.as_tensor(pos_table, dtype=z.dtype)
    for l in range(cfg.depth):
        prefix = f"blocks.{l}."
        block = {n[len(prefix):]: t for n, t in p.items() if n.startswith(prefix)}
        z = t_block(z, block, cfg.heads, cfg.ln_eps, cfg.gelu)
    z = F.layer_norm(z, (cfg.dim,), p["ln_f.gamma"], p["ln_f.beta"], cfg.ln_eps)
    y = z[:, 0] if cfg.classifier == "token" else z.mean(dim=1)        # Eq 4 / average pooling
    return y @ p["head.W"] + p["head.b"]                                # (B, K)


def torch_reference(params, x, labels, cfg, smoothing, pos_table=None):
    """logits, loss, dlogits, name -> gradient and dloss/dx, all as float64 NumPy, computed by torch autograd."""
    tp = {n: torch.tensor(a, dtype=torch.float64, requires_grad=True) for n, a in params.items()}
    tx = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    logits = t_vit_logits(tp, tx, cfg, pos_table)
    logits.retain_grad()
    value = F.cross_entropy(logits, torch.tensor(labels, dtype=torch.long), label_smoothing=smoothing)
    value.backward()
    grads = {n: (t.grad if t.grad is not None else torch.zeros_like(t)).numpy() for n, t in tp.items()}
    return logits.detach().numpy(), value.item(), logits.grad.numpy(), grads, tx.grad.numpy()


# ================================================================================================
# The reference checked against torch's own layers
# ================================================================================================
def test_reference_patch_embedding_is_a_stride_p_conv():
    rng = np.random.default_rng(0)
    B, H, W, C, P, D = 2, 8, 12, 3, 4, 5
    x = torch.tensor(rng.standard_normal((B, H, W, C)))
    E = torch.tensor(rng.standard_normal((P * P * C, D)))
    bias = torch.tensor(rng.standard_normal(D))
    ours = t_patchify(x, P) @ E + bias                                  # (B, N, D)
    kernel = E.reshape(P, P, C, D).permute(3, 2, 0, 1)                  # (D, C, P, P), like the checkpoint's
    conv = F.conv2d(x.permute(0, 3, 1, 2), kernel, bias, stride=P)      # (B, D, H/P, W/P)
    theirs = conv.flatten(2).transpose(1, 2)                            # (B, N, D), row-major grid
    assert rel_error(ours.numpy(), theirs.numpy()) < 1e-12


def test_reference_block_matches_nn_transformer_encoder_layer():
    rng = np.random.default_rng(1)
    B, T, D, heads, M, eps = 2, 5, 12, 3, 20, 1e-6
    names = {"ln1.gamma": (D,), "ln1.beta": (D,), "U_qkv": (D, 3 * D), "U_qkv_bias": (3 * D,),
             "U_msa": (D, D), "U_msa_bias": (D,), "ln2.gamma": (D,), "ln2.beta": (D,),
             "mlp.W1": (D, M), "mlp.b1": (M,), "mlp.W2": (M, D), "mlp.b2": (D,)}
    b = {n: torch.tensor(0.3 * rng.standard_normal(s)) for n, s in names.items()}
    b["ln1.gamma"] += 1.0
    b["ln2.gamma"] += 1.0
    z = torch.tensor(rng.standard_normal((B, T, D)))

    layer = torch.nn.TransformerEncoderLayer(D, heads, dim_feedforward=M, dropout=0.0, activation="gelu",
                                             layer_norm_eps=eps, batch_first=True, norm_first=True,
                                             dtype=torch.float64).eval()
    ours_to_torch = {"ln1.gamma": "norm1.weight", "ln1.beta": "norm1.bias",
                     "U_qkv": "self_attn.in_proj_weight", "U_qkv_bias": "self_attn.in_proj_bias",
                     "U_msa": "self_attn.out_proj.weight", "U_msa_bias": "self_attn.out_proj.bias",
                     "ln2.gamma": "norm2.weight", "ln2.beta": "norm2.bias",
                     "mlp.W1": "linear1.weight", "mlp.b1": "linear1.bias",
                     "mlp.W2": "linear2.weight", "mlp.b2": "linear2.bias"}
    # torch keeps its weight matrices as (out, in): transpose ours
    state = {theirs: b[ours].T if b[ours].ndim == 2 else b[ours] for ours, theirs in ours_to_torch.items()}
    layer.load_state_dict(state)
    with torch.no_grad():
        theirs = layer(z)
        ours = t_block(z, b, heads, eps, "exact")
    assert rel_error(ours.numpy(), theirs.numpy()) < 1e-12


def test_reference_stem_is_torch_conv_relu_pool_and_vitnp_agrees():
    """t_stem against nn.Conv2d / nn.ReLU / nn.MaxPool2d modules, and vitnp's conv_stack_forward against it."""
    from vitnp.ops.conv import conv_stack_forward
    rng = np.random.default_rng(2)
    cfg = vitnp.ViTConfig(image_size=(9, 10), patch_size=1, in_channels=3, dim=8, heads=2,
                          stem_channels=(4, 6), stem_kernel=3, stem_pool=2, dtype="float64")
    p = {n: rng.standard_normal(s) for n, s in vitnp.param_shapes(cfg).items() if n.startswith("stem.")}
    x = rng.standard_normal((2, 9, 10, 3))
    layers = []
    for i, c_out in enumerate(cfg.stem_channels):
        conv = torch.nn.Conv2d(p[f"stem.{i}.W"].shape[2], c_out, 3, padding=1, dtype=torch.float64)
        conv.weight.data = torch.tensor(p[f"stem.{i}.W"]).permute(3, 2, 0, 1).contiguous()
        conv.bias.data = torch.tensor(p[f"stem.{i}.b"])
        layers += [conv, torch.nn.ReLU(), torch.nn.MaxPool2d(2)]
    with torch.no_grad():
        modules = torch.nn.Sequential(*layers)(torch.tensor(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        ours = t_stem(torch.tensor(x), {n: torch.tensor(a) for n, a in p.items()}, cfg)
    assert ours.shape == (2, *cfg.feature_hw, 6) == (2, 2, 2, 6)
    assert rel_error(ours.numpy(), modules.numpy()) < 1e-12
    feat, _ = conv_stack_forward(x, [(p[f"stem.{i}.W"], p[f"stem.{i}.b"]) for i in range(2)], pool=2)
    assert rel_error(feat, modules.numpy()) < 1e-12


# ================================================================================================
# The whole model: vitnp vs the reference
# ================================================================================================
MODEL_CASES = {
    # (a) the class token, learned E_pos, exact GELU
    "a-token-learned-exact": (dict(image_size=(12, 8), patch_size=4, in_channels=3, num_classes=5, dim=12,
                                   heads=3, depth=2, mlp_dim=20, classifier="token", pos_embedding="learned",
                                   gelu="exact"), 0.0),
    # (b) average pooling, the fixed 2-D sine-cosine table, tanh GELU
    "b-gap-sincos-tanh": (dict(image_size=(8, 12), patch_size=2, in_channels=2, num_classes=4, dim=12,
                               heads=3, depth=2, mlp_dim=16, classifier="gap", pos_embedding="sincos",
                               gelu="tanh"), 0.1),
    # (c) the class token without any position embedding, tanh GELU
    "c-token-none-tanh": (dict(image_size=(8, 8), patch_size=4, in_channels=3, num_classes=6, dim=8,
                               heads=2, depth=2, mlp_dim=12, classifier="token", pos_embedding="none",
                               gelu="tanh"), 0.1),
    # (d) average pooling with learned E_pos, exact GELU
    "d-gap-learned-exact": (dict(image_size=(4, 12), patch_size=2, in_channels=1, num_classes=3, dim=16,
                                 heads=4, depth=2, mlp_dim=24, classifier="gap", pos_embedding="learned",
                                 gelu="exact"), 0.0),
    # (e) the class token with the sine-cosine table (T = N+1 rows), three blocks, D_h = 2
    "e-token-sincos-deep": (dict(image_size=(6, 9), patch_size=3, in_channels=2, num_classes=4, dim=8,
                                 heads=4, depth=3, mlp_dim=10, classifier="token", pos_embedding="sincos",
                                 gelu="exact"), 0.1),
    # (f) a large ε, so a LayerNorm that ignored cfg.ln_eps would show
    "f-large-ln-eps": (dict(image_size=(8, 8), patch_size=4, in_channels=3, num_classes=5, dim=12,
                            heads=3, depth=1, mlp_dim=16, classifier="token", pos_embedding="learned",
                            gelu="exact", ln_eps=0.1), 0.0),
    # (g) one patch, one head: T = 1 under 'gap'
    "g-one-patch-one-head": (dict(image_size=(4, 4), patch_size=4, in_channels=2, num_classes=3, dim=6,
                                  heads=1, depth=2, mlp_dim=8, classifier="gap", pos_embedding="learned",
                                  gelu="tanh"), 0.1),
    # (h) hybrid (§3.1): one conv stage + 2×2 pool, 8×12×3 -> 4×6×4 map, P=2 over the map
    "h-hybrid-1-stage-pool": (dict(image_size=(8, 12), patch_size=2, in_channels=3, num_classes=5, dim=12,
                                   heads=3, depth=2, mlp_dim=16, classifier="token", pos_embedding="learned",
                                   gelu="exact", stem_channels=(4,), stem_kernel=3, stem_pool=2), 0.0),
    # (i) hybrid, the paper's P=1: two stages, odd sizes pooled by floor (11×9 -> 5×4 -> 2×2), 5×5 kernels
    "i-hybrid-2-stages-p1": (dict(image_size=(11, 9), patch_size=1, in_channels=2, num_classes=4, dim=8,
                                  heads=2, depth=2, mlp_dim=12, classifier="token", pos_embedding="sincos",
                                  gelu="tanh", stem_channels=(3, 5), stem_kernel=5, stem_pool=2), 0.1),
    # (j) hybrid without pooling (map = image size), average pooling readout
    "j-hybrid-no-pool-gap": (dict(image_size=(6, 4), patch_size=2, in_channels=1, num_classes=3, dim=8,
                                  heads=2, depth=1, mlp_dim=12, classifier="gap", pos_embedding="learned",
                                  gelu="exact", stem_channels=(3,), stem_kernel=3, stem_pool=1), 0.0),
}


def _random_params(cfg, seed):
    """vitnp's initial parameters plus noise, so that the zero-initialised ones (head, biases) matter too."""
    rng = np.random.default_rng(seed)
    return {n: np.asarray(a, dtype=np.float64) + 0.2 * rng.standard_normal(np.shape(a))
            for n, a in vitnp.init_params(cfg, seed=seed).items()}


def _worst(errors):
    return ", ".join(f"{n}: {e:.3g}" for n, e in sorted(errors.items(), key=lambda kv: -kv[1]))


@pytest.mark.parametrize("case", list(MODEL_CASES))
def test_vit_matches_torch(case):
    fields, smoothing = MODEL_CASES[case]
    cfg = vitnp.ViTConfig(**fields, dtype="float64")
    rng = np.random.default_rng(123)
    params = _random_params(cfg, seed=7)
    x = rng.standard_normal((BATCH, *cfg.hw, cfg.in_channels))
    labels = rng.integers(cfg.num_classes, size=BATCH)
    pos_table = None
    if cfg.pos_embedding == "sincos":
        pos_table = np.asarray(posemb.sincos_2d(cfg), dtype=np.float64)
        assert pos_table.shape == (cfg.num_tokens, cfg.dim)

    # vitnp
    mine = {n: a.copy() for n, a in params.items()}
    logits, cache = vitnp.vit_forward(mine, x.copy(), cfg)
    value, dlogits = loss.softmax_cross_entropy(logits, labels, smoothing=smoothing)
    grads, dx = vitnp.vit_backward(dlogits, cache, input_grad=True)
    # torch
    t_logits, t_value, t_dlogits, t_grads, t_dx = torch_reference(params, x, labels, cfg, smoothing, pos_table)

    assert logits.shape == (BATCH, cfg.num_classes)
    assert rel_error(logits, t_logits) <= TOL, f"logits: {rel_error(logits, t_logits):.3g}"
    assert abs(float(value) - t_value) <= TOL * max(1.0, abs(t_value)), \
        f"loss {float(value)!r} vs torch {t_value!r}"
    assert rel_error(dlogits, t_dlogits) <= TOL, f"dlogits: {rel_error(dlogits, t_dlogits):.3g}"

    assert set(grads) == set(t_grads), (f"missing: {sorted(set(t_grads) - set(grads))}, "
                                        f"extra: {sorted(set(grads) - set(t_grads))}")
    shapes = {n: np.shape(g) for n, g in grads.items() if np.shape(g) != params[n].shape}
    assert not shapes, f"gradients with the wrong shape: {shapes}"
    errors = {n: rel_error(grads[n], t_grads[n]) for n in t_grads}
    bad = {n: e for n, e in errors.items() if not e <= TOL}
    assert not bad, f"{case}: {len(bad)}/{len(errors)} gradients differ from torch, worst first: {_worst(bad)}"
    assert dx.shape == x.shape and rel_error(dx, t_dx) <= TOL, f"{case}: dx: {rel_error(dx, t_dx):.3g}"
    # the forward must not have changed its inputs
    assert all(np.array_equal(mine[n], params[n]) for n in params)


# ================================================================================================
# Single ops: attention and LayerNorm
# ================================================================================================
def _causal(T):
    return torch.ones(T, T, dtype=torch.bool).tril()   # query i may attend to keys 0..i


def _padding(T, rng):
    keep = rng.random((2, 1, 1, T)) < 0.6               # a key mask per example, broadcast over heads, queries
    keep[..., 0] = True                                 # every query keeps at least one key
    return keep


@pytest.mark.parametrize("mask_kind", ["none", "causal", "padding"])
def test_attention_matches_torch(mask_kind):
    rng = np.random.default_rng(3)
    B, k, T, Dh = 2, 3, 5, 4
    q, kk, v = (rng.standard_normal((B, k, T, Dh)) for _ in range(3))
    g = rng.standard_normal((B, k, T, Dh))                             # upstream gradient of out
    mask = {"none": None, "causal": attention.causal_mask(T), "padding": _padding(T, rng)}[mask_kind]
    if mask_kind == "causal":
        assert np.array_equal(np.asarray(mask, dtype=bool), _causal(T).numpy())

    out, weights, cache = attention.attention_forward(q.copy(), kk.copy(), v.copy(), mask=mask)
    dq, dk, dv = attention.attention_backward(g, cache)

    tq, tk, tv = (torch.tensor(a, requires_grad=True) for a in (q, kk, v))
    tmask = None if mask is None else torch.tensor(np.asarray(mask, dtype=bool))
    t_out = F.scaled_dot_product_attention(tq, tk, tv, attn_mask=tmask, is_causal=False)
    (t_out * torch.tensor(g)).sum().backward()
    with torch.no_grad():
        own_out, t_weights = t_attention(tq, tk, tv, tmask)
    if mask_kind == "causal":                                          # torch's own causal path agrees
        causal_out = F.scaled_dot_product_attention(tq, tk, tv, is_causal=True)
        assert rel_error(causal_out.detach().numpy(), t_out.detach().numpy()) < 1e-12
    assert rel_error(own_out.numpy(), t_out.detach().numpy()) < 1e-12

    errors = {"out": rel_error(out, t_out.detach().numpy()),
              "weights": rel_error(weights, t_weights.numpy()),
              "dq": rel_error(dq, tq.grad.numpy()), "dk": rel_error(dk, tk.grad.numpy()),
              "dv": rel_error(dv, tv.grad.numpy())}
    assert all(e <= TOL for e in errors.values()), f"attention, mask={mask_kind}: {_worst(errors)}"


@pytest.mark.parametrize("eps", [1e-6, 0.1])
def test_layernorm_matches_torch(eps):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 5, 7)) * 3.0 + 1.0
    gamma, beta = 1.0 + 0.3 * rng.standard_normal(7), 0.3 * rng.standard_normal(7)
    g = rng.standard_normal(x.shape)

    out, cache = layernorm.layernorm_forward(x.copy(), gamma.copy(), beta.copy(), eps=eps)
    dx, dgamma, dbeta = layernorm.layernorm_backward(g, cache)

    tx, tgamma, tbeta = (torch.tensor(a, requires_grad=True) for a in (x, gamma, beta))
    t_out = F.layer_norm(tx, (7,), tgamma, tbeta, eps)
    (t_out * torch.tensor(g)).sum().backward()

    errors = {"out": rel_error(out, t_out.detach().numpy()), "dx": rel_error(dx, tx.grad.numpy()),
              "dgamma": rel_error(dgamma, tgamma.grad.numpy()),
              "dbeta": rel_error(dbeta, tbeta.grad.numpy())}
    assert all(e <= TOL for e in errors.values()), f"layernorm, eps={eps}: {_worst(errors)}"
