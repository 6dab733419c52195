"""Image arrays as vitnp takes them: the one check of images and labels, normalisation, resizing.

Every data set vitnp is given is uint8 pixels 0..255 in (N, H, W, C) channels-last order with N integer
labels 0 … K−1.  :func:`check_images` is the one check of that (the trainer, the evaluation, the batches,
resizing and class selection all call it), so a mistake gets the same message wherever it is made:
TypeError for the wrong kind of array (floats that are already normalised are the usual one), ValueError for
wrong shapes, counts or label values.

=====================================  ================================================================
``check_images(images, labels, …)``    uint8 (N, H, W, C) and N labels ≥ 0 (and < K, with the model's
                                       C and (H, W) if given); returns the labels as int64
``check_labels(labels, n, …)``         the labels part alone (N integers ≥ 0), for arrays of any shape
``normalize(images)``                  x̂ = (x/255 − mean)/std, in float32 by default
``resize_images(images, size)``        bilinear, for training at another resolution (§3.2)
=====================================  ================================================================
"""
from __future__ import annotations

import numpy as np

from .resample import interp_matrix
from .fashion_mnist import MEAN, STD

__all__ = ["check_images", "check_labels", "normalize", "check_shrink", "resize_images"]


def check_labels(labels, n, *, what="images", num_classes=None, fix=""):
    """``n`` integer class labels ≥ 0 (and < ``num_classes`` if given) → int64 array (N,).

    Raises TypeError for labels that are not integers, ValueError for another count or shape, a negative
    label, or one ≥ ``num_classes``; messages start with ``what``, and ``fix`` (say, the flag that changes
    the number of classes) ends the one about the range 0 … K−1.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or len(labels) != n:
        got = len(labels) if labels.ndim == 1 else f"an array of shape {labels.shape} as"
        raise ValueError(f"{what}: {n} images but {got} labels (labels must be a 1-D array (N,))")
    if n and not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(f"{what}: labels must be integers, got dtype {labels.dtype}")
    if n and num_classes is not None and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"{what}: labels must lie in 0..{num_classes - 1} (num_classes={num_classes}), got "
                         f"{labels.min()}..{labels.max()}{fix}")
    if n and labels.min() < 0:
        raise ValueError(f"{what}: labels must be >= 0, got {labels.min()}")
    return labels.astype(np.int64)


def check_images(images, labels=None, *, what="images", channels=None, size=None, num_classes=None, fix=""):
    """Check uint8 images (N, H, W, C), and their labels if given; returns the labels as int64 (or None).

    Parameters
    ----------
    images : uint8 ndarray (N, H, W, C)   pixels 0..255, not yet normalised
    labels : (N,) integers ≥ 0, optional  (:func:`check_labels`)
    what : str                            names the data in the messages ('train', 'evaluate_arrays', …)
    channels : int, optional              the C the model needs (``cfg.in_channels``)
    size : (H, W), optional               the (H, W) the model needs (``cfg.image_size``)
    num_classes : int, optional           labels must then be < K
    fix : str                             appended to the message about labels ≥ K

    Raises
    ------
    TypeError    not an ndarray of uint8.
    ValueError   not 4-D; another C or (H, W) than the model's; labels as in :func:`check_labels`.
    """
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8:
        raise TypeError(f"{what}: expected uint8 pixels 0..255 (N, H, W, C), got "
                        f"{getattr(images, 'dtype', type(images).__name__)} {np.shape(images)} (already "
                        f"normalised? vitnp normalises them itself)")
    if images.ndim != 4:
        raise ValueError(f"{what}: expected uint8 images (N, H, W, C), got shape {images.shape}")
    need = (*(size if size is not None else images.shape[1:3]), channels or images.shape[3])
    if tuple(images.shape[1:]) != tuple(need):
        raise ValueError(f"{what}: the images are {'x'.join(map(str, images.shape[1:]))}, the config needs "
                         f"{'x'.join(map(str, need))}" + (f" ({channels} channel(s))" if size is None else ""))
    if labels is None:
        return None
    return check_labels(labels, len(images), what=what, num_classes=num_classes, fix=fix)


def normalize(images, dtype=np.float32, *, mean=MEAN, std=STD):
    """x̂ = (x / 255 − mean) / std, computed in ``dtype`` (no float64 detour when float32 is asked).

    The one normalisation of vitnp: training batches, evaluation, predict and visualize all use it.

    Parameters
    ----------
    images : ndarray, uint8, any shape, e.g. (B, H, W, C)
    dtype : floating dtype, default float32
    mean, std : float             default Fashion-MNIST's :data:`MEAN`, :data:`STD` (a checkpoint stores its own)

    Returns
    -------
    x : ndarray, ``dtype``, same shape; with the defaults the training pixels have mean 0 and std 1.
    """
    images = np.asarray(images)
    dtype = np.dtype(dtype)
    if images.dtype != np.uint8:
        raise TypeError(f"normalize expects uint8 pixels 0..255, got {images.dtype} (already normalised?)")
    if dtype.kind != "f":
        raise TypeError(f"normalize needs a floating dtype, got {dtype}")
    x = images.astype(dtype)
    x /= dtype.type(255)          # in-place with a dtype scalar: stays in dtype
    x -= dtype.type(mean)
    x /= dtype.type(std)
    return x


def check_shrink(source_hw, target_hw, what="resize_images"):
    """Raise ValueError when resizing (H, W) to (h, w) shrinks an axis by more than 2× (h < H/2 or w < W/2):
    bilinear interpolation then skips input pixels and aliases."""
    (H, W), (h, w) = (int(n) for n in source_hw), (int(n) for n in target_hw)
    if 2 * h < H or 2 * w < W:
        raise ValueError(f"{what}: shrinking {H}x{W} to {h}x{w} (by more than 2x) would alias with bilinear "
                         f"interpolation; use at least {-(-H // 2)}x{-(-W // 2)}, or shrink by area averaging "
                         f"(vitnp.data.resample.resize_area)")


def resize_images(images, size, *, chunk=2048):
    """Resize uint8 images bilinearly: (N, H, W, C) -> (N, h, w, C), for fine-tuning at a higher resolution.

    Separable linear interpolation with pixel centres aligned (PIL's, OpenCV's and torch's
    ``align_corners=False`` convention): output pixel (i, j) samples the input at

    .. math::
        y = (i + \\tfrac12)\\,H/h - \\tfrac12, \\qquad x = (j + \\tfrac12)\\,W/w - \\tfrac12

    clamped to the image, and mixes the 2×2 neighbours, i.e. ``out = R_y · image · R_xᵀ`` per channel with
    the (h, H) and (w, W) matrices of :func:`vitnp.data.resample.interp_matrix` (``align_corners=False``,
    the same matrices as :func:`vitnp.data.resample.resize_grid`'s). Computed in float64 and rounded half up to
    uint8. Upsampling by 2 gives each output pixel weights 9/16, 3/16, 3/16, 1/16 of its four nearest
    inputs (exact in float64, so the result is exactly reproducible); a constant image stays constant.

    Bilinear rather than nearest: nearest-neighbour upsampling only duplicates pixels into blocks with
    hard edges, which no real higher-resolution image has; bilinear images are smooth, closer to the
    larger photographs the paper fine-tunes on (§3.2).
    Meant for upsampling; shrinking by more than 2× (h < H/2 or w < W/2) is refused with a ValueError,
    because it would alias: use area averaging (:func:`vitnp.data.resample.resize_area`) for that.

    Parameters
    ----------
    images : ndarray, uint8, (N, H, W, C)
    size : int or (h, w)          the new height and width
    chunk : int                   images per float64 work array (bounds the memory, not the result)

    Returns
    -------
    ndarray, uint8, (N, h, w, C); a copy even when the size is unchanged.
    """
    check_images(images, what="resize_images")
    hw = (size, size) if np.isscalar(size) else tuple(size)
    if len(hw) != 2 or not all(isinstance(n, (int, np.integer)) and not isinstance(n, bool) and n >= 1
                               for n in hw):
        raise ValueError(f"size must be a positive int or (h, w), got {size!r}")
    h, w = int(hw[0]), int(hw[1])
    N, H, W, C = images.shape
    if (h, w) == (H, W):
        return images.copy()
    check_shrink((H, W), (h, w))
    r_y, r_x = interp_matrix(H, h, False), interp_matrix(W, w, False)    # (h, H), (w, W)
    out = np.empty((N, h, w, C), np.uint8)
    for start in range(0, N, chunk):
        x = images[start:start + chunk].transpose(0, 3, 1, 2).astype(np.float64)   # (n, C, H, W)
        y = r_y @ x @ r_x.T                                                     # (n, C, h, w)
        out[start:start + chunk] = np.clip(np.floor(y + 0.5), 0, 255).transpose(0, 2, 3, 1)  # (n, h, w, C)
    return out
