"""vitnp — the Vision Transformer of Dosovitskiy et al. (2021), arXiv 2010.11929, in pure NumPy.

Every operation is an explicit forward/backward pair in :mod:`vitnp.ops`, checked numerically by
:mod:`vitnp.gradcheck`; :mod:`vitnp.model` puts them together as the paper's Eq 1–4.
"""
from .config import ViTConfig, count_params, param_shapes
from .model import init_params, vit_backward, vit_forward

__all__ = ["ViTConfig", "count_params", "param_shapes", "init_params", "vit_forward", "vit_backward"]
__version__ = "0.1.0"
