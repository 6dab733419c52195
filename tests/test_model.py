"""The model API: configs, parameter counts, initialisation, shapes, dtypes and bad input."""
import importlib

import numpy as np
import pytest

import vitnp
from vitnp import ViTConfig, count_params, init_params, param_shapes, vit_backward, vit_forward
from vitnp.ops.attention import causal_mask
from vitnp.ops.patches import patchify_forward, unpatchify
from vitnp.ops.posemb import sincos_2d
from vitnp.selfcheck import tiny_config


# ---- configuration ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name,expected", [("Ti", 5_717_416), ("S", 22_050_664), ("B", 86_567_656),
                                           ("B/16", 86_567_656), ("L", 304_326_632), ("H/14", 632_045_800)])
def test_table1_parameter_counts(name, expected):
    assert count_params(ViTConfig.variant(name)) == expected


def test_variant_overrides_and_unknown_names():
    cfg = ViTConfig.variant("Ti", image_size=32, patch_size=4, num_classes=10, in_channels=1)
    assert (cfg.dim, cfg.depth, cfg.heads, cfg.mlp_dim, cfg.num_patches) == (192, 12, 3, 768, 64)
    with pytest.raises(ValueError, match="unknown variant"):
        ViTConfig.variant("XL")


@pytest.mark.parametrize("fields,message", [
    (dict(image_size=30, patch_size=7), "not divisible by patch_size"),
    (dict(image_size=(28, 30), patch_size=7), "W=30 is not divisible"),
    (dict(dim=30, heads=4), "dim: D=30 is not divisible by heads"),
    (dict(classifier="cls"), "classifier must be one of"),
    (dict(pos_embedding="rope"), "pos_embedding must be one of"),
    (dict(gelu="relu"), "gelu must be one of"),
    (dict(dtype="float16"), "dtype must be one of"),
    (dict(depth=0), "depth must be a positive integer"),
    (dict(patch_size=2.0), "patch_size must be a positive integer"),
    (dict(dropout=1.0), "dropout must be a rate"),
    (dict(ln_eps=0.0), "ln_eps must be a positive number"),
    (dict(image_size=(28, 28, 1)), "image_size must be an int or"),
    (dict(pos_embedding="sincos", dim=66, heads=2), "divisible by 4"),
])
def test_invalid_config_names_the_field(fields, message):
    with pytest.raises(ValueError, match=message):
        ViTConfig(**fields)


def test_config_dict_round_trip():
    cfg = ViTConfig(image_size=(8, 12), patch_size=4, classifier="gap", gelu="tanh")
    assert ViTConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown ViTConfig field"):
        ViTConfig.from_dict({**cfg.to_dict(), "width": 3})


# ---- initialisation ----------------------------------------------------------------------------------
def test_init_follows_the_reference_scheme():
    cfg = ViTConfig(dim=64, mlp_dim=256, depth=2, heads=4, dtype="float64")
    p = init_params(cfg, seed=1)
    assert {k: v.shape for k, v in p.items()} == param_shapes(cfg)
    assert all(v.dtype == np.float64 for v in p.values())
    assert np.abs(p["E"]).max() <= 2 * np.sqrt(1 / cfg.patch_dim) / 0.87962566103423978 + 1e-12   # truncated
    assert p["E"].std() == pytest.approx(np.sqrt(1 / cfg.patch_dim), rel=0.1)                       # lecun
    assert p["E_pos"].std() == pytest.approx(0.02, rel=0.1)
    limit = np.sqrt(6 / (64 + 64))
    assert np.abs(p["blocks.0.U_qkv"]).max() <= limit and np.abs(p["blocks.0.U_qkv"]).max() > 0.9 * limit
    assert np.abs(p["blocks.0.mlp.W1"]).max() <= np.sqrt(6 / (64 + 256))
    assert np.abs(p["blocks.0.mlp.b1"]).max() < 1e-5 and np.abs(p["blocks.0.mlp.b1"]).max() > 0
    for k in ("x_class", "E_bias", "blocks.1.U_qkv_bias", "head.W", "head.b", "ln_f.beta"):
        assert not p[k].any(), k
    assert (p["blocks.1.ln2.gamma"] == 1).all()
    assert np.array_equal(init_params(cfg, seed=1)["E"], p["E"])
    assert not np.array_equal(init_params(cfg, seed=2)["E"], p["E"])


# ---- forward pass --------------------------------------------------------------------------------
def _batch(cfg, B=3, seed=0):
    return np.random.default_rng(seed).standard_normal((B, *cfg.hw, cfg.in_channels)).astype(cfg.np_dtype)


@pytest.mark.parametrize("classifier,pos", [("token", "learned"), ("gap", "sincos"), ("token", "none")])
def test_forward_shapes_and_attention_rows(classifier, pos):
    cfg = ViTConfig(image_size=(12, 8), patch_size=4, in_channels=3, dim=12, heads=3, depth=2, mlp_dim=20,
                    num_classes=5, classifier=classifier, pos_embedding=pos)
    params = init_params(cfg)
    params["head.W"] = np.random.default_rng(0).standard_normal((12, 5)).astype(np.float32)
    logits, cache = vit_forward(params, _batch(cfg), cfg)
    T = 6 + (classifier == "token")
    assert logits.shape == (3, 5)
    assert len(cache["attention"]) == 2
    for A in cache["attention"]:
        assert A.shape == (3, 3, T, T)
        np.testing.assert_allclose(A.sum(-1), 1.0, rtol=1e-5)


def test_patchify_order_matches_a_hand_loop():
    x = np.random.default_rng(0).standard_normal((2, 6, 4, 3))
    x_p, _ = patchify_forward(x, 2)
    expected = np.array([[[x[b, 2 * i + r, 2 * j + c, ch] for r in range(2) for c in range(2) for ch in range(3)]
                          for i in range(3) for j in range(2)] for b in range(2)])
    assert np.array_equal(x_p, expected)
    assert np.array_equal(unpatchify(x_p, (6, 4), 2), x)


def test_sincos_table():
    cfg = ViTConfig(image_size=(8, 12), patch_size=4, dim=16, heads=2)
    table = sincos_2d(cfg)
    assert table.shape == (7, 16) and table.dtype == np.float32
    assert not table[0].any(), "the class token's row is zero"
    grid = table[1:].reshape(2, 3, 16)
    assert np.array_equal(grid[0, :, :8], grid[0, :1, :8].repeat(3, 0)), "first half depends on the row only"
    assert np.array_equal(grid[:, 0, 8:], grid[:1, 0, 8:].repeat(2, 0)), "second half on the column only"


def test_eval_is_deterministic_and_dropout_needs_rng():
    cfg = tiny_config(dropout=0.5)
    params = init_params(cfg)
    params["head.W"][:] = np.random.default_rng(0).standard_normal(params["head.W"].shape)
    x = _batch(cfg)
    a, _ = vit_forward(params, x, cfg)
    b, _ = vit_forward(params, x, cfg)
    assert np.array_equal(a, b)
    with pytest.raises(ValueError, match="needs rng"):
        vit_forward(params, x, cfg, train=True)
    c, _ = vit_forward(params, x, cfg, train=True, rng=1)
    d, _ = vit_forward(params, x, cfg, train=True, rng=np.random.default_rng(1))
    assert np.array_equal(c, d) and not np.allclose(a, c)


def test_causal_mask_blocks_future_tokens():
    cfg = tiny_config()
    _, cache = vit_forward(init_params(cfg), _batch(cfg), cfg, attn_mask=causal_mask(cfg.num_tokens))
    assert np.all(np.triu(cache["attention"][0][0, 0], k=1) == 0)


# ---- dtypes ---------------------------------------------------------------------------------------
def _arrays(obj):
    if isinstance(obj, np.ndarray):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _arrays(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _arrays(v)


@pytest.mark.parametrize("gelu,classifier", [("exact", "token"), ("tanh", "gap")])
def test_float32_stays_float32(gelu, classifier):
    cfg = ViTConfig(image_size=(8, 12), patch_size=4, in_channels=2, dim=16, heads=2, depth=2, mlp_dim=24,
                    gelu=gelu, classifier=classifier, pos_embedding="sincos", dropout=0.1, attention_dropout=0.1)
    params = init_params(cfg)
    logits, cache = vit_forward(params, _batch(cfg).astype(np.float64), cfg, train=True, rng=0)
    assert logits.dtype == np.float32
    floats = [a for a in _arrays(cache) if a.dtype.kind == "f"]
    assert len(floats) > 50
    assert {a.dtype for a in floats} == {np.dtype(np.float32)}
    grads = vit_backward(np.ones_like(logits), cache)
    assert {g.dtype for g in grads.values()} == {np.dtype(np.float32)}
    assert {k: g.shape for k, g in grads.items()} == param_shapes(cfg)


def test_float32_matches_float64():
    cfg64 = tiny_config()
    p64 = {k: v + 0.1 for k, v in init_params(cfg64).items()}
    cfg32 = cfg64.replace(dtype="float32")
    p32 = {k: v.astype(np.float32) for k, v in p64.items()}
    x = _batch(cfg64)
    l64, c64 = vit_forward(p64, x, cfg64)
    l32, c32 = vit_forward(p32, x.astype(np.float32), cfg32)
    np.testing.assert_allclose(l32, l64, rtol=1e-4, atol=1e-5)
    g64, g32 = vit_backward(np.ones_like(l64), c64), vit_backward(np.ones_like(l32), c32)
    for k in g64:
        np.testing.assert_allclose(g32[k], g64[k], rtol=1e-3, atol=1e-4, err_msg=k)


# ---- bad input ------------------------------------------------------------------------------------
@pytest.fixture
def model():
    cfg = ViTConfig(image_size=(8, 12), patch_size=4, in_channels=2, dim=8, heads=2, depth=1, mlp_dim=8)
    return cfg, init_params(cfg)


@pytest.mark.parametrize("x,error,message", [
    (np.zeros((8, 12, 2), np.float32), ValueError, r"x\[None\]"),
    (np.zeros((2, 12, 8, 2), np.float32), ValueError, r"the config needs \(B, 8, 12, 2\)"),
    (np.zeros((2, 8, 12, 3), np.float32), ValueError, "the config needs"),
    (np.zeros((0, 8, 12, 2), np.float32), ValueError, "empty batch"),
    (np.zeros((2, 8, 12, 2), np.uint8), TypeError, "float array, got dtype uint8"),
    (np.full((2, 8, 12, 2), np.nan, np.float32), ValueError, "NaN or Inf"),
    (np.full((2, 8, 12, 2), np.inf, np.float32), ValueError, "NaN or Inf"),
    ([[1.0]], TypeError, "numpy array"),
])
def test_bad_images_get_clear_errors(model, x, error, message):
    cfg, params = model
    with pytest.raises(error, match=message):
        vit_forward(params, x, cfg)


def test_bad_params_get_clear_errors(model):
    cfg, params = model
    with pytest.raises(ValueError, match="missing E_pos"):
        vit_forward({k: v for k, v in params.items() if k != "E_pos"}, np.zeros((1, 8, 12, 2), np.float32), cfg)
    with pytest.raises(ValueError, match="unexpected extra.W"):
        vit_forward({**params, "extra.W": np.zeros(2, np.float32)}, np.zeros((1, 8, 12, 2), np.float32), cfg)
    with pytest.raises(ValueError, match=r"params\['blocks.0.U_qkv'\] has shape \(8, 8\)"):
        vit_forward({**params, "blocks.0.U_qkv": np.zeros((8, 8), np.float32)}, np.zeros((1, 8, 12, 2), np.float32),
                    cfg)
    with pytest.raises(TypeError, match="has dtype float64, the config needs float32"):
        vit_forward({**params, "head.b": np.zeros(10)}, np.zeros((1, 8, 12, 2), np.float32), cfg)
    with pytest.raises(TypeError, match="must be a dict"):
        vit_forward(list(params.values()), np.zeros((1, 8, 12, 2), np.float32), cfg)
    with pytest.raises(ValueError, match="attn_mask must be a bool array"):
        vit_forward(params, np.zeros((1, 8, 12, 2), np.float32), cfg, attn_mask=np.ones((3, 3), bool))


def test_public_api_names():
    for name in ("ViTConfig", "count_params", "init_params", "vit_forward", "vit_backward"):
        assert hasattr(vitnp, name)
    checkpoint = importlib.import_module("vitnp.io.original")
    assert callable(checkpoint.to_jax) and callable(checkpoint.from_jax)


def test_numpy_float_settings_do_not_upcast_float32():
    """ln_eps and dropout given as NumPy float64 scalars are stored as Python floats: float32 stays float32."""
    from vitnp import fast
    cfg = ViTConfig(image_size=8, patch_size=4, dim=8, heads=2, mlp_dim=8, depth=1, ln_eps=np.float64(1e-6),
                    dropout=np.float64(0.1), attention_dropout=np.float32(0.1))
    assert all(type(v) is float for v in (cfg.ln_eps, cfg.dropout, cfg.attention_dropout))
    params = init_params(cfg)
    x = np.zeros((2, 8, 8, 1), np.float32)
    for forward in (vit_forward, fast.vit_forward):
        assert forward(params, x, cfg)[0].dtype == np.float32
        assert forward(params, x, cfg, train=True, rng=0)[0].dtype == np.float32


@pytest.mark.parametrize("overrides", [{}, {"classifier": "gap", "pos_embedding": "sincos"},
                                       {"stem_channels": (3,), "image_size": (8, 4)}])
def test_embed_and_head_gradients(overrides):
    """Eq 1 (embed_forward/embed_backward) and Eq 4 with the head (head_forward/head_backward) on their own:
    every parameter they own and their input, centred differences in float64, tolerance OP_TOL = 1e-7."""
    from vitnp.gradcheck import OP_TOL, check_gradients
    from vitnp.model import embed_backward, embed_forward, head_backward, head_forward
    cfg = tiny_config(**overrides)
    rng = np.random.default_rng(1)
    params = {k: v + 0.3 * rng.standard_normal(v.shape) for k, v in init_params(cfg, 1).items()}
    x = rng.standard_normal((2, *cfg.hw, cfg.in_channels))
    z = rng.standard_normal((2, cfg.num_tokens, cfg.dim))
    owned = set()
    for name, forward, backward, inp in (("embed", embed_forward, embed_backward, x),
                                         ("head", head_forward, head_backward, z)):
        out, cache = forward(params, inp, cfg)
        g = rng.standard_normal(out.shape)
        grads = {}
        if name == "embed":
            d_inp = backward(g, cache, grads, input_grad=True)
        else:
            d_inp = backward(g, cache, grads)
        assert grads and not owned & set(grads), name
        owned |= set(grads)
        arrays = {"input": inp, **{k: params[k] for k in grads}}
        errors = check_gradients(lambda: float(np.sum(forward(params, inp, cfg)[0] * g)), arrays,
                                 {"input": d_inp, **grads})
        assert max(errors.values()) <= OP_TOL, (name, overrides, errors)
    assert owned == {k for k in params if not k.startswith("blocks.")}     # Eq 1 and Eq 4 own all the rest
