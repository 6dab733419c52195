"""Same math as :mod:`vitnp.ops.softmax`; differs by: exp and the normalisation run in place on one new
array, the row sums are a matrix-vector product (BLAS), the row maxima of short rows (T ≤ 32) are taken
over a transposed copy, the backward's Σ_j dy_j y_j is an ``einsum`` with no temporary, and rows of −inf
are handled with a masked divide.

Its measured gain is in the table of docs/performance.md that ``python -m vitnp bench --ops --write-table`` writes.
Proven equal to the reference in ``tests/test_fast.py``.
"""
import numpy as np

_SHORT_ROWS = 32                # rows up to this length: row maxima through a transposed copy


def softmax_forward(x, axis=-1):
    """y = softmax(x) along ``axis``.

    x: any shape   ->   y: same shape, cache

    exp and the normalisation run in place on one new array; the per-row work (max, 1/Σ) is on the
    reduced (…, 1) arrays, which are T times smaller.
    """
    if axis in (-1, x.ndim - 1) and x.shape[-1] <= _SHORT_ROWS and x.size:
        # NumPy reduces a short last axis row by row; reducing the transposed copy over its first axis
        # runs along long contiguous rows instead (faster for short rows such as T = 17, not at T = 50)
        T = x.shape[-1]
        m = np.ascontiguousarray(x.reshape(-1, T).T).max(axis=0).reshape(*x.shape[:-1], 1)
    else:
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
