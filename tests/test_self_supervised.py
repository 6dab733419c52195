"""vitnp.self_supervised: masked patch prediction's pre-training model (§4.6).  Its gradient check (every parameter
it uses, float64, tolerance 1e-6) is a case of vitnp.selfcheck, run in tests/test_gradcheck.py."""
import numpy as np
import pytest

from vitnp import ViTConfig, vit_forward
from vitnp.ops.masking import corruption_plan
from vitnp.self_supervised import MPP_KEYS, init_mpp_params, mpp_backward, mpp_forward

CFG = ViTConfig(image_size=8, patch_size=2, in_channels=1, num_classes=3, dim=8, depth=2, heads=2, mlp_dim=12,
                dtype="float64")


@pytest.mark.parametrize("classifier", ["token", "gap"])
def test_uncorrupted_tokens_are_the_vits_own(classifier):
    """With every corrupted patch kept as it is (mask = replace = 0), the patch head reads exactly the final
    LayerNorm's output of the plain ViT on the same images: the body is the ViT's, nothing else."""
    cfg = CFG.replace(classifier=classifier)
    rng = np.random.default_rng(0)
    params = {k: v + 0.1 * rng.standard_normal(v.shape) for k, v in init_mpp_params(cfg, bins=4).items()}
    x = rng.standard_normal((2, 8, 8, 1))
    plan = corruption_plan(np.random.default_rng(1), 2, cfg.num_patches, rate=1.0, mask=0.0, replace=0.0)
    logits, cache = mpp_forward(params, x, plan, cfg)
    _, vit_cache = vit_forward({k: v for k, v in params.items() if k not in MPP_KEYS}, x, cfg)
    x_hat, _, gamma = vit_cache["head"][0]                              # the final LayerNorm's cache (documented)
    h = gamma * x_hat + params["ln_f.beta"]
    first = 1 if classifier == "token" else 0
    want = h[:, first:].reshape(-1, cfg.dim) @ params["mpp.W"] + params["mpp.b"]
    assert np.abs(logits - want).max() < 1e-12 and logits.shape == (2 * cfg.num_patches, 4)


def test_masking_changes_what_the_head_sees_and_delta_gets_a_gradient():
    rng = np.random.default_rng(2)
    params = init_mpp_params(CFG, bins=4)
    x = rng.standard_normal((3, 8, 8, 1))
    plan = corruption_plan(np.random.default_rng(3), 3, CFG.num_patches)
    logits, cache = mpp_forward(params, x, plan, CFG)
    assert logits.shape == (int(plan["corrupted"].sum()), 4)
    grads = mpp_backward(np.ones_like(logits), cache)
    assert set(grads) == set(params) - {"head.W", "head.b"} and np.abs(grads["mpp.delta"]).sum() > 0


def test_dropout_and_the_hybrid_are_refused():
    with pytest.raises(ValueError, match="without dropout"):
        init_mpp_params(CFG.replace(dropout=0.1))
