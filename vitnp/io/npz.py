"""Safe ``.npz`` files: every array of a dict in one zip archive, written atomically, read without pickle.

vitnp keeps everything it saves in ``.npz`` files: training checkpoints (:mod:`vitnp.training.rundir`) and
original-layout checkpoints (:mod:`vitnp.io.original`).  NumPy's own ``np.savez`` writes in place (a crash
leaves half a file) and ``np.load`` may unpickle objects.  Here:

* :func:`save_npz` writes the archive to a temporary file beside ``path``, fsyncs it and renames it over
  ``path`` (:func:`vitnp.io.atomic.atomic_write`): a reader sees the old file or the whole new one;
* object arrays are refused when saving, and :func:`load_npz` reads with ``allow_pickle=False`` and turns
  every problem (not a zip, truncated, a pickled member) into a one-line ``ValueError`` naming the file;
* a small file cannot cost a lot of memory: before any array is allocated, :func:`load_npz` reads every
  member's ``.npy`` header and refuses a total beyond ``max_bytes`` (4 GiB by default, more than ViT-H/14's
  2.5 GB), a header that claims more data than the member holds, and a large member that is compressed more
  than ``max_ratio`` : 1 (a decompression bomb; vitnp writes its archives uncompressed).

>>> save_npz("a.npz", {"params/E": np.zeros((49, 16), np.float32)})     # doctest: +SKIP
>>> load_npz("a.npz")["params/E"].shape                                 # doctest: +SKIP
(49, 16)
"""
from __future__ import annotations

import os
import zipfile
from collections.abc import Mapping

import numpy as np

from .atomic import atomic_write

__all__ = ["save_npz", "load_npz"]

_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")   # a zip's first entry; the end record of an empty zip
_NPY_MAGIC = b"\x93NUMPY"
MAX_BYTES = 4 << 30                              # default budget of one load_npz call: all arrays together
MAX_RATIO = 200                                  # uncompressed : compressed, for members above RATIO_FLOOR
RATIO_FLOOR = 16 << 20                           # smaller members may compress as they like


def save_npz(path, arrays: Mapping) -> None:
    """Write ``arrays`` to the ``.npz`` file ``path`` atomically, without pickle.

    The archive is written to a temporary file in the same directory, flushed and ``os.fsync``-ed, then
    moved over ``path`` with ``os.replace``; a crash or error at any point leaves an existing ``path``
    untouched and removes the temporary file.  ``path`` is used as given (no '.npz' is appended).

    Parameters
    ----------
    path : str or os.PathLike
    arrays : mapping of str to array_like
        Keys are the member names (may contain '/'); values keep their dtype, shape and byte order.

    Raises
    ------
    TypeError
        If a key is not a non-empty string, or an array holds Python objects (it would need pickle).
    """
    checked = _checked_for_saving(arrays)
    with atomic_write(path, "wb") as f:
        _write_npz(f, checked)


def _checked_for_saving(arrays) -> dict:
    if not isinstance(arrays, Mapping):
        raise TypeError(f"save_npz: expected a mapping of name -> array, got {type(arrays).__name__}")
    checked = {}
    for key, value in arrays.items():
        if not isinstance(key, str) or not key:
            raise TypeError(f"save_npz: array names must be non-empty strings, got {key!r}")
        try:
            array = np.asarray(value)
        except ValueError as err:   # ragged nested lists
            raise TypeError(f"save_npz: {key!r} is not a regular array: {err}") from err
        if array.dtype.hasobject:
            raise TypeError(f"save_npz: {key!r} has dtype {array.dtype} (Python objects), which needs "
                            f"pickle; object arrays are refused")
        checked[key] = array
    return checked


def _write_npz(f, arrays: dict) -> None:
    """An .npz is a zip archive holding one ``{key}.npy`` file per array."""
    with zipfile.ZipFile(f, mode="w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for key, array in arrays.items():
            with archive.open(key + ".npy", mode="w", force_zip64=True) as member:
                np.lib.format.write_array(member, array, allow_pickle=False)


class _PickleRefused(ValueError):
    pass


def load_npz(path, *, max_bytes=MAX_BYTES, max_ratio=MAX_RATIO) -> dict:
    """Read every array of the ``.npz`` file ``path`` into memory, refusing pickled data and memory bombs.

    Parameters
    ----------
    path : str or os.PathLike
    max_bytes : int, the most memory all arrays together may take (checked from the headers, before reading)
    max_ratio : float, the largest compression ratio allowed for a member above 16 MiB

    Returns
    -------
    dict[str, ndarray]
        Member name (without '.npy') → array, in archive order; the file is closed on return.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If ``path`` is not an .npz archive, is truncated or corrupt, holds a pickled (object) array, or would
        take more memory than allowed.
    """
    path = os.fspath(path)
    if os.path.exists(path) and not os.path.isfile(path):         # a FIFO would block open() for ever
        raise ValueError(f"load_npz: {path!r} is not a regular file (a directory, FIFO or device)")
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        raise FileNotFoundError(f"load_npz: no such file: {path!r}") from None
    with f:
        magic = f.read(len(_NPY_MAGIC))
        f.seek(0)
        if magic.startswith(_NPY_MAGIC):
            raise ValueError(f"load_npz: {path!r} is a single .npy array, not an .npz archive")
        if not magic.startswith(_ZIP_MAGICS):
            raise ValueError(f"load_npz: {path!r} is not an .npz archive (it does not start as a zip file)")
        try:
            _check_budget(f, max_bytes, max_ratio)
            f.seek(0)
            with np.load(f, allow_pickle=False) as archive:
                return {name: _read_member(archive, name) for name in archive.files}
        except (_PickleRefused, _TooBig) as err:
            raise ValueError(f"load_npz: {path!r}: {err}") from None
        except Exception as err:   # whatever the parser trips over in bytes we did not write
            raise ValueError(f"load_npz: {path!r} is truncated or corrupt "
                             f"({type(err).__name__}: {err})") from err


class _TooBig(ValueError):
    pass


def _check_budget(f, max_bytes, max_ratio) -> None:
    """Read each member's .npy header (a few hundred bytes) and refuse the archive if its arrays would take
    more than ``max_bytes`` together, if a header claims more data than its member holds, or if a member
    above RATIO_FLOOR is compressed more than ``max_ratio`` : 1."""
    total = 0
    with zipfile.ZipFile(f) as z:
        for info in z.infolist():
            if not info.filename.endswith(".npy"):
                continue                                   # refused later, as "not a .npy array"
            name = info.filename[:-len(".npy")]
            if info.file_size > RATIO_FLOOR and info.file_size > max_ratio * max(info.compress_size, 1):
                raise _TooBig(f"member {name!r} expands {info.compress_size:,} bytes to {info.file_size:,} "
                              f"(more than {max_ratio}:1): refused as a decompression bomb")
            with z.open(info) as member:
                version = np.lib.format.read_magic(member)
                read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                               else np.lib.format.read_array_header_2_0)
                shape, _, dtype = read_header(member)
            if dtype.hasobject:
                raise _PickleRefused(f"{name!r} is a pickled (object) array; pickled arrays are refused")
            nbytes = int(np.prod(shape, dtype=object)) * dtype.itemsize
            if nbytes > info.file_size:
                raise _TooBig(f"member {name!r} claims {shape} {dtype} ({nbytes:,} bytes) but holds only "
                              f"{info.file_size:,} bytes")
            total += nbytes
            if total > max_bytes:
                raise _TooBig(f"its arrays need more than {max_bytes:,} bytes of memory (at {name!r}); "
                              f"refused (load_npz's max_bytes)")


def _read_member(archive, name: str) -> np.ndarray:
    try:
        value = archive[name]
    except ValueError as err:
        # numpy's read_array says "Object arrays cannot be loaded when allow_pickle=False".
        if "allow_pickle" in str(err):
            raise _PickleRefused(f"{name!r} is a pickled (object) array; pickled arrays are refused") from None
        raise
    if not isinstance(value, np.ndarray):   # numpy hands back the raw bytes of a non-.npy member
        raise ValueError(f"member {name!r} is not a .npy array")
    return value
