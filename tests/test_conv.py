"""vitnp.ops.conv (conv2d by im2col, ReLU, max-pool) and the CNN baseline vitnp.cnn.

The single-op gradient checks live in vitnp.selfcheck (tests/test_gradcheck.py, tolerance 1e-7); here the
ops are compared with a naive loop and with PyTorch, and the whole CNN is gradient-checked.
"""
import numpy as np
import pytest

from vitnp import cnn
from vitnp.gradcheck import check_gradients, check_pair
from vitnp.ops.conv import (col2im, conv2d_backward, conv2d_forward, im2col, maxpool_backward, maxpool_forward,
                            relu_backward, relu_forward)

MODEL_TOL = 1e-6     # whole-network gradient check, float64
OP_TOL = 1e-7


def naive_conv2d(x, W, b, stride, padding):
    """out[b, y, x, o] = b_o + Σ_{i,j,c} x_pad[b, s_h·y + i, s_w·x + j, c] W[i, j, c, o], by loops."""
    (sh, sw), (ph, pw) = stride, padding
    B, H, Wd, C = x.shape
    kh, kw, _, C_out = W.shape
    xp = np.zeros((B, H + 2 * ph, Wd + 2 * pw, C))
    xp[:, ph:ph + H, pw:pw + Wd] = x
    Ho, Wo = (H + 2 * ph - kh) // sh + 1, (Wd + 2 * pw - kw) // sw + 1
    out = np.zeros((B, Ho, Wo, C_out))
    for n in range(B):
        for y in range(Ho):
            for xx in range(Wo):
                for o in range(C_out):
                    window = xp[n, y * sh:y * sh + kh, xx * sw:xx * sw + kw, :]
                    out[n, y, xx, o] = b[o] + np.sum(window * W[:, :, :, o])
    return out


CONV_CASES = [  # (x shape, W shape, stride, padding)
    ((2, 5, 5, 3), (3, 3, 3, 4), (1, 1), (1, 1)),
    ((1, 7, 6, 2), (2, 3, 2, 3), (2, 2), (1, 0)),
    ((3, 8, 9, 1), (5, 5, 1, 2), (3, 2), (2, 2)),
    ((2, 4, 4, 2), (4, 4, 2, 5), (4, 4), (0, 0)),     # the ViT's patch embedding: kernel = stride = P
]


@pytest.mark.parametrize("xs,ws,stride,padding", CONV_CASES)
def test_conv2d_matches_a_naive_loop(xs, ws, stride, padding):
    rng = np.random.default_rng(0)
    x, W, b = rng.standard_normal(xs), rng.standard_normal(ws), rng.standard_normal(ws[-1])
    out, _ = conv2d_forward(x, W, b, stride=stride, padding=padding)
    np.testing.assert_allclose(out, naive_conv2d(x, W, b, stride, padding), rtol=1e-12, atol=1e-12)


def test_patch_embedding_is_a_stride_P_convolution():
    """E reshaped (P, P, C, D) as a conv kernel with stride P gives x_p E (paper §3.1, Hybrid Architecture)."""
    from vitnp.ops.patches import patchify_forward
    rng = np.random.default_rng(1)
    P, C, D = 3, 2, 5
    x, E, bias = rng.standard_normal((2, 6, 9, C)), rng.standard_normal((P * P * C, D)), rng.standard_normal(D)
    x_p, _ = patchify_forward(x, P)
    conv, _ = conv2d_forward(x, E.reshape(P, P, C, D), bias, stride=P)          # (2, 2, 3, D)
    np.testing.assert_allclose(conv.reshape(2, -1, D), x_p @ E + bias, rtol=1e-12, atol=1e-12)


def test_col2im_is_the_adjoint_of_im2col():
    """<im2col(x), y> = <x, col2im(y)> for every x, y: col2im is exactly the transpose, overlaps summed."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 7, 8, 3))
    cols = im2col(x, 3, 2, 2, 3, 3, 3)
    y = rng.standard_normal(cols.shape)
    assert np.sum(cols * y) == pytest.approx(np.sum(x * col2im(y, x.shape, 2, 3)), rel=1e-12)


def test_a_backward_that_forgets_overlaps_is_caught():
    """col2im with '=' instead of '+=' loses the gradient of pixels seen by several windows."""
    def wrong_backward(dout, cache):
        cols, W, padded_shape, (sh, sw), (ph, pw) = cache
        kh, kw, _, C_out = W.shape
        d2 = dout.reshape(-1, C_out)
        dcols = (d2 @ W.reshape(-1, C_out).T).reshape(cols.shape)
        dx = np.zeros(padded_shape)
        for i in range(kh):
            for j in range(kw):
                dx[:, i:i + sh * cols.shape[1]:sh, j:j + sw * cols.shape[2]:sw] = dcols[:, :, :, i, j]
        H, Wd = padded_shape[1:3]
        return (dx[:, ph:H - ph, pw:Wd - pw], (cols.reshape(d2.shape[0], -1).T @ d2).reshape(W.shape),
                d2.sum(0))

    rng = np.random.default_rng(3)
    inputs = dict(x=rng.standard_normal((1, 5, 5, 2)), W=rng.standard_normal((3, 3, 2, 2)), b=rng.standard_normal(2))
    errors = check_pair(conv2d_forward, wrong_backward, inputs, kwargs={"padding": 1})
    assert errors["x"] > 1e-2
    assert errors["W"] < OP_TOL and errors["b"] < OP_TOL


def test_relu_and_its_gradient_at_zero():
    x = np.array([[-2.0, 0.0, 3.0]], dtype=np.float32)
    out, cache = relu_forward(x)
    assert out.dtype == np.float32 and out.tolist() == [[0.0, 0.0, 3.0]]
    assert relu_backward(np.ones_like(x), cache).tolist() == [[0.0, 0.0, 1.0]]   # derivative 0 at x = 0


def test_maxpool_values_ties_and_leftover_rows():
    x = np.arange(5 * 5, dtype=np.float64).reshape(1, 5, 5, 1)
    x[0, 0:2, 0:2, 0] = 7.0                       # a window of four equal values: the top-left one wins
    out, cache = maxpool_forward(x)
    assert out.shape == (1, 2, 2, 1)
    assert out[0, :, :, 0].tolist() == [[7.0, 8.0], [16.0, 18.0]]
    dx = maxpool_backward(np.ones_like(out), cache)[0, :, :, 0]
    assert dx[0, 0] == 1.0 and dx[0, 1] == dx[1, 0] == dx[1, 1] == 0.0   # ties: first in row-major order
    assert dx[1, 3] == 1.0 and dx[3, 1] == 1.0 and dx[3, 3] == 1.0
    assert dx[4].sum() == 0.0 and dx[:, 4].sum() == 0.0                   # dropped row and column
    assert dx.sum() == 4.0


def test_errors_name_the_problem():
    x = np.zeros((1, 4, 4, 2))
    with pytest.raises(ValueError, match="channels"):
        conv2d_forward(x, np.zeros((3, 3, 3, 1)), np.zeros(1))
    with pytest.raises(ValueError, match="does not fit"):
        conv2d_forward(x, np.zeros((5, 5, 2, 1)), np.zeros(1))
    with pytest.raises(ValueError, match="channels-last"):
        conv2d_forward(x[0], np.zeros((3, 3, 2, 1)), np.zeros(1))
    with pytest.raises(ValueError, match="b must have shape"):
        conv2d_forward(x, np.zeros((3, 3, 2, 4)), np.zeros(3))
    with pytest.raises(ValueError, match="stride"):
        conv2d_forward(x, np.zeros((3, 3, 2, 1)), np.zeros(1), stride=0)
    with pytest.raises(ValueError, match="does not fit"):
        maxpool_forward(np.zeros((1, 1, 4, 1)))


# ---- against PyTorch ----------------------------------------------------------------------------------
@pytest.mark.parametrize("xs,ws,stride,padding", CONV_CASES)
def test_conv2d_matches_torch(xs, ws, stride, padding):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    x, W, b = rng.standard_normal(xs), rng.standard_normal(ws), rng.standard_normal(ws[-1])
    out, cache = conv2d_forward(x, W, b, stride=stride, padding=padding)
    g = rng.standard_normal(out.shape)
    dx, dW, db = conv2d_backward(g, cache)

    tx = torch.tensor(x.transpose(0, 3, 1, 2), requires_grad=True)              # NCHW
    tW = torch.tensor(W.transpose(3, 2, 0, 1), requires_grad=True)              # (C_out, C_in, kh, kw)
    tb = torch.tensor(b, requires_grad=True)
    tout = torch.nn.functional.conv2d(tx, tW, tb, stride=stride, padding=padding)
    tout.backward(torch.tensor(g.transpose(0, 3, 1, 2)))
    np.testing.assert_allclose(out, tout.detach().numpy().transpose(0, 2, 3, 1), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dx, tx.grad.numpy().transpose(0, 2, 3, 1), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dW, tW.grad.numpy().transpose(2, 3, 1, 0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(db, tb.grad.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shape,size", [((2, 6, 6, 3), 2), ((2, 7, 5, 2), 2), ((1, 7, 8, 2), 3)])
def test_maxpool_matches_torch(shape, size):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    x = rng.standard_normal(shape)
    out, cache = maxpool_forward(x, size)
    g = rng.standard_normal(out.shape)
    tx = torch.tensor(x.transpose(0, 3, 1, 2), requires_grad=True)
    tout = torch.nn.functional.max_pool2d(tx, size)                             # floor mode, stride = size
    tout.backward(torch.tensor(g.transpose(0, 3, 1, 2)))
    np.testing.assert_array_equal(out, tout.detach().numpy().transpose(0, 2, 3, 1))
    np.testing.assert_array_equal(maxpool_backward(g, cache), tx.grad.numpy().transpose(0, 2, 3, 1))


# ---- the CNN baseline ---------------------------------------------------------------------------------
def tiny_cnn(**overrides):
    fields = dict(image_size=(8, 6), in_channels=2, num_classes=3, channels=(3, 4), dtype="float64")
    fields.update(overrides)
    return cnn.cnn_config(**fields)


def test_default_cnn_shapes_and_size():
    cfg = cnn.cnn_config()
    shapes = cnn.cnn_param_shapes(cfg)
    assert shapes == {"conv1.W": (3, 3, 1, 32), "conv1.b": (32,), "conv2.W": (3, 3, 32, 64), "conv2.b": (64,),
                      "head.W": (7 * 7 * 64, 10), "head.b": (10,)}
    assert cnn.count_cnn_params(cfg) == 3 * 3 * 32 + 32 + 3 * 3 * 32 * 64 + 64 + 3136 * 10 + 10 == 50186
    params = cnn.init_cnn_params(0)
    assert all(v.dtype == np.float32 for v in params.values())
    x = np.random.default_rng(0).standard_normal((4, 28, 28, 1)).astype(np.float32)
    logits, _ = cnn.cnn_forward(params, x, cfg)
    assert logits.shape == (4, 10) and logits.dtype == np.float32
    assert np.all(logits == 0.0)                                   # zero-initialised head
    w = params["conv2.W"]
    assert abs(w.std() - np.sqrt(2.0 / (9 * 32))) < 0.05 * np.sqrt(2.0 / (9 * 32))   # He normal


@pytest.mark.parametrize("overrides", [{}, {"kernel_size": 5, "pool": 3, "image_size": (9, 10), "channels": (2,)},
                                       {"dropout": 0.3}], ids=["3x3-pool2", "5x5-pool3", "dropout"])
def test_whole_cnn_gradient(overrides):
    """Every parameter of a tiny float64 CNN against centred differences, tolerance MODEL_TOL = 1e-6."""
    cfg = tiny_cnn(**overrides)
    rng = np.random.default_rng(0)
    params = {k: v + 0.5 * rng.standard_normal(v.shape) for k, v in cnn.init_cnn_params(1, cfg).items()}
    x = rng.standard_normal((2, *cfg.image_size, cfg.in_channels))
    train = cfg.dropout > 0
    logits, cache = cnn.cnn_forward(params, x, cfg, train=train, rng=7)
    g = rng.standard_normal(logits.shape)
    grads = cnn.cnn_backward(g, cache)
    assert list(grads) == list(params)

    def loss():
        return float(np.sum(cnn.cnn_forward(params, x, cfg, train=train, rng=7)[0] * g))

    errors = check_gradients(loss, params, grads)
    bad = {k: e for k, e in errors.items() if not e <= MODEL_TOL}
    assert not bad, f"relative errors above {MODEL_TOL:g}: {bad}"


def test_cnn_matches_torch():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    cfg = tiny_cnn()
    rng = np.random.default_rng(2)
    params = {k: v + 0.5 * rng.standard_normal(v.shape) for k, v in cnn.init_cnn_params(0, cfg).items()}
    x = rng.standard_normal((3, *cfg.image_size, cfg.in_channels))
    logits, _ = cnn.cnn_forward(params, x, cfg)
    t = torch.tensor(x.transpose(0, 3, 1, 2))
    for i in (1, 2):
        t = F.max_pool2d(F.relu(F.conv2d(t, torch.tensor(params[f"conv{i}.W"].transpose(3, 2, 0, 1)),
                                         torch.tensor(params[f"conv{i}.b"]), padding=1)), 2)
    t = t.permute(0, 2, 3, 1).reshape(3, -1)                       # flatten in (row, col, channel) order
    ref = t @ torch.tensor(params["head.W"]) + torch.tensor(params["head.b"])
    np.testing.assert_allclose(logits, ref.numpy(), rtol=1e-12, atol=1e-12)


def test_cnn_errors():
    cfg = tiny_cnn()
    params = cnn.init_cnn_params(0, cfg)
    with pytest.raises(ValueError, match=r"x must have shape \(B, 8, 6, 2\)"):
        cnn.cnn_forward(params, np.zeros((1, 6, 8, 2)), cfg)
    with pytest.raises(ValueError, match="missing conv2.b"):
        cnn.cnn_forward({k: v for k, v in params.items() if k != "conv2.b"}, np.zeros((1, 8, 6, 2)), cfg)
    with pytest.raises(ValueError, match="needs rng"):
        cnn.cnn_forward(cnn.init_cnn_params(0, tiny_cnn(dropout=0.5)), np.zeros((1, 8, 6, 2)),
                        tiny_cnn(dropout=0.5), train=True)
    with pytest.raises(TypeError, match="seed comes first"):
        cnn.init_cnn_params(cfg)
    with pytest.raises(ValueError, match="too small"):
        cnn.cnn_config(image_size=3)
    with pytest.raises(ValueError, match="odd"):
        cnn.cnn_config(kernel_size=4)
