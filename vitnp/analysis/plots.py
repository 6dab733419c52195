"""PNG plots of a training run, drawn with matplotlib's Agg canvas.

The figures are built as ``matplotlib.figure.Figure`` objects on a ``FigureCanvasAgg`` (:func:`figure`, which
every figure of vitnp and its scripts starts from): no pyplot, no global backend switch, so calling these
from a notebook leaves its inline plots alone. :func:`save_figure` writes to a temporary file beside the
target, fsyncs it and renames it, so a PNG is never half-written.

    curves_figure(history)                                   loss and accuracy per epoch (train, test, val)
    confusion_figure(confusion, class_names)                 rows: true class, columns: predicted
    predictions_figure(images, labels, predictions, names)   a grid of test images, predicted vs true label
"""
from __future__ import annotations

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ..io.atomic import atomic_write

__all__ = ["figure", "curves_figure", "confusion_figure", "predictions_figure", "save_figure"]


def figure(width, height, layout="constrained"):
    """An empty Figure of ``width`` × ``height`` inches at 100 dpi on an Agg canvas (renders to PNG without a
    display); ``layout`` is matplotlib's layout engine ('constrained', or None for a fixed grid)."""
    fig = Figure(figsize=(width, height), dpi=100, layout=layout)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig, path) -> None:
    """Write ``fig`` as a PNG to ``path`` atomically (:func:`vitnp.io.atomic.atomic_write`): a crash never
    leaves half a PNG."""
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png")


def curves_figure(history):
    """Loss (left) and accuracy (right) per epoch from the metrics lines of a run.

    history : list of dicts with ``epoch``, ``train_loss``, ``train_acc`` and optionally ``val_loss``,
        ``val_acc`` and ``test_loss``, ``test_acc`` (the lines of ``metrics.jsonl``; a test curve is drawn
        only when the run asked for one, ``test_curve``, and is labelled as not used for any choice).
    """
    fig = figure(10, 4)
    ax_loss, ax_acc = fig.subplots(1, 2)
    epochs = [h["epoch"] for h in history]
    labels = {"train": "train", "val": "validation", "test": "test (a curve only; chooses nothing)"}
    for split, style in (("train", "o-"), ("val", "s--"), ("test", "^:")):
        if history and f"{split}_loss" in history[0]:
            ax_loss.plot(epochs, [h[f"{split}_loss"] for h in history], style, label=labels[split])
            ax_acc.plot(epochs, [100 * h[f"{split}_acc"] for h in history], style, label=labels[split])
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    if history and "val_acc" in history[-1]:
        ax_acc.set_title(f"accuracy (last validation: {100 * history[-1]['val_acc']:.2f}%)")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        if epochs:
            ax.legend()
            if len(epochs) <= 20:
                ax.set_xticks(epochs)
            else:
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_xlim(min(epochs) - 0.5, max(epochs) + 0.5)    # the axis spans the epochs run, nothing before
    return fig


def confusion_figure(confusion, class_names):
    """The K×K confusion matrix (counts; rows true class, columns predicted), with row-normalised colours."""
    confusion = np.asarray(confusion)
    K = len(confusion)
    fig = figure(1.0 + 0.6 * K, 0.6 + 0.55 * K)
    ax = fig.subplots()
    rows = confusion.sum(1, keepdims=True)
    frac = np.divide(confusion, rows, out=np.zeros(confusion.shape), where=rows > 0)   # (K, K)
    im = ax.imshow(frac, cmap="Blues", vmin=0.0, vmax=1.0)
    for i in range(K):
        for j in range(K):
            ax.text(j, i, str(confusion[i, j]), ha="center", va="center", fontsize=8,
                    color="white" if frac[i, j] > 0.5 else "black")
    ax.set_xticks(range(K), class_names, rotation=45, ha="right")
    ax.set_yticks(range(K), class_names)
    ax.set(xlabel="predicted", ylabel="true")
    acc = np.trace(confusion) / max(confusion.sum(), 1)
    ax.set_title(f"confusion matrix (test accuracy {100 * acc:.2f}%)")
    fig.colorbar(im, ax=ax, shrink=0.8, label="fraction of the true class")
    return fig


def predictions_figure(images, labels, predictions, class_names, cols=5):
    """A grid of images titled 'predicted (true)', green when right, red when wrong.

    images : (n, H, W, C) uint8 or float   labels, predictions : (n,) ints
    """
    n = len(images)
    rows = -(-n // cols)
    fig = figure(2.0 * cols, 2.2 * rows, layout=None)              # a fixed grid: no layout engine needed
    axes = np.atleast_1d(fig.subplots(rows, cols)).reshape(-1)
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=1 - 0.5 / (2.2 * rows), hspace=0.45)
    for ax in axes:
        ax.axis("off")
    for ax, img, y, p in zip(axes, images, labels, predictions):
        img = np.asarray(img)
        scale = dict(vmin=0, vmax=255) if img.dtype == np.uint8 else {}   # raw pixels: no per-image stretch
        ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray", **scale)
        ax.set_title(f"{class_names[p]}\n(true: {class_names[y]})", fontsize=8,
                     color="tab:green" if p == y else "tab:red")
    return fig
