"""vitnp.ops.masking: the corruption of masked patch prediction (§4.6, Appendix B.1.2) and its targets.  The
gradient check of mask_embed is in vitnp.selfcheck (tests/test_gradcheck.py, tolerance 1e-7)."""
import numpy as np
import pytest

from vitnp.ops.masking import corrupt_patches, corruption_plan, mask_embed_forward, mean_intensity_bins
from vitnp.ops.patches import patchify_forward


def test_the_plan_corrupts_half_and_splits_them_80_10_10():
    """1000 images of 16 patches: exactly 8 corrupted per image; of the corrupted, 80 % masked, 10 % replaced by
    another patch of the image, 10 % kept (within 1.5 points over 8000); nothing outside them is touched."""
    plan = corruption_plan(np.random.default_rng(0), 1000, 16)
    corrupted, masked, source = plan["corrupted"], plan["masked"], plan["source"]
    assert (corrupted.sum(1) == 8).all() and not (masked & ~corrupted).any()
    own = np.broadcast_to(np.arange(16), source.shape)
    replaced = source != own
    assert not (replaced & ~corrupted).any() and not (replaced & masked).any()
    n = corrupted.sum()
    assert abs(masked.sum() / n - 0.8) < 0.015 and abs(replaced.sum() / n - 0.1) < 0.015
    assert abs((corrupted & ~masked & ~replaced).sum() / n - 0.1) < 0.015
    again = corruption_plan(np.random.default_rng(0), 1000, 16)
    assert all(np.array_equal(plan[k], again[k]) for k in plan)          # a seed repeats the plan


def test_corrupt_patches_zeroes_masked_copies_replaced_keeps_the_rest():
    rng = np.random.default_rng(1)
    x_p = rng.standard_normal((3, 6, 4))
    plan = corruption_plan(np.random.default_rng(2), 3, 6)
    out = corrupt_patches(x_p, plan)
    for b in range(3):
        for i in range(6):
            want = 0.0 if plan["masked"][b, i] else x_p[b, plan["source"][b, i]]
            assert np.array_equal(out[b, i], np.broadcast_to(want, (4,)))
    assert not np.shares_memory(out, x_p)


def test_mean_intensity_bins_match_patchify_order():
    """The targets are the mean of each patch's pixels in 8 bins of 32 grey levels, in patchify_forward's order."""
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (2, 28, 28, 1)).astype(np.uint8)
    images[0, :7, :7] = 255                                            # patch 0: all white -> bin 7
    images[1, :7, 7:14] = 0                                            # patch 1: black -> bin 0
    bins = mean_intensity_bins(images, 7)
    x_p, _ = patchify_forward(images.astype(np.float64), 7)
    assert np.array_equal(bins, np.floor(x_p.mean(-1) / 32).astype(int))
    assert bins[0, 0] == 7 and bins[1, 1] == 0 and bins.shape == (2, 16)
    with pytest.raises(TypeError, match="uint8"):
        mean_intensity_bins(images.astype(np.float32), 7)
    with pytest.raises(ValueError, match="divide"):
        mean_intensity_bins(images, 5)


def test_mask_embed_adds_delta_to_masked_tokens_only():
    z = np.zeros((1, 3, 2))
    out, _ = mask_embed_forward(z, np.array([1.0, 2.0]), np.array([[False, True, False]]))
    assert np.array_equal(out, [[[0, 0], [1, 2], [0, 0]]])


@pytest.mark.parametrize("bad", [dict(rate=0.0), dict(mask=0.95, replace=0.1), dict(replace=-0.1)])
def test_bad_plans_are_refused(bad):
    with pytest.raises(ValueError):
        corruption_plan(np.random.default_rng(0), 2, 16, **bad)
