"""vitnp.analysis.maps on hand-made cases whose answers are known in closed form."""
import math

import numpy as np
import pytest

from vitnp import ViTConfig, init_params, vit_forward

from vitnp.analysis import maps as analysis
from vitnp.analysis.maps import (attention_maps, attention_rollout, embedding_filters, mean_attention_distance,
                            patch_distances, pos_embedding_similarity)


def cfg_for(grid=(2, 2), P=4, classifier="token", **kw):
    fields = dict(image_size=(grid[0] * P, grid[1] * P), patch_size=P, in_channels=1, num_classes=3, dim=8,
                  depth=1, heads=2, mlp_dim=8, classifier=classifier)
    fields.update(kw)
    return ViTConfig(**fields)


def stack(A, B=1, heads=1):
    """One (T, T) attention matrix as a (B, k, T, T) layer."""
    return np.broadcast_to(A, (B, heads) + A.shape).copy()


# ---- attention_maps -------------------------------------------------------------------------------
def test_attention_maps_of_a_forward_pass():
    cfg = cfg_for(depth=3, heads=2, dtype="float64")
    params = init_params(cfg, seed=0)
    x = np.random.default_rng(0).standard_normal((4, 8, 8, 1))
    _, cache = vit_forward(params, x, cfg)
    maps = attention_maps(cache)
    assert len(maps) == 3
    for A in maps:
        assert A.shape == (4, 2, 5, 5)
        np.testing.assert_allclose(A.sum(-1), 1.0, rtol=0, atol=1e-12)        # softmax over keys
    assert mean_attention_distance(maps, cfg).shape == (3, 2)
    assert attention_rollout(maps, cfg).shape == (4, 8, 8)
    with pytest.raises(ValueError, match="vit_forward"):
        attention_maps({"blocks": []})


# ---- attention_rollout ---------------------------------------------------------------------------
def test_rollout_of_identity_attention():
    """Every token attends only to itself: nothing mixes, so the class token draws nothing from the
    patches ('token'), and the mean of the output tokens draws 1/N from each patch ('gap')."""
    tok = cfg_for(classifier="token")
    out = attention_rollout([stack(np.eye(5), B=2, heads=2)] * 3, tok, upsample=None)
    assert out.shape == (2, 2, 2)
    np.testing.assert_array_equal(out, 0.0)
    gap = cfg_for(classifier="gap")
    out = attention_rollout([stack(np.eye(4), B=2, heads=2)] * 3, gap, upsample=None)
    np.testing.assert_allclose(out, 0.25, rtol=0, atol=1e-15)


@pytest.mark.parametrize("L", [1, 2, 5])
def test_rollout_of_uniform_attention(L):
    """Ā = U (all 1/T) gives Â = ½(U + I); U² = U, so Â^L = I/2^L + (1 − 2^−L) U and every patch gets
    (1 − 2^−L)/T from the class token."""
    cfg = cfg_for()
    T = 5
    out = attention_rollout([stack(np.full((T, T), 1.0 / T), heads=3)] * L, cfg, upsample=None)
    np.testing.assert_allclose(out, (1.0 - 2.0 ** -L) / T, rtol=1e-13)


def test_rollout_averages_heads_and_places_patches_row_major():
    """Head 0 sends the class token to patch 1 (grid row 0, col 1), head 1 to patch 3 (row 1, col 0):
    over the tokens, Ā row 0 = ½e₂ + ½e₄ and Â row 0 = ½e₀ + ¼e₂ + ¼e₄."""
    cfg = cfg_for(grid=(2, 3), P=2)               # T = 7, image 4×6
    A = np.tile(np.eye(7), (1, 2, 1, 1))
    A[0, 0, 0] = np.eye(7)[1 + 1]                 # token 2 = patch 1
    A[0, 1, 0] = np.eye(7)[1 + 3]                 # token 4 = patch 3
    grid = attention_rollout([A], cfg, upsample=None)[0]
    expected = np.zeros((2, 3))
    expected[0, 1] = expected[1, 0] = 0.25
    np.testing.assert_allclose(grid, expected, rtol=0, atol=1e-15)
    image = attention_rollout([A], cfg)[0]        # nearest: P×P blocks
    assert image.shape == (4, 6)
    np.testing.assert_array_equal(image, np.kron(grid, np.ones((2, 2))))


def test_rollout_multiplies_from_the_first_layer_up():
    """Layer 1: patch a attends patch b; layer 2: the class token attends patch a.  R = Â₂Â₁ traces the
    class token back through a to b: ¼ on a, ¼ on b.  (Â₁Â₂ would put ½ on a alone.)"""
    cfg = cfg_for()                               # tokens 0 (class), 1…4 (patches 0…3)
    a, b = 1, 4                                   # token indices
    A1 = np.eye(5)
    A1[a] = np.eye(5)[b]
    A2 = np.eye(5)
    A2[0] = np.eye(5)[a]
    grid = attention_rollout([stack(A1), stack(A2)], cfg, upsample=None)[0].ravel()
    np.testing.assert_allclose(grid, [0.25, 0.0, 0.0, 0.25], rtol=0, atol=1e-15)


def test_rollout_bilinear_upsampling():
    """Half-pixel-aligned bilinear: a grid linear in the column gives, at pixel x, the value at grid
    position clip((x + ½)/P − ½, 0, gw − 1); a constant grid stays constant."""
    cfg = cfg_for(grid=(1, 4), P=4, classifier="gap")   # N = 4 patches in one row, image 4×16
    # Uniform attention of the gap model gives 1/N everywhere: the map must stay constant.
    flat = attention_rollout([stack(np.full((4, 4), 0.25))], cfg, upsample="bilinear")
    np.testing.assert_allclose(flat, 0.25, rtol=1e-14)
    # A gap model whose tokens all attend patch j with weight w_j gives the map ½(1/N) + ½w_j ...
    w = np.array([0.1, 0.2, 0.3, 0.4])
    A = np.tile(w, (4, 1))
    grid = attention_rollout([stack(A)], cfg, upsample=None)[0, 0]
    np.testing.assert_allclose(grid, 0.5 * 0.25 + 0.5 * w, rtol=1e-14)   # ... which is linear in j
    image = attention_rollout([stack(A)], cfg, upsample="bilinear")[0]
    pos = np.clip((np.arange(16) + 0.5) / 4 - 0.5, 0, 3)
    expected_row = 0.125 + 0.5 * (0.1 + 0.1 * pos)
    np.testing.assert_allclose(image, np.tile(expected_row, (4, 1)), rtol=1e-13)


def test_rollout_errors():
    cfg = cfg_for()
    with pytest.raises(ValueError, match=r"expected \(B, k, 5, 5\)"):
        attention_rollout([np.ones((1, 1, 4, 4))], cfg)
    with pytest.raises(ValueError, match="non-empty list"):
        attention_rollout([], cfg)
    with pytest.raises(ValueError, match="upsample"):
        attention_rollout([stack(np.eye(5))], cfg, upsample="cubic")


# ---- mean_attention_distance ---------------------------------------------------------------------
def test_patch_distances():
    d = patch_distances(cfg_for(grid=(2, 3), P=2))
    assert d.shape == (6, 6)
    assert d[0, 1] == 2.0 and d[0, 3] == 2.0 and d[0, 5] == pytest.approx(math.hypot(2, 4), rel=1e-15)
    np.testing.assert_array_equal(d, d.T)


def test_uniform_attention_gives_the_mean_pairwise_distance():
    """2×2 grid, P = 4: from any patch the distances are 0, 4, 4, 4√2, so uniform attention over the
    patches gives (8 + 4√2)/4 = 2 + √2 pixels.  The class token's share is re-normalised away; without
    re-normalisation it counts as distance 0 (4/5 of the patch mass remains)."""
    cfg = cfg_for()
    maps = [stack(np.full((5, 5), 0.2), B=3, heads=2)]
    np.testing.assert_allclose(mean_attention_distance(maps, cfg), [[2 + math.sqrt(2)] * 2], rtol=1e-14)
    np.testing.assert_allclose(mean_attention_distance(maps, cfg, renormalize=False),
                               [[0.8 * (2 + math.sqrt(2))] * 2], rtol=1e-14)


def test_uniform_attention_on_a_row_of_three():
    """1×3 grid: from the ends the distances are 0, P, 2P (mean P), from the middle P, 0, P (mean 2P/3);
    averaged over the three queries: 8P/9."""
    P = 5
    cfg = cfg_for(grid=(1, 3), P=P, classifier="gap")
    maps = [stack(np.full((3, 3), 1 / 3))]
    assert mean_attention_distance(maps, cfg)[0, 0] == pytest.approx(8 * P / 9, rel=1e-14)


def test_identity_attention_gives_zero_and_farthest_gives_the_farthest_distance():
    P = 5
    cfg = cfg_for(grid=(1, 3), P=P, classifier="gap", depth=2)
    far = np.zeros((3, 3))
    far[0, 2] = far[2, 0] = far[1, 0] = 1.0      # ends look at the other end (2P), the middle at an end (P)
    maps = [stack(np.eye(3), heads=2), np.stack([np.eye(3), far])[None]]   # layer 2: head 0 self, head 1 far
    out = mean_attention_distance(maps, cfg)
    np.testing.assert_allclose(out, [[0.0, 0.0], [0.0, 5 * P / 3]], rtol=1e-14, atol=0)

    cfg = cfg_for(grid=(2, 2), P=4)                # farthest on a 2×2 grid: the diagonal, 4√2
    A = np.zeros((5, 5))
    A[0, 0] = 1.0
    for i, j in [(1, 4), (2, 3), (3, 2), (4, 1)]:
        A[i, j] = 1.0
    assert mean_attention_distance([stack(A)], cfg)[0, 0] == pytest.approx(4 * math.sqrt(2), rel=1e-14)


def test_class_token_weight_is_renormalised_away():
    """Each query gives ½ to the class token and ½ to its right-hand neighbour (distance P)."""
    P = 3
    cfg = cfg_for(grid=(1, 2), P=P)
    A = np.zeros((3, 3))
    A[:, 0] = 0.5
    A[0, 0] = 1.0
    A[1, 2] = 0.5                                 # patch 0 -> patch 1
    A[2, 1] = 0.5                                 # patch 1 -> patch 0
    assert mean_attention_distance([stack(A)], cfg)[0, 0] == pytest.approx(P, rel=1e-15)
    assert mean_attention_distance([stack(A)], cfg, renormalize=False)[0, 0] == pytest.approx(P / 2, rel=1e-15)


# ---- pos_embedding_similarity --------------------------------------------------------------------
def test_orthogonal_position_embeddings_give_the_identity():
    cfg = cfg_for(grid=(2, 3), P=2, dim=8)
    rng = np.random.default_rng(0)
    Q, _ = np.linalg.qr(rng.standard_normal((8, 6)))            # 6 orthonormal columns in R^8
    rows = Q.T * rng.uniform(0.5, 3.0, (6, 1))                   # orthogonal rows, random lengths
    E_pos = np.concatenate([rng.standard_normal((1, 8)), rows])  # the class row is ignored
    S = pos_embedding_similarity({"E_pos": E_pos}, cfg)
    assert S.shape == (2, 3, 2, 3)
    np.testing.assert_allclose(S.reshape(6, 6), np.eye(6), rtol=0, atol=1e-14)


def test_similarity_layout_and_zero_rows():
    cfg = cfg_for(grid=(2, 3), P=2, classifier="gap", dim=8)
    rng = np.random.default_rng(1)
    E_pos = rng.standard_normal((6, 8))
    E_pos[3] = 2.5 * E_pos[1]                    # patch (1, 0) points the same way as patch (0, 1)
    E_pos[5] = 0.0                               # patch (1, 2) has no direction
    S = pos_embedding_similarity({"E_pos": E_pos}, cfg)
    assert S[0, 1, 1, 0] == pytest.approx(1.0, rel=1e-14) and S[1, 0, 0, 1] == pytest.approx(1.0, rel=1e-14)
    assert np.all(S[1, 2] == 0.0) and np.all(S[:, :, 1, 2] == 0.0)
    u = E_pos[0] / np.linalg.norm(E_pos[0])
    v = E_pos[4] / np.linalg.norm(E_pos[4])
    assert S[0, 0, 1, 1] == pytest.approx(u @ v, rel=1e-13)


def test_sincos_table_is_most_similar_to_its_neighbours():
    cfg = cfg_for(grid=(4, 4), P=2, dim=16, pos_embedding="sincos")
    S = pos_embedding_similarity({}, cfg)
    assert S[0, 0, 0, 0] == pytest.approx(1.0)
    assert S[0, 0, 0, 1] > S[0, 0, 0, 3] and S[0, 0, 1, 0] > S[0, 0, 3, 0]
    with pytest.raises(ValueError, match="'none'"):
        pos_embedding_similarity({}, cfg_for(pos_embedding="none"))
    with pytest.raises(ValueError, match="shape"):
        pos_embedding_similarity({"E_pos": np.zeros((4, 8))}, cfg_for())


# ---- embedding_filters ---------------------------------------------------------------------------
def test_embedding_filters_recover_known_principal_directions():
    """E's D columns = mean + 3·z₁u₁ + 2·z₂u₂ + 1·z₃u₃ with orthonormal u and z: PCA must give u₁, u₂, u₃
    (up to sign) with variance fractions 9/14, 4/14, 1/14.  u₁ is one pixel of one channel, so its filter
    must light up exactly (row 1, col 0, channel 2)."""
    P, C, D = 2, 3, 16
    cfg = cfg_for(P=P, in_channels=C, dim=D)
    rng = np.random.default_rng(0)
    u1 = np.zeros(P * P * C)
    u1[(1 * P + 0) * C + 2] = 1.0                               # (row 1, col 0, channel 2), flattened
    rest = rng.standard_normal((P * P * C, 2))
    rest -= np.outer(u1, u1 @ rest)                              # orthogonal to u₁
    U = np.concatenate([u1[:, None], np.linalg.qr(rest)[0]], axis=1)   # (P²C, 3) orthonormal
    Z = rng.standard_normal((D, 3))
    Z = np.linalg.qr(Z - Z.mean(0))[0]                           # centred, orthonormal coefficient columns
    mean_filter = 5.0 * rng.standard_normal(P * P * C)
    E = (mean_filter + Z @ np.diag([3.0, 2.0, 1.0]) @ U.T).T     # (P²C, D)

    filters, var = embedding_filters({"E": E}, cfg, 3, return_variance=True)
    assert filters.shape == (3, P, P, C)
    got = filters.reshape(3, -1)
    np.testing.assert_allclose(np.abs(got @ U), np.eye(3), rtol=0, atol=1e-12)
    np.testing.assert_allclose(var, np.array([9.0, 4.0, 1.0]) / 14.0, rtol=1e-12)
    assert filters[0, 1, 0, 2] == pytest.approx(1.0, rel=1e-12)  # sign: the largest entry is positive
    assert np.abs(filters[0]).sum() == pytest.approx(1.0, rel=1e-12)
    for f in got:
        assert f[np.abs(f).argmax()] > 0


def test_embedding_filters_errors():
    cfg = cfg_for()
    E = np.zeros((cfg.patch_dim, cfg.dim))
    with pytest.raises(ValueError, match=r"k must be an integer in \[1, 8\]"):
        embedding_filters({"E": E}, cfg, 9)
    with pytest.raises(ValueError, match="shape"):
        embedding_filters({"E": E.T}, cfg, 2)


def test_module_exports():
    assert set(analysis.__all__) >= {"attention_maps", "attention_rollout", "mean_attention_distance",
                                     "pos_embedding_similarity", "embedding_filters"}


# ---- pixel scale: hybrid ViTs, whose patches cover more than P pixels -------------------------------
def scaled_cfg(grid=(2, 2), P=1, **kw):
    """A hybrid ViT (paper §3.1) whose token grid is ``grid``: two stem stages with 2×2 pooling (stride 4)
    in front of P×P patches, so each token covers P_pix = 4P input pixels; image (gh·4P, gw·4P)."""
    fields = dict(image_size=(grid[0] * 4 * P, grid[1] * 4 * P), patch_size=P, in_channels=1, num_classes=3,
                  dim=8, depth=1, heads=2, mlp_dim=8, stem_channels=(2, 2), stem_pool=2)
    fields.update(kw)
    return ViTConfig(**fields)


def test_plain_vit_patch_pixels_is_the_patch_size():
    cfg = cfg_for(grid=(2, 3), P=5)
    assert cfg.patch_pixels == 5 and not cfg.is_hybrid
    hybrid = scaled_cfg(P=2)
    assert hybrid.patch_pixels == 8 and hybrid.grid == (2, 2) and hybrid.num_tokens == 5
    assert hybrid.is_hybrid


def test_patch_distances_are_in_image_pixels():
    """1×3 token grid with P = 1 but P_pix = 4: neighbours 4 pixels apart, the ends 8 (not 1 and 2)."""
    d = patch_distances(scaled_cfg(grid=(1, 3), P=1))
    np.testing.assert_array_equal(d[0], [0.0, 4.0, 8.0])
    np.testing.assert_array_equal(d, 4 * patch_distances(cfg_for(grid=(1, 3), P=1)))


def test_mean_attention_distance_of_a_hybrid_is_in_image_pixels():
    """Uniform attention on a 2×2 grid of side-p patches: (2p + p√2)/4.  With P = 2, P_pix = 8: 4 + 2√2
    pixels, where the feature-map scale P would give 1 + √2/2."""
    cfg = scaled_cfg(P=2)
    maps = [stack(np.full((5, 5), 0.2), B=2, heads=2)]
    np.testing.assert_allclose(mean_attention_distance(maps, cfg), [[4 + 2 * math.sqrt(2)] * 2], rtol=1e-14)


def test_rollout_of_a_hybrid_is_upsampled_to_the_input_image():
    """The class token draws from patch 1 (row 0, col 1) only: nearest upsampling must fill the 8×8-pixel
    block rows 0–7, columns 8–15 of the 16×16 image; bilinear keeps a constant map constant at 16×16."""
    cfg = scaled_cfg(P=2)                         # grid 2×2, P_pix = 8, image 16×16
    A = np.eye(5)
    A[0] = np.eye(5)[2]                           # token 2 = patch 1
    image = attention_rollout([stack(A)], cfg)[0]
    assert image.shape == (16, 16)
    expected = np.zeros((16, 16))
    expected[0:8, 8:16] = 0.5                     # Â row 0 = ½e₀ + ½e₂
    np.testing.assert_array_equal(image, expected)
    flat = attention_rollout([stack(np.full((5, 5), 0.2))], cfg, upsample="bilinear")
    assert flat.shape == (1, 16, 16)
    np.testing.assert_allclose(flat, 0.5 / 5, rtol=1e-14)     # Â = ½(U + I): row 0 gives ½·(1/T) per patch


def test_embedding_filters_refuse_a_hybrid():
    cfg = scaled_cfg(P=2)
    E = np.ones((cfg.patch_dim, cfg.dim))
    with pytest.raises(ValueError, match="hybrid"):
        embedding_filters({"E": E}, cfg, 2)
    plain = cfg_for()
    object.__setattr__(plain, "stem_channels", (16,))   # a stem without downsampling: P_pix = P, still hybrid
    with pytest.raises(ValueError, match="feature map"):
        embedding_filters({"E": np.ones((plain.patch_dim, plain.dim))}, plain, 2)


def test_a_real_hybrid_config_uses_its_patch_pixels():
    """config.py's hybrid: 16×16 image, one stem stage with 2×2 pooling → 8×8 map, P = 2 → 4×4 tokens, each
    covering P_pix = 4 image pixels: distances and rollout maps in image pixels, no E filters."""
    cfg = ViTConfig(image_size=16, patch_size=2, in_channels=1, num_classes=3, dim=8, depth=1, heads=2, mlp_dim=8,
                    stem_channels=(4,), stem_pool=2)
    assert cfg.grid == (4, 4) and cfg.patch_pixels == 4 and cfg.is_hybrid
    np.testing.assert_array_equal(patch_distances(cfg)[0, :4], [0.0, 4.0, 8.0, 12.0])
    _, cache = vit_forward(init_params(cfg, seed=0), np.zeros((2, 16, 16, 1), np.float32), cfg)
    assert attention_rollout(attention_maps(cache), cfg).shape == (2, 16, 16)
    with pytest.raises(ValueError, match="hybrid"):
        embedding_filters(init_params(cfg, seed=0), cfg, 2)
