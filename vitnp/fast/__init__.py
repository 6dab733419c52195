"""The speed path: the same functions as :mod:`vitnp.ops` and :mod:`vitnp.model`, with the same names,
arguments and results, written for speed instead of for reading.

Each module opens with the reference it must equal ("same math as ``vitnp.ops.X``; differs by: …") and
``tests/test_fast.py`` proves every one equal to its twin (float64 ≤ 1e-12, float32 ≤ 1e-5 relative).
``train``, ``evaluate``, ``predict``, ``visualize`` and ``bench`` run this path unless given ``--reference``.

=======================  ==========================================================================
module                   what differs from the reference
=======================  ==========================================================================
``fast.model``           shards of the batch in threads, malloc tuning (:mod:`vitnp.fast.parallel`);
                         ``vit_predict``: inference with no backward caches
``fast.block``           the fast ops below, LN → linear folded, MLP inline, residuals added in place
``fast.ln_linear``       LayerNorm then a linear layer as one GEMM, γ, β and b folded into W
``fast.attention``       1/√D_h folded into U_qkv, q/k/v as views of one array, ``out=`` buffers
``fast.layernorm``       blocks of rows that stay in L2, row means through BLAS, ``einsum`` sums of squares
``fast.softmax``         in place, row sums through BLAS, short rows' maxima via a transposed copy
``fast.linear``          one 2-D GEMM, bias gradient through BLAS
``fast.gelu``            cache-sized blocks with scratch buffers; float32: a degree-7 polynomial (accurate
                         to 3e-6); the forward caches dGELU/dx, or skips it for inference
``fast.erf``             erf in cache-sized blocks (the kernel fast.gelu builds on)
=======================  ==========================================================================
"""
from .model import vit_backward, vit_forward, vit_predict

__all__ = ["vit_forward", "vit_backward", "vit_predict"]
