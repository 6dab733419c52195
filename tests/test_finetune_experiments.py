"""vitnp.experiments.fine_tuning through its command line (scripts/finetune_experiments.py) end to end, on tiny synthetic IDX data and a tiny checkpoint (no network).

The data are 28×28 images with the official Fashion-MNIST file names (hence --no-verify): class k is a bright band
at rows 2k … 2k+5 over noise.  The checkpoint is a ViT with D=8, L=1 trained for two epochs on them, so its
recorded test accuracy is something the script must reproduce.  Checked: the results.json schema and its
numbers against independent computations, the recorded command lines (re-run through ``python -m vitnp
train``), resuming (finished parts skipped, a removed part re-made identically), and clear errors.
"""
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vitnp import ViTConfig
from vitnp.cli import experiments as experiments_cli
from vitnp.experiments import fine_tuning as fx
from vitnp.data import resize_images, write_idx
from vitnp.training.evaluation import evaluate_arrays
from vitnp.training.finetune import adapt_params
from vitnp.training.presets import HParams
from vitnp.training import load_checkpoint, train

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "finetune_experiments.py"
main = experiments_cli.fine_tuning_main           # what the script runs

N_TRAIN, N_TEST, BATCH = 300, 100, 16
TINY = ViTConfig(image_size=28, patch_size=7, dim=8, depth=1, heads=2, mlp_dim=16)


def make_data(directory, seed=0):
    rng = np.random.default_rng(seed)
    arrays = []
    for n, names in ((N_TRAIN, ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz")),
                     (N_TEST, ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"))):
        y = np.arange(n) % 10
        x = rng.integers(0, 60, (n, 28, 28)).astype(np.uint8)
        for k in range(10):
            x[y == k, 2 * k:2 * k + 6, 4:24] += 150                 # class k: a band at rows 2k … 2k+5
        write_idx(os.path.join(directory, names[0]), x)
        write_idx(os.path.join(directory, names[1]), y)
        arrays += [x[..., None], y]
    return tuple(arrays)                                              # train_x, train_y, test_x, test_y


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Synthetic data, a tiny trained checkpoint, and one full run of the script (shared, read-only)."""
    root = tmp_path_factory.mktemp("fx")
    data = root / "data"
    data.mkdir()
    arrays = make_data(data)
    train(TINY, HParams(epochs=2, batch_size=BATCH, lr=3e-3, augment="flip", warmup_epochs=0.5),
          out_dir=root / "tiny", data=arrays, plots=False)
    ckpt = root / "tiny" / "checkpoint.npz"
    out = root / "out"
    argv = base_argv(data, ckpt, out) + ["--figures", str(root / "figures")]
    rc = main(argv)
    assert rc == 0
    return {"root": root, "data": data, "arrays": arrays, "ckpt": ckpt, "out": out, "argv": argv,
            "results": json.loads((out / "results.json").read_text())}


def base_argv(data, ckpt, out):
    return ["--out", str(out), "--data", str(data), "--no-verify", "--checkpoint", str(ckpt),
            "--batch-size", str(BATCH), "--res-epochs", "1", "--pretrain-epochs", "1", "--transfer-epochs", "2",
            "--transfer-warmup", "0.5", "--transfer-subset", "40", "--seeds", "0,1", "--res-longer-epochs", "2"]


def test_results_schema_and_numbers(setup):
    r = setup["results"]
    assert r["format"] == "vitnp-finetune-experiments/1"
    assert r["settings"]["seeds"] == [0, 1] and r["settings"]["transfer_subset"] == 40
    res, tr = r["resolution"], r["transfer"]
    assert set(fx.RESOLUTION_PARTS) <= set(res)
    assert res["setup"]["grid_base"] == [4, 4] and res["setup"]["grid_high"] == [8, 8]     # same P, N: 16 -> 64
    steps = N_TRAIN // BATCH                                           # one epoch, the last short batch dropped
    assert res["finetune_high"]["steps"] == res["continue_base"]["steps"] == steps
    assert res["finetune_high"]["image_size"] == [56, 56] and res["continue_base"]["image_size"] == [28, 28]
    assert res["eval_base"]["steps"] == 0 and res["eval_high_interpolated"]["n"] == N_TEST
    assert res["finetune_high_2ep"]["steps"] == res["continue_base_2ep"]["steps"] == 2 * steps    # the longer budget
    assert res["finetune_high_2ep"]["image_size"] == [56, 56] and res["finetune_high_2ep"]["epochs"] == 2

    # eval_base reproduces the accuracy the training run recorded for the checkpoint (same data, same code)
    params, cfg, meta = load_checkpoint(setup["ckpt"])
    tiny = json.loads((setup["root"] / "tiny" / "results.json").read_text())
    assert res["eval_base"]["test_acc"] == tiny["final"]["test_acc"]
    # eval_high_interpolated: E_pos interpolated to the 8×8 grid, test images upsampled, no training
    _, _, test_x, test_y = setup["arrays"]
    cfg56 = cfg.replace(image_size=56)
    ev = evaluate_arrays(adapt_params(params, cfg, cfg56), cfg56, resize_images(test_x, 56), test_y)
    assert res["eval_high_interpolated"]["test_acc"] == ev["accuracy"]

    assert set(tr) == {"setup", "pretrain", "finetune", "scratch", "probe", "finetune_alt_lr", "scratch_alt_lr",
                       "summary"}
    assert tr["setup"]["n_target_train"] == 150 and tr["setup"]["target_fraction"] == pytest.approx(40 / 150)
    assert tr["pretrain"]["hparams"]["classes"] == [0, 1, 2, 3, 4]
    for part in ("finetune", "scratch", "probe", "finetune_alt_lr", "scratch_alt_lr"):
        assert sorted(tr[part]) == ["seed_0", "seed_1"]
        for seed in (0, 1):
            rec = tr[part][f"seed_{seed}"]
            assert rec["hparams"]["seed"] == seed and rec["hparams"]["classes"] == [5, 6, 7, 8, 9]
            assert rec["hparams"]["lr"] == (3e-3 if part.endswith("alt_lr") else 1e-3)
            assert len(rec["history"]) == 2 and rec["steps"] == 2 * (40 // BATCH)
            assert 0.0 <= rec["test_acc"] <= 1.0 and rec["test_acc"] == rec["history"][-1]["test_acc"]
    # fine-tune and scratch share steps, schedule and augmentation: only the initial weights differ
    for seed in (0, 1):
        assert tr["finetune"][f"seed_{seed}"]["hparams"] == tr["scratch"][f"seed_{seed}"]["hparams"]
        assert tr["finetune_alt_lr"][f"seed_{seed}"]["hparams"] == tr["scratch_alt_lr"][f"seed_{seed}"]["hparams"]
    s = tr["summary"]
    accs = [tr["finetune"][f"seed_{k}"]["test_acc"] for k in (0, 1)]
    assert s["finetune"]["n"] == 2 and s["finetune"]["mean"] == pytest.approx(np.mean(accs))
    assert s["finetune"]["std"] == pytest.approx(np.std(accs, ddof=1))
    gains = [tr["finetune"][f"seed_{k}"]["test_acc"] - tr["scratch"][f"seed_{k}"]["test_acc"] for k in (0, 1)]
    assert s["finetune_minus_scratch"]["mean"] == pytest.approx(np.mean(gains))
    assert set(s) == {"finetune", "scratch", "probe", "finetune_alt_lr", "scratch_alt_lr", "finetune_minus_scratch",
                      "finetune_minus_scratch_alt_lr"}

    # the run directories say where the weights came from and what was adapted
    run_cfg = json.loads((setup["out"] / res["finetune_high"]["run_dir"] / "config.json").read_text())
    assert "E_pos interpolated from the 4x4 to the 8x8 patch grid" in run_cfg["init"]["adapted"]
    run_cfg = json.loads((setup["out"] / tr["finetune"]["seed_0"]["run_dir"] / "config.json").read_text())
    assert run_cfg["init"]["adapted"] == "new zero head for 5 classes"
    run_cfg = json.loads((setup["out"] / tr["scratch"]["seed_0"]["run_dir"] / "config.json").read_text())
    assert run_cfg["init"] is None

    # outputs: the figure, and with --figures the same JSON under its published name
    for png in (setup["out"] / "transfer.png", setup["root"] / "figures" / "transfer.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((setup["root"] / "figures" / "finetune.json").read_text()) == r
    assert not [p for p in os.listdir(setup["out"]) if p.endswith(".tmp")]


def test_probe_trains_only_a_head_on_the_frozen_body(setup):
    """The probe's features are the body's y = LN(z_L⁰): an identity head returns exactly the pre-head vector."""
    tr = setup["results"]["transfer"]
    body, cfg, _ = load_checkpoint(setup["out"] / tr["pretrain"]["run_dir"] / "checkpoint.npz")
    x = np.random.default_rng(0).standard_normal((3, 28, 28, 1)).astype(np.float32)
    from vitnp import vit_forward
    p = dict(body, **{"head.W": np.eye(8, dtype=np.float32), "head.b": np.zeros(8, np.float32)})
    feats, _ = vit_forward(p, x, cfg.replace(num_classes=8))
    logits, _ = vit_forward(body, x, cfg)
    np.testing.assert_allclose(feats @ body["head.W"] + body["head.b"], logits, rtol=1e-5, atol=1e-6)
    assert tr["probe"]["seed_0"]["history"][-1]["step"] == tr["finetune"]["seed_0"]["steps"]


def test_recorded_commands_reproduce_the_runs(setup, tmp_path):
    """The `python -m vitnp train` lines in results.json give the same numbers as the script's own runs."""
    from vitnp.cli.main import main as vitnp_main
    r = setup["results"]
    commands = r["commands"]
    assert set(commands) == {"resolution.finetune_high", "resolution.continue_base", "resolution.finetune_high_2ep",
                             "resolution.continue_base_2ep", "transfer.pretrain", "transfer.probe",
                             *(f"transfer.{p}.seed_{k}" for p in ("finetune", "scratch") for k in (0, 1)),
                             *(f"transfer.{p}_alt_lr.seed_{k}" for p in ("finetune", "scratch") for k in (0, 1))}
    pretrain = setup["out"] / r["transfer"]["pretrain"]["run_dir"]
    for key, rec in (("resolution.finetune_high", r["resolution"]["finetune_high"]),
                     ("transfer.pretrain", r["transfer"]["pretrain"]),
                     ("transfer.scratch.seed_1", r["transfer"]["scratch"]["seed_1"]),
                     ("transfer.finetune.seed_1", r["transfer"]["finetune"]["seed_1"])):
        run_dir = tmp_path / key
        cmd = commands[key].replace("PRETRAIN", str(pretrain)).replace("RUN", str(run_dir))
        cmd = shlex.split(cmd)                                           # as a shell would split it
        assert cmd[:4] == ["python", "-m", "vitnp", "train"]
        rc = vitnp_main(cmd[3:] + ["--data", str(setup["data"]), "--no-verify", "--quiet"])
        assert rc in (0, None)
        lines = [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines()]
        assert [l["test_acc"] for l in lines] == [h["test_acc"] for h in rec["history"]], key
        assert [l["train_loss"] for l in lines] == [h["train_loss"] for h in rec["history"]], key


def test_resume_skips_finished_parts_and_remakes_missing_ones(setup, tmp_path, capsys):
    out = tmp_path / "out"
    shutil.copytree(setup["out"], out)
    results = json.loads((out / "results.json").read_text())
    removed = results["transfer"]["scratch"].pop("seed_1")             # as if the run stopped before it
    shutil.rmtree(out / removed["run_dir"])
    kept = results["transfer"]["finetune"]["seed_0"]                   # recorded, but its run dir is resumable
    del results["transfer"]["finetune"]["seed_0"]
    (out / "results.json").write_text(json.dumps(results))
    stamps = {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*/checkpoint.npz")}
    capsys.readouterr()
    argv = base_argv(setup["data"], setup["ckpt"], out)
    assert main(argv) == 0
    printed = capsys.readouterr().out
    ran = [line.split(":")[0][3:] for line in printed.splitlines() if line.startswith("== ")]
    assert ran == ["transfer_finetune_seed_0", "transfer_scratch_seed_1"]
    assert "resuming" in printed.split("== transfer_finetune_seed_0")[1].splitlines()[0]
    new = json.loads((out / "results.json").read_text())
    for key in ("history", "test_acc", "steps", "hparams"):                  # deterministic: the same numbers
        assert new["transfer"]["scratch"]["seed_1"][key] == removed[key]
        assert new["transfer"]["finetune"]["seed_0"][key] == kept[key]
    assert new["transfer"]["finetune"]["seed_0"]["resumed"] is True
    for path, stamp in stamps.items():                                  # nothing finished was trained again
        assert path.stat().st_mtime_ns == stamp, path
    assert new["resolution"] == setup["results"]["resolution"]
    # a second call with nothing left to do runs no part at all
    assert main(argv) == 0
    assert "== " not in capsys.readouterr().out


def test_other_settings_on_the_same_out_are_refused(setup, tmp_path, capsys):
    out = tmp_path / "out"
    shutil.copytree(setup["out"], out)
    before = (out / "results.json").read_text()
    argv = base_argv(setup["data"], setup["ckpt"], out) + ["--transfer-lr", "0.01"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "other settings" in err and "transfer_lr: 0.001 (saved) vs 0.01" in err
    assert (out / "results.json").read_text() == before                 # untouched


@pytest.mark.parametrize("extra, message", [
    (["--seeds", "a,b"], "--seeds: expected comma-separated integers"),
    (["--seeds", "1,1"], "--seeds must be distinct"),
    (["--pretrain-classes", "0-5"], "must not share a class"),
    (["--target-classes", "5-x"], "--target-classes: '5-x' is not a class index"),
    (["--batch-size", "0"], "--batch-size must be a positive integer"),
    (["--transfer-lr", "-1"], "--transfer-lr must be > 0"),
    (["--high-res", "30"], "--high-res 30: image_size: H=30 is not divisible by patch_size P=7"),
    (["--transfer-subset", "151", "--only", "transfer"], "--transfer-subset 151 exceeds the 150 training images"),
])
def test_bad_arguments_give_one_clear_error(setup, tmp_path, capsys, extra, message):
    out = tmp_path / "out"
    assert main(base_argv(setup["data"], setup["ckpt"], out) + extra) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err
    assert not out.exists()                                             # refused before writing anything


def test_missing_checkpoint_or_data(setup, tmp_path, capsys):
    assert main(base_argv(setup["data"], tmp_path / "nope.npz", tmp_path / "o1")) == 2
    assert "--checkpoint: no such file" in capsys.readouterr().err
    (tmp_path / "bad.npz").write_bytes(b"not an npz")
    assert main(base_argv(setup["data"], tmp_path / "bad.npz", tmp_path / "o2")) == 2
    assert capsys.readouterr().err.startswith("error: --checkpoint: ")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(base_argv(empty, setup["ckpt"], tmp_path / "o3")) == 2
    assert "error: " in capsys.readouterr().err
    assert not any((tmp_path / o).exists() for o in ("o1", "o2", "o3"))     # nothing written on a bad start


def test_help():
    proc = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0
    assert "--out DIR" in proc.stdout and "--checkpoint" in proc.stdout and "--seeds" in proc.stdout
