# %% [markdown]
# # 03 · Self-attention: Eq 5–8 and the Transformer background
#
# *An Image is Worth 16x16 Words*, Appendix A; Vaswani et al., *Attention Is All You Need* (2017).
# Terms and their Korean equivalents: [glossary (용어집)](../docs/glossary.md).
#
# **A short history: RNN → attention → Transformer.** Self-attention is easiest to understand as the answer to the
# problems of what came before it, in machine translation.
#
# 1. **Recurrence (RNN, LSTM, GRU).** A recurrent network reads a sentence one word at a time and carries a hidden
#    state, $\mathbf{h}_t = f(\mathbf{h}_{t-1}, \mathbf{x}_t)$. LSTM and GRU are recurrent networks with *gates* that
#    decide what the state keeps and forgets, so that information (and gradient) survives over longer sentences.
#    The **sequence-to-sequence** model translates with two of them: an encoder RNN reads the source sentence, and its
#    final state, one vector, is all that a decoder RNN gets to write the translation from. Two weaknesses follow:
#    that single vector is a bottleneck for long sentences, and step $t$ cannot start before step $t-1$ has finished,
#    so the work along a sentence cannot be done in parallel.
# 2. **Attention as an add-on.** Let the decoder, at every word it writes, look back at *all* the encoder's hidden
#    states and take a weighted average of them, with weights from how well each state matches what the decoder needs
#    now (Bahdanau, Cho & Bengio 2015). The bottleneck is gone. In today's words this is **encoder–decoder attention**:
#    the queries come from the decoder, the keys and values from the encoder. The recurrence is still there.
# 3. **The Transformer: attention only** (Vaswani et al. 2017). Drop the recurrence and let the words of one sentence
#    attend to each other: **self-attention**, with queries, keys and values all from the same sequence. Every
#    position is computed at once, and any two words are one step apart instead of many. Two things are lost and must
#    be paid for: the order of the words (attention does not see it; the position embeddings of notebook 02 put it
#    back), and a cost that grew linearly with the length (attention compares all pairs, so its cost grows with the
#    square; the section on cost below). The **encoder** is a stack of
#    self-attention + MLP layers. The **decoder** writes one word at a time and has three parts per layer: *masked*
#    self-attention, so that a word sees only the words before it (the later ones do not exist yet when it is
#    generated; the section on masking below shows the mask), the encoder–decoder attention of step 2, and the MLP.
#
# BERT keeps only the encoder; GPT keeps only the decoder (masked self-attention, no encoder to attend to). **ViT keeps
# only the encoder, as BERT does**, feeds it patches instead of words, and, like BERT, reads the answer from an extra
# class token. So of the three kinds of attention, ViT uses one: unmasked self-attention.
#
# **Self-attention, step by step.** Every token asks a question (its *query* $\mathbf{q}$), every token advertises what it
# holds (its *key* $\mathbf{k}$) and what it will hand over (its *value* $\mathbf{v}$). A token's new representation is the
# average of all values, weighted by how well its query matches each key. In the paper's notation (Appendix A), for a
# sequence $\mathbf{z} \in \mathbb{R}^{T\times D}$ and one head of width $D_h$:
#
# $$
# \begin{aligned}
# [\mathbf{q}, \mathbf{k}, \mathbf{v}] &= \mathbf{z}\,\mathbf{U}_{qkv}, & \mathbf{U}_{qkv} &\in \mathbb{R}^{D \times 3D_h} && \text{(5)}\\
# A &= \operatorname{softmax}\!\big(\mathbf{q}\mathbf{k}^\top / \sqrt{D_h}\big), & A &\in \mathbb{R}^{T\times T} && \text{(6)}\\
# SA(\mathbf{z}) &= A\,\mathbf{v} && && \text{(7)}\\
# MSA(\mathbf{z}) &= [SA_1(\mathbf{z}); SA_2(\mathbf{z}); \cdots; SA_k(\mathbf{z})]\,\mathbf{U}_{msa}, & \mathbf{U}_{msa} &\in \mathbb{R}^{k\cdot D_h \times D} && \text{(8)}
# \end{aligned}
# $$
#
# Each equation below: the `vitnp` call, then a hand-written NumPy version and an `assert` that they agree.

# %% [markdown]
# **Learning objectives.** After this notebook you can
#
# * compute Eq 5–8 for one head and for k heads at once, as batched matrix products;
# * explain, with a measurement, why the scores are divided by √D_h;
# * use a causal mask, and state how the cost grows with the number of tokens.
#
# **학습 목표.** 이 노트북을 마치면
#
# * 식 5–8을 헤드 하나와 헤드 k개에 대해 배치 행렬곱으로 계산한다;
# * 점수를 √D_h로 나누는 이유를 측정과 함께 설명한다;
# * 인과 마스크를 쓰고, 비용이 토큰 수에 따라 어떻게 늘어나는지 말한다.

# %%

import matplotlib.pyplot as plt
import numpy as np

import vitnp
from vitnp.ops.attention import attention_forward, causal_mask, merge_heads, msa_forward, split_heads
from vitnp.ops.linear import linear_forward
from vitnp.ops.softmax import softmax_forward
from vitnp.course.notebook import diff, exercise, setup

FAST = setup(precision=3)   # fewer random samples in the √D_h experiment


def softmax_by_hand(S):
    """Row-wise softmax, written out; subtracting the row maximum changes nothing but avoids overflow in exp."""
    e = np.exp(S - S.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


# %% [markdown]
# ## The tiny configuration
#
# The sequence $\mathbf{z}$ is what enters an attention layer: $B = 2$ images of $T = N + 1 = 10$ tokens (a class token and
# a 3×3 grid of patches) of width $D = 16$, split into $k = 4$ heads of $D_h = D/k = 4$. Random numbers stand in for real
# tokens here; notebook 04 feeds real ones. float64 throughout.

# %%
cfg = vitnp.ViTConfig(image_size=12, patch_size=4, in_channels=3, dim=16, depth=2, heads=4, mlp_dim=32, dtype="float64")
B, T, D, heads, Dh = 2, cfg.num_tokens, cfg.dim, cfg.heads, cfg.head_dim
rng = np.random.default_rng(0)
z = rng.standard_normal((B, T, D))                                       # (B, T, D)
labels = ["cls"] + [str(i) for i in range(1, T)]                         # token names for the plots
print(f"z: {z.shape} = (B, T, D);  k = {heads} heads of D_h = {Dh}")

# %% [markdown]
# ## Eq 5 — queries, keys and values: $[\mathbf{q}, \mathbf{k}, \mathbf{v}] = \mathbf{z}\,\mathbf{U}_{qkv}$
#
# One head first. $\mathbf{U}_{qkv} \in \mathbb{R}^{D \times 3D_h}$ is three projections side by side; every token's
# $D$ numbers become a query, a key and a value of $D_h$ numbers each. (vitnp, like the reference code, also adds a bias.)
# The three play different roles, so they get different matrices: how a token *searches* need not be how it is *found*.

# %%
U_qkv_1 = rng.standard_normal((D, 3 * Dh)) / np.sqrt(D)                  # one head: (D, 3 D_h)
b_qkv_1 = 0.1 * rng.standard_normal(3 * Dh)
qkv, _ = linear_forward(z, U_qkv_1, b_qkv_1)                              # library: (B, T, 3 D_h)
q, k, v = np.split(qkv, 3, axis=-1)                                       # (B, T, D_h) each
q_hand = np.einsum("btd,de->bte", z, U_qkv_1[:, :Dh]) + b_qkv_1[:Dh]
k_hand = np.einsum("btd,de->bte", z, U_qkv_1[:, Dh:2 * Dh]) + b_qkv_1[Dh:2 * Dh]
v_hand = np.einsum("btd,de->bte", z, U_qkv_1[:, 2 * Dh:]) + b_qkv_1[2 * Dh:]
print(f"z {z.shape} @ U_qkv {U_qkv_1.shape} -> {qkv.shape} -> q, k, v {q.shape}")
d = max(diff(q, q_hand), diff(k, k_hand), diff(v, v_hand))
print(f"Eq 5: max |library − hand| = {d:.1e}")
assert d < 1e-12

# %% [markdown]
# ## Eq 6 — the attention weights: $A = \operatorname{softmax}(\mathbf{q}\mathbf{k}^\top/\sqrt{D_h})$
#
# $\mathbf{q}\mathbf{k}^\top$ holds every query–key dot product: entry $(i, j)$ says how well token $i$'s question matches
# token $j$'s key. The softmax runs over $j$ (the keys), so row $i$ of $A$ is a probability distribution: how token $i$
# splits its attention over the $T$ tokens. `vitnp.ops.attention.attention_forward(q, k, v)` returns the output of Eq 7
# and the weights $A$ of Eq 6.

# %%
out, A, _ = attention_forward(q, k, v)                                    # library: out (B, T, D_h), A (B, T, T)
S_hand = q @ k.transpose(0, 2, 1) / np.sqrt(Dh)                            # (B, T, T) scaled scores
A_hand = softmax_by_hand(S_hand)
print(f"q {q.shape} · kᵀ -> scores {S_hand.shape} -> A {A.shape}")
print("row sums of A:", A[0].sum(axis=1))
d = diff(A, A_hand)
print(f"Eq 6: max |library − hand| = {d:.1e}")
assert d < 1e-12
assert np.allclose(A.sum(axis=-1), 1.0) and (A >= 0).all()

fig, ax = plt.subplots(figsize=(5, 4.2))
im = ax.imshow(A[0], cmap="viridis", vmin=0)
ax.set_xticks(range(T), labels)
ax.set_yticks(range(T), labels)
ax.set_xlabel("key token j (attended to)")
ax.set_ylabel("query token i (attending)")
ax.set_title("A for image 0, one head (random weights)")
fig.colorbar(im, ax=ax, label="attention weight A_ij")
plt.show()

# %% [markdown]
# ### Why divide by $\sqrt{D_h}$?
#
# If the components of $\mathbf{q}$ and $\mathbf{k}$ are independent with mean 0 and variance 1, then
# $\mathbf{q}\cdot\mathbf{k} = \sum_{m=1}^{D_h} q_m k_m$ is a sum of $D_h$ terms of variance 1: its variance is $D_h$, its
# typical size $\sqrt{D_h}$. Wider heads give bigger scores, and a softmax of big numbers **saturates**: almost all the
# weight goes to the single largest score, as if it were an `argmax`. That is bad twice over: the token no longer mixes
# information, and the gradient through the softmax goes to zero when $a$ is
# one-hot (section 4 of notebook 05 shows why), so the query and key projections stop learning. Dividing by $\sqrt{D_h}$ brings the variance back to 1 for any
# head width.
#
# The experiment: random unit-variance $\mathbf{q}, \mathbf{k}$ for growing $D_h$, $T = 16$ keys; we measure the largest
# weight in each row of $A$ (1/16 = uniform, 1 = one-hot) and the size of the gradient that flows back through the
# softmax for a random upstream gradient, measured by centred differences (`grad_through_softmax` below; notebook 05
# derives its formula, and you write it in session 4).

# %%
def grad_through_softmax(scores, upstream, h=1e-6):
    """∂/∂scores of Σ softmax(scores) ⊙ upstream over the last axis, by centred differences: one column at a time,
    every row at once (rows do not interact)."""
    grad = np.empty_like(scores)
    for j in range(scores.shape[-1]):
        step = np.zeros_like(scores)
        step[..., j] = h
        up, down = softmax_forward(scores + step)[0], softmax_forward(scores - step)[0]
        grad[..., j] = ((up - down) * upstream).sum(-1) / (2 * h)
    return grad


T_exp, n_rows = 16, (200 if FAST else 1000)                                 # FAST: fewer random rows
widths = 2 ** np.arange(0, 11)                                             # D_h = 1 … 1024
exp_rng = np.random.default_rng(1)
results = {"unscaled": ([], [], []), "scaled by 1/√D_h": ([], [], [])}
for Dh_exp in widths:
    qe = exp_rng.standard_normal((n_rows, 1, Dh_exp))                       # one query per row
    ke = exp_rng.standard_normal((n_rows, T_exp, Dh_exp))
    logits = (qe @ ke.transpose(0, 2, 1))[:, 0]                            # (n_rows, T_exp)
    upstream = exp_rng.standard_normal(logits.shape)
    for name, scale in (("unscaled", 1.0), ("scaled by 1/√D_h", 1 / np.sqrt(Dh_exp))):
        a, _ = softmax_forward(logits * scale)
        grad = grad_through_softmax(logits * scale, upstream)              # ∂/∂logits through the softmax
        results[name][0].append(a.max(axis=1).mean())
        results[name][1].append(np.linalg.norm(grad, axis=1).mean())
        results[name][2].append((logits * scale).std())

print(f"{'D_h':>5} | {'std of scores':>13} {'max weight':>10} {'|grad|':>8} (unscaled) | "
      f"{'std':>5} {'max weight':>10} {'|grad|':>8} (scaled)")
for i, Dh_exp in enumerate(widths):
    u, s = results["unscaled"], results["scaled by 1/√D_h"]
    print(f"{Dh_exp:>5} | {u[2][i]:>13.2f} {u[0][i]:>10.3f} {u[1][i]:>8.4f}            | "
          f"{s[2][i]:>5.2f} {s[0][i]:>10.3f} {s[1][i]:>8.4f}")

fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
for name, (mx, gr, _) in results.items():
    axes[0].plot(widths, mx, "o-", label=name)
    axes[1].plot(widths, gr, "o-", label=name)
axes[0].axhline(1 / T_exp, color="gray", ls=":", label=f"uniform (1/{T_exp})")
axes[0].set_title("Saturation: mean of the largest weight per row")
axes[0].set_ylabel("max_j A_ij (1 = one-hot)")
axes[1].set_title("Gradient through the softmax")
axes[1].set_ylabel("mean ‖∂L/∂scores‖ per row")
axes[1].set_yscale("log")
for ax in axes:
    ax.set_xscale("log", base=2)
    ax.set_xlabel("head width D_h")
    ax.legend()
fig.tight_layout()
plt.show()

unscaled, scaled = results["unscaled"], results["scaled by 1/√D_h"]
assert unscaled[0][-1] > 0.9 > max(scaled[0])          # without the scale the softmax is nearly one-hot at D_h = 1024
assert unscaled[1][-1] < 0.2 * min(scaled[1])          # … and passes back less than a fifth of the gradient

# %% [markdown]
# With the scale, the attention stays equally "soft" and the gradient stays the same size whatever $D_h$ is; without it,
# both degrade as the heads get wider. (ViT-B has $D_h = 64$.)
#
# > **Common misconception: "the $1/\sqrt{D_h}$ normalises the scores", as if it were LayerNorm.** The study notes this
# > project grew from call this step 정규화 (normalisation), the word also used for 층 정규화 (LayerNorm). They are
# > different operations:
# >
# > | | $1/\sqrt{D_h}$ in Eq 6 | LayerNorm (Eq 2–4, notebook 04) |
# > |---|---|---|
# > | what it does | multiplies every score by one **fixed constant** | subtracts each token's mean and divides by its standard deviation, **computed from the data** |
# > | parameters | none | learned $\gamma, \beta$ per feature |
# > | depends on the input | no: the same number for every token, image and step | yes |
# > | guarantees | nothing about one row; the variance is near 1 only *on average*, for unit-variance $\mathbf{q}, \mathbf{k}$ | every token has mean 0 and variance 1 before $\gamma, \beta$ |
# >
# > "Scaling" (스케일링) is the accurate word for the first. The experiment above shows the difference: the scaled
# > scores have a standard deviation near 1 for random inputs, but nothing forces a trained model's scores to stay there.
# >
# > **흔한 오해: "$1/\sqrt{D_h}$가 점수를 정규화한다."** $1/\sqrt{D_h}$는 모든 점수에 같은 고정 상수를 곱하는 크기 조정(스케일링)이고,
# > 파라미터도 없고 입력에 따라 달라지지도 않습니다. 층 정규화는 토큰마다 데이터에서 평균과 표준편차를 계산하고 학습되는
# > $\gamma, \beta$를 갖습니다.
#
# ## Eq 7 — the output: $SA(\mathbf{z}) = A\,\mathbf{v}$
#
# Row $i$ of the output is $\sum_j A_{ij}\mathbf{v}_j$: a weighted average of the values, with the weights of row $i$. Since
# the weights are non-negative and sum to 1, every output lies inside the range spanned by the values. This is the only place
# in the whole Transformer where tokens exchange information.

# %%
out_hand = A_hand @ v                                                      # (B, T, T) @ (B, T, D_h) -> (B, T, D_h)
print(f"A {A.shape} @ v {v.shape} -> SA(z) {out.shape}")
d = diff(out, out_hand)
print(f"Eq 7: max |library − hand| = {d:.1e}")
assert d < 1e-12
assert (out >= v.min(axis=1, keepdims=True) - 1e-12).all() and (out <= v.max(axis=1, keepdims=True) + 1e-12).all()

# %% [markdown]
# ## Masked (causal) self-attention, as in a Transformer decoder
#
# A decoder generates the output one token at a time, so in training token $i$ must not see tokens $j > i$ (it would be
# reading the answer). The mask sets those scores to $-\infty$ before the softmax, so their weights are exactly 0 and each row
# renormalises over the allowed keys:
#
# $$A = \operatorname{softmax}\!\big(\mathbf{q}\mathbf{k}^\top/\sqrt{D_h} + M\big), \qquad
# M_{ij} = \begin{cases} 0 & j \le i \\ -\infty & j > i \end{cases}$$
#
# `vitnp.ops.attention.causal_mask(T)` is the boolean lower triangle (True = may attend). The ViT encoder never uses a mask:
# an image has no "before" and "after", and every patch may look at every other. vitnp supports it anyway, for the
# decoder-side ideas of the notes and for experiments (`vit_forward(..., attn_mask=...)`).

# %%
mask = causal_mask(T)                                                      # (T, T) bool
out_m, A_m, _ = attention_forward(q, k, v, mask=mask)                      # library
S_masked = np.where(np.tril(np.ones((T, T))) == 1, S_hand, -np.inf)        # hand: −∞ above the diagonal
A_m_hand = softmax_by_hand(S_masked)
print("mask:", mask.shape, mask.dtype, "| A:", A_m.shape)
d = max(diff(A_m, A_m_hand), diff(out_m, A_m_hand @ v))
print(f"masked Eq 6–7: max |library − hand| = {d:.1e}")
assert d < 1e-12
assert (A_m[:, np.triu_indices(T, 1)[0], np.triu_indices(T, 1)[1]] == 0).all()   # exactly zero above the diagonal

# the point of the mask: changing the last token changes nothing for the tokens before it
k2, v2 = k.copy(), v.copy()
k2[:, -1] += 5.0
v2[:, -1] -= 5.0
out_m2, _, _ = attention_forward(q, k2, v2, mask=mask)
print("after changing the last token's key and value: max change of outputs 0…T−2 =",
      f"{diff(out_m2[:, :-1], out_m[:, :-1]):.1e}", "| of output T−1 =", f"{diff(out_m2[:, -1], out_m[:, -1]):.2f}")
assert diff(out_m2[:, :-1], out_m[:, :-1]) == 0.0 and diff(out_m2[:, -1], out_m[:, -1]) > 0.1

fig, axes = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
for ax, a, title in zip(axes, (A[0], A_m[0]), ("encoder (ViT): no mask", "decoder: causal mask")):
    im = ax.imshow(a, cmap="viridis", vmin=0, vmax=1)
    ax.set_xticks(range(T), range(T))
    ax.set_yticks(range(T), range(T))
    ax.set_xlabel("key token j")
    ax.set_ylabel("query token i")
    ax.set_title(title)
fig.colorbar(im, ax=axes, label="attention weight")
plt.show()

# %% [markdown]
# **Encoder-decoder attention** is the same function with the queries from one sequence and the keys and values from
# another: the decoder's $T_\text{dec}$ tokens ask, the encoder's $T$ tokens answer, and $A$ is $T_\text{dec}\times T$.

# %%
q_dec = rng.standard_normal((B, 3, Dh))                                     # 3 decoder tokens
out_x, A_x, _ = attention_forward(q_dec, k, v)                              # keys and values from the encoder
A_x_hand = softmax_by_hand(q_dec @ k.transpose(0, 2, 1) / np.sqrt(Dh))
print(f"queries {q_dec.shape}, keys/values {k.shape} -> A {A_x.shape}, output {out_x.shape}")
d = max(diff(A_x, A_x_hand), diff(out_x, A_x_hand @ v))
print(f"cross-attention: max |library − hand| = {d:.1e}")
assert d < 1e-12

# %% [markdown]
# ## Eq 8 — multi-head self-attention: $MSA(\mathbf{z}) = [SA_1(\mathbf{z}); \cdots; SA_k(\mathbf{z})]\,\mathbf{U}_{msa}$
#
# One head computes one weighting per token pair. But a token may need several things at once: its neighbours, patches of
# the same colour, the object it belongs to. $k$ heads run $k$ attentions in parallel, each with its own projections to a
# $D_h = D/k$-dimensional subspace; their outputs are **concatenated** back to width $k \cdot D_h = D$ and mixed by
# $\mathbf{U}_{msa}$. The split costs nothing: with $D_h = D/k$ the $k$ heads together have exactly the parameters of
# one head of width $D$.
#
# vitnp keeps all heads in one matrix: `U_qkv` has shape $(D, 3D)$ with columns $[\,\mathbf{q} \mid \mathbf{k} \mid \mathbf{v}\,]$,
# and within each block of $D$ columns head $h$ owns columns $h D_h \ldots (h+1)D_h - 1$. So the paper's per-head
# $\mathbf{U}_{qkv}^{(h)} \in \mathbb{R}^{D\times 3D_h}$ is three slices of it. The heads are an array axis, not a loop:
# `split_heads` reshapes $(B, T, D) \to (B, k, T, D_h)$, `merge_heads` is the concatenation.
#
# First the library's steps with their shapes, then `msa_forward` in one call.

# %%
U_qkv = rng.standard_normal((D, 3 * D)) / np.sqrt(D)
U_qkv_bias = 0.1 * rng.standard_normal(3 * D)
U_msa = rng.standard_normal((D, D)) / np.sqrt(D)
U_msa_bias = 0.1 * rng.standard_normal(D)

qkv, _ = linear_forward(z, U_qkv, U_qkv_bias)                              # Eq 5, all heads: (B, T, 3D)
qh, kh, vh = (split_heads(qkv[..., i * D:(i + 1) * D], heads) for i in range(3))   # (B, k, T, D_h) each
o, A_heads, _ = attention_forward(qh, kh, vh)                              # Eq 6–7 per head: (B, k, T, D_h)
concat = merge_heads(o)                                                    # [SA_1; …; SA_k]: (B, T, k·D_h)
msa_steps, _ = linear_forward(concat, U_msa, U_msa_bias)                   # Eq 8: (B, T, D)
for name, arr in [("z", z), ("z U_qkv", qkv), ("q, k, v per head", qh), ("A per head", A_heads),
                  ("SA per head", o), ("concatenation", concat), ("MSA(z)", msa_steps)]:
    print(f"{name:<18} {arr.shape}")

msa_out, msa_A, _ = msa_forward(z, U_qkv, U_qkv_bias, U_msa, U_msa_bias, heads)   # the same in one call
assert diff(msa_out, msa_steps) == 0.0 and diff(msa_A, A_heads) == 0.0


# %% [markdown]
# The hand-written version follows the paper literally: a Python loop over the heads, each with its own
# $\mathbf{U}_{qkv}^{(h)} \in \mathbb{R}^{D \times 3D_h}$ (Eq 5), its own softmax (Eq 6) and product with $\mathbf{v}$ (Eq 7);
# then `np.concatenate` and $\mathbf{U}_{msa}$ (Eq 8).

# %%
def msa_by_hand(z, U_qkv, U_qkv_bias, U_msa, U_msa_bias, heads):
    """Eq 5–8 with a loop over heads. Returns MSA(z) (B, T, D) and the weights (B, k, T, T)."""
    D = z.shape[-1]
    Dh = D // heads
    outputs, weights = [], []
    for h in range(heads):
        cols = [blk * D + h * Dh + np.arange(Dh) for blk in range(3)]      # head h's q, k and v columns
        U_h = np.concatenate([U_qkv[:, c] for c in cols], axis=1)           # U_qkv^(h): (D, 3 D_h)
        b_h = np.concatenate([U_qkv_bias[c] for c in cols])
        q, k, v = np.split(z @ U_h + b_h, 3, axis=-1)                      # Eq 5: (B, T, D_h) each
        A = softmax_by_hand(q @ k.transpose(0, 2, 1) / np.sqrt(Dh))        # Eq 6: (B, T, T)
        outputs.append(A @ v)                                              # Eq 7: (B, T, D_h)
        weights.append(A)
    return np.concatenate(outputs, axis=-1) @ U_msa + U_msa_bias, np.stack(weights, axis=1)   # Eq 8


msa_hand, A_heads_hand = msa_by_hand(z, U_qkv, U_qkv_bias, U_msa, U_msa_bias, heads)
d = max(diff(msa_out, msa_hand), diff(msa_A, A_heads_hand))
print(f"Eq 5–8, {heads} heads: max |library − hand| = {d:.1e}")
assert d < 1e-12
print("parameters of U_qkv and U_msa:", U_qkv.size + U_msa.size, "for k =", heads,
      "heads; one head of width D would have", D * 3 * D + D * D)

fig, axes = plt.subplots(1, heads, figsize=(13, 3.6), layout="constrained")
for h, ax in enumerate(axes):
    im = ax.imshow(msa_A[0, h], cmap="viridis", vmin=0, vmax=msa_A[0].max())
    ax.set_title(f"head {h + 1}")
    ax.set_xticks(range(T), labels, fontsize=7)
    ax.set_yticks(range(T), labels, fontsize=7)
    ax.set_xlabel("key token j")
axes[0].set_ylabel("query token i")
fig.colorbar(im, ax=axes, label="attention weight")
fig.suptitle("Each head has its own attention pattern (random weights: untrained; trained ones are in notebook 07)")
plt.show()

# %% [markdown]
# ## The cost of attention is quadratic in the number of tokens
#
# $A$ has $T^2$ entries per head, per layer, per image. For ViT-B/16 at 224×224 ($T = 197$, $k = 12$, $L = 12$) that is
# about 5.6 million weights per image, and they must be kept for the backward pass. Four times as many patches (half the
# patch size, or twice the resolution) means sixteen times as many. This is the price of letting every patch see every other
# patch from the first layer on, the thing a CNN only achieves after many layers.

# %%
for name in ("B/32", "B/16", "L/16", "H/14"):
    c = vitnp.ViTConfig.variant(name)
    n = c.depth * c.heads * c.num_tokens ** 2
    print(f"ViT-{name:<5} T = {c.num_tokens:>3}, k = {c.heads:>2}, L = {c.depth:>2}: "
          f"{n / 1e6:6.1f} M attention weights per image ({n * 4 / 2**20:6.1f} MiB in float32)")

# %% [markdown]
# **Summary.** Eq 5 projects tokens to queries, keys and values; Eq 6 turns query–key agreement into weights (scaled by
# $1/\sqrt{D_h}$ so the softmax does not saturate); Eq 7 averages the values; Eq 8 runs $k$ such heads side by side and mixes
# their concatenation with $\mathbf{U}_{msa}$. A causal mask turns the same machinery into a decoder's self-attention. Every
# step matched a hand-written loop. Next: [04_encoder_block](04_encoder_block.ipynb), where attention meets LayerNorm, the MLP and
# the residual connections.
#
# **요약.** 식 5는 토큰을 쿼리·키·값으로 투영하고, 식 6은 쿼리–키 일치를 가중치로 바꾸며(소프트맥스가 포화하지 않도록 $1/\sqrt{D_h}$로 크기 조정), 식 7은 값을 가중 평균하고, 식 8은 그런 헤드 $k$개를 나란히 돌려 이어 붙인 뒤 $\mathbf{U}_{msa}$로 섞습니다. 인과 마스크를 쓰면 같은 구조가 디코더의 셀프 어텐션이 됩니다. 모든 단계가 손으로 쓴 반복문과 일치했습니다. 다음은 04, 어텐션이 층 정규화, MLP, 잔차 연결과 만나는 곳입니다.

# %% [markdown]
# ## Exercises
#
# Four exercises on Eq 5–8 and their cost. In the student edition (`python -m vitnp course build`) the model answers are cut out;
# the locked cell after each code exercise fails until your answer is right.
#
# * **Exercise nb03-q-score-variance** (2 points) — inline question: the variance of a query–key score, and the scale
#   that keeps it at 1.
#   *인라인 질문: 쿼리–키 점수의 분산, 그리고 그것을 1로 유지하는 배율.*
# * **Exercise nb03-sqrt-dh** (2 points) — the $\sqrt{D_h}$ experiment at the head widths of the ViT sizes and of our
#   presets, and with inputs whose variance is not 1.
#   *ViT 크기들과 우리 프리셋의 헤드 폭에서, 그리고 분산이 1이 아닌 입력에서 $\sqrt{D_h}$ 실험을 하세요.*
# * **Exercise nb03-heads-layout** (2 points) — assemble vitnp's $\mathbf{U}_{qkv}$ from the paper's per-head
#   matrices.
#   *논문의 헤드별 행렬로 vitnp의 $\mathbf{U}_{qkv}$를 조립하세요.*
# * **Exercise nb03-q-patch-size** (2 points) — inline question: what halving the patch size costs and buys.
#   *인라인 질문: 패치 크기를 절반으로 줄이면 무엇을 치르고 무엇을 얻는가.*

# %% [markdown] nbgrader={"grade": true, "grade_id": "nb03-q-score-variance", "locked": false, "points": 2, "schema_version": 3, "solution": true}
# **Exercise nb03-q-score-variance** (2 points). Let the $D_h$ components of $\mathbf{q}$ and $\mathbf{k}$ be
# independent, with mean 0 and variances $\sigma_q^2$ and $\sigma_k^2$. Derive the mean and the variance of the score
# $\mathbf{q}\cdot\mathbf{k}$. Which factor should replace $1/\sqrt{D_h}$ to keep the scaled score's variance at 1? How
# large are the unscaled scores of a ViT-B head when $\sigma_q = \sigma_k = 1$?
#
# *인라인 질문: 쿼리–키 점수의 분산, 그리고 그것을 1로 유지하는 배율.*
#
# ### BEGIN SOLUTION
# Each term $q_m k_m$ has mean $\mathbb{E}[q_m]\,\mathbb{E}[k_m] = 0$ and variance
# $\mathbb{E}[q_m^2 k_m^2] - 0 = \mathbb{E}[q_m^2]\,\mathbb{E}[k_m^2] = \sigma_q^2\sigma_k^2$ (independence). The $D_h$
# terms are independent, so their variances add:
# $$\mathbb{E}[\mathbf{q}\cdot\mathbf{k}] = 0, \qquad
# \operatorname{Var}(\mathbf{q}\cdot\mathbf{k}) = D_h\,\sigma_q^2\sigma_k^2 .$$
# The factor that brings the variance back to 1 is $1/(\sigma_q\sigma_k\sqrt{D_h})$; with unit variances it is Eq 6's
# $1/\sqrt{D_h}$. Every Table 1 model has $D_h = D/k = 64$ except ViT-H ($1280/16 = 80$), so a ViT-B head without the
# scale would see scores with a standard deviation of $\sqrt{64} = 8$. The experiment above measures it: for
# $D_h = 64$ its table prints a standard deviation of about 8 for the unscaled scores, and a largest weight of about
# 0.84 per row on average (uniform attention would give 1/16). The next exercise checks the case $\sigma \ne 1$.
# ### END SOLUTION

# %% [markdown]
# **Exercise nb03-sqrt-dh** (2 points). Write `saturation(Dh, scale, sigma=1.0, n_rows=1000, T=16, seed=0)`: the
# experiment above for one head width. Draw `n_rows` queries and `n_rows` × `T` keys with independent components of
# standard deviation `sigma`, multiply the scores by `scale`, and return three numbers: the standard deviation of the
# scaled scores, the mean over rows of the largest softmax weight, and the mean norm of the gradient that flows back
# through the softmax for a random upstream gradient (`grad_through_softmax` above). The test runs it at the head widths
# `ViTConfig.variant(v).head_dim` of Table 1's Base, Large and Huge, of the smaller Ti and S (not in Table 1: they come
# from later work, DeiT's Touvron et al. 2021, and the reference code's model list) and of the `fast` and `fmnist`
# presets.
#
# *ViT 크기들과 우리 프리셋의 헤드 폭에서, 그리고 분산이 1이 아닌 입력에서 $\sqrt{D_h}$ 실험을 하세요.*

# %% nbgrader={"grade": false, "grade_id": "nb03-sqrt-dh", "locked": false, "schema_version": 3, "solution": true}
def saturation(Dh, scale, sigma=1.0, n_rows=1000, T=16, seed=0):
    """(std of the scaled scores, mean max weight per row, mean ‖∂L/∂scores‖ per row) for head width Dh."""
    ### BEGIN SOLUTION
    rng_s = np.random.default_rng(seed)
    q_s = sigma * rng_s.standard_normal((n_rows, 1, Dh))                  # one query per row
    k_s = sigma * rng_s.standard_normal((n_rows, T, Dh))                  # T keys per row
    scores = (q_s @ k_s.transpose(0, 2, 1))[:, 0] * scale               # (n_rows, T)
    a, _ = softmax_forward(scores)
    grad = grad_through_softmax(scores, rng_s.standard_normal(scores.shape))
    return scores.std(), a.max(axis=1).mean(), np.linalg.norm(grad, axis=1).mean()
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "nb03-sqrt-dh-test", "locked": true, "points": 2, "schema_version": 3, "solution": false}
with exercise("nb03-sqrt-dh"):
    from vitnp.training.presets import get_preset

    used = sorted({vitnp.ViTConfig.variant(v).head_dim for v in ("Ti", "S", "B", "L", "H/14")}
                  | {get_preset(p)[0].head_dim for p in ("fast", "fmnist")})
    assert used == [16, 64, 80]
    n_t = 200 if FAST else 1000
    print(f"{'D_h':>4} | {'std':>6} {'max weight':>10} {'|grad|':>7} (scaled) | {'std':>6} {'max weight':>10} "
          f"{'|grad|':>7} (unscaled) | std, σ = 2, scale 1/(σ²√D_h)")
    scaled_max = []
    for Dh_t in used:
        s_std, s_max, s_grad = saturation(Dh_t, 1 / np.sqrt(Dh_t), n_rows=n_t)
        u_std, u_max, u_grad = saturation(Dh_t, 1.0, n_rows=n_t)
        sigma_std = saturation(Dh_t, 1 / (4 * np.sqrt(Dh_t)), sigma=2.0, n_rows=n_t)[0]
        print(f"{Dh_t:>4} | {s_std:6.3f} {s_max:10.3f} {s_grad:7.3f}          | {u_std:6.2f} {u_max:10.3f} {u_grad:7.3f}"
              f"            | {sigma_std:.3f}")
        assert abs(s_std - 1) < 0.1 and abs(u_std / np.sqrt(Dh_t) - 1) < 0.1 and abs(sigma_std - 1) < 0.1
        if Dh_t >= 64:
            assert u_max > 0.8 and u_grad < 0.7 * s_grad         # unscaled: nearly one-hot, less gradient
        scaled_max.append(s_max)
    assert max(scaled_max) - min(scaled_max) < 0.05              # scaled: equally soft at every width

# %% [markdown]
# **Exercise nb03-heads-layout** (2 points). The paper gives head $h$ its own projections (Eq 5), and the original
# checkpoints store `query/kernel` as a $(D, k, D_h)$ array. Write `assemble_U_qkv(Wq, Wk, Wv)`: from three
# $(k, D, D_h)$ arrays, head $h$'s query, key and value projections, build vitnp's $(D, 3D)$ `U_qkv` (the Eq 8 section:
# columns $[\,\mathbf{q} \mid \mathbf{k} \mid \mathbf{v}\,]$, head by head inside each block), so that `msa_forward`
# computes exactly the per-head attention.
#
# *논문의 헤드별 행렬로 vitnp의 $\mathbf{U}_{qkv}$를 조립하세요.*

# %% nbgrader={"grade": false, "grade_id": "nb03-heads-layout", "locked": false, "schema_version": 3, "solution": true}
def assemble_U_qkv(Wq, Wk, Wv):
    """Three (k, D, D_h) per-head projections -> U_qkv (D, 3D), columns [q | k | v], heads in order in each block."""
    ### BEGIN SOLUTION
    k_heads, D_in, Dh_in = Wq.shape
    return np.concatenate([W.transpose(1, 0, 2).reshape(D_in, k_heads * Dh_in) for W in (Wq, Wk, Wv)], axis=1)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "nb03-heads-layout-test", "locked": true, "points": 2, "schema_version": 3, "solution": false}
with exercise("nb03-heads-layout"):
    from vitnp.io.original import to_jax

    rng_t = np.random.default_rng(8)
    Wq, Wk, Wv = (rng_t.standard_normal((heads, D, Dh)) / np.sqrt(D) for _ in range(3))   # (k, D, D_h) each
    U_out = rng_t.standard_normal((D, D)) / np.sqrt(D)
    U_t = assemble_U_qkv(Wq, Wk, Wv)
    assert U_t.shape == (D, 3 * D)
    per_head = [softmax_by_hand(z @ Wq[h] @ (z @ Wk[h]).transpose(0, 2, 1) / np.sqrt(Dh)) @ (z @ Wv[h])
                for h in range(heads)]                                                    # Eq 5–7, head by head
    expected = np.concatenate(per_head, axis=-1) @ U_out                                  # Eq 8
    got, _, _ = msa_forward(z, U_t, np.zeros(3 * D), U_out, np.zeros(D), heads)
    print(f"msa_forward with the assembled U_qkv: max |library − per-head loop| = {diff(got, expected):.1e}")
    assert diff(got, expected) < 1e-12
    params_t = dict(vitnp.init_params(cfg, seed=0), **{"blocks.0.U_qkv": U_t})
    query_kernel = to_jax(params_t, cfg)["Transformer/encoderblock_0/MultiHeadDotProductAttention_1/query/kernel"]
    assert np.array_equal(query_kernel, Wq.transpose(1, 0, 2))                            # the checkpoint's (D, k, D_h)

# %% [markdown] nbgrader={"grade": true, "grade_id": "nb03-q-patch-size", "locked": false, "points": 2, "schema_version": 3, "solution": true}
# **Exercise nb03-q-patch-size** (2 points). A ViT-B keeps its width, depth and heads when its patch size changes
# from 32 to 16 at 224×224 (ViT-B/32 to ViT-B/16). Using the table of the section on quadratic cost, say what happens
# to the number of tokens, to the attention weights per image (count and memory), to the cost of the other parts of
# a block, and to the parameter count (its embedding $\mathbf{E}$ and $\mathbf{E}_{pos}$). What would you expect for
# accuracy, and why? For our 28×28 Fashion-MNIST images, what do $P = 7$ and $P = 4$ give?
#
# *인라인 질문: 패치 크기를 절반으로 줄이면 무엇을 치르고 무엇을 얻는가.*
#
# ### BEGIN SOLUTION
# **Tokens.** $N = (224/P)^2$: 49 patches at $P = 32$, 196 at $P = 16$, so $T$ goes from 50 to 197, about 4×.
# **Attention weights** grow with $T^2$: per head and layer $50^2 = 2{,}500$ against $197^2 = 38{,}809$, about 16×; the
# table prints 0.4 M against 5.6 M weights per image for the 12 × 12 heads (1.4 against 21.3 MiB in float32), and the
# backward keeps them all. **The rest of a block** (the $\mathbf{U}_{qkv}$, $\mathbf{U}_{msa}$ and MLP matmuls,
# LayerNorm) costs the same per token, so it grows only with $T$: about 4×. **Parameters** barely change: the block
# weights do not depend on $T$; $\mathbf{E}$ has $32^2 \cdot 3 = 3{,}072$ rows at $P = 32$ and $16^2 \cdot 3 = 768$ at
# $P = 16$ (768 columns each), and $\mathbf{E}_{pos}$ grows from 50 to 197 rows (notebook 04's exercise: 88,224,232 for B/32 against 86,567,656
# for B/16). **Accuracy:** each token now describes a smaller region, so the model sees finer detail and has more
# tokens to attend between, for the same parameters: we would expect it to be more accurate, at about 4× the compute
# (the paper, §4.1: the sequence length is inversely proportional to the square of the patch size, so smaller
# patches cost more). Whether the gain is worth it is a compute question, which is why the paper compares
# models by accuracy against pre-training compute (§4.4, Fig 5). **Fashion-MNIST:** $P = 7$ gives a 4×4 grid, $T =
# 17$; $P = 4$ gives 7×7, $T = 50$: about 3× the tokens and about 9× the attention weights.
# ### END SOLUTION
