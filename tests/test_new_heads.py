"""vitnp.experiments.new_heads on tiny synthetic data and a tiny random checkpoint (no network)."""
import numpy as np

from vitnp import init_params
from vitnp.experiments import new_heads as nh
from vitnp.training.rundir import save_checkpoint

from support import TINY, bands


def test_group_labels_cover_the_ten_classes_once():
    assert sorted(c for g in nh.GROUPS.values() for c in g) == list(range(10))
    assert nh.group_labels(np.array([0, 5, 1, 9, 8])).tolist() == [0, 1, 2, 1, 2]


def test_every_task_and_few_shot_head_on_tiny_data(tmp_path):
    ckpt, other = tmp_path / "tiny.npz", tmp_path / "ssl.npz"
    save_checkpoint(ckpt, init_params(TINY, 3), TINY)
    save_checkpoint(other, init_params(TINY, 4), TINY)
    data = (*bands(5600, 0), *bands(300, 1))                       # 5,000 held out for validation, 600 to train
    out = nh.run(tmp_path / "out", ckpt, self_supervised=other, data=data, seeds=(0, 1), shots=(1, 5),
                 log=lambda line: None)
    assert (tmp_path / "out" / "results.json").is_file() and out["n"] == {"train": 600, "val": 5000, "test": 300}
    assert list(out["bodies"]) == ["trained", "self-supervised", "random"]
    for kind in out["bodies"]:
        tasks = out["bodies"][kind]["tasks"]
        assert set(tasks) == {"classes", "groups", "mirrored"}
        assert all(0 <= r["test_acc"] <= 1 and r["lam"] in nh.LAMBDAS for r in tasks.values())
        few = out["bodies"][kind]["few_shot"]
        assert set(few) == {"1", "5"} and len(few["5"]["test_acc"]) == 2
    assert out["bodies"]["trained"]["tasks"]["classes"]["test_acc"] > 0.5    # bands are easy even for random features
