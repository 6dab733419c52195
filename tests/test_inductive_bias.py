"""vitnp.experiments.inductive_bias through its command line (scripts/inductive_bias.py) end to end on tiny synthetic IDX files in a temporary directory (no real data).

The sweep writes a results.json with one record per (model, N) and a PNG; a second call skips the runs that
are already there (resume) and refuses to mix runs made with other settings; --jobs 2 gives the same numbers
as --jobs 1; bad arguments end with a one-line error naming the problem.
"""
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vitnp.data import read_idx, write_idx
from vitnp.cli import experiments as experiments_cli
from vitnp.experiments import inductive_bias as ib
from vitnp.training.specs import model_spec

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "inductive_bias.py"
main = experiments_cli.inductive_bias_main        # what the script runs

RUN_KEYS = {"model", "n_train", "steps", "batch_size", "epochs", "test_acc", "test_loss", "train_acc",
            "train_loss", "n_train_eval", "final_train_loss", "params", "train_seconds", "images_per_s",
            "wall_seconds"}
SETTING_KEYS = {"steps", "batch_size", "lr", "final_lr", "warmup_steps", "weight_decay", "label_smoothing",
                "clip_grad_norm", "augment", "seed", "train_eval", "data"}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """Fashion-MNIST-named IDX files: 160 training and 40 test 28×28 images; class k has a bright band
    at rows 2+2k … 3+2k, plus noise, so the models can learn something in a few steps."""
    d = tmp_path_factory.mktemp("idx")
    rng = np.random.default_rng(0)
    for split, n, (img_name, lab_name) in (("train", 160, ("train-images-idx3-ubyte", "train-labels-idx1-ubyte")),
                                          ("test", 40, ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"))):
        labels = rng.permutation(np.arange(n) % 10)
        images = rng.integers(0, 60, size=(n, 28, 28))
        for i, k in enumerate(labels):
            images[i, 2 + 2 * k:4 + 2 * k, 4:24] += 180
        write_idx(d / img_name, images.astype(np.uint8))
        write_idx(d / lab_name, labels)
    return d


def args_for(data_dir, out, *extra):
    return ["--out", str(out), "--data", str(data_dir), "--no-verify", "--steps", "3", "--batch-size", "32",
            "--train-eval", "50", *extra]


def test_sweep_writes_results_and_figure(data_dir, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(args_for(data_dir, out, "--sizes", "64,128", "--jobs", "1")) == 0
    printed = capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())
    assert results["format"] == ib.FORMAT
    assert set(results["settings"]) == SETTING_KEYS
    s = results["settings"]
    assert (s["steps"], s["batch_size"], s["augment"], s["warmup_steps"]) == (3, 32, "flip", 0)
    assert s["data"]["n_train_available"] == 160 and s["data"]["n_test"] == 40
    cfgs = ib.model_configs()
    assert set(results["models"]) == {"vit", "cnn", "hybrid"}
    for name, info in results["models"].items():
        assert info["params"] == model_spec(cfgs[name]).count(cfgs[name])
        assert info["config"] == cfgs[name].to_dict()
    assert results["models"]["hybrid"]["config"]["stem_channels"] == [16]
    runs = results["runs"]
    assert sorted((r["model"], r["n_train"]) for r in runs) == sorted(
        (m, n) for m in ("vit", "cnn", "hybrid") for n in (64, 128))
    for r in runs:
        assert set(r) == RUN_KEYS
        assert r["steps"] == 3 and r["batch_size"] == 32
        assert r["epochs"] == pytest.approx(3 * 32 / r["n_train"], abs=1e-3)
        assert r["n_train_eval"] == min(r["n_train"], 50)
        assert 0.0 <= r["test_acc"] <= 1.0 and 0.0 <= r["train_acc"] <= 1.0
        assert math.isfinite(r["test_loss"]) and r["test_loss"] > 0
        assert r["params"] == results["models"][r["model"]]["params"]
        assert r["wall_seconds"] >= r["train_seconds"] > 0 and r["images_per_s"] > 0
        # test accuracy is a count over the 40 test images
        assert (r["test_acc"] * 40) == pytest.approx(round(r["test_acc"] * 40), abs=1e-9)
    png = (out / "inductive_bias.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert "| 64 |" in printed and "| 128 |" in printed           # the Markdown table
    assert not list(out.glob(".*.tmp"))                            # no temporary files left behind


def test_resume_skips_finished_runs(data_dir, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    calls = []
    real = ib.run_one

    def counting(model, n, *rest):
        calls.append((model, n))
        return real(model, n, *rest)

    monkeypatch.setattr(ib, "run_one", counting)
    assert main(args_for(data_dir, out, "--sizes", "64", "--models", "vit")) == 0
    first = json.loads((out / "results.json").read_text())["runs"]
    assert calls == [("vit", 64)]
    calls.clear()
    capsys.readouterr()
    assert main(args_for(data_dir, out, "--sizes", "64,128", "--models", "vit")) == 0
    assert "1 run(s) to do, 1 already" in capsys.readouterr().out
    assert calls == [("vit", 128)]                              # the N=64 run was not repeated
    runs = json.loads((out / "results.json").read_text())["runs"]
    assert len(runs) == 2
    assert [r for r in runs if r["n_train"] == 64] == first         # kept exactly, timing fields included
    calls.clear()
    assert main(args_for(data_dir, out, "--sizes", "64,128", "--models", "vit")) == 0
    assert calls == []                                              # everything done: nothing to run


def test_resume_refuses_other_settings(data_dir, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(args_for(data_dir, out, "--sizes", "64", "--models", "vit")) == 0
    before = (out / "results.json").read_text()
    capsys.readouterr()
    assert main(args_for(data_dir, out, "--sizes", "64", "--models", "vit", "--lr", "0.01")) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "lr: 0.003 (saved) vs 0.01 (now)" in err and "another --out" in err
    assert (out / "results.json").read_text() == before             # untouched
    other = tmp_path / "other-data"                                 # the same files but one test label
    other.mkdir()
    for f in data_dir.iterdir():
        (other / f.name).write_bytes(f.read_bytes())
    labels = read_idx(other / "t10k-labels-idx1-ubyte")
    labels[0] = (labels[0] + 1) % 10
    write_idx(other / "t10k-labels-idx1-ubyte", labels)
    assert main(args_for(other, out, "--sizes", "64", "--models", "vit")) == 2
    assert "data.test_md5" in capsys.readouterr().err
    assert (out / "results.json").read_text() == before


def test_two_jobs_give_the_same_numbers_as_one(data_dir, tmp_path):
    """--jobs 2 (two spawned processes, one BLAS thread each) reproduces --jobs 1 exactly."""
    one, two = tmp_path / "one", tmp_path / "two"
    assert main(args_for(data_dir, one, "--sizes", "64,128", "--models", "vit")) == 0
    proc = subprocess.run([sys.executable, str(SCRIPT), *args_for(data_dir, two, "--sizes", "64,128",
                                                                  "--models", "vit", "--jobs", "2")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    keep = ("model", "n_train", "test_acc", "test_loss", "train_acc", "train_loss", "final_train_loss")

    def numbers(d):
        return [{k: r[k] for k in keep} for r in json.loads((d / "results.json").read_text())["runs"]]

    assert numbers(one) == numbers(two)


def test_help_runs_as_a_script():
    proc = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "--sizes" in proc.stdout and "--steps" in proc.stdout and "--jobs" in proc.stdout


@pytest.mark.parametrize("extra, message", [
    (["--sizes", "1000,abc"], "argument --sizes: expected comma-separated positive integers"),
    (["--sizes", "64,64"], "argument --sizes: a size is repeated"),
    (["--models", "vit,resnet"], "argument --models: unknown model 'resnet'; choose from vit, cnn, hybrid"),
    (["--jobs", "0"], "argument --jobs: expected a positive integer, got 0"),
    (["--steps", "ten"], "argument --steps: expected a positive integer, got 'ten'"),
    (["--lr", "-1"], "argument --lr: expected a finite number >= 0"),
])
def test_bad_arguments_are_usage_errors(data_dir, tmp_path, capsys, extra, message):
    with pytest.raises(SystemExit) as exc:
        main(args_for(data_dir, tmp_path / "out", *extra))
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("extra, message", [
    (["--sizes", "64,500"], "error: --sizes: N=500 exceeds the 160 training images of the data"),
    (["--sizes", "16"], "error: --sizes: N=16 is smaller than --batch-size 32"),
    (["--sizes", "64", "--warmup", "2"], "error: --warmup is a fraction of the steps in [0, 1], got 2.0"),
])
def test_bad_values_give_one_line_errors(data_dir, tmp_path, capsys, extra, message):
    assert main(args_for(data_dir, tmp_path / "out", *extra)) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1
    assert not (tmp_path / "out" / "results.json").exists()


def test_missing_data_corrupt_results_and_bad_out(data_dir, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(args_for(empty, tmp_path / "out", "--sizes", "64")) == 2
    assert "error: Fashion-MNIST file train-images-idx3-ubyte[.gz] not found" in capsys.readouterr().err

    out = tmp_path / "bad"
    out.mkdir()
    (out / "results.json").write_text("{not json")
    assert main(args_for(data_dir, out, "--sizes", "64", "--models", "vit")) == 2
    assert "results.json is not valid JSON" in capsys.readouterr().err
    assert (out / "results.json").read_text() == "{not json"           # left as it was

    (out / "results.json").write_text(json.dumps({"runs": []}))
    assert main(args_for(data_dir, out, "--sizes", "64", "--models", "vit")) == 2
    assert "is not a results file of this script" in capsys.readouterr().err

    a_file = tmp_path / "file"
    a_file.write_text("x")
    assert main(args_for(data_dir, a_file, "--sizes", "64")) == 2
    assert "exists and is not a directory" in capsys.readouterr().err
