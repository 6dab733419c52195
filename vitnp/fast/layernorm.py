"""Same math as :mod:`vitnp.ops.layernorm`; differs by: the rows are processed in blocks of ``_ROWS`` rows, so
every pass after the first reads data that is still in the core's L2 cache; row means are matrix-vector
products (BLAS); row sums of squares and of products are ``einsum`` dot products with no (…, D) temporary; x̂
and the backward's dx̂ are written once and updated in place.  :func:`normalize_forward` /
:func:`normalize_backward` (LayerNorm without γ and β) serve :mod:`vitnp.fast.ln_linear`, which folds γ and β into
the next linear layer.

Proven equal to the reference in ``tests/test_fast.py``. Its measured gain is in the table of docs/performance.md that
``python -m vitnp bench --ops --write-table`` writes.
"""
import numpy as np

_ROWS = 512                     # rows per block: 512 × D=192 float32 is 384 KiB, three such arrays fit in L2


def row_mean(x):
    """Mean over the last axis, (..., D) -> (..., 1), as one matrix-vector product x·(1/D, …, 1/D).

    BLAS does this faster than ``x.mean(-1)`` on the (B·T, D) activations of a ViT (docs/performance.md).
    """
    D = x.shape[-1]
    return (x.reshape(-1, D) @ np.full(D, 1.0 / D, dtype=x.dtype)).reshape(*x.shape[:-1], 1)


def _row_blocks(n):
    for start in range(0, n, _ROWS):
        yield slice(start, min(start + _ROWS, n))


def _normalized_blocks(x2, eps, x_hat, inv_std):
    """For each block of rows: write x̂ = (x − μ)/σ and 1/σ, yield (rows, x̂ of the block).

    x_hat is (n, D), or a (≤ _ROWS, D) scratch array that every block reuses."""
    D = x2.shape[1]
    mu = row_mean(x2)                                                 # (n, 1)
    whole = len(x_hat) == len(x2)
    for s in _row_blocks(len(x2)):
        xh = x_hat[s] if whole else x_hat[: s.stop - s.start]
        np.subtract(x2[s], mu[s], out=xh)                             # x − μ
        var = np.einsum("nd,nd->n", xh, xh)                           # Σ (x − μ)², still in cache
        var *= 1.0 / D
        var += eps
        np.sqrt(var, out=var)
        xh *= np.divide(1.0, var, out=inv_std[s])[:, None]            # x̂ = (x − μ)/σ
        yield s, xh


def layernorm_forward(x, gamma, beta, eps=1e-6, *, keep_cache=True):
    """LN(x) over the last axis.

    x: (..., D)   gamma, beta: (D,)   ->   out: (..., D), cache = (x̂ (..., D), 1/σ (..., 1), gamma)

    keep_cache : keyword of the fast path only; False (inference) returns cache None and keeps x̂ in one
        block-sized scratch array.
    """
    D = x.shape[-1]
    x2 = x.reshape(-1, D)
    n = len(x2)
    out = np.empty_like(x2)
    x_hat = np.empty((n if keep_cache else min(n, _ROWS), D), x2.dtype)
    inv_std = np.empty(n, x2.dtype)
    for s, xh in _normalized_blocks(x2, eps, x_hat, inv_std):
        o = np.multiply(xh, gamma, out=out[s])
        o += beta                                                     # γ x̂ + β
    out = out.reshape(x.shape)
    if not keep_cache:
        return out, None
    return out, (x_hat.reshape(x.shape), inv_std.reshape(*x.shape[:-1], 1), gamma)


def normalize_forward(x, eps=1e-6, *, out=None, keep_cache=True):
    """x̂ = (x − μ)/σ over the last axis, as :func:`vitnp.ops.layernorm.normalize_forward`.

    x: (..., D)   ->   x_hat: (..., D), cache (None with ``keep_cache=False``)

    out : keyword of the fast path only, an (n, D) array for x̂ (a strided view is fine), n = x.size // D.
    """
    D = x.shape[-1]
    x2 = x.reshape(-1, D)
    x_hat = np.empty_like(x2) if out is None else out
    inv_std = np.empty(len(x2), x2.dtype)
    for _ in _normalized_blocks(x2, eps, x_hat, inv_std):
        pass
    return x_hat.reshape(x.shape), ((x_hat, inv_std) if keep_cache else None)


def _backward_blocks(x_hat, inv, dx, dx_hat_rows):
    """dx = (1/σ)(dx̂ − mean(dx̂) − x̂ · mean(dx̂ ⊙ x̂)), block by block, written into ``dx`` (n, D).

    dx_hat_rows(s, into) -> dx̂ of the rows s, written into ``into`` (= dx[s], where the result goes)."""
    n, D = dx.shape
    scratch = np.empty((min(n, _ROWS), D), dx.dtype)
    for s in _row_blocks(n):
        xh, tmp = x_hat[s], scratch[: s.stop - s.start]
        g = dx_hat_rows(s, dx[s])                                      # dx̂, in the rows of dx
        mean_g = row_mean(g)                                           # mean(dx̂) per row (BLAS)
        mean_gx = np.einsum("nd,nd->n", g, xh)
        mean_gx *= 1.0 / D                                             # mean(dx̂ ⊙ x̂) per row
        np.multiply(xh, mean_gx[:, None], out=tmp)
        g -= tmp
        g -= mean_g
        g *= inv[s, None]
    return dx


def layernorm_backward(dout, cache):
    """Gradients of out = γ ⊙ x̂ + β, x̂ = (x − μ)/σ: returns dx (..., D), dgamma (D,), dbeta (D,).

    dx = (1/σ)(dx̂ − mean(dx̂) − x̂ · mean(dx̂ ⊙ x̂)) with dx̂ = dout ⊙ γ; block by block, with the sums
    for dgamma and dbeta taken from each block while it is in cache.
    """
    x_hat, inv_std, gamma = cache
    D = dout.shape[-1]
    d2 = dout.reshape(-1, D)
    xh2 = x_hat.reshape(d2.shape)
    ones = np.ones(min(len(d2), _ROWS), d2.dtype)
    dgamma = np.zeros(D, d2.dtype)
    dbeta = np.zeros(D, d2.dtype)

    def dx_hat_rows(s, into):                                          # the sums of dγ, dβ while in cache
        d = d2[s]
        np.add(dgamma, np.einsum("nd,nd->d", d, xh2[s]), out=dgamma)   # out = gamma * x_hat + beta
        np.add(dbeta, ones[: len(d)] @ d, out=dbeta)                   # Σ over rows (BLAS)
        return np.multiply(d, gamma, out=into)                         # dx̂ = dout ⊙ γ

    dx = _backward_blocks(xh2, inv_std.reshape(-1), np.empty_like(d2), dx_hat_rows)
    return dx.reshape(dout.shape), dgamma, dbeta


def normalize_backward(dx_hat, cache, *, overwrite=False):
    """Gradient of x̂ = (x − μ)/σ: returns dx (..., D) from dx_hat (..., D), as
    :func:`vitnp.ops.layernorm.normalize_backward`.

    overwrite : keyword of the fast path only; True writes dx over a C-contiguous dx_hat (one array less,
        when the caller owns dx_hat).
    """
    x_hat, inv_std = cache
    d2 = dx_hat.reshape(x_hat.shape)
    if overwrite and np.may_share_memory(d2, dx_hat):              # reshape gave a view, not a copy
        dx = _backward_blocks(x_hat, inv_std, d2, lambda s, into: into)          # dx̂ is already there
        return dx.reshape(dx_hat.shape)

    def copy_rows(s, into):
        into[...] = d2[s]
        return into
    return _backward_blocks(x_hat, inv_std, np.empty_like(d2), copy_rows).reshape(dx_hat.shape)
