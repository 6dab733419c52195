"""vitnp.training (trainer, fit, presets, specs, finetune's init_from): a ViT overfits one batch, resume is
bit-exact (epoch boundary, Ctrl-C mid-epoch, time budget), an interrupted checkpoint write leaves the previous
checkpoint intact.  Then the extensions: fine-tuning from a checkpoint (init_from, at 56×56 and with new
classes, resumable bit-exactly), class subsets, the CNN in the same trainer, the loop with a budget in steps
(fit's total_steps, eval_every), and training with the reference model (--reference) instead of the fast path.
The checkpoint files themselves are tests/test_rundir.py's; choosing on validation and reading the test set
once, tests/test_training_honest.py's; surviving crashes, tests/test_training_reliability.py's.

Everything runs on small synthetic uint8 images in memory or in a temp dir: no network, no real data.
"""
import json
import os
import signal

import numpy as np
import pytest

import vitnp.training.trainer as train_module
from vitnp import ViTConfig, init_params, vit_forward
from vitnp.training import finetune
from vitnp.cnn import CNNConfig
from vitnp.data import prepare_data
from vitnp.training.evaluation import evaluate_arrays
from vitnp.fast import parallel
from vitnp.training.finetune import adapt_params
from vitnp.training.fit import TrainState, fit, train_step
from vitnp.training.specs import MODELS, model_spec
from vitnp.optim import AdamW
from vitnp.training.presets import PRESETS, HParams, get_preset
from vitnp.training.rundir import FORMAT, load_checkpoint
from vitnp.training import train

from support import TINY, assert_same_arrays, band_data, bands

# synthetic.TINY has dropout (so the dropout RNG must be restored too); crop+flip augmentation (so must the
# data RNG): 64 training images in batches of 16 = 4 steps per epoch.
TINY_HP = HParams(epochs=3, batch_size=16, lr=3e-3, warmup_epochs=0.5, augment="crop+flip", eval_batch_size=13)


DATA = band_data()


def strip_timing(history):
    return [{k: v for k, v in line.items() if k not in ("seconds", "images_per_s")} for line in history]


def assert_same_run(dir_a, dir_b):
    """Final checkpoints hold bitwise-equal params and optimiser state; metrics equal except timing."""
    pa, _, ma = load_checkpoint(os.path.join(dir_a, "checkpoint.npz"))
    pb, _, mb = load_checkpoint(os.path.join(dir_b, "checkpoint.npz"))
    assert_same_arrays(pa, pb)
    assert_same_arrays(ma["optim"], mb["optim"])
    assert (ma["epoch"], ma["step"], ma["batch"]) == (mb["epoch"], mb["step"], mb["batch"])
    assert ma["rng"] == mb["rng"]

    def lines(d):
        with open(os.path.join(d, "metrics.jsonl")) as f:
            return strip_timing([json.loads(line) for line in f])
    assert lines(dir_a) == lines(dir_b)
    assert len(lines(dir_a)) == TINY_HP.epochs
    assert_same_arrays(load_checkpoint(os.path.join(dir_a, "best.npz"))[0],
                       load_checkpoint(os.path.join(dir_b, "best.npz"))[0])


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted 3-epoch run every resume test compares with."""
    out = tmp_path_factory.mktemp("uninterrupted")
    run = train(TINY, TINY_HP, out_dir=out, data=DATA)
    assert run.status == "completed"
    return str(out), run


# ---- the model can learn -----------------------------------------------------------------------------
def test_overfits_one_small_batch_to_100_percent():
    """16 images with arbitrary labels, 150 AdamW steps, no smoothing: every training label is memorised."""
    cfg = ViTConfig(image_size=8, patch_size=4, dim=32, depth=2, heads=2, mlp_dim=64)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 8, 8, 1)).astype(np.float32)
    y = rng.permutation(np.arange(16) % 10)
    params = init_params(cfg, seed=0)
    opt = AdamW(params, 3e-3)
    losses = [train_step(params, opt, x, y, cfg, lr=3e-3)[0] / 16 for _ in range(150)]
    logits, _ = vit_forward(params, x, cfg)                         # dropout off, after the last step
    assert (logits.argmax(1) == y).all(), f"train accuracy {(logits.argmax(1) == y).mean():.2f}"
    assert losses[0] > 2.0 and losses[-1] < 0.05                     # ln 10 = 2.30 at the zero head


def test_training_learns_the_synthetic_task():
    """Without augmentation (a 2-pixel crop would move the class bands) 60 steps learn the task."""
    cfg, hp = TINY.replace(dropout=0.0), TINY_HP.replace(epochs=15, lr=1e-2, augment="none", label_smoothing=0.0)
    run = train(cfg, hp, data=DATA)
    h = run.history
    assert [line["epoch"] for line in h] == list(range(1, 16)) and h[-1]["step"] == 15 * 4
    assert h[-1]["train_loss"] < 0.7 * h[0]["train_loss"]
    assert run.test["final"]["test_acc"] >= 0.6       # chance is 0.1; measured 0.83
    # the test split, read once at the end, is the final model's (and, no validation split, the best's)
    r = evaluate_arrays(run.params, cfg, DATA[2], DATA[3], batch_size=hp.eval_batch_size)
    assert r["accuracy"] == run.test["final"]["test_acc"] and r["loss"] == run.test["final"]["test_loss"]
    assert run.test["best"] == {**run.test["final"], "checkpoint": "best.npz"} and run.test["chosen_by"].startswith("last")
    assert r["confusion"].sum() == len(DATA[3])


def test_run_directory_contents(reference):
    out, run = reference
    for name in ("config.json", "metrics.jsonl", "checkpoint.npz", "best.npz", "curves.png", "confusion.png",
                 "predictions.png", "results.json"):
        assert os.path.isfile(os.path.join(out, name)), name
    assert not [f for f in os.listdir(out) if f.endswith(".tmp")]
    with open(os.path.join(out, "config.json")) as f:
        conf = json.load(f)
    assert ViTConfig.from_dict(conf["config"]) == TINY and HParams.from_dict(conf["hparams"]) == TINY_HP
    assert conf["steps_per_epoch"] == 4 and conf["data"]["n_train"] == 64
    with open(os.path.join(out, "metrics.jsonl")) as f:
        lines = [json.loads(line) for line in f]
    assert lines == run.history
    assert set(lines[0]) == {"epoch", "step", "train_loss", "train_acc", "lr", "seconds", "images_per_s"}
    with open(os.path.join(out, "curves.png"), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    # the checkpoint is plain arrays: numpy can read it with pickle off, and it describes itself
    with np.load(os.path.join(out, "checkpoint.npz"), allow_pickle=False) as z:
        assert str(z["format"]) == FORMAT
        assert ViTConfig.from_dict(json.loads(str(z["config_json"]))) == TINY
        assert "optim/m/E" in z.files and "params/head.W" in z.files and int(z["epoch"]) == 3


def test_same_seed_same_run_and_different_seed_differs(reference, tmp_path):
    out, run = reference
    again = train(TINY, TINY_HP, data=DATA)                       # in memory, no out_dir
    assert strip_timing(again.history) == strip_timing(run.history)
    assert_same_arrays(again.params, run.params)
    other = train(TINY, TINY_HP.replace(seed=1, epochs=1), data=DATA)
    assert other.params["E"].tobytes() != run.params["E"].tobytes()


# ---- bit-exact resume --------------------------------------------------------------------------------
def test_resume_after_epoch_2_is_bit_exact(reference, tmp_path):
    first = train(TINY, TINY_HP, out_dir=tmp_path, data=DATA, plots=False, stop_after_epoch=2)
    assert first.status == "stopped" and len(first.history) == 2
    assert load_checkpoint(tmp_path / "checkpoint.npz")[2]["epoch"] == 2
    second = train(out_dir=tmp_path, data=DATA, plots=False, resume=True)   # cfg, hparams: the checkpoint
    assert second.status == "completed" and second.cfg == TINY and second.hparams == TINY_HP
    assert_same_run(reference[0], tmp_path)


def test_ctrl_c_mid_epoch_saves_and_resumes_bit_exactly(reference, tmp_path):
    def press_ctrl_c(info):
        if info["epoch"] == 2 and info["batch"] == 2:
            os.kill(os.getpid(), signal.SIGINT)                    # the real signal, handled by train

    run = train(TINY, TINY_HP, out_dir=tmp_path, data=DATA, plots=False, callback=press_ctrl_c)
    assert run.status == "interrupted" and len(run.history) == 1
    meta = load_checkpoint(tmp_path / "checkpoint.npz")[2]
    assert (meta["epoch"], meta["batch"], meta["step"]) == (1, 2, 6)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler   # handler restored
    train(TINY, TINY_HP, out_dir=tmp_path, data=DATA, plots=False, resume=True)
    assert_same_run(reference[0], tmp_path)


def test_time_budget_stops_mid_epoch_and_resumes_bit_exactly(reference, tmp_path, monkeypatch):
    clock = iter(range(10**6))                                       # a fake clock: +1 s per reading
    monkeypatch.setattr(train_module.time, "perf_counter", lambda: float(next(clock)))
    run = train(TINY, TINY_HP.replace(max_minutes=3.5 / 60), out_dir=tmp_path, data=DATA, plots=False)   # 3.5 s
    assert run.status == "budget" and run.history == []
    meta = load_checkpoint(tmp_path / "checkpoint.npz")[2]
    assert meta["epoch"] == 0 and 0 < meta["batch"] < 4
    train(TINY, TINY_HP, out_dir=tmp_path, data=DATA, plots=False, resume=True)   # max_minutes may change
    assert_same_run(reference[0], tmp_path)


def test_interrupted_checkpoint_write_keeps_the_previous_one(reference, tmp_path, monkeypatch):
    """The epoch-2 checkpoint write dies half-way (simulated disk error inside the zip archive): the epoch-1
    checkpoint is intact, no temporary file remains, and resuming from it still gives the reference run."""
    real_write = np.lib.format.write_array
    state = {"armed": False, "calls": 0}

    def failing_write(*args, **kwargs):
        if state["armed"]:
            state["calls"] += 1
            if state["calls"] == 12:                                 # a dozen members into the archive
                raise OSError("No space left on device (simulated)")
        return real_write(*args, **kwargs)

    before = {}

    def snapshot_then_arm(info):
        if info["epoch"] == 2 and info["batch"] == 1:                # the epoch-1 checkpoint, as written
            before["bytes"] = (tmp_path / "checkpoint.npz").read_bytes()
        if info["epoch"] == 2 and info["batch"] == 4:                # the next write is epoch 2's
            state["armed"] = True

    monkeypatch.setattr(np.lib.format, "write_array", failing_write)
    with pytest.raises(OSError, match="simulated"):
        train(TINY, TINY_HP, out_dir=tmp_path, data=DATA, plots=False, callback=snapshot_then_arm)
    assert state["calls"] == 12
    monkeypatch.setattr(np.lib.format, "write_array", real_write)
    assert (tmp_path / "checkpoint.npz").read_bytes() == before["bytes"]   # untouched, byte for byte
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]
    assert load_checkpoint(tmp_path / "checkpoint.npz")[2]["epoch"] == 1
    train(TINY, TINY_HP, out_dir=tmp_path, data=DATA, plots=False, resume=True)
    assert_same_run(reference[0], tmp_path)


def test_resume_refuses_other_settings_or_data(reference, tmp_path):
    train(TINY, TINY_HP, out_dir=tmp_path, data=DATA, plots=False, stop_after_epoch=1)
    with pytest.raises(ValueError, match="lr"):
        train(TINY, TINY_HP.replace(lr=1e-3), out_dir=tmp_path, data=DATA, plots=False, resume=True)
    with pytest.raises(ValueError, match="depth"):
        train(TINY.replace(depth=2), TINY_HP, out_dir=tmp_path, data=DATA, plots=False, resume=True)
    with pytest.raises(ValueError, match="data differ"):
        train(out_dir=tmp_path, data=(*bands(64, 5), *bands(30, 6)), resume=True)
    with pytest.raises(FileExistsError, match="already holds a run"):
        train(TINY, TINY_HP, out_dir=tmp_path, data=DATA, plots=False)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        train(out_dir=tmp_path / "empty", data=DATA, resume=True)


def test_bad_data_are_refused():
    x, y, tx, ty = DATA
    with pytest.raises(TypeError, match="uint8"):
        train(TINY, TINY_HP, data=(x.astype(np.float32), y, tx, ty))
    with pytest.raises(ValueError, match="config needs 28x28x1"):             # images of another size are
        train(TINY, TINY_HP, data=(np.repeat(x, 3, axis=3), y, tx, ty))       # resized; channels must match
    with pytest.raises(ValueError, match="labels must lie"):
        train(TINY.replace(num_classes=5), TINY_HP, data=DATA)
    with pytest.raises(ValueError, match="larger than"):
        train(TINY, TINY_HP.replace(batch_size=65), data=DATA)




# ---- presets -----------------------------------------------------------------------------------------
def test_presets_are_valid_and_hparams_validate():
    for name in PRESETS:
        cfg, hp = get_preset(name)
        assert cfg.image_size == (28, 28) and cfg.in_channels == 1 and cfg.num_classes == 10
        assert HParams.from_dict(hp.to_dict()) == hp
    with pytest.raises(ValueError, match="unknown preset"):
        get_preset("huge")
    for bad in (dict(epochs=0), dict(lr=-1.0), dict(augment="rotate"), dict(label_smoothing=1.0),
                dict(batch_size=2.5), dict(max_minutes=0)):
        with pytest.raises(ValueError):
            HParams(**bad)
    with pytest.raises(ValueError, match="unknown HParams"):
        HParams.from_dict({"epochz": 3})


# ---- class subsets and image size ---------------------------------------------------------------------
def test_hparams_classes_validate_and_round_trip():
    hp = HParams(classes=[7, 2, 5])
    assert hp.classes == (7, 2, 5) and HParams.from_dict(json.loads(json.dumps(hp.to_dict()))) == hp
    assert HParams().classes == ()
    for bad in ((1, 1), (-1,), ("a",), 3, (True,)):
        with pytest.raises(ValueError, match="classes"):
            HParams(classes=bad)


def test_classes_must_match_num_classes_and_exist():
    with pytest.raises(ValueError, match=r"are 3 classes, but the model has num_classes=10.*--num-classes 3"):
        train(TINY, TINY_HP.replace(classes=(7, 2, 5)), data=DATA)
    x, y, tx, ty = DATA
    no_fives = y != 5
    with pytest.raises(ValueError, match=r"classes \[7, 2, 5\], train data: class\(es\) \[5\] have no examples"):
        train(TINY.replace(num_classes=3), TINY_HP.replace(classes=(7, 2, 5)),
              data=(x[no_fives], y[no_fives], tx, ty))
    with pytest.raises(ValueError, match="set num_classes to 10"):
        train(TINY.replace(num_classes=4), TINY_HP, data=DATA)


def test_a_class_subset_run_records_its_classes_and_names(tmp_path):
    cfg, hp = TINY.replace(num_classes=3), TINY_HP.replace(classes=(7, 2, 5), epochs=1, batch_size=4)
    run = train(cfg, hp, out_dir=tmp_path, data=DATA)
    assert run.last_eval["confusion"].shape == (3, 3) and run.last_eval["confusion"].sum() == 9
    conf = json.loads((tmp_path / "config.json").read_text())
    assert conf["class_names"] == ["Sneaker", "Pullover", "Sandal"] and conf["data"]["classes"] == [7, 2, 5]
    for name in ("checkpoint.npz", "best.npz"):
        _, _, meta = load_checkpoint(tmp_path / name)
        assert meta["class_names"] == ["Sneaker", "Pullover", "Sandal"]
        assert meta["data"] == {"classes": [7, 2, 5], "source_size": [28, 28]}
        assert tuple(meta["hparams"]["classes"]) == (7, 2, 5)


# ---- fine-tuning from a checkpoint --------------------------------------------------------------------
def test_init_from_starts_from_the_adapted_weights(reference, tmp_path):
    """lr = 0 leaves the parameters where they started: exactly adapt_params of the checkpoint's."""
    source = os.path.join(reference[0], "best.npz")
    src_params, src_cfg, src_meta = load_checkpoint(source)
    cfg = TINY.replace(image_size=56)
    frozen = TINY_HP.replace(epochs=1, lr=0.0)
    run = train(cfg, frozen, out_dir=tmp_path / "a", data=DATA, init_from=source)
    assert_same_arrays(run.params, adapt_params(src_params, src_cfg, cfg))
    assert run.params["E_pos"].shape == (65, 16) and run.params["head.W"].any()    # same classes: head kept
    conf = json.loads((tmp_path / "a" / "config.json").read_text())
    assert conf["init_from"] == source and conf["init"]["epoch"] == src_meta["epoch"] >= 1
    assert "E_pos interpolated from the 4x4 to the 8x8 patch grid" in conf["init"]["adapted"]
    assert conf["data"]["image_size"] == [56, 56] and conf["data"]["source_size"] == [28, 28]
    meta = load_checkpoint(tmp_path / "a" / "checkpoint.npz")[2]
    assert meta["init_from"]["path"] == source and meta["step"] == 4 and int(meta["optim"]["step"]) == 4
    # other classes: a new zero head (3 classes), the body copied
    run = train(TINY.replace(num_classes=3), frozen.replace(classes=(7, 2, 5), batch_size=4), data=DATA,
                init_from=source)
    assert not run.params["head.W"].any() and run.params["head.W"].shape == (16, 3)
    assert run.params["blocks.0.mlp.W1"].tobytes() == src_params["blocks.0.mlp.W1"].tobytes()
    # as many classes, but other ones: the head is new too
    others = train(TINY, frozen.replace(classes=(9, 8, 7, 6, 5, 4, 3, 2, 1, 0)), data=DATA, init_from=source)
    assert not others.params["head.W"].any()


def test_a_fine_tuning_run_resumes_bit_exactly(reference, tmp_path):
    source = os.path.join(reference[0], "best.npz")
    cfg = TINY.replace(image_size=56)
    full = train(cfg, TINY_HP, out_dir=tmp_path / "full", data=DATA, plots=False, init_from=source)
    assert full.status == "completed" and len(full.history) == 3
    first = train(cfg, TINY_HP, out_dir=tmp_path / "split", data=DATA, plots=False, init_from=source,
                  stop_after_epoch=1)
    assert first.status == "stopped"
    with pytest.raises(ValueError, match="init_from starts a new run"):
        train(out_dir=tmp_path / "split", data=DATA, resume=True, init_from=source)
    train(out_dir=tmp_path / "split", data=DATA, plots=False, resume=True)
    assert_same_run(tmp_path / "full", tmp_path / "split")
    conf = json.loads((tmp_path / "split" / "config.json").read_text())           # rewritten on resume
    assert conf["init_from"] == source and conf["init"]["md5"]


def test_init_from_errors_are_clear(reference, tmp_path):
    source = os.path.join(reference[0], "best.npz")
    with pytest.raises(FileNotFoundError, match="init_from: .*no such file"):
        train(TINY, TINY_HP, data=DATA, init_from=tmp_path / "nothing.npz")
    (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(ValueError, match="init_from: .*corrupt"):
        train(TINY, TINY_HP, data=DATA, init_from=tmp_path / "junk.npz")
    with pytest.raises(ValueError) as e:
        train(TINY.replace(dim=32, heads=2), TINY_HP, data=DATA, init_from=source)
    assert "\n" not in str(e.value) and "dim: 16 (old) vs 32 (new)" in str(e.value) and source in str(e.value)
    with pytest.raises(ValueError, match="cannot adapt a VIT"):
        train(CNNConfig(channels=(4, 8)), TINY_HP, data=DATA, init_from=source)


# ---- the CNN in the same trainer ----------------------------------------------------------------------
def test_models_table_dispatches_on_the_config_type():
    assert model_spec(TINY) is MODELS["vit"] and model_spec(CNNConfig()) is MODELS["cnn"]
    assert model_spec("cnn").count(CNNConfig()) == 50186                  # the module docstring's count
    with pytest.raises(TypeError, match="cfg must be one of ViTConfig, CNNConfig"):
        model_spec({"dim": 16})
    with pytest.raises(ValueError, match="unknown model kind 'rnn'"):
        model_spec("rnn")


def test_cnn_learns_the_synthetic_task_and_resumes_bit_exactly(tmp_path):
    cnn = CNNConfig(channels=(4, 8), dropout=0.1)
    hp = TINY_HP.replace(epochs=3)
    full = train(cnn, hp, out_dir=tmp_path / "full", data=DATA, plots=False)
    first = train(cnn, hp, out_dir=tmp_path / "split", data=DATA, plots=False, stop_after_epoch=2)
    assert first.status == "stopped"
    second = train(out_dir=tmp_path / "split", data=DATA, plots=False, resume=True)
    assert second.cfg == cnn and isinstance(second.cfg, CNNConfig)
    assert_same_run(tmp_path / "full", tmp_path / "split")
    params, cfg, meta = load_checkpoint(tmp_path / "full" / "best.npz")
    assert cfg == cnn and meta["model"] == "cnn" and set(params) == {"conv1.W", "conv1.b", "conv2.W", "conv2.b",
                                                                     "head.W", "head.b"}
    conf = json.loads((tmp_path / "full" / "config.json").read_text())
    assert conf["model"] == "cnn" and conf["parameters"] == model_spec(cnn).count(cnn)
    r = evaluate_arrays(full.params, cnn, DATA[2], DATA[3], batch_size=hp.eval_batch_size)
    assert r["accuracy"] == full.test["final"]["test_acc"]
    # the same budget rules: no augmentation, more steps, and the CNN learns the bands
    learn = train(CNNConfig(channels=(4, 8)), TINY_HP.replace(epochs=15, lr=1e-2, augment="none",
                                                                label_smoothing=0.0), data=DATA)
    assert learn.test["final"]["test_acc"] >= 0.6                     # chance is 0.1; measured 1.0


# ---- review fixes ----------------------------------------------------------------------------------------
def test_resume_keeps_the_preset_in_config_json(tmp_path):
    """The resumed call passes no preset; config.json must still name the original run's."""
    hp = TINY_HP.replace(epochs=2, augment="none")
    train(TINY, hp, out_dir=tmp_path, data=DATA, preset="fast", plots=False, stop_after_epoch=1)
    assert json.loads((tmp_path / "config.json").read_text())["preset"] == "fast"
    run = train(out_dir=tmp_path, data=DATA, resume=True, plots=False)
    assert run.status == "completed"
    assert json.loads((tmp_path / "config.json").read_text())["preset"] == "fast"


def test_init_from_without_cfg_takes_the_checkpoints_config(reference, tmp_path):
    """train(init_from=path) with cfg=None: the model is the checkpoint's (as on the command line), not the
    fmnist preset's hybrid, which would not fit a plain-ViT source."""
    source = os.path.join(reference[0], "best.npz")
    src_params, src_cfg, _ = load_checkpoint(source)
    run = train(None, TINY_HP.replace(epochs=1, lr=0.0), data=DATA, init_from=source)
    assert run.cfg == src_cfg
    assert_same_arrays(run.params, src_params)                        # lr 0: exactly the source's weights


def test_init_from_is_read_once(reference, tmp_path, monkeypatch):
    """The command line reads --init-from once (its config and its weights), not twice."""
    from vitnp.cli.main import main
    calls = []
    real = finetune.load_init

    def counting(path):
        calls.append(path)
        return real(path)

    monkeypatch.setattr(finetune, "load_init", counting)
    data = tmp_path / "data"
    data.mkdir()
    from vitnp.data import write_idx
    for name, array in (("train-images-idx3-ubyte", DATA[0][..., 0]), ("train-labels-idx1-ubyte", DATA[1]),
                        ("t10k-images-idx3-ubyte", DATA[2][..., 0]), ("t10k-labels-idx1-ubyte", DATA[3])):
        write_idx(str(data / name), array.astype(np.uint8))
    source = os.path.join(reference[0], "best.npz")
    assert main(["train", "--out", str(tmp_path / "ft"), "--data", str(data), "--no-verify", "--quiet",
                 "--init-from", source, "--epochs", "1", "--batch-size", "16", "--lr", "0", "--val-size", "0"]) == 0
    assert calls == [source]


def test_the_names_notebooks_import_from_train_are_the_ones_of_their_modules():
    from vitnp import cnn, config, model
    from vitnp.training import specs as models
    from vitnp.training import rundir
    assert train_module.model_spec is models.model_spec and train_module.describe_model is models.describe_model
    assert train_module.train_step is train_step and train_module.load_checkpoint is rundir.load_checkpoint
    assert train_module.save_checkpoint is rundir.save_checkpoint
    assert model.check_arrays is config.check_arrays is cnn.check_arrays          # one implementation
    assert models.describe_model(TINY) == "ViT P=7 D=16 L=1 k=2 M=32 K=10"
    assert models.describe_model(TINY.replace(stem_channels=(4,), stem_pool=1)).endswith(" stem=4")


# ---- the loop on its own: a budget in steps, evaluations every k steps ---------------------------------
def test_fit_evaluates_every_k_steps_without_changing_the_training(reference):
    """Evaluations draw no random numbers: evaluating every 2 steps ends with the parameters of the
    reference run, which evaluated once per epoch; the metrics lines are per evaluation."""
    _, ref = reference
    splits = prepare_data(DATA, TINY, TINY_HP)
    state = TrainState.start(init_params(TINY, seed=TINY_HP.seed), TINY_HP)
    run = fit(state, TINY, TINY_HP, splits, eval_every=2)
    assert run.status == "completed" and [line["step"] for line in run.history] == [2, 4, 6, 8, 10, 12]
    assert [line["epoch"] for line in run.history] == [0.5, 1, 1.5, 2, 2.5, 3]
    assert_same_arrays(run.params, ref.params)
    assert run.history[-1]["test_acc"] == ref.test["final"]["test_acc"]     # the script's curve: the same model
    assert (state.epoch, state.batch, state.step) == (3, 0, 12)


def test_fit_with_total_steps_is_the_loop_written_out():
    """fit(total_steps=S, warmup_steps=W) is S steps of train_step on iterate_batches, epoch after epoch, with
    warm-up + cosine over S steps: what scripts/inductive_bias.py did by hand before it called fit."""
    from vitnp.data import augmentation, iterate_batches
    from vitnp.optim import warmup_cosine
    hp, S, W = TINY_HP, 10, 3                                          # 4 steps per epoch: 2.5 epochs
    splits = prepare_data(DATA, TINY, hp)
    run = fit(TrainState.start(init_params(TINY, seed=hp.seed), hp), TINY, hp, splits, total_steps=S,
              eval_every=S, warmup_steps=W)
    assert [(line["step"], line["epoch"]) for line in run.history] == [(10, 2.5)]
    params = init_params(TINY, seed=hp.seed)
    opt = AdamW(params, hp.lr, betas=(hp.beta1, hp.beta2), eps=hp.eps, weight_decay=hp.weight_decay)
    data_rng, drop_rng = np.random.default_rng([hp.seed, 1]), np.random.default_rng([hp.seed, 2])
    step = 0
    while step < S:
        for x, y in iterate_batches(*splits["train"], hp.batch_size, rng=data_rng, drop_last=True,
                                    augment=augmentation(hp.augment, hp.crop_padding)):
            train_step(params, opt, x, y, TINY, lr=warmup_cosine(step, S, W, hp.lr, hp.final_lr),
                       label_smoothing=hp.label_smoothing, clip=hp.clip_grad_norm, rng=drop_rng)
            step += 1
            if step == S:
                break
    assert_same_arrays(run.params, params)
    assert run.last_eval["accuracy"] == evaluate_arrays(params, TINY, *splits["test"])["accuracy"]


def test_fit_refuses_what_it_cannot_do(tmp_path):
    from vitnp.training.rundir import RunDir
    splits = prepare_data(DATA, TINY, TINY_HP)
    state = TrainState.start(init_params(TINY), TINY_HP)
    run_dir = RunDir(tmp_path, TINY, TINY_HP, names=[str(k) for k in range(10)], data_info={})
    with pytest.raises(ValueError, match="epoch ends"):
        fit(state, TINY, TINY_HP, splits, eval_every=3, run_dir=run_dir)
    with pytest.raises(ValueError, match="eval_every"):
        fit(state, TINY, TINY_HP, splits, eval_every=0)
    assert state.step == 0 and not os.listdir(tmp_path)


# ---- --reference: the reference model trains like the fast path ------------------------------------------
def test_reference_training_gives_the_fast_paths_numbers(tmp_path, monkeypatch):
    """One epoch with the reference model (vitnp.model) and one with the fast path (vitnp.fast), sharding off:
    the same losses and accuracies up to float32 rounding; config.json says which one trained."""
    monkeypatch.setitem(parallel._settings, "threads", 1)            # no shards: the same order of sums
    cfg, hp = TINY.replace(dropout=0.0), TINY_HP.replace(epochs=1)
    steps = {}

    def losses(name):
        return lambda info: steps.setdefault(name, []).append(info["loss"])

    fast = train(cfg, hp, out_dir=tmp_path / "fast", data=DATA, plots=False, callback=losses("fast"))
    ref = train(cfg, hp, out_dir=tmp_path / "ref", data=DATA, plots=False, callback=losses("ref"), reference=True)
    assert len(steps["ref"]) == len(steps["fast"]) == 4
    np.testing.assert_allclose(steps["ref"], steps["fast"], rtol=1e-4)
    a, b = {**fast.history[0], **fast.test["final"]}, {**ref.history[0], **ref.test["final"]}
    for key in ("train_loss", "test_loss"):
        assert b[key] == pytest.approx(a[key], rel=1e-4), key
    assert b["train_acc"] == a["train_acc"] and b["test_acc"] == a["test_acc"]
    for name, forward in (("fast", "vitnp.fast.model.vit_forward"), ("ref", "vitnp.model.vit_forward")):
        impl = json.loads((tmp_path / name / "config.json").read_text())["implementation"]
        assert impl["forward"] == forward and impl["reference"] == (name == "ref")


def test_a_resumed_run_may_switch_to_the_reference_model(tmp_path):
    hp = TINY_HP.replace(epochs=2)
    train(TINY, hp, out_dir=tmp_path, data=DATA, plots=False, stop_after_epoch=1)
    run = train(out_dir=tmp_path, data=DATA, plots=False, resume=True, reference=True)
    assert run.status == "completed" and len(run.history) == 2
    assert json.loads((tmp_path / "config.json").read_text())["implementation"]["reference"] is True
    cnn = train(CNNConfig(channels=(4, 8)), hp.replace(epochs=1), data=DATA, reference=True)   # one implementation
    assert cnn.status == "completed"
