"""vitnp.bench (python -m vitnp bench): the throughput benchmark and its PyTorch worker (the same model, compared
by name), bench --ops (each fast op against its twin, and the table it writes into docs/performance.md) and
bench --profile; the FLOP count behind the percentage of peak."""
import json

import numpy as np
import pytest

import vitnp
from vitnp import fast
from vitnp.gradcheck import rel_error


def _load_torch_worker():
    import importlib.util
    from vitnp.bench.run import TORCH_WORKER
    if not TORCH_WORKER.is_file():
        pytest.skip("benchmarks/torch_worker.py is not in this checkout")
    spec = importlib.util.spec_from_file_location("torch_worker", TORCH_WORKER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module

# ================================================================================================
# The benchmark: its arithmetic, its vitnp worker, and the PyTorch worker's model
# ================================================================================================
def test_matmul_flops_by_hand():
    """base28 forward, per image: E 2·49·16·192 = 301,056; per block qkv 2·50·192·576 = 11,059,200,
    q kᵀ and A v 2·2·50·50·192 = 1,920,000, U_msa 2·50·192² = 3,686,400, MLP 2·2·50·192·768 = 29,491,200
    (46,156,800 per block); head 2·192·10 = 3,840.  Training: 3× forward minus E's input gradient."""
    from vitnp.bench.run import CONFIGS, matmul_flops
    cfg = vitnp.ViTConfig(**CONFIGS["base28"])
    forward = 301_056 + 6 * (11_059_200 + 1_920_000 + 3_686_400 + 29_491_200) + 3_840
    assert matmul_flops(cfg, 1, train=False) == forward
    assert matmul_flops(cfg, 128, train=True) == 128 * (3 * forward - 301_056)     # ≈ 106.4 GFLOP
    assert 106e9 < matmul_flops(cfg, 128) < 107e9


def test_bench_runs_vitnp_only_and_writes_json(tmp_path, monkeypatch, capsys):
    """The whole command on a tiny batch, without torch: table, 'PyTorch was not available', JSON."""
    from vitnp.bench import run as bench
    from vitnp.cli import bench as bench_cli
    monkeypatch.setattr(bench, "matmul_peak", lambda threads: {"gflops": 10.0, "by_size": {256: 10.0}})
    out_json = tmp_path / "bench.json"
    rc = bench_cli.main(["--config", "small", "--batch-size", "4", "--eval-batch-size", "6", "--steps", "1",
                     "--rounds", "2", "--no-torch", "--no-gradcheck", "--json", str(out_json)])
    out = capsys.readouterr().out
    assert rc == 0
    assert "small    vitnp" in out and "PyTorch was not available (--no-torch given)" in out
    assert "BLAS openblas" in out or "BLAS unknown" in out
    data = json.loads(out_json.read_text())
    side = data["results"][0]["sides"]["vitnp"]
    assert len(side["train_times"]) == 2 and side["train_img_s"] > 0 and side["max_rss_bytes"] > 0
    assert len(side["infer_eval_times"]) == 2 and len(side["latency_times"]) == 40 and side["latency_s"] > 0
    assert side["infer_eval_img_s"] > 0 and 0 < side["train_max_rss_bytes"] <= side["max_rss_bytes"]
    assert set(data["results"][0]["sides"]) == {"vitnp"} and "library" in data["machine"]["blas"]


def test_bench_with_both_torch_sides(monkeypatch, capsys):
    """With torch: two PyTorch sides (SDPA, the baseline, and explicit attention) in the same rounds, each
    with its ratios; the summary line names the baseline."""
    pytest.importorskip("torch")
    from vitnp.bench import run as bench
    from vitnp.cli import bench as bench_cli
    monkeypatch.setattr(bench, "matmul_peak", lambda threads: {"gflops": 10.0, "by_size": {256: 10.0}})
    assert bench_cli.main(["--config", "small", "--batch-size", "4", "--eval-batch-size", "6", "--steps", "1",
                       "--rounds", "1", "--no-gradcheck", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "small    pytorch-sdpa" in out and "small    pytorch-explicit" in out
    assert "small: against pytorch-sdpa: training" in out and "batch-1 latency" in out


def test_bench_reference_side_and_ops_table(tmp_path, monkeypatch, capsys):
    """``--reference`` adds the clear model as a third side with its ratio; ``--ops`` prints the per-op table."""
    from vitnp.bench import run as bench
    from vitnp.cli import bench as bench_cli
    from vitnp.bench import ops as bench_ops
    monkeypatch.setattr(bench, "matmul_peak", lambda threads: {"gflops": 10.0, "by_size": {256: 10.0}})
    out_json = tmp_path / "bench.json"
    assert bench_cli.main(["--config", "small", "--batch-size", "4", "--steps", "1", "--rounds", "1", "--no-torch",
                       "--no-gradcheck", "--reference", "--json", str(out_json)]) == 0
    out = capsys.readouterr().out
    assert "vitnp-reference" in out and "fast path / reference path: training" in out
    result = json.loads(out_json.read_text())["results"][0]
    assert set(result["sides"]) == {"vitnp", "vitnp-reference"} and result["fast_over_reference_train"] > 0
    monkeypatch.setattr(bench_ops, "B", 2)
    assert bench_cli.main(["--ops", "--rounds", "1", "--steps", "1", "--json", str(out_json)]) == 0
    out = capsys.readouterr().out
    rows = json.loads(out_json.read_text())["ops"]
    assert [r["op"].split(" (")[0] for r in rows] == ["linear", "layernorm", "ln_linear", "softmax", "gelu exact", "gelu tanh",
                                                      "attention", "msa", "encoder block"]
    assert all(r["ratio"] > 0 for r in rows) and "gain = reference time / fast time" in out


def test_bench_rejects_bad_numbers(capsys):
    from vitnp.bench import run as bench
    from vitnp.cli import bench as bench_cli
    assert bench_cli.main(["--batch-size", "0", "--no-torch", "--no-gradcheck"]) == 2
    assert "must be positive" in capsys.readouterr().err


def test_torch_worker_is_the_same_model():
    """Load vitnp's parameters into the benchmark's PyTorch ViT: same logits (float64), same count.
    So the benchmark compares the same model (pre-LN blocks, exact GELU, class token, E_pos, head)."""
    torch = pytest.importorskip("torch")
    tw = _load_torch_worker()
    cfg = vitnp.ViTConfig(image_size=(8, 12), patch_size=4, in_channels=2, num_classes=5, dim=12, heads=3,
                          mlp_dim=20, depth=2, dtype="float64")
    rng = np.random.default_rng(0)
    params = {k: v + 0.2 * rng.standard_normal(v.shape) for k, v in vitnp.init_params(cfg, 0).items()}
    x = rng.standard_normal((3, 8, 12, 2))
    model = tw.ViT(cfg.to_dict()).double()
    assert sum(t.numel() for t in model.parameters()) == vitnp.count_params(cfg)
    t = lambda a: torch.as_tensor(a)
    state = {"embed.weight": t(params["E"].T), "embed.bias": t(params["E_bias"]),
             "x_class": t(params["x_class"][None, None]), "E_pos": t(params["E_pos"][None]),
             "ln_f.weight": t(params["ln_f.gamma"]), "ln_f.bias": t(params["ln_f.beta"]),
             "head.weight": t(params["head.W"].T), "head.bias": t(params["head.b"])}
    for l in range(cfg.depth):
        b, m = f"blocks.{l}.", f"blocks.{l}."
        state.update({m + "ln1.weight": t(params[b + "ln1.gamma"]), m + "ln1.bias": t(params[b + "ln1.beta"]),
                      m + "attn.qkv.weight": t(params[b + "U_qkv"].T), m + "attn.qkv.bias": t(params[b + "U_qkv_bias"]),
                      m + "attn.out.weight": t(params[b + "U_msa"].T), m + "attn.out.bias": t(params[b + "U_msa_bias"]),
                      m + "ln2.weight": t(params[b + "ln2.gamma"]), m + "ln2.bias": t(params[b + "ln2.beta"]),
                      m + "mlp.0.weight": t(params[b + "mlp.W1"].T), m + "mlp.0.bias": t(params[b + "mlp.b1"]),
                      m + "mlp.2.weight": t(params[b + "mlp.W2"].T), m + "mlp.2.bias": t(params[b + "mlp.b2"])})
    model.load_state_dict({k: v.contiguous() for k, v in state.items()}, strict=True)
    with torch.no_grad():
        ours = vitnp.vit_forward(params, x, cfg)[0]
        theirs = model(t(x)).numpy()
        for blk in model.blocks:
            blk.attn.sdpa = True                                 # the --attention sdpa variant: same numbers
        theirs_sdpa = model(t(x)).numpy()
    tol = 1e-9       # vitnp's erf is a fit, max error 5.7e-10 in float64 (ops/erf.py); torch's is libm's
    assert rel_error(ours, theirs) <= tol and rel_error(ours, theirs_sdpa) <= tol


def test_bench_profile_without_torch(tmp_path, monkeypatch, capsys):
    """``bench --profile --no-torch``: vitnp's per-op rows add up to the step's wall time (the rest row
    takes what no wrapped op took), the wrapped functions are restored afterwards, JSON is written."""
    from vitnp.bench import run as bench
    from vitnp.cli import bench as bench_cli
    from vitnp.bench.profile import ROWS
    import vitnp.fast.ln_linear  # noqa: F401  (makes fast.ln_linear an attribute)
    before = (fast.block.gelu_forward, fast.attention.softmax_forward, fast.model.embed_forward,
              fast.ln_linear.normalize_forward)
    out_json = tmp_path / "profile.json"
    assert bench_cli.main(["--profile", "--config", "small", "--batch-size", "4", "--steps", "1", "--no-torch",
                       "--json", str(out_json)]) == 0
    text = capsys.readouterr().out
    assert "one training step" in text and "one inference pass" in text and "| gelu |" in text
    assert (fast.block.gelu_forward, fast.attention.softmax_forward, fast.model.embed_forward,
            fast.ln_linear.normalize_forward) == before
    prof = json.loads(out_json.read_text())["profile"]["small"]["vitnp"]
    for kind in ("train", "infer"):
        assert set(prof[kind]) == set(ROWS)
        assert all(prof[kind][row] > 0 for row in ROWS[:5])             # every op is seen, LN inside ln_linear too
        assert sum(prof[kind].values()) == pytest.approx(prof[f"{kind}_ms"], rel=0.2)


def test_torch_worker_profile_rows():
    """The torch worker's --profile mode: every row gets time, GEMMs and GELU among them; AdamW apart."""
    pytest.importorskip("torch")
    from vitnp.bench.run import CONFIGS, TORCH_WORKER
    from vitnp.bench.profile import profile_torch
    if not TORCH_WORKER.is_file():
        pytest.skip("benchmarks/torch_worker.py is not in this checkout")
    cfg = vitnp.ViTConfig(**CONFIGS["small"])
    for attention in ("sdpa", "explicit"):
        prof = profile_torch(cfg, 4, 1, TORCH_WORKER, attention)
        assert prof["train"]["linear (GEMM + bias)"] > 0 and prof["train"]["gelu"] > 0
        assert prof["train"]["AdamW"] > 0 and prof["infer"]["AdamW"] == 0
        assert prof["infer"]["attention (q kᵀ, A v)"] > 0 and prof["train_ms"] > prof["infer_ms"] > 0


def test_bench_ops_writes_its_table_between_the_markers(tmp_path):
    from vitnp.bench.ops import TABLE_BEGIN, TABLE_END, write_table
    md = tmp_path / "perf.md"
    md.write_text(f"# Title\n\n{TABLE_BEGIN}\nold\n{TABLE_END}\n\nafter\n")
    rows = [{"op": "linear (B, T, D) -> (B, T, M)", "reference_total_s": 0.004, "fast_total_s": 0.002, "ratio": 2.0}]
    write_table(md, rows, {"cpu": "Test CPU", "blas": {"library": "openblas"}}, rounds=3)
    text = md.read_text()
    assert "old" not in text and "| linear (B, T, D) -> (B, T, M) | 4.00 | 2.00 | 2.00× |" in text
    assert text.startswith("# Title\n") and text.endswith("\nafter\n") and "on Test CPU" in text
    md.write_text("no markers\n")
    with pytest.raises(ValueError, match="expected one line"):
        write_table(md, rows, {}, rounds=3)
    assert md.read_text() == "no markers\n"
