"""The speed path: the same functions as :mod:`vitnp.ops` and :mod:`vitnp.model`, with the same names,
arguments and results, written for speed instead of for reading.

Each module opens with the reference it must equal ("same math as ``vitnp.ops.X``; differs by: …") and
``tests/test_fast.py`` proves every one equal to its twin (float64 ≤ 1e-12, float32 ≤ 1e-5 relative).
``train``, ``evaluate``, ``predict``, ``visualize`` and ``bench`` run this path unless given ``--reference``.

=======================  ==========================================================================
module                   what differs from the reference
=======================  ==========================================================================
``fast.model``           shards of the batch in threads, malloc tuning (:mod:`vitnp.fast.parallel`)
``fast.block``           the fast ops below, MLP inline, residuals added in place
``fast.attention``       1/√D_h folded into U_qkv, q/k/v as views of one array, ``out=`` buffers
``fast.layernorm``       row means through BLAS, ``einsum`` sums of squares, in-place backward
``fast.softmax``         in place, row sums through BLAS
``fast.linear``          one 2-D GEMM, bias gradient through BLAS
``fast.gelu``            cache-sized blocks with scratch buffers; the forward caches dGELU/dx
=======================  ==========================================================================
"""
from .model import vit_backward, vit_forward, vit_predict

__all__ = ["vit_forward", "vit_backward", "vit_predict"]
