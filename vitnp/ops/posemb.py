"""Position embeddings (Eq 1): z₀ = [x_class; x_p E] + E_pos.

The paper learns a 1-D table E_pos ∈ R^{T×D} (T = N+1), one row per token.  The alternative is a fixed
2-D sine-cosine table (no gradient): half of the D dimensions encode the patch's grid row, half its
column, each with sines and cosines at geometrically spaced frequencies.
"""
import numpy as np


def pos_embed_forward(z, E_pos):
    """z + E_pos, the table broadcast over the batch.

    z: (B, T, D)   E_pos: (T, D)   ->   out: (B, T, D), cache

    cache = None: pos_embed_backward needs nothing but dout.
    """
    return z + E_pos, None


def pos_embed_backward(dout, cache):
    """Gradients of z + E_pos (Eq 1): returns dz (B, T, D) and dE_pos (T, D)."""
    ### BEGIN SOLUTION
    return dout, dout.sum(0)
    ### END SOLUTION


def sincos_1d(positions, dim):
    """Sine-cosine features of integer positions: (n,) -> (n, dim), dim even.

    Column j < dim/2 is sin(pos·ω_j), column dim/2 + j is cos(pos·ω_j), ω_j = 10000^(−j/(dim/2)).
    """
    half = dim // 2
    omega = 1.0 / 10000.0 ** (np.arange(half) / half)        # (dim/2,)
    angles = np.outer(positions, omega)                        # (n, dim/2)
    return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)


def sincos_2d(cfg):
    """The fixed 2-D table for a config: (T, D), rows in token order.

    The first D/2 columns encode the grid row, the last D/2 the grid column; the class token (if any)
    gets a row of zeros.
    """
    gh, gw = cfg.grid
    rows, cols = np.meshgrid(np.arange(gh), np.arange(gw), indexing="ij")   # (gh, gw) each
    table = np.concatenate([sincos_1d(rows.ravel(), cfg.dim // 2),
                            sincos_1d(cols.ravel(), cfg.dim // 2)], axis=1)  # (N, D)
    if cfg.classifier == "token":
        table = np.concatenate([np.zeros((1, cfg.dim)), table])
    return table.astype(cfg.np_dtype)
