"""Named training set-ups: a :class:`~vitnp.config.ViTConfig` plus the :class:`HParams` that train it.

=================  ==================================================================================
preset             purpose
=================  ==================================================================================
``fast``           a 1–2 minute run for demos and notebooks (a small ViT on part of the training set)
``fmnist``         the main job (``scripts/main.sh``): the plain ViT of ``fmnist-vit``
``fmnist-vit``     the Fashion-MNIST target: ≥ 90 % test accuracy within 10 minutes of wall time on 2
                   cores with the plain ViT of the paper (7×7 pixel patches, D=64, L=4, no convolution),
                   random flips and random erasing, up to 30 epochs (``max_minutes`` fits the schedule)
``fmnist-hybrid``  the hybrid ViT (§3.1): one 3×3 conv stage of 16 channels without pooling
                   (``stem_channels=(16,)``, ``stem_pool=1``), then the same encoder on 7×7 patches
=================  ==================================================================================

How the presets were chosen, and every configuration tried, is in ``docs/results.md``.

>>> cfg, hp = get_preset("fast")
>>> hp.replace(epochs=1).epochs
1
"""
from __future__ import annotations

import dataclasses
import math

from ..config import ViTConfig, from_fields
from ..data.batches import AUGMENTATIONS


@dataclasses.dataclass(frozen=True)
class HParams:
    """Everything about *how* a model is trained, the ViT or the CNN baseline alike (the model itself is the
    ViTConfig or the CNNConfig).

    Parameters
    ----------
    epochs : int                  passes over the training set.
    batch_size : int              B; the last incomplete batch of an epoch is dropped.
    lr : float                    peak learning rate η₀ of AdamW.
    final_lr : float              η at the end of the cosine decay.
    warmup_epochs : float         linear warm-up length, in epochs (rounded to whole steps).
    weight_decay : float          decoupled AdamW decay λ on weight matrices (``vitnp.optim.decays``).
    beta1, beta2, eps : float     AdamW's β₁, β₂, ε.
    label_smoothing : float       s in the targets (1 − s)·onehot + s/K of the training loss.
    clip_grad_norm : float        global-norm clipping threshold; 0 turns clipping off.
    augment : 'none' | 'crop' | 'flip' | 'crop+flip'
        random crop after zero padding by ``crop_padding`` pixels, and/or a random left-right flip.
    crop_padding : int            pixels of zero padding for the random crop.
    val_size : int                training images held out for validation, the same share of each class
                                  and the same images for every run and seed
                                  (:func:`vitnp.data.stratified_split`; 0: none).  The best epoch
                                  (``best.npz``) is the one of highest validation accuracy; the test split
                                  is read once, after training.
    val_fraction : float          the older way: this part of the training set, a random split that
                                  depends on ``seed`` (0: none; not together with ``val_size``).
    test_curve : bool             for teaching only: also evaluate the test split after every epoch, so the
                                  curves show it; those numbers are never used for a choice (the best
                                  epoch is chosen on validation either way).
    classes : tuple of ints       train and test on these Fashion-MNIST classes only, relabelled 0 … k−1 in
                                  the order given (``vitnp.data.select_classes``); () = all classes. The
                                  model's num_classes must be k.
    train_subset : int            use only this many training images (a seeded random subset, drawn after
                                  the class selection; 0: all).
    seed : int                    fixes the initialisation, the data order, augmentation and dropout.
    eval_batch_size : int         batch size of evaluation (changes results only by float32 rounding).
    max_minutes : float or None   wall-clock budget of one ``train`` call: the schedule is shortened to
                                  whole epochs that fit, so the cosine decay still ends (see
                                  :func:`vitnp.training.fit.fit`).
    """

    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    final_lr: float = 0.0
    warmup_epochs: float = 1.0
    weight_decay: float = 0.05
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    label_smoothing: float = 0.1
    clip_grad_norm: float = 1.0
    augment: str = "crop"
    crop_padding: int = 2
    val_size: int = 0
    val_fraction: float = 0.0
    test_curve: bool = False
    classes: tuple = ()
    train_subset: int = 0
    seed: int = 0
    eval_batch_size: int = 500
    max_minutes: float | None = None

    def __post_init__(self):
        for name in ("epochs", "batch_size", "eval_batch_size"):
            _check(name, getattr(self, name), int, lambda v: v >= 1, "a positive integer")
        for name in ("crop_padding", "train_subset", "seed", "val_size"):
            _check(name, getattr(self, name), int, lambda v: v >= 0, "an integer >= 0")
        _check("eps", self.eps, float, lambda v: v > 0, "a finite number > 0")
        for name in ("lr", "final_lr", "warmup_epochs", "weight_decay", "clip_grad_norm"):   # lr 0: frozen
            _check(name, getattr(self, name), float, lambda v: v >= 0, "a finite number >= 0")
        for name in ("beta1", "beta2", "label_smoothing", "val_fraction"):
            _check(name, getattr(self, name), float, lambda v: 0 <= v < 1, "a number in [0, 1)")
        if self.val_size and self.val_fraction:
            raise ValueError(f"give val_size ({self.val_size}) or val_fraction ({self.val_fraction}), not both")
        if not isinstance(self.test_curve, bool):
            raise ValueError(f"test_curve must be True or False, got {self.test_curve!r}")
        if self.max_minutes is not None:
            _check("max_minutes", self.max_minutes, float, lambda v: v > 0, "a finite number > 0 (or None)")
        if not isinstance(self.classes, (tuple, list)) or any(
                isinstance(c, bool) or not isinstance(c, int) or c < 0 for c in self.classes):
            raise ValueError(f"classes must be a tuple of class indices >= 0 (empty: all), got {self.classes!r}")
        if len(set(self.classes)) != len(self.classes):
            raise ValueError(f"classes must not repeat a class, got {self.classes!r}")
        object.__setattr__(self, "classes", tuple(self.classes))      # a JSON list comes back as a tuple
        if self.augment not in AUGMENTATIONS:
            raise ValueError(f"augment must be one of {', '.join(AUGMENTATIONS)}, got {self.augment!r}")

    def replace(self, **changes) -> "HParams":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["classes"] = list(d["classes"])
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "HParams":
        return from_fields(cls, d)


def _check(name, value, kind, ok, what):
    if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else int):
        raise ValueError(f"{name} must be {what}, got {value!r}")
    if not math.isfinite(value) or not ok(value):
        raise ValueError(f"{name} must be {what}, got {value!r}")


# ---- the presets -------------------------------------------------------------------------------------
# Chosen on validation accuracy (the test set read once per final run); docs/results.md has the search and
# the mean ± std over 3 seeds of each preset, with the CPU it ran on.
_PLAIN = ViTConfig(image_size=28, patch_size=7, in_channels=1, num_classes=10, dim=64, depth=4, heads=4, mlp_dim=128)
_PLAIN_HP = HParams(epochs=30, batch_size=128, lr=3e-3, warmup_epochs=0.5, weight_decay=0.05, label_smoothing=0.1,
                    augment="flip+erase", val_size=5000, max_minutes=10.0)
PRESETS = {
    "fast": (
        ViTConfig(image_size=28, patch_size=7, in_channels=1, num_classes=10,
                  dim=32, depth=2, heads=2, mlp_dim=64),
        HParams(epochs=3, batch_size=128, lr=3e-3, warmup_epochs=0.5, weight_decay=0.05,
                label_smoothing=0.1, augment="none", train_subset=20000, val_size=2000, max_minutes=3.0),
    ),
    "fmnist": (_PLAIN, _PLAIN_HP),             # the main job: the plain ViT of fmnist-vit
    "fmnist-vit": (_PLAIN, _PLAIN_HP),         # raw 7×7 pixel patches, no convolution anywhere
    "fmnist-hybrid": (                         # the hybrid ViT (§3.1): a 3×3 conv stem of 16 channels first
        _PLAIN.replace(stem_channels=(16,), stem_kernel=3, stem_pool=1),
        _PLAIN_HP.replace(epochs=20),
    ),
}

DESCRIPTIONS = {
    "fast": "a 1-2 minute demo: a small ViT on 20,000 training images",
    "fmnist": "the main job: the plain ViT of fmnist-vit (>= 90% test accuracy in 10 minutes on 2 cores)",
    "fmnist-vit": "the plain ViT (7x7 pixel patches, D=64, L=4, no convolution): >= 90% in 10 minutes",
    "fmnist-hybrid": "the hybrid ViT: a 3x3 conv stem of 16 channels, then 7x7 patches of its feature map",
}


def get_preset(name: str) -> tuple:
    """(ViTConfig, HParams) of a named preset: 'fast', 'fmnist', 'fmnist-vit' or 'fmnist-hybrid'."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]
