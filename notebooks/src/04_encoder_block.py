# %% [markdown]
# # 04 · The encoder block: LayerNorm, GELU, the MLP, residuals (Eq 2–4)
#
# *An Image is Worth 16x16 Words*, §3.1, Eq 2–4. Terms and their Korean equivalents: [glossary (용어집)](../docs/glossary.md).
#
# $$
# \begin{aligned}
# \mathbf{z}'_\ell &= MSA(LN(\mathbf{z}_{\ell-1})) + \mathbf{z}_{\ell-1}, & \ell &= 1 \ldots L && \text{(2)}\\
# \mathbf{z}_\ell &= MLP(LN(\mathbf{z}'_\ell)) + \mathbf{z}'_\ell, & \ell &= 1 \ldots L && \text{(3)}\\
# \mathbf{y} &= LN(\mathbf{z}_L^0) && && \text{(4)}
# \end{aligned}
# $$
#
# Notebook 03 built $MSA$. Here come the other pieces: LayerNorm $LN$ with its $\gamma$ and $\beta$, the GELU nonlinearity,
# the $MLP$, the residual "$+\,\mathbf{z}$", a stack of $L$ blocks, and the readout $\mathbf{y}$ with the classification head.
# At the end, your Eq 1 and Eq 4 (`embed_forward`, `head_forward`) around the blocks written by hand here give the
# same logits as `vitnp.vit_forward`.

# %% [markdown]
# **Learning objectives.** After this notebook you can
#
# * build the pre-LN encoder block (Eq 2–3) from LayerNorm, multi-head attention, the GELU MLP and two residual connections;
# * stack L blocks and read y = LN(z_L⁰) (Eq 4) from the class token or by averaging the patches;
# * count the parameters of any ViT by hand.
#
# **학습 목표.** 이 노트북을 마치면
#
# * 층 정규화, 멀티헤드 어텐션, GELU MLP, 두 잔차 연결로 Pre-LN 인코더 블록(식 2–3)을 만든다;
# * 블록 L개를 쌓고 클래스 토큰으로, 또는 패치 평균으로 y = LN(z_L⁰)(식 4)을 읽는다;
# * 어떤 ViT든 파라미터 수를 손으로 센다.

# %%
import math

import matplotlib.pyplot as plt
import numpy as np

import vitnp
from vitnp.model import embed_forward, head_forward
from vitnp.ops.attention import msa_forward
from vitnp.ops.block import BLOCK_KEYS, encoder_block_forward, encoder_forward
from vitnp.ops.gelu import gelu_forward
from vitnp.ops.layernorm import layernorm_forward
from vitnp.ops.mlp import mlp_forward
from vitnp.ops.patches import patchify_forward
from vitnp.ops.tokens import readout_forward
from vitnp.course.notebook import diff, exercise, setup

FAST = setup(precision=3)   # nothing in this notebook is heavy


# %% [markdown]
# ## The tiny configuration and $\mathbf{z}_0$
#
# Same model as in notebooks 02–03: 12×12×3 images, $P = 4$, $T = 10$ tokens, $D = 16$, $k = 4$ heads, MLP width $M = 32$,
# $L = 2$ blocks, 10 classes, float64. The parameters are `init_params` plus noise, so that no $\gamma$ is exactly 1 and no
# bias exactly 0 (which would hide mistakes). $\mathbf{z}_0$ comes from the library's Eq 1 (checked in notebook 02).

# %%
cfg = vitnp.ViTConfig(image_size=12, patch_size=4, in_channels=3, num_classes=10, dim=16, depth=2, heads=4,
                      mlp_dim=32, dtype="float64")
rng = np.random.default_rng(0)
params = {k: v + 0.1 * rng.standard_normal(v.shape) for k, v in vitnp.init_params(cfg, seed=0).items()}
blocks = [{k: params[f"blocks.{l}.{k}"] for k in BLOCK_KEYS} for l in range(cfg.depth)]   # one dict per block
x = rng.standard_normal((2, *cfg.hw, cfg.in_channels))                  # (B, H, W, C)
B, T, D, M, L, heads, eps = len(x), cfg.num_tokens, cfg.dim, cfg.mlp_dim, cfg.depth, cfg.heads, cfg.ln_eps

z0, _ = embed_forward(params, x, cfg)                                   # Eq 1 (yours, notebook 02)
print(f"x {x.shape} -> z0 {z0.shape} = (B, T, D);  M = {M}, L = {L}, k = {heads}, LayerNorm ε = {eps}")
print("block parameters:", {k: blocks[0][k].shape for k in BLOCK_KEYS})

# %% [markdown]
# ## LayerNorm
#
# $$LN(\mathbf{x}) = \boldsymbol{\gamma} \odot \frac{\mathbf{x} - \mu}{\sqrt{\sigma^2 + \epsilon}} + \boldsymbol{\beta},
# \qquad \mu = \frac1D\sum_{d} x_d,\quad \sigma^2 = \frac1D\sum_d (x_d - \mu)^2,\quad \boldsymbol{\gamma}, \boldsymbol{\beta} \in \mathbb{R}^D$$
#
# Each token is normalised **on its own**, over its $D$ features: after the fraction every token has mean 0 and variance
# (almost) 1, whatever the scale of its input. Then $\boldsymbol{\gamma}$ (a learned scale per feature) and
# $\boldsymbol{\beta}$ (a learned shift) give the model back the freedom to choose a scale, including undoing the
# normalisation. $\epsilon = 10^{-6}$ (the reference code's value) keeps the division safe for a constant token.
#
# Why per token and not per batch, as BatchNorm does? The statistics of one token do not depend on the other images in the
# batch, so training and inference compute the same thing, batch size 1 works, and sequences of any length are fine. Why
# normalise at all? The residual stream $\mathbf{z}_\ell$ grows as blocks add to it; normalising the *input* of each branch
# keeps what $MSA$ and $MLP$ see in a fixed range.

# %%
ln_out, _ = layernorm_forward(z0, blocks[0]["ln1.gamma"], blocks[0]["ln1.beta"], eps)     # library: (B, T, D)


def layernorm_by_hand(x, gamma, beta, eps=1e-6):
    mu = x.mean(axis=-1, keepdims=True)                                    # (…, 1): one mean per token
    var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)                     # (…, 1): biased variance
    return gamma * (x - mu) / np.sqrt(var + eps) + beta


print(f"LN: {z0.shape} -> {ln_out.shape}, gamma, beta: {blocks[0]['ln1.gamma'].shape}")
d = diff(ln_out, layernorm_by_hand(z0, blocks[0]["ln1.gamma"], blocks[0]["ln1.beta"], eps))
print(f"LayerNorm: max |library − hand| = {d:.1e}")
assert d < 1e-12

x_hat, _ = layernorm_forward(z0, np.ones(D), np.zeros(D), eps)           # γ = 1, β = 0: the bare normalisation
print("per-token mean before:", z0[0].mean(-1)[:4], "…  after:", x_hat[0].mean(-1)[:4], "…")
print("per-token std  before:", z0[0].std(-1)[:4], "…  after:", x_hat[0].std(-1)[:4], "…")
sigma = z0.std(-1)
assert np.allclose(x_hat.mean(-1), 0, atol=1e-12)
assert np.allclose(x_hat.std(-1), sigma / np.sqrt(sigma**2 + eps), rtol=1e-12)   # = 1, up to the effect of ε
print(f"token 0 (σ = {sigma[0, 0]:.3f}) has std {x_hat[0, 0].std():.6f} after: σ/√(σ² + ε) is a little below 1 for small σ")

# %% [markdown]
# ## GELU, exact and tanh
#
# $$\text{GELU}(x) = x\,\Phi(x) = \tfrac12 x\big(1 + \operatorname{erf}(x/\sqrt2)\big)
# \;\approx\; \tfrac12 x\Big(1 + \tanh\!\big(\sqrt{2/\pi}\,(x + 0.044715\,x^3)\big)\Big)$$
#
# $\Phi$ is the standard normal CDF. GELU multiplies its input by the probability that a standard normal variable is
# below it: large positive inputs pass ($\Phi \approx 1$), large negative ones are switched off ($\Phi \approx 0$), and in
# between the switch is smooth. Unlike ReLU, whose gradient is exactly 0 for every negative input, GELU is smooth and its
# gradient for negative inputs is small but not zero (except at one point, the bottom of a small dip below zero near
# $x \approx -0.75$).
# BERT and GPT use it, and so does ViT's MLP.
#
# The tanh form comes from GELU's own paper (Hendrycks & Gimpel 2016, arXiv 1606.08415), offered as a faster
# approximation for when speed matters more than exactness; the ViT paper's JAX code uses it (flax's default), while PyTorch's
# `nn.GELU` and timm use the exact one. vitnp offers both (`ViTConfig(gelu='exact' | 'tanh')`); its exact form uses its own
# vectorised erf. The hand-written exact version below calls Python's `math.erf` one number at a time.

# %%
t = np.linspace(-6, 6, 2401)
g_exact, _ = gelu_forward(t, "exact")                                      # library
g_tanh, _ = gelu_forward(t, "tanh")
g_exact_hand = 0.5 * t * (1 + np.array([math.erf(v / math.sqrt(2)) for v in t]))
g_tanh_hand = 0.5 * t * (1 + np.tanh(math.sqrt(2 / math.pi) * (t + 0.044715 * t**3)))
d_exact, d_tanh = diff(g_exact, g_exact_hand), diff(g_tanh, g_tanh_hand)
print(f"exact GELU: max |library − hand (math.erf)| = {d_exact:.1e};  tanh GELU: max |library − hand| = {d_tanh:.1e}")
assert d_exact < 1e-8 and d_tanh < 1e-12
gap = np.abs(g_exact - g_tanh)
inside = np.abs(t) <= 5
print(f"max |exact − tanh| on [−5, 5] = {gap[inside].max():.1e} at x = {t[inside][gap[inside].argmax()]:+.2f}")
assert gap[inside].max() < 1e-3

fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
axes[0].plot(t, g_exact, label="GELU exact: x Φ(x)")
axes[0].plot(t, g_tanh, "--", label="GELU tanh approximation")
axes[0].plot(t, np.maximum(t, 0), ":", color="gray", label="ReLU, for comparison")
axes[0].set_xlim(-4, 4)
axes[0].set_ylim(-0.5, 4)
axes[0].set_title("GELU")
axes[0].set_xlabel("x")
axes[0].set_ylabel("GELU(x)")
axes[0].legend()
axes[1].plot(t, g_exact - g_tanh)
axes[1].axhline(0, color="gray", lw=0.5)
axes[1].set_title("exact − tanh approximation")
axes[1].set_xlabel("x")
axes[1].set_ylabel("difference")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## The MLP
#
# $$MLP(\mathbf{x}) = \text{GELU}(\mathbf{x}\mathbf{W}_1 + \mathbf{b}_1)\,\mathbf{W}_2 + \mathbf{b}_2,
# \qquad \mathbf{W}_1 \in \mathbb{R}^{D\times M},\; \mathbf{W}_2 \in \mathbb{R}^{M\times D}$$
#
# Two dense layers, widening to $M$ and back to $D$ ($M = 4D$ in every ViT of Table 1, e.g. 3072 = 4 · 768 for ViT-B).
# It acts on **each token separately**, with the same weights for every token: attention moved information *between*
# tokens; the MLP transforms what each token now holds. The check below shows the "separately": the MLP of one token alone
# equals that token's row of the MLP of the whole sequence.

# %%
bp = blocks[0]
mlp_out, _ = mlp_forward(ln_out, bp["mlp.W1"], bp["mlp.b1"], bp["mlp.W2"], bp["mlp.b2"], gelu=cfg.gelu)   # library


def gelu_by_hand(x):
    return 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))


def mlp_by_hand(x, W1, b1, W2, b2):
    h = gelu_by_hand(x @ W1 + b1)                                         # (…, M)
    return h @ W2 + b2                                                     # (…, D)


print(f"MLP: {ln_out.shape} -> hidden (…, {M}) -> {mlp_out.shape}")
d = diff(mlp_out, mlp_by_hand(ln_out, bp["mlp.W1"], bp["mlp.b1"], bp["mlp.W2"], bp["mlp.b2"]))
print(f"MLP: max |library − hand| = {d:.1e}")
assert d < 1e-8

one_token, _ = mlp_forward(ln_out[:, 3:4], bp["mlp.W1"], bp["mlp.b1"], bp["mlp.W2"], bp["mlp.b2"], gelu=cfg.gelu)
assert diff(one_token, mlp_out[:, 3:4]) < 1e-12                            # token 3 alone = token 3 in the sequence

# %% [markdown]
# ## Residual connections: Eq 2 and Eq 3
#
# $$\mathbf{z}'_\ell = MSA(LN(\mathbf{z}_{\ell-1})) + \mathbf{z}_{\ell-1} \quad (2)\qquad\qquad
# \mathbf{z}_\ell = MLP(LN(\mathbf{z}'_\ell)) + \mathbf{z}'_\ell \quad (3)$$
#
# Each sub-layer does not *replace* its input, it *adds* to it. Think of $\mathbf{z}$ as a stream that runs through the whole
# network, and of each $MSA$ and $MLP$ as a branch that reads a normalised copy of the stream and writes a correction back.
# Two reasons this matters:
#
# * **Gradients**: $\partial \mathbf{z}'_\ell / \partial \mathbf{z}_{\ell-1} = I + (\text{branch})$: the identity gives the
#   gradient a direct path from the loss to the first layer, however deep the network (notebook 05).
# * **A good default**: a branch that outputs zero leaves its input unchanged, so adding a block cannot make things worse
#   at the start; the network refines step by step.
#
# ViT puts $LN$ *before* each branch (pre-LN). The original Transformer normalised *after* the addition,
# $\mathbf{z}' = LN(\mathbf{z} + MSA(\mathbf{z}))$, so every path went through a LayerNorm; pre-LN keeps the identity path
# clean, which makes deep stacks easier to train.
#
# First Eq 2 and Eq 3 from the library's pieces, then one call of `encoder_block_forward`, then the hand-written block.

# %%
a, _ = layernorm_forward(z0, bp["ln1.gamma"], bp["ln1.beta"], eps)
a, A_lib, _ = msa_forward(a, bp["U_qkv"], bp["U_qkv_bias"], bp["U_msa"], bp["U_msa_bias"], heads)
z1_prime = a + z0                                                          # Eq 2: (B, T, D)
m, _ = layernorm_forward(z1_prime, bp["ln2.gamma"], bp["ln2.beta"], eps)
m, _ = mlp_forward(m, bp["mlp.W1"], bp["mlp.b1"], bp["mlp.W2"], bp["mlp.b2"], gelu=cfg.gelu)
z1 = m + z1_prime                                                          # Eq 3: (B, T, D)
block_out, block_A, _ = encoder_block_forward(z0, bp, heads, gelu=cfg.gelu, eps=eps)   # the library's block
assert diff(block_out, z1) == 0.0 and diff(block_A, A_lib) == 0.0
print(f"z0 {z0.shape} -> z'_1 {z1_prime.shape} -> z_1 {z1.shape};  attention weights {block_A.shape}")


def softmax_by_hand(S):
    e = np.exp(S - S.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def msa_by_hand(z, U_qkv, U_qkv_bias, U_msa, U_msa_bias, heads):
    """Eq 5–8 with a loop over heads (as in notebook 03): (B, T, D) -> (B, T, D), weights (B, k, T, T)."""
    D = z.shape[-1]
    Dh = D // heads
    outs, weights = [], []
    for h in range(heads):
        cols = [blk * D + h * Dh + np.arange(Dh) for blk in range(3)]     # head h's q, k, v columns
        q, k, v = (z @ U_qkv[:, c] + U_qkv_bias[c] for c in cols)
        A = softmax_by_hand(q @ k.transpose(0, 2, 1) / np.sqrt(Dh))
        outs.append(A @ v)
        weights.append(A)
    return np.concatenate(outs, axis=-1) @ U_msa + U_msa_bias, np.stack(weights, axis=1)


def block_by_hand(z, p, heads, eps=1e-6):
    """Eq 2 and Eq 3 with the hand-written pieces."""
    a, A = msa_by_hand(layernorm_by_hand(z, p["ln1.gamma"], p["ln1.beta"], eps),
                       p["U_qkv"], p["U_qkv_bias"], p["U_msa"], p["U_msa_bias"], heads)
    z_prime = a + z                                                                            # Eq 2
    m = mlp_by_hand(layernorm_by_hand(z_prime, p["ln2.gamma"], p["ln2.beta"], eps),
                    p["mlp.W1"], p["mlp.b1"], p["mlp.W2"], p["mlp.b2"])
    return m + z_prime, A, z_prime                                                             # Eq 3


z1_hand, A_hand, z1_prime_hand = block_by_hand(z0, bp, heads, eps)
d2, d3 = diff(z1_prime, z1_prime_hand), diff(z1, z1_hand)
print(f"Eq 2: max |library − hand| = {d2:.1e};  Eq 3: max |library − hand| = {d3:.1e};  "
      f"attention: {diff(block_A, A_hand):.1e}")
assert d2 < 1e-12 and d3 < 1e-8 and diff(block_A, A_hand) < 1e-12

# %% [markdown]
# (Eq 3's tolerance is $10^{-8}$ rather than $10^{-12}$ because the library's erf and `math.erf` differ by up to ~$10^{-9}$;
# everything else agrees to rounding.)
#
# ## Stacking $L$ blocks
#
# A block maps $(B, T, D)$ to $(B, T, D)$: the same shape in and out, which is exactly what makes blocks stackable. Each block
# has its own parameters. `encoder_forward` runs Eq 2–3 for $\ell = 1 \ldots L$ and returns $\mathbf{z}_L$ and the $L$
# attention maps.

# %%
zL, maps, _ = encoder_forward(z0, blocks, heads, gelu=cfg.gelu, eps=eps)   # library
z_hand, maps_hand = z0, []
for l, p in enumerate(blocks):                                              # ℓ = 1 … L
    z_hand, A_l, _ = block_by_hand(z_hand, p, heads, eps)
    maps_hand.append(A_l)
    print(f"after block {l + 1}: z_{l + 1} {z_hand.shape}, attention {A_l.shape}")
d = max([diff(zL, z_hand)] + [diff(a, b) for a, b in zip(maps, maps_hand)])
print(f"L = {L} blocks: max |library − hand| = {d:.1e}")
assert d < 1e-8

# %% [markdown]
# ## Eq 4 — the image representation $\mathbf{y} = LN(\mathbf{z}_L^0)$, and the head
#
# After the last block, a final LayerNorm, and the class token's row (token 0) is the image's representation
# $\mathbf{y} \in \mathbb{R}^D$. LayerNorm acts on each token separately, so normalising all tokens and keeping row 0 is the
# same as normalising row 0 alone. A linear **head** maps $\mathbf{y}$ to the $K$ class scores (logits):
#
# $$\text{logits} = \mathbf{y}\,\mathbf{W}_\text{head} + \mathbf{b}_\text{head}, \qquad \mathbf{W}_\text{head} \in \mathbb{R}^{D\times K}$$
#
# The paper pre-trains with an MLP head (one hidden layer with tanh) and fine-tunes with this single linear layer, initialised
# to zero; vitnp has the linear one.

# %%
y_hand = layernorm_by_hand(zL[:, 0], params["ln_f.gamma"], params["ln_f.beta"], eps)   # LN of row 0 only: (B, D)
head_hand = y_hand @ params["head.W"] + params["head.b"]                               # (B, K)
head, _ = head_forward(params, zL, cfg)              # yours: exercise head-forward (Eq 4 and the head in one call)
print(f"z_L {zL.shape} -> LN -> y = row 0 {y_hand.shape} -> logits {head.shape}")
dh = diff(head, head_hand)
print(f"Eq 4 and the head: max |head_forward − hand| = {dh:.1e}")
assert dh < 1e-12

# %% [markdown]
# > **Common misconception: $\hat{\mathbf{y}} = LN(\mathbf{z}_L^0)$ is the prediction.** Study notes sometimes write Eq 4 as
# > $\hat{\mathbf{y}} = LN(\mathbf{z}_L^0) \in \mathbb{R}^C$, as if the LayerNorm's output were the class prediction. It is
# > not: Eq 4's $\mathbf{y}$ (no hat) has $D$ numbers, the width of the model, and it is the image's *representation*.
# > The class scores come one step later, from the head: $\text{logits} = \mathbf{y}\mathbf{W}_\text{head} +
# > \mathbf{b}_\text{head} \in \mathbb{R}^K$, and the predicted probabilities are their softmax. The printout above shows
# > the two shapes side by side: `y` is (B, D), the logits are (B, K). This is also what makes transfer work
# > (notebook 09): the same $\mathbf{y}$ can feed a new head for other classes, or another task altogether.
# >
# > **흔한 오해: $\hat{\mathbf{y}} = LN(\mathbf{z}_L^0)$이 예측값이다.** 식 4의 $\mathbf{y}$는 모델 차원 $D$개의 수로 된 이미지
# > 표현입니다. 클래스 점수(로짓)는 그다음 헤드가 $\mathbf{y}\mathbf{W}_\text{head} + \mathbf{b}_\text{head} \in
# > \mathbb{R}^K$로 만듭니다.


# %% [markdown]
# ## The whole ViT
#
# Eq 1 (your `embed_forward`), the $L$ blocks written by hand above (Eq 2–3), then Eq 4 and the head (your
# `head_forward`), against `vitnp.vit_forward(params, x, cfg)` (exercise vit-forward): the logits and every layer's
# attention weights.

# %%
def vit_with_hand_blocks(params, x, cfg):
    z, _ = embed_forward(params, x, cfg)                                           # Eq 1 (yours)
    maps = []
    for l in range(cfg.depth):                                                     # Eq 2–3, by hand
        z, A, _ = block_by_hand(z, {k: params[f"blocks.{l}.{k}"] for k in BLOCK_KEYS}, cfg.heads, cfg.ln_eps)
        maps.append(A)
    return head_forward(params, z, cfg)[0], maps                                   # Eq 4 and the head (yours)


logits, cache = vitnp.vit_forward(params, x, cfg)
logits_hand, maps_hand = vit_with_hand_blocks(params, x, cfg)
d = max([diff(logits, logits_hand)] + [diff(a, b) for a, b in zip(cache["attention"], maps_hand)])
print(f"logits {logits.shape}: max |vit_forward − (embed_forward, blocks by hand, head_forward)| = {d:.1e}")
assert d < 1e-8

# %% [markdown]
# ## The head: class token or average pooling?
#
# The class token is one way to get a single vector out of $T$ tokens. The other is to drop the class token and average the
# $N$ patch tokens after the final LayerNorm (global average pooling, GAP), as CNNs usually do:
# $\mathbf{y} = \frac1N \sum_{i=1}^N LN(\mathbf{z}_L)_i$. The paper (Appendix D.3) finds both work equally well, but only
# if each gets its own learning rate; it keeps the class token to stay close to the original Transformer. In vitnp it is
# `ViTConfig(classifier='gap')`: no `x_class`, $T = N$, and $\mathbf{E}_{pos}$ has $N$ rows.
#
# And other heads for other tasks? $\mathbf{z}_L$ has one vector per patch, so the encoder can feed any head: the
# classifier reads one row, but a head applied to every patch token would give a prediction per patch (the idea behind
# segmentation with Transformers). The encoder does not change; only what reads its output does.

# %%
cfg_gap = cfg.replace(classifier="gap")
params_gap = {k: v + 0.1 * rng.standard_normal(v.shape) for k, v in vitnp.init_params(cfg_gap, seed=1).items()}
print("classifier='gap': T =", cfg_gap.num_tokens, "| E_pos", params_gap["E_pos"].shape, "| has x_class:",
      "x_class" in params_gap)
logits_gap, cache_gap = vitnp.vit_forward(params_gap, x, cfg_gap)
logits_gap_hand, _ = vit_with_hand_blocks(params_gap, x, cfg_gap)
d = diff(logits_gap, logits_gap_hand)
print(f"GAP: max |vit_forward − hand| = {d:.1e}")
assert d < 1e-8

# %% [markdown]
# **Summary.** One encoder block is $LN \to MSA \to +$ then $LN \to MLP \to +$ (Eq 2–3); $L$ of them in a row keep the shape
# $(B, T, D)$; Eq 4 normalises and reads the class token (or averages the patches) and a linear head gives the logits. The
# blocks written only with NumPy, between your Eq 1 and Eq 4, matched `vitnp.vit_forward` for both readouts. Next: [05_backprop](05_backprop.ipynb), the
# backward pass of every one of these steps.
#
# **요약.** 인코더 블록 하나는 $LN \to MSA \to +$, 그다음 $LN \to MLP \to +$입니다(식 2–3). 블록 $L$개를 이어도 모양 $(B, T, D)$는 그대로이고, 식 4는 정규화한 뒤 클래스 토큰을 읽고(또는 패치를 평균하고) 선형 헤드가 로짓을 냅니다. 여러분의 식 1과 식 4 사이에 NumPy만으로 쓴 블록들이 두 읽기 방식 모두에서 `vitnp.vit_forward`와 일치했습니다. 다음은 05, 이 모든 단계의 역전파입니다.

# %% [markdown]
# ## Exercises
#
# Three exercises: the parameter counts of the paper's Table 1 by hand, and the other readout. In the student edition
# (`python -m vitnp course build`) the model answers are cut out; the locked cell after each code exercise fails until
# your answer is right.
#
# * **Exercise nb04-table1** (3 points) — count the parameters of a ViT by hand, group by group, and check them on
#   Table 1's Base, Large and Huge and on the later Ti and S.
#   *ViT의 파라미터를 묶음별로 손으로 세고, Table 1의 Base, Large, Huge와 이후의 Ti, S로 확인하세요.*
# * **Exercise nb04-q-table1** (2 points) — inline question: the count of one block as a polynomial in $D$, which part
#   of ViT-B/16 the blocks hold, and Table 1's 307M for ViT-L.
#   *인라인 질문: 블록 하나의 파라미터 수를 $D$의 다항식으로, ViT-B/16에서 블록이 차지하는 몫, ViT-L의 307M.*
# * **Exercise nb04-gap-readout** (2 points) — the readout of `classifier='gap'`, by hand.
#   *`classifier='gap'`의 읽기(평균 풀링)를 손으로 쓰세요.*

# %% [markdown]
# **Exercise nb04-table1** (3 points). Write `vit_param_groups(L, D, M, P, C, K, N, classifier='token')`: the number of
# parameters of a ViT with learned $\mathbf{E}_{pos}$ and a linear head, in three groups: `'embedding'` (Eq 1:
# $\mathbf{E}$ with its bias, $\mathbf{x}_\text{class}$, $\mathbf{E}_{pos}$), `'blocks'` (all $L$ encoder blocks,
# Eq 2–3) and `'head'` (the final LayerNorm of Eq 4 and the linear head). $N$ is the number of patches; with
# `classifier='gap'` there is no class token. Count from the shapes in this notebook and in notebooks 02–03, not
# with `vitnp.param_shapes`.
#
# *ViT의 파라미터를 묶음별로 손으로 세고, Table 1의 Base, Large, Huge와 이후의 Ti, S로 확인하세요.*

# %% nbgrader={"grade": false, "grade_id": "nb04-table1", "locked": false, "schema_version": 3, "solution": true}
def vit_param_groups(L, D, M, P, C, K, N, classifier="token"):
    """{'embedding': …, 'blocks': …, 'head': …}: the parameter counts of a plain ViT, by group."""
    ### BEGIN SOLUTION
    T = N + 1 if classifier == "token" else N                       # tokens: E_pos has one row per token
    embedding = (P * P * C * D + D) + (D if classifier == "token" else 0) + T * D   # E and bias, x_class, E_pos
    block = (2 * D + 2 * D                                          # two LayerNorms: γ and β each
             + 3 * D * D + 3 * D                                    # U_qkv and its bias (Eq 5)
             + D * D + D                                            # U_msa and its bias (Eq 8)
             + D * M + M + M * D + D)                               # MLP: W1, b1, W2, b2 (Eq 3)
    if M == 4 * D:                                                  # Table 1's MLP width: nb04-q-table1's polynomial
        assert block == 12 * D * D + 13 * D
    head = 2 * D + D * K + K                                        # final LayerNorm, head W and b
    return {"embedding": embedding, "blocks": L * block, "head": head}
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "nb04-table1-test", "locked": true, "points": 3, "schema_version": 3, "solution": false}
with exercise("nb04-table1"):
    def library_groups(c):
        """The same three groups, summed from vitnp.param_shapes."""
        sizes = {k: int(np.prod(s)) for k, s in vitnp.param_shapes(c).items()}
        blocks_t = sum(v for k, v in sizes.items() if k.startswith("blocks."))
        head_t = sum(sizes[k] for k in ("ln_f.gamma", "ln_f.beta", "head.W", "head.b"))
        return {"embedding": sum(sizes.values()) - blocks_t - head_t, "blocks": blocks_t, "head": head_t}


    # Table 1's B, L and H/14, and the smaller Ti and S of later work (DeiT; the reference code's model list)
    table1 = {"Ti": 5_717_416, "S": 22_050_664, "B": 86_567_656, "L": 304_326_632, "H/14": 632_045_800}
    for name, c in [(f"ViT-{v}", vitnp.ViTConfig.variant(v)) for v in (*table1, "B/32")] + [("this notebook's", cfg),
                                                                                            ("its 'gap' twin", cfg_gap)]:
        groups = vit_param_groups(c.depth, c.dim, c.mlp_dim, c.patch_size, c.in_channels, c.num_classes,
                                  c.num_patches, c.classifier)
        assert groups == library_groups(c), f"{name}: {groups} != {library_groups(c)}"
        print(f"{name:<16} {sum(groups.values()):>12,} parameters")
    assert all(sum(vit_param_groups(c.depth, c.dim, c.mlp_dim, c.patch_size, c.in_channels, c.num_classes,
                                    c.num_patches).values()) == n
               for c, n in ((vitnp.ViTConfig.variant(v), n) for v, n in table1.items()))

# %% [markdown] nbgrader={"grade": true, "grade_id": "nb04-q-table1", "locked": false, "points": 2, "schema_version": 3, "solution": true}
# **Exercise nb04-q-table1** (2 points). With the MLP width $M = 4D$ of every Table 1 model, write the parameter count
# of one encoder block as a polynomial in $D$. Which share of ViT-B/16's 86,567,656 parameters do its 12 blocks hold,
# and where are the rest? Table 1 lists ViT-L with 307M parameters: what is the exact count at 224×224 with 1000
# classes?
#
# *인라인 질문: 블록 하나의 파라미터 수를 $D$의 다항식으로, ViT-B/16에서 블록이 차지하는 몫, ViT-L의 307M.*
#
# ### BEGIN SOLUTION
# Per block: two LayerNorms $4D$; $\mathbf{U}_{qkv}$ and its bias $3D^2 + 3D$; $\mathbf{U}_{msa}$ and its bias
# $D^2 + D$; the MLP $DM + M + MD + D = 8D^2 + 5D$. In all
# $$12D^2 + 13D \quad\text{per block},$$
# two thirds of it in the MLP. For ViT-B ($D = 768$) that is 7,087,872, and the 12 blocks hold 85,054,464 parameters,
# 98.25 % of 86,567,656. The rest: $\mathbf{E}$ with its bias $16 \cdot 16 \cdot 3 \cdot 768 + 768 = 590{,}592$,
# $\mathbf{x}_\text{class}$ 768, $\mathbf{E}_{pos}$ $197 \cdot 768 = 151{,}296$ (embedding: 742,656), the final
# LayerNorm 1,536 and the head $768 \cdot 1000 + 1000 = 769{,}000$. Since the count grows as $12LD^2$, the patch size
# and the image size hardly matter: ViT-B/32 has 88,224,232, a larger $\mathbf{E}$ (patch vectors four times longer)
# and a shorter $\mathbf{E}_{pos}$ (50 tokens instead of 197). ViT-L/16
# at 224×224 with 1000 classes has exactly 304,326,632 parameters; Table 1's "307M" is about 1 % more than this
# configuration's count.
# ### END SOLUTION

# %% [markdown]
# **Exercise nb04-gap-readout** (2 points). With `classifier='gap'` (Appendix D.3) there is no class token: Eq 4
# becomes the mean of the $N$ output tokens after the final LayerNorm. Write `gap_readout(zL, gamma, beta, eps)`:
# $\mathbf{y} = \frac1N\sum_i LN(\mathbf{z}_L)_i$ with the hand-written `layernorm_by_hand` of this notebook (the
# LayerNorm first, then the mean). The test runs the 'gap' model of the last section with it and compares the logits.
#
# *`classifier='gap'`의 읽기(평균 풀링)를 손으로 쓰세요.*

# %% nbgrader={"grade": false, "grade_id": "nb04-gap-readout", "locked": false, "schema_version": 3, "solution": true}
def gap_readout(zL, gamma, beta, eps=1e-6):
    """y = mean over the N tokens of LN(z_L): (B, N, D) -> (B, D)."""
    ### BEGIN SOLUTION
    return layernorm_by_hand(zL, gamma, beta, eps).mean(axis=1)      # normalise each token, then average
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "nb04-gap-readout-test", "locked": true, "points": 2, "schema_version": 3, "solution": false}
with exercise("nb04-gap-readout"):
    x_p_gap, _ = patchify_forward(x, cfg_gap.patch_size)
    z0_gap = x_p_gap @ params_gap["E"] + params_gap["E_bias"] + params_gap["E_pos"]        # Eq 1 without x_class: (B, N, D)
    blocks_gap = [{k: params_gap[f"blocks.{l}.{k}"] for k in BLOCK_KEYS} for l in range(cfg_gap.depth)]
    zL_gap, _, _ = encoder_forward(z0_gap, blocks_gap, heads, gelu=cfg_gap.gelu, eps=eps)  # Eq 2–3
    y_gap = gap_readout(zL_gap, params_gap["ln_f.gamma"], params_gap["ln_f.beta"], eps)
    y_lib, _ = readout_forward(layernorm_forward(zL_gap, params_gap["ln_f.gamma"], params_gap["ln_f.beta"], eps)[0], "gap")
    logits_t = y_gap @ params_gap["head.W"] + params_gap["head.b"]
    print(f"y {y_gap.shape}: max |hand − readout_forward| = {diff(y_gap, y_lib):.1e};  "
          f"logits: max |hand − vit_forward| = {diff(logits_t, logits_gap):.1e}")
    assert diff(y_gap, y_lib) < 1e-12 and diff(logits_t, logits_gap) < 1e-12
