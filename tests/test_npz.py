"""vitnp.io.npz: the one reader and writer of .npz files — exact round trips, atomic writes, no pickle, and
small files that must not cost a lot of memory: every header is read first, and decompression bombs, headers
that lie about their size and archives beyond the byte budget are refused before anything is allocated."""
import io
import os
import zipfile

import numpy as np
import pytest

from vitnp.io import npz
from vitnp.io.npz import load_npz, save_npz

from support import refused_under_memory_limit


def _npy_bytes(array) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, array, allow_pickle=False)
    return buf.getvalue()


def _write_zip(path, members, compression=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w", compression=compression) as z:
        for name, data in members.items():
            z.writestr(name, data)


def test_a_deflate_bomb_is_refused_before_it_is_read(tmp_path):
    """300 MB of zeros deflated to ~300 KB: refused from its zip entry, the archive is never inflated."""
    path = tmp_path / "bomb.npz"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        with z.open("w.npy", "w", force_zip64=True) as member:
            header = io.BytesIO()
            np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False,
                                                          "shape": (75_000_000,)})
            member.write(header.getvalue())
            chunk = bytes(1 << 20)
            for _ in range(300_000_000 // len(chunk) + 1):
                member.write(chunk)
    assert path.stat().st_size < 2_000_000
    out = refused_under_memory_limit(f"from vitnp.io.npz import load_npz; load_npz({str(path)!r})", 600)  # < 300 MB
    assert "refused: load_npz:" in out and "decompression bomb" in out, out


def test_a_header_that_claims_more_than_it_holds_is_refused(tmp_path):
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": (10**6, 10**6)})
    path = tmp_path / "liar.npz"
    _write_zip(path, {"a.npy": header.getvalue() + bytes(64)})
    with pytest.raises(ValueError, match=r"claims \(1000000, 1000000\) float64 .* but holds only"):
        load_npz(path)


def test_the_byte_budget_and_normal_files(tmp_path):
    path = tmp_path / "ok.npz"
    arrays = {"a": np.arange(1000, dtype=np.float32), "b/c": np.ones((3, 4))}
    save_npz(path, arrays)
    loaded = load_npz(path)
    assert set(loaded) == set(arrays) and all(np.array_equal(loaded[k], arrays[k]) for k in arrays)
    with pytest.raises(ValueError, match="need more than 4,000 bytes of memory"):
        load_npz(path, max_bytes=4000)                                  # 4,000 + 96 bytes in the file
    assert set(load_npz(path, max_bytes=4096)) == set(arrays)
    small = tmp_path / "small_deflated.npz"                             # below 16 MiB any ratio is fine
    _write_zip(small, {"z.npy": _npy_bytes(np.zeros(100_000))}, compression=zipfile.ZIP_DEFLATED)
    assert load_npz(small)["z"].shape == (100_000,)


def test_an_object_header_is_refused_as_pickle(tmp_path):
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "|O", "fortran_order": False, "shape": (2,)})
    path = tmp_path / "obj.npz"
    _write_zip(path, {"o.npy": header.getvalue() + b"\x80\x04N."})
    with pytest.raises(ValueError, match="pickled"):
        load_npz(path)


# ---- save_npz / load_npz ---------------------------------------------------------------------------
def odd_arrays():
    rng = np.random.default_rng(6)
    return {
        "a/b/c": rng.standard_normal((3, 4)).astype(np.float32),
        "f64": np.array([np.nan, -0.0, np.inf]),
        "scalar": np.array(3.5),
        "empty": np.zeros((0, 5), np.int16),
        "bool": np.array([True, False]),
        "int8": np.arange(-3, 3, dtype=np.int8),
        "complex": np.array([1 + 2j], np.complex64),
        "big-endian": np.arange(4, dtype=">f8"),
        "fortran": np.asfortranarray(rng.standard_normal((2, 3))),
        "strided": rng.standard_normal((6, 6))[::2, ::3],
        "text": np.array(["ViT", "B/16"]),
        "ключ": np.ones(2, np.uint64),
    }


def test_save_load_round_trip_is_exact(tmp_path):
    arrays = odd_arrays()
    save_npz(tmp_path / "x.npz", arrays)
    loaded = load_npz(tmp_path / "x.npz")
    assert list(loaded) == list(arrays)
    for key, a in arrays.items():
        b = loaded[key]
        assert type(b) is np.ndarray and b.dtype == a.dtype and b.shape == a.shape, key
        assert np.ascontiguousarray(a).tobytes() == np.ascontiguousarray(b).tobytes(), key
    assert os.listdir(tmp_path) == ["x.npz"]


def test_save_load_empty_and_str_path(tmp_path):
    save_npz(str(tmp_path / "empty.npz"), {})
    assert load_npz(str(tmp_path / "empty.npz")) == {}


def test_save_replaces_an_existing_file(tmp_path):
    save_npz(tmp_path / "x.npz", {"a": np.zeros(3)})
    save_npz(tmp_path / "x.npz", {"b": np.ones(2)})
    loaded = load_npz(tmp_path / "x.npz")
    assert list(loaded) == ["b"] and loaded["b"].tolist() == [1.0, 1.0]
    assert os.listdir(tmp_path) == ["x.npz"]


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc to count open files")
def test_load_closes_the_file(tmp_path):
    save_npz(tmp_path / "x.npz", odd_arrays())
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(5):
        load_npz(tmp_path / "x.npz")
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04 broken")
    with pytest.raises(ValueError):
        load_npz(tmp_path / "bad.npz")
    assert len(os.listdir("/proc/self/fd")) == before


def _fail_in_writer(monkeypatch, exc):
    real = npz._write_npz

    def half_then_crash(f, arrays):
        real(f, arrays)
        f.truncate(f.tell() // 2)
        raise exc
    monkeypatch.setattr(npz, "_write_npz", half_then_crash)


def _fail_in(name, exc):
    def boom(*args, **kwargs):
        raise exc
    return boom


@pytest.mark.parametrize("where", ["writer", "fsync", "replace", "writer-KeyboardInterrupt"])
def test_crash_mid_save_keeps_the_old_file_and_no_temp_file(tmp_path, monkeypatch, where):
    path = tmp_path / "ckpt.npz"
    save_npz(path, {"step": np.array(1)})
    old_bytes = path.read_bytes()
    if where == "writer":
        _fail_in_writer(monkeypatch, OSError("disk full"))
    elif where == "writer-KeyboardInterrupt":
        _fail_in_writer(monkeypatch, KeyboardInterrupt())
    else:
        monkeypatch.setattr(os, where, _fail_in(where, OSError(f"{where} failed")))
    with pytest.raises((OSError, KeyboardInterrupt)):
        save_npz(path, {"step": np.array(2), "w": np.ones((100, 100))})
    monkeypatch.undo()
    assert path.read_bytes() == old_bytes
    assert os.listdir(tmp_path) == ["ckpt.npz"]
    assert load_npz(path)["step"] == 1


def test_save_fsyncs_the_data_before_the_rename(tmp_path, monkeypatch):
    calls = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(os, "replace", lambda a, b: (calls.append(("replace", os.path.getsize(a))),
                                                     real_replace(a, b))[1])
    save_npz(tmp_path / "x.npz", {"a": np.zeros(3)})
    assert calls[0] == "fsync" and calls[1] == ("replace", (tmp_path / "x.npz").stat().st_size)


def test_crash_on_first_save_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "replace", _fail_in("replace", OSError("boom")))
    with pytest.raises(OSError, match="boom"):
        save_npz(tmp_path / "new.npz", {"a": np.zeros(2)})
    assert os.listdir(tmp_path) == []


def test_save_refuses_object_arrays_and_bad_keys(tmp_path):
    path = tmp_path / "x.npz"
    save_npz(path, {"a": np.zeros(2)})
    old_bytes = path.read_bytes()
    with pytest.raises(TypeError, match=r"'meta'.*object"):
        save_npz(path, {"a": np.zeros(2), "meta": np.array([{"lr": 1e-3}, None], dtype=object)})
    with pytest.raises(TypeError, match=r"'rec'.*object"):
        save_npz(path, {"rec": np.zeros(2, dtype=[("x", "f4"), ("o", "O")])})
    with pytest.raises(TypeError, match="'ragged'"):
        save_npz(path, {"ragged": [[1, 2], [3]]})
    with pytest.raises(TypeError, match="non-empty strings"):
        save_npz(path, {3: np.zeros(2)})
    with pytest.raises(TypeError, match="non-empty strings"):
        save_npz(path, {"": np.zeros(2)})
    assert path.read_bytes() == old_bytes
    assert os.listdir(tmp_path) == ["x.npz"]


def test_load_missing_file(tmp_path):
    path = tmp_path / "nope.npz"
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        load_npz(path)


def test_load_truncated_file_at_every_length(tmp_path):
    good = tmp_path / "good.npz"
    save_npz(good, {"a": np.arange(10.0), "b/c": np.ones((2, 3), np.float32)})
    data = good.read_bytes()
    bad = tmp_path / "bad.npz"
    for n in range(0, len(data), 7):
        bad.write_bytes(data[:n])
        with pytest.raises(ValueError, match="bad.npz") as err:
            load_npz(bad)
        assert "truncated or corrupt" in str(err.value) or "not an .npz" in str(err.value), n


def test_load_corrupt_array_bytes(tmp_path):
    path = tmp_path / "x.npz"
    save_npz(path, {"a": np.arange(64.0)})
    data = bytearray(path.read_bytes())
    i = data.index(np.arange(64.0)[40:].tobytes())   # inside the array data, under the zip CRC
    data[i] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"x\.npz' is truncated or corrupt .*CRC"):
        load_npz(path)


def test_load_non_npz_files(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("E_pos is learned\n")
    with pytest.raises(ValueError, match=r"notes\.txt' is not an \.npz archive"):
        load_npz(text)
    npy = tmp_path / "single.npy"
    np.save(npy, np.zeros(3))
    with pytest.raises(ValueError, match=r"single\.npy' is a single \.npy array"):
        load_npz(npy)
    other_zip = tmp_path / "other.npz"
    with zipfile.ZipFile(other_zip, "w") as z:
        z.writestr("readme.txt", "hello")
    with pytest.raises(ValueError, match=r"other\.npz'.*'readme\.txt' is not a \.npy array"):
        load_npz(other_zip)


def test_load_refuses_pickled_object_arrays(tmp_path):
    path = tmp_path / "pickled.npz"
    np.savez(path, w=np.zeros(2), meta=np.array([{"lr": 0.1}], dtype=object))   # numpy pickles this one
    refused = r"pickled\.npz'.*'meta' is a pickled \(object\) array; pickled arrays are refused"
    with pytest.raises(ValueError, match=refused):
        load_npz(path)
