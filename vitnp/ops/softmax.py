"""Numerically stable softmax (Eq 6's normalisation over the keys).

softmax(x)_j = exp(x_j − max x) / Σ_i exp(x_i − max x): subtracting the maximum changes nothing
mathematically and keeps exp from overflowing.  Rows that are −inf everywhere (a token allowed to
attend nowhere) give zeros instead of NaN.

The fast twin is :mod:`vitnp.fast.softmax`: the same functions, proven equal, with its measured gain.
"""
import numpy as np


def softmax_forward(x, axis=-1):
    """y = softmax(x) along ``axis``.

    x: any shape   ->   y: same shape, cache

    cache = (y, axis): the output and the axis, what softmax_backward reads.
    """
    m = x.max(axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)          # a row of −inf has no maximum to subtract
    e = np.exp(x - m)
    s = e.sum(axis, keepdims=True)
    y = e / np.where(s > 0, s, 1.0)               # a row of −inf: e = 0, so y = 0
    return y, (y, axis)


def softmax_backward(dy, cache):
    """Gradients of softmax_forward: returns dx, the shape of dy (the softmax couples every entry of a
    row).
    """
    ### BEGIN SOLUTION
    y, axis = cache
    return y * (dy - (dy * y).sum(axis, keepdims=True))     # y = e / Σe, ∂y_i/∂x_j = y_i([i = j] − y_j)
    ### END SOLUTION
