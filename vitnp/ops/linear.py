"""Affine map over the last axis: out = x W + b.

One op serves every dense layer of the ViT: the patch projection E (Eq 1), U_qkv (Eq 5), U_msa (Eq 8),
the two MLP layers (Eq 3) and the head.  x may have any number of leading axes (B, or B and T); W acts
on the last one.  In the backward every leading position is one row of a sum: W and b are shared by
all of them, so their gradients add up over the batch and the tokens.

The fast twin is :mod:`vitnp.fast.linear`: the same functions, proven equal, with its measured gain.
"""


def linear_forward(x, W, b):
    """out = x W + b.

    x: (..., D_in)   W: (D_in, D_out)   b: (D_out,)   ->   out: (..., D_out), cache

    cache = (x, W): what linear_backward reads.
    """
    out = x @ W + b
    return out, (x, W)


def linear_backward(dout, cache):
    """Gradients of out = x W + b: returns dx (..., D_in), dW (D_in, D_out), db (D_out,)."""
    ### BEGIN SOLUTION
    x, W = cache
    dx = dout @ W.T                               # out = x W:  ∂/∂x
    x_rows = x.reshape(-1, x.shape[-1])           # (R, D_in), R = every leading position (B·T rows)
    d_rows = dout.reshape(-1, dout.shape[-1])     # (R, D_out)
    dW = x_rows.T @ d_rows                        # out = x W:  ∂/∂W, summed over the R rows
    db = d_rows.sum(0)                            # out = … + b:  b is added to every row
    return dx, dW, db
    ### END SOLUTION
