"""The data of a run: class subsets, a validation split, and :func:`prepare_data`, which makes all the splits.

:func:`prepare_data` is what the trainer (:func:`vitnp.training.trainer.train`) and the experiment scripts call: the
Fashion-MNIST files (or arrays), checked (:func:`vitnp.data.check_images`), cut to ``hp.classes`` and
``hp.train_subset``, split into train and validation (``hp.val_size``, stratified by class and the same for
every run; or ``hp.val_fraction``), and resized to the model's image size.  The test split is read apart
(:func:`prepare_test`), so that a trainer can leave it unread until training is over.  Each step is its own
function here or in :mod:`vitnp.data.images`.
"""
from __future__ import annotations

import os

import numpy as np

from .fashion_mnist import data_dir, load_fashion_mnist, split_files
from .images import check_images, check_labels, check_shrink, resize_images

__all__ = ["select_classes", "train_val_split", "stratified_split", "VAL_SPLIT_SEED", "prepare_data", "prepare_test"]

VAL_SPLIT_SEED = 0      # the validation split of ``HParams.val_size`` is the same for every run and seed


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


def stratified_split(images, labels, n_val, seed=None):
    """Hold out ``n_val`` examples for validation, the same share of every class.

    Class c (n_c of the N examples) gives ⌊n_val·n_c/N⌋ examples, and the classes with the largest
    remainders one more each, so that exactly ``n_val`` are held out (Fashion-MNIST: 6,000 per class, so
    ``n_val=5000`` takes 500 of each).  Which examples is a seeded random choice within each class.

    Parameters
    ----------
    images : ndarray, (N, ...)
    labels : ndarray, integer, (N,)
    n_val : int, 0 <= n_val < N
    seed : int, sequence or np.random.Generator; default :data:`VAL_SPLIT_SEED`, the same for every run

    Returns
    -------
    (train_images, train_labels), (val_images, val_labels) : new arrays of N − n_val and n_val examples,
        each part in the original order.
    """
    labels = check_labels(labels, len(images), what="stratified_split")
    n = len(labels)
    if isinstance(n_val, bool) or not isinstance(n_val, (int, np.integer)) or not 0 <= n_val < n:
        raise ValueError(f"n_val must be an integer in [0, {n}) (the examples there are), got {n_val!r}")
    rng = np.random.default_rng(VAL_SPLIT_SEED if seed is None else seed)
    classes, counts = np.unique(labels, return_counts=True)
    share = n_val * counts / n                                      # (k,) the exact share of each class
    take = np.floor(share).astype(np.int64)
    short = n_val - int(take.sum())                                 # 0 <= short < k
    take[np.argsort(-(share - take), kind="stable")[:short]] += 1   # largest remainders first
    val = [rng.permutation(np.flatnonzero(labels == c))[:t] for c, t in zip(classes, take)]
    is_val = np.zeros(n, bool)
    is_val[np.concatenate(val)] = True
    return (images[~is_val], labels[~is_val]), (images[is_val], labels[is_val])


def _select(split, images, labels, classes):
    try:
        return select_classes(images, labels, classes)
    except ValueError as err:
        raise ValueError(f"classes {list(classes)}, {split} data: {err}") from None


def prepare_data(data, cfg, hp, verify=True, *, test=True) -> dict:
    """The run's splits: {'train': (x, y), 'val': (x, y) or None, 'test': (x, y) or None, 'source': str,
    'source_size': (H, W)}.

    ``cfg``: the model's ViTConfig or CNNConfig; ``hp``: the run's :class:`vitnp.training.presets.HParams`.
    ``data``: None or a directory (Fashion-MNIST IDX files, :func:`vitnp.data.load_fashion_mnist`;
    ``verify=False`` skips the official checksums), or a tuple (train_x, train_y, test_x, test_y).
    In this order: ``hp.classes`` keeps those classes, relabelled 0 … k−1 in the given order
    (:func:`vitnp.data.select_classes`); ``hp.train_subset`` keeps a seeded random subset of the training
    images; ``hp.val_size`` of them (stratified by class, :func:`stratified_split`, the same split for
    every seed) or ``hp.val_fraction`` (a random split seeded by ``hp.seed``) are held out for validation;
    images whose (H, W) differ from ``cfg.image_size`` are resized to it (:func:`vitnp.data.resize_images`;
    ``source_size`` is the size before).  Shrinking by more than 2× is refused (bilinear resizing would
    alias), with a ValueError.

    ``test=False`` leaves the test images unread ('test' is None): the trainer reads them with
    :func:`prepare_test` once training is over, so nothing during training can depend on them.  The test
    files must exist (FileNotFoundError now rather than after training); test arrays passed in ``data``
    are checked for shape and dtype only.
    """
    source, (tr_x, tr_y) = _load(data, "train", verify)
    tr_y = check_images(tr_x, tr_y, what="train", channels=cfg.in_channels)     # int64 (N,)
    if not test:                                    # unread until later, but a bad one should fail now
        if isinstance(data, (tuple, list)):
            check_images(data[2], None, what="test", channels=cfg.in_channels)
        else:
            split_files(data, "test")               # FileNotFoundError now, not after training
    tr_x, tr_y = _classes_and_labels("train", tr_x, tr_y, cfg, hp)
    if hp.train_subset:
        if hp.train_subset > len(tr_x):
            raise ValueError(f"train_subset={hp.train_subset} exceeds the {len(tr_x)} training images"
                             + (f" of classes {list(hp.classes)}" if hp.classes else ""))
        keep = np.sort(np.random.default_rng([hp.seed, 3]).permutation(len(tr_x))[:hp.train_subset])
        tr_x, tr_y = tr_x[keep], tr_y[keep]
    val = None
    if hp.val_size:
        if hp.val_size >= len(tr_x):
            raise ValueError(f"val_size={hp.val_size} leaves no training images of the {len(tr_x)}")
        (tr_x, tr_y), val = stratified_split(tr_x, tr_y, hp.val_size)
    elif hp.val_fraction:
        (tr_x, tr_y), val = train_val_split(tr_x, tr_y, hp.val_fraction, np.random.default_rng([hp.seed, 4]))
    source_size = tuple(int(n) for n in tr_x.shape[1:3])
    check_shrink(source_size, tuple(cfg.image_size), "image_size (--image-size)")
    tr_x = _model_size(tr_x, cfg)
    if val is not None:
        val = (_model_size(val[0], cfg), val[1])
    return {"train": (tr_x, tr_y), "val": val, "test": prepare_test(data, cfg, hp, verify) if test else None,
            "source": source, "source_size": source_size}


def prepare_test(data, cfg, hp, verify=True) -> tuple:
    """The test split of :func:`prepare_data` alone, (x, y): ``hp.classes`` kept and relabelled, images
    resized to ``cfg.image_size``.  The trainer calls it once, after the last step."""
    _, (te_x, te_y) = _load(data, "test", verify)
    te_y = check_images(te_x, te_y, what="test", channels=cfg.in_channels)
    te_x, te_y = _classes_and_labels("test", te_x, te_y, cfg, hp)
    check_shrink(tuple(te_x.shape[1:3]), tuple(cfg.image_size), "image_size (--image-size)")
    return _model_size(te_x, cfg), te_y


def _load(data, split, verify):
    """(source, (images, labels)) of one split of ``data`` (None, a directory, or the 4-tuple)."""
    if data is None or isinstance(data, (str, os.PathLike)):
        return data_dir(data)[0], load_fashion_mnist(data, split, verify=verify)
    if isinstance(data, (tuple, list)) and len(data) == 4:
        return "arrays", tuple(data[:2] if split == "train" else data[2:])
    raise TypeError("data must be None, a directory, or a tuple (train_images, train_labels, "
                    "test_images, test_labels)")


def _classes_and_labels(split, x, y, cfg, hp):
    """``hp.classes`` kept (labels 0 … k−1 in the given order), then the labels checked against the head."""
    if hp.classes:
        x, y = _select(split, x, y, hp.classes)
    K = cfg.num_classes
    fix = "" if hp.classes or not len(y) else (f"; set num_classes to {y.max() + 1} (--num-classes) or keep "
                                               f"{K} classes (--classes)")
    check_labels(y, len(y), what=f"{split} data", num_classes=K, fix=fix)
    return x, y


def _model_size(x, cfg):
    """(N, H', W', C) -> (N, H, W, C) of the model, resized only if the sizes differ."""
    size = tuple(cfg.image_size)
    return x if x.shape[1:3] == size else resize_images(x, size)
