"""Layer normalisation over the last axis (Ba et al. 2016), used before MSA and MLP (Eq 2–3) and at
the output (Eq 4):

.. math::  \\mathrm{LN}(x) = \\gamma \\odot \\frac{x - \\mu}{\\sqrt{\\sigma^2 + \\epsilon}} + \\beta

μ and σ² are the mean and (biased) variance of each token's D features; γ, β ∈ R^D are learned.

:func:`normalize_forward` / :func:`normalize_backward` are LN with γ = 1 and β = 0, the x̂ alone: the fast path
folds γ and β into the linear layer after LN (:mod:`vitnp.ops.ln_linear`), so it needs x̂ on its own.

The fast twin is :mod:`vitnp.fast.layernorm`: the same functions, proven equal, with its measured gain.
"""
import numpy as np


def layernorm_forward(x, gamma, beta, eps=1e-6):
    """LN(x) over the last axis.

    x: (..., D)   gamma, beta: (D,)   ->   out: (..., D), cache

    cache = (x_hat, inv_std, gamma): x̂ (..., D), 1/σ (..., 1) and γ (D,), what layernorm_backward reads.
    """
    mu = x.mean(-1, keepdims=True)                                 # (..., 1)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)                  # (..., 1), σ²
    inv_std = 1.0 / np.sqrt(var + eps)                             # 1/σ
    x_hat = (x - mu) * inv_std                                     # (..., D)
    out = gamma * x_hat + beta
    return out, (x_hat, inv_std, gamma)


def layernorm_backward(dout, cache):
    """Gradients of out = γ ⊙ x̂ + β, x̂ = (x − μ)/σ: returns dx (..., D), dgamma (D,), dbeta (D,)."""
    ### BEGIN SOLUTION
    x_hat, inv_std, gamma = cache
    rows = tuple(range(dout.ndim - 1))                             # every axis but the last
    dgamma = (dout * x_hat).sum(rows)                              # out = gamma * x_hat + beta
    dbeta = dout.sum(rows)
    dx_hat = dout * gamma
    # x_hat = (x − mu) * inv_std reaches x three ways: directly, through mu, through var (inv_std = 1/√(var + ε))
    direct = dx_hat                                                # ∂x̂_i/∂x_i = 1/σ (1/σ factored out below)
    through_mu = dx_hat.mean(-1, keepdims=True)                    # mu = x.mean(-1): ∂μ/∂x_i = 1/D
    through_var = x_hat * (dx_hat * x_hat).mean(-1, keepdims=True)   # var = ((x − mu)²).mean(-1): ∂σ/∂x_i ∝ x̂_i
    dx = inv_std * (direct - through_mu - through_var)
    return dx, dgamma, dbeta
    ### END SOLUTION


def normalize_forward(x, eps=1e-6):
    """x̂ = (x − μ)/σ over the last axis: LayerNorm with γ = 1 and β = 0.

    x: (..., D)   ->   x_hat: (..., D), cache

    cache = layernorm_forward's cache with γ = 1, what normalize_backward reads.
    """
    D = x.shape[-1]
    return layernorm_forward(x, np.ones(D, x.dtype), np.zeros(D, x.dtype), eps)


def normalize_backward(dx_hat, cache):
    """Gradients of x̂ = (x − μ)/σ: returns dx (..., D), layernorm_backward's dx with γ = 1."""
    dx, _, _ = layernorm_backward(dx_hat, cache)                   # dγ, dβ of γ = 1, β = 0: not parameters here
    return dx
