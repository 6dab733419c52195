"""Same math as :mod:`vitnp.ops.linear` (out = x W + b); differs by: leading axes are flattened so the
product is one 2-D GEMM over (B·T, D_in), the bias is added in place, and the bias gradient, a sum over the
B·T rows, is a matrix-vector product with a vector of ones (BLAS), faster than ``d.sum(0)`` on
shard-sized arrays.

Its measured gain is in the table of docs/performance.md that ``python -m vitnp bench --ops --write-table`` writes.
Proven equal to the reference in ``tests/test_fast.py``.
"""
import numpy as np


def linear_forward(x, W, b):
    """out = x W + b.

    x: (..., D_in)   W: (D_in, D_out)   b: (D_out,)   ->   out: (..., D_out), cache
    """
    out = x.reshape(-1, x.shape[-1]) @ W          # (B·T, D_out)
    out += b
    return out.reshape(*x.shape[:-1], W.shape[1]), (x, W)


def linear_backward(dout, cache):
    """Gradients of out = x W + b: returns dx (..., D_in), dW (D_in, D_out), db (D_out,)."""
    x, W = cache
    d2 = dout.reshape(-1, dout.shape[-1])         # (B·T, D_out)
    x2 = x.reshape(-1, x.shape[-1])               # (B·T, D_in)
    dx = (d2 @ W.T).reshape(x.shape)              # ∂/∂x of x W
    dW = x2.T @ d2                                # ∂/∂W of x W, summed over rows
    db = np.ones(len(d2), d2.dtype) @ d2          # Σ over rows as one matrix-vector product (BLAS)
    return dx, dW, db
