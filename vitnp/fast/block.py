"""Same math as :mod:`vitnp.ops.block` (the pre-LN encoder block, Eq 2–3, and the stack of L blocks);
differs by: it runs the fast ops (:mod:`vitnp.fast.ln_linear`, ``attention``, ``linear``, ``gelu``); both
LayerNorms are folded into the linear layer after them (LN → U_qkv of Eq 5, LN → the MLP's first layer of
Eq 3: one GEMM each, :mod:`vitnp.fast.ln_linear`); the MLP of Eq 3 is written inline (linear → GELU → linear,
dropout only when it drops); the residual sums and the gradients that meet at z′ are added in place into
arrays the block already owns; with ``keep_cache=False`` (inference) nothing is kept for a backward pass.

Its measured gain is in the table of docs/performance.md that ``python -m vitnp bench --ops --write-table`` writes.
Proven equal to the reference in ``tests/test_fast.py``.
"""
import math

from ..ops.block import BLOCK_KEYS
from ..ops.dropout import dropout_backward, dropout_forward
from .attention import qkv_attention_backward, qkv_attention_forward, scaled_qkv, unscale_qkv_grads
from .gelu import gelu_backward, gelu_forward
from .linear import linear_backward, linear_forward
from .ln_linear import ln_linear_backward, ln_linear_forward


def encoder_block_forward(z, p, heads, *, gelu="exact", eps=1e-6, dropout=0.0, attention_dropout=0.0,
                          mask=None, rng=None, train=False, keep_cache=True):
    """One encoder block, as :func:`vitnp.ops.block.encoder_block_forward`: returns z (B, T, D), A, cache.

    keep_cache : keyword of the fast path only; False (inference) returns (z, None, None): GELU skips its
        derivative and the block's activations are freed as soon as it returns.
    """
    drop = train and dropout > 0.0
    D = z.shape[-1]
    scale = 1.0 / math.sqrt(D // heads)
    c = {"scale": scale}
    W, b = scaled_qkv(p["U_qkv"], p["U_qkv_bias"], D, scale)         # 1/√D_h folded into U_q (fast.attention)
    qkv, c["ln1_qkv"] = ln_linear_forward(z, p["ln1.gamma"], p["ln1.beta"], W, b, eps,   # LN → Eq 5, one GEMM
                                          keep_cache=keep_cache)
    a, A, c["att"] = qkv_attention_forward(qkv, heads, mask, attention_dropout, rng, train,   # Eq 6–8
                                           scale=1.0)
    a, c["out"] = linear_forward(a, p["U_msa"], p["U_msa_bias"])     # Eq 8: (B, T, D)
    if drop:
        a, c["drop_msa"] = dropout_forward(a, dropout, rng, train)
    a += z                                                           # z′ = MSA(LN(z)) + z, in MSA's array
    h, c["ln2_fc1"] = ln_linear_forward(a, p["ln2.gamma"], p["ln2.beta"], p["mlp.W1"], p["mlp.b1"], eps,
                                        keep_cache=keep_cache)       # LN → first MLP layer, one GEMM
    h, c["gelu"] = gelu_forward(h, gelu, derivative=keep_cache)
    if drop:
        h, c["drop_hidden"] = dropout_forward(h, dropout, rng, train)
    m, c["fc2"] = linear_forward(h, p["mlp.W2"], p["mlp.b2"])        # (B, T, D)
    if drop:
        m, c["drop_mlp"] = dropout_forward(m, dropout, rng, train)
    m += a                                                           # z = MLP(LN(z′)) + z′
    return (m, A, c) if keep_cache else (m, None, None)


def encoder_block_backward(dout, cache):
    """Returns dz (B, T, D) and the block's gradients, as :func:`vitnp.ops.block.encoder_block_backward`."""
    c = cache
    g = {}
    dm = dropout_backward(dout, c.get("drop_mlp"))
    dh, g["mlp.W2"], g["mlp.b2"] = linear_backward(dm, c["fc2"])
    dh = gelu_backward(dropout_backward(dh, c.get("drop_hidden")), c["gelu"])
    dz1, g["ln2.gamma"], g["ln2.beta"], g["mlp.W1"], g["mlp.b1"] = ln_linear_backward(dh, c["ln2_fc1"])
    dz1 += dout                                                      # both paths reach z′
    da = dropout_backward(dz1, c.get("drop_msa"))
    da, g["U_msa"], g["U_msa_bias"] = linear_backward(da, c["out"])
    dqkv = qkv_attention_backward(da, c["att"])
    dz, g["ln1.gamma"], g["ln1.beta"], g["U_qkv"], g["U_qkv_bias"] = ln_linear_backward(dqkv, c["ln1_qkv"])
    unscale_qkv_grads(g["U_qkv"], g["U_qkv_bias"], dz.shape[-1], c["scale"])
    dz += dz1                                                        # both paths reach z
    return dz, {k: g[k] for k in BLOCK_KEYS}


def encoder_forward(z, blocks, heads, **kwargs):
    """z_L from z₀ through the L blocks; returns z_L, the L attention maps and the L caches.

    With ``keep_cache=False`` (inference, fast path only) returns z_L alone.
    """
    if not kwargs.get("keep_cache", True):
        for p in blocks:
            z = encoder_block_forward(z, p, heads, **kwargs)[0]
        return z
    steps = []
    for p in blocks:
        z, A, c = encoder_block_forward(z, p, heads, **kwargs)
        steps.append((A, c))
    return z, [A for A, _ in steps], [c for _, c in steps]


def encoder_backward(dout, caches):
    """Returns dz₀ and the list of the L blocks' gradient dicts, in block order."""
    grads = [None] * len(caches)
    for l in range(len(caches) - 1, -1, -1):
        dout, grads[l] = encoder_block_backward(dout, caches[l])
    return dout, grads
