"""Same math as :mod:`vitnp.ops.attention` (Eq 5–8); differs by:

- 1/√D_h is folded into a scaled copy of U_qkv's q columns (a D×D multiply) instead of scaling the
  (B, k, T, T) logits and their gradient: (z U_q/√D_h) kᵀ = (q kᵀ)/√D_h, so A is exactly Eq 6;
- the fused qkv output (B, T, 3D) is read as (B, T, 3, k, D_h): q, k, v are strided views of it (no
  ``split_heads`` copies), the heads' outputs are written through ``out=`` straight into a (B, T, k, D_h)
  array, which *is* the concatenation of Eq 8 (no ``merge_heads`` copy), and dq, dk, dv straight into one
  (B, T, 3, k, D_h) gradient (no ``concatenate``);
- :func:`qkv_attention_forward` / ``backward`` (Eq 6–8 from an already computed qkv) take ``scale=1.0`` when
  q is already scaled: the fast block calls them so, after its folded LN → U_qkv GEMM
  (:mod:`vitnp.fast.ln_linear`).

Its measured gain is in the table of docs/performance.md that ``python -m vitnp bench --ops --write-table`` writes.
Proven equal to the reference in ``tests/test_fast.py``.
"""
import math

import numpy as np

from ..ops.dropout import dropout_backward, dropout_forward
from .linear import linear_backward, linear_forward
from .softmax import softmax_backward, softmax_forward


def attention_forward(q, k, v, mask=None, dropout=0.0, rng=None, train=False, *, scale=None, out=None):
    """out = softmax(q kᵀ / √D_h) v, A and cache, as :func:`vitnp.ops.attention.attention_forward`.

    q, k, v may be strided views (slices of one qkv array).  Two extra keywords:
    scale : the factor on q kᵀ, 1/√D_h by default; 1.0 when q is already scaled (see msa_forward).
    out : optional (..., T, D_h) array (a view is fine) to write the result into.
    """
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else float(scale)
    S = q @ np.swapaxes(k, -1, -2)                                  # (..., T, T) logits
    if scale != 1.0:
        S *= scale
    if mask is not None:
        S = np.where(mask, S, -np.inf).astype(S.dtype, copy=False)
    A, c_soft = softmax_forward(S, axis=-1)                         # Eq 6
    Ad, c_drop = dropout_forward(A, dropout, rng, train)
    out = np.matmul(Ad, v, out=out)                                 # Eq 7
    return out, A, (q, k, v, Ad, scale, c_soft, c_drop)


def attention_backward(dout, cache, *, out=None):
    """Gradients of out = softmax(q kᵀ·s) v, s = 1/√D_h: returns dq, dk, dv, each (..., T, D_h).

    out : optional triple of (..., T, D_h) arrays (views are fine) that receive dq, dk, dv.
    """
    q, k, v, Ad, scale, c_soft, c_drop = cache
    dq, dk, dv = (None, None, None) if out is None else out
    dv = np.matmul(np.swapaxes(Ad, -1, -2), dout, out=dv)           # out = A v
    dA = dropout_backward(dout @ np.swapaxes(v, -1, -2), c_drop)    # (..., T, T)
    dS = softmax_backward(dA, c_soft)                               # A = softmax(S)
    if scale != 1.0:
        dS *= scale                                                 # S = q kᵀ s
    dq = np.matmul(dS, k, out=dq)
    dk = np.matmul(np.swapaxes(dS, -1, -2), q, out=dk)
    return dq, dk, dv


def scaled_qkv(U_qkv, U_qkv_bias, D, scale):
    """U_qkv and its bias with the q columns multiplied by ``scale`` (copies; the parameters stay)."""
    W, b = U_qkv.copy(), U_qkv_bias.copy()
    W[:, :D] *= scale
    b[:D] *= scale
    return W, b


def qkv_attention_forward(qkv, heads, mask=None, dropout=0.0, rng=None, train=False, *, scale=None):
    """Eq 6–7 and Eq 8's concatenation from the fused projection qkv (B, T, 3D), as
    :func:`vitnp.ops.attention.qkv_attention_forward`: returns o (B, T, D) (the heads side by side),
    A (B, k, T, T) and the cache.

    scale : keyword of the fast path only, the factor on q kᵀ: 1/√D_h by default; 1.0 when qkv's q part is
        already scaled (see msa_forward).
    """
    B, T, D3 = qkv.shape
    D, Dh = D3 // 3, D3 // 3 // heads
    q, k, v = qkv.reshape(B, T, 3, heads, Dh).transpose(2, 0, 3, 1, 4)   # 3 × (B, k, T, D_h) views
    o = np.empty((B, T, heads, Dh), dtype=qkv.dtype)                 # heads side by side = Eq 8's concat
    _, A, c_att = attention_forward(q, k, v, mask, dropout, rng, train, scale=scale,
                                    out=o.transpose(0, 2, 1, 3))     # Eq 6–7
    return o.reshape(B, T, D), A, (c_att, heads)


def qkv_attention_backward(do, cache):
    """dqkv (B, T, 3D) from do (B, T, D), for :func:`qkv_attention_forward`."""
    c_att, heads = cache
    B, T, D = do.shape
    Dh = D // heads
    dqkv = np.empty((B, T, 3, heads, Dh), dtype=do.dtype)            # dq, dk, dv land here, as qkv's layout
    attention_backward(do.reshape(B, T, heads, Dh).transpose(0, 2, 1, 3), c_att,
                       out=tuple(dqkv.transpose(2, 0, 3, 1, 4)))
    return dqkv.reshape(B, T, 3 * D)


def msa_forward(z, U_qkv, U_qkv_bias, U_msa, U_msa_bias, heads, mask=None, dropout=0.0, rng=None,
                train=False):
    """MSA(z), Eq 5–8, as :func:`vitnp.ops.attention.msa_forward`: returns out (B, T, D), A (B, k, T, T), cache."""
    D = z.shape[-1]
    scale = 1.0 / math.sqrt(D // heads)
    W, b = scaled_qkv(U_qkv, U_qkv_bias, D, scale)
    qkv, c_qkv = linear_forward(z, W, b)                             # Eq 5: (B, T, 3D), q already scaled
    o, A, c_att = qkv_attention_forward(qkv, heads, mask, dropout, rng, train, scale=1.0)   # Eq 6–8's concat
    out, c_out = linear_forward(o, U_msa, U_msa_bias)                # Eq 8: (B, T, D)
    return out, A, (c_qkv, c_att, c_out, scale)


def msa_backward(dout, cache):
    """Returns dz (B, T, D), dU_qkv (D, 3D), dU_qkv_bias (3D,), dU_msa (D, D), dU_msa_bias (D,)."""
    c_qkv, c_att, c_out, scale = cache
    D = dout.shape[-1]
    do, dU_msa, dU_msa_bias = linear_backward(dout, c_out)          # out = concat(o) U_msa + b
    dqkv = qkv_attention_backward(do, c_att)
    dz, dU_qkv, dU_qkv_bias = linear_backward(dqkv, c_qkv)           # through the scaled W
    unscale_qkv_grads(dU_qkv, dU_qkv_bias, D, scale)
    return dz, dU_qkv, dU_qkv_bias, dU_msa, dU_msa_bias


def unscale_qkv_grads(dW, db, D, scale):
    """Gradients for U_qkv from those for its scaled copy, in place: q = z (s U_q), so ∂/∂U_q = s ∂/∂(s U_q)."""
    dW[:, :D] *= scale
    db[:D] *= scale
