"""Numerical gradient checking: the tool that proves every backward in vitnp.

A backward function claims ∂L/∂x for a scalar L = Σ out ⊙ g, where g is a random upstream gradient.
We estimate the same derivative by centred differences,

.. math::  \\frac{\\partial L}{\\partial x_i} \\approx \\frac{L(x + h e_i) - L(x - h e_i)}{2h},

whose error is O(h²), and compare.  Work in float64: in float32 the difference quotient loses most of
its digits to rounding.

The error we report for one array is

.. math::  \\text{rel} = \\frac{\\max_i |a_i - n_i|}{\\max(\\epsilon, \\max_i |a_i| + \\max_i |n_i|)}

(a analytic, n numeric): the largest disagreement measured against the scale of the gradient.  A
per-element ratio would be dominated by entries that are zero up to rounding.
"""
from __future__ import annotations

import numpy as np

__all__ = ["OP_TOL", "MODEL_TOL", "rel_error", "numerical_gradient", "check_gradients", "check_pair"]

# The tolerances on that relative error, in float64, used by the tests, the gradcheck suite and the notebooks.
OP_TOL = 1e-7       # a single op
MODEL_TOL = 1e-6    # the encoder block, the encoder, the whole model (errors add up over more steps)


def rel_error(analytic, numeric, eps=1e-12) -> float:
    """max|a − n| / max(eps, max|a| + max|n|) over all elements; 0.0 for empty arrays.

    ``inf`` when either side holds a NaN or an infinity, so that no tolerance can ever pass it.
    """
    a = np.asarray(analytic, dtype=np.float64)
    n = np.asarray(numeric, dtype=np.float64)
    if a.shape != n.shape:
        raise ValueError(f"gradient shapes differ: analytic {a.shape} vs numeric {n.shape}")
    if a.size == 0:
        return 0.0
    if not (np.isfinite(a).all() and np.isfinite(n).all()):
        return float("inf")
    scale = max(eps, float(np.abs(a).max() + np.abs(n).max()))
    return float(np.abs(a - n).max() / scale)


def numerical_gradient(f, x, *, h=1e-6, indices=None):
    """Centred-difference gradient of the scalar function ``f()`` with respect to the array ``x``.

    ``x`` is perturbed in place (and restored), so ``f`` must read the array, not a copy of it.

    Parameters
    ----------
    f : callable () -> float
    x : ndarray, float64
    h : float            step of the centred difference.
    indices : sequence of flat indices, optional
        evaluate only these entries (the others stay NaN); default: all.

    Returns
    -------
    grad : ndarray shaped like x
    """
    if x.dtype != np.float64:
        raise TypeError(f"numerical gradients need float64 arrays, got {x.dtype}")
    if not x.flags.c_contiguous:
        raise ValueError("x must be C-contiguous so that it can be perturbed in place")
    grad = np.full(x.shape, np.nan)
    flat, gflat = x.reshape(-1), grad.reshape(-1)    # views of x and grad
    for i in range(x.size) if indices is None else indices:
        old = flat[i]
        flat[i] = old + h
        f_plus = f()
        flat[i] = old - h
        f_minus = f()
        flat[i] = old
        gflat[i] = (f_plus - f_minus) / (2.0 * h)
    return grad


def check_gradients(loss, arrays, analytic, *, h=1e-6, max_checks=None, seed=0):
    """Compare analytic gradients with centred differences for several arrays.

    Parameters
    ----------
    loss : callable () -> float
        recomputes the scalar from the current contents of ``arrays``.
    arrays : dict name -> float64 ndarray, perturbed in place.
    analytic : dict name -> ndarray, the gradients to test (same keys and shapes).
    max_checks : int, optional
        check at most this many randomly chosen entries per array (all when None).

    Returns
    -------
    dict name -> max relative error (see :func:`rel_error`); ``inf`` for an array of which no entry was
    checked (an empty array, or ``max_checks=0``), so that a check that checked nothing cannot pass.
    """
    if max_checks is not None and (isinstance(max_checks, bool) or not isinstance(max_checks, (int, np.integer))
                                   or max_checks < 0):
        raise ValueError(f"max_checks must be a non-negative integer or None, got {max_checks!r}")
    rng = np.random.default_rng(seed)
    errors = {}
    for name, x in arrays.items():
        a = np.asarray(analytic[name])
        if a.shape != x.shape:
            raise ValueError(f"{name}: analytic gradient has shape {a.shape}, the input has {x.shape}")
        idx = None
        if max_checks is not None and x.size > max_checks:
            idx = np.sort(rng.choice(x.size, size=max_checks, replace=False))
        n = numerical_gradient(loss, x, h=h, indices=idx)
        if idx is not None:
            a, n = a.reshape(-1)[idx], n.reshape(-1)[idx]
        errors[name] = rel_error(a, n) if a.size else float("inf")      # nothing checked: never a pass
    return errors


def check_pair(forward, backward, inputs, *, kwargs=None, h=1e-6, seed=0, max_checks=None):
    """Check a ``forward(*inputs, **kwargs) -> (out, ..., cache)`` / ``backward(dout, cache)`` pair.

    The backward must return the gradient of each positional input, in order (a bare array when there
    is one input).  Non-differentiable arguments (masks, flags, rates, generators) go in ``kwargs``;
    a callable value there is called before every forward, so ``lambda: np.random.default_rng(0)``
    gives each evaluation the same dropout mask.

    Parameters
    ----------
    inputs : dict name -> ndarray
        the differentiable positional inputs, copied to float64.

    Returns
    -------
    dict name -> max relative error of that input's gradient
    """
    arrays = {k: np.array(v, dtype=np.float64) for k, v in inputs.items()}
    kwargs = kwargs or {}

    def run():
        kw = {k: (v() if callable(v) else v) for k, v in kwargs.items()}
        res = forward(*arrays.values(), **kw)
        return res[0], res[-1]

    out, cache = run()
    g = np.random.default_rng(seed).standard_normal(np.shape(out))
    grads = backward(g, cache)
    if len(arrays) == 1 and not isinstance(grads, tuple):
        grads = (grads,)
    if len(grads) != len(arrays):
        raise ValueError(f"backward returned {len(grads)} gradients for {len(arrays)} inputs")
    analytic = dict(zip(arrays, grads))
    return check_gradients(lambda: float(np.sum(run()[0] * g)), arrays, analytic,
                           h=h, max_checks=max_checks, seed=seed)
