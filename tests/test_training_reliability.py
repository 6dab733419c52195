"""A run directory that survives crashes, divergence, a second writer and another thread count.

* a crash between the two writes at the end of an epoch (best.npz, checkpoint.npz) still ends, after
  ``--resume``, with the files an uninterrupted run writes;
* a NaN in the gradients stops the run with DivergedError; checkpoint.npz and best.npz keep the last good
  epoch, metrics.jsonl stays valid JSON;
* a second writer into a locked run directory is refused at once; a directory holding run files is refused
  without --resume or --overwrite;
* resuming with another shard layout is refused when insisted on (--threads) and otherwise takes the saved
  layout, ending bit-exactly where the uninterrupted run ends;
* SIGTERM saves like Ctrl-C; stale temporary files are removed when a run starts;
* hyper-parameters must be finite and in range.

Small synthetic data only; no network.
"""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import vitnp.training.fit as fit_module
import vitnp.training.rundir as rundir_module
from vitnp.cli.main import main
from vitnp.fast import parallel
from vitnp.training.fit import DivergedError
from vitnp.training.presets import HParams
from vitnp.training.rundir import RunLock, RunLockedError, load_checkpoint
from vitnp.training import train

from support import TINY, band_data

HP = HParams(epochs=3, batch_size=16, lr=3e-3, warmup_epochs=0.5, augment="flip", eval_batch_size=20)
DATA = band_data()


class Crash(BaseException):
    """Stands for the process dying (kill -9, power cut): nothing after it runs, no handler catches it."""


def same_files(a, b):
    pa, _, ma = load_checkpoint(a)
    pb, _, mb = load_checkpoint(b)
    assert all(pa[k].tobytes() == pb[k].tobytes() for k in pa)
    assert (ma["epoch"], ma["step"]) == (mb["epoch"], mb["step"])


def strip(lines):
    return [{k: v for k, v in line.items() if k not in ("seconds", "images_per_s")} for line in lines]


def metrics(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


# ---- a crash between the writes ----------------------------------------------------------------------
@pytest.mark.parametrize("crash_at", [3, 4, 5, 6])
def test_a_crash_between_the_end_of_epoch_writes_ends_consistent_after_resume(tmp_path, monkeypatch, crash_at):
    """Without a validation split every epoch is the best: two checkpoint writes per epoch (best.npz, then
    checkpoint.npz). Killing the process at write ``crash_at`` (3: epoch 2's first, 4: its second, 5: epoch
    3's first) and resuming must give the uninterrupted run's best.npz, checkpoint.npz, metrics and results."""
    full = train(TINY, HP, out_dir=tmp_path / "full", data=DATA, plots=False)
    real, calls = rundir_module.save_checkpoint, []

    def dying(path, *args, **kwargs):
        calls.append(os.path.basename(path))
        if len(calls) == crash_at:
            raise Crash
        return real(path, *args, **kwargs)
    monkeypatch.setattr(rundir_module, "save_checkpoint", dying)
    with pytest.raises(Crash):
        train(TINY, HP, out_dir=tmp_path / "crash", data=DATA, plots=False)
    monkeypatch.setattr(rundir_module, "save_checkpoint", real)
    resumed = train(out_dir=tmp_path / "crash", data=DATA, plots=False, resume=True)
    assert resumed.status == "completed"
    for name in ("best.npz", "checkpoint.npz"):
        same_files(tmp_path / "full" / name, tmp_path / "crash" / name)
    assert strip(metrics(tmp_path / "crash")) == strip(metrics(tmp_path / "full"))
    assert resumed.test["best"] == full.test["best"] and resumed.test["final"] == full.test["final"]


def test_stale_temporary_files_are_removed_when_a_run_starts(tmp_path):
    train(TINY, HP.replace(epochs=1), out_dir=tmp_path / "r", data=DATA, plots=False, stop_after_epoch=1)
    stale = tmp_path / "r" / ".checkpoint.npz.1a2b3c4d.tmp"
    stale.write_bytes(b"half a checkpoint")
    train(out_dir=tmp_path / "r", data=DATA, plots=False, resume=True)
    assert not stale.exists()


# ---- divergence --------------------------------------------------------------------------------------
def test_a_nan_gradient_stops_the_run_and_keeps_the_last_good_files(tmp_path, monkeypatch):
    """Gradients turn NaN at step 6 (in epoch 2): DivergedError naming the step; checkpoint.npz and best.npz
    still hold epoch 1, finite; metrics.jsonl is strict JSON with one line; the CLI exits 2 with one line."""
    real_spec, calls = fit_module.model_spec, []

    def poisoned(cfg, reference=False):
        spec = real_spec(cfg, reference=reference)

        def backward(dlogits, cache):
            grads = spec.backward(dlogits, cache)
            calls.append(1)
            if len(calls) >= 6:
                grads["E"][0, 0] = np.nan
            return grads
        import dataclasses
        return dataclasses.replace(spec, backward=backward)
    monkeypatch.setattr(fit_module, "model_spec", poisoned)
    with pytest.raises(DivergedError, match=r"step 6 .*not finite.*after epoch 1"):
        train(TINY, HP, out_dir=tmp_path / "r", data=DATA, plots=False)
    for name in ("checkpoint.npz", "best.npz"):
        params, _, meta = load_checkpoint(tmp_path / "r" / name)
        assert meta["epoch"] == 1 and all(np.isfinite(p).all() for p in params.values()), name
    lines = (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0], parse_constant=pytest.fail)["epoch"] == 1
    assert not (tmp_path / "r" / "results.json").exists()


def test_a_huge_learning_rate_exits_non_zero_with_one_line(tmp_path, capsys):
    from vitnp.data import write_idx
    d = tmp_path / "data"
    d.mkdir()
    for name, array in (("train-images-idx3-ubyte", DATA[0][..., 0]), ("train-labels-idx1-ubyte", DATA[1]),
                        ("t10k-images-idx3-ubyte", DATA[2][..., 0]), ("t10k-labels-idx1-ubyte", DATA[3])):
        write_idx(str(d / name), array.astype(np.uint8))
    code = main(["train", "--out", str(tmp_path / "r"), "--data", str(d), "--no-verify", "--quiet", "--preset",
                 "fast", "--train-subset", "0", "--val-size", "0", "--batch-size", "16", "--epochs", "3",
                 "--lr", "1e30", "--clip", "0", "--warmup", "0"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: training diverged at step") and err.count("\n") == 1


@pytest.mark.parametrize("field, value", [("lr", float("inf")), ("lr", float("nan")), ("eps", 0.0),
                                          ("max_minutes", -1.0), ("max_minutes", float("nan")),
                                          ("warmup_epochs", float("inf")), ("weight_decay", -0.1)])
def test_hyper_parameters_must_be_finite_and_in_range(field, value):
    with pytest.raises(ValueError, match=field):
        HP.replace(**{field: value})


@pytest.mark.parametrize("flag", ["-1", "nan", "inf"])
def test_bad_max_minutes_on_the_command_line_is_one_clear_error(tmp_path, capsys, flag):
    assert main(["train", "--out", str(tmp_path / "r"), "--max-minutes", flag]) == 2
    assert "--max-minutes" in capsys.readouterr().err


# ---- one writer ---------------------------------------------------------------------------------------
def test_a_second_writer_is_refused_at_once(tmp_path):
    """Another process holds the run directory's lock: train() fails at once, naming the directory and the
    PID, and writes nothing; once that process is gone (even killed) the lock is free again."""
    out = tmp_path / "r"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from vitnp.training.rundir import RunLock; "
                               f"RunLock({str(out)!r}).acquire(); print('locked', flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        t0 = time.perf_counter()
        with pytest.raises(RunLockedError, match=rf"in use by another training process \(PID {holder.pid}\)"):
            train(TINY, HP, out_dir=out, data=DATA, plots=False)
        assert time.perf_counter() - t0 < 5
        assert sorted(os.listdir(out)) == [".lock"]
    finally:
        holder.kill()                                   # kill -9: the OS releases the flock
        holder.wait()
    with RunLock(out):
        pass


def test_a_directory_holding_run_files_is_refused_unless_resume_or_overwrite(tmp_path):
    out = tmp_path / "r"
    train(TINY, HP.replace(epochs=1), out_dir=out, data=DATA, plots=False)
    (out / "checkpoint.npz").unlink()                   # only best.npz and the others are left
    with pytest.raises(FileExistsError, match=r"already holds a run \(.*best\.npz.*--overwrite"):
        train(TINY, HP.replace(seed=1), out_dir=out, data=DATA, plots=False)
    run = train(TINY, HP.replace(seed=1, epochs=1), out_dir=out, data=DATA, plots=False, overwrite=True)
    assert load_checkpoint(out / "best.npz")[2]["hparams"]["seed"] == 1 and run.status == "completed"


# ---- resume and the thread layout -----------------------------------------------------------------------
def test_resume_takes_the_saved_shard_layout_or_refuses_another(tmp_path, monkeypatch):
    """Trained with 2 shard threads (min_rows lowered so that a 16-image batch is sharded), stopped after
    epoch 1, resumed where the default is 1 thread: it takes the saved 2 and ends bit-exactly as the
    uninterrupted run; insisting on 1 thread is refused."""
    if parallel._blas_functions() is None:
        pytest.skip("no controllable BLAS: sharding is off, every layout is the same")
    monkeypatch.setitem(parallel._settings, "min_rows", 16)
    monkeypatch.setitem(parallel._settings, "threads", 2)
    assert len(parallel.shard_slices(16, TINY.num_tokens)) > 1
    train(TINY, HP, out_dir=tmp_path / "full", data=DATA, plots=False)
    train(TINY, HP, out_dir=tmp_path / "split", data=DATA, plots=False, stop_after_epoch=1)
    monkeypatch.setitem(parallel._settings, "threads", 1)
    with pytest.raises(ValueError, match="trained with 2 shard thread.*--threads 1"):
        train(out_dir=tmp_path / "split", data=DATA, plots=False, resume=True, threads=1)
    train(out_dir=tmp_path / "split", data=DATA, plots=False, resume=True)
    assert parallel.num_threads() == 2
    same_files(tmp_path / "full" / "checkpoint.npz", tmp_path / "split" / "checkpoint.npz")


# ---- SIGTERM ---------------------------------------------------------------------------------------------
def test_sigterm_saves_like_ctrl_c(tmp_path):
    def terminate(info):
        if info["step"] == 6:
            os.kill(os.getpid(), signal.SIGTERM)
    run = train(TINY, HP, out_dir=tmp_path / "r", data=DATA, plots=False, callback=terminate)
    assert run.status == "interrupted"
    meta = load_checkpoint(tmp_path / "r" / "checkpoint.npz")[2]
    assert (meta["epoch"], meta["batch"], meta["step"]) == (1, 2, 6)
    assert signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None) or callable(signal.getsignal(signal.SIGTERM))


# ---- hostile or careless inputs: one clear line each ------------------------------------------------------
def saved_checkpoint(tmp_path, **changes):
    """A valid checkpoint of TINY, with entries replaced by ``changes`` (name -> array)."""
    from vitnp import init_params
    from vitnp.io.npz import load_npz, save_npz
    from vitnp.training.rundir import save_checkpoint
    path = tmp_path / "c.npz"
    save_checkpoint(path, init_params(TINY), TINY, history=[{"epoch": 1}])
    arrays = dict(load_npz(path))
    arrays.update(changes)
    save_npz(path, arrays)
    return path


def test_a_checkpoint_config_beyond_sane_bounds_is_refused(tmp_path):
    """image_size 70000 with average pooling and no position table: every parameter shape still matches, so
    only a bound on the config stops `evaluate` from asking for terabytes."""
    cfg = TINY.to_dict()
    cfg.update(image_size=[70000, 70000], classifier="gap", pos_embedding="none")
    params = {k: v for k, v in __import__("vitnp").init_params(TINY).items() if k not in ("cls", "E_pos")}
    path = saved_checkpoint(tmp_path, config_json=np.array(json.dumps(cfg)))
    from vitnp.io.npz import load_npz, save_npz
    arrays = {k: v for k, v in load_npz(path).items() if k not in ("params/cls", "params/E_pos")}
    save_npz(path, arrays)
    assert set(params) == {k[len("params/"):] for k in arrays if k.startswith("params/")}
    with pytest.raises(ValueError, match="image_size .*70000 is beyond the limit"):
        load_checkpoint(path)


@pytest.mark.parametrize("entry, value, message", [
    ("history_json", '"not a list"', "history_json.*wrong shape"),
    ("history_json", "[1, 2]", "history_json.*wrong shape"),
    ("hparams_json", "[1]", "hparams_json.*wrong shape"),
    ("progress_json", "3", "progress_json.*wrong shape"),
    ("rng_json", '"x"', "rng_json.*wrong shape"),
    ("history_json", "{not json", "history_json.*not valid JSON")])
def test_malformed_json_entries_of_a_checkpoint_are_one_clear_error(tmp_path, entry, value, message):
    path = saved_checkpoint(tmp_path, **{entry: np.array(value)})
    with pytest.raises(ValueError, match=message):
        load_checkpoint(path)


def test_nan_parameters_are_refused(tmp_path):
    from vitnp import init_params
    E = init_params(TINY)["E"].copy()
    E[3, 4] = np.nan
    with pytest.raises(ValueError, match=r"NaN or Inf \('E'\)|NaN or Inf \(E\)"):
        load_checkpoint(saved_checkpoint(tmp_path, **{"params/E": E}))


def test_class_names_with_terminal_escapes_are_printed_escaped(tmp_path, capsys):
    names = [f"class{k}" for k in range(9)] + ["evil\x1b[2J\x07"]
    path = saved_checkpoint(tmp_path, class_names_json=np.array(json.dumps(names)))
    assert load_checkpoint(path)[2]["class_names"][-1] == "evil\\x1b[2J\\x07"
    assert main(["info", str(path)]) == 0
    assert "\x1b" not in capsys.readouterr().out


def test_a_fifo_as_checkpoint_fails_at_once(tmp_path):
    fifo = tmp_path / "ckpt.npz"
    os.mkfifo(fifo)
    done = subprocess.run([sys.executable, "-m", "vitnp", "info", str(fifo)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2 and "not a regular file" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("argv, message", [
    (["forward", "--batch-size", "0"], "empty batch"),
    (["bench", "--json", "/no/such/dir/b.json"], "--json /no/such/dir/b.json: cannot write there"),
    (["train", "--out", "RUN", "--warmup", "inf"], "warmup_epochs must be a finite number"),
    (["train", "--out", "RUN", "--resume", "--preset", "fast"], "drop preset")])
def test_small_mistakes_are_one_line_errors(tmp_path, capsys, argv, message):
    out = tmp_path / "run"
    if "--resume" in argv:
        train(TINY, HP.replace(epochs=1), out_dir=out, data=DATA, plots=False, stop_after_epoch=1)
    argv = [str(out) if a == "RUN" else a for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_memory_error_is_one_line(capsys):
    from vitnp.cli.main import _guarded

    def greedy(args):
        raise MemoryError("Unable to allocate 44.0 TiB for an array with shape (70000, 70000, 9000)")
    assert _guarded(greedy, None) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: out of memory: Unable to allocate 44.0 TiB") and err.count("\n") == 1
