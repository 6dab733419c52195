"""LayerNorm followed by a linear layer, y = LN(z) W + b: how each residual branch of the encoder starts
(Eq 2: LN → U_qkv of Eq 5; Eq 3: LN → the MLP's first layer).

Here it is the two reference ops one after the other, so its backward is theirs in reverse order.  The fast
twin :mod:`vitnp.fast.ln_linear` folds γ, β and b into W and does it in one GEMM; this module is what it must
equal.
"""
from .layernorm import layernorm_backward, layernorm_forward
from .linear import linear_backward, linear_forward


def ln_linear_forward(z, gamma, beta, W, b, eps=1e-6):
    """y = LN(z) W + b.

    z: (..., D)   gamma, beta: (D,)   W: (D, N)   b: (N,)   ->   y: (..., N), cache

    cache = (c_ln, c_lin): the caches of the LayerNorm and of the linear layer, what ln_linear_backward reads.
    """
    h, c_ln = layernorm_forward(z, gamma, beta, eps)                # h = LN(z), (..., D)
    y, c_lin = linear_forward(h, W, b)                              # y = h W + b, (..., N)
    return y, (c_ln, c_lin)


def ln_linear_backward(dy, cache):
    """Gradients of y = LN(z) W + b: returns dz (..., D), dgamma (D,), dbeta (D,), dW (D, N), db (N,)."""
    c_ln, c_lin = cache
    dh, dW, db = linear_backward(dy, c_lin)                         # y = h W + b
    dz, dgamma, dbeta = layernorm_backward(dh, c_ln)                # h = LN(z)
    return dz, dgamma, dbeta, dW, db
