# %% [markdown]
# # 05 · Backpropagation: every backward derived, then checked numerically
#
# Terms and their Korean equivalents: [glossary (용어집)](../docs/glossary.md).
#
# Training needs the gradient of the loss with respect to every parameter. vitnp computes it by hand: every operation is a
# pair `*_forward(inputs) -> (out, cache)` and `*_backward(dout, cache) -> dinputs`, and the model's backward calls them in
# reverse order. This notebook derives each backward (chain rule, with shapes) and checks the library's with
# **numerical derivatives** (`vitnp.gradcheck`). The derivations are yours: each section states what the forward
# computes and asks for its backward, written as a formula with shapes (a written exercise, graded by hand; the
# model answers are in the instructor's copy only). The code that follows each question runs *your* backward of
# `vitnp/ops/` (the code exercises of `python -m vitnp course list`) through the numerical check, so the check tells
# you whether what you derived and wrote is right.
#
# **The contract of a backward.** Let $L$ be the scalar loss and $\mathbf{o} = f(\mathbf{x})$ one operation inside it.
# The backward receives $\bar{\mathbf{o}} = \partial L / \partial \mathbf{o}$ (same shape as $\mathbf{o}$, the *upstream
# gradient*) and returns $\bar{\mathbf{x}} = \partial L/\partial \mathbf{x}$ (same shape as $\mathbf{x}$). By the chain rule
#
# $$\bar{x}_i = \sum_j \bar{o}_j \,\frac{\partial o_j}{\partial x_i},$$
#
# a product with the transposed Jacobian, which we never build: each backward below finds a cheap formula for it.
#
# **The check.** To test a backward we pick a random upstream gradient $\mathbf{g}$ and the scalar
# $L(\mathbf{x}) = \sum_j o_j(\mathbf{x})\, g_j$, whose exact gradient is what the backward returns for $\bar{\mathbf{o}} = \mathbf{g}$.
# Centred differences estimate the same thing:
#
# $$\frac{\partial L}{\partial x_i} \approx \frac{L(\mathbf{x} + h\mathbf{e}_i) - L(\mathbf{x} - h\mathbf{e}_i)}{2h},
# \qquad \text{error } O(h^2),$$
#
# and `vitnp.gradcheck.check_pair` reports, per input, the relative error
# $\max_i |a_i - n_i| \,/\, (\max_i |a_i| + \max_i |n_i|)$ between analytic $a$ and numerical $n$. In float64 with
# $h = 10^{-6}$ a correct backward gives about $10^{-9}$ or less; the test suite's tolerances are $10^{-7}$ for single
# operations and $10^{-6}$ for blocks and the whole model. A bug typically gives $10^{-2}$ to $1$.

# %% [markdown]
# **Learning objectives.** After this notebook you can
#
# * derive the backward of every op of the ViT from the chain rule, and write it;
# * check any gradient with centred differences and read the relative error;
# * recognise what a wrong backward looks like, and why float64, batches bigger than one and trained parameters matter.
#
# **학습 목표.** 이 노트북을 마치면
#
# * 연쇄 법칙으로 ViT의 모든 연산의 역전파를 유도하고 코드로 쓴다;
# * 중앙 차분으로 어떤 기울기든 검사하고 상대 오차를 읽는다;
# * 틀린 역전파가 어떻게 드러나는지, 그리고 float64, 1보다 큰 배치, 학습된 파라미터가 왜 중요한지 안다.

# %%
import time

import matplotlib.pyplot as plt
import numpy as np

import vitnp
from vitnp.gradcheck import MODEL_TOL, OP_TOL, check_gradients, check_pair, numerical_gradient, rel_error
from vitnp.ops.attention import (attention_backward, attention_forward, causal_mask, msa_backward,
                                 msa_forward)
from vitnp.ops.block import BLOCK_KEYS, encoder_block_backward, encoder_block_forward
from vitnp.ops.gelu import gelu_backward, gelu_forward
from vitnp.ops.layernorm import layernorm_backward, layernorm_forward
from vitnp.ops.linear import linear_backward, linear_forward
from vitnp.ops.loss import softmax_cross_entropy
from vitnp.ops.mlp import mlp_backward, mlp_forward
from vitnp.ops.patches import patchify_backward, patchify_forward
from vitnp.ops.posemb import pos_embed_backward, pos_embed_forward
from vitnp.ops.softmax import softmax_backward, softmax_forward
from vitnp.ops.tokens import class_token_backward, class_token_forward
from vitnp.selfcheck import check_model, tiny_config
from vitnp.course.notebook import setup

FAST = setup(precision=3)   # fast: the whole-model check on 2 variants instead of 14

print(f"tolerances: single ops {OP_TOL:g}, encoder block and whole model {MODEL_TOL:g} (vitnp.gradcheck, as the tests)")
rng = np.random.default_rng(0)
r = lambda *shape: rng.standard_normal(shape)                   # noqa: E731  random float64 array


def show(name, errors, tol):
    """Print the gradient check's relative error per input; return the worst."""
    worst = max(errors.values())
    print(f"gradcheck {name}: " + ", ".join(f"{k} {v:.1e}" for k, v in errors.items())
          + f"  (worst {worst:.1e}, tolerance {tol:.0e})")
    return worst


# %% [markdown] nbgrader={"grade": true, "grade_id": "nb05-d-linear", "locked": false, "points": 2, "schema_version": 3, "solution": true}
# ## 1. Linear: $\mathbf{o} = \mathbf{x}\mathbf{W} + \mathbf{b}$
#
# Used for $\mathbf{E}$, $\mathbf{U}_{qkv}$, $\mathbf{U}_{msa}$, both MLP layers and the head. Write the leading axes as
# one row index $n$ (all tokens of all images): $o_{nj} = \sum_i x_{ni} W_{ij} + b_j$.
#
# **Exercise nb05-d-linear** (2 points). From $\bar{x}_{ni} = \sum_j \bar{o}_{nj}\,\partial o_{nj}/\partial x_{ni}$ and its
# twins for $W_{ij}$ and $b_j$, derive $\bar{\mathbf{x}}$, $\bar{\mathbf{W}}$ and $\bar{\mathbf{b}}$ as matrix expressions,
# with their shapes, and say why two of them are sums over $n$. Then write them in `linear_backward`
# (exercise linear-backward) and run the cell below.
#
# *1절: 선형층의 세 기울기, 그리고 둘이 합인 이유.*
#
# ### BEGIN SOLUTION
# $$\bar{x}_{ni} = \sum_j \bar{o}_{nj} W_{ij} \;\Rightarrow\; \bar{\mathbf{x}} = \bar{\mathbf{o}}\,\mathbf{W}^\top, \qquad
# \bar{W}_{ij} = \sum_n x_{ni}\, \bar{o}_{nj} \;\Rightarrow\; \bar{\mathbf{W}} = \mathbf{x}^\top \bar{\mathbf{o}}, \qquad
# \bar{\mathbf{b}} = \sum_n \bar{\mathbf{o}}_n .$$
#
# Shapes: $\bar{\mathbf{x}}$ $(\ldots, D_\text{in})$ like $\mathbf{x}$; $\bar{\mathbf{W}}$ $(D_\text{in}, D_\text{out})$ like
# $\mathbf{W}$; $\bar{\mathbf{b}}$ $(D_\text{out})$. The sums over $n$ appear because the **same** $\mathbf{W}$ and
# $\mathbf{b}$ are used for every token of every image: a shared parameter collects the gradient of every use.
# ### END SOLUTION

# %%
x, W, b = r(2, 3, 5), r(5, 4), r(4)
out, cache = linear_forward(x, W, b)
g = r(*out.shape)                                                          # upstream gradient
dx, dW, db = linear_backward(g, cache)
print(f"x {x.shape}, W {W.shape}, b {b.shape} -> out {out.shape};  dx {dx.shape}, dW {dW.shape}, db {db.shape}")
assert (dx.shape, dW.shape, db.shape) == (x.shape, W.shape, b.shape)      # each gradient has its input's shape
assert show("linear", check_pair(linear_forward, linear_backward, dict(x=x, W=W, b=b)), OP_TOL) < OP_TOL

# %% [markdown] nbgrader={"grade": true, "grade_id": "nb05-d-patchify", "locked": false, "points": 1, "schema_version": 3, "solution": true}
# ## 2. Patch flattening
#
# Flattening only moves numbers (notebook 01): $x_p[\pi(m)] = x[m]$ for a fixed permutation $\pi$ of the positions.
#
# **Exercise nb05-d-patchify** (1 point). What is $\partial x_p[k] / \partial x[m]$? Derive $\bar{\mathbf{x}}$ from
# $\bar{\mathbf{x}}_p$, with the shapes, and say which reshapes and transposes compute it (exercise patchify-backward).
#
# *2절: 패치 평탄화의 역전파.*
#
# ### BEGIN SOLUTION
# Each output number depends on exactly one input number with derivative 1 ($\partial x_p[k]/\partial x[m] = 1$ if
# $k = \pi(m)$, else 0), so $\bar{x}[m] = \bar{x}_p[\pi(m)]$: the gradient goes back to where its number came from,
# the forward's reshapes and transpose undone in reverse order (the transpose of axes 2 and 3 is its own inverse).
# Shapes: $\bar{\mathbf{x}}_p$ $(B, N, P^2C)$ → $\bar{\mathbf{x}}$ $(B, H, W, C)$.
# ### END SOLUTION

# %%
x = r(2, 6, 4, 3)
x_p, cache = patchify_forward(x, 2)
g = r(*x_p.shape)
dx = patchify_backward(g, cache)
print(f"x {x.shape} -> x_p {x_p.shape};  dx {dx.shape}")
assert show("patchify", check_pair(patchify_forward, patchify_backward, {"x": x}, kwargs={"P": 2}), OP_TOL) < OP_TOL

# %% [markdown] nbgrader={"grade": true, "grade_id": "nb05-d-shared", "locked": false, "points": 1, "schema_version": 3, "solution": true}
# ## 3. Class token and position embeddings: shared parameters
#
# $\mathbf{z} = [\mathbf{x}_\text{class}; \mathbf{X}]$ copies $\mathbf{x}_\text{class}$ into row 0 of **every** image, and
# $\mathbf{z}_0 = \mathbf{z} + \mathbf{E}_{pos}$ adds the same table to every image.
#
# **Exercise nb05-d-shared** (1 point). Derive $\bar{\mathbf{X}}$ and $\bar{\mathbf{x}}_\text{class}$ from $\bar{\mathbf{z}}$, and
# $\bar{\mathbf{z}}$ and $\bar{\mathbf{E}}_{pos}$ from $\bar{\mathbf{z}}_0$, with shapes (exercises class-token-backward,
# pos-embed-backward). What happens to a parameter that is used $B$ times?
#
# *3절: 클래스 토큰과 위치 임베딩.*
#
# ### BEGIN SOLUTION
# A parameter used $B$ times receives the sum of the $B$ gradients:
#
# $$\bar{\mathbf{X}} = \bar{\mathbf{z}}_{[:,1:]}, \qquad \bar{\mathbf{x}}_\text{class} = \sum_{b=1}^{B} \bar{\mathbf{z}}_{b,0}, \qquad
# \bar{\mathbf{z}} = \bar{\mathbf{z}}_0, \qquad \bar{\mathbf{E}}_{pos} = \sum_{b=1}^{B} \bar{\mathbf{z}}_{0,b}.$$
#
# Shapes: $\bar{\mathbf{x}}_\text{class}$ $(D)$, $\bar{\mathbf{E}}_{pos}$ $(T, D)$. Forgetting the sum is an easy mistake;
# section 11 shows how the check catches it.
# ### END SOLUTION

# %%
X, x_class = r(3, 4, 5), r(5)
z, cache = class_token_forward(X, x_class)
g = r(*z.shape)
dX, dcls = class_token_backward(g, cache)
print(f"X {X.shape}, x_class {x_class.shape} -> z {z.shape};  dX {dX.shape}, dx_class {dcls.shape}")
assert show("class_token", check_pair(class_token_forward, class_token_backward, dict(X=X, x_class=x_class)),
            OP_TOL) < OP_TOL

z, E_pos = r(3, 4, 5), r(4, 5)
z0, cache = pos_embed_forward(z, E_pos)
g = r(*z0.shape)
dz, dE = pos_embed_backward(g, cache)
print(f"z {z.shape}, E_pos {E_pos.shape} -> z0 {z0.shape};  dz {dz.shape}, dE_pos {dE.shape}")
assert show("pos_embed", check_pair(pos_embed_forward, pos_embed_backward, dict(z=z, E_pos=E_pos)), OP_TOL) < OP_TOL

# %% [markdown] nbgrader={"grade": true, "grade_id": "nb05-d-softmax", "locked": false, "points": 2, "schema_version": 3, "solution": true}
# ## 4. Softmax
#
# For one row, $a_j = e^{s_j} / \sum_m e^{s_m}$.
#
# **Exercise nb05-d-softmax** (2 points). Derive $\partial a_j / \partial s_i$, write the Jacobian as a matrix, and
# derive $\bar{\mathbf{s}}$ from $\bar{\mathbf{a}}$ without building the Jacobian (exercise softmax-backward). How many
# operations per row does your formula take, against the product with the Jacobian?
#
# *4절: 소프트맥스의 야코비안, 그리고 그것 없이 쓰는 역전파.*
#
# ### BEGIN SOLUTION
# $\partial a_j / \partial s_i = a_j(\delta_{ij} - a_i)$. The Jacobian is
# $\operatorname{diag}(\mathbf{a}) - \mathbf{a}\mathbf{a}^\top$ (symmetric), so
#
# $$\bar{s}_i = \sum_j \bar{a}_j\, a_j (\delta_{ij} - a_i) = a_i\Big(\bar{a}_i - \sum_j \bar{a}_j a_j\Big),
# \qquad \bar{\mathbf{s}} = \mathbf{a} \odot \big(\bar{\mathbf{a}} - (\bar{\mathbf{a}}\cdot\mathbf{a})\big).$$
#
# $O(T)$ per row instead of the $O(T^2)$ product with the Jacobian.
# ### END SOLUTION

# %%
s = 3 * r(2, 3, 5)
a, cache = softmax_forward(s)
g = r(*a.shape)
ds = softmax_backward(g, cache)
print(f"s {s.shape} -> a {a.shape};  ds {ds.shape}")
assert show("softmax", check_pair(softmax_forward, softmax_backward, {"s": s}), OP_TOL) < OP_TOL

# %% [markdown] nbgrader={"grade": true, "grade_id": "nb05-d-attention", "locked": false, "points": 2, "schema_version": 3, "solution": true}
# ## 5. Attention (Eq 6–7)
#
# Forward, per head: $S = \mathbf{q}\mathbf{k}^\top c$ with $c = 1/\sqrt{D_h}$; $A = \operatorname{softmax}(S)$;
# $\mathbf{o} = A\mathbf{v}$.
#
# **Exercise nb05-d-attention** (2 points). Going back through these three lines from the end, derive
# $\bar{\mathbf{v}}$, $\bar{A}$, $\bar{S}$, $\bar{\mathbf{q}}$ and $\bar{\mathbf{k}}$, with shapes (exercise attention-backward).
# Where does $c$ appear, and what does a causal mask do to $\bar{S}$?
#
# *5절: 어텐션, 끝에서부터 한 줄씩.*
#
# ### BEGIN SOLUTION
# Line by line from the end, each a linear-layer rule from section 1 or the softmax rule of section 4:
#
# $$\bar{\mathbf{v}} = A^\top \bar{\mathbf{o}}, \quad \bar{A} = \bar{\mathbf{o}}\,\mathbf{v}^\top, \quad
# \bar{S} = A \odot \big(\bar{A} - \textstyle\sum_j \bar{A} \odot A\big), \quad
# \bar{\mathbf{q}} = c\,\bar{S}\,\mathbf{k}, \quad \bar{\mathbf{k}} = c\,\bar{S}^\top \mathbf{q}.$$
#
# Shapes: $\bar{\mathbf{o}}, \bar{\mathbf{q}}, \bar{\mathbf{k}}, \bar{\mathbf{v}}$ $(B, k, T, D_h)$; $\bar{A}, \bar{S}$
# $(B, k, T, T)$. With a causal mask, masked entries have $A = 0$, so $\bar{S} = 0$ there: no gradient flows to the future.
# ### END SOLUTION

# %%
q, k, v = r(2, 2, 5, 3), r(2, 2, 5, 3), r(2, 2, 5, 3)
out, A, cache = attention_forward(q, k, v)
g = r(*out.shape)
dq, dk, dv = attention_backward(g, cache)
print(f"q, k, v {q.shape} -> out {out.shape}, A {A.shape};  dq, dk, dv {dq.shape}")
assert show("attention", check_pair(attention_forward, attention_backward, dict(q=q, k=k, v=v)), OP_TOL) < OP_TOL
assert show("attention, causal mask", check_pair(attention_forward, attention_backward, dict(q=q, k=k, v=v),
                                                 kwargs={"mask": causal_mask(5)}), OP_TOL) < OP_TOL

# %% [markdown]
# ## 6. Multi-head self-attention (Eq 5–8)
#
# MSA is a composition: linear ($\mathbf{U}_{qkv}$) → split into heads → attention → merge → linear ($\mathbf{U}_{msa}$).
# Its backward runs the pieces' backwards in the reverse order. Splitting and merging heads are reshapes and transposes,
# so the backward of a split is a merge and vice versa; $\bar{\mathbf{q}}, \bar{\mathbf{k}}, \bar{\mathbf{v}}$ are merged and
# concatenated back into one $(B, T, 3D)$ array for the backward of $\mathbf{U}_{qkv}$. Nothing new to derive: the check is
# that the pieces were put together right.

# %%
msa_in = dict(z=r(2, 5, 6), U_qkv=r(6, 18), U_qkv_bias=r(18), U_msa=r(6, 6), U_msa_bias=r(6))
errors = check_pair(msa_forward, msa_backward, msa_in, kwargs={"heads": 2})
assert show("msa (2 heads)", errors, OP_TOL) < OP_TOL
errors = check_pair(msa_forward, msa_backward, msa_in, kwargs={"heads": 3, "mask": causal_mask(5)})
assert show("msa (3 heads, causal mask)", errors, OP_TOL) < OP_TOL

# %% [markdown] nbgrader={"grade": true, "grade_id": "nb05-q-layernorm-backward", "locked": false, "points": 3, "schema_version": 3, "solution": true}
# ## 7. LayerNorm
#
# Per token, with $\sigma = \sqrt{\operatorname{var}(\mathbf{x}) + \epsilon}$, $\hat{\mathbf{x}} = (\mathbf{x} - \mu)/\sigma$ and
# $\mathbf{o} = \boldsymbol\gamma \odot \hat{\mathbf{x}} + \boldsymbol\beta$. The parameters are easy:
# $\bar{\boldsymbol\gamma} = \sum_n \bar{\mathbf{o}}_n \odot \hat{\mathbf{x}}_n$, $\bar{\boldsymbol\beta} = \sum_n \bar{\mathbf{o}}_n$,
# and $\bar{\hat{\mathbf{x}}} = \bar{\mathbf{o}} \odot \boldsymbol\gamma$. The input is harder, because $\mu$ and $\sigma$
# depend on all of $\mathbf{x}$. Shapes: $\bar{\mathbf{x}}$ like $\mathbf{x}$ $(\ldots, D)$; $\bar{\boldsymbol\gamma},
# \bar{\boldsymbol\beta}$ $(D)$.
#
# **Exercise nb05-q-layernorm-backward** (3 points). Derive $\bar{\mathbf{x}}$ from $\bar{\hat{\mathbf{x}}}$ for one
# token: first $\partial\mu/\partial x_i$ and $\partial\sigma/\partial x_i$, then the Jacobian
# $\partial\hat{x}_j/\partial x_i$, then $\bar{\mathbf{x}}$ written with means over the token's $D$ features, without
# the Jacobian. Write it in `layernorm_backward` (exercise layernorm-backward): the cell below checks it numerically.
#
# *7절: 층 정규화의 역전파.*
#
# ### BEGIN SOLUTION
# $\mu = \frac1D\sum_j x_j$ gives $\partial\mu/\partial x_i = 1/D$. The variance is a mean of squares,
# $\sigma^2 = \frac1D\sum_j (x_j - \mu)^2 + \epsilon$, so
# $2\sigma\,\partial\sigma/\partial x_i = \frac2D\sum_j (x_j - \mu)(\delta_{ij} - \frac1D) = \frac2D(x_i - \mu)$: the
# $\frac1D$ term vanishes because $\sum_j (x_j - \mu) = 0$. Hence
# $\partial\sigma/\partial x_i = (x_i - \mu)/(D\sigma) = \hat{x}_i/D$, and the quotient rule on
# $\hat{x}_j = (x_j - \mu)/\sigma$ gives
#
# $$\frac{\partial \hat{x}_j}{\partial x_i} = \frac{1}{\sigma}\Big(\delta_{ij} - \frac1D - \frac{\hat{x}_i\hat{x}_j}{D}\Big)
# \quad\Longrightarrow\quad
# \bar{x}_i = \sum_j \bar{\hat{x}}_j\,\frac{\partial \hat{x}_j}{\partial x_i}, \qquad
# \bar{\mathbf{x}} = \frac{1}{\sigma}\Big(\bar{\hat{\mathbf{x}}} - \operatorname{mean}(\bar{\hat{\mathbf{x}}})
# - \hat{\mathbf{x}}\,\operatorname{mean}(\bar{\hat{\mathbf{x}}} \odot \hat{\mathbf{x}})\Big).$$
#
# The two subtracted terms are the price of normalising: the gradient has no component that would shift the token's
# mean ($\sum_i \bar{x}_i = 0$ exactly) or scale its spread ($\sum_i \bar{x}_i\hat{x}_i = 0$ up to the effect of
# $\epsilon$).
# ### END SOLUTION

# %%
x, gamma, beta = 2 * r(2, 3, 6) + 1, r(6), r(6)
eps = 1e-6
out, cache = layernorm_forward(x, gamma, beta, eps)
g = r(*out.shape)
dx, dgamma, dbeta = layernorm_backward(g, cache)
print(f"x {x.shape} -> dx {dx.shape}, dgamma {dgamma.shape}, dbeta {dbeta.shape}")
errors = check_pair(layernorm_forward, layernorm_backward, dict(x=x, gamma=gamma, beta=beta), kwargs={"eps": eps})
assert show("layernorm", errors, OP_TOL) < OP_TOL

# %% [markdown] nbgrader={"grade": true, "grade_id": "nb05-d-gelu", "locked": false, "points": 1, "schema_version": 3, "solution": true}
# ## 8. GELU
#
# Elementwise, so the backward is a product with the local derivative: $\bar{x} = \bar{o}\cdot \text{GELU}'(x)$.
#
# **Exercise nb05-d-gelu** (1 point). Derive $\text{GELU}'(x)$ for both forms: exact, $x\Phi(x)$, and tanh,
# $\tfrac12 x(1 + \tanh u)$ with $u = \sqrt{2/\pi}(x + 0.044715x^3)$ (exercises gelu-exact-derivative,
# gelu-tanh-derivative).
#
# *8절: 두 GELU의 도함수.*
#
# ### BEGIN SOLUTION
# * exact, $x\Phi(x)$: $\;\text{GELU}'(x) = \Phi(x) + x\,\varphi(x)$, with $\varphi(x) = e^{-x^2/2}/\sqrt{2\pi}$ (product rule, $\Phi' = \varphi$);
# * tanh, $\tfrac12 x(1 + \tanh u)$ with $u = \sqrt{2/\pi}(x + 0.044715x^3)$:
#   $\;\text{GELU}'(x) = \tfrac12(1 + \tanh u) + \tfrac12 x\,(1 - \tanh^2 u)\,\sqrt{2/\pi}\,(1 + 3\cdot0.044715\,x^2)$.
# ### END SOLUTION

# %%
x = 2 * r(4, 6)
for form in ("exact", "tanh"):
    assert show(f"gelu {form}", check_pair(gelu_forward, gelu_backward, {"x": x}, kwargs={"approximate": form}),
                OP_TOL) < OP_TOL

# %% [markdown] nbgrader={"grade": true, "grade_id": "nb05-d-residual", "locked": false, "points": 1, "schema_version": 3, "solution": true}
# ## 9. The MLP, the residual connections and the encoder block
#
# The MLP is linear → GELU → linear: its backward is those three backwards in reverse (exercise mlp-backward). A
# **residual** $\mathbf{o} = F(\mathbf{z}) + \mathbf{z}$ has two paths from $\mathbf{z}$ to $\mathbf{o}$.
#
# **Exercise nb05-d-residual** (1 point). Derive $\bar{\mathbf{z}}$ for a residual, then write the backward of one
# encoder block (Eq 2–3) as a sequence of steps from $\bar{\mathbf{z}}_\ell$ to $\bar{\mathbf{z}}_{\ell-1}$ (exercise
# encoder-block-backward). What reaches $\mathbf{z}$ whatever the branch does?
#
# *9절: 잔차 연결, 그리고 인코더 블록의 역전파를 단계로.*
#
# ### BEGIN SOLUTION
# The gradients of the two paths add:
#
# $$\bar{\mathbf{z}} = \bar{\mathbf{o}} + \Big(\frac{\partial F}{\partial \mathbf{z}}\Big)^{\!\top} \bar{\mathbf{o}}.$$
#
# The first term is the "gradient highway": it reaches $\mathbf{z}$ unchanged, whatever the branch does. In an encoder
# block (Eq 2–3) this happens twice: $\bar{\mathbf{z}}'$ = (gradient from Eq 3's residual) + (gradient through
# $MLP$ and $LN$), then $\bar{\mathbf{z}}_{\ell-1}$ = $\bar{\mathbf{z}}'$ + (gradient through $MSA$ and $LN$).
# ### END SOLUTION

# %% [markdown]
# `check_pair` passes arrays as positional arguments, so for the block we wrap its parameter dict in a small function.

# %%
mlp_in = dict(x=r(2, 3, 4), W1=r(4, 7), b1=r(7), W2=r(7, 4), b2=r(4))
assert show("mlp", check_pair(mlp_forward, mlp_backward, mlp_in), OP_TOL) < OP_TOL

D, M, heads = 6, 10, 2
block = {"ln1.gamma": 1 + 0.5 * r(D), "ln1.beta": 0.5 * r(D), "U_qkv": 0.5 * r(D, 3 * D), "U_qkv_bias": 0.5 * r(3 * D),
         "U_msa": 0.5 * r(D, D), "U_msa_bias": 0.5 * r(D), "ln2.gamma": 1 + 0.5 * r(D), "ln2.beta": 0.5 * r(D),
         "mlp.W1": 0.5 * r(D, M), "mlp.b1": 0.5 * r(M), "mlp.W2": 0.5 * r(M, D), "mlp.b2": 0.5 * r(D)}


def block_forward(z, *arrays):
    out, A, cache = encoder_block_forward(z, dict(zip(BLOCK_KEYS, arrays)), heads)
    return out, A, cache


def block_backward(dout, cache):
    dz, grads = encoder_block_backward(dout, cache)
    return (dz, *(grads[k] for k in BLOCK_KEYS))


errors = check_pair(block_forward, block_backward, {"z": r(2, 4, D), **block})
assert show("encoder block", errors, MODEL_TOL) < MODEL_TOL

# %% [markdown] nbgrader={"grade": true, "grade_id": "nb05-d-cross-entropy", "locked": false, "points": 2, "schema_version": 3, "solution": true}
# ## 10. The loss, and the whole model
#
# Softmax cross-entropy of logits $\mathbf{s}$ with label $c$: $\ell = -\log \operatorname{softmax}(\mathbf{s})_c$, averaged
# over the batch.
#
# **Exercise nb05-d-cross-entropy** (2 points). Derive $\bar{\mathbf{s}}_b$ for image $b$ from the softmax Jacobian of
# section 4 and $\partial \ell/\partial a_c$; then for label smoothing, where the target puts $1 - \alpha$ on the label and
# $\alpha / K$ on every class (exercise cross-entropy).
#
# *10절: 레이블 스무딩이 있는 교차 엔트로피의 기울기.*
#
# ### BEGIN SOLUTION
# $\partial \ell/\partial a_c = -1/a_c$ and zero for the other classes; through the Jacobian,
# $\bar{s}_i = -\frac1{a_c} a_c(\delta_{ic} - a_i) = a_i - \delta_{ic}$, and the mean over the batch divides by $B$:
#
# $$\bar{\mathbf{s}}_b = \frac1B\big(\operatorname{softmax}(\mathbf{s}_b) - \text{onehot}(c_b)\big).$$
#
# With a smoothed target $\mathbf{t}$ ($\sum_k t_k = 1$) the loss is $-\sum_k t_k \log a_k$, and the same steps give
# $\bar{\mathbf{s}}_b = (\operatorname{softmax}(\mathbf{s}_b) - \mathbf{t}_b)/B$.
# ### END SOLUTION

# %% [markdown]
# Then the whole model: `vitnp.vit_backward` chains every backward above, from the head down to $\mathbf{E}$, and returns a
# dict with one gradient per parameter. `vitnp.selfcheck.check_model` checks **every entry of every parameter** of a tiny
# ViT (6×4 images with 2 channels, $P = 2$, $D = 8$, 2 blocks, 1,243 numbers) against centred differences. The full run also
# checks every combination of readout (token / gap), GELU (exact / tanh) and position embedding (learned / sine-cosine / none),
# with dropout and with a causal mask; fast mode checks two of them.

# %%
logits, labels = 3 * r(4, 5), rng.integers(0, 5, 4)
loss, dlogits = softmax_cross_entropy(logits, labels)
print(f"cross-entropy: loss {loss:.3f}, dlogits {dlogits.shape}")
errors = check_gradients(lambda: softmax_cross_entropy(logits, labels)[0], {"logits": logits}, {"logits": dlogits})
assert show("cross-entropy", errors, OP_TOL) < OP_TOL

variants = [dict(), dict(classifier="gap")]
if not FAST:
    variants += [dict(classifier=c, gelu=gl, pos_embedding=pe) for c in ("token", "gap") for gl in ("exact", "tanh")
                 for pe in ("learned", "sincos", "none") if (c, gl, pe) not in {("token", "exact", "learned"),
                                                                                ("gap", "exact", "learned")}]
print(f"{'model variant':<46} {'params':>6} {'worst rel. error':>17} {'seconds':>8}")
for overrides in variants:
    cfg = tiny_config(**overrides)
    t0 = time.perf_counter()
    errors = check_model(cfg)
    worst = max(errors.values())
    print(f"{cfg.classifier + '/' + cfg.gelu + '/' + cfg.pos_embedding:<46} {vitnp.count_params(cfg):>6} "
          f"{worst:>17.1e} {time.perf_counter() - t0:>8.1f}")
    assert worst < MODEL_TOL
    if not overrides:
        default_errors = errors                             # the per-parameter table below
if not FAST:
    for name, cfg, kw in [("dropout 0.1 (same mask every evaluation)", tiny_config(dropout=0.1, attention_dropout=0.1),
                           dict(train=True)),
                          ("causal mask", tiny_config(), dict(attn_mask=causal_mask(7)))]:
        t0 = time.perf_counter()
        worst = max(check_model(cfg, **kw).values())
        print(f"{name:<46} {vitnp.count_params(cfg):>6} {worst:>17.1e} {time.perf_counter() - t0:>8.1f}")
        assert worst < MODEL_TOL

# %% [markdown]
# The errors by parameter, for the default variant (token / exact / learned, from the loop above): every array of every
# block, the embeddings and the head, each checked entry by entry.

# %%
shapes = vitnp.param_shapes(tiny_config())
for name, err in default_errors.items():
    print(f"  {name:<22} {str(shapes[name]):<10} {err:.1e}")
assert set(default_errors) == set(shapes) and max(default_errors.values()) < MODEL_TOL


# %% [markdown]
# ## 11. What a wrong backward looks like
#
# A gradient check earns its keep by failing. Below are four plausible mistakes, each made by a small wrapper around
# the library's correct backward (the library itself is not changed):
#
# 1. **LayerNorm that treats $\mu$ and $\sigma$ as constants**: $\bar{\mathbf{x}} = \bar{\hat{\mathbf{x}}}/\sigma$, dropping the two
#    correction terms of section 7.
# 2. **A class token that forgets the batch sum**: $\bar{\mathbf{x}}_\text{class} = \bar{\mathbf{z}}_{0,0}$, the first image's
#    gradient only.
# 3. **Attention that forgets the scale** $1/\sqrt{D_h}$ in $\bar{\mathbf{q}}$ and $\bar{\mathbf{k}}$.
# 4. **LayerNorm that forgets $\gamma$**: $\bar{\hat{\mathbf{x}}} = \bar{\mathbf{o}}$ instead of $\bar{\mathbf{o}} \odot \boldsymbol\gamma$.
#
# The last two columns of the table are the lesson. Mistake 2 is invisible with a batch of one image, and mistake 4 with
# $\boldsymbol\gamma = 1$, which is exactly how LayerNorm is initialised. That is why the checks use batches of several
# images and random parameters, never the initial values.

# %%
def ln_backward(dout, cache, *, bug=None):
    """The library's LayerNorm backward, or one of two broken versions of it."""
    inv_std, gamma = cache[1], cache[2]                           # layernorm_forward keeps (x̂, 1/σ, γ)
    if bug == "forgets gamma":                                    # x̂'s gradient taken as ō instead of ō ⊙ γ
        return layernorm_backward(dout, (cache[0], inv_std, np.ones_like(gamma)))
    dx, dgamma, dbeta = layernorm_backward(dout, cache)
    if bug == "mu, sigma constant":                               # x̂ = (x − μ)/σ as if μ and σ were constants
        dx = dout * gamma * inv_std
    return dx, dgamma, dbeta


def cls_backward(dz, cache, *, bug=None):
    dX, dx_class = class_token_backward(dz, cache)
    return dX, (dz[0, 0] if bug == "no batch sum" else dx_class)  # the bug: the first image's gradient only


def att_backward(dout, cache, *, bug=None):
    dq, dk, dv = attention_backward(dout, cache)
    if bug == "no scale":                                         # dq and dk without their factor 1/√D_h
        dq, dk = dq * np.sqrt(dout.shape[-1]), dk * np.sqrt(dout.shape[-1])
    return dq, dk, dv


def check(fwd, bwd, inputs, bug):
    return max(check_pair(fwd, lambda d, c: bwd(d, c, bug=bug), inputs).values())


ln_in = dict(x=2 * r(3, 4, 6) + 1, gamma=1 + 0.5 * r(6), beta=r(6))
ln_in_gamma1 = dict(ln_in, gamma=np.ones(6))
cls_in = dict(X=r(3, 4, 5), x_class=r(5))
cls_in_b1 = dict(X=r(1, 4, 5), x_class=r(5))
att_in = dict(q=r(2, 5, 4), k=r(2, 5, 4), v=r(2, 5, 4))

rows = [  # (mistake, forward, backward, general inputs, special inputs or None, bug)
    ("1. LN: mu, sigma treated as constants", layernorm_forward, ln_backward, ln_in, None, "mu, sigma constant"),
    ("2. class token: no sum over the batch", class_token_forward, cls_backward, cls_in, cls_in_b1, "no batch sum"),
    ("3. attention: forgets 1/sqrt(D_h)", attention_forward, att_backward, att_in, None, "no scale"),
    ("4. LN: forgets gamma", layernorm_forward, ln_backward, ln_in, ln_in_gamma1, "forgets gamma"),
]
print(f"{'backward':<40} {'correct':>9} {'broken':>9} {'caught?':>8} {'broken, B=1 or gamma=1':>23}")
for name, fwd, bwd, inputs, special, bug in rows:
    good, bad = check(fwd, bwd, inputs, None), check(fwd, bwd, inputs, bug)
    hidden = check(fwd, bwd, special, bug) if special is not None else None
    print(f"{name:<40} {good:>9.1e} {bad:>9.1e} {'yes' if bad > OP_TOL else 'NO':>8} "
          f"{'' if hidden is None else f'{hidden:.1e} (passes!)' if hidden < OP_TOL else f'{hidden:.1e}':>23}")
    assert good < OP_TOL < bad                              # the correct pair passes, the broken one is caught
    if hidden is not None:
        assert hidden < OP_TOL                              # … but not with a batch of 1 / with gamma = 1

# %% [markdown]
# ## 12. Choosing $h$, and why float64
#
# The centred difference has two errors pulling in opposite directions: the **truncation** error of the formula, about
# $h^2 f'''/6$, shrinks with $h$; the **rounding** error, about $\varepsilon_\text{machine} |f| / h$, grows as $h$ shrinks. The
# best $h$ sits in between. The plot shows the relative error of the numerical LayerNorm gradient against the (correct)
# analytic one for a range of $h$, in float64 ($\varepsilon \approx 2.2\cdot10^{-16}$). In float32 ($\varepsilon \approx 1.2\cdot10^{-7}$)
# the best achievable error is around $10^{-3}$ to $10^{-2}$, far too coarse to tell a subtle bug from rounding, which
# is why `numerical_gradient` refuses float32 arrays.

# %%
x, gamma, beta = 2 * r(2, 3, 6) + 1, 1 + 0.5 * r(6), r(6)
out, cache = layernorm_forward(x, gamma, beta)
g = r(*out.shape)
dx = layernorm_backward(g, cache)[0]
steps = np.logspace(-1, -12, 23 if not FAST else 12)
errs = [rel_error(dx, numerical_gradient(lambda: float((layernorm_forward(x, gamma, beta)[0] * g).sum()), x, h=h))
        for h in steps]
best = steps[int(np.argmin(errs))]
print(f"best h ≈ {best:.0e}: relative error {min(errs):.1e};  at h = 1e-6: "
      f"{errs[int(np.argmin(np.abs(np.log10(steps) + 6)))]:.1e}")
assert min(errs) < 1e-8 and errs[0] > 1e-4 and errs[-1] > 1e-6

fig, ax = plt.subplots(figsize=(6.5, 3.8))
ax.loglog(steps, errs, "o-", label="relative error, float64")
big, small = steps[steps >= 1e-6], steps[steps <= 1e-4]
ax.loglog(big, errs[0] * (big / steps[0]) ** 2, ":", color="gray", label="∝ h² (truncation)")
ax.loglog(small, errs[-1] * steps[-1] / small, "--", color="gray", label="∝ ε/h (rounding)")
ax.axvline(1e-6, color="tab:red", lw=0.8, label="h used by vitnp.gradcheck (1e-6)")
ax.set_xlabel("step h")
ax.set_ylabel("max |analytic − numeric| / scale")
ax.set_title("Centred differences: truncation vs rounding error")
ax.legend(fontsize=8)
plt.show()

try:
    numerical_gradient(lambda: 0.0, np.zeros(3, dtype=np.float32))
except TypeError as err:
    print("float32 is refused:", err)

# %% [markdown]
# **Summary.** Every backward is a few lines that follow from the chain rule: linear layers transpose their matrix and sum
# over shared uses, flattening permutes back, softmax and LayerNorm subtract what their normalisation takes away, residuals
# add two paths. Once your backwards of `vitnp/ops/` are written, each passes the numerical check (errors around
# $10^{-9}$ or below), and so does every parameter of the whole model. Broken versions give errors of $10^{-2}$ to $1$ and
# are caught, as long as the check uses batches bigger than one and parameters away from their initial values. Next:
# [06_training](06_training.ipynb).
#
# **요약.** 모든 역전파는 연쇄 법칙에서 나오는 몇 줄입니다: 선형층은 행렬을 전치하고 공유된 사용을 모두 더하며, 평탄화는 순서를 되돌리고, 소프트맥스와 층 정규화는 정규화가 빼는 부분을 빼고, 잔차는 두 경로를 더합니다. `vitnp/ops/`의 역전파를 다 쓰면 각각이 수치 검사를 통과하고(오차 약 $10^{-9}$ 이하), 모델 전체의 모든 파라미터도 통과합니다. 망가진 버전은 $10^{-2}$에서 $1$ 사이의 오차를 내며, 배치가 1보다 크고 파라미터가 초깃값에서 벗어나 있으면 잡힙니다. 다음은 06입니다.

# %% [markdown]
# ## Exercises
#
# In this notebook the exercises are derivations, each in the section it belongs to, right after what the forward
# computes: you derive the backward on paper (a written answer, graded by hand), then write it in `vitnp/ops/` (a code
# exercise of `python -m vitnp course list`, graded by `python -m vitnp course grade`), and the section's cell checks
# it numerically. In the student edition (`python -m vitnp course build`) the model derivations are cut out.
#
# * **Exercise nb05-d-linear** (2 points) — section 1: the linear layer's three gradients, and why two are sums.
#   *1절: 선형층의 세 기울기, 그리고 둘이 합인 이유.*
# * **Exercise nb05-d-patchify** (1 point) — section 2: the backward of patch flattening.
#   *2절: 패치 평탄화의 역전파.*
# * **Exercise nb05-d-shared** (1 point) — section 3: the class token and the position embeddings.
#   *3절: 클래스 토큰과 위치 임베딩.*
# * **Exercise nb05-d-softmax** (2 points) — section 4: the softmax Jacobian, and the backward without it.
#   *4절: 소프트맥스의 야코비안, 그리고 그것 없이 쓰는 역전파.*
# * **Exercise nb05-d-attention** (2 points) — section 5: attention, line by line from the end.
#   *5절: 어텐션, 끝에서부터 한 줄씩.*
# * **Exercise nb05-q-layernorm-backward** (3 points) — section 7: the LayerNorm backward.
#   *7절: 층 정규화의 역전파.*
# * **Exercise nb05-d-gelu** (1 point) — section 8: both GELU derivatives.
#   *8절: 두 GELU의 도함수.*
# * **Exercise nb05-d-residual** (1 point) — section 9: a residual, and the encoder block's backward as steps.
#   *9절: 잔차 연결, 그리고 인코더 블록의 역전파를 단계로.*
# * **Exercise nb05-d-cross-entropy** (2 points) — section 10: the cross-entropy gradient, with label smoothing.
#   *10절: 레이블 스무딩이 있는 교차 엔트로피의 기울기.*
