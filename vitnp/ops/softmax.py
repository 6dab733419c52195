"""Numerically stable softmax (Eq 6's normalisation over the keys).

softmax(x)_j = exp(x_j − max x) / Σ_i exp(x_i − max x): subtracting the maximum changes nothing
mathematically and keeps exp from overflowing.  Rows that are −inf everywhere (a token allowed to
attend nowhere) give zeros instead of NaN.
"""
import numpy as np


def softmax_forward(x, axis=-1):
    """y = softmax(x) along ``axis``.

    x: any shape   ->   y: same shape, cache

    exp and the normalisation run in place on one new array; the per-row work (max, 1/Σ) is on the
    reduced (…, 1) arrays, which are T times smaller.
    """
    m = np.max(x, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0).astype(x.dtype, copy=False)   # all −inf rows stay finite
    y = np.subtract(x, m)
    np.exp(y, out=y)                                                    # e = exp(x − max x)
    if axis in (-1, y.ndim - 1):                                        # Σe per row as one matrix-vector product
        s = (y.reshape(-1, y.shape[-1]) @ np.ones(y.shape[-1], y.dtype)).reshape(*y.shape[:-1], 1)
    else:
        s = y.sum(axis=axis, keepdims=True)
    y *= np.divide(1.0, s, out=np.zeros_like(s), where=s > 0)          # e / Σe; rows with Σe = 0 → 0
    return y, (y, axis)


def softmax_backward(dy, cache):
    """dx = y ⊙ (dy − Σ_j dy_j y_j) along the softmax axis."""
    y, axis = cache
    if axis in (-1, y.ndim - 1):
        dot = np.einsum("...j,...j->...", dy, y)[..., None]             # Σ_j dy_j y_j, no temporary
    else:
        dot = np.sum(dy * y, axis=axis, keepdims=True)
    dx = np.subtract(dy, dot)
    dx *= y
    return dx
