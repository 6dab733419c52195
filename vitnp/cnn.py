"""A small CNN classifier: the baseline with the inductive biases ViT lacks (paper §3.1 "Inductive bias", §4).

A CNN builds locality and translation equivariance into every layer: each output pixel sees only a
k×k neighbourhood, and the same kernel slides over the whole image.  ViT has neither (only its MLP is
local, and only the patch cut and E_pos know about 2-D), so on small datasets a CNN of similar size
usually wins (paper Fig 3–4).  The default network, for 28×28×1 Fashion-MNIST images::

    conv 3×3, 32 → ReLU → max-pool 2×2     (B, 28, 28, 1)  -> (B, 14, 14, 32)
    conv 3×3, 64 → ReLU → max-pool 2×2     (B, 14, 14, 32) -> (B, 7, 7, 64)
    flatten (row, col, channel)            (B, 7, 7, 64)   -> (B, 3136)
    dropout (rate ``cfg.dropout``, training only)
    dense → logits                         (B, 3136)       -> (B, 10)

50,186 parameters.  Convolutions keep the size ('same' padding k//2, stride 1); each pool halves it
(floor).  Parameters are a flat dict like the ViT's::

    conv{i}.W  (k, k, C_{i-1}, C_i)    conv{i}.b  (C_i,)        i = 1 … len(channels)
    head.W     (h·w·C_last, K)         head.b     (K,)

:func:`vitnp.ops.conv.conv_stack_forward` / ``conv_stack_backward`` (the conv → ReLU → pool stages alone) and
:func:`vitnp.ops.conv.he_normal` live with the conv ops, so that the hybrid ViT's stem uses the same stages as
this baseline without importing it.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from .config import _positive_int, check_arrays, from_fields
from .ops.conv import conv_stack_backward, conv_stack_forward, he_normal
from .ops.dropout import dropout_backward, dropout_forward
from .ops.linear import linear_backward, linear_forward

__all__ = ["CNNConfig", "cnn_config", "cnn_param_shapes", "count_cnn_params", "init_cnn_params",
           "cnn_forward", "cnn_backward"]


@dataclasses.dataclass(frozen=True)
class CNNConfig:
    """Shapes and arithmetic of the CNN baseline.

    Parameters
    ----------
    image_size : int or (H, W), stored as (H, W)
    in_channels : int              C of the input images
    num_classes : int              K
    channels : tuple of ints       output channels of each conv stage (one stage = conv, ReLU, pool)
    kernel_size : int, odd         k; padding k//2 keeps the size through each conv
    pool : int                     max-pool window and stride; 1 turns pooling off
    dropout : float in [0, 1)      rate before the dense head, in training only
    dtype : 'float32' | 'float64'
    """

    image_size: int | tuple = 28
    in_channels: int = 1
    num_classes: int = 10
    channels: tuple = (32, 64)
    kernel_size: int = 3
    pool: int = 2
    dropout: float = 0.0
    dtype: str = "float32"

    def __post_init__(self):
        size = self.image_size
        size = tuple(size) if isinstance(size, (tuple, list)) else (size, size)
        if len(size) != 2:
            raise ValueError(f"image_size must be an int or (H, W), got {self.image_size!r}")
        for side, name in zip(size, ("H", "W")):
            _positive_int(f"image_size ({name})", side)
        object.__setattr__(self, "image_size", (int(size[0]), int(size[1])))
        for name in ("in_channels", "num_classes", "kernel_size", "pool"):
            _positive_int(name, getattr(self, name))
            object.__setattr__(self, name, int(getattr(self, name)))
        if not isinstance(self.channels, (tuple, list)) or not self.channels:
            raise ValueError(f"channels must be a non-empty tuple of positive ints, got {self.channels!r}")
        for c in self.channels:
            _positive_int("channels", c)
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        if self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd ('same' padding k//2), got {self.kernel_size}")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}")
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) or not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be a rate in [0, 1), got {self.dropout!r}")
        h, w = self.feature_hw
        if h < 1 or w < 1:
            raise ValueError(f"image_size {self.image_size} is too small for {len(self.channels)} pooling "
                             f"stage(s) of {self.pool}x{self.pool}")

    @property
    def feature_hw(self) -> tuple:
        """(h, w) of the last feature map: H and W divided (floor) by ``pool`` once per stage."""
        h, w = self.image_size
        for _ in self.channels:
            h, w = h // self.pool, w // self.pool
        return h, w

    @property
    def feature_dim(self) -> int:
        """h·w·C_last, the input width of the dense head."""
        h, w = self.feature_hw
        return h * w * self.channels[-1]

    @property
    def np_dtype(self):
        return np.dtype(self.dtype)

    def replace(self, **changes) -> "CNNConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["image_size"], d["channels"] = list(d["image_size"]), list(d["channels"])
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "CNNConfig":
        """Inverse of :meth:`to_dict` (for checkpoints); unknown fields are an error."""
        return from_fields(cls, d)


def cnn_config(**overrides) -> CNNConfig:
    """The default baseline for 28×28×1 images (module docstring), with any field overridden."""
    return CNNConfig(**overrides)


def cnn_param_shapes(cfg: CNNConfig) -> dict:
    """Name → shape, in the order of the forward pass (see the module docstring)."""
    k, shapes, c_in = cfg.kernel_size, {}, cfg.in_channels
    for i, c_out in enumerate(cfg.channels, start=1):
        shapes[f"conv{i}.W"] = (k, k, c_in, c_out)
        shapes[f"conv{i}.b"] = (c_out,)
        c_in = c_out
    shapes["head.W"] = (cfg.feature_dim, cfg.num_classes)
    shapes["head.b"] = (cfg.num_classes,)
    return shapes


def count_cnn_params(cfg: CNNConfig) -> int:
    """Number of trainable scalars (50,186 for the default network)."""
    return sum(int(np.prod(s)) for s in cnn_param_shapes(cfg).values())


def init_cnn_params(seed: int = 0, cfg: CNNConfig | None = None) -> dict:
    """Parameters for ``cfg`` (default :func:`cnn_config`), from ``np.random.default_rng(seed)``.

    Conv kernels: He normal, std √(2 / fan_in) with fan_in = k²·C_in (the right scale before a ReLU);
    conv biases 0; the dense head 0, like the ViT's zero-initialised head, so both models start from the
    same uniform prediction.
    """
    if isinstance(seed, CNNConfig):
        raise TypeError("init_cnn_params(seed, cfg): the seed comes first; pass the config as cfg=...")
    cfg = cnn_config() if cfg is None else cfg
    rng = np.random.default_rng(seed)
    params = {}
    for name, shape in cnn_param_shapes(cfg).items():
        if name.startswith("conv") and name.endswith(".W"):
            params[name] = he_normal(rng, shape)
        else:
            params[name] = np.zeros(shape)
    return {k: v.astype(cfg.np_dtype) for k, v in params.items()}


def check_cnn_params(params, cfg: CNNConfig):
    """Raise a clear error unless ``params`` has exactly the config's names, shapes and dtype."""
    check_arrays(params, cnn_param_shapes(cfg), cfg.np_dtype, what="the CNN config")


def cnn_forward(params, x, cfg: CNNConfig, train=False, rng=None):
    """Logits of a batch of images.

    Parameters
    ----------
    params : dict from :func:`init_cnn_params` (names and shapes: :func:`cnn_param_shapes`)
    x : (B, H, W, C) float images, channels-last
    cfg : CNNConfig
    train : bool, turns dropout on (needs ``rng`` when cfg.dropout > 0)
    rng : np.random.Generator or int seed, for dropout

    Returns
    -------
    logits : (B, K);  cache for :func:`cnn_backward`
    """
    check_cnn_params(params, cfg)
    x = _check_images(x, cfg)
    if train and cfg.dropout > 0 and rng is None:
        raise ValueError("training with dropout needs rng (a np.random.Generator or an int seed)")
    rng = np.random.default_rng(rng) if isinstance(rng, (int, np.integer)) else rng
    layers = [(params[f"conv{i}.W"], params[f"conv{i}.b"]) for i in range(1, len(cfg.channels) + 1)]
    f, c_stack = conv_stack_forward(x, layers, pool=cfg.pool)             # (B, h, w, C_last)
    flat = f.reshape(f.shape[0], -1)                                       # (B, h·w·C_last)
    flat, c_drop = dropout_forward(flat, cfg.dropout, rng, train)
    logits, c_head = linear_forward(flat, params["head.W"], params["head.b"])   # (B, K)
    return logits, {"cfg": cfg, "stack": c_stack, "shape": f.shape, "drop": c_drop, "head": c_head}


def cnn_backward(dlogits, cache) -> dict:
    """Gradients of every parameter from ∂loss/∂logits (B, K); same keys and shapes as the params."""
    cfg = cache["cfg"]
    g = {}
    dflat, g["head.W"], g["head.b"] = linear_backward(dlogits, cache["head"])
    dflat = dropout_backward(dflat, cache["drop"])
    _, stage_grads = conv_stack_backward(dflat.reshape(cache["shape"]), cache["stack"])
    for i, (dW, db) in enumerate(stage_grads, start=1):
        g[f"conv{i}.W"], g[f"conv{i}.b"] = dW, db
    return {k: g[k] for k in cnn_param_shapes(cfg)}


def _check_images(x, cfg: CNNConfig):
    if not isinstance(x, np.ndarray):
        raise TypeError(f"x must be a numpy array of shape (B, H, W, C), got {type(x).__name__}")
    H, W = cfg.image_size
    want = f"(B, {H}, {W}, {cfg.in_channels})"
    if x.ndim != 4 or x.shape[1:] != (H, W, cfg.in_channels):
        raise ValueError(f"x must have shape {want} (batch, height, width, channels), got {x.shape}")
    if x.shape[0] == 0:
        raise ValueError("x is an empty batch")
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(f"x must be a float array, got dtype {x.dtype}")
    if not np.isfinite(x).all():
        raise ValueError("x contains NaN or Inf")
    return np.ascontiguousarray(x, dtype=cfg.np_dtype)
