"""What a trained ViT has learned: the analyses of the paper's Fig 6 and Fig 7, as plain functions.

* :func:`attention_maps` — the attention weights A (Eq 6) of every layer of a forward pass;
* :func:`attention_rollout` — where the output token's information comes from, per pixel (Fig 6, App. D.8);
* :func:`mean_attention_distance` — how far each head looks, in pixels (Fig 7 right, App. D.7);
* :func:`pos_embedding_similarity` — cosine similarity of the E_pos rows on the patch grid (Fig 7 centre);
* :func:`embedding_filters` — principal components of E as P×P×C filters (Fig 7 left).

All of them take arrays and a :class:`vitnp.ViTConfig` and return arrays; plotting is left to the
caller (``plt.imshow`` of any of the results, or ``python -m vitnp visualize``).  Shapes: B images,
L layers, k heads, T tokens (N + 1 with the class token), N = gh·gw patches on the (gh, gw) =
``cfg.grid`` grid, patches numbered row-major.

Pixels.  One patch covers a square of side P_pix = ``cfg.patch_pixels`` pixels of the input image:
P for the plain ViT, and P times the stride of the CNN stem for a hybrid ViT (paper §3.1, "Hybrid
Architecture"), whose patches are cut from the stem's feature map.  Distances and the upsampled
rollout maps are in input-image pixels, so they use P_pix, not P.
"""
from __future__ import annotations

import numpy as np

from ..data.resample import resize_grid
from ..config import ViTConfig
from ..ops.posemb import sincos_2d

__all__ = ["attention_maps", "attention_rollout", "patch_distances", "mean_attention_distance",
           "pos_embedding_similarity", "embedding_filters"]


def attention_maps(cache) -> list:
    """The attention weights of a forward pass, one array per layer.

    Parameters
    ----------
    cache : the cache returned by :func:`vitnp.vit_forward`

    Returns
    -------
    list of L arrays (B, k, T, T)
        A = softmax(q kᵀ / √D_h) of Eq 6 for each layer ℓ = 1 … L; row i (query) sums to 1 over the keys j.
        These are the weights before attention dropout.
    """
    if not isinstance(cache, dict) or "attention" not in cache:
        raise ValueError("attention_maps: expected the cache returned by vitnp.vit_forward "
                         "(a dict with an 'attention' entry)")
    return [np.asarray(A) for A in cache["attention"]]


def _check_maps(maps, cfg: ViTConfig, where: str) -> list:
    """maps as a list of float64 (B, k, T, T) arrays, or a clear error."""
    if not isinstance(cfg, ViTConfig):
        raise TypeError(f"{where}: cfg must be a ViTConfig, got {type(cfg).__name__}")
    if isinstance(maps, np.ndarray) and maps.ndim == 5:       # a stacked (L, B, k, T, T) array
        maps = list(maps)
    if not isinstance(maps, (list, tuple)) or not maps:
        raise ValueError(f"{where}: maps must be a non-empty list of (B, k, T, T) arrays, one per layer "
                         f"(see attention_maps)")
    out = [np.asarray(A, dtype=np.float64) for A in maps]
    T = cfg.num_tokens
    for l, A in enumerate(out):
        if A.ndim != 4 or A.shape[2:] != (T, T):
            raise ValueError(f"{where}: layer {l} has shape {A.shape}; expected (B, k, {T}, {T}) for this "
                             f"config (T = {T} tokens)")
        if A.shape != out[0].shape:
            raise ValueError(f"{where}: layer {l} has shape {A.shape}, layer 0 has {out[0].shape}")
    return out


def attention_rollout(maps, cfg: ViTConfig, *, upsample="nearest") -> np.ndarray:
    """Attention rollout (Abnar & Zuidema 2020), the maps of the paper's Fig 6.

    Per layer, average the heads and account for the residual connection (Eq 2: z′ = MSA(z) + z) by
    adding the identity, then re-normalise the rows so that they sum to 1 again:

    .. math::  \\hat A_\\ell = \\operatorname{rownorm}(\\bar A_\\ell + I), \\qquad
               \\bar A_\\ell = \\tfrac{1}{k} \\textstyle\\sum_h A_{\\ell,h}

    (since the rows of Ā sum to 1, this is exactly ½Ā + ½I).  Token i of layer ℓ mixes the tokens of
    layer ℓ−1 with weights Â_ℓ[i, :], so the whole stack mixes the input tokens with

    .. math::  R = \\hat A_L \\cdots \\hat A_2 \\hat A_1 ,

    multiplied from the first layer up.  The map is then read off R:

    * classifier='token': row 0 (the class token, whose output is y, Eq 4) over the patch columns
      1 … N.  These weights are not re-normalised: they sum to 1 − R[0, 0].
    * classifier='gap': y is the mean of the N output tokens, so the map is the mean of R's rows,
      (1/N) Σ_i R[i, :], which sums to 1.

    Parameters
    ----------
    maps : list of L arrays (B, k, T, T), e.g. :func:`attention_maps`
    cfg : ViTConfig of the model that produced them
    upsample : 'nearest' | 'bilinear' | None
        'nearest' (default) gives every pixel its patch's weight (P_pix × P_pix blocks, P_pix =
        ``cfg.patch_pixels``, which is P for a plain ViT); 'bilinear' interpolates between patch
        centres with pixel centres aligned (as cv2.resize and PIL do), clamped at the borders; None
        returns the patch grid itself.

    Returns
    -------
    (B, H, W) float64, or (B, gh, gw) when ``upsample`` is None.  Divide by the maximum to display.
    """
    maps = _check_maps(maps, cfg, "attention_rollout")
    if upsample not in ("nearest", "bilinear", None):
        raise ValueError(f"attention_rollout: upsample must be 'nearest', 'bilinear' or None, got {upsample!r}")
    B, _, T, _ = maps[0].shape
    eye = np.eye(T)
    R = np.broadcast_to(eye, (B, T, T))                          # no layers yet: every token is itself
    for A in maps:
        A_hat = A.mean(1) + eye                                  # heads averaged, plus the residual: (B, T, T)
        A_hat = A_hat / A_hat.sum(-1, keepdims=True)             # rows sum to 1 again
        R = A_hat @ R                                            # R_ℓ = Â_ℓ R_{ℓ−1}
    if cfg.classifier == "token":
        weights = R[:, 0, 1:]                                    # class token over the patches: (B, N)
    else:
        weights = R.mean(1)                                      # mean over the output tokens: (B, N)
    grid = weights.reshape(B, *cfg.grid)                         # (B, gh, gw), patches row-major
    if upsample is None:
        return grid
    if upsample == "nearest":
        P_pix = cfg.patch_pixels                                 # pixel y lies in patch row y // P_pix
        rows = np.minimum(np.arange(cfg.hw[0]) // P_pix, cfg.grid[0] - 1)   # (H,); clamped if the grid
        cols = np.minimum(np.arange(cfg.hw[1]) // P_pix, cfg.grid[1] - 1)   # (W,)  stops short of the edge
        return grid[:, rows[:, None], cols[None, :]]             # (B, H, W)
    return np.moveaxis(resize_grid(np.moveaxis(grid, 0, 2), cfg.hw, align_corners=False), 2, 0)


def patch_distances(cfg: ViTConfig) -> np.ndarray:
    """(N, N) Euclidean distances in input-image pixels between patch centres ((r + ½)P_pix, (c + ½)P_pix),
    row-major order; P_pix = ``cfg.patch_pixels`` (P for a plain ViT, more for a hybrid)."""
    gh, gw = cfg.grid
    rows, cols = np.meshgrid(np.arange(gh), np.arange(gw), indexing="ij")
    centres = (np.stack([rows.ravel(), cols.ravel()], axis=1) + 0.5) * cfg.patch_pixels  # (N, 2)
    diff = centres[:, None, :] - centres[None, :, :]                                     # (N, N, 2)
    return np.sqrt((diff ** 2).sum(-1))


def mean_attention_distance(maps, cfg: ViTConfig, *, renormalize=True) -> np.ndarray:
    """Mean attention distance per layer and head, in pixels (paper Fig 7 right, Appendix D.7).

    For head h of layer ℓ, query patch i and key patch j (patch centres ((r + ½)P_pix, (c + ½)P_pix),
    distance d_ij in input-image pixels; P_pix = ``cfg.patch_pixels``, P for a plain ViT):

    .. math::  \\text{dist}_{\\ell,h} = \\operatorname{mean}_{b,\\,i}\\; \\sum_j \\tilde A_{\\ell,h}[b, i, j] \\, d_{ij}

    averaged over the N query patches and the B images.  The class token has no position in the image,
    so with classifier='token' its row and column are left out, and (``renormalize=True``, default) each
    query's weights over the N patch keys are re-normalised to sum to 1: Ã = A_patches / Σ_j A_patches.
    With ``renormalize=False`` the weight a query gives the class token counts as distance 0.  A query
    that gives all its weight to the class token contributes 0 either way.

    Parameters
    ----------
    maps : list of L arrays (B, k, T, T), e.g. :func:`attention_maps`
    cfg : ViTConfig

    Returns
    -------
    (L, k) float64: one dot per head per layer in Fig 7 (right).  Uniform attention over the grid gives
    the mean pairwise distance of the patch centres; attention to oneself gives 0.
    """
    maps = _check_maps(maps, cfg, "mean_attention_distance")
    d = patch_distances(cfg)                                     # (N, N)
    first = 1 if cfg.classifier == "token" else 0
    out = []
    for A in maps:
        A = A[:, :, first:, first:]                              # patches only: (B, k, N, N)
        if renormalize:
            mass = A.sum(-1, keepdims=True)
            A = np.divide(A, mass, out=np.zeros_like(A), where=mass > 0)
        per_query = (A * d).sum(-1)                              # Σ_j Ã_ij d_ij: (B, k, N)
        out.append(per_query.mean(axis=(0, 2)))                  # over images and queries: (k,)
    return np.stack(out)                                         # (L, k)


def pos_embedding_similarity(params, cfg: ViTConfig) -> np.ndarray:
    """Cosine similarity of each patch's position embedding with every other one (paper Fig 7 centre).

    .. math::  S[i, j] = \\frac{E_{pos}^i \\cdot E_{pos}^j}{\\lVert E_{pos}^i \\rVert \\, \\lVert E_{pos}^j \\rVert}

    over the N patch rows of E_pos (the class token's row is left out).  A row of zeros has no direction;
    its similarities are 0.

    Parameters
    ----------
    params : dict with ``E_pos`` (T, D) for pos_embedding='learned'; with 'sincos' the fixed table of
        :func:`vitnp.ops.posemb.sincos_2d` is used and params is not read
    cfg : ViTConfig

    Returns
    -------
    (gh, gw, gh, gw) float64: ``S[r, c]`` is the (gh, gw) image of patch (r, c)'s similarity with every
    patch — Fig 7 centre draws these gh × gw small images in a grid.
    """
    if cfg.pos_embedding == "learned":
        if "E_pos" not in params:
            raise ValueError("pos_embedding_similarity: params has no 'E_pos'")
        table = np.asarray(params["E_pos"], dtype=np.float64)
    elif cfg.pos_embedding == "sincos":
        table = sincos_2d(cfg.replace(dtype="float64"))
    else:
        raise ValueError("pos_embedding_similarity: this config has pos_embedding='none'; there is no table")
    if table.shape != (cfg.num_tokens, cfg.dim):
        raise ValueError(f"pos_embedding_similarity: E_pos has shape {table.shape}, the config needs "
                         f"({cfg.num_tokens}, {cfg.dim})")
    rows = table[1:] if cfg.classifier == "token" else table     # (N, D)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    unit = np.divide(rows, norms, out=np.zeros_like(rows), where=norms > 0)
    S = unit @ unit.T                                            # (N, N)
    return S.reshape(*cfg.grid, *cfg.grid)                       # (gh, gw, gh, gw)


def embedding_filters(params, cfg: ViTConfig, k: int, *, center=True, return_variance=False):
    """The top-k principal components of the patch embedding E as P×P×C filters (paper Fig 7 left).

    Column d of E (P²C, D) is the filter that output dimension d applies to a flattened patch, so E holds
    D filters.  PCA treats them as D samples in R^{P²C}: subtract the mean filter (``center``), take the
    SVD  E_cᵀ = U S Vᵀ, and the components are the first k rows of Vᵀ, in order of decreasing variance.
    Each is reshaped (P, P, C) in the (row, col, channel) order of the patch flattening.  A component's
    sign is arbitrary; we make its largest-magnitude entry positive.

    Only for a plain ViT: in a hybrid, E maps patches of the CNN stem's feature map (feature channels,
    not pixels), so its components are not image filters and this raises ValueError.

    Parameters
    ----------
    params : dict with ``E`` (P²C, D)
    cfg : ViTConfig
    k : int, 1 ≤ k ≤ min(P²C, D)
    center : bool, subtract the mean filter first (standard PCA)
    return_variance : bool, also return each component's fraction of the total variance

    Returns
    -------
    filters : (k, P, P, C) float64, unit norm
    variance : (k,) float64, only with ``return_variance``
    """
    if cfg.is_hybrid:
        raise ValueError("embedding_filters: this is a hybrid ViT; its E maps patches of the CNN stem's "
                         "feature map (feature channels, not pixels), so E has no image filters to show")
    if "E" not in params:
        raise ValueError("embedding_filters: params has no 'E'")
    E = np.asarray(params["E"], dtype=np.float64)
    if E.shape != (cfg.patch_dim, cfg.dim):
        raise ValueError(f"embedding_filters: E has shape {E.shape}, the config needs ({cfg.patch_dim}, {cfg.dim})")
    limit = min(cfg.patch_dim, cfg.dim)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= limit:
        raise ValueError(f"embedding_filters: k must be an integer in [1, {limit}], got {k!r}")
    X = E.T                                                      # D filters as rows: (D, P²C)
    if center:
        X = X - X.mean(0)
    _, s, Vt = np.linalg.svd(X, full_matrices=False)             # Vt: (min(D, P²C), P²C)
    comps = Vt[:k]
    peak = np.abs(comps).argmax(1)
    comps = comps * np.sign(comps[np.arange(k), peak])[:, None]  # largest entry positive
    P, C = cfg.patch_size, cfg.in_channels
    filters = comps.reshape(k, P, P, C)
    if not return_variance:
        return filters
    var = s ** 2
    return filters, (var[:k] / var.sum() if var.sum() > 0 else np.zeros(k))
