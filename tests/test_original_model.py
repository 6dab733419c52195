"""Original google-research/vision_transformer checkpoints (load_original / save_original) and the
2-D interpolation of E_pos for fine-tuning at a higher resolution (resize_pos_embedding).

Real checkpoints cannot be downloaded here, so the files are written in the original layout by the tests
themselves: once through save_original, and once key by key from a hand-written table, checked against
an independent forward pass written directly on the original (flax) arrays.
"""
import math
import os

import numpy as np
import pytest

from vitnp import ViTConfig, init_params, vit_forward
from vitnp.io.original import jax_shapes, load_original, resize_pos_embedding, save_original, to_jax
from vitnp.io.npz import load_npz, save_npz
from vitnp.data.resample import resize_grid
from vitnp.config import param_shapes

CONFIGS = {
    "token-square": ViTConfig(image_size=8, patch_size=4, in_channels=3, num_classes=5, dim=12, depth=2,
                              heads=3, mlp_dim=20, gelu="tanh"),
    "gap-square-k1": ViTConfig(image_size=9, patch_size=3, in_channels=1, num_classes=2, dim=6, depth=3,
                               heads=1, mlp_dim=7, classifier="gap", gelu="tanh"),
    "token-rect-f64": ViTConfig(image_size=(4, 12), patch_size=2, in_channels=2, num_classes=3, dim=8,
                                depth=1, heads=2, mlp_dim=8, gelu="tanh", dtype="float64"),
}


def random_params(cfg, seed=0):
    rng = np.random.default_rng(seed)
    return {k: (0.3 * rng.standard_normal(s)).astype(cfg.np_dtype) for k, s in param_shapes(cfg).items()}


def write_original(path, cfg, seed=0, **extra):
    """A checkpoint in the original layout, written with save_npz; returns the flat dict."""
    flat = to_jax(random_params(cfg, seed), cfg)
    flat.update(extra)
    save_npz(path, flat)
    return flat


# ---- round trips -------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(CONFIGS))
def test_save_then_load_gives_the_same_model(tmp_path, name):
    cfg = CONFIGS[name]
    params = random_params(cfg)
    path = tmp_path / "vit.npz"
    save_original(path, params, cfg)
    with np.load(path, allow_pickle=False) as f:                      # the file is the original layout
        assert {k: f[k].shape for k in f.files} == jax_shapes(cfg)
    size = cfg.image_size if cfg.image_size[0] != cfg.image_size[1] else None
    loaded, got_cfg = load_original(path, image_size=size)
    assert got_cfg == cfg
    assert list(loaded) == list(params)
    for k in params:
        assert loaded[k].dtype == params[k].dtype and np.array_equal(loaded[k], params[k]), k
    x = np.random.default_rng(1).standard_normal((2, *cfg.hw, cfg.in_channels)).astype(cfg.np_dtype)
    np.testing.assert_array_equal(vit_forward(loaded, x, got_cfg)[0], vit_forward(params, x, cfg)[0])


def test_gelu_and_dtype_are_arguments(tmp_path):
    cfg = CONFIGS["token-square"]
    save_original(tmp_path / "a.npz", random_params(cfg), cfg)
    params, got = load_original(tmp_path / "a.npz")
    assert got.gelu == "tanh" and got.dtype == "float32"              # the original code's GELU by default
    params, got = load_original(tmp_path / "a.npz", gelu="exact", dtype="float64")
    assert got.gelu == "exact" and got.dtype == "float64"
    assert all(v.dtype == np.float64 for v in params.values())


# ---- a file written key by key, against a forward pass on the original arrays --------------------------
def _ln(x, scale, bias):
    mu = x.mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + 1e-6) * scale + bias


def _gelu_tanh(x):
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def reference_forward(f, x, P, L):
    """The original model, read straight from its flax arrays (conv kernel, per-head q/k/v kernels)."""
    K = f["embedding/kernel"]                                        # (P, P, C, D)
    B, H, W, C = x.shape
    patches = x.reshape(B, H // P, P, W // P, P, C)
    z = np.einsum("bgiwjc,ijcd->bgwd", patches, K).reshape(B, -1, K.shape[-1]) + f["embedding/bias"]
    z = np.concatenate([np.broadcast_to(f["cls"], (B, 1, z.shape[-1])), z], axis=1)
    z = z + f["Transformer/posembed_input/pos_embedding"]
    for i in range(L):
        p = lambda name: f[f"Transformer/encoderblock_{i}/{name}"]  # noqa: E731
        a = "MultiHeadDotProductAttention_1/"
        y = _ln(z, p("LayerNorm_0/scale"), p("LayerNorm_0/bias"))
        q, k, v = (np.einsum("btd,dnh->btnh", y, p(a + n + "/kernel")) + p(a + n + "/bias")
                   for n in ("query", "key", "value"))
        logits = np.einsum("bqnh,bsnh->bnqs", q, k) / math.sqrt(q.shape[-1])
        w = np.exp(logits - logits.max(-1, keepdims=True))
        w /= w.sum(-1, keepdims=True)
        o = np.einsum("bnqs,bsnh->bqnh", w, v)
        z = z + np.einsum("bqnh,nhd->bqd", o, p(a + "out/kernel")) + p(a + "out/bias")
        y = _ln(z, p("LayerNorm_2/scale"), p("LayerNorm_2/bias"))
        y = _gelu_tanh(y @ p("MlpBlock_3/Dense_0/kernel") + p("MlpBlock_3/Dense_0/bias"))
        z = z + y @ p("MlpBlock_3/Dense_1/kernel") + p("MlpBlock_3/Dense_1/bias")
    y = _ln(z, f["Transformer/encoder_norm/scale"], f["Transformer/encoder_norm/bias"])[:, 0]
    return y @ f["head/kernel"] + f["head/bias"]


def hand_written_flat(P=2, C=3, D=6, heads=2, M=10, K=4, L=2, N=9, seed=0):
    """Every key of the original layout typed out, with its flax shape (VIT_NOTES §3b)."""
    rng = np.random.default_rng(seed)
    r = lambda *shape: 0.5 * rng.standard_normal(shape)  # noqa: E731
    Dh = D // heads
    f = {"embedding/kernel": r(P, P, C, D), "embedding/bias": r(D), "cls": r(1, 1, D),
         "Transformer/posembed_input/pos_embedding": r(1, N + 1, D),
         "Transformer/encoder_norm/scale": 1 + r(D), "Transformer/encoder_norm/bias": r(D),
         "head/kernel": r(D, K), "head/bias": r(K)}
    for i in range(L):
        b = f"Transformer/encoderblock_{i}/"
        for n in ("query", "key", "value"):
            f[b + f"MultiHeadDotProductAttention_1/{n}/kernel"] = r(D, heads, Dh)
            f[b + f"MultiHeadDotProductAttention_1/{n}/bias"] = r(heads, Dh)
        f[b + "MultiHeadDotProductAttention_1/out/kernel"] = r(heads, Dh, D)
        f[b + "MultiHeadDotProductAttention_1/out/bias"] = r(D)
        for ln in ("LayerNorm_0", "LayerNorm_2"):
            f[b + ln + "/scale"], f[b + ln + "/bias"] = 1 + r(D), r(D)
        f[b + "MlpBlock_3/Dense_0/kernel"], f[b + "MlpBlock_3/Dense_0/bias"] = r(D, M), r(M)
        f[b + "MlpBlock_3/Dense_1/kernel"], f[b + "MlpBlock_3/Dense_1/bias"] = r(M, D), r(D)
    return f


def test_hand_written_original_file_runs_like_the_original_model(tmp_path):
    flat = hand_written_flat()
    save_npz(tmp_path / "orig.npz", flat)
    params, cfg = load_original(tmp_path / "orig.npz")
    assert (cfg.patch_size, cfg.in_channels, cfg.dim, cfg.heads, cfg.mlp_dim, cfg.num_classes, cfg.depth) == \
        (2, 3, 6, 2, 10, 4, 2)
    assert cfg.image_size == (6, 6) and cfg.classifier == "token" and cfg.pos_embedding == "learned"
    assert cfg.gelu == "tanh" and cfg.dtype == "float64"
    x = np.random.default_rng(3).standard_normal((3, 6, 6, 3))
    logits, _ = vit_forward(params, x, cfg)
    np.testing.assert_allclose(logits, reference_forward(flat, x, P=2, L=2), rtol=1e-12, atol=1e-12)


# ---- pre-logits ---------------------------------------------------------------------------------------
def test_pre_logits_is_refused_unless_dropped(tmp_path):
    cfg = CONFIGS["token-square"]
    D = cfg.dim
    path = tmp_path / "in21k.npz"
    flat = write_original(path, cfg, **{"pre_logits/kernel": np.ones((D, D), np.float32),
                                        "pre_logits/bias": np.zeros(D, np.float32)})
    with pytest.raises(ValueError, match=r"pre-logits layer .*pre_logits/bias, pre_logits/kernel.*"
                                         r"drop_pre_logits=True"):
        load_original(path)
    params, got = load_original(path, drop_pre_logits=True)
    assert got == cfg
    np.testing.assert_array_equal(params["head.W"], flat["head/kernel"])


def test_dropped_pre_logits_with_a_differently_sized_head_is_refused(tmp_path):
    cfg = CONFIGS["token-square"]
    flat = to_jax(random_params(cfg), cfg)
    flat["pre_logits/kernel"] = np.ones((cfg.dim, 7), np.float32)     # representation size 7 ≠ D
    flat["pre_logits/bias"] = np.zeros(7, np.float32)
    flat["head/kernel"] = np.zeros((7, cfg.num_classes), np.float32)
    save_npz(tmp_path / "a.npz", flat)
    with pytest.raises(ValueError, match=r"'head/kernel' has shape \(7, 5\).*pre-logits layer was dropped"):
        load_original(tmp_path / "a.npz", drop_pre_logits=True)


# ---- bad files -------------------------------------------------------------------------------------
def _broken(tmp_path, change):
    """Write a valid token-square checkpoint after ``change(flat)``; return its path."""
    flat = to_jax(random_params(CONFIGS["token-square"]), CONFIGS["token-square"])
    change(flat)
    path = tmp_path / "bad.npz"
    save_npz(path, flat)
    return path


LN = "Transformer/encoderblock_1/LayerNorm_2/scale"
DENSE1 = "Transformer/encoderblock_0/MlpBlock_3/Dense_1/kernel"
QUERY0 = "Transformer/encoderblock_0/MultiHeadDotProductAttention_1/query/kernel"

BAD = {
    "missing layernorm": (lambda f: f.pop(LN), rf"missing key '{LN}'"),
    "missing embedding": (lambda f: f.pop("embedding/kernel"), r"missing key 'embedding/kernel', needed for P, C"),
    "missing head": (lambda f: f.pop("head/kernel"), r"missing key 'head/kernel'"),
    "wrong dense shape": (lambda f: f.__setitem__(DENSE1, f[DENSE1].T.copy()),
                          rf"wrong shape for '{DENSE1}': expected \(20, 12\), got \(12, 20\)"),
    "3-D embedding": (lambda f: f.__setitem__("embedding/kernel", f["embedding/kernel"][0]),
                      r"'embedding/kernel' should be 4-D"),
    "non-square kernel": (lambda f: f.__setitem__("embedding/kernel", np.zeros((4, 2, 3, 12), np.float32)),
                          r"square P×P patch kernel"),
    "query does not fit D": (lambda f: f.__setitem__(QUERY0, np.zeros((12, 3, 5), np.float32)),
                             r"k·D_h = D"),
    "block gap": (lambda f: [f.__setitem__(k.replace("encoderblock_1", "encoderblock_2"), f.pop(k))
                             for k in [k for k in f if "encoderblock_1/" in k]],
                  r"encoderblock_1 missing"),
    "unknown key": (lambda f: f.__setitem__("Transformer/extra/bias", np.zeros(3, np.float32)),
                    r"unknown key 'Transformer/extra/bias'"),
    "hybrid": (lambda f: f.__setitem__("conv_root/kernel", np.zeros((7, 7, 3, 64), np.float32)),
               r"hybrid \(ResNet \+ ViT\)"),
    "mixed dtypes": (lambda f: f.__setitem__("head/bias", f["head/bias"].astype(np.float16)),
                     r"dtype\(s\) float16, float32; pass dtype="),
    "non-square grid": (lambda f: f.__setitem__("Transformer/posembed_input/pos_embedding",
                                                np.zeros((1, 7, 12), np.float32)),
                        r"6 patch rows, not a square grid; pass image_size"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_files_give_clear_errors(tmp_path, case):
    change, message = BAD[case]
    path = _broken(tmp_path, change)
    with pytest.raises(ValueError, match=message) as err:
        load_original(path)
    assert str(err.value).startswith(f"load_original: {str(path)!r}")


def test_pickled_object_array_is_refused(tmp_path):
    flat = to_jax(random_params(CONFIGS["token-square"]), CONFIGS["token-square"])
    flat["head/bias"] = np.array([{"not": "an array"}, None], dtype=object)
    path = tmp_path / "pickled.npz"
    np.savez(path, **flat)                                            # numpy pickles the object array
    with pytest.raises(ValueError, match=r"'head/bias' is a pickled \(object\) array"):
        load_original(path)


def test_not_an_npz_and_no_file(tmp_path):
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(ValueError, match="not an .npz archive"):
        load_original(tmp_path / "text.npz")
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_original(tmp_path / "absent.npz")


def test_image_size_must_fit_the_position_embedding(tmp_path):
    cfg = CONFIGS["token-rect-f64"]                                   # 2×6 grid, 12 patches
    save_original(tmp_path / "r.npz", random_params(cfg), cfg)
    with pytest.raises(ValueError, match="not a square grid"):
        load_original(tmp_path / "r.npz")
    with pytest.raises(ValueError, match=r"wrong shape for 'Transformer/posembed_input/pos_embedding'"):
        load_original(tmp_path / "r.npz", image_size=(6, 6))          # 9 patches, the file has 12
    _, got = load_original(tmp_path / "r.npz", image_size=(8, 6))     # 4×3: also 12 patches
    assert got.grid == (4, 3)


def test_no_position_embedding_needs_an_image_size(tmp_path):
    cfg = CONFIGS["token-square"].replace(pos_embedding="none")
    save_original(tmp_path / "n.npz", random_params(cfg), cfg)
    with pytest.raises(ValueError, match="no position embedding.*pass image_size"):
        load_original(tmp_path / "n.npz")
    _, got = load_original(tmp_path / "n.npz", image_size=8)
    assert got == cfg


def test_save_original_refuses_sincos_and_writes_nothing(tmp_path):
    cfg = CONFIGS["token-square"].replace(pos_embedding="sincos")
    with pytest.raises(ValueError, match="sine-cosine"):
        save_original(tmp_path / "s.npz", random_params(cfg), cfg)
    bad = random_params(CONFIGS["token-square"])
    del bad["head.b"]
    with pytest.raises(ValueError, match="missing"):
        save_original(tmp_path / "s.npz", bad, CONFIGS["token-square"])
    assert os.listdir(tmp_path) == []


# ---- resize_pos_embedding ------------------------------------------------------------------------
def _linear_table(cfg, rng):
    """E_pos whose patch rows are a + b·row + c·col (a, b, c random D-vectors), plus a class row."""
    a, b, c = rng.standard_normal((3, cfg.dim))
    rows, cols = np.meshgrid(np.arange(cfg.grid[0]), np.arange(cfg.grid[1]), indexing="ij")
    table = a + rows.reshape(-1, 1) * b + cols.reshape(-1, 1) * c
    return np.concatenate([rng.standard_normal((1, cfg.dim)), table]), (a, b, c)


def test_linear_position_embedding_stays_exactly_linear():
    """Corner-aligned bilinear resizing maps new grid position (r', c') to old (r'·s_h, c'·s_w) with
    s = (old − 1)/(new − 1), and reproduces a linear function there exactly."""
    old = ViTConfig(image_size=12, patch_size=4, dim=8, depth=1, heads=2, mlp_dim=8, dtype="float64")   # 3×3
    new = old.replace(image_size=(20, 28))                                                              # 5×7
    rng = np.random.default_rng(0)
    params = init_params(old, seed=0)
    params["E_pos"], (a, b, c) = _linear_table(old, rng)
    out = resize_pos_embedding(params, old, new)
    assert out["E_pos"].shape == (36, 8)
    np.testing.assert_array_equal(out["E_pos"][0], params["E_pos"][0])      # class token row kept
    r, q = np.meshgrid(np.arange(5) * (2 / 4), np.arange(7) * (2 / 6), indexing="ij")
    expected = a + r.reshape(-1, 1) * b + q.reshape(-1, 1) * c
    np.testing.assert_allclose(out["E_pos"][1:], expected, rtol=1e-13, atol=1e-13)
    second_diff = np.diff(out["E_pos"][1:].reshape(5, 7, 8), 2, axis=0)   # linear: no curvature
    assert np.abs(second_diff).max() < 1e-13
    for k in params:
        if k != "E_pos":
            np.testing.assert_array_equal(out[k], params[k])
    x = np.random.default_rng(1).standard_normal((2, 20, 28, 1))
    assert vit_forward(out, x, new)[0].shape == (2, 10)                     # ready to fine-tune


def test_resize_matches_torch_bilinear_align_corners():
    torch = pytest.importorskip("torch")
    old = ViTConfig(image_size=(8, 12), patch_size=4, classifier="gap", dim=4, depth=1, heads=1, mlp_dim=4,
                    dtype="float64")                                                     # 2×3 grid
    new = old.replace(image_size=(20, 16))                                               # 5×4 grid
    params = init_params(old, seed=3)
    out = resize_pos_embedding(params, old, new)["E_pos"].reshape(5, 4, 4)
    grid = torch.tensor(params["E_pos"].reshape(2, 3, 4)).permute(2, 0, 1)[None]        # (1, D, 2, 3)
    ref = torch.nn.functional.interpolate(grid, size=(5, 4), mode="bilinear", align_corners=True)
    np.testing.assert_allclose(out, ref[0].permute(1, 2, 0).numpy(), rtol=1e-12, atol=1e-14)


def test_resize_to_the_same_size_is_the_identity_and_copies():
    cfg = ViTConfig(depth=1)                                                             # float32, 4×4 grid
    params = init_params(cfg, seed=0)
    out = resize_pos_embedding(params, cfg, cfg)
    for k in params:
        assert out[k].dtype == np.float32 and np.array_equal(out[k], params[k]), k
        assert not np.shares_memory(out[k], params[k]), k
    smaller = resize_pos_embedding(params, cfg, cfg.replace(image_size=14))              # 2×2 grid: corners
    corners = params["E_pos"][1:].reshape(4, 4, -1)[[0, 0, 3, 3], [0, 3, 0, 3]]
    np.testing.assert_allclose(smaller["E_pos"][1:], corners, rtol=1e-6)


def test_resize_refuses_configs_that_differ_in_more_than_size():
    cfg = ViTConfig(depth=1)
    params = init_params(cfg, seed=0)
    with pytest.raises(ValueError, match="patch_size: 7 vs 4"):
        resize_pos_embedding(params, cfg, cfg.replace(patch_size=4))
    with pytest.raises(ValueError, match="num_classes: 10 vs 3"):
        resize_pos_embedding(params, cfg, cfg.replace(num_classes=3))
    with pytest.raises(ValueError, match="shape"):
        resize_pos_embedding(params, cfg.replace(image_size=14), cfg)
    sincos = cfg.replace(pos_embedding="sincos")
    p2 = init_params(sincos, seed=0)
    assert set(resize_pos_embedding(p2, sincos, sincos.replace(image_size=56))) == set(p2)


def test_resize_grid_validates():
    with pytest.raises(ValueError, match=r"\(h, w\) or \(h, w, D\)"):
        resize_grid(np.zeros(3), (2, 2))
    np.testing.assert_array_equal(resize_grid(np.ones((1, 1)), (3, 2)), np.ones((3, 2)))   # one patch
