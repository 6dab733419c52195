"""Checkpoints: the original ViT ``.npz`` layout, and safe ``.npz`` files for our own.

The google-research/vision_transformer checkpoints are flat ``.npz`` files whose keys are flax module
paths joined with '/'.  vitnp keeps one array per paper symbol instead (:func:`vitnp.config.param_shapes`).
:func:`to_jax` and :func:`from_jax` convert between the two; both directions only reshape, split and
concatenate, so a round trip is exact to the bit.  ``{i}`` is the block index ℓ−1, ``A`` abbreviates
``Transformer/encoderblock_{i}/MultiHeadDotProductAttention_1``.

==================================================  =============================  ===============  ============
original checkpoint key                             vitnp name                     original shape   vitnp shape
==================================================  =============================  ===============  ============
``embedding/kernel``                                ``E``                          (P, P, C, D)     (P²C, D)
``embedding/bias``                                  ``E_bias``                     (D,)             (D,)
``cls`` (‡)                                         ``x_class``                    (1, 1, D)        (D,)
``Transformer/posembed_input/pos_embedding`` (†)    ``E_pos``                      (1, T, D)        (T, D)
``…/encoderblock_{i}/LayerNorm_0/scale``, ``bias``  ``blocks.{i}.ln1.gamma/beta``  (D,)             (D,)
``A/query/kernel``, ``A/key/…``, ``A/value/…``      ``blocks.{i}.U_qkv``           3 × (D, k, D_h)  (D, 3D)
``A/query/bias``, ``A/key/bias``, ``A/value/bias``  ``blocks.{i}.U_qkv_bias``      3 × (k, D_h)     (3D,)
``A/out/kernel``                                    ``blocks.{i}.U_msa``           (k, D_h, D)      (D, D)
``A/out/bias``                                      ``blocks.{i}.U_msa_bias``      (D,)             (D,)
``…/encoderblock_{i}/LayerNorm_2/scale``, ``bias``  ``blocks.{i}.ln2.gamma/beta``  (D,)             (D,)
``…/encoderblock_{i}/MlpBlock_3/Dense_0/kernel``    ``blocks.{i}.mlp.W1``          (D, M)           (D, M)
``…/encoderblock_{i}/MlpBlock_3/Dense_0/bias``      ``blocks.{i}.mlp.b1``          (M,)             (M,)
``…/encoderblock_{i}/MlpBlock_3/Dense_1/kernel``    ``blocks.{i}.mlp.W2``          (M, D)           (M, D)
``…/encoderblock_{i}/MlpBlock_3/Dense_1/bias``      ``blocks.{i}.mlp.b2``          (D,)             (D,)
``Transformer/encoder_norm/scale``, ``bias``        ``ln_f.gamma/beta``            (D,)             (D,)
``head/kernel``, ``head/bias``                      ``head.W``, ``head.b``         (D, K), (K,)     (D, K), (K,)
==================================================  =============================  ===============  ============

(†) pos_embedding='learned' only; (‡) classifier='token' only.  Three facts make the reshapes exact:

* a patch is flattened in (row, col, channel) order, so ``E.reshape(P, P, C, D)`` is the conv kernel
  (height, width, in, out) of a P×P convolution with stride P;
* U_qkv's columns are [q | k | v], and inside each block of D columns head h owns columns
  h·D_h … (h+1)·D_h − 1, so the query block reshaped to (D, k, D_h) is flax's query kernel (Eq 5);
* U_msa's rows are head-major, as the concatenation [SA₁; …; SA_k] of Eq 8, so it reshapes to
  (k, D_h, D).

The ``pre_logits`` layer of the ImageNet-21k pre-training files (a hidden tanh layer in the head) has no
vitnp counterpart; :func:`from_jax` refuses it with a message saying so.

:func:`save_npz` and :func:`load_npz` read and write any dict of arrays, atomically and without pickle.
"""
from __future__ import annotations

import contextlib
import os
import re
import secrets
import zipfile
from collections.abc import Mapping

import numpy as np

from .config import ViTConfig, param_shapes

__all__ = ["jax_shapes", "to_jax", "from_jax", "save_npz", "load_npz"]

_QKV = ("query", "key", "value")


# ---- the layout ------------------------------------------------------------------------------------
def _layout(cfg: ViTConfig) -> dict:
    """vitnp name → [(original key, original shape), …], in the order of :func:`param_shapes`.

    One original key: the two arrays hold the same values in the same C order (a reshape).
    Three keys (query, key, value): our last axis is their concatenation, each reshaped.
    """
    P, C, D, M, K = cfg.patch_size, cfg.in_channels, cfg.dim, cfg.mlp_dim, cfg.num_classes
    k, D_h, T = cfg.heads, cfg.head_dim, cfg.num_tokens
    layout = {"E": [("embedding/kernel", (P, P, C, D))], "E_bias": [("embedding/bias", (D,))]}
    if cfg.classifier == "token":
        layout["x_class"] = [("cls", (1, 1, D))]
    if cfg.pos_embedding == "learned":
        layout["E_pos"] = [("Transformer/posembed_input/pos_embedding", (1, T, D))]
    for i in range(cfg.depth):
        ours, blk = f"blocks.{i}.", f"Transformer/encoderblock_{i}/"
        attn = blk + "MultiHeadDotProductAttention_1/"
        layout.update({
            ours + "ln1.gamma": [(blk + "LayerNorm_0/scale", (D,))],
            ours + "ln1.beta": [(blk + "LayerNorm_0/bias", (D,))],
            ours + "U_qkv": [(f"{attn}{n}/kernel", (D, k, D_h)) for n in _QKV],
            ours + "U_qkv_bias": [(f"{attn}{n}/bias", (k, D_h)) for n in _QKV],
            ours + "U_msa": [(attn + "out/kernel", (k, D_h, D))],
            ours + "U_msa_bias": [(attn + "out/bias", (D,))],
            ours + "ln2.gamma": [(blk + "LayerNorm_2/scale", (D,))],
            ours + "ln2.beta": [(blk + "LayerNorm_2/bias", (D,))],
            ours + "mlp.W1": [(blk + "MlpBlock_3/Dense_0/kernel", (D, M))],
            ours + "mlp.b1": [(blk + "MlpBlock_3/Dense_0/bias", (M,))],
            ours + "mlp.W2": [(blk + "MlpBlock_3/Dense_1/kernel", (M, D))],
            ours + "mlp.b2": [(blk + "MlpBlock_3/Dense_1/bias", (D,))],
        })
    layout.update({
        "ln_f.gamma": [("Transformer/encoder_norm/scale", (D,))],
        "ln_f.beta": [("Transformer/encoder_norm/bias", (D,))],
        "head.W": [("head/kernel", (D, K))],
        "head.b": [("head/bias", (K,))],
    })
    ours = param_shapes(cfg)
    if list(layout) != list(ours):   # config.py grew or renamed a parameter this table does not know
        raise NotImplementedError(f"checkpoint layout and param_shapes disagree: "
                                  f"{sorted(set(layout) ^ set(ours))}")
    return layout


def jax_shapes(cfg: ViTConfig) -> dict:
    """Original checkpoint key → shape for ``cfg``: the keys :func:`to_jax` writes, :func:`from_jax` reads.

    Parameters
    ----------
    cfg : ViTConfig

    Returns
    -------
    dict[str, tuple]
        E.g. ViT-B/16 has 200 keys, among them ``embedding/kernel`` (16, 16, 3, 768).
    """
    return {key: shape for targets in _layout(cfg).values() for key, shape in targets}


# ---- conversion ------------------------------------------------------------------------------------
def to_jax(params: Mapping, cfg: ViTConfig) -> dict:
    """vitnp parameters → the flat '/'-keyed layout of the original checkpoints (module docstring table).

    Parameters
    ----------
    params : mapping of str to ndarray
        Exactly the names and shapes of ``param_shapes(cfg)``.
    cfg : ViTConfig

    Returns
    -------
    dict[str, ndarray]
        Keys and shapes of :func:`jax_shapes`; C-contiguous copies with the input dtypes.

    Raises
    ------
    ValueError
        If names are unknown or missing or shapes differ; the message lists every offending name.
    """
    layout = _layout(cfg)
    params = _validated(params, param_shapes(cfg), "to_jax", cfg)
    flat = {}
    for name, targets in layout.items():
        # U_qkv (D, 3D) -> [q | k | v], three (D, D); U_qkv_bias (3D,) -> three (D,); else the whole array
        parts = np.split(params[name], len(targets), axis=-1)
        for (key, shape), part in zip(targets, parts):
            flat[key] = part.reshape(shape).copy(order="C")   # e.g. (D, D) -> (D, k, D_h)
    return flat


def from_jax(flat: Mapping, cfg: ViTConfig) -> dict:
    """The flat '/'-keyed arrays of an original checkpoint → vitnp parameters (module docstring table).

    Parameters
    ----------
    flat : mapping of str to ndarray
        Exactly the keys and shapes of ``jax_shapes(cfg)``, e.g. ``load_npz('ViT-B_16.npz')``.
    cfg : ViTConfig

    Returns
    -------
    dict[str, ndarray]
        Names and shapes of ``param_shapes(cfg)``; C-contiguous copies with the input dtypes.

    Raises
    ------
    ValueError
        If keys are unknown (``pre_logits/*`` gets its own explanation) or missing, shapes differ, or
        query/key/value arrays that fuse into one U_qkv have different dtypes.
    """
    layout = _layout(cfg)
    flat = _validated(flat, jax_shapes(cfg), "from_jax", cfg)
    ours = param_shapes(cfg)
    params = {}
    for name, sources in layout.items():
        keys = [key for key, _ in sources]
        dtypes = sorted({str(flat[key].dtype) for key in keys})
        if len(dtypes) > 1:
            raise ValueError(f"from_jax: {', '.join(keys)} have dtypes {', '.join(dtypes)}; "
                             f"they are fused into {name!r}, which has one dtype")
        lead = ours[name][:-1]
        parts = [flat[key].reshape(lead + (-1,)) for key in keys]   # e.g. (D, k, D_h) -> (D, D)
        params[name] = np.concatenate(parts, axis=-1) if len(parts) > 1 else parts[0].copy(order="C")
    return params


def _validated(arrays, expected: dict, where: str, cfg: ViTConfig) -> dict:
    """``arrays`` as a dict of ndarrays, or a ValueError listing every unknown, missing, mis-shaped key."""
    if not isinstance(arrays, Mapping):
        raise TypeError(f"{where}: expected a mapping of name -> array, got {type(arrays).__name__}")
    got = {key: np.asarray(value) for key, value in arrays.items()}
    problems = []
    for key in got:
        if key not in expected:
            problems.append(f"unknown key {key!r} with shape {got[key].shape}{_hint(key, cfg)}")
    for key, shape in expected.items():
        if key not in got:
            problems.append(f"missing key {key!r}: expected shape {shape}")
        elif got[key].shape != shape:
            problems.append(f"wrong shape for {key!r}: expected {shape}, got {got[key].shape}")
    if problems:
        summary = (f"D={cfg.dim}, k={cfg.heads}, L={cfg.depth}, M={cfg.mlp_dim}, K={cfg.num_classes}, "
                   f"P={cfg.patch_size}, C={cfg.in_channels}, T={cfg.num_tokens}, "
                   f"classifier={cfg.classifier!r}, pos_embedding={cfg.pos_embedding!r}")
        raise ValueError(f"{where}: {len(problems)} problem(s) against the config ({summary}):\n  "
                         + "\n  ".join(problems))
    return got


def _hint(key, cfg: ViTConfig) -> str:
    """Why an unknown key may be there, for the error message ('' when there is nothing to add)."""
    key = str(key)
    if key.startswith("pre_logits/"):
        return (": the pre-logits layer (the hidden tanh layer of the pre-training head) is not part of "
                "this config, whose head is one linear layer; drop the pre_logits/* keys to fine-tune")
    if key in ("cls", "x_class"):
        return f": a class token, but this config has classifier={cfg.classifier!r}"
    if key in ("E_pos", "Transformer/posembed_input/pos_embedding"):
        return f": a learned position embedding, but this config has pos_embedding={cfg.pos_embedding!r}"
    block = re.match(r"(?:blocks\.|Transformer/encoderblock_)(\d+)[./]", key)
    if block and int(block.group(1)) >= cfg.depth:
        return f": block {block.group(1)}, but this config has depth L={cfg.depth}"
    return ""


# ---- safe .npz files -------------------------------------------------------------------------------
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")   # a zip's first entry; the end record of an empty zip
_NPY_MAGIC = b"\x93NUMPY"


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
    path = os.fspath(path)
    checked = _checked_for_saving(arrays)
    directory, name = os.path.split(os.path.abspath(path))
    tmp = os.path.join(directory, f".{name}.{secrets.token_hex(4)}.tmp")
    # O_EXCL: never reuse an existing file; mode 0o666 lets the umask decide, as for open(path, 'wb').
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            _write_npz(f, checked)
            f.flush()
            os.fsync(f.fileno())   # the bytes are on disk before the name points at them
        os.replace(tmp, path)      # atomic: readers see the old file or the new one, never a mix
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise
    _fsync_directory(directory)


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


def _fsync_directory(directory: str) -> None:
    """Make the rename itself durable (POSIX); skipped where a directory cannot be opened (Windows)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class _PickleRefused(ValueError):
    pass


def load_npz(path) -> dict:
    """Read every array of the ``.npz`` file ``path`` into memory, refusing pickled data.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    dict[str, ndarray]
        Member name (without '.npy') → array, in archive order; the file is closed on return.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If ``path`` is not an .npz archive, is truncated or corrupt, or holds a pickled (object) array.
    """
    path = os.fspath(path)
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
            with np.load(f, allow_pickle=False) as archive:
                return {name: _read_member(archive, name) for name in archive.files}
        except _PickleRefused as err:
            raise ValueError(f"load_npz: {path!r}: {err}") from None
        except Exception as err:   # whatever the parser trips over in bytes we did not write
            raise ValueError(f"load_npz: {path!r} is truncated or corrupt "
                             f"({type(err).__name__}: {err})") from err


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
