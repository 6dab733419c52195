"""Tests of vitnp.data on small synthetic IDX files and arrays (no network), plus one on the real Debian data if
present."""
import gzip
import os
import zlib

import numpy as np
import pytest

from vitnp import data
from vitnp.data import fashion_mnist
from vitnp.data import (
    FASHION_MNIST_CLASSES, MEAN, STD, iterate_batches, load_fashion_mnist, normalize, random_crop,
    prepare_data, random_hflip, read_idx, resize_images, select_classes, train_val_split, write_idx,
)
from vitnp.training.presets import HParams

from support import TINY, band_data, refused_under_memory_limit

NAMES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def make_split(n=12, seed=0, size=28):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, size, size), dtype=np.uint8)
    labels = np.arange(n) % 10
    return images, labels


def write_split(directory, split="train", n=12, gz=True, seed=0, size=28):
    """Synthetic files with the official names in ``directory``; returns (images, labels, paths)."""
    images, labels = make_split(n, seed, size)
    suffix = ".gz" if gz else ""
    paths = [os.path.join(directory, name + suffix) for name in NAMES[split]]
    write_idx(paths[0], images)
    write_idx(paths[1], labels)
    return images, labels, paths


def idx_bytes(array):
    """IDX bytes written by hand (independent of write_idx)."""
    a = np.asarray(array, dtype=np.uint8)
    header = bytes([0, 0, 8, a.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in a.shape)
    return header + a.tobytes()


# ---------------------------------------------------------------------------------------------------------
# IDX round trip and format
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("shape", [(7,), (3, 28, 28), (2, 5, 4)])
def test_idx_round_trip(tmp_path, suffix, shape):
    a = np.random.default_rng(1).integers(0, 256, size=shape, dtype=np.uint8)
    path = tmp_path / ("a.idx" + suffix)
    write_idx(path, a)
    b = read_idx(path)
    assert b.dtype == np.uint8 and b.shape == shape
    np.testing.assert_array_equal(a, b)
    b[...] = 0  # writable
    assert os.listdir(tmp_path) == [path.name]  # no temporary file left behind


def test_write_idx_matches_the_format(tmp_path):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "i", images)
    raw = (tmp_path / "i").read_bytes()
    assert raw[:4] == (2051).to_bytes(4, "big")
    assert raw == idx_bytes(images)
    write_idx(tmp_path / "l.gz", np.array([3, 1, 4], dtype=np.int64))
    raw = gzip.decompress((tmp_path / "l.gz").read_bytes())
    assert raw[:4] == (2049).to_bytes(4, "big") and raw[4:8] == (3).to_bytes(4, "big")
    assert raw[8:] == bytes([3, 1, 4])


def test_write_idx_replaces_atomically_and_rejects_bad_arrays(tmp_path):
    path = tmp_path / "x.gz"
    write_idx(path, np.zeros(3, np.uint8))
    write_idx(path, np.ones(5, np.uint8))
    np.testing.assert_array_equal(read_idx(path), np.ones(5, np.uint8))
    for bad in (np.array([1.5]), np.array([256]), np.array([-1]), np.array(3)):
        with pytest.raises(ValueError):
            write_idx(path, bad)
    np.testing.assert_array_equal(read_idx(path), np.ones(5, np.uint8))  # old file untouched
    assert sorted(os.listdir(tmp_path)) == ["x.gz"]


def corrupt_cases():
    good = idx_bytes(np.zeros((2, 28, 28), np.uint8))
    return {
        "bad magic": (b"\x00\x00\x0d\x03" + good[4:], "magic"),
        "bad magic bytes": (b"\x12\x34" + good[2:], "magic"),
        "no axes": (b"\x00\x00\x08\x00", "magic"),
        "truncated": (good[:-1], "truncated"),
        "extra bytes": (good + b"\x00", "extra"),
        "header too short": (good[:10], "header too short"),
        "empty": (b"", "header too short"),
    }


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("case", list(corrupt_cases()))
def test_read_idx_corrupt_file_raises_valueerror_naming_the_file(tmp_path, case, gz):
    raw, words = corrupt_cases()[case]
    path = tmp_path / ("broken-file" + (".gz" if gz else ""))
    path.write_bytes(gzip.compress(raw) if gz else raw)
    with pytest.raises(ValueError, match=words) as e:
        read_idx(path)
    assert str(path) in str(e.value)


@pytest.mark.parametrize("how", ["flipped bytes", "truncated", "not gzip", "gzip under a plain name"])
def test_corrupt_gzip_raises_valueerror(tmp_path, how):
    stream = gzip.compress(idx_bytes(np.arange(200, dtype=np.uint8)))
    path = tmp_path / "labels.gz"
    if how == "flipped bytes":
        stream = stream[:12] + bytes(b ^ 0xFF for b in stream[12:20]) + stream[20:]
    elif how == "truncated":
        stream = stream[:len(stream) // 2]
    elif how == "not gzip":
        stream = b"this is not gzip data at all"
    else:
        path = tmp_path / "labels"
    path.write_bytes(stream)
    with pytest.raises(ValueError, match="gzip") as e:
        read_idx(path)
    assert str(path) in str(e.value)


# ---------------------------------------------------------------------------------------------------------
# load_fashion_mnist
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("split", ["train", "test"])
def test_load_synthetic(tmp_path, gz, split):
    images, labels, _ = write_split(tmp_path, split, n=13, gz=gz)
    x, y = load_fashion_mnist(tmp_path, split, verify=False)
    assert x.shape == (13, 28, 28, 1) and x.dtype == np.uint8
    assert y.shape == (13,) and y.dtype == np.int64
    np.testing.assert_array_equal(x[..., 0], images)
    np.testing.assert_array_equal(y, labels)


def test_bad_split_names_the_allowed_values(tmp_path):
    with pytest.raises(ValueError, match="'train', 'test'"):
        load_fashion_mnist(tmp_path, "val")


@pytest.mark.parametrize("gz", [False, True])
def test_checksum_mismatch_is_caught(tmp_path, gz):
    _, _, paths = write_split(tmp_path, "test", gz=gz)
    with pytest.raises(ValueError, match="checksum") as e:
        load_fashion_mnist(tmp_path, "test")  # verify=True is the default
    assert paths[0] in str(e.value)


def test_count_mismatch(tmp_path):
    _, _, paths = write_split(tmp_path)
    write_idx(paths[1], np.zeros(11, np.uint8))
    with pytest.raises(ValueError, match="count mismatch") as e:
        load_fashion_mnist(tmp_path, verify=False)
    assert paths[0] in str(e.value) and paths[1] in str(e.value)


def test_bad_label_values(tmp_path):
    _, labels, paths = write_split(tmp_path, gz=False)
    labels[5] = 10
    write_idx(paths[1], labels)
    with pytest.raises(ValueError, match="0..9") as e:
        load_fashion_mnist(tmp_path, verify=False)
    assert paths[1] in str(e.value)


def test_image_size_not_28x28(tmp_path):
    _, _, paths = write_split(tmp_path, size=32)
    with pytest.raises(ValueError, match="28x28") as e:
        load_fashion_mnist(tmp_path, verify=False)
    assert paths[0] in str(e.value)


def test_swapped_files_are_rejected(tmp_path):
    images, labels, paths = write_split(tmp_path)
    write_idx(paths[0], labels)
    with pytest.raises(ValueError, match="image file") as e:
        load_fashion_mnist(tmp_path, verify=False)
    assert paths[0] in str(e.value)


def test_corrupt_file_via_loader_names_it(tmp_path):
    _, _, paths = write_split(tmp_path)
    with open(paths[1], "r+b") as f:
        f.truncate(os.path.getsize(paths[1]) - 4)
    with pytest.raises(ValueError, match="gzip") as e:
        load_fashion_mnist(tmp_path, verify=False)
    assert paths[1] in str(e.value)


def test_missing_directory_gives_helpful_message(tmp_path):
    where = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError) as e:
        load_fashion_mnist(where)
    msg = str(e.value)
    for words in (str(where), "apt-get install dataset-fashion-mnist", "download_fashion_mnist", "VITNP_DATA",
                  "root"):
        assert words in msg


def test_missing_labels_file_is_named(tmp_path):
    _, _, paths = write_split(tmp_path)
    os.remove(paths[1])
    with pytest.raises(FileNotFoundError, match="train-labels-idx1-ubyte"):
        load_fashion_mnist(tmp_path, verify=False)


def test_env_var_and_default_location(tmp_path, monkeypatch):
    monkeypatch.setattr(fashion_mnist, "DEFAULT_ROOT", str(tmp_path / "debian"))
    monkeypatch.delenv("VITNP_DATA", raising=False)
    with pytest.raises(FileNotFoundError, match="debian"):
        load_fashion_mnist()

    env_dir, root_dir = tmp_path / "env", tmp_path / "root"
    env_dir.mkdir()
    root_dir.mkdir()
    env_images, _, _ = write_split(env_dir, seed=1)
    root_images, _, _ = write_split(root_dir, seed=2)
    monkeypatch.setenv("VITNP_DATA", str(env_dir))
    np.testing.assert_array_equal(load_fashion_mnist(verify=False)[0][..., 0], env_images)
    np.testing.assert_array_equal(load_fashion_mnist(root_dir, verify=False)[0][..., 0], root_images)

    monkeypatch.setenv("VITNP_DATA", str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError, match="VITNP_DATA"):
        load_fashion_mnist()


# ---------------------------------------------------------------------------------------------------------
# Batch pipeline
# ---------------------------------------------------------------------------------------------------------


def test_classes_and_constants():
    assert len(FASHION_MNIST_CLASSES) == 10
    assert FASHION_MNIST_CLASSES[0] == "T-shirt/top" and FASHION_MNIST_CLASSES[9] == "Ankle boot"
    assert 0 < MEAN < 1 and 0 < STD < 1


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_normalize(dtype):
    x = np.array([[0, 255], [128, 7]], dtype=np.uint8)
    out = normalize(x, dtype)
    assert out.dtype == dtype and out.shape == x.shape
    want = (x.astype(np.float64) / 255 - MEAN) / STD
    np.testing.assert_allclose(out, want, rtol=1e-6 if dtype == np.float32 else 1e-14)
    with pytest.raises(TypeError):
        normalize(out)  # already float


def test_train_val_split():
    images, labels = make_split(n=50)
    (tx, ty), (vx, vy) = train_val_split(images, labels, 0.2, seed=3)
    assert len(vx) == len(vy) == 10 and len(tx) == len(ty) == 40
    together = np.concatenate([tx, vx])
    assert sorted(map(bytes, together)) == sorted(map(bytes, images))  # a partition
    (tx2, _), (vx2, _) = train_val_split(images, labels, 0.2, seed=3)
    np.testing.assert_array_equal(vx, vx2)
    (_, _), (vx3, _) = train_val_split(images, labels, 0.2, seed=4)
    assert not np.array_equal(vx, vx3)
    with pytest.raises(ValueError):
        train_val_split(images, labels, 1.0, seed=0)


def small_batch(b=4, h=5, w=6, c=2, dtype=np.int32):
    return np.arange(b * h * w * c, dtype=dtype).reshape(b, h, w, c) + 1  # no zeros: padding shows


def test_random_crop_padding_zero_is_identity():
    x = small_batch()
    np.testing.assert_array_equal(random_crop(x, 0, np.random.default_rng(0)), x)


def test_random_crop_is_a_shifted_window_of_the_padded_image():
    x, p = small_batch(b=64, dtype=np.float32), 2
    out = random_crop(x, p, np.random.default_rng(0))
    assert out.shape == x.shape and out.dtype == x.dtype
    padded = np.zeros((64, 5 + 2 * p, 6 + 2 * p, 2), np.float32)
    padded[:, p:-p, p:-p] = x
    offsets = set()
    for b in range(64):  # find the window by brute force
        hits = [(dy, dx) for dy in range(2 * p + 1) for dx in range(2 * p + 1)
                if np.array_equal(out[b], padded[b, dy:dy + 5, dx:dx + 6])]
        assert len(hits) == 1
        offsets.add(hits[0])
    assert len(offsets) > 10  # the offsets do vary per image
    same = random_crop(x, p, np.random.default_rng(0))
    np.testing.assert_array_equal(out, same)


def test_random_crop_hand_made():
    x = np.array([[1, 2], [3, 4]], np.uint8)[None, :, :, None]  # (1, 2, 2, 1)
    seen = set()
    for seed in range(40):
        seen.add(random_crop(x, 1, np.random.default_rng(seed))[0, :, :, 0].tobytes())
    windows = {np.pad(x[0, :, :, 0], 1)[dy:dy + 2, dx:dx + 2].tobytes() for dy in range(3) for dx in range(3)}
    assert seen == windows


def test_random_hflip():
    x = small_batch(b=32, dtype=np.uint8)
    np.testing.assert_array_equal(random_hflip(x, np.random.default_rng(0), p=1.0), x[:, :, ::-1])
    np.testing.assert_array_equal(random_hflip(x, np.random.default_rng(0), p=0.0), x)
    rng = np.random.default_rng(5)
    state = rng.bit_generator.state
    once = random_hflip(x, rng)
    rng.bit_generator.state = state
    np.testing.assert_array_equal(random_hflip(once, rng), x)  # same draws twice: identity
    flipped = [not np.array_equal(once[b], x[b]) for b in range(32)]
    assert 0 < sum(flipped) < 32
    for b in range(32):
        np.testing.assert_array_equal(once[b], x[b, :, ::-1] if flipped[b] else x[b])


def collect(images, labels, **kw):
    return list(iterate_batches(images, labels, **kw))


@pytest.mark.parametrize("augment", [None, data.crop_and_flip])
def test_iterate_batches_deterministic(augment):
    images, labels = make_split(n=23)
    images = images[..., None]  # (N, 28, 28, 1)
    rng = np.random.default_rng(7)
    state = rng.bit_generator.state
    first = collect(images, labels, batch_size=5, rng=rng, augment=augment)
    after = rng.bit_generator.state
    rng.bit_generator.state = state
    second = collect(images, labels, batch_size=5, rng=rng, augment=augment)
    assert rng.bit_generator.state == after
    assert len(first) == len(second) == 5
    for (x1, y1), (x2, y2) in zip(first, second):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)
    third = collect(images, labels, batch_size=5, rng=rng, augment=augment)  # the next epoch differs
    assert not np.array_equal(np.concatenate([y for _, y in first]), np.concatenate([y for _, y in third]))

    rng.bit_generator.state = state  # resume after 2 batches
    resumed = collect(images, labels, batch_size=5, rng=rng, augment=augment, start=2)
    assert len(resumed) == 3
    for (x1, y1), (x2, y2) in zip(first[2:], resumed):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)


def test_iterate_batches_covers_every_example_once():
    n = 23
    images = np.arange(n, dtype=np.uint8)[:, None, None, None] * np.ones((1, 2, 2, 1), np.uint8)
    labels = np.arange(n)
    batches = collect(images, labels, batch_size=5, rng=np.random.default_rng(0))
    assert [len(y) for _, y in batches] == [5, 5, 5, 5, 3]
    ys = np.concatenate([y for _, y in batches])
    assert sorted(ys) == list(range(n)) and not np.array_equal(ys, np.arange(n))
    for x, y in batches:  # images stay with their labels
        np.testing.assert_allclose(x[:, 0, 0, 0], normalize(y.astype(np.uint8)), rtol=1e-6)

    dropped = collect(images, labels, batch_size=5, rng=np.random.default_rng(0), drop_last=True)
    assert [len(y) for _, y in dropped] == [5, 5, 5, 5]
    in_order = collect(images, labels, batch_size=5, shuffle=False)
    np.testing.assert_array_equal(np.concatenate([y for _, y in in_order]), labels)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_iterate_batches_dtype(dtype):
    images, labels = make_split(n=8)
    x, y = next(iterate_batches(images[..., None], labels, 4, rng=np.random.default_rng(0), dtype=dtype,
                                augment=data.crop_and_flip))
    assert x.dtype == dtype and x.shape == (4, 28, 28, 1) and y.dtype == np.int64


def test_iterate_batches_checks_its_arguments():
    images, labels = make_split(n=8)
    with pytest.raises(ValueError, match="rng"):
        iterate_batches(images[..., None], labels, 4)
    with pytest.raises(ValueError, match="H, W, C"):
        iterate_batches(images, labels, 4, rng=np.random.default_rng(0))


# ---------------------------------------------------------------------------------------------------------
# The real data (Debian's dataset-fashion-mnist)
# ---------------------------------------------------------------------------------------------------------

DEBIAN = "/usr/share/datasets/fashion-mnist"
HAVE_DEBIAN = all(os.path.isfile(os.path.join(DEBIAN, name + ".gz")) for pair in NAMES.values() for name in pair)


@pytest.mark.skipif(not HAVE_DEBIAN, reason="apt-get install dataset-fashion-mnist to run this test")
def test_real_fashion_mnist(tmp_path):
    for split, n in (("train", 60000), ("test", 10000)):
        x, y = load_fashion_mnist(DEBIAN, split)  # verify=True: checksums of the decompressed data
        assert x.shape == (n, 28, 28, 1) and x.dtype == np.uint8
        assert y.shape == (n,) and y.dtype == np.int64
        np.testing.assert_array_equal(np.bincount(y, minlength=10), [n // 10] * 10)
        if split == "train":  # the hard-coded MEAN and STD, recomputed exactly from a pixel histogram
            counts = np.bincount(x.ravel(), minlength=256)
            v = np.arange(256) / 255.0
            mean = counts @ v / x.size
            std = np.sqrt(counts @ (v - mean) ** 2 / x.size)
            np.testing.assert_allclose([mean, std], [MEAN, STD], rtol=1e-12)

    # The checksums are of the decompressed bytes, so a gunzipped copy passes verify=True as well.
    for name in NAMES["test"]:
        with open(os.path.join(DEBIAN, name + ".gz"), "rb") as f:
            (tmp_path / name).write_bytes(gzip.decompress(f.read()))
    x2, y2 = load_fashion_mnist(tmp_path, "test")
    np.testing.assert_array_equal(x2, x)
    np.testing.assert_array_equal(y2, y)


# ---------------------------------------------------------------------------------------------------------
# Class subsets and resizing (fine-tuning support)
# ---------------------------------------------------------------------------------------------------------


def test_select_classes_keeps_order_and_relabels_in_the_given_order():
    images = np.arange(10 * 2 * 2, dtype=np.uint8).reshape(10, 2, 2, 1)      # image i is recognisable
    labels = np.array([3, 7, 2, 7, 0, 2, 9, 3, 7, 1])
    x, y = data.select_classes(images, labels, (7, 2))
    assert y.tolist() == [0, 1, 0, 1, 0] and y.dtype == np.int64             # 7 -> 0, 2 -> 1
    assert np.array_equal(x, images[[1, 2, 3, 5, 8]])                         # original order kept
    x, y = data.select_classes(images, labels, [3])
    assert y.tolist() == [0, 0] and np.array_equal(x, images[[0, 7]])
    with pytest.raises(ValueError, match=r"class\(es\) \[5\] have no examples"):
        data.select_classes(images, labels, (7, 5))
    for bad in ((), (2, 2), (-1, 2)):
        with pytest.raises(ValueError, match="classes"):
            data.select_classes(images, labels, bad)


def upsample2_reference(a):
    """2x bilinear upsampling along both axes, written out: with p = a padded by its edge values,
    out[2j] = ¼ p[j] + ¾ p[j+1] and out[2j+1] = ¾ p[j+1] + ¼ p[j+2] (in 16ths: exact), rounded half up."""
    def axis(x, ax):
        p = np.moveaxis(np.pad(np.moveaxis(x, ax, 0), [(1, 1)] + [(0, 0)] * (x.ndim - 1), mode="edge"), 0, ax)
        n = x.shape[ax]
        take = lambda k: np.take(p, np.arange(k, k + n), axis=ax)          # noqa: E731  p[j + k] for all j
        even, odd = 0.25 * take(0) + 0.75 * take(1), 0.75 * take(1) + 0.25 * take(2)
        return np.stack([even, odd], axis=ax + 1).reshape(x.shape[:ax] + (2 * n,) + x.shape[ax + 1:])
    out = axis(axis(a.astype(np.float64), 1), 2)
    return np.floor(out + 0.5).astype(np.uint8)


def test_resize_images_2x_by_hand_and_against_the_written_out_formula():
    square = np.array([[0, 16], [32, 48]], np.uint8)[None, :, :, None]       # (1, 2, 2, 1)
    expected = [[0, 4, 12, 16], [8, 12, 20, 24], [24, 28, 36, 40], [32, 36, 44, 48]]
    assert data.resize_images(square, 4)[0, :, :, 0].tolist() == expected    # a linear image stays linear
    tie = np.array([[0, 2]], np.uint8)[None, :, :, None]                      # 0, 0.5, 1.5, 2: halves round up
    assert data.resize_images(tie, (1, 4))[0, 0, :, 0].tolist() == [0, 1, 2, 2]
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(5, 28, 28, 3), dtype=np.uint8)
    out = data.resize_images(images, 56, chunk=2)                             # chunking changes nothing
    assert out.shape == (5, 56, 56, 3) and out.dtype == np.uint8
    assert np.array_equal(out, upsample2_reference(images))


def test_resize_images_3x_exactly():
    """Factor 3: out[3j+1] = a[j], out[3j] = (a[j-1] + 2a[j])/3, out[3j+2] = (2a[j] + a[j+1])/3 per axis,
    edges clamped: in integer ninths, never a tie (k/9 ≠ ½), so the reference is exact."""
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, size=(2, 7, 5, 1), dtype=np.uint8)
    w = np.zeros((3, 3), np.int64)                                   # 3·weights of (a[j-1], a[j], a[j+1])
    w[0], w[1], w[2] = (1, 2, 0), (0, 3, 0), (0, 2, 1)

    def axis_thirds(x, ax):                                           # integer, 3× the interpolated values
        p = np.moveaxis(np.pad(np.moveaxis(x, ax, 0), [(1, 1)] + [(0, 0)] * (x.ndim - 1), mode="edge"), 0, ax)
        n = x.shape[ax]
        parts = [sum(w[r, k] * np.take(p, np.arange(k, k + n), axis=ax) for k in range(3)) for r in range(3)]
        return np.stack(parts, axis=ax + 1).reshape(x.shape[:ax] + (3 * n,) + x.shape[ax + 1:])
    ninths = axis_thirds(axis_thirds(a.astype(np.int64), 1), 2)       # 9 × value
    expected = (2 * ninths + 9) // 18                                  # round half up of ninths / 9
    out = data.resize_images(a, (21, 15))
    assert np.array_equal(out, expected)
    assert np.array_equal(out[:, 1::3, 1::3], a)                       # the centre of each 3×3 block


def test_resize_images_keeps_constants_copies_and_validates():
    flat = np.full((3, 28, 28, 1), 77, np.uint8)
    for size in (56, (14, 42), 14, 28):                     # shrinking by more than 2x is refused (below)
        out = data.resize_images(flat, size)
        assert out.shape[1:3] == ((size, size) if np.isscalar(size) else size) and (out == 77).all()
    same = data.resize_images(flat, 28)
    assert not np.shares_memory(same, flat)
    with pytest.raises(TypeError, match="uint8"):
        data.resize_images(flat.astype(np.float32), 56)
    with pytest.raises(ValueError, match="uint8 images"):
        data.resize_images(flat[0], 56)
    for bad in (0, (28,), (28, -1), 2.5, True):
        with pytest.raises(ValueError, match="size"):
            data.resize_images(flat, bad)


# ---- review fixes: select_classes and resize_images refuse what they cannot do right ---------------------
def test_select_classes_needs_a_sequence_of_integers():
    x, y = np.zeros((4, 2, 2, 1), np.uint8), np.array([0, 1, 2, 1])
    with pytest.raises(TypeError, match="sequence"):
        select_classes(x, y, 3)                                  # an int, not a list of classes
    with pytest.raises(TypeError, match="1.7"):
        select_classes(x, y, (1.7,))                             # not silently class 1
    with pytest.raises(TypeError, match="True"):
        select_classes(x, y, (True,))
    nx, ny = select_classes(x, y, (np.int64(2), 1))               # NumPy integers are integers
    assert ny.tolist() == [1, 0, 1] and len(nx) == 3


def test_select_classes_needs_integer_labels_at_least_0():
    x = np.zeros((3, 2, 2, 1), np.uint8)
    with pytest.raises(ValueError, match="-1"):
        select_classes(x, np.array([0, -1, 1]), (1, 0))          # -1 would wrap to the last lookup entry
    with pytest.raises(TypeError, match="float"):
        select_classes(x, np.array([0.0, 1.0, 1.0]), (1, 0))
    with pytest.raises(ValueError, match="labels"):
        select_classes(x, np.array([[0, 1, 1]]), (1, 0))


def test_resize_images_refuses_to_shrink_by_more_than_2x():
    x = np.random.default_rng(0).integers(0, 256, (2, 28, 28, 1), dtype=np.uint8)
    with pytest.raises(ValueError, match=r"28x28 to 12x12"):
        resize_images(x, 12)
    with pytest.raises(ValueError, match="alias"):
        resize_images(x, (28, 13))
    assert resize_images(x, 14).shape == (2, 14, 14, 1)          # 2x: every input pixel still counts


def test_normalize_takes_mean_and_std():
    x = np.arange(256, dtype=np.uint8).reshape(4, 8, 8, 1)
    out = normalize(x, np.float64, mean=0.5, std=0.25)
    np.testing.assert_allclose(out, (x / 255.0 - 0.5) / 0.25, rtol=1e-15, atol=1e-15)
    assert np.array_equal(normalize(x), normalize(x, np.float32, mean=MEAN, std=STD))


def test_resize_images_uses_the_one_interpolation_matrix():
    """data.resize_images and resample.resize_grid(align_corners=False) share the matrix: same numbers."""
    from vitnp.data.resample import resize_grid
    x = np.random.default_rng(1).integers(0, 256, (1, 5, 7, 1), dtype=np.uint8)
    grid = resize_grid(x[0, :, :, 0].astype(np.float64), (9, 11), align_corners=False)
    assert np.array_equal(resize_images(x, (9, 11))[0, :, :, 0], np.clip(np.floor(grid + 0.5), 0, 255))


def test_synthetic_gratings_has_the_shapes_of_fashion_mnist_and_learnable_classes():
    from vitnp.data import synthetic_gratings
    tx, ty, vx, vy = synthetic_gratings(n_train=200, n_test=50, seed=3)
    assert tx.shape == (200, 28, 28, 1) and tx.dtype == np.uint8 and vx.shape == (50, 28, 28, 1)
    assert ty.dtype == np.int64 and set(np.unique(ty)) <= set(range(10))
    again = synthetic_gratings(n_train=200, n_test=50, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip((tx, ty, vx, vy), again))          # seeded
    # the class is in the picture: nearest class mean (after removing the shift-invariant mean) beats chance
    spectra = lambda x: np.abs(np.fft.fft2(x[..., 0].astype(np.float64)))               # shift-invariant
    means = np.stack([spectra(tx[ty == k]).mean(0) for k in range(10)])
    pred = np.argmin(((spectra(vx)[:, None] - means[None]) ** 2).sum((2, 3)), axis=1)
    assert (pred == vy).mean() > 0.5


def test_fashion_mnist_or_synthetic_says_when_it_falls_back(tmp_path, capsys):
    from vitnp.data import fashion_mnist_or_synthetic
    *arrays, names, synthetic = fashion_mnist_or_synthetic(tmp_path)          # an empty directory: no files
    assert synthetic and len(names) == 10 and arrays[0].shape[1:] == (28, 28, 1)
    assert "NOT installed" in capsys.readouterr().out
    write_split(tmp_path, "train")
    write_split(tmp_path, "test")
    *arrays, names, synthetic = fashion_mnist_or_synthetic(tmp_path, verify=False)
    assert not synthetic and names[0] == "T-shirt/top"
    assert "data: Fashion-MNIST" in capsys.readouterr().out


# ---- preparing the data for a model: class subsets and image size ---------------------------------------------
DATA = band_data()
TINY_HP = HParams(epochs=3, batch_size=16, lr=3e-3, warmup_epochs=0.5, augment="crop+flip", eval_batch_size=13)


def test_classes_are_filtered_and_relabelled_in_the_given_order():
    x, y, tx, ty = DATA
    cfg, hp = TINY.replace(num_classes=3), TINY_HP.replace(classes=(7, 2, 5))
    splits = prepare_data(DATA, cfg, hp)
    (sx, sy), (stx, sty) = splits["train"], splits["test"]
    keep = np.isin(y, (7, 2, 5))
    assert np.array_equal(sx, x[keep])                                 # the same images, in their order
    assert sy.tolist() == [{7: 0, 2: 1, 5: 2}[c] for c in y[keep]]
    assert sty.tolist() == [{7: 0, 2: 1, 5: 2}[c] for c in ty[np.isin(ty, (7, 2, 5))]]
    # train_subset draws from the filtered set (19 images of these classes here), seeded
    sub = prepare_data(DATA, cfg, hp.replace(train_subset=10))["train"]
    again = prepare_data(DATA, cfg, hp.replace(train_subset=10))["train"]
    assert len(sub[0]) == 10 and set(sub[1].tolist()) <= {0, 1, 2}
    assert np.array_equal(sub[0], again[0]) and np.array_equal(sub[1], again[1])
    assert any(np.array_equal(sub[0][0], img) for img in sx)
    with pytest.raises(ValueError, match="train_subset=20 exceeds the 19 training images of classes"):
        prepare_data(DATA, cfg, hp.replace(train_subset=20))


def test_images_are_resized_to_the_model_size():
    cfg = TINY.replace(image_size=56)
    splits = prepare_data(DATA, cfg, TINY_HP)
    assert splits["source_size"] == (28, 28)
    assert np.array_equal(splits["train"][0], resize_images(DATA[0], 56))
    assert np.array_equal(splits["test"][0], resize_images(DATA[2], 56))
    small = prepare_data((DATA[0][:, :14, :14], DATA[1], DATA[2], DATA[3]), TINY, TINY_HP)   # 14 -> 28
    assert small["train"][0].shape == (64, 28, 28, 1) and small["source_size"] == (14, 14)


def test_shrinking_the_data_by_more_than_2x_is_refused():
    """Bilinear resizing aliases when it shrinks by more than 2x: a clear error naming the sizes, not a
    silently aliased training set.  Shrinking by exactly 2x is allowed."""
    with pytest.raises(ValueError, match=r"image_size .*shrinking 28x28 to 7x7 .*14x14"):
        prepare_data(DATA, TINY.replace(image_size=7), TINY_HP)
    half = prepare_data(DATA, TINY.replace(image_size=14), TINY_HP)
    assert half["train"][0].shape == (64, 14, 14, 1)


# ---- small files must not cost a lot of memory: image and IDX bombs -------------------------------------
def test_a_png_bomb_is_refused_from_its_header(tmp_path):
    """A 9000×9000 black PNG is ~250 KB on disk and 324 MB decoded (1.3 GB as float32 RGBA): refused unread."""
    from PIL import Image
    from vitnp.data.image_files import load_image
    path = tmp_path / "bomb.png"
    Image.new("L", (9000, 9000)).save(path, optimize=True)
    assert path.stat().st_size < 1_000_000
    out = refused_under_memory_limit(f"from vitnp.data.image_files import load_image; load_image({str(path)!r})", 1024)
    assert "81,000,000 pixels, more than" in out, out
    small = tmp_path / "small.png"
    Image.new("RGB", (28, 20), (255, 255, 255)).save(small)
    assert load_image(small).shape == (20, 28, 3)
    with pytest.raises(ValueError, match="560 pixels, more than the 500 allowed"):
        load_image(small, max_pixels=500)


def test_a_gzip_bomb_idx_is_refused_while_inflating(tmp_path):
    """1.2 GB of zeros gzipped to ~1.2 MB, as an IDX file: inflation stops at the 1 GiB cap, under a 600 MB limit."""
    path = tmp_path / "bomb-idx1-ubyte.gz"
    z = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    chunk = bytes(16 << 20)
    with open(path, "wb") as f:
        f.write(z.compress(b"\x00\x00\x08\x01" + (1_200_000_000).to_bytes(4, "big")))
        for _ in range(1_200_000_000 // len(chunk) + 1):
            f.write(z.compress(chunk))
        f.write(z.flush())
    assert path.stat().st_size < 3_000_000
    out = refused_under_memory_limit(f"from vitnp.data.idx import read_idx; read_idx({str(path)!r})", 600)
    assert "header declares 1,200,000,008 bytes" in out, out
    from vitnp.data.idx import read_bytes
    with pytest.raises(ValueError, match="refused"):
        read_bytes(path, max_bytes=10_000_000_000)                      # within the cap, but 400:1
    liar = tmp_path / "liar-idx1-ubyte.gz"                              # header: 100 bytes; stream: 50 MB
    liar.write_bytes(gzip.compress(b"\x00\x00\x08\x01" + (100).to_bytes(4, "big") + bytes(50_000_000)))
    with pytest.raises(ValueError, match="extra bytes after the data"):
        read_idx(liar)                                                  # inflated only to 101 bytes of data
