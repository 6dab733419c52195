""""If we change the head, can it do other things?" (the study notes' question), measured on a frozen body.

The paper answers it twice: fine-tuning attaches a new zero-initialised head for every downstream task (§3.2), and
its few-shot evaluation fits a new linear head in closed form on the frozen representation y = LN(z_L⁰) (§4.1).
Here the frozen bodies are three of the same architecture: one trained on Fashion-MNIST's ten classes with their labels
(``notebooks/assets/vit_fmnist.npz`` by default), one pre-trained on the same images *without* labels by masked patch
prediction (:mod:`vitnp.experiments.self_supervision`'s ``pretrained.npz``, when given), and, as the baseline a new
head must beat, the random initialisation.  New linear heads
(:func:`vitnp.training.probe.ridge_head`, the paper's regularised least squares onto {−1, 1}^K) are fitted on the
frozen features for three tasks:

=================  ==============================================================================================
``classes``        the ten classes again (the task the body was trained for)
``groups``         another labelling of the same images: tops (T-shirt/top, Pullover, Dress, Coat, Shirt), footwear
                   (Sandal, Sneaker, Ankle boot), other (Trouser, Bag)
``mirrored``       a task the labels never asked for: was the image flipped left-right?  (Half of the images are
                   mirrored, chosen at random; the body was trained with random flips.)
=================  ==============================================================================================

and the paper's **few-shot** evaluation on the ten classes: k = 1, 5, 10, 25 training images per class, five random
draws each.  For the supervised body these are the classes it was trained on, so its few-shot heads only read back
what its labels taught it; the self-supervised body never saw a label, which makes its few-shot accuracy the paper's
kind of measurement.  λ of every head is chosen on 5,000 held-out training images (the trainer's validation split);
the test split is read once per head, after the choice.  (The default body saw those 5,000 images, with their labels,
in its own training: its run had no validation split.  That flatters nothing that is reported, only the choice of λ.)
"""
from __future__ import annotations

import json
import os

import numpy as np

from ..data import load_fashion_mnist, prepare_data
from ..io.atomic import write_text
from ..model import init_params
from ..training.presets import HParams
from ..training.probe import features, ridge_head, ridge_predict
from ..training.rundir import load_checkpoint

FORMAT = "vitnp-new-heads/1"
GROUPS = {"tops": (0, 2, 3, 4, 6), "footwear": (5, 7, 9), "other": (1, 8)}     # Fashion-MNIST class indices
LAMBDAS = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)
SHOTS = (1, 5, 10, 25)
DEFAULT_CHECKPOINT = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                                  "notebooks", "assets", "vit_fmnist.npz")


def group_labels(labels) -> np.ndarray:
    """The ``groups`` labelling: 0 tops, 1 footwear, 2 other."""
    table = np.empty(10, np.int64)
    for g, classes in enumerate(GROUPS.values()):
        table[list(classes)] = g
    return table[labels]


def fit_and_test(f_tr, y_tr, f_val, y_val, f_te, y_te, K, lambdas=LAMBDAS) -> dict:
    """A ridge head per λ fitted on the training features; the λ of the best validation accuracy, then its test
    accuracy (read once).  Returns {'lam', 'val_acc', 'test_acc', 'majority_acc'} (majority: of the test labels)."""
    scores = []
    for lam in lambdas:
        W, b = ridge_head(f_tr, y_tr, K, lam)
        scores.append((float(np.mean(ridge_predict(f_val, W, b) == y_val)), lam, W, b))
    val_acc, lam, W, b = max(scores, key=lambda s: s[0])
    return {"lam": lam, "val_acc": val_acc, "test_acc": float(np.mean(ridge_predict(f_te, W, b) == y_te)),
            "majority_acc": float(np.bincount(y_te, minlength=K).max() / len(y_te))}


def run(out=None, checkpoint=DEFAULT_CHECKPOINT, *, self_supervised=None, data_dir=None, verify=True, data=None,
        seeds=(0, 1, 2, 3, 4), shots=SHOTS, log=print) -> dict:
    """Every task and the few-shot heads for each body ('trained' from ``checkpoint``, 'self-supervised' from
    ``self_supervised`` when given, 'random'); returns the results (written to ``out``/results.json when ``out`` is
    given)."""
    params, cfg, _ = load_checkpoint(checkpoint)
    bodies = {"trained": params}
    if self_supervised is not None:
        ss_params, ss_cfg, _ = load_checkpoint(self_supervised)
        if ss_cfg.replace(num_classes=cfg.num_classes) != cfg:
            raise ValueError(f"{self_supervised} holds another architecture than {checkpoint}: {ss_cfg} vs {cfg}")
        bodies["self-supervised"] = ss_params
    bodies["random"] = init_params(cfg, 0)
    if data is None:
        data = (*load_fashion_mnist(data_dir, "train", verify=verify), *load_fashion_mnist(data_dir, "test",
                                                                                          verify=verify))
    splits = prepare_data(data, cfg, HParams(val_size=5000))
    (x_tr, y_tr), (x_val, y_val), (x_te, y_te) = splits["train"], splits["val"], splits["test"]
    rng = np.random.default_rng(0)
    flip = {name: rng.random(len(x)) < 0.5 for name, x in (("train", x_tr), ("val", x_val), ("test", x_te))}
    results = {"format": FORMAT, "checkpoint": os.path.basename(checkpoint),
               "self_supervised": None if self_supervised is None else os.path.basename(self_supervised),
               "n": {"train": len(x_tr),
               "val": len(x_val), "test": len(x_te)}, "lambdas": list(LAMBDAS), "bodies": {}}
    for kind, body in bodies.items():
        f = {name: features(body, cfg, x) for name, x in (("train", x_tr), ("val", x_val), ("test", x_te))}
        mirrored = {}
        for name, x in (("train", x_tr), ("val", x_val), ("test", x_te)):
            mirrored[name] = f[name].copy()                        # only the flipped half needs new features
            mirrored[name][flip[name]] = features(body, cfg, x[flip[name]][:, :, ::-1])
        tasks = {
            "classes": fit_and_test(f["train"], y_tr, f["val"], y_val, f["test"], y_te, 10),
            "groups": fit_and_test(f["train"], group_labels(y_tr), f["val"], group_labels(y_val), f["test"],
                                   group_labels(y_te), 3),
            "mirrored": fit_and_test(mirrored["train"], flip["train"].astype(int), mirrored["val"],
                                     flip["val"].astype(int), mirrored["test"], flip["test"].astype(int), 2),
        }
        few = {}
        for k in shots:
            accs = []
            for seed in seeds:
                pick = np.concatenate([np.random.default_rng([seed, c]).choice(np.flatnonzero(y_tr == c), k,
                                                                               replace=False) for c in range(10)])
                accs.append(fit_and_test(f["train"][pick], y_tr[pick], f["val"], y_val, f["test"], y_te, 10))
            test = [a["test_acc"] for a in accs]
            few[str(k)] = {"test_acc": test, "mean": float(np.mean(test)),
                           "std": float(np.std(test, ddof=1)) if len(test) > 1 else 0.0,
                           "lam": [a["lam"] for a in accs]}
        results["bodies"][kind] = {"tasks": tasks, "few_shot": few}
        log(f"{kind} body: " + ", ".join(f"{t} {100 * r['test_acc']:.1f}%" for t, r in tasks.items())
            + "; few-shot " + ", ".join(f"{k}-shot {100 * v['mean']:.1f}%" for k, v in few.items()))
    if out is not None:
        os.makedirs(out, exist_ok=True)
        write_text(os.path.join(out, "results.json"), json.dumps(results, indent=1, allow_nan=False) + "\n")
    return results
