"""The ViT as explicit forward/backward pairs, one module per idea.

Every module is imported here, so ``import vitnp`` gives ``vitnp.ops.loss.softmax_cross_entropy`` and the like.
"""
from . import (attention, block, conv, dropout, erf, gelu, layernorm, linear, ln_linear, loss, masking, mlp, patches,
               posemb, softmax, tokens)

__all__ = ["attention", "block", "conv", "dropout", "erf", "gelu", "layernorm", "linear", "ln_linear", "loss",
           "masking", "mlp", "patches", "posemb", "softmax", "tokens"]
