"""Fashion-MNIST for vitnp: IDX files in, seeded NumPy batches out.

The data are 28×28 grey images of clothes in 10 classes, 60 000 for training and 10 000 for test, stored in
the IDX format of MNIST. This module reads and checks those files, and turns them into normalised,
optionally augmented (B, H, W, C) batches whose order depends only on an ``np.random.Generator``.

Where the files come from (first one given wins, with no fall-back to the next):

1. the ``root`` argument of :func:`load_fashion_mnist`;
2. the environment variable ``$VITNP_DATA``;
3. ``/usr/share/datasets/fashion-mnist``, where Debian's ``dataset-fashion-mnist`` package puts them
   (``apt-get install dataset-fashion-mnist``), or :func:`download_fashion_mnist` into a directory.

IDX format (all integers big-endian)::

    bytes 0-3   magic = 0x00 0x00 0x08 ndim    0x08 = unsigned bytes; 2049 for labels, 2051 for images
    then ndim × uint32                          sizes: (count,) or (count, rows, cols)
    then prod(sizes) bytes                      the data, C order

Checksums. Zalando publishes the MD5 of each ``.gz`` file, but a gzip file's bytes depend on the
compressor and its time stamp: Debian's package ships the same data recompressed (gzip header time
2020-06-05), so its ``.gz`` files do not match those MD5s. We therefore check the MD5 of the
*decompressed* IDX bytes (:data:`RAW_MD5`), which is the same for the official ``.gz`` files, Debian's
files and anybody's ``gunzip``-ed copies. :data:`GZ_MD5` is used only to check a fresh download.
"""
from __future__ import annotations

import gzip
import hashlib
import math
import os
import urllib.request
import zlib

import numpy as np

from .atomic import atomic_write
from .checkpoint import _interp_matrix

# ---------------------------------------------------------------------------------------------------------
# Constants
# ---------------------------------------------------------------------------------------------------------

FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)

# Mean and (population, ddof=0) standard deviation of all 60 000·28·28 training pixels scaled to [0, 1],
# computed in float64 from Debian's train-images-idx3-ubyte.gz (content MD5 as in RAW_MD5 below):
#     x = load_fashion_mnist(split="train")[0] / 255.0;  x.mean(), x.std()
# tests/test_data.py recomputes them whenever the real data are installed.
MEAN = 0.2860405969887955
STD = 0.35302424451492254

DEFAULT_ROOT = "/usr/share/datasets/fashion-mnist"
ENV_VAR = "VITNP_DATA"

_FILES = {  # split -> (images file, labels file), without ".gz"
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

# MD5 of the decompressed IDX bytes. Checked: Debian's four files decompress to exactly these, and the
# same values are published alongside the .gz MD5s below by other Fashion-MNIST loaders.
RAW_MD5 = {
    "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
    "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
    "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
    "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
}

# MD5 of the official .gz files, as published in Zalando's README (the files at URL below).
GZ_MD5 = {
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}
URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"

_IDX_UBYTE = 0x08  # the IDX type code of unsigned bytes, the only one Fashion-MNIST uses

# ---------------------------------------------------------------------------------------------------------
# IDX files
# ---------------------------------------------------------------------------------------------------------


def _md5(data):
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def _read_bytes(path):
    """The file's bytes, gunzipped if the name ends with .gz; a broken gzip stream is a ValueError."""
    path = os.fspath(path)
    with open(path, "rb") as f:
        data = f.read()
    if path.endswith(".gz"):
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as e:  # BadGzipFile is an OSError; EOFError = truncated
            raise ValueError(f"{path}: corrupt gzip stream ({type(e).__name__}: {e})") from None
    return data


def _parse_idx(data, path):
    """Header and length checks of an IDX buffer -> uint8 array (writable copy)."""
    if len(data) < 4:
        raise ValueError(f"{path}: IDX header too short ({len(data)} bytes, need at least 4)")
    if data[:2] == b"\x1f\x8b":
        raise ValueError(f"{path}: bad IDX magic: the file is gzip-compressed but its name lacks .gz")
    magic = int.from_bytes(data[:4], "big")
    ndim = data[3]
    if data[:2] != b"\x00\x00" or data[2] != _IDX_UBYTE or ndim == 0:
        raise ValueError(f"{path}: bad IDX magic {magic} (0x{magic:08x}); expected 0x0000080N with N >= 1 "
                         f"dimensions of unsigned bytes, e.g. 2049 for labels, 2051 for images")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{path}: IDX header too short ({len(data)} bytes, magic {magic} needs {header})")
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected = math.prod(shape)  # Python ints: no overflow whatever the header says
    got = len(data) - header
    if got != expected:
        problem = "truncated" if got < expected else "extra bytes after the data"
        raise ValueError(f"{path}: IDX data length {got} != {expected} bytes for shape {shape} ({problem})")
    return np.frombuffer(data, np.uint8, offset=header).reshape(shape).copy()


def read_idx(path):
    """Read an IDX file of unsigned bytes, gzipped if ``path`` ends with ``.gz``.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    array : ndarray, uint8, shape as in the header: (N,) for labels (magic 2049), (N, rows, cols) for
        images (magic 2051).

    Raises
    ------
    ValueError
        Naming ``path`` and the problem: corrupt gzip, bad magic, header too short, data length not
        equal to the header's shape.
    """
    return _parse_idx(_read_bytes(path), os.fspath(path))


def write_idx(path, array):
    """Write ``array`` as an IDX file of unsigned bytes, gzipped if ``path`` ends with ``.gz``, atomically.

    The bytes go to a temporary file in the same directory, which is flushed, fsync-ed and then renamed
    over ``path`` (``os.replace``), so readers see the old file or the whole new one, never half of it.

    Parameters
    ----------
    path : str or os.PathLike
    array : ndarray of integers in 0..255, any shape with 1 to 255 axes (e.g. (N,) labels or (N, 28, 28)
        images; int64 labels are fine).

    Raises
    ------
    ValueError
        If ``array`` is not integer, has no axes, or holds values outside 0..255.
    """
    path = os.fspath(path)
    a = np.asarray(array)
    if not (np.issubdtype(a.dtype, np.integer) or a.dtype == np.bool_):
        raise ValueError(f"write_idx({path}): IDX holds unsigned bytes, got dtype {a.dtype}")
    if not 1 <= a.ndim <= 255:
        raise ValueError(f"write_idx({path}): need 1 to 255 axes, got shape {a.shape}")
    if a.size and (a.min() < 0 or a.max() > 255):
        raise ValueError(f"write_idx({path}): values must be in 0..255, got {a.min()}..{a.max()}")
    header = bytes([0, 0, _IDX_UBYTE, a.ndim]) + b"".join(n.to_bytes(4, "big") for n in a.shape)
    payload = header + np.ascontiguousarray(a, dtype=np.uint8).tobytes()

    with atomic_write(path, "wb") as f:
        if path.endswith(".gz"):
            with gzip.GzipFile(fileobj=f, mode="wb", mtime=0) as gz:   # mtime=0: same bytes every run
                gz.write(payload)
        else:
            f.write(payload)


# ---------------------------------------------------------------------------------------------------------
# Fashion-MNIST
# ---------------------------------------------------------------------------------------------------------


def _data_dir(root):
    """(directory, how it was chosen) — root, else $VITNP_DATA, else the Debian location."""
    if root is not None:
        return os.fspath(root), "the root argument"
    env = os.environ.get(ENV_VAR)
    if env:
        return env, f"${ENV_VAR}"
    return DEFAULT_ROOT, "the default (Debian's dataset-fashion-mnist)"


def _not_found(directory, source, name):
    path = os.path.join(directory, name)
    return FileNotFoundError(
        f"Fashion-MNIST file {name}[.gz] not found in {directory} (from {source}).\n"
        f"Looked for {path} and {path}.gz. To get the data, either\n"
        f"  - on Debian/Ubuntu: apt-get install dataset-fashion-mnist  (files go to {DEFAULT_ROOT}), or\n"
        f"  - download_fashion_mnist(DIR) from vitnp.data (fetches the official files from {URL}),\n"
        f"    then pass root=DIR to load_fashion_mnist or set {ENV_VAR}=DIR.")


def _find(directory, source, name):
    """Path of ``name`` or ``name.gz`` in ``directory`` (the uncompressed file if both exist)."""
    for candidate in (name, name + ".gz"):
        path = os.path.join(directory, candidate)
        if os.path.isfile(path):
            return path
    raise _not_found(directory, source, name)


def _read_checked(path, name, verify):
    data = _read_bytes(path)
    if verify and name in RAW_MD5:
        md5 = _md5(data)
        if md5 != RAW_MD5[name]:
            raise ValueError(f"{path}: checksum mismatch: MD5 of the decompressed data is {md5}, expected "
                             f"{RAW_MD5[name]} for the official {name}; the file is corrupt or not the "
                             f"official one (pass verify=False to load it anyway)")
    return _parse_idx(data, path)


def load_fashion_mnist(root=None, split="train", *, verify=True):
    """Load one split of Fashion-MNIST from IDX files.

    Looks in ``root``, else ``$VITNP_DATA``, else ``/usr/share/datasets/fashion-mnist`` (only the first
    one given), for ``{train,t10k}-{images-idx3,labels-idx1}-ubyte`` with or without ``.gz``.

    Parameters
    ----------
    root : str or os.PathLike, optional
    split : 'train' | 'test'
        60 000 or 10 000 examples.
    verify : bool
        Check the MD5 of the decompressed bytes against :data:`RAW_MD5` (the official data). Pass False for
        other files that use the official names, e.g. synthetic test files; the structural checks below
        are done either way.

    Returns
    -------
    images : ndarray, uint8, (N, 28, 28, 1)   channels-last
    labels : ndarray, int64, (N,)             class indices 0..9, see FASHION_MNIST_CLASSES

    Raises
    ------
    ValueError
        Bad ``split``; any problem in a file (message names the file): corrupt gzip, bad magic, short
        header, wrong data length, wrong checksum, images not 28×28, labels outside 0..9, images and labels
        counts differ.
    FileNotFoundError
        A file is missing; the message says where we looked and how to get the data.
    """
    if split not in _FILES:
        raise ValueError(f"split must be one of {tuple(_FILES)}, got {split!r}")
    directory, source = _data_dir(root)
    image_name, label_name = _FILES[split]
    image_path = _find(directory, source, image_name)
    label_path = _find(directory, source, label_name)

    images = _read_checked(image_path, image_name, verify)  # (N, 28, 28)
    labels = _read_checked(label_path, label_name, verify)  # (N,)
    if images.ndim != 3:
        raise ValueError(f"{image_path}: expected an image file (magic 2051, 3 axes), "
                         f"got shape {images.shape}")
    if images.shape[1:] != (28, 28):
        raise ValueError(f"{image_path}: Fashion-MNIST images are 28x28, got "
                         f"{images.shape[1]}x{images.shape[2]}")
    if labels.ndim != 1:
        raise ValueError(f"{label_path}: expected a label file (magic 2049, 1 axis), "
                         f"got shape {labels.shape}")
    if len(images) != len(labels):
        raise ValueError(f"count mismatch: {image_path} has {len(images)} images but {label_path} has "
                         f"{len(labels)} labels")
    if labels.size and labels.max() >= len(FASHION_MNIST_CLASSES):
        bad = int(labels[labels >= len(FASHION_MNIST_CLASSES)][0])
        raise ValueError(f"{label_path}: labels must be in 0..9, found {bad}")
    return images[..., None], labels.astype(np.int64)  # (N, 28, 28, 1), (N,)


def download_fashion_mnist(root, *, timeout=60.0):
    """Download the four official ``.gz`` files from Zalando's server into ``root`` (explicit opt-in).

    Each file is streamed into a temporary file in ``root``, its MD5 compared with :data:`GZ_MD5`, and only
    then renamed into place; files already present with the right MD5 are kept. Never called implicitly.

    Parameters
    ----------
    root : str or os.PathLike   created if missing.
    timeout : float             seconds, per connection.

    Returns
    -------
    root : str

    Raises
    ------
    ValueError
        A download's MD5 does not match (nothing is left behind).
    """
    root = os.fspath(root)
    os.makedirs(root, exist_ok=True)
    for name, want in GZ_MD5.items():
        path = os.path.join(root, name)
        if os.path.isfile(path):
            with open(path, "rb") as f:
                if _md5(f.read()) == want:
                    continue
        md5 = hashlib.md5(usedforsecurity=False)
        with atomic_write(path, "wb") as f, urllib.request.urlopen(URL + name, timeout=timeout) as r:
            while chunk := r.read(1 << 20):
                md5.update(chunk)
                f.write(chunk)
            if md5.hexdigest() != want:                  # raised inside: the partial download is removed
                raise ValueError(f"{URL + name}: checksum mismatch: MD5 {md5.hexdigest()}, expected {want}")
    return root


# ---------------------------------------------------------------------------------------------------------
# Class subsets and image size
# ---------------------------------------------------------------------------------------------------------


def select_classes(images, labels, classes):
    """Keep only the examples of ``classes`` and relabel them 0 … k−1 in the order given.

    ``select_classes(x, y, (7, 2))`` keeps the Sneakers (new label 0) and the Pullovers (new label 1).
    The examples keep their original order.

    Parameters
    ----------
    images : ndarray, (N, ...)
    labels : ndarray, integer, (N,)
    classes : sequence of k distinct integers >= 0 (k >= 1), original class indices

    Returns
    -------
    images : (n, ...) same dtype, the n examples whose label is in ``classes`` (a new array)
    labels : (n,) int64, ``classes.index(original label)``

    Raises
    ------
    TypeError
        ``classes`` not a sequence of integers (an int, a float such as 1.7, a bool); non-integer labels.
    ValueError
        ``classes`` empty, repeated or negative; labels not (N,) or negative; a class with no example in
        ``labels``.
    """
    if isinstance(classes, (str, bytes)) or not hasattr(classes, "__len__") or not hasattr(classes, "__iter__"):
        raise TypeError(f"classes must be a sequence of class indices such as (7, 2), got {classes!r}")
    bad = [c for c in classes if isinstance(c, (bool, np.bool_)) or not isinstance(c, (int, np.integer))]
    if bad:
        raise TypeError(f"classes must be integers, got {bad[0]!r} in {list(classes)!r}")
    classes = [int(c) for c in classes]
    labels = np.asarray(labels)
    if not classes:
        raise ValueError("classes is empty; give at least one class index")
    if len(set(classes)) != len(classes) or min(classes) < 0:
        raise ValueError(f"classes must be distinct integers >= 0, got {classes}")
    if labels.ndim != 1:
        raise ValueError(f"labels must be a 1-D array (N,), got shape {labels.shape}")
    if len(labels) and not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(f"labels must be integers, got dtype {labels.dtype}")
    if len(labels) and labels.min() < 0:
        raise ValueError(f"labels must be >= 0, got {labels.min()}")
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    present = set(np.unique(labels).tolist())
    absent = [c for c in classes if c not in present]
    if absent:
        raise ValueError(f"class(es) {absent} have no examples (the labels present are "
                         f"{sorted(present) if len(present) <= 20 else f'{min(present)}..{max(present)}'})")
    lookup = np.full(max(max(classes), int(labels.max())) + 1, -1, np.int64)   # original label -> new
    lookup[classes] = np.arange(len(classes))
    new = lookup[labels]                                                       # (N,), -1 = dropped
    keep = new >= 0
    return images[keep], new[keep]


def _check_shrink(source_hw, target_hw, what="resize_images"):
    """Raise ValueError when resizing (H, W) to (h, w) shrinks an axis by more than 2× (h < H/2 or w < W/2):
    bilinear interpolation then skips input pixels and aliases."""
    (H, W), (h, w) = (int(n) for n in source_hw), (int(n) for n in target_hw)
    if 2 * h < H or 2 * w < W:
        raise ValueError(f"{what}: shrinking {H}x{W} to {h}x{w} (by more than 2x) would alias with bilinear "
                         f"interpolation; use at least {-(-H // 2)}x{-(-W // 2)}, or shrink by area averaging "
                         f"(vitnp.evaluate.resize_area)")


def resize_images(images, size, *, chunk=2048):
    """Resize uint8 images bilinearly: (N, H, W, C) -> (N, h, w, C), for fine-tuning at a higher resolution.

    Separable linear interpolation with pixel centres aligned (PIL's, OpenCV's and torch's
    ``align_corners=False`` convention): output pixel (i, j) samples the input at

    .. math::
        y = (i + \\tfrac12)\\,H/h - \\tfrac12, \\qquad x = (j + \\tfrac12)\\,W/w - \\tfrac12

    clamped to the image, and mixes the 2×2 neighbours, i.e. ``out = R_y · image · R_xᵀ`` per channel with
    the (h, H) and (w, W) matrices of :func:`vitnp.checkpoint._interp_matrix` (``align_corners=False``,
    the same matrices as :func:`vitnp.checkpoint.resize_grid`'s). Computed in float64 and rounded half up to
    uint8. Upsampling by 2 gives each output pixel weights 9/16, 3/16, 3/16, 1/16 of its four nearest
    inputs (exact in float64, so the result is exactly reproducible); a constant image stays constant.

    Bilinear rather than nearest: nearest-neighbour upsampling only duplicates pixels into blocks with
    hard edges, which no real higher-resolution image has; bilinear images are smooth, closer to the
    larger photographs the paper fine-tunes on (§3.2).
    Meant for upsampling; shrinking by more than 2× (h < H/2 or w < W/2) is refused with a ValueError,
    because it would alias: use area averaging (:func:`vitnp.evaluate.resize_area`) for that.

    Parameters
    ----------
    images : ndarray, uint8, (N, H, W, C)
    size : int or (h, w)          the new height and width
    chunk : int                   images per float64 work array (bounds the memory, not the result)

    Returns
    -------
    ndarray, uint8, (N, h, w, C); a copy even when the size is unchanged.
    """
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4:
        raise ValueError(f"resize_images expects uint8 images (N, H, W, C), got {images.dtype} {images.shape}")
    hw = (size, size) if np.isscalar(size) else tuple(size)
    if len(hw) != 2 or not all(isinstance(n, (int, np.integer)) and not isinstance(n, bool) and n >= 1
                               for n in hw):
        raise ValueError(f"size must be a positive int or (h, w), got {size!r}")
    h, w = int(hw[0]), int(hw[1])
    N, H, W, C = images.shape
    if (h, w) == (H, W):
        return images.copy()
    _check_shrink((H, W), (h, w))
    r_y, r_x = _interp_matrix(H, h, False), _interp_matrix(W, w, False)  # (h, H), (w, W)
    out = np.empty((N, h, w, C), np.uint8)
    for start in range(0, N, chunk):
        x = images[start:start + chunk].transpose(0, 3, 1, 2).astype(np.float64)   # (n, C, H, W)
        y = r_y @ x @ r_x.T                                                     # (n, C, h, w)
        out[start:start + chunk] = np.clip(np.floor(y + 0.5), 0, 255).transpose(0, 2, 3, 1)  # (n, h, w, C)
    return out


# ---------------------------------------------------------------------------------------------------------
# Batches
# ---------------------------------------------------------------------------------------------------------


def normalize(images, dtype=np.float32, *, mean=MEAN, std=STD):
    """x̂ = (x / 255 − mean) / std, computed in ``dtype`` (no float64 detour when float32 is asked).

    The one normalisation of vitnp: training batches, evaluation, predict and visualize all use it.

    Parameters
    ----------
    images : ndarray, uint8, any shape, e.g. (B, H, W, C)
    dtype : floating dtype, default float32
    mean, std : float             default Fashion-MNIST's :data:`MEAN`, :data:`STD` (a checkpoint stores its own)

    Returns
    -------
    x : ndarray, ``dtype``, same shape; with the defaults the training pixels have mean 0 and std 1.
    """
    images = np.asarray(images)
    dtype = np.dtype(dtype)
    if images.dtype != np.uint8:
        raise TypeError(f"normalize expects uint8 pixels 0..255, got {images.dtype} (already normalised?)")
    if dtype.kind != "f":
        raise TypeError(f"normalize needs a floating dtype, got {dtype}")
    x = images.astype(dtype)
    x /= dtype.type(255)          # in-place with a dtype scalar: stays in dtype
    x -= dtype.type(mean)
    x /= dtype.type(std)
    return x


def synthetic_gratings(n_train=3000, n_test=1000, seed=0):
    """A stand-in for Fashion-MNIST when its files are absent (the notebooks use it), same shapes and dtypes.

    Ten classes of noisy 28×28 stripe patterns: class k is a sine grating oriented at 18k degrees, shifted
    by up to ±4 pixels at random, plus Gaussian noise.

    Returns
    -------
    train_x uint8 (n_train, 28, 28, 1), train_y int64 (n_train,), test_x uint8 (n_test, 28, 28, 1), test_y int64
    """
    rng = np.random.default_rng(seed)
    r, c = np.mgrid[0:28, 0:28] / 28.0
    protos = [np.sin(2 * np.pi * 3 * (r * np.cos(np.pi * k / 10) + c * np.sin(np.pi * k / 10))) for k in range(10)]

    def make(n):
        y = rng.integers(0, 10, n)
        shifts = rng.integers(-4, 5, (n, 2))
        x = np.stack([np.roll(protos[k], tuple(s), axis=(0, 1)) for k, s in zip(y, shifts)])   # (n, 28, 28)
        x = 0.5 + 0.3 * x + 0.2 * rng.standard_normal(x.shape)
        return (np.clip(x, 0, 1) * 255).astype(np.uint8)[..., None], y.astype(np.int64)

    return (*make(n_train), *make(n_test))


def fashion_mnist_or_synthetic(root=None, *, verify=True):
    """Fashion-MNIST if its files are found (see :func:`load_fashion_mnist`), else :func:`synthetic_gratings`,
    saying which on stdout, so that a notebook runs anywhere and never hides that its data are not the real ones.

    Returns
    -------
    (train_x, train_y, test_x, test_y, class_names, synthetic) with synthetic a bool
    """
    try:
        train_x, train_y = load_fashion_mnist(root, split="train", verify=verify)
        test_x, test_y = load_fashion_mnist(root, split="test", verify=verify)
    except FileNotFoundError as err:
        print("Fashion-MNIST is NOT installed here:", str(err).splitlines()[0])
        print("=> using a SYNTHETIC data set of noisy gratings instead (10 orientations, 3,000 training images); "
              "install dataset-fashion-mnist or set VITNP_DATA for the real thing.")
        return (*synthetic_gratings(), [f"grating {18 * k}°" for k in range(10)], True)
    print(f"data: Fashion-MNIST, {len(train_x):,} training and {len(test_x):,} test images")
    return train_x, train_y, test_x, test_y, list(FASHION_MNIST_CLASSES), False


def train_val_split(images, labels, val_fraction, seed):
    """Random split into training and validation parts.

    Parameters
    ----------
    images : ndarray, (N, ...)
    labels : ndarray, (N,)
    val_fraction : float in [0, 1)   round(val_fraction·N) examples go to validation.
    seed : int or np.random.Generator

    Returns
    -------
    (train_images, train_labels), (val_images, val_labels) : new arrays, (N − n_val, ...) and (n_val, ...),
        dtypes unchanged; each part keeps the original order of its examples.
    """
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    n = len(images)
    n_val = int(round(val_fraction * n))
    perm = np.random.default_rng(seed).permutation(n)
    val, train = np.sort(perm[:n_val]), np.sort(perm[n_val:])
    return (images[train], labels[train]), (images[val], labels[val])


def random_crop(images, padding, rng):
    """Zero-pad each image by ``padding`` pixels on every side, then cut an H×W window at a random offset.

    One offset (dy, dx) ∈ {0..2·padding}² per image; all images are gathered at once with index arrays:
    out[b, i, j] = padded[b, dy_b + i, dx_b + j].

    Parameters
    ----------
    images : ndarray, (B, H, W, C), any dtype
    padding : int >= 0
    rng : np.random.Generator   advanced by one draw of 2·B integers.

    Returns
    -------
    out : ndarray, (B, H, W, C), same dtype (a new array).
    """
    if padding < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    B, H, W, _ = images.shape
    p = padding
    padded = np.pad(images, ((0, 0), (p, p), (p, p), (0, 0)))      # (B, H+2p, W+2p, C), zeros
    dy, dx = rng.integers(0, 2 * p + 1, size=(2, B))               # (B,), (B,)
    rows = dy[:, None] + np.arange(H)                                # (B, H)
    cols = dx[:, None] + np.arange(W)                                # (B, W)
    b = np.arange(B)[:, None, None]                                  # (B, 1, 1)
    return padded[b, rows[:, :, None], cols[:, None, :]]             # (B, H, W, C)


def random_hflip(images, rng, p=0.5):
    """Mirror each image left-right with probability ``p``.

    Parameters
    ----------
    images : ndarray, (B, H, W, C), any dtype
    rng : np.random.Generator   advanced by one draw of B uniforms.
    p : float in [0, 1]

    Returns
    -------
    out : ndarray, (B, H, W, C), same dtype (a new array).
    """
    flip = rng.random(len(images)) < p                               # (B,) bool
    out = images.copy()
    out[flip] = images[flip, :, ::-1]                                # W axis reversed
    return out


def crop_and_flip(images, rng, padding=2):
    """The usual light augmentation: :func:`random_crop` with ``padding``, then :func:`random_hflip`.

    Usable as ``iterate_batches(..., augment=crop_and_flip)``. (B, H, W, C) -> (B, H, W, C), same dtype.
    """
    return random_hflip(random_crop(images, padding, rng), rng)


def iterate_batches(images, labels, batch_size, *, shuffle=True, rng=None, drop_last=False, augment=None,
                    dtype=np.float32, start=0):
    """One epoch of (x, y) mini-batches: optional shuffle, optional augmentation, then :func:`normalize`.

    All randomness comes from ``rng`` and is drawn *when this function is called*: one permutation of N
    (if ``shuffle``) and one integer seed per batch (if ``augment``); batch i is augmented with its own
    ``np.random.default_rng(seed_i)``. So the same ``rng.bit_generator.state`` before the call gives the same
    batches, and ``rng`` ends in the same state however many batches are consumed. To resume bit-exactly in
    mid-epoch, save ``rng.bit_generator.state`` before the call and the number k of batches done; later
    restore the state and call again with ``start=k``.

    Parameters
    ----------
    images : ndarray, uint8, (N, H, W, C)
    labels : ndarray, integer, (N,)
    batch_size : int >= 1
    shuffle : bool
    rng : np.random.Generator   required if ``shuffle`` or ``augment``.
    drop_last : bool            drop a last batch smaller than ``batch_size``.
    augment : callable (uint8 (B, H, W, C), Generator) -> uint8 (B, H, W, C), optional
        Applied to the raw pixels before normalising, so zero padding is black, e.g. :func:`crop_and_flip`.
    dtype : floating dtype of x, default float32.
    start : int                 index of the first batch to yield (earlier ones are skipped, not computed).

    Yields
    ------
    x : ndarray, ``dtype``, (B, H, W, C)   normalised.
    y : ndarray, int64, (B,)
    """
    if images.ndim != 4:
        raise ValueError(f"images must be (N, H, W, C), got shape {images.shape}")
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if (shuffle or augment is not None) and rng is None:
        raise ValueError("pass rng=np.random.default_rng(seed) when shuffle=True or augment is set "
                         "(the rng's state fixes the batches, which bit-exact resume needs)")
    n = len(images)
    n_batches = n // batch_size if drop_last else -(-n // batch_size)
    order = rng.permutation(n) if shuffle else np.arange(n)
    seeds = rng.integers(0, 2**63, size=n_batches) if augment is not None else None
    # rng.spawn() would be tidier, but its child counter is not part of bit_generator.state.

    def batches():
        for i in range(start, n_batches):
            idx = order[i * batch_size:(i + 1) * batch_size]        # (B,)
            x = images[idx]                                        # (B, H, W, C) uint8
            if augment is not None:
                x = augment(x, np.random.default_rng(seeds[i]))
            yield normalize(x, dtype), labels[idx].astype(np.int64)

    return batches()
