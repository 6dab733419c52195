"""Softmax cross-entropy for classification, with optional label smoothing (Szegedy et al. 2016).

With smoothing s the target for class c is (1 − s)·[c = label] + s/K.  The loss is the batch mean of
−Σ_c target_c · log softmax(logits)_c, and its gradient is (softmax(logits) − target) / B.
"""
import numpy as np


def log_softmax(logits):
    """log softmax(z)_k = z_k − max z − log Σ_j exp(z_j − max z) over the last axis, in the dtype of ``logits``.

    Subtracting the maximum changes nothing mathematically and keeps exp from overflowing.  Pass float64
    logits for float64 results (the evaluation's reported losses and probabilities do).

    logits : (..., K) float array   ->   (..., K), rows whose exp sums to 1
    """
    shifted = logits - logits.max(-1, keepdims=True)                  # (..., K), max 0
    return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))


def softmax_cross_entropy(logits, labels, smoothing=0.0):
    """Mean cross-entropy of softmax(logits) against (label-smoothed) one-hot targets, and its gradient.

    logits: (B, K)   labels: (B,) integers in [0, K)   ->   loss: float, dlogits: (B, K) = ∂loss/∂logits

    smoothing : s in [0, 1); the target puts 1 − s + s/K on the label and s/K on every other class.
    """
    logits = np.asarray(logits)
    labels = np.asarray(labels)
    if logits.ndim != 2:
        raise ValueError(f"logits must have shape (B, K), got {logits.shape}")
    B, K = logits.shape
    if labels.shape != (B,) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be {B} integers, got shape {labels.shape} and dtype {labels.dtype}")
    if B and (labels.min() < 0 or labels.max() >= K):
        raise ValueError(f"labels must lie in [0, {K}), got values from {labels.min()} to {labels.max()}")
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"label smoothing must be in [0, 1), got {smoothing}")
    ### BEGIN SOLUTION
    log_p = log_softmax(logits)                                       # (B, K)
    target = np.full_like(log_p, smoothing / K)
    target[np.arange(B), labels] += 1.0 - smoothing                   # (1 − s)·[c = label] + s/K
    loss = float(-(target * log_p).sum() / B)
    dlogits = (np.exp(log_p) - target) * (1.0 / B)                    # (softmax − target) / B
    return loss, dlogits
    ### END SOLUTION
