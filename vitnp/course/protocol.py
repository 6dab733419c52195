"""What the grader and its check process say to each other, and the one routine both run.

The grader (:mod:`vitnp.course.grade`) never imports the copy it grades.  It starts a check process
(:mod:`vitnp.course.worker`) that imports the copy and only *computes*: it receives programs and input arrays,
calls the copy's functions, and sends back the arrays they return.  Every comparison happens in the grader.

A **program** is JSON naming functions of a vitnp package and how to call them:

- ``{"call": "ops.loss:softmax_cross_entropy", "kwargs": REFS}`` calls one function; what it returns is sent
  under the key ``ret`` (``ret/0``, ``ret/1`` … for a tuple);
- ``{"forward": "ops.linear:linear_forward", "backward": "ops.linear:linear_backward", "kwargs": REFS,
  "backward_kwargs": {...}}`` calls the forward, sends its first result as ``out``, calls the backward with the
  upstream gradient (the array ``dout``) and the forward's last result (the cache), and sends what the backward
  returns under ``grad`` (``grad/0``, ``grad/1/ln1.gamma`` …);
- ``"send"`` (optional) keeps only the keys under these prefixes.

A REF says where an argument comes from: ``{"a": name}`` an input array, ``{"v": value}`` a JSON value,
``{"rng": seed}`` a new ``np.random.default_rng(seed)`` (made afresh at every call, so that dropout draws the
same mask each time), ``{"cfg": fields}`` a ``ViTConfig`` of the package, ``{"d": {key: REF}}`` a dict.

A **frame** carries a JSON header and arrays: ``MAGIC``, two big-endian uint32 lengths (header, body), the
header (UTF-8 JSON with an ``"arrays"`` list of ``{"key", "dtype", "shape"}``), then the arrays' raw bytes in
that order.  :func:`decode` parses strictly: known dtypes only, sizes that add up, no pickle, bounded.

This module imports only the standard library and NumPy: the check process loads it by path, before and apart
from the copy it grades.
"""
from __future__ import annotations

import importlib
import json
import struct

import numpy as np

MAGIC = b"VITNP-GRADE-1\n"
DTYPES = {np.dtype(t).str for t in ("float64", "float32", "int64", "int32", "bool", "uint8")}
MAX_NDIM = 8
MAX_HEADER = 1 << 20            # bytes of JSON in one frame


class ProtocolError(ValueError):
    """A frame that does not parse: the grader treats it as a failed check, never as a pass."""


# ---- frames ---------------------------------------------------------------------------------------------------
def encode(header: dict, arrays: dict) -> bytes:
    """One frame: ``header`` (a JSON-able dict) and ``arrays`` ({key: ndarray of a dtype in DTYPES})."""
    entries, chunks = [], []
    for key, a in arrays.items():
        a = np.asarray(a)                                   # tobytes() below is in C order
        entries.append({"key": key, "dtype": a.dtype.str, "shape": list(a.shape)})
        chunks.append(a.tobytes())
    head = json.dumps({**header, "arrays": entries}).encode("utf-8")
    body = b"".join(chunks)
    return MAGIC + struct.pack(">II", len(head), len(body)) + head + body


def decode(data: bytes, max_frames: int = 1000) -> list:
    """[(header, {key: ndarray})] of the frames in ``data``, in order; ProtocolError if anything is off."""
    frames, pos, n = [], 0, len(data)
    while pos < n:
        if len(frames) >= max_frames:
            raise ProtocolError(f"more than {max_frames} frames")
        if data[pos:pos + len(MAGIC)] != MAGIC:
            raise ProtocolError(f"no frame starts at byte {pos}")
        pos += len(MAGIC)
        if pos + 8 > n:
            raise ProtocolError("a frame is cut short in its lengths")
        head_len, body_len = struct.unpack(">II", data[pos:pos + 8])
        pos += 8
        if head_len > MAX_HEADER or pos + head_len + body_len > n:
            raise ProtocolError(f"a frame claims {head_len} + {body_len} bytes; {n - pos} are there")
        try:
            header = json.loads(data[pos:pos + head_len].decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as err:
            raise ProtocolError(f"a frame's header is not JSON ({err})") from None
        pos += head_len
        body = data[pos:pos + body_len]
        pos += body_len
        frames.append((header, _arrays(header, body)))
    return frames


def _arrays(header, body: bytes) -> dict:
    entries = header.get("arrays") if isinstance(header, dict) else None
    if not isinstance(entries, list):
        raise ProtocolError("a frame's header has no 'arrays' list")
    out, offset = {}, 0
    for e in entries:
        if not (isinstance(e, dict) and set(e) == {"key", "dtype", "shape"} and isinstance(e["key"], str)
                and e["dtype"] in DTYPES and isinstance(e["shape"], list) and len(e["shape"]) <= MAX_NDIM
                and all(type(s) is int and 0 <= s < 2 ** 31 for s in e["shape"])):
            raise ProtocolError(f"a malformed array entry: {str(e)[:200]}")
        if e["key"] in out:
            raise ProtocolError(f"array {e['key']!r} twice in one frame")
        dtype = np.dtype(e["dtype"])
        size = dtype.itemsize * int(np.prod(e["shape"], dtype=np.int64))
        if offset + size > len(body):
            raise ProtocolError(f"array {e['key']!r} runs past the frame's end")
        out[e["key"]] = np.frombuffer(body, dtype, int(np.prod(e["shape"], dtype=np.int64)), offset).reshape(
            e["shape"]).copy()
        offset += size
    if offset != len(body):
        raise ProtocolError(f"{len(body) - offset} bytes in a frame belong to no array")
    return out


# ---- the routine both sides run -------------------------------------------------------------------------------
def function(package: str, name: str):
    """``"ops.linear:linear_forward"`` of the package imported as ``package``."""
    module, _, attr = name.partition(":")
    return getattr(importlib.import_module(f"{package}.{module}"), attr)


def resolve(ref, arrays: dict, package: str):
    """The argument a REF describes (see the module docstring)."""
    kind, = ref.keys()
    value = ref[kind]
    if kind == "a":
        return arrays[value]
    if kind == "v":
        return value
    if kind == "rng":
        return np.random.default_rng(value)
    if kind == "cfg":
        config = importlib.import_module(f"{package}.config")
        return config.ViTConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in value.items()})
    if kind == "d":
        return {k: resolve(r, arrays, package) for k, r in value.items()}
    raise ValueError(f"unknown argument kind {kind!r}")


def invoke(program: dict, arrays: dict, package: str):
    """Call the program's first function (its forward, or its one call) and return what it returns."""
    fn = function(package, program.get("forward") or program["call"])
    return fn(**{k: resolve(r, arrays, package) for k, r in program.get("kwargs", {}).items()})


def run(program: dict, arrays: dict, package: str) -> tuple:
    """Run one program on the package imported as ``package``: ({key: ndarray}, {key: why it is not sent})."""
    result = invoke(program, arrays, package)
    if "forward" in program:
        if not isinstance(result, tuple) or len(result) < 2:
            raise TypeError(f"{program['forward']} must return (out, …, cache), got {type(result).__name__}")
        backward = function(package, program["backward"])
        upstream = backward(arrays["dout"], result[-1], **program.get("backward_kwargs", {}))
        tree = [("out", result[0]), ("grad", upstream)]
    else:
        tree = [("ret", result)]
    sent, notes = {}, {}
    for prefix, value in tree:
        flatten(value, prefix, sent, notes)
    keep = program.get("send")
    if keep:
        within = lambda k: any(k == p or k.startswith(p + "/") for p in keep)
        sent = {k: v for k, v in sent.items() if within(k)}
        notes = {k: v for k, v in notes.items() if within(k)}
    return sent, notes


def flatten(value, key: str, arrays: dict, notes: dict, depth: int = 0) -> None:
    """Arrays of a nested tuple/list/dict under keys ``key/i`` or ``key/name``; what is no array goes to ``notes``."""
    if depth > 6:
        notes[key] = "nested too deeply"
    elif isinstance(value, (tuple, list)):
        for i, v in enumerate(value):
            flatten(v, f"{key}/{i}", arrays, notes, depth + 1)
    elif isinstance(value, dict):
        for k, v in value.items():
            flatten(v, f"{key}/{k}", arrays, notes, depth + 1)
    elif isinstance(value, (np.ndarray, np.generic, float, int, bool)):
        a = np.asarray(value)
        if a.dtype.str in DTYPES:
            arrays[key] = a
        elif a.dtype.kind in "fiub":
            arrays[key] = a.astype(np.float64 if a.dtype.kind == "f" else np.int64)
        else:
            notes[key] = f"an array of dtype {a.dtype}"
    else:
        notes[key] = "None" if value is None else f"a {type(value).__name__}, not an array"
