"""New heads on a frozen, trained ViT body: the linear probe (paper §4.2 and Appendix D, "linear evaluation") and
the closed-form few-shot head (§4.1, "Metrics").

The body is every parameter but the head; its features are y = LN(z_L⁰) (Eq 4), computed once per image with an
identity head (K = D, head.W = I, head.b = 0), so that the ViT's "logits" are y itself.  A new linear head is then
fitted on those (N, D) features alone: by AdamW on the softmax cross-entropy (:func:`linear_probe`), or, as the
paper's few-shot evaluation does, by "a regularized least-squares regression problem that maps the (frozen)
representation of a subset of training images to {−1, 1}^K target vectors", solved exactly (:func:`ridge_head`).
"""
import time

import numpy as np

from ..data import normalize
from ..model import vit_forward
from ..ops.loss import softmax_cross_entropy
from ..optim import AdamW, clip_grad_norm, warmup_cosine


def features(body, cfg, images, batch_size=500):
    """y = LN(z_L⁰) of every image: uint8 (N, H, W, C) -> float64 (N, D), with an identity head on ``body``."""
    D = cfg.dim
    p = dict(body)
    p["head.W"], p["head.b"] = np.eye(D, dtype=cfg.np_dtype), np.zeros(D, cfg.np_dtype)
    feat_cfg = cfg.replace(num_classes=D)
    out = [vit_forward(p, normalize(images[i:i + batch_size], cfg.np_dtype), feat_cfg)[0]
           for i in range(0, len(images), batch_size)]
    return np.concatenate(out).astype(np.float64)


def linear_probe(body, cfg, train_x, train_y, test_x, test_y, hp, *, flip):
    """A new linear head on the frozen body: softmax regression on y = LN(z_L⁰) (Eq 4), trained with AdamW.

    The features are computed once: the body with an identity head (K = D, head.W = I, head.b = 0) returns
    y itself as its "logits".  Training then uses the fine-tuning recipe on the (N, D) features: the same
    steps, warm-up + cosine schedule, label smoothing, clipping and weight decay; flip augmentation picks,
    per image and step, the features of the image or of its mirror image.

    train_x, test_x : uint8 (N, H, W, C)   train_y, test_y : (N,) labels 0 … K−1
    Returns (history: [{'epoch', 'step', 'test_acc', 'train_loss'}], seconds).
    """
    t0 = time.perf_counter()
    D, K = cfg.dim, int(max(train_y.max(), test_y.max())) + 1
    f_tr, f_te = features(body, cfg, train_x), features(body, cfg, test_x)         # (N, D), (N_test, D)
    f_flip = features(body, cfg, train_x[:, :, ::-1]) if flip else f_tr           # mirror images (W reversed)
    head = {"W": np.zeros((D, K)), "b": np.zeros(K)}           # zero-initialised, as the paper's new head
    opt = AdamW(head, hp.lr, betas=(hp.beta1, hp.beta2), eps=hp.eps, weight_decay=hp.weight_decay)
    B = hp.batch_size
    steps_per_epoch = len(f_tr) // B
    total = hp.epochs * steps_per_epoch
    warm = min(total, int(round(hp.warmup_epochs * steps_per_epoch)))
    rng = np.random.default_rng([hp.seed, 1])
    history, step = [], 0
    for epoch in range(hp.epochs):
        order = rng.permutation(len(f_tr))
        loss_sum = 0.0
        for i in range(steps_per_epoch):
            idx = order[i * B:(i + 1) * B]                                       # (B,)
            mirror = rng.random(B) < 0.5 if flip else np.zeros(B, bool)
            f = np.where(mirror[:, None], f_flip[idx], f_tr[idx])              # (B, D)
            loss, dlogits = softmax_cross_entropy(f @ head["W"] + head["b"], train_y[idx], hp.label_smoothing)
            grads = {"W": f.T @ dlogits, "b": dlogits.sum(0)}                  # (D, K), (K,)
            if hp.clip_grad_norm > 0:
                clip_grad_norm(grads, hp.clip_grad_norm)
            opt.step(head, grads, lr=warmup_cosine(step, total, warm, hp.lr, hp.final_lr))
            step += 1
            loss_sum += loss
        acc = float(((f_te @ head["W"] + head["b"]).argmax(1) == test_y).mean())
        history.append({"epoch": epoch + 1, "step": step, "test_acc": acc, "train_loss": loss_sum / steps_per_epoch})
    return history, time.perf_counter() - t0


def ridge_head(feats, labels, K, lam):
    """The closed-form head of the paper's few-shot evaluation: W, b minimising ‖[F, 1] [W; b] − T‖² + λ‖W‖²,
    T the {−1, 1}^K coding of the labels (1 at the label, −1 elsewhere); the bias is not penalised.

    feats: (n, D)   labels: (n,) ints in [0, K)   lam: λ ≥ 0   ->   W: (D, K), b: (K,)
    Solved from the normal equations ([F, 1]ᵀ[F, 1] + λ diag(1, …, 1, 0)) [W; b] = [F, 1]ᵀ T in float64.
    """
    feats = np.asarray(feats, np.float64)
    n, D = feats.shape
    if not lam >= 0:
        raise ValueError(f"lam must be >= 0, got {lam}")
    T = -np.ones((n, K))
    T[np.arange(n), labels] = 1.0
    A = np.concatenate([feats, np.ones((n, 1))], axis=1)              # (n, D + 1)
    penalty = np.full(D + 1, float(lam))
    penalty[D] = 0.0                                                   # the bias is free
    Wb = np.linalg.lstsq(A.T @ A + np.diag(penalty), A.T @ T, rcond=None)[0]   # (D + 1, K)
    return Wb[:D], Wb[D]


def ridge_predict(feats, W, b):
    """The class of the largest score of ``feats @ W + b``: (n, D) -> (n,)."""
    return np.argmax(np.asarray(feats, np.float64) @ W + b, axis=1)
