"""`python -m vitnp visualize`: end to end on a tiny checkpoint made here and a tiny PNG, the --index path on
synthetic IDX files, a hybrid ViT, and one-line errors.  No network, no Fashion-MNIST needed."""
import dataclasses
import os

import matplotlib.image as mpimg
import numpy as np
import pytest

from vitnp import ViTConfig, init_params, model, vit_forward

from vitnp.analysis import maps as analysis

from vitnp.training import specs as models
from vitnp.analysis import visualize as vis
from vitnp.cli.main import main
from vitnp.data import write_idx
from vitnp.data.image_files import image_to_input, load_image
from vitnp.training.evaluation import predict_proba
from vitnp.training import load_checkpoint, save_checkpoint

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
NAMES = [f"class{k}" for k in range(5)]


def tiny_cfg(**kw):
    fields = dict(image_size=28, patch_size=7, in_channels=1, num_classes=5, dim=16, depth=2, heads=2, mlp_dim=32)
    fields.update(kw)
    return ViTConfig(**fields)


def write_checkpoint(path, cfg, seed=0):
    """init_params plus noise (the init's zero head and biases would make every prediction a tie)."""
    rng = np.random.default_rng(seed)
    params = {k: (v + 0.3 * rng.standard_normal(v.shape)).astype(v.dtype) for k, v in init_params(cfg, seed).items()}
    save_checkpoint(path, params, cfg, names=NAMES[:cfg.num_classes])
    return params


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("visualize")
    ckpt = root / "tiny.npz"
    write_checkpoint(ckpt, tiny_cfg())
    rng = np.random.default_rng(1)
    png = root / "shirt.png"                      # 20×12 RGB, dark background: not square, not grey
    img = np.zeros((20, 12, 3))
    img[4:16, 3:9] = rng.uniform(0.5, 1.0, (12, 6, 3))
    mpimg.imsave(png, img)
    data = root / "data"                          # synthetic test split with the official file names
    data.mkdir()
    write_idx(str(data / "t10k-images-idx3-ubyte.gz"), rng.integers(0, 256, (12, 28, 28), dtype=np.uint8))
    write_idx(str(data / "t10k-labels-idx1-ubyte.gz"), np.arange(12, dtype=np.uint8) % 5)
    return {"root": root, "ckpt": str(ckpt), "png": str(png), "data": str(data)}


def run_main(capsys, *argv):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def assert_valid_png(path):
    with open(path, "rb") as f:
        assert f.read(8) == PNG_MAGIC, f"{path} is not a PNG"
    pixels = mpimg.imread(path)                   # decodes the whole file: a truncated PNG fails here
    assert pixels.ndim == 3 and min(pixels.shape[:2]) > 100


# ---- end to end ------------------------------------------------------------------------------------------
def test_cli_writes_four_valid_pngs(files, tmp_path, capsys):
    out = tmp_path / "figs"                       # does not exist yet: created
    code, stdout, err = run_main(capsys, "visualize", files["ckpt"], files["png"], "--out", out)
    assert code == 0, err
    assert sorted(os.listdir(out)) == sorted(vis.FILES)    # nothing else: no temporary files left behind
    for name in vis.FILES:
        assert_valid_png(out / name)
        assert f"wrote {out / name}" in stdout
    # the printed prediction is the model's, on the input `predict` would make of this file
    params, cfg, meta = load_checkpoint(files["ckpt"])
    x, _ = image_to_input(load_image(files["png"]), cfg, meta["norm_mean"], meta["norm_std"])
    p = predict_proba(params, cfg, x[None])[0]
    assert f"shirt.png: {NAMES[p.argmax()]} {100 * p.max():.1f}%" in stdout


def test_index_images_from_the_test_set(files, tmp_path, capsys):
    out = tmp_path / "figs"
    code, stdout, err = run_main(capsys, "visualize", files["ckpt"], "--index", 3, "--index", 11, "--out", out,
                                 "--data", files["data"], "--no-verify", "--upsample", "bilinear", "--filters", 5)
    assert code == 0, err
    # the true class of a test image is Fashion-MNIST's (labels 3 and 1); the prediction is the model's class
    assert "test #3 (true: Dress): class" in stdout and "test #11 (true: Trouser): class" in stdout
    for name in vis.FILES:
        assert_valid_png(out / name)


def test_distances_over_chunks_equal_one_pass(files, tmp_path, monkeypatch):
    """The forward runs in chunks; the distances drawn must be the mean over all images, as one call gives.
    In float64, so that the chunked and the single forward pass agree to rounding (rtol 1e-12)."""
    ckpt = tmp_path / "tiny64.npz"
    write_checkpoint(ckpt, tiny_cfg(dtype="float64"))
    seen = {}
    real = vis.distance_figure

    def spy(dist, cfg, n):
        seen["dist"], seen["n"] = dist, n
        return real(dist, cfg, n)

    monkeypatch.setattr(vis, "distance_figure", spy)
    monkeypatch.setattr(vis, "CHUNK", 2)          # 5 images: chunks of 2, 2, 1
    monkeypatch.setattr(vis, "MAX_SHOWN", 3)
    messages = []
    paths = vis.visualize(ckpt, [files["png"]], tmp_path / "out", indices=[0, 1, 2, 7],
                          data=files["data"], verify=False, log=messages.append)
    assert paths == [str(tmp_path / "out" / name) for name in vis.FILES]
    assert seen["n"] == 5 and any("first 3 of the 5" in m for m in messages)
    params, cfg, meta = load_checkpoint(ckpt)
    from vitnp.data import read_idx
    pix = read_idx(os.path.join(files["data"], "t10k-images-idx3-ubyte.gz"))[[0, 1, 2, 7], ..., None]
    x_img, _ = image_to_input(load_image(files["png"]), cfg, meta["norm_mean"], meta["norm_std"])
    x = np.concatenate([x_img[None], (pix / 255.0 - meta["norm_mean"]) / meta["norm_std"]])    # (5, 28, 28, 1)
    _, cache = vit_forward(params, x, cfg)
    np.testing.assert_allclose(seen["dist"], analysis.mean_attention_distance(cache["attention"], cfg), rtol=1e-12)


def test_hybrid_has_no_filters_png(tmp_path):
    """A hybrid ViT's E maps the CNN stem's feature channels: no filters.png, and a note saying why."""
    cfg = tiny_cfg(patch_size=1, stem_channels=(4, 4), stem_pool=2, dim=8, depth=1)   # 28 → 7×7 map, P_pix 4
    ckpt = tmp_path / "hybrid.npz"
    write_checkpoint(ckpt, cfg)
    png = tmp_path / "x.png"
    mpimg.imsave(png, np.random.default_rng(0).uniform(size=(28, 28)), cmap="gray")
    messages = []
    paths = vis.visualize(ckpt, [png], tmp_path / "out", log=messages.append)
    assert [os.path.basename(p) for p in paths] == ["rollout.png", "attention_distance.png",
                                                    "pos_embedding_similarity.png"]
    assert not (tmp_path / "out" / "filters.png").exists()
    assert any("no filters.png" in m and "hybrid" in m for m in messages)
    for p in paths:
        assert_valid_png(p)


def test_no_position_embeddings_no_similarity_png(tmp_path):
    cfg = tiny_cfg(pos_embedding="none", classifier="gap")
    ckpt = tmp_path / "nopos.npz"
    write_checkpoint(ckpt, cfg)
    png = tmp_path / "x.png"
    mpimg.imsave(png, np.random.default_rng(0).uniform(size=(28, 28)), cmap="gray")
    messages = []
    paths = vis.visualize(ckpt, [png], tmp_path / "out", log=messages.append)
    assert [os.path.basename(p) for p in paths] == ["rollout.png", "attention_distance.png", "filters.png"]
    assert any("no pos_embedding_similarity.png" in m for m in messages)


# ---- errors: one line, exit status 2, nothing half-written --------------------------------------------------
def assert_one_line_error(code, err, *words):
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    for w in words:
        assert w in lines[0], (w, lines[0])


def test_missing_and_corrupt_checkpoint(files, tmp_path, capsys):
    out = tmp_path / "figs"
    code, _, err = run_main(capsys, "visualize", tmp_path / "nope.npz", files["png"], "--out", out)
    assert_one_line_error(code, err, "nope.npz")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"this is not a zip file at all")
    code, _, err = run_main(capsys, "visualize", bad, files["png"], "--out", out)
    assert_one_line_error(code, err, "bad.npz")
    assert not out.exists()


def test_bad_image_fails_before_anything_is_written(files, tmp_path, capsys):
    out = tmp_path / "figs"
    fake = tmp_path / "fake.png"
    fake.write_text("not an image")
    code, _, err = run_main(capsys, "visualize", files["ckpt"], files["png"], fake, "--out", out)
    assert_one_line_error(code, err, "fake.png")
    assert not out.exists()
    code, _, err = run_main(capsys, "visualize", files["ckpt"], tmp_path / "missing.png", "--out", out)
    assert_one_line_error(code, err, "missing.png")


def test_argument_errors(files, tmp_path, capsys, monkeypatch):
    out = tmp_path / "figs"
    code, _, err = run_main(capsys, "visualize", files["ckpt"], "--out", out)
    assert_one_line_error(code, err, "IMAGE", "--index")
    code, _, err = run_main(capsys, "visualize", files["ckpt"], "--index", 12, "--out", out, "--data", files["data"],
                            "--no-verify")
    assert_one_line_error(code, err, "--index 12", "12 images")
    code, _, err = run_main(capsys, "visualize", files["ckpt"], "--index", -1, "--out", out, "--data", files["data"],
                            "--no-verify")
    assert_one_line_error(code, err, "--index -1")
    empty = tmp_path / "no-data"
    empty.mkdir()
    monkeypatch.setenv("VITNP_DATA", str(empty))
    code, _, err = run_main(capsys, "visualize", files["ckpt"], "--index", 0, "--out", out)
    assert_one_line_error(code, err, "no-data")
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    code, _, err = run_main(capsys, "visualize", files["ckpt"], files["png"], "--out", a_file)
    assert_one_line_error(code, err, "not a directory")
    code, _, err = run_main(capsys, "visualize", files["ckpt"], files["png"], "--out", out, "--filters", 0)
    assert_one_line_error(code, err, "filters")
    assert not out.exists()


def test_help_lists_the_options(capsys):
    with pytest.raises(SystemExit) as e:
        main(["visualize", "--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    for flag in ("IMAGE", "--out", "--index", "--data", "--invert", "--upsample", "--filters"):
        assert flag in text


# ---- review fixes: a CNN checkpoint, class subsets, the training image size ------------------------------
def write_test_split(directory, images, labels):
    """A Fashion-MNIST test split with the official file names (uint8 (n, 28, 28), labels (n,))."""
    directory.mkdir(exist_ok=True)
    write_idx(str(directory / "t10k-images-idx3-ubyte.gz"), np.asarray(images, np.uint8))
    write_idx(str(directory / "t10k-labels-idx1-ubyte.gz"), np.asarray(labels, np.uint8))
    return str(directory)


def test_a_cnn_checkpoint_is_refused_with_a_clear_error(files, tmp_path, capsys):
    """visualize draws attention maps, which a CNN has none of: a one-line error, not an AttributeError."""
    from vitnp.cnn import CNNConfig, init_cnn_params
    cfg = CNNConfig(channels=(2,), num_classes=5)
    ckpt = tmp_path / "cnn.npz"
    save_checkpoint(ckpt, init_cnn_params(0, cfg=cfg), cfg, names=NAMES)
    out = tmp_path / "figs"
    code, _, err = run_main(capsys, "visualize", ckpt, files["png"], "--out", out)
    assert_one_line_error(code, err, "cnn.npz", "visualize needs a ViT checkpoint", "CNN")
    assert not out.exists()


def test_true_names_of_a_class_subset_model_come_from_fashion_mnist(tmp_path, capsys):
    """A model trained on classes 7, 2 (Sneaker = 0, Pullover = 1): the test images' labels are the original
    0-9, so their names are Fashion-MNIST's, and a class the model was not trained on says so."""
    from vitnp.data import FASHION_MNIST_CLASSES as FM
    cfg = tiny_cfg(num_classes=2)
    rng = np.random.default_rng(3)
    params = {k: (v + 0.3 * rng.standard_normal(v.shape)).astype(v.dtype) for k, v in init_params(cfg).items()}
    ckpt = tmp_path / "two.npz"
    save_checkpoint(ckpt, params, cfg, names=[FM[7], FM[2]], data_info={"classes": [7, 2], "source_size": [28, 28]})
    data = write_test_split(tmp_path / "data", rng.integers(0, 256, (4, 28, 28)), [9, 2, 7, 0])
    code, stdout, err = run_main(capsys, "visualize", ckpt, "--index", 0, "--index", 1, "--index", 2,
                                 "--index", 3, "--out", tmp_path / "figs", "--data", data, "--no-verify")
    assert code == 0, err
    assert f"test #0 (true: {FM[9]}, not a trained class): " in stdout
    assert f"test #1 (true: {FM[2]}): " in stdout and f"test #2 (true: {FM[7]}): " in stdout
    assert f"test #3 (true: {FM[0]}, not a trained class): " in stdout


def test_a_56_pixel_model_gets_its_inputs_as_in_training(files, tmp_path, monkeypatch):
    """A model trained at --image-size 56 on 28x28 data: --index images are resized as evaluate does, and image
    files go through the 28x28 source size, exactly as predict prepares them."""
    from vitnp.data import normalize, read_idx, resize_images
    cfg = tiny_cfg(image_size=56)
    ckpt = tmp_path / "big.npz"
    rng = np.random.default_rng(4)
    params = {k: (v + 0.3 * rng.standard_normal(v.shape)).astype(v.dtype) for k, v in init_params(cfg).items()}
    save_checkpoint(ckpt, params, cfg, names=NAMES, data_info={"classes": [], "source_size": [28, 28]})
    seen = []
    real = models.MODELS["vit"].forward                                              # the fast path

    def spy(p, x, c, **kw):
        seen.append(x.copy())
        return real(p, x, c, **kw)

    monkeypatch.setitem(models.MODELS, "vit", dataclasses.replace(models.MODELS["vit"], forward=spy))
    vis.visualize(ckpt, [files["png"]], tmp_path / "out", indices=[3, 5], data=files["data"], verify=False,
                  log=lambda s: None)
    x = np.concatenate(seen)                                                         # (3, 56, 56, 1)
    _, _, meta = load_checkpoint(ckpt)
    x_img, _ = image_to_input(load_image(files["png"]), cfg, meta["norm_mean"], meta["norm_std"],
                              source_size=(28, 28))
    pix = read_idx(os.path.join(files["data"], "t10k-images-idx3-ubyte.gz"))[[3, 5], ..., None]   # (2, 28, 28, 1)
    expected = np.concatenate([x_img[None], normalize(resize_images(pix, 56), np.float32,
                                                      mean=meta["norm_mean"], std=meta["norm_std"])])
    assert x.shape == (3, 56, 56, 1)
    np.testing.assert_array_equal(x, expected)


def test_save_figure_fsyncs_before_the_rename(tmp_path, monkeypatch):
    """Like save_npz (both use vitnp.io.atomic): the PNG's bytes reach the disk before the rename."""
    from vitnp.io import atomic
    from vitnp.analysis import plots
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(atomic.os, "fsync", lambda fd: events.append("fsync") or real_fsync(fd))
    monkeypatch.setattr(atomic.os, "replace", lambda a, b: events.append("replace") or real_replace(a, b))
    plots.save_figure(plots.curves_figure([]), tmp_path / "c.png")
    assert events[:2] == ["fsync", "replace"] and os.listdir(tmp_path) == ["c.png"]
    assert_valid_png(tmp_path / "c.png")


def test_the_fast_path_draws_and_reference_draws_the_same(files, tmp_path, monkeypatch, capsys):
    """visualize runs vitnp.fast's forward; --reference runs vitnp.model's, with the same predictions."""
    calls = []
    real_fast, real_ref = models.MODELS["vit"].forward, model.vit_forward
    monkeypatch.setitem(models.MODELS, "vit", dataclasses.replace(
        models.MODELS["vit"], forward=lambda *a, **kw: calls.append("fast") or real_fast(*a, **kw)))
    monkeypatch.setattr(model, "vit_forward", lambda *a, **kw: calls.append("reference") or real_ref(*a, **kw))
    printed = {}
    for flags in ([], ["--reference"]):
        calls.clear()
        assert main(["visualize", files["ckpt"], files["png"], "--out", str(tmp_path / "out"), *flags]) == 0
        printed[bool(flags)] = [line for line in capsys.readouterr().out.splitlines() if "wrote" not in line]
        assert calls == ["reference" if flags else "fast"]
    assert printed[True] == printed[False] and printed[True][0].startswith("shirt.png: class")


def test_paper_figures_of_an_original_layout_checkpoint(tmp_path):
    """Notebook 07's ViT-B/16 cell, offline, on a small file in the same layout: load_original (pre_logits dropped),
    images in [−1, 1], the four figures with no predictions."""
    from vitnp.analysis.visualize import paper_figures
    from vitnp.io.original import load_original, save_original
    cfg = ViTConfig(image_size=32, patch_size=8, in_channels=3, num_classes=5, dim=16, depth=2, heads=2, mlp_dim=32)
    save_original(tmp_path / "tiny_original.npz", init_params(cfg, 0), cfg)
    params, loaded = load_original(tmp_path / "tiny_original.npz", drop_pre_logits=True)
    picture = np.random.default_rng(0).random((1, 32, 32, 3))
    lines = []
    figs = paper_figures(params, loaded, (2 * picture - 1).astype(np.float32), picture, ["photo"], log=lines.append)
    assert [name for name, _ in figs] == ["rollout.png", "attention_distance.png", "pos_embedding_similarity.png",
                                          "filters.png"]
    assert not any("predicted" in line for line in lines)
