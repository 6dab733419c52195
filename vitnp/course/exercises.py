"""The exercises of the course edition: one row per solution region in the code, with its id, where it is, a
one-line statement and its points.

A solution region is a body between ``### BEGIN SOLUTION`` and ``### END SOLUTION`` (nbgrader's markers) inside
one function; :func:`vitnp.course.markers.find_regions` finds them and ``tests/test_course.py`` proves that every
region has exactly one row here and every row one region.  The student edition (``python -m vitnp course
build``) replaces each region by ``raise NotImplementedError("exercise <id>: <statement>")``; the grader
(``python -m vitnp course grade``) runs the exercise's checks, :func:`vitnp.course.checks.cases`.
"""
from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Exercise:
    """One exercise: ``where`` is 'path/of/file.py:function', relative to the project root."""

    id: str
    where: str
    statement: str
    points: int

    @property
    def path(self) -> str:
        return self.where.split(":")[0]

    @property
    def function(self) -> str:
        return self.where.split(":")[1]

    @property
    def module(self) -> str:
        """The function as a protocol name: ``ops.linear:linear_backward``."""
        return self.path[len("vitnp/"):-len(".py")].replace("/", ".") + ":" + self.function


EXERCISES = (
    Exercise("patchify-backward", "vitnp/ops/patches.py:patchify_backward",
             "move dx_p (B, N, P²C) back to image layout (B, H, W, C): undo patchify_forward's reshape and transpose",
             1),
    Exercise("linear-backward", "vitnp/ops/linear.py:linear_backward",
             "return dx, dW, db for out = x W + b; W and b are shared by every leading position",
             2),
    Exercise("class-token-backward", "vitnp/ops/tokens.py:class_token_backward",
             "return dx (B, N, D) and dx_class (D,) for z = [x_class; x]",
             1),
    Exercise("pos-embed-backward", "vitnp/ops/posemb.py:pos_embed_backward",
             "return dz and dE_pos for out = z + E_pos, the table broadcast over the batch",
             1),
    Exercise("readout-backward", "vitnp/ops/tokens.py:readout_backward",
             "return dz (B, T, D) for y = z[:, 0] ('token') or y = mean over tokens ('gap')",
             1),
    Exercise("layernorm-backward", "vitnp/ops/layernorm.py:layernorm_backward",
             "return dx, dgamma, dbeta for out = γ ⊙ (x − μ)/σ + β; μ and σ depend on x too",
             3),
    Exercise("softmax-backward", "vitnp/ops/softmax.py:softmax_backward",
             "return dx for y = softmax(x) along cache's axis (the full Jacobian, not only its diagonal)",
             2),
    Exercise("attention-backward", "vitnp/ops/attention.py:attention_backward",
             "return dq, dk, dv for out = dropout(softmax(q kᵀ/√D_h)) v (Eq 6-7)",
             3),
    Exercise("msa-backward", "vitnp/ops/attention.py:msa_backward",
             "return dz, dU_qkv, dU_qkv_bias, dU_msa, dU_msa_bias for multi-head self-attention (Eq 5-8)",
             3),
    Exercise("gelu-exact-derivative", "vitnp/ops/gelu.py:gelu_exact_derivative",
             "return d/dx [x Φ(x)] = Φ(x) + x φ(x) elementwise",
             1),
    Exercise("gelu-tanh-derivative", "vitnp/ops/gelu.py:gelu_tanh_derivative",
             "return d/dx of ½x(1 + tanh(√(2/π)(x + 0.044715x³))) elementwise",
             1),
    Exercise("mlp-backward", "vitnp/ops/mlp.py:mlp_backward",
             "return dx, dW1, db1, dW2, db2 through linear -> GELU -> dropout -> linear -> dropout (Eq 3)",
             2),
    Exercise("encoder-block-backward", "vitnp/ops/block.py:encoder_block_backward",
             "return dz and the block's gradients through both residual branches (Eq 2-3)",
             3),
    Exercise("cross-entropy", "vitnp/ops/loss.py:softmax_cross_entropy",
             "return the mean (label-smoothed) cross-entropy and its gradient (softmax − target)/B",
             2),
    Exercise("embed-forward", "vitnp/model.py:embed_forward",
             "compute z₀ = [x_class; x_p E] + E_pos (Eq 1), with the hybrid stem first and dropout last",
             2),
    Exercise("head-forward", "vitnp/model.py:head_forward",
             "compute y = LN(z_L⁰) (Eq 4; the token mean for 'gap') and logits = y W_head + b_head",
             1),
    Exercise("vit-forward", "vitnp/model.py:vit_forward",
             "put Eq 1-4 together: embed_forward, encoder_forward over the L blocks, head_forward",
             2),
)

BY_ID = {e.id: e for e in EXERCISES}
