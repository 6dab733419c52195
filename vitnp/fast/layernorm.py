"""Same math as :mod:`vitnp.ops.layernorm`; differs by: row means are matrix-vector products with a vector
of 1/D (BLAS, 2–4× faster than ``x.mean(-1)`` on (B·T, D) activations), row sums of squares are ``einsum``
dot products with no (..., D) temporary, x̂ overwrites the centred copy of x, and the backward works in
place: five passes over the activations instead of eight.

Measured gain (``python -m vitnp bench --ops``, forward + backward on base28's activations, float32, BLAS 1 thread;
Intel Xeon with AVX-512, 26 Nov 2026): 1.69× over the reference (a first run under load: 1.76×; a third, under
heavier load, 1.04×). Proven equal to the reference in ``tests/test_fast.py``.
"""
import numpy as np


def row_mean(x):
    """Mean over the last axis, (..., D) -> (..., 1), as one matrix-vector product x·(1/D, …, 1/D).

    BLAS does this 2–4× faster than ``x.mean(-1)`` on the (B·T, D) activations of a ViT.
    """
    D = x.shape[-1]
    return (x.reshape(-1, D) @ np.full(D, 1.0 / D, dtype=x.dtype)).reshape(*x.shape[:-1], 1)


def layernorm_forward(x, gamma, beta, eps=1e-6):
    """LN(x) over the last axis.

    x: (..., D)   gamma, beta: (D,)   ->   out: (..., D), cache

    The row means are matrix-vector products (:func:`row_mean`), the row sums of squares ``einsum``
    dot products (no (..., D) temporary), and x̂ overwrites the centred copy of x: five passes over the
    activations instead of eight.
    """
    D = x.shape[-1]
    mu = row_mean(x)                                             # (..., 1)
    xc = x - mu                                                  # (..., D)
    var = np.einsum("...d,...d->...", xc, xc)[..., None] / D     # (..., 1) mean of (x − μ)²
    inv_std = 1.0 / np.sqrt(var + eps)
    x_hat = np.multiply(xc, inv_std, out=xc)                     # (..., D), in place of xc
    out = x_hat * gamma
    out += beta
    return out, (x_hat, inv_std, gamma)


def layernorm_backward(dout, cache):
    """Gradients of out = γ ⊙ x̂ + β, x̂ = (x − μ)/σ: returns dx (..., D), dgamma (D,), dbeta (D,).

    dx = (1/σ)(dx̂ − mean(dx̂) − x̂ · mean(dx̂ ⊙ x̂)) with dx̂ = dout ⊙ γ.
    """
    x_hat, inv_std, gamma = cache
    D = dout.shape[-1]
    d2 = dout.reshape(-1, D)
    dgamma = np.einsum("nd,nd->d", d2, x_hat.reshape(d2.shape))  # out = gamma * x_hat + beta
    dbeta = np.ones(len(d2), d2.dtype) @ d2                      # Σ over rows (BLAS)
    dx_hat = dout * gamma
    mean_dx_hat = row_mean(dx_hat)                               # (..., 1)
    mean_dx_hat_x_hat = np.einsum("...d,...d->...", dx_hat, x_hat)[..., None] / D   # (..., 1)
    dx = np.multiply(x_hat, mean_dx_hat_x_hat)                   # (..., D)
    np.subtract(dx_hat, dx, out=dx)
    dx -= mean_dx_hat
    dx *= inv_std
    return dx, dgamma, dbeta
