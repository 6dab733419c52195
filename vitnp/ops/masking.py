"""Masked patch prediction's corruption (paper §4.6 and Appendix B.1.2): the self-supervised task BERT's masked
language modelling becomes for images.

Of the N patches of an image, a ``rate`` of them (50 % in the paper) are *corrupted*; of those, 80 % are replaced by a
learnable [mask] embedding, 10 % by another patch of the same image and 10 % kept as they are.  The model then
predicts, for every corrupted patch, a coarse summary of the original: the paper its 3-bit mean colour (512 classes),
here, for grey images, its mean intensity in ``bins`` equal bins (8 bins: 3 bits).

Three pieces:

- :func:`corruption_plan` draws which patches are corrupted and how, from a generator (a run is repeatable);
- :func:`corrupt_patches` applies it to the flattened pixel patches x_p: a masked patch becomes 0 (the mean pixel
  after normalisation), a replaced one its source patch; x_p is data, so this has no backward;
- :func:`mask_embed_forward` / ``backward`` add the learnable vector δ to the tokens of masked patches after Eq 1.
  A zeroed patch embeds to x_p E + b = b, so a masked token is b + δ (+ E_pos): any vector of R^D, exactly the
  paper's learnable [mask] embedding, written as an offset from the bias.
"""
import numpy as np


def corruption_plan(rng, B, N, *, rate=0.5, mask=0.8, replace=0.1):
    """Which of N patches of each of B images to corrupt, and how.

    rng: np.random.Generator   ->   dict of (B, N) arrays:
        ``corrupted`` bool (round(rate·N) per image), ``masked`` bool (⊂ corrupted, a ``mask`` share of them),
        ``source`` int (the patch each position shows: another patch of the same image for a ``replace`` share of
        the corrupted ones, its own index elsewhere).
    The rest of the corrupted patches (1 − mask − replace) are kept as they are.
    """
    if not (0.0 < rate <= 1.0 and 0.0 <= mask and 0.0 <= replace and mask + replace <= 1.0):
        raise ValueError(f"need 0 < rate <= 1, mask, replace >= 0 and mask + replace <= 1; got rate={rate}, "
                         f"mask={mask}, replace={replace}")
    if N < 2:
        raise ValueError(f"masked patch prediction needs at least 2 patches per image, got N={N}")
    n_corrupt = max(1, int(round(rate * N)))
    order = np.argsort(rng.random((B, N)), axis=1)                     # a random permutation per image
    corrupted = np.zeros((B, N), bool)
    np.put_along_axis(corrupted, order[:, :n_corrupt], True, axis=1)
    how = rng.random((B, N))                                           # one draw per patch decides how
    masked = corrupted & (how < mask)
    replaced = corrupted & (how >= mask) & (how < mask + replace)
    source = np.broadcast_to(np.arange(N), (B, N)).copy()
    other = rng.integers(0, N - 1, size=(B, N))                        # another patch: skip the patch itself
    other += other >= source
    source[replaced] = other[replaced]
    return {"corrupted": corrupted, "masked": masked, "source": source}


def corrupt_patches(x_p, plan):
    """The corrupted input: x_p (B, N, P²C) with masked patches set to 0 and replaced ones taken from ``source``."""
    out = np.take_along_axis(x_p, plan["source"][..., None], axis=1)    # (B, N, P²C): each position's source patch
    out[plan["masked"]] = 0
    return out


def mean_intensity_bins(images, P, bins=8):
    """The target of each patch: its mean pixel value, 0 … 255, in ``bins`` equal bins.

    images: uint8 (B, H, W, C)   ->   int64 (B, N): ⌊mean · bins / 256⌋, the patches in patchify_forward's order.
    """
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4:
        raise TypeError(f"images must be uint8 (B, H, W, C), got {images.dtype} {images.shape}")
    B, H, W, C = images.shape
    if H % P or W % P:
        raise ValueError(f"patch size {P} must divide the image size {H}x{W}")
    grid = images.reshape(B, H // P, P, W // P, P, C).astype(np.float64)
    means = grid.mean(axis=(2, 4, 5)).reshape(B, -1)                    # (B, N), row-major over the patch grid
    return np.minimum((means * bins / 256).astype(np.int64), bins - 1)


def mask_embed_forward(z, delta, masked):
    """z′ = z + δ on the tokens of masked patches: the learnable [mask] embedding (see the module docstring).

    z: (B, T, D)   delta: (D,)   masked: bool (B, T)   ->   out: (B, T, D), cache

    cache = masked: which tokens received δ, what mask_embed_backward reads.
    """
    return z + masked[..., None] * delta, masked


def mask_embed_backward(dout, cache):
    """Gradients of z′ = z + δ·[masked]: returns dz (B, T, D) = dout and ddelta (D,), the sum over masked tokens."""
    masked = cache
    return dout, dout[masked].sum(axis=0)
