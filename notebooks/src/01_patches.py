# %% [markdown]
# # 01 · Patches: an image becomes a sequence
#
# *An Image is Worth 16x16 Words* (Dosovitskiy et al., ICLR 2021, [arXiv 2010.11929](https://arxiv.org/abs/2010.11929)), §3.1.
# Terms used here, with their Korean equivalents, are in the [glossary (용어집)](../docs/glossary.md).
#
# A Transformer reads a **sequence of vectors** (tokens). A sentence is one already: one vector per word.
# An image is a grid of pixels instead. The ViT's first step turns the grid into a sequence: cut the image
# into square patches, flatten each patch into one long vector, and line the patches up.
# Nothing is learned here, and nothing is computed: flattening only moves numbers around.
# That makes it the easiest step to get wrong without noticing, so this notebook checks
# every detail of the order against `vitnp`.
#
# Contents: 1. an image as H×W×C · 2. patch flattening · 3. the toy example (48×48, 16×16 patches, 9 patches) ·
# 4. a real photo cut into 196 patches and put back together · 5. a Fashion-MNIST image · 6. the inverse ·
# 7. why the patch size matters.

# %% [markdown]
# **Learning objectives.** After this notebook you can
#
# * turn an H×W×C image into N = HW/P² patch vectors of length P²C, and back again;
# * state the exact order of the flattening (patches row-major over the grid, each patch in row, column, channel order) and check it against `patchify_forward`;
# * explain why the patch size sets the sequence length, and with it the cost of attention.
#
# **학습 목표.** 이 노트북을 마치면
#
# * H×W×C 이미지를 길이 P²C인 패치 벡터 N = HW/P²개로 바꾸고 다시 되돌린다;
# * 패치 평탄화의 정확한 순서(패치는 격자 위에서 행 우선, 각 패치 안은 행·열·채널 순)를 말하고 `patchify_forward`와 대조해 확인한다;
# * 패치 크기가 시퀀스 길이를, 따라서 어텐션 비용을 정하는 이유를 설명한다.

# %%
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.cbook import get_sample_data
from IPython.display import Image, display

import vitnp
from vitnp.data import FASHION_MNIST_CLASSES, load_fashion_mnist
from vitnp.ops.patches import patchify_forward, unpatchify
from vitnp.course.notebook import diff, exercise, setup

FAST = setup(precision=3, photos=True)   # nothing in this notebook is heavy


# %% [markdown]
# ## The whole series on one page: the paper's Figure 1
#
# Before taking the model apart, here is all of it. The figure below redraws Figure 1 of the paper and labels every
# box four ways: the step and its symbol in the paper's notation, the vitnp parameters it owns (the names of
# `vitnp.init_params`), the module and function that compute it, and the notebook that explains it. Read it from the
# bottom up, as in the paper: image → patches (this notebook) → linear projection $\mathbf{E}$, class token and
# position embeddings (02) → $L$ encoder blocks of LayerNorm, multi-head attention (03), MLP and residuals (04) →
# $\mathbf{y} = LN(\mathbf{z}_L^0)$ and the head → class (04, 06). Notebook 05 runs the same path backwards for the
# gradients. `scripts/fig1_diagram.py` draws it from tables that `tests/test_course_bug_zoo.py` checks against the code.

# %%
REPO = Path(vitnp.__file__).resolve().parents[1]
display(Image(filename=str(REPO / "docs" / "figures" / "fig1_annotated.png"), width=1000))

# %% [markdown]
# *Figure 1 of Dosovitskiy et al. (2021), redrawn and annotated with vitnp's names (`docs/figures/fig1_annotated.png`).
# Left: the model from the image to the class; right: one encoder block, repeated $L$ times, with its two residual
# paths (Eq 2 and Eq 3).*

# %% [markdown]
# ## 1. An image is an H×W×C array
#
# The paper writes an image as $\mathbf{x} \in \mathbb{R}^{H \times W \times C}$: height $H$, width $W$ and
# $C$ channels (3 for RGB, 1 for grey). vitnp, like the paper's JAX code, keeps the channels **last**, and a batch of
# images is a 4-D array of shape $(B, H, W, C)$. (PyTorch puts channels first, $(B, C, H, W)$; converting is a
# `transpose`, but mixing the two up silently scrambles every patch.)
#
# Our photo is the one matplotlib ships: Grace Hopper, 600×512 pixels. We crop it to a square, halve its resolution by
# averaging 2×2 blocks, and cut out the centre 224×224: the ImageNet resolution of the paper.

# %%
photo = plt.imread(get_sample_data("grace_hopper.jpg", asfileobj=False))  # (600, 512, 3) uint8
print("file:", photo.shape, photo.dtype, "values", photo.min(), "…", photo.max())
square = photo[:512].astype(np.float64) / 255.0                         # (512, 512, 3), values in [0, 1]
half = square.reshape(256, 2, 256, 2, 3).mean(axis=(1, 3))             # (256, 256, 3): mean of 2×2 blocks
img = half[16:240, 16:240]                                              # (224, 224, 3): centre crop
H, W, C = img.shape
print("x:", img.shape, "= (H, W, C)")
print("pixel (0, 0) has C =", C, "numbers (R, G, B):", img[0, 0])

fig, axes = plt.subplots(1, 4, figsize=(12, 3.4))
axes[0].imshow(img)
axes[0].set_title(f"x: {H}×{W}×{C}")
for c, (ax, name) in enumerate(zip(axes[1:], ("red", "green", "blue"))):
    ax.imshow(img[..., c], cmap="gray", vmin=0, vmax=1)
    ax.set_title(f"channel {c} ({name}): x[:, :, {c}]")
for ax in axes:
    ax.set_xlabel("column (W axis)")
    ax.set_ylabel("row (H axis)")
fig.suptitle("An image is an H×W×C array: three H×W grids of numbers")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 2. Patch flattening
#
# With patch side $P$, the image is tiled by a grid of $(H/P) \times (W/P)$ patches, and
#
# $$\mathbf{x} \in \mathbb{R}^{H \times W \times C} \;\longrightarrow\; \mathbf{x}_p \in \mathbb{R}^{N \times (P^2 \cdot C)},
# \qquad N = \frac{HW}{P^2}.$$
#
# Row $i$ of $\mathbf{x}_p$ is the patch $\mathbf{x}_p^i$: its $P \cdot P \cdot C$ numbers written out in one line. Two orders
# must be fixed, and vitnp uses the ones of the paper's code:
#
# * **which patch is number $i$**: row-major over the grid, left to right, then top to bottom (like reading text);
# * **the order inside a patch**: (row, column, channel), i.e. the patch's own $P \times P \times C$ array flattened in C order.
#
# The second choice is what makes the projection $\mathbf{E}$ of the next notebook equal to a convolution kernel of shape
# $(P, P, C, D)$. In NumPy the whole thing is one reshape, one transpose, one reshape:
# split $H$ into (grid row, row inside the patch) and $W$ into (grid column, column inside the patch), move the two grid axes
# to the front, and merge.

# %% [markdown]
# ## 3. The toy example: a 48×48 image and 16×16 patches
#
# The study notes' example: $H = W = 48$, $P = 16$ gives a 3×3 grid, $N = 48 \cdot 48 / 16^2 = 9$ patches, each a vector of
# $16 \cdot 16 \cdot C$ numbers. To *see* the order we fill the image with numbers that say where they are:
# pixel (row $r$, column $c$), channel $k$ holds $10000 r + 100 c + k$. Any number in $\mathbf{x}_p$ then tells us
# which pixel it came from.

# %%
P = 16
toy = np.zeros((48, 48, 3))
rows, cols, chans = np.meshgrid(np.arange(48), np.arange(48), np.arange(3), indexing="ij")
toy[:] = 10000 * rows + 100 * cols + chans              # (48, 48, 3): every number names its pixel

x_p, _ = patchify_forward(toy[None], P)                 # the library: (B, H, W, C) -> (B, N, P²C)
x_p = x_p[0]                                            # one image: (N, P²C)
N = (48 * 48) // P**2
print(f"x: {toy.shape} -> x_p: {x_p.shape};  N = HW/P² = {N}, P²C = {P * P * 3}")
print("patch 0 starts with", x_p[0, :6], "-> pixel (0,0) R,G,B then pixel (0,1) R,G,B")
print("patch 1 starts with", x_p[1, :3], "-> pixel (0,16): the next patch to the right")
print("patch 3 starts with", x_p[3, :3], "-> pixel (16,0): the first patch of the second grid row")
print("patch 0, number 48 =", x_p[0, 48], "-> pixel (1,0): the second row of the patch starts after 16·3 numbers")


# %% [markdown]
# The same flattening written the slow, obvious way: two loops over the grid, cut out each $P \times P \times C$ block and
# `ravel` it. The library's reshape–transpose–reshape must give exactly the same numbers. It only moves them, so
# "the same" means bit for bit: the difference must be exactly 0.

# %%
def patchify_by_hand(x, P):
    """(H, W, C) -> (N, P²C) with loops: patch i = grid row i // (W/P), grid column i % (W/P)."""
    H, W, C = x.shape
    patches = []
    for gr in range(H // P):                    # grid rows, top to bottom
        for gc in range(W // P):                # grid columns, left to right
            block = x[gr * P:(gr + 1) * P, gc * P:(gc + 1) * P, :]   # (P, P, C)
            patches.append(block.ravel())       # (P²C,) in (row, column, channel) order
    return np.stack(patches)                    # (N, P²C)


x_p_hand = patchify_by_hand(toy, P)
print("hand-written:", x_p_hand.shape, "  max |library − hand| =", f"{diff(x_p, x_p_hand):.1e}")
assert diff(x_p, x_p_hand) == 0.0

# %% [markdown]
# Where each patch sits in the image, and what the first numbers of the sequence are:

# %%
toy_rgb = np.stack([rows / 47, cols / 47, 0.5 + 0 * chans], axis=-1)[:, :, 0]   # (48, 48, 3): red = row, green = column
toy_p, _ = patchify_forward(toy_rgb[None], P)                                     # (1, 9, 768)
fig, axes = plt.subplots(1, 2, figsize=(11, 3.6), gridspec_kw={"width_ratios": [1, 2.6]})
ax = axes[0]
ax.imshow(toy_rgb, extent=(0, 48, 48, 0))
for i in range(N):
    gr, gc = divmod(i, 3)
    ax.add_patch(plt.Rectangle((gc * P, gr * P), P, P, fill=False, ec="white", lw=2))
    ax.text(gc * P + P / 2, gr * P + P / 2, str(i), color="white", ha="center", va="center", fontsize=16)
ax.set_title("48×48 image, P = 16: patch i on the 3×3 grid")
ax.set_xlabel("column (pixels)")
ax.set_ylabel("row (pixels)")
ax = axes[1]
strip = np.ones((P, N * (P + 3), 3))                    # the 9 rows of x_p, each folded back to 16×16×3
for i in range(N):
    strip[:, i * (P + 3):i * (P + 3) + P] = toy_p[0, i].reshape(P, P, 3)
ax.imshow(strip)
ax.set_xticks([i * (P + 3) + P / 2 for i in range(N)], [str(i) for i in range(N)])
ax.set_yticks([])
ax.set_title("the sequence: row i of x_p, folded back into 16×16×3 to show it")
ax.set_xlabel("patch index i (0-based here; the paper counts x_p¹ … x_pᴺ)")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 4. A real photo cut into a patch grid and put back together
#
# At 224×224 with $P = 16$ the photo becomes $N = 14 \cdot 14 = 196$ patches of $16 \cdot 16 \cdot 3 = 768$ numbers: exactly
# what ViT-B/16 sees on ImageNet. The name "16x16 words" is literal: each of these 196 small squares plays the role of a word.

# %%
P = 16
x_p, cache = patchify_forward(img[None], P)             # (1, 196, 768)
print(f"x: {img[None].shape} (B, H, W, C) -> x_p: {x_p.shape} (B, N, P²C)")
assert x_p.shape == (1, (224 // P) ** 2, P * P * 3)
d = diff(x_p[0], patchify_by_hand(img, P))
print("max |library − hand| =", d)
assert d == 0.0

gh = gw = 224 // P
N = gh * gw
canvas = np.ones((gh * (P + 2), gw * (P + 2), 3))       # white background, a 2-pixel gap between patches
for i in range(N):
    gr, gc = divmod(i, gw)
    canvas[gr * (P + 2):gr * (P + 2) + P, gc * (P + 2):gc * (P + 2) + P] = x_p[0, i].reshape(P, P, 3)
fig, axes = plt.subplots(1, 2, figsize=(12, 5), gridspec_kw={"width_ratios": [1, 1]})
axes[0].imshow(canvas)                                  # each row of x_p, folded back into its P×P×3 block
axes[0].set_title("the 14×14 grid of 16×16×3 patches")
axes[0].set_xlabel("column (pixels, with gaps)")
axes[0].set_ylabel("row (pixels, with gaps)")
axes[1].imshow(x_p[0, :, :P * 3 * 4], aspect="auto", cmap="gray")  # the first 4 pixel-rows of each patch
axes[1].set_title("x_p[:, :192]: the sequence, one row per patch")
axes[1].set_xlabel("flattened position (first 192 of 768)")
axes[1].set_ylabel("patch index i (0 … 195)")
fig.suptitle(f"The photo as N = {N} patches of {P}×{P}×3 (left) and as the matrix x_p (right)")
fig.tight_layout()
plt.show()

# %% [markdown]
# The order of the sequence is a convention, and the model never sees the grid: it receives a list of 196 vectors.
# Below, the same patches are laid out in sequence order, wrapped every 49 patches (3½ grid rows), so the rows of the
# photo no longer line up. Patches that touched in the image are 1 or 14 apart in the sequence, and nothing in
# $\mathbf{x}_p$ says so: the model has to be *told* where each patch was (notebook 02: position embeddings).

# %%
per_line = 49
strip = x_p[0].reshape(N // per_line, per_line, P, P, 3)           # (4, 49, P, P, 3)
strip = strip.transpose(0, 2, 1, 3, 4).reshape(N // per_line * P, per_line * P, 3)
fig, ax = plt.subplots(figsize=(12, 1.9))
ax.imshow(strip)
ax.set_title("The 196 patches in sequence order, 49 per line: the 2-D layout is not part of x_p")
ax.set_xticks(np.arange(0, per_line, 7) * P + P / 2, np.arange(0, per_line, 7))
ax.set_yticks(np.arange(N // per_line) * P + P / 2, np.arange(0, N, per_line))
ax.set_xlabel("patch index mod 49")
ax.set_ylabel("first index\nof the line")
plt.show()

# %% [markdown]
# ## 5. A Fashion-MNIST image (when the data are installed)
#
# The training notebook (06) uses Fashion-MNIST: 28×28 grey images, $C = 1$. With $P = 7$ an image becomes
# $N = 16$ patches of $49$ numbers; this is the default `vitnp.ViTConfig()`. The data come from
# `/usr/share/datasets/fashion-mnist` (Debian's `dataset-fashion-mnist`) or `$VITNP_DATA`; without them
# we draw a synthetic 28×28 image instead and say so.

# %%
cfg = vitnp.ViTConfig()                                  # 28×28×1, P = 7: the Fashion-MNIST default
try:
    images, labels = load_fashion_mnist(split="test")
    fm = images[0].astype(np.float64) / 255.0            # (28, 28, 1)
    fm_title = f"Fashion-MNIST test image 0: {FASHION_MNIST_CLASSES[labels[0]]}"
except FileNotFoundError as err:
    print("Fashion-MNIST is not installed here, so this section uses a synthetic image.")
    print(str(err).splitlines()[0])
    r, c = np.mgrid[0:28, 0:28]
    fm = (np.exp(-((r - 14) ** 2 + (c - 14) ** 2) / 60.0) * (1 + np.sin(c / 2)) / 2)[..., None]
    fm_title = "synthetic 28×28 image (no Fashion-MNIST found)"
x_p, _ = patchify_forward(fm[None], cfg.patch_size)
print(f"config: image {cfg.hw}, P = {cfg.patch_size}, C = {cfg.in_channels} -> grid {cfg.grid}, "
      f"N = {cfg.num_patches}, P²C = {cfg.patch_dim}")
print(f"x: {fm[None].shape} -> x_p: {x_p.shape}")
assert x_p.shape == (1, cfg.num_patches, cfg.patch_dim)
d = diff(x_p[0], patchify_by_hand(fm, cfg.patch_size))
print("max |library − hand| =", d)
assert d == 0.0

fig, axes = plt.subplots(1, 3, figsize=(12, 3.6), gridspec_kw={"width_ratios": [1, 1, 2.2]})
axes[0].imshow(fm[..., 0], cmap="gray_r")
for k in range(1, 4):
    axes[0].axhline(7 * k - 0.5, color="tab:red", lw=1)
    axes[0].axvline(7 * k - 0.5, color="tab:red", lw=1)
axes[0].set_title(fm_title, fontsize=9)
axes[0].set_xlabel("column")
axes[0].set_ylabel("row")
gap = np.ones((4 * 8, 4 * 8))                            # the 16 patches with a 1-pixel gap between them
for i in range(16):
    gr, gc = divmod(i, 4)
    gap[gr * 8:gr * 8 + 7, gc * 8:gc * 8 + 7] = 1 - x_p[0, i].reshape(7, 7)
axes[1].imshow(gap, cmap="gray", vmin=0, vmax=1)
axes[1].set_title("the 4×4 grid of 7×7 patches")
axes[1].set_xlabel("column (with gaps)")
axes[1].set_ylabel("row (with gaps)")
axes[2].imshow(x_p[0], cmap="gray_r", aspect="auto")
axes[2].set_title("x_p: 16 patches × 49 numbers")
axes[2].set_xlabel("position inside the patch (7 rows of 7)")
axes[2].set_ylabel("patch index i")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 6. The inverse
#
# Flattening is a **permutation** of the $H W C$ numbers: nothing is added, dropped or combined. So it has an exact inverse,
# `vitnp.ops.patches.unpatchify`, which puts every number back. Two consequences matter later:
#
# * we can always go back from patch tokens to an image (to draw attention maps over the picture, notebook 07);
# * the backward pass of flattening (notebook 05) is the inverse permutation applied to the gradient:
#   each gradient number goes back to the pixel it came from.
#
# The check below puts the photo back together from its 196 patches and compares it with the original, bit for bit.
# Then it flattens the array `0, 1, 2, …, HWC−1` itself: the result lists, for each slot of $\mathbf{x}_p$, which number of
# $\mathbf{x}$ landed there; it is a permutation exactly when every index appears once.

# %%
x_p, _ = patchify_forward(img[None], 16)                           # (1, 196, 768)
back = unpatchify(x_p, (224, 224), 16)                              # (1, 224, 224, 3)
print("unpatchify:", x_p.shape, "->", back.shape, "  max |x − unpatchify(patchify(x))| =", f"{diff(back[0], img):.1e}")
assert diff(back[0], img) == 0.0

idx = np.arange(H * W * C, dtype=np.float64).reshape(1, H, W, C)   # each number is its own address
perm = patchify_forward(idx, 16)[0].reshape(-1).astype(np.int64)    # where each slot of x_p comes from
print("first slots of x_p come from x.ravel() positions", perm[:8], "…")
assert np.array_equal(np.sort(perm), np.arange(H * W * C))          # a permutation: every pixel once
inverse = np.argsort(perm)                                          # the inverse permutation
assert np.array_equal(x_p.reshape(-1)[inverse], img.reshape(-1))    # undoing it gives the image back

fig, axes = plt.subplots(1, 3, figsize=(11, 3.6))
axes[0].imshow(img)
axes[0].set_title("x")
axes[1].imshow(back[0])
axes[1].set_title("unpatchify(patchify(x))")
axes[2].imshow(np.abs(back[0] - img).sum(-1), cmap="magma", vmin=0, vmax=1e-12)
axes[2].set_title("|difference| (all zero)")
for ax in axes:
    ax.set_xlabel("column")
    ax.set_ylabel("row")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 7. Why the patch size matters: sequence length and cost
#
# Self-attention (notebook 03) compares every token with every other: its cost grows with $N^2$. Halving $P$ gives four times
# as many patches and sixteen times as many attention scores. That is why the paper's models use 14×14, 16×16 or 32×32
# patches (H/14; B/16 and L/16; B/32 and L/32), and why pixels themselves ($P = 1$) are out of reach: a 224×224 image would be 50,176 tokens and 2.5 billion scores
# per head and layer.

# %%
print(f"{'P':>3} {'grid':>9} {'N':>7} {'P²C':>6} {'(N+1)² scores':>15}")
for P in (32, 16, 14, 8, 4, 1):
    g = 224 // P
    n = g * g
    print(f"{P:>3} {f'{g}×{g}':>9} {n:>7,} {P * P * 3:>6,} {(n + 1) ** 2:>15,}")
for name in ("B/32", "B/16", "H/14"):
    c = vitnp.ViTConfig.variant(name)
    print(f"ViT-{name}: N = {c.num_patches}, tokens T = N + 1 = {c.num_tokens}, patch vector P²C = {c.patch_dim}")
assert vitnp.ViTConfig.variant("B/16").num_patches == 196

# %% [markdown]
# ### Why not pixels? ImageGPT, and why ViT uses patches
#
# The last row of the table ($P = 1$, every pixel a token) is not a thought experiment. The paper's related work (§2)
# names the model that tried it: **image GPT** (iGPT; Chen et al., "Generative Pretraining from Pixels", ICML 2020),
# a GPT-style Transformer over pixels. To make a pixel sequence affordable it first shrinks the image, in resolution
# and in colours (a palette of 512 colours instead of 24-bit RGB, so that each pixel is one of 512 tokens), and it is
# trained without labels, with one of two objectives: as a generative model that predicts the next pixel
# (autoregressive, like GPT), or BERT-style, predicting pixels hidden behind a mask from the others; its features are
# then used for classification. (The ViT paper tried a BERT-style objective on patches too: masked patch
# prediction, §4.6.) Pixel tokens have two costs at once: many more tokens, and each token is
# almost meaningless alone (one grey value says little; a 16×16 patch already shows an edge or a texture).
#
# The paper's answer is the one this notebook builds: keep the image, make the tokens coarser. The numbers, for one
# attention map of one head ($N^2$ scores for $N$ tokens), at three small pixel resolutions and at ViT-B/16's setting:

# %%
rows = [("pixels, 32×32", 32 * 32), ("pixels, 48×48", 48 * 48), ("pixels, 64×64", 64 * 64),
        ("ViT-B/16 patches, 224×224", vitnp.ViTConfig.variant("B/16").num_patches)]
for name, n in rows:
    print(f"{name:<28} {n:>6,} tokens  {n * n:>12,} attention scores per head and layer")
n_b16 = vitnp.ViTConfig.variant("B/16").num_patches
print(f"64×64 pixels against ViT-B/16: {64 * 64 / n_b16:.0f}× the tokens, {(64 * 64 / n_b16) ** 2:.0f}× the scores")

# %% [markdown]
# So a ViT-B/16 sees a 224-pixel photo at full resolution as 196 tokens, while even a 64×64 thumbnail is 4,096 pixel
# tokens: about 21 times as many, and about 440 times as many attention scores per head and layer. The price of
# patches is the other way round: whatever happens inside a patch is decided by one linear map $\mathbf{E}$
# (notebook 02), and the model can only compare patches, not pixels.

# %% [markdown]
# **Summary.** $\mathbf{x} \in \mathbb{R}^{H\times W\times C} \to \mathbf{x}_p \in \mathbb{R}^{N \times (P^2 C)}$ is
# a fixed permutation of the pixels: patches row-major over the grid, each flattened in (row, column, channel) order.
# `vitnp.ops.patches.patchify_forward` equals the two-loop version exactly, and `unpatchify` undoes it exactly.
# Next, [02_embeddings](02_embeddings.ipynb) turns each patch vector into a $D$-dimensional token.
#
# **요약.** 이미지 $\mathbf{x}$를 패치 시퀀스 $\mathbf{x}_p$로 바꾸는 일은 픽셀의 고정된 순열일 뿐입니다: 패치는 격자 위에서 행 우선, 각 패치는 (행, 열, 채널) 순으로 펼칩니다. `vitnp.ops.patches.patchify_forward`는 두 겹 반복문 버전과 정확히 같고, `unpatchify`는 그것을 정확히 되돌립니다. 다음 노트북 02에서 각 패치 벡터가 $D$차원 토큰이 됩니다.

# %% [markdown]
# ## Exercises
#
# Three exercises on the two orders of section 2. In the student edition (`python -m vitnp course build`) the model
# answers are cut out; the locked cell after each code exercise fails until your answer is right.
#
# * **Exercise nb01-pixel-address** (2 points) — where does pixel $(r, c)$, channel $k$ land in $\mathbf{x}_p$?
#   Write the function that answers it for every pixel at once.
#   *픽셀 $(r, c)$, 채널 $k$는 $\mathbf{x}_p$의 어디로 가는가? 모든 픽셀에 대해 한 번에 답하는 함수를 쓰세요.*
# * **Exercise nb01-q-flatten-order** (2 points) — inline question: what would change if each patch were flattened
#   in (channel, row, column) order instead?
#   *인라인 질문: 각 패치를 (채널, 행, 열) 순으로 펼치면 무엇이 달라지는가?*
# * **Exercise nb01-flatten-order** (1 point) — check your answer to the question: flatten in the other order and
#   find the $\mathbf{E}$ that gives the same tokens.
#   *질문의 답을 확인하기: 다른 순서로 펼치고, 같은 토큰을 주는 $\mathbf{E}$를 찾으세요.*

# %% [markdown]
# **Exercise nb01-pixel-address** (2 points). Write `patch_address(r, c, k, W, C, P)`: the index $i$ of the patch that
# holds pixel $(r, c)$, channel $k$ of an image of width $W$ with $C$ channels, and the position $m$ of that number
# inside $\mathbf{x}_p^i$, so that `x_p[i, m] == x[r, c, k]` for `x_p = patchify_forward(x[None], P)[0][0]`. Use integer
# arithmetic (`//`, `%`) only, so that the function works on whole arrays of indices.
#
# *픽셀 $(r, c)$, 채널 $k$는 $\mathbf{x}_p$의 어디로 가는가? 모든 픽셀에 대해 한 번에 답하는 함수를 쓰세요.*

# %% nbgrader={"grade": false, "grade_id": "nb01-pixel-address", "locked": false, "schema_version": 3, "solution": true}
def patch_address(r, c, k, W, C, P):
    """(i, m) with x_p[i, m] == x[r, c, k]; r, c, k may be integer arrays of the same shape."""
    ### BEGIN SOLUTION
    i = (r // P) * (W // P) + c // P          # grid row, then grid column: row-major over the grid
    m = ((r % P) * P + c % P) * C + k         # row inside the patch, column inside the patch, channel
    return i, m
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "nb01-pixel-address-test", "locked": true, "points": 2, "schema_version": 3, "solution": false}
with exercise("nb01-pixel-address"):
    for shape, p in (((48, 48, 3), 16), ((8, 12, 2), 4), ((28, 28, 1), 7)):
        image = np.random.default_rng(1).standard_normal(shape)                # (H, W, C)
        patches = patchify_forward(image[None], p)[0][0]                       # (N, P²C)
        rr, cc, kk = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")   # every pixel and channel
        i, m = patch_address(rr, cc, kk, shape[1], shape[2], p)
        assert np.array_equal(patches[i, m], image), f"a number is not at its address: {shape} image, P = {p}"
        print(f"{shape[0]}×{shape[1]}×{shape[2]} image, P = {p}: all {image.size} numbers found at their address")

# %% [markdown] nbgrader={"grade": true, "grade_id": "nb01-q-flatten-order", "locked": false, "points": 2, "schema_version": 3, "solution": true}
# **Exercise nb01-q-flatten-order** (2 points). Suppose vitnp flattened each patch in (channel, row, column) order
# instead of (row, column, channel). Could the ViT still compute exactly the same functions? What would be different
# in a trained model, and what else in the project would have to change?
#
# *인라인 질문: 각 패치를 (채널, 행, 열) 순으로 펼치면 무엇이 달라지는가?*
#
# ### BEGIN SOLUTION
# **The same functions.** The new patch vector holds the same $P^2C$ numbers in another fixed order:
# $\tilde{\mathbf{x}}_p = \mathbf{x}_p \Pi$ for one permutation matrix $\Pi$, the same for every patch. Since
# $\Pi\Pi^\top = I$, the projection with its rows permuted gives exactly the old tokens,
# $\tilde{\mathbf{x}}_p\,(\Pi^\top\mathbf{E}) = \mathbf{x}_p\mathbf{E}$, and nothing after Eq 1 looks inside a patch.
# Training does not tell the two apart either: with $\bar{\mathbf{o}}$ the gradient of the tokens,
# $$\frac{\partial L}{\partial(\Pi^\top\mathbf{E})} = \tilde{\mathbf{x}}_p^\top \bar{\mathbf{o}}
# = \Pi^\top (\mathbf{x}_p^\top \bar{\mathbf{o}}) = \Pi^\top \frac{\partial L}{\partial\mathbf{E}},$$
# so a run started from $\Pi^\top\mathbf{E}_0$ stays the row-permuted twin of the run started from $\mathbf{E}_0$,
# step by step. Only the meaning of $\mathbf{E}$'s rows changes.
#
# **What would have to change** is everything that reads $\mathbf{E}$ as a $P \times P \times C$ filter: $\mathbf{E}$
# would no longer be the stride-$P$ convolution kernel reshaped (notebook 02), so loading the original checkpoints'
# `embedding/kernel` of shape $(P, P, C, D)$ would need `kernel.transpose(2, 0, 1, 3).reshape(P*P*C, D)` instead of a
# plain reshape (`vitnp.io.original.from_jax` and `to_jax`), and drawing $\mathbf{E}$'s columns as filters (notebook 07)
# would need the same transpose. The next exercise checks the identity and the gradient numerically.
# ### END SOLUTION

# %% [markdown]
# **Exercise nb01-flatten-order** (1 point). Write `patchify_crc(x, P)`, which flattens each patch in (channel, row,
# column) order (patches still row-major over the grid), and `permute_rows(E, P, C)`, which reorders the rows of
# $\mathbf{E}$ so that `patchify_crc(x, P) @ permute_rows(E, P, C)` equals vitnp's $\mathbf{x}_p\mathbf{E}$.
#
# *질문의 답을 확인하기: 다른 순서로 펼치고, 같은 토큰을 주는 $\mathbf{E}$를 찾으세요.*

# %% nbgrader={"grade": false, "grade_id": "nb01-flatten-order", "locked": false, "schema_version": 3, "solution": true}
def patchify_crc(x, P):
    """(B, H, W, C) -> (B, N, C·P·P): patches row-major, each flattened in (channel, row, column) order."""
    ### BEGIN SOLUTION
    B, H, W, C = x.shape
    gh, gw = H // P, W // P
    blocks = x.reshape(B, gh, P, gw, P, C).transpose(0, 1, 3, 5, 2, 4)     # (B, gh, gw, C, P, P)
    return blocks.reshape(B, gh * gw, C * P * P)
    ### END SOLUTION


def permute_rows(E, P, C):
    """E (P²C, D) for (row, column, channel) patches -> the same projection for (channel, row, column) patches."""
    ### BEGIN SOLUTION
    D = E.shape[1]
    return E.reshape(P, P, C, D).transpose(2, 0, 1, 3).reshape(C * P * P, D)    # row (r, c, k) -> row (k, r, c)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "nb01-flatten-order-test", "locked": true, "points": 1, "schema_version": 3, "solution": false}
with exercise("nb01-flatten-order"):
    rng_t = np.random.default_rng(6)
    x_t, E_t = rng_t.standard_normal((2, 12, 8, 3)), rng_t.standard_normal((4 * 4 * 3, 5))   # P = 4, C = 3, D = 5
    x_p_t = patchify_forward(x_t, 4)[0]                                                    # (2, 6, 48)
    crc = patchify_crc(x_t, 4)
    assert crc.shape == x_p_t.shape
    assert crc[0, 0, 1] == x_t[0, 0, 1, 0] and crc[0, 0, 16] == x_t[0, 0, 0, 1]    # next column; then the next channel
    assert np.array_equal(np.sort(crc, -1), np.sort(x_p_t, -1))                   # the same numbers in each patch
    tokens_crc = crc @ permute_rows(E_t, 4, 3)
    g_t = rng_t.standard_normal((2, 6, 5))                                        # an upstream gradient
    dE = x_p_t.reshape(-1, 48).T @ g_t.reshape(-1, 5)                              # ∂L/∂E for L = Σ (x_p E) ⊙ g
    dE_crc = crc.reshape(-1, 48).T @ g_t.reshape(-1, 5)                            # ∂L/∂(Πᵀ E)
    print(f"max |x̃_p (Πᵀ E) − x_p E| = {diff(tokens_crc, x_p_t @ E_t):.1e};  "
          f"max |∂L/∂(Πᵀ E) − Πᵀ ∂L/∂E| = {diff(dE_crc, permute_rows(dE, 4, 3)):.1e}")
    assert diff(tokens_crc, x_p_t @ E_t) < 1e-12 and diff(dE_crc, permute_rows(dE, 4, 3)) < 1e-12
