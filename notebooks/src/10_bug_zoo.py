# %% [markdown]
# # 10 · A bug zoo: eight exhibits, each with one plausible mistake, and the check that shows it
#
# Terms and their Korean equivalents: [glossary (용어집)](../docs/glossary.md).
#
# Writing a ViT by hand goes wrong in a few typical places. Each of the eight **exhibits** below is a copy of a vitnp
# function (named in the exhibit) with **one plausible mistake** in it, the kind that is easy to make when writing the
# ops from the equations. The library itself is never changed. Each exhibit runs one of the checks the test suite
# uses, and its output is the symptom:
#
# * a **gradient check** (`vitnp.gradcheck.check_pair` / `check_gradients`, notebook 05): the backward is compared with
#   centred differences of the forward;
# * a **comparison with the reference**: the same inputs through the vitnp function and through the copy;
# * a **test of behaviour**: something the model or the optimiser must do, checked directly (an evaluation gives the
#   same output twice; a training step moves every trained parameter; an optimiser step matches vitnp's).
#
# **How to use it (the exercises).** For each exhibit, read the symptom, then the copy, and compare it with the vitnp
# function it copies. Answer in the question's cell: *what is wrong, on which line, and what should the line be?* Some
# questions ask more: why another check does not see it. The exhibits are copies of functions that are given in the
# course edition, not of the code exercises you write, so fixing them teaches the checks without handing out an
# exercise.
#
# Every number an answer needs is printed by the code cell above it, and every cell asserts that its check tells the
# copy from the vitnp function, so the notebook fails if a check stops telling them apart.
#
# *사용법(연습 문제): 전시물마다 증상을 읽고, 복사본을 읽고, 그것이 복사한 vitnp 함수와 비교하세요. 질문 칸에 답하세요: 무엇이
# 틀렸는가, 몇 번째 줄인가, 그 줄은 무엇이어야 하는가?*

# %% [markdown]
# **Learning objectives.** After this notebook you can
#
# * read the symptom of a plausible mistake in a gradient check, a comparison with the reference or a test of behaviour;
# * find the faulty line from the per-array table of a gradient check;
# * say which mistakes a gradient check cannot catch, and which test does.
#
# **학습 목표.** 이 노트북을 마치면
#
# * 그럴듯한 실수의 증상을 기울기 검사, 기준 구현과의 비교, 동작 테스트에서 읽는다;
# * 기울기 검사의 배열별 표에서 잘못된 줄을 찾는다;
# * 기울기 검사가 잡지 못하는 실수와, 그것을 잡는 테스트를 말한다.

# %%
import math

import numpy as np

import vitnp
from vitnp.course.grade import format_table, grade
from vitnp.gradcheck import MODEL_TOL, OP_TOL, check_pair, numerical_gradient, rel_error
from vitnp.model import encoder_backward, head_backward
from vitnp.ops.attention import attention_forward, merge_heads, msa_forward, split_heads
from vitnp.ops.block import BLOCK_KEYS, encoder_block_backward, encoder_forward
from vitnp.ops.conv import maxpool_backward, maxpool_forward
from vitnp.ops.dropout import dropout_backward, dropout_forward
from vitnp.ops.gelu import gelu_backward, gelu_forward
from vitnp.ops.linear import linear_backward, linear_forward
from vitnp.ops.loss import softmax_cross_entropy
from vitnp.ops.mlp import mlp_backward, mlp_forward
from vitnp.ops.patches import patchify_backward, patchify_forward
from vitnp.optim import AdamW, decays
from vitnp.selfcheck import tiny_config
from vitnp.course.notebook import setup

FAST = setup(precision=3)   # nothing here is heavy: fast mode runs the same cells

rng = np.random.default_rng(0)
r = lambda *shape: rng.standard_normal(shape)                   # noqa: E731  random float64 array
ZOO = []                                                        # one row per exhibit, printed at the end


def fmt(v):
    return "0" if v == 0 else f"{v:.1e}"


def record(exhibit, check, broken, correct):
    """Keep an exhibit's measured numbers for the summary, and print them."""
    ZOO.append((exhibit, check, broken, correct))
    print(f"-> {check}: with the copy {fmt(broken)}, with vitnp {fmt(correct)}")


# %% [markdown]
# ## Exhibit 1. Max-pooling's backward (the hybrid stem, §3.1)
#
# `vitnp.ops.conv.maxpool_backward` goes back through $\text{out} = \max$ over each non-overlapping $s \times s$ window
# of a channels-last map; the hybrid ViT's stem pools after each convolution. The copy below takes the same cache. The
# check: `check_pair` with vitnp's `maxpool_forward` and this backward, on 2 maps of 6×4 with 3 channels, 2×2 windows.

# %%
def maxpool_backward_copy(dout, cache):
    """dx (B, H, W, C) for out = max over each size×size window of x."""
    arg, shape, size = cache
    B, H, W, C = shape
    Ho, Wo = dout.shape[1:3]
    dwin = np.repeat(dout[..., None], size * size, axis=-1) / (size * size)    # (B, Ho, Wo, C, size²)
    dwin = dwin.reshape(B, Ho, Wo, C, size, size).transpose(0, 1, 4, 2, 5, 3)  # (B, Ho, s, Wo, s, C)
    dx = np.zeros(shape, dtype=dout.dtype)
    dx[:, :Ho * size, :Wo * size, :] = dwin.reshape(B, Ho * size, Wo * size, C)
    return dx


x = r(2, 6, 4, 3)
broken = check_pair(maxpool_forward, maxpool_backward_copy, {"x": x})["x"]
correct = check_pair(maxpool_forward, maxpool_backward, {"x": x})["x"]
assert broken > 1e-2 and correct < OP_TOL
record("1. maxpool_backward_copy", "check_pair relative error", broken, correct)

# %% [markdown] nbgrader={"grade": true, "grade_id": "nb10-exhibit-1", "locked": false, "points": 1, "schema_version": 3, "solution": true}
# **Exercise nb10-exhibit-1** (1 point). What is wrong in `maxpool_backward_copy`, and on which line? What should the
# line do instead?
#
# ### BEGIN SOLUTION
# The `dwin = np.repeat(…) / (size * size)` line spreads each window's gradient evenly over its $s^2$ inputs: that is
# the backward of **average** pooling. The maximum depends on one input only (the argmax, which the cache holds in
# `arg`), with derivative 1, so the whole gradient must go to that input and 0 to the others: put `dout` at position
# `arg` of a zero window (`np.put_along_axis(dwin, arg[..., None], dout[..., None], -1)` on `dwin = np.zeros(…)`). The
# gradient check fails by a wide margin (its relative error is printed above) against about 1e-10 for vitnp's backward.
# ### END SOLUTION

# %% [markdown]
# ## Exhibit 2. The GELU forward, tanh form (Eq 3)
#
# With $u = \sqrt{2/\pi}\,(x + 0.044715\,x^3)$, the tanh form is $\tfrac12 x(1 + \tanh u)$, computed by
# `vitnp.ops.gelu.gelu_forward(x, "tanh")`. The copy below keeps the same cache, so that vitnp's `gelu_backward` goes
# with it. The checks: `check_pair` of this forward with vitnp's backward on inputs of scale 2 (the pre-activations of
# a trained MLP are of that order) and of scale 0.1, and the largest difference from vitnp's forward.

# %%
def gelu_tanh_forward_copy(x, approximate="tanh"):
    """½ x (1 + tanh u), u = √(2/π)(x + 0.044715 x³); returns (out, cache) like vitnp's gelu_forward."""
    u = math.sqrt(2.0 / math.pi) * (x + 0.044715 * x * x)
    return 0.5 * x * (1.0 + np.tanh(u)), (x, approximate)


for scale in (2.0, 0.1):
    x = scale * r(4, 6)
    broken = check_pair(gelu_tanh_forward_copy, gelu_backward, {"x": x})["x"]
    correct = check_pair(gelu_forward, gelu_backward, {"x": x}, kwargs={"approximate": "tanh"})["x"]
    gap = np.abs(gelu_tanh_forward_copy(x)[0] - gelu_forward(x, "tanh")[0]).max()
    print(f"inputs of scale {scale}: relative error with the copy {broken:.1e}, with vitnp {correct:.1e}; "
          f"largest difference of the outputs {gap:.1e}")
    assert broken > (1e-2 if scale == 2.0 else 1e-6) and correct < OP_TOL
    if scale == 2.0:
        record("2. gelu_tanh_forward_copy", "check_pair relative error", broken, correct)

# %% [markdown] nbgrader={"grade": true, "grade_id": "nb10-exhibit-2", "locked": false, "points": 1, "schema_version": 3, "solution": true}
# **Exercise nb10-exhibit-2** (1 point). What is wrong in `gelu_tanh_forward_copy`, and on which line? Why does a
# gradient check catch a mistake in a *forward*? Why is the error so much smaller for the inputs of scale 0.1, and why
# is it still caught there?
#
# ### BEGIN SOLUTION
# The `u = …` line has `x * x` where the formula has $x^3$: it should read `(x + 0.044715 * x * x * x)`. The gradient
# check compares vitnp's backward, the derivative of the *right* formula, with centred differences of *this* forward,
# so a forward that differs from what its backward differentiates shows up, though no backward was changed. The wrong
# term differs from the right one by $0.044715\,(x^2 - x^3)$, which is tiny for small $|x|$: the relative error at scale
# 0.1 is orders of magnitude below the one at scale 2 (both printed above). It is still caught because a correct pair
# gives about 1e-10 or less, far below the tolerance 1e-7; but a check run only on small inputs would hide most of the
# mistake, so the checks use inputs of the size a trained model sees.
# ### END SOLUTION

# %% [markdown]
# ## Exhibit 3. The encoder's backward over $L$ blocks (Eq 2–3)
#
# `vitnp.ops.block.encoder_backward` goes back through $L$ encoder blocks, given the caches that `encoder_forward`
# kept, one per block, and returns $\bar{\mathbf{z}}_0$ and the list of the $L$ blocks' gradient dicts. The copy below has
# one line changed. The check: `check_pair` on an encoder of 2 blocks (2 images, 4 tokens, D = 6, 2 heads), every input
# and parameter; the table shows the error of each array.

# %%
def encoder_backward_copy(dout, caches):
    """Returns dz₀ (B, T, D) and the list of the L blocks' gradient dicts."""
    grads = []
    for c in caches:
        dout, g = encoder_block_backward(dout, c)
        grads.append(g)
    return dout, grads[::-1]


D, M, heads = 6, 10, 2


def random_block():
    return {"ln1.gamma": 1 + 0.5 * r(D), "ln1.beta": 0.5 * r(D), "U_qkv": 0.5 * r(D, 3 * D),
            "U_qkv_bias": 0.5 * r(3 * D), "U_msa": 0.5 * r(D, D), "U_msa_bias": 0.5 * r(D),
            "ln2.gamma": 1 + 0.5 * r(D), "ln2.beta": 0.5 * r(D), "mlp.W1": 0.5 * r(D, M), "mlp.b1": 0.5 * r(M),
            "mlp.W2": 0.5 * r(M, D), "mlp.b2": 0.5 * r(D)}


blocks = [random_block(), random_block()]
encoder_in = {"z": r(2, 4, D), **{f"{l}.{k}": v for l, p in enumerate(blocks) for k, v in p.items()}}


def two_blocks_forward(z, *arrays):
    n = len(BLOCK_KEYS)
    return encoder_forward(z, [dict(zip(BLOCK_KEYS, arrays[:n])), dict(zip(BLOCK_KEYS, arrays[n:]))], heads)


def as_tuple(backward):
    """check_pair wants the gradients as a tuple in the order of the inputs."""
    def wrapped(dout, caches):
        dz, grads = backward(dout, caches)
        return (dz, *(g[k] for g in grads for k in BLOCK_KEYS))
    return wrapped


broken = check_pair(two_blocks_forward, as_tuple(encoder_backward_copy), encoder_in)
correct = check_pair(two_blocks_forward, as_tuple(encoder_backward), encoder_in)
print(f"{'array':<14} {'with the copy':>13} {'vitnp':>9}")
for name in broken:
    print(f"{name:<14} {broken[name]:>13.1e} {correct[name]:>9.1e}")
assert max(correct.values()) < MODEL_TOL and broken["1.mlp.b2"] < MODEL_TOL
assert min(v for k, v in broken.items() if k != "1.mlp.b2") > 1e-2
record("3. encoder_backward_copy", "check_pair relative error", max(broken.values()), max(correct.values()))

# %% [markdown] nbgrader={"grade": true, "grade_id": "nb10-exhibit-3", "locked": false, "points": 1, "schema_version": 3, "solution": true}
# **Exercise nb10-exhibit-3** (1 point). What is wrong in `encoder_backward_copy`, and on which line? Why does nothing
# complain about shapes, and what would have hidden the mistake?
#
# ### BEGIN SOLUTION
# The loop `for c in caches:` goes through the blocks in the forward's order; a backward must start at the last block,
# `for c in reversed(caches):`, because $\bar{\mathbf{z}}_L$ is the gradient at block $L$'s output. The copy feeds the
# output's gradient to the first block's cache and so on, so every array is wrong but one: the last block's
# `mlp.b2`, whose gradient is the sum of the output's gradient and needs nothing from the cache (the copy hands it to
# the right block only because of the final `grads[::-1]`). All blocks have the same shapes, so every product still
# fits: nothing fails but the numbers. With a single block (L = 1) the order does not matter and the check passes,
# which is why the check runs on an encoder of 2 blocks.
# ### END SOLUTION

# %% [markdown]
# ## Exhibit 4. The MLP's forward (Eq 3)
#
# `vitnp.ops.mlp.mlp_forward` computes $\text{dropout}(\text{GELU}(\mathbf{x}\mathbf{W}_1 + \mathbf{b}_1)\mathbf{W}_2 +
# \mathbf{b}_2)$, with dropout after each dense layer. The copy below is called exactly like the reference, with
# `train=False` at evaluation. Two checks: the gradient check with a fixed dropout seed, and a **test of behaviour**:
# evaluating the same input twice must give the same output, equal to the output without dropout.

# %%
def mlp_forward_copy(x, W1, b1, W2, b2, gelu="exact", dropout=0.0, rng=None, train=False):
    """MLP(x) = dropout(GELU(x W1 + b1) W2 + b2), with dropout on the hidden layer too."""
    h, c1 = linear_forward(x, W1, b1)                 # (..., M)
    h, c_act = gelu_forward(h, gelu)
    h, c_d1 = dropout_forward(h, dropout, rng)
    out, c2 = linear_forward(h, W2, b2)               # (..., D)
    out, c_d2 = dropout_forward(out, dropout, rng)
    return out, (c1, c_act, c_d1, c2, c_d2)


mlp_in = dict(x=r(2, 3, 4), W1=r(4, 7), b1=r(7), W2=r(7, 4), b2=r(4))
seeded = {"dropout": 0.3, "rng": lambda: np.random.default_rng(3), "train": False}   # the same mask at every call
grad_err = max(check_pair(mlp_forward_copy, mlp_backward, mlp_in, kwargs=seeded).values())
print(f"gradient check with a fixed seed: relative error {grad_err:.1e}")
assert grad_err < OP_TOL

generator = np.random.default_rng(0)                  # one generator for the whole run, as in training code
evaluate = {"dropout": 0.3, "rng": generator, "train": False}
out1, out2 = (mlp_forward_copy(*mlp_in.values(), **evaluate)[0] for _ in range(2))
ref1, ref2 = (mlp_forward(*mlp_in.values(), **evaluate)[0] for _ in range(2))
no_dropout = mlp_forward(*mlp_in.values())[0]
broken, correct = np.abs(out1 - out2).max(), np.abs(ref1 - ref2).max()
print(f"two evaluations of the same input: max |out1 − out2| = {broken:.2f} with the copy, {correct} with vitnp's MLP;"
      f" vitnp's equals the output without dropout: {np.array_equal(ref1, no_dropout)}")
assert broken > 1e-2 and correct == 0.0 and np.array_equal(ref1, no_dropout)
record("4. mlp_forward_copy", "eval twice: max |out1 − out2|", broken, correct)

# %% [markdown] nbgrader={"grade": true, "grade_id": "nb10-exhibit-4", "locked": false, "points": 1, "schema_version": 3, "solution": true}
# **Exercise nb10-exhibit-4** (1 point). What is wrong in `mlp_forward_copy`, and on which lines? Why does the
# gradient check pass?
#
# ### BEGIN SOLUTION
# The two `dropout_forward(…, dropout, rng)` lines do not pass `train`. `dropout_forward`'s own default is `train=True`,
# so dropout stays on when the model is evaluated: each evaluation draws a new mask, and two evaluations of the same
# input differ (by 11.42 above), while vitnp's MLP gives identical outputs, equal to those without dropout. The fix:
# `dropout_forward(h, dropout, rng, train)` and `dropout_forward(out, dropout, rng, train)`. The gradient check cannot
# see it (3.6e-10): with a fixed seed, the forward with its mask and the backward with the same mask are a consistent
# pair. A gradient check proves that the backward matches the forward, not that the forward does what the model should
# do at test time; that needs a test of behaviour.
# ### END SOLUTION

# %% [markdown]
# ## Exhibit 5. Multi-head self-attention's forward (Eq 5–8)
#
# $MSA(\mathbf{z}) = [SA_1(\mathbf{z}); \ldots; SA_k(\mathbf{z})]\,\mathbf{U}_{msa}$, with $[\mathbf{q}, \mathbf{k}, \mathbf{v}] =
# \mathbf{z}\mathbf{U}_{qkv}$ split into heads. The copy of `vitnp.ops.attention.msa_forward` below takes the same
# arguments and returns an output of the right shape. Two checks: a **comparison with the reference** (the same inputs
# through vitnp's `msa_forward`), and the numerical gradient of $L = \sum \text{out} \odot \mathbf{g}$ with respect to
# each input: what a backward written for this forward would return, and what a gradient check would compare it with.

# %%
def msa_forward_copy(z, U_qkv, U_qkv_bias, U_msa, U_msa_bias, heads, mask=None):
    """Multi-head self-attention, Eq 5–8: z (B, T, D) -> out (B, T, D), weights (B, k, T, T), cache."""
    qkv, c_qkv = linear_forward(z, U_qkv, U_qkv_bias)                # Eq 5: (B, T, 3D)
    q, k, v = np.split(qkv, 3, axis=-1)                              # 3 × (B, T, D)
    q, k, v = split_heads(q, heads), split_heads(k, heads), split_heads(v, heads)   # 3 × (B, k, T, D_h)
    sa, A, c_att = attention_forward(q, k, v, mask)                  # Eq 6–7: (B, k, T, D_h)
    out = merge_heads(sa)                                            # Eq 8: [SA₁; …; SA_k], (B, T, D)
    return out, A, (c_qkv, c_att, heads)


msa_in = dict(z=r(2, 5, 6), U_qkv=r(6, 18), U_qkv_bias=r(18), U_msa=r(6, 6), U_msa_bias=r(6))
out_copy = msa_forward_copy(*msa_in.values(), heads=2)[0]
out_ref = msa_forward(*msa_in.values(), heads=2)[0]
broken, correct = rel_error(out_copy, out_ref), rel_error(out_ref, out_ref)
g = r(*out_copy.shape)
loss = lambda: float((msa_forward_copy(*msa_in.values(), heads=2)[0] * g).sum())     # noqa: E731
numeric = {name: np.abs(numerical_gradient(loss, array)).max() for name, array in msa_in.items()}
print(f"output {out_copy.shape} against vitnp's msa_forward {out_ref.shape}: relative error {broken:.2f}")
print("largest entry of the numerical gradient of L: " + ", ".join(f"{k} {v:.1e}" for k, v in numeric.items()))
assert broken > 1e-2 and correct == 0.0 and numeric["U_msa"] == numeric["U_msa_bias"] == 0.0
assert min(numeric[k] for k in ("z", "U_qkv", "U_qkv_bias")) > 1e-3
record("5. msa_forward_copy", "rel. error against vitnp's msa_forward", broken, correct)

# %% [markdown] nbgrader={"grade": true, "grade_id": "nb10-exhibit-5", "locked": false, "points": 1, "schema_version": 3, "solution": true}
# **Exercise nb10-exhibit-5** (1 point). What is wrong in `msa_forward_copy`, and on which line? Why do the shapes not
# reveal it, and why would a gradient check of this forward with a backward written for it pass?
#
# ### BEGIN SOLUTION
# The line `out = merge_heads(sa)` stops after the concatenation of Eq 8 and never multiplies by $\mathbf{U}_{msa}$ (nor
# adds its bias): it should be `out, c_out = linear_forward(merge_heads(sa), U_msa, U_msa_bias)`, with `c_out` kept in
# the cache for the backward. The shapes cannot reveal it because $k \cdot D_h = D$: the concatenated heads already have
# the output's shape $(B, T, D)$. $\mathbf{U}_{msa}$ and its bias do not influence the output, so their numerical
# gradient is exactly 0 (printed above): a backward written for this forward returns zeros for them, and a gradient
# check, which compares the backward with this forward's numerical gradient, agrees. The comparison with vitnp's
# `msa_forward` shows the difference (its relative error is printed above), and the all-zero gradient of
# $\mathbf{U}_{msa}$ is the symptom in training: $D^2 + D$ parameters per block that never change.
# ### END SOLUTION

# %% [markdown]
# ## Exhibit 6. Patch flattening (the first step of Eq 1)
#
# vitnp's images are $(B, H, W, C)$, as in the paper's code. `vitnp.ops.patches.patchify_forward` cuts them into $N$
# patches of $P^2C$ numbers, each in (row, column, channel) order. The copy below has one line changed. The check: a **comparison with the reference**, and with a patch cut by hand
# (patch 0 is the top-left $P \times P$ square), on colour images ($C = 3$) and on grey images ($C = 1$, like
# Fashion-MNIST).

# %%
def patchify_forward_copy(x, P):
    """x_p = flatten(x): (B, H, W, C) -> (B, N, P²C), N = (H/P)(W/P)."""
    B, H, W, C = x.shape
    gh, gw = H // P, W // P
    x_p = x.reshape(B, C, gh, P, gw, P)           # split rows into (grid row, row in patch) ...
    x_p = x_p.transpose(0, 2, 4, 3, 5, 1)         # (B, gh, gw, P, P, C): patches first
    return x_p.reshape(B, gh * gw, P * P * C), (x.shape, P)


P = 2
measured = {}
for C in (3, 1):
    x = r(2, 6, 4, C)                                             # (B, H, W, C): 3 × 2 patches of 2 × 2
    copy, ref = patchify_forward_copy(x, P)[0], patchify_forward(x, P)[0]
    by_hand = x[:, :P, :P, :].reshape(2, -1)                      # patch 0, in (row, col, channel) order
    measured[C] = np.abs(copy - ref).max()
    print(f"C = {C}: x_p {copy.shape}; max |copy − vitnp| = {measured[C]:.2f}; patch 0 equals the hand-cut one: "
          f"copy {np.array_equal(copy[:, 0], by_hand)}, vitnp {np.array_equal(ref[:, 0], by_hand)}")
assert measured[3] > 1e-2 and measured[1] == 0.0
grad_err = check_pair(patchify_forward_copy, patchify_backward, {"x": r(2, 6, 4, 3)}, kwargs={"P": P})["x"]
print(f"gradient check of this forward with vitnp's backward: relative error {grad_err:.1e}")
assert grad_err > 1e-2
record("6. patchify_forward_copy (C = 3)", "max |x_p − vitnp's x_p|", measured[3], 0.0)

# %% [markdown] nbgrader={"grade": true, "grade_id": "nb10-exhibit-6", "locked": false, "points": 1, "schema_version": 3, "solution": true}
# **Exercise nb10-exhibit-6** (1 point). What is wrong in `patchify_forward_copy`, and on which line? Why is the
# result right for $C = 1$, and what does that mean for a course trained on Fashion-MNIST?
#
# ### BEGIN SOLUTION
# The first `reshape`, `x.reshape(B, C, gh, P, gw, P)`, reads a channels-last array as if it were channels-first. A
# reshape does not move numbers, it only re-labels them, so the axis labelled "C" actually runs over image rows, and
# the patches mix pixels from different places and channels (max difference 3.12 from vitnp's patches; patch 0 is not
# the top-left square). The line should be `x.reshape(B, gh, P, gw, P, C)`, with the channel axis last, followed by
# `transpose(0, 1, 3, 2, 4, 5)`. For $C = 1$ both layouts have the same memory order, so the bug gives exactly vitnp's
# patches (difference 0.00): a model trained and tested only on grey images never shows it, and it appears the day
# the code meets colour images. Checks must therefore use $C > 1$ (as the test suite does, with $C = 3$ and $C = 2$).
# Paired with vitnp's backward, the gradient check fails too (relative error 8.1e-01 above), because that backward
# undoes vitnp's forward, not this one.
# ### END SOLUTION

# %% [markdown]
# ## Exhibit 7. The model's backward, in a training step (Eq 1–4)
#
# Every parameter of the model receives a gradient and the optimiser updates it. The copy of `vitnp.vit_backward`
# below (with `vitnp.model.embed_backward` written inline) is used with the simplest update loop, `params[name] -= lr * grads[name]` for every gradient it returns. The check: a
# **test of behaviour**, one training step on a tiny ViT (`vitnp.selfcheck.tiny_config`: 6×4 images with 2 channels,
# $P = 2$, $D = 8$, 2 blocks), with parameters moved away from their initial values (at initialisation the head is
# zero, so no gradient at all reaches the encoder). Which parameters did the step change, and by how much?

# %%
def vit_backward_copy(dlogits, cache):
    """Gradients of every parameter from ∂loss/∂logits (B, K)."""
    g = {}
    dz = head_backward(dlogits, cache["head"], g)                                    # Eq 4
    dz, block_grads = encoder_backward(dz, cache["blocks"])                           # Eq 3, 2 for ℓ = L … 1
    for l, bg in enumerate(block_grads):
        g.update({f"blocks.{l}.{k}": v for k, v in bg.items()})
    dz = dropout_backward(dz, cache["embed"]["drop"])                                 # Eq 1
    dx_p, g["E"], g["E_bias"] = linear_backward(dz[:, 1:], cache["embed"]["E"])       # x_p E: dx_p (B, N, P²C)
    return g


def sgd_step(params, grads, lr):
    for name, grad in grads.items():
        params[name] -= lr * grad


cfg = tiny_config()
params0 = {k: v + 0.3 * rng.standard_normal(v.shape) for k, v in vitnp.init_params(cfg, seed=0).items()}
images, labels = r(4, *cfg.hw, cfg.in_channels), np.arange(4) % cfg.num_classes


def one_step(backward):
    """A copy of params0 after one SGD step (lr 0.1) on the cross-entropy of one batch; and the gradients."""
    params = {k: v.copy() for k, v in params0.items()}
    logits, cache = vitnp.vit_forward(params, images, cfg)
    _, dlogits = softmax_cross_entropy(logits, labels)
    grads = backward(dlogits, cache)
    sgd_step(params, grads, lr=0.1)
    return params, grads


after_bug, grads_bug = one_step(vit_backward_copy)
after_ref, grads_ref = one_step(vitnp.vit_backward)
moved = {name: (np.abs(after_bug[name] - params0[name]).max(), np.abs(after_ref[name] - params0[name]).max())
         for name in ("E", "x_class", "E_pos", "blocks.0.U_qkv", "head.W")}
print(f"{'parameter':<16} {'max |change|, copy':>18} {'vitnp':>9}")
for name, (b, v) in moved.items():
    print(f"{name:<16} {fmt(b):>18} {fmt(v):>9}")
assert moved["x_class"][0] == moved["E_pos"][0] == 0.0 and min(moved["x_class"][1], moved["E_pos"][1]) > 1e-4
missing = sorted(set(params0) - set(grads_bug))
print("parameters without a gradient:", missing)
try:
    AdamW({k: v.copy() for k, v in params0.items()}, lr=1e-3).step(params0, grads_bug)
except ValueError as err:
    print("vitnp.optim.AdamW refuses the gradients:", err)
else:
    raise AssertionError("AdamW accepted a gradient dict with missing keys")
record("7. vit_backward_copy", "max |Δx_class| after one step", moved["x_class"][0],
       moved["x_class"][1])

# %% [markdown] nbgrader={"grade": true, "grade_id": "nb10-exhibit-7", "locked": false, "points": 1, "schema_version": 3, "solution": true}
# **Exercise nb10-exhibit-7** (1 point). What is wrong in `vit_backward_copy`, and where? Why does the update loop not
# complain, and what stops the same mistake in vitnp's training?
#
# ### BEGIN SOLUTION
# The embedding part of the backward goes straight from `dropout_backward` to the backward of $\mathbf{E}$ on `dz[:,
# 1:]`: two lines are missing there, `dz, g["E_pos"] = pos_embed_backward(dz, cache["embed"]["pos"])` (the gradient of
# $+\mathbf{E}_{pos}$ is $\sum_b \bar{\mathbf{z}}_{0,b}$) and `dz, g["x_class"] = class_token_backward(dz,
# cache["embed"]["cls"])` (row 0 of $\bar{\mathbf{z}}$, summed over the batch). Slicing `dz[:, 1:]` by hand throws the
# class token's row away instead. The update loop walks over the gradients it is given, so it silently skips the two
# parameters: after the step `x_class` and `E_pos` are bit for bit what they were (change 0), while with vitnp's
# backward they move (by 1.3e-01 each). The model still trains, with a class token fixed at its initial value and no
# learned position information. vitnp's optimisers compare the keys of the gradients with the parameters they were built
# for and refuse the step, naming the missing `E_pos` and `x_class`; and `check_model`'s gradient check compares every
# parameter of the model.
# ### END SOLUTION

# %% [markdown]
# ## Exhibit 8. An AdamW step
#
# AdamW (Loshchilov & Hutter 2019) shrinks parameters by $\theta \leftarrow \theta(1 - \eta\lambda)$ before its Adam
# step. The copy below is an AdamW step written out plainly; compare it with `vitnp.optim.AdamW` (and the function of
# `vitnp.optim` it consults). The check: a **test of behaviour** against `vitnp.optim.AdamW`: one step from the same parameters with the same gradients (those of the tiny ViT of exhibit 7),
# lr 0.01, weight decay 0.1; which arrays come out different?

# %%
def adamw_step(params, grads, m, v, t, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
    """One AdamW step (Loshchilov & Hutter 2019) at step t ≥ 1, in place; m, v: dicts of moment buffers."""
    b1, b2 = betas
    for name, p in params.items():
        g = grads[name]
        if weight_decay:
            p *= 1.0 - lr * weight_decay                                  # θ(1 − ηλ)
        m[name] = b1 * m[name] + (1.0 - b1) * g                           # first moment
        v[name] = b2 * v[name] + (1.0 - b2) * g * g                       # second moment
        m_hat, v_hat = m[name] / (1.0 - b1 ** t), v[name] / (1.0 - b2 ** t)
        p -= lr * m_hat / (np.sqrt(v_hat) + eps)                          # θ − η m̂ / (√v̂ + ε)


ours = {k: v.copy() for k, v in params0.items()}
theirs = {k: v.copy() for k, v in params0.items()}
adamw_step(ours, grads_ref, {k: 0 * v for k, v in ours.items()}, {k: 0 * v for k, v in ours.items()}, t=1,
           lr=0.01, weight_decay=0.1)
AdamW(theirs, lr=0.01, weight_decay=0.1).step(theirs, grads_ref)
diff = {k: np.abs(ours[k] - theirs[k]).max() for k in params0}
kernels = [k for k in params0 if decays(k, params0[k])]
others = [k for k in params0 if not decays(k, params0[k])]
print(f"kernels, {len(kernels)} arrays: max difference {max(diff[k] for k in kernels):.1e}")
print(f"all other arrays, {len(others)}: max difference {max(diff[k] for k in others):.1e}; differ in "
      f"{sum(diff[k] > 0 for k in others)} of {len(others)}")
for k in ("blocks.0.ln1.gamma", "blocks.0.mlp.b1", "x_class", "E_pos"):
    print(f"  {k:<20} copy − vitnp: max {diff[k]:.1e}")
gamma_moved = np.abs(ours["blocks.0.ln1.gamma"] - theirs["blocks.0.ln1.gamma"]).max()
assert max(diff[k] for k in kernels) < 1e-12 and all(diff[k] > 0 for k in others) and gamma_moved > 1e-4

zero = {k: np.zeros_like(v) for k, v in params0.items()}          # the test in tests/test_optim.py: zero gradients
ours, theirs = {k: v.copy() for k, v in params0.items()}, {k: v.copy() for k, v in params0.items()}
adamw_step(ours, zero, {k: 0 * v for k, v in zero.items()}, {k: 0 * v for k, v in zero.items()}, t=1, lr=0.01,
           weight_decay=0.1)
AdamW(theirs, lr=0.01, weight_decay=0.1).step(theirs, zero)
g_bug = np.abs(ours["ln_f.gamma"] - params0["ln_f.gamma"]).max()
g_ref = np.abs(theirs["ln_f.gamma"] - params0["ln_f.gamma"]).max()
print(f"zero gradients, one step: max |Δγ| of the final LayerNorm: copy {g_bug:.1e}, vitnp {g_ref}")
assert g_bug > 1e-4 and g_ref == 0.0
record("8. adamw_step", "max |Δ ln_f.gamma|, zero gradients", g_bug, g_ref)

# %% [markdown] nbgrader={"grade": true, "grade_id": "nb10-exhibit-8", "locked": false, "points": 1, "schema_version": 3, "solution": true}
# **Exercise nb10-exhibit-8** (1 point). What is wrong in `adamw_step`, and on which line? Why does it matter for
# LayerNorm's $\boldsymbol\gamma$?
#
# ### BEGIN SOLUTION
# The test `if weight_decay:` decays **every** array. It should decay the kernels only, as `if weight_decay and
# decays(name, p):` does (vitnp's `decays`: at least 2-D and not `E_pos`). The step agrees with vitnp's AdamW on all the
# kernels (differences up to 1.1e-16, rounding) and differs on every other array: γ, β, the biases, `x_class` and
# `E_pos`. With zero gradients the Adam part is zero, and the only change is the decay: vitnp leaves $\boldsymbol\gamma$
# as it is (0.0), the copy shrinks it by $\eta\lambda\gamma$ (1.2e-03). Weight decay pulls parameters towards 0, which
# is a sensible prior for a kernel but not for a LayerNorm scale, whose neutral value is 1; decaying $\boldsymbol\gamma$
# towards 0 shrinks every normalised activation, and decaying biases, $\mathbf{x}_\text{class}$ and $\mathbf{E}_{pos}$
# removes information the model needs, for no regularising benefit (they hold few numbers).
# ### END SOLUTION

# %% [markdown]
# ## 9. Grade your own code exercises
#
# The grader (`python -m vitnp course grade`) checks the code exercises of `vitnp/` the way this notebook checked the
# exhibits: each backward against centred differences of the forward, each forward against the reference, on inputs
# drawn afresh for every run. Below it grades the installed vitnp, so in the student edition it grades *your* code
# (exercises you have not written show `exercise <id>: …`; the forward exercises are graded with the instructor's
# installation, which computes their answers).

# %%
rows = grade()
print(format_table(rows))

# %% [markdown]
# ## 10. The zoo at a glance
#
# Each row: the exhibit, the check that told the copy from vitnp, and the check's number for the copy and for vitnp.

# %%
print(f"{'exhibit':<36} {'check':<42} {'copy':>8} {'vitnp':>8}")
for exhibit, check, broken, correct in ZOO:
    print(f"{exhibit:<36} {check:<42} {fmt(broken):>8} {fmt(correct):>8}")
assert len(ZOO) == 8

# %% [markdown]
# **Summary.** Eight plausible mistakes, eight symptoms: a gradient check catches a backward that disagrees with its forward when the inputs are realistic; a forward wrong together with its backward, a harmless-looking layout, or what the optimiser does with the gradients need a comparison with a reference or a test of behaviour. The per-array table of a gradient check points at the faulty line.
#
# **요약.** 그럴듯한 실수 여덟 개, 증상 여덟 개: 입력이 현실적이면 기울기 검사는 순전파와 어긋난 역전파를 잡습니다. 역전파와 함께 틀린 순전파, 해가 없어 보이는 배치 순서, 옵티마이저가 기울기로 하는 일은 기준 구현과의 비교나 동작 테스트가 잡아야 합니다. 기울기 검사의 배열별 표는 잘못된 줄을 가리킵니다.

# %% [markdown]
# **What the zoo teaches** (read it after answering the eight questions).
#
# * A **gradient check** catches a backward that disagrees with its forward, and also a forward that disagrees with
#   the backward meant for it, including a small disagreement, provided the inputs are of a realistic size, the batch
#   has more than one image, the parameters are away from their initial values and the encoder has more than one
#   block (notebook 05, section 11).
# * It cannot catch a forward that is wrong together with its backward, a wrong layout that happens to be harmless for
#   the data at hand, or anything outside the model's function (which gradients reach the optimiser, and what the
#   optimiser does with them). Those need a **comparison with a reference** (vitnp compares its whole model with
#   PyTorch, `tests/test_model_torch.py` in the instructor's copy) and **tests of behaviour** (vitnp's optimisers
#   refuse a gradient dict with missing keys).
# * The per-array table of a gradient check localises a mistake: arrays computed before the faulty line are right,
#   those after it are wrong.
#
# Back to the start: [01_patches](01_patches.ipynb); the course plan is in [docs/course.md](../docs/course.md).
