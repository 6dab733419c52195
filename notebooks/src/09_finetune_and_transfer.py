# %% [markdown]
# # 09 · Fine-tuning: a higher resolution, transfer to new classes, and pre-training without labels (§3.2, §4.6)
#
# Terms and their Korean equivalents: [glossary (용어집)](../docs/glossary.md).
#
# The paper's recipe is *pre-train big, fine-tune small*: "we pre-train ViT on large datasets, and fine-tune to
# (smaller) downstream tasks. For this, we remove the pre-trained prediction head and attach a zero-initialized
# $D \times K$ feedforward layer, where $K$ is the number of downstream classes. It is often beneficial to fine-tune at
# higher resolution than pre-training." (§3.2). This notebook takes both halves apart, then looks past them:
#
# 1. **Higher resolution.** With the same patch size $P$, a larger image has more patches, so the learned position
#    embeddings $\mathbf{E}_{pos}$ no longer fit; the paper interpolates them in 2-D. We do it by hand and assert it
#    equal to `vitnp.io.original.resize_pos_embedding`, and look at the table before and after.
# 2. **A new head.** Why it starts at zero, checked on the gradients.
# 3. **Two small live experiments** with the library's trainer (`vitnp.training.trainer.train(..., init_from=...)`): fine-tuning a
#    28×28 model at 56×56, and transferring a body pre-trained on five Fashion-MNIST classes to the other five with
#    10 % of their data, against training from scratch.
# 4. **The full measurements** of `scripts/finetune_experiments.py`, loaded from `docs/figures/finetune.json`.
# 5. **Pre-training without labels** (§4.6): masked patch prediction, BERT's objective on patches, and what it gives
#    when few labels are left for fine-tuning (`scripts/self_supervision.py`, loaded from
#    `docs/figures/self_supervision.json`).
# 6. **New heads on a frozen body**: another labelling, a question the labels never asked, and the paper's closed-form
#    few-shot head (`scripts/new_heads.py`, loaded from `docs/figures/new_heads.json`).
#
# In fast mode (`VITNP_FAST=1`) the live experiments are tiny (about a minute in all); the committed notebook shows the
# full mode (a few minutes). When the Fashion-MNIST files are not installed, the live experiments use a small
# synthetic data set instead and say so.

# %% [markdown]
# **Learning objectives.** After this notebook you can
#
# * fine-tune at a higher resolution: more patches, the same P, E_pos interpolated in 2-D, a new zero-initialised head;
# * measure transfer to new classes against training from scratch, with the choices made on validation;
# * pre-train without labels by masked patch prediction (§4.6), and fit new heads on a frozen body, the paper's closed-form few-shot head among them.
#
# **학습 목표.** 이 노트북을 마치면
#
# * 더 높은 해상도에서 미세 조정한다: 같은 P로 패치가 늘고, E_pos를 2차원으로 보간하고, 0으로 초기화한 새 헤드를 붙인다;
# * 새 클래스로의 전이를 처음부터 학습과 비교해 측정하며, 선택은 검증 세트로 한다;
# * 마스크드 패치 예측(§4.6)으로 레이블 없이 사전 학습하고, 고정된 본체 위에 새 헤드(논문의 닫힌 형식 퓨샷 헤드 포함)를 맞춘다.

# %%
import json
import tempfile
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from IPython.display import display

import vitnp
from vitnp.analysis.maps import pos_embedding_similarity
from vitnp.io.original import resize_pos_embedding
from vitnp.data import load_fashion_mnist, normalize, resize_images, select_classes
from vitnp.training.evaluation import evaluate_arrays
from vitnp.training.finetune import adapt_params
from vitnp.ops.loss import softmax_cross_entropy
from vitnp.training.presets import HParams
from vitnp.training import load_checkpoint, train
from vitnp.course.notebook import diff, exercise, setup
from vitnp.experiments.figures import transfer_figure

FAST = setup(precision=3)   # fast: tiny live experiments
T_START = time.perf_counter()
REPO = Path(vitnp.__file__).resolve().parents[1]              # the notebook may run elsewhere (CI: a temp dir)
CKPT = REPO / "notebooks" / "assets" / "vit_fmnist.npz"
params, cfg, meta = load_checkpoint(CKPT)                     # notebook 07's plain ViT (run e08), trained at 28×28
last = meta["history"][-1] if meta["history"] else {}          # test_acc: only if the run recorded a test curve
print(f"{CKPT.name}: P={cfg.patch_size}, D={cfg.dim}, L={cfg.depth}, k={cfg.heads}, M={cfg.mlp_dim}, "
      f"trained at {cfg.image_size[0]}×{cfg.image_size[1]}"
      + (f"; recorded test accuracy {100 * last['test_acc']:.2f} %" if "test_acc" in last else ""))

# %% [markdown]
# ## 1. A higher resolution means more patches
#
# A ViT never sees pixels directly; it sees $N = HW/P^2$ patch tokens (Eq 1). Fine-tuning at a higher resolution
# keeps $P$, "which results in a larger effective sequence length" (§3.2). Our model cuts a 28×28 image into a 4×4
# grid of 7×7 patches; at 56×56 the same $P = 7$ gives an 8×8 grid. Every weight matrix of the Transformer works for
# any number of tokens (the attention matrix just grows, as $T^2$), with one exception: $\mathbf{E}_{pos}$ has one
# learned row per token, $(N+1) \times D$.

# %%
cfg56 = cfg.replace(image_size=56)                            # the same model at 56×56
for c in (cfg, cfg56):
    print(f"{c.image_size[0]}×{c.image_size[1]}: grid {c.grid[0]}×{c.grid[1]}, N = {c.num_patches:3d} patches, "
          f"T = {c.num_tokens:3d} tokens, E_pos {vitnp.param_shapes(c)['E_pos']}, attention matrix "
          f"{c.num_tokens}×{c.num_tokens} = {c.num_tokens ** 2:5d} entries per head")
changed = [k for k, s in vitnp.param_shapes(cfg56).items() if s != vitnp.param_shapes(cfg)[k]]
print("parameters whose shape changes:", changed)
assert changed == ["E_pos"]
try:                                                          # the old parameters do not fit the new model
    vitnp.vit_forward(params, np.zeros((1, 56, 56, 1), np.float32), cfg56)
    raise AssertionError("expected a shape error")
except ValueError as err:
    print("vit_forward(old params, 56×56 image):", str(err)[:150])


# %% [markdown]
# ## 2. Interpolating $\mathbf{E}_{pos}$ in 2-D, by hand
#
# The paper: "We therefore perform 2D interpolation of the pre-trained position embeddings, according to their location
# in the original image." The reference code keeps the class token's row as it is, lays the $N$ patch rows out on the
# old $4 \times 4$ grid, and resizes each of the $D$ channels linearly to the new $8 \times 8$ grid, with the corners
# aligned (new row $i$ sits at old position $s_i = i\,(h-1)/(h'-1)$). With $a = \lfloor s_i \rfloor$, $f = s_i - a$ and
# the same for columns ($b$, $g$), the new row at grid cell $(i, j)$ is
#
# $$\mathbf{E}'_{pos}[i, j] = (1-f)(1-g)\,\mathbf{E}_{pos}[a, b] + (1-f)\,g\,\mathbf{E}_{pos}[a, b+1]
#   + f\,(1-g)\,\mathbf{E}_{pos}[a+1, b] + f\,g\,\mathbf{E}_{pos}[a+1, b+1],$$
#
# the bilinear mix of the four nearest old grid cells. Written out with loops, against the library:

# %%
def bilinear_pos_embedding(E_pos, old_grid, new_grid):
    """E_pos (1 + h·w, D) -> (1 + h'·w', D): class-token row kept, patch rows resized bilinearly, corners aligned."""
    (h, w), (h2, w2) = old_grid, new_grid
    grid = E_pos[1:].astype(np.float64).reshape(h, w, -1)    # (h, w, D), row-major patches
    out = np.zeros((h2, w2, grid.shape[2]))                  # (h', w', D)
    for i in range(h2):
        s = i * (h - 1) / (h2 - 1)                           # position on the old grid (rows)
        a, f = min(int(s), h - 2), s - min(int(s), h - 2)
        for j in range(w2):
            t = j * (w - 1) / (w2 - 1)                       # (columns)
            b, g = min(int(t), w - 2), t - min(int(t), w - 2)
            out[i, j] = ((1 - f) * (1 - g) * grid[a, b] + (1 - f) * g * grid[a, b + 1]
                         + f * (1 - g) * grid[a + 1, b] + f * g * grid[a + 1, b + 1])
    return np.concatenate([E_pos[:1].astype(np.float64), out.reshape(h2 * w2, -1)])   # (1 + h'w', D)


hand = bilinear_pos_embedding(params["E_pos"], cfg.grid, cfg56.grid)                 # (65, 64) float64
lib = resize_pos_embedding(params, cfg, cfg56.replace(dtype="float64"))["E_pos"]      # float64 result
p56 = adapt_params(params, cfg, cfg56)                                                # what fine-tuning starts from
lib32 = p56["E_pos"]                                                                  # (65, 64) float32
print(f"E_pos {params['E_pos'].shape} -> {lib.shape};  max |library − hand| = {diff(lib, hand):.1e} (float64), "
      f"{diff(lib32, hand):.1e} (the float32 copy adapt_params makes)")
assert diff(lib, hand) < 1e-12 and diff(lib32, hand) < 1e-6
assert np.array_equal(lib32[0], params["E_pos"][0])                                   # class-token row kept
corners = {(0, 0): (0, 0), (0, 3): (0, 7), (3, 0): (7, 0), (3, 3): (7, 7)}
assert all(diff(hand[1 + 8 * I + J], params["E_pos"][1 + 4 * i + j]) < 1e-6 for (i, j), (I, J) in corners.items())

# %% [markdown]
# **The table itself, before and after.** Each picture is one column $d$ of $\mathbf{E}_{pos}$ drawn on the patch grid:
# the value that column adds to the token of each patch. Interpolation makes the same picture at twice the
# resolution; nothing new is invented, the 8×8 table is a smooth version of the 4×4 one.

# %%
dims = np.argsort(-params["E_pos"][1:].std(0))[:5]          # the five columns that vary most over the grid
fig, axes = plt.subplots(2, 5, figsize=(12, 5))
for col, d in enumerate(dims):
    old = params["E_pos"][1:, d].reshape(cfg.grid)
    new = lib32[1:, d].reshape(cfg56.grid)
    lim = np.abs(old).max()
    axes[0, col].imshow(old, cmap="RdBu_r", vmin=-lim, vmax=lim)
    axes[1, col].imshow(new, cmap="RdBu_r", vmin=-lim, vmax=lim)
    axes[0, col].set_title(f"column d = {d}", fontsize=9)
    for ax in axes[:, col]:
        ax.set_xticks([])
        ax.set_yticks([])
axes[0, 0].set_ylabel("trained, 4×4 grid")
axes[1, 0].set_ylabel("interpolated, 8×8 grid")
fig.suptitle("E_pos column by column: the trained 28×28 model (top) and its 2-D interpolation for 56×56 (bottom)")
fig.tight_layout()
plt.show()

# %% [markdown]
# **The similarity grid** (paper Fig 7, centre; notebook 07): the cosine similarity of one patch's position embedding
# with all others. With only 16 positions, the trained 4×4 table shows a rough pattern rather than clean
# neighbourhoods (note the left-right mirror pairs, a trace of flip augmentation: notebook 07). The interpolated 8×8
# table inherits that pattern and adds one thing *by construction*: neighbouring new patches mix the same old rows,
# so they are similar to each other. That smoothness is an assumption we impose, not something the model learned.

# %%
sim4 = pos_embedding_similarity(params, cfg)                  # (4, 4, 4, 4)
sim8 = pos_embedding_similarity({"E_pos": lib32}, cfg56)      # (8, 8, 8, 8)
refs4, refs8 = [(0, 0), (1, 2), (3, 3)], [(0, 0), (3, 5), (7, 7)]   # corresponding places on both grids
fig, axes = plt.subplots(2, 3, figsize=(9, 6), layout="constrained")
for col, ((r, c), (R, C)) in enumerate(zip(refs4, refs8)):
    im = axes[0, col].imshow(sim4[r, c], cmap="viridis", vmin=-1, vmax=1)
    axes[0, col].plot(c, r, "r+", ms=12)
    axes[0, col].set_title(f"4×4 grid: patch ({r}, {c})", fontsize=9)
    axes[1, col].imshow(sim8[R, C], cmap="viridis", vmin=-1, vmax=1)
    axes[1, col].plot(C, R, "r+", ms=12)
    axes[1, col].set_title(f"8×8 grid: patch ({R}, {C})", fontsize=9)
    for ax in axes[:, col]:
        ax.set_xticks([])
        ax.set_yticks([])
fig.colorbar(im, ax=axes, shrink=0.7, label="cosine similarity")
fig.suptitle("Position-embedding similarity, trained (top) and interpolated (bottom)")
plt.show()


def neighbourhood_similarity(sim):
    """Mean cosine similarity of each patch with its 3×3 neighbourhood (itself included): sim (g, g, g, g)."""
    g = sim.shape[0]
    return np.mean([sim[r, c][max(r - 1, 0):r + 2, max(c - 1, 0):c + 2].mean() for r in range(g) for c in range(g)])


near4, near8 = neighbourhood_similarity(sim4), neighbourhood_similarity(sim8)
print(f"mean similarity with the 3×3 neighbourhood: trained 4×4 {near4:.2f} (all patches {sim4.mean():.2f});  "
      f"interpolated 8×8 {near8:.2f} (all patches {sim8.mean():.2f})")
assert near8 > near4 and near8 > sim8.mean()                 # the interpolation makes neighbours alike


# %% [markdown]
# **The only hand-made 2-D structure.** The paper stresses a point worth repeating, twice. §3.1 ("Inductive bias"): "the
# position embeddings at initialization time carry no information about the 2D positions of the patches and all spatial
# relations between the patches have to be learned from scratch"; and §3.2, right after the 2-D interpolation of
# $\mathbf{E}_{pos}$: "this resolution adjustment and patch extraction are the only points at which an inductive bias
# about the 2D structure of the images is manually injected into the Vision Transformer." A CNN has 2-D neighbourhoods in every layer. The ViT has a 1-D list of tokens and must learn
# from data whatever 2-D relations it needs. The interpolation is where *we* tell it that the tokens form a grid, and
# it helps only as far as the learned table really is a smooth function of the grid position. The large models of
# the paper learn such smooth tables (their Fig 7). Our small model's table is only roughly 2-D (the neighbourhood
# numbers above), which is one reason why interpolation alone does not carry its accuracy over (section 3).

# %% [markdown]
# ## 3. The data, and what interpolation alone gives
#
# Fashion-MNIST has no larger originals, so "56×56" means the 28×28 images upsampled bilinearly
# (`vitnp.data.resize_images`): no new detail, but each 7×7 patch now covers 3.5×3.5 of the original pixels, and the
# model gets 64 tokens (4× the compute of the encoder's linear layers, about 15× the attention matrix) to look at the
# same picture. Without the files, a synthetic stand-in (ten classes of bright bands at ten heights) keeps the notebook
# running; its numbers then say nothing about Fashion-MNIST.

# %%
def synthetic_bands(n_train=6000, n_test=2000, seed=0):
    """Ten classes of 28×28 uint8 images: class k is a bright horizontal band at rows 2k … 2k+5, plus noise."""
    rng = np.random.default_rng(seed)

    def make(n):
        y = rng.integers(0, 10, n)
        x = rng.normal(40, 25, (n, 28, 28))
        for k in range(10):
            x[y == k, 2 * k:2 * k + 6, 4:24] += 150
        return np.clip(x, 0, 255).astype(np.uint8)[..., None], y

    return (*make(n_train), *make(n_test))


try:
    train_x, train_y = load_fashion_mnist(split="train")
    test_x, test_y = load_fashion_mnist(split="test")
    SYNTHETIC = False
    print("data: Fashion-MNIST")
except FileNotFoundError as err:
    SYNTHETIC = True
    print("Fashion-MNIST is NOT installed here:", str(err).splitlines()[0])
    print("=> the live experiments below use a SYNTHETIC data set (bright bands); the checkpoint was trained on "
          "Fashion-MNIST, so its accuracies here are meaningless. Install dataset-fashion-mnist or set VITNP_DATA.")
    train_x, train_y, test_x, test_y = synthetic_bands()
print(f"train {train_x.shape}, test {test_x.shape}")

n_eval = 1000 if FAST else 10000                              # test images for the evaluations of this section
ev_x, ev_y = test_x[:n_eval], test_y[:n_eval]
ev_x56 = resize_images(ev_x, 56)                               # (n, 56, 56, 1), bilinear
fig, axes = plt.subplots(1, 2, figsize=(6, 3.2))
for ax, img, g in ((axes[0], ev_x[0, ..., 0], 4), (axes[1], ev_x56[0, ..., 0], 8)):
    ax.imshow(img, cmap="gray_r")
    n = img.shape[0]
    for k in range(1, g):                                      # the patch grid
        ax.axhline(k * n / g - 0.5, color="tab:red", lw=0.8)
        ax.axvline(k * n / g - 0.5, color="tab:red", lw=0.8)
    ax.set_title(f"{n}×{n}: {g}×{g} patches of 7×7", fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
plt.show()

accs = {}
t0 = time.perf_counter()
accs["28×28, as trained"] = evaluate_arrays(params, cfg, ev_x, ev_y)["accuracy"]
accs["56×56, E_pos interpolated"] = evaluate_arrays(p56, cfg56, ev_x56, ev_y)["accuracy"]
no_pos = dict(p56, E_pos=np.zeros_like(lib32))                 # what if there were no position information?
accs["56×56, E_pos set to 0"] = evaluate_arrays(no_pos, cfg56, ev_x56, ev_y)["accuracy"]
for k, v in accs.items():
    print(f"{k:<28} test accuracy {100 * v:6.2f} %  ({n_eval:,} images)")
print(f"({time.perf_counter() - t0:.0f} s)")

# %% [markdown]
# Interpolation alone does **not** carry the accuracy over: at 56×56 the patches show a different thing (a quarter of
# what a patch showed at 28×28, smoother), and the patch embedding $\mathbf{E}$ was learned for the old patches. The
# interpolated positions are still far better than no position information at all. Hence *fine-tuning*: a few hundred
# steps at the new resolution let $\mathbf{E}$, $\mathbf{E}_{pos}$ and the blocks adapt (section 5).

# %% [markdown]
# ## 4. The new head starts at zero
#
# For new classes the head $\mathbf{W}_{head} \in \mathbb{R}^{D \times K}$, $\mathbf{b}_{head}$ is replaced, and the paper
# initialises it to **zero**. Then, for every image, logits $= \mathbf{y}\mathbf{W} + \mathbf{b} = 0$: the prediction is
# uniform and the loss is exactly $\log K$. The gradient reaching the body is
# $\partial \ell / \partial \mathbf{y} = (\partial \ell / \partial\,\text{logits})\, \mathbf{W}^\top = 0$, so on the first
# step only the head receives a gradient, $\partial \ell / \partial \mathbf{W} = \mathbf{y}^\top (\mathbf{p} - \mathbf{t}) / B$,
# and the pre-trained body is not shaken by the gradients of a random head. (The body's weights are not frozen,
# though: AdamW's weight decay, which does not depend on the gradient, still shrinks the body's weight matrices a little
# on that step.) (A random head would push arbitrary errors
# into a body that already computes useful features.) `adapt_params` does it; the same checks by hand:

# %%
cfg5 = cfg.replace(num_classes=5)                             # five new classes
p5 = adapt_params(params, cfg, cfg5)                           # new zero head, the rest copied
x8 = normalize(ev_x[:8])
logits, cache = vitnp.vit_forward(p5, x8, cfg5)
labels8 = np.arange(8) % 5
loss, dlogits = softmax_cross_entropy(logits, labels8)
grads = vitnp.vit_backward(dlogits, cache)
body_max = max(float(np.abs(g).max()) for k, g in grads.items() if not k.startswith("head."))
y8 = vitnp.vit_forward(dict(p5, **{"head.W": np.eye(64, dtype=np.float32), "head.b": np.zeros(64, np.float32)}),
                       x8, cfg.replace(num_classes=64))[0]     # y = LN(z_L⁰) (Eq 4): the body's output
dW_hand = y8.T @ (np.full((8, 5), 0.2) - np.eye(5)[labels8]) / 8
print(f"head.W {p5['head.W'].shape}, all zero: {not p5['head.W'].any()};  logits all zero: {not logits.any()};  "
      f"loss {loss:.6f} = log 5 = {np.log(5):.6f}")
print(f"largest gradient of any body parameter: {body_max:.1e};  ∂ℓ/∂W_head: max |library − hand| = "
      f"{diff(grads['head.W'], dW_hand):.1e}, its norm {np.linalg.norm(dW_hand):.3f}")
assert not logits.any() and abs(loss - np.log(5)) < 1e-6 and body_max == 0.0
assert diff(grads["head.W"], dW_hand) < 1e-5 and np.linalg.norm(dW_hand) > 0

# %% [markdown]
# ## 5. Live experiment A: fine-tuning at 56×56
#
# `train(cfg56, hp, init_from=CKPT)` loads the checkpoint, adapts it with `adapt_params` (E_pos interpolated, head kept:
# the classes are the same), upsamples the training and test images, and trains with a fresh AdamW at a small learning
# rate with a short warm-up. (The paper fine-tunes with SGD with momentum 0.9, cosine decay and no weight decay,
# Appendix B.1.1; we keep the library's AdamW, the optimiser every other run here uses.) For a fair comparison the same checkpoint is also trained on at 28×28 for exactly the same
# steps: any gain of 56×56 over *that* comes from the resolution, not from more training. Both runs are one fixed epoch
# that chooses nothing (no validation split); `train` reads the test images once, after it: `run.test["final"]`.
#
# The command-line equivalent: `python -m vitnp train --init-from notebooks/assets/vit_fmnist.npz --image-size 56
# --epochs 1 --lr 3e-4 --warmup 0.1 --augment flip --val-size 0 --max-minutes 0 --out RUN` (the model comes from the
# checkpoint; `--val-size 0` because the command line's default preset holds out 5,000 images for validation).

# %%
n_res = 1000 if FAST else 12000                               # training images of this live run
pick = np.sort(np.random.default_rng(0).permutation(len(train_x))[:n_res])
res_data = (train_x[pick], train_y[pick], ev_x, ev_y)
hp_res = HParams(epochs=1, batch_size=128, lr=3e-4, warmup_epochs=0.1, augment="flip")   # AdamW, cosine, wd 0.05
live_res = {}
with tempfile.TemporaryDirectory() as tmp:
    for name, c in (("56×56, fine-tuned", cfg56), ("28×28, trained on", cfg)):
        t0 = time.perf_counter()
        run = train(c, hp_res, data=res_data, init_from=CKPT, quiet=True, plots=False)
        live_res[name] = (run.test["final"]["test_acc"], run.history[-1]["step"], time.perf_counter() - t0)
for name, acc in accs.items():
    print(f"{name:<28} {100 * acc:6.2f} %")
for name, (acc, steps, secs) in live_res.items():
    print(f"{name:<28} {100 * acc:6.2f} %   after {steps} steps on {n_res:,} images ({secs:.0f} s)")
assert live_res["56×56, fine-tuned"][1] == live_res["28×28, trained on"][1] == n_res // 128

# %% [markdown]
# ## 6. Live experiment B: transfer to new classes with little data
#
# Pre-train the same architecture from scratch on classes 0–4 (T-shirt/top, Trouser, Pullover, Dress, Coat), then move
# to classes 5–9 (Sandal, Shirt, Sneaker, Bag, Ankle boot), which the body has never seen, with 10 % of their training
# images. Two runs with the same steps, schedule and augmentation: **fine-tune** (`init_from` the pre-trained body: a
# new zero head for the new classes) and **scratch** (a fresh initialisation). Both are fixed schedules that choose
# nothing (no validation split, no early stopping: the result is the model after the last step), so we ask `train` for
# a **test curve** (`test_curve=True`): the test accuracy on images of classes 5–9 after every epoch, to watch how fast
# each run learns, never to choose anything with.

# %%
pre, tgt = (0, 1, 2, 3, 4), (5, 6, 7, 8, 9)
if FAST:
    n_pre, pre_epochs, n_sub, epochs_t, n_test_t = 3000, 1, 300, 4, 1000
else:
    n_pre, pre_epochs, n_sub, epochs_t, n_test_t = 30000, 2, 3000, 10, 5000
n_sub = min(n_sub, int(np.isin(train_y, tgt).sum()) // 2)     # (the synthetic stand-in is smaller)
pre_x, _ = select_classes(train_x, train_y, pre)                # the images of classes 0–4
cfg_pre, cfg_t = cfg.replace(num_classes=5), cfg.replace(num_classes=5)
hp_pre = HParams(epochs=pre_epochs, lr=3e-3, warmup_epochs=0.5, augment="flip", classes=pre,
                 train_subset=min(n_pre, len(pre_x)))
# the target task: the 10 % subset is drawn by train() (seeded), the test images are those of classes 5–9
hp_t = HParams(epochs=epochs_t, lr=1e-3, warmup_epochs=2.0, augment="flip", classes=tgt, train_subset=n_sub,
               test_curve=True)                                # a curve to look at; nothing is chosen with it
data_t = (train_x, train_y, test_x[np.isin(test_y, tgt)][:n_test_t], test_y[np.isin(test_y, tgt)][:n_test_t])
with tempfile.TemporaryDirectory() as tmp:
    t0 = time.perf_counter()
    pre_run = train(cfg_pre, hp_pre, data=(train_x, train_y, test_x, test_y),
                    out_dir=Path(tmp) / "pretrain", quiet=True, plots=False)
    print(f"pre-trained on classes 0–4 ({hp_pre.train_subset:,} images, {pre_epochs} epoch(s)): test accuracy "
          f"{100 * pre_run.test['final']['test_acc']:.2f} % on their test images ({time.perf_counter() - t0:.0f} s)")
    t0 = time.perf_counter()
    ft = train(cfg_t, hp_t, data=data_t, init_from=Path(tmp) / "pretrain" / "checkpoint.npz", quiet=True, plots=False)
    sc = train(cfg_t, hp_t, data=data_t, quiet=True, plots=False)
    print(f"fine-tune and scratch on classes 5–9: {time.perf_counter() - t0:.0f} s")
assert ft.history[-1]["step"] == sc.history[-1]["step"]
steps_t = [h["step"] for h in ft.history]
fig, ax = plt.subplots(figsize=(7, 3.8))
ax.plot(steps_t, [100 * h["test_acc"] for h in ft.history], "o-", label="fine-tuned (pre-trained body, zero head)")
ax.plot(steps_t, [100 * h["test_acc"] for h in sc.history], "s-", label="from scratch")
ax.set_xlabel("optimiser step")
ax.set_ylabel("test accuracy, classes 5–9 (%)")
ax.set_title(f"Test curve (for teaching; nothing chosen with it): transfer with {n_sub:,} images (live, one seed)",
             fontsize=10)
ax.grid(alpha=0.3)
ax.legend()
plt.show()
print(f"after {steps_t[-1]} steps: fine-tuned {100 * ft.test['final']['test_acc']:.2f} %, scratch "
      f"{100 * sc.test['final']['test_acc']:.2f} % on {len(data_t[3]):,} test images of classes 5–9")
for r in (ft, sc):                                            # the curve's last point is the final model's test reading
    assert r.history[-1]["test_acc"] == r.test["final"]["test_acc"]

# %% [markdown]
# ## 7. The full measurements
#
# `scripts/finetune_experiments.py` runs both experiments at full size on this machine (all 60,000 images for the
# resolution experiment; 30,000 images of classes 0–4 for pre-training, several seeds for the transfer) and stores
# everything in `docs/figures/finetune.json`; the discussion is in `docs/results.md`. The figure and the tables below are
# read from that file, not computed here:
#
# ```bash
# python scripts/finetune_experiments.py --out runs/finetune --figures docs/figures
# ```

# %%
RESULTS = REPO / "docs" / "figures" / "finetune.json"
if not RESULTS.exists():
    print(f"{RESULTS} is missing: run the command above to make it.")
else:
    full = json.loads(RESULTS.read_text())
    r, t = full.get("resolution", {}), full.get("transfer", {})
    print("Resolution: the 28×28 checkpoint on all 10,000 test images")
    rows = [("eval_base", "28×28, as trained"), ("eval_high_interpolated", "56×56, E_pos interpolated, no training")]
    rows += [(k, ("56×56, fine-tuned" if k.startswith("finetune") else "28×28, trained on") + f", {r[k]['epochs']} epoch(s)")
             for k in sorted(r, key=lambda k: (r[k].get("epochs", 0), k)) if k.startswith(("finetune_high", "continue_base"))]
    for k, lab in rows:
        if k in r:
            print(f"  {lab:<42} {100 * r[k]['test_acc']:6.2f} %  {r[k]['steps']:>5} steps  "
                  f"{r[k]['wall_seconds'] / 60:5.1f} min")
    if "summary" in t:
        su, st = t["summary"], t["setup"]
        print(f"\nTransfer to classes {st['target_classes']} with {st['transfer_subset']:,} training images "
              f"({100 * st['target_fraction']:.0f} %), test on {st['n_target_test']:,} images; mean ± sd over seeds")
        for k in ("finetune", "scratch", "finetune_alt_lr", "scratch_alt_lr", "probe", "finetune_minus_scratch",
                  "finetune_minus_scratch_alt_lr"):
            if k in su:
                v = su[k]
                lr = st["hparams_transfer"]["lr"] if not k.endswith("alt_lr") else full["settings"]["alt_lr"]
                unit = "points" if "minus" in k else "%"          # a difference of accuracies
                print(f"  {k:<30} lr {lr:<6g} {100 * v['mean']:6.2f} {unit} ± {100 * v['std']:.2f}  (n = {v['n']}, "
                      f"{100 * v['min']:.2f} … {100 * v['max']:.2f})")
    print("\nThe same runs with `python -m vitnp train` (RUN: a new run directory; PRETRAIN: the pre-training run):")
    shown = ("resolution.finetune_high", "transfer.pretrain", "transfer.finetune.seed_0", "transfer.scratch.seed_0")
    for k in shown:
        print(f"  {k}:\n    {full['commands'][k]}")
    if any("--val-size" not in full["commands"][k] for k in shown):
        print("  (recorded before `train` held out a validation split by default: to run them with the same settings "
              "today, add --val-size 0, and --test-curve for the per-epoch test accuracy they recorded; "
              "scripts/finetune_experiments.py now writes both)")
    fig = transfer_figure(full)                               # docs/figures/transfer.png, drawn again from the JSON
    fig.axes[1].set_xlim(0, 100)                              # bars from 0 %: their lengths compare
    display(fig)
print(f"notebook time so far: {time.perf_counter() - T_START:.0f} s")

# %% [markdown]
# ## 8. Pre-training without labels: masked patch prediction (§4.6)
#
# Everything so far started from a body trained *with* labels. The paper's §4.6 asks whether the ViT can also learn
# from images alone, as BERT learns from text alone: "we also perform a preliminary exploration on masked patch
# prediction for self-supervision, mimicking the masked language modeling task used in BERT". The recipe (Appendix
# B.1.2): corrupt 50 % of the patch embeddings, 80 % of those replaced by a learnable [mask] embedding, 10 % by another
# patch embedding and 10 % left as they are, then predict from each corrupted patch's output token its 3-bit mean
# colour (512 classes). Their ViT-B/16 reaches 79.9 % on ImageNet after such pre-training on JFT, "a significant
# improvement of 2 % to training from scratch, but still 4 % behind supervised pre-training".
#
# Where this sits among the objectives the study notes name: **iGPT** (notebook 01) is trained on pixels either
# **autoregressively** (predict the next pixel from the ones before it, as GPT predicts the next word) or BERT-style;
# **BERT** hides a part of the input and predicts it from *both* sides. Masked patch prediction is the BERT kind, on
# patches instead of words or pixels: nothing is predicted left to right, and the encoder sees the whole corrupted
# image at once, so the same bidirectional encoder can be fine-tuned afterwards.
#
# Ours, on grey 28×28 images: the same corruption (`vitnp.ops.masking`), and the target of a corrupted patch is its
# mean intensity in 8 bins (3 bits, like the paper's 3 bits per colour channel). The model (`vitnp.self_supervised`)
# is the ViT body with a small head on each corrupted patch's token. One image, corrupted:

# %%
from vitnp.ops.masking import corrupt_patches, corruption_plan, mean_intensity_bins
from vitnp.ops.patches import patchify_forward, unpatchify
from vitnp.selfcheck import check_masked_patch_prediction

img = train_x[:1]                                                  # uint8 (1, 28, 28, 1)
plan = corruption_plan(np.random.default_rng(0), 1, cfg.num_patches)
x_p, _ = patchify_forward(normalize(img, np.float64), cfg.patch_size)
shown = unpatchify(corrupt_patches(x_p, plan), cfg.hw, cfg.patch_size)   # masked patches: 0 = the mean grey
targets = mean_intensity_bins(img, cfg.patch_size)
kind = np.where(plan["masked"], "mask", np.where(plan["source"] != np.arange(cfg.num_patches), "other", "kept"))
print("corrupted patches:", int(plan["corrupted"].sum()), "of", cfg.num_patches)
for i in np.flatnonzero(plan["corrupted"][0]):
    print(f"  patch {i:>2}: {kind[0, i]:<5} target bin {targets[0, i]} (mean intensity of the original patch)")
fig, axes = plt.subplots(1, 2, figsize=(5, 2.6))
for ax, im, title in ((axes[0], normalize(img, np.float64)[0], "original"), (axes[1], shown[0], "corrupted")):
    ax.imshow(im[..., 0], cmap="gray", vmin=-1, vmax=2)
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
plt.show()
errors = check_masked_patch_prediction("token")                   # every parameter, float64, centred differences
print(f"gradient check of the pre-training model: max relative error {max(errors.values()):.1e} over "
      f"{len(errors)} parameter arrays")
assert max(errors.values()) < 1e-6

# %% [markdown]
# **The experiment.** `scripts/self_supervision.py` pre-trains our `fmnist-vit` architecture (139,018 parameters) on
# all 60,000 training images without their labels, then fine-tunes it on 1,000 and on 5,000 labelled images (a fifth
# held out for validation, which chooses the epoch and the learning rate), against the same runs from scratch, for
# three seeds; and fits a linear head on the frozen body, pre-trained or random. It is read here from
# `docs/figures/self_supervision.json` (the command and the discussion are in `docs/results.md`):
#
# ```bash
# python scripts/self_supervision.py --out runs/self_supervision
# ```

# %%
SSL = REPO / "docs" / "figures" / "self_supervision.json"
if not SSL.exists():
    print(f"{SSL} is missing: run the command above to make it.")
else:
    ssl = json.loads(SSL.read_text())
    last = ssl["pretrain"]["history"][-1]
    print(f"pre-training: {ssl['pretrain']['images']:,} images, {last['epoch']:g} epochs, {last['step']:,} steps; "
          f"masked-patch accuracy {100 * last['task_acc']:.1f} % (always the most frequent bin: "
          f"{100 * last['majority_acc']:.1f} %)")
    print(f"\n{'labels':>7} {'pre-trained, fine-tuned':>24} {'from scratch':>16} {'gain (paired)':>15} "
          f"{'probe, pre-trained':>19} {'probe, random':>14}")
    for n, row in ssl["summary"].items():
        cell = lambda v: f"{100 * v['mean']:.2f} ± {100 * v['std']:.2f}"
        print(f"{int(n):>7,} {cell(row['pretrained']):>24} {cell(row['scratch']):>16} {cell(row['gain']):>15} "
              f"{cell(row['probe_pretrained']):>19} {cell(row['probe_random']):>14}")
    print("test accuracy %, mean ± sample std over", ssl["summary"][next(iter(ssl["summary"]))]["gain"]["n"],
          "seeds; the paper (ViT-B/16, ImageNet): 79.9 % after masked patch prediction, +2 points over scratch")

# %% [markdown]
# ## 9. If we change the head, can it do other things?
#
# The study notes ask it, and the paper answers it twice: every downstream task gets a new head on the same body
# (§3.2), and the few-shot evaluation fits a new linear head on the *frozen* representation $\mathbf{y} =
# LN(\mathbf{z}_L^0)$ in closed form, "a regularized least-squares regression problem that maps the (frozen)
# representation of a subset of training images to $\{-1, 1\}^K$ target vectors" (§4.1). `scripts/new_heads.py` does
# the same with three frozen bodies of our architecture: notebook 07's, trained *with* the labels; section 8's,
# pre-trained *without* them by masked patch prediction; and a random initialisation, the baseline any head must beat.
# Three tasks: the ten classes again; another labelling of the same images (tops, footwear, other); and a question the
# labels never asked, *was this image mirrored?*; and the few-shot heads with 1 to 25 labelled images per class (for
# the supervised body these are the classes it was trained on, so only the self-supervised body's few-shot numbers
# measure what the paper's few-shot evaluation measures). Every head's $\lambda$ is chosen on 5,000 held-out training
# images; the test split is read once per head (`vitnp.experiments.new_heads`, `docs/results.md`):
#
# ```bash
# python scripts/new_heads.py --out runs/new_heads --self-supervised runs/self_supervision/pretrained.npz
# ```
#
# The closed-form head, by hand on the features of a few images, equals the library's:

# %%
from vitnp.training.probe import features, ridge_head, ridge_predict

f_few = features(params, cfg, train_x[:200])                       # y = LN(z_L⁰) of 200 images: (200, D)
A = np.concatenate([f_few, np.ones((200, 1))], axis=1)             # [F, 1]
T = -np.ones((200, 10))
T[np.arange(200), train_y[:200]] = 1                               # targets in {−1, 1}^K
lam = 1.0
Wb = np.linalg.solve(A.T @ A + lam * np.diag([1.0] * cfg.dim + [0.0]), A.T @ T)   # the normal equations
W, b = ridge_head(f_few, train_y[:200], 10, lam)
print(f"features {f_few.shape}; max |library − hand| = {diff(np.vstack([W, b]), Wb):.1e}")
assert diff(np.vstack([W, b]), Wb) < 1e-8

HEADS = REPO / "docs" / "figures" / "new_heads.json"
if not HEADS.exists():
    print(f"{HEADS} is missing: run the command above to make it.")
else:
    heads = json.loads(HEADS.read_text())
    kinds = list(heads["bodies"])
    print("\ntest accuracy %, λ chosen on validation; bodies: " + ", ".join(kinds))
    print(f"{'task':<10}" + "".join(f"{k:>17}" for k in kinds) + f"{'majority':>10}")
    for task in ("classes", "groups", "mirrored"):
        row = [heads["bodies"][k]["tasks"][task] for k in kinds]
        print(f"{task:<10}" + "".join(f"{100 * r['test_acc']:>17.2f}" for r in row)
              + f"{100 * row[0]['majority_acc']:>10.2f}")
    draws = len(heads["bodies"][kinds[0]]["few_shot"]["1"]["test_acc"])
    print(f"\nfew-shot heads on the ten classes, mean ± std over {draws} draws of the k images per class")
    for shots in heads["bodies"][kinds[0]]["few_shot"]:
        cells = [heads["bodies"][k]["few_shot"][shots] for k in kinds]
        print(f"{shots + '-shot':<10}" + "".join(f"{100 * c['mean']:>11.2f} ± {100 * c['std']:<4.2f}" for c in cells))

# %% [markdown]
# **Summary.**
#
# * Fine-tuning at a higher resolution with the same $P$ means more tokens; only $\mathbf{E}_{pos}$ changes shape. Its
#   2-D bilinear interpolation (class-token row kept, corners aligned) is a few lines, here checked against
#   `vitnp.io.original.resize_pos_embedding`, and it is the one place where the 2-D layout of the patches is put into
#   the model by hand.
# * A zero-initialised head predicts the uniform distribution, and on the first step only the head receives a gradient.
# * On Fashion-MNIST, interpolation alone loses much of the accuracy (49 % instead of 89 % in the full run), and a
#   short fine-tuning at 56×56 does not win it back: after one and two epochs the 56×56 model reached 82.7 % and
#   84.9 %, while the same training at 28×28 gave 89.2 % and 89.3 %, at about a sixth of the cost per step.
#   Upsampled 28×28 images hold no new detail; the paper fine-tunes much larger pre-trained models, for much longer,
#   on photographs that do show more at a higher resolution.
# * Transfer: with 3,000 images of classes 5–9, the body pre-trained on classes 0–4 beat training from scratch by
#   1.2 points at a learning rate of 1e-3 (three seeds). At 3e-3, which suits scratch better, both reached about
#   92.5 % (difference 0.1 ± 0.7 points). Pre-training mostly made the early steps faster (the curves in the
#   figure). The frozen body with a new linear head reached only 72.8 %: features learned on tops, trousers and
#   dresses do not separate sandals, sneakers and boots, so the body itself has to be fine-tuned.
#
# * Masked patch prediction (section 8): pre-trained on the 60,000 images without labels, our ViT fine-tuned on 1,000
#   labels reached 76.7 % against 72.7 % from scratch (+4.0 points, three seeds, every seed ahead), and +1.2 points
#   with 5,000 labels: the more labels, the less it adds. The paper's +2 points come from a different regime
#   (ImageNet's labels after JFT); the direction is the same. It is BERT's objective on patches, not an
#   autoregressive one.
# * New heads (section 9): on the frozen body trained with the labels, a coarse labelling (tops, footwear, other) is
#   almost free (99.0 %), and even "was this image mirrored?", which no label asked, is answered above chance (69.5 %;
#   a random body already gets 64.1 %, because shoes face one way). Few-shot heads on that body only read back its own
#   classes. On the self-supervised body, which never saw a label, they are the paper's kind of measurement: 41.5 %
#   with one image per class and 68.0 % with 25, against 32.1 % and 54.8 % on random features.
#
# The exact command line of every run is in `docs/figures/finetune.json` (section 7 prints four of them); the
# discussion is in [docs/results.md](../docs/results.md).
#
# **요약.** 같은 $P$로 더 높은 해상도에서 미세 조정하면 토큰이 늘어나고, 모양이 바뀌는 것은 $\mathbf{E}_{pos}$뿐입니다. 그 2차원
# 쌍선형 보간이 이미지의 2차원 배치를 손으로 모델에 넣는 유일한 곳입니다. 0으로 초기화한 헤드는 균등 분포를 예측하고, 첫
# 단계에서는 헤드만 기울기를 받습니다. Fashion-MNIST에서는 보간만으로 정확도를 많이 잃고(89 % 대신 49 %), 56×56에서의 짧은
# 미세 조정으로도 되찾지 못했습니다. 전이에서는 클래스 0–4로 사전 학습한 본체가 학습률 1e-3에서 처음부터 학습보다 1.2점
# 앞섰고, 3e-3에서는 둘이 비슷했습니다. 레이블 없이 마스크드 패치 예측으로 사전 학습한 ViT는 레이블 1,000개로 미세 조정했을 때
# 처음부터 학습보다 4.0점(76.7 % 대 72.7 %), 5,000개에서는 1.2점 앞섰습니다. 고정된 본체 위의 새 헤드는 다른 레이블링과
# 레이블이 묻지 않은 질문(좌우 반전 여부)에도 답하고, 레이블을 본 적 없는 자기 지도 본체의 퓨샷 헤드는 무작위 본체보다
# 9–15점 높습니다.

# %% [markdown]
# ## Exercises
#
# Five exercises: four on the two halves of §3.2, and one on what else the encoder could do under another head. In the student edition (`python -m vitnp course build`) the model answers
# are cut out; the locked cell after each code exercise fails until your answer is right.
#
# * **Exercise nb09-q-predict-epos** (2 points) — inline question: predict the interpolated $\mathbf{E}_{pos}$ of a
#   tiny table, by hand.
#   *인라인 질문: 작은 표의 보간된 $\mathbf{E}_{pos}$를 손으로 예측하세요.*
# * **Exercise nb09-predict-epos** (1 point) — type your prediction in; the test compares it with the library.
#   *예측을 입력하면 테스트가 라이브러리와 비교합니다.*
# * **Exercise nb09-q-zero-head** (2 points) — inline question: with a zero head, when does the body start to learn?
#   *인라인 질문: 헤드가 0이면 본체는 언제 배우기 시작하는가?*
# * **Exercise nb09-second-step** (2 points) — take the first step on the head by hand and look at the second.
#   *헤드의 첫 단계를 손으로 밟고 두 번째 단계를 보세요.*
# * **Exercise nb09-q-new-head** (2 points) — inline question: what other heads on the same encoder could do.
#   *인라인 질문: 같은 인코더 위의 다른 헤드는 무엇을 할 수 있는가.*

# %% [markdown] nbgrader={"grade": true, "grade_id": "nb09-q-predict-epos", "locked": false, "points": 2, "schema_version": 3, "solution": true}
# **Exercise nb09-q-predict-epos** (2 points). A model with $D = 1$ was trained on a 2×2 patch grid. Its position
# embedding, class token first and then the patches row-major, is $\mathbf{E}_{pos} = [7;\ 0, 1;\ 2, 3]$: the patch at
# grid row $r$, column $c$ holds $2r + c$. It is fine-tuned on a 3×3 grid, and another copy on a 4×4 grid. Predict
# the two interpolated tables (section 2: class token's row kept, corner-aligned bilinear), without a computer, and
# say why the answer is exact.
#
# *인라인 질문: 작은 표의 보간된 $\mathbf{E}_{pos}$를 손으로 예측하세요.*
#
# ### BEGIN SOLUTION
# The class token's row stays 7. New cell $(i, j)$ of an $h' \times w'$ grid sits at old position
# $\big(i\,\tfrac{h-1}{h'-1},\ j\,\tfrac{w-1}{w'-1}\big) = \big(\tfrac{i}{h'-1}, \tfrac{j}{w'-1}\big)$, and bilinear
# interpolation reproduces every function of the form $\alpha + \beta r + \gamma c + \delta rc$ of the grid position
# exactly; $2r + c$ is one, so the new value is simply $2i/(h'-1) + j/(w'-1)$.
#
# * 3×3: $\;[7;\ 0, 0.5, 1;\ 1, 1.5, 2;\ 2, 2.5, 3]$
# * 4×4: $\;[7;\ 0, \tfrac13, \tfrac23, 1;\ \tfrac23, 1, \tfrac43, \tfrac53;\ \tfrac43, \tfrac53, 2, \tfrac73;\
#   2, \tfrac73, \tfrac83, 3]$
#
# The four corners keep 0, 1, 2, 3 (corner-aligned), and nothing new is invented: the larger tables are a smooth
# version of the old one. A learned table is not this simple: every new row is a mix of the four nearest old rows,
# with the weights of section 2, and nothing else.
# ### END SOLUTION

# %% [markdown]
# **Exercise nb09-predict-epos** (1 point). Type your two predicted tables, in token order (class token first), as
# `pred_3x3` (10 numbers) and `pred_4x4` (17 numbers). Fractions are fine (`1 / 3`).
#
# *예측을 입력하면 테스트가 라이브러리와 비교합니다.*

# %% nbgrader={"grade": false, "grade_id": "nb09-predict-epos", "locked": false, "schema_version": 3, "solution": true}
### BEGIN SOLUTION
pred_3x3 = [7, 0, 0.5, 1, 1, 1.5, 2, 2, 2.5, 3]
pred_4x4 = [7, 0, 1 / 3, 2 / 3, 1, 2 / 3, 1, 4 / 3, 5 / 3, 4 / 3, 5 / 3, 2, 7 / 3, 2, 7 / 3, 8 / 3, 3]
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "nb09-predict-epos-test", "locked": true, "points": 1, "schema_version": 3, "solution": false}
with exercise("nb09-predict-epos"):
    from vitnp.io.original import resize_pos_table

    tiny = vitnp.ViTConfig(image_size=14, patch_size=7, in_channels=1, num_classes=2, dim=1, depth=1, heads=1, mlp_dim=1)
    E_tiny = np.array([[7.0], [0.0], [1.0], [2.0], [3.0]])                     # class token, then the 2×2 grid row-major
    for pred, size in ((pred_3x3, 21), (pred_4x4, 28)):
        lib_t = resize_pos_table(E_tiny, tiny, tiny.replace(image_size=size))
        assert np.shape(pred) in ((len(lib_t),), lib_t.shape), f"{len(lib_t)} numbers expected, class token first"
        assert diff(np.ravel(pred), lib_t.ravel()) < 1e-12, f"the {size // 7}×{size // 7} table differs from the library's"
        print(f"{size // 7}×{size // 7} grid: your table matches resize_pos_table")

# %% [markdown] nbgrader={"grade": true, "grade_id": "nb09-q-zero-head", "locked": false, "points": 2, "schema_version": 3, "solution": true}
# **Exercise nb09-q-zero-head** (2 points). Section 4 showed that on the first step with a zero head only the head gets
# a gradient. From which step on does the body get one, and why? Write $\partial\ell/\partial\mathbf{y}$ at that step
# in terms of the head's first update.
#
# *인라인 질문: 헤드가 0이면 본체는 언제 배우기 시작하는가?*
#
# ### BEGIN SOLUTION
# From the **second** step. At step 1, $\partial\ell/\partial\mathbf{y} = (\partial\ell/\partial\,\text{logits})\,
# \mathbf{W}_0^\top = 0$ because $\mathbf{W}_0 = 0$, so every gradient below the head vanishes, while
# $\partial\ell/\partial\mathbf{W} = \mathbf{y}^\top(\mathbf{p} - \mathbf{t})/B \ne 0$. The first step therefore makes
# the head non-zero: with plain SGD, $\mathbf{W}_1 = -\eta\,\mathbf{y}^\top(\mathbf{p} - \mathbf{t})/B$ (with AdamW,
# whose first step divides by $\sqrt{\hat v} = |g|$, about $-\eta$ times the sign of each entry of that gradient). At
# step 2,
# $$\frac{\partial\ell}{\partial\mathbf{y}} = \frac{\partial\ell}{\partial\,\text{logits}}\,\mathbf{W}_1^\top
# = \frac1B(\mathbf{p}_2 - \mathbf{t})\,\mathbf{W}_1^\top \ne 0,$$
# so the body's gradients are non-zero from then on; at step 2 they scale with $\mathbf{W}_1$, the head's first
# update (for a small learning rate, linearly in $\eta$). The next exercise checks this with plain SGD.
# ### END SOLUTION

# %% [markdown]
# **Exercise nb09-second-step** (2 points). Write `sgd_head_step(params, grads, lr)`: a copy of `params` in which
# `head.W` and `head.b` took one plain SGD step ($\theta \leftarrow \theta - \eta\,\partial\ell/\partial\theta$) and
# every other array is unchanged. The test takes that step from section 4's zero head and computes the gradients of
# the second step.
#
# *헤드의 첫 단계를 손으로 밟고 두 번째 단계를 보세요.*

# %% nbgrader={"grade": false, "grade_id": "nb09-second-step", "locked": false, "schema_version": 3, "solution": true}
def sgd_head_step(params, grads, lr):
    """New parameters: head.W and head.b moved by −lr · gradient, the body copied unchanged."""
    ### BEGIN SOLUTION
    new = {k: v.copy() for k, v in params.items()}
    for k in ("head.W", "head.b"):
        new[k] = params[k] - lr * grads[k]
    return new
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "nb09-second-step-test", "locked": true, "points": 2, "schema_version": 3, "solution": false}
with exercise("nb09-second-step"):
    logits1, cache1 = vitnp.vit_forward(p5, x8, cfg5)                          # step 1 from the zero head
    grads1 = vitnp.vit_backward(softmax_cross_entropy(logits1, labels8)[1], cache1)
    p_two = sgd_head_step(p5, grads1, lr=0.5)
    assert all(np.array_equal(p_two[k], p5[k]) for k in p5 if not k.startswith("head."))          # the body is unchanged
    assert diff(p_two["head.W"], -0.5 * grads1["head.W"]) < 1e-7 and p_two["head.W"].any()        # W₁ = −η ∂ℓ/∂W
    logits2, cache2 = vitnp.vit_forward(p_two, x8, cfg5)                       # step 2
    dlogits2 = softmax_cross_entropy(logits2, labels8)[1]                       # (p₂ − t)/B
    grads2 = vitnp.vit_backward(dlogits2, cache2)
    body1 = max(float(np.abs(g).max()) for k, g in grads1.items() if not k.startswith("head."))
    body2 = max(float(np.abs(g).max()) for k, g in grads2.items() if not k.startswith("head."))
    dy = dlogits2 @ p_two["head.W"].T                                           # ∂ℓ/∂y = (p₂ − t) W₁ᵀ / B
    print(f"largest body gradient: step 1 {body1:.1e}, step 2 {body2:.1e};  ∂ℓ/∂β of the final LayerNorm = Σ_b ∂ℓ/∂y_b: "
          f"max |library − hand| = {diff(grads2['ln_f.beta'], dy.sum(0)):.1e}")
    assert body1 == 0.0 and body2 > 0 and diff(grads2["ln_f.beta"], dy.sum(0)) < 1e-6

# %% [markdown] nbgrader={"grade": true, "grade_id": "nb09-q-new-head", "locked": false, "points": 2, "schema_version": 3, "solution": true}
# **Exercise nb09-q-new-head** (2 points). The study notes behind this course ask: *if we change the head, can the
# model do other things?* Section 6 replaced the head for new classes. Give three other heads on the same encoder,
# each with what it reads from $\mathbf{z}_L$, its output shape and its loss, and say what of the encoder can be kept.
# BERT put one encoder under many heads: which of your heads mirror which of BERT's, and where does ViT's class token
# come from?
#
# *인라인 질문: 같은 인코더 위의 다른 헤드는 무엇을 할 수 있는가.*
#
# ### BEGIN SOLUTION
# The encoder's output $\mathbf{z}_L$ is $(B, T, D)$: one vector per token, the class token's row $\mathbf{z}_L^0$
# included. A head is any function of it; the encoder is kept (frozen, or fine-tuned with the new head), only the
# head starts from scratch (zero, section 4). Three examples:
#
# * **A head per patch token** (dense prediction): a linear map of each row $\mathbf{z}_L^i$, $i \ge 1$, to $K$ class
#   scores, output $(B, N, K)$, cross-entropy per patch: segmentation at patch resolution (reshape to the
#   $g_h \times g_w$ grid, upsample). BERT's twin: token tagging (a label per word).
# * **A regression head**: $\mathbf{y} = LN(\mathbf{z}_L^0)$ to a few numbers (a bounding box, a count, an angle),
#   output $(B, m)$, squared or L1 loss. BERT's twin: a sentence-level score from [CLS] (similarity regression).
# * **A masked-patch head** (self-supervision, the paper's §4.6): hide some patch embeddings, and from each hidden
#   position's $\mathbf{z}_L^i$ predict something about the patch (its mean colour in bins), output $(B, n, \text{bins})$,
#   cross-entropy on the hidden positions only. BERT's twin: the masked language model, which needs no labels; the
#   encoder it trains is then reused under a classification head.
#
# The classification head itself mirrors BERT's [CLS] token: ViT's learnable class token is taken from BERT's design
# (the paper, §3.1: "similar to BERT's [class] token"), a token with no content of its own that gathers the sequence
# through attention and whose final state feeds the head.
# ### END SOLUTION
