"""Fashion-MNIST: where its files are, their checksums, loading and downloading them, and a stand-in.

The data are 28×28 grey images of clothes in 10 classes, 60 000 for training and 10 000 for test, stored in
the IDX format of MNIST (:mod:`vitnp.data.idx`).

Where the files come from (first one given wins, with no fall-back to the next):

1. the ``root`` argument of :func:`load_fashion_mnist`;
2. the environment variable ``$VITNP_DATA``;
3. ``/usr/share/datasets/fashion-mnist``, where Debian's ``dataset-fashion-mnist`` package puts them
   (``apt-get install dataset-fashion-mnist``), or :func:`download_fashion_mnist` into a directory.

Checksums. Zalando publishes the MD5 of each ``.gz`` file, but a gzip file's bytes depend on the
compressor and its time stamp: Debian's package ships the same data recompressed (gzip header time
2020-06-05), so its ``.gz`` files do not match those MD5s. We therefore check the MD5 of the
*decompressed* IDX bytes (:data:`RAW_MD5`), which is the same for the official ``.gz`` files, Debian's
files and anybody's ``gunzip``-ed copies. :data:`GZ_MD5` is used only to check a fresh download.
:func:`md5` is vitnp's one checksum helper: also the fingerprint of a run's data and of a checkpoint file.

Without the files, :func:`synthetic_gratings` makes a data set of the same shapes (the notebooks use it
through :func:`fashion_mnist_or_synthetic`, which says which one it returns).
"""
from __future__ import annotations

import hashlib
import os
import urllib.request

import numpy as np

from ..io.atomic import atomic_write
from .idx import parse_idx, read_bytes

__all__ = ["FASHION_MNIST_CLASSES", "MEAN", "STD", "DEFAULT_ROOT", "ENV_VAR", "RAW_MD5", "GZ_MD5", "URL", "md5",
           "data_dir", "split_files", "load_fashion_mnist", "download_fashion_mnist", "class_names", "synthetic_gratings",
           "fashion_mnist_or_synthetic"]

# ---- constants -----------------------------------------------------------------------------------------
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


def md5(*parts) -> str:
    """The MD5 hex digest of ``parts`` fed in order: bytes as they are, arrays as their C-order bytes.

    ``md5(file_bytes)`` checks a file; ``md5(images, labels)`` fingerprints a data set (a resumed run
    must see the same one).  Not for security: a checksum against corruption and mix-ups.
    """
    h = hashlib.md5(usedforsecurity=False)
    for part in parts:
        raw = isinstance(part, (bytes, bytearray, memoryview))
        h.update(part if raw else np.ascontiguousarray(part).tobytes())
    return h.hexdigest()


# ---- the files ----------------------------------------------------------------------------------------
def data_dir(root):
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


def split_files(root=None, split="train") -> tuple:
    """(images path, labels path) of one split's IDX files, found as :func:`load_fashion_mnist` finds them,
    without reading them (the trainer checks the test files exist before training, and reads them after).

    Raises FileNotFoundError (where it looked, and how to get the data) or ValueError (a bad ``split``).
    """
    if split not in _FILES:
        raise ValueError(f"split must be one of {tuple(_FILES)}, got {split!r}")
    directory, source = data_dir(root)
    return tuple(_find(directory, source, name) for name in _FILES[split])


def _read_checked(path, name, verify):
    data = read_bytes(path)
    if verify and name in RAW_MD5:
        got = md5(data)
        if got != RAW_MD5[name]:
            raise ValueError(f"{path}: checksum mismatch: MD5 of the decompressed data is {got}, expected "
                             f"{RAW_MD5[name]} for the official {name}; the file is corrupt or not the "
                             f"official one (pass verify=False to load it anyway)")
    return parse_idx(data, path)


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
    image_path, label_path = split_files(root, split)
    image_name, label_name = _FILES[split]

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

    Each file (at most 26 MB) is read into memory, its MD5 compared with :data:`GZ_MD5`, and only then written
    (atomically, :func:`vitnp.io.atomic.atomic_write`); files already present with the right MD5 are kept.
    Never called implicitly.

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
        A download's MD5 does not match (nothing is written).
    """
    root = os.fspath(root)
    os.makedirs(root, exist_ok=True)
    for name, want in GZ_MD5.items():
        path = os.path.join(root, name)
        if os.path.isfile(path):
            with open(path, "rb") as f:
                if md5(f.read()) == want:
                    continue
        with urllib.request.urlopen(URL + name, timeout=timeout) as r:
            data = r.read()
        if md5(data) != want:
            raise ValueError(f"{URL + name}: checksum mismatch: MD5 {md5(data)}, expected {want}")
        with atomic_write(path, "wb") as f:
            f.write(data)
    return root


# ---- classes, and a stand-in --------------------------------------------------------------------------
def class_names(classes, num_classes) -> list:
    """Names of the K classes of a run: the Fashion-MNIST names of ``classes`` in their order, or all ten
    (``classes`` empty, K = 10); a class without a Fashion-MNIST name is called by its index."""
    names = FASHION_MNIST_CLASSES
    if classes:
        return [names[c] if c < len(names) else str(c) for c in classes]
    return list(names) if num_classes == len(names) else [str(k) for k in range(num_classes)]


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
