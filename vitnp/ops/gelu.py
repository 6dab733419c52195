"""GELU, the nonlinearity inside the MLP of Eq 3.

.. math::  \\mathrm{GELU}(x) = x\\,\\Phi(x) = \\tfrac12 x\\,\\mathrm{erfc}(-x/\\sqrt2)
           \\approx \\tfrac12 x\\,\\bigl(1 + \\tanh(\\sqrt{2/\\pi}\\,(x + 0.044715 x^3))\\bigr)

(Hendrycks & Gimpel 2016; Φ, φ are the standard normal CDF and density.)  Dosovitskiy et al. use GELU in
the MLP of Eq 3.  The original google-research/vision_transformer code calls flax's ``nn.gelu``, whose
default is the tanh form; PyTorch's ``nn.GELU`` and timm default to the exact form.

The exact form needs erfc, which NumPy lacks: :mod:`vitnp.ops.erf`.  The fast twin, :mod:`vitnp.fast.gelu`,
computes the same numbers in cache-sized blocks.
"""
from __future__ import annotations

import math

import numpy as np

from .erf import as_float, erfc

__all__ = ["APPROXIMATIONS", "INV_SQRT_2PI", "SQRT_2_OVER_PI", "SQRT_HALF", "TANH_C", "gelu_forward",
           "gelu_backward", "gelu_exact_derivative", "gelu_tanh_derivative"]

APPROXIMATIONS = ("exact", "tanh")
# Python floats, so that they never upcast a float32 array:
SQRT_HALF = math.sqrt(0.5)                       # 1/√2 of Φ(x) = ½ erfc(−x/√2)
INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)    # φ(x) = exp(−x²/2)/√(2π)
SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)        # √(2/π) of the tanh form
TANH_C = 0.044715                                # … and its cubic coefficient


def gelu_forward(x, approximate="exact"):
    """GELU(x) elementwise: the activation of the ViT MLP (Eq 3: D → M → GELU → D).

    .. math::  \\text{exact: } x\\Phi(x) = \\tfrac12 x\\,\\mathrm{erfc}(-x/\\sqrt2) \\qquad
               \\text{tanh: } \\tfrac12 x(1 + \\tanh(\\sqrt{2/\\pi}(x + 0.044715x^3)))

    The two differ by less than 1e-3 on [−5, 5].

    x: any shape (float32 stays float32)   ->   out: same shape and dtype, cache

    approximate : 'exact' | 'tanh'.

    cache = (x, approximate): what gelu_backward reads.
    """
    if approximate not in APPROXIMATIONS:
        raise ValueError(f"approximate must be one of {APPROXIMATIONS}, got {approximate!r}")
    x, dtype = as_float(x)
    if approximate == "exact":
        out = x * (0.5 * erfc(-x * SQRT_HALF))                      # x Φ(x)
    else:
        u = SQRT_2_OVER_PI * (x + TANH_C * x * x * x)               # u = √(2/π)(x + 0.044715 x³)
        out = 0.5 * x * (1.0 + np.tanh(u))                           # ½ x (1 + tanh u)
    return out.astype(dtype, copy=False), (x, approximate)


def gelu_backward(dout, cache):
    """Gradients of GELU: returns dx = dout ⊙ dGELU/dx, the shape of x."""
    x, approximate = cache
    dydx = gelu_exact_derivative(x) if approximate == "exact" else gelu_tanh_derivative(x)
    return (dout * dydx).astype(dout.dtype, copy=False)


def gelu_exact_derivative(x):
    """d/dx [x Φ(x)] = Φ(x) + x φ(x), φ(x) = exp(−x²/2)/√(2π) the standard normal density."""
    ### BEGIN SOLUTION
    phi_cdf = 0.5 * erfc(-x * SQRT_HALF)                             # Φ(x), as in the forward
    with np.errstate(over="ignore"):                                 # x² → inf: φ = 0
        phi_pdf = np.exp(-0.5 * x * x) * INV_SQRT_2PI                # φ(x) = exp(−x²/2)/√(2π)
    return phi_cdf + x * phi_pdf                                     # out = x Φ(x):  Φ(x) + x φ(x)
    ### END SOLUTION


def gelu_tanh_derivative(x):
    """d/dx [½ x (1 + tanh u)], u = √(2/π)(x + 0.044715 x³)."""
    ### BEGIN SOLUTION
    T = np.tanh(SQRT_2_OVER_PI * (x + TANH_C * x * x * x))           # tanh u, as in the forward
    du_dx = SQRT_2_OVER_PI * (1.0 + 3.0 * TANH_C * x ** 2)           # u = √(2/π)(x + 0.044715 x³)
    return 0.5 * (1.0 + T) + 0.5 * x * (1.0 - T ** 2) * du_dx        # out = ½ x (1 + tanh u)
    ### END SOLUTION
