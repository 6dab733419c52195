"""Training a ViT (or the CNN baseline) on Fashion-MNIST: the loop, the run directory, checkpoints, bit-exact
resume, fine-tuning from a checkpoint, higher resolution and class subsets.

One optimiser step is the paper's recipe at small scale (§3, Appendix B.1: Adam with decoupled weight
decay, linear warm-up then cosine decay, global-norm gradient clipping)::

    logits, cache = vit_forward(params, x, cfg, train=True, rng=rng)   # Eq 1–4, (B, K); rng: dropout
    loss, dlogits = softmax_cross_entropy(logits, y, smoothing)       # with label smoothing
    grads = vit_backward(dlogits, cache)                              # same names as params
    clip_grad_norm(grads, max_norm)                                   # optional
    opt.step(params, grads, lr=warmup_cosine(step, …))                # AdamW, in place

Python API
----------
>>> from vitnp.presets import get_preset
>>> from vitnp.train import train, load_checkpoint
>>> cfg, hp = get_preset("fast")
>>> run = train(cfg, hp)                                   # doctest: +SKIP  (installed Fashion-MNIST)
>>> run.history[-1]["test_acc"], run.params["E"].shape    # doctest: +SKIP
>>> run = train(cfg, hp, out_dir="runs/fast", data=(x_tr, y_tr, x_te, y_te))     # doctest: +SKIP
>>> params, cfg, meta = load_checkpoint("runs/fast/best.npz")                    # doctest: +SKIP

``train(cfg, hparams, out_dir=None, data=None, resume=False, quiet=True, ...)`` returns a :class:`Run`
(``history``, ``params``, ``cfg``, ``hparams``, ``status``, ``last_eval``). ``data`` is None (the installed
Fashion-MNIST), a directory of IDX files, or a tuple ``(train_images, train_labels, test_images,
test_labels)`` of uint8 (N, H, W, C) images and integer labels. ``history`` is the list of metrics lines.

Models. ``cfg`` is a :class:`~vitnp.config.ViTConfig` (the ViT, or the hybrid with a CNN stem) or a
:class:`~vitnp.cnn.CNNConfig` (the CNN baseline). The loop dispatches on the config's type through
:data:`vitnp.models.MODELS` (init, forward, backward, check; also importable from here), so both models get
the same data, optimiser, schedule, augmentation and time budget: the fair comparison of paper §4
(inductive bias).

Beyond the paper's first training run:

* ``init_from=CHECKPOINT`` starts from a trained model's weights, adapted to ``cfg`` by
  :func:`vitnp.finetune.adapt_params` (E_pos interpolated for a new resolution, a new zero head for new
  classes), with a fresh optimiser at step 0 (paper §3.2, fine-tuning);
* images are resized to ``cfg.image_size`` (:func:`vitnp.data.resize_images`, bilinear) when the data have
  another size, e.g. Fashion-MNIST's 28×28 upsampled to 56×56 for a higher-resolution fine-tuning;
* ``hparams.classes`` keeps only those classes, relabelled 0 … k−1 in the given order
  (:func:`vitnp.data.select_classes`), before ``train_subset`` draws its random subset.

Run directory (``out_dir``)
---------------------------
=================  ====================================================================================
``config.json``    the model kind and config, the HParams, the data (source, sizes, classes, MD5), the step
                   counts, the class names, and ``init_from`` (the checkpoint the weights came from, or null)
``metrics.jsonl``  one JSON line per epoch: epoch, step, train_loss, train_acc, [val_loss, val_acc,]
                   test_loss, test_acc, lr, seconds, images_per_s
``checkpoint.npz`` the latest state: parameters, AdamW state, RNG states, counters (resumable)
``best.npz``       the parameters of the best epoch (by validation accuracy if there is a validation
                   split, else by test accuracy), with the config: enough for evaluate/predict/info
``curves.png``     loss and accuracy per epoch;  ``confusion.png``: the test confusion matrix;
``predictions.png`` 25 test images with predicted and true labels
=================  ====================================================================================

"test" is always the official 10 000-image Fashion-MNIST test split, evaluated after every epoch with
dropout off; "val" is a held-out part of the training set (``val_fraction``). Losses are plain
cross-entropy without label smoothing; train loss and accuracy are running means over the epoch's
(augmented) batches. ``seconds`` (wall time of the epoch, training and evaluation) and ``images_per_s``
(training throughput) are the only fields that differ between two runs with the same seed.

Checkpoint files (``.npz``, written with :func:`vitnp.checkpoint.save_npz`: no pickle; temporary file,
fsync, rename)
---------------------------------------------------------------------------------------------------------
==========================  ==========================================================================
``format``                  0-d str ``vitnp-checkpoint/1``
``model``                   0-d str, ``vit`` or ``cnn`` (absent in older files: ``vit``)
``config_json``             0-d str, ``ViTConfig.to_dict()`` (or ``CNNConfig.to_dict()``) as JSON
``hparams_json``            0-d str, ``HParams.to_dict()`` as JSON
``params/<name>``           every array of ``param_shapes(cfg)`` (``cnn_param_shapes`` for the CNN)
``optim/<key>``             AdamW ``state_dict()``: ``m/<name>``, ``v/<name>``, ``step``, hyper-parameters
                            (``checkpoint.npz`` only)
``rng_json``                0-d str: ``bit_generator.state`` of the data RNG at the start of the current
                            epoch and of the dropout RNG (``checkpoint.npz`` only)
``epoch``, ``step``,        0-d int64: epochs completed, optimiser steps taken, batches done in the
``batch``                   unfinished epoch (0 at an epoch boundary)
``progress_json``           0-d str: running sums of the unfinished epoch, best epoch, data MD5s
``history_json``            0-d str: the metrics lines so far
``norm_mean``, ``norm_std`` 0-d float64: inputs are (pixels/255 − mean)/std
``class_names_json``        0-d str: the K class names
``data_json``               0-d str: ``classes`` (the original class indices, [] = all) and
                            ``source_size`` (the (H, W) of the data before resizing to the model's size)
``init_json``               0-d str: where the initial weights came from (``path``, ``md5``, the source
                            model and config, what was adapted), or null; only when ``init_from`` was used
==========================  ==========================================================================

Resume
------
``train(..., resume=True)`` (``python -m vitnp train --out RUN --resume``) continues from
``RUN/checkpoint.npz`` **bit-exactly**: a run stopped after epoch k, or in the middle of an epoch, and
resumed ends with the same parameters and the same metrics lines (except the timing fields) as an
uninterrupted run. This works mid-epoch too, because the batches of an epoch depend only on the data RNG's
state before the epoch (:func:`vitnp.data.iterate_batches`): the checkpoint stores that state and the
number of batches done, and the resumed run skips those batches. Ctrl-C (SIGINT) finishes the current step,
saves such a checkpoint and stops; a second Ctrl-C quits at once (the previous checkpoint file stays
intact because every write is atomic).

A wall-clock budget ``max_minutes`` (per call) stops at an epoch boundary when the next epoch would not
fit, or mid-epoch with a checkpoint when the budget runs out inside an epoch.
"""
from __future__ import annotations

import ctypes
import dataclasses
import hashlib
import json
import os
import signal
import sys
import threading
import time

import numpy as np

from .atomic import write_text
from .checkpoint import load_npz, save_npz
from .cnn import CNNConfig
from .config import ViTConfig
from .data import FASHION_MNIST_CLASSES, MEAN, STD, _check_shrink, _data_dir, crop_and_flip, iterate_batches, \
    load_fashion_mnist, random_crop, random_hflip, resize_images, select_classes, train_val_split
from .evaluate import cross_entropy_sum, evaluate_arrays
from .finetune import adapt_params, pos_table_changes
from .models import MODELS, ModelSpec, describe_model, model_spec
from .ops.loss import softmax_cross_entropy
from .optim import AdamW, clip_grad_norm, warmup_cosine
from .presets import DESCRIPTIONS, PRESETS, HParams, get_preset

__all__ = ["Run", "train", "train_step", "load_checkpoint", "save_checkpoint", "set_blas_threads",
           "FORMAT", "TIMING_KEYS", "MODELS", "ModelSpec", "model_spec", "describe_model", "class_names",
           "parse_classes"]

FORMAT = "vitnp-checkpoint/1"
TIMING_KEYS = ("seconds", "images_per_s")        # the only metrics fields that vary between equal runs
RESUMABLE_CHANGES = ("max_minutes", "eval_batch_size")   # HParams a resumed run may change
# ModelSpec, MODELS, model_spec and describe_model live in vitnp.models; they are imported above so that
# ``from vitnp.train import MODELS, model_spec`` keeps working.


@dataclasses.dataclass
class Run:
    """What :func:`train` returns.

    history : list of dict   the metrics lines (also in ``metrics.jsonl``).
    params : dict            the parameters at the end (not necessarily the best epoch's).
    cfg, hparams             the ViTConfig (or CNNConfig) and HParams of the run.
    status : str             'completed', 'budget' (max_minutes reached), 'interrupted' (Ctrl-C),
                             'stopped' (stop_after_epoch or a callback asked to stop).
    last_eval : dict | None  :func:`vitnp.evaluate.evaluate_arrays` on the test split after the last epoch
                             run in this call (predictions, confusion, per-class accuracy).
    out_dir : str | None
    """

    history: list
    params: dict
    cfg: ViTConfig | CNNConfig
    hparams: HParams
    status: str
    last_eval: dict | None = None
    out_dir: str | None = None


# ---- one step --------------------------------------------------------------------------------------
def train_step(params, opt, x, y, cfg, *, lr, label_smoothing=0.0, clip=0.0, rng=None):
    """One AdamW step on the batch (x, y), in place; returns (Σ cross-entropy, number correct, ‖g‖).

    x : (B, H, W, C) normalised float images   y : (B,) int labels   lr : this step's learning rate
    cfg : ViTConfig or CNNConfig (the forward and backward come from :data:`vitnp.models.MODELS`)
    The reported cross-entropy has no label smoothing; the gradient is of the smoothed loss.
    ‖g‖ is the global gradient norm before clipping (None when ``clip`` is 0).
    """
    spec = model_spec(cfg)
    logits, cache = spec.forward(params, x, cfg, train=True, rng=rng)          # (B, K)
    _, dlogits = softmax_cross_entropy(logits, y, label_smoothing)
    grads = spec.backward(dlogits, cache)
    norm = clip_grad_norm(grads, clip) if clip > 0 else None
    opt.step(params, grads, lr=lr)
    return cross_entropy_sum(logits, y), int((logits.argmax(1) == y).sum()), norm


def make_augment(hp: HParams):
    """The augmentation of ``hp.augment`` as a function (uint8 images, rng) -> images, or None."""
    pad = hp.crop_padding
    return {"none": None,
            "crop": lambda x, rng: random_crop(x, pad, rng),
            "flip": lambda x, rng: random_hflip(x, rng),
            "crop+flip": lambda x, rng: crop_and_flip(x, rng, pad)}[hp.augment]


# ---- BLAS threads ----------------------------------------------------------------------------------
def set_blas_threads(n: int) -> bool:
    """Set the number of OpenBLAS threads of the running NumPy; True if it worked.

    OpenBLAS reads ``OPENBLAS_NUM_THREADS`` only when NumPy is imported; this calls its
    ``openblas_set_num_threads`` (whatever the symbol prefix of the bundled build) through ctypes.
    On a busy machine one thread can be several times faster than two that wait for each other.
    """
    if not (isinstance(n, int) and n >= 1):
        raise ValueError(f"threads must be a positive integer, got {n!r}")
    try:
        with open("/proc/self/maps") as f:
            libs = {line.split()[-1] for line in f if "openblas" in line.lower() and "/" in line}
    except OSError:
        return False
    for path in sorted(libs):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for symbol in ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads",
                       "openblas_set_num_threads64_", "openblas_set_num_threads"):
            fn = getattr(lib, symbol, None)
            if fn is not None:
                fn(ctypes.c_int(n))
                return True
    return False


# ---- data ------------------------------------------------------------------------------------------
def _md5(*arrays) -> str:
    h = hashlib.md5(usedforsecurity=False)
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def _check_arrays(name, images, labels, cfg):
    """uint8 (N, H, W, C) images with the model's C, and N integer labels >= 0 -> labels as int64."""
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4:
        raise ValueError(f"{name} images must be a uint8 array (N, H, W, C), got "
                         f"{getattr(images, 'dtype', type(images).__name__)} {np.shape(images)}")
    labels = np.asarray(labels)
    if labels.shape != (len(images),) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{name} labels must be {len(images)} integers, got {labels.dtype} {labels.shape}")
    if images.shape[3] != cfg.in_channels:
        H, W = cfg.image_size
        raise ValueError(f"{name} images are {'x'.join(map(str, images.shape[1:]))}, the config needs "
                         f"{H}x{W}x{cfg.in_channels} ({cfg.in_channels} channel(s))")
    if len(labels) and labels.min() < 0:
        raise ValueError(f"{name} labels must be >= 0, got {labels.min()}")
    return labels.astype(np.int64)


def _check_classes(name, labels, cfg, hp):
    """The (relabelled) labels must lie in 0 … K−1; say how to fix it when they do not."""
    if len(labels) and labels.max() >= cfg.num_classes:
        hint = "" if hp.classes else (f"; set num_classes to {labels.max() + 1} (--num-classes) or keep "
                                      f"{cfg.num_classes} classes (--classes)")
        raise ValueError(f"{name} labels must lie in 0..{cfg.num_classes - 1} (num_classes={cfg.num_classes}), "
                         f"got {labels.min()}..{labels.max()}{hint}")


def class_names(classes, num_classes) -> list:
    """Names of the K classes of a run: the Fashion-MNIST names of ``classes`` in their order, or all ten
    (``classes`` empty, K = 10); a class without a Fashion-MNIST name is called by its index."""
    names = FASHION_MNIST_CLASSES
    if classes:
        return [names[c] if c < len(names) else str(c) for c in classes]
    return list(names) if num_classes == len(names) else [str(k) for k in range(num_classes)]


def _select(split, images, labels, classes):
    try:
        return select_classes(images, labels, classes)
    except ValueError as err:
        raise ValueError(f"classes {list(classes)}, {split} data: {err}") from None


def prepare_data(data, cfg, hp: HParams, verify=True) -> dict:
    """The run's splits: {'train': (x, y), 'val': (x, y) or None, 'test': (x, y), 'source': str,
    'source_size': (H, W)}.

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
        source = _data_dir(data)[0]                 # the directory load_fashion_mnist read
    elif isinstance(data, (tuple, list)) and len(data) == 4:
        tr_x, tr_y, te_x, te_y = data
        source = "arrays"
    else:
        raise TypeError("data must be None, a directory, or a tuple (train_images, train_labels, "
                        "test_images, test_labels)")
    tr_y = _check_arrays("train", tr_x, tr_y, cfg)
    te_y = _check_arrays("test", te_x, te_y, cfg)
    if hp.classes:                                  # keep k classes, labels 0 … k−1 in the given order
        tr_x, tr_y = _select("train", tr_x, tr_y, hp.classes)
        te_x, te_y = _select("test", te_x, te_y, hp.classes)
    _check_classes("train", tr_y, cfg, hp)
    _check_classes("test", te_y, cfg, hp)
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
    _check_shrink(source_size, size, "image_size (--image-size)")

    def fit(x):                                     # (N, H', W', C) -> (N, H, W, C) of the model
        return x if x.shape[1:3] == size else resize_images(x, size)
    tr_x, te_x = fit(tr_x), fit(te_x)
    if val is not None:
        val = (fit(val[0]), val[1])
    return {"train": (tr_x, tr_y), "val": val, "test": (te_x, te_y), "source": source,
            "source_size": source_size}


# ---- checkpoints -----------------------------------------------------------------------------------
def _json_array(obj):
    return np.array(json.dumps(obj))                 # 0-d unicode array: no pickle needed


def save_checkpoint(path, params, cfg, *, hparams: HParams | None = None, optimizer=None,
                    rng_state=None, epoch=0, step=0, batch=0, progress=None, history=(),
                    names=None, norm=(MEAN, STD), data_info=None, init_info=None) -> None:
    """Write a self-describing checkpoint (module docstring table) atomically with ``save_npz``.

    Only ``params`` and ``cfg`` (a ViTConfig or CNNConfig) are needed for evaluate/predict/info;
    ``optimizer``, ``rng_state`` and ``progress`` make it resumable.  ``names``: the K class names (default
    :func:`class_names` of all classes); ``data_info``: {'classes': [...], 'source_size': [H, W]};
    ``init_info``: where the initial weights came from (``init_from``).
    """
    spec = model_spec(cfg)
    names = list(names) if names is not None else _default_names(cfg)
    arrays = {"format": np.array(FORMAT), "model": np.array(spec.kind), "config_json": _json_array(cfg.to_dict())}
    if hparams is not None:
        arrays["hparams_json"] = _json_array(hparams.to_dict())
    arrays.update({f"params/{k}": v for k, v in params.items()})
    if optimizer is not None:
        arrays.update({f"optim/{k}": v for k, v in optimizer.state_dict().items()})
    if rng_state is not None:
        arrays["rng_json"] = _json_array(rng_state)
    arrays.update({"epoch": np.array(epoch, np.int64), "step": np.array(step, np.int64),
                   "batch": np.array(batch, np.int64), "progress_json": _json_array(progress or {}),
                   "history_json": _json_array(list(history)),
                   "norm_mean": np.array(norm[0], np.float64), "norm_std": np.array(norm[1], np.float64),
                   "class_names_json": _json_array(names), "data_json": _json_array(data_info or {})})
    if init_info is not None:
        arrays["init_json"] = _json_array(init_info)
    save_npz(path, arrays)


def _default_names(cfg):
    return class_names((), cfg.num_classes)


def _few(names, k=3):
    names = sorted(names)
    return ", ".join(names[:k]) + (f" (+{len(names) - k} more)" if len(names) > k else "")


def load_checkpoint(path):
    """Read a checkpoint written by :func:`save_checkpoint` → (params, cfg, meta), all validated.

    Returns
    -------
    params : dict name → array, exactly the config's parameter table in ``cfg.dtype``
    cfg : ViTConfig or CNNConfig (entry ``model``)
    meta : dict with ``format``, ``model`` ('vit' | 'cnn'), ``hparams`` (dict or None), ``epoch``, ``step``,
        ``batch``, ``history``, ``progress``, ``rng`` (dict or None), ``optim`` (dict of arrays or None),
        ``norm_mean``, ``norm_std``, ``class_names``, ``data`` (dict: ``classes``, ``source_size``; {} in
        older files), ``init_from`` (dict or None)

    Raises
    ------
    FileNotFoundError   no such file.
    ValueError          one line naming the file and the problem: not an .npz, truncated or corrupt, not a
                        vitnp checkpoint, bad JSON, parameters missing or not matching the config's shapes.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        raise ValueError(f"{path} is a directory; give a checkpoint file such as {os.path.join(path, 'best.npz')}")
    arrays = load_npz(path)

    def text(key, required=True):
        if key not in arrays:
            if required:
                raise ValueError(f"{path}: not a vitnp training checkpoint (no {key!r} entry)")
            return None
        a = arrays[key]
        if a.ndim != 0 or a.dtype.kind != "U":
            raise ValueError(f"{path}: entry {key!r} should be a 0-d string, got {a.dtype} {a.shape}")
        return str(a)

    def parsed(key, required=True):
        s = text(key, required)
        if s is None:
            return None
        try:
            return json.loads(s)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: entry {key!r} is not valid JSON ({err})") from None

    fmt = text("format")
    if fmt != FORMAT:
        raise ValueError(f"{path}: unsupported checkpoint format {fmt!r} (this vitnp reads {FORMAT!r})")
    kind = text("model", required=False) or "vit"
    if kind not in MODELS:
        raise ValueError(f"{path}: unknown model kind {kind!r} (this vitnp knows {', '.join(MODELS)})")
    spec = MODELS[kind]
    cfg_dict = parsed("config_json")
    if not isinstance(cfg_dict, dict):
        raise ValueError(f"{path}: config_json is not a JSON object")
    try:
        cfg = spec.config.from_dict(cfg_dict)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path}: bad config: {err}") from None
    shapes = spec.shapes(cfg)
    params = {k[len("params/"):]: v for k, v in arrays.items() if k.startswith("params/")}
    missing, extra = set(shapes) - set(params), set(params) - set(shapes)
    problems = []
    if missing:
        problems.append(f"missing {_few(missing)}")
    if extra:
        problems.append(f"unexpected {_few(extra)}")
    for k, shape in shapes.items():
        if k in params and params[k].shape != shape:
            problems.append(f"{k} has shape {params[k].shape}, the config needs {shape}")
        elif k in params and params[k].dtype != cfg.np_dtype:
            problems.append(f"{k} has dtype {params[k].dtype}, the config needs {cfg.dtype}")
    if problems:
        raise ValueError(f"{path}: parameters do not match the stored config ({describe_model(cfg)}): "
                         + "; ".join(problems[:3]) + (f"; … ({len(problems)} problems)" if len(problems) > 3 else ""))
    params = {k: params[k] for k in shapes}          # the canonical order
    hp = parsed("hparams_json", required=False)
    optim = {k[len("optim/"):]: v for k, v in arrays.items() if k.startswith("optim/")} or None
    counters = {}
    for key in ("epoch", "step", "batch"):
        a = arrays.get(key, np.array(0))
        if a.ndim != 0 or a.dtype.kind not in "iu" or a < 0:
            raise ValueError(f"{path}: entry {key!r} should be a 0-d integer >= 0, got {a!r}")
        counters[key] = int(a)
    norm = []
    for key, default in (("norm_mean", MEAN), ("norm_std", STD)):
        a = arrays.get(key, np.array(default))
        if a.ndim != 0 or a.dtype.kind != "f" or not np.isfinite(a) or (key == "norm_std" and a <= 0):
            raise ValueError(f"{path}: entry {key!r} should be a finite 0-d float, got {a!r}")
        norm.append(float(a))
    names = parsed("class_names_json", required=False) or _default_names(cfg)
    if not (isinstance(names, list) and len(names) == cfg.num_classes):
        raise ValueError(f"{path}: class_names_json should list {cfg.num_classes} names")
    history = parsed("history_json", required=False) or []
    data_info = parsed("data_json", required=False) or {}
    init_info = parsed("init_json", required=False)
    if not isinstance(data_info, dict) or not (init_info is None or isinstance(init_info, dict)):
        raise ValueError(f"{path}: data_json and init_json should be JSON objects")
    meta = {"format": fmt, "model": kind, "hparams": hp, **counters, "history": history,
            "progress": parsed("progress_json", required=False) or {}, "rng": parsed("rng_json", required=False),
            "optim": optim, "norm_mean": norm[0], "norm_std": norm[1], "class_names": [str(n) for n in names],
            "data": data_info, "init_from": init_info}
    return params, cfg, meta


# ---- small file helpers ----------------------------------------------------------------------------
def _metrics_text(history):
    return "".join(json.dumps(line) + "\n" for line in history)


class _SigintGuard:
    """Ctrl-C sets ``interrupted`` (the loop then saves and stops); a second Ctrl-C raises at once.
    Installed only in the main thread (Python allows signal handlers nowhere else)."""

    def __init__(self):
        self.interrupted = False
        self._old = None

    def _handler(self, signum, frame):
        if self.interrupted:
            raise KeyboardInterrupt
        self.interrupted = True
        print("\ninterrupt: finishing this step, then saving a checkpoint (Ctrl-C again to quit at once)",
              file=sys.stderr, flush=True)

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc):
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, self._old if self._old is not None else signal.SIG_DFL)
        return False


def _differences(a: dict, b: dict, ignore=()):
    return [f"{k}: {a.get(k)!r} (saved) vs {b.get(k)!r}" for k in sorted(set(a) | set(b))
            if k not in ignore and a.get(k) != b.get(k)]


# ---- initial weights from another run (fine-tuning) ------------------------------------------------
def _load_init(path) -> dict:
    """The checkpoint of ``init_from``, read and validated; errors say which option they concern."""
    path = os.fspath(path)
    try:
        params, cfg, meta = load_checkpoint(path)
    except FileNotFoundError as err:
        raise FileNotFoundError(f"init_from: {err}") from None
    except ValueError as err:
        raise ValueError(f"init_from: {err}") from None
    with open(path, "rb") as f:
        md5 = hashlib.md5(f.read(), usedforsecurity=False).hexdigest()
    return {"path": path, "md5": md5, "params": params, "cfg": cfg, "meta": meta}


def _adapt_init(source, cfg, names, seed):
    """(params for ``cfg``, a JSON record of where they came from and what was adapted).

    The head is new (zeros) when the source's class names differ from this run's ``names`` (other classes,
    another order, or another number of them); E_pos is interpolated when the patch grid changes.
    """
    old_cfg, meta = source["cfg"], source["meta"]
    new_head = meta["class_names"] != list(names)
    try:
        params = adapt_params(source["params"], old_cfg, cfg, seed=seed, reset_head=new_head)
    except (TypeError, ValueError) as err:
        raise ValueError(f"init_from {source['path']}: {err}") from None
    adapted = []
    if pos_table_changes(old_cfg, cfg):
        adapted.append("E_pos interpolated from the {}x{} to the {}x{} patch grid".format(*old_cfg.grid, *cfg.grid))
    if new_head:
        adapted.append(f"new zero head for {len(names)} classes")
    info = {"path": source["path"], "md5": source["md5"], "model": model_spec(old_cfg).kind,
            "config": old_cfg.to_dict(), "epoch": meta["epoch"], "step": meta["step"],
            "class_names": meta["class_names"], "classes": meta["data"].get("classes", []),
            "adapted": "; ".join(adapted) or "nothing (same shapes and classes)"}
    return params, info


# ---- the loop --------------------------------------------------------------------------------------
def train(cfg: ViTConfig | CNNConfig | None = None, hparams: HParams | None = None, *, out_dir=None,
          data=None, resume=False, quiet=True, log=None, callback=None, stop_after_epoch=None, verify_data=True,
          preset=None, plots=True, init_from=None) -> Run:
    """Train a ViT (or the CNN) with AdamW, warm-up + cosine and label smoothing; test after every epoch.

    Parameters
    ----------
    cfg : ViTConfig or CNNConfig    default: the 'fmnist' preset's; on resume the saved run's, and with
                                    ``init_from`` the checkpoint's.  Images are resized to
                                    ``cfg.image_size`` if the data differ (by at most 2× when shrinking).
    hparams : HParams               default: the 'fmnist' preset's.  ``hparams.classes`` needs
                                    ``cfg.num_classes == len(hparams.classes)``.
    out_dir : path or None          run directory (module docstring); None trains in memory only.
    data : None, a directory, or (train_x, train_y, test_x, test_y) uint8 (N, H, W, C) arrays and labels.
    resume : bool                   continue ``out_dir/checkpoint.npz`` bit-exactly. ``cfg`` and ``hparams``
                                    may be omitted; if given they must equal the saved ones except
                                    max_minutes and eval_batch_size.
    quiet : bool                    no tqdm progress bars.
    log : callable(str) or None     receives one summary line per epoch (e.g. ``print``).
    callback : callable(dict) or None
        Called after every step with {'epoch', 'batch', 'step', 'loss', 'acc', 'lr'} (epoch counted from
        1, batch = batches done in it); returning True stops like Ctrl-C (checkpoint, status 'stopped').
    stop_after_epoch : int or None  stop (status 'stopped') once this many epochs are complete.
    verify_data : bool              check the official Fashion-MNIST checksums when loading IDX files.
    preset : str or None            recorded in config.json only (on resume: the original run's, unless
                                    given).
    plots : bool                    write the PNGs into ``out_dir`` (curves every epoch, the rest at the end).
    init_from : path or None        a checkpoint whose parameters start the run, adapted to ``cfg`` by
                                    :func:`vitnp.finetune.adapt_params` (E_pos resized for a new patch grid;
                                    a new zero head when the class names differ from this run's); the
                                    optimiser starts fresh at step 0.  Recorded in config.json and in the
                                    checkpoints, so a resumed fine-tuning run keeps the record.  (The
                                    command line passes the checkpoint it already read, a dict of
                                    ``_load_init``, so the file is read and hashed once.)

    Returns
    -------
    Run
    """
    t_start = time.perf_counter()
    if out_dir is not None:
        out_dir = os.fspath(out_dir)
        ckpt_path = os.path.join(out_dir, "checkpoint.npz")
    ck = None
    if resume:
        if out_dir is None:
            raise ValueError("resume needs out_dir (the run directory holding checkpoint.npz)")
        if not os.path.isfile(ckpt_path):
            raise FileNotFoundError(f"cannot resume: no checkpoint at {ckpt_path}")
        if init_from is not None:
            raise ValueError("init_from starts a new run; a resumed run continues from its own checkpoint "
                             "(which records where its initial weights came from)")
        saved_params, saved_cfg, ck = load_checkpoint(ckpt_path)
        preset = _saved_preset(out_dir) if preset is None else preset
        if ck["optim"] is None or ck["rng"] is None or ck["hparams"] is None:
            raise ValueError(f"{ckpt_path}: no optimiser/RNG state; it cannot be resumed")
        if cfg is not None and cfg != saved_cfg:
            raise ValueError("resume: the config differs from the saved run's: "
                             + "; ".join(_differences(saved_cfg.to_dict(), cfg.to_dict())))
        saved_hp = HParams.from_dict(ck["hparams"])
        if hparams is not None:
            diff = _differences(saved_hp.to_dict(), hparams.to_dict(), ignore=RESUMABLE_CHANGES)
            if diff:
                raise ValueError("resume: the hyper-parameters differ from the saved run's: " + "; ".join(diff))
            saved_hp = saved_hp.replace(**{k: getattr(hparams, k) for k in RESUMABLE_CHANGES})
        cfg, hp = saved_cfg, saved_hp
    else:
        if init_from is not None:                  # before the data: a bad file or model fails fast
            source = init_from if isinstance(init_from, dict) else _load_init(init_from)
        default_cfg, default_hp = get_preset("fmnist")
        if cfg is None:                            # the checkpoint's model, as on the command line
            cfg = default_cfg if init_from is None else source["cfg"]
        hp = default_hp if hparams is None else hparams
        if out_dir is not None and os.path.exists(ckpt_path):
            raise FileExistsError(f"{out_dir} already holds a run (checkpoint.npz); pass resume=True "
                                  f"(--resume) to continue it, or choose another output directory")
    if not isinstance(hp, HParams):
        raise TypeError(f"hparams must be an HParams, got {type(hp).__name__}")
    spec = model_spec(cfg)                         # TypeError for anything but ViTConfig / CNNConfig
    if hp.classes and cfg.num_classes != len(hp.classes):
        raise ValueError(f"classes {list(hp.classes)} are {len(hp.classes)} classes, but the model has "
                         f"num_classes={cfg.num_classes}; they must agree (--num-classes {len(hp.classes)})")
    names = class_names(hp.classes, cfg.num_classes)
    adapted = None
    if init_from is not None:
        adapted = _adapt_init(source, cfg, names, hp.seed)                        # (params, record)

    splits = prepare_data(data, cfg, hp, verify=verify_data)
    tr_x, tr_y = splits["train"]
    te_x, te_y = splits["test"]
    fingerprint = {"train_md5": _md5(tr_x, tr_y), "test_md5": _md5(te_x, te_y)}
    if ck is not None:
        saved = {k: ck["progress"].get(k) for k in fingerprint}
        if saved != fingerprint:
            raise ValueError("resume: the data differ from the saved run's (MD5 of the training or test "
                             "images); pass the same data (--data) as the original run")
    B = hp.batch_size
    steps_per_epoch = len(tr_x) // B                 # drop_last: every step sees B images
    if steps_per_epoch == 0:
        raise ValueError(f"batch_size={B} is larger than the {len(tr_x)} training images")
    total_steps = hp.epochs * steps_per_epoch
    warmup_steps = min(total_steps, int(round(hp.warmup_epochs * steps_per_epoch)))
    augment = make_augment(hp)
    data_info = {"classes": list(hp.classes), "source_size": list(splits["source_size"])}

    # ---- state: fresh or from the checkpoint ---------------------------------------------------------
    data_rng = np.random.default_rng([hp.seed, 1])   # order and augmentation (iterate_batches)
    drop_rng = np.random.default_rng([hp.seed, 2])   # dropout masks
    if ck is None:
        params, init_info = (spec.init(cfg, hp.seed), None) if adapted is None else adapted   # init_from
        opt = AdamW(params, hp.lr, betas=(hp.beta1, hp.beta2), eps=hp.eps, weight_decay=hp.weight_decay)
        epoch, batch, step, history = 0, 0, 0, []
        progress = {"loss_sum": 0.0, "correct": 0, "count": 0, "epoch_seconds": 0.0, "train_seconds": 0.0,
                    "best_acc": None, "best_epoch": None, **fingerprint}
        epoch_start_state = data_rng.bit_generator.state
    else:
        params, init_info = saved_params, ck["init_from"]
        opt = AdamW(params, hp.lr, betas=(hp.beta1, hp.beta2), eps=hp.eps, weight_decay=hp.weight_decay)
        opt.load_state_dict(ck["optim"])
        epoch, batch, step, history = ck["epoch"], ck["batch"], ck["step"], ck["history"]
        progress = ck["progress"]
        epoch_start_state = ck["rng"]["data"]
        drop_rng.bit_generator.state = ck["rng"]["dropout"]
        if opt.step_count != step or len(history) != epoch or batch >= steps_per_epoch:
            raise ValueError(f"{ckpt_path}: inconsistent counters (epoch {epoch}, batch {batch}, step {step}, "
                             f"optimiser step {opt.step_count}, {len(history)} metrics lines)")

    def checkpoint_now():
        save_checkpoint(ckpt_path, params, cfg, hparams=hp, optimizer=opt,
                        rng_state={"data": epoch_start_state, "dropout": drop_rng.bit_generator.state},
                        epoch=epoch, step=step, batch=batch, progress=progress, history=history,
                        names=names, data_info=data_info, init_info=init_info)

    if out_dir is not None:
        os.makedirs(out_dir, exist_ok=True)
        write_text(os.path.join(out_dir, "config.json"), json.dumps({
            "model": spec.kind, "config": cfg.to_dict(), "hparams": hp.to_dict(), "preset": preset,
            "parameters": spec.count(cfg),
            "init_from": None if init_info is None else init_info["path"], "init": init_info,
            "data": {"source": splits["source"], "n_train": len(tr_x),
                     "n_val": 0 if splits["val"] is None else len(splits["val"][0]), "n_test": len(te_x),
                     "classes": list(hp.classes), "source_size": list(splits["source_size"]),
                     "image_size": list(cfg.image_size), **fingerprint},
            "steps_per_epoch": steps_per_epoch, "total_steps": total_steps, "warmup_steps": warmup_steps,
            "normalisation": {"mean": MEAN, "std": STD}, "class_names": names,
            "versions": {"vitnp": _version(), "numpy": np.__version__}}, indent=2) + "\n")
        write_text(os.path.join(out_dir, "metrics.jsonl"), _metrics_text(history))   # as the checkpoint says
    if log:
        resized = tuple(splits["source_size"]) != tuple(cfg.image_size)
        log(f"model: {describe_model(cfg)} ({spec.count(cfg):,} parameters); data: {len(tr_x)} train"
            + (f" / {len(splits['val'][0])} val" if splits["val"] is not None else "")
            + f" / {len(te_x)} test"
            + (f" of classes {','.join(map(str, hp.classes))}" if hp.classes else "")
            + (" resized {}x{} -> {}x{}".format(*splits["source_size"], *cfg.image_size) if resized else "")
            + f"; {steps_per_epoch} steps/epoch x {hp.epochs} epochs"
            + (f"; initial weights from {init_info['path']} ({init_info['adapted']})" if init_info and ck is None
               else "")
            + (f"; resuming at epoch {epoch + 1}, batch {batch}" if ck is not None else ""))

    budget = None if hp.max_minutes is None else 60.0 * hp.max_minutes
    status, last_eval = "completed", None
    bar_cls = None
    if not quiet:
        from tqdm import tqdm as bar_cls
    with _SigintGuard() as guard:
        while epoch < hp.epochs:
            if stop_after_epoch is not None and epoch >= stop_after_epoch:
                status = "stopped"
                break
            t_epoch = time.perf_counter()
            data_rng.bit_generator.state = epoch_start_state          # fixes this epoch's batches
            batches = iterate_batches(tr_x, tr_y, B, shuffle=True, rng=data_rng, drop_last=True,
                                      augment=augment, dtype=cfg.np_dtype, start=batch)
            bar = None if bar_cls is None else bar_cls(
                total=steps_per_epoch * B, initial=batch * B, unit="img", unit_scale=True,
                desc=f"epoch {epoch + 1}/{hp.epochs}", file=sys.stderr, leave=False, dynamic_ncols=True)
            stop = None
            for x, y in batches:
                lr = warmup_cosine(step, total_steps, warmup_steps, hp.lr, hp.final_lr)
                loss_sum, correct, _ = train_step(params, opt, x, y, cfg, lr=lr,
                                                  label_smoothing=hp.label_smoothing, clip=hp.clip_grad_norm,
                                                  rng=drop_rng)
                step += 1
                batch += 1
                progress["loss_sum"] += loss_sum
                progress["correct"] += correct
                progress["count"] += len(y)
                if bar is not None:
                    bar.update(len(y))
                    bar.set_postfix(loss=f"{progress['loss_sum'] / progress['count']:.3f}",
                                    acc=f"{100 * progress['correct'] / progress['count']:.1f}%", refresh=False)
                if callback is not None and callback({"epoch": epoch + 1, "batch": batch, "step": step,
                                                      "loss": loss_sum / len(y), "acc": correct / len(y),
                                                      "lr": lr}) is True:
                    stop = "stopped"
                if guard.interrupted:
                    stop = "interrupted"
                elif budget is not None and time.perf_counter() - t_start > budget:
                    stop = stop or "budget"
                if stop and batch < steps_per_epoch:           # mid-epoch: save where we are, then leave
                    break
            train_seconds = time.perf_counter() - t_epoch
            if bar is not None:
                bar.close()
            if stop and batch < steps_per_epoch:
                progress["epoch_seconds"] += train_seconds
                progress["train_seconds"] += train_seconds
                if out_dir is not None:
                    checkpoint_now()
                if log:
                    log(f"{stop}: stopped in epoch {epoch + 1} after {batch}/{steps_per_epoch} batches"
                        + (f"; checkpoint saved to {ckpt_path}; continue with --resume" if out_dir else ""))
                status = stop
                break

            # ---- the epoch is complete: evaluate, record, save ----------------------------------------
            line = {"epoch": epoch + 1, "step": step,
                    "train_loss": progress["loss_sum"] / progress["count"],
                    "train_acc": progress["correct"] / progress["count"]}
            best_split = "test"
            if splits["val"] is not None:
                v = evaluate_arrays(params, cfg, *splits["val"], batch_size=hp.eval_batch_size,
                                    progress=not quiet, desc="val")
                line.update(val_loss=v["loss"], val_acc=v["accuracy"])
                best_split = "val"
            last_eval = evaluate_arrays(params, cfg, te_x, te_y, batch_size=hp.eval_batch_size,
                                        progress=not quiet, desc="test")
            line.update(test_loss=last_eval["loss"], test_acc=last_eval["accuracy"], lr=lr)
            epoch_seconds = progress["epoch_seconds"] + time.perf_counter() - t_epoch
            images_per_s = progress["count"] / (progress["train_seconds"] + train_seconds)
            line.update(seconds=round(epoch_seconds, 3), images_per_s=round(images_per_s, 1))
            history.append(line)
            epoch += 1
            batch = 0
            epoch_start_state = data_rng.bit_generator.state         # = the next epoch's start
            improved = progress["best_acc"] is None or line[f"{best_split}_acc"] > progress["best_acc"]
            if improved:
                progress["best_acc"], progress["best_epoch"] = line[f"{best_split}_acc"], epoch
            progress.update(loss_sum=0.0, correct=0, count=0, epoch_seconds=0.0, train_seconds=0.0)
            if out_dir is not None:
                write_text(os.path.join(out_dir, "metrics.jsonl"), _metrics_text(history))
                checkpoint_now()
                if improved:
                    save_checkpoint(os.path.join(out_dir, "best.npz"), params, cfg, hparams=hp, epoch=epoch,
                                    step=step, history=history, names=names,
                                    progress={"best_split": best_split, "best_acc": progress["best_acc"]},
                                    data_info=data_info, init_info=init_info)
                if plots:
                    _save_plots(out_dir, history)
            if log:
                log(_epoch_summary(line, hp.epochs, improved))
            if stop:
                status = stop
                break
            if stop_after_epoch is not None and epoch >= stop_after_epoch and epoch < hp.epochs:
                status = "stopped"
                break
            if budget is not None and epoch < hp.epochs and \
                    time.perf_counter() - t_start + epoch_seconds > budget:
                status = "budget"
                if log:
                    log(f"budget: the next epoch would not finish within max_minutes={hp.max_minutes}; "
                        f"stopping after epoch {epoch}" + ("; continue with --resume" if out_dir else ""))
                break

    if out_dir is not None and plots and last_eval is not None:   # the test split after history[-1]
        _save_plots(out_dir, history, last_eval, te_x, te_y, names)
    if log:
        wall = time.perf_counter() - t_start
        best = (f"; best {100 * progress['best_acc']:.2f}% at epoch {progress['best_epoch']}"
                if progress.get("best_acc") is not None else "")
        last = f"test accuracy {100 * history[-1]['test_acc']:.2f}%" if history else "no epoch completed"
        log(f"{status}: {last}{best}; {wall / 60:.2f} min in this call"
            + (f"; run directory {out_dir}" if out_dir else ""))
    return Run(history=history, params=params, cfg=cfg, hparams=hp, status=status, last_eval=last_eval,
               out_dir=out_dir)


def _saved_preset(out_dir):
    """The preset recorded in ``out_dir/config.json`` by the run being resumed (None if unreadable)."""
    try:
        with open(os.path.join(out_dir, "config.json"), encoding="utf-8") as f:
            preset = json.load(f).get("preset")
    except (OSError, ValueError, AttributeError):
        return None
    return preset if isinstance(preset, str) else None


def _version():
    from . import __version__
    return __version__


def _epoch_summary(line, epochs, improved):
    val = f"  val {100 * line['val_acc']:.2f}%" if "val_acc" in line else ""
    return (f"epoch {line['epoch']:>2}/{epochs}  train loss {line['train_loss']:.4f} acc "
            f"{100 * line['train_acc']:.2f}%{val}  test loss {line['test_loss']:.4f} acc "
            f"{100 * line['test_acc']:.2f}%{' *' if improved else '  '}  lr {line['lr']:.2e}  "
            f"{line['seconds']:.0f} s  {line['images_per_s']:.0f} img/s")


def _save_plots(out_dir, history, last_eval=None, images=None, labels=None, names=None):
    """curves.png always; confusion.png and predictions.png when the last test evaluation is given."""
    from . import plots
    plots.save_figure(plots.curves_figure(history), os.path.join(out_dir, "curves.png"))
    if last_eval is not None:
        plots.save_figure(plots.confusion_figure(last_eval["confusion"], names),
                          os.path.join(out_dir, "confusion.png"))
        pick = np.random.default_rng(0).choice(len(images), size=min(25, len(images)), replace=False)
        plots.save_figure(plots.predictions_figure(images[pick], labels[pick], last_eval["predictions"][pick],
                                                   names), os.path.join(out_dir, "predictions.png"))


# ---- command line ----------------------------------------------------------------------------------
# flag (argparse dest) -> type; every flag defaults to None = "not given"
_MODEL_FLAGS = {"image_size": int, "num_classes": int, "dropout": float,                      # both models
                "patch_size": int, "dim": int, "depth": int, "heads": int, "mlp_dim": int, "classifier": str,
                "pos_embedding": str, "gelu": str, "stem": "ints", "stem_kernel": int, "stem_pool": int,  # ViT
                "cnn_channels": "ints"}                                                       # CNN
_VIT_ONLY = ("patch_size", "dim", "depth", "heads", "mlp_dim", "classifier", "pos_embedding", "gelu", "stem",
             "stem_kernel", "stem_pool")
_CNN_ONLY = ("cnn_channels",)
_MODEL_FIELD = {"stem": "stem_channels", "cnn_channels": "channels"}
_HP_FLAGS = {"epochs": int, "batch_size": int, "lr": float, "final_lr": float, "warmup": float,
             "weight_decay": float, "label_smoothing": float, "clip": float, "augment": str,
             "crop_padding": int, "val_fraction": float, "train_subset": int, "seed": int}
_HP_FIELD = {"warmup": "warmup_epochs", "clip": "clip_grad_norm"}


def _flag(dest):
    return "--" + dest.replace("_", "-")


def parse_classes(text) -> tuple:
    """'0,1,2,3,4', '0-4' or '0-2,7' -> (0, 1, 2, 3, 4) … : class indices in the order written.

    Raises ValueError naming the problem (not an integer, a descending range, a repeated class).
    """
    classes = []
    for part in str(text).split(","):
        part = part.strip()
        lo, dash, hi = part.partition("-")
        try:
            first, last = (int(lo), int(hi)) if dash else (int(part), int(part))
        except ValueError:
            raise ValueError(f"--classes: {part!r} is not a class index or a range a-b (e.g. 0,1,2 or 0-4)") \
                from None
        if first < 0 or last < first:
            raise ValueError(f"--classes: bad range {part!r}; write ascending non-negative ranges such as 0-4")
        classes.extend(range(first, last + 1))
    if len(set(classes)) != len(classes):
        raise ValueError(f"--classes: {text!r} names a class twice")
    return tuple(classes)


def _parse_ints(flag, text) -> tuple:
    try:
        values = tuple(int(v) for v in str(text).split(","))
    except ValueError:
        raise ValueError(f"{flag}: expected comma-separated integers such as 16,32, got {text!r}") from None
    if not values or min(values) < 1:
        raise ValueError(f"{flag}: the channel counts must be positive, got {text!r}")
    return values


def add_train_arguments(p) -> None:
    """The flags of ``python -m vitnp train``."""
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="run directory (created if missing)")
    p.add_argument("--preset", choices=tuple(PRESETS), default="fmnist",
                   help="; ".join(f"{k}: {v}" for k, v in DESCRIPTIONS.items()).replace("%", "%%")
                   + " (default: fmnist)")
    p.add_argument("--resume", action="store_true",
                   help="continue RUN_DIR/checkpoint.npz bit-exactly (model and training flags come from it)")
    p.add_argument("--data", metavar="DIR", default=None,
                   help="Fashion-MNIST directory (default: $VITNP_DATA, then /usr/share/datasets/fashion-mnist)")
    p.add_argument("--no-verify", action="store_true",
                   help="accept IDX files that are not the official Fashion-MNIST (skip the checksums)")
    p.add_argument("--init-from", metavar="CHECKPOINT",
                   help="start from this checkpoint's weights (fine-tuning; fresh optimiser at step 0): the "
                        "model flags default to its config, E_pos is interpolated for a new --image-size, and "
                        "a new zero head is made when the classes differ; the preset gives only the training "
                        "flags")
    g = p.add_argument_group("training (override the preset)")
    g.add_argument("--epochs", type=int)
    g.add_argument("--batch-size", type=int)
    g.add_argument("--lr", type=float, help="peak learning rate of AdamW")
    g.add_argument("--final-lr", type=float, help="learning rate at the end of the cosine decay")
    g.add_argument("--warmup", type=float, metavar="EPOCHS", help="linear warm-up length in epochs")
    g.add_argument("--weight-decay", type=float)
    g.add_argument("--label-smoothing", type=float)
    g.add_argument("--clip", type=float, metavar="MAX_NORM", help="global gradient-norm clipping (0: off)")
    g.add_argument("--augment", choices=("none", "crop", "flip", "crop+flip"))
    g.add_argument("--no-augment", dest="augment", action="store_const", const="none",
                   help="same as --augment none")
    g.add_argument("--crop-padding", type=int, metavar="PIXELS")
    g.add_argument("--val-fraction", type=float, help="hold out this part of the training set for validation")
    g.add_argument("--classes", metavar="LIST",
                   help="train and test on these classes only, relabelled 0..k-1 in the order given: 0,1,2,3,4 "
                        "or 0-4 or 0-2,7 (sets --num-classes to k unless given)")
    g.add_argument("--train-subset", type=int, metavar="N",
                   help="train on a seeded random N images (after --classes; 0: all)")
    g.add_argument("--seed", type=int)
    g = p.add_argument_group("model (override the preset, or the --init-from checkpoint's config)")
    g.add_argument("--model", choices=tuple(MODELS),
                   help="vit (default) or cnn, the CNN baseline of vitnp.cnn trained with the same data, "
                        "optimiser, schedule, augmentation and budget")
    g.add_argument("--image-size", type=int, metavar="N",
                   help="train on N x N images: Fashion-MNIST is resized (bilinear) when N != 28")
    g.add_argument("--num-classes", type=int, metavar="K", help="number of classes of the head")
    g.add_argument("--patch-size", type=int, metavar="P")
    g.add_argument("--dim", type=int, metavar="D")
    g.add_argument("--depth", type=int, metavar="L")
    g.add_argument("--heads", type=int, metavar="K")
    g.add_argument("--mlp-dim", type=int, metavar="M")
    g.add_argument("--classifier", choices=("token", "gap"))
    g.add_argument("--pos-embedding", choices=("learned", "sincos", "none"))
    g.add_argument("--gelu", choices=("exact", "tanh"))
    g.add_argument("--dropout", type=float)
    g.add_argument("--stem", metavar="C1,C2,...",
                   help="hybrid ViT: a CNN stem (conv, ReLU, max-pool per stage) with these channels makes the "
                        "feature map the patches are cut from")
    g.add_argument("--stem-kernel", type=int, metavar="K", help="kernel size of the stem's convolutions")
    g.add_argument("--stem-pool", type=int, metavar="S", help="max-pool window and stride of each stem stage")
    g.add_argument("--cnn-channels", metavar="C1,C2,...",
                   help="--model cnn: output channels of each conv stage (default 32,64)")
    g.add_argument("--config", action="append", default=[], metavar="KEY=VALUE",
                   help="set any field of the model's config (ViTConfig or CNNConfig) or of HParams, e.g. "
                        "--config beta2=0.99 (repeatable)")
    g = p.add_argument_group("run control")
    g.add_argument("--max-minutes", type=float, metavar="M",
                   help="wall-clock budget of this call (0: none); stops at an epoch boundary when the next "
                        "epoch would not fit, or mid-epoch with a checkpoint")
    g.add_argument("--stop-after-epoch", type=int, metavar="N",
                   help="stop once N epochs are complete, as if interrupted (--resume continues)")
    g.add_argument("--threads", type=int, metavar="N", default=0,
                   help="cores to use: BLAS (OpenBLAS) threads, which is also the number of batch-shard threads "
                        "(vitnp.fast.parallel); default 0 = NumPy's default, one per core")
    g.add_argument("--quiet", action="store_true", help="no progress bars (one line per epoch still)")


def _parse_value(text):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def train_cli(args) -> int:
    """``python -m vitnp train``; exit status 0 when completed or stopped cleanly, 130 after Ctrl-C."""
    if args.threads:
        set_blas_threads(args.threads)
    given = [flag for flag in _MODEL_FLAGS if getattr(args, flag) is not None]
    model = {}
    for flag in given:
        value = getattr(args, flag)
        model[_MODEL_FIELD.get(flag, flag)] = _parse_ints(_flag(flag), value) if _MODEL_FLAGS[flag] == "ints" \
            else value
    hp_changes = {_HP_FIELD.get(flag, flag): getattr(args, flag) for flag in _HP_FLAGS
                  if getattr(args, flag) is not None}
    if args.classes is not None:
        hp_changes["classes"] = parse_classes(args.classes)
    if args.max_minutes is not None:
        hp_changes["max_minutes"] = args.max_minutes if args.max_minutes > 0 else None
    if args.stop_after_epoch is not None and args.stop_after_epoch < 1:
        raise ValueError(f"--stop-after-epoch must be >= 1, got {args.stop_after_epoch}")
    log = (lambda s: print(s, flush=True))
    hp_fields = {f.name for f in dataclasses.fields(HParams)}

    if args.resume:
        cfg_fields = {f.name for spec in MODELS.values() for f in dataclasses.fields(spec.config)}
        config_model, config_hp = _config_items(args.config, cfg_fields, hp_fields)
        fixed = {k for k in {**model, **config_model, **hp_changes, **config_hp} if k not in RESUMABLE_CHANGES}
        fixed |= {name for name, value in (("model", args.model), ("init_from", args.init_from)) if value}
        if fixed:
            raise ValueError("--resume continues the saved run with its own settings; drop "
                             + ", ".join(sorted(fixed)) + " (only --max-minutes and --config eval_batch_size=N "
                             "may change)")
        hp_changes.update(config_hp)
        hp = None
        if hp_changes:                             # max_minutes and/or eval_batch_size
            saved = load_checkpoint(os.path.join(args.out, "checkpoint.npz"))[2]["hparams"] or {}
            try:
                hp = HParams.from_dict(saved).replace(**hp_changes)
            except TypeError as err:               # a wrongly typed --config value
                raise ValueError(str(err)) from None
        run = train(None, hp, out_dir=args.out, data=args.data, resume=True, quiet=args.quiet, log=log,
                    stop_after_epoch=args.stop_after_epoch, verify_data=not args.no_verify)
        return 130 if run.status == "interrupted" else 0

    preset_cfg, hp = get_preset(args.preset)
    init = None
    if args.init_from is not None:                 # the model is the checkpoint's, unless flags change it
        init = _load_init(args.init_from)          # read (and hashed) once; train() gets the result
        base = init["cfg"]
        kind = model_spec(base).kind
        if args.model is not None and args.model != kind:
            raise ValueError(f"--model {args.model}, but --init-from {args.init_from} holds a {kind.upper()}; "
                             f"fine-tuning keeps the model kind")
    else:
        kind = args.model or "vit"
        base = preset_cfg if kind == "vit" else CNNConfig(
            image_size=preset_cfg.image_size, in_channels=preset_cfg.in_channels,
            num_classes=preset_cfg.num_classes, dtype=preset_cfg.dtype)
    other = _CNN_ONLY if kind == "vit" else _VIT_ONLY
    wrong = [_flag(f) for f in given if f in other]
    if wrong:
        raise ValueError(f"{', '.join(wrong)} do(es) not apply to the {kind.upper()} "
                         f"({'--model cnn' if kind == 'vit' else 'ViT'} only)")
    cfg_fields = {f.name for f in dataclasses.fields(model_spec(kind).config)}
    missing = [f"{_flag(flag)} needs {type(base).__name__}.{field}, which this version of vitnp does not have"
               for flag, field in _MODEL_FIELD.items() if flag in given and field not in cfg_fields]
    if missing:
        raise ValueError("; ".join(missing))
    config_model, config_hp = _config_items(args.config, cfg_fields, hp_fields)
    model.update(config_model)
    hp_changes.update(config_hp)
    if hp_changes.get("classes") and "num_classes" not in model:
        model["num_classes"] = len(hp_changes["classes"])          # --classes 0-4 -> a 5-class head
    try:
        cfg, hp = base.replace(**model), hp.replace(**hp_changes)
    except TypeError as err:                       # a wrongly typed --config value
        raise ValueError(str(err)) from None
    run = train(cfg, hp, out_dir=args.out, data=args.data, quiet=args.quiet, log=log,
                stop_after_epoch=args.stop_after_epoch, verify_data=not args.no_verify, preset=args.preset,
                init_from=init)
    return 130 if run.status == "interrupted" else 0


def _config_items(items, cfg_fields, hp_fields):
    """--config KEY=VALUE items -> ({config field: value}, {HParams field: value}); VALUE is JSON if it parses."""
    model, hp = {}, {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--config expects KEY=VALUE, got {item!r}")
        if key in hp_fields:
            hp[key] = _parse_value(value)
        elif key in cfg_fields:
            model[key] = _parse_value(value)
        else:
            raise ValueError(f"--config: unknown field {key!r}; the model config has "
                             f"{', '.join(sorted(cfg_fields))}; HParams has {', '.join(sorted(hp_fields))}")
    return model, hp
