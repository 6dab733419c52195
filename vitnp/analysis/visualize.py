"""What a trained ViT has learned, as PNG files: the paper's Fig 6 and Fig 7 for one checkpoint.

Command line::

    python -m vitnp visualize RUN/best.npz shirt.png boot.jpg --out figs/      image files
    python -m vitnp visualize RUN/best.npz --index 0 --index 17 --out figs/    Fashion-MNIST test images

writes, in the ``--out`` directory (each PNG through a temporary file and a rename, never half-written):

=================================  ==========================================================================
``rollout.png``                    each image beside its attention-rollout overlay (Fig 6), predicted class
                                   and probability in the title
``attention_distance.png``         mean attention distance of every head against depth, in input-image
                                   pixels, averaged over the given images (Fig 7 right)
``pos_embedding_similarity.png``   cosine similarity of each patch's E_pos row with every other one, one
                                   small map per patch, on the patch grid (Fig 7 centre)
``filters.png``                    the top principal components of E as P×P filters, with the fraction of
                                   the variance each explains (Fig 7 left)
=================================  ==========================================================================

A hybrid ViT has no ``filters.png`` (its E maps CNN feature channels, not pixels) and a model without
position embeddings no ``pos_embedding_similarity.png``; the command says so.  Only ViT checkpoints can be
drawn (a CNN has no attention).  The inputs are prepared as for the other commands: image files as
``python -m vitnp predict`` does (:func:`vitnp.data.image_files.image_to_input`, with the checkpoint's source size
for a model trained on resized images), ``--index`` test images as ``evaluate`` does (resized to the
model's image size with :func:`vitnp.data.resize_images`).  Their true class is named from Fashion-MNIST's
ten; for a model trained on ``--classes`` an image of another class says "not a trained class".

Python API
----------
visualize(checkpoint, images, out_dir, *, indices, data, ...)  -> list of the PNG paths written
rollout_figure, distance_figure, pos_similarity_figure, filters_figure  -> matplotlib Figures (no pyplot)
The numbers come from :mod:`vitnp.analysis.maps`, the forward passes from the fast path (:mod:`vitnp.fast`), or
with ``reference=True`` (``--reference``) from the reference model (:mod:`vitnp.model`): the attention maps
agree up to float32 rounding.
"""
from __future__ import annotations

import math
import os

import numpy as np

from ..config import ViTConfig
from ..data import FASHION_MNIST_CLASSES, check_images, load_fashion_mnist, normalize, resize_images
from ..data.image_files import image_to_input, load_image
from ..training.rundir import checkpoint_classes, load_checkpoint
from ..ops.loss import log_softmax
from ..training.specs import model_spec
from . import maps as analysis
from .plots import figure, save_figure

__all__ = ["visualize", "rollout_figure", "distance_figure", "pos_similarity_figure", "filters_figure", "FILES"]

FILES = ("rollout.png", "attention_distance.png", "pos_embedding_similarity.png", "filters.png")
MAX_SHOWN = 16            # rollout.png shows at most this many images; all of them count in the distances
CHUNK = 64                # images per forward pass (the attention maps of a chunk are held in memory)


def _no_ticks(ax):
    ax.set_xticks([])
    ax.set_yticks([])


def _show_image(ax, picture):
    """picture: (H, W, C) in [0, 1]; grey for C = 1, RGB for C = 3, the channel mean otherwise."""
    if picture.shape[2] == 3:
        ax.imshow(np.clip(picture, 0, 1))
    else:
        ax.imshow(picture.mean(2), cmap="gray", vmin=0, vmax=1)


# ---- the four figures --------------------------------------------------------------------------------
def rollout_figure(pictures, rollout, titles, per_row=4):
    """Each image beside its rollout overlay (paper Fig 6).

    pictures : (B, H, W, C) in [0, 1]      what the model saw, before normalisation
    rollout  : (B, H, W)                    :func:`vitnp.analysis.maps.attention_rollout`, any scale
    titles   : B strings                    e.g. the predicted class
    """
    B = len(pictures)
    cols = min(B, per_row)
    rows = math.ceil(B / cols)
    fig = figure(2.3 * 2 * cols, 2.5 * rows + 0.4)
    axes = np.asarray(fig.subplots(rows, 2 * cols, squeeze=False))   # (rows, 2·cols)
    im = None
    for b in range(rows * cols):
        ax_img, ax_map = axes[b // cols, 2 * (b % cols)], axes[b // cols, 2 * (b % cols) + 1]
        if b >= B:
            ax_img.axis("off")
            ax_map.axis("off")
            continue
        _show_image(ax_img, pictures[b])
        ax_img.set_title(titles[b], fontsize=8)
        _show_image(ax_map, pictures[b])
        peak = rollout[b].max()
        im = ax_map.imshow(rollout[b] / peak if peak > 0 else rollout[b], cmap="inferno", alpha=0.65,
                           vmin=0, vmax=1)
        ax_map.set_title("attention rollout", fontsize=8)
        _no_ticks(ax_img)
        _no_ticks(ax_map)
    fig.colorbar(im, ax=axes, shrink=0.8, label="rollout weight / its maximum")
    fig.suptitle("Attention rollout (paper Fig 6): where the output token's information comes from")
    return fig


def distance_figure(dist, cfg: ViTConfig, n_images):
    """Mean attention distance per head against depth, one dot per head (paper Fig 7 right).

    dist : (L, k) pixels, :func:`vitnp.analysis.maps.mean_attention_distance`
    """
    L, k = dist.shape
    fig = figure(6.5, 4.2)
    ax = fig.subplots()
    layers = np.arange(1, L + 1)
    shift = 0.25 / max(k - 1, 1)                                  # heads side by side, not on top of each other
    for h in range(k):
        ax.plot(layers + shift * (h - (k - 1) / 2), dist[:, h], "o", ms=5, alpha=0.8, label=f"head {h + 1}")
    d = analysis.patch_distances(cfg)                              # (N, N) pixels
    ax.axhline(d.mean(), color="grey", ls="--", lw=1, label="uniform attention over all patches")
    ax.set_ylim(0, d.max() * 1.05)
    ax.set_xticks(layers)
    ax.set_xlabel("network depth (layer)")
    ax.set_ylabel("mean attention distance (pixels)")
    P_pix = cfg.patch_pixels
    ax.set_title(f"Mean attention distance (Fig 7 right), {n_images} image{'s' * (n_images != 1)}, "
                 f"{P_pix}×{P_pix}-pixel patches", fontsize=10)
    ax.legend(fontsize=7, ncol=2 if k > 6 else 1, loc="best")
    ax.grid(alpha=0.3)
    return fig


def pos_similarity_figure(S, cfg: ViTConfig):
    """The grid of grids of paper Fig 7 centre, drawn as one mosaic with a colour bar.

    S : (gh, gw, gh, gw), :func:`vitnp.analysis.maps.pos_embedding_similarity`; tile (r, c) is S[r, c],
        the similarity of patch (r, c)'s embedding with every patch, at the patch positions.
    """
    gh, gw = S.shape[:2]
    mosaic = np.full((gh * (gh + 1) - 1, gw * (gw + 1) - 1), np.nan)     # one blank row/col between tiles
    for r in range(gh):
        for c in range(gw):
            mosaic[r * (gh + 1):r * (gh + 1) + gh, c * (gw + 1):c * (gw + 1) + gw] = S[r, c]
    side = min(9.0, 2.0 + 0.45 * max(gh, gw) ** 1.3)
    fig = figure(side + 1.2, side)
    ax = fig.subplots()
    im = ax.imshow(mosaic, cmap="viridis", vmin=-1, vmax=1)
    ax.set_xticks(np.arange(gw) * (gw + 1) + (gw - 1) / 2, [str(c + 1) for c in range(gw)])
    ax.set_yticks(np.arange(gh) * (gh + 1) + (gh - 1) / 2, [str(r + 1) for r in range(gh)])
    ax.set_xlabel("input patch column")
    ax.set_ylabel("input patch row")
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    fig.colorbar(im, ax=ax, shrink=0.8, label="cosine similarity")
    what = "learned 1-D E_pos" if cfg.pos_embedding == "learned" else "fixed 2-D sine-cosine table (not learned)"
    ax.set_title(f"Position embedding similarity (Fig 7 centre), {what}", fontsize=10)
    return fig


def filters_figure(filters, variance, per_row=7):
    """Principal components of E as P×P filters (paper Fig 7 left).

    filters : (k, P, P, C), :func:`vitnp.analysis.maps.embedding_filters`;   variance : (k,) fractions
    Each filter is scaled by its largest |entry|: mid-grey is 0, so the sign pattern shows.
    """
    k, P, _, C = filters.shape
    cols = min(k, per_row)
    rows = math.ceil(k / cols)
    fig = figure(1.35 * cols, 1.45 * rows + 0.5)
    axes = np.asarray(fig.subplots(rows, cols, squeeze=False))
    for i, ax in enumerate(axes.ravel()):
        _no_ticks(ax)
        if i >= k:
            ax.axis("off")
            continue
        f = filters[i] / max(np.abs(filters[i]).max(), 1e-12)   # (P, P, C) in [-1, 1]
        if C == 3:
            ax.imshow(0.5 + 0.5 * f)
        else:
            ax.imshow(f.mean(2), cmap="gray", vmin=-1, vmax=1)
        ax.set_title(f"PC {i + 1}: {100 * variance[i]:.1f}%", fontsize=7)
    note = "" if C in (1, 3) else f" (mean over the {C} channels)"
    fig.suptitle(f"Principal components of E as {P}×{P} filters (Fig 7 left){note}; "
                 f"% = share of E's variance", fontsize=9)
    return fig


# ---- the command -------------------------------------------------------------------------------------
def _test_images(indices, data, verify, cfg):
    """uint8 (n, H, W, C) Fashion-MNIST test images, resized to the model's size as ``evaluate`` does
    (:func:`vitnp.training.evaluation.checkpoint_view`), and their original labels 0-9, with clear errors."""
    images, labels = load_fashion_mnist(data, "test", verify=verify)       # (N, 28, 28, 1), (N,)
    n = len(images)
    for i in indices:
        if not 0 <= i < n:
            raise ValueError(f"--index {i} is out of range: the test set has {n} images (0..{n - 1})")
    check_images(images, what="--index: the Fashion-MNIST test images (give image files instead)",
                 channels=cfg.in_channels)
    idx = np.asarray(indices, dtype=np.int64)
    images, labels = images[idx], labels[idx]
    if images.shape[1:3] != tuple(cfg.hw):
        images = resize_images(images, cfg.hw)                             # (n, H, W, C), as in training
    return images, labels


def visualize(checkpoint, images=(), out_dir="visualize", *, indices=(), data=None, verify=True, invert="auto",
              upsample="nearest", n_filters=28, log=print, reference=False) -> list:
    """Write the four PNGs of the module docstring for one checkpoint; returns the paths written.

    Parameters
    ----------
    checkpoint : path of a checkpoint from ``python -m vitnp train`` (``best.npz``, ``checkpoint.npz``)
    images : PNG/JPEG paths, converted like ``predict`` does (:func:`vitnp.data.image_files.image_to_input`)
    out_dir : directory for the PNGs (created if missing)
    indices : Fashion-MNIST test-set indices to use as well (needs the data: ``data`` or the defaults of
        :func:`vitnp.data.load_fashion_mnist`), resized to the model's image size as ``evaluate`` does
    verify : check the data files' MD5s
    invert : 'auto' | 'yes' | 'no', for image files, as in ``predict``
    upsample : 'nearest' | 'bilinear', how the rollout's patch grid is spread over the pixels
    n_filters : how many principal components of E to draw (at most min(P²C, D))
    log : where the one-line messages go (``print``; a no-op to keep quiet)
    reference : run the reference model (:func:`vitnp.model.vit_forward`) instead of the fast path

    Every image is read before anything is written, so a bad file leaves ``out_dir`` untouched.
    A CNN checkpoint is refused with a ValueError (it has no attention to draw).
    """
    images, indices = list(images), [int(i) for i in indices]
    if not images and not indices:
        raise ValueError("nothing to show: give at least one IMAGE file or --index N")
    if upsample not in ("nearest", "bilinear"):
        raise ValueError(f"upsample must be 'nearest' or 'bilinear', got {upsample!r}")
    if isinstance(n_filters, bool) or not isinstance(n_filters, (int, np.integer)) or n_filters < 1:
        raise ValueError(f"the number of filters must be a positive integer, got {n_filters!r}")
    out_dir = os.fspath(out_dir)
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise ValueError(f"--out {out_dir}: exists and is not a directory")
    params, cfg, meta = load_checkpoint(checkpoint)
    if not isinstance(cfg, ViTConfig):
        raise ValueError(f"{os.fspath(checkpoint)}: visualize needs a ViT checkpoint; this one holds a CNN")
    mean, std, names = meta["norm_mean"], meta["norm_std"], meta["class_names"]
    trained = checkpoint_classes(meta)                           # original class indices; [] = all of them
    source_size = meta["data"].get("source_size")                # e.g. 28x28 for a model trained at 56x56

    # 1. every input, read and checked first: x normalised (B, H, W, C), pictures in [0, 1] for display
    xs, titles = [], []
    for path in images:
        x, inverted = image_to_input(load_image(path), cfg, mean, std, invert, source_size=source_size)  # (H, W, C)
        xs.append(x)
        titles.append(os.path.basename(os.fspath(path)) + (" (inverted)" if inverted else ""))
    if indices:
        pix, labels = _test_images(indices, data, verify, cfg)                       # uint8 (n, H, W, C)
        xs.extend(normalize(pix, cfg.np_dtype, mean=mean, std=std))
        titles.extend(f"test #{i} (true: {_true_name(y, trained)})" for i, y in zip(indices, labels))
    x = np.stack(xs)                                                                 # (B, H, W, C)
    pictures = np.clip(x.astype(np.float64) * std + mean, 0.0, 1.0)                 # undo the normalisation

    figures = paper_figures(params, cfg, x, pictures, titles, names=names, upsample=upsample, n_filters=n_filters,
                            log=log, reference=reference)
    os.makedirs(out_dir, exist_ok=True)
    written = []
    for name, fig in figures:
        path = os.path.join(out_dir, name)
        save_figure(fig, path)                                                       # temp file + rename
        written.append(path)
        log(f"wrote {path}")
    return written


def paper_figures(params, cfg: ViTConfig, x, pictures, titles, *, names=None, upsample="nearest", n_filters=28,
                  log=print, reference=False) -> list:
    """The paper's Fig 6 and Fig 7 for one ViT and a batch of images: [(file name, figure)], as :func:`visualize`
    writes them (rollout.png, attention_distance.png, pos_embedding_similarity.png, filters.png).

    x: (B, H, W, C) the model's inputs   pictures: (B, H, W, C) the same images in [0, 1] for display
    titles: B strings   names: the class names, to add each image's predicted class (None: no predictions, for a
    checkpoint whose head is not a classifier of known classes)
    """
    B = len(x)
    # forward passes in chunks: probabilities, rollout maps, distances summed over the images
    forward = model_spec(cfg, reference=reference).forward
    probs, rollouts, dist_sum = [], [], 0.0
    for s in range(0, B, CHUNK):
        logits, cache = forward(params, x[s:s + CHUNK], cfg, train=False)          # (b, K)
        probs.append(np.exp(log_softmax(logits.astype(np.float64))))                # (b, K) softmax, float64
        maps = analysis.attention_maps(cache)                                       # L × (b, k, T, T)
        rollouts.append(analysis.attention_rollout(maps, cfg, upsample=upsample))  # (b, H, W)
        dist_sum = dist_sum + analysis.mean_attention_distance(maps, cfg) * len(logits)
    probs, rollout, dist = np.concatenate(probs), np.concatenate(rollouts), dist_sum / B   # dist: (L, k)
    if names is not None:
        for title, p in zip(titles, probs):
            log(f"{title}: {names[p.argmax()]} {100 * p.max():.1f}%")
        titles = [f"{t}\npredicted: {names[p.argmax()]} {100 * p.max():.0f}%" for t, p in zip(titles, probs)]

    # the figures
    figures = []
    shown = min(B, MAX_SHOWN)
    if shown < B:
        log(f"note: rollout.png shows the first {shown} of the {B} images; the distances use all {B}")
    figures.append(("rollout.png", rollout_figure(pictures[:shown], rollout[:shown], titles[:shown])))
    figures.append(("attention_distance.png", distance_figure(dist, cfg, B)))
    if cfg.pos_embedding == "none":
        log("note: no pos_embedding_similarity.png: this model has no position embeddings (pos_embedding='none')")
    else:
        figures.append(("pos_embedding_similarity.png",
                        pos_similarity_figure(analysis.pos_embedding_similarity(params, cfg), cfg)))
    if cfg.is_hybrid:
        log("note: no filters.png: this is a hybrid ViT, whose E maps patches of the CNN stem's feature map "
            "(feature channels, not pixels), so E has no image filters to show")
    else:
        k = min(n_filters, cfg.patch_dim, cfg.dim)
        filters, variance = analysis.embedding_filters(params, cfg, k, return_variance=True)
        figures.append(("filters.png", filters_figure(filters, variance)))
    return figures


def _true_name(label, trained) -> str:
    """The Fashion-MNIST name of an original test label 0-9, noting a class the model was not trained on."""
    name = FASHION_MNIST_CLASSES[int(label)]
    return name if not trained or int(label) in trained else f"{name}, not a trained class"
