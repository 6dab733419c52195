"""The pre-LN Transformer encoder block and the stack of L blocks (paper Eq 2–3).

    z′_ℓ = MSA(LN(z_{ℓ−1})) + z_{ℓ−1}        (Eq 2)
    z_ℓ  = MLP(LN(z′_ℓ)) + z′_ℓ              (Eq 3)

A residual connection adds its input to its output, so in the backward pass the gradient arriving at
z′_ℓ flows both straight through and through the branch, and the two are summed.

The fast twin is :mod:`vitnp.fast.block`: the same functions, proven equal, with its measured gain.
"""
from .attention import msa_backward, msa_forward
from .dropout import dropout_backward, dropout_forward
from .layernorm import layernorm_backward, layernorm_forward
from .mlp import mlp_backward, mlp_forward

# The arrays of one block, as named in the model's parameters after the prefix "blocks.{ℓ}.".
BLOCK_KEYS = ("ln1.gamma", "ln1.beta", "U_qkv", "U_qkv_bias", "U_msa", "U_msa_bias",
              "ln2.gamma", "ln2.beta", "mlp.W1", "mlp.b1", "mlp.W2", "mlp.b2")


def encoder_block_forward(z, p, heads, *, gelu="exact", eps=1e-6, dropout=0.0, attention_dropout=0.0,
                          mask=None, rng=None, train=False):
    """One encoder block, Eq 2–3: z′ = MSA(LN(z)) + z, then MLP(LN(z′)) + z′.

    z: (B, T, D)   p: dict of the block's arrays, keys :data:`BLOCK_KEYS`
    ->   z: (B, T, D), weights: (B, k, T, T) (the attention weights), cache

    heads : k.   gelu : 'exact' | 'tanh'.   eps : LayerNorm's ε.
    dropout : rate after MSA and in the MLP.   attention_dropout : rate on A.   mask : as in msa_forward.

    cache = (c_ln1, c_msa, c_drop, c_ln2, c_mlp): the caches of LN₁, MSA, the dropout after MSA, LN₂ and the
    MLP, in the forward's order, what encoder_block_backward reads.
    """
    h, c_ln1 = layernorm_forward(z, p["ln1.gamma"], p["ln1.beta"], eps)          # h = LN(z)
    a, A, c_msa = msa_forward(h, p["U_qkv"], p["U_qkv_bias"], p["U_msa"], p["U_msa_bias"], heads,
                              mask, attention_dropout, rng, train)              # a = MSA(h)
    a_kept, c_drop = dropout_forward(a, dropout, rng, train)                     # dropout (training only)
    z1 = a_kept + z                                                  # Eq 2: z′ = MSA(LN(z)) + z
    h2, c_ln2 = layernorm_forward(z1, p["ln2.gamma"], p["ln2.beta"], eps)        # h′ = LN(z′)
    m, c_mlp = mlp_forward(h2, p["mlp.W1"], p["mlp.b1"], p["mlp.W2"], p["mlp.b2"], gelu, dropout, rng,
                           train)                                                # m = MLP(h′)
    return m + z1, A, (c_ln1, c_msa, c_drop, c_ln2, c_mlp)           # Eq 3: z = MLP(LN(z′)) + z′


def encoder_block_backward(dout, cache):
    """Gradients of one encoder block, Eq 2–3: returns dz (B, T, D) and a dict of the block's gradients, keys
    :data:`BLOCK_KEYS`.
    """
    ### BEGIN SOLUTION
    c_ln1, c_msa, c_drop, c_ln2, c_mlp = cache
    g = {}
    dh2, g["mlp.W1"], g["mlp.b1"], g["mlp.W2"], g["mlp.b2"] = mlp_backward(dout, c_mlp)   # m = MLP(h2)
    dz1_mlp, g["ln2.gamma"], g["ln2.beta"] = layernorm_backward(dh2, c_ln2)              # h2 = LN(z1)
    dz1 = dout + dz1_mlp                           # return m + z1: both paths reach z′ (Eq 3's residual)
    da = dropout_backward(dz1, c_drop)             # z1 = a_kept + z, a_kept = dropout(a)
    dh, g["U_qkv"], g["U_qkv_bias"], g["U_msa"], g["U_msa_bias"] = msa_backward(da, c_msa)   # a = MSA(h)
    dz_msa, g["ln1.gamma"], g["ln1.beta"] = layernorm_backward(dh, c_ln1)                # h = LN(z)
    return dz1 + dz_msa, {k: g[k] for k in BLOCK_KEYS}   # z1 = a_kept + z: both paths reach z (Eq 2's residual)
    ### END SOLUTION


def encoder_forward(z, blocks, heads, **kwargs):
    """z_L from z₀ through L blocks (Eq 2–3 for ℓ = 1 … L).

    z: (B, T, D)   blocks: list of L parameter dicts   kwargs: as encoder_block_forward
    ->   z_L: (B, T, D), weights: list of L (B, k, T, T) arrays, cache

    cache = [the L blocks' caches], in block order, what encoder_backward reads.
    """
    maps, caches = [], []
    for p in blocks:
        z, A, c = encoder_block_forward(z, p, heads, **kwargs)
        maps.append(A)
        caches.append(c)
    return z, maps, caches


def encoder_backward(dout, caches):
    """Gradients of the L blocks, Eq 2–3 for ℓ = L … 1: returns dz₀ (B, T, D) and the list of the blocks'
    gradient dicts, in block order.
    """
    grads = []
    for c in reversed(caches):
        dout, g = encoder_block_backward(dout, c)
        grads.append(g)
    return dout, grads[::-1]
