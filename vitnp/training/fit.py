"""The training loop: optimiser steps on mini-batches, an evaluation after every epoch, and stopping cleanly.

One optimiser step is the paper's recipe at small scale (§3, Appendix B.1: Adam with decoupled weight
decay, linear warm-up then cosine decay, global-norm gradient clipping), in :func:`train_step`::

    logits, cache = forward(params, x, cfg, train=True, rng=rng)       # Eq 1–4, (B, K); rng: dropout
    loss, dlogits = softmax_cross_entropy(logits, y, smoothing)       # with label smoothing
    grads = backward(dlogits, cache)                                  # same names as params
    clip_grad_norm(grads, max_norm)                                   # optional
    opt.step(params, grads, lr=warmup_cosine(step, …))                # AdamW, in place

``forward`` and ``backward`` come from :func:`vitnp.training.specs.model_spec`: the fast path
(:mod:`vitnp.fast`) by default, the clear reference model (:func:`vitnp.model.vit_forward`) with
``reference=True``; they agree up to float32 rounding.  The CNN baseline has one implementation.

:func:`fit` runs steps until ``total_steps`` (default: ``hp.epochs`` epochs), evaluating on the validation
split (if any) after every epoch, or every ``eval_every`` steps; the best evaluation is the one of highest
validation accuracy (without a validation split: the last one), never a test-set one.  A test split in
``splits`` is evaluated at each evaluation too, as a curve to look at (``HParams.test_curve``); the trainer
reads the test set only after training (:func:`vitnp.training.trainer.train`).  Everything the loop changes is
kept in a :class:`TrainState`.  The batches of an epoch depend only on the data RNG's state at the
start of the epoch (:func:`vitnp.data.iterate_batches`), so a state saved in the middle of an epoch (that
RNG state and the number of batches done) continues **bit-exactly**: the resumed loop draws the same epoch
and skips the batches already done.  :func:`vitnp.training.trainer.train` builds the state (fresh, from a checkpoint,
or from another run's weights) and a :class:`vitnp.training.rundir.RunDir` for the files; scripts can call
:func:`fit` directly, e.g. for a budget in steps rather than epochs::

    state = TrainState.start(params, hp)
    run = fit(state, cfg, hp, prepare_data(data, cfg, hp), total_steps=800, eval_every=800)

It stops early when asked: Ctrl-C (:class:`vitnp.training.rundir.SigintGuard`: the current step finishes), a
``callback`` returning True, ``stop_after_epoch``, or the wall-clock ``deadline``.  Between evaluations it
then saves the state (``run_dir``) before returning; at an evaluation the evaluation's own save serves.
"""
from __future__ import annotations

import dataclasses
import sys
import time

import numpy as np

from ..data import augmentation, iterate_batches
from .evaluation import cross_entropy_sum, evaluate_arrays
from .specs import model_spec
from ..ops.loss import softmax_cross_entropy
from ..optim import AdamW, clip_grad_norm, grad_norm, warmup_cosine
from .rundir import SigintGuard

__all__ = ["Run", "TrainState", "DivergedError", "train_step", "schedule", "fit"]


class DivergedError(ValueError):
    """A non-finite loss, gradient or evaluation: training stops before anything of it is applied or saved."""


@dataclasses.dataclass
class Run:
    """What :func:`fit` (and :func:`vitnp.training.trainer.train`) returns.

    history : list of dict   the metrics lines (also in ``metrics.jsonl``).
    params : dict            the parameters at the end (not necessarily the best epoch's).
    cfg, hparams             the ViTConfig (or CNNConfig) and HParams of the run.
    status : str             'completed', 'budget' (the deadline, ``max_minutes``), 'interrupted' (Ctrl-C),
                             'stopped' (stop_after_epoch or a callback asked to stop).
    last_eval : dict | None  :func:`vitnp.training.evaluation.evaluate_arrays` on the test split at the last evaluation
                             of this call, when ``splits`` holds one; after :func:`vitnp.training.trainer.train`, the
                             best checkpoint's test evaluation (predictions, confusion, per-class accuracy).
    out_dir : str | None
    best_params : dict | None  a copy of the parameters at the best evaluation of this call (highest
                             validation accuracy; the last evaluation without a validation split).
    test : dict | None       :func:`vitnp.training.trainer.train` only: the test split read once at the end
                             (``results.json``).
    """

    history: list
    params: dict
    cfg: object
    hparams: object
    status: str
    last_eval: dict | None = None
    out_dir: str | None = None
    best_params: dict | None = None
    test: dict | None = None


@dataclasses.dataclass
class TrainState:
    """Everything the loop changes, and a checkpoint stores (:func:`vitnp.training.rundir.save_checkpoint`).

    params, opt         the parameters and their AdamW (updated in place)
    epoch, batch, step  epochs completed, batches done in the unfinished epoch, optimiser steps taken
    history             the metrics lines so far
    progress            running sums since the last evaluation (loss_sum, correct, count, epoch_seconds,
                        train_seconds), the best evaluation (best_acc, best_epoch), and anything else to
                        keep with it (the trainer keeps the data's MD5s)
    epoch_start         ``bit_generator.state`` of the data RNG at the start of the current epoch
    drop_rng            the generator of the dropout masks
    """

    params: dict
    opt: AdamW
    epoch_start: dict
    drop_rng: np.random.Generator
    progress: dict
    history: list = dataclasses.field(default_factory=list)
    epoch: int = 0
    batch: int = 0
    step: int = 0

    @classmethod
    def start(cls, params, hp, **progress) -> "TrainState":
        """A fresh state at step 0: AdamW with ``hp``'s settings, the RNGs seeded from ``hp.seed``
        (data order and augmentation: [seed, 1]; dropout: [seed, 2])."""
        opt = AdamW(params, hp.lr, betas=(hp.beta1, hp.beta2), eps=hp.eps, weight_decay=hp.weight_decay)
        return cls(params, opt, np.random.default_rng([hp.seed, 1]).bit_generator.state,
                   np.random.default_rng([hp.seed, 2]),
                   {"loss_sum": 0.0, "correct": 0, "count": 0, "epoch_seconds": 0.0, "train_seconds": 0.0,
                    "best_acc": None, "best_epoch": None, **progress})

    @classmethod
    def restore(cls, params, hp, meta) -> "TrainState":
        """The state a checkpoint holds; ``meta`` is the third value of :func:`vitnp.training.rundir.load_checkpoint`."""
        state = cls.start(params, hp)
        state.opt.load_state_dict(meta["optim"])
        state.drop_rng.bit_generator.state = meta["rng"]["dropout"]
        state.epoch_start, state.progress, state.history = meta["rng"]["data"], meta["progress"], meta["history"]
        state.epoch, state.batch, state.step = meta["epoch"], meta["batch"], meta["step"]
        return state

    def rng_state(self) -> dict:
        """The RNG states to save: {'data': at the start of this epoch, 'dropout': now}."""
        return {"data": self.epoch_start, "dropout": self.drop_rng.bit_generator.state}


# ---- one step --------------------------------------------------------------------------------------
def train_step(params, opt, x, y, cfg, *, lr, label_smoothing=0.0, clip=0.0, rng=None, reference=False):
    """One AdamW step on the batch (x, y), in place; returns (Σ cross-entropy, number correct, ‖g‖).

    x : (B, H, W, C) normalised float images   y : (B,) int labels   lr : this step's learning rate
    cfg : ViTConfig or CNNConfig (the forward and backward come from :func:`vitnp.training.specs.model_spec`;
    ``reference=True``: the reference model instead of the fast path)
    The reported cross-entropy has no label smoothing; the gradient is of the smoothed loss.
    ‖g‖ is the global gradient norm before clipping.

    Raises :class:`DivergedError` (and leaves ``params`` and ``opt`` untouched) when the loss or ‖g‖ is not
    finite: one NaN would otherwise spread to every weight at this step.
    """
    spec = model_spec(cfg, reference=reference)
    logits, cache = spec.forward(params, x, cfg, train=True, rng=rng)          # (B, K)
    _, dlogits = softmax_cross_entropy(logits, y, label_smoothing)
    grads = spec.backward(dlogits, cache)
    loss_sum = cross_entropy_sum(logits, y)
    norm = clip_grad_norm(grads, clip) if clip > 0 else grad_norm(grads)
    if not (np.isfinite(loss_sum) and np.isfinite(norm)):
        raise DivergedError(f"the loss ({loss_sum / len(y):.4g} per image) or the gradient norm ({norm:.4g}) is "
                            f"not finite")
    opt.step(params, grads, lr=lr)
    return loss_sum, int((logits.argmax(1) == y).sum()), norm


def schedule(n_train, hp, total_steps=None, warmup_steps=None) -> tuple:
    """(steps per epoch, total steps, warm-up steps) of a run on ``n_train`` images.

    An epoch is ``n_train // hp.batch_size`` steps (the last incomplete batch is dropped, so every step sees
    B images); by default the run is ``hp.epochs`` epochs and the warm-up ``hp.warmup_epochs`` epochs.
    """
    steps_per_epoch = n_train // hp.batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"batch_size={hp.batch_size} is larger than the {n_train} training images")
    total = hp.epochs * steps_per_epoch if total_steps is None else total_steps
    warmup = min(total, int(round(hp.warmup_epochs * steps_per_epoch))) if warmup_steps is None else warmup_steps
    if total < 1 or not 0 <= warmup <= total:
        raise ValueError(f"need total_steps >= 1 and 0 <= warmup_steps <= total_steps, got {total}, {warmup}")
    return steps_per_epoch, total, warmup


# ---- the loop --------------------------------------------------------------------------------------
def fit(state: TrainState, cfg, hp, splits, *, total_steps=None, eval_every=None, warmup_steps=None,
        reference=False, run_dir=None, quiet=True, log=None, callback=None, stop_after_epoch=None,
        deadline=None, final_images=0) -> Run:
    """Train from ``state`` until ``total_steps`` steps are done or something stops the run.

    Parameters
    ----------
    state : TrainState              where to start (:meth:`TrainState.start` or :meth:`TrainState.restore`);
                                    updated in place.
    cfg : ViTConfig or CNNConfig
    hp : HParams                    batch size, schedule, smoothing, clipping, augmentation, eval batch size.
    splits : dict                   :func:`vitnp.data.prepare_data`'s: 'train', 'val' (or None), 'test' (or
                                    None; if given, evaluated at every evaluation as a curve, never used
                                    to choose anything).
    total_steps : int or None       optimiser steps of the whole run (default ``hp.epochs`` epochs); the
                                    learning-rate schedule spans them; the last epoch may be cut short.
    eval_every : int or None        evaluate every this many steps and at the end (default: every epoch).
    warmup_steps : int or None      linear warm-up (default ``hp.warmup_epochs`` epochs).
    reference : bool                train and evaluate with the reference model instead of the fast path.
    run_dir : RunDir or None        :class:`vitnp.training.rundir.RunDir`: files after every evaluation, a checkpoint
                                    when stopping between two; needs the default ``total_steps`` and
                                    ``eval_every``, so that evaluations fall on epoch ends.
    quiet : bool                    no tqdm progress bars.
    log : callable(str) or None     one summary line per evaluation, and why the run stopped.
    callback : callable(dict) or None
        Called after every step with {'epoch', 'batch', 'step', 'loss', 'acc', 'lr'} (epoch counted from
        1, batch = batches done in it); returning True stops like Ctrl-C (status 'stopped').
    stop_after_epoch : int or None  stop (status 'stopped') once this many epochs are complete.
    deadline : float or None        a ``time.perf_counter()`` value.  Early in the first epoch of this call
                                    and after every evaluation, the schedule is shortened to the whole
                                    epochs that still fit (:func:`_fit_deadline`), so warm-up and cosine
                                    decay end in time; if the deadline passes anyway, the run stops
                                    mid-epoch (status 'budget', resumable).  With ``eval_every`` there is no
                                    shortening: the run stops at an evaluation when the next period would
                                    end after the deadline.
    final_images : int              images to be evaluated after training (the trainer's test of two
                                    checkpoints): their time, estimated from this call's evaluations, plus
                                    5 s (at most 5 % of the budget) is kept free before ``deadline``.

    Returns
    -------
    Run    with ``out_dir`` the run directory's path (or None).

    A metrics line has ``epoch`` (epochs completed: an int at an epoch end, else a fraction), ``step``,
    ``train_loss``/``train_acc`` (running means over the batches since the last evaluation, augmented,
    cross-entropy without smoothing), [``val_loss``, ``val_acc``,] [``test_loss``, ``test_acc``,] ``lr`` (the
    last step's), ``seconds`` (wall time since the last evaluation, its own included) and
    ``images_per_s`` (training throughput).
    """
    tr_x, tr_y = splits["train"]
    spe, total, warmup = schedule(len(tr_x), hp, total_steps, warmup_steps)
    total = state.progress.setdefault("total_steps", total)     # a resumed run keeps its (budgeted) schedule
    warmup = min(warmup, total)
    if eval_every is not None and (isinstance(eval_every, bool) or not isinstance(eval_every, int) or eval_every < 1):
        raise ValueError(f"eval_every must be a positive number of steps, got {eval_every!r}")
    if run_dir is not None and (total_steps is not None or eval_every is not None):
        raise ValueError("fit(run_dir=…) saves at epoch ends: leave total_steps and eval_every at None")
    augment = augmentation(hp.augment, hp.crop_padding)
    data_rng = np.random.default_rng()              # its state is set to state.epoch_start before each epoch
    progress, best_split = state.progress, "last" if splits["val"] is None else "val"   # never the test split
    status, last_eval, best_params, lr = "completed", None, None, None
    clock = {"steps": 0, "train": 0.0, "val": None, "eval": None}   # this call's timings, for the budget
    probe = None if deadline is None or eval_every is not None else state.step + max(1, spe // 8)
    bar_cls = None
    if not quiet:
        from tqdm import tqdm as bar_cls
    with SigintGuard() as guard:
        while state.step < total:
            if stop_after_epoch is not None and state.epoch >= stop_after_epoch:
                status = "stopped"
                break
            t_begin = time.perf_counter()
            data_rng.bit_generator.state = state.epoch_start                 # fixes this epoch's batches
            batches = iterate_batches(tr_x, tr_y, hp.batch_size, shuffle=True, rng=data_rng, drop_last=True,
                                      augment=augment, dtype=cfg.np_dtype, start=state.batch)
            bar = None if bar_cls is None else bar_cls(
                total=spe * hp.batch_size, initial=state.batch * hp.batch_size, unit="img", unit_scale=True,
                desc=f"epoch {state.epoch + 1}/{-(-total // spe)}", file=sys.stderr, leave=False,
                dynamic_ncols=True)
            stop, due, t_last = None, False, time.perf_counter()
            for x, y in batches:
                lr = warmup_cosine(state.step, total, warmup, hp.lr, hp.final_lr)
                try:
                    loss_sum, correct, _ = train_step(state.params, state.opt, x, y, cfg, lr=lr,
                                                      label_smoothing=hp.label_smoothing, clip=hp.clip_grad_norm,
                                                      rng=state.drop_rng, reference=reference)
                except DivergedError as err:
                    raise DivergedError(_diverged(state, f"step {state.step + 1} (lr {lr:.3g}): {err}", run_dir)) \
                        from None
                now = time.perf_counter()          # seconds per step, the batch's preparation included
                clock["steps"] += 1
                clock["train"] += now - t_last
                t_last = now
                state.step += 1
                state.batch += 1
                progress["loss_sum"] += loss_sum
                progress["correct"] += correct
                progress["count"] += len(y)
                if bar is not None:
                    bar.update(len(y))
                    bar.set_postfix(loss=f"{progress['loss_sum'] / progress['count']:.3f}",
                                    acc=f"{100 * progress['correct'] / progress['count']:.1f}%", refresh=False)
                if callback is not None and callback({"epoch": state.epoch + 1, "batch": state.batch,
                                                      "step": state.step, "loss": loss_sum / len(y),
                                                      "acc": correct / len(y), "lr": lr}) is True:
                    stop = "stopped"
                if guard.interrupted:
                    stop = "interrupted"
                elif deadline is not None and time.perf_counter() > deadline:
                    stop = stop or "budget"
                if state.step == probe and not stop:         # early in this call: fit the schedule to the deadline
                    total = _fit_deadline(state, total, spe, deadline, clock, splits, hp, final_images, log)
                due = (state.batch == spe if eval_every is None else state.step % eval_every == 0) \
                    or state.step >= total
                if state.batch == spe:          # the epoch is complete; the next starts from the RNG's state now
                    state.epoch, state.batch, state.epoch_start = state.epoch + 1, 0, data_rng.bit_generator.state
                if due or stop:
                    break
            t_end = time.perf_counter()
            progress["epoch_seconds"] += t_end - t_begin
            progress["train_seconds"] += t_end - t_begin
            if bar is not None:
                bar.close()
            if not due:
                if stop:                        # between two evaluations: save where we are, then leave
                    if run_dir is not None:
                        run_dir.save_state(state)
                    if log:
                        log(f"{stop}: stopped in epoch {state.epoch + 1} after {state.batch}/{spe} batches"
                            + (f"; checkpoint saved to {run_dir.checkpoint}; continue with --resume"
                               if run_dir is not None else ""))
                    status = stop
                    break
                continue                        # an epoch ended between two evaluations (eval_every)

            # ---- evaluate, record, save ---------------------------------------------------------------
            epochs_done = state.step / spe
            line = {"epoch": int(epochs_done) if epochs_done.is_integer() else round(epochs_done, 4),
                    "step": state.step, "train_loss": progress["loss_sum"] / progress["count"],
                    "train_acc": progress["correct"] / progress["count"]}
            if splits["val"] is not None:
                v = evaluate_arrays(state.params, cfg, *splits["val"], batch_size=hp.eval_batch_size,
                                    progress=not quiet, desc="val", reference=reference)
                line.update(val_loss=v["loss"], val_acc=v["accuracy"])
            clock["val"] = time.perf_counter() - t_end
            if splits.get("test") is not None:         # a curve only (HParams.test_curve, or a script's)
                last_eval = evaluate_arrays(state.params, cfg, *splits["test"], batch_size=hp.eval_batch_size,
                                            progress=not quiet, desc="test", reference=reference)
                line.update(test_loss=last_eval["loss"], test_acc=last_eval["accuracy"])
            line["lr"] = lr
            bad = [k for k, v in line.items() if isinstance(v, float) and not np.isfinite(v)]
            if bad:
                raise DivergedError(_diverged(state, f"the evaluation after step {state.step} gave non-finite "
                                                     f"{', '.join(bad)}", run_dir))
            seconds = progress["epoch_seconds"] + time.perf_counter() - t_end
            line.update(seconds=round(seconds, 3), images_per_s=round(progress["count"] / progress["train_seconds"], 1))
            state.history.append(line)
            improved = best_split == "last" or progress["best_acc"] is None or line["val_acc"] > progress["best_acc"]
            if improved:
                progress["best_acc"], progress["best_epoch"] = line.get("val_acc"), line["epoch"]
                best_params = {k: v.copy() for k, v in state.params.items()}
            progress.update(loss_sum=0.0, correct=0, count=0, epoch_seconds=0.0, train_seconds=0.0)
            if run_dir is not None:
                run_dir.save_evaluation(state, improved, best_split)
            if log:
                log(_summary(line, -(-total // spe) if eval_every is None else total, improved,
                             eval_every is not None))
            if stop and state.step < total:     # (at the last step the schedule is done: completed)
                status = stop
                break
            if stop_after_epoch is not None and state.epoch >= stop_after_epoch and state.step < total:
                status = "stopped"
                break
            clock["eval"] = time.perf_counter() - t_end               # validation, files, plots
            if probe is not None and state.step < total:             # each epoch: fit the rest to the deadline
                total = _fit_deadline(state, total, spe, deadline, clock, splits, hp, final_images, log)
            elif deadline is not None and state.step < total and time.perf_counter() + seconds > deadline:
                status = "budget"
                if log:
                    log(f"budget: the next {'period' if eval_every else 'epoch'} would not finish within "
                        f"max_minutes={hp.max_minutes}; stopping after epoch {state.epoch}"
                        + ("; continue with --resume" if run_dir else ""))
                break
    return Run(history=state.history, params=state.params, cfg=cfg, hparams=hp, status=status,
               last_eval=last_eval, out_dir=None if run_dir is None else run_dir.path, best_params=best_params)


def _diverged(state, what, run_dir) -> str:
    """The message of a :class:`DivergedError`: what went wrong, where, and that nothing of it was saved."""
    if run_dir is None:
        kept = ""
    elif not state.history:
        kept = "; nothing was saved (no epoch had completed)"
    else:
        kept = (f"; nothing of it was saved: {run_dir.checkpoint} holds the state after epoch {state.history[-1]['epoch']}"
                f" and best.npz epoch {state.progress.get('best_epoch')}")
    return (f"training diverged at {what}{kept}; try a lower learning rate (--lr), a longer warm-up (--warmup) "
            f"or gradient clipping (--clip)")


def _fit_deadline(state, total, spe, deadline, clock, splits, hp, final_images, log) -> int:
    """The schedule's new ``total`` steps (never more than before): as many whole epochs as fit before the
    ``deadline``, counting this call's measured seconds per step, one validation pass per epoch, and
    the time of evaluating ``final_images`` after training (and 5 s, or 5 % of a shorter budget, for the files
    and plots); a part of an epoch when not even the
    current epoch fits.  The warm-up and cosine decay are then laid over the new total, so a slow machine
    trains fewer epochs but still ends its decay (rather than stopping in the middle of it)."""
    step_s = clock["train"] / max(clock["steps"], 1)
    n_val = 0 if splits["val"] is None else len(splits["val"][0])
    per_image = clock["val"] / n_val if clock["val"] and n_val else 0.5 * step_s / hp.batch_size   # or a guess
    eval_s = clock["eval"] if clock["eval"] is not None else per_image * n_val     # measured after epoch 1
    slack = min(5.0, 3.0 * (hp.max_minutes or 0.0))             # for the plots and files: 5 s, or 5 % of the budget
    left = deadline - time.perf_counter() - per_image * final_images - slack
    if left <= 0:                       # the budget is spent already: the deadline stops the run (resumable)
        return total
    this_epoch = (spe - state.batch) * step_s + eval_s          # finishing the current epoch, and its evaluation
    if left >= this_epoch:
        epochs = 1 + int((left - this_epoch) // (spe * step_s + eval_s))
        new = state.step + (spe - state.batch) + (epochs - 1) * spe
    else:
        new = state.step + max(1, int((left - eval_s) // step_s))
    if new >= total:
        return total
    state.progress["total_steps"] = new
    if log:
        log(f"budget: max_minutes={hp.max_minutes} fits {new / spe:.4g} epochs, not the {total / spe:.4g} planned "
            f"({step_s * 1e3:.0f} ms per step here); the schedule now ends at step {new}, and its cosine decay "
            f"with it")
    return new


def _summary(line, end, improved, by_step):
    """One log line per evaluation: 'epoch  3/10  train loss … acc …  val loss … acc … *  lr …  … s  … img/s'
    (``by_step``: 'step 200/800 (epoch 1.6)' instead), '*' marking the best so far (on validation), and a
    test curve's point labelled as such."""
    where = (f"step {line['step']}/{end} (epoch {line['epoch']})" if by_step
             else f"epoch {line['epoch']:>2}/{end}")
    val = f"  val loss {line['val_loss']:.4f} acc {100 * line['val_acc']:.2f}%" if "val_acc" in line else ""
    test = f"  [test curve {100 * line['test_acc']:.2f}%]" if "test_acc" in line else ""
    return (f"{where}  train loss {line['train_loss']:.4f} acc {100 * line['train_acc']:.2f}%{val}"
            f"{' *' if improved and val else '  '}{test}  lr {line['lr']:.2e}  {line['seconds']:.0f} s  "
            f"{line['images_per_s']:.0f} img/s")
