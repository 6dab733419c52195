"""ViT hyper-parameters (paper Table 1) and the parameter table derived from them.

Symbols (paper §3.1): image H×W×C, patch P, N = HW/P² patches, width D, k heads, D_h = D/k,
L layers, MLP width M, K classes, T tokens (N+1 with the class token, N with average pooling).

Hybrid ViT (paper §3.1 "Hybrid Architecture"): with ``stem_channels`` non-empty, the patches are cut from
a CNN feature map h×w×C_f (conv 'same' → ReLU → max-pool, once per stage) instead of the raw image, so
H, W, C above become h, w, C_f: N = hw/P², and one patch covers P·pool^stages image pixels a side.

Also here, because every model module needs them and this module imports nothing of vitnp:
:data:`ARITHMETIC_FIELDS` and :func:`shape_fields` (which config fields fix the parameter shapes), and
:func:`check_arrays` (do the parameters fit a shape table).
"""
from __future__ import annotations

import dataclasses
import re

import numpy as np

# name: (depth L, dim D, mlp_dim M, heads k) — paper Table 1, plus Ti and S from the reference code.
VARIANTS = {
    "Ti": (12, 192, 768, 3),
    "S": (12, 384, 1536, 6),
    "B": (12, 768, 3072, 12),
    "L": (24, 1024, 4096, 16),
    "H": (32, 1280, 5120, 16),
}

CLASSIFIERS = ("token", "gap")
POS_EMBEDDINGS = ("learned", "sincos", "none")
GELUS = ("exact", "tanh")
DTYPES = ("float32", "float64")


@dataclasses.dataclass(frozen=True)
class ViTConfig:
    """Everything that fixes the shapes and the arithmetic of a ViT.

    Parameters
    ----------
    image_size : int or (H, W); stored as the tuple (H, W), so 28 and (28, 28) are the same config.
    patch_size : int            P; H and W must be multiples of P.
    in_channels : int           C.
    num_classes : int           K.
    dim : int                   D, the model width.
    depth : int                 L, the number of encoder blocks.
    heads : int                 k; D must be a multiple of k.
    mlp_dim : int               M, the hidden width of each MLP.
    classifier : 'token' | 'gap'
        'token' prepends x_class and reads y from token 0 (Eq 1, Eq 4); 'gap' has no class token and
        averages the N patch tokens after the final LayerNorm (Appendix D.3).
    pos_embedding : 'learned' | 'sincos' | 'none'
        learned 1-D E_pos (Eq 1), a fixed 2-D sine-cosine table (no gradient), or nothing.
    gelu : 'exact' | 'tanh'
        x·Φ(x) with erf, or the tanh approximation (the original JAX code uses 'tanh').
    ln_eps : float              ε inside every LayerNorm (1e-6, as the reference code).
    dropout : float             rate after the embedding, after MSA and after each MLP dense layer.
    attention_dropout : float   rate on the attention weights A (Eq 6).
    dtype : 'float32' | 'float64'
    stem_channels : tuple of ints
        Hybrid ViT (§3.1): output channels C_1 … C_n of the CNN stages that make the feature map the
        patches are cut from; ``()`` (the default) is the plain ViT.  A list (from JSON) becomes a tuple.
    stem_kernel : int, odd      k of every stem convolution ('same' padding k//2, stride 1).
    stem_pool : int             max-pool window and stride after each stem stage; 1 = no pooling.
    """

    image_size: int | tuple = 28
    patch_size: int = 7
    in_channels: int = 1
    num_classes: int = 10
    dim: int = 64
    depth: int = 6
    heads: int = 4
    mlp_dim: int = 128
    classifier: str = "token"
    pos_embedding: str = "learned"
    gelu: str = "exact"
    ln_eps: float = 1e-6
    dropout: float = 0.0
    attention_dropout: float = 0.0
    dtype: str = "float32"
    stem_channels: tuple = ()
    stem_kernel: int = 3
    stem_pool: int = 2

    def __post_init__(self):
        size = self.image_size
        if isinstance(size, (list, tuple)):
            if len(size) != 2:
                raise ValueError(f"image_size must be an int or (H, W), got {size!r}")
        else:
            size = (size, size)
        for side, name in zip(size, ("H", "W")):
            _positive_int(f"image_size ({name})", side)
        object.__setattr__(self, "image_size", (int(size[0]), int(size[1])))   # always (H, W)
        for name in ("patch_size", "in_channels", "num_classes", "dim", "depth", "heads", "mlp_dim"):
            _positive_int(name, getattr(self, name))
            object.__setattr__(self, name, int(getattr(self, name)))          # plain ints: JSON-friendly
        self._check_stem()
        if self.num_patches > LIMITS["tokens"]:
            raise ValueError(f"image_size {self.image_size} with patch_size {self.patch_size} makes "
                             f"{self.num_patches:,} patches, beyond the limit of {LIMITS['tokens']:,}")
        for side, name in zip(self.feature_hw, ("H", "W")):
            if side % self.patch_size:
                if self.is_hybrid:
                    h, w = self.feature_hw
                    raise ValueError(
                        f"patch_size: the hybrid stem turns the {self.hw[0]}x{self.hw[1]} image into a {h}x{w} "
                        f"feature map ({len(self.stem_channels)} stage(s), pool {self.stem_pool}); its {name}={side} "
                        f"is not divisible by patch_size P={self.patch_size}")
                raise ValueError(f"image_size: {name}={side} is not divisible by patch_size P={self.patch_size}")
        if self.dim % self.heads:
            raise ValueError(f"dim: D={self.dim} is not divisible by heads k={self.heads}")
        _choice("classifier", self.classifier, CLASSIFIERS)
        _choice("pos_embedding", self.pos_embedding, POS_EMBEDDINGS)
        _choice("gelu", self.gelu, GELUS)
        _choice("dtype", self.dtype, DTYPES)
        if self.pos_embedding == "sincos" and self.dim % 4:
            raise ValueError(f"dim: the 2-D sine-cosine table needs D divisible by 4, got D={self.dim}")
        if not (_is_number(self.ln_eps) and self.ln_eps > 0):
            raise ValueError(f"ln_eps must be a positive number, got {self.ln_eps!r}")
        for name in ("dropout", "attention_dropout"):
            rate = getattr(self, name)
            if not (_is_number(rate) and 0.0 <= rate < 1.0):
                raise ValueError(f"{name} must be a rate in [0, 1), got {rate!r}")
        for name in ("ln_eps", "dropout", "attention_dropout"):     # Python floats: a NumPy float64 scalar here
            object.__setattr__(self, name, float(getattr(self, name)))   # would turn float32 activations float64

    def _check_stem(self):
        """Validate and normalise the hybrid stem fields (stem_channels becomes a tuple of ints)."""
        chans = self.stem_channels
        if not isinstance(chans, (tuple, list)):
            raise ValueError(f"stem_channels must be a tuple of positive ints (() for a plain ViT), got {chans!r}")
        for c in chans:
            _positive_int("stem_channels (each entry)", c)
        object.__setattr__(self, "stem_channels", tuple(int(c) for c in chans))
        for name in ("stem_kernel", "stem_pool"):
            _positive_int(name, getattr(self, name))
            object.__setattr__(self, name, int(getattr(self, name)))
        if self.stem_kernel % 2 == 0:
            raise ValueError(f"stem_kernel must be odd ('same' padding k//2), got {self.stem_kernel}")
        h, w = self.feature_hw
        if h < 1 or w < 1:
            raise ValueError(f"image_size {self.hw[0]}x{self.hw[1]} is too small for {len(chans)} stem stage(s) "
                             f"with {self.stem_pool}x{self.stem_pool} pooling")

    # ---- derived sizes -------------------------------------------------------------------------
    @property
    def hw(self) -> tuple:
        """(H, W) of the input image (``image_size`` is stored in this form)."""
        return self.image_size

    @property
    def is_hybrid(self) -> bool:
        """True when a CNN stem makes the feature map the patches are cut from (paper §3.1)."""
        return len(self.stem_channels) > 0

    @property
    def feature_hw(self) -> tuple:
        """(h, w) of the map the patches are cut from: the image (H, W) for a plain ViT; for a hybrid,
        H and W floor-divided by ``stem_pool`` once per stem stage."""
        h, w = self.hw
        if self.stem_pool > 1:
            for _ in self.stem_channels:
                h, w = h // self.stem_pool, w // self.stem_pool
        return h, w

    @property
    def feature_channels(self) -> int:
        """C of the map the patches are cut from: ``in_channels``, or the last stem stage's channels."""
        return self.stem_channels[-1] if self.stem_channels else self.in_channels

    @property
    def patch_pixels(self) -> int:
        """Side of one patch in input-image pixels: P · stem_pool^stages (= P for a plain ViT)."""
        return self.patch_size * self.stem_pool ** len(self.stem_channels)

    @property
    def grid(self) -> tuple:
        """(h/P, w/P): the patch grid over the feature map (the image, for a plain ViT)."""
        h, w = self.feature_hw
        return (h // self.patch_size, w // self.patch_size)

    @property
    def num_patches(self) -> int:
        """N = hw / P² (= HW / P² for a plain ViT)."""
        return self.grid[0] * self.grid[1]

    @property
    def num_tokens(self) -> int:
        """T: N + 1 with the class token, N with average pooling."""
        return self.num_patches + (self.classifier == "token")

    @property
    def patch_dim(self) -> int:
        """P²·C, the length of one flattened patch (C = ``feature_channels``)."""
        return self.patch_size ** 2 * self.feature_channels

    @property
    def head_dim(self) -> int:
        """D_h = D / k."""
        return self.dim // self.heads

    @property
    def np_dtype(self):
        return np.dtype(self.dtype)

    def replace(self, **changes) -> "ViTConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["image_size"] = list(d["image_size"])
        d["stem_channels"] = list(d["stem_channels"])
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ViTConfig":
        """Inverse of :meth:`to_dict`; missing fields take their defaults (older dicts have no stem fields)."""
        return from_fields(cls, d)

    @classmethod
    def variant(cls, name: str, **overrides) -> "ViTConfig":
        """A ViT size: Table 1's 'B', 'L', 'H', or the smaller 'Ti', 'S' of later work (DeiT, Touvron et al. 2021;
        the reference code's model list), optionally with the patch size ('B/16', 'H/14').

        The patch size defaults to 16 for every size; the paper's ViT-H is 'H/14'.

        Defaults are the paper's ImageNet setting: 224×224×3 images, P=16, 1000 classes; any field can be
        overridden, e.g. ``ViTConfig.variant('Ti', image_size=32, patch_size=4, num_classes=10)``.
        """
        m = re.fullmatch(r"(Ti|S|B|L|H)(?:/(\d+))?", str(name))
        if not m:
            raise ValueError(f"unknown variant {name!r}; expected one of {', '.join(VARIANTS)} (optionally '/P')")
        depth, dim, mlp_dim, heads = VARIANTS[m.group(1)]
        fields = dict(image_size=224, patch_size=int(m.group(2) or 16), in_channels=3, num_classes=1000,
                      dim=dim, depth=depth, heads=heads, mlp_dim=mlp_dim)
        fields.update(overrides)
        return cls(**fields)


# Upper bounds far beyond anything a CPU trains, so that a config from a hostile or corrupt checkpoint
# (say image_size 70000 with no position table to give it away) fails at once instead of asking for TiBs.
LIMITS = {"image_size": 4096, "patch_size": 4096, "in_channels": 4096, "num_classes": 100_000, "dim": 16_384,
          "depth": 1024, "heads": 1024, "mlp_dim": 65_536, "channels": 16_384, "kernel_size": 63, "pool": 4096,
          "stem_channels": 16_384, "stem_kernel": 63, "stem_pool": 4096, "tokens": 65_536}


def _positive_int(name, value):
    """Raise ValueError unless ``value`` is an int (or NumPy integer, not a bool) >= 1 and at most
    ``LIMITS`` of the field (its name before any " (…)"); shared with vitnp.cnn."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    most = LIMITS.get(name.split(" ")[0])
    if most is not None and value > most:
        raise ValueError(f"{name} = {value} is beyond the limit of {most:,} (vitnp refuses configs no CPU could "
                         f"run: a corrupt or hostile file?)")


def _is_number(value):
    return isinstance(value, (int, float, np.floating, np.integer)) and not isinstance(value, bool)


def _choice(name, value, allowed):
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}, got {value!r}")


def param_shapes(cfg: ViTConfig) -> dict:
    """Name → shape of every trainable array, in the order of the forward pass::

        paper symbol     name                          original checkpoint key                    shape
        hybrid stem      stem.{i}.W, stem.{i}.b        — (the paper's stem is a ResNet)           (k, k, C_{i-1}, C_i),
                                                                                                  (C_i,)
        E                E                             embedding/kernel (P, P, C, D)              (P²C, D)
        bias of E        E_bias                        embedding/bias                             (D,)
        x_class          x_class                       cls (1, 1, D)                              (D,)
        E_pos            E_pos                         Transformer/posembed_input/pos_embedding   (T, D)
        LN before MSA    blocks.{l}.ln1.gamma, .beta   …/encoderblock_{l}/LayerNorm_0/scale, bias (D,)
        U_qkv (Eq 5)     blocks.{l}.U_qkv              …/{query,key,value}/kernel (D, k, D_h)     (D, 3D)
        its bias         blocks.{l}.U_qkv_bias         …/{query,key,value}/bias (k, D_h)          (3D,)
        U_msa (Eq 8)     blocks.{l}.U_msa              …/out/kernel (k, D_h, D)                   (D, D)
        its bias         blocks.{l}.U_msa_bias         …/out/bias                                 (D,)
        LN before MLP    blocks.{l}.ln2.gamma, .beta   …/LayerNorm_2/scale, bias                  (D,)
        MLP (Eq 3)       blocks.{l}.mlp.W1, .b1        …/MlpBlock_3/Dense_0/kernel, bias          (D, M), (M,)
                         blocks.{l}.mlp.W2, .b2        …/MlpBlock_3/Dense_1/kernel, bias          (M, D), (D,)
        final LN (Eq 4)  ln_f.gamma, ln_f.beta         Transformer/encoder_norm/scale, bias       (D,)
        head             head.W, head.b                head/kernel, head/bias                     (D, K), (K,)

    The attention keys sit under Transformer/encoderblock_{l}/MultiHeadDotProductAttention_1/.
    U_qkv's 3D columns are [q | k | v], each block of D columns split head by head into k groups of D_h.
    ``x_class`` exists only with classifier='token'; ``E_pos`` only with pos_embedding='learned'.
    The ``stem.{i}`` rows (i = 0 … n−1, C_{-1} = C) exist only for a hybrid (``cfg.stem_channels``), whose
    E then has P²·C_f rows, C_f = ``cfg.feature_channels`` the stem's last channel count.
    """
    D, M, k = cfg.dim, cfg.mlp_dim, cfg.stem_kernel
    shapes = {}
    c_in = cfg.in_channels
    for i, c_out in enumerate(cfg.stem_channels):                 # hybrid stem (§3.1), before E
        shapes[f"stem.{i}.W"] = (k, k, c_in, c_out)
        shapes[f"stem.{i}.b"] = (c_out,)
        c_in = c_out
    shapes.update({"E": (cfg.patch_dim, D), "E_bias": (D,)})
    if cfg.classifier == "token":
        shapes["x_class"] = (D,)
    if cfg.pos_embedding == "learned":
        shapes["E_pos"] = (cfg.num_tokens, D)
    for l in range(cfg.depth):
        b = f"blocks.{l}."
        shapes.update({
            b + "ln1.gamma": (D,), b + "ln1.beta": (D,),
            b + "U_qkv": (D, 3 * D), b + "U_qkv_bias": (3 * D,),
            b + "U_msa": (D, D), b + "U_msa_bias": (D,),
            b + "ln2.gamma": (D,), b + "ln2.beta": (D,),
            b + "mlp.W1": (D, M), b + "mlp.b1": (M,),
            b + "mlp.W2": (M, D), b + "mlp.b2": (D,),
        })
    shapes.update({"ln_f.gamma": (D,), "ln_f.beta": (D,), "head.W": (D, cfg.num_classes),
                   "head.b": (cfg.num_classes,)})
    return shapes


def count_params(cfg: ViTConfig) -> int:
    """Number of trainable scalars; ViT-B/16 at 224², 1000 classes: 86,567,656.

    A hybrid adds Σᵢ (k²·C_{i-1} + 1)·C_i for its stem, and its E has P²·C_f·D weights.
    """
    return sum(int(np.prod(s)) for s in param_shapes(cfg).values())


# ---- which fields fix the parameters ----------------------------------------------------------------------
# Config fields that change how the arithmetic is done, not what the parameters mean or their shapes (dtype:
# the arrays are cast).  Shared by the ViTConfig and the CNNConfig (which has dropout and dtype of these).
ARITHMETIC_FIELDS = ("gelu", "ln_eps", "dropout", "attention_dropout", "dtype")


def shape_fields(cfg) -> tuple:
    """Names of the fields of ``cfg`` (a config or its class, ViTConfig or CNNConfig) that fix the parameter
    shapes together with the image size: every field but ``image_size`` and :data:`ARITHMETIC_FIELDS`.

    ViTConfig: patch_size, in_channels, num_classes, dim, depth, heads, mlp_dim, classifier, pos_embedding,
    stem_channels, stem_kernel, stem_pool.  Fine-tuning (:mod:`vitnp.training.finetune`) may change image_size and
    num_classes; resizing E_pos (:func:`vitnp.io.original.resize_pos_embedding`) only image_size.
    """
    return tuple(f.name for f in dataclasses.fields(cfg)
                 if f.name != "image_size" and f.name not in ARITHMETIC_FIELDS)


def from_fields(cls, d: dict):
    """``cls(**d)`` for a dataclass, refusing keys that are not its fields by name (the ``from_dict`` of ViTConfig,
    CNNConfig and HParams: a typo in a saved config is an error, not a silent default)."""
    unknown = sorted(set(d) - {f.name for f in dataclasses.fields(cls)})
    if unknown:
        raise ValueError(f"unknown {cls.__name__} field(s): {', '.join(unknown)}")
    return cls(**d)


def check_arrays(params, shapes, dtype, what="the config"):
    """Raise a clear TypeError/ValueError unless ``params`` is a dict with exactly the names and shapes
    of ``shapes`` (name -> shape), every array of ``dtype``.  Shared by the ViT and the CNN."""
    if not isinstance(params, dict):
        raise TypeError(f"params must be a dict of arrays, got {type(params).__name__}")
    missing = [k for k in shapes if k not in params]
    extra = sorted(k for k in params if k not in shapes)
    if missing or extra:
        raise ValueError(f"params do not match {what}: "
                         + "; ".join(filter(None, [missing and f"missing {', '.join(missing)}",
                                                    extra and f"unexpected {', '.join(extra)}"])))
    for k, shape in shapes.items():
        v = params[k]
        if not isinstance(v, np.ndarray):
            raise TypeError(f"params[{k!r}] must be a numpy array, got {type(v).__name__}")
        if v.shape != shape:
            raise ValueError(f"params[{k!r}] has shape {v.shape}, {what} needs {shape}")
        if v.dtype != dtype:
            raise TypeError(f"params[{k!r}] has dtype {v.dtype}, {what} needs {np.dtype(dtype).name}")
