"""vitnp.training.finetune.adapt_params: a model of one config becomes a model of another (paper §3.2).

Checked on small configs: 28→56 pixels with P=7 (E_pos interpolated from the 4×4 to the 8×8 patch grid, the
class token's row kept), a new zero head for new classes, unchanged parameters copied bit for bit, and a clear
error for every change the weights cannot follow.
"""
import numpy as np
import pytest

from vitnp import ViTConfig, init_params, vit_forward
from vitnp.io.original import resize_pos_embedding
from vitnp.cnn import CNNConfig, init_cnn_params
from vitnp.config import param_shapes
from vitnp.training.finetune import adapt_params

OLD = ViTConfig(image_size=28, patch_size=7, num_classes=10, dim=16, depth=2, heads=2, mlp_dim=32)


def trained_like(cfg, seed=1):
    """Parameters with every array random (a zero head would hide a head that was not replaced)."""
    rng = np.random.default_rng(seed)
    return {k: rng.standard_normal(v.shape).astype(v.dtype) for k, v in init_params(cfg).items()}


def assert_bit_identical_copies(new, old, names):
    for k in names:
        assert new[k].dtype == old[k].dtype and new[k].tobytes() == old[k].tobytes(), k
        assert not np.shares_memory(new[k], old[k]), f"{k} is a view of the old array, not a copy"


def test_higher_resolution_interpolates_E_pos_and_copies_the_rest():
    params = trained_like(OLD)
    new_cfg = OLD.replace(image_size=56)                                  # N: 16 -> 64, T: 17 -> 65
    new = adapt_params(params, OLD, new_cfg)
    assert {k: v.shape for k, v in new.items()} == param_shapes(new_cfg)
    assert new["E_pos"].shape == (65, 16) and new["E_pos"].dtype == np.float32
    # the class-token row is kept; the grid rows are the corner-aligned bilinear resize of the old grid
    assert new["E_pos"][0].tobytes() == params["E_pos"][0].tobytes()
    expected = resize_pos_embedding(params, OLD, new_cfg)["E_pos"]
    assert new["E_pos"].tobytes() == expected.tobytes()
    grid_old = params["E_pos"][1:].reshape(4, 4, 16)
    grid_new = new["E_pos"][1:].reshape(8, 8, 16)
    for (i, j), (I, J) in {(0, 0): (0, 0), (0, 3): (0, 7), (3, 0): (7, 0), (3, 3): (7, 7)}.items():
        np.testing.assert_allclose(grid_new[I, J], grid_old[i, j], rtol=0, atol=1e-6)   # corners map to corners
    assert_bit_identical_copies(new, params, [k for k in params if k != "E_pos"])   # head kept: same classes
    logits, _ = vit_forward(new, np.zeros((2, 56, 56, 1), np.float32), new_cfg)
    assert logits.shape == (2, 10)


def test_new_classes_get_a_zero_head_and_nothing_else_changes():
    params = trained_like(OLD)
    new_cfg = OLD.replace(num_classes=5)
    new = adapt_params(params, OLD, new_cfg)
    assert new["head.W"].shape == (16, 5) and new["head.b"].shape == (5,)
    assert not new["head.W"].any() and not new["head.b"].any()           # the paper's zero-initialised head
    assert_bit_identical_copies(new, params, [k for k in params if not k.startswith("head.")])
    # a zero head predicts the uniform distribution whatever the body computes
    logits, _ = vit_forward(new, np.random.default_rng(0).standard_normal((3, 28, 28, 1)).astype(np.float32),
                            new_cfg)
    assert not logits.any()


def test_resolution_and_classes_together_and_reset_head_with_same_count():
    params = trained_like(OLD)
    new = adapt_params(params, OLD, OLD.replace(image_size=56, num_classes=3))
    assert new["E_pos"].shape == (65, 16) and new["head.W"].shape == (16, 3) and not new["head.W"].any()
    kept = adapt_params(params, OLD, OLD)                                 # same config: a plain copy
    assert_bit_identical_copies(kept, params, params)
    reset = adapt_params(params, OLD, OLD, reset_head=True)               # other classes, same number
    assert not reset["head.W"].any() and not reset["head.b"].any()
    assert_bit_identical_copies(reset, params, [k for k in params if not k.startswith("head.")])
    with pytest.raises(ValueError, match="reset_head=False.*10 -> 4"):
        adapt_params(params, OLD, OLD.replace(num_classes=4), reset_head=False)


def test_arithmetic_fields_may_change_and_dtype_is_cast():
    params = trained_like(OLD)
    new = adapt_params(params, OLD, OLD.replace(gelu="tanh", dropout=0.1, dtype="float64"))
    assert all(v.dtype == np.float64 for v in new.values())
    for k in params:
        assert np.array_equal(new[k], params[k].astype(np.float64)), k   # float32 -> float64 is exact


def test_gap_classifier_and_sincos_positions():
    gap = OLD.replace(classifier="gap")
    params = trained_like(gap)
    new = adapt_params(params, gap, gap.replace(image_size=(28, 56)))     # 4x4 -> 4x8 grid, no class row
    assert new["E_pos"].shape == (32, 16)
    np.testing.assert_allclose(new["E_pos"].reshape(4, 8, 16)[:, [0, -1]],
                               params["E_pos"].reshape(4, 4, 16)[:, [0, -1]], rtol=0, atol=1e-6)
    sincos = OLD.replace(pos_embedding="sincos")
    params = trained_like(sincos)
    new = adapt_params(params, sincos, sincos.replace(image_size=56))     # nothing to interpolate
    assert "E_pos" not in new
    assert_bit_identical_copies(new, params, params)


@pytest.mark.parametrize("change, fragments", [
    (dict(dim=32), ["dim: 16 (old) vs 32 (new)"]),
    (dict(depth=3), ["depth: 2 (old) vs 3 (new)"]),
    (dict(patch_size=4), ["patch_size: 7 (old) vs 4 (new)"]),
    (dict(classifier="gap"), ["classifier: 'token' (old) vs 'gap' (new)"]),
    (dict(heads=4), ["heads: 2 (old) vs 4 (new)"]),
    (dict(pos_embedding="sincos"), ["pos_embedding"]),
    (dict(in_channels=3), ["in_channels: 1 (old) vs 3 (new)"]),
    (dict(stem_channels=(4,)), ["stem_channels: () (old) vs (4,) (new)"]),
])
def test_architecture_changes_are_refused_with_both_values(change, fragments):
    with pytest.raises(ValueError) as e:
        adapt_params(trained_like(OLD), OLD, OLD.replace(**change))
    msg = str(e.value)
    assert "\n" not in msg and "only image_size, num_classes" in msg
    for fragment in fragments:
        assert fragment in msg, msg


def test_params_must_fit_the_old_config_and_kinds_must_match():
    params = trained_like(OLD)
    bad = dict(params, **{"blocks.0.mlp.W1": np.zeros((16, 33), np.float32)})
    with pytest.raises(ValueError, match=r"blocks.0.mlp.W1.*\(16, 33\)"):
        adapt_params(bad, OLD, OLD.replace(image_size=56))
    missing = {k: v for k, v in params.items() if k != "E_pos"}
    with pytest.raises(ValueError, match="missing E_pos"):
        adapt_params(missing, OLD, OLD)
    with pytest.raises(TypeError, match="cannot adapt a VIT"):
        adapt_params(params, OLD, CNNConfig())
    with pytest.raises(TypeError, match="cfg must be one of"):
        adapt_params(params, OLD, {"dim": 16})


def test_cnn_gets_a_new_head_and_refuses_a_size_change_that_the_head_cannot_follow():
    cnn = CNNConfig(channels=(4, 8))
    rng = np.random.default_rng(0)
    params = {k: rng.standard_normal(v.shape).astype(np.float32)
              for k, v in init_cnn_params(0, cfg=cnn).items()}
    new = adapt_params(params, cnn, cnn.replace(num_classes=5))
    assert new["head.W"].shape == (7 * 7 * 8, 5) and not new["head.W"].any() and not new["head.b"].any()
    assert_bit_identical_copies(new, params, ["conv1.W", "conv1.b", "conv2.W", "conv2.b"])
    with pytest.raises(ValueError) as e:
        adapt_params(params, cnn, cnn.replace(image_size=56))             # head input 392 -> 1568
    assert "'head.W'" in str(e.value) and "(392, 10)" in str(e.value) and "(1568, 10)" in str(e.value)
    assert "image_size (28, 28) vs (56, 56)" in str(e.value)
    bigger = adapt_params(params, cnn, cnn.replace(image_size=56), reset_head=True)
    assert bigger["head.W"].shape == (1568, 10) and not bigger["head.W"].any()
    with pytest.raises(ValueError, match="channels: \\(4, 8\\) \\(old\\) vs \\(4, 16\\) \\(new\\)"):
        adapt_params(params, cnn, cnn.replace(channels=(4, 16)))


# ---- review fixes: one definition of the shape fields, E_pos and the head without a whole new model ------
def test_the_new_head_is_zeros_without_initialising_a_new_model(monkeypatch):
    """reset_head makes zeros of the head's shapes; it must not build (and throw away) a whole new model."""
    import dataclasses
    from vitnp.training import specs as models

    def boom(cfg, seed):
        raise AssertionError("adapt_params initialised a whole new model")

    monkeypatch.setitem(models.MODELS, "vit", dataclasses.replace(models.MODELS["vit"], init=boom))
    params = trained_like(OLD)
    new = adapt_params(params, OLD, OLD.replace(num_classes=4, dtype="float64"))
    assert new["head.W"].shape == (16, 4) and new["head.W"].dtype == np.float64 and not new["head.W"].any()
    assert new["head.b"].shape == (4,) and not new["head.b"].any()


def test_resize_pos_table_is_what_resize_pos_embedding_and_adapt_params_use():
    from vitnp.io.original import resize_pos_table
    params = trained_like(OLD.replace(dtype="float64"))
    old = OLD.replace(dtype="float64")
    new = old.replace(image_size=(42, 56))                                      # 4×4 -> 6×8 patch grid
    table = resize_pos_table(params["E_pos"], old, new)                        # (49, 16) float64
    assert table.shape == (49, 16) and table[0].tobytes() == params["E_pos"][0].tobytes()   # class row kept
    assert resize_pos_embedding(params, old, new)["E_pos"].tobytes() == table.tobytes()
    assert adapt_params(params, old, new)["E_pos"].tobytes() == table.tobytes()
    with pytest.raises(ValueError, match="resize_pos_table"):
        resize_pos_table(params["E_pos"][:5], old, new)


def test_shape_fields_are_defined_once():
    """The fields resize_pos_embedding needs equal and those adapt_params refuses to change come from one
    definition (vitnp.config), so they cannot drift apart."""
    from vitnp.training import finetune
    from vitnp.config import ARITHMETIC_FIELDS, shape_fields
    assert shape_fields(ViTConfig) == ("patch_size", "in_channels", "num_classes", "dim", "depth", "heads",
                                       "mlp_dim", "classifier", "pos_embedding", "stem_channels", "stem_kernel",
                                       "stem_pool")
    assert shape_fields(CNNConfig()) == ("in_channels", "num_classes", "channels", "kernel_size", "pool")
    assert finetune.ARITHMETIC_FIELDS is ARITHMETIC_FIELDS
    for name in shape_fields(ViTConfig):                      # every one of them is refused by adapt_params…
        if name == "num_classes":
            continue
        changed = {"patch_size": 4, "in_channels": 3, "dim": 32, "depth": 3, "heads": 4, "mlp_dim": 16,
                   "classifier": "gap", "pos_embedding": "none", "stem_channels": (2,), "stem_kernel": 5,
                   "stem_pool": 1}[name]
        new = OLD.replace(**{name: changed})
        with pytest.raises(ValueError, match=name):
            adapt_params(trained_like(OLD), OLD, new)
        with pytest.raises(ValueError, match=name):                # … and by resize_pos_embedding
            resize_pos_embedding(trained_like(OLD), OLD, new)
