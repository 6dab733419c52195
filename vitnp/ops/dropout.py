"""Inverted dropout (Srivastava et al. 2014): in training, zero each element with probability p and
scale the survivors by 1/(1−p), so that nothing changes at test time.  The mask comes from an explicit
``np.random.Generator``, so a run is reproducible from its seed.
"""
import numpy as np


def dropout_forward(x, p, rng=None, train=True):
    """out = x ⊙ mask / (1 − p), mask ~ Bernoulli(1 − p); the identity when not training or p = 0.

    x: any shape   p: float in [0, 1)   rng: np.random.Generator (required when it drops)
    ->   out: same shape, cache

    cache = mask / (1 − p), the scaled mask, or None when nothing is dropped: what dropout_backward reads.
    """
    if not train or p == 0.0:
        return x, None
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout rate must be in [0, 1), got {p}")
    if rng is None:
        raise ValueError("dropout in training needs rng=np.random.Generator (seeded, for reproducible runs)")
    keep = rng.random(x.shape, dtype=np.float32) >= p
    mask = keep.astype(x.dtype) * (1.0 / (1.0 - p))
    return x * mask, mask


def dropout_backward(dout, cache):
    """Gradients of dropout: returns dx = dout ⊙ mask / (1 − p), the same elements passed, with the same
    scale.
    """
    mask = cache
    return dout if mask is None else dout * mask
