"""GELU, the nonlinearity inside the MLP of Eq 3, and the erf it needs (NumPy has none).

.. math::  \\mathrm{GELU}(x) = x\\,\\Phi(x) = \\tfrac12 x\\,\\bigl(1 + \\mathrm{erf}(x/\\sqrt2)\\bigr)
           \\approx \\tfrac12 x\\,\\bigl(1 + \\tanh(\\sqrt{2/\\pi}\\,(x + 0.044715 x^3))\\bigr)

(Hendrycks & Gimpel 2016; Φ, φ are the standard normal CDF and density.)

erf is computed through erfc of |x|, with one exp and one polynomial per element:

.. math::  \\mathrm{erfc}(a) = e^{-a^2}\\, t\\, S(1 - t), \\qquad t = \\frac{1}{1 + p a}, \\quad a \\ge 0,
           \\qquad \\mathrm{erf}(\\pm a) = \\pm(1 - \\mathrm{erfc}(a))

The substitution maps a ∈ [0, ∞) onto t ∈ (0, 1], where S(t) = e^{a²} erfc(a) / t is smooth and tends
to p/√π as a → ∞ (Numerical Recipes' ``erfcc`` uses the same idea with p = ½ and exp of a polynomial).
We use p = 0.4 and a degree-12 polynomial S that we fitted ourselves; :func:`_fit_erf_coefficients`
re-derives it.  Measured in float64 against ``math.erf`` / ``math.erfc`` (10⁶ points on [0, 10] plus
200,001 on [−10, 10]): max |erf error| = 4.4e-10, max relative error of erfc = 5.2e-10 (the fit's
bound, uniform in a, so erfc and Φ stay accurate deep in the tails).  In float32 the error is float32
rounding (≈ 1e-7).  Near 0 the error is absolute, not relative: erf(1e-30) comes out as 0.

The exp(−u²) term is the Gaussian that GELU's derivative needs, φ(x) = exp(−x²/2)/√(2π) with u = x/√2,
so the forward computes the local derivative with no second exp and caches only that (one array).

Large arrays are processed in blocks of ``_BLOCK`` elements so that the dozen temporaries of one block
stay in cache: about 3× faster than whole-array NumPy expressions on (6400, 768) float32.
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["APPROXIMATIONS", "erf", "gelu_forward", "gelu_backward"]

APPROXIMATIONS = ("exact", "tanh")

# erfc(a) = exp(−a²) · t · S(w), t = 1/(1 + _P·a), w = 1 − t;  S(w) = Σ_k _S[k] w^k, _S[0] = 1 exactly.
# From _fit_erf_coefficients().
_P = 0.4
_S = (
    1.0, -1.820948031066746, 1.608111288917328, -0.4669529622528469, -0.2665237437115995,
    0.11491980713998667, 0.14741919640872025, -0.16556227184821198, 0.2509662571499032,
    -0.3777878409886726, 0.3033507627384538, -0.12047759598759711, 0.019160966890691744,
)
_BLOCK = 1 << 16                        # elements per block (256 KiB of float32)
_SQRT1_2 = math.sqrt(0.5)               # Python floats: they never upcast float32 arrays
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_SQRT_2_PI = math.sqrt(2.0 / math.pi)   # √(2/π) of the tanh form
_C = 0.044715


def _erfcx(x: float) -> float:
    """Reference e^{x²} erfc(x) for x ≥ 0 in float64: math.erfc below 10, else the asymptotic series
    1/(x√π) · Σ_k (−1)^k (2k−1)!! / (2x²)^k (40 terms is far below rounding for x ≥ 10)."""
    if x < 10.0:
        return math.erfc(x) * math.exp(x * x)
    total, term = 1.0, 1.0
    for k in range(1, 40):
        term *= -(2 * k - 1) / (2.0 * x * x)
        total += term
    return total / (x * math.sqrt(math.pi))


def _fit_erf_coefficients(degree=12, p=_P, n=2000):
    """Re-derive ``_S``: a least-squares fit, in relative error, of S(w) = e^{a²} erfc(a) / t.

    Sample t at the n Chebyshev nodes of (0, 1), t_i = ½ − ½cos(π(i + ½)/n); then w_i = 1 − t_i and
    a_i = (1 − t_i)/(p t_i).  Fix s_0 = 1 (so that S = 1 and erf = 0 exactly at a = 0) and solve
    min over s_1 … s_degree of  Σ_i ((1 + Σ_k s_k w_i^k) / S_i − 1)²  with ``np.linalg.lstsq``.
    Degree and p came from a scan (degree 10–12, p = 0.25 … 0.7 in steps of 0.05) for the smallest
    error.  Not run at import; ``tests/test_gelu.py`` re-runs it.

    Returns
    -------
    coefficients : tuple of float, s_0 = 1, s_1 … s_degree
    max_rel_error : float, max_i |e^{−a_i²} t_i S_fit(w_i) / erfc(a_i) − 1|
    """
    t = 0.5 - 0.5 * np.cos(np.pi * (np.arange(n) + 0.5) / n)
    w = 1.0 - t
    a = w / (p * t)
    target = np.array([_erfcx(v) for v in a]) / t                                 # S_i
    rows = np.vander(w, degree + 1, increasing=True)[:, 1:] / target[:, None]     # (n, degree)
    coef = np.linalg.lstsq(rows, 1.0 - 1.0 / target, rcond=None)[0]
    max_rel_error = np.abs(rows @ coef + 1.0 / target - 1.0).max()
    return (1.0,) + tuple(float(c) for c in coef), float(max_rel_error)


def _erfc_abs_and_gauss(u, coefficients=_S, p=_P):
    """erfc(|u|) and exp(−u²), elementwise, in u's dtype (new arrays; one exp, one Horner pass)."""
    a = np.abs(u)
    gauss = np.multiply(u, u)
    np.negative(gauss, out=gauss)
    np.exp(gauss, out=gauss)                          # exp(−u²)
    t = np.multiply(a, p, out=a)
    t += 1.0
    np.divide(1.0, t, out=t)                          # t = 1/(1 + p|u|)
    w = np.subtract(1.0, t)                           # w = 1 − t ∈ [0, 1)
    y = np.multiply(w, coefficients[-1])              # Horner: S(w) = 1 + w(s_1 + w(s_2 + … + w s_12))
    for c in coefficients[-2:0:-1]:
        y += c
        y *= w
    y += coefficients[0]
    y *= t
    y *= gauss                                        # erfc(|u|) = exp(−u²) t S(w)
    return y, gauss


def _flat_float(x):
    """(x as an ndarray, its float dtype, a C-contiguous 1-D float32/float64 copy or view to compute in)."""
    x = np.asarray(x)
    dtype = x.dtype if x.dtype.kind == "f" else np.dtype(np.float64)
    work = dtype if dtype in (np.float32, np.float64) else np.float64   # float16 etc.: compute in float64
    return x, dtype, np.ascontiguousarray(x, dtype=work).reshape(-1)


def _blocks(n):
    return (slice(i, i + _BLOCK) for i in range(0, n, _BLOCK))


def erf(x):
    """The error function erf(x) = 2/√π ∫₀ˣ e^{−s²} ds, elementwise.

    Parameters
    ----------
    x : array_like, any shape; float32 stays float32, float64 stays float64 (integers → float64).

    Returns
    -------
    ndarray, same shape and float dtype.  Max absolute error 4.4e-10 in float64 (see the module
    docstring); erf(±inf) = ±1, erf(nan) = nan, erf(−0.0) = −0.0.
    """
    x, dtype, xf = _flat_float(x)
    out = np.empty_like(xf)
    with np.errstate(over="ignore"):                  # u² → inf for huge |u|: erfc → 0, erf → ±1
        for s in _blocks(xf.size):
            y, _ = _erfc_abs_and_gauss(xf[s])
            np.subtract(1.0, y, out=out[s])           # erf(|x|) = 1 − erfc(|x|)
            np.copysign(out[s], xf[s], out=out[s])    # erf(−x) = −erf(x)
    return out.reshape(x.shape).astype(dtype, copy=False)


def _gelu_exact_block(x, out, dydx):
    """out = x Φ(x), dydx = Φ(x) + x φ(x) for one 1-D block."""
    u = x * _SQRT1_2                                  # u = x/√2
    y, gauss = _erfc_abs_and_gauss(u)                 # erfc(|u|), exp(−u²) = exp(−x²/2)
    # Φ(x) = ½ erfc(−u): ½ erfc(|u|) for x < 0, 1 − ½ erfc(|u|) for x ≥ 0 (no cancellation for x ≪ 0)
    y *= 0.5
    np.copysign(y, x, out=y)                          # ±½ erfc(|u|)
    phi_cdf = np.subtract(np.logical_not(np.signbit(x)), y, out=dydx)    # Φ(x)
    np.multiply(x, phi_cdf, out=out)                  # GELU(x) = x Φ(x)
    gauss *= x
    gauss *= _INV_SQRT_2PI                            # x φ(x) = x exp(−x²/2)/√(2π)
    dydx += gauss                                     # Φ(x) + x φ(x)


def _gelu_tanh_block(x, out, dydx):
    """out = ½x(1 + T), dydx = ½(1 + T) + ½x(1 − T²) √(2/π)(1 + 3·0.044715x²), T = tanh(√(2/π)(x + 0.044715x³))."""
    x2 = np.multiply(x, x)
    z = np.multiply(x2, _C)
    z += 1.0
    z *= x
    z *= _SQRT_2_PI                                   # z = √(2/π)(x + 0.044715 x³)
    th = np.tanh(z, out=z)                            # T
    half = np.add(th, 1.0, out=dydx)
    half *= 0.5                                       # ½(1 + T)
    np.multiply(x, half, out=out)                     # GELU(x) ≈ ½ x (1 + T)
    np.multiply(th, th, out=th)
    np.subtract(1.0, th, out=th)                      # 1 − T² = tanh'(z)
    x2 *= 3.0 * _C
    x2 += 1.0
    x2 *= 0.5 * _SQRT_2_PI                            # ½ dz/dx = ½√(2/π)(1 + 3·0.044715 x²)
    x2 *= th
    x2 *= x                                           # ½ x (1 − T²) dz/dx
    dydx += x2


def gelu_forward(x, approximate="exact"):
    """GELU(x) elementwise: the activation of the ViT MLP (Eq 3: D → M → GELU → D).

    Dosovitskiy et al. 2021 (arXiv 2010.11929) use GELU in the MLP of Eq 3.  The original
    google-research/vision_transformer code calls flax's ``nn.gelu``, whose default is the tanh
    approximation; PyTorch's ``nn.GELU`` and timm default to the exact form.

    .. math::  \\text{exact: } x\\Phi(x) = \\tfrac12 x(1 + \\mathrm{erf}(x/\\sqrt2)) \\qquad
               \\text{tanh: } \\tfrac12 x(1 + \\tanh(\\sqrt{2/\\pi}(x + 0.044715x^3)))

    The two differ by less than 1e-3 on [−5, 5].

    Parameters
    ----------
    x : array_like, any shape (float32 stays float32)
    approximate : 'exact' | 'tanh'

    Returns
    -------
    out : ndarray, same shape and dtype as x
    cache : (dydx,) the local derivative dGELU/dx, same shape; what gelu_backward needs
    """
    if approximate not in APPROXIMATIONS:
        raise ValueError(f"approximate must be one of {APPROXIMATIONS}, got {approximate!r}")
    block = _gelu_exact_block if approximate == "exact" else _gelu_tanh_block
    x, dtype, xf = _flat_float(x)
    out, dydx = np.empty_like(xf), np.empty_like(xf)
    with np.errstate(over="ignore"):
        for s in _blocks(xf.size):
            block(xf[s], out[s], dydx[s])
    return (out.reshape(x.shape).astype(dtype, copy=False),
            (dydx.reshape(x.shape).astype(dtype, copy=False),))


def gelu_backward(dout, cache):
    """dx = dout ⊙ dGELU/dx, with the derivative the forward already evaluated from its own terms:

    - exact, out = x Φ(x):  d/dx = Φ(x) + x φ(x),  φ(x) = exp(−x²/2)/√(2π) = the forward's exp(−u²)/√(2π).
    - tanh, out = ½x(1 + T), T = tanh(z), z = √(2/π)(x + 0.044715x³):
      d/dx = ½(1 + T) + ½x (1 − T²) √(2/π)(1 + 3·0.044715x²), reusing the forward's T.

    dout: same shape as x   ->   dx: same shape
    """
    (dydx,) = cache
    return dout * dydx
