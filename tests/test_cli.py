"""The command line: --help, a tiny train / evaluate / predict / info in a temp dir, resume through the CLI,
and clear one-line errors (exit status 2, no traceback) for bad paths, corrupt and mismatched files.
Then the extensions: --init-from (56×56, new classes), --classes, --model cnn, the hybrid --stem flags.

The data are synthetic IDX files with the official Fashion-MNIST names (hence --no-verify); no network.
"""
import json
import os
import subprocess
import sys

import matplotlib.image as mpimg
import numpy as np
import pytest

from vitnp.cli.main import main
from vitnp.io.npz import load_npz, save_npz
from vitnp.config import ViTConfig, count_params
from vitnp.data import FASHION_MNIST_CLASSES, write_idx
from vitnp.data.image_files import image_to_input
from vitnp.training.evaluation import predict_proba
from vitnp.data.resample import resize_area
from vitnp.training import load_checkpoint

TINY_FLAGS = ["--preset", "fast", "--epochs", "2", "--batch-size", "16", "--train-subset", "0", "--val-size", "0", "--dim", "16",
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


def results_of(out, which="best"):
    """The test evaluation a completed run wrote at its end (``results.json``) for 'best' or 'final'."""
    return json.loads((out / "results.json").read_text())[which]


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
    last = results_of(run["out"], "final")                # checkpoint.npz: the last epoch
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


# ---- extensions: fine-tuning, class subsets, the CNN, the hybrid stem ----------------------------------
SHORT = ["--preset", "fast", "--epochs", "1", "--batch-size", "16", "--train-subset", "0", "--val-size", "0", "--no-verify",
         "--quiet"]


def conf_of(out):
    return json.loads((out / "config.json").read_text())


def last_line(out):
    return json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])


def test_subcommand_help_lists_the_new_flags(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    for flag in ("--init-from", "--image-size", "--classes", "--num-classes", "--model", "--cnn-channels",
                 "--stem", "--stem-kernel", "--stem-pool"):
        assert flag in out, flag


@pytest.fixture(scope="module")
def finetuned(run):
    """`train --init-from RUN/best.npz --image-size 56`: the run's model (dim 16, not the preset's 32) at 56x56."""
    out = run["root"] / "ft56"
    assert main(["train", "--out", str(out), "--data", run["data"], "--init-from", str(run["out"] / "best.npz"),
                 "--image-size", "56", *SHORT]) == 0
    return out


def test_init_from_takes_the_model_from_the_checkpoint(run, finetuned):
    conf = conf_of(finetuned)
    source = conf_of(run["out"])["config"]
    assert conf["config"] == {**source, "image_size": [56, 56]}              # only the flag changed it
    assert conf["hparams"]["epochs"] == 1 and conf["preset"] == "fast"       # training flags: preset + flags
    assert conf["init_from"] == str(run["out"] / "best.npz")
    assert "E_pos interpolated from the 4x4 to the 8x8 patch grid" in conf["init"]["adapted"]
    assert conf["data"]["image_size"] == [56, 56] and conf["data"]["source_size"] == [28, 28]
    params, cfg, meta = load_checkpoint(finetuned / "best.npz")
    assert cfg.image_size == (56, 56) and params["E_pos"].shape == (65, 16)
    assert meta["data"]["source_size"] == [28, 28] and meta["init_from"]["path"] == conf["init_from"]


def test_evaluate_predict_info_of_a_56_pixel_checkpoint(run, finetuned, capsys, tmp_path):
    code, out, err = run_main(capsys, "evaluate", finetuned / "best.npz", "--data", run["data"], "--no-verify",
                              "--quiet")
    assert code == 0, err
    last = results_of(finetuned)                          # the test images resized as in training: same numbers
    assert f"test accuracy: {100 * last['test_acc']:.2f}% ({round(last['test_acc'] * 20)}/20)" in out
    assert f"loss {last['test_loss']:.4f}" in out and "resized 28x28 -> 56x56" in out
    images, _ = run["arrays"]["test"]
    png = tmp_path / "item.png"
    mpimg.imsave(png, images[0], cmap="gray", vmin=0, vmax=255)
    code, out, err = run_main(capsys, "predict", finetuned / "best.npz", png, "--invert", "no")
    assert code == 0, err
    # predict upsamples the 28x28 image exactly as training did: the model's probabilities on that input
    params, cfg, meta = load_checkpoint(finetuned / "best.npz")
    from vitnp.data import resize_images
    big = resize_images(images[0][None, :, :, None], 56)
    x = (big.astype(np.float32) / np.float32(255) - np.float32(meta["norm_mean"])) / np.float32(meta["norm_std"])
    p = predict_proba(params, cfg, x)[0]
    k = int(p.argmax())
    assert out.split(": ", 1)[1].startswith(f"{FASHION_MNIST_CLASSES[k]} {100 * p[k]:.1f}%")
    code, out, err = run_main(capsys, "info", finetuned / "best.npz")
    assert code == 0, err
    assert "images: 28x28 data resized to 56x56" in out and "initial weights: " in out
    assert "N=64 patches, T=65 tokens" in out


@pytest.fixture(scope="module")
def five_classes(run):
    """`train --classes 0-4`: num_classes is set to 5 from the list."""
    out = run["root"] / "five"
    assert main(["train", "--out", str(out), "--data", run["data"], *SHORT, "--batch-size", "8", "--dim", "16",
                 "--depth", "1", "--heads", "2", "--mlp-dim", "32", "--classes", "0-4"]) == 0
    return out


def test_classes_flag_sets_num_classes_and_the_names(run, five_classes, capsys, tmp_path):
    conf = conf_of(five_classes)
    assert conf["config"]["num_classes"] == 5 and conf["hparams"]["classes"] == [0, 1, 2, 3, 4]
    assert conf["class_names"] == list(FASHION_MNIST_CLASSES[:5]) and conf["data"]["n_train"] == 25
    code, out, err = run_main(capsys, "evaluate", five_classes / "best.npz", "--data", run["data"],
                              "--no-verify", "--quiet")
    assert code == 0, err
    assert f"({round(results_of(five_classes)['test_acc'] * 10)}/10)" in out       # 2 test images per class
    per_class = [line for line in out.splitlines() if line.strip()[:2].strip().isdigit()]
    assert [line.split(None, 1)[1].rsplit(None, 2)[0] for line in per_class] == list(FASHION_MNIST_CLASSES[:5])
    images, _ = run["arrays"]["test"]
    png = tmp_path / "item.png"
    mpimg.imsave(png, images[0], cmap="gray", vmin=0, vmax=255)
    code, out, err = run_main(capsys, "predict", five_classes / "best.npz", png, "--top", "5")
    assert code == 0, err
    named = [name for name in FASHION_MNIST_CLASSES if f"{name} " in out]
    assert sorted(named) == sorted(FASHION_MNIST_CLASSES[:5])
    code, out, _ = run_main(capsys, "info", five_classes / "best.npz")
    assert "Fashion-MNIST classes 0,1,2,3,4, relabelled 0..4" in out


def test_transfer_to_the_other_classes_gets_a_new_head(run, five_classes):
    """The transfer experiment's second step: the 5-class model, fine-tuned on classes 5-9 with a subset."""
    out = run["root"] / "transfer"
    assert main(["train", "--out", str(out), "--data", run["data"], *SHORT, "--batch-size", "8",
                 "--init-from", str(five_classes / "best.npz"), "--classes", "5-9", "--train-subset", "16",
                 "--lr", "0"]) == 0
    conf = conf_of(out)
    assert conf["config"]["num_classes"] == 5 and conf["data"]["n_train"] == 16
    assert conf["init"]["adapted"] == "new zero head for 5 classes"
    assert conf["class_names"] == list(FASHION_MNIST_CLASSES[5:])
    params = load_checkpoint(out / "checkpoint.npz")[0]
    source = load_checkpoint(five_classes / "best.npz")[0]
    assert not params["head.W"].any() and params["E"].tobytes() == source["E"].tobytes()   # lr 0: the start


@pytest.fixture(scope="module")
def cnn_run(run):
    out = run["root"] / "cnn"
    assert main(["train", "--out", str(out), "--data", run["data"], *SHORT, "--model", "cnn",
                 "--cnn-channels", "4,8"]) == 0
    return out


def test_cnn_train_evaluate_predict_info(run, cnn_run, capsys, tmp_path):
    conf = conf_of(cnn_run)
    assert conf["model"] == "cnn" and conf["config"]["channels"] == [4, 8]
    assert conf["parameters"] == 4 * 9 + 4 + 4 * 8 * 9 + 8 + 7 * 7 * 8 * 10 + 10
    for name in ("checkpoint.npz", "best.npz", "curves.png", "confusion.png", "predictions.png"):
        assert (cnn_run / name).is_file(), name
    code, out, err = run_main(capsys, "evaluate", cnn_run / "best.npz", "--data", run["data"], "--no-verify",
                              "--quiet")
    assert code == 0, err
    last = results_of(cnn_run)
    assert f"test accuracy: {100 * last['test_acc']:.2f}%" in out and f"loss {last['test_loss']:.4f}" in out
    images, _ = run["arrays"]["test"]
    png = tmp_path / "item.png"
    mpimg.imsave(png, images[3], cmap="gray", vmin=0, vmax=255)
    code, out, err = run_main(capsys, "predict", cnn_run / "best.npz", png, "--invert", "no")
    assert code == 0 and out.count("%") == 3, err
    params, cfg, meta = load_checkpoint(cnn_run / "best.npz")
    x = (images[3][None, :, :, None].astype(np.float32) / np.float32(255) - np.float32(meta["norm_mean"])) \
        / np.float32(meta["norm_std"])
    p = predict_proba(params, cfg, x)[0]
    assert out.split(": ", 1)[1].startswith(f"{FASHION_MNIST_CLASSES[int(p.argmax())]} {100 * p.max():.1f}%")
    code, out, err = run_main(capsys, "info", cnn_run / "checkpoint.npz")
    assert code == 0, err
    assert "model: CNN channels=4,8 kernel=3 pool=2" in out and "last feature map 7x7x8" in out
    assert "conv1 (conv1.W, conv1.b)" in out and "conv2 (conv2.W, conv2.b)" in out
    total = [line for line in out.splitlines() if line.strip().startswith("total")][0]
    assert int(total.split()[-1].replace(",", "")) == conf["parameters"]


def test_cnn_resume_through_the_cli(run, cnn_run, capsys, monkeypatch):
    """A budget stop in the middle of epoch 1, then --resume without a budget, ends as the uninterrupted run.
    The budget planner, which would rather shorten the schedule to the steps that fit (on a fast machine a
    few ms may fit a step), is switched off: this test is about the hard stop and the resume."""
    import vitnp.training.fit
    monkeypatch.setattr(vitnp.training.fit, "_fit_deadline", lambda state, total, *args: total)
    out = run["root"] / "cnn2"
    flags = ["--out", out, "--data", run["data"], *SHORT, "--epochs", "1", "--model", "cnn", "--cnn-channels", "4,8"]
    code, _, err = run_main(capsys, "train", *flags, "--max-minutes", "0.0001")     # stops inside epoch 1
    assert code == 0, err
    assert load_checkpoint(out / "checkpoint.npz")[2]["epoch"] == 0
    code, _, err = run_main(capsys, "train", "--out", out, "--data", run["data"], "--no-verify", "--quiet",
                            "--resume", "--max-minutes", "0")                      # 0: no budget
    assert code == 0, err
    assert load_checkpoint(out / "checkpoint.npz")[2]["epoch"] == 1
    a, b = load_checkpoint(out / "checkpoint.npz")[0], load_checkpoint(cnn_run / "checkpoint.npz")[0]
    assert all(a[k].tobytes() == b[k].tobytes() for k in b)


def test_stem_flags_make_a_hybrid(run, capsys):
    out = run["root"] / "hybrid"
    code, _, err = run_main(capsys, "train", "--out", out, "--data", run["data"], *SHORT, "--dim", "16",
                            "--depth", "1", "--heads", "2", "--mlp-dim", "32", "--stem", "4,6", "--stem-kernel", "5",
                            "--stem-pool", "1")
    assert code == 0, err
    conf = conf_of(out)["config"]
    assert (conf["stem_channels"], conf["stem_kernel"], conf["stem_pool"]) == ([4, 6], 5, 1)
    params, cfg, _ = load_checkpoint(out / "best.npz")
    assert params["stem.0.W"].shape == (5, 5, 1, 4) and params["stem.1.W"].shape == (5, 5, 4, 6)
    assert params["E"].shape == (7 * 7 * 6, 16)
    code, out_text, err = run_main(capsys, "info", out / "best.npz")
    assert code == 0 and "hybrid CNN stem" in out_text and "stem=4,6" in out_text, err


@pytest.mark.parametrize("argv, fragments", [
    (["--init-from", "{root}/missing.npz"], ["init_from", "no such file"]),
    (["--init-from", "{bad}/garbage.npz"], ["init_from", "corrupt"]),
    (["--init-from", "{bad}/truncated.npz"], ["init_from", "truncated"]),
    (["--init-from", "{out}/best.npz", "--dim", "32"], ["cannot adapt", "dim: 16 (old) vs 32 (new)"]),
    (["--init-from", "{out}/best.npz", "--classifier", "gap"], ["classifier: 'token' (old) vs 'gap' (new)"]),
    (["--init-from", "{out}/best.npz", "--model", "cnn"], ["holds a VIT"]),
    (["--model", "cnn", "--patch-size", "4"], ["--patch-size do(es) not apply to the CNN"]),
    (["--model", "cnn", "--stem", "4"], ["--stem do(es) not apply to the CNN"]),
    (["--cnn-channels", "4,8"], ["--cnn-channels do(es) not apply to the VIT"]),
    (["--model", "cnn", "--cnn-channels", "4,x"], ["--cnn-channels: expected comma-separated integers"]),
    (["--stem", "0"], ["--stem: the channel counts must be positive"]),
    (["--classes", "0-4", "--num-classes", "3"], ["are 5 classes, but the model has num_classes=3"]),
    (["--classes", "4-0"], ["--classes: bad range '4-0'"]),
    (["--classes", "1,x"], ["--classes: 'x' is not a class index"]),
    (["--classes", "1,0-2"], ["names a class twice"]),
    (["--num-classes", "4"], ["set num_classes to 10"]),
    (["--image-size", "30"], ["not divisible by patch_size"]),
    (["--model", "cnn", "--config", "patch_size=4"], ["unknown field 'patch_size'"]),
])
def test_extension_errors_are_one_line_with_status_2(run, bad_files, capsys, argv, fragments):
    names = {"root": run["root"], "out": run["out"], "data": run["data"], "bad": bad_files}
    argv = ["train", "--out", "{root}/never", "--data", "{data}", *SHORT, *argv]
    code, out, err = run_main(capsys, *[a.format(**names) for a in argv])
    assert_one_line_error(code, out, err, *fragments)
    assert not (run["root"] / "never" / "checkpoint.npz").exists()


def test_resume_refuses_init_from_and_model(run, capsys):
    for extra in (["--init-from", str(run["out"] / "best.npz")], ["--model", "cnn"]):
        code, out, err = run_main(capsys, "train", "--out", run["out"], "--resume", *extra)
        assert_one_line_error(code, out, err, "--resume continues the saved run")


def test_incompatible_init_from_in_a_real_process(run, cnn_run):
    result = subprocess.run([sys.executable, "-m", "vitnp", "train", "--out", str(run["root"] / "never2"),
                             "--data", run["data"], *SHORT, "--init-from", str(cnn_run / "best.npz"),
                             "--image-size", "56"], capture_output=True, text=True, timeout=120)
    assert_one_line_error(result.returncode, result.stdout, result.stderr, "cannot adapt parameter 'head.W'",
                          "image_size (28, 28) vs (56, 56)")


# ---- review fixes ----------------------------------------------------------------------------------------
def test_resume_applies_eval_batch_size_and_keeps_the_preset(run, capsys):
    """--resume --config eval_batch_size=N is one of the two settings a resumed run may change: it must reach
    the run (it was silently dropped), and the resumed config.json keeps the original preset."""
    out = run["root"] / "resume-ebs"
    code, _, err = run_main(capsys, "train", "--out", out, "--data", run["data"], *TINY_FLAGS, "--stop-after-epoch",
                            "1")
    assert code == 0, err
    code, _, err = run_main(capsys, "train", "--out", out, "--data", run["data"], "--no-verify", "--quiet",
                            "--resume", "--config", "eval_batch_size=7")
    assert code == 0, err
    conf = conf_of(out)
    assert conf["hparams"]["eval_batch_size"] == 7 and conf["preset"] == "fast"
    assert load_checkpoint(out / "checkpoint.npz")[2]["hparams"]["eval_batch_size"] == 7
    code, _, err = run_main(capsys, "train", "--out", out, "--data", run["data"], "--resume", "--lr", "1")
    assert_one_line_error(code, "", err, "lr", "--max-minutes", "eval_batch_size")


def test_evaluate_arrays_checks_its_inputs(run):
    from vitnp.training.evaluation import evaluate_arrays
    params, cfg, _ = load_checkpoint(run["out"] / "best.npz")
    images, labels = run["arrays"]["test"]
    x = images[..., None]                                                        # uint8 (20, 28, 28, 1)
    ok = evaluate_arrays(params, cfg, x, labels)
    assert ok["n"] == 20
    with pytest.raises(TypeError, match="uint8"):
        evaluate_arrays(params, cfg, x.astype(np.float32) / 255, labels)         # already normalised
    with pytest.raises(ValueError, match="20 images but 19 labels"):
        evaluate_arrays(params, cfg, x, labels[:19])
    with pytest.raises(ValueError, match=r"0\.\.9"):
        evaluate_arrays(params, cfg, x, np.where(labels == 0, 10, labels))       # K = 10
    with pytest.raises(ValueError, match=r"0\.\.9"):
        evaluate_arrays(params, cfg, x, labels - 1)
    with pytest.raises(TypeError, match="integer"):
        evaluate_arrays(params, cfg, x, labels.astype(np.float64))


# ---- --reference: the clear model instead of the fast path -----------------------------------------------
def test_train_evaluate_and_predict_with_the_reference_model(run, tmp_path, capsys, monkeypatch):
    """`train --reference` (1 epoch, no sharding) gives the fast path's metrics up to float32 rounding, and
    `evaluate --reference` / `predict --reference` print what the fast path prints."""
    from vitnp.fast import parallel
    monkeypatch.setitem(parallel._settings, "threads", 1)            # no shards: the same order of sums
    flags = ["--data", run["data"], *TINY_FLAGS, "--epochs", "1"]
    lines = {}
    for name, extra in (("fast", []), ("ref", ["--reference"])):
        code, _, err = run_main(capsys, "train", "--out", tmp_path / name, *flags, *extra)
        assert code == 0, err
        lines[name] = [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
        impl = json.loads((tmp_path / name / "config.json").read_text())["implementation"]
        assert impl["reference"] == (name == "ref")
    (fast,), (ref,) = lines["fast"], lines["ref"]
    fast.update(results_of(tmp_path / "fast", "final"))
    ref.update(results_of(tmp_path / "ref", "final"))
    for key in ("train_loss", "test_loss"):
        assert ref[key] == pytest.approx(fast[key], rel=1e-4), key
    assert (ref["train_acc"], ref["test_acc"], ref["step"]) == (fast["train_acc"], fast["test_acc"], fast["step"])

    printed = {}
    for extra in ([], ["--reference"]):
        code, out, err = run_main(capsys, "evaluate", run["out"] / "best.npz", "--data", run["data"], "--no-verify",
                                  "--quiet", *extra)
        assert code == 0, err
        printed[bool(extra)] = [line for line in out.splitlines() if "accuracy" in line]
    assert printed[True] == printed[False] and printed[True][0].startswith("test accuracy: ")

    png = tmp_path / "shirt.png"
    mpimg.imsave(png, np.random.default_rng(2).random((28, 28)), cmap="gray")
    outs = [run_main(capsys, "predict", run["out"] / "best.npz", png, *extra) for extra in ([], ["--reference"])]
    assert outs[0][0] == outs[1][0] == 0 and outs[0][1] == outs[1][1] and "%" in outs[0][1]
