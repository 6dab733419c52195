"""The command line: --help, a tiny train / evaluate / predict / info in a temp dir, resume through the CLI,
and clear one-line errors (exit status 2, no traceback) for bad paths, corrupt and mismatched files.

The data are synthetic IDX files with the official Fashion-MNIST names (hence --no-verify); no network.
"""
import json
import os
import subprocess
import sys

import matplotlib.image as mpimg
import numpy as np
import pytest

from vitnp.__main__ import main
from vitnp.checkpoint import load_npz, save_npz
from vitnp.config import ViTConfig, count_params
from vitnp.data import FASHION_MNIST_CLASSES, write_idx
from vitnp.evaluate import image_to_input, predict_proba, resize_area
from vitnp.train import load_checkpoint

TINY_FLAGS = ["--preset", "fast", "--epochs", "2", "--batch-size", "16", "--train-subset", "0", "--dim", "16",
              "--depth", "1", "--heads", "2", "--mlp-dim", "32", "--no-verify", "--quiet"]


def write_fake_fashion_mnist(directory, n_train=48, n_test=20, seed=0):
    """IDX files with the official names holding random 28×28 images; returns the test arrays."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, n, names in (("train", n_train, ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz")),
                            ("test", n_test, ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"))):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.permutation(np.arange(n) % 10)
        write_idx(os.path.join(directory, names[0]), images)
        write_idx(os.path.join(directory, names[1]), labels)
        arrays[split] = (images, labels)
    return arrays


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny 2-epoch run through `python -m vitnp train` (in-process), with its data directory."""
    root = tmp_path_factory.mktemp("cli")
    data = root / "data"
    data.mkdir()
    arrays = write_fake_fashion_mnist(data)
    out = root / "run"
    assert main(["train", "--out", str(out), "--data", str(data), *TINY_FLAGS]) == 0
    return {"root": root, "data": str(data), "out": out, "arrays": arrays}


def run_main(capsys, *argv):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# ---- help ----------------------------------------------------------------------------------------------
def test_help_in_a_real_process():
    result = subprocess.run([sys.executable, "-m", "vitnp", "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    for command in ("train", "evaluate", "predict", "info"):
        assert command in result.stdout


@pytest.mark.parametrize("command, flags", [
    ("train", ["--out", "--preset", "--epochs", "--batch-size", "--lr", "--seed", "--resume", "--max-minutes",
               "--data", "--warmup", "--weight-decay", "--label-smoothing", "--augment", "--patch-size"]),
    ("evaluate", ["--data", "checkpoint"]),
    ("predict", ["IMAGE", "--top", "--invert"]),
    ("info", ["checkpoint"]),
])
def test_subcommand_help(capsys, command, flags):
    with pytest.raises(SystemExit) as e:
        main([command, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for flag in flags:
        assert flag in out, flag


# ---- a tiny end-to-end run -----------------------------------------------------------------------------
def test_train_writes_the_run_directory(run):
    out = run["out"]
    for name in ("config.json", "metrics.jsonl", "checkpoint.npz", "best.npz", "curves.png", "confusion.png",
                 "predictions.png"):
        assert (out / name).is_file(), name
    conf = json.loads((out / "config.json").read_text())
    assert conf["preset"] == "fast" and conf["config"]["dim"] == 16 and conf["hparams"]["epochs"] == 2
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [line["epoch"] for line in lines] == [1, 2] and lines[-1]["step"] == 2 * (48 // 16)


def test_evaluate_prints_accuracy_and_per_class(run, capsys):
    code, out, err = run_main(capsys, "evaluate", run["out"] / "checkpoint.npz", "--data", run["data"],
                              "--no-verify", "--quiet")
    assert code == 0, err
    last = json.loads((run["out"] / "metrics.jsonl").read_text().splitlines()[-1])
    # the default --batch-size 500 equals the run's eval batch size, so the numbers agree exactly
    correct = round(last["test_acc"] * 20)
    assert f"test accuracy: {100 * last['test_acc']:.2f}% ({correct}/20)" in out
    assert f"loss {last['test_loss']:.4f}" in out
    for name in FASHION_MNIST_CLASSES:
        assert name in out
    per_class = [line for line in out.splitlines() if line.strip()[:2].strip().isdigit()]
    assert len(per_class) == 10


def test_predict_prints_top3_and_matches_the_model(run, capsys, tmp_path):
    images, _ = run["arrays"]["test"]
    png = tmp_path / "item.png"
    mpimg.imsave(png, images[0], cmap="gray", vmin=0, vmax=255)      # grey PNG saved as RGBA
    big = tmp_path / "big.jpg"
    mpimg.imsave(big, 255 - np.kron(images[1], np.ones((4, 3), np.uint8)), cmap="gray", vmin=0, vmax=255)
    code, out, err = run_main(capsys, "predict", run["out"] / "best.npz", png, big, "--invert", "no")
    assert code == 0, err
    rows = out.strip().splitlines()
    assert len(rows) == 2 and rows[0].startswith(str(png)) and rows[1].startswith(str(big))
    assert all(row.count("%") == 3 for row in rows)
    # the PNG round trip is exact, so the top class and probability equal the model's on the raw image
    params, cfg, meta = load_checkpoint(run["out"] / "best.npz")
    x = (images[0][None, :, :, None].astype(np.float32) / np.float32(255) - np.float32(meta["norm_mean"])) \
        / np.float32(meta["norm_std"])
    p = predict_proba(params, cfg, x)[0]
    k = int(p.argmax())
    assert rows[0].split(": ", 1)[1].startswith(f"{FASHION_MNIST_CLASSES[k]} {100 * p[k]:.1f}%")
    code, out, _ = run_main(capsys, "predict", run["out"] / "best.npz", big, "--top", "2")
    assert code == 0 and out.count("%") == 2 and "inverted" in out              # light background: auto


def test_info_prints_config_and_parameter_groups(run, capsys):
    code, out, err = run_main(capsys, "info", run["out"] / "checkpoint.npz")
    assert code == 0, err
    cfg = ViTConfig(dim=16, depth=1, heads=2, mlp_dim=32)
    assert "patch_size         7" in out and "dim                16" in out
    for group in ("patch embedding", "class token", "position embedding", "attention", "MLP", "head"):
        assert group in out
    total = [line for line in out.splitlines() if line.strip().startswith("total")][0]
    assert int(total.split()[-1].replace(",", "")) == count_params(cfg)
    assert "resumable" in out


def test_resume_through_the_cli_matches_an_uninterrupted_run(run, capsys):
    out = run["root"] / "stopped"
    flags = ["--out", out, "--data", run["data"], *TINY_FLAGS]
    code, stdout, _ = run_main(capsys, "train", *flags, "--stop-after-epoch", "1")
    assert code == 0 and "stopped" in stdout
    code, _, err = run_main(capsys, "train", "--out", out, "--data", run["data"], "--no-verify", "--quiet",
                            "--resume")
    assert code == 0, err

    def lines(d):
        return [{k: v for k, v in json.loads(line).items() if k not in ("seconds", "images_per_s")}
                for line in (d / "metrics.jsonl").read_text().splitlines()]
    assert lines(out) == lines(run["out"])
    a, b = load_checkpoint(out / "checkpoint.npz")[0], load_checkpoint(run["out"] / "checkpoint.npz")[0]
    assert all(a[k].tobytes() == b[k].tobytes() for k in a)


# ---- errors: one line, exit status 2 -------------------------------------------------------------------
@pytest.fixture(scope="module")
def bad_files(run):
    d = run["root"] / "bad"
    d.mkdir()
    (d / "garbage.npz").write_bytes(b"PK\x03\x04 this is not really a zip file")
    raw = (run["out"] / "best.npz").read_bytes()
    (d / "truncated.npz").write_bytes(raw[:len(raw) // 3])
    arrays = load_npz(run["out"] / "best.npz")
    arrays["params/blocks.0.mlp.W1"] = np.zeros((16, 33), np.float32)
    save_npz(d / "shapes.npz", arrays)
    (d / "notes.png").write_text("not an image")
    return d


def assert_one_line_error(code, out, err, *fragments):
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in err, (fragment, err)


@pytest.mark.parametrize("argv, fragments", [
    (["evaluate", "{root}/nope.npz"], ["no such file"]),
    (["info", "{root}"], ["is a directory"]),
    (["info", "{bad}/garbage.npz"], ["corrupt"]),
    (["evaluate", "{bad}/truncated.npz"], ["truncated"]),
    (["info", "{bad}/shapes.npz"], ["blocks.0.mlp.W1 has shape (16, 33), the config needs (16, 32)"]),
    (["predict", "{out}/best.npz", "{root}/missing.png"], ["no such image file"]),
    (["predict", "{out}/best.npz", "{bad}/notes.png"], ["cannot read it as an image"]),
    (["predict", "{bad}/shapes.npz", "{bad}/notes.png"], ["has shape"]),
    (["evaluate", "{out}/best.npz", "--data", "{root}/nodata"], ["not found"]),
    (["evaluate", "{out}/best.npz", "--data", "{data}"], ["checksum mismatch"]),          # not official data
    (["train", "--out", "{out}", "--data", "{data}", "--no-verify"], ["already holds a run"]),
    (["train", "--out", "{root}/fresh", "--resume"], ["cannot resume: no checkpoint"]),
    (["train", "--out", "{out}", "--resume", "--lr", "0.1"], ["--resume continues the saved run"]),
    (["train", "--out", "{root}/x", "--config", "dimm=3"], ["unknown field 'dimm'"]),
    (["train", "--out", "{root}/x", "--heads", "5"], ["not divisible by heads"]),
    (["train", "--out", "{root}/x", "--epochs", "0"], ["epochs must be a positive integer"]),
])
def test_errors_are_one_line_with_status_2(run, bad_files, capsys, argv, fragments):
    names = {"root": run["root"], "out": run["out"], "data": run["data"], "bad": bad_files}
    code, out, err = run_main(capsys, *[a.format(**names) for a in argv])
    assert_one_line_error(code, out, err, *fragments)


def test_corrupt_checkpoint_in_a_real_process(bad_files):
    result = subprocess.run([sys.executable, "-m", "vitnp", "evaluate", str(bad_files / "truncated.npz")],
                            capture_output=True, text=True, timeout=60)
    assert_one_line_error(result.returncode, result.stdout, result.stderr, "truncated")


# ---- image conversion ----------------------------------------------------------------------------------
def test_area_resize_averages_blocks_and_keeps_constants():
    rng = np.random.default_rng(0)
    a = rng.random((56, 84, 1))
    blocks = a.reshape(28, 2, 28, 3, 1).mean((1, 3))                 # 2×3 block means
    np.testing.assert_allclose(resize_area(a, (28, 28)), blocks, rtol=0, atol=1e-12)
    np.testing.assert_allclose(resize_area(np.full((37, 19, 3), 0.25), (28, 28)), 0.25, rtol=0, atol=1e-12)


def test_image_to_input_grey_colour_alpha_and_inversion():
    cfg = ViTConfig(dim=16, depth=1, heads=2, mlp_dim=32)
    mean, std = 0.5, 0.25
    white_bg = np.ones((40, 20, 4))                                  # RGBA, tall, white background
    white_bg[10:30, 5:15, :3] = 0.2                                  # a dark object
    x, inverted = image_to_input(white_bg, cfg, mean, std)
    assert inverted and x.shape == (28, 28, 1) and x.dtype == np.float32
    assert x[0, 0, 0] == pytest.approx((0 - mean) / std)             # background → black after inversion
    assert x[14, 14, 0] == pytest.approx((round(0.8 * 255) / 255 - mean) / std)
    x2, inverted2 = image_to_input(white_bg, cfg, mean, std, invert="no")
    assert not inverted2 and x2[0, 0, 0] == pytest.approx((1 - mean) / std)
    transparent = np.zeros((28, 28, 4))                              # fully transparent → white → inverted
    assert image_to_input(transparent, cfg, mean, std)[1]
    rgb_cfg = cfg.replace(in_channels=3)
    x3, _ = image_to_input(np.full((28, 28, 1), 0.2), rgb_cfg, mean, std)
    assert x3.shape == (28, 28, 3) and np.ptp(x3) == 0
    with pytest.raises(ValueError, match="invert"):
        image_to_input(white_bg, cfg, mean, std, invert="maybe")
