"""Resampling a grid of values: bilinear interpolation and area averaging, as matrices.

Both are separable: resizing an (H, W) grid to (h, w) is ``R_y · grid · R_xᵀ`` with an (h, H) and a (w, W)
matrix of weights whose rows sum to 1.  Three users share these matrices:

* the position embeddings, interpolated in 2-D for a new patch grid (paper §3.2,
  :func:`vitnp.io.original.resize_pos_table`), corner-aligned like the reference code;
* images upsampled for fine-tuning at a higher resolution (:func:`vitnp.data.resize_images`), with pixel
  centres aligned, and the rollout maps of :mod:`vitnp.analysis.maps`;
* image files shrunk to the model's size by area averaging (:func:`vitnp.data.image_files.image_to_input`), which
  does not alias.

=====================================  ================================================================
``interp_matrix(n_in, n_out, ac)``     (n_out, n_in) linear-interpolation weights
``resize_grid(grid, (h, w))``          bilinear resize of a (H, W[, D]) array, float64
``area_matrix(n_in, n_out)``           (n_out, n_in) area-averaging weights
``resize_area(a, (h, w))``             area resize of a (H, W, C) array
=====================================  ================================================================
"""
from __future__ import annotations

import numpy as np

__all__ = ["interp_matrix", "resize_grid", "area_matrix", "resize_area"]


def interp_matrix(n_in: int, n_out: int, align_corners: bool) -> np.ndarray:
    """(n_out, n_in) matrix of 1-D linear interpolation weights; each row sums to 1.

    ``align_corners=True``: output i samples input position i·(n_in − 1)/(n_out − 1), so the first and
    last samples sit exactly on the first and last inputs (scipy.ndimage.zoom with order=1, which the
    reference code uses for E_pos).  ``False``: pixel centres line up, position (i + ½)·n_in/n_out − ½,
    clamped to the ends (cv2.resize, PIL, torch's align_corners=False), right for upsampling images.
    """
    out = np.arange(n_out, dtype=np.float64)
    if align_corners:
        src = out * ((n_in - 1) / (n_out - 1)) if n_out > 1 else np.zeros(1)
    else:
        src = np.clip((out + 0.5) * (n_in / n_out) - 0.5, 0.0, n_in - 1)
    lo = np.clip(np.floor(src).astype(int), 0, n_in - 1)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = src - lo                                   # in [0, 1]; 0 when lo = hi at the last input
    M = np.zeros((n_out, n_in))
    np.add.at(M, (np.arange(n_out), lo), 1.0 - frac)
    np.add.at(M, (np.arange(n_out), hi), frac)
    return M


def resize_grid(grid, new_hw, *, align_corners=True) -> np.ndarray:
    """Bilinear resize of a (h, w, ...) array to (new_h, new_w, ...), separably: rows, then columns.

    Parameters
    ----------
    grid : (h, w) or (h, w, D) array
    new_hw : (new_h, new_w)
    align_corners : see :func:`interp_matrix` (True: corners map to corners)

    Returns
    -------
    (new_h, new_w[, D]) float64 array.  A function that is linear in (row, col) stays exactly linear.
    """
    grid = np.asarray(grid, dtype=np.float64)
    if grid.ndim not in (2, 3):
        raise ValueError(f"resize_grid: expected a (h, w) or (h, w, D) array, got shape {grid.shape}")
    new_h, new_w = (int(n) for n in new_hw)
    if new_h < 1 or new_w < 1:
        raise ValueError(f"resize_grid: the new size must be positive, got {new_hw}")
    M_h = interp_matrix(grid.shape[0], new_h, align_corners)       # (new_h, h)
    M_w = interp_matrix(grid.shape[1], new_w, align_corners)       # (new_w, w)
    g = grid if grid.ndim == 3 else grid[..., None]
    g = np.moveaxis(g, 2, 0)                                       # (D, h, w)
    out = M_h @ g @ M_w.T                                          # (D, new_h, new_w)
    out = np.moveaxis(out, 0, 2)                                   # (new_h, new_w, D)
    return out if grid.ndim == 3 else out[..., 0]


def area_matrix(n_in, n_out):
    """(n_out, n_in) weights of area resampling: output pixel i averages the input interval
    [i·s, (i+1)·s), s = n_in / n_out, each input pixel weighted by its overlap (anti-aliased when shrinking)."""
    edges = np.arange(n_out + 1) * (n_in / n_out)                 # (n_out + 1,)
    lo, hi = edges[:-1, None], edges[1:, None]                    # (n_out, 1)
    j = np.arange(n_in)[None, :]                                  # (1, n_in)
    overlap = np.clip(np.minimum(hi, j + 1) - np.maximum(lo, j), 0.0, None)   # (n_out, n_in)
    return overlap / overlap.sum(1, keepdims=True)


def resize_area(a, hw):
    """Resize (H, W, C) to (h, w, C) by area averaging: out[..., c] = R_y · a[..., c] · R_xᵀ."""
    ry, rx = area_matrix(a.shape[0], hw[0]), area_matrix(a.shape[1], hw[1])     # (h, H), (w, W)
    return np.einsum("hH,HWc,wW->hwc", ry, a, rx, optimize=True)               # (h, w, C)
