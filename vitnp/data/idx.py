"""The IDX file format of MNIST and Fashion-MNIST: unsigned bytes with a small big-endian header.

IDX format (all integers big-endian)::

    bytes 0-3   magic = 0x00 0x00 0x08 ndim    0x08 = unsigned bytes; 2049 for labels, 2051 for images
    then ndim × uint32                          sizes: (count,) or (count, rows, cols)
    then prod(sizes) bytes                      the data, C order

:func:`read_idx` = :func:`parse_idx` of :func:`read_bytes` (the loader of :mod:`vitnp.data.fashion_mnist`
checks the bytes' MD5 in between); :func:`write_idx` writes such files atomically, e.g. small synthetic
data sets for tests.
"""
from __future__ import annotations

import gzip
import math
import os
import zlib

import numpy as np

from ..io.atomic import atomic_write

__all__ = ["read_bytes", "parse_idx", "read_idx", "write_idx"]

_IDX_UBYTE = 0x08  # the IDX type code of unsigned bytes, the only one Fashion-MNIST uses
MAX_BYTES = 1 << 30  # 1 GiB: Fashion-MNIST's largest file is 47 MB
MAX_RATIO = 100      # uncompressed : compressed, for files above RATIO_FLOOR (Fashion-MNIST's are below 2:1)
RATIO_FLOOR = 16 << 20


def read_bytes(path, max_bytes=MAX_BYTES):
    """The file's bytes, gunzipped if the name ends with .gz; a broken gzip stream is a ValueError.

    Memory is bounded by what the IDX header declares: a gzip stream is inflated only as far as its header
    says the data go (plus one byte, so that extra data are still seen), and a header that declares more than
    ``max_bytes``, or a ratio above 100:1 for more than 16 MiB, is refused before anything else is inflated.
    """
    path = os.fspath(path)
    if os.path.exists(path) and not os.path.isfile(path):         # a FIFO would block open() for ever
        raise ValueError(f"{path}: not a regular file (a directory, FIFO or device)")
    size = os.path.getsize(path)
    if size > max_bytes:
        raise ValueError(f"{path}: {size:,} bytes, more than the {max_bytes:,} an IDX file may have")
    with open(path, "rb") as f:
        data = f.read()
    if not path.endswith(".gz"):
        return data
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        head = d.decompress(data, 4)
        if len(head) == 4 and head[:3] == b"\x00\x00\x08":              # an IDX header follows: read its sizes
            head += d.decompress(d.unconsumed_tail, 4 * head[3])
            dims = [int.from_bytes(head[4 + 4 * i: 8 + 4 * i], "big") for i in range(head[3])]
            declared = len(head) + math.prod(dims)
            if declared > max_bytes or (declared > RATIO_FLOOR and declared > MAX_RATIO * size):
                raise ValueError(f"{path}: its header declares {declared:,} bytes of data from a {size:,}-byte "
                                 f"gzip file; refused (limit {max_bytes:,} bytes, or {MAX_RATIO}:1 above "
                                 f"{RATIO_FLOOR >> 20} MiB)")
        else:
            declared = 64                                                # not IDX: enough for parse_idx to say so
        body = d.decompress(d.unconsumed_tail, declared - len(head) + 1)
    except zlib.error as e:
        raise ValueError(f"{path}: corrupt gzip stream (zlib.error: {e})") from None
    out = head + body
    if len(out) <= declared and not d.eof:
        raise ValueError(f"{path}: corrupt gzip stream (EOFError: the stream is truncated)")
    return out


def parse_idx(data, path):
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
    return parse_idx(read_bytes(path), os.fspath(path))


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
