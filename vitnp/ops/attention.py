"""Self-attention, paper Appendix A, Eq 5–8.

Per head:   [q, k, v] = z U_qkv                      (Eq 5)
            A = softmax(q kᵀ / √D_h)                  (Eq 6)   A ∈ R^{T×T}, softmax over keys
            SA(z) = A v                               (Eq 7)
All heads:  MSA(z) = [SA₁(z); …; SA_k(z)] U_msa        (Eq 8)

Dividing by √D_h keeps the logits' variance near 1 whatever the head width, so the softmax does not
saturate.  The k heads are one extra array axis, never a Python loop: :func:`split_heads` turns
(B, T, D) into (B, k, T, D_h), every product is then a batched matmul, and :func:`merge_heads` puts the
heads side by side again, which is the concatenation of Eq 8.

:func:`qkv_attention_forward` / ``backward`` are the part between the two projections, Eq 6–7 for every head
and Eq 8's concatenation from Eq 5's output qkv: the fast path computes qkv in the GEMM that also does the
LayerNorm before it (:mod:`vitnp.ops.ln_linear`), so it needs that part on its own.  Here it is MSA with both
projections the identity, so there is one derivation of the heads, :func:`msa_backward`'s.

The fast twin is :mod:`vitnp.fast.attention`: the same functions, proven equal, with its measured gain.
"""
import math

import numpy as np

from .dropout import dropout_backward, dropout_forward
from .linear import linear_backward, linear_forward
from .softmax import softmax_backward, softmax_forward


def causal_mask(T):
    """(T, T) boolean mask, True where query i may attend key j ≤ i (a Transformer decoder's mask)."""
    return np.tril(np.ones((T, T), dtype=bool))


def split_heads(x, heads):
    """(B, T, k·D_h) -> (B, k, T, D_h): head h takes columns h·D_h … (h+1)·D_h − 1."""
    B, T, D = x.shape
    return x.reshape(B, T, heads, D // heads).transpose(0, 2, 1, 3)


def merge_heads(x):
    """(B, k, T, D_h) -> (B, T, k·D_h): the concatenation [SA₁; …; SA_k] of Eq 8."""
    B, k, T, Dh = x.shape
    return x.transpose(0, 2, 1, 3).reshape(B, T, k * Dh)


def attention_forward(q, k, v, mask=None, dropout=0.0, rng=None, train=False):
    """Scaled dot-product attention, Eq 6–7: out = softmax(q kᵀ / √D_h) v.

    q, k, v: (..., T, D_h)   ->   out: (..., T, D_h), weights: (..., T, T), cache

    mask : bool array broadcastable to (..., T, T), optional; True = may attend, masked logits are −∞.
    dropout : rate on the attention weights (only when ``train``), drawn from ``rng``.
    weights : the attention weights A before dropout; each row sums to 1.

    cache = (q, k, v, Ad, scale, c_soft, c_drop): the inputs, the weights after dropout, 1/√D_h, and the
    caches of the softmax and the dropout, what attention_backward reads.
    """
    scale = 1.0 / math.sqrt(q.shape[-1])                            # 1/√D_h
    S = (q @ np.swapaxes(k, -1, -2)) * scale                        # (..., T, T) logits, Eq 6
    if mask is not None:
        S = np.where(mask, S, -np.inf)                              # a masked key gets weight 0
    A, c_soft = softmax_forward(S, axis=-1)                         # Eq 6: softmax over the keys
    Ad, c_drop = dropout_forward(A, dropout, rng, train)
    out = Ad @ v                                                    # Eq 7: (..., T, D_h)
    return out, A, (q, k, v, Ad, scale, c_soft, c_drop)


def attention_backward(dout, cache):
    """Gradients of out = softmax(q kᵀ / √D_h) v: returns dq, dk, dv, each (..., T, D_h)."""
    ### BEGIN SOLUTION
    q, k, v, Ad, scale, c_soft, c_drop = cache
    dv = np.swapaxes(Ad, -1, -2) @ dout                             # out = Ad @ v
    dAd = dout @ np.swapaxes(v, -1, -2)                             # out = Ad @ v
    dA = dropout_backward(dAd, c_drop)                              # Ad = dropout(A)
    dS = softmax_backward(dA, c_soft)                               # A = softmax(S)
    dq = (dS @ k) * scale                                           # S = (q @ kᵀ) * scale
    dk = (np.swapaxes(dS, -1, -2) @ q) * scale
    return dq, dk, dv
    ### END SOLUTION


def msa_forward(z, U_qkv, U_qkv_bias, U_msa, U_msa_bias, heads, mask=None, dropout=0.0, rng=None,
                train=False):
    """Multi-head self-attention, Eq 5–8: MSA(z) = [SA₁(z); …; SA_k(z)] U_msa + b.

    z: (B, T, D)   U_qkv: (D, 3D), columns [q | k | v]   U_qkv_bias: (3D,)   U_msa: (D, D)   U_msa_bias: (D,)
    ->   out: (B, T, D), weights: (B, k, T, T), cache

    heads : k, with D_h = D / k.
    mask, dropout, rng, train : as in :func:`attention_forward`.

    cache = (c_qkv, c_att, c_out, heads): the caches of the U_qkv layer, of attention (all heads at once)
    and of the U_msa layer, and k, what msa_backward reads.
    """
    qkv, c_qkv = linear_forward(z, U_qkv, U_qkv_bias)                # Eq 5: (B, T, 3D)
    q, k, v = np.split(qkv, 3, axis=-1)                              # 3 × (B, T, D)
    q, k, v = split_heads(q, heads), split_heads(k, heads), split_heads(v, heads)   # 3 × (B, k, T, D_h)
    sa, A, c_att = attention_forward(q, k, v, mask, dropout, rng, train)   # Eq 6–7: (B, k, T, D_h)
    out, c_out = linear_forward(merge_heads(sa), U_msa, U_msa_bias)  # Eq 8: [SA₁; …; SA_k] U_msa, (B, T, D)
    return out, A, (c_qkv, c_att, c_out, heads)


def msa_backward(dout, cache):
    """Gradients of MSA(z), Eq 5–8: returns dz (B, T, D), dU_qkv (D, 3D), dU_qkv_bias (3D,), dU_msa (D, D),
    dU_msa_bias (D,).
    """
    ### BEGIN SOLUTION
    c_qkv, c_att, c_out, heads = cache
    dsa, dU_msa, dU_msa_bias = linear_backward(dout, c_out)          # out = merge_heads(sa) U_msa + b
    dq, dk, dv = attention_backward(split_heads(dsa, heads), c_att)  # split_heads undoes merge_heads
    dqkv = np.concatenate([merge_heads(dq), merge_heads(dk), merge_heads(dv)], axis=-1)   # q, k, v = split(qkv)
    dz, dU_qkv, dU_qkv_bias = linear_backward(dqkv, c_qkv)          # qkv = z U_qkv + b
    return dz, dU_qkv, dU_qkv_bias, dU_msa, dU_msa_bias
    ### END SOLUTION


def qkv_attention_forward(qkv, heads, mask=None, dropout=0.0, rng=None, train=False):
    """Eq 6–7 for every head and Eq 8's concatenation, from Eq 5's qkv = [q | k | v]: MSA with U_qkv = I
    and U_msa = I (multiplying by an identity matrix is exact in floating point).

    qkv: (B, T, 3D)   heads: k   ->   o: (B, T, D) (the heads side by side), weights: (B, k, T, T), cache

    cache = msa_forward's cache with identity projections, what qkv_attention_backward reads.
    """
    D3 = qkv.shape[-1]
    if D3 % 3:
        raise ValueError(f"qkv's last axis must hold q, k and v, 3·D features; got {D3}")
    I_qkv, I_msa = np.eye(D3, dtype=qkv.dtype), np.eye(D3 // 3, dtype=qkv.dtype)
    zeros = np.zeros(D3, dtype=qkv.dtype)
    return msa_forward(qkv, I_qkv, zeros, I_msa, zeros[: D3 // 3], heads, mask, dropout, rng, train)


def qkv_attention_backward(do, cache):
    """Gradients of qkv_attention_forward: returns dqkv (B, T, 3D) from do (B, T, D), msa_backward's dz."""
    dqkv, _, _, _, _ = msa_backward(do, cache)                      # the identities' gradients are not needed
    return dqkv
