"""Draw the paper's Figure 1 (the ViT model overview) annotated with vitnp's names: docs/figures/fig1_annotated.png.

    python scripts/fig1_diagram.py [--out PATH]

Dosovitskiy et al. (2021), Figure 1: image -> patches -> linear projection E -> + class token and position embedding
-> Transformer encoder (L blocks of Norm, Multi-Head Attention, +, Norm, MLP, +) -> MLP head -> class.  Every box is
labelled with its symbol, the vitnp parameter names it owns (README's parameter table), the module and function that
compute it, and the notebook that explains it.  The labels come from the tables PIPELINE and ENCODER below, which
tests/test_course_bug_zoo.py checks against the code: every parameter name exists in ``vitnp.param_shapes``, every
``module: function`` exists, every notebook exists.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Circle, FancyArrowPatch, FancyBboxPatch, Rectangle  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "docs" / "figures" / "fig1_annotated.png"

# One row per box of the left half of Figure 1, from the bottom (the image) to the top (the class).
# name: the box's text; symbol: matplotlib mathtext; params: vitnp parameter names ("blocks.{l}." = every block);
# code: "path: function"; notebook: notebooks/src/<notebook>.py.
PIPELINE = [
    dict(key="image", name="image", symbol=r"$x \in \mathbb{R}^{H \times W \times C}$, channels-last (B, H, W, C)",
         params=[], code=["vitnp/model.py: check_images"], notebook="01_patches", color="#e8e8e8"),
    dict(key="patches", name="patches, flattened", symbol=r"$x_p \in \mathbb{R}^{N \times (P^2 C)}$,  $N = HW/P^2$",
         params=[], code=["vitnp/ops/patches.py: patchify_forward"], notebook="01_patches", color="#f4d6d6"),
    dict(key="E", name="linear projection E", symbol=r"$x_p^i\,\mathbf{E}$,  $\mathbf{E} \in \mathbb{R}^{(P^2C) \times D}$",
         params=["E", "E_bias"], code=["vitnp/ops/linear.py: linear_forward"], notebook="02_embeddings",
         color="#f9e0b8"),
    dict(key="tokens", name="+ class token, + position embedding",
         symbol=r"Eq 1: $z_0 = [x_{class};\ x_p^1\mathbf{E}; \ldots;\ x_p^N\mathbf{E}] + \mathbf{E}_{pos}$",
         params=["x_class", "E_pos"],
         code=["vitnp/ops/tokens.py: class_token_forward", "vitnp/ops/posemb.py: pos_embed_forward",
               "vitnp/model.py: embed_forward"], notebook="02_embeddings", color="#e3d7f2"),
    dict(key="encoder", name="Transformer encoder  × L", symbol=r"Eq 2–3: $z_0 \rightarrow z_L$,  (B, T, D), T = N + 1",
         params=["blocks.{l}.*  (right)"], code=["vitnp/ops/block.py: encoder_forward", "vitnp/model.py: vit_forward"],
         notebook="04_encoder_block", color="#dbe9f7"),
    dict(key="head", name="MLP head", symbol=r"Eq 4: $y = \mathrm{LN}(z_L^0)$,  logits $= y\,W + b$",
         params=["ln_f.gamma", "ln_f.beta", "head.W", "head.b"],
         code=["vitnp/ops/tokens.py: readout_forward", "vitnp/model.py: head_forward"], notebook="04_encoder_block",
         color="#d8efd8"),
    dict(key="class", name="class", symbol=r"softmax over K classes, cross-entropy loss",
         params=[], code=["vitnp/ops/loss.py: softmax_cross_entropy"], notebook="06_training", color="#e8e8e8"),
]

# The encoder block of Figure 1's right half, from the bottom (input z_{l-1}) to the top (output z_l).
ENCODER = [
    dict(key="ln1", name="Norm", symbol=r"$\mathrm{LN}(z_{\ell-1})$", params=["blocks.{l}.ln1.gamma", "blocks.{l}.ln1.beta"],
         code=["vitnp/ops/layernorm.py: layernorm_forward"], notebook="04_encoder_block", color="#fbf3b5"),
    dict(key="msa", name="Multi-Head Attention",
         symbol="Eq 5–8: " + r"$A = \mathrm{softmax}(qk^\top/\sqrt{D_h})$, $SA = Av$" + "\n"
                + r"$\mathrm{MSA}(z) = [SA_1;\ldots;SA_k]\,U_{msa}$",
         params=["blocks.{l}.U_qkv", "blocks.{l}.U_qkv_bias", "blocks.{l}.U_msa", "blocks.{l}.U_msa_bias"],
         code=["vitnp/ops/attention.py: msa_forward", "vitnp/ops/softmax.py: softmax_forward"], notebook="03_attention",
         color="#d9ecd0"),
    dict(key="add1", name="+", symbol=r"Eq 2: $z'_\ell = \mathrm{MSA}(\mathrm{LN}(z_{\ell-1})) + z_{\ell-1}$", params=[],
         code=["vitnp/ops/block.py: encoder_block_forward"], notebook="04_encoder_block", color="white"),
    dict(key="ln2", name="Norm", symbol=r"$\mathrm{LN}(z'_\ell)$", params=["blocks.{l}.ln2.gamma", "blocks.{l}.ln2.beta"],
         code=["vitnp/ops/layernorm.py: layernorm_forward"], notebook="04_encoder_block", color="#fbf3b5"),
    dict(key="mlp", name="MLP", symbol=r"$\mathrm{GELU}(z W_1 + b_1)\,W_2 + b_2$,  D → M → D",
         params=["blocks.{l}.mlp.W1", "blocks.{l}.mlp.b1", "blocks.{l}.mlp.W2", "blocks.{l}.mlp.b2"],
         code=["vitnp/ops/mlp.py: mlp_forward", "vitnp/ops/gelu.py: gelu_forward"], notebook="04_encoder_block",
         color="#cfe3f5"),
    dict(key="add2", name="+", symbol=r"Eq 3: $z_\ell = \mathrm{MLP}(\mathrm{LN}(z'_\ell)) + z'_\ell$", params=[],
         code=["vitnp/ops/block.py: encoder_block_forward"], notebook="04_encoder_block", color="white"),
]

MONO = dict(family="DejaVu Sans Mono", fontsize=9.0, color="#333333", va="top", ha="left")


def annotation(step, params=True) -> str:
    """The grey text beside a box: parameters (unless ``params`` is false), code, notebook."""
    show_params, params = params, step["params"]
    if len(params) >= 2:                                   # blocks.{l}.U_qkv, U_qkv_bias, …: the prefix once
        prefix = params[0].rpartition(".")[0] + "."
        if all(p.startswith(prefix) for p in params):
            params = [params[0]] + [p[len(prefix):] for p in params[1:]]
    lines = ["params   " + (", ".join(params) if params else "—")] if show_params else []
    lines += [("code     " if i == 0 else "         ") + c for i, c in enumerate(step["code"])]
    lines.append("notebook " + step["notebook"])
    return "\n".join(lines)


def box(ax, x, y, w, h, step, *, title_size=12, name_at=0.68, symbol_at=0.28, text_dx=0.0):
    """A rounded box at (x, y) (lower left), the step's name in bold and its symbol below it (at the fractions
    ``name_at`` and ``symbol_at`` of the height, moved right by ``text_dx`` to make room for a picture)."""
    ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.25,rounding_size=0.8", fc=step["color"],
                                ec="#444444", lw=1.2))
    ax.text(x + w / 2 + text_dx, y + h * name_at, step["name"], ha="center", va="center", fontsize=title_size,
            weight="bold")
    ax.text(x + w / 2 + text_dx, y + h * symbol_at, step["symbol"], ha="center", va="center", fontsize=10)


def arrow(ax, start, end, **kw):
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=14, lw=1.4, color="#444444",
                                 shrinkA=0, shrinkB=0, **kw))


def draw(out=DEFAULT_OUT):
    """Draw the figure and write it to ``out`` (PNG); returns the path."""
    fig = plt.figure(figsize=(18, 12.5), dpi=100)
    ax = fig.add_axes([0, 0, 1, 1])
    ax.set_xlim(0, 100)
    ax.set_ylim(0, 72)
    ax.axis("off")
    ax.text(1.5, 70.3, "Figure 1 of Dosovitskiy et al. (2021), annotated with vitnp's names", fontsize=17,
            weight="bold", va="top")
    ax.text(1.5, 67.9, "Each box: the step and its symbol, in the paper's notation; read from the bottom up, as in the "
                       "paper.  Beside each box:\n"
                       "params = the arrays in vitnp's params dict (README's parameter table; blocks.{l}. = block l of "
                       "the L blocks),  code = module: function that computes it,  notebook = notebooks/NAME.ipynb "
                       "that explains it.",
            fontsize=10.5, va="top", color="#222222", linespacing=1.5)
    ax.text(98.5, 0.8, "drawn by scripts/fig1_diagram.py after Figure 1 of arXiv 2010.11929", ha="right",
            fontsize=8.5, color="#777777")

    # ---- left: the model, bottom to top --------------------------------------------------------------------------
    bx, bw, bh = 1.5, 23.0, 5.2
    ys = [2.0, 10.5, 19.0, 27.5, 38.0, 48.0, 57.0]
    tops = []
    for step, y in zip(PIPELINE, ys):
        tall = step["key"] == "tokens"                       # room for the token row under the text
        h = bh + (2.8 if tall else 0.0)
        box(ax, bx, y, bw, h, step, name_at=0.86 if tall else 0.68, symbol_at=0.63 if tall else 0.28,
            text_dx=2.3 if step["key"] in ("image", "patches") else 0.0)
        ax.text(bx + bw + 1.3, y + h - 0.1, annotation(step), **MONO)
        tops.append((y, y + h))
    for (y0, y0_top), (y1, _) in zip(tops, tops[1:]):
        arrow(ax, (bx + bw / 2, y0_top + 0.3), (bx + bw / 2, y1 - 0.3))

    # pictures inside the boxes: the image cut into a 3 × 3 grid, the flattened patches, and the token row of Eq 1
    y_img = ys[0]
    for i in range(3):
        for j in range(3):
            shade = 0.35 + 0.07 * (i * 3 + j)
            ax.add_patch(Rectangle((bx + 0.8 + 1.1 * j, y_img + 0.6 + 1.3 * (2 - i)), 1.1, 1.3,
                                   fc=(shade, shade * 0.8, 0.55), ec="white", lw=1))
    y_p = ys[1]
    for n in range(9):
        shade = 0.35 + 0.07 * n
        ax.add_patch(Rectangle((bx + 0.6 + 0.55 * n, y_p + 1.6), 0.5, 2.0, fc=(shade, shade * 0.8, 0.55), ec="white"))
    y_t = ys[3]
    for n in range(10):
        tx = bx + 1.0 + 2.15 * n
        ax.add_patch(Rectangle((tx, y_t + 0.5), 0.9, 1.1, fc="#b39ddb", ec="#555555", lw=0.6))        # E_pos row n
        ax.add_patch(Rectangle((tx + 0.9, y_t + 0.5), 0.9, 1.1, fc="#f7c59f" if n else "#ff8a65", ec="#555555", lw=0.6))
        ax.text(tx + 0.45, y_t + 1.05, str(n), ha="center", va="center", fontsize=7.5)
        if n == 0:
            ax.text(tx + 1.35, y_t + 1.05, "*", ha="center", va="center", fontsize=9, weight="bold")
    ax.text(bx + bw / 2, y_t + 2.45, "purple: E_pos row,  orange: token  (* = x_class, 1…N = patches)",
            ha="center", va="center", fontsize=8.5, color="#444444")
    # ---- right: the encoder block, bottom to top ---------------------------------------------------------------------
    ex, ew = 53.5, 17.5
    heights = {"msa": 5.6}                                  # two lines of equations
    ey = [8.0, 15.0, 23.2, 28.7, 36.0, 43.5]
    ax.add_patch(FancyBboxPatch((49.5, 4.0), 23.0, 48.5, boxstyle="round,pad=0.3,rounding_size=1.5", fc="#f5f8fc",
                                ec="#6b8db5", lw=1.5, ls="--"))
    ax.text(49.3, 56.4, "Transformer encoder block ℓ, repeated L times", fontsize=12, weight="bold", va="top",
            color="#2f4f75")
    ax.text(49.3, 54.6, "vitnp/ops/block.py: encoder_block_forward", fontsize=10, va="top", color="#2f4f75",
            family="DejaVu Sans Mono")
    cx = ex + ew / 2
    ax.text(cx, 4.9, r"input $z_{\ell-1}$  ($z_0$ for $\ell = 1$)", ha="center", fontsize=10.5)
    ax.text(cx, 50.0, r"output $z_\ell$", ha="center", fontsize=10.5)
    spans = []
    for step, y in zip(ENCODER, ey):
        if step["name"] == "+":
            ax.add_patch(Circle((cx, y + 1.2), 1.2, fc="white", ec="#444444", lw=1.4))
            ax.text(cx, y + 1.2, "+", ha="center", va="center", fontsize=16, weight="bold")
            ax.text(ex + ew + 3.0, y + 2.6, step["symbol"], ha="left", va="top", fontsize=10.5)
            ax.text(ex + ew + 3.0, y + 1.2, annotation(step, params=False), **MONO)
            spans.append((y, y + 2.4, y + 1.2))
        else:
            h = heights.get(step["key"], 4.6)
            two_lines = step["key"] in heights
            box(ax, ex, y, ew, h, step, title_size=11.5, name_at=0.76 if two_lines else 0.68,
                symbol_at=0.34 if two_lines else 0.28)
            ax.text(ex + ew + 3.0, y + h - 0.1, annotation(step), **MONO)
            spans.append((y, y + h, y + h / 2))
    arrow(ax, (cx, 6.3), (cx, spans[0][0] - 0.3))
    for (_, top, _), (bottom, _, _) in zip(spans, spans[1:]):
        arrow(ax, (cx, top + 0.3), (cx, bottom - 0.3))
    arrow(ax, (cx, spans[-1][1] + 0.3), (cx, 49.6))
    # residual paths: from below each Norm, around the left of the boxes, into the +
    rx = ex - 2.2
    for start_y, (_, _, plus_y) in ((6.9, spans[2]), (spans[2][1] + 0.9, spans[5])):
        ax.plot([cx, rx, rx], [start_y, start_y, plus_y], color="#444444", lw=1.4)
        arrow(ax, (rx, plus_y), (cx - 1.25, plus_y))
        ax.text(rx - 0.4, (start_y + plus_y) / 2, "residual", rotation=90, fontsize=9, color="#555555", ha="right",
                va="center")

    # the encoder box on the left is this block, L times
    y_enc = ys[4]
    ax.annotate("", xy=(49.3, y_enc + 0.9), xytext=(bx + bw + 0.5, y_enc + 0.9),
                arrowprops=dict(arrowstyle="-|>", ls="--", color="#6b8db5", lw=1.3, mutation_scale=14))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(DEFAULT_OUT), help=f"PNG to write (default {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    print(f"wrote {draw(args.out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
