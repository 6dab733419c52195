"""Honest numbers: the validation split chooses, the test set is read once after training, a time budget
shortens the schedule rather than cutting it, evaluation has no dropout, and --seeds reports mean ± std.

* best.npz is the epoch of highest *validation* accuracy, even when the test set would pick another epoch;
* a spy on the data loader sees the test files read only after the last optimiser step;
* a run slowed down (a sleep in every step) under ``max_minutes`` completes a shorter schedule whose
  cosine decay reaches its end, instead of stopping in the middle of it;
* eval mode gives the same logits twice with dropout 0.5 (and train mode does not);
* the stratified validation split holds out the same share of each class, the same images for every seed.

Small synthetic data only; no network.
"""
import json
import time

import numpy as np
import pytest

import vitnp.training.fit as fit_module
from vitnp import init_params
from vitnp.cli.main import main
from vitnp.data import prepare_data, stratified_split, write_idx
from vitnp.data import splits as splits_module
from vitnp.fast.model import vit_forward as fast_forward
from vitnp.model import vit_forward
from vitnp.optim import warmup_cosine
from vitnp.training.presets import HParams
from vitnp.training.rundir import load_checkpoint
from vitnp.training.seeds import mean_std
from vitnp.training import train

from support import TINY, bands

HP = HParams(epochs=6, batch_size=16, lr=3e-3, warmup_epochs=0.5, augment="flip", val_size=40, eval_batch_size=20)


def data(n_train=104, n_test=40):
    return (*bands(n_train, 0), *bands(n_test, 1))


def idx_files(directory, arrays):
    """Write (train_x, train_y, test_x, test_y) as Fashion-MNIST-named IDX files into ``directory``."""
    directory.mkdir()
    for name, array in zip(("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                            "t10k-labels-idx1-ubyte"), arrays):
        write_idx(str(directory / name), (array[..., 0] if array.ndim == 4 else array).astype(np.uint8))
    return directory


# ---- the validation split --------------------------------------------------------------------------------
def test_stratified_split_takes_each_class_share_and_the_same_images_for_every_seed():
    x, y = bands(1000, 0)
    y = np.where(np.arange(1000) < 150, 3, y)                  # unequal classes: class 3 is common
    (tr_x, tr_y), (va_x, va_y) = stratified_split(x, y, 100)
    assert len(va_y) == 100 and len(tr_y) == 900
    counts, val_counts = np.bincount(y, minlength=10), np.bincount(va_y, minlength=10)
    assert np.all(np.abs(val_counts - counts * 100 / 1000) < 1)           # each class's share, rounded
    assert sorted(map(bytes, np.concatenate([tr_x, va_x]))) == sorted(map(bytes, x))
    a = prepare_data(data(), TINY, HP.replace(seed=0), test=False)["val"]
    b = prepare_data(data(), TINY, HP.replace(seed=7), test=False)["val"]
    assert a[0].tobytes() == b[0].tobytes() and len(a[1]) == 40           # the run's seed does not move it
    with pytest.raises(ValueError, match="n_val"):
        stratified_split(x, y, 1000)


def test_val_size_and_val_fraction_together_are_refused():
    with pytest.raises(ValueError, match="val_size .* or val_fraction"):
        HP.replace(val_fraction=0.1)


# ---- choosing on validation ------------------------------------------------------------------------------
def test_best_checkpoint_is_the_argmax_of_validation_accuracy_not_test(tmp_path):
    """Validation and test disagree on purpose: the test labels are shuffled, so the test curve peaks at
    random epochs. best.npz must be the first epoch of highest val_acc, and results.json must report the test
    accuracy of exactly that checkpoint and of the final one."""
    tr_x, tr_y, te_x, te_y = data()
    te_y = np.random.default_rng(5).permutation(te_y)               # a test set that disagrees with val
    run = train(TINY, HP.replace(test_curve=True), out_dir=tmp_path / "r", data=(tr_x, tr_y, te_x, te_y),
                plots=False)
    val = [line["val_acc"] for line in run.history]
    best_epoch = run.history[int(np.argmax(val))]["epoch"]          # argmax: the first of equal maxima
    params, _, meta = load_checkpoint(tmp_path / "r" / "best.npz")
    assert meta["epoch"] == best_epoch and meta["progress"]["best_split"] == "val"
    assert meta["progress"]["best_acc"] == max(val)
    results = json.loads((tmp_path / "r" / "results.json").read_text())
    assert results == run.test and results["chosen_by"] == "val_acc"
    assert results["best"]["epoch"] == best_epoch and results["best"]["val_acc"] == max(val)
    assert results["final"]["epoch"] == run.history[-1]["epoch"] == HP.epochs
    from vitnp.training.evaluation import evaluate_arrays
    prepared = prepare_data((tr_x, tr_y, te_x, te_y), TINY, HP)["test"]
    for which, p in (("best", params), ("final", run.params)):
        ev = evaluate_arrays(p, TINY, *prepared, batch_size=HP.eval_batch_size)
        assert results[which]["test_acc"] == ev["accuracy"] and results[which]["test_loss"] == ev["loss"]
    # the test curve is there (test_curve=True), labelled, and did not decide: had it decided, best would be
    # its argmax; we only check that the curve exists and that the decision above ignored it
    assert all("test_acc" in line for line in run.history)


def test_without_a_validation_split_best_is_the_last_epoch_never_the_test_set(tmp_path):
    run = train(TINY, HP.replace(val_size=0, epochs=3), out_dir=tmp_path / "r", data=data(), plots=False)
    meta = load_checkpoint(tmp_path / "r" / "best.npz")[2]
    assert meta["epoch"] == 3 and meta["progress"]["best_split"] == "last"
    assert run.test["chosen_by"].startswith("last") and run.test["best"]["epoch"] == 3
    assert all("test_acc" not in line and "val_acc" not in line for line in run.history)


# ---- the test set is read once, at the end ------------------------------------------------------------------
def test_the_test_files_are_read_only_after_the_last_step(tmp_path, monkeypatch):
    """A spy on the IDX loader: the training files are read at the start, the test files once, after every
    optimiser step is done (and not at all by a run that stops early)."""
    directory = idx_files(tmp_path / "data", data())
    steps, reads = [], []
    real = splits_module.load_fashion_mnist

    def spy(root, split, **kw):
        reads.append((split, len(steps)))
        return real(root, split, **kw)
    monkeypatch.setattr(splits_module, "load_fashion_mnist", spy)
    hp = HP.replace(epochs=3)
    run = train(TINY, hp, out_dir=tmp_path / "r", data=str(directory), verify_data=False, plots=False,
                callback=lambda info: steps.append(info["step"]))
    assert run.status == "completed" and len(steps) == 3 * (64 // 16)
    assert reads == [("train", 0), ("test", len(steps))]
    reads.clear()
    stopped = train(TINY, hp, out_dir=tmp_path / "s", data=str(directory), verify_data=False, plots=False,
                    stop_after_epoch=1)
    assert stopped.status == "stopped" and stopped.test is None
    assert [split for split, _ in reads] == ["train"]
    assert not (tmp_path / "s" / "results.json").exists()
    reads.clear()
    resumed = train(out_dir=tmp_path / "s", data=str(directory), verify_data=False, plots=False, resume=True)
    assert resumed.status == "completed" and [split for split, _ in reads] == ["train", "test"]
    assert resumed.test["final"] == run.test["final"]                  # bit-exact resume, the same test


def test_a_missing_test_file_fails_before_training(tmp_path):
    tr_x, tr_y, _, _ = data()
    directory = tmp_path / "data"
    directory.mkdir()
    write_idx(str(directory / "train-images-idx3-ubyte"), tr_x[..., 0])
    write_idx(str(directory / "train-labels-idx1-ubyte"), tr_y.astype(np.uint8))
    steps = []
    with pytest.raises(FileNotFoundError, match="t10k-images"):
        train(TINY, HP, data=str(directory), verify_data=False, callback=lambda info: steps.append(1))
    assert steps == []


# ---- a time budget shortens the schedule ------------------------------------------------------------------
def test_max_minutes_on_a_slowed_run_still_ends_its_cosine_decay(monkeypatch):
    """Each step sleeps 40 ms: 60 planned epochs of 4 steps need ~10 s, the budget is 4 s. The run must
    complete (not stop in the middle of its schedule) with fewer epochs, its last step at the end of the
    cosine decay, within the budget."""
    real = fit_module.train_step

    def slow(*args, **kwargs):
        time.sleep(0.04)
        return real(*args, **kwargs)
    monkeypatch.setattr(fit_module, "train_step", slow)
    hp = HP.replace(epochs=60, max_minutes=4 / 60)
    t0 = time.perf_counter()
    run = train(TINY, hp, data=data())
    wall = time.perf_counter() - t0
    assert run.status == "completed" and run.test is not None
    epochs = len(run.history)
    assert 3 <= epochs < 60 and wall < 4.0
    total = run.history[-1]["step"]
    assert total == epochs * 4                                      # whole epochs
    assert run.history[-1]["lr"] == warmup_cosine(total - 1, total, 2, hp.lr, hp.final_lr)
    assert run.history[-1]["lr"] < 0.05 * hp.lr                     # the decay reached its end
    assert run.test["schedule_steps"] == total


# ---- evaluation turns dropout off --------------------------------------------------------------------------
@pytest.mark.parametrize("forward", [vit_forward, fast_forward], ids=["reference", "fast"])
def test_eval_mode_gives_the_same_logits_twice_with_heavy_dropout(forward):
    cfg = TINY.replace(dropout=0.5)
    params = init_params(cfg, seed=0)
    params["head.W"] = np.random.default_rng(2).standard_normal(params["head.W"].shape).astype(np.float32)  # not 0
    x = np.random.default_rng(0).standard_normal((8, 28, 28, 1)).astype(np.float32)
    a = forward(params, x, cfg, train=False)[0]
    b = forward(params, x, cfg, train=False, rng=np.random.default_rng(1))[0]
    assert a.tobytes() == b.tobytes()
    c = forward(params, x, cfg, train=True, rng=np.random.default_rng(1))[0]
    assert not np.allclose(a, c)                                    # dropout really acts in train mode


# ---- seeds ------------------------------------------------------------------------------------------------
def test_seeds_trains_each_seed_and_reports_mean_and_sample_std(tmp_path, capsys):
    directory = idx_files(tmp_path / "data", data())
    out = tmp_path / "runs"
    argv = ["train", "--out", str(out), "--data", str(directory), "--no-verify", "--quiet", "--preset", "fast",
            "--train-subset", "0", "--val-size", "40", "--epochs", "2", "--batch-size", "16", "--dim", "16",
            "--depth", "1", "--heads", "2", "--mlp-dim", "32", "--seed", "4", "--seeds", "3"]
    assert main(argv) == 0
    summary = json.loads((out / "seeds.json").read_text())
    assert summary["seeds"] == [4, 5, 6]
    best = [json.loads((out / f"seed-{s}" / "results.json").read_text())["best"]["test_acc"] for s in (4, 5, 6)]
    assert summary["best"]["values"] == best
    assert summary["best"]["mean"] == pytest.approx(np.mean(best))
    assert summary["best"]["std"] == pytest.approx(np.std(best, ddof=1))
    for s in (4, 5, 6):
        assert load_checkpoint(out / f"seed-{s}" / "best.npz")[2]["hparams"]["seed"] == s
    assert "mean ± sample std" in capsys.readouterr().out
    assert mean_std([0.5])["std"] is None


def test_evaluate_split_val_rebuilds_the_runs_validation_split(tmp_path, capsys):
    """`evaluate --split val` gives the validation accuracy the run recorded for that checkpoint (the same
    held-out images, the same model), so that checkpoints can be compared without touching the test set; a
    run without a validation split gets one clear line."""
    directory = idx_files(tmp_path / "data", data())
    run = train(TINY, HP.replace(epochs=2), out_dir=tmp_path / "r", data=str(directory), verify_data=False,
                plots=False)
    assert main(["evaluate", str(tmp_path / "r" / "best.npz"), "--split", "val", "--data", str(directory),
                 "--no-verify", "--quiet", "--batch-size", str(HP.eval_batch_size)]) == 0
    out = capsys.readouterr().out
    best = run.test["best"]["val_acc"]
    assert f"val accuracy: {100 * best:.2f}% ({round(best * 40)}/40)" in out
    train(TINY, HP.replace(epochs=1, val_size=0), out_dir=tmp_path / "n", data=str(directory), verify_data=False,
          plots=False)
    assert main(["evaluate", str(tmp_path / "n" / "best.npz"), "--split", "val", "--data", str(directory),
                 "--no-verify"]) == 2
    assert "held out no validation split" in capsys.readouterr().err


def test_a_budget_that_ends_the_schedule_mid_epoch_completes_and_resumes(tmp_path, monkeypatch):
    """A fake clock (+1 s per reading, so the run is deterministic) and a 19 s budget: the planner shortens
    the schedule to 1¼ epochs, the run completes there (the test set read once), and --resume of the
    completed run is accepted (a metrics line at a fraction of an epoch is no inconsistency) and changes
    nothing."""
    import vitnp.training.trainer as train_module
    clock = iter(range(10**6))
    monkeypatch.setattr(train_module.time, "perf_counter", lambda: float(next(clock)))
    run = train(TINY, HP.replace(epochs=6, max_minutes=19 / 60), out_dir=tmp_path / "r", data=data(), plots=False)
    assert run.status == "completed" and [line["epoch"] for line in run.history] == [1, 1.25]
    assert run.test["schedule_steps"] == 5 and run.history[-1]["step"] == 5
    monkeypatch.undo()
    again = train(out_dir=tmp_path / "r", data=data(), plots=False, resume=True)
    assert again.status == "completed" and again.test["final"] == run.test["final"]
