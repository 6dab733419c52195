"""The convolutional layers of the CNN baseline and of the hybrid ViT (paper §3.1 "Hybrid Architecture").

Images are channels-last (NHWC), as everywhere in vitnp.  A 2-D convolution (strictly a
cross-correlation, as in every deep-learning library) with kernel W ∈ R^{kh×kw×C_in×C_out} is

.. math::  \\text{out}[b, y, x, o] = b_o + \\sum_{i<kh} \\sum_{j<kw} \\sum_{c} \\,
           x_{pad}[b, sy + i, sx + j, c] \\; W[i, j, c, o]

with stride s.  We compute it by **im2col**: gather, for every output pixel, the kh·kw·C_in input numbers
it sees into one row, ordered (i, j, c) like ``W.reshape(kh·kw·C_in, C_out)``; the convolution is then a
single matmul, like every dense layer of the ViT.  The gather loops over the kh·kw kernel offsets only
(one strided slice of the whole batch per offset), never over images or pixels.  Its backward (col2im)
adds each slice back where it came from; overlapping windows add up, which is the chain rule for an
input pixel read by several outputs.

The ViT's patch embedding is the special case kh = kw = stride = P with no padding (see ops.patches).
"""
import numpy as np


def _pair(value, name):
    """An int or a pair of non-negative ints -> (v_h, v_w)."""
    pair = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(pair) != 2 or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in pair):
        raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
    return int(pair[0]), int(pair[1])


def conv_output_size(size, kernel, stride, padding):
    """Output length along one axis: ⌊(size + 2·padding − kernel) / stride⌋ + 1."""
    return (size + 2 * padding - kernel) // stride + 1


def im2col(x_pad, kh, kw, sh, sw, Ho, Wo):
    """Windows of a padded image as rows: (B, Hp, Wp, C) -> (B, Ho, Wo, kh, kw, C).

    Entry [b, y, x, i, j, c] is x_pad[b, y·sh + i, x·sw + j, c], the input that kernel offset (i, j)
    sees at output pixel (y, x).
    """
    B, _, _, C = x_pad.shape
    cols = np.empty((B, Ho, Wo, kh, kw, C), dtype=x_pad.dtype)
    for i in range(kh):                               # one strided slice of the whole batch per offset
        for j in range(kw):
            cols[:, :, :, i, j, :] = x_pad[:, i:i + sh * Ho:sh, j:j + sw * Wo:sw, :]
    return cols


def col2im(dcols, padded_shape, sh, sw):
    """Adjoint of :func:`im2col`: (B, Ho, Wo, kh, kw, C) -> (B, Hp, Wp, C), overlapping windows summed."""
    B, Ho, Wo, kh, kw, C = dcols.shape
    dx_pad = np.zeros(padded_shape, dtype=dcols.dtype)
    for i in range(kh):
        for j in range(kw):
            dx_pad[:, i:i + sh * Ho:sh, j:j + sw * Wo:sw, :] += dcols[:, :, :, i, j, :]
    return dx_pad


def conv2d_forward(x, W, b, stride=1, padding=0):
    """2-D convolution by im2col, NHWC:  out = im2col(pad(x)) · W.reshape(kh·kw·C_in, C_out) + b.

    x: (B, H, W, C_in)   W: (kh, kw, C_in, C_out)   b: (C_out,)   ->   out: (B, Ho, Wo, C_out), cache
    with Ho = ⌊(H + 2p_h − kh) / s_h⌋ + 1, likewise Wo.

    W : the kernel, height-width-in-out (the layout of flax and of E in the original checkpoints).
    stride : int or (s_h, s_w), ≥ 1.
    padding : int or (p_h, p_w), ≥ 0 zeros added on both sides of each spatial axis.

    cache = (cols, W, padded shape, stride, padding): the windows as rows, the kernel and the geometry, what
    conv2d_backward reads.
    """
    x, W, b = np.asarray(x), np.asarray(W), np.asarray(b)
    if x.ndim != 4:
        raise ValueError(f"conv2d: x must have shape (B, H, W, C_in) (channels-last), got {x.shape}")
    if W.ndim != 4:
        raise ValueError(f"conv2d: W must have shape (kh, kw, C_in, C_out), got {W.shape}")
    kh, kw, C_in, C_out = W.shape
    if x.shape[3] != C_in:
        raise ValueError(f"conv2d: x has {x.shape[3]} channels, W expects C_in={C_in} (W shape {W.shape})")
    if b.shape != (C_out,):
        raise ValueError(f"conv2d: b must have shape ({C_out},), got {b.shape}")
    sh, sw = _pair(stride, "stride")
    ph, pw = _pair(padding, "padding")
    if sh < 1 or sw < 1 or ph < 0 or pw < 0:
        raise ValueError(f"conv2d: stride must be ≥ 1 and padding ≥ 0, got stride={stride}, padding={padding}")
    B, H, Wd, _ = x.shape
    Ho, Wo = conv_output_size(H, kh, sh, ph), conv_output_size(Wd, kw, sw, pw)
    if Ho < 1 or Wo < 1:
        raise ValueError(f"conv2d: a {kh}x{kw} kernel does not fit a {H}x{Wd} input with padding "
                         f"({ph}, {pw})")
    x_pad = np.pad(x, ((0, 0), (ph, ph), (pw, pw), (0, 0)))               # (B, H+2p_h, W+2p_w, C_in)
    cols = im2col(x_pad, kh, kw, sh, sw, Ho, Wo)                          # (B, Ho, Wo, kh, kw, C_in)
    out = cols.reshape(B * Ho * Wo, kh * kw * C_in) @ W.reshape(-1, C_out)   # (B·Ho·Wo, C_out)
    out += b
    return out.reshape(B, Ho, Wo, C_out), (cols, W, x_pad.shape, (sh, sw), (ph, pw))


def conv2d_backward(dout, cache):
    """Gradients of conv2d_forward: returns dx (B, H, W, C_in), dW (kh, kw, C_in, C_out), db (C_out,)."""
    cols, W, padded_shape, (sh, sw), (ph, pw) = cache
    kh, kw, C_in, C_out = W.shape
    d2 = dout.reshape(-1, C_out)                                          # (B·Ho·Wo, C_out)
    cols2 = cols.reshape(d2.shape[0], -1)                                 # (B·Ho·Wo, kh·kw·C_in)
    dW = (cols2.T @ d2).reshape(W.shape)          # out = cols · W: ∂/∂W, summed over output pixels
    db = d2.sum(0)
    dcols = (d2 @ W.reshape(-1, C_out).T).reshape(cols.shape)             # ∂/∂cols
    dx_pad = col2im(dcols, padded_shape, sh, sw)                          # (B, Hp, Wp, C_in)
    Hp, Wp = padded_shape[1:3]
    return dx_pad[:, ph:Hp - ph, pw:Wp - pw, :], dW, db                   # drop the padding's gradient


def relu_forward(x):
    """ReLU(x) = max(x, 0), elementwise.

    x: any shape   ->   out: same shape, cache

    cache = x > 0, where the input was positive: what relu_backward reads.
    """
    positive = x > 0
    return np.where(positive, x, 0).astype(x.dtype, copy=False), positive


def relu_backward(dout, cache):
    """Gradients of ReLU: returns dx = dout where x > 0, else 0 (at x = 0 exactly the derivative is taken
    as 0, as PyTorch does).
    """
    positive = cache
    return np.where(positive, dout, 0).astype(dout.dtype, copy=False)


def maxpool_forward(x, size=2):
    """Max-pooling over non-overlapping size×size windows (stride = size), NHWC.

    x: (B, H, W, C), H, W ≥ size   ->   out: (B, ⌊H/size⌋, ⌊W/size⌋, C), cache

    size : the window side and the stride (2 gives the classic 2×2, stride-2 pooling).

    out[b, y, x, c] = max over the window rows y·size … y·size+size−1, columns likewise.  Like PyTorch's
    default (floor mode), rows or columns left over when H or W is not a multiple of ``size`` are
    dropped (a 7×7 map becomes 3×3) and receive zero gradient.

    cache = (arg, x.shape, size): where each window's maximum was, the input's shape and the window side,
    what maxpool_backward reads.
    """
    if x.ndim != 4:
        raise ValueError(f"maxpool: x must have shape (B, H, W, C) (channels-last), got {x.shape}")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"maxpool: size must be a positive int, got {size!r}")
    B, H, W, C = x.shape
    Ho, Wo = H // size, W // size
    if Ho < 1 or Wo < 1:
        raise ValueError(f"maxpool: a {size}x{size} window does not fit a {H}x{W} input")
    win = x[:, :Ho * size, :Wo * size, :].reshape(B, Ho, size, Wo, size, C)
    win = win.transpose(0, 1, 3, 5, 2, 4).reshape(B, Ho, Wo, C, size * size)   # window last, row-major
    arg = win.argmax(-1)                          # ties: the first maximum in row-major order wins
    out = np.take_along_axis(win, arg[..., None], -1)[..., 0]                   # (B, Ho, Wo, C)
    return out, (arg, x.shape, size)


def maxpool_backward(dout, cache):
    """Gradients of max-pooling: returns dx (B, H, W, C); each window's gradient goes to the one input that
    was its maximum (the first one on ties).
    """
    arg, shape, size = cache
    B, H, W, C = shape
    Ho, Wo = dout.shape[1:3]
    dwin = np.zeros((B, Ho, Wo, C, size * size), dtype=dout.dtype)
    np.put_along_axis(dwin, arg[..., None], dout[..., None], -1)
    dwin = dwin.reshape(B, Ho, Wo, C, size, size).transpose(0, 1, 4, 2, 5, 3)  # (B, Ho, s, Wo, s, C)
    dx = np.zeros(shape, dtype=dout.dtype)
    dx[:, :Ho * size, :Wo * size, :] = dwin.reshape(B, Ho * size, Wo * size, C)
    return dx


# ---- stages of conv → ReLU → max-pool, and their initialisation ---------------------------------------
def conv_stack_forward(x, layers, *, pool=2):
    """Stages conv ('same' padding, stride 1) → ReLU → max-pool, one per (W, b) in ``layers``: the CNN baseline
    (:mod:`vitnp.cnn`) and the hybrid ViT's stem (§3.1, :mod:`vitnp.model`).

    x: (B, H, W, C_0)   layers: list of (W_i (k, k, C_{i-1}, C_i), b_i (C_i,)), k odd
    ->   feature map: (B, h, w, C_last), each stage dividing H and W by ``pool`` (floor), cache

    pool : max-pool window and stride (1: no pooling).

    cache = [(c_conv, c_relu, c_pool) per stage]: what conv_stack_backward reads.
    """
    caches = []
    for W, b in layers:
        x, c_conv = conv2d_forward(x, W, b, stride=1, padding=W.shape[0] // 2)   # (B, H, W, C_i)
        x, c_relu = relu_forward(x)
        c_pool = None
        if pool > 1:
            x, c_pool = maxpool_forward(x, pool)                                   # (B, H/pool, W/pool, C_i)
        caches.append((c_conv, c_relu, c_pool))
    return x, caches


def conv_stack_backward(dout, cache):
    """Gradients of the conv stages: returns dx (B, H, W, C_0) and [(dW_i, db_i) for each stage], in the
    order of ``layers``.
    """
    grads = []
    for c_conv, c_relu, c_pool in reversed(cache):
        if c_pool is not None:
            dout = maxpool_backward(dout, c_pool)
        dout = relu_backward(dout, c_relu)
        dout, dW, db = conv2d_backward(dout, c_conv)
        grads.append((dW, db))
    return dout, grads[::-1]


def he_normal(rng, shape):
    """He normal initialisation of a conv kernel (k, k, C_in, C_out): Normal(0, 2/fan_in), fan_in = k²·C_in,
    the right scale before a ReLU (He et al. 2015).  The CNN baseline (:mod:`vitnp.cnn`) and the hybrid ViT's stem
    (:mod:`vitnp.model`) both use it."""
    fan_in = shape[0] * shape[1] * shape[2]                                  # k²·C_in
    return rng.normal(0.0, np.sqrt(2.0 / fan_in), shape)
