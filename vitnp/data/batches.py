"""Mini-batches for training: augmentation, then normalisation, in an order fixed by one random generator.

:func:`iterate_batches` draws everything an epoch needs from its ``rng`` when it is called (the order, and
one seed per batch for the augmentation), so the state of that generator before the call fixes the
epoch's batches: the trainer saves that state and the number of batches done, and a resumed run gets the
same batches (:mod:`vitnp.training.fit`).  The augmentations are the light ones a 28×28 model can use:
:func:`random_crop` (zero padding, then a random window), :func:`random_hflip` and both
(:func:`crop_and_flip`), and :func:`random_erase`; :func:`augmentation` names them as ``HParams.augment`` does.
"""
from __future__ import annotations

import numpy as np

from .images import check_images, normalize

__all__ = ["random_crop", "random_hflip", "random_erase", "crop_and_flip", "AUGMENTATIONS", "augmentation", "iterate_batches"]

AUGMENTATIONS = ("none", "crop", "flip", "crop+flip", "erase", "flip+erase", "crop+flip+erase")  # HParams.augment


def random_crop(images, padding, rng):
    """Zero-pad each image by ``padding`` pixels on every side, then cut an H×W window at a random offset.

    One offset (dy, dx) ∈ {0..2·padding}² per image; all images are gathered at once with index arrays:
    out[b, i, j] = padded[b, dy_b + i, dx_b + j].

    Parameters
    ----------
    images : ndarray, (B, H, W, C), any dtype
    padding : int >= 0
    rng : np.random.Generator   advanced by one draw of 2·B integers.

    Returns
    -------
    out : ndarray, (B, H, W, C), same dtype (a new array).
    """
    if padding < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    B, H, W, _ = images.shape
    p = padding
    padded = np.pad(images, ((0, 0), (p, p), (p, p), (0, 0)))      # (B, H+2p, W+2p, C), zeros
    dy, dx = rng.integers(0, 2 * p + 1, size=(2, B))               # (B,), (B,)
    rows = dy[:, None] + np.arange(H)                                # (B, H)
    cols = dx[:, None] + np.arange(W)                                # (B, W)
    b = np.arange(B)[:, None, None]                                  # (B, 1, 1)
    return padded[b, rows[:, :, None], cols[:, None, :]]             # (B, H, W, C)


def random_hflip(images, rng, p=0.5):
    """Mirror each image left-right with probability ``p``.

    Parameters
    ----------
    images : ndarray, (B, H, W, C), any dtype
    rng : np.random.Generator   advanced by one draw of B uniforms.
    p : float in [0, 1]

    Returns
    -------
    out : ndarray, (B, H, W, C), same dtype (a new array).
    """
    flip = rng.random(len(images)) < p                               # (B,) bool
    out = images.copy()
    out[flip] = images[flip, :, ::-1]                                # W axis reversed
    return out


def random_erase(images, rng, p=0.5, area=(0.02, 0.25), aspect=(0.3, 3.3)):
    """Random erasing (Zhong et al., 2017): with probability ``p``, replace one random rectangle of each image
    by random pixels, so that no single part of an object can be relied on.

    The rectangle covers a fraction s ~ U(area) of the image with aspect ratio h/w = r, log r ~
    U(log aspect); its height round(√(s·H·W·r)) and width round(√(s·H·W/r)) are clipped to the image, and
    its corner is uniform over the positions where it fits.

    Parameters
    ----------
    images : ndarray, uint8, (B, H, W, C)
    rng : np.random.Generator   advanced by a fixed number of draws per call.
    p : float in [0, 1]         chance that an image is erased.
    area, aspect : (low, high)  ranges of s and r.

    Returns
    -------
    out : ndarray, (B, H, W, C), same dtype (a new array).
    """
    B, H, W, C = images.shape
    erase = rng.random(B) < p                                        # (B,) bool
    s = rng.uniform(*area, size=B)                                   # (B,) area fractions
    r = np.exp(rng.uniform(np.log(aspect[0]), np.log(aspect[1]), size=B))          # (B,) aspect ratios
    h = np.clip(np.round(np.sqrt(s * H * W * r)), 1, H).astype(np.int64)             # (B,)
    w = np.clip(np.round(np.sqrt(s * H * W / r)), 1, W).astype(np.int64)             # (B,)
    top = np.floor(rng.random(B) * (H - h + 1)).astype(np.int64)                       # (B,) 0 … H − h
    left = np.floor(rng.random(B) * (W - w + 1)).astype(np.int64)                      # (B,) 0 … W − w
    noise = rng.integers(0, 256, size=images.shape, dtype=np.uint8)                    # (B, H, W, C)
    rows = np.arange(H)[None, :] - top[:, None]                                        # (B, H)
    cols = np.arange(W)[None, :] - left[:, None]                                       # (B, W)
    inside = ((rows >= 0) & (rows < h[:, None]))[:, :, None] & ((cols >= 0) & (cols < w[:, None]))[:, None, :]
    mask = (inside & erase[:, None, None])[..., None]                                  # (B, H, W, 1)
    return np.where(mask, noise, images).astype(images.dtype, copy=False)


def crop_and_flip(images, rng, padding=2):
    """The usual light augmentation: :func:`random_crop` with ``padding``, then :func:`random_hflip`.

    Usable as ``iterate_batches(..., augment=crop_and_flip)``. (B, H, W, C) -> (B, H, W, C), same dtype.
    """
    return random_hflip(random_crop(images, padding, rng), rng)


def augmentation(name, padding=2):
    """The augmentation called ``name`` (one of :data:`AUGMENTATIONS`) as a function (uint8 images, rng)
    -> images for :func:`iterate_batches`, or None for 'none'; ``padding`` is the crop's."""
    if name not in AUGMENTATIONS:
        raise ValueError(f"augment must be one of {', '.join(AUGMENTATIONS)}, got {name!r}")
    if name == "none":
        return None
    steps = {"crop": lambda x, rng: random_crop(x, padding, rng), "flip": random_hflip, "erase": random_erase}
    chain = [steps[part] for part in name.split("+")]               # in the order written: crop, flip, erase

    def augment(x, rng):
        for step in chain:
            x = step(x, rng)
        return x
    return augment


def iterate_batches(images, labels, batch_size, *, shuffle=True, rng=None, drop_last=False, augment=None,
                    dtype=np.float32, start=0):
    """One epoch of (x, y) mini-batches: optional shuffle, optional augmentation, then :func:`normalize`.

    All randomness comes from ``rng`` and is drawn *when this function is called*: one permutation of N
    (if ``shuffle``) and one integer seed per batch (if ``augment``); batch i is augmented with its own
    ``np.random.default_rng(seed_i)``. So the same ``rng.bit_generator.state`` before the call gives the same
    batches, and ``rng`` ends in the same state however many batches are consumed. To resume bit-exactly in
    mid-epoch, save ``rng.bit_generator.state`` before the call and the number k of batches done; later
    restore the state and call again with ``start=k``.

    Parameters
    ----------
    images : ndarray, uint8, (N, H, W, C)
    labels : ndarray, integer, (N,)
    batch_size : int >= 1
    shuffle : bool
    rng : np.random.Generator   required if ``shuffle`` or ``augment``.
    drop_last : bool            drop a last batch smaller than ``batch_size``.
    augment : callable (uint8 (B, H, W, C), Generator) -> uint8 (B, H, W, C), optional
        Applied to the raw pixels before normalising, so zero padding is black, e.g. :func:`crop_and_flip`.
    dtype : floating dtype of x, default float32.
    start : int                 index of the first batch to yield (earlier ones are skipped, not computed).

    Yields
    ------
    x : ndarray, ``dtype``, (B, H, W, C)   normalised.
    y : ndarray, int64, (B,)
    """
    labels = check_images(images, labels, what="iterate_batches")           # int64 (N,)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if (shuffle or augment is not None) and rng is None:
        raise ValueError("pass rng=np.random.default_rng(seed) when shuffle=True or augment is set "
                         "(the rng's state fixes the batches, which bit-exact resume needs)")
    n = len(images)
    n_batches = n // batch_size if drop_last else -(-n // batch_size)
    order = rng.permutation(n) if shuffle else np.arange(n)
    seeds = rng.integers(0, 2**63, size=n_batches) if augment is not None else None
    # rng.spawn() would be tidier, but its child counter is not part of bit_generator.state.

    def batches():
        for i in range(start, n_batches):
            idx = order[i * batch_size:(i + 1) * batch_size]        # (B,)
            x = images[idx]                                        # (B, H, W, C) uint8
            if augment is not None:
                x = augment(x, np.random.default_rng(seeds[i]))
            yield normalize(x, dtype), labels[idx]

    return batches()
