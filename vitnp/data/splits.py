"""The data of a run: class subsets, a validation split, and :func:`prepare_data`, which makes all the splits.

:func:`prepare_data` is what the trainer (:func:`vitnp.train.train`) and the experiment scripts call: the
Fashion-MNIST files (or arrays), checked (:func:`vitnp.data.check_images`), cut to ``hp.classes`` and
``hp.train_subset``, split into train and validation (``hp.val_fraction``), and resized to the model's image
size.  Each step is its own function here or in :mod:`vitnp.data.images`.
"""
from __future__ import annotations

import os

import numpy as np

from .fashion_mnist import data_dir, load_fashion_mnist
from .images import check_images, check_labels, check_shrink, resize_images

__all__ = ["select_classes", "train_val_split", "prepare_data"]


def select_classes(images, labels, classes):
    """Keep only the examples of ``classes`` and relabel them 0 … k−1 in the order given.

    ``select_classes(x, y, (7, 2))`` keeps the Sneakers (new label 0) and the Pullovers (new label 1).
    The examples keep their original order.

    Parameters
    ----------
    images : ndarray, (N, ...)
    labels : ndarray, integer, (N,)
    classes : sequence of k distinct integers >= 0 (k >= 1), original class indices

    Returns
    -------
    images : (n, ...) same dtype, the n examples whose label is in ``classes`` (a new array)
    labels : (n,) int64, ``classes.index(original label)``

    Raises
    ------
    TypeError
        ``classes`` not a sequence of integers (an int, a float such as 1.7, a bool); non-integer labels.
    ValueError
        ``classes`` empty, repeated or negative; labels not (N,) or negative; a class with no example in
        ``labels``.
    """
    if isinstance(classes, (str, bytes)) or not hasattr(classes, "__len__") or not hasattr(classes, "__iter__"):
        raise TypeError(f"classes must be a sequence of class indices such as (7, 2), got {classes!r}")
    bad = [c for c in classes if isinstance(c, (bool, np.bool_)) or not isinstance(c, (int, np.integer))]
    if bad:
        raise TypeError(f"classes must be integers, got {bad[0]!r} in {list(classes)!r}")
    classes = [int(c) for c in classes]
    if not classes:
        raise ValueError("classes is empty; give at least one class index")
    if len(set(classes)) != len(classes) or min(classes) < 0:
        raise ValueError(f"classes must be distinct integers >= 0, got {classes}")
    labels = check_labels(labels, len(images), what="select_classes")              # int64 (N,)
    present = set(np.unique(labels).tolist())
    absent = [c for c in classes if c not in present]
    if absent:
        raise ValueError(f"class(es) {absent} have no examples (the labels present are "
                         f"{sorted(present) if len(present) <= 20 else f'{min(present)}..{max(present)}'})")
    lookup = np.full(max(max(classes), int(labels.max())) + 1, -1, np.int64)   # original label -> new
    lookup[classes] = np.arange(len(classes))
    new = lookup[labels]                                                       # (N,), -1 = dropped
    keep = new >= 0
    return images[keep], new[keep]


def train_val_split(images, labels, val_fraction, seed):
    """Random split into training and validation parts.

    Parameters
    ----------
    images : ndarray, (N, ...)
    labels : ndarray, (N,)
    val_fraction : float in [0, 1)   round(val_fraction·N) examples go to validation.
    seed : int or np.random.Generator

    Returns
    -------
    (train_images, train_labels), (val_images, val_labels) : new arrays, (N − n_val, ...) and (n_val, ...),
        dtypes unchanged; each part keeps the original order of its examples.
    """
    check_labels(labels, len(images), what="train_val_split")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    n = len(images)
    n_val = int(round(val_fraction * n))
    perm = np.random.default_rng(seed).permutation(n)
    val, train = np.sort(perm[:n_val]), np.sort(perm[n_val:])
    return (images[train], labels[train]), (images[val], labels[val])


def _select(split, images, labels, classes):
    try:
        return select_classes(images, labels, classes)
    except ValueError as err:
        raise ValueError(f"classes {list(classes)}, {split} data: {err}") from None


def prepare_data(data, cfg, hp, verify=True) -> dict:
    """The run's splits: {'train': (x, y), 'val': (x, y) or None, 'test': (x, y), 'source': str,
    'source_size': (H, W)}.

    ``cfg``: the model's ViTConfig or CNNConfig; ``hp``: the run's :class:`vitnp.presets.HParams`.
    ``data``: None or a directory (Fashion-MNIST IDX files, :func:`vitnp.data.load_fashion_mnist`;
    ``verify=False`` skips the official checksums), or a tuple (train_x, train_y, test_x, test_y).
    In this order: ``hp.classes`` keeps those classes, relabelled 0 … k−1 in the given order
    (:func:`vitnp.data.select_classes`); ``hp.train_subset`` keeps a seeded random subset of the training
    images; ``hp.val_fraction`` of them are held out for validation; images whose (H, W) differ from
    ``cfg.image_size`` are resized to it (:func:`vitnp.data.resize_images`; ``source_size`` is the size
    before).  Shrinking by more than 2× is refused (bilinear resizing would alias), with a ValueError.
    """
    if data is None or isinstance(data, (str, os.PathLike)):
        tr_x, tr_y = load_fashion_mnist(data, "train", verify=verify)
        te_x, te_y = load_fashion_mnist(data, "test", verify=verify)
        source = data_dir(data)[0]                  # the directory load_fashion_mnist read
    elif isinstance(data, (tuple, list)) and len(data) == 4:
        tr_x, tr_y, te_x, te_y = data
        source = "arrays"
    else:
        raise TypeError("data must be None, a directory, or a tuple (train_images, train_labels, "
                        "test_images, test_labels)")
    tr_y = check_images(tr_x, tr_y, what="train", channels=cfg.in_channels)     # int64 (N,)
    te_y = check_images(te_x, te_y, what="test", channels=cfg.in_channels)
    if hp.classes:                                  # keep k classes, labels 0 … k−1 in the given order
        tr_x, tr_y = _select("train", tr_x, tr_y, hp.classes)
        te_x, te_y = _select("test", te_x, te_y, hp.classes)
    K = cfg.num_classes
    for split, y in (("train", tr_y), ("test", te_y)):             # the labels must fit the model's head
        fix = "" if hp.classes or not len(y) else (f"; set num_classes to {y.max() + 1} (--num-classes) or keep "
                                                   f"{K} classes (--classes)")
        check_labels(y, len(y), what=f"{split} data", num_classes=K, fix=fix)
    if hp.train_subset:
        if hp.train_subset > len(tr_x):
            raise ValueError(f"train_subset={hp.train_subset} exceeds the {len(tr_x)} training images"
                             + (f" of classes {list(hp.classes)}" if hp.classes else ""))
        keep = np.sort(np.random.default_rng([hp.seed, 3]).permutation(len(tr_x))[:hp.train_subset])
        tr_x, tr_y = tr_x[keep], tr_y[keep]
    val = None
    if hp.val_fraction:
        (tr_x, tr_y), val = train_val_split(tr_x, tr_y, hp.val_fraction, np.random.default_rng([hp.seed, 4]))
    source_size = tuple(int(n) for n in tr_x.shape[1:3])
    size = tuple(cfg.image_size)
    check_shrink(source_size, size, "image_size (--image-size)")

    def model_size(x):                              # (N, H', W', C) -> (N, H, W, C) of the model
        return x if x.shape[1:3] == size else resize_images(x, size)
    tr_x, te_x = model_size(tr_x), model_size(te_x)
    if val is not None:
        val = (model_size(val[0]), val[1])
    return {"train": (tr_x, tr_y), "val": val, "test": (te_x, te_y), "source": source,
            "source_size": source_size}
