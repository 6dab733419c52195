"""The experiments' figures (:mod:`vitnp.experiments`), drawn from their results.json alone, so that a notebook or
a reader can draw them again from the recorded numbers without running anything; and how they name things."""
import numpy as np

from ..analysis.plots import figure

# How the inductive-bias sweep's models are shown, in this order.
LABELS = {"vit": "ViT", "cnn": "CNN", "hybrid": "hybrid ViT (conv stem)"}
COLOURS = {"vit": "tab:blue", "cnn": "tab:red", "hybrid": "tab:green"}


def classes_text(classes) -> str:
    """[5, 6, 7, 8, 9] -> '5-9' when consecutive, else '5,7,9' (for the equivalent command lines)."""
    c = list(classes)
    if c == list(range(c[0], c[0] + len(c))) and len(c) > 1:
        return f"{c[0]}-{c[-1]}"
    return ",".join(map(str, c))


def results_figure(results):
    """Test (solid) and train (dashed) accuracy against N, log x axis, one colour per model."""
    from matplotlib.lines import Line2D
    fig = figure(7.5, 4.8)
    ax = fig.subplots()
    s = results["settings"]
    sizes = sorted({r["n_train"] for r in results["runs"]})
    for name in [m for m in LABELS if any(r["model"] == m for r in results["runs"])]:
        runs = sorted((r for r in results["runs"] if r["model"] == name), key=lambda r: r["n_train"])
        n = [r["n_train"] for r in runs]
        colour = COLOURS.get(name)
        params = results["models"][name]["params"]
        ax.plot(n, [100 * r["test_acc"] for r in runs], "o-", color=colour, lw=2,
                label=f"{LABELS.get(name, name)} ({params / 1000:.0f}k parameters)")
        ax.plot(n, [100 * r["train_acc"] for r in runs], "x--", color=colour, lw=1, alpha=0.6)
        for r in runs:
            ax.annotate(f"{100 * r['test_acc']:.1f}", (r["n_train"], 100 * r["test_acc"]), fontsize=7,
                        textcoords="offset points", xytext=(4, -10), color=colour)
    ax.set_xscale("log")
    if sizes:
        ax.set_xticks(sizes, [f"{n:,}" for n in sizes])
        ax.set_xlim(sizes[0] / 1.5, sizes[-1] * 1.5)
    ax.minorticks_off()
    ax.set_xlabel("training images N (log scale; nested random subsets of Fashion-MNIST)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"Fashion-MNIST accuracy vs training-set size\nevery run: {s['steps']} AdamW steps × "
                 f"{s['batch_size']} images, same recipe; test = official 10k test split", fontsize=10)
    ax.grid(True, alpha=0.3)
    models_legend = ax.legend(fontsize=8, loc="lower right", title="model", title_fontsize=8)
    ax.add_artist(models_legend)
    styles = [Line2D([], [], color="grey", marker="o", lw=2), Line2D([], [], color="grey", marker="x", ls="--", lw=1)]
    ax.legend(styles, ["test accuracy", "train accuracy (clean images)"], fontsize=8, loc="lower center",
              bbox_to_anchor=(0.42, 0.0))
    return fig


def transfer_figure(data: dict):
    """Left: test accuracy vs optimiser step on the target classes, fine-tune vs scratch (and probe), one
    thin line per seed and the mean; right: the resolution experiment's four accuracies."""
    fig = figure(12, 4.4)
    ax, ax_r = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.6, 1]})
    t = data.get("transfer", {})
    styles = {"finetune": ("tab:blue", "-", "fine-tuned"), "finetune_alt_lr": ("tab:blue", "--", "fine-tuned"),
              "scratch": ("tab:orange", "-", "from scratch"), "scratch_alt_lr": ("tab:orange", "--", "from scratch"),
              "probe": ("tab:green", ":", "linear probe (head only)")}
    for part, (color, style, label) in styles.items():
        runs = [r for r in t.get(part, {}).values() if isinstance(r, dict) and "history" in r]
        if not runs:
            continue
        for r in runs:
            ax.plot([h["step"] for h in r["history"]], [100 * h["test_acc"] for h in r["history"]], color=color,
                    alpha=0.3, lw=1)
        n = min(len(r["history"]) for r in runs)
        mean = np.mean([[100 * h["test_acc"] for h in r["history"][:n]] for r in runs], axis=0)
        lr = runs[0]["hparams"]["lr"]
        ax.plot([h["step"] for h in runs[0]["history"][:n]], mean, color=color, lw=2.2, ls=style,
                label=f"{label}, lr {lr:g}: {mean[-1]:.2f}% (mean of {len(runs)})")
    setup = t.get("setup", {})
    if setup:
        ax.set_title(f"Transfer: classes {classes_text(setup['target_classes'])} with {setup['transfer_subset']:,} "
                     f"training images ({100 * setup['target_fraction']:.0f}%)\nbody pre-trained on classes "
                     f"{classes_text(setup['pretrain_classes'])} (fine-tuned: that body, a new zero head)")
    ax.set_xlabel("optimiser step (batch of 128)" if setup.get("hparams_transfer", {}).get("batch_size") == 128
                  else "optimiser step")
    ax.set_ylabel("test accuracy on the target classes (%)")
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend(fontsize=8, loc="lower right")
    r = data.get("resolution", {})
    bars = [("eval_base", "{b}, as trained", "tab:gray"),
            ("eval_high_interpolated", "{h}, E_pos interpolated,\nno training", "tab:purple")]
    for suffix, n in [("", r.get("setup", {}).get("hparams", {}).get("epochs"))] + sorted(
            (k[len("finetune_high"):], r[k]["epochs"]) for k in r if k.startswith("finetune_high_")):
        bars += [(f"continue_base{suffix}", f"{{b}}, trained on, {n} ep.", "tab:orange"),
                 (f"finetune_high{suffix}", f"{{h}}, fine-tuned, {n} ep.", "tab:blue")]
    bars = [bar for bar in bars if bar[0] in r]
    if bars and "setup" in r:
        b, h = "{}×{}".format(*r["setup"]["base_size"]), "{}×{}".format(*r["setup"]["high_size"])
        vals = [100 * r[k]["test_acc"] for k, _, _ in bars]
        ax_r.barh(range(len(bars)), vals, color=[color for _, _, color in bars])
        for i, v in enumerate(vals):
            ax_r.text(v + 0.3, i, f"{v:.2f}%", va="center", fontsize=9)
        ax_r.set_yticks(range(len(bars)), [lab.format(b=b, h=h) for _, lab, _ in bars], fontsize=8)
        ax_r.invert_yaxis()
        ax_r.set_xlim(max(0.0, min(vals) - 10), min(100.0, max(vals) + 6))
        ax_r.set_title("Resolution (§3.2): one 28×28 checkpoint,\nfine-tuned at 56×56 or trained on at 28×28"
                       if (b, h) == ("28×28", "56×56") else "Resolution (§3.2): one checkpoint")
        ax_r.set_xlabel("test accuracy, all classes (%)")
    else:
        ax_r.set_axis_off()
    fig.suptitle("Fine-tuning a NumPy ViT on Fashion-MNIST (measured by scripts/finetune_experiments.py)")
    return fig
