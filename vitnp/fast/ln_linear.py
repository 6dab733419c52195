"""LayerNorm followed by a linear layer, y = LN(z) W + b, as one GEMM: γ, β and b folded into the weights.

Same math as :func:`vitnp.ops.layernorm.layernorm_forward` then :func:`vitnp.ops.linear.linear_forward`
(Eq 2 and 3 start so: LN → U_qkv, LN → MLP's first layer); differs by:

    LN(z) W + b = (x̂ ⊙ γ + β) W + b = x̂ (diag(γ) W) + (β W + b) = [x̂, 1] · [[diag(γ) W], [β W + b]]

with x̂ = (z − μ)/σ.  LayerNorm writes x̂ into the first D columns of an (n, D + 1) array whose last column is
1, and one GEMM with the (D + 1, N) folded weight gives y, bias included.  That saves two passes over the
(n, D) activations (× γ, + β) and one over the (n, N) output (+ b); the folded weight is a (D + 1) × N
product, small next to the activations.  Backward, with W̃ = diag(γ) W and b̃ = β W + b:

    [dW̃; db̃] = [x̂, 1]ᵀ dy          (the last row is db̃ = Σ_rows dy: the bias gradient comes with the GEMM)
    dx̂ = dy W̃ᵀ                      (γ is already inside W̃: no dx̂ ⊙ γ pass)
    dW = diag(γ) dW̃ + β ⊗ db̃,   db = db̃,   dγ = Σ_j W ⊙ dW̃ (per row),   dβ = W db̃

Proven equal to the reference in ``tests/test_fast.py``; timings in docs/performance.md.
"""
import numpy as np

from .layernorm import normalize_backward, normalize_forward


def fold(gamma, beta, W, b):
    """The folded weight [[diag(γ) W], [β W + b]], (D + 1, N)."""
    D, N = W.shape
    Wa = np.empty((D + 1, N), W.dtype)
    np.multiply(W, gamma[:, None], out=Wa[:D])
    np.matmul(beta, W, out=Wa[D])
    Wa[D] += b
    return Wa


def ln_linear_forward(z, gamma, beta, W, b, eps=1e-6, *, keep_cache=True):
    """y = LN(z) W + b.

    z: (..., D)   gamma, beta: (D,)   W: (D, N)   b: (N,)   ->   y: (..., N), cache (None if not keep_cache)
    """
    D = z.shape[-1]
    n = z.size // D
    xa = np.empty((n, D + 1), z.dtype)                                # [x̂, 1]
    xa[:, D] = 1.0
    _, c_norm = normalize_forward(z, eps, out=xa[:, :D], keep_cache=keep_cache)
    Wa = fold(gamma, beta, W, b)
    y = (xa @ Wa).reshape(*z.shape[:-1], W.shape[1])
    return y, ((xa, Wa, c_norm, gamma, beta, W) if keep_cache else None)


def ln_linear_backward(dy, cache):
    """Returns dz (..., D), dgamma (D,), dbeta (D,), dW (D, N), db (N,)."""
    xa, Wa, c_norm, gamma, beta, W = cache
    D = W.shape[0]
    d2 = dy.reshape(-1, dy.shape[-1])
    dWa = xa.T @ d2                                                   # (D + 1, N): [dW̃; db̃]
    dW_t, db = dWa[:D], dWa[D]
    dx_hat = d2 @ Wa[:D].T                                            # (n, D), γ included
    dz = normalize_backward(dx_hat, c_norm, overwrite=True).reshape(*dy.shape[:-1], D)
    dgamma = np.einsum("ij,ij->i", W, dW_t)                           # W̃ = diag(γ) W
    dbeta = W @ db                                                    # b̃ = β W + b
    dW = dW_t * gamma[:, None]
    dW += np.multiply.outer(beta, db)
    return dz, dgamma, dbeta, dW, db.copy()
