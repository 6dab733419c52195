"""The run directory of a training run: its files, the checkpoint format, and the Ctrl-C guard.

:func:`save_checkpoint` and :func:`load_checkpoint` write and read the self-describing ``.npz`` checkpoints
(the table below); ``evaluate``, ``predict``, ``info`` and ``visualize`` need nothing else.  :class:`RunDir`
writes a run's files as it goes (the loop of :mod:`vitnp.training.fit` calls it after every epoch and when it stops
in the middle of one), and :class:`SigintGuard` turns Ctrl-C into "finish this step, save, stop".

Run directory (``out_dir``)
---------------------------
=================  ====================================================================================
``config.json``    the model kind and config, the HParams, the data (source, sizes, classes, MD5), the step
                   counts, the class names, ``init_from`` (the checkpoint the weights came from, or null),
                   and ``implementation``: which forward/backward trained (the fast path, or the reference
                   model with ``--reference``; a resumed run records its own call's)
``metrics.jsonl``  one JSON line per epoch: epoch, step, train_loss, train_acc, [val_loss, val_acc,]
                   [test_loss, test_acc (only with ``test_curve``: a curve, never used),] lr, seconds,
                   images_per_s
``checkpoint.npz`` the latest state: parameters, AdamW state, RNG states, counters (resumable)
``best.npz``       the parameters of the best epoch by validation accuracy (the last epoch if the run has
                   no validation split; never chosen on the test set), with the config: enough for
                   evaluate/predict/info; its ``progress_json`` names the split that chose it
``results.json``   written once, when the run completes: the test split evaluated for the final and for the
                   best checkpoint (epoch, val_acc, test_acc, test_loss of each), the test data's MD5
``curves.png``     loss and accuracy per epoch;  ``confusion.png``: the best checkpoint's test confusion
``predictions.png`` matrix, and 25 test images with its predicted and true labels (both at the end)
=================  ====================================================================================

"test" is the official 10 000-image Fashion-MNIST test split, read once after training (and after every
epoch only with ``HParams.test_curve``, for teaching); "val" is a held-out part of the training set
(``val_size``, or ``val_fraction``), evaluated after every epoch with dropout off. Losses are plain
cross-entropy without label smoothing; train loss and accuracy are running means over the epoch's
(augmented) batches. ``seconds`` (wall time of the epoch, training and evaluation) and ``images_per_s``
(training throughput) are the only fields that differ between two runs with the same seed.

Checkpoint files (``.npz``, written with :func:`vitnp.io.npz.save_npz`: no pickle; temporary file, fsync,
rename)
-----------------------------------------------------------------------------------------------------
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

Every file is written whole or not at all (:mod:`vitnp.io.atomic`): a crash, a full disk or a second Ctrl-C
leaves the previous version of each file intact.
"""
from __future__ import annotations

import json
import os
import signal
import sys
import threading

import numpy as np

from ..io.atomic import write_text
from ..data import MEAN, STD, class_names
from .specs import MODELS, describe_model, model_spec
from ..io.npz import load_npz, save_npz

__all__ = ["FORMAT", "TIMING_KEYS", "RUN_FILES", "save_checkpoint", "load_checkpoint", "checkpoint_classes",
           "RunDir", "RunLock", "RunLockedError", "SigintGuard", "saved_preset"]

FORMAT = "vitnp-checkpoint/1"
TIMING_KEYS = ("seconds", "images_per_s")        # the only metrics fields that vary between equal runs
RUN_FILES = ("config.json", "metrics.jsonl", "checkpoint.npz", "best.npz", "results.json", "curves.png",
             "confusion.png", "predictions.png")   # what a run writes; a new run refuses a directory holding any


# ---- checkpoint files ------------------------------------------------------------------------------
def _json_array(obj):
    return np.array(json.dumps(obj))                 # 0-d unicode array: no pickle needed


def save_checkpoint(path, params, cfg, *, hparams=None, optimizer=None,
                    rng_state=None, epoch=0, step=0, batch=0, progress=None, history=(),
                    names=None, norm=(MEAN, STD), data_info=None, init_info=None) -> None:
    """Write a self-describing checkpoint (module docstring table) atomically with ``save_npz``.

    Only ``params`` and ``cfg`` (a ViTConfig or CNNConfig) are needed for evaluate/predict/info;
    ``hparams`` is the run's :class:`vitnp.training.presets.HParams`; ``optimizer`` (AdamW), ``rng_state`` and
    ``progress`` make it resumable.  ``names``: the K class names (default :func:`vitnp.data.class_names` of
    all classes); ``data_info``: {'classes': [...], 'source_size': [H, W]}; ``init_info``: where the initial
    weights came from (``init_from``).
    """
    spec = model_spec(cfg)
    names = list(names) if names is not None else class_names((), cfg.num_classes)
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
    bad = [k for k, v in params.items() if not np.isfinite(v).all()]
    if bad:
        raise ValueError(f"{path}: parameters hold NaN or Inf ({_few(bad)}): the run that wrote them diverged, "
                         f"or the file is corrupt")
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
    names = parsed("class_names_json", required=False) or class_names((), cfg.num_classes)
    if not (isinstance(names, list) and len(names) == cfg.num_classes):
        raise ValueError(f"{path}: class_names_json should list {cfg.num_classes} names")
    history = parsed("history_json", required=False) or []
    data_info = parsed("data_json", required=False) or {}
    init_info = parsed("init_json", required=False)
    progress = parsed("progress_json", required=False) or {}
    rng = parsed("rng_json", required=False)
    for key, value, ok in (("hparams_json", hp, hp is None or isinstance(hp, dict)),
                           ("history_json", history, isinstance(history, list)
                            and all(isinstance(h, dict) for h in history)),
                           ("progress_json", progress, isinstance(progress, dict)),
                           ("rng_json", rng, rng is None or isinstance(rng, dict)),
                           ("data_json", data_info, isinstance(data_info, dict)),
                           ("init_json", init_info, init_info is None or isinstance(init_info, dict))):
        if not ok:
            raise ValueError(f"{path}: entry {key!r} has the wrong shape (expected "
                             f"{'a list of JSON objects' if key == 'history_json' else 'a JSON object'}, got "
                             f"{type(value).__name__})")
    meta = {"format": fmt, "model": kind, "hparams": hp, **counters, "history": history,
            "progress": progress, "rng": rng, "optim": optim, "norm_mean": norm[0], "norm_std": norm[1],
            "class_names": [_printable(n) for n in names], "data": data_info, "init_from": init_info}
    return params, cfg, meta


def _printable(name) -> str:
    """A class name safe to print: control characters (terminal escapes) shown escaped, at most 100 chars."""
    name = str(name)
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in name)[:100]


def checkpoint_classes(meta) -> list:
    """The original class indices a checkpoint was trained on ([] = all); ``meta`` from :func:`load_checkpoint`."""
    return list(meta["data"].get("classes") or (meta["hparams"] or {}).get("classes") or [])


# ---- the run directory -----------------------------------------------------------------------------
class RunDir:
    """The files of one run directory (module docstring), written as the run goes.

    Parameters
    ----------
    path : str                      the directory (created by :meth:`begin`)
    cfg, hp                         the run's ViTConfig or CNNConfig, and its HParams
    names : list of str             the K class names
    data_info : dict                ``classes`` and ``source_size`` (checkpoint entry ``data_json``)
    init_info : dict or None        where the initial weights came from (``init_from``; entry ``init_json``)
    plots : bool                    write the PNGs: ``curves.png`` after every epoch, the others at the end
    """

    def __init__(self, path, cfg, hp, *, names, data_info, init_info=None, plots=True):
        self.path, self.cfg, self.hp = os.fspath(path), cfg, hp
        self.names, self.data_info, self.init_info, self.plots = list(names), data_info, init_info, plots
        self.checkpoint = os.path.join(self.path, "checkpoint.npz")
        self.best = os.path.join(self.path, "best.npz")

    def begin(self, config: dict, history) -> None:
        """Create the directory, remove the temporary files an earlier crash left (``.<name>.<hex>.tmp``; the
        caller holds the :class:`RunLock`, so no other writer owns them), write ``config.json`` and the
        metrics lines so far (as the checkpoint says)."""
        os.makedirs(self.path, exist_ok=True)
        for name in os.listdir(self.path):
            if name.startswith(".") and name.endswith(".tmp") and os.path.isfile(os.path.join(self.path, name)):
                os.remove(os.path.join(self.path, name))
        write_text(os.path.join(self.path, "config.json"), json.dumps(config, indent=2) + "\n")
        self._write_metrics(history)

    def save_state(self, state) -> None:
        """``checkpoint.npz``: everything a resumed run needs (a :class:`vitnp.training.fit.TrainState`)."""
        save_checkpoint(self.checkpoint, state.params, self.cfg, hparams=self.hp, optimizer=state.opt,
                        rng_state=state.rng_state(), epoch=state.epoch, step=state.step, batch=state.batch,
                        progress=state.progress, history=state.history, names=self.names,
                        data_info=self.data_info, init_info=self.init_info)

    def save_evaluation(self, state, improved: bool, best_split: str) -> None:
        """After an epoch's evaluation: ``best.npz`` if the epoch is the best so far (``best_split``: 'val',
        or 'last' without a validation split), then ``metrics.jsonl`` and ``checkpoint.npz`` (which records
        the best epoch, so it comes after the file it names), and ``curves.png``."""
        if improved:
            save_checkpoint(self.best, state.params, self.cfg, hparams=self.hp, epoch=state.epoch, step=state.step,
                            history=state.history, names=self.names,
                            progress={"best_split": best_split, "best_acc": state.progress["best_acc"]},
                            data_info=self.data_info, init_info=self.init_info)
        self._write_metrics(state.history)
        self.save_state(state)
        if self.plots:
            self.save_plots(state.history)

    def save_results(self, results: dict) -> None:
        """``results.json``: the test evaluation at the end of the run (:func:`vitnp.training.trainer.train`)."""
        write_text(os.path.join(self.path, "results.json"), json.dumps(results, indent=2, allow_nan=False) + "\n")

    def save_plots(self, history, last_eval=None, images=None, labels=None) -> None:
        """``curves.png``; with the last test evaluation (and the test images and labels) also
        ``confusion.png`` and ``predictions.png`` (25 seeded random test images)."""
        from ..analysis import plots
        plots.save_figure(plots.curves_figure(history), os.path.join(self.path, "curves.png"))
        if last_eval is not None:
            plots.save_figure(plots.confusion_figure(last_eval["confusion"], self.names),
                              os.path.join(self.path, "confusion.png"))
            pick = np.random.default_rng(0).choice(len(images), size=min(25, len(images)), replace=False)
            plots.save_figure(plots.predictions_figure(images[pick], labels[pick], last_eval["predictions"][pick],
                                                       self.names), os.path.join(self.path, "predictions.png"))

    def _write_metrics(self, history) -> None:
        write_text(os.path.join(self.path, "metrics.jsonl"),
                   "".join(json.dumps(line, allow_nan=False) + "\n" for line in history))   # strict JSON: no NaN


def saved_preset(path):
    """The preset recorded in ``path/config.json`` by the run being resumed (None if unreadable)."""
    try:
        with open(os.path.join(path, "config.json"), encoding="utf-8") as f:
            preset = json.load(f).get("preset")
    except (OSError, ValueError, AttributeError):
        return None
    return preset if isinstance(preset, str) else None


# ---- one writer per run directory ------------------------------------------------------------------
class RunLockedError(OSError):
    """Another process is training into the same run directory."""


class RunLock:
    """An exclusive lock on ``RUN/.lock`` (``fcntl.flock``): one training process per run directory.

    The OS releases it when the process ends, however it ends (``kill -9`` included), so a crash never
    leaves a stale lock; the file holds the owner's PID, for the message.  Where ``fcntl`` does not exist
    (Windows) there is no lock.  Use as a context manager, or :meth:`acquire` / :meth:`release`.
    """

    def __init__(self, path):
        self.path = os.path.join(os.fspath(path), ".lock")
        self._fd = None

    def acquire(self) -> "RunLock":
        try:
            import fcntl
        except ImportError:                          # no flock on this platform
            return self
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            owner = os.read(fd, 32).decode("ascii", "replace").strip() or "?"
            os.close(fd)
            raise RunLockedError(f"{os.path.dirname(self.path)} is in use by another training process (PID "
                                 f"{owner}); wait for it to finish, or choose another --out") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)                       # closing the descriptor releases the flock
            self._fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
        return False


# ---- Ctrl-C and SIGTERM ----------------------------------------------------------------------------
class SigintGuard:
    """Ctrl-C (SIGINT) or SIGTERM sets ``interrupted`` (the loop then saves and stops); a second signal raises
    KeyboardInterrupt at once.  Installed only in the main thread (Python allows signal handlers nowhere
    else)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.interrupted = False
        self._old = {}

    def _handler(self, signum, frame):
        if self.interrupted:
            raise KeyboardInterrupt
        self.interrupted = True
        name = "interrupt" if signum == signal.SIGINT else signal.Signals(signum).name
        print(f"\n{name}: finishing this step, then saving a checkpoint (again to quit at once)",
              file=sys.stderr, flush=True)

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._old = {sig: signal.signal(sig, self._handler) for sig in self.SIGNALS}
        return self

    def __exit__(self, *exc):
        if threading.current_thread() is threading.main_thread():
            for sig, old in self._old.items():
                signal.signal(sig, old if old is not None else signal.SIG_DFL)
        return False
