"""Training a ViT (or the CNN baseline) on Fashion-MNIST: one call that sets up a run and trains it.

:func:`train` decides where a run starts and where it goes, then hands it to the loop
(:func:`vitnp.training.fit.fit`):

* a fresh run: the preset's (or given) config and HParams, parameters from ``init`` of the model;
* ``init_from=CHECKPOINT``: a trained model's weights, adapted to ``cfg`` (E_pos interpolated for a new
  resolution, a new zero head for new classes, :func:`vitnp.training.finetune.adapt_init`), with a fresh optimiser
  at step 0 (paper §3.2, fine-tuning);
* ``resume=True``: the state of ``out_dir/checkpoint.npz``, continued **bit-exactly** (below).

The data come from :func:`vitnp.data.prepare_data` (class subsets, a training subset, a validation split,
images resized to ``cfg.image_size``), and the files from :class:`vitnp.training.rundir.RunDir` (``config.json``,
``metrics.jsonl``, ``checkpoint.npz``, ``best.npz``, PNG plots; the table is in :mod:`vitnp.training.rundir`).

Python API
----------
>>> from vitnp.training.presets import get_preset
>>> from vitnp.training import train, load_checkpoint
>>> cfg, hp = get_preset("fast")
>>> run = train(cfg, hp)                                   # doctest: +SKIP  (installed Fashion-MNIST)
>>> run.history[-1]["val_acc"], run.test["best"]["test_acc"]   # doctest: +SKIP
>>> run = train(cfg, hp, out_dir="runs/fast", data=(x_tr, y_tr, x_te, y_te))     # doctest: +SKIP
>>> params, cfg, meta = load_checkpoint("runs/fast/best.npz")                    # doctest: +SKIP

``train(cfg, hparams, out_dir=None, data=None, resume=False, quiet=True, ...)`` returns a
:class:`vitnp.training.fit.Run` (``history``, ``params``, ``cfg``, ``hparams``, ``status``, ``last_eval``). ``data`` is
None (the installed Fashion-MNIST), a directory of IDX files, or a tuple ``(train_images, train_labels,
test_images, test_labels)`` of uint8 (N, H, W, C) images and integer labels.

Models. ``cfg`` is a :class:`~vitnp.config.ViTConfig` (the ViT, or the hybrid with a CNN stem) or a
:class:`~vitnp.cnn.CNNConfig` (the CNN baseline); :func:`vitnp.training.specs.model_spec` gives the model's init,
forward and backward, so both models get the same data, optimiser, schedule, augmentation and time budget:
the fair comparison of paper §4 (inductive bias).  ``reference=True`` trains the ViT with the clear
reference model (:mod:`vitnp.model`) instead of the fast path (:mod:`vitnp.fast`): the same numbers up to
float32 rounding, recorded in ``config.json`` (``implementation``).

Honest numbers.  "val" is a held-out part of the training set (``HParams.val_size``: stratified by class,
the same images for every seed), evaluated after every epoch with dropout off; ``best.npz`` is the epoch of
highest validation accuracy, and nothing else is chosen during a run.  "test" is the official 10 000-image
Fashion-MNIST test split: it is read once, when the run completes, and both the best and the final
checkpoint are evaluated on it (``run.test``, ``results.json``).  ``HParams.test_curve`` adds a test point
after every epoch, for teaching, labelled as a curve that chooses nothing.  ``seconds`` and
``images_per_s`` are the only metrics fields that differ between two runs with the same seed.

Resume
------
``train(..., resume=True)`` (``python -m vitnp train --out RUN --resume``) continues from
``RUN/checkpoint.npz`` **bit-exactly**: a run stopped after epoch k, or in the middle of an epoch, and
resumed ends with the same parameters and the same metrics lines (except the timing fields) as an
uninterrupted run (:mod:`vitnp.training.fit` says how).  Ctrl-C (SIGINT) finishes the current step, saves such a
checkpoint and stops; a second Ctrl-C quits at once (the previous checkpoint file stays intact because
every write is atomic).  A wall-clock budget ``max_minutes`` (per call) stops at an epoch boundary when the
next epoch would not fit, or mid-epoch with a checkpoint when the budget runs out inside an epoch.

This module also gives the names a training notebook or script needs next to :func:`train`:
:func:`train_step` (:mod:`vitnp.training.fit`), :func:`load_checkpoint`, :func:`save_checkpoint` and the checkpoint
``FORMAT`` (:mod:`vitnp.training.rundir`), :func:`model_spec` and :func:`describe_model` (:mod:`vitnp.training.specs`).
"""
from __future__ import annotations

import os
import time

import numpy as np

from . import finetune
from ..data import MEAN, STD, class_names, md5, prepare_data, prepare_test
from .evaluation import evaluate_arrays
from .fit import Run, TrainState, fit, schedule, train_step
from .specs import describe_model, model_spec
from .presets import HParams, get_preset
from ..fast import parallel
from .rundir import FORMAT, RUN_FILES, RunDir, RunLock, load_checkpoint, save_checkpoint, saved_preset

__all__ = ["train", "RESUMABLE_CHANGES", "Run", "train_step", "load_checkpoint", "save_checkpoint", "FORMAT",
           "model_spec", "describe_model"]

RESUMABLE_CHANGES = ("max_minutes", "eval_batch_size")   # HParams a resumed run may change


def train(cfg=None, hparams: HParams | None = None, *, out_dir=None, data=None, resume=False, quiet=True, log=None,
          callback=None, stop_after_epoch=None, verify_data=True, preset=None, plots=True, init_from=None,
          reference=False, overwrite=False, threads=None) -> Run:
    """Train a ViT (or the CNN) with AdamW, warm-up + cosine and label smoothing; validate after every epoch,
    test once at the end.

    Parameters
    ----------
    cfg : ViTConfig or CNNConfig    default: the 'fmnist' preset's; on resume the saved run's, and with
                                    ``init_from`` the checkpoint's.  Images are resized to
                                    ``cfg.image_size`` if the data differ (by at most 2× when shrinking).
    hparams : HParams               default: the 'fmnist' preset's.  ``hparams.classes`` needs
                                    ``cfg.num_classes == len(hparams.classes)``.
    out_dir : path or None          run directory (:mod:`vitnp.training.rundir`); None trains in memory only.
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
                                    :func:`vitnp.training.finetune.adapt_params` (E_pos resized for a new patch grid;
                                    a new zero head when the class names differ from this run's); the
                                    optimiser starts fresh at step 0.  Recorded in config.json and in the
                                    checkpoints, so a resumed fine-tuning run keeps the record.  (The
                                    command line passes the checkpoint it already read, the dict of
                                    :func:`vitnp.training.finetune.load_init`, so the file is read and hashed once.)
    reference : bool                the reference model (:mod:`vitnp.model`) instead of the fast path; a
                                    resumed run may switch either way (then it is not bit-exact).
    overwrite : bool                a new run into a directory that holds run files (``RUN_FILES``)
                                    replaces them; without it such a directory is refused.
    threads : int or None           the shard threads the caller insists on (``--threads``); a resumed run
                                    whose saved layout differs is then refused.  Without it a resumed run
                                    takes its saved layout (:func:`vitnp.fast.parallel.layout`).

    Only one process at a time trains into ``out_dir`` (:class:`vitnp.training.rundir.RunLock`); a second one gets
    :class:`vitnp.training.rundir.RunLockedError` at once.

    Returns
    -------
    Run
    """
    lock = None if out_dir is None else RunLock(out_dir).acquire()
    try:
        return _train(cfg, hparams, out_dir=out_dir, data=data, resume=resume, quiet=quiet, log=log,
                      callback=callback, stop_after_epoch=stop_after_epoch, verify_data=verify_data, preset=preset,
                      plots=plots, init_from=init_from, reference=reference, overwrite=overwrite, threads=threads)
    finally:
        if lock is not None:
            lock.release()


def _train(cfg, hparams, *, out_dir, data, resume, quiet, log, callback, stop_after_epoch, verify_data, preset,
           plots, init_from, reference, overwrite, threads) -> Run:
    """:func:`train`, with the run directory locked."""
    t_start = time.perf_counter()
    ckpt_path = None if out_dir is None else os.path.join(os.fspath(out_dir), "checkpoint.npz")
    ck = None
    if resume:
        if out_dir is None:
            raise ValueError("resume needs out_dir (the run directory holding checkpoint.npz)")
        if not os.path.isfile(ckpt_path):
            raise FileNotFoundError(f"cannot resume: no checkpoint at {ckpt_path} (a run stopped before its first "
                                    f"save has nothing to resume: start it again with --overwrite)")
        if init_from is not None:
            raise ValueError("init_from starts a new run; a resumed run continues from its own checkpoint "
                             "(which records where its initial weights came from)")
        saved_params, saved_cfg, ck = load_checkpoint(ckpt_path)
        preset = saved_preset(out_dir) if preset is None else preset
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
            source = init_from if isinstance(init_from, dict) else finetune.load_init(init_from)
        default_cfg, default_hp = get_preset("fmnist")
        if cfg is None:                            # the checkpoint's model, as on the command line
            cfg = default_cfg if init_from is None else source["cfg"]
        hp = default_hp if hparams is None else hparams
        existing = [] if out_dir is None else [f for f in RUN_FILES if os.path.exists(os.path.join(out_dir, f))]
        if existing and not overwrite:
            if "checkpoint.npz" not in existing and "best.npz" not in existing:
                raise FileExistsError(f"{out_dir} holds a run that stopped before its first checkpoint "
                                      f"({', '.join(existing)}): there is nothing to resume; pass --overwrite to "
                                      f"start it again, or choose another output directory")
            raise FileExistsError(f"{out_dir} already holds a run ({', '.join(existing)}); pass --resume to "
                                  f"continue it, --overwrite to replace it, or choose another output directory")
    if not isinstance(hp, HParams):
        raise TypeError(f"hparams must be an HParams, got {type(hp).__name__}")
    spec = model_spec(cfg, reference=reference)     # TypeError for anything but ViTConfig / CNNConfig
    if hp.classes and cfg.num_classes != len(hp.classes):
        raise ValueError(f"classes {list(hp.classes)} are {len(hp.classes)} classes, but the model has "
                         f"num_classes={cfg.num_classes}; they must agree (--num-classes {len(hp.classes)})")
    names = class_names(hp.classes, cfg.num_classes)
    adapted = None
    if init_from is not None:
        adapted = finetune.adapt_init(source, cfg, names, hp.seed)                 # (params, record)

    splits = prepare_data(data, cfg, hp, verify=verify_data, test=hp.test_curve)   # the test set: at the end
    tr_x, tr_y = splits["train"]
    fingerprint = {"train_md5": md5(tr_x, tr_y)}
    if ck is not None and ck["progress"].get("train_md5") != fingerprint["train_md5"]:
        raise ValueError("resume: the data differ from the saved run's (MD5 of the training images); pass "
                         "the same data (--data) as the original run")
    steps_per_epoch, total_steps, warmup_steps = schedule(len(tr_x), hp)
    if ck is None:
        params, init_info = (spec.init(cfg, hp.seed), None) if adapted is None else adapted   # init_from
        state = TrainState.start(params, hp, **fingerprint, layout=parallel.layout())
    else:
        init_info = ck["init_from"]
        state = TrainState.restore(saved_params, hp, ck)
        _restore_layout(state.progress.get("layout"), threads, log)
        whole = [h for h in state.history if float(h["epoch"]).is_integer()]   # a budget may end mid-epoch
        if state.opt.step_count != state.step or len(whole) != state.epoch or \
                len(state.history) > len(whole) + 1 or state.batch >= steps_per_epoch:
            raise ValueError(f"{ckpt_path}: inconsistent counters (epoch {state.epoch}, batch {state.batch}, "
                             f"step {state.step}, optimiser step {state.opt.step_count}, {len(state.history)} "
                             f"metrics lines)")

    run_dir = None
    if out_dir is not None:
        for name in existing if ck is None else ():          # overwrite=True: the old run's files go
            os.remove(os.path.join(out_dir, name))
        run_dir = RunDir(out_dir, cfg, hp, names=names, init_info=init_info, plots=plots,
                         data_info={"classes": list(hp.classes), "source_size": list(splits["source_size"])})
        run_dir.begin({
            "model": spec.kind, "config": cfg.to_dict(), "hparams": hp.to_dict(), "preset": preset,
            "parameters": spec.count(cfg), "implementation": _implementation(spec, reference),
            "init_from": None if init_info is None else init_info["path"], "init": init_info,
            "data": {"source": splits["source"], "n_train": len(tr_x),
                     "n_val": 0 if splits["val"] is None else len(splits["val"][0]),
                     "validation": _validation(hp), "test": "read once, after training (results.json)"
                     + ("; and after every epoch as a curve (test_curve), never used for a choice"
                        if hp.test_curve else ""),
                     "classes": list(hp.classes), "source_size": list(splits["source_size"]),
                     "image_size": list(cfg.image_size), **fingerprint},
            "steps_per_epoch": steps_per_epoch, "total_steps": total_steps, "warmup_steps": warmup_steps,
            "normalisation": {"mean": MEAN, "std": STD}, "class_names": names,
            "versions": {"vitnp": _version(), "numpy": np.__version__}}, state.history)
    if log:
        resized = tuple(splits["source_size"]) != tuple(cfg.image_size)
        log(f"model: {describe_model(cfg)} ({spec.count(cfg):,} parameters"
            + (", reference implementation" if reference and spec.kind == "vit" else "")
            + f"); data: {len(tr_x)} train" + (f" / {len(splits['val'][0])} val" if splits["val"] is not None else "")
            + (" / the test split after every epoch (a curve, test_curve) and once after training" if hp.test_curve
               else " / the test split read once, after training")
            + (f" of classes {','.join(map(str, hp.classes))}" if hp.classes else "")
            + (" resized {}x{} -> {}x{}".format(*splits["source_size"], *cfg.image_size) if resized else "")
            + f"; {steps_per_epoch} steps/epoch x {hp.epochs} epochs"
            + (f"; initial weights from {init_info['path']} ({init_info['adapted']})" if init_info and ck is None
               else "")
            + (f"; resuming at epoch {state.epoch + 1}, batch {state.batch}" if ck is not None else ""))

    deadline = None if hp.max_minutes is None else t_start + 60.0 * hp.max_minutes
    n_test = len(data[2]) if isinstance(data, (tuple, list)) else 10_000     # Fashion-MNIST's test split
    run = fit(state, cfg, hp, splits, reference=reference, run_dir=run_dir, quiet=quiet, log=log, callback=callback,
              stop_after_epoch=stop_after_epoch, deadline=deadline, final_images=2 * n_test)
    if run.status == "completed" and run.history:
        run.test = _final_test(run, state, cfg, hp, data, splits, run_dir, verify_data, reference, plots, quiet,
                               t_start)
    if log:
        wall = time.perf_counter() - t_start
        if run.test is not None:
            b, f = run.test["best"], run.test["final"]
            chosen = f"validation accuracy {100 * b['val_acc']:.2f}%" if b["val_acc"] is not None else "no validation split: the last epoch"
            log(f"test set, read once after training: best checkpoint (epoch {b['epoch']}, chosen by {chosen}) "
                f"{100 * b['test_acc']:.2f}%; final (epoch {f['epoch']}) {100 * f['test_acc']:.2f}%")
        log(f"{run.status}: {len(run.history)} evaluations; {wall / 60:.2f} min in this call"
            + (f"; run directory {out_dir}" if out_dir else "")
            + ("" if run.status == "completed" else "; the test set is read when the run completes (--resume)"))
    return run


def _restore_layout(saved, threads, log) -> None:
    """A resumed run continues bit-exactly only with the shard layout it was trained with: take the saved one,
    or refuse a ``threads`` the caller insists on that differs from it."""
    current = parallel.layout()
    if not saved or saved == current:
        return
    if threads is not None and threads != saved["threads"]:
        raise ValueError(f"resume: the run was trained with {saved['threads']} shard thread(s), and --threads "
                         f"{threads} would cut the batches differently (float32 sums in another order: not "
                         f"bit-exact); drop --threads to use the saved {saved['threads']}, or pass --threads "
                         f"{saved['threads']}")
    parallel.configure(threads=saved["threads"], shards_per_thread=saved["shards_per_thread"],
                       min_rows=saved["min_rows"])
    parallel.set_blas_threads(saved["threads"])
    if log:
        log(f"resume: using the saved layout of {saved['threads']} thread(s) (this machine's default is "
            f"{current['threads']}), so that the run continues bit-exactly")


def _validation(hp) -> str:
    if hp.val_size:
        return f"{hp.val_size} training images, stratified by class, the same for every seed (best.npz: highest val_acc)"
    if hp.val_fraction:
        return f"{hp.val_fraction} of the training images, seeded by the run's seed (best.npz: highest val_acc)"
    return "none (best.npz: the last epoch)"


def _final_test(run, state, cfg, hp, data, splits, run_dir, verify, reference, plots, quiet, t_start) -> dict:
    """The end of a completed run: the test split read (once), the final and the best checkpoint evaluated
    on it, ``results.json`` written, the confusion and prediction plots drawn from the best checkpoint."""
    t0 = time.perf_counter()
    te_x, te_y = splits["test"] if splits.get("test") is not None else prepare_test(data, cfg, hp, verify=verify)
    best = run.best_params
    if best is None and run_dir is not None and os.path.isfile(run_dir.best):   # chosen in an earlier call
        best = load_checkpoint(run_dir.best)[0]
    if best is None:
        best = run.params
    epoch_of = {"final": state.history[-1]["epoch"], "best": state.progress.get("best_epoch")}
    evaluations = {"final": evaluate_arrays(run.params, cfg, te_x, te_y, batch_size=hp.eval_batch_size,
                                            progress=not quiet, desc="test (final)", reference=reference)}
    evaluations["best"] = evaluations["final"] if epoch_of["best"] == epoch_of["final"] else evaluate_arrays(
        best, cfg, te_x, te_y, batch_size=hp.eval_batch_size, progress=not quiet, desc="test (best)",
        reference=reference)                          # the best epoch is the last: one pass serves both
    line_of = {name: next((h for h in state.history if h["epoch"] == epoch_of[name]), {}) for name in epoch_of}
    results = {
        "test_set": "read once, after training; no choice of this run was made with it",
        "chosen_by": "val_acc" if splits["val"] is not None else "last epoch (no validation split)",
        "test_md5": md5(te_x, te_y), "n_test": len(te_x),
        "epochs_planned": hp.epochs, "steps": state.step,
        "schedule_steps": state.progress.get("total_steps"),
        "seconds_in_epochs": round(sum(h.get("seconds", 0.0) for h in state.history), 3),
        **{name: {"epoch": epoch_of[name], "checkpoint": "best.npz" if name == "best" else "checkpoint.npz",
                  "val_acc": line_of[name].get("val_acc"), "test_acc": ev["accuracy"], "test_loss": ev["loss"]}
           for name, ev in evaluations.items()}}
    results["test_seconds"] = round(time.perf_counter() - t0, 3)
    run.last_eval = evaluations["best"]
    if run_dir is not None and plots:
        run_dir.save_plots(run.history, evaluations["best"], te_x, te_y)
    results["seconds_this_call"] = round(time.perf_counter() - t_start, 3)   # the train() call, plots included
    if run_dir is not None:
        run_dir.save_results(results)
    return results


def _implementation(spec, reference) -> dict:
    """config.json's record of the code that trained: the forward/backward functions, by module and name."""
    return {"reference": bool(reference and spec.kind == "vit"),
            "forward": f"{spec.forward.__module__}.{spec.forward.__name__}",
            "backward": f"{spec.backward.__module__}.{spec.backward.__name__}"}


def _differences(a: dict, b: dict, ignore=()):
    return [f"{k}: {a.get(k)!r} (saved) vs {b.get(k)!r}" for k in sorted(set(a) | set(b))
            if k not in ignore and a.get(k) != b.get(k)]


def _version():
    from .. import __version__
    return __version__
