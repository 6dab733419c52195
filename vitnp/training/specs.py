"""The models vitnp trains, as one table: the ViT (plain or hybrid) and the CNN baseline.

The trainer, the evaluation and fine-tuning treat both kinds alike through :data:`MODELS`: each row says how
to build, run and check one kind of model, and :func:`model_spec` finds the row of a config by its type.

======  ===================================  =================================================================
kind    config                               forward / backward
======  ===================================  =================================================================
``vit`` :class:`~vitnp.config.ViTConfig`    :func:`vitnp.fast.vit_forward` / ``vit_backward`` (Eq 1–4) and
                                             ``vit_predict`` (inference); with ``reference=True`` the clear
                                             :func:`vitnp.model.vit_forward`
``cnn`` :class:`~vitnp.cnn.CNNConfig`       :func:`vitnp.cnn.cnn_forward` / ``cnn_backward`` (the baseline)
======  ===================================  =================================================================

>>> from vitnp.cnn import CNNConfig
>>> model_spec(CNNConfig()).kind, model_spec("cnn").count(CNNConfig())
('cnn', 50186)
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from ..cnn import CNNConfig, check_cnn_params, cnn_backward, cnn_forward, cnn_param_shapes, init_cnn_params
from ..config import ViTConfig, param_shapes
from .. import fast, model
from ..model import check_params, init_params

__all__ = ["ModelSpec", "MODELS", "model_spec", "describe_model"]


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """How to build, run and check one kind of model (one row of :data:`MODELS`).

    kind : str          'vit' | 'cnn'; stored in checkpoints (entry ``model``) and in config.json
    config : type       ViTConfig | CNNConfig; :func:`model_spec` finds the row by the config's type
    shapes : cfg -> {name: shape}                        the parameter table
    init : (cfg, seed) -> params                         initial parameters
    forward : (params, x, cfg, *, train, rng) -> (logits (B, K), cache)
    backward : (dlogits (B, K), cache) -> grads          same names and shapes as params
    check : (params, cfg) -> None                        raises a clear error when params do not fit cfg
    predict : (params, x, cfg) -> logits (B, K)          dropout off, no cache kept (evaluation, prediction)
    """

    kind: str
    config: type
    shapes: Callable
    init: Callable
    forward: Callable
    backward: Callable
    check: Callable
    predict: Callable

    def count(self, cfg) -> int:
        """Number of trainable scalars."""
        return sum(int(np.prod(shape)) for shape in self.shapes(cfg).values())


MODELS = {
    "vit": ModelSpec("vit", ViTConfig, param_shapes, lambda cfg, seed: init_params(cfg, seed=seed),
                     fast.vit_forward, fast.vit_backward, check_params, fast.vit_predict),
    "cnn": ModelSpec("cnn", CNNConfig, cnn_param_shapes, lambda cfg, seed: init_cnn_params(seed, cfg=cfg),
                     cnn_forward, cnn_backward, check_cnn_params,
                     lambda params, x, cfg: cnn_forward(params, x, cfg, train=False)[0]),
}


def model_spec(cfg_or_kind, reference: bool = False) -> ModelSpec:
    """The :data:`MODELS` row of a config (by its type) or of a kind name ('vit', 'cnn').

    The ViT's row runs the fast path (:mod:`vitnp.fast`); ``reference=True`` gives the same row with the
    clear reference model (:func:`vitnp.model.vit_forward`).  The CNN has one implementation.
    """
    if isinstance(cfg_or_kind, str):
        if cfg_or_kind not in MODELS:
            raise ValueError(f"unknown model kind {cfg_or_kind!r}; expected one of {', '.join(MODELS)}")
        spec = MODELS[cfg_or_kind]
    else:
        found = [s for s in MODELS.values() if isinstance(cfg_or_kind, s.config)]
        if not found:
            raise TypeError(f"cfg must be one of {', '.join(s.config.__name__ for s in MODELS.values())}, "
                            f"got {type(cfg_or_kind).__name__}")
        spec = found[0]
    if reference and spec.kind == "vit":
        spec = dataclasses.replace(spec, forward=model.vit_forward, backward=model.vit_backward,
                                   predict=model.vit_predict)
    return spec


def describe_model(cfg) -> str:
    """One line: the model's kind and the fields that matter, e.g. 'ViT P=7 D=64 L=4 k=4 M=128 K=10'."""
    if isinstance(cfg, CNNConfig):
        return (f"CNN channels={','.join(map(str, cfg.channels))} kernel={cfg.kernel_size} pool={cfg.pool} "
                f"K={cfg.num_classes}")
    stem = cfg.stem_channels
    return (f"ViT P={cfg.patch_size} D={cfg.dim} L={cfg.depth} k={cfg.heads} M={cfg.mlp_dim} "
            f"K={cfg.num_classes}" + (f" stem={','.join(map(str, stem))}" if stem else ""))
