"""Image files (PNG, JPEG) in, model input out: what ``python -m vitnp predict`` and ``visualize`` read.

load_image(path)                              -> float array in [0, 1], (H, W, C) as stored in the file
image_to_input(image, cfg, mean, std)         -> ((H, W, C) float32 model input, inverted: bool)

A bad path, a corrupt file or a decompression bomb raises FileNotFoundError or ValueError with a one-line
message.
"""
from __future__ import annotations

import os

import numpy as np

from .images import normalize, resize_images
from .resample import resize_area

__all__ = ["MAX_IMAGE_PIXELS", "load_image", "image_to_input"]


# ---- image files -----------------------------------------------------------------------------------
MAX_IMAGE_PIXELS = 25_000_000      # 5000×5000: far beyond any input a ViT here needs, far below a bomb


def load_image(path, max_pixels=MAX_IMAGE_PIXELS):
    """Read a PNG or JPEG (matplotlib; JPEG through Pillow) → float64 array in [0, 1], (H, W, C), C ∈ 1..4.

    The pixel count is read from the file's header (Pillow) before anything is decoded, and an image of more
    than ``max_pixels`` pixels is refused: a few hundred KB of PNG can otherwise decode to gigabytes.
    """
    import matplotlib.image as mpimg
    from PIL import Image
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such image file: {path}")
    if not os.path.isfile(path):
        raise ValueError(f"{path}: not a file")
    try:
        with Image.open(path) as header:                                   # reads the header only
            width, height = header.size
    except Exception as err:                      # Pillow's UnidentifiedImageError, truncated headers, …
        raise ValueError(f"{path}: cannot read it as an image ({type(err).__name__}: "
                         f"{' '.join(str(err).split())})") from None
    if width * height > max_pixels:
        raise ValueError(f"{path}: {width}×{height} = {width * height:,} pixels, more than the {max_pixels:,} "
                         f"allowed (a decompression bomb, or an image far larger than the model needs)")
    try:
        img = mpimg.imread(path)
    except Exception as err:                      # Pillow's UnidentifiedImageError, libpng errors, …
        raise ValueError(f"{path}: cannot read it as an image ({type(err).__name__}: "
                         f"{' '.join(str(err).split())})") from None
    a = np.asarray(img)
    if np.issubdtype(a.dtype, np.integer):
        a = a / float(np.iinfo(a.dtype).max)      # uint8 JPEG → [0, 1]; 16-bit PNG too
    a = a.astype(np.float64)
    if a.ndim == 2:
        a = a[..., None]                          # (H, W) → (H, W, 1)
    if a.ndim != 3 or a.shape[2] not in (1, 2, 3, 4) or min(a.shape[:2]) < 1:
        raise ValueError(f"{path}: unsupported image shape {a.shape}")
    return a


def image_to_input(image, cfg, mean, std, invert="auto", *, source_size=None):
    """Turn an image in [0, 1] into one model input the way the training images look.

    1. transparency is composited over white; colour → grey by luminance (0.299 R + 0.587 G + 0.114 B)
       when the model has 1 channel, grey → 3 equal channels when it has 3;
    2. Fashion-MNIST shows light clothes on a black background: with ``invert='auto'`` an image whose
       border is mostly light (mean > 0.5) is inverted (1 − x); 'yes' / 'no' force the choice;
    3. padded with its border colour to the model's aspect ratio (keeping the object's shape), then
       resized to (H, W) by area averaging;
    4. quantised to 0..255 and normalised x̂ = (x/255 − mean)/std, as the training images were.

    ``source_size`` (h, w): for a model trained on images upsampled from h×w (e.g. Fashion-MNIST's 28×28
    at ``--image-size 56``), step 3 resizes to (h, w) and the 0..255 image is then resized to (H, W) with
    :func:`vitnp.data.resize_images`, exactly as the training images were.

    ``cfg`` is a ViTConfig or CNNConfig.  Returns ((H, W, C) array of ``cfg.dtype``, inverted: bool).
    """
    a = np.asarray(image, dtype=np.float64)
    if a.ndim == 2:
        a = a[..., None]
    if a.shape[2] in (2, 4):                                       # grey+alpha or RGBA
        alpha = a[..., -1:]
        a = a[..., :-1] * alpha + (1.0 - alpha)                    # over white
    C = cfg.in_channels
    if a.shape[2] == 3 and C == 1:
        a = a @ np.array([0.299, 0.587, 0.114])[:, None]            # (H, W, 3) → (H, W, 1)
    elif a.shape[2] == 1 and C == 3:
        a = np.repeat(a, 3, axis=2)
    elif a.shape[2] != C:
        raise ValueError(f"cannot turn a {a.shape[2]}-channel image into the model's {C} channels")
    border = np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]])      # (2W + 2H, C)
    if invert not in ("auto", "yes", "no"):
        raise ValueError(f"invert must be 'auto', 'yes' or 'no', got {invert!r}")
    inverted = invert == "yes" or (invert == "auto" and border.mean() > 0.5)
    if inverted:
        a, border = 1.0 - a, 1.0 - border
    H, W = cfg.image_size                                         # (H, W) for either config
    h, w = a.shape[:2]
    if h * W != w * H:                                             # pad the short side to H:W
        th, tw = max(h, -(-w * H // W)), max(w, -(-h * W // H))
        fill = np.median(border, axis=0)                           # (C,) the background colour
        padded = np.empty((th, tw, a.shape[2]))
        padded[...] = fill
        top, left = (th - h) // 2, (tw - w) // 2
        padded[top:top + h, left:left + w] = a
        a = padded
    first = (H, W) if source_size is None else tuple(source_size)
    a = resize_area(a, first)                                      # (H, W, C), or the source's (h, w, C)
    pixels = np.clip(np.rint(a * 255.0), 0, 255).astype(np.uint8)
    if pixels.shape[:2] != (H, W):
        pixels = resize_images(pixels[None], (H, W))[0]           # (h, w, C) -> (H, W, C), as in training
    x = normalize(pixels[None], cfg.np_dtype, mean=mean, std=std)[0]
    return x, inverted
