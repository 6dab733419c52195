"""The hybrid ViT (paper §3.1 "Hybrid Architecture"): patches cut from a CNN feature map.

ViTConfig(stem_channels=(C_1, …, C_n), stem_kernel=k, stem_pool=s) puts n stages conv k×k ('same') →
ReLU → s×s max-pool in front of the patch embedding; P is then measured on the feature map (the paper
uses P = 1).  Gradient checks here are float64 with tolerance GRAD_TOL = 1e-6 (the model tolerance of
tests/test_gradcheck.py); sharded and unsharded runs must agree to SHARD_TOL = 1e-12 (float64: only
the order of the batch sums differs).
"""
import json

import numpy as np
import pytest

from vitnp import ViTConfig, count_params, fast, init_params, param_shapes, vit_backward, vit_forward
from vitnp.fast import parallel
from vitnp.io.original import jax_shapes, load_npz, resize_pos_embedding, save_npz, save_original, to_jax
from vitnp.gradcheck import MODEL_TOL, rel_error
from vitnp.selfcheck import check_model, hybrid_tiny_config

GRAD_TOL = MODEL_TOL                 # 1e-6, vitnp.gradcheck's
SHARD_TOL = 1e-12

# The fields a vitnp config had before the hybrid existed, as an old config.json / checkpoint holds them.
OLD_DICT = {"image_size": [28, 28], "patch_size": 7, "in_channels": 1, "num_classes": 10, "dim": 64,
            "depth": 6, "heads": 4, "mlp_dim": 128, "classifier": "token", "pos_embedding": "learned",
            "gelu": "exact", "ln_eps": 1e-6, "dropout": 0.0, "attention_dropout": 0.0, "dtype": "float32"}


def paper_hybrid(**overrides):
    """28×28×1 images, two stages (8, 16) with 2×2 pooling -> a 7×7×16 map, P = 1 as in the paper."""
    fields = dict(image_size=28, patch_size=1, in_channels=1, num_classes=10, dim=64, depth=6, heads=4,
                  mlp_dim=128, stem_channels=(8, 16), stem_kernel=3, stem_pool=2)
    fields.update(overrides)
    return ViTConfig(**fields)


# ---- config ----------------------------------------------------------------------------------------
def test_plain_vit_derived_sizes_are_unchanged():
    cfg = ViTConfig(image_size=(28, 21), patch_size=7, in_channels=3)
    assert not cfg.is_hybrid and cfg.stem_channels == ()
    assert cfg.feature_hw == (28, 21) and cfg.feature_channels == 3 and cfg.patch_pixels == 7
    assert cfg.grid == (4, 3) and cfg.num_patches == 12 and cfg.patch_dim == 7 * 7 * 3
    assert not any(name.startswith("stem.") for name in param_shapes(cfg))


def test_hybrid_derived_sizes():
    cfg = paper_hybrid()
    assert cfg.is_hybrid and cfg.stem_channels == (8, 16)
    assert cfg.feature_hw == (7, 7)                       # 28 -> 14 -> 7
    assert cfg.feature_channels == 16
    assert cfg.patch_pixels == 4                          # P · pool² = 1 · 2 · 2
    assert cfg.grid == (7, 7) and cfg.num_patches == 49 and cfg.num_tokens == 50
    assert cfg.patch_dim == 16                            # P²·C_f = 1 · 16
    # floor division on odd sizes: 30 -> 15 -> 7, 22 -> 11 -> 5; P = 1
    odd = paper_hybrid(image_size=(30, 22))
    assert odd.feature_hw == (7, 5) and odd.grid == (7, 5) and odd.patch_pixels == 4
    # P > 1 over the map, one stage of 3×3 pooling: 27 -> 9, P = 3 -> a 3×3 grid of 9-pixel patches
    p3 = paper_hybrid(image_size=27, stem_channels=(5,), stem_pool=3, patch_size=3)
    assert p3.feature_hw == (9, 9) and p3.grid == (3, 3) and p3.patch_pixels == 9 and p3.patch_dim == 45
    # no pooling: the map has the image's size, a patch covers P pixels
    flat = paper_hybrid(stem_pool=1, patch_size=4)
    assert flat.feature_hw == (28, 28) and flat.grid == (7, 7) and flat.patch_pixels == 4 and flat.is_hybrid


def test_stem_fields_are_normalised_and_round_trip_through_json():
    cfg = paper_hybrid(stem_channels=[np.int64(8), 16], stem_kernel=np.int64(5))
    assert cfg.stem_channels == (8, 16) and type(cfg.stem_channels[0]) is int and type(cfg.stem_kernel) is int
    d = cfg.to_dict()
    assert d["stem_channels"] == [8, 16] and d["stem_kernel"] == 5 and d["stem_pool"] == 2
    back = ViTConfig.from_dict(json.loads(json.dumps(d)))
    assert back == cfg and hash(back) == hash(cfg)


def test_old_config_dicts_load_as_plain_vits():
    cfg = ViTConfig.from_dict(dict(OLD_DICT))
    assert cfg == ViTConfig() and not cfg.is_hybrid
    assert (cfg.stem_channels, cfg.stem_kernel, cfg.stem_pool) == ((), 3, 2)
    assert list(param_shapes(cfg))[:2] == ["E", "E_bias"] and param_shapes(cfg)["E"] == (49, 64)
    assert count_params(cfg) == count_params(ViTConfig(**{**OLD_DICT, "image_size": 28}))


def test_old_training_checkpoint_loads(tmp_path):
    """A checkpoint whose config_json predates the stem fields (written as the old train.py did)."""
    from vitnp.training import FORMAT, load_checkpoint
    cfg = ViTConfig(**{**OLD_DICT, "image_size": 28, "depth": 1})
    params = init_params(cfg, seed=3)
    old = {**OLD_DICT, "depth": 1}
    arrays = {"format": np.array(FORMAT), "config_json": np.array(json.dumps(old)),
              **{f"params/{k}": v for k, v in params.items()}}
    save_npz(tmp_path / "old.npz", arrays)
    loaded, loaded_cfg, _ = load_checkpoint(tmp_path / "old.npz")
    assert loaded_cfg == cfg and not loaded_cfg.is_hybrid
    assert all(np.array_equal(loaded[k], params[k]) for k in params)


def test_hybrid_training_checkpoint_round_trips(tmp_path):
    from vitnp.training import load_checkpoint, save_checkpoint
    cfg = hybrid_tiny_config(dtype="float32")
    params = init_params(cfg, seed=1)
    save_checkpoint(tmp_path / "h.npz", params, cfg)
    loaded, loaded_cfg, _ = load_checkpoint(tmp_path / "h.npz")
    assert loaded_cfg == cfg and loaded_cfg.stem_channels == (3,)
    assert list(loaded) == list(param_shapes(cfg))
    assert all(np.array_equal(loaded[k], params[k]) for k in params)


@pytest.mark.parametrize("fields,message", [
    (dict(patch_size=3, stem_channels=(8,)),
     r"the hybrid stem turns the 28x28 image into a 14x14 feature map.*H=14 is not divisible by patch_size P=3"),
    (dict(patch_size=2), r"7x7 feature map \(2 stage\(s\), pool 2\); its H=7 is not divisible by patch_size P=2"),
    (dict(image_size=(28, 20), patch_size=7, stem_channels=(4,), stem_pool=1),
     r"28x20 feature map.*W=20 is not divisible by patch_size P=7"),
    (dict(stem_kernel=4), "stem_kernel must be odd"),
    (dict(stem_kernel=0), "stem_kernel must be a positive integer"),
    (dict(stem_pool=0), "stem_pool must be a positive integer"),
    (dict(stem_channels=(8, 0)), r"stem_channels \(each entry\) must be a positive integer, got 0"),
    (dict(stem_channels=(8, -3)), r"stem_channels \(each entry\) must be a positive integer, got -3"),
    (dict(stem_channels=(8, 2.5)), r"stem_channels \(each entry\) must be a positive integer, got 2.5"),
    (dict(stem_channels=("8",)), r"stem_channels \(each entry\) must be a positive integer, got '8'"),
    (dict(stem_channels=(True,)), r"stem_channels \(each entry\) must be a positive integer, got True"),
    (dict(stem_channels=8), r"stem_channels must be a tuple of positive ints \(\(\) for a plain ViT\), got 8"),
    (dict(stem_channels="8,16"), "stem_channels must be a tuple of positive ints"),
    (dict(image_size=6, stem_channels=(2, 2, 2)), r"image_size 6x6 is too small for 3 stem stage\(s\) with 2x2"),
])
def test_bad_stem_fields_give_clear_errors(fields, message):
    with pytest.raises(ValueError, match=message):
        paper_hybrid(**fields)


def test_plain_vit_divisibility_error_still_names_the_image():
    with pytest.raises(ValueError, match=r"image_size: H=30 is not divisible by patch_size P=7"):
        ViTConfig(image_size=30, patch_size=7)


# ---- parameters ------------------------------------------------------------------------------------
def test_param_shapes_put_the_stem_first():
    cfg = paper_hybrid(in_channels=3, stem_kernel=5)
    shapes = param_shapes(cfg)
    assert list(shapes)[:6] == ["stem.0.W", "stem.0.b", "stem.1.W", "stem.1.b", "E", "E_bias"]
    assert shapes["stem.0.W"] == (5, 5, 3, 8) and shapes["stem.0.b"] == (8,)
    assert shapes["stem.1.W"] == (5, 5, 8, 16) and shapes["stem.1.b"] == (16,)
    assert shapes["E"] == (16, 64) and shapes["E_pos"] == (50, 64)


def test_parameter_count_by_hand():
    D, M, K, T = 64, 128, 10, 50
    stem = (3 * 3 * 1 * 8 + 8) + (3 * 3 * 8 * 16 + 16)                    # 80 + 1,168
    embed = 1 * 1 * 16 * D + D                                            # E (P²C_f, D) + bias: 1,088
    tokens = D + T * D                                                    # x_class + E_pos (50 tokens)
    block = 2 * D + (D * 3 * D + 3 * D) + (D * D + D) + 2 * D + (D * M + M) + (M * D + D)   # 33,472
    head = (D + 1) * K + 2 * D                                            # head W, b + ln_f γ, β
    expected = stem + embed + tokens + 6 * block + head
    assert expected == 207_210
    assert count_params(paper_hybrid()) == expected
    # the same ViT without the stem: 28×28 image, P = 4 (the same 7×7 grid), E of 16 rows too
    plain = ViTConfig(image_size=28, patch_size=4, in_channels=1, dim=64, depth=6, heads=4, mlp_dim=128)
    assert count_params(paper_hybrid()) - count_params(plain) == stem


def test_init_he_normal_stem_and_lecun_e():
    cfg = paper_hybrid(in_channels=3, stem_channels=(64, 32), dim=128, depth=1, heads=4, dtype="float64")
    p = init_params(cfg, seed=0)
    w0, w1 = p["stem.0.W"], p["stem.1.W"]
    assert w0.shape == (3, 3, 3, 64) and w1.shape == (3, 3, 64, 32)
    # He normal: std √(2/fan_in), fan_in = k²·C_in; 1,728 and 18,432 draws -> std within a few percent
    assert abs(w0.std() / np.sqrt(2 / 27) - 1) < 0.06
    assert abs(w1.std() / np.sqrt(2 / (9 * 64)) - 1) < 0.03
    assert abs(w1.mean()) < 0.1 * np.sqrt(2 / (9 * 64))
    assert not p["stem.0.b"].any() and not p["stem.1.b"].any()
    # E: LeCun normal with fan_in = patch_dim = P²·C_f = 32 (the map's channels, not the image's 3)
    assert abs(p["E"].std() / np.sqrt(1 / 32) - 1) < 0.05
    assert all(v.dtype == np.float64 for v in p.values())
    assert list(p) == list(param_shapes(cfg))


def test_plain_params_are_refused_by_a_hybrid_config():
    plain = ViTConfig(image_size=8, patch_size=2, dim=8, depth=1, heads=2, mlp_dim=8)
    x = np.zeros((1, 8, 8, 1), np.float32)
    with pytest.raises(ValueError, match="missing stem.0.W, stem.0.b"):
        vit_forward(init_params(plain), x, plain.replace(stem_channels=(4,), patch_size=1))


# ---- forward, backward -----------------------------------------------------------------------------
def test_forward_shapes_and_float32_is_preserved():
    cfg = paper_hybrid(depth=2)
    params = init_params(cfg, seed=0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 28, 28, 1)).astype(np.float32)
    params["head.W"] = 0.1 * rng.standard_normal(params["head.W"].shape).astype(np.float32)
    logits, cache = vit_forward(params, x, cfg)
    assert logits.shape == (3, 10) and logits.dtype == np.float32
    assert len(cache["attention"]) == 2
    assert all(A.shape == (3, 4, 50, 50) and A.dtype == np.float32 for A in cache["attention"])
    grads, dx = vit_backward(rng.standard_normal((3, 10)).astype(np.float32), cache, input_grad=True)
    assert list(grads) == list(params)
    assert all(grads[k].shape == params[k].shape and grads[k].dtype == np.float32 for k in params)
    assert dx.shape == x.shape and dx.dtype == np.float32
    assert np.abs(grads["stem.0.W"]).max() > 0 and np.abs(dx).max() > 0      # the stem is on the gradient path


def test_forward_is_the_stem_then_the_plain_vit():
    """A hybrid = the same ViT fed the stem's feature map: the stem is only a new patch source."""
    from vitnp.ops.conv import conv_stack_forward
    cfg = hybrid_tiny_config(image_size=(9, 8), stem_channels=(3, 4), patch_size=1)
    params = {k: v + 0.3 for k, v in init_params(cfg, seed=2).items()}
    x = np.random.default_rng(2).standard_normal((2, 9, 8, 2))
    stem = [(params[f"stem.{i}.W"], params[f"stem.{i}.b"]) for i in range(2)]
    fmap, _ = conv_stack_forward(x, stem, pool=2)                            # (2, 2, 2, 4)
    assert fmap.shape == (2, *cfg.feature_hw, cfg.feature_channels) == (2, 2, 2, 4)
    plain = ViTConfig(**{**cfg.to_dict(), "stem_channels": (), "image_size": (2, 2), "in_channels": 4})
    plain_params = {k: v for k, v in params.items() if not k.startswith("stem.")}
    assert list(plain_params) == list(param_shapes(plain))
    hybrid_logits, _ = vit_forward(params, x, cfg)
    plain_logits, _ = vit_forward(plain_params, fmap, plain)
    assert rel_error(hybrid_logits, plain_logits) < 1e-14


@pytest.mark.parametrize("fields", [         # (selfcheck's two hybrid cases run in tests/test_gradcheck.py)
    dict(image_size=(4, 4), stem_channels=(2, 3), stem_kernel=5, stem_pool=1, classifier="gap",
         gelu="tanh", depth=1),                                               # no pooling, 5×5, gap
    dict(image_size=(12, 8), in_channels=1, stem_channels=(2,), stem_pool=3, patch_size=2,
         pos_embedding="sincos", depth=1),                                    # 3×3 pooling: 12×8 -> 4×2
])
def test_gradient_of_every_parameter_and_the_images(fields):
    errors = check_model(hybrid_tiny_config(**fields), seed=1, check_input=True)
    assert {"x", "stem.0.W", "stem.0.b", "E"} <= set(errors)
    bad = {k: e for k, e in errors.items() if not e <= GRAD_TOL}
    assert not bad, f"relative errors above {GRAD_TOL:g}: {bad}"


def test_a_broken_stem_backward_is_caught(monkeypatch):
    """ReLU's backward replaced by the identity: the stem's gradients (and dx) must fail the check."""
    import vitnp.ops.conv
    monkeypatch.setattr(vitnp.ops.conv, "relu_backward", lambda dout, cache: dout)   # what conv_stack_backward calls
    errors = check_model(hybrid_tiny_config(depth=1), seed=1, check_input=True, max_checks=24)
    assert errors["stem.0.W"] > 1e-2 and errors["x"] > 1e-2
    assert errors["E"] <= GRAD_TOL                                            # above the stem, all is well


def test_input_grad_of_a_plain_vit_is_unpatchify():
    """input_grad=True also works without a stem: dx is dx_p put back in image layout."""
    errors = check_model(hybrid_tiny_config(stem_channels=(), image_size=(6, 4), depth=1), seed=3,
                         check_input=True)
    assert errors["x"] <= GRAD_TOL, errors


@pytest.fixture
def two_threads():
    before = parallel.configure()
    if not before["blas_control"]:
        pytest.skip("BLAS threads cannot be controlled here, so vitnp never shards")
    yield lambda on: parallel.configure(threads=2 if on else 1, min_rows=1, shards_per_thread=2)
    parallel.configure(threads=before["threads"], min_rows=before["min_rows"],
                       shards_per_thread=before["shards_per_thread"])


def test_sharded_path_equals_single_shard(two_threads):
    cfg = hybrid_tiny_config(image_size=(9, 8), stem_channels=(3, 4), patch_size=1)
    rng = np.random.default_rng(5)
    params = {k: v + 0.3 * rng.standard_normal(v.shape) for k, v in init_params(cfg, seed=5).items()}
    x = rng.standard_normal((7, 9, 8, 2))
    dlogits = rng.standard_normal((7, cfg.num_classes))
    runs = {}
    for on in (False, True):
        two_threads(on)
        logits, cache = fast.vit_forward(params, x, cfg)
        assert ("shards" in cache) == on and (not on or len(cache["shards"]) == 4)
        grads, dx = fast.vit_backward(dlogits, cache, input_grad=True)
        runs[on] = (logits, grads, dx, cache["attention"])
    (l1, g1, dx1, a1), (l2, g2, dx2, a2) = runs[False], runs[True]
    errors = {"logits": rel_error(l1, l2), "dx": rel_error(dx1, dx2),
              **{f"attention {l}": rel_error(a, b) for l, (a, b) in enumerate(zip(a1, a2))},
              **{k: rel_error(g1[k], g2[k]) for k in g1}}
    assert set(g2) == set(params)
    bad = {k: e for k, e in errors.items() if not e <= SHARD_TOL}
    assert not bad, bad
    # the stem gradients are sums over all 7 images: one shard alone would give far less
    _, part = vit_forward(params, x[:2], cfg)
    g_part = vit_backward(dlogits[:2], part)
    assert rel_error(g_part["stem.0.W"], g2["stem.0.W"]) > 1e-3


# ---- checkpoints -----------------------------------------------------------------------------------
def test_original_layout_refuses_a_hybrid(tmp_path):
    cfg = hybrid_tiny_config(dtype="float32")
    params = init_params(cfg)
    for call, where in ((lambda: to_jax(params, cfg), "to_jax"), (lambda: jax_shapes(cfg), "jax_shapes"),
                        (lambda: save_original(tmp_path / "h.npz", params, cfg), "save_original")):
        with pytest.raises(ValueError, match=rf"{where}: this config is a hybrid ViT \(stem_channels=\(3,\)\).*"
                                             r"ResNet stem.*save_npz"):
            call()
    assert not list(tmp_path.iterdir())                                       # nothing half-written
    save_npz(tmp_path / "ok.npz", params)                                     # the way to keep a hybrid
    back = load_npz(tmp_path / "ok.npz")
    assert set(back) == set(params) and all(np.array_equal(back[k], params[k]) for k in params)


def test_resize_pos_embedding_follows_the_feature_map():
    old = hybrid_tiny_config(image_size=(8, 8), patch_size=1, stem_channels=(3,))      # 4×4 map, 16 patches
    new = old.replace(image_size=(12, 16))                                              # 6×8 map, 48 patches
    rng = np.random.default_rng(0)
    params = {k: v + rng.standard_normal(v.shape) for k, v in init_params(old).items()}
    out = resize_pos_embedding(params, old, new)
    assert out["E_pos"].shape == (49, 8) and new.grid == (6, 8)
    assert np.array_equal(out["E_pos"][0], params["E_pos"][0])                        # class token row kept
    grid_old, grid_new = params["E_pos"][1:].reshape(4, 4, 8), out["E_pos"][1:].reshape(6, 8, 8)
    for (i, j), (a, b) in {(0, 0): (0, 0), (0, 3): (0, 7), (3, 0): (5, 0), (3, 3): (5, 7)}.items():
        assert np.allclose(grid_new[a, b], grid_old[i, j], rtol=0, atol=1e-12)        # corners map onto corners
    assert all(np.array_equal(out[k], params[k]) for k in params if k != "E_pos")     # stem and E unchanged
    logits, _ = vit_forward(out, rng.standard_normal((2, 12, 16, 2)), new)
    assert logits.shape == (2, 3)
    with pytest.raises(ValueError, match=r"stem_pool: 2 vs 1"):
        resize_pos_embedding(params, old, old.replace(stem_pool=1, image_size=(4, 4)))
