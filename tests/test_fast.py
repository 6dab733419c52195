"""The fast training step equals the clear one.

vitnp's ops were made faster in place (issue 5: the attention scale folded into U_qkv, q/k/v read as
views of one (B, T, 3, k, D_h) array and dq/dk/dv written straight into one, fewer passes in
LayerNorm and softmax), and :mod:`vitnp.parallel` runs large batches as shards in threads.  This file
keeps a frozen copy of the clear implementation as it was before those changes (``ref_*`` below, written
from the paper's equations with no tricks) and checks that today's ``vit_forward`` / ``vit_backward``
give the same logits, attention weights and gradients:

- float32, on several random configs and batch sizes (sharded and not): relative error
  max|a − b| / (max|a| + max|b|) ≤ ``F32_TOL`` = 1e-5 per array (float32 has 24-bit mantissas; sums over
  a few thousand terms in a different order differ by a few 1e-7 relative);
- float64: ≤ ``F64_TOL`` = 1e-12, so a real difference cannot hide behind float32 rounding.

The gradient checks (tests/test_gradcheck.py, float64) still prove every op on its own.
"""
import json
import math

import numpy as np
import pytest

import vitnp
from vitnp import parallel
from vitnp.gradcheck import rel_error
from vitnp.ops.attention import attention_backward, attention_forward, msa_backward, msa_forward
from vitnp.ops.gelu import gelu_backward, gelu_forward
from vitnp.ops.layernorm import layernorm_backward, layernorm_forward
from vitnp.ops.loss import softmax_cross_entropy
from vitnp.ops.softmax import softmax_backward, softmax_forward
from vitnp.optim import AdamW

F32_TOL = 1e-5
F64_TOL = 1e-12


# ================================================================================================
# The frozen clear reference (vitnp's ops before issue 5), no dropout
# ================================================================================================
def ref_linear_f(x, W, b):
    return x @ W + b, (x, W)


def ref_linear_b(d, c):
    x, W = c
    x2, d2 = x.reshape(-1, x.shape[-1]), d.reshape(-1, d.shape[-1])
    return d @ W.T, x2.T @ d2, d2.sum(0)


def ref_ln_f(x, g, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    inv = 1.0 / np.sqrt(var + eps)
    xh = (x - mu) * inv
    return xh * g + b, (xh, inv, g)


def ref_ln_b(d, c):
    xh, inv, g = c
    axes = tuple(range(d.ndim - 1))
    dxh = d * g
    dx = inv * (dxh - dxh.mean(-1, keepdims=True) - xh * (dxh * xh).mean(-1, keepdims=True))
    return dx, (d * xh).sum(axes), d.sum(axes)


def ref_softmax_f(S):
    m = S.max(-1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    e = np.exp(S - m)
    s = e.sum(-1, keepdims=True)
    return np.divide(e, s, out=np.zeros_like(e), where=s > 0)


def ref_msa_f(z, p, heads, mask):
    B, T, D = z.shape
    qkv, c_qkv = ref_linear_f(z, p["U_qkv"], p["U_qkv_bias"])                   # (B, T, 3D)
    split = lambda t: t.reshape(B, T, heads, D // heads).transpose(0, 2, 1, 3)    # (B, k, T, D_h)
    q, k, v = (split(qkv[..., i * D:(i + 1) * D]) for i in range(3))
    S = q @ k.swapaxes(-1, -2) / math.sqrt(D // heads)
    if mask is not None:
        S = np.where(mask, S, -np.inf)
    A = ref_softmax_f(S)
    o = (A @ v).transpose(0, 2, 1, 3).reshape(B, T, D)
    out, c_out = ref_linear_f(o, p["U_msa"], p["U_msa_bias"])
    return out, A, (c_qkv, q, k, v, A, c_out, heads)


def ref_msa_b(dout, c):
    c_qkv, q, k, v, A, c_out, heads = c
    B, T, D = dout.shape
    do, dU_msa, dU_msa_bias = ref_linear_b(dout, c_out)
    do = do.reshape(B, T, heads, D // heads).transpose(0, 2, 1, 3)
    dv = A.swapaxes(-1, -2) @ do
    dA = do @ v.swapaxes(-1, -2)
    dS = A * (dA - (dA * A).sum(-1, keepdims=True)) / math.sqrt(D // heads)
    dq, dk = dS @ k, dS.swapaxes(-1, -2) @ q
    merge = lambda t: t.transpose(0, 2, 1, 3).reshape(B, T, D)
    dqkv = np.concatenate([merge(dq), merge(dk), merge(dv)], axis=-1)
    dz, dU_qkv, dU_qkv_bias = ref_linear_b(dqkv, c_qkv)
    return dz, dU_qkv, dU_qkv_bias, dU_msa, dU_msa_bias


def ref_block_f(z, p, heads, gelu, eps, mask):
    a, c1 = ref_ln_f(z, p["ln1.gamma"], p["ln1.beta"], eps)
    a, A, cm = ref_msa_f(a, p, heads, mask)
    z1 = z + a                                                                    # Eq 2
    m, c2 = ref_ln_f(z1, p["ln2.gamma"], p["ln2.beta"], eps)
    h, ch = ref_linear_f(m, p["mlp.W1"], p["mlp.b1"])
    g, cg = gelu_forward(h, gelu)
    out, co = ref_linear_f(g, p["mlp.W2"], p["mlp.b2"])
    return z1 + out, A, (c1, cm, c2, ch, cg, co)                                  # Eq 3


def ref_block_b(d, c):
    c1, cm, c2, ch, cg, co = c
    g = {}
    dg, g["mlp.W2"], g["mlp.b2"] = ref_linear_b(d, co)
    dh = gelu_backward(dg, cg)
    dm, g["mlp.W1"], g["mlp.b1"] = ref_linear_b(dh, ch)
    dm, g["ln2.gamma"], g["ln2.beta"] = ref_ln_b(dm, c2)
    dz1 = d + dm
    da, g["U_qkv"], g["U_qkv_bias"], g["U_msa"], g["U_msa_bias"] = ref_msa_b(dz1, cm)
    da, g["ln1.gamma"], g["ln1.beta"] = ref_ln_b(da, c1)
    return dz1 + da, g


def ref_forward(params, x, cfg, mask=None):
    """Eq 1–4 as in the clear model; returns logits, the L attention maps and the cache."""
    B, H, W, C = x.shape
    P = cfg.patch_size
    xp = x.reshape(B, H // P, P, W // P, P, C).transpose(0, 1, 3, 2, 4, 5).reshape(B, -1, P * P * C)
    z, cE = ref_linear_f(xp, params["E"], params["E_bias"])
    if cfg.classifier == "token":
        z = np.concatenate([np.broadcast_to(params["x_class"], (B, 1, cfg.dim)), z], axis=1)
    if cfg.pos_embedding == "learned":
        z = z + params["E_pos"]
    elif cfg.pos_embedding == "sincos":
        z = z + vitnp.ops.posemb.sincos_2d(cfg)
    maps, caches = [], []
    for l in range(cfg.depth):
        p = {k[len(f"blocks.{l}."):]: v for k, v in params.items() if k.startswith(f"blocks.{l}.")}
        z, A, c = ref_block_f(z, p, cfg.heads, cfg.gelu, cfg.ln_eps, mask)
        maps.append(A)
        caches.append(c)
    z, cf = ref_ln_f(z, params["ln_f.gamma"], params["ln_f.beta"], cfg.ln_eps)
    y = z[:, 0] if cfg.classifier == "token" else z.mean(1)
    logits, ch = ref_linear_f(y, params["head.W"], params["head.b"])
    return logits, maps, (cE, caches, cf, ch, z.shape)


def ref_backward(dlogits, cache, cfg):
    cE, caches, cf, ch, shape = cache
    g = {}
    dy, g["head.W"], g["head.b"] = ref_linear_b(dlogits, ch)
    dz = np.zeros(shape, dlogits.dtype)
    if cfg.classifier == "token":
        dz[:, 0] = dy
    else:
        dz[:] = dy[:, None, :] / shape[1]
    dz, g["ln_f.gamma"], g["ln_f.beta"] = ref_ln_b(dz, cf)
    for l in reversed(range(cfg.depth)):
        dz, bg = ref_block_b(dz, caches[l])
        g.update({f"blocks.{l}.{k}": v for k, v in bg.items()})
    if cfg.pos_embedding == "learned":
        g["E_pos"] = dz.sum(0)
    if cfg.classifier == "token":
        g["x_class"] = dz[:, 0].sum(0)
        dz = dz[:, 1:]
    _, g["E"], g["E_bias"] = ref_linear_b(dz, cE)
    return g


# ================================================================================================
# Today's model against the frozen reference
# ================================================================================================
def random_case(seed, dtype, **fields):
    """A random config (patch grid, width, heads, MLP, depth, readout, position embedding, GELU), params
    perturbed away from the initialisation (so LayerNorm γ ≠ 1 and the head is not zero), and images."""
    rng = np.random.default_rng(seed)
    P = int(rng.choice([2, 4]))
    heads = int(rng.choice([1, 2, 3]))
    cfg_fields = dict(
        image_size=(P * int(rng.integers(2, 5)), P * int(rng.integers(2, 5))), patch_size=P,
        in_channels=int(rng.integers(1, 4)), num_classes=int(rng.integers(2, 7)),
        dim=heads * 4 * int(rng.integers(1, 4)), heads=heads, mlp_dim=int(rng.integers(5, 40)),
        depth=int(rng.integers(1, 4)), classifier=str(rng.choice(["token", "gap"])),
        pos_embedding=str(rng.choice(["learned", "sincos", "none"])), gelu=str(rng.choice(["exact", "tanh"])),
        dtype=dtype)
    cfg_fields.update(fields)
    cfg = vitnp.ViTConfig(**cfg_fields)
    params = {k: (v + 0.3 * rng.standard_normal(v.shape)).astype(dtype)
              for k, v in vitnp.init_params(cfg, seed).items()}
    x = rng.standard_normal((int(rng.integers(3, 13)), *cfg.hw, cfg.in_channels)).astype(dtype)
    dlogits = rng.standard_normal((x.shape[0], cfg.num_classes)).astype(dtype)
    return cfg, params, x, dlogits


def compare(cfg, params, x, dlogits, mask=None):
    """{name: relative error} between vit_forward/vit_backward and the frozen reference."""
    logits, cache = vitnp.vit_forward(params, x, cfg, attn_mask=mask)
    grads = vitnp.vit_backward(dlogits, cache)
    r_logits, r_maps, r_cache = ref_forward(params, x, cfg, mask)
    r_grads = ref_backward(dlogits, r_cache, cfg)
    assert logits.dtype == grads["E"].dtype == np.dtype(cfg.dtype)
    assert set(grads) == set(r_grads) == set(params)
    errors = {"logits": rel_error(logits, r_logits)}
    assert len(cache["attention"]) == cfg.depth
    for l, (A, rA) in enumerate(zip(cache["attention"], r_maps)):
        assert A.shape == (x.shape[0], cfg.heads, cfg.num_tokens, cfg.num_tokens)
        errors[f"attention {l}"] = rel_error(A, rA)
    errors.update({k: rel_error(grads[k], r_grads[k]) for k in r_grads})
    return errors


@pytest.fixture(params=["unsharded", "sharded"])
def sharding(request):
    """Run a test with sharding off, and with it forced on for any batch (3 threads, min_rows 1)."""
    before = parallel.configure()
    if request.param == "sharded":
        if not before["blas_control"]:
            pytest.skip("BLAS threads cannot be controlled here, so vitnp never shards")
        parallel.configure(threads=3, min_rows=1, shards_per_thread=2)
    else:
        parallel.configure(threads=1)
    yield request.param
    parallel.configure(threads=before["threads"], min_rows=before["min_rows"],
                       shards_per_thread=before["shards_per_thread"])


@pytest.mark.parametrize("seed", range(8))
def test_float32_equals_reference(seed, sharding):
    cfg, params, x, dlogits = random_case(seed, "float32")
    bad = {k: e for k, e in compare(cfg, params, x, dlogits).items() if not e <= F32_TOL}
    assert not bad, f"{cfg}: relative errors above {F32_TOL:g}: {bad}"


@pytest.mark.parametrize("seed", range(4))
def test_float64_equals_reference(seed, sharding):
    cfg, params, x, dlogits = random_case(100 + seed, "float64")
    bad = {k: e for k, e in compare(cfg, params, x, dlogits).items() if not e <= F64_TOL}
    assert not bad, f"{cfg}: relative errors above {F64_TOL:g}: {bad}"


def test_masks_equal_reference(sharding):
    """A causal (T, T) mask and a per-image (B, 1, T, T) mask, which sharding must slice by image."""
    cfg, params, x, dlogits = random_case(7, "float32", classifier="token")
    T, B = cfg.num_tokens, x.shape[0]
    causal = np.tril(np.ones((T, T), dtype=bool))
    errors = compare(cfg, params, x, dlogits, causal)
    assert max(errors.values()) <= F32_TOL, errors
    per_image = np.ones((B, 1, T, T), dtype=bool)
    per_image[::2, :, :, -1] = False                     # even images may not attend the last token
    errors = compare(cfg, params, x, dlogits, per_image)
    assert max(errors.values()) <= F32_TOL, errors


def test_the_comparison_can_fail():
    """A one-ulp-scale change is invisible, a real one is not: perturb one weight of the last block."""
    cfg, params, x, dlogits = random_case(3, "float32")
    logits, _ = vitnp.vit_forward(params, x, cfg)
    changed = dict(params)
    key = f"blocks.{cfg.depth - 1}.mlp.W2"
    changed[key] = params[key] * np.float32(1.001)
    r_logits, _, _ = ref_forward(changed, x, cfg)
    assert rel_error(logits, r_logits) > F32_TOL


# ================================================================================================
# The changed ops, one by one, against the reference formulas
# ================================================================================================
def test_softmax_and_layernorm_ops_equal_reference():
    rng = np.random.default_rng(0)
    S = (3 * rng.standard_normal((4, 3, 6, 6))).astype(np.float32)
    S[0, 0, 2] = -np.inf                                 # a row that may attend nowhere
    y, c = softmax_forward(S)
    r = ref_softmax_f(S)
    assert rel_error(y, r) <= F32_TOL and not y[0, 0, 2].any()
    dy = rng.standard_normal(S.shape).astype(np.float32)
    rdx = r * (dy - (dy * r).sum(-1, keepdims=True))
    assert rel_error(softmax_backward(dy, c), rdx) <= F32_TOL
    x = (2 * rng.standard_normal((5, 7, 12)) + 1).astype(np.float32)
    g, b = rng.standard_normal(12).astype(np.float32), rng.standard_normal(12).astype(np.float32)
    out, c = layernorm_forward(x, g, b, 1e-6)
    r_out, r_c = ref_ln_f(x, g, b, 1e-6)
    assert out.dtype == np.float32 and rel_error(out, r_out) <= F32_TOL
    d = rng.standard_normal(x.shape).astype(np.float32)
    for a, ra in zip(layernorm_backward(d, c), ref_ln_b(d, r_c)):
        assert a.dtype == np.float32 and rel_error(a, ra) <= F32_TOL


def test_attention_scale_and_out_arguments():
    """scale=1 on pre-scaled q gives the default result; out= receives it; the backward's out= too."""
    rng = np.random.default_rng(1)
    q, k, v = (rng.standard_normal((2, 3, 5, 4)) for _ in range(3))
    out, A, c = attention_forward(q, k, v)
    buf = np.empty((2, 5, 3, 4))
    out2, A2, c2 = attention_forward(q / 2.0, k, v, scale=1.0, out=buf.transpose(0, 2, 1, 3))
    assert np.allclose(out, out2, rtol=1e-13, atol=1e-14) and np.allclose(A, A2, rtol=1e-13, atol=1e-14)
    assert np.shares_memory(out2, buf) and np.allclose(buf.transpose(0, 2, 1, 3), out, rtol=1e-13, atol=1e-14)
    d = rng.standard_normal(out.shape)
    dq, dk, dv = attention_backward(d, c)
    bufs = np.empty((3, 2, 3, 5, 4))
    dq2, dk2, dv2 = attention_backward(d, c2, out=tuple(bufs))
    assert np.allclose(dq, dq2 / 2.0, rtol=1e-12, atol=1e-14)          # ∂/∂(q/2) = 2 ∂/∂q … via the scale
    assert np.allclose(dk, dk2, rtol=1e-12, atol=1e-14) and np.allclose(dv, dv2, rtol=1e-12, atol=1e-14)
    assert np.shares_memory(dq2, bufs) and np.array_equal(bufs[2], dv2)


def test_msa_does_not_modify_its_parameters():
    """The 1/√D_h fold works on copies: U_qkv and its bias are untouched by forward and backward."""
    rng = np.random.default_rng(2)
    z = rng.standard_normal((2, 5, 6)).astype(np.float32)
    p = [rng.standard_normal(s).astype(np.float32) for s in ((6, 18), (18,), (6, 6), (6,))]
    before = [a.copy() for a in p]
    out, A, c = msa_forward(z, *p, heads=2)
    msa_backward(rng.standard_normal(out.shape).astype(np.float32), c)
    assert all(np.array_equal(a, b) for a, b in zip(p, before))


# ================================================================================================
# The training step, and the sharding settings
# ================================================================================================
def test_adamw_steps_match_reference(sharding):
    """Three AdamW steps from the same start give the same parameters.

    One exception is principled: the key bias b_k (the middle third of U_qkv_bias) adds q·b_k to every
    logit of a row, which softmax ignores, so its exact gradient is 0 and both implementations return
    rounding noise there — which Adam, dividing by √v, turns into full-size steps of random sign.  We
    check that this gradient is noise-sized, and compare everything else.
    """
    cfg, params, x, _ = random_case(11, "float32")
    D = cfg.dim
    labels = np.arange(x.shape[0]) % cfg.num_classes
    runs = []
    for use_ref in (False, True):
        p = {k: v.copy() for k, v in params.items()}
        opt = AdamW(p, lr=1e-3, weight_decay=0.05)
        for _ in range(3):
            if use_ref:
                logits, _, c = ref_forward(p, x, cfg)
                _, dl = softmax_cross_entropy(logits, labels)
                g = ref_backward(dl, c, cfg)
            else:
                logits, c = vitnp.vit_forward(p, x, cfg, train=True)
                _, dl = softmax_cross_entropy(logits, labels)
                g = vitnp.vit_backward(dl, c)
            for l in range(cfg.depth):
                b = g[f"blocks.{l}.U_qkv_bias"]
                assert np.abs(b[D:2 * D]).max() <= 1e-5 * np.abs(b).max(), "b_k's gradient should be ~0"
            opt.step(p, g)
        for l in range(cfg.depth):
            p[f"blocks.{l}.U_qkv_bias"] = np.delete(p[f"blocks.{l}.U_qkv_bias"], np.s_[D:2 * D])
        runs.append(p)
    errors = {k: rel_error(runs[0][k], runs[1][k]) for k in params}
    bad = {k: e for k, e in errors.items() if not e <= F32_TOL}
    assert not bad, bad


def test_dropout_never_shards_and_stays_reproducible():
    cfg = vitnp.ViTConfig(image_size=8, patch_size=2, dim=8, heads=2, mlp_dim=8, depth=1, dropout=0.2,
                          attention_dropout=0.1)
    params = vitnp.init_params(cfg, 0)
    x = np.random.default_rng(0).standard_normal((16, 8, 8, 1)).astype(np.float32)
    before = parallel.configure()
    try:
        parallel.configure(threads=2, min_rows=1)
        a, ca = vitnp.vit_forward(params, x, cfg, train=True, rng=5)
        b, _ = vitnp.vit_forward(params, x, cfg, train=True, rng=5)
        assert "shards" not in ca and np.array_equal(a, b)
        _, ce = vitnp.vit_forward(params, x, cfg)                         # eval: no dropout, may shard
        assert ("shards" in ce) == before["blas_control"]
    finally:
        parallel.configure(threads=before["threads"], min_rows=before["min_rows"])


def test_shard_slices_cover_the_batch():
    before = parallel.configure()
    try:
        parallel.configure(threads=2, min_rows=100, shards_per_thread=2)
        if before["blas_control"]:
            assert parallel.shard_slices(128, 50) == [slice(0, 32), slice(32, 64), slice(64, 96), slice(96, 128)]
            assert parallel.shard_slices(10, 30) == [slice(0, 3), slice(3, 6), slice(6, 10)]   # 300 rows: 3
        assert parallel.shard_slices(3, 10) == [slice(0, 3)]                    # 30 rows: not worth a thread
        parallel.configure(threads=1)
        assert parallel.shard_slices(128, 50) == [slice(0, 128)]
        with pytest.raises(ValueError, match="threads must be a positive integer"):
            parallel.configure(threads=0)
    finally:
        parallel.configure(threads=before["threads"], min_rows=before["min_rows"],
                           shards_per_thread=before["shards_per_thread"])


def test_blas_threads_are_restored():
    fns = parallel._blas_functions()
    if fns is None:
        pytest.skip("OpenBLAS not found in this NumPy")
    get, _ = fns
    before = get()
    with parallel.blas_threads(1):
        assert get() == 1
    assert get() == before


# ================================================================================================
# The benchmark: its arithmetic, its vitnp worker, and the PyTorch worker's model
# ================================================================================================
def test_matmul_flops_by_hand():
    """base28 forward, per image: E 2·49·16·192 = 301,056; per block qkv 2·50·192·576 = 11,059,200,
    q kᵀ and A v 2·2·50·50·192 = 1,920,000, U_msa 2·50·192² = 3,686,400, MLP 2·2·50·192·768 = 29,491,200
    (46,156,800 per block); head 2·192·10 = 3,840.  Training: 3× forward minus E's input gradient."""
    from vitnp.bench import CONFIGS, matmul_flops
    cfg = vitnp.ViTConfig(**CONFIGS["base28"])
    forward = 301_056 + 6 * (11_059_200 + 1_920_000 + 3_686_400 + 29_491_200) + 3_840
    assert matmul_flops(cfg, 1, train=False) == forward
    assert matmul_flops(cfg, 128, train=True) == 128 * (3 * forward - 301_056)     # ≈ 106.4 GFLOP
    assert 106e9 < matmul_flops(cfg, 128) < 107e9


def test_bench_runs_vitnp_only_and_writes_json(tmp_path, monkeypatch, capsys):
    """The whole command on a tiny batch, without torch: table, 'PyTorch was not available', JSON."""
    from vitnp import bench
    monkeypatch.setattr(bench, "matmul_peak", lambda threads: {"gflops": 10.0, "by_size": {256: 10.0}})
    out_json = tmp_path / "bench.json"
    rc = bench.main(["--config", "small", "--batch-size", "4", "--steps", "1", "--rounds", "2", "--no-torch",
                     "--no-gradcheck", "--json", str(out_json)])
    out = capsys.readouterr().out
    assert rc == 0
    assert "small    vitnp" in out and "PyTorch was not available (--no-torch given)" in out
    data = json.loads(out_json.read_text())
    side = data["results"][0]["sides"]["vitnp"]
    assert len(side["train_times"]) == 2 and side["train_img_s"] > 0 and side["max_rss_bytes"] > 0
    assert "pytorch" not in data["results"][0]["sides"]


def test_bench_rejects_bad_numbers(capsys):
    from vitnp import bench
    assert bench.main(["--batch-size", "0", "--no-torch", "--no-gradcheck"]) == 2
    assert "must be positive" in capsys.readouterr().err


def _load_torch_worker():
    import importlib.util
    from vitnp.bench import TORCH_WORKER
    if not TORCH_WORKER.is_file():
        pytest.skip("benchmarks/torch_worker.py is not in this checkout")
    spec = importlib.util.spec_from_file_location("torch_worker", TORCH_WORKER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
    tol = 1e-9       # vitnp's erf is a fit, max error 5.7e-10 in float64 (ops/gelu.py); torch's is libm's
    assert rel_error(ours, theirs) <= tol and rel_error(ours, theirs_sdpa) <= tol


def test_overlapping_blas_blocks_restore_the_first_count():
    fns = parallel._blas_functions()
    if fns is None:
        pytest.skip("OpenBLAS not found in this NumPy")
    get, set_ = fns
    before = get()
    outer = parallel.blas_threads(1)
    inner = parallel.blas_threads(1)
    outer.__enter__()
    inner.__enter__()
    outer.__exit__(None, None, None)          # the first block ends while the second is still open
    assert get() == 1
    inner.__exit__(None, None, None)
    assert get() == before
