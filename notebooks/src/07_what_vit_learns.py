# %% [markdown]
# # 07 · What a trained ViT has learned (paper Fig 6 and Fig 7)
#
# *An Image is Worth 16x16 Words*, §4.5 "Inspecting Vision Transformer" and Appendix D.7–D.8. Terms and their Korean
# equivalents: [glossary (용어집)](../docs/glossary.md).
#
# A study note on the paper says: *the most important thing is to find a way to visualise the method.* The paper opens
# up a trained ViT in four pictures, and this notebook draws each of them for a small ViT trained on Fashion-MNIST:
#
# 1. **Fig 7 left** — the principal components of the patch embedding $\mathbf{E}$: what the first layer looks for
#    in a patch;
# 2. **Fig 7 centre** — how similar the learned position embeddings $\mathbf{E}_{pos}$ of any two patches are: has the
#    model discovered, from a 1-D table, that the patches lie on a 2-D grid?
# 3. **Fig 7 right** — the mean attention distance of every head in every layer: does a head look near or far?
# 4. **Fig 6** — attention rollout: which parts of the image the class token's information comes from.
#
# Each quantity is first written out by hand in NumPy and asserted equal to `vitnp.analysis.maps`. Each is also drawn for the
# **untrained** model, the same parameters before the first step, because a structure is only *learned* if it was not
# there at the start.
#
# **The model.** `notebooks/assets/vit_fmnist.npz` (about 0.6 MB) holds run e08 of `docs/results.md`: a plain ViT (no
# conv stem) with the `fmnist-vit` preset's architecture, trained with the recipe of its day: AdamW, peak learning rate
# 3e-3, batch 128, warm-up over half an epoch, weight decay 0.05, label smoothing 0.1, random horizontal flips only,
# 11 epochs on one thread, on all 60,000 training images with no validation split; the file holds the weights after
# the last epoch. (Today's `fmnist-vit` preset trains differently: flips plus random erasing, up to 30 epochs within a
# 10-minute budget, and 5,000 training images held out to choose the epoch; the first cell prints the recipe the file
# records.) $P = 7$ (a 4×4 grid of $N = 16$ patches of the 28×28 images), $D = 64$, $L = 4$ layers of
# $k = 4$ heads, MLP width 128, 139,018 parameters, trained from scratch on Fashion-MNIST; the first cell prints how it
# was trained and its recorded test accuracy.
# `bash scripts/make_notebook_checkpoint.sh` repeats the run (its comment says how close today's code comes). The
# paper's models are 600–4,500 times larger, cut their images into many more patches (196 for a 224-pixel image and
# 16-pixel patches) and were pre-trained on 300 million images, so expect rougher pictures here; the notebook says where
# ours differ. `python -m vitnp visualize` draws the same four figures for any checkpoint (section 6).
#
# In fast mode (`VITNP_FAST=1`) fewer test images are used. Without the Fashion-MNIST files, the notebook uses synthetic
# images for the attention pictures and says so.

# %% [markdown]
# **Learning objectives.** After this notebook you can
#
# * reproduce Fig 7 (principal components of E, position-embedding similarity, mean attention distance) and Fig 6 (attention rollout) on a trained model, each by hand and with the library;
# * compare each with the untrained model, so that only learned structure is credited;
# * say where our small model differs from the paper's, and why.
#
# **학습 목표.** 이 노트북을 마치면
#
# * 학습된 모델로 그림 7(E의 주성분, 위치 임베딩 유사도, 평균 어텐션 거리)과 그림 6(어텐션 롤아웃)을 손으로, 그리고 라이브러리로 재현한다;
# * 각각을 학습 전 모델과 비교해 학습으로 생긴 구조만 인정한다;
# * 우리 작은 모델이 논문의 모델과 어디서, 왜 다른지 말한다.

# %%
import math
import os
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from IPython.display import Image, display
from matplotlib.cbook import get_sample_data

import vitnp
from vitnp.analysis.maps import (attention_maps, attention_rollout, embedding_filters, mean_attention_distance,
                            patch_distances, pos_embedding_similarity)
from vitnp.data import load_fashion_mnist
from vitnp.training.evaluation import evaluate_arrays
from vitnp.training import load_checkpoint
from vitnp.course.notebook import diff, exercise, setup

FAST = setup(precision=3)   # fast: fewer test images


CKPT = Path("assets/vit_fmnist.npz")
if not CKPT.exists():                                       # run from elsewhere (CI uses a temporary directory)
    CKPT = Path(vitnp.__file__).resolve().parents[1] / "notebooks" / "assets" / "vit_fmnist.npz"
params, cfg, meta = load_checkpoint(CKPT)                  # validated: every array matches the config
hp = meta["hparams"]
init = vitnp.init_params(cfg, seed=hp["seed"])              # where training started: vitnp.training.trainer's own init call
names = meta["class_names"]
gh, gw = cfg.grid
P, N, T, L, k = cfg.patch_size, cfg.num_patches, cfg.num_tokens, cfg.depth, cfg.heads
record = next(h for h in meta["history"] if h["epoch"] == meta["epoch"])    # the run's metrics for this epoch
# test_acc is in the history only if the run evaluated the test set after every epoch: this older run did; a run
# now does only with test_curve=True (it records val_acc instead, and the test set once, in results.json)
recorded = (f"recorded test accuracy {100 * record['test_acc']:.2f} %" if "test_acc" in record else
            f"recorded validation accuracy {100 * record['val_acc']:.2f} %" if "val_acc" in record else
            "no accuracy recorded per epoch")
print(f"{CKPT.name}: {CKPT.stat().st_size:,} bytes, epoch {meta['epoch']}, {vitnp.count_params(cfg):,} parameters")
print(f"model: P={P}  grid={gh}×{gw}  N={N}  T={T}  D={cfg.dim}  L={L}  k={k}  M={cfg.mlp_dim}")
print(f"training: {hp['epochs']} epochs, batch {hp['batch_size']}, AdamW lr {hp['lr']}, weight decay {hp['weight_decay']}, "
      f"label smoothing {hp['label_smoothing']}, augment={hp['augment']};  {recorded} after epoch {meta['epoch']}")

# %% [markdown]
# ## 1. The model and its test accuracy
#
# First, is this a model worth inspecting? `vitnp.training.evaluation.evaluate_arrays` runs it over test images, normalised the way
# the training images were. In full mode that is all 10,000 test images, and the result must equal the test accuracy the
# training run recorded for this epoch (same code, same batches): this older run evaluated the test set after every
# epoch, which runs now do only as a teaching curve (`test_curve=True`, notebook 06). In fast mode we use the first
# 1,000.

# %%
try:
    test_x, test_y = load_fashion_mnist(split="test")
    SYNTHETIC = False
except FileNotFoundError as err:
    SYNTHETIC = True
    print("Fashion-MNIST is NOT installed here:", str(err).splitlines()[0])
    print("=> no test accuracy, and the attention pictures below use SYNTHETIC images (bright blobs on black), "
          "which the model never saw; install dataset-fashion-mnist or set VITNP_DATA for the real thing.")
    rng = np.random.default_rng(0)
    r, c = np.mgrid[0:28, 0:28]
    blobs = []
    for _ in range(200):                                    # an ellipse of random size and place, plus noise
        cy, cx, ry, rx = rng.uniform(8, 20), rng.uniform(8, 20), rng.uniform(4, 11), rng.uniform(3, 9)
        img = 200.0 * (((r - cy) / ry) ** 2 + ((c - cx) / rx) ** 2 < 1) + rng.normal(0, 10, (28, 28))
        blobs.append(np.clip(img, 0, 255))
    test_x, test_y = np.array(blobs, dtype=np.uint8)[..., None], None

if not SYNTHETIC:
    n_eval = 1000 if FAST else len(test_x)
    ev = evaluate_arrays(params, cfg, test_x[:n_eval], test_y[:n_eval], mean=meta["norm_mean"], std=meta["norm_std"])
    print(f"test accuracy on {n_eval:,} images: {100 * ev['accuracy']:.2f} %   ("
          + (f"recorded by the training run on all 10,000: {100 * record['test_acc']:.2f} %; " if "test_acc" in record
             else "")
          + "chance: 10 %)")
    if n_eval == 10000 and "test_acc" in record:
        assert abs(ev["accuracy"] - record["test_acc"]) < 1e-9
    assert ev["accuracy"] > 0.8
if meta["progress"].get("best_split") == "test":
    print(f"note: the run kept the epoch of best TEST accuracy (it had no validation split; this file holds epoch "
          f"{meta['epoch']} of {hp['epochs']}), and its recipe was compared with others on the test set "
          f"(docs/results.md), so read its test accuracy as slightly optimistic (notebook 06, section 6, says why).")


def inputs(images_uint8):
    """uint8 (B, 28, 28, 1) → normalised float32 model inputs, as in training."""
    return ((images_uint8 / 255.0 - meta["norm_mean"]) / meta["norm_std"]).astype(cfg.np_dtype)


# %% [markdown]
# ## 2. Fig 7 left: the principal components of $\mathbf{E}$
#
# Eq 1 multiplies every flattened patch $\mathbf{x}_p \in \mathbb{R}^{P^2C}$ by $\mathbf{E} \in \mathbb{R}^{P^2C \times D}$.
# Column $d$ of $\mathbf{E}$ is the pattern that output dimension $d$ responds to: a $P \times P$ **filter**, exactly like
# the kernel of a convolution with stride $P$. With $D = 64$ filters we would have 64 noisy pictures to look at. The
# paper instead shows their **principal components**: treat the $D$ columns as samples in $\mathbb{R}^{P^2C}$, centre
# them, and find the orthogonal directions $\mathbf{u}_1, \mathbf{u}_2, \dots$ of largest variance — the eigenvectors of
# their covariance matrix,
#
# $$\Sigma = \frac1D \sum_{d=1}^{D} (\mathbf{e}_d - \bar{\mathbf{e}})(\mathbf{e}_d - \bar{\mathbf{e}})^\top
# \in \mathbb{R}^{P^2C \times P^2C}, \qquad \Sigma\,\mathbf{u}_i = \lambda_i \mathbf{u}_i, \qquad
# \text{share of the variance} = \lambda_i \big/ \textstyle\sum_j \lambda_j .$$
#
# The first few components span most of what the filters do. `vitnp.analysis.maps.embedding_filters` gets them from an SVD;
# by hand we use the eigen-decomposition of $\Sigma$ (a component's sign is arbitrary, so we compare up to sign).

# %%
n_pc = 28                                                   # the paper shows 28
filters, var = embedding_filters(params, cfg, n_pc, return_variance=True)   # (28, P, P, C), (28,)

E = params["E"].astype(np.float64)                          # (P²C, D): one filter per column
X = E.T - E.T.mean(0)                                       # (D, P²C): the D filters as centred rows
Sigma = X.T @ X / cfg.dim                                   # (P²C, P²C) covariance
lam, U = np.linalg.eigh(Sigma)                              # ascending eigenvalues
order = np.argsort(lam)[::-1]
lam, U = lam[order], U[:, order]                            # largest first; column i is u_i
cos = np.abs(U[:, :n_pc].T @ filters.reshape(n_pc, -1).T)   # |u_i · library's component j|
print("filters:", filters.shape, "(k, P, P, C)")
print(f"|u_i · component_i|: min over i = {np.diag(cos).min():.12f};  variance shares: max |library − hand| = "
      f"{diff(var, lam[:n_pc] / lam.sum()):.1e}")
assert np.allclose(np.diag(cos), 1.0, atol=1e-8) and diff(var, lam[:n_pc] / lam.sum()) < 1e-12

# %% [markdown]
# The 28 components of the trained $\mathbf{E}$ (top) and of the untrained one (bottom), each scaled to its own
# largest entry (grey is 0, white positive, black negative). Above each: its share of the variance.

# %%
filters0, var0 = embedding_filters(init, cfg, n_pc, return_variance=True)
fig, axes = plt.subplots(8, 7, figsize=(9, 11.5))
for block, (F, V, label) in enumerate(((filters, var, "trained"), (filters0, var0, "untrained (initialisation)"))):
    for i in range(n_pc):
        ax = axes[4 * block + i // 7, i % 7]
        ax.imshow(F[i, ..., 0] / np.abs(F[i]).max(), cmap="gray", vmin=-1, vmax=1)
        ax.set_title(f"{label[:9]} PC{i + 1} {100 * V[i]:.1f}%", fontsize=7)
        ax.set_xticks([])
        ax.set_yticks([])
fig.suptitle(f"Principal components of E as {P}×{P} filters: trained (rows 1–4) vs untrained (rows 5–8)")
fig.tight_layout()
plt.show()


# %% [markdown]
# How do we tell a learned filter from noise without squinting? Two numbers.
#
# * **The variance spectrum** (left): at initialisation the 64 filters are independent random vectors (LeCun normal),
#   so no direction is preferred and the shares fall off slowly, only because 64 random samples never fill
#   49 dimensions evenly. Training concentrates the variance in the leading components when the filters share
#   structure.
# * **Smoothness** (right): the correlation between horizontally and vertically neighbouring pixels of a component,
#   $\sum u[r,c]\,u[r,c+1] / \sum u^2$ averaged with the vertical version. White noise gives about 0; a smooth pattern
#   (a blob, a slow gradient, a broad edge) gives a value near 1.

# %%
def neighbour_correlation(F):
    """(k, P, P, C) filters -> (k,) mean correlation of horizontally and vertically adjacent pixels."""
    a = F[..., 0]
    energy = (a ** 2).sum((1, 2))
    horizontal = (a[:, :, 1:] * a[:, :, :-1]).sum((1, 2)) / energy
    vertical = (a[:, 1:, :] * a[:, :-1, :]).sum((1, 2)) / energy
    return (horizontal + vertical) / 2


all_pc = min(cfg.patch_dim, cfg.dim)
full, full0 = (embedding_filters(p, cfg, all_pc, return_variance=True) for p in (params, init))
smooth, smooth0 = neighbour_correlation(filters), neighbour_correlation(filters0)
fig, axes = plt.subplots(1, 2, figsize=(12, 3.8))
axes[0].plot(np.arange(1, all_pc + 1), 100 * np.cumsum(full[1]), "o-", ms=3, label="trained")
axes[0].plot(np.arange(1, all_pc + 1), 100 * np.cumsum(full0[1]), "s-", ms=3, label="untrained")
axes[0].set_xlabel("number of principal components")
axes[0].set_ylabel("cumulative share of E's variance (%)")
axes[0].set_title("Variance spectrum of E's filters")
axes[1].plot(np.arange(1, n_pc + 1), smooth, "o-", ms=4, label="trained")
axes[1].plot(np.arange(1, n_pc + 1), smooth0, "s-", ms=4, label="untrained")
axes[1].axhline(0, color="grey", lw=0.8)
axes[1].set_xlabel("principal component")
axes[1].set_ylabel("neighbour correlation")
axes[1].set_title("Smoothness of each component")
for ax in axes:
    ax.legend()
    ax.grid(alpha=0.3)
fig.tight_layout()
plt.show()
print(f"variance in the top 5 components: trained {100 * full[1][:5].sum():.1f} %, untrained "
      f"{100 * full0[1][:5].sum():.1f} %")
print(f"neighbour correlation of the top 8 components: trained {smooth[:8].mean():.2f}, untrained "
      f"{smooth0[:8].mean():.2f};  of all 28: trained {smooth.mean():.2f}, untrained {smooth0.mean():.2f}")

# %% [markdown]
# **What this shows.** For the shipped checkpoint the variance spectrum is only a little steeper than at
# initialisation, but the *leading* components have clearly become smooth: blob-like and edge-like patterns that vary
# slowly across the 7×7 patch, where the untrained components are salt-and-pepper noise. That is the paper's
# observation in miniature: the components "resemble plausible basis functions for a low-dimensional representation of
# the fine structure within each patch", much like the first-layer filters of a CNN. The lower components stay noisy.
# With 49 pixels per grey patch and only 11 epochs on 60,000 images there is little pressure to tidy them up; the
# paper's filters come from RGB patches of models pre-trained on JFT-300M.
#
# ## 3. Fig 7 centre: position embedding similarity
#
# $\mathbf{E}_{pos}$ has one learned row per token (Eq 1), numbered $0 \dots N$: nothing tells the model that token
# 1 and token $1 + g_w$ are vertical neighbours on the $g_h \times g_w$ grid. Whether it learns the 2-D layout shows in the
# cosine similarity of the rows of the patches $i$ and $j$,
#
# $$S_{ij} = \frac{\mathbf{E}_{pos}^{i} \cdot \mathbf{E}_{pos}^{j}}{\lVert \mathbf{E}_{pos}^{i} \rVert\,
# \lVert \mathbf{E}_{pos}^{j} \rVert},$$
#
# drawn the paper's way: a $g_h \times g_w$ grid of small $g_h \times g_w$ images, where the small image at (row $r$,
# column $c$) is $S$ between patch $(r, c)$ and every patch. The class token's row is left out (it has no place on the
# grid). By hand, for one patch:

# %%
S = pos_embedding_similarity(params, cfg)                   # (gh, gw, gh, gw)
S0 = pos_embedding_similarity(init, cfg)
rows = params["E_pos"][1:].astype(np.float64)               # (N, D): row 0 of E_pos is the class token's
r0, c0 = 2, 1
i = r0 * gw + c0                                            # patches are numbered row-major
hand = np.array([rows[i] @ rows[j] / (np.linalg.norm(rows[i]) * np.linalg.norm(rows[j])) for j in range(N)])
hand = hand.reshape(gh, gw)
print("S:", S.shape, f"(gh, gw, gh, gw);  patch ({r0}, {c0}): max |library − hand| = {diff(S[r0, c0], hand):.1e}")
assert diff(S[r0, c0], hand) < 1e-12


def grid_of_grids(S):
    """(gh, gw, gh, gw) -> one image with the gh×gw small maps side by side and a NaN (blank) line between them."""
    gh, gw = S.shape[:2]
    out = np.full((gh * (gh + 1) - 1, gw * (gw + 1) - 1), np.nan)
    for r in range(gh):
        for c in range(gw):
            out[r * (gh + 1):r * (gh + 1) + gh, c * (gw + 1):c * (gw + 1) + gw] = S[r, c]
    return out


fig, axes = plt.subplots(1, 2, figsize=(12, 5.6), layout="constrained")
for ax, sim, label in ((axes[0], S, "trained"), (axes[1], S0, "untrained (initialisation)")):
    im = ax.imshow(grid_of_grids(sim), cmap="viridis", vmin=-1, vmax=1)
    ax.set_xticks(np.arange(gw) * (gw + 1) + (gw - 1) / 2, range(1, gw + 1))
    ax.set_yticks(np.arange(gh) * (gh + 1) + (gh - 1) / 2, range(1, gh + 1))
    ax.set_xlabel("input patch column")
    ax.set_ylabel("input patch row")
    ax.set_title(f"E_pos similarity, {label}")
fig.colorbar(im, ax=axes, shrink=0.8, label="cosine similarity")
plt.show()

# %% [markdown]
# Every small map has its brightest pixel at its own position (similarity 1 with itself); the question is what the
# *rest* of each map looks like. In the paper (ViT-L/32, a 7×7 grid) it is a clear pattern: nearby patches are similar,
# and patches in the same row or the same column are similar. To see what our model learned, we average $S$ over
# pairs of patches grouped by how they are related on the grid:

# %%
rr, cc = np.divmod(np.arange(N), gw)                        # grid row and column of every patch
same_row = (rr[:, None] == rr[None]) & (cc[:, None] != cc[None])
same_col = (cc[:, None] == cc[None]) & (rr[:, None] != rr[None])
neither = (rr[:, None] != rr[None]) & (cc[:, None] != cc[None])
h_mirror = (rr[:, None] == rr[None]) & (cc[:, None] == gw - 1 - cc[None]) & (cc[:, None] != cc[None])
v_mirror = (cc[:, None] == cc[None]) & (rr[:, None] == gh - 1 - rr[None]) & (rr[:, None] != rr[None])
adjacent = np.abs(rr[:, None] - rr[None]) + np.abs(cc[:, None] - cc[None]) == 1
groups = {"same row": same_row, "same column": same_col, "neither": neither, "4-neighbours": adjacent,
          "left-right mirror (r,c)~(r,gw-1-c)": h_mirror, "top-bottom mirror (r,c)~(gh-1-r,c)": v_mirror}
flat, flat0 = S.reshape(N, N), S0.reshape(N, N)
print(f"{'pairs of patches':<38}{'pairs':>6}{'trained':>10}{'untrained':>11}")
for label, mask in groups.items():
    print(f"{label:<38}{mask.sum():>6}{flat[mask].mean():>10.3f}{flat0[mask].mean():>11.3f}")

fig, ax = plt.subplots(figsize=(8, 3.6))
xs = np.arange(len(groups))
ax.bar(xs - 0.2, [flat[m].mean() for m in groups.values()], 0.4, label="trained")
ax.bar(xs + 0.2, [flat0[m].mean() for m in groups.values()], 0.4, label="untrained")
ax.set_xticks(xs, [g.split(" (")[0] for g in groups], rotation=15)
ax.axhline(0, color="grey", lw=0.8)
ax.set_ylabel("mean cosine similarity")
ax.set_title("Which pairs of position embeddings became similar?")
ax.legend()
fig.tight_layout()
plt.show()

# %% [markdown]
# **What this shows** (for the shipped checkpoint; the printout above has the numbers). At initialisation every group
# averages about 0: random vectors in 64 dimensions are nearly orthogonal. After training, two structures have appeared.
#
# * **Rows.** Patches in the same row have become more similar than patches in the same column, and pairs that share
#   neither have become *dissimilar*. So the model has learned part of the 2-D layout from the 1-D table: it knows
#   which patches are at the same height.
# * **A left-right mirror symmetry.** The strongest group is the *mirror pairs* $(r, c) \sim (r, g_w - 1 - c)$; in the
#   small maps this shows as a bright spot at the opposite end of the same row. Top-bottom mirror pairs stay near 0.
#   The likely reason is our training recipe, not the ViT: every training image was flipped left-right with probability
#   ½ (`augment=flip`), so what the model sees at column $c$ it equally often sees at column $g_w - 1 - c$, and it pays
#   to give those positions similar embeddings. (A run without flips would test this; we have not made one.)
#
# What we do *not* see clearly is the paper's "nearby patches are similar": horizontal and vertical neighbours are only
# a little more similar than at initialisation. With a 4×4 grid, 28-pixel images and 11 epochs, the model gets much
# less evidence about position than ViT-L on 300 million images. The paper also found (Appendix D.4) that 1-D, 2-D and
# relative position embeddings perform about the same, because the encoder works on a small grid of patches rather than
# on pixels; notebook 02 has the fixed 2-D sine-cosine table, whose similarity map shows the row-and-column pattern by
# construction.
#
# ## 4. Fig 7 right: mean attention distance
#
# A convolution's first layer sees only its kernel, a few pixels. Attention has no such limit: any head in any layer can
# attend to the whole image. Does it? For head $h$ of layer $\ell$, with attention weights $A$ (Eq 6) and $d_{ij}$ the
# distance in pixels between the centres of patches $i$ and $j$ (patch $(r, c)$ has its centre at
# $((r + \tfrac12)P, (c + \tfrac12)P)$):
#
# $$\text{dist}_{\ell,h} = \operatorname*{mean}_{\text{images},\ \text{queries } i}\ \sum_{j} \tilde A_{\ell,h}[i, j]\; d_{ij},$$
#
# the "receptive field size" of the head (Appendix D.7). The class token has no place in the image, so its row and
# column are dropped and each query's weights over the patches renormalised to sum to 1 ($\tilde A$). For reference:
# a head that attends only to itself scores 0; one that spreads its attention evenly over all 16 patches scores the
# mean distance between patch centres.

# %%
n_att = 200 if FAST else 1000
x_att = inputs(test_x[:n_att])                              # (n_att, 28, 28, 1)
_, cache = vitnp.vit_forward(params, x_att, cfg)
maps = attention_maps(cache)                                # L × (n_att, k, T, T)
_, cache0 = vitnp.vit_forward(init, x_att, cfg)
maps0 = attention_maps(cache0)
dist, dist0 = mean_attention_distance(maps, cfg), mean_attention_distance(maps0, cfg)   # (L, k) pixels

# by hand, one head of the first layer
centres = [((r + 0.5) * P, (c + 0.5) * P) for r in range(gh) for c in range(gw)]
d = np.array([[math.dist(a, b) for b in centres] for a in centres])         # (N, N) pixels
h = 1
A = maps[0][:, h, 1:, 1:].astype(np.float64)                # (n_att, N, N): patches only
A = A / A.sum(-1, keepdims=True)                            # renormalise without the class token
hand = (A * d).sum(-1).mean()
print(f"attention maps: {len(maps)} × {maps[0].shape};  layer 1, head {h + 1}: library {dist[0, h]:.6f} px, "
      f"hand {hand:.6f} px")
assert abs(dist[0, h] - hand) < 1e-9 and diff(patch_distances(cfg), d) < 1e-12

uniform, farthest = d.mean(), d.max()
print(f"reference: uniform attention {uniform:.2f} px, nearest other patch {P} px, farthest pair {farthest:.2f} px")
print("trained, mean distance (px), rows = layers, columns = heads:\n", dist)
print("untrained:\n", dist0)


# %% [markdown]
# A distance only says *where on average*. A head can score the uniform distance by attending evenly to everything,
# or by attending sharply to a few patches spread around. The **entropy** of each query's attention,
# $-\sum_j \tilde A_{ij} \log \tilde A_{ij}$, tells these apart: $\log N = \log 16 \approx 2.77$ for even attention,
# 0 for attention to a single patch.

# %%
def attention_entropy(maps):
    """(L, k) mean entropy (nats) of each query patch's renormalised attention over the N patches."""
    out = []
    for A in maps:
        A = A[:, :, 1:, 1:].astype(np.float64)               # (B, k, N, N)
        A = A / A.sum(-1, keepdims=True)
        out.append(-(A * np.log(np.maximum(A, 1e-30))).sum(-1).mean((0, 2)))   # (k,)
    return np.array(out)


ent, ent0 = attention_entropy(maps), attention_entropy(maps0)
layers = np.arange(1, L + 1)
fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
for h in range(k):
    axes[0].plot(layers + 0.04 * (h - k / 2), dist[:, h], "o", color=f"C{h}", label=f"head {h + 1}, trained")
    axes[0].plot(layers + 0.04 * (h - k / 2), dist0[:, h], "x", color=f"C{h}", alpha=0.6)
    axes[1].plot(layers + 0.04 * (h - k / 2), ent[:, h], "o", color=f"C{h}")
    axes[1].plot(layers + 0.04 * (h - k / 2), ent0[:, h], "x", color=f"C{h}", alpha=0.6)
axes[0].axhline(uniform, color="grey", ls="--", lw=1, label="uniform attention")
axes[0].set_ylim(0, farthest)
axes[0].set_ylabel("mean attention distance (pixels)")
axes[0].set_title(f"Fig 7 right for our model ({n_att} images; × = untrained)")
axes[0].legend(fontsize=7, loc="lower right")
axes[1].axhline(np.log(N), color="grey", ls="--", lw=1, label="uniform: log N")
axes[1].set_ylim(0, np.log(N) * 1.05)
axes[1].set_ylabel("attention entropy (nats)")
axes[1].set_title("How spread out each head's attention is (× = untrained)")
axes[1].legend(fontsize=7, loc="lower right")
for ax in axes:
    ax.set_xlabel("network depth (layer)")
    ax.set_xticks(layers)
    ax.grid(alpha=0.3)
fig.tight_layout()
plt.show()
print("mean distance per layer (px), trained:", dist.mean(1), "  untrained:", dist0.mean(1))
print("mean entropy per layer (nats), trained:", ent.mean(1), "  untrained:", ent0.mean(1))
print(f"layer 1 heads span {dist[0].min():.1f}–{dist[0].max():.1f} px; layer {L} heads "
      f"{dist[-1].min():.1f}–{dist[-1].max():.1f} px")

# %% [markdown]
# **The paper's finding.** In ViT-L/16 at 224 pixels (a 14×14 grid of 16-pixel patches), the heads of the *lowest*
# layers already spread widely: some attend locally (tens of pixels), but others attend to most of the image (over 100
# pixels) — something a CNN's first layers cannot do, since their receptive field is a few pixels. With depth the
# distance grows for all heads, and in the deepest layers every head looks globally. In the hybrid ViT, whose ResNet
# stem already does the local work, the lowest layers have fewer local heads. The authors suggest the local heads of
# the pure ViT play the role of early convolutions.
#
# **What our small model shows** (the printout above; for the shipped checkpoint):
#
# * Training has clearly *changed* the attention: at initialisation every head attends almost evenly (entropy close to
#   $\log 16$); after training the entropy is much lower, so heads focus on a few patches.
# * But the focused patches are spread over the image: every head's mean distance stays close to the uniform value,
#   and we see no clearly local heads. The first layer's heads are slightly closer than the later layers', a hint of
#   the paper's "distance grows with depth", but the differences are a pixel or two.
#
# The scale explains much of it. Our grid is 4×4: the nearest *other* patch is already 7 pixels away and the uniform
# average is 14 pixels, so there is little room between "local" and "global"; a 7×7 patch is a quarter of the image
# width. Local structure is handled *inside* a patch by $\mathbf{E}$ (section 2), which is where a CNN's first layers
# would do it. The paper's gradual local-to-global picture needs many more, smaller patches.
#
# ## 5. Fig 6: attention rollout
#
# Which parts of the image does the class token's output $\mathbf{y}$ (Eq 4) draw on? The last layer's attention alone
# does not say, because its "patch" tokens have already mixed with each other in the layers below. **Attention rollout**
# (Abnar & Zuidema 2020; paper Appendix D.8) follows the mixing through all layers:
#
# 1. average the $k$ heads of layer $\ell$: $\bar A_\ell = \tfrac1k \sum_h A_{\ell,h}$;
# 2. account for the residual connection of Eq 2 ($\mathbf{z}' = \text{MSA}(\cdot) + \mathbf{z}$), which passes every
#    token on unchanged as well: add the identity and renormalise the rows,
#    $\hat A_\ell = \operatorname{rownorm}(\bar A_\ell + I)$;
# 3. multiply the layers from the first up: $R = \hat A_L \cdots \hat A_2 \hat A_1$;
# 4. read the class token's row over the patches, $R[0, 1{:}]$, as a $g_h \times g_w$ map, and spread each value over
#    its patch's $P \times P$ pixels.
#
# First by hand for one image, then with `vitnp.analysis.maps.attention_rollout`:

# %%
b = 0
R = np.eye(T)
for A_l in maps:                                            # layers 1 … L, in order
    A_bar = A_l[b].astype(np.float64).mean(0)               # heads averaged: (T, T)
    A_hat = A_bar + np.eye(T)                               # + identity for the residual path
    A_hat /= A_hat.sum(1, keepdims=True)                    # rows sum to 1 again
    R = A_hat @ R                                           # R_ℓ = Â_ℓ R_{ℓ−1}
hand_grid = R[0, 1:].reshape(gh, gw)                        # class token over the patches, row-major
lib_grid = attention_rollout([A_l[b:b + 1] for A_l in maps], cfg, upsample=None)[0]
lib_image = attention_rollout([A_l[b:b + 1] for A_l in maps], cfg)[0]             # (28, 28), nearest
print(f"rollout of image {b}: grid {lib_grid.shape}, image {lib_image.shape};  max |library − hand| = "
      f"{diff(lib_grid, hand_grid):.1e}")
assert diff(lib_grid, hand_grid) < 1e-12
assert diff(lib_image, np.kron(hand_grid, np.ones((P, P)))) < 1e-12      # each patch's value over its P×P pixels
print("the class token keeps", f"{R[0, 0]:.3f}", "of its own input; the patches share the rest:", f"{hand_grid.sum():.3f}")

# %% [markdown]
# Now eight test images (top), the rollout map over each (middle), and, for comparison, the last layer's attention of
# the class token alone, averaged over heads (bottom). Each map is scaled to its own maximum. The title gives the
# predicted class and its probability.

# %%
show = np.arange(8) if SYNTHETIC else np.random.default_rng(7).choice(n_att, 8, replace=False)
_, cache_show = vitnp.vit_forward(params, x_att[show], cfg)
maps_show = attention_maps(cache_show)
roll = attention_rollout(maps_show, cfg, upsample="bilinear")         # (8, 28, 28), interpolated between centres
last = maps_show[-1].astype(np.float64).mean(1)[:, 0, 1:].reshape(-1, gh, gw)   # (8, gh, gw)
logits = vitnp.vit_forward(params, x_att[show], cfg)[0].astype(np.float64)
prob = np.exp(logits - logits.max(1, keepdims=True))
prob /= prob.sum(1, keepdims=True)

fig, axes = plt.subplots(3, 8, figsize=(13, 5.6), layout="constrained")
for col, i in enumerate(show):
    picture = test_x[i, ..., 0]
    p = prob[col].argmax()
    title = f"{names[p]} {100 * prob[col, p]:.0f}%"
    if not SYNTHETIC:
        title += f"\n(true: {names[test_y[i]]})"
    axes[0, col].imshow(picture, cmap="gray")
    axes[0, col].set_title(title, fontsize=7,
                           color="black" if SYNTHETIC else ("tab:green" if p == test_y[i] else "tab:red"))
    axes[1, col].imshow(picture, cmap="gray")
    im = axes[1, col].imshow(roll[col] / roll[col].max(), cmap="inferno", alpha=0.6, vmin=0, vmax=1)
    axes[2, col].imshow(picture, cmap="gray")
    axes[2, col].imshow(np.kron(last[col] / last[col].max(), np.ones((P, P))), cmap="inferno", alpha=0.6,
                        vmin=0, vmax=1)
    for ax in axes[:, col]:
        ax.set_xticks([])
        ax.set_yticks([])
axes[0, 0].set_ylabel("image")
axes[1, 0].set_ylabel("rollout (all layers)")
axes[2, 0].set_ylabel(f"layer {L} only")
fig.suptitle(("SYNTHETIC images: " if SYNTHETIC else "Test images: ")
             + "attention rollout (Fig 6) vs the last layer's class-token attention")
fig.colorbar(im, ax=axes[1:, :].ravel().tolist(), shrink=0.8, label="weight ÷ that map's maximum")
plt.show()


# %% [markdown]
# Is the rollout drawn to the garment? Looking at eight maps is easy to over-read, so we measure it over all the images
# of section 4: the share of the rollout weight (each map normalised to sum to 1 over the pixels) that falls on garment
# pixels (brighter than 10 % of white), against the share of the pixels the garment covers. A map that ignored the
# image would score the same as the coverage. The last-layer maps and the untrained model are measured the same way.

# %%
def share_on_object(weights, images):
    """Mean over images of the share of a per-pixel map (B, H, W) that falls on pixels brighter than 10 % of white."""
    mask = images[..., 0] > 25                                              # (B, H, W) bool
    weights = weights / weights.sum((1, 2), keepdims=True)
    return float((weights * mask).sum((1, 2)).mean()), (weights * mask).sum((1, 2)) > mask.mean((1, 2))


def last_layer_map(maps):
    """The class token's last-layer attention over the patches, heads averaged, on the pixels: (B, H, W)."""
    A = maps[-1].astype(np.float64).mean(1)[:, 0, 1:].reshape(-1, gh, gw)
    return np.kron(A, np.ones((1, P, P)))


coverage = float((test_x[:n_att, ..., 0] > 25).mean())
print(f"the object covers {100 * coverage:.1f} % of the pixels (mean over {n_att} images)")
for label, m in (("trained", maps), ("untrained", maps0)):
    s_roll, more_roll = share_on_object(attention_rollout(m, cfg), test_x[:n_att])
    s_last, more_last = share_on_object(last_layer_map(m), test_x[:n_att])
    print(f"{label:>9}: rollout puts {100 * s_roll:.1f} % of its weight on the object (more than the coverage in "
          f"{100 * more_roll.mean():.0f} % of the images); last layer alone {100 * s_last:.1f} % "
          f"({100 * more_last.mean():.0f} % of the images)")

# %% [markdown]
# **What this shows** (for the shipped checkpoint). The rollout maps lean towards the garment, but only mildly: the
# share of their weight on garment pixels is a few points above the garment's coverage, in most but not all images,
# and the untrained model is close to the coverage. Several maps in the figure also light up background patches. This
# is far from the crisp object outlines of the paper's Fig 6, and the reasons are the ones we met before: a 4×4 grid
# can only say "this quarter of the image", every 7×7 patch on the garment's edge is half background, and a
# Fashion-MNIST garment fills almost half of the image anyway, so there is little background to ignore. The last
# layer alone (bottom row) is patchier: it often picks single patches, sometimes background ones, because after three
# layers of mixing a patch token carries information from all over the image — the reason rollout multiplies through
# all the layers instead of reading the last one.
#
# Rollout is a heuristic. It ignores the values $\mathbf{v}$, the MLPs and the differences between heads (it averages
# them), and weighs the residual path as exactly half of each layer. It shows where information *can* flow, not
# what the model *uses*; compare gradient-based saliency methods if you need the latter.
#
# ## 6. The same figures from the command line
#
# `python -m vitnp visualize CHECKPOINT IMAGE … --out DIR` writes these four pictures for any checkpoint as PNG files
# (`--index N` takes Fashion-MNIST test images instead of files). Image files are converted exactly as `predict`
# converts them (grey, light-on-dark, resized to 28×28). Here we save one test image as a PNG and run it:

# %%
from vitnp.analysis.visualize import visualize

from vitnp.data.image_files import image_to_input, load_image

with tempfile.TemporaryDirectory() as tmp:
    png = os.path.join(tmp, "example.png")
    plt.imsave(png, np.repeat(test_x[show[0]], 3, axis=2))         # uint8 (28, 28, 3): grey as RGB, lossless
    x_png, _ = image_to_input(load_image(png), cfg, meta["norm_mean"], meta["norm_std"])   # what predict does
    print(f"the PNG, read back and converted: max |x − x_test| = {diff(x_png, x_att[show[0]]):.1e}")
    assert diff(x_png, x_att[show[0]]) < 1e-6                       # a 28×28 grey PNG comes back unchanged
    written = visualize(CKPT, [png], os.path.join(tmp, "figs"),     # = python -m vitnp visualize … --out figs
                        log=lambda line: print(line.replace(tmp + os.sep, "")))
    assert [os.path.basename(p) for p in written] == ["rollout.png", "attention_distance.png",
                                                       "pos_embedding_similarity.png", "filters.png"]
    display(Image(filename=written[1], width=520))                  # attention_distance.png

# %% [markdown]
# ## 7. The paper's own ViT-B/16, when this machine is online
#
# Everything above is our small model. The paper's figures come from its large ones, and the google-research code
# publishes their weights. The cell below fetches ViT-B/16 pre-trained on ImageNet-21k (224×224 images, $P = 16$,
# 196 patches; `vitnp.io.download.fetch_original`, cached in `~/.cache/vitnp` after the first time; or set
# `VITNP_VIT_B16` to a copy you have), reads it with `vitnp.io.original.load_original` (its `pre_logits` layer dropped:
# we draw no predictions, only the figures) and draws Fig 7 and the rollout of Fig 6 for the photograph of notebook 01,
# with the same functions as above (`vitnp.analysis.visualize.paper_figures`). The original code feeds images scaled to
# $[-1, 1]$. Without a network it says so in one line, and the notebook goes on. Its size follows from the layout
# (printed first); its run time is printed when it runs, and was not measured on the machine that executed this copy
# of the notebook, which has no route to the download.

# %%
import time

from vitnp.analysis.visualize import paper_figures
from vitnp.data.resample import resize_area
from vitnp.io.download import ORIGINAL_URLS, fetch_original
from vitnp.io.original import jax_shapes, load_original

b16 = vitnp.ViTConfig.variant("B/16", num_classes=21843)             # ImageNet-21k's 21,843 classes
n_numbers = sum(int(np.prod(s)) for s in jax_shapes(b16).values()) + b16.dim * b16.dim + b16.dim   # + pre_logits
print(f"{ORIGINAL_URLS['ViT-B_16']}: {n_numbers:,} float32 numbers, about {4 * n_numbers / 1e6:.0f} MB to download")
local = os.environ.get("VITNP_VIT_B16")
try:
    b16_path = Path(local) if local else fetch_original("ViT-B_16", timeout=5)
except OSError as err:
    b16_path = None
    print(f"offline, so no ViT-B/16 here ({err}); nothing below this cell needs it")
if b16_path is not None:
    t0 = time.perf_counter()
    b16_params, b16_cfg = load_original(b16_path, drop_pre_logits=True)
    photo = plt.imread(get_sample_data("grace_hopper.jpg", asfileobj=False))[:512].astype(np.float64) / 255.0
    picture = resize_area(photo, b16_cfg.hw)[None]                    # (1, H, W, 3) in [0, 1]
    x_b16 = (2.0 * picture - 1.0).astype(b16_cfg.np_dtype)            # the original code's scaling to [−1, 1]
    for name, fig in paper_figures(b16_params, b16_cfg, x_b16, picture, ["Grace Hopper (matplotlib's photo)"]):
        print(name)
        display(fig)
    print(f"ViT-B/16 read and drawn in {time.perf_counter() - t0:.0f} s")

# %% [markdown]
# ## Summary
#
# | paper | what it shows for ViT-L | our 139k-parameter ViT on Fashion-MNIST (shipped checkpoint) |
# |---|---|---|
# | Fig 7 left | principal components of $\mathbf{E}$ look like smooth basis functions | the leading components turned from noise into smooth blobs and edges; the rest stay noisy |
# | Fig 7 centre | $\mathbf{E}_{pos}$ learns rows, columns and neighbourhoods | rows learned; a left-right mirror symmetry that our flip augmentation explains; neighbourhoods weak |
# | Fig 7 right | some heads attend globally already in layer 1; distance grows with depth | attention became focused, but all heads look about as far as uniform attention would; the grid is too small for local heads |
# | Fig 6 | attention rollout highlights the object | rollout leans only mildly towards the garment; a 4×4 grid is too coarse for outlines |
#
# None of these structures exists at initialisation: each was learned from the images. The differences from the paper
# are mostly of scale: grid size, model size and data. To see more, train a larger model with smaller patches (for
# example `python -m vitnp train --preset fmnist-vit --patch-size 4 --out runs/p4`) and run
# `python -m vitnp visualize runs/p4/best.npz --index 0 --index 1 --out figs`.
#
# **요약.** 위 표의 네 구조(그림 7의 세 그림과 그림 6) 가운데 어느 것도 초기화 때는 없었습니다: 모두 이미지에서 학습되었습니다. 논문과의 차이는 주로 규모, 곧 격자 크기, 모델 크기, 데이터의 차이입니다. 더 보려면 더 작은 패치로 더 큰 모델을 학습하고 `python -m vitnp visualize`로 같은 그림을 그려 보세요.

# %% [markdown]
# ## Exercises
#
# Four exercises: the run without flips that section 3 has not made, and what the rollout of section 5 gives when
# nothing has been learned. In the student edition (`python -m vitnp course build`) the model answers are cut out; the
# locked cell after each code exercise fails until your answer is right.
#
# * **Exercise nb07-q-no-flip** (2 points) — inline question: predict the position-embedding similarities of a model
#   trained without flips.
#   *인라인 질문: 좌우 반전 없이 학습한 모델의 위치 임베딩 유사도를 예측하세요.*
# * **Exercise nb07-mirror-score** (2 points) — measure them: mirror pairs against the other pairs of a row; then, if
#   you have made the run (about 8 minutes on one core), compare.
#   *그것을 측정하기: 한 행의 거울 쌍과 다른 쌍을 비교하고, 학습을 실행했다면(한 코어에서 약 8분) 비교하세요.*
# * **Exercise nb07-q-uniform-rollout** (2 points) — inline question: the rollout of perfectly uniform attention.
#   *인라인 질문: 완전히 균일한 어텐션의 롤아웃.*
# * **Exercise nb07-uniform-rollout** (1 point) — check your formula against `attention_rollout`.
#   *여러분의 식을 `attention_rollout`과 대조하세요.*

# %% [markdown] nbgrader={"grade": true, "grade_id": "nb07-q-no-flip", "locked": false, "points": 2, "schema_version": 3, "solution": true}
# **Exercise nb07-q-no-flip** (2 points). Section 3 explains the strong similarity of left-right mirror pairs
# $(r, c) \sim (r, g_w - 1 - c)$ in the learned $\mathbf{E}_{pos}$ by the flip augmentation, and says that the run
# without flips has not been made. Predict what that run shows: the mean similarity of the mirror pairs, of the other
# pairs in the same row, and of the pairs that share neither row nor column, each compared with the shipped model.
# Explain why. Which outcome would show that the explanation of section 3 is wrong?
#
# *인라인 질문: 좌우 반전 없이 학습한 모델의 위치 임베딩 유사도를 예측하세요.*
#
# ### BEGIN SOLUTION
# A prediction, not a measurement: this project has not made the run. **Mirror pairs:** with flips, every training
# image is seen mirrored half of the time, so the content at column $c$ of a row is, over the training set, the content
# at column $g_w - 1 - c$ mirrored. Both positions then face the same distribution of (mirrored) patches, and a
# position embedding that is useful at one is useful at the other, which pulls the two rows of $\mathbf{E}_{pos}$
# together. Without flips that pull is gone, so the mirror pairs should lose most of their lead and fall towards the
# other pairs of the same row. Some similarity may remain, because Fashion-MNIST garments are themselves roughly
# left-right symmetric and centred. **Rows:** the row structure (pairs in the same row more similar than pairs that
# share neither row nor column) does not depend on flips: a flip keeps every patch in its row, and garments are
# upright, so what is at a given height (collar, waist, hem) differs between rows. Expect it to stay. **What would
# refute section 3:** mirror pairs as similar without flips as with them; the symmetry would then come from the
# symmetric garments, not from the augmentation.
# ### END SOLUTION

# %% [markdown]
# **Exercise nb07-mirror-score** (2 points). Write `mirror_scores(sim)`: from a similarity array `sim` of shape
# $(g_h, g_w, g_h, g_w)$ (`pos_embedding_similarity`), return a dict with the mean similarity over the left-right
# mirror pairs (`'mirror'`: $(r, c)$ and $(r, g_w - 1 - c)$, $c \ne g_w - 1 - c$), over the other pairs of distinct
# patches in the same row (`'same row'`) and over the pairs that share neither row nor column (`'neither'`). Every
# ordered pair counts once, as in the table of section 3.
#
# *그것을 측정하기: 한 행의 거울 쌍과 다른 쌍을 비교하고, 학습을 실행했다면(한 코어에서 약 8분) 비교하세요.*

# %% nbgrader={"grade": false, "grade_id": "nb07-mirror-score", "locked": false, "schema_version": 3, "solution": true}
def mirror_scores(sim):
    """{'mirror', 'same row', 'neither'}: mean cosine similarity over three groups of patch pairs."""
    ### BEGIN SOLUTION
    g_h, g_w = sim.shape[:2]
    r_i, c_i = np.divmod(np.arange(g_h * g_w), g_w)              # grid row and column of every patch
    same_r = r_i[:, None] == r_i[None]
    same_c = c_i[:, None] == c_i[None]
    mirror = same_r & (c_i[:, None] == g_w - 1 - c_i[None]) & ~same_c
    flat_sim = sim.reshape(g_h * g_w, g_h * g_w)
    return {"mirror": flat_sim[mirror].mean(), "same row": flat_sim[same_r & ~same_c & ~mirror].mean(),
            "neither": flat_sim[~same_r & ~same_c].mean()}
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "nb07-mirror-score-test", "locked": true, "points": 2, "schema_version": 3, "solution": false}
with exercise("nb07-mirror-score"):
    scores = mirror_scores(S)
    print("shipped model (trained with flips):", {k: round(float(v), 3) for k, v in scores.items()})
    assert abs(scores["mirror"] - flat[h_mirror].mean()) < 1e-12 and abs(scores["neither"] - flat[neither].mean()) < 1e-12
    assert abs(scores["same row"] - flat[same_row & ~h_mirror].mean()) < 1e-12
    rows_t = np.random.default_rng(9).standard_normal((gh, gw // 2, cfg.dim))
    symmetric = np.concatenate([rows_t, rows_t[:, ::-1]], axis=1).reshape(N, cfg.dim)     # E_pos[r, c] = E_pos[r, gw−1−c]
    sym_table = np.concatenate([np.zeros((1, cfg.dim)), symmetric])                           # a class-token row first
    sym_scores = mirror_scores(pos_embedding_similarity({"E_pos": sym_table}, cfg))
    assert abs(sym_scores["mirror"] - 1) < 1e-12 and abs(sym_scores["same row"]) < 0.5    # a mirror-symmetric table

# %% [markdown]
# Your run without flips: the recipe of the shipped checkpoint (run e08 of `docs/results.md`, 8 minutes on one core:
# 11 epochs, all 60,000 images, no validation split) with `--augment none` instead of its flips. Make it from the repository root, then run the next cell (it looks for
# `runs/noflip/best.npz`, or the file named by `$VITNP_NOFLIP`):
#
# ```bash
# python -m vitnp train --preset fmnist-vit --epochs 11 --val-size 0 --threads 1 --max-minutes 0 --augment none --out runs/noflip
# ```

# %%
noflip = Path(os.environ.get("VITNP_NOFLIP", Path(vitnp.__file__).resolve().parents[1] / "runs/noflip/best.npz"))
if noflip.exists():
    p_nf, cfg_nf, meta_nf = load_checkpoint(noflip)
    print(f"{noflip}: augment={meta_nf['hparams']['augment']!r}, epoch {meta_nf['epoch']}")
    for label, sim in (("with flips (shipped)", S), ("without flips (yours)", pos_embedding_similarity(p_nf, cfg_nf))):
        print(f"{label:<22}", {k: round(float(v), 3) for k, v in mirror_scores(sim).items()})
else:
    print(f"no run at {noflip}: make it with the command above to compare")

# %% [markdown] nbgrader={"grade": true, "grade_id": "nb07-q-uniform-rollout", "locked": false, "points": 2, "schema_version": 3, "solution": true}
# **Exercise nb07-q-uniform-rollout** (2 points). Suppose every head of every layer attends perfectly evenly,
# $A = \frac1T\mathbf{1}\mathbf{1}^\top$. Derive the rollout $R = \hat A_L \cdots \hat A_1$ of section 5 in closed form
# (hint: $U = \frac1T\mathbf{1}\mathbf{1}^\top$ satisfies $U^2 = U$). What is the class token's row? What map does it
# draw for our model ($T = 17$, $L = 4$), and how much of the class token's own input does it keep?
#
# *인라인 질문: 완전히 균일한 어텐션의 롤아웃.*
#
# ### BEGIN SOLUTION
# The rows of $A + I$ sum to 2, so $\hat A = \tfrac12(I + U)$ in every layer. Since $U^2 = U$, powers stay of the form
# $aI + bU$: $(aI + bU)\,\tfrac12(I + U) = \tfrac a2 I + (\tfrac a2 + b)U$. Starting from $I$ (a = 1, b = 0), after $L$
# layers
# $$R = 2^{-L} I + \big(1 - 2^{-L}\big)\,U ,$$
# since the coefficients always sum to 1. The class token's row: $R_{00} = 2^{-L} + (1 - 2^{-L})/T$ and
# $R_{0j} = (1 - 2^{-L})/T$ for every patch $j$. The map is **flat**: every patch gets the same weight. For $T = 17$,
# $L = 4$: $15/16 \cdot 1/17 = 0.0551$ per patch, and the class token keeps $1/16 + 0.0551 = 0.1176$ of its own
# input. The untrained model is close to this on average over images: its rollout, averaged over the test images of
# section 4, is within a few per cent of 0.0551 on every patch (the next cell checks it), so the structure of the
# trained maps is learned.
# ### END SOLUTION

# %% [markdown]
# **Exercise nb07-uniform-rollout** (1 point). Write `uniform_rollout(T, L)`: the class token's row of $R$, shape
# $(T,)$, from your closed form (no matrix products).
#
# *여러분의 식을 `attention_rollout`과 대조하세요.*

# %% nbgrader={"grade": false, "grade_id": "nb07-uniform-rollout", "locked": false, "schema_version": 3, "solution": true}
def uniform_rollout(T, L):
    """Row 0 of the rollout R after L layers of uniform attention over T tokens: (T,)."""
    ### BEGIN SOLUTION
    row = np.full(T, (1 - 2.0 ** -L) / T)                        # R = 2^-L I + (1 − 2^-L) 11ᵀ/T
    row[0] += 2.0 ** -L
    return row
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "nb07-uniform-rollout-test", "locked": true, "points": 1, "schema_version": 3, "solution": false}
with exercise("nb07-uniform-rollout"):
    for L_t in (1, 2, 4, 8):
        uniform_maps = [np.full((1, k, T, T), 1 / T)] * L_t
        lib_row = attention_rollout(uniform_maps, cfg, upsample=None)[0].ravel()                 # R[0, 1:]
        R_t = np.linalg.matrix_power((np.full((T, T), 1 / T) + np.eye(T)) / 2, L_t)              # Â^L
        mine = uniform_rollout(T, L_t)
        assert mine.shape == (T,) and diff(mine[1:], lib_row) < 1e-12 and diff(mine, R_t[0]) < 1e-12
    print(f"L = {L}, T = {T}: {uniform_rollout(T, L)[1]:.4f} per patch, {uniform_rollout(T, L)[0]:.4f} kept by the "
          f"class token")
    if SYNTHETIC:
        print("(the untrained model is compared on Fashion-MNIST test images, which are not installed here)")
    else:
        untrained = attention_rollout(maps0, cfg, upsample=None).mean(0)                         # over section 4's images
        deviation = np.abs(untrained / uniform_rollout(T, L)[1] - 1).max()
        print(f"untrained model, mean over {n_att} test images: within {100 * deviation:.1f} % of the uniform prediction "
              f"on every patch")
        assert deviation < 0.1
