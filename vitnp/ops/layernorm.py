"""Layer normalisation over the last axis (Ba et al. 2016), used before MSA and MLP (Eq 2–3) and at
the output (Eq 4):

.. math::  \\mathrm{LN}(x) = \\gamma \\odot \\frac{x - \\mu}{\\sqrt{\\sigma^2 + \\epsilon}} + \\beta

μ and σ² are the mean and (biased) variance of each token's D features; γ, β ∈ R^D are learned.
"""
import numpy as np


def layernorm_forward(x, gamma, beta, eps=1e-6):
    """LN(x) over the last axis.

    x: (..., D)   gamma, beta: (D,)   ->   out: (..., D), cache
    """
    mu = x.mean(-1, keepdims=True)                               # (..., 1)
    xc = x - mu
    var = np.mean(xc * xc, axis=-1, keepdims=True)               # (..., 1)
    inv_std = 1.0 / np.sqrt(var + eps)
    x_hat = xc * inv_std                                         # (..., D)
    return x_hat * gamma + beta, (x_hat, inv_std, gamma)


def layernorm_backward(dout, cache):
    """Gradients of out = γ ⊙ x̂ + β, x̂ = (x − μ)/σ: returns dx (..., D), dgamma (D,), dbeta (D,).

    dx = (1/σ)(dx̂ − mean(dx̂) − x̂ · mean(dx̂ ⊙ x̂)) with dx̂ = dout ⊙ γ.
    """
    x_hat, inv_std, gamma = cache
    d2 = dout.reshape(-1, dout.shape[-1])
    dgamma = np.sum(d2 * x_hat.reshape(d2.shape), axis=0)       # out = gamma * x_hat + beta
    dbeta = d2.sum(0)
    dx_hat = dout * gamma
    dx = inv_std * (dx_hat - dx_hat.mean(-1, keepdims=True)
                    - x_hat * np.mean(dx_hat * x_hat, axis=-1, keepdims=True))
    return dx, dgamma, dbeta
