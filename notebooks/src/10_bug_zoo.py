# %% [markdown]
# # 10 · A bug zoo: eight plausible mistakes, and the check that catches each
#
# Terms and their Korean equivalents: [glossary (용어집)](../docs/glossary.md).
#
# Writing a ViT by hand goes wrong in a few typical places. This notebook collects eight **plausible mistakes, each easy
# to make when writing these ops from the equations**, plants each one, alone, in a copy of a vitnp op written out in
# a cell below (the library itself is never changed), and runs the check that catches it. The checks are the ones the
# test suite uses:
#
# * a **gradient check** (`vitnp.gradcheck.check_pair` / `check_gradients`, notebook 05): the backward is compared with
#   centred differences of the forward. It catches a backward that does not match its forward;
# * a **comparison with the reference**: the same inputs through the vitnp op and through the copy. It catches a forward
#   that computes the wrong thing, which a gradient check cannot see when forward and backward are wrong together;
# * a **test of behaviour**: something the model or the optimiser must do, checked directly (an evaluation gives the
#   same output twice; an optimiser step moves every trained parameter; weight decay leaves the LayerNorm scales alone);
# * the course's **grader** (`python -m vitnp course grade`), which runs the gradient checks on a student's copy of the
#   package; section 9 plants three of the bugs in such a copy and grades it.
#
# **How to use it (the exercises).** Each exhibit has a code cell with the buggy function and its check, whose output is
# the symptom, and then a question: *what is wrong, and on which line?* Read the function, compare it with the vitnp op
# it copies (named in the exhibit), and write your answer in the question's cell, below the question. In the student
# edition (`python -m vitnp course build`) the model answers are cut out; in the teacher's copy they follow each
# question.
#
# Every number quoted in an answer is printed by the code cell above it, and every cell asserts that its check catches
# the bug and passes the correct code, so the notebook fails if a check stops telling them apart.

# %%
import ast
import inspect
import math
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

import vitnp
from vitnp.course.grade import format_table, grade
from vitnp.gradcheck import MODEL_TOL, OP_TOL, check_pair, rel_error
from vitnp.model import encoder_backward, head_backward
from vitnp.ops.attention import (attention_backward, attention_forward, merge_heads, msa_backward, msa_forward,
                                 split_heads)
from vitnp.ops.block import BLOCK_KEYS, encoder_block_backward, encoder_block_forward
from vitnp.ops.dropout import dropout_backward, dropout_forward
from vitnp.ops.gelu import gelu_backward, gelu_forward
from vitnp.ops.layernorm import layernorm_backward
from vitnp.ops.linear import linear_backward, linear_forward
from vitnp.ops.loss import softmax_cross_entropy
from vitnp.ops.mlp import mlp_backward, mlp_forward
from vitnp.ops.patches import patchify_backward, patchify_forward
from vitnp.ops.softmax import softmax_backward, softmax_forward
from vitnp.optim import AdamW, decays
from vitnp.selfcheck import tiny_config

FAST = os.environ.get("VITNP_FAST", "") not in ("", "0")   # nothing here is heavy: fast mode runs the same cells
print("mode:", "fast (VITNP_FAST=1)" if FAST else "full", "| vitnp", vitnp.__version__)
np.set_printoptions(precision=3, suppress=True, linewidth=110)

rng = np.random.default_rng(0)
r = lambda *shape: rng.standard_normal(shape)                   # noqa: E731  random float64 array
ZOO = []                                                        # one row per exhibit, printed at the end


def fmt(v):
    return "0" if v == 0 else f"{v:.1e}"


def record(bug, check, broken, correct):
    """Keep an exhibit's measured numbers for the summary, and print them."""
    ZOO.append((bug, check, broken, correct))
    print(f"-> {check}: with the bug {fmt(broken)}, correct code {fmt(correct)}")


# %% [markdown]
# ## 1. Softmax backward (Eq 6)
#
# `vitnp.ops.softmax.softmax_backward` returns $\bar{\mathbf{x}}$ for $\mathbf{y} = \operatorname{softmax}(\mathbf{x})$
# along one axis (notebook 05, section 4). The copy below was written by someone who differentiated $y_i$ with respect
# to $x_i$. The check: `check_pair` with the vitnp forward and this backward, on 6 rows of 5 logits.

# %%
def softmax_backward_diag(dy, cache):
    """dx for y = softmax(x) along cache's axis."""
    y, axis = cache
    return dy * y * (1 - y)                                      # y = e / Σe: ∂y_i/∂x_i = y_i (1 − y_i)


x = 3 * r(2, 3, 5)
broken = check_pair(softmax_forward, softmax_backward_diag, {"x": x})["x"]
correct = check_pair(softmax_forward, softmax_backward, {"x": x})["x"]
assert broken > 1e-2 and correct < OP_TOL
record("softmax backward: diagonal of the Jacobian only", "check_pair relative error", broken, correct)

# %% [markdown] nbgrader={"grade": true, "grade_id": "nb10-softmax-diagonal", "locked": false, "points": 1, "schema_version": 3, "solution": true}
# **Exercise nb10-softmax-diagonal** (1 point). **Question 1.** What is wrong in `softmax_backward_diag`, and on which
# line? What should the line be?
#
# ### BEGIN SOLUTION
# The `return` line keeps only the **diagonal** of the softmax Jacobian. Softmax is not elementwise: every $y_j$ of a
# row depends on every $x_i$ through the normalising sum, $\partial y_j/\partial x_i = y_j(\delta_{ij} - y_i)$. The line
# uses $y_i(1 - y_i)$ (the derivative of a sigmoid) and drops the off-diagonal terms $-y_i y_j$. The right line sums
# over the row: `return y * (dy - (dy * y).sum(axis, keepdims=True))`. The gradient check fails with a relative error of
# order 1 (5.7e-01 above) instead of about 1e-9 (1.5e-09 for the vitnp backward), because the missing terms are as large
# as the kept ones.
# ### END SOLUTION

# %% [markdown]
# ## 2. GELU derivative, tanh form (Eq 3)
#
# With $u = \sqrt{2/\pi}\,(x + 0.044715\,x^3)$, the tanh form is $\tfrac12 x(1 + \tanh u)$ and
# `vitnp.ops.gelu.gelu_tanh_derivative` returns its derivative. The copy below is used by a backward that multiplies
# it with the upstream gradient. The check: `check_pair` on inputs of scale 2 (the pre-activations of a trained MLP are
# of that order), and once more on inputs of scale 0.1.

# %%
def gelu_tanh_derivative_cubed(x):
    """d/dx [½ x (1 + tanh u)], u = √(2/π)(x + 0.044715 x³)."""
    T = np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x * x * x))     # tanh u, as in the forward
    du_dx = math.sqrt(2.0 / math.pi) * (1.0 + 3.0 * 0.044715 * x ** 3)     # u = √(2/π)(x + 0.044715 x³)
    return 0.5 * (1.0 + T) + 0.5 * x * (1.0 - T ** 2) * du_dx              # out = ½ x (1 + tanh u)


def gelu_backward_cubed(dout, cache):
    x, approximate = cache
    return dout * gelu_tanh_derivative_cubed(x)


for scale in (2.0, 0.1):
    x = scale * r(4, 6)
    args = dict(inputs={"x": x}, kwargs={"approximate": "tanh"})
    broken = check_pair(gelu_forward, gelu_backward_cubed, **args)["x"]
    correct = check_pair(gelu_forward, gelu_backward, **args)["x"]
    print(f"inputs of scale {scale}: relative error with the bug {broken:.1e}, vitnp's backward {correct:.1e}")
    assert broken > (1e-2 if scale == 2.0 else 1e-5) and correct < OP_TOL
    if scale == 2.0:
        record("GELU (tanh) derivative: x³ instead of x²", "check_pair relative error", broken, correct)

# %% [markdown] nbgrader={"grade": true, "grade_id": "nb10-gelu-cubed", "locked": false, "points": 1, "schema_version": 3, "solution": true}
# **Exercise nb10-gelu-cubed** (1 point). **Question 2.** What is wrong in `gelu_tanh_derivative_cubed`, and on which
# line? Why is the error so much smaller for the inputs of scale 0.1, and why is it still caught there?
#
# ### BEGIN SOLUTION
# The `du_dx` line differentiates $x^3$ into $3x^3$: the derivative of $u = \sqrt{2/\pi}(x + 0.044715x^3)$ is
# $\sqrt{2/\pi}\,(1 + 3 \cdot 0.044715\,x^2)$, so the line should read `… * (1.0 + 3.0 * 0.044715 * x ** 2)`. The wrong
# term differs from the right one by $3 \cdot 0.044715\,(x^3 - x^2)$, which is tiny for small $|x|$: at scale 0.1 the
# relative error is 1.7e-04 instead of 2.6e-02 at scale 2. It is still caught because a correct backward gives 1e-10 or
# less (2.3e-10 and 7.0e-12 above), three orders of magnitude or more below the tolerance 1e-7 — but a check run only on
# small inputs would hide most of the mistake, so the checks use inputs of the size a trained model sees.
# ### END SOLUTION

# %% [markdown]
# ## 3. The residual's gradient in the encoder block (Eq 2–3)
#
# `vitnp.ops.block.encoder_block_backward` goes back through $\mathbf{z}_\ell = MLP(LN(\mathbf{z}'_\ell)) +
# \mathbf{z}'_\ell$ and $\mathbf{z}'_\ell = MSA(LN(\mathbf{z}_{\ell-1})) + \mathbf{z}_{\ell-1}$. The copy below has one
# line changed. The check: `check_pair` on one block (2 images, 4 tokens, D = 6, 2 heads), every input and parameter;
# the table shows the error of each array.

# %%
def encoder_block_backward_no_skip(dout, cache):
    """Returns dz (B, T, D) and a dict of the block's gradients, keys BLOCK_KEYS."""
    c_ln1, c_msa, c_drop, c_ln2, c_mlp = cache
    g = {}
    dm, g["mlp.W1"], g["mlp.b1"], g["mlp.W2"], g["mlp.b2"] = mlp_backward(dout, c_mlp)   # m = MLP(m)
    dm, g["ln2.gamma"], g["ln2.beta"] = layernorm_backward(dm, c_ln2)                     # m = LN(z1)
    dz1 = dm                                         # return m + z1
    da = dropout_backward(dz1, c_drop)               # z1 = dropout(a) + z
    da, g["U_qkv"], g["U_qkv_bias"], g["U_msa"], g["U_msa_bias"] = msa_backward(da, c_msa)   # a = MSA(a)
    da, g["ln1.gamma"], g["ln1.beta"] = layernorm_backward(da, c_ln1)                     # a = LN(z)
    return dz1 + da, {k: g[k] for k in BLOCK_KEYS}   # z1 = a + z: both paths reach z (Eq 2's residual)


D, M, heads = 6, 10, 2
block = {"ln1.gamma": 1 + 0.5 * r(D), "ln1.beta": 0.5 * r(D), "U_qkv": 0.5 * r(D, 3 * D), "U_qkv_bias": 0.5 * r(3 * D),
         "U_msa": 0.5 * r(D, D), "U_msa_bias": 0.5 * r(D), "ln2.gamma": 1 + 0.5 * r(D), "ln2.beta": 0.5 * r(D),
         "mlp.W1": 0.5 * r(D, M), "mlp.b1": 0.5 * r(M), "mlp.W2": 0.5 * r(M, D), "mlp.b2": 0.5 * r(D)}
block_in = {"z": r(2, 4, D), **block}


def block_forward(z, *arrays):
    return encoder_block_forward(z, dict(zip(BLOCK_KEYS, arrays)), heads)


def as_tuple(backward):
    """check_pair wants the gradients as a tuple in the order of the inputs."""
    def wrapped(dout, cache):
        dz, grads = backward(dout, cache)
        return (dz, *(grads[k] for k in BLOCK_KEYS))
    return wrapped


broken = check_pair(block_forward, as_tuple(encoder_block_backward_no_skip), block_in)
correct = check_pair(block_forward, as_tuple(encoder_block_backward), block_in)
print(f"{'array':<12} {'with the bug':>13} {'vitnp':>9}")
for name in broken:
    print(f"{name:<12} {broken[name]:>13.1e} {correct[name]:>9.1e}")
assert max(broken.values()) > 1e-2 and max(correct.values()) < MODEL_TOL
assert max(broken[k] for k in ("mlp.W1", "mlp.b1", "mlp.W2", "mlp.b2", "ln2.gamma", "ln2.beta")) < MODEL_TOL
record("residual gradient dropped (Eq 3)", "check_pair relative error", max(broken.values()),
       max(correct.values()))

# %% [markdown] nbgrader={"grade": true, "grade_id": "nb10-residual-dropped", "locked": false, "points": 1, "schema_version": 3, "solution": true}
# **Exercise nb10-residual-dropped** (1 point). **Question 3.** What is wrong in `encoder_block_backward_no_skip`, and
# on which line? How does the table of errors per array point to that line?
#
# ### BEGIN SOLUTION
# The line `dz1 = dm` drops the gradient of Eq 3's residual. The block returns $MLP(LN(\mathbf{z}')) + \mathbf{z}'$, so
# $\mathbf{z}'$ reaches the output along two paths and the two gradients add: `dz1 = dout + dm`. Without `dout`, the
# "gradient highway" of the residual is cut, and everything computed from `dz1` is wrong: $\bar{\mathbf{z}}$ and the
# gradients of $\mathbf{U}_{qkv}$, $\mathbf{U}_{msa}$, their biases and the first LayerNorm (errors from 5.2e-01 up to
# 8.3e-01 in the table). The MLP's and the second LayerNorm's gradients are computed from `dout` before that line, and
# their errors stay at about 1e-10. So the table splits the arrays into those computed before the faulty line (right)
# and after it (wrong): the bug sits where the backward passes from the one group to the other.
# ### END SOLUTION

# %% [markdown]
# ## 4. Dropout at test time
#
# `vitnp.ops.mlp.mlp_forward` applies dropout after each dense layer, in training only: `dropout_forward(h, dropout,
# rng, train)`. The copy below is called exactly like the reference, with `train=False` at evaluation. Two checks: the
# gradient check with a fixed dropout seed, and a **test of behaviour**: evaluating the same input twice must give the
# same output, equal to the output without dropout.

# %%
def mlp_forward_train_flag(x, W1, b1, W2, b2, gelu="exact", dropout=0.0, rng=None, train=False):
    """MLP(x) = dropout(GELU(x W1 + b1) W2 + b2), with dropout on the hidden layer too."""
    h, c1 = linear_forward(x, W1, b1)                 # (..., M)
    h, c_act = gelu_forward(h, gelu)
    h, c_d1 = dropout_forward(h, dropout, rng)
    out, c2 = linear_forward(h, W2, b2)               # (..., D)
    out, c_d2 = dropout_forward(out, dropout, rng)
    return out, (c1, c_act, c_d1, c2, c_d2)


mlp_in = dict(x=r(2, 3, 4), W1=r(4, 7), b1=r(7), W2=r(7, 4), b2=r(4))
seeded = {"dropout": 0.3, "rng": lambda: np.random.default_rng(3), "train": False}   # the same mask at every call
grad_err = max(check_pair(mlp_forward_train_flag, mlp_backward, mlp_in, kwargs=seeded).values())
print(f"gradient check with a fixed seed: relative error {grad_err:.1e}  (passes: forward and backward agree)")
assert grad_err < OP_TOL

generator = np.random.default_rng(0)                  # one generator for the whole run, as in training code
evaluate = {"dropout": 0.3, "rng": generator, "train": False}
out1, out2 = (mlp_forward_train_flag(*mlp_in.values(), **evaluate)[0] for _ in range(2))
ref1, ref2 = (mlp_forward(*mlp_in.values(), **evaluate)[0] for _ in range(2))
no_dropout = mlp_forward(*mlp_in.values())[0]
broken, correct = np.abs(out1 - out2).max(), np.abs(ref1 - ref2).max()
print(f"two evaluations of the same input: max |out1 − out2| = {broken:.2f} with the bug, {correct} with vitnp's MLP;"
      f" vitnp's equals the output without dropout: {np.array_equal(ref1, no_dropout)}")
assert broken > 1e-2 and correct == 0.0 and np.array_equal(ref1, no_dropout)
record("dropout left on at test time", "eval twice: max |out1 − out2|", broken, correct)

# %% [markdown] nbgrader={"grade": true, "grade_id": "nb10-dropout-at-test", "locked": false, "points": 1, "schema_version": 3, "solution": true}
# **Exercise nb10-dropout-at-test** (1 point). **Question 4.** What is wrong in `mlp_forward_train_flag`, and on which
# lines? Why does the gradient check pass?
#
# ### BEGIN SOLUTION
# The two `dropout_forward(…, dropout, rng)` lines do not pass `train`. `dropout_forward`'s own default is `train=True`,
# so dropout stays on when the model is evaluated: each evaluation draws a new mask, and two evaluations of the same
# input differ (by 28.66 above), while vitnp's MLP gives identical outputs, equal to those without dropout. The fix:
# `dropout_forward(h, dropout, rng, train)` and `dropout_forward(out, dropout, rng, train)`. The gradient check cannot
# see it (3.4e-10): with a fixed seed, the forward with its mask and the backward with the same mask are a consistent
# pair. A gradient check proves that the backward matches the forward, not that the forward does what the model should
# do at test time; that needs a test of behaviour.
# ### END SOLUTION

# %% [markdown]
# ## 5. The output projection of multi-head attention (Eq 8)
#
# $MSA(\mathbf{z}) = [SA_1(\mathbf{z}); \ldots; SA_k(\mathbf{z})]\,\mathbf{U}_{msa}$. The copy of
# `vitnp.ops.attention.msa_forward` below takes the same arguments and returns an output of the right shape, and it
# comes with a backward that matches it. Three checks: the gradient check, a **comparison with the reference** (the same
# inputs through vitnp's `msa_forward`), and a look at the gradient of $\mathbf{U}_{msa}$.

# %%
def msa_forward_no_out(z, U_qkv, U_qkv_bias, U_msa, U_msa_bias, heads, mask=None):
    """Multi-head self-attention, Eq 5–8: z (B, T, D) -> out (B, T, D), weights (B, k, T, T), cache."""
    qkv, c_qkv = linear_forward(z, U_qkv, U_qkv_bias)                # Eq 5: (B, T, 3D)
    q, k, v = np.split(qkv, 3, axis=-1)                              # 3 × (B, T, D)
    q, k, v = split_heads(q, heads), split_heads(k, heads), split_heads(v, heads)   # 3 × (B, k, T, D_h)
    sa, A, c_att = attention_forward(q, k, v, mask)                  # Eq 6–7: (B, k, T, D_h)
    out = merge_heads(sa)                                            # Eq 8: [SA₁; …; SA_k], (B, T, D)
    return out, A, (c_qkv, c_att, heads, U_msa.shape)


def msa_backward_no_out(dout, cache):
    """Returns dz, dU_qkv, dU_qkv_bias, dU_msa, dU_msa_bias."""
    c_qkv, c_att, heads, msa_shape = cache
    dq, dk, dv = attention_backward(split_heads(dout, heads), c_att)
    dqkv = np.concatenate([merge_heads(dq), merge_heads(dk), merge_heads(dv)], axis=-1)
    dz, dU_qkv, dU_qkv_bias = linear_backward(dqkv, c_qkv)
    return dz, dU_qkv, dU_qkv_bias, np.zeros(msa_shape), np.zeros(msa_shape[1])


msa_in = dict(z=r(2, 5, 6), U_qkv=r(6, 18), U_qkv_bias=r(18), U_msa=r(6, 6), U_msa_bias=r(6))
grad_err = max(check_pair(msa_forward_no_out, msa_backward_no_out, msa_in, kwargs={"heads": 2}).values())
out_bug = msa_forward_no_out(*msa_in.values(), heads=2)[0]
out_ref = msa_forward(*msa_in.values(), heads=2)[0]
broken, correct = rel_error(out_bug, out_ref), rel_error(out_ref, out_ref)
dU_msa = msa_backward_no_out(np.ones_like(out_bug), msa_forward_no_out(*msa_in.values(), heads=2)[-1])[3]
print(f"gradient check: relative error {grad_err:.1e}  (passes)")
print(f"output {out_bug.shape} against vitnp's msa_forward {out_ref.shape}: relative error {broken:.2f}")
print(f"gradient of U_msa: max |dU_msa| = {np.abs(dU_msa).max()} (a parameter that never learns)")
assert grad_err < OP_TOL and broken > 1e-2 and correct == 0.0 and not dU_msa.any()
record("output projection U_msa missing (Eq 8)", "rel. error against vitnp's msa_forward", broken, correct)

# %% [markdown] nbgrader={"grade": true, "grade_id": "nb10-no-output-projection", "locked": false, "points": 1, "schema_version": 3, "solution": true}
# **Exercise nb10-no-output-projection** (1 point). **Question 5.** What is wrong in `msa_forward_no_out`, and on which
# line? Why do the shapes not reveal it, and why does the gradient check pass?
#
# ### BEGIN SOLUTION
# The line `out = merge_heads(sa)` stops after the concatenation of Eq 8 and never multiplies by $\mathbf{U}_{msa}$ (nor
# adds its bias): it should be `out, c_out = linear_forward(merge_heads(sa), U_msa, U_msa_bias)`, with `c_out` kept in
# the cache for the backward. The shapes cannot reveal it because $k \cdot D_h = D$: the concatenated heads already have
# the output's shape $(B, T, D)$. The gradient check passes (5.8e-10) because the backward was written for this forward:
# $\mathbf{U}_{msa}$ does not influence the output, so its analytic and its numerical gradient are both zero. The
# comparison with vitnp's `msa_forward` shows the difference (relative error 0.86), and the all-zero `dU_msa` is the
# symptom in training: $D^2 + D$ parameters per block that never change.
# ### END SOLUTION

# %% [markdown]
# ## 6. Patches from channels-last images (the first step of Eq 1)
#
# vitnp's images are channels-last, $(B, H, W, C)$, as in the paper's code. `vitnp.ops.patches.patchify_forward`
# cuts them into $N$ patches of $P^2C$ numbers, each in (row, column, channel) order. The copy below was adapted from
# code written for channels-first images. The check: a **comparison with the reference**, and with a patch cut by hand
# (patch 0 is the top-left $P \times P$ square), on colour images ($C = 3$) and on grey images ($C = 1$, like
# Fashion-MNIST).

# %%
def patchify_forward_nchw(x, P):
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
    bug, ref = patchify_forward_nchw(x, P)[0], patchify_forward(x, P)[0]
    by_hand = x[:, :P, :P, :].reshape(2, -1)                      # patch 0, in (row, col, channel) order
    measured[C] = np.abs(bug - ref).max()
    print(f"C = {C}: x_p {bug.shape}; max |bug − vitnp| = {measured[C]:.2f}; patch 0 equals the hand-cut one: "
          f"bug {np.array_equal(bug[:, 0], by_hand)}, vitnp {np.array_equal(ref[:, 0], by_hand)}")
assert measured[3] > 1e-2 and measured[1] == 0.0
grad_err = check_pair(patchify_forward_nchw, patchify_backward, {"x": r(2, 6, 4, 3)}, kwargs={"P": P})["x"]
print(f"gradient check of this forward with vitnp's backward: relative error {grad_err:.1e}")
assert grad_err > 1e-2
record("NHWC images reshaped as if NCHW (C = 3)", "max |x_p − vitnp's x_p|", measured[3], 0.0)

# %% [markdown] nbgrader={"grade": true, "grade_id": "nb10-nhwc-as-nchw", "locked": false, "points": 1, "schema_version": 3, "solution": true}
# **Exercise nb10-nhwc-as-nchw** (1 point). **Question 6.** What is wrong in `patchify_forward_nchw`, and on which line?
# Why is the result right for $C = 1$, and what does that mean for a course trained on Fashion-MNIST?
#
# ### BEGIN SOLUTION
# The first `reshape`, `x.reshape(B, C, gh, P, gw, P)`, reads a channels-last array as if it were channels-first. A
# reshape does not move numbers, it only re-labels them, so the axis labelled "C" actually runs over image rows, and
# the patches mix pixels from different places and channels (max difference 3.69 from vitnp's patches; patch 0 is not
# the top-left square). The line should be `x.reshape(B, gh, P, gw, P, C)`, with the channel axis last, followed by
# `transpose(0, 1, 3, 2, 4, 5)`. For $C = 1$ both layouts have the same memory order, so the bug gives exactly vitnp's
# patches (difference 0.00): a model trained and tested only on grey images never shows it, and it appears the day
# the code meets colour images. Checks must therefore use $C > 1$ (as the test suite does, with $C = 3$ and $C = 2$).
# Paired with vitnp's backward, the gradient check fails too (relative error 8.1e-01 above), because that backward
# undoes vitnp's forward, not this one.
# ### END SOLUTION

# %% [markdown]
# ## 7. The class token and the position embedding must learn (Eq 1)
#
# $\mathbf{x}_\text{class}$ and $\mathbf{E}_{pos}$ are parameters like $\mathbf{E}$: they receive gradients and the
# optimiser updates them. The copy of `vitnp.vit_backward` below (with `vitnp.model.embed_backward` written inline) is
# used with the simplest update loop, `params[name] -= lr * grads[name]` for every gradient it returns. The check: a
# **test of behaviour**, one training step on a tiny ViT (`vitnp.selfcheck.tiny_config`: 6×4 images with 2 channels,
# $P = 2$, $D = 8$, 2 blocks), with parameters moved away from their initial values (at initialisation the head is
# zero, so no gradient at all reaches the encoder). Which parameters did the step change?

# %%
def vit_backward_embed(dlogits, cache):
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


after_bug, grads_bug = one_step(vit_backward_embed)
after_ref, grads_ref = one_step(vitnp.vit_backward)
moved = {name: (np.abs(after_bug[name] - params0[name]).max(), np.abs(after_ref[name] - params0[name]).max())
         for name in ("E", "x_class", "E_pos", "blocks.0.U_qkv", "head.W")}
print(f"{'parameter':<16} {'max |change|, bug':>18} {'vitnp':>9}")
for name, (b, v) in moved.items():
    print(f"{name:<16} {fmt(b):>18} {fmt(v):>9}")
assert moved["x_class"][0] == moved["E_pos"][0] == 0.0 and min(moved["x_class"][1], moved["E_pos"][1]) > 1e-4
frozen = sorted(set(params0) - set(grads_bug))
print("parameters without a gradient:", frozen)
try:
    AdamW({k: v.copy() for k, v in params0.items()}, lr=1e-3).step(params0, grads_bug)
except ValueError as err:
    print("vitnp.optim.AdamW refuses the gradients:", err)
else:
    raise AssertionError("AdamW accepted a gradient dict with missing keys")
record("class token and E_pos never updated", "max |Δx_class| after a step (0 = frozen)", moved["x_class"][0],
       moved["x_class"][1])

# %% [markdown] nbgrader={"grade": true, "grade_id": "nb10-frozen-embeddings", "locked": false, "points": 1, "schema_version": 3, "solution": true}
# **Exercise nb10-frozen-embeddings** (1 point). **Question 7.** What is wrong in `vit_backward_embed`, and where? Why
# does the update loop not complain, and what stops the same mistake in vitnp's training?
#
# ### BEGIN SOLUTION
# The embedding part of the backward goes straight from `dropout_backward` to the backward of $\mathbf{E}$ on `dz[:,
# 1:]`: two lines are missing there, `dz, g["E_pos"] = pos_embed_backward(dz, cache["embed"]["pos"])` (the gradient of
# $+\mathbf{E}_{pos}$ is $\sum_b \bar{\mathbf{z}}_{0,b}$) and `dz, g["x_class"] = class_token_backward(dz,
# cache["embed"]["cls"])` (row 0 of $\bar{\mathbf{z}}$, summed over the batch). Slicing `dz[:, 1:]` by hand throws the
# class token's row away instead. The update loop walks over the gradients it is given, so it silently skips the two
# parameters: after the step `x_class` and `E_pos` are bit for bit what they were (change 0), while with vitnp's
# backward they move (by 4.1e-02 each). The model still trains, with a class token fixed at its initial value and no
# learned position information. vitnp's optimisers compare the keys of the gradients with the parameters they were built
# for and refuse the step, naming the missing `E_pos` and `x_class`; and `check_model`'s gradient check compares every
# parameter of the model.
# ### END SOLUTION

# %% [markdown]
# ## 8. Weight decay in AdamW
#
# AdamW shrinks parameters by $\theta \leftarrow \theta(1 - \eta\lambda)$ before its Adam step. In vitnp (and in the
# paper's code and timm) this applies to the weight matrices only: `vitnp.optim.decays(name, array)` is true for the
# kernels, and false for the LayerNorm $\boldsymbol\gamma, \boldsymbol\beta$, every bias, $\mathbf{x}_\text{class}$ and
# $\mathbf{E}_{pos}$. The copy below is the AdamW rule written out plainly. The check: a **test of behaviour** against
# `vitnp.optim.AdamW`: one step from the same parameters with the same gradients (those of the tiny ViT of exhibit 7),
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
print(f"kernels (decayed by both), {len(kernels)} arrays: max difference {max(diff[k] for k in kernels):.1e}")
print(f"all other arrays, {len(others)}: max difference {max(diff[k] for k in others):.1e}; differ in "
      f"{sum(diff[k] > 0 for k in others)} of {len(others)}")
for k in ("blocks.0.ln1.gamma", "blocks.0.mlp.b1", "x_class", "E_pos"):
    print(f"  {k:<20} bug − vitnp: max {diff[k]:.1e}")
gamma_moved = np.abs(ours["blocks.0.ln1.gamma"] - theirs["blocks.0.ln1.gamma"]).max()
assert max(diff[k] for k in kernels) < 1e-12 and all(diff[k] > 0 for k in others) and gamma_moved > 1e-4

zero = {k: np.zeros_like(v) for k, v in params0.items()}          # the test in tests/test_optim.py: zero gradients
ours, theirs = {k: v.copy() for k, v in params0.items()}, {k: v.copy() for k, v in params0.items()}
adamw_step(ours, zero, {k: 0 * v for k, v in zero.items()}, {k: 0 * v for k, v in zero.items()}, t=1, lr=0.01,
           weight_decay=0.1)
AdamW(theirs, lr=0.01, weight_decay=0.1).step(theirs, zero)
g_bug = np.abs(ours["ln_f.gamma"] - params0["ln_f.gamma"]).max()
g_ref = np.abs(theirs["ln_f.gamma"] - params0["ln_f.gamma"]).max()
print(f"zero gradients, one step: max |Δγ| of the final LayerNorm: bug {g_bug:.1e}, vitnp {g_ref}")
assert g_bug > 1e-4 and g_ref == 0.0
record("AdamW decays LayerNorm γ/β, biases, x_class, E_pos", "max |Δ ln_f.gamma|, zero gradients", g_bug, g_ref)

# %% [markdown] nbgrader={"grade": true, "grade_id": "nb10-adamw-decays-all", "locked": false, "points": 1, "schema_version": 3, "solution": true}
# **Exercise nb10-adamw-decays-all** (1 point). **Question 8.** What is wrong in `adamw_step`, and on which line? Why
# does it matter for LayerNorm's $\boldsymbol\gamma$?
#
# ### BEGIN SOLUTION
# The test `if weight_decay:` decays **every** array. It should decay the kernels only, as `if weight_decay and
# decays(name, p):` does (vitnp's `decays`: at least 2-D and not `E_pos`). The step agrees with vitnp's AdamW on all the
# kernels (differences up to 2.2e-16, rounding) and differs on every other array: γ, β, the biases, `x_class` and
# `E_pos`. With zero gradients the Adam part is zero, and the only change is the decay: vitnp leaves $\boldsymbol\gamma$
# as it is (0.0), the copy shrinks it by $\eta\lambda\gamma$ (1.3e-03). Weight decay pulls parameters towards 0, which
# is a sensible prior for a kernel but not for a LayerNorm scale, whose neutral value is 1; decaying $\boldsymbol\gamma$
# towards 0 shrinks every normalised activation, and decaying biases, $\mathbf{x}_\text{class}$ and $\mathbf{E}_{pos}$
# removes information the model needs, for no regularising benefit (they hold few numbers).
# ### END SOLUTION

# %% [markdown]
# ## 9. The grader catches the op exercises
#
# Exhibits 1–3 are bugs in op exercises of the course edition: `softmax-backward`, `gelu-tanh-derivative` and
# `encoder-block-backward` (`python -m vitnp course list`). Below, a copy of the `vitnp` package is made in a temporary
# directory, the three buggy functions of this notebook are written into it in place of the reference ones, and the copy
# is graded as a student's would be (`python -m vitnp course grade --root COPY` does the same from a shell). Each
# exercise is graded on its own, with the reference for every other exercise, so each bug fails exactly its exercise; an
# untouched exercise, `linear-backward`, passes.

# %%
ROOT = Path(vitnp.__file__).resolve().parents[1]


def plant(root, path, function, buggy):
    """In the copy at ``root``, replace ``def function`` of ``path`` by the source of ``buggy``, renamed."""
    file = root / path
    text = file.read_text(encoding="utf-8")
    node = next(n for n in ast.parse(text).body if isinstance(n, ast.FunctionDef) and n.name == function)
    lines = text.split("\n")
    source = inspect.getsource(buggy).replace(f"def {buggy.__name__}(", f"def {function}(", 1).rstrip("\n")
    lines[node.lineno - 1: node.end_lineno] = source.split("\n")
    file.write_text("\n".join(lines), encoding="utf-8")


planted = {"softmax-backward": ("vitnp/ops/softmax.py", "softmax_backward", softmax_backward_diag),
           "gelu-tanh-derivative": ("vitnp/ops/gelu.py", "gelu_tanh_derivative", gelu_tanh_derivative_cubed),
           "encoder-block-backward": ("vitnp/ops/block.py", "encoder_block_backward", encoder_block_backward_no_skip)}
with tempfile.TemporaryDirectory() as tmp:
    copy = Path(tmp)
    shutil.copytree(ROOT / "vitnp", copy / "vitnp", ignore=shutil.ignore_patterns("__pycache__"))
    for path, function, buggy in planted.values():
        plant(copy, path, function, buggy)
    rows = grade(copy, ids=[*planted, "linear-backward"])
print(format_table([{**row, "failure": (row["failure"] or "")[:60]} for row in rows]))
assert [row["id"] for row in rows if not row["passed"]] == list(planted)

# %% [markdown]
# ## 10. The zoo at a glance
#
# Each row: the bug, the check that caught it, and the check's number for the buggy code and for the correct code.

# %%
print(f"{'bug':<52} {'check':<42} {'bug':>8} {'correct':>8}")
for bug, check, broken, correct in ZOO:
    print(f"{bug:<52} {check:<42} {fmt(broken):>8} {fmt(correct):>8}")
assert len(ZOO) == 8

# %% [markdown]
# **What the zoo teaches.**
#
# * A **gradient check** catches a backward that disagrees with its forward (exhibits 1–3), including a small
#   disagreement (exhibit 2 at scale 0.1), provided the inputs are of a realistic size, the batch has more than one
#   image and the parameters are away from their initial values (notebook 05, section 11).
# * It cannot catch a forward that is wrong together with its backward (exhibits 4 and 5), a wrong layout that happens
#   to be harmless for the data at hand (exhibit 6 with one channel), or anything outside the model's function (exhibits
#   7 and 8: which gradients reach the optimiser, and what the optimiser does with them). Those need a **comparison with
#   a reference** (vitnp compares its whole model with PyTorch, `tests/test_torch_reference.py`) and **tests of
#   behaviour** (`tests/test_optim.py` checks the decay split; vitnp's optimisers refuse a gradient dict with missing
#   keys).
# * The per-array table of a gradient check localises a bug: arrays computed before the faulty line are right, those
#   after it are wrong (exhibit 3).
#
# Back to the start: [01_patches](01_patches.ipynb); the course plan is in [docs/course.md](../docs/course.md).
