"""vitnp.training.rundir: a training checkpoint round-trips exactly (parameters, config, hyper-parameters, class names),
and a damaged, truncated, foreign or misshaped file is one clear line, never a traceback from NumPy.  (Writing a
run directory while training, resuming and surviving crashes: tests/test_training.py and
tests/test_training_reliability.py.)"""
import json

import numpy as np
import pytest

from vitnp import init_params
from vitnp.io.npz import load_npz, save_npz
from vitnp.training.rundir import load_checkpoint, save_checkpoint
from vitnp.training.presets import HParams

from support import TINY, assert_same_arrays

TINY_HP = HParams(epochs=3, batch_size=16, lr=3e-3, warmup_epochs=0.5, augment="crop+flip", eval_batch_size=13)


@pytest.fixture
def saved(tmp_path):
    params = init_params(TINY, seed=3)
    path = tmp_path / "ck.npz"
    save_checkpoint(path, params, TINY, hparams=TINY_HP, epoch=2, step=8)
    return path, params


def test_checkpoint_round_trip(saved):
    path, params = saved
    loaded, cfg, meta = load_checkpoint(path)
    assert cfg == TINY and HParams.from_dict(meta["hparams"]) == TINY_HP
    assert_same_arrays(params, loaded)
    assert (meta["epoch"], meta["step"], meta["optim"]) == (2, 8, None)
    assert meta["class_names"][0] == "T-shirt/top" and meta["norm_std"] > 0


def one_line_error(exc_info):
    msg = str(exc_info.value)
    assert "\n" not in msg
    return msg


def test_wrong_shapes_are_a_one_line_error(saved, tmp_path):
    path, _ = saved
    arrays = load_npz(path)
    arrays["params/E"] = np.zeros((50, 16), np.float32)
    del arrays["params/head.b"]
    bad = tmp_path / "bad.npz"
    save_npz(bad, arrays)
    with pytest.raises(ValueError) as e:
        load_checkpoint(bad)
    msg = one_line_error(e)
    assert "E has shape (50, 16), the config needs (49, 16)" in msg and "missing head.b" in msg


@pytest.mark.parametrize("damage, match", [
    (lambda a: a.pop("format"), "not a vitnp training checkpoint"),
    (lambda a: a.update(config_json=np.array("{not json")), "not valid JSON"),
    (lambda a: a.update(config_json=np.array(json.dumps({**TINY.to_dict(), "heads": 3}))), "bad config"),
    (lambda a: a.update(format=np.array("other/9")), "unsupported checkpoint format"),
    (lambda a: a.update(epoch=np.array(-1)), "'epoch'"),
])
def test_damaged_entries_are_one_line_errors(saved, tmp_path, damage, match):
    path, _ = saved
    arrays = load_npz(path)
    damage(arrays)
    save_npz(tmp_path / "bad.npz", arrays)
    with pytest.raises(ValueError, match=match) as e:
        load_checkpoint(tmp_path / "bad.npz")
    one_line_error(e)


def test_truncated_missing_and_foreign_files(saved, tmp_path):
    path, _ = saved
    raw = path.read_bytes()
    (tmp_path / "cut.npz").write_bytes(raw[:len(raw) // 2])
    with pytest.raises(ValueError, match="truncated or corrupt|not an .npz"):
        load_checkpoint(tmp_path / "cut.npz")
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "nothing.npz")
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(ValueError, match="not an .npz"):
        load_checkpoint(tmp_path / "text.npz")
    with pytest.raises(ValueError, match="is a directory"):
        load_checkpoint(tmp_path)


def test_save_checkpoint_takes_class_names_as_names(tmp_path):
    params = init_params(TINY)
    save_checkpoint(tmp_path / "a.npz", params, TINY, names=[f"n{k}" for k in range(10)])
    assert load_checkpoint(tmp_path / "a.npz")[2]["class_names"][0] == "n0"
    with pytest.raises(TypeError, match="class_names"):
        save_checkpoint(tmp_path / "c.npz", params, TINY, class_names=["y"] * 10)
    assert not (tmp_path / "c.npz").exists()
