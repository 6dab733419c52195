"""vitnp.experiments.self_supervision end to end on tiny synthetic data (no network): pre-training without labels,
fine-tuning both arms with the learning rate chosen on validation, the probes, the summary, and resuming."""
import json

import numpy as np

from vitnp.experiments import self_supervision as ss
from vitnp.self_supervised import MPP_KEYS
from vitnp.training.rundir import load_checkpoint

from support import TINY, bands

SETTINGS = {"pretrain_epochs": 2, "batch": 16, "labels": [80], "epochs": {"80": 2}, "seeds": [0, 1],
            "probe_epochs": 2}


def test_the_whole_experiment_on_tiny_data(tmp_path):
    cfg = TINY.replace(dropout=0.0)
    data = (*bands(160, 0), *bands(40, 1))
    logs = []
    out = ss.run(tmp_path, SETTINGS, data=data, cfg=cfg, log=logs.append)
    pre = out["pretrain"]["history"]
    assert pre and 0 <= pre[-1]["task_acc"] <= 1 and pre[-1]["step"] == 2 * (160 // 16)
    body, body_cfg, _ = load_checkpoint(tmp_path / "pretrained.npz")          # a checkpoint train() can start from
    assert body_cfg == cfg and not set(MPP_KEYS) & set(body) and not body["head.W"].any()
    assert len(out["runs"]) == 1 * 2 * 2 * len(ss.LEARNING_RATES) and len(out["probe"]) == 1 * 2 * 2
    row = out["summary"]["80"]
    for arm in ("pretrained", "scratch"):
        chosen = row[arm]
        assert chosen["n"] == 2
        for seed, lr, acc in zip((0, 1), chosen["lr"], chosen["test_acc"]):
            runs = {r["lr"]: r for r in out["runs"].values() if (r["seed"], r["arm"]) == (seed, arm)}
            best_lr = max(runs, key=lambda k: runs[k]["best_val_acc"])       # chosen on validation, not test
            assert lr == best_lr and acc == runs[best_lr]["test_acc"]
    assert np.isclose(row["gain"]["mean"], np.mean(row["pretrained"]["test_acc"]) - np.mean(row["scratch"]["test_acc"]))
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["summary"] == out["summary"]
    logs.clear()
    again = ss.run(tmp_path, SETTINGS, data=data, cfg=cfg, log=logs.append)  # resume: nothing left to do
    assert again["runs"] == out["runs"] and not any("pre-training" in line for line in logs)
