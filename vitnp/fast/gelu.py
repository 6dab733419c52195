"""Same math as :mod:`vitnp.ops.gelu` (GELU exact and tanh); differs by: float32 exact GELU uses a shorter
polynomial fitted for float32 (:func:`_gelu_exact_f32_block`, below); arrays are processed in blocks of
``BLOCK`` elements with preallocated scratch rows, written through ``out=`` arguments, so one block's
temporaries stay in cache and nothing is allocated in the loop; and the forward evaluates the local
derivative dGELU/dx from its own terms (the exp(−u²) of erfc is the Gaussian φ needs), so the backward is
one multiply and the cache is one array.

Its measured gain is in the table of docs/performance.md that ``python -m vitnp bench --ops --write-table`` writes.
Proven equal to the reference in ``tests/test_fast.py``; the float32 polynomial's accuracy is tested
there against the float64 reference, elementwise.
"""
from __future__ import annotations

import numpy as np

from ..ops.erf import erfcx_reference
from ..ops.gelu import APPROXIMATIONS, INV_SQRT_2PI, SQRT_2_OVER_PI, SQRT_HALF, TANH_C
from .erf import blocks, erfc_abs_and_gauss, flat_float

__all__ = ["gelu_forward", "gelu_backward"]

def _gelu_exact_block(x, out, dydx, scratch, derivative=True):
    """out = x Φ(x) and dydx = Φ(x) + x φ(x) for one 1-D block (scratch: 4 rows).  ``derivative`` is
    ignored: Φ is needed for the value anyway, so dydx is always written (into scratch when not wanted)."""
    u, gauss, t, w = scratch
    np.multiply(x, SQRT_HALF, out=u)                   # u = x/√2
    y, gauss = erfc_abs_and_gauss(u, out, gauss, t, w)   # erfc(|u|) (parked in out), exp(−x²/2)
    # Φ(x) = ½ erfc(−u) is 1 − ½erfc(|u|) for x ≥ 0 and ½erfc(|u|) for x < 0 (no cancellation for x ≪ 0)
    half_sign = np.copysign(0.5, x, out=u)            # ±½
    y *= half_sign                                    # ±½ erfc(|u|)
    half_sign += 0.5                                  # 1 for x ≥ 0, 0 for x < 0
    phi_cdf = np.subtract(half_sign, y, out=dydx)     # Φ(x)
    np.multiply(x, phi_cdf, out=out)                  # GELU(x) = x Φ(x)
    gauss *= x
    gauss *= INV_SQRT_2PI                            # x φ(x) = x exp(−x²/2)/√(2π)
    dydx += gauss                                     # dGELU/dx = Φ(x) + x φ(x)


# ---- float32: a shorter polynomial ----------------------------------------------------------------
# For float32, h = ½ erfc(|x|/√2) = Φ(−|x|) = exp(−x²/2) · t · S₃₂(t),  t = 1/(1 + _P32 |x|/√2), with S₃₂ of
# degree 7 (the ½ is folded into its coefficients), fitted in relative error by _fit_float32_coefficients():
# max relative error of h 8.3e-7 in float64 (the reference's degree 12 is for float64's 5.7e-10).
_P32 = 0.35
_S32 = (
    0.0987331435846784, 0.09872655441945496, 0.09295467473617529, 0.07733604613163607,
    0.08147228228150367, -0.007275509583927911, 0.10060513721765897, -0.04255274080897309,
)


def _gelu_exact_f32_block(x, out, dydx, scratch, derivative=True):
    """out = GELU(x), and dydx = Φ(x) + x φ(x) if ``derivative``, for one float32 1-D block (scratch: 3 rows).

    GELU(x) = max(x, 0) − |x| h with h = Φ(−|x|): for x ≥ 0, x Φ(x) = x (1 − h); for x < 0, x Φ(x) = x h.
    No cancellation in the left tail (h itself is the small number).  27 passes over the block (34 with
    the derivative) instead of the float64 path's ~40.  The derivative's Φ = ½ + sign(x)(½ − h) loses h's
    relative precision for x ≪ 0 but stays within ~1e-7 in absolute terms, where dGELU/dx ≈ 0 anyway.
    """
    a, t, g = scratch
    np.abs(x, out=a)                                  # |x|
    np.multiply(a, _P32 * SQRT_HALF, out=t)
    t += 1.0
    np.divide(1.0, t, out=t)                          # t = 1/(1 + p|x|/√2)
    h = np.multiply(t, _S32[-1], out=out)             # Horner: S₃₂(t), parked in out
    for c in _S32[-2::-1]:
        h += c
        h *= t                                        # the last pass multiplies by t itself: t S₃₂(t)
    np.multiply(x, x, out=g)
    g *= -0.5
    np.exp(g, out=g)                                  # exp(−x²/2)
    h *= g                                            # h = Φ(−|x|)
    if derivative:                                    # Φ(x) = ½ + sign(x) (½ − h)
        np.sign(x, out=t)
        np.subtract(0.5, h, out=dydx)
        dydx *= t
        dydx += 0.5
        g *= x
        g *= INV_SQRT_2PI                            # x φ(x)
        dydx += g                                     # dGELU/dx = Φ(x) + x φ(x)
    infinite = np.fmax.reduce(a) == np.inf            # |x| h is inf·0 = nan at x = ±inf (fmax skips NaN)
    h *= a                                            # |x| h
    np.maximum(x, 0.0, out=a)
    np.subtract(a, h, out=out)                        # GELU(x) = max(x, 0) − |x| h
    if infinite:                                      # as the reference: GELU(+inf) = inf, GELU(−inf) = nan
        np.copyto(out, x, where=x == np.inf)


def _fit_float32_coefficients(degree=7, p=_P32, n=3000, iterations=60):
    """Re-derive ``_S32``: a fit, in relative error, of S₃₂(t) = ½ e^{a²} erfc(a) / t, a = |x|/√2.

    Sample t at the n Chebyshev nodes of (0, 1), a_i = (1 − t_i)/(p t_i); solve a weighted least-squares
    problem and re-weight by the residuals (Lawson's iteration, which moves the fit toward the smallest
    maximum relative error).  Degree 7 and p = 0.35 came from a scan (degree 5–8, p = 0.30 … 1.20) for the
    lowest degree under 1e-6.  Not run at import; ``tests/test_fast.py`` re-runs it.

    Returns the coefficients (c_0 … c_degree) and the max relative error at the nodes.
    """
    t = 0.5 - 0.5 * np.cos(np.pi * (np.arange(n) + 0.5) / n)
    a = (1.0 - t) / (p * t)
    target = np.array([0.5 * erfcx_reference(v) for v in a]) / t
    rows = np.vander(t, degree + 1, increasing=True) / target[:, None]      # S_fit(t_i)/S_i = rows @ c
    weights = np.full(n, 1.0 / n)
    for _ in range(iterations):
        root = np.sqrt(weights)
        coef = np.linalg.lstsq(rows * root[:, None], root, rcond=None)[0]
        residual = np.abs(rows @ coef - 1.0)
        weights = weights * residual
        weights /= weights.sum()
    return tuple(float(c) for c in coef), float(residual.max())


def _gelu_tanh_block(x, out, dydx, scratch, derivative=True):
    """out = ½x(1 + T) and dydx = ½(1 + T) + ½x(1 − T²) dz/dx for one 1-D block (scratch: 2 rows),
    T = tanh(z), z = √(2/π)(x + 0.044715x³); ``derivative`` is ignored, as in :func:`_gelu_exact_block`."""
    x2, z = scratch
    np.multiply(x, x, out=x2)
    np.multiply(x2, TANH_C, out=z)
    z += 1.0
    z *= x
    z *= SQRT_2_OVER_PI                                   # z = √(2/π)(x + 0.044715 x³)
    th = np.tanh(z, out=z)                            # T
    half = np.add(th, 1.0, out=dydx)
    half *= 0.5                                       # ½(1 + T)
    np.multiply(x, half, out=out)                     # GELU(x) ≈ ½ x (1 + T)
    np.subtract(1.0, th, out=th)
    th *= half                                        # ½(1 − T)(1 + T) = ½(1 − T²): exact at T ≈ ±1
    x2 *= 3.0 * TANH_C
    x2 += 1.0
    x2 *= SQRT_2_OVER_PI                                  # dz/dx = √(2/π)(1 + 3·0.044715 x²)
    x2 *= th
    x2 *= x                                           # ½ x (1 − T²) dz/dx
    dydx += x2                                        # dGELU/dx


def gelu_forward(x, approximate="exact", *, derivative=True):
    """GELU(x) elementwise, as :func:`vitnp.ops.gelu.gelu_forward`.

    Returns out (same shape and dtype as x) and cache = (dydx,), the local derivative dGELU/dx.
    derivative : keyword of the fast path only; False skips dGELU/dx (inference) and returns cache None.

    Exact GELU of float32 arrays runs :func:`_gelu_exact_f32_block` (a float32-grade polynomial, fewer
    passes); float64 runs the reference's polynomial, so that float64 results equal the reference's.
    """
    if approximate not in APPROXIMATIONS:
        raise ValueError(f"approximate must be one of {APPROXIMATIONS}, got {approximate!r}")
    x, dtype, xf = flat_float(x)
    if approximate == "tanh":
        block, n_scratch = _gelu_tanh_block, 2
    elif xf.dtype == np.float32:
        block, n_scratch = _gelu_exact_f32_block, 3
    else:
        block, n_scratch = _gelu_exact_block, 4
    out = np.empty_like(xf)
    dydx = np.empty_like(xf) if derivative else None
    with np.errstate(over="ignore"):                  # x² → inf for huge |x|: saturates as it should
        for s, scratch in blocks(xf.size, xf.dtype, n_scratch + (not derivative)):
            if derivative:
                block(xf[s], out[s], dydx[s], scratch)
            else:                                     # a scratch row stands in for dydx, then is dropped
                block(xf[s], out[s], scratch[-1], scratch[:-1], derivative=False)
    out = out.reshape(x.shape).astype(dtype, copy=False)
    return out, ((dydx.reshape(x.shape).astype(dtype, copy=False),) if derivative else None)


def gelu_backward(dout, cache):
    """dx = dout ⊙ dGELU/dx, with the derivative the forward already evaluated:
    Φ(x) + x φ(x) (exact) or ½(1 + T) + ½x (1 − T²) dz/dx (tanh, T = tanh z), as the reference's."""
    (dydx,) = cache
    return dout * dydx
