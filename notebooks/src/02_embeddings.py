# %% [markdown]
# # 02 · Embeddings: from patches to the first token sequence $\mathbf{z}_0$ (Eq 1)
#
# *An Image is Worth 16x16 Words*, §3.1, Eq 1. Terms and their Korean equivalents: [glossary (용어집)](../docs/glossary.md).
#
# $$\mathbf{z}_0 = [\,\mathbf{x}_\text{class};\; \mathbf{x}_p^1\mathbf{E};\; \mathbf{x}_p^2\mathbf{E};\; \cdots;\; \mathbf{x}_p^N\mathbf{E}\,] + \mathbf{E}_{pos},
# \qquad \mathbf{E} \in \mathbb{R}^{(P^2 \cdot C) \times D},\quad \mathbf{E}_{pos} \in \mathbb{R}^{(N+1) \times D}$$
#
# Eq 1 has three parts, and this notebook takes them one at a time:
# 1. the **linear projection** $\mathbf{E}$ maps every flattened patch to a $D$-dimensional token, and is the same thing as a
#    convolution with kernel size and stride $P$;
# 2. the **class token** $\mathbf{x}_\text{class}$ is a learned vector put in front of the sequence;
# 3. the **position embeddings** $\mathbf{E}_{pos}$ say where each patch was: learned (the paper) or a fixed 2-D sine-cosine table.
#
# Each part: the equation, the `vitnp` call, and an `assert` that a hand-written NumPy version gives the same numbers.

# %% [markdown]
# **Learning objectives.** After this notebook you can
#
# * compute Eq 1 step by step: the linear projection E (a stride-P convolution in disguise), the class token and the position embeddings;
# * say what each of them carries and how it enters z₀ (concatenated or added);
# * compare learned 1-D position embeddings with a fixed 2-D sine-cosine table.
#
# **학습 목표.** 이 노트북을 마치면
#
# * 식 1을 단계별로 계산한다: 선형 투영 E(보폭 P인 합성곱과 같음), 클래스 토큰, 위치 임베딩;
# * 각각이 무엇을 담고 z₀에 어떻게 들어가는지(이어 붙이는지, 더하는지) 말한다;
# * 학습되는 1차원 위치 임베딩과 고정된 2차원 사인-코사인 위치 임베딩을 비교한다.

# %%

import matplotlib.pyplot as plt
import numpy as np

import vitnp
from vitnp.io.original import to_jax
from vitnp.model import embed_forward
from vitnp.ops.block import BLOCK_KEYS, encoder_block_forward, encoder_forward
from vitnp.ops.linear import linear_forward
from vitnp.ops.patches import patchify_forward
from vitnp.ops.posemb import pos_embed_forward, sincos_2d
from vitnp.ops.tokens import class_token_forward
from vitnp.course.notebook import diff, exercise, setup

FAST = setup(precision=4)   # nothing in this notebook is heavy


# %% [markdown]
# ## A tiny configuration
#
# Every shape below comes from this config: 12×12 RGB images, $P = 4$, so a 3×3 grid of $N = 9$ patches of
# $P^2 C = 48$ numbers, width $D = 16$, and a batch of $B = 2$ images. We work in float64 so that "equal" can mean equal
# to about $10^{-15}$.
#
# `vitnp.init_params` initialises like the paper's code, which sets the class token, the head and most biases to
# **zero** (the MLP biases are not quite zero: they are drawn from $\mathcal{N}(0, (10^{-6})^2)$). A check against
# zeros or near-zeros proves little (a forgotten bias would pass), so we add random noise to every parameter first.

# %%
cfg = vitnp.ViTConfig(image_size=12, patch_size=4, in_channels=3, num_classes=10, dim=16, depth=2, heads=4,
                      mlp_dim=32, dtype="float64")
rng = np.random.default_rng(0)
init = vitnp.init_params(cfg, seed=0)
zero = [k for k in ("x_class", "E_bias", "blocks.0.U_qkv_bias", "blocks.0.U_msa_bias", "head.W", "head.b")
        if not init[k].any()]
mlp_b = max(float(np.abs(init[f"blocks.{i}.mlp.{b}"]).max()) for i in range(cfg.depth) for b in ("b1", "b2"))
print("all zero at initialisation:", ", ".join(zero), f"(and every block's);  largest |MLP bias| {mlp_b:.1e}")
params = {k: v + 0.1 * rng.standard_normal(v.shape) for k, v in init.items()}
x = rng.standard_normal((2, *cfg.hw, cfg.in_channels))                 # (B, H, W, C)
B, (H, W), C, P, D, N = len(x), cfg.hw, cfg.in_channels, cfg.patch_size, cfg.dim, cfg.num_patches
print(f"B={B}  H×W×C={H}×{W}×{C}  P={P}  grid={cfg.grid}  N={N}  P²C={cfg.patch_dim}  D={D}  T=N+1={cfg.num_tokens}")
for name in ("E", "E_bias", "x_class", "E_pos"):
    print(f"  params[{name!r}]: {params[name].shape}")

# %% [markdown]
# ## 1. The linear projection $\mathbf{E}$
#
# $$\mathbf{x}_p^i \mathbf{E} + \mathbf{b}, \qquad \mathbf{x}_p^i \in \mathbb{R}^{P^2 C},\; \mathbf{E} \in \mathbb{R}^{(P^2 C)\times D}
# \quad\Longrightarrow\quad \text{one token } \in \mathbb{R}^{D} \text{ per patch}$$
#
# The Transformer keeps one width $D$ all the way through, so each patch vector (48 numbers here, 768 for ViT-B/16) is
# mapped to $D$ numbers by one learned matrix. The paper writes $\mathbf{x}_p^i\mathbf{E}$; the reference code also adds a
# bias $\mathbf{b}$ (`E_bias`), and so does vitnp. The **same** $\mathbf{E}$ serves every patch, wherever it sits: a
# patch of sky in the corner and one in the centre get the same treatment. `vitnp.ops.linear.linear_forward` does it for all
# $B \cdot N$ patches in one matrix product.

# %%
x_p, _ = patchify_forward(x, P)                                          # (B, N, P²C)
tokens, _ = linear_forward(x_p, params["E"], params["E_bias"])          # library: (B, N, D)
tokens_hand = np.array([[x_p[b, i] @ params["E"] + params["E_bias"]      # one patch at a time
                         for i in range(N)] for b in range(B)])
print(f"x {x.shape} -> x_p {x_p.shape} -> x_p E + b {tokens.shape}")
print("max |library − hand| =", f"{diff(tokens, tokens_hand):.1e}")
assert diff(tokens, tokens_hand) < 1e-12

# %% [markdown]
# > **Common misconception: "$\mathbf{E}$ maps each patch to a lower-dimensional vector."** Study notes often call the
# > projection a compression. It is a change of basis to the model's width $D$, and $D$ is set by the model, not by the
# > patch: for the paper's Table 1 models the token is as wide as the patch or wider. ViT-B/16 maps $P^2C = 16 \cdot 16
# > \cdot 3 = 768$ numbers to $D = 768$; ViT-L/16 maps 768 to 1,024; ViT-H/14 maps 588 to 1,280. Only large patches
# > or small models shrink the patch (B/32: 3,072 → 768; the later Ti/16: 768 → 192). The cell below prints them.
# >
# > **흔한 오해: "$\mathbf{E}$는 패치를 더 낮은 차원으로 줄인다."** $\mathbf{E}$(패치 임베딩, 선형 투영)는 패치를 모델 차원
# > $D$로 옮길 뿐이며, 논문 Table 1의 모델에서는 $D$가 패치 길이 $P^2C$와 같거나 더 큽니다 (ViT-B/16: 768 → 768).

# %%
print(f"{'model':>9} {'P²C':>6} {'D':>6}  E maps the patch to")
for name in ("B/16", "L/16", "H/14", "B/32", "Ti/16"):
    c = vitnp.ViTConfig.variant(name)
    change = "the same width" if c.dim == c.patch_dim else ("more" if c.dim > c.patch_dim else "fewer") + " numbers"
    print(f"{'ViT-' + name:>9} {c.patch_dim:>6,} {c.dim:>6,}  {change}")
print(f"{'ours':>9} {cfg.patch_dim:>6,} {cfg.dim:>6,}  (this notebook's tiny model)")
assert vitnp.ViTConfig.variant("B/16").patch_dim == vitnp.ViTConfig.variant("B/16").dim == 768

# %% [markdown]
# ### Why $\mathbf{E}$ is a convolution with kernel $P$ and stride $P$
#
# A convolution slides a kernel $K \in \mathbb{R}^{P \times P \times C \times D}$ over the image; output channel $d$ at grid
# position $(i, j)$ is
#
# $$\text{conv}(\mathbf{x})_{i,j,d} = \sum_{u=0}^{P-1}\sum_{v=0}^{P-1}\sum_{c=0}^{C-1} x_{\,iS+u,\; jS+v,\; c}\; K_{u,v,c,d} + b_d .$$
#
# With stride $S = P$ the windows do not overlap, and window $(i, j)$ is exactly patch number $i \cdot (W/P) + j$. Its sum over
# $(u, v, c)$ is a dot product of the patch, flattened in (row, column, channel) order, with the kernel flattened the same
# way. So **$\mathbf{E}$ is the kernel, reshaped**: $K = \mathbf{E}$`.reshape(P, P, C, D)`. The paper's code implements
# the projection as exactly this convolution, and its checkpoints store `embedding/kernel` with shape $(P, P, C, D)$;
# `vitnp.io.original.to_jax` produces that array from our $\mathbf{E}$.
#
# Below: the convolution written with explicit loops over output positions, compared with the library's patch tokens.
# Then a second view: a stride-1 convolution computes every window, and keeping every $P$-th output gives the same numbers again.

# %%
K = params["E"].reshape(P, P, C, D)                                      # the conv kernel (height, width, in, out)
gh, gw = cfg.grid
conv = np.zeros((B, gh, gw, D))
for i in range(gh):
    for j in range(gw):
        window = x[:, i * P:i * P + P, j * P:j * P + P, :]               # (B, P, P, C)
        conv[:, i, j] = np.tensordot(window, K, axes=([1, 2, 3], [0, 1, 2])) + params["E_bias"]
print(f"stride-{P} conv: {x.shape} -> {conv.shape} (B, H/P, W/P, D);  as a sequence: {conv.reshape(B, N, D).shape}")
print("max |library tokens − conv| =", f"{diff(tokens, conv.reshape(B, N, D)):.1e}")
assert diff(tokens, conv.reshape(B, N, D)) < 1e-12

windows = np.lib.stride_tricks.sliding_window_view(x, (P, P), axis=(1, 2))   # (B, H−P+1, W−P+1, C, P, P)
conv1 = np.einsum("bijcuv,uvcd->bijd", windows, K) + params["E_bias"]         # stride 1: (B, 9, 9, D)
print(f"stride-1 conv: {conv1.shape}; every {P}th output: {conv1[:, ::P, ::P].shape}")
assert diff(conv1[:, ::P, ::P], conv) < 1e-12

kernel = to_jax(params, cfg)["embedding/kernel"]                          # the original checkpoint's layout
print("checkpoint 'embedding/kernel':", kernel.shape, " == E.reshape(P, P, C, D):", np.array_equal(kernel, K))
assert np.array_equal(kernel, K)

# %% [markdown]
# The same idea gives the paper's **hybrid** model (§3.1): instead of raw pixels, take the feature map of a CNN
# (shape $(B, H', W', C')$) and use patches of size $P = 1$, so every feature-map position becomes one token. With $P = 1$,
# flattening is just "list the positions": a 3×3 map with 64 channels becomes 9 tokens of 64 numbers.

# %%
feature_map = rng.standard_normal((B, 3, 3, 64))                          # stands in for a CNN's output
hybrid_tokens, _ = patchify_forward(feature_map, 1)
print("hybrid: feature map", feature_map.shape, "-> P = 1 patches", hybrid_tokens.shape)
assert np.array_equal(hybrid_tokens, feature_map.reshape(B, 9, 64))

# %% [markdown]
# ## 2. The class token $\mathbf{x}_\text{class}$
#
# $$[\,\mathbf{x}_\text{class};\; \mathbf{x}_p^1\mathbf{E};\; \cdots;\; \mathbf{x}_p^N\mathbf{E}\,] \in \mathbb{R}^{(N+1)\times D}$$
#
# BERT puts a special `[class]` token in front of a sentence; ViT does the same. $\mathbf{x}_\text{class} \in \mathbb{R}^D$ is
# a learned vector, **the same for every image**, that belongs to no patch. Through the $L$ encoder layers it attends to all
# the patches, and its final state, $\mathbf{z}_L^0$, is the image's representation (Eq 4, notebook 04). Why not just
# use one of the patches? Every patch token also has to describe its own patch; the class token is free to become a
# summary. (The alternative, averaging all patch tokens at the end, is in notebook 04.)

# %%
z, _ = class_token_forward(tokens, params["x_class"])                    # library: (B, N+1, D)
z_hand = np.concatenate([np.tile(params["x_class"], (B, 1, 1)), tokens], axis=1)   # (B, 1, D) ++ (B, N, D)
print(f"{tokens.shape} -> {z.shape}: token 0 is x_class, tokens 1…{N} are the patches")
print("max |library − hand| =", f"{diff(z, z_hand):.1e}")
assert diff(z, z_hand) < 1e-12
assert np.array_equal(z[0, 0], z[1, 0])                                   # one vector shared by all images

# %% [markdown]
# ## 3. Position embeddings $\mathbf{E}_{pos}$
#
# ### Why they are needed: attention does not know the order
#
# Self-attention (notebook 03) compares every token with every other, and nothing in it depends on *where* a token is in
# the sequence. Shuffle the patch tokens, and the encoder's outputs come out shuffled the same way, otherwise unchanged
# ("permutation equivariance"). So without position information the model sees a bag of patches: a jigsaw puzzle with no
# picture on the box. We check this with a real encoder block from `vitnp`, then add $\mathbf{E}_{pos}$ and see the
# symmetry break.

# %%
block = {k: params[f"blocks.0.{k}"] for k in BLOCK_KEYS}
perm = np.concatenate([[0], 1 + rng.permutation(N)])                      # keep the class token first, shuffle patches
out, _, _ = encoder_block_forward(z, block, cfg.heads)
out_shuffled, _, _ = encoder_block_forward(z[:, perm], block, cfg.heads)
print("without E_pos: max |block(shuffled z) − shuffled block(z)| =", f"{diff(out_shuffled, out[:, perm]):.1e}")
assert diff(out_shuffled, out[:, perm]) < 1e-12                           # shuffling commutes with the block

z_pos = z + params["E_pos"]
out, _, _ = encoder_block_forward(z_pos, block, cfg.heads)
out_shuffled, _, _ = encoder_block_forward(z[:, perm] + params["E_pos"], block, cfg.heads)
print("with E_pos:    max |block(shuffled z + E_pos) − shuffled block(z + E_pos)| =", f"{diff(out_shuffled, out[:, perm]):.2f}")
assert diff(out_shuffled, out[:, perm]) > 1e-3                            # now the position matters

# %% [markdown]
# ### Learned 1-D position embeddings (the paper's choice)
#
# $$\mathbf{z}_0 = \mathbf{z} + \mathbf{E}_{pos}, \qquad \mathbf{E}_{pos} \in \mathbb{R}^{(N+1)\times D}$$
#
# One learned row per token position, added (not concatenated) to the tokens, broadcast over the batch. "1-D" because each
# position is just a number $0 \dots N$: nothing tells the model that patch 1 and patch $1 + W/P$ are vertical
# neighbours; it has to learn that from data. In the paper's large models it does: the trained embeddings of nearby
# patches are similar, and rows and columns show up (paper Fig 7, centre). Our small model of notebook 07 learns less:
# patches in the same row become similar, patches in the same column hardly do. The reference code initialises
# $\mathbf{E}_{pos}$ from $\mathcal{N}(0, 0.02^2)$.

# %%
z0, _ = pos_embed_forward(z, params["E_pos"])                            # library: (B, N+1, D)
z0_hand = z + params["E_pos"][None, :, :]                                  # (1, N+1, D) broadcast over B
print(f"z {z.shape} + E_pos {params['E_pos'].shape} -> z0 {z0.shape}")
print("max |library − hand| =", f"{diff(z0, z0_hand):.1e}")
assert diff(z0, z0_hand) < 1e-12

# %% [markdown]
# > **Common misconception: the class token and the position embedding are the same kind of thing, or swapped.**
# > Both are learned and both are added early, so study notes sometimes define one with the other's words. They
# > differ in what they are and in how they enter Eq 1:
# >
# > | | $\mathbf{x}_\text{class}$ (class token) | $\mathbf{E}_{pos}$ (position embeddings) |
# > |---|---|---|
# > | shape | $(D,)$: one vector | $(N+1, D)$: one row per token position |
# > | how it enters Eq 1 | **concatenated**: it becomes an extra token, row 0 | **added** to every token, the class token included |
# > | what it carries | no input at all: a slot that collects a summary of the image, read out by Eq 4 | *where* each token is; row $i$ is the same for every image |
# > | sequence length | $N \to N + 1$ | unchanged |
# >
# > The check above shows both at once: `z` has $N + 1$ rows because of $\mathbf{x}_\text{class}$, and
# > $\mathbf{E}_{pos}$ has $N + 1$ rows because it also gives the class token a position (row 0).
# >
# > **흔한 오해: 클래스 토큰과 위치 임베딩을 같은 것으로, 또는 서로 바꿔 정의한다.** 클래스 토큰 $\mathbf{x}_\text{class}$는
# > 벡터 하나로, 시퀀스 맨 앞에 **이어 붙여** 토큰 수를 $N+1$로 늘립니다. 위치 임베딩 $\mathbf{E}_{pos}$는 위치마다 한 행인
# > $(N+1, D)$ 표로, 모든 토큰(클래스 토큰 포함)에 **더해집니다**.


# %% [markdown]
# ### Fixed 2-D sine-cosine position embeddings
#
# The alternative needs no parameters. Give the patch at grid row $r$ and column $c$ the vector
#
# $$\text{PE}(r, c) = \big[\sin(r\,\omega_j)\big]_j \,\|\, \big[\cos(r\,\omega_j)\big]_j \,\|\,
# \big[\sin(c\,\omega_j)\big]_j \,\|\, \big[\cos(c\,\omega_j)\big]_j, \qquad
# \omega_j = 10000^{-j/(D/4)},\; j = 0, \dots, \tfrac{D}{4} - 1,$$
#
# i.e. half of the $D$ dimensions encode the row and half the column, each with sines and cosines at geometrically spaced
# frequencies (the 1-D scheme of the original Transformer, once per axis); the class token gets a row of zeros. Low
# frequencies tell far-apart positions apart, high ones neighbours. Because $\sin$ and $\cos$ of $(r + k)\omega$ are a
# fixed rotation of those of $r\omega$, a shift by $k$ rows is the same linear map everywhere in the image. `vitnp` computes the
# table with `sincos_2d(cfg)`; below, a direct loop over the tokens.

# %%
def sincos_2d_by_hand(grid, D, class_token=True):
    """(T, D) table: token 1 + r·gw + c gets sin/cos of r in the first D/2 columns and of c in the last D/2."""
    gh, gw = grid
    omega = np.array([10000.0 ** (-j / (D // 4)) for j in range(D // 4)])   # (D/4,)
    rows = [] if not class_token else [np.zeros(D)]
    for r in range(gh):
        for c in range(gw):
            rows.append(np.concatenate([np.sin(r * omega), np.cos(r * omega), np.sin(c * omega), np.cos(c * omega)]))
    return np.array(rows)


table = sincos_2d(cfg)                                                     # library: (T, D)
print("sincos_2d(cfg):", table.shape, "(T, D)")
print("max |library − hand| =", f"{diff(table, sincos_2d_by_hand(cfg.grid, D)):.1e}")
assert diff(table, sincos_2d_by_hand(cfg.grid, D)) < 1e-12

cfg_sincos = cfg.replace(pos_embedding="sincos")                           # the model then adds the table
assert "E_pos" not in vitnp.param_shapes(cfg_sincos)                        # … and has no E_pos parameter
print("learned E_pos parameters:", params["E_pos"].size, "| sine-cosine: 0")

# %% [markdown]
# ### Seeing them
#
# To get a picture with some detail we use a bigger grid: the ImageNet setting of ViT-B/16 (224×224, $P = 16$, a 14×14 grid)
# with $D = 64$. Left: the table itself, one row per token. Right: for a few patches, the cosine similarity of that patch's
# embedding with the embedding of every other patch, drawn on the 14×14 grid (the same picture as the paper's Fig 7, centre,
# which shows it for the *learned* embeddings of a trained model). The fixed table has the 2-D structure built in: similar
# embeddings for patches in the same row or column, and for neighbours. The learned table at initialisation is random
# noise: the structure in Fig 7 is learned. The two rows have different colour ranges, each printed in its titles: the
# fixed table's similarities are all fairly high (its lowest value is the one printed), so on a common scale its
# row-and-column pattern would be hard to see; read the two rows by their shapes, not by comparing their colours.

# %%
big = vitnp.ViTConfig(image_size=224, patch_size=16, in_channels=3, dim=64, heads=4, mlp_dim=128)
fixed = sincos_2d(big)[1:].astype(np.float64)                              # (196, 64): the patches' rows
learned0 = vitnp.init_params(big, seed=0)["E_pos"][1:].astype(np.float64)  # (196, 64) at initialisation


def cosine_grid(table, i, grid):
    """Cosine similarity of row i with every row, reshaped to the patch grid."""
    unit = table / np.linalg.norm(table, axis=1, keepdims=True)
    return (unit @ unit[i]).reshape(grid)


fig = plt.figure(figsize=(13, 5.4))
gs = fig.add_gridspec(2, 4, width_ratios=[1.5, 1, 1, 1])
ax = fig.add_subplot(gs[:, 0])
im = ax.imshow(sincos_2d(big), aspect="auto", cmap="RdBu_r", vmin=-1, vmax=1)
ax.set_title("sine-cosine table sincos_2d: (197, 64)")
ax.set_xlabel("dimension (0–31: grid row, 32–63: grid column)")
ax.set_ylabel("token (0 = class token)")
fig.colorbar(im, ax=ax, shrink=0.6, label="value")
picked = [(0, 0), (7, 7), (3, 11)]
for row, (tab, name) in enumerate([(fixed, "fixed"), (learned0, "learned, at init")]):
    grids = [cosine_grid(tab, r * 14 + c, big.grid) for r, c in picked]
    lo = min(g.min() for g in grids)                                        # one colour range per row: lo … 1
    for col, ((r, c), grid) in enumerate(zip(picked, grids)):
        ax = fig.add_subplot(gs[row, col + 1])
        im = ax.imshow(grid, cmap="viridis", vmin=lo, vmax=1)
        ax.plot(c, r, "r+", ms=10)
        ax.set_title(f"{name}: patch ({r},{c}), colour {lo:.2f}…1", fontsize=8)
        ax.set_xlabel("grid column")
        ax.set_ylabel("grid row")
        fig.colorbar(im, ax=ax, shrink=0.8, label="cos similarity")
fig.suptitle("Cosine similarity of the red patch's position embedding with all others (colour range: one per row): "
             "the fixed table encodes rows and columns, a fresh learned one does not")
fig.tight_layout()
plt.show()

# %% [markdown]
# **Learned or fixed?** The paper's ablation (Appendix D.4) finds that *having* position information matters (removing it
# costs a clear drop), while *which kind* (learned 1-D, learned 2-D, relative) makes little difference; ViT uses learned
# 1-D embeddings. A fixed table costs no parameters and is defined for any grid size. A learned table has exactly $N + 1$
# rows, so when a pre-trained model is fine-tuned at a higher resolution (same $P$, more patches) the paper interpolates the
# learned table in 2-D over the patch grid. For the sine-cosine table one simply computes a bigger one, and the
# rows of the old positions stay the same:

# %%
bigger = big.replace(image_size=256)                                       # a 16×16 grid instead of 14×14
old = sincos_2d(big)[1:].reshape(14, 14, -1)
new = sincos_2d(bigger)[1:].reshape(16, 16, -1)
print("14×14 table", old.shape, "inside the 16×16 table", new.shape, ": max |difference| =", f"{diff(new[:14, :14], old):.1e}")
assert diff(new[:14, :14], old) < 1e-6                                     # float32 tables

# %% [markdown]
# ## 4. Putting Eq 1 together: $\mathbf{z}_0$
#
# $$\mathbf{z}_0 = [\,\mathbf{x}_\text{class};\; \mathbf{x}_p^1\mathbf{E};\; \cdots;\; \mathbf{x}_p^N\mathbf{E}\,] + \mathbf{E}_{pos} \in \mathbb{R}^{(N+1)\times D}$$
#
# First the library's steps, with the shape after each; then Eq 1 in one call, `vitnp.model.embed_forward`, which
# you write (exercise embed-forward: the steps below, plus the hybrid stem of notebook 08, the other position
# embeddings of section 3, the average-pooling variant without a class token, and dropout).

# %%
x_p, _ = patchify_forward(x, P)
e, _ = linear_forward(x_p, params["E"], params["E_bias"])
z, _ = class_token_forward(e, params["x_class"])
z0, _ = pos_embed_forward(z, params["E_pos"])
for name, arr in [("x", x), ("x_p = patchify(x)", x_p), ("x_p E + b", e), ("[x_class; x_p E]", z), ("z0 = … + E_pos", z0)]:
    print(f"{name:<20} {str(arr.shape):<16}")

z0_yours, _ = embed_forward(params, x, cfg)                                # exercise embed-forward
print("Eq 1: max |embed_forward − the steps above| =", f"{diff(z0_yours, z0):.1e}")
assert diff(z0_yours, z0) < 1e-12

# %% [markdown]
# **Summary.** Eq 1 in three steps: $\mathbf{x}_p\mathbf{E}$ (a stride-$P$ convolution in disguise), the class token in
# front, position embeddings added. Every step matched a hand-written version to ~$10^{-16}$, and your `embed_forward`
# gives the same $\mathbf{z}_0$ (notebook 04 checks that the whole model starts from it). Next: [03_attention](03_attention.ipynb), what the encoder does with these tokens.
#
# **요약.** 식 1은 세 단계입니다: $\mathbf{x}_p\mathbf{E}$(보폭 $P$인 합성곱과 같음), 맨 앞에 붙는 클래스 토큰, 더해지는 위치 임베딩. 모든 단계가 손으로 쓴 버전과 약 $10^{-16}$까지 일치했고, 여러분의 `embed_forward`도 같은 $\mathbf{z}_0$를 냅니다. 다음은 03, 인코더가 이 토큰들로 하는 일입니다.

# %% [markdown]
# ## Exercises
#
# Three exercises on what Eq 1 tells the encoder about position. In the student edition
# (`python -m vitnp course build`) the model answers are cut out; the locked cell after each code exercise fails
# until your answer is right.
#
# * **Exercise nb02-q-bag-of-patches** (2 points) — inline question: without $\mathbf{E}_{pos}$, what does a ViT see
#   of an image whose patches have been shuffled?
#   *인라인 질문: $\mathbf{E}_{pos}$가 없으면, 패치를 섞은 이미지에서 ViT는 무엇을 보는가?*
# * **Exercise nb02-bag-of-patches** (2 points) — shuffle the patches of an image, and check your answer on the
#   library's model.
#   *이미지의 패치를 섞고, 라이브러리 모델로 답을 확인하세요.*
# * **Exercise nb02-sincos-shift** (2 points) — write the matrix that shifts the sine-cosine table by $k$ grid rows.
#   *사인-코사인 표를 격자 $k$행만큼 옮기는 행렬을 쓰세요.*

# %% [markdown] nbgrader={"grade": true, "grade_id": "nb02-q-bag-of-patches", "locked": false, "points": 2, "schema_version": 3, "solution": true}
# **Exercise nb02-q-bag-of-patches** (2 points). Take a ViT with no position embeddings (`pos_embedding='none'`), cut
# an image into its $N$ patches, put them back in another order, and classify both images. Argue from Eq 1–4 that the
# logits are the same, whatever the weights. Does this still hold with `classifier='gap'`? With learned
# $\mathbf{E}_{pos}$?
#
# *인라인 질문: $\mathbf{E}_{pos}$가 없으면, 패치를 섞은 이미지에서 ViT는 무엇을 보는가?*
#
# ### BEGIN SOLUTION
# Let $\pi$ be the permutation of the patches. **Eq 1**: $\mathbf{x}_p\mathbf{E}$ acts on each patch alone, so the
# patch tokens come out permuted by $\pi$, and without $\mathbf{E}_{pos}$ nothing else depends on the place; the class
# token stays in row 0. **Eq 2–3**: every block is permutation-equivariant. LayerNorm and the MLP act on each token
# alone. In attention, permuting the tokens permutes the rows of $\mathbf{q}$, $\mathbf{k}$ and $\mathbf{v}$, so
# $\mathbf{q}\mathbf{k}^\top$ has its rows *and* columns permuted, the row-wise softmax commutes with that, and
# $A\mathbf{v}$ comes out with its rows permuted (section 3 checked one block). Row 0 is never moved, so
# $\mathbf{z}_L^0$, **Eq 4**'s $\mathbf{y} = LN(\mathbf{z}_L^0)$ and the logits are exactly the same, up to rounding.
# With `'gap'`, $\mathbf{y}$ is the mean of the patch tokens after the final LayerNorm, and a mean does not depend
# on the order either: same logits. With learned $\mathbf{E}_{pos}$ a moved patch gets the position vector of its *new*
# place, so the tokens are no longer a permutation of the old ones, and the logits change. Without position
# embeddings a ViT is a bag-of-patches model: it cannot tell an image from any rearrangement of its patches. (The
# paper's ablation, Appendix D.4, calls this input "a bag of patches"; in its Table 8, ViT-B/16 without position
# embeddings scores 0.614 against 0.642 with the 1-D ones, in ImageNet 5-shot linear accuracy.)
# ### END SOLUTION

# %% [markdown]
# **Exercise nb02-bag-of-patches** (2 points). Write `shuffle_patches(x, P, perm)`: the images `x` (B, H, W, C) with
# their patches rearranged, so that patch `perm[i]` of the original becomes patch $i$ of the result. Use reshapes and
# transposes (notebook 01). The test then runs both images through three encoders (your `embed_forward`, then the $L$
# blocks) and compares the output tokens.
#
# *이미지의 패치를 섞고, 라이브러리 모델로 답을 확인하세요.*

# %% nbgrader={"grade": false, "grade_id": "nb02-bag-of-patches", "locked": false, "schema_version": 3, "solution": true}
def shuffle_patches(x, P, perm):
    """(B, H, W, C) images with their N = HW/P² patches rearranged: patch perm[i] moves to place i."""
    ### BEGIN SOLUTION
    B, H, W, C = x.shape
    gh, gw = H // P, W // P
    blocks = x.reshape(B, gh, P, gw, P, C).transpose(0, 1, 3, 2, 4, 5).reshape(B, gh * gw, P, P, C)
    blocks = blocks[:, perm]                                            # (B, N, P, P, C), new order
    return blocks.reshape(B, gh, gw, P, P, C).transpose(0, 1, 3, 2, 4, 5).reshape(B, H, W, C)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "nb02-bag-of-patches-test", "locked": true, "points": 2, "schema_version": 3, "solution": false}
with exercise("nb02-bag-of-patches"):
    rng_t = np.random.default_rng(4)
    perm_t = rng_t.permutation(N)
    x_shuffled = shuffle_patches(x, P, perm_t)
    assert x_shuffled.shape == x.shape and not np.array_equal(x_shuffled, x)
    assert np.array_equal(patchify_forward(x_shuffled, P)[0], patchify_forward(x, P)[0][:, perm_t])   # moved, unchanged
    for pos, readout, same in (("none", "token", True), ("none", "gap", True), ("learned", "token", False)):
        c = cfg.replace(pos_embedding=pos, classifier=readout)
        p_t = {k: v + 0.1 * rng_t.standard_normal(v.shape) for k, v in vitnp.init_params(c, seed=0).items()}
        blocks_t = [{k: p_t[f"blocks.{l}.{k}"] for k in BLOCK_KEYS} for l in range(c.depth)]
        before, after = (encoder_forward(embed_forward(p_t, img, c)[0], blocks_t, c.heads)[0] for img in (x, x_shuffled))
        first = 1 if readout == "token" else 0                              # the patch tokens start here
        moved = np.concatenate([before[:, :first], before[:, first:][:, perm_t]], axis=1)   # the tokens, permuted
        print(f"pos_embedding={pos!r:10} classifier={readout!r:8} "
              f"max |z_L(shuffled) − z_L permuted| = {diff(after, moved):.1e}")
        assert diff(before[0], before[1]) > 1e-3                            # the model does tell the two images apart
        assert (diff(after, moved) < 1e-12) == same

# %% [markdown]
# **Exercise nb02-sincos-shift** (2 points). Section 3 claims that in the sine-cosine table a shift by $k$ grid rows
# is the same linear map everywhere in the image. Write `row_shift_matrix(k, D)`: the $D \times D$ matrix $R_k$ with
# $\text{PE}(r + k, c) = \text{PE}(r, c)\,R_k$ for every grid position (rows of `sincos_2d` are row vectors). Hint:
# $\sin(a + b)$ and $\cos(a + b)$.
#
# *사인-코사인 표를 격자 $k$행만큼 옮기는 행렬을 쓰세요.*

# %% nbgrader={"grade": false, "grade_id": "nb02-sincos-shift", "locked": false, "schema_version": 3, "solution": true}
def row_shift_matrix(k, D):
    """(D, D) matrix R_k with PE(r + k, c) = PE(r, c) R_k for the table of sincos_2d (width D)."""
    ### BEGIN SOLUTION
    q = D // 4
    omega = 10000.0 ** (-np.arange(q) / q)                     # the D/4 frequencies
    cos, sin = np.cos(k * omega), np.sin(k * omega)
    R = np.eye(D)                                              # the column half (last D/2) does not move
    j = np.arange(q)
    R[j, j], R[q + j, j] = cos, sin                            # sin((r+k)ω) = sin(rω) cos(kω) + cos(rω) sin(kω)
    R[j, q + j], R[q + j, q + j] = -sin, cos                   # cos((r+k)ω) = cos(rω) cos(kω) − sin(rω) sin(kω)
    return R
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "nb02-sincos-shift-test", "locked": true, "points": 2, "schema_version": 3, "solution": false}
with exercise("nb02-sincos-shift"):
    cfg_t = vitnp.ViTConfig(image_size=224, patch_size=16, in_channels=3, dim=64, heads=4, mlp_dim=128, dtype="float64")
    grid_t = sincos_2d(cfg_t)[1:].reshape(14, 14, 64)                        # (row, column, D), the class token dropped
    for k_t in (1, 3, 13):
        R_t = row_shift_matrix(k_t, 64)
        d = diff(grid_t[k_t:], grid_t[:-k_t] @ R_t)                           # PE(r + k, c) against PE(r, c) R_k
        print(f"k = {k_t:2d}: max |PE(r + k, c) − PE(r, c) R_k| = {d:.1e}, "
              f"max |R_k R_kᵀ − I| = {diff(R_t @ R_t.T, np.eye(64)):.1e}")
        assert d < 1e-12 and diff(R_t @ R_t.T, np.eye(64)) < 1e-12              # … and R_k is a rotation
