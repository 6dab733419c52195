"""vitnp.io.original: the original ViT checkpoint layout and exact round trips (its .npz files:
tests/test_npz.py; the whole model computed from its arrays: tests/test_original_model.py)."""
import numpy as np
import pytest

from vitnp.io.original import from_jax, jax_shapes, to_jax
from vitnp.io.npz import load_npz, save_npz
from vitnp.config import ViTConfig, param_shapes

CONFIGS = {
    "token-learned-k4": ViTConfig(depth=2),                                   # 28×28×1, P=7, D=64
    "gap-sincos-k1-rect-rgb": ViTConfig(image_size=(8, 12), patch_size=4, in_channels=3, dim=8, heads=1,
                                        depth=2, mlp_dim=16, num_classes=5, classifier="gap",
                                        pos_embedding="sincos"),
    "token-none-k3-rect": ViTConfig(image_size=(12, 8), patch_size=4, in_channels=3, dim=12, heads=3,
                                    depth=1, mlp_dim=20, num_classes=3, pos_embedding="none"),
    "gap-learned-k3-f64": ViTConfig(image_size=(6, 9), patch_size=3, in_channels=1, dim=6, heads=3,
                                    depth=3, mlp_dim=7, num_classes=4, classifier="gap", dtype="float64"),
}


def random_arrays(shapes, dtype, seed=0):
    """Random arrays for a name → shape table, with a -0.0 and a NaN to make 'bitwise' mean something."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, shape in shapes.items():
        a = rng.standard_normal(shape).astype(dtype)
        a.flat[0] = -0.0
        if a.size > 1:
            a.flat[-1] = np.nan
        out[name] = a
    return out


def assert_bitwise_equal(a: dict, b: dict):
    assert list(a) == list(b)
    for key in a:
        assert a[key].dtype == b[key].dtype, key
        assert a[key].shape == b[key].shape, key
        assert a[key].tobytes() == b[key].tobytes(), key


@pytest.fixture(params=list(CONFIGS), ids=list(CONFIGS))
def cfg(request):
    return CONFIGS[request.param]


# ---- conversion ------------------------------------------------------------------------------------
def test_round_trip_ours_to_jax_and_back_is_exact(cfg):
    params = random_arrays(param_shapes(cfg), cfg.np_dtype)
    flat = to_jax(params, cfg)
    assert {k: v.shape for k, v in flat.items()} == jax_shapes(cfg)
    assert_bitwise_equal(from_jax(flat, cfg), params)


def test_round_trip_jax_to_ours_and_back_is_exact(cfg):
    flat = random_arrays(jax_shapes(cfg), cfg.np_dtype, seed=1)
    params = from_jax(flat, cfg)
    assert {k: v.shape for k, v in params.items()} == param_shapes(cfg)
    assert_bitwise_equal(to_jax(params, cfg), flat)


def test_optional_keys_follow_the_config(cfg):
    keys = jax_shapes(cfg)
    assert ("cls" in keys) == (cfg.classifier == "token")
    assert ("Transformer/posembed_input/pos_embedding" in keys) == (cfg.pos_embedding == "learned")


@pytest.mark.parametrize("direction", ["to_jax", "from_jax"])
def test_outputs_are_contiguous_copies_with_the_input_dtype(direction):
    cfg = CONFIGS["token-learned-k4"]
    convert, shapes = (to_jax, param_shapes(cfg)) if direction == "to_jax" else (from_jax, jax_shapes(cfg))
    # Non-contiguous float16 inputs: a transposed copy viewed back, so any view would show.
    inputs = {k: np.asarray(np.random.default_rng(2).standard_normal(s[::-1]), np.float16).T
              for k, s in shapes.items()}
    out = convert(inputs, cfg)
    for key, array in out.items():
        assert array.flags.c_contiguous and array.flags.owndata, key
        assert array.dtype == np.float16, key
        assert not any(np.shares_memory(array, a) for a in inputs.values()), key
    before = {k: v.copy() for k, v in out.items()}
    for a in inputs.values():
        a[...] = 7
    assert_bitwise_equal(out, before)


def test_query_key_value_and_out_kernels_by_hand():
    cfg = ViTConfig(depth=1)   # D = 64, k = 4 heads, D_h = 16
    params = random_arrays(param_shapes(cfg), np.float32)
    U_qkv = params["blocks.0.U_qkv"]
    # Head h = 2, feature j = 5 of that head, input row d = 10: query column 2·16 + 5 = 37,
    # key column 64 + 37 = 101, value column 128 + 37 = 165.
    U_qkv[10, 37], U_qkv[10, 101], U_qkv[10, 165] = 1.5, 2.5, 3.5
    params["blocks.0.U_qkv_bias"][[37, 101, 165]] = [4.5, 5.5, 6.5]
    params["blocks.0.U_msa"][37, 20] = 7.5   # row 37 = head 2, feature 5 of the concatenated heads
    flat = to_jax(params, cfg)
    attn = "Transformer/encoderblock_0/MultiHeadDotProductAttention_1/"
    assert flat[attn + "query/kernel"][10, 2, 5] == 1.5
    assert flat[attn + "key/kernel"][10, 2, 5] == 2.5
    assert flat[attn + "value/kernel"][10, 2, 5] == 3.5
    assert flat[attn + "query/bias"][2, 5] == 4.5
    assert flat[attn + "key/bias"][2, 5] == 5.5
    assert flat[attn + "value/bias"][2, 5] == 6.5
    assert flat[attn + "out/kernel"][2, 5, 20] == 7.5
    # and whole blocks: query kernel of head h is the columns h·D_h … (h+1)·D_h − 1 of U_qkv
    for h in range(cfg.heads):
        cols = slice(h * 16, (h + 1) * 16)
        np.testing.assert_array_equal(flat[attn + "query/kernel"][:, h, :], U_qkv[:, cols])
        np.testing.assert_array_equal(flat[attn + "value/kernel"][:, h, :], U_qkv[:, 128:][:, cols])
        np.testing.assert_array_equal(flat[attn + "out/kernel"][h], params["blocks.0.U_msa"][cols, :])


def test_per_head_attention_matches_the_fused_matrices():
    """Eq 5 and Eq 8 computed with flax's per-head kernels equal the fused U_qkv / U_msa."""
    cfg = CONFIGS["token-none-k3-rect"].replace(dtype="float64")
    params = random_arrays(param_shapes(cfg), np.float64)
    params = {k: np.nan_to_num(v) for k, v in params.items()}
    flat = to_jax(params, cfg)
    attn = "Transformer/encoderblock_0/MultiHeadDotProductAttention_1/"
    D, D_h = cfg.dim, cfg.head_dim
    z = np.random.default_rng(3).standard_normal((5, D))
    qkv = z @ params["blocks.0.U_qkv"] + params["blocks.0.U_qkv_bias"]   # (5, 3D)
    heads = np.random.default_rng(4).standard_normal((5, D))             # [SA_1; …; SA_k] stand-in
    msa = heads @ params["blocks.0.U_msa"]
    msa_flax = np.zeros_like(msa)
    for h in range(cfg.heads):
        for i, name in enumerate(["query", "key", "value"]):
            ours = qkv[:, i * D + h * D_h:i * D + (h + 1) * D_h]
            theirs = z @ flat[f"{attn}{name}/kernel"][:, h, :] + flat[f"{attn}{name}/bias"][h]
            np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-12)
        msa_flax += heads[:, h * D_h:(h + 1) * D_h] @ flat[attn + "out/kernel"][h]
    np.testing.assert_allclose(msa, msa_flax, rtol=1e-12, atol=1e-12)


def test_embedding_kernel_is_a_conv_over_hand_flattened_patches():
    cfg = CONFIGS["gap-sincos-k1-rect-rgb"].replace(dtype="float64")   # 8×12×3 image, P = 4, D = 8
    P, C, D = cfg.patch_size, cfg.in_channels, cfg.dim
    params = {k: np.nan_to_num(v) for k, v in random_arrays(param_shapes(cfg), np.float64).items()}
    image = np.random.default_rng(5).standard_normal((*cfg.hw, C))
    # x_p: patches row-major over the grid, each flattened in (row, col, channel) order, by hand
    x_p = []
    for gi in range(cfg.grid[0]):
        for gj in range(cfg.grid[1]):
            x_p.append([image[gi * P + r, gj * P + c, ch] for r in range(P) for c in range(P) for ch in range(C)])
    tokens = np.array(x_p) @ params["E"] + params["E_bias"]   # (N, D)
    flat = to_jax(params, cfg)
    kernel, bias = flat["embedding/kernel"], flat["embedding/bias"]   # (P, P, C, D) = (height, width, in, out)
    for n, (gi, gj) in enumerate(np.ndindex(*cfg.grid)):   # a P×P convolution with stride P
        out = bias.copy()
        for r in range(P):
            for c in range(P):
                for ch in range(C):
                    out += image[gi * P + r, gj * P + c, ch] * kernel[r, c, ch, :]
        np.testing.assert_allclose(tokens[n], out, rtol=1e-12, atol=1e-12)
    assert tokens.shape == (cfg.num_patches, D)


def test_vit_b16_has_the_original_keys_and_shapes():
    cfg = ViTConfig.variant("B")
    shapes = jax_shapes(cfg)
    enc = "Transformer/encoderblock_"
    expected_some = {
        "embedding/kernel": (16, 16, 3, 768),
        "embedding/bias": (768,),
        "cls": (1, 1, 768),
        "Transformer/posembed_input/pos_embedding": (1, 197, 768),
        enc + "0/LayerNorm_0/scale": (768,),
        enc + "0/MultiHeadDotProductAttention_1/query/kernel": (768, 12, 64),
        enc + "0/MultiHeadDotProductAttention_1/value/bias": (12, 64),
        enc + "11/MultiHeadDotProductAttention_1/out/kernel": (12, 64, 768),
        enc + "11/MultiHeadDotProductAttention_1/out/bias": (768,),
        enc + "5/LayerNorm_2/bias": (768,),
        enc + "7/MlpBlock_3/Dense_0/kernel": (768, 3072),
        enc + "7/MlpBlock_3/Dense_1/kernel": (3072, 768),
        enc + "7/MlpBlock_3/Dense_1/bias": (768,),
        "Transformer/encoder_norm/scale": (768,),
        "head/kernel": (768, 1000),
        "head/bias": (1000,),
    }
    for key, shape in expected_some.items():
        assert shapes[key] == shape, key
    per_block = {
        "LayerNorm_0/scale", "LayerNorm_0/bias", "LayerNorm_2/scale", "LayerNorm_2/bias",
        "MlpBlock_3/Dense_0/kernel", "MlpBlock_3/Dense_0/bias", "MlpBlock_3/Dense_1/kernel",
        "MlpBlock_3/Dense_1/bias",
    } | {f"MultiHeadDotProductAttention_1/{m}/{p}" for m in ("query", "key", "value", "out")
         for p in ("kernel", "bias")}
    expected_keys = {"embedding/kernel", "embedding/bias", "cls", "Transformer/posembed_input/pos_embedding",
                     "Transformer/encoder_norm/scale", "Transformer/encoder_norm/bias", "head/kernel",
                     "head/bias"} | {f"{enc}{i}/{s}" for i in range(12) for s in per_block}
    assert set(shapes) == expected_keys and len(shapes) == 200
    assert sum(int(np.prod(s)) for s in shapes.values()) == 86_567_656   # VIT_NOTES §3


def test_tiny_config_key_list_in_full():
    cfg = ViTConfig(depth=1, dim=8, heads=2, mlp_dim=16, num_classes=3)   # 28×28×1, P = 7, T = 17
    a, m = "Transformer/encoderblock_0/MultiHeadDotProductAttention_1/", "Transformer/encoderblock_0/MlpBlock_3/"
    assert jax_shapes(cfg) == {
        "embedding/kernel": (7, 7, 1, 8), "embedding/bias": (8,), "cls": (1, 1, 8),
        "Transformer/posembed_input/pos_embedding": (1, 17, 8),
        "Transformer/encoderblock_0/LayerNorm_0/scale": (8,), "Transformer/encoderblock_0/LayerNorm_0/bias": (8,),
        a + "query/kernel": (8, 2, 4), a + "key/kernel": (8, 2, 4), a + "value/kernel": (8, 2, 4),
        a + "query/bias": (2, 4), a + "key/bias": (2, 4), a + "value/bias": (2, 4),
        a + "out/kernel": (2, 4, 8), a + "out/bias": (8,),
        "Transformer/encoderblock_0/LayerNorm_2/scale": (8,), "Transformer/encoderblock_0/LayerNorm_2/bias": (8,),
        m + "Dense_0/kernel": (8, 16), m + "Dense_0/bias": (16,), m + "Dense_1/kernel": (16, 8),
        m + "Dense_1/bias": (8,),
        "Transformer/encoder_norm/scale": (8,), "Transformer/encoder_norm/bias": (8,),
        "head/kernel": (8, 3), "head/bias": (3,),
    }


# ---- conversion errors -----------------------------------------------------------------------------
SMALL = ViTConfig(depth=1, dim=8, heads=2, mlp_dim=16, num_classes=3)
QK = "Transformer/encoderblock_0/MultiHeadDotProductAttention_1/query/kernel"


def small_flat():
    return random_arrays(jax_shapes(SMALL), np.float32)


def small_params():
    return random_arrays(param_shapes(SMALL), np.float32)


def test_from_jax_lists_unknown_missing_and_misshaped_keys_together():
    flat = small_flat()
    flat["foo/bar"] = np.zeros(3, np.float32)
    del flat["cls"]
    flat[QK] = np.zeros((8, 4, 2), np.float32)
    with pytest.raises(ValueError) as err:
        from_jax(flat, SMALL)
    msg = str(err.value)
    assert "3 problem(s)" in msg
    assert "unknown key 'foo/bar' with shape (3,)" in msg
    assert "missing key 'cls': expected shape (1, 1, 8)" in msg
    assert f"wrong shape for {QK!r}: expected (8, 2, 4), got (8, 4, 2)" in msg


def test_from_jax_explains_pre_logits():
    flat = small_flat()
    flat["pre_logits/kernel"] = np.zeros((8, 8), np.float32)
    flat["pre_logits/bias"] = np.zeros(8, np.float32)
    with pytest.raises(ValueError, match=r"'pre_logits/kernel'.*pre-logits layer .* is not part of this config"):
        from_jax(flat, SMALL)


def test_from_jax_hints_at_the_config_field_that_differs():
    with pytest.raises(ValueError, match=r"unknown key 'cls'.*classifier='gap'"):
        from_jax(small_flat(), SMALL.replace(classifier="gap"))
    deeper = random_arrays(jax_shapes(SMALL.replace(depth=2)), np.float32)
    with pytest.raises(ValueError, match=r"encoderblock_1/.*block 1, but this config has depth L=1"):
        from_jax(deeper, SMALL)


def test_from_jax_refuses_mixed_qkv_dtypes():
    flat = small_flat()
    flat[QK] = flat[QK].astype(np.float64)
    with pytest.raises(ValueError, match=r"float32, float64.*fused into 'blocks.0.U_qkv'"):
        from_jax(flat, SMALL)


def test_to_jax_validates_against_param_shapes():
    params = small_params()
    params["blocks.0.U_qk"] = np.zeros((8, 16), np.float32)
    del params["head.b"]
    params["blocks.0.U_qkv"] = np.zeros((8, 8), np.float32)
    with pytest.raises(ValueError) as err:
        to_jax(params, SMALL)
    msg = str(err.value)
    assert "unknown key 'blocks.0.U_qk' with shape (8, 16)" in msg
    assert "missing key 'head.b': expected shape (3,)" in msg
    assert "wrong shape for 'blocks.0.U_qkv': expected (8, 24), got (8, 8)" in msg


def test_to_jax_hints_and_rejects_non_mappings():
    params = small_params()
    with pytest.raises(ValueError, match=r"'E_pos'.*pos_embedding='sincos'"):
        to_jax(params, SMALL.replace(pos_embedding="sincos"))
    with pytest.raises(TypeError, match="mapping"):
        to_jax(list(params.values()), SMALL)


def test_full_pipeline_through_an_npz_file(tmp_path):
    cfg = CONFIGS["token-learned-k4"]
    params = random_arrays(param_shapes(cfg), np.float32)
    save_npz(tmp_path / "ViT-tiny.npz", to_jax(params, cfg))
    with np.load(tmp_path / "ViT-tiny.npz") as npz:   # numpy itself reads our files
        assert sorted(npz.files) == sorted(jax_shapes(cfg))
    assert_bitwise_equal(from_jax(load_npz(tmp_path / "ViT-tiny.npz"), cfg), params)
