"""Small files must not cost a lot of memory (issue 16, item 6): load_npz reads every header first and refuses
decompression bombs, headers that lie about their size, and archives beyond its byte budget — before allocating."""
import gzip
import io
import subprocess
import sys
import textwrap
import zlib
import zipfile

import numpy as np
import pytest

from vitnp.data.idx import read_idx
from vitnp.io.npz import load_npz, save_npz


def _npy_bytes(array) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, array, allow_pickle=False)
    return buf.getvalue()


def _refused_under_memory_limit(call: str, limit_mb: int) -> str:
    """Run ``call`` (Python source that raises ValueError on refusal) in a subprocess whose address space is
    capped at ``limit_mb`` MiB; return what it printed: 'refused: <message>', or fail with its traceback."""
    code = textwrap.dedent(f"""
        import resource
        resource.setrlimit(resource.RLIMIT_AS, ({limit_mb} << 20, {limit_mb} << 20))
        try:
            {call}
        except ValueError as err:
            print("refused:", err)
    """)
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    return p.stdout


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
    out = _refused_under_memory_limit(f"from vitnp.io.npz import load_npz; load_npz({str(path)!r})", 600)  # < 300 MB
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


def test_a_png_bomb_is_refused_from_its_header(tmp_path):
    """A 9000×9000 black PNG is ~250 KB on disk and 324 MB decoded (1.3 GB as float32 RGBA): refused unread."""
    from PIL import Image
    from vitnp.data.image_files import load_image
    path = tmp_path / "bomb.png"
    Image.new("L", (9000, 9000)).save(path, optimize=True)
    assert path.stat().st_size < 1_000_000
    out = _refused_under_memory_limit(f"from vitnp.data.image_files import load_image; load_image({str(path)!r})", 1024)
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
    out = _refused_under_memory_limit(f"from vitnp.data.idx import read_idx; read_idx({str(path)!r})", 600)
    assert "header declares 1,200,000,008 bytes" in out, out
    from vitnp.data.idx import read_bytes
    with pytest.raises(ValueError, match="refused"):
        read_bytes(path, max_bytes=10_000_000_000)                      # within the cap, but 400:1
    liar = tmp_path / "liar-idx1-ubyte.gz"                              # header: 100 bytes; stream: 50 MB
    liar.write_bytes(gzip.compress(b"\x00\x00\x08\x01" + (100).to_bytes(4, "big") + bytes(50_000_000)))
    with pytest.raises(ValueError, match="extra bytes after the data"):
        read_idx(liar)                                                  # inflated only to 101 bytes of data
