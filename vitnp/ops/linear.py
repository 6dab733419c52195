"""Affine map over the last axis: out = x W + b.

One op serves every dense layer of the ViT: the patch projection E (Eq 1), U_qkv (Eq 5), U_msa (Eq 8),
the two MLP layers (Eq 3) and the head.  Leading axes are flattened so that the work is one 2-D
matmul over (B·T, D_in), which is what BLAS is fastest at.  Even the bias gradient, a sum over the B·T
rows, is a matrix-vector product with a vector of ones: 1.5–3× faster than ``d2.sum(0)``.
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
