# %% [markdown]
# # 08 · Inductive bias: ViT against a CNN, the hybrid ViT, and how much data a ViT needs
#
# *An Image is Worth 16x16 Words*, §3.1 ("Inductive bias", "Hybrid Architecture"), §4.3 (Fig 3, Fig 4) and §4.4
# (Fig 5). Terms and their Korean equivalents: [glossary (용어집)](../docs/glossary.md).
#
# The paper's central claim comes with a warning. Trained on ImageNet alone (1.3 million images), ViT does worse than a
# ResNet of similar size. Pre-trained on 14 million (ImageNet-21k) or 300 million images (JFT-300M), it does better. The
# paper's explanation is **inductive bias**: the assumptions a model has before it sees any data. A CNN has strong
# ones, a ViT has few, so a ViT must learn from data what a CNN has built in.
#
# This notebook
#
# 1. says what those assumptions are: locality, the 2-D neighbourhood, translation equivariance;
# 2. measures them: shift an image and check whether the feature maps shift with it, in a convolution (yes, exactly)
#    and in a ViT (only in the patch embedding, only for whole-patch shifts, and $\mathbf{E}_{pos}$ breaks even that);
# 3. builds the paper's **hybrid** model, whose patches come from a CNN feature map instead of the raw pixels, and checks
#    it against a hand-written version;
# 4. measures accuracy against the amount of training data for the three models, on Fashion-MNIST (1,000 to 60,000
#    images). That is the small-data end of the paper's Fig 3 and 4, with the same training budget for every model.
# 5. says what that measurement shows and what it does not;
# 6. sets accuracy against compute, as the paper's Fig 5 (§4.4) does, on the same sweep;
# 7. asks whether a ViT needs augmentation or regularisation, with three sources' answers.
#
# In fast mode (`VITNP_FAST=1`) the live training runs of section 4 are tiny. The full sweep takes over half an hour
# (`scripts/inductive_bias.py`), so the notebook loads its results from `docs/figures/inductive_bias.json` instead
# of re-running it. Without the Fashion-MNIST files, the notebook uses a small synthetic data set and says so.

# %% [markdown]
# **Learning objectives.** After this notebook you can
#
# * name the inductive biases of a convolution (locality, the 2-D neighbourhood, translation equivariance) and measure them, in a CNN and in a ViT;
# * build the hybrid ViT, whose patches come from a CNN feature map;
# * read accuracy against training-set size and against compute (the small-data end of Fig 3–4, and Fig 5), and say what such a small experiment cannot show.
#
# **학습 목표.** 이 노트북을 마치면
#
# * 합성곱의 귀납적 편향(지역성, 2차원 이웃 구조, 이동 등변성)을 말하고, CNN과 ViT에서 측정한다;
# * 패치를 CNN 특징 맵에서 자르는 하이브리드 ViT를 만든다;
# * 훈련 세트 크기와 계산량에 따른 정확도(그림 3–4의 적은 데이터 쪽, 그림 5)를 읽고, 이렇게 작은 실험이 보여 줄 수 없는 것을 말한다.

# %%
import json
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

import vitnp
from vitnp.cnn import CNNConfig, init_cnn_params
from vitnp.ops.conv import conv_stack_forward
from vitnp.data import fashion_mnist_or_synthetic, normalize
from vitnp.gradcheck import check_gradients
from vitnp.model import embed_forward, head_forward
from vitnp.ops.block import BLOCK_KEYS, encoder_forward
from vitnp.ops.conv import conv2d_forward
from vitnp.ops.linear import linear_forward
from vitnp.ops.patches import patchify_forward
from vitnp.config import param_shapes
from vitnp.training import describe_model, load_checkpoint, model_spec
from vitnp.course.notebook import diff, exercise, setup
from vitnp.experiments import inductive_bias as ib       # the sweep: its models, recipe and run_one
from vitnp.experiments.figures import COLOURS, LABELS

FAST = setup(precision=4)   # fast: tiny live training runs
ROOT = Path(vitnp.__file__).resolve().parents[1]           # the repository (the notebook may run elsewhere)


# %% [markdown]
# ## 1. Inductive bias: what a CNN assumes and a ViT does not
#
# A convolution with kernel $W \in \mathbb{R}^{k \times k \times C \times C'}$ computes every output pixel from the
# $k \times k$ neighbourhood around it, with the **same** weights everywhere:
#
# $$ (x \star W)[i, j] = b + \sum_{a, b'} x[i + a,\; j + b'] \, W[a, b'], \qquad |a|, |b'| \le \lfloor k/2 \rfloor .$$
#
# Three assumptions are built into that one line, and into every layer of a CNN (the paper, §3.1):
#
# * **locality**: an output depends only on nearby pixels;
# * **the 2-D neighbourhood structure**: "nearby" means nearby in rows *and* columns of the image;
# * **translation equivariance**: shift the input and the output shifts by the same amount. With the shift
#   $(T_s x)[i, j] = x[i, j - s]$, we have $(T_s x) \star W = T_s (x \star W)$, because the same $W$ is applied at
#   every position. A ReLU acts on each pixel alone, so it keeps the property. A stride or a pooling of $s$ keeps it
#   only for shifts by multiples of $s$.
#
# In a ViT, most of this is missing:
#
# * cutting the image into $P \times P$ patches and projecting them with $\mathbf{E}$ is a convolution with kernel
#   **and stride** $P$ (notebook 02). It is local, but equivariant only to shifts by whole patches;
# * Eq 1 then adds $\mathbf{E}_{pos}$, a different vector at every position. That makes the tokens depend on
#   *where* a patch is, and breaks even the whole-patch equivariance. The 1-D learned $\mathbf{E}_{pos}$ also starts
#   with no idea that patch 5 lies below patch 1; any 2-D structure must be learned (notebook 07: our small model
#   learns the rows of the grid, hardly its columns);
# * self-attention (Eq 5–8) is **global**: from the first layer on, every token can look at every other one;
# * only the MLP (Eq 3) is local and translation equivariant, trivially, since it treats each token on its own.
#
# The upside of fewer assumptions is flexibility: attention can learn long-range relations that a CNN reaches only
# after many layers. The downside is that the assumptions must be learned from data, and with little data they are
# not. Section 2 measures these properties. Section 4 measures what they cost in accuracy.

# %% [markdown]
# ## 2. Shift an image: does the feature map shift with it?
#
# We take a test image and compare each model's feature map of the shifted image, $f(T_s x)$, with the shifted feature
# map of the original, $T_{s'} f(x)$, where $s'$ is the shift measured in cells of the feature map ($s' = s/\text{stride}$
# when the stride divides $s$; otherwise the nearest cell shift). We use the **relative equivariance error**
#
# $$ e(s) = \frac{\lVert f(T_s x) - T_{s'} f(x) \rVert}{\lVert f(x) \rVert} $$
#
# over the cells that both maps cover. Cells near the left and right edges are left out: their inputs fall off the
# image or come from its zero padding. $e = 0$ (up to float64 rounding) means exactly equivariant.
#
# The models: one **convolution + ReLU** (3×3, stride 1), the **CNN baseline's two conv-ReLU-pool stages** (feature-map
# stride 4), and the **trained ViT** of notebook 07 (`notebooks/assets/vit_fmnist.npz`, $P = 7$) at three depths:
# the patch embeddings $\mathbf{x}_p\mathbf{E}$, the tokens $\mathbf{z}_0$ of Eq 1 (with $\mathbf{E}_{pos}$), and the
# output tokens $\mathbf{z}_L$ of the last encoder block. Untrained CNN weights are enough, because equivariance is a
# property of the architecture, not of the weights. The ViT is the trained one, because its learned $\mathbf{E}_{pos}$
# is what matters.

# %%
train_x, train_y, test_x, test_y, names, SYNTHETIC = fashion_mnist_or_synthetic()

vit_params32, vit_cfg32, meta = load_checkpoint(ROOT / "notebooks" / "assets" / "vit_fmnist.npz")
vit_cfg = vit_cfg32.replace(dtype="float64")                 # float64: exact cases show up as ~1e-16
vit_params = {k: v.astype(np.float64) for k, v in vit_params32.items()}
cnn_cfg = CNNConfig(dtype="float64")
cnn_params = init_cnn_params(0, cfg=cnn_cfg)
P, (gh, gw), D = vit_cfg.patch_size, vit_cfg.grid, vit_cfg.dim
record = next(h for h in meta["history"] if h["epoch"] == meta["epoch"])      # the run's metrics for this epoch
print(f"ViT: P={P}, grid {gh}×{gw}, D={D}, L={vit_cfg.depth}, trained (test accuracy "
      f"{100 * record['test_acc']:.1f} % after epoch {meta['epoch']});  CNN: channels {cnn_cfg.channels}, untrained")

# %% [markdown]
# The feature maps, as functions of an image batch (B, 28, 28, 1). Each returns a grid (B, rows, cols, channels) and the
# size of one cell in pixels (its stride). The ViT maps are read between the steps of `vit_forward`: `embed_forward`
# (Eq 1), the encoder, `head_forward` (Eq 4); the cell checks that these steps give `vit_forward`'s logits.

# %%
BACKGROUND = normalize(np.zeros(1, np.uint8), np.float64)[0]   # a black pixel (0) after normalisation: −0.81


def shift_right(x, s):
    """T_s: move normalised images (B, H, W, C) s pixels to the right; the uncovered left edge is background."""
    out = np.full_like(x, BACKGROUND)
    out[:, :, s:] = x[:, :, :x.shape[2] - s]
    return out


def conv_map(x):                                           # conv 3×3 + ReLU, stride 1: (B, 28, 28, 32)
    W, b = cnn_params["conv1.W"], cnn_params["conv1.b"]
    out, _ = conv2d_forward(x, W, b, stride=1, padding=1)
    return np.maximum(out, 0), 1


def cnn_map(x):                                            # both conv-ReLU-pool stages: (B, 7, 7, 64)
    layers = [(cnn_params["conv1.W"], cnn_params["conv1.b"]), (cnn_params["conv2.W"], cnn_params["conv2.b"])]
    f, _ = conv_stack_forward(x, layers, pool=2)
    return f, 4


def vit_maps(x):
    """The trained ViT's patch tokens at three depths, each as a (B, gh, gw, D) grid, and the logits."""
    p = vit_params
    e, _ = linear_forward(patchify_forward(x, P)[0], p["E"], p["E_bias"])   # x_p E: (B, N, D)
    z0, _ = embed_forward(p, x, vit_cfg)                               # Eq 1: (B, N+1, D)
    blocks = [{k: p[f"blocks.{l}.{k}"] for k in BLOCK_KEYS} for l in range(vit_cfg.depth)]
    zL, _, _ = encoder_forward(z0, blocks, vit_cfg.heads, gelu=vit_cfg.gelu, eps=vit_cfg.ln_eps)   # Eq 2–3
    logits, _ = head_forward(p, zL, vit_cfg)                           # Eq 4 and the head
    grid = lambda t: t.reshape(len(x), gh, gw, D)                      # (B, N, D) -> (B, gh, gw, D)
    return {"x_p E": grid(e), "z_0 (Eq 1)": grid(z0[:, 1:]), "z_L (last block)": grid(zL[:, 1:])}, logits


x0 = normalize(test_x[:8], np.float64)                      # (8, 28, 28, 1), 8 test images
maps, logits = vit_maps(x0)
lib_logits, _ = vitnp.vit_forward(vit_params, x0, vit_cfg)
print({k: v.shape for k, v in maps.items()}, "logits", logits.shape)
print(f"ViT maps continued to the logits vs vit_forward: max |difference| = {diff(logits, lib_logits):.1e}")
assert diff(logits, lib_logits) < 1e-10


# %% [markdown]
# Now shift by $s = 1 \dots 8$ pixels. For each map, $s' = \operatorname{round}(s/\text{stride})$ cells, and $e(s)$ is
# computed on the columns both maps cover. For the convolutional maps, $h$ more columns are left out at each edge,
# where the kernel reaches the image border (one 3×3 kernel: $h = 1$; two stages: $h = 1$ cell of the 7×7 map). For the
# ViT maps nothing is left out: each patch token sees exactly its own 7×7 pixels (before attention mixes them), and
# attention makes every token depend on the whole image anyway.

# %%
def equivariance_error(fmap, x, s, halo):
    """e(s) of one map: compare f(T_s x) with f(x) shifted by s' = round(s / stride) cells (columns only)."""
    (f0, stride), (f1, _) = fmap(x), fmap(shift_right(x, s))
    c = int(round(s / stride))                                     # the shift in cells of the map
    W = f0.shape[2]
    lo, hi = c + halo, W - halo                                    # columns of f1 to compare: [lo, hi)
    a, b = f1[:, :, lo:hi], f0[:, :, lo - c:hi - c]                # f(T_s x) and T_c f(x) on those columns
    return float(np.linalg.norm(a - b) / np.linalg.norm(f0))


def vit_map(name):
    return lambda x: (vit_maps(x)[0][name], P)


shifts = list(range(1, 9))
rows = {"conv 3×3 + ReLU (stride 1)": (conv_map, 1), "CNN, 2 conv-ReLU-pool stages (stride 4)": (cnn_map, 1)}
rows.update({f"ViT {k} (stride {P})": (vit_map(k), 0) for k in maps})
errors = {name: [equivariance_error(f, x0, s, halo) for s in shifts] for name, (f, halo) in rows.items()}

print("relative equivariance error e(s) for a shift of s pixels to the right")
print(f"{'':44}" + "".join(f"{s:>9}" for s in shifts))
for name, e in errors.items():
    print(f"{name:44}" + "".join(f"{v:9.2e}" for v in e))

fig, ax = plt.subplots(figsize=(9, 4))
for name, e in errors.items():
    ax.plot(shifts, np.maximum(e, 1e-17), "o-", label=name)
ax.set_yscale("log")
ax.set_xlabel("shift s (pixels)")
ax.set_ylabel("relative equivariance error e(s)")
ax.set_title("Shift the image: does the feature map shift with it? (0 = exactly; 1e-16 = float64 rounding)")
ax.legend(fontsize=8)
fig.tight_layout()
plt.show()

conv_e, cnn_e = errors["conv 3×3 + ReLU (stride 1)"], errors["CNN, 2 conv-ReLU-pool stages (stride 4)"]
emb_e, z0_e, zL_e = (errors[f"ViT {k} (stride {P})"] for k in maps)
assert max(conv_e) < 1e-12                                 # a stride-1 convolution: every shift
assert cnn_e[3] < 1e-12 and cnn_e[7] < 1e-12               # pooled CNN: shifts by 4 and 8 pixels (1 and 2 cells)
assert min(cnn_e[0], cnn_e[1], cnn_e[2]) > 1e-3           # ... but not by 1, 2 or 3 pixels
assert emb_e[6] < 1e-12                                    # ViT patch embedding: a shift by P = 7 pixels only
assert min(emb_e[:6]) > 1e-2                               # any smaller shift cuts different patches
assert z0_e[6] > 1e-2 and zL_e[6] > z0_e[6]               # E_pos breaks even the whole-patch shift; attention more

# %% [markdown]
# Read the table from the top:
#
# * the **convolution** is equivariant to every shift, exactly (errors of $10^{-16}$ are float64 rounding);
# * the **pooled CNN** is equivariant to shifts by multiples of its stride, 4 pixels. In between, the pooling windows
#   catch different pixels and the error is large. Real CNNs are *approximately* shift-invariant, and augmentation and
#   the data do the rest;
# * the **ViT's patch embedding** $\mathbf{x}_p\mathbf{E}$ is a convolution with stride $P = 7$. A 7-pixel shift moves
#   every patch one cell to the right, unchanged ($e = 0$). Every other shift cuts the image into different patches;
# * adding $\mathbf{E}_{pos}$ (Eq 1) breaks even that, because a patch that moves one cell gets the position vector of
#   its new place. The difference is exactly the change of position vector,
#   $\mathbf{z}_0(T_P x)_{r,c} - \mathbf{z}_0(x)_{r,c-1} = \mathbf{E}_{pos}[r,c] - \mathbf{E}_{pos}[r,c-1]$, which
#   the next cell checks;
# * after $L = 4$ blocks of global attention, the output tokens $\mathbf{z}_L$ differ even more.
#
# None of this makes a ViT worse *in principle*. A ViT trained on enough shifted images becomes nearly
# shift-invariant. But a CNN starts with this property, and a ViT must learn it from data.

# %%
m0, m7 = vit_maps(x0)[0], vit_maps(shift_right(x0, P))[0]
E_pos = vit_params["E_pos"][1:].reshape(gh, gw, D)           # the patches' rows of E_pos on the grid (class token: row 0)
lhs = m7["z_0 (Eq 1)"][:, :, 1:] - m0["z_0 (Eq 1)"][:, :, :-1]   # z0(T_P x)[r, c] − z0(x)[r, c−1], c = 1 … gw−1
rhs = np.broadcast_to(E_pos[:, 1:] - E_pos[:, :-1], lhs.shape)  # E_pos[r, c] − E_pos[r, c−1]
print(f"Eq 1 after a one-patch shift: max |(z0(T_P x) − T z0(x)) − (E_pos[r,c] − E_pos[r,c−1])| = {diff(lhs, rhs):.1e}")
print(f"size of that difference: {np.linalg.norm(rhs[0]) / np.linalg.norm(m0['z_0 (Eq 1)'][0]):.2f} of the tokens' norm")
assert diff(lhs, rhs) < 1e-12

fig, axes = plt.subplots(3, 3, figsize=(9, 8))
img_shifts = (0, 1, P)
conv_feats = [conv_map(shift_right(x0[:1], s))[0][0, ..., 0] for s in img_shifts]        # channel 0
emb_feats = [vit_maps(shift_right(x0[:1], s))[0]["x_p E"][0, ..., 0] for s in img_shifts]  # dimension 0 of x_p E
for col, s in enumerate(img_shifts):
    axes[0, col].imshow(shift_right(x0[:1], s)[0, ..., 0], cmap="gray")
    axes[0, col].set_title(f"image shifted by {s} px")
    axes[1, col].imshow(conv_feats[col], cmap="viridis")
    axes[1, col].set_title("conv 3×3 + ReLU, channel 0", fontsize=9)
    axes[2, col].imshow(emb_feats[col], cmap="coolwarm", vmin=-np.abs(emb_feats[0]).max(), vmax=np.abs(emb_feats[0]).max())
    axes[2, col].set_title("ViT x_p E, dimension 0 (4×4 grid)", fontsize=9)
    for ax in axes[:, col]:
        ax.set_xticks([])
        ax.set_yticks([])
fig.suptitle("The conv map moves with the image at every shift; the ViT's patch grid only at a 7-pixel shift")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 3. The hybrid architecture: patches from a CNN feature map
#
# The paper (§3.1, "Hybrid Architecture") offers an alternative to raw image patches: form the input sequence from the
# **feature map of a CNN**, and apply the patch embedding $\mathbf{E}$ of Eq 1 to patches of that map. In the special
# case of $1 \times 1$ patches, the sequence is just the feature map flattened over its two spatial axes and projected
# to width $D$. The paper's hybrids use a ResNet-50 trunk (§4.1). Its stage-4 output for a 224-pixel image is a 7×7 map,
# 49 tokens; the paper's second variant drops stage 4, puts its layers into an extended stage 3, and reads that
# stage's 14×14 map: 196 tokens, as many as ViT-B/16, with a four times longer sequence.
#
# In formulas: the stem $S$ (here conv → ReLU → max-pool, once per stage) maps the image to
# $S(x) \in \mathbb{R}^{h \times w \times C_f}$, and Eq 1 becomes
#
# $$ \mathbf{z}_0 = [\mathbf{x}_\text{class};\, \mathbf{x}_p^1\mathbf{E};\, \dots;\, \mathbf{x}_p^N\mathbf{E}] + \mathbf{E}_{pos},
# \qquad \mathbf{x}_p = \operatorname{patchify}_P(S(x)) \in \mathbb{R}^{N \times P^2 C_f}, \quad N = hw/P^2 ,$$
#
# with $P = 1$ in the paper: $\mathbf{x}_p^i$ is the $C_f$-vector of feature-map pixel $i$. From $\mathbf{z}_0$ on,
# nothing changes. In vitnp, `ViTConfig(stem_channels=…, stem_kernel=…, stem_pool=…)` selects the hybrid
# (`python -m vitnp train --stem 16,32 --stem-pool 2`). A tiny one, with $P = 1$ as in the paper:

# %%
hcfg = vitnp.ViTConfig(image_size=28, patch_size=1, in_channels=1, num_classes=10, dim=32, depth=2, heads=2,
                       mlp_dim=64, stem_channels=(8, 16), stem_kernel=3, stem_pool=2, dtype="float64")
rng = np.random.default_rng(0)
hparams = {k: v + 0.1 * rng.standard_normal(v.shape)            # random parameters: the zero-initialised head of
           for k, v in vitnp.init_params(hcfg, seed=0).items()}  # init_params would make every check below trivial
h, w = hcfg.feature_hw
print(f"image 28×28×1 -> stem {hcfg.stem_channels} (3×3 conv, ReLU, 2×2 max-pool per stage) -> feature map "
      f"{h}×{w}×{hcfg.feature_channels}")
print(f"P = {hcfg.patch_size} on the feature map: N = {hcfg.num_patches} tokens (+1 class token), P²C_f = {hcfg.patch_dim}; "
      f"one token covers {hcfg.patch_pixels}×{hcfg.patch_pixels} image pixels (before the conv's reach)")
for name, shape in param_shapes(hcfg).items():
    if name.startswith(("stem", "E", "x_class")):
        print(f"  {name:10} {shape}")
print(f"parameters: {vitnp.count_params(hcfg):,}")


# %% [markdown]
# By hand: a 'same' convolution written as a sum over the $k \times k$ kernel offsets (each offset is one matrix
# product over the channels), ReLU, a 2×2 max-pool as a reshape and a max, and the $P = 1$ patchify as a plain
# reshape of the feature map. Then Eq 1. We compare the patch vectors with those `vit_forward` fed into $\mathbf{E}$
# (its cache keeps the input of every linear layer), and the tokens $\mathbf{z}_0$ with `embed_forward`'s (yours,
# with the hybrid stem).

# %%
def conv_same_by_hand(x, W, b):
    """'same' 2-D convolution: out[i, j] = b + Σ_{a,b'} x_pad[i + a, j + b'] @ W[a, b']   (B, H, W, C) -> (B, H, W, C')."""
    k = W.shape[0]
    B, H, Wd, _ = x.shape
    x_pad = np.pad(x, ((0, 0), (k // 2, k // 2), (k // 2, k // 2), (0, 0)))
    out = np.zeros((B, H, Wd, W.shape[3]))
    for a in range(k):
        for bb in range(k):
            out += x_pad[:, a:a + H, bb:bb + Wd, :] @ W[a, bb]          # (B, H, W, C) @ (C, C')
    return out + b


def maxpool_by_hand(x, s):
    """s×s max-pool with stride s: (B, H, W, C) -> (B, H/s, W/s, C)."""
    B, H, W, C = x.shape
    return x[:, :H // s * s, :W // s * s].reshape(B, H // s, s, W // s, s, C).max(axis=(2, 4))


xb = normalize(test_x[:4], np.float64)                      # (4, 28, 28, 1)
f = xb
for i in range(len(hcfg.stem_channels)):                      # the stem S(x)
    f = maxpool_by_hand(np.maximum(conv_same_by_hand(f, hparams[f"stem.{i}.W"], hparams[f"stem.{i}.b"]), 0), 2)
    print(f"stage {i}: {f.shape}")
x_p = f.reshape(len(xb), h * w, hcfg.feature_channels)       # P = 1: flatten the h×w grid row by row (B, N, C_f)
tokens = x_p @ hparams["E"] + hparams["E_bias"]               # x_p E: (B, N, D)
cls = np.broadcast_to(hparams["x_class"], (len(xb), 1, hcfg.dim))
z0 = np.concatenate([cls, tokens], axis=1) + hparams["E_pos"]   # Eq 1: (B, N+1, D)
print(f"x_p {x_p.shape} -> x_p E {tokens.shape} -> z0 {z0.shape}")

lib_logits, cache = vitnp.vit_forward(hparams, xb, hcfg)
lib_x_p = cache["embed"]["E"][0]                              # the library's patch vectors, the input of E
lib_z0, _ = embed_forward(hparams, xb, hcfg)
print(f"Eq 1 of the hybrid: patch vectors max |hand − library| = {diff(x_p, lib_x_p):.1e};  "
      f"z0 max |hand − embed_forward| = {diff(z0, lib_z0):.1e}")
assert diff(x_p, lib_x_p) < 1e-12 and diff(z0, lib_z0) < 1e-12

# %% [markdown]
# The backward pass goes through $\mathbf{E}$ into the stem (`vit_backward`). Checked here as in notebook 05 with
# `vitnp.gradcheck`, in float64 against centred differences, on a random upstream gradient, for the stem's first
# kernel and bias and for $\mathbf{E}$ (30 random entries of each):

# %%
g_up = np.random.default_rng(1).standard_normal(lib_logits.shape)           # a random ∂loss/∂logits


def loss():
    return float((vitnp.vit_forward(hparams, xb, hcfg)[0] * g_up).sum())


grads = vitnp.vit_backward(g_up, vitnp.vit_forward(hparams, xb, hcfg)[1])
names_checked = ["stem.0.W", "stem.0.b", "stem.1.W", "E"]
errs = check_gradients(loss, {k: hparams[k] for k in names_checked}, {k: grads[k] for k in names_checked},
                       max_checks=30)
for k, e in errs.items():
    print(f"  {k:9} relative error {e:.1e}")
assert max(errs.values()) < 1e-6

# %% [markdown]
# **The hybrid of our experiment.** With $P = 1$ on a 7×7 map the ViT would have 49 tokens, three times the cost of
# attention over 16. The experiment below uses a cheaper hybrid, affordable on two shared CPU cores: one stem stage
# of 16 3×3 filters **without** pooling (a 28×28×16 map), then $P = 7$ as for the plain ViT. It has the same 16 tokens,
# but each token now sees 16 local-feature channels per pixel instead of one grey value. It is the plain ViT with a
# convolution in front, a small dose of locality. The three models of section 4:

# %%
configs = ib.model_configs()
for name, cfg in configs.items():
    extra = ""
    if isinstance(cfg, vitnp.ViTConfig):
        extra = f";  tokens T = {cfg.num_tokens}, P²C = {cfg.patch_dim}"
    print(f"{name:>6}: {describe_model(cfg)};  {model_spec(cfg).count(cfg):,} parameters{extra}")
assert configs["hybrid"].feature_hw == (28, 28) and configs["hybrid"].num_patches == configs["vit"].num_patches == 16

# %% [markdown]
# ## 4. Accuracy against the amount of training data
#
# **The rule.** Every run gets the same budget: $S$ AdamW steps of $B = 128$ images, with the same recipe for every
# model and every data size (the presets' of the time: peak learning rate $3 \times 10^{-3}$, warm-up over 5 % of the
# steps then cosine decay, weight decay 0.05, label smoothing 0.1, clipping at 1, random left-right flips). Why
# steps:
#
# * *not minutes*: the machine is shared, and a time budget would favour whichever model ran at a quiet moment (and
#   give the slower-per-step CNN fewer images);
# * *not epochs*: a fixed number of epochs would give the 1,000-image runs 60 times less computation than the
#   60,000-image runs.
#
# With a fixed $S$, every run processes $S \cdot B$ images whatever $N$ is: at $N = 1{,}000$ that is many passes over
# few images (room to over-fit), at $N = 60{,}000$ few passes over many. The subsets are nested random subsets, the
# same for every model. Test accuracy is that of the last step on the official 10,000 test images (no early
# stopping). Train accuracy is measured on clean (unaugmented) training images.
#
# **The committed sweep** (`python scripts/inductive_bias.py`, see `docs/results.md`) is loaded from
# `docs/figures/inductive_bias.json`, not re-run here:

# %%
sweep_path = ROOT / "docs" / "figures" / "inductive_bias.json"
sweep = json.loads(sweep_path.read_text()) if sweep_path.exists() else None
if sweep is None:
    print(f"{sweep_path} is missing: run  python scripts/inductive_bias.py --out DIR  and copy DIR/results.json there")
else:
    s = sweep["settings"]
    print(f"{sweep_path.name}: {len(sweep['runs'])} runs, every one {s['steps']} steps × {s['batch_size']} images "
          f"= {s['steps'] * s['batch_size']:,} images seen, warm-up {s['warmup_steps']} steps, lr {s['lr']}, "
          f"augment={s['augment']}, seed {s['seed']}")
    print(ib.table(sweep))
    sizes = sorted({r["n_train"] for r in sweep["runs"]})
    by = {(r["model"], r["n_train"]): r for r in sweep["runs"]}
    assert set(by) == {(m, n) for m in sweep["models"] for n in sizes}       # every model at every size
    for r in sweep["runs"]:
        assert r["steps"] == s["steps"] and abs(r["epochs"] - s["steps"] * s["batch_size"] / r["n_train"]) < 1e-3
    print("\nthe gaps, in points of test accuracy:")
    for n in sizes:
        vit, cnn, hyb = (100 * by[(m, n)]["test_acc"] for m in ("vit", "cnn", "hybrid"))
        gap_train = 100 * (by[("vit", n)]["train_acc"] - by[("vit", n)]["test_acc"])
        print(f"  N = {n:>6,}:  CNN − ViT = {cnn - vit:+5.2f}   hybrid − ViT = {hyb - vit:+5.2f}   "
              f"(ViT: train − test = {gap_train:4.1f})")
    img_s = {m: np.mean([r["images_per_s"] for r in sweep["runs"] if r["model"] == m]) for m in sweep["models"]}
    print("training speed (mean over the runs, one core each): "
          + ", ".join(f"{m} {v:,.0f} img/s" for m, v in img_s.items()))

# %% [markdown]
# **A live run** of the same code (`run_one` of the script), much smaller. In fast mode: $N \in \{500, 2000\}$,
# 30 steps each, 1,000 test images. In full mode: 150 steps each and all 10,000 test images. It shows the
# mechanics, not the final numbers. With so few steps every model is far from converged, and the order of the two
# ViTs can differ from the sweep's.

# %%
if SYNTHETIC:
    live_sizes, live_steps, n_test = (500, 2000), (30 if FAST else 150), len(test_x)
else:
    live_sizes, live_steps, n_test = (500, 2000), (30 if FAST else 150), (1000 if FAST else len(test_x))
pick = np.sort(np.random.default_rng(0).permutation(len(test_x))[:n_test])
live_data = (train_x, train_y, test_x[pick], test_y[pick])
settings = ib.recipe(live_steps, train_eval=500 if FAST else 2000)
print(f"live: N in {live_sizes}, {live_steps} steps of {settings['batch_size']}, warm-up {settings['warmup_steps']} "
      f"steps, {n_test:,} test images{' (SYNTHETIC data)' if SYNTHETIC else ''}")
live = []
t0 = time.perf_counter()
for n in live_sizes:
    for m in ib.MODEL_NAMES:
        r = ib.run_one(m, n, settings, data=live_data)
        live.append(r)
        print(f"  {m:>6}  N={n:>5}: test {100 * r['test_acc']:5.1f} %, train {100 * r['train_acc']:5.1f} %  "
              f"({r['epochs']:.1f} epochs, {r['images_per_s']:,.0f} img/s)")
print(f"live runs: {time.perf_counter() - t0:.0f} s")
for r in live:
    assert r["steps"] == live_steps and abs(r["epochs"] - live_steps * 128 / r["n_train"]) < 1e-3
    assert r["test_acc"] > 0.15                                 # every model has learned something (chance: 10 %)

# %%
panels = ([("committed sweep", sweep)] if sweep is not None else []) + [
    ("live run", {"settings": settings, "runs": live, "models": ib.describe_models(ib.MODEL_NAMES)})]
fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 4.5), squeeze=False)
for ax, (title, res) in zip(axes[0], panels):
    for m in ib.MODEL_NAMES:
        runs = sorted((r for r in res["runs"] if r["model"] == m), key=lambda r: r["n_train"])
        n = [r["n_train"] for r in runs]
        ax.plot(n, [100 * r["test_acc"] for r in runs], "o-", color=COLOURS[m], lw=2,
                label=f"{LABELS[m]} ({res['models'][m]['params'] / 1000:.0f}k), test")
        ax.plot(n, [100 * r["train_acc"] for r in runs], "x--", color=COLOURS[m], alpha=0.6)
    ax.plot([], [], " ", label="(dashed: train)")
    ns = sorted({r["n_train"] for r in res["runs"]})
    ax.set_xscale("log")
    ax.set_xticks(ns, [f"{v:,}" for v in ns])
    ax.minorticks_off()
    ax.set_xlabel("training images N (log scale)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"{title}: {res['settings']['steps']} steps × {res['settings']['batch_size']} images per run")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 5. What this shows, and what it does not
#
# **The committed sweep** (the table and the gaps printed above) answers the two questions for Fashion-MNIST:
#
# * *Does the CNN win at small $N$?* Yes, and not only there: with a third of the ViT's parameters it is ahead at
#   every size, by about 7 points at $N = 1{,}000$. At $N = 1{,}000$ all three models fit the training images
#   perfectly (train accuracy 100 %), so the test accuracy measures how well each one *generalises* from few
#   examples. That is where built-in assumptions help most.
# * *Does the gap shrink as $N$ grows?* From 1,000 to 20,000 images it narrows, by about 2 points. At 60,000 it does
#   not narrow further, because at a fixed number of steps the 60,000-image runs see each image less than twice. The
#   ViT is then limited by training time, not by data: its train accuracy is barely above its test accuracy.
# * The **hybrid** (one convolution in front of the same ViT) is ahead of the plain ViT at every size. A little
#   locality helps most at the smallest $N$. It closes only a small part of the gap to the CNN.
#
# `docs/results.md` has the full reading. Keep these limits in mind when comparing with the paper:
#
# * **Scale.** The paper's claim is about *pre-training* on 1.3M to 300M images (Fig 3: ImageNet, ImageNet-21k,
#   JFT-300M; Fig 4: random JFT subsets of 9M to 300M), with models of 86M to 632M parameters evaluated by transfer.
#   Our largest set has 60,000 images of 28×28 grey pixels, our models 50k to 190k parameters, trained from scratch and
#   tested on the same task. Our whole range of $N$ lies far below the point where the paper's ViTs start to win.
#   The experiment can show the small-data side (does a CNN's built-in locality help when data are scarce?). It
#   cannot show the crossover.
# * **Budget.** At a fixed number of steps, the large-$N$ runs see each image only a few times. There, the result
#   also measures how fast each model learns per step, not just what it can learn.
# * **One recipe.** The recipe was tuned for the plain ViT and used unchanged for the CNN and the hybrid,
#   with one seed per point. Differences of a point or less are within what another seed or learning rate could
#   change.
# * **The hybrid** here is the cheap variant (one conv, $P = 7$), not the paper's ResNet trunk with $P = 1$. The paper
#   found that hybrids beat ViT at small compute and the gap vanishes for larger models (§4.4, Fig 5).
#
# To reproduce or extend (for example more steps, another seed, or more sizes):
#
# ```bash
# python scripts/inductive_bias.py --out runs/inductive_bias --jobs 2             # the committed sweep
# python scripts/inductive_bias.py --out runs/ib_s2 --seed 1 --jobs 2            # the same with another seed
# ```

# %% [markdown]
# ## 6. Compute against accuracy (the paper's Fig 5, on our sweep)
#
# The paper's Fig 5 (§4.4) plots transfer accuracy against pre-training compute for ViTs, ResNets and hybrids. We can
# draw the same kind of picture for the three models of the sweep: accuracy against the **floating-point operations
# of one forward pass per image**. We count what dominates and what we can count exactly for all three models: the
# multiply-adds of the matrix products and convolutions, two FLOPs each. Softmax, LayerNorm, GELU, ReLU and pooling are
# left out. For the two ViTs, `vitnp.bench.run.matmul_flops` counts the patch embedding, the blocks and the head; the
# hybrid adds its stem. A 'same' $k \times k$ convolution with stride 1 costs $2\,h w\,k^2 C_\text{in} C_\text{out}$ on an
# $h \times w$ map. Every run of the sweep made the same 800 steps of 128 images, so training compute is this number
# times the same 102,400 images (and about three times that with the backward pass) for every model.

# %%
from vitnp.bench.run import matmul_flops


def conv_flops(hw, c_in, channels, k, pool):
    """2 × multiply-adds of 'same' k×k convolutions (stride 1), each followed by a pool×pool max-pool.
    Returns (FLOPs, (h, w) of the last map, its channels)."""
    flops, (h, w) = 0, hw
    for c_out in channels:
        flops += 2 * h * w * k * k * c_in * c_out               # one k·k·c_in dot product per output pixel and channel
        h, w, c_in = h // pool, w // pool, c_out
    return flops, (h, w), c_in


vit_c, hyb_c, cnn_c = configs["vit"], configs["hybrid"], configs["cnn"]
stem_f, stem_hw, stem_c = conv_flops(hyb_c.image_size, hyb_c.in_channels, hyb_c.stem_channels, hyb_c.stem_kernel,
                                     hyb_c.stem_pool)
conv_f, (h7, w7), c7 = conv_flops(cnn_c.image_size, cnn_c.in_channels, cnn_c.channels, cnn_c.kernel_size, cnn_c.pool)
assert stem_hw == hyb_c.feature_hw and (h7, w7, c7) == (7, 7, 64)    # the maps the models really produce
flops = {"vit": matmul_flops(vit_c, 1, train=False),
         "hybrid": stem_f + matmul_flops(hyb_c, 1, train=False),
         "cnn": conv_f + 2 * h7 * w7 * c7 * cnn_c.num_classes}       # + the dense layer on the 7×7×64 map
print(f"{'model':>6} {'MFLOPs/image':>13} {'params':>8}   test accuracy at N = " + ", ".join(f"{n:,}" for n in sizes))
for m in ("vit", "hybrid", "cnn"):
    accs = "  ".join(f"{100 * by[(m, n)]['test_acc']:5.2f}" for n in sizes) if sweep else "(no sweep file)"
    print(f"{m:>6} {flops[m] / 1e6:13.2f} {model_spec(configs[m]).count(configs[m]):>8,}   {accs}")
print("relative to the ViT: " + ", ".join(f"{m} {flops[m] / flops['vit']:.2f}×" for m in ("hybrid", "cnn")))
b32, h14 = (matmul_flops(vitnp.ViTConfig.variant(v), 1, train=False) for v in ("B/32", "H/14"))
print(f"the paper's range, per 224² image: ViT-B/32 {b32 / 1e9:.1f} GFLOPs … ViT-H/14 {h14 / 1e9:.0f} GFLOPs "
      f"({h14 / b32:.0f}×)")

if sweep:
    fig, ax = plt.subplots(figsize=(7, 4.2))
    colors = {"vit": "tab:blue", "hybrid": "tab:green", "cnn": "tab:orange"}
    for n, marker in zip(sizes, "os^D"):
        ax.plot([flops[m] / 1e6 for m in ("vit", "hybrid", "cnn")],
                [100 * by[(m, n)]["test_acc"] for m in ("vit", "hybrid", "cnn")], ":", color="gray", lw=1)
        for m in ("vit", "hybrid", "cnn"):
            ax.scatter(flops[m] / 1e6, 100 * by[(m, n)]["test_acc"], color=colors[m], marker=marker, s=50,
                       label=f"{m}" if n == sizes[0] else None)
        ax.annotate(f"N = {n:,}", (flops["cnn"] / 1e6, 100 * by[("cnn", n)]["test_acc"]), xytext=(6, -3),
                    textcoords="offset points", fontsize=8)
    ax.set_xlabel("forward FLOPs per image (millions; matrix products and convolutions)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_xlim(0, 1.25 * max(flops.values()) / 1e6)
    ax.set_title("Our sweep: accuracy against compute per image (800 steps × 128 images each)")
    ax.grid(alpha=0.3)
    ax.legend(title="model (colour)")
    plt.show()

# %% [markdown]
# **Reading it.** The three models are close in compute: the hybrid's stem and its wider patch vectors (784 numbers
# instead of 49) cost about 35 % more than the plain ViT, and the CNN about 60 % more, with the fewest parameters.
# At every $N$, more compute per image went with more accuracy here, and the CNN's extra compute bought the most,
# plausibly because it is spent on convolutions at full and half resolution, where the inductive bias of this notebook
# lives.
# This is *not* a scaling study like Fig 5: our models span a factor of 1.6 in compute per image, while the paper's
# ViTs alone span the factor printed above (pre-trained on up to 300 million images), and the paper measures
# transfer after pre-training, not training from scratch. What
# the paper found there is that hybrids are ahead of ViT at small compute and the difference vanishes for larger
# models (§4.4); our runs sit at the very small end, where we see the hybrid's lead too. FLOPs are also not time: on
# this CPU the CNN was the slowest per image of the three (the training speeds printed in section 4), although it
# needs only 1.6 times the plain ViT's FLOPs.
#
# ## 7. Does a ViT need augmentation or regularisation?
#
# A model with little inductive bias must learn from data what a CNN assumes, so with little data it should over-fit
# more easily; data augmentation (more varied data) and regularisation (weight decay, dropout, label smoothing) are
# the usual remedies. Three sources answer the question in different settings.
#
# * **What the paper did.** Pre-training uses Adam with a high weight decay of 0.1 (§4.1); its training table
#   (Appendix B.1, Table 3) sets dropout to 0.1 on ImageNet and ImageNet-21k and to 0.0 on JFT-300M. Its conclusion is that large-scale pre-training (ImageNet-21k,
#   JFT-300M) makes up for the missing inductive bias, while trained on ImageNet alone ViT stays a few points behind
#   ResNets of similar size (§1, §4.3).
# * **What came later.** DeiT (Touvron et al., *Training data-efficient image transformers & distillation through
#   attention*, ICML 2021) trained ViTs on ImageNet-1k alone, with no extra data, by using strong data augmentation
#   and regularisation and by distilling from a CNN teacher through an extra distillation token. Steiner et al.
#   (*How to train your ViT? Data, augmentation, and regularization in vision transformers*, arXiv 2106.10270) then
#   studied augmentation and regularisation ("AugReg") systematically and found that, with more compute, AugReg on
#   ImageNet-21k gave models that match or beat the same models trained on the much larger JFT-300M. So the
#   answer became: a ViT needs either a lot of data or a lot of augmentation and regularisation.
# * **What our runs show** (`docs/results.md`; each a single seed, so differences under a point are uncertain). All
#   our ViT runs use weight decay 0.05 and label smoothing 0.1 and, like the presets, no dropout; augmentation was
#   varied. A random left-right flip helped: 88.48 % without, 89.07 % with (runs e06 and e07, 9 epochs each). Random
#   crops after padding *hurt* in short runs (86.77 % → 83.15 %, e02 and e03, 3 epochs) and did not help in a long
#   one (88.67 % with crops and flips against 88.96 % with flips alone, e12 and e08, 11 epochs each). The likely
#   reason, as `docs/results.md` reads it: the garments are centred, and 28 pixels leave little room to shift them. In the
#   sweep above, every model reached 100 % train accuracy at $N = 1{,}000$ while their test accuracies differ by
#   7 points: with few images, the built-in assumptions of the CNN did what augmentation would have to do for the ViT.
#
# The answer for a small ViT on small data is therefore "yes, but the augmentation must fit the data": an
# augmentation that produces images unlike the test images (our crops) costs accuracy instead of adding it.

# %% [markdown]
# **Summary.** A convolution builds locality, the 2-D neighbourhood and translation equivariance into every layer; a ViT has them only in its patch cut, and $\mathbf{E}_{pos}$ breaks even the equivariance to whole-patch shifts (section 2). The hybrid puts a convolution in front of the same ViT (section 3). On Fashion-MNIST, with one budget and one recipe for all, the CNN is ahead of both ViTs at every training-set size from 1,000 to 60,000 images, and the hybrid is ahead of the plain ViT (sections 4–5): the small-data end of the paper's Fig 3–4, far below the data sizes at which the paper's ViTs win. Section 6 sets accuracy against compute as the paper's Fig 5 does. Next: [09_finetune_and_transfer](09_finetune_and_transfer.ipynb).
#
# **요약.** 합성곱은 지역성, 2차원 이웃 구조, 이동 등변성을 모든 층에 넣지만, ViT는 패치를 자를 때만 그것을 갖고, $\mathbf{E}_{pos}$는 패치 단위 이동에 대한 등변성마저 깹니다(2절). 하이브리드는 같은 ViT 앞에 합성곱을 둡니다(3절). Fashion-MNIST에서 모든 모델에 같은 예산과 레시피를 주면, 1,000장부터 60,000장까지 모든 훈련 세트 크기에서 CNN이 두 ViT보다 앞서고, 하이브리드는 일반 ViT보다 앞섭니다(4–5절): 논문 그림 3–4의 적은 데이터 쪽 끝이며, 논문의 ViT가 이기기 시작하는 데이터 규모보다 훨씬 아래입니다. 6절은 논문의 그림 5처럼 정확도를 계산량에 대해 그립니다. 다음은 09입니다.

# %% [markdown]
# ## Exercises
#
# Four exercises: which shifts a ViT cannot see at all, the parameters of the hybrid, and where the CNN stops winning. In the student edition
# (`python -m vitnp course build`) the model answers are cut out; the locked cell after each code exercise fails until
# your answer is right.
#
# * **Exercise nb08-q-roll-invariance** (2 points) — inline question: a ViT without position embeddings and an image
#   rolled around by whole patches.
#   *인라인 질문: 위치 임베딩이 없는 ViT와, 패치 단위로 굴린(roll) 이미지.*
# * **Exercise nb08-roll-invariance** (1 point) — measure it on a small ViT.
#   *작은 ViT로 그것을 측정하세요.*
# * **Exercise nb08-hybrid-params** (2 points) — count the parameters of a hybrid ViT by hand.
#   *하이브리드 ViT의 파라미터를 손으로 세세요.*
# * **Exercise nb08-q-crossover** (2 points) — inline question: from how many training images on does the CNN stop
#   winning?
#   *인라인 질문: 훈련 이미지가 몇 장부터 CNN이 더는 이기지 못하는가?*

# %% [markdown] nbgrader={"grade": true, "grade_id": "nb08-q-roll-invariance", "locked": false, "points": 2, "schema_version": 3, "solution": true}
# **Exercise nb08-q-roll-invariance** (2 points). Section 2 shifted images with a background border coming in. Now roll
# them circularly instead, `np.roll(x, s, axis=2)`: what leaves on the right comes back on the left. Take a ViT with
# `pos_embedding='none'`. Predict, with reasons, whether its logits change when $s = P$, when $s = 1$, and when the
# model has learned $\mathbf{E}_{pos}$ instead. Does the readout (class token or 'gap') matter? What does the answer
# say about the inductive bias of a ViT without position embeddings?
#
# *인라인 질문: 위치 임베딩이 없는 ViT와, 패치 단위로 굴린(roll) 이미지.*
#
# ### BEGIN SOLUTION
# **$s = P$, no $\mathbf{E}_{pos}$: the logits do not change** (up to rounding). Rolling by one patch width moves every
# patch one cell to the right, unchanged, and the last column of patches to the first: the patch vectors are exactly
# the old ones, permuted. $\mathbf{x}_p\mathbf{E}$ acts on each patch alone, so the tokens are permuted the same way;
# every encoder block is permutation-equivariant (LayerNorm and the MLP act per token, attention permutes the rows and
# columns of $A$ together); the class token stays in row 0, and a 'gap' mean ignores the order. So neither readout
# matters. **$s = 1$:** the image is cut into different patches; the tokens are new vectors, not a permutation of the
# old ones, and the logits change. **Learned $\mathbf{E}_{pos}$:** a patch that moves gets the position vector of its
# new place, so even $s = P$ changes the logits. **What it says:** without position embeddings the only spatial
# structure a ViT has is inside its patches; the model is invariant to *every* permutation of the patches (notebook
# 02, exercise nb02-q-bag-of-patches), a rolled image included. That is invariance of the wrong kind: the model
# cannot tell an image from one whose patches were scrambled.
# ### END SOLUTION

# %% [markdown]
# **Exercise nb08-roll-invariance** (1 point). Write `roll_change(params, cfg, x, s)`: the largest absolute change of
# `vit_forward`'s logits when the images `x` (B, H, W, C) are rolled circularly by `s` pixels to the right.
#
# *작은 ViT로 그것을 측정하세요.*

# %% nbgrader={"grade": false, "grade_id": "nb08-roll-invariance", "locked": false, "schema_version": 3, "solution": true}
def roll_change(params, cfg, x, s):
    """max |logits(roll(x, s)) − logits(x)| for a circular shift by s pixels along the width."""
    ### BEGIN SOLUTION
    before, _ = vitnp.vit_forward(params, x, cfg)
    after, _ = vitnp.vit_forward(params, np.roll(x, s, axis=2), cfg)
    return float(np.abs(after - before).max())
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "nb08-roll-invariance-test", "locked": true, "points": 1, "schema_version": 3, "solution": false}
with exercise("nb08-roll-invariance"):
    rng_t = np.random.default_rng(2)
    small = vitnp.ViTConfig(image_size=28, patch_size=7, in_channels=1, num_classes=10, dim=16, depth=2, heads=2,
                            mlp_dim=32, dtype="float64")
    print(f"{'pos_embedding':>13} {'classifier':>10} {'s':>3} {'max |Δ logits|':>15}")
    for pos, readout, s, invariant in (("none", "gap", P, True), ("none", "token", P, True), ("none", "gap", 2 * P, True),
                                       ("none", "gap", 1, False), ("learned", "gap", P, False),
                                       ("learned", "token", P, False)):
        c = small.replace(pos_embedding=pos, classifier=readout)
        p_t = {k: v + 0.1 * rng_t.standard_normal(v.shape) for k, v in vitnp.init_params(c, seed=0).items()}
        change = roll_change(p_t, c, x0, s)
        print(f"{pos:>13} {readout:>10} {s:>3} {change:>15.1e}")
        assert (change < 1e-12) == invariant
        logits_t = vitnp.vit_forward(p_t, x0, c)[0]
        assert np.abs(logits_t - logits_t[::-1]).max() > 1e-3               # the model does tell the images apart

# %% [markdown]
# **Exercise nb08-hybrid-params** (2 points). Write `hybrid_param_count(cfg)`: the number of parameters of a ViT
# config, hybrid or not, from its fields alone (`stem_channels`, `stem_kernel`, `in_channels`, `feature_channels`,
# `patch_size`, `dim`, `depth`, `mlp_dim`, `num_classes`, `num_tokens`, `classifier`; learned $\mathbf{E}_{pos}$),
# without `param_shapes` or `count_params`. The stem's stages are 'same' convolutions with a bias (section 3).
#
# *하이브리드 ViT의 파라미터를 손으로 세세요.*

# %% nbgrader={"grade": false, "grade_id": "nb08-hybrid-params", "locked": false, "schema_version": 3, "solution": true}
def hybrid_param_count(cfg):
    """Parameters of a ViT with learned E_pos: the conv stem (if any), then Eq 1–4 on its feature map."""
    ### BEGIN SOLUTION
    stem, c_in = 0, cfg.in_channels
    for c_out in cfg.stem_channels:                                  # one k×k kernel per (input, output) channel pair
        stem += cfg.stem_kernel ** 2 * c_in * c_out + c_out          # … and one bias per output channel
        c_in = c_out
    D, M, P_c = cfg.dim, cfg.mlp_dim, cfg.patch_size
    embed = P_c * P_c * cfg.feature_channels * D + D                 # E sees P²·C_f numbers per patch
    embed += (D if cfg.classifier == "token" else 0) + cfg.num_tokens * D   # x_class, E_pos
    blocks = cfg.depth * (4 * D + 4 * D * D + 4 * D + 2 * D * M + M + D)   # LNs, U_qkv, U_msa, MLP
    head = 2 * D + D * cfg.num_classes + cfg.num_classes
    return stem + embed + blocks + head
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "nb08-hybrid-params-test", "locked": true, "points": 2, "schema_version": 3, "solution": false}
with exercise("nb08-hybrid-params"):
    from vitnp.training.presets import get_preset

    fmnist_cfg = get_preset("fmnist-hybrid")[0]
    cases = {"tiny hybrid above (P = 1)": hcfg, "hybrid of the sweep": configs["hybrid"], "plain ViT of the sweep":
             configs["vit"], "fmnist-hybrid preset": fmnist_cfg, "fmnist-hybrid, 5×5 stem, 'gap'": fmnist_cfg.replace(
                 stem_kernel=5, classifier="gap")}
    for name, c in cases.items():
        mine, lib = hybrid_param_count(c), vitnp.count_params(c)
        print(f"{name:<28} {mine:>9,} (library {lib:,})")
        assert mine == lib
    stem_share = sum(int(np.prod(s)) for k, s in param_shapes(fmnist_cfg).items() if k.startswith("stem."))
    print(f"the fmnist-hybrid preset's stem: {stem_share:,} of {vitnp.count_params(fmnist_cfg):,} parameters; its E: "
          f"{param_shapes(fmnist_cfg)['E']}, the plain ViT's: {param_shapes(configs['vit'])['E']}")

# %% [markdown] nbgrader={"grade": true, "grade_id": "nb08-q-crossover", "locked": false, "points": 2, "schema_version": 3, "solution": true}
# **Exercise nb08-q-crossover** (2 points). Read the committed sweep of section 4 (the table and the gaps printed
# there). At which number of training images does the CNN stop beating the plain ViT on Fashion-MNIST? If the sweep
# does not show it, say what it does show about the gap, estimate roughly how the gap would have to keep changing for
# a crossover, and compare with where the paper finds one (§4.3, Fig 3 and Fig 4). What would you change in the
# experiment to look for the crossover, and what would stay out of reach on this machine?
#
# *인라인 질문: 훈련 이미지가 몇 장부터 CNN이 더는 이기지 못하는가?*
#
# ### BEGIN SOLUTION
# **Nowhere in the sweep**: the CNN is ahead at every size, by +6.81 points at 1,000 images, +5.57 at 5,000, +4.83 at
# 20,000 and +5.44 at 60,000. The gap narrows by about 2 points from 1,000 to 20,000 images (a 20× increase) and then
# stops narrowing, because at a fixed number of steps the 60,000-image runs see each image less than twice: there the
# ViT is limited by training, not by data (its train accuracy, 86.3 %, is barely above its test accuracy). If the gap
# kept shrinking by about 2 points per 20× more images, closing the remaining 5 points would need two to three more
# factors of 20, millions of images, far beyond Fashion-MNIST's 60,000. The paper finds the crossover at that scale:
# in Fig 3 the large ViTs trail the BiT ResNets when pre-trained on ImageNet (1.3M images) and match or pass them with
# ImageNet-21k (14M) and JFT-300M; in Fig 4 (random JFT subsets) ViT-B/32 does much worse than ResNet50 on the 9M
# subset and better from 90M on. To look for it here: train each size to convergence (steps growing with $N$, chosen
# on validation), several seeds, and a learning rate tuned for each model, so that the large-$N$ points measure data,
# not budget. Out of reach: the data (no millions of labelled 28×28 images) and the model and compute scale at which
# the paper's ViTs win.
# ### END SOLUTION
