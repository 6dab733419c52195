"""Same math as :mod:`vitnp.ops.erf` (the same polynomial); differs by: arrays are processed in blocks of ``BLOCK``
elements with preallocated scratch rows, written through ``out=`` arguments, so one block's temporaries stay in cache
and nothing is allocated in the loop.  :mod:`vitnp.fast.gelu` builds on :func:`erfc_abs_and_gauss` and the block
helpers.  Proven equal to the reference in ``tests/test_fast.py``.
"""
from __future__ import annotations

import numpy as np

from ..ops.erf import ERFC_P, ERFC_S

__all__ = ["BLOCK", "blocks", "erf", "erfc_abs_and_gauss", "flat_float"]

BLOCK = 1 << 16                        # elements per block (256 KiB of float32)


def erfc_abs_and_gauss(u, y, gauss, t, w, coefficients=ERFC_S, p=ERFC_P):
    """Write erfc(|u|) into ``y`` and exp(−u²) into ``gauss``: one exp and one Horner pass.

    All arguments are 1-D arrays of u's length and dtype; ``t`` and ``w`` are scratch.  Returning
    erfc(|u|) rather than erf(u) lets the caller form Φ without cancellation in the left tail.
    """
    np.multiply(u, u, out=gauss)
    np.negative(gauss, out=gauss)
    np.exp(gauss, out=gauss)                          # exp(−u²)
    np.abs(u, out=t)
    t *= p
    t += 1.0
    np.divide(1.0, t, out=t)                          # t = 1/(1 + p|u|)
    np.subtract(1.0, t, out=w)                        # w = 1 − t ∈ [0, 1)
    np.multiply(w, coefficients[-1], out=y)           # Horner: S(w) = 1 + w(s_1 + w(s_2 + … + w s_12))
    for c in coefficients[-2:0:-1]:
        y += c
        y *= w
    y += coefficients[0]
    y *= t
    y *= gauss                                        # erfc(|u|) = exp(−u²) t S(w)
    return y, gauss


def flat_float(x):
    """(x as an ndarray, its float dtype, a C-contiguous 1-D float32/float64 copy or view to compute in)."""
    x = np.asarray(x)
    dtype = x.dtype if x.dtype.kind == "f" else np.dtype(np.float64)
    work = dtype if dtype in (np.float32, np.float64) else np.float64   # float16 etc.: compute in float64
    return x, dtype, np.ascontiguousarray(x, dtype=work).reshape(-1)


def blocks(n, dtype, n_scratch):
    """Yield (slice, scratch) covering range(n) in blocks of at most BLOCK elements; scratch holds
    n_scratch rows of the block's length, allocated once (no allocation inside the loop)."""
    scratch = np.empty((n_scratch, min(n, BLOCK)), dtype)
    for start in range(0, n, BLOCK):
        stop = min(start + BLOCK, n)
        yield slice(start, stop), scratch[:, : stop - start]


def erf(x):
    """erf(x) elementwise, as :func:`vitnp.ops.erf.erf` (same polynomial), block by block."""
    x, dtype, xf = flat_float(x)
    out = np.empty_like(xf)
    with np.errstate(over="ignore"):                  # u² → inf for huge |u|: erfc → 0, erf → ±1
        for s, (gauss, t, w) in blocks(xf.size, xf.dtype, 3):
            y, _ = erfc_abs_and_gauss(xf[s], out[s], gauss, t, w)    # erfc(|x|)
            np.subtract(1.0, y, out=y)                # erf(|x|) = 1 − erfc(|x|)
            np.copysign(y, xf[s], out=y)              # erf(−x) = −erf(x)
    return out.reshape(x.shape).astype(dtype, copy=False)
